//! `mem0_search`: Mem0's own search merged with the local copy.
//!
//! - Read-your-writes: memories not delivered yet are found locally (FTS5,
//!   bm25) and marked `pending`, a millisecond after their save.
//! - When Mem0 is unreachable or not configured, the answer comes from the
//!   local copy (every saved memory), marked `local`, and says so.
//! - A delivered entry and its remote memory are one result: remote results
//!   are matched to local entries by `metadata.mq_id` and by remote id. A
//!   delivered memory Mem0 did not return (its ranking, its threshold) is
//!   still shown from the local copy, marked `local`: what was saved is
//!   found whether the server is up or down.
//! - Without a project, every project with memories in the local copy is
//!   searched (the [`MAX_PROJECTS`] most recently used), not only the
//!   default one.
//! - Mem0's own similarity threshold applies (none is sent), so noise with a
//!   score of 0 is not shown.

use std::collections::HashSet;

use serde::Serialize;

use crate::engine::app::App;
use crate::engine::store::{State, StoreError};

/// The default number of results.
pub const DEFAULT_LIMIT: usize = 10;

/// The most results one search returns.
pub const MAX_LIMIT: usize = 100;

/// The most projects one search without a project asks Mem0 about, in
/// parallel: the most recently used. A user's assistant works in a handful
/// of projects; eight bounds the fan-out of one tool call.
pub const MAX_PROJECTS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// From Mem0's search.
    Remote,
    /// Saved locally and not delivered yet.
    Pending,
    /// From the local copy: Mem0 did not answer, or did not return this
    /// delivered memory.
    Local,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub memory: String,
    pub score: f64,
    pub source: Source,
    /// The local entry id (`mq_id`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mq_id: Option<String>,
    /// Mem0's memory id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
    pub project: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchResult {
    pub results: Vec<Hit>,
    /// True when Mem0 was not asked or did not answer.
    pub local_only: bool,
    /// Why, when `local_only`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_error: Option<String>,
}

impl SearchResult {
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.local_only {
            out.push_str(&format!(
                "Mem0 {}: these results are LOCAL ONLY (memories saved through this queue).\n",
                self.remote_error.as_deref().unwrap_or("did not answer")
            ));
        }
        if self.results.is_empty() {
            out.push_str("No matching memory.");
        }
        for h in &self.results {
            let source = match h.source {
                Source::Remote => "remote",
                Source::Pending => "pending",
                Source::Local => "local",
            };
            out.push_str(&format!("- [{source} {:.2}] {}\n", h.score, h.memory));
        }
        out
    }
}

/// Searches Mem0 and the local copy, and merges them.
pub async fn search(
    app: &App,
    query: &str,
    project: Option<String>,
    limit: usize,
) -> Result<SearchResult, StoreError> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let project_filter = project.clone();
    let q = query.to_string();
    let (local, projects, pending) = app
        .store
        .run(move |s| {
            let local = s.search_local(&q, project_filter.as_deref(), MAX_LIMIT)?;
            let projects = match project_filter {
                Some(p) => vec![p],
                None => s.projects(MAX_PROJECTS)?,
            };
            Ok((local, projects, s.pending_changes()?))
        })
        .await?;
    let projects = if projects.is_empty() {
        vec![app.project.clone()]
    } else {
        projects
    };
    let remote: Vec<(
        String,
        Result<Vec<crate::engine::mem0::RemoteMemory>, String>,
    )> = match &app.client {
        Err(_) => vec![(String::new(), Err("is not configured".to_string()))],
        Ok(c) => {
            futures::future::join_all(projects.iter().map(|p| async move {
                let r = c
                    .search(query, p, limit as u32)
                    .await
                    .map_err(|f| format!("did not answer ({})", f.describe()));
                (p.clone(), r)
            }))
            .await
        }
    };
    let mut results = Vec::new();
    let mut seen_mq: HashSet<String> = HashSet::new();
    let mut seen_remote: HashSet<String> = HashSet::new();
    let local_only = remote.iter().all(|(_, r)| r.is_err());
    let remote_error = remote.iter().find_map(|(_, r)| r.as_ref().err().cloned());
    // Read-your-writes: what is deleted or forgotten here is not shown,
    // and a queued update shows its new text.
    let mq_ids: Vec<String> = remote
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flatten()
        .filter_map(|m| m.mq_id().map(str::to_string))
        .collect();
    let (_, gone) = app.store.run(move |s| s.local_ids(&mq_ids)).await?;
    for (remote_project, found) in remote {
        let Ok(found) = found else { continue };
        for mut m in found {
            if crate::features::memories::hidden(&m, &remote_project, &pending, &gone) {
                continue;
            }
            if let Some(t) = pending.updated.get(&m.id).and_then(|c| c.text.clone()) {
                m.memory = t;
            }
            let mq = m
                .metadata
                .get("mq_id")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            if let Some(mq) = &mq {
                seen_mq.insert(mq.clone());
            }
            if !seen_remote.insert(m.id.clone()) {
                continue;
            }
            results.push(Hit {
                memory: m.memory,
                score: m.score.unwrap_or(0.0),
                source: Source::Remote,
                mq_id: mq,
                remote_id: Some(m.id),
                project: remote_project.clone(),
                state: None,
            });
        }
    }
    for (e, score) in local {
        if seen_mq.contains(&e.id) || e.remote_ids.iter().any(|r| seen_remote.contains(r)) {
            continue; // The same memory as a remote result.
        }
        let delivered = e.state == State::Delivered;
        results.push(Hit {
            memory: e.content.unwrap_or_default(),
            score,
            source: if delivered {
                Source::Local
            } else {
                Source::Pending
            },
            mq_id: Some(e.id),
            remote_id: e.remote_ids.first().cloned(),
            project: e.project,
            state: Some(e.state),
        });
    }
    // Pending first (the newest knowledge), then by score.
    results.sort_by(|a, b| {
        (b.source == Source::Pending)
            .cmp(&(a.source == Source::Pending))
            .then(b.score.total_cmp(&a.score))
    });
    results.truncate(limit);
    Ok(SearchResult {
        results,
        local_only,
        remote_error,
    })
}
