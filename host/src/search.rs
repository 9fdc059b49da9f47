//! `mem0_search`: Mem0's own search merged with the local copy.
//!
//! - Read-your-writes: memories not delivered yet are found locally (FTS5,
//!   bm25) and marked `pending`, a millisecond after their save.
//! - When Mem0 is unreachable or not configured, the answer comes from the
//!   local copy (every saved memory), marked `local`, and says so.
//! - A delivered entry and its remote memory are one result: remote results
//!   are matched to local entries by `metadata.mq_id` and by remote id.

use std::collections::HashSet;

use serde::Serialize;

use crate::app::App;
use crate::store::{State, StoreError};

/// The default number of results.
pub const DEFAULT_LIMIT: usize = 10;

/// The most results one search returns.
pub const MAX_LIMIT: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// From Mem0's search.
    Remote,
    /// Saved locally and not delivered yet.
    Pending,
    /// From the local copy, because Mem0 did not answer.
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
    let local = app
        .store
        .run(move |s| s.search_local(&q, project_filter.as_deref(), MAX_LIMIT))
        .await?;
    let remote_project = project.unwrap_or_else(|| app.config().default_project.clone());
    let remote = match &app.client {
        Err(_) => Err("is not configured".to_string()),
        Ok(c) => c
            .search(query, &remote_project, limit as u32)
            .await
            .map_err(|f| format!("did not answer ({})", f.describe())),
    };
    let mut results = Vec::new();
    let mut seen_mq: HashSet<String> = HashSet::new();
    let mut seen_remote: HashSet<String> = HashSet::new();
    let local_only = remote.is_err();
    let remote_error = remote.as_ref().err().cloned();
    if let Ok(remote) = remote {
        for m in remote {
            let mq = m
                .metadata
                .get("mq_id")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            if let Some(mq) = &mq {
                seen_mq.insert(mq.clone());
            }
            seen_remote.insert(m.id.clone());
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
        let delivered = e.state == State::Delivered;
        if seen_mq.contains(&e.id) || e.remote_ids.iter().any(|r| seen_remote.contains(r)) {
            continue; // The same memory as a remote result.
        }
        if delivered && !local_only {
            continue; // Mem0 answered; its ranking of delivered memories stands.
        }
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
