//! The memory lifecycle as the tools and the CLI see it: get, list, update,
//! delete, forget and entities, over the local copy and Mem0.
//!
//! Every change goes through the queue ([`crate::engine::store::lifecycle`]): it is
//! durable when this returns, whatever state the server is in. Reads merge
//! what the server returns with the local copy, one row per memory (matched
//! by `mq_id` and by Mem0 id), and show the queued changes at once: an
//! update's new text, a deleted memory hidden, a forgotten project empty,
//! even while the server still returns the old state.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::engine::app::App;
use crate::engine::mem0::{RemoteEntity, RemoteMemory};
use crate::engine::store::{
    ChangeOutcome, Changes, ForgetOutcome, LocalEntity, LocalMemory, PendingChanges, State,
    StoreError,
};

/// The default page of `list`.
pub const DEFAULT_PAGE_SIZE: usize = 20;

/// The largest page of `list`: a tool reply stays readable.
pub const MAX_PAGE_SIZE: usize = 100;

/// The most memories `list` reads from each side before merging: the
/// self-hosted server's own cap (it has no pagination).
pub const LIST_READ_MAX: usize = crate::engine::mem0::LIST_MAX;

#[derive(Debug, thiserror::Error)]
pub enum MemoriesError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no memory with id {0} here or on the Mem0 server")]
    NotFound(String),
    #[error(
        "forget removes every memory of project `{project}`: {preview}. To go ahead, call again with confirm = \"{project}\""
    )]
    Unconfirmed { project: String, preview: String },
}

/// Where a memory's shown state comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The Mem0 server's answer (with the queued changes applied).
    Server,
    /// The local copy: the memory is not on the server yet, or the server
    /// did not answer.
    Local,
}

/// One memory, as `get` and `list` show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemoryView {
    /// The local id (`mq_id`), when mem0-queue saved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Mem0's id, once the server has it. One save may have become several
    /// Mem0 memories: `list` shows each; `get` by the local id lists them in
    /// `mem0_ids`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem0_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mem0_ids: Vec<String>,
    pub memory: String,
    pub project: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub metadata: Value,
    /// Unix ms.
    pub created_at: i64,
    /// delivered, pending, in_flight, failed or dead.
    pub state: State,
    /// A change of it is queued and not delivered yet.
    pub edit_queued: bool,
    pub source: Source,
}

impl MemoryView {
    fn from_local(m: LocalMemory) -> MemoryView {
        MemoryView {
            id: Some(m.id),
            mem0_id: match m.remote_ids.as_slice() {
                [one] => Some(one.clone()),
                _ => None,
            },
            mem0_ids: m.remote_ids,
            memory: m.content,
            project: m.project,
            agent_id: m.agent_id,
            run_id: m.run_id,
            metadata: m.metadata,
            created_at: m.created_at,
            state: m.state,
            edit_queued: m.edit_queued,
            source: Source::Local,
        }
    }

    fn from_remote(m: RemoteMemory, project: &str, pending: &PendingChanges) -> MemoryView {
        let edit = pending.updated.get(&m.id);
        let mut metadata = m.metadata.clone();
        let mut memory = m.memory.clone();
        if let Some(c) = edit {
            if let Some(t) = &c.text {
                memory = t.clone();
            }
            if let Some(patch) = &c.metadata {
                metadata = crate::engine::store::lifecycle::merge_metadata(&metadata, patch);
            }
        }
        MemoryView {
            id: m.mq_id().map(str::to_string),
            mem0_id: Some(m.id.clone()),
            mem0_ids: Vec::new(),
            memory,
            project: m.user_id.clone().unwrap_or_else(|| project.to_string()),
            agent_id: m.agent_id.clone(),
            run_id: m.run_id.clone(),
            metadata,
            created_at: m.created_at.as_deref().and_then(parse_time).unwrap_or(0),
            state: State::Delivered,
            edit_queued: edit.is_some(),
            source: Source::Server,
        }
    }
}

/// What `get` found.
#[derive(Debug, Clone, Serialize)]
pub struct GetResult {
    pub memory: MemoryView,
    /// Why the server was not asked or did not answer, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_note: Option<String>,
}

/// A page of `list`.
#[derive(Debug, Clone, Serialize)]
pub struct ListResult {
    pub project: String,
    pub page: usize,
    pub page_size: usize,
    /// Memories in the merged list (all pages).
    pub total: usize,
    pub memories: Vec<MemoryView>,
    /// True when the server's list is not in it (not configured, or no
    /// answer): the local copy alone.
    pub local_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_note: Option<String>,
}

/// What `forget` did.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetResult {
    #[serde(flatten)]
    pub outcome: ForgetOutcome,
    /// How many memories the server had for the project when asked (at most
    /// [`LIST_READ_MAX`]), None when it did not answer.
    pub on_server_now: Option<usize>,
}

/// One entity, merged from the local copy and the server.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EntityView {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    /// Live memories of it in the local copy.
    pub local_memories: u64,
    /// Memories the server says it has, when it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_memories: Option<u64>,
    pub on_server: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntitiesResult {
    pub entities: Vec<EntityView>,
    pub local_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_note: Option<String>,
}

/// Asks the server within its search timeout; the error in words.
async fn ask<T>(
    app: &App,
    f: impl AsyncFnOnce(&crate::engine::mem0::Client) -> Result<T, crate::engine::mem0::Failure>,
) -> Result<T, String> {
    let client = match &app.client {
        Ok(c) => c,
        Err(_) => return Err("no Mem0 server is configured".into()),
    };
    let budget = app.config().search_timeout + Duration::from_secs(1);
    match tokio::time::timeout(budget, f(client)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(f)) => Err(format!("the Mem0 server did not answer ({})", f.describe())),
        Err(_) => Err("the Mem0 server did not answer in time".into()),
    }
}

/// For a change by an id the local copy does not know (a memory saved by
/// another tool): asks the server whether it has it. It does not: the id is
/// refused. It does: its project is the memory's own. No answer: the change
/// is queued all the same (it is checked when it is delivered: an update of
/// a memory that is not there dies with its reason, a delete is done).
async fn project_for_unknown(
    app: &App,
    id: &str,
    project: Option<String>,
) -> Result<String, MemoriesError> {
    let key = id.to_string();
    let fallback = project.clone().unwrap_or_else(|| app.project.clone());
    if crate::engine::store::lifecycle::validate_memory_id(id).is_err()
        || app.store.run(move |s| s.knows(&key)).await?
    {
        return Ok(fallback);
    }
    match ask(app, async |c| c.get(id).await).await {
        Ok(None) => Err(MemoriesError::NotFound(id.to_string())),
        Ok(Some(m)) => Ok(project.or(m.user_id).unwrap_or(fallback)),
        Err(_) => Ok(fallback),
    }
}

/// Changes a memory's text and/or metadata, and wakes the worker.
pub async fn update(
    app: &App,
    id: &str,
    changes: Changes,
    project: Option<String>,
) -> Result<ChangeOutcome, MemoriesError> {
    let limits = app.limits();
    let project = project_for_unknown(app, id, project).await?;
    let now = app.clock.now_ms();
    let id = id.to_string();
    let out = app
        .store
        .run(move |s| s.update_memory(&id, &changes, &project, &limits, now))
        .await
        .map_err(not_found)?;
    Ok(out)
}

/// Deletes a memory.
pub async fn delete(
    app: &App,
    id: &str,
    project: Option<String>,
) -> Result<ChangeOutcome, MemoriesError> {
    let project = project_for_unknown(app, id, project).await?;
    let now = app.clock.now_ms();
    let id = id.to_string();
    let out = app
        .store
        .run(move |s| s.delete_memory(&id, &project, now))
        .await
        .map_err(not_found)?;
    Ok(out)
}

fn not_found(e: StoreError) -> MemoriesError {
    match e {
        StoreError::NotFound(id) => MemoriesError::NotFound(id),
        other => MemoriesError::Store(other),
    }
}

/// What a forget of `project` would remove, in words, with the server's
/// count when it answers.
pub async fn forget_preview(app: &App, project: &str) -> Result<ForgetResult, MemoriesError> {
    let p = project.to_string();
    let outcome = app.store.run(move |s| s.forget_preview(&p)).await?;
    let on_server = ask(app, async |c| {
        c.list(project, None, None, LIST_READ_MAX).await
    })
    .await
    .ok()
    .map(|l| l.len());
    Ok(ForgetResult {
        outcome,
        on_server_now: on_server,
    })
}

impl ForgetResult {
    /// The counts in words.
    pub fn describe(&self) -> String {
        let o = &self.outcome;
        let server = match self.on_server_now {
            Some(n) if n >= LIST_READ_MAX => format!("at least {n} memories on the Mem0 server"),
            Some(n) => format!("{n} memories on the Mem0 server"),
            None => "an unknown number on the Mem0 server (it did not answer)".into(),
        };
        format!(
            "{} saves never sent (cancelled here), {} delivered or in flight (hidden here at once), {server}",
            o.cancelled, o.on_server
        )
    }
}

/// Forgets every memory of a project (Mem0's delete-all), only when
/// `confirm` is the project's name.
pub async fn forget(
    app: &App,
    project: &str,
    confirm: Option<&str>,
) -> Result<ForgetResult, MemoriesError> {
    let preview = forget_preview(app, project).await?;
    if confirm != Some(project) {
        return Err(MemoriesError::Unconfirmed {
            project: project.to_string(),
            preview: preview.describe(),
        });
    }
    let now = app.clock.now_ms();
    let p = project.to_string();
    let outcome = app.store.run(move |s| s.forget_project(&p, now)).await?;
    Ok(ForgetResult {
        outcome,
        on_server_now: preview.on_server_now,
    })
}

/// One memory by its local id or a Mem0 id.
pub async fn get(app: &App, id: &str) -> Result<GetResult, MemoriesError> {
    crate::engine::store::lifecycle::validate_memory_id(id)?;
    let key = id.to_string();
    let (local, pending) = app
        .store
        .run(move |s| Ok((s.get_memory(&key)?, s.pending_changes()?)))
        .await?;
    if pending.deleted.contains(id) {
        return Err(MemoriesError::NotFound(id.to_string()));
    }
    match local {
        // Not on the server yet: the local copy is the memory.
        Some(m) if m.state != State::Delivered => Ok(GetResult {
            memory: MemoryView::from_local(m),
            server_note: Some("queued, not on the Mem0 server yet: from the local copy".into()),
        }),
        Some(m) => {
            // The server's own view of the (first) Mem0 memory it became.
            let remote_id = if m.remote_ids.iter().any(|r| r == id) {
                Some(id.to_string())
            } else {
                m.remote_ids.first().cloned()
            };
            let Some(remote_id) = remote_id else {
                return Ok(GetResult {
                    memory: MemoryView::from_local(m),
                    server_note: Some(
                        "Mem0 kept nothing from this save: from the local copy".into(),
                    ),
                });
            };
            match ask(app, async |c| c.get(&remote_id).await).await {
                Ok(Some(r)) => {
                    let mut v = MemoryView::from_remote(r, &m.project, &pending);
                    v.id = Some(m.id.clone());
                    v.mem0_ids = m.remote_ids.clone();
                    v.edit_queued |= m.edit_queued;
                    v.created_at = m.created_at;
                    Ok(GetResult {
                        memory: v,
                        server_note: None,
                    })
                }
                Ok(None) => Ok(GetResult {
                    memory: MemoryView::from_local(m),
                    server_note: Some(
                        "the Mem0 server no longer has it: from the local copy".into(),
                    ),
                }),
                Err(why) => Ok(GetResult {
                    memory: MemoryView::from_local(m),
                    server_note: Some(format!("{why}: from the local copy")),
                }),
            }
        }
        None => {
            let project = app.project.clone();
            match ask(app, async |c| c.get(id).await).await {
                Ok(Some(r)) => Ok(GetResult {
                    memory: MemoryView::from_remote(r, &project, &pending),
                    server_note: None,
                }),
                Ok(None) => Err(MemoriesError::NotFound(id.to_string())),
                Err(why) => Err(MemoriesError::Store(StoreError::Invalid {
                    field: "id",
                    reason: format!("not in the local copy, and {why}"),
                })),
            }
        }
    }
}

/// The memories of a project, newest first, a page at a time: the server's
/// list merged with the local copy, with the queued changes applied.
pub async fn list(
    app: &App,
    project: &str,
    agent_id: Option<&str>,
    run_id: Option<&str>,
    page: usize,
    page_size: usize,
) -> Result<ListResult, MemoriesError> {
    let page = page.max(1);
    let page_size = page_size.clamp(1, MAX_PAGE_SIZE);
    let (p, a, r) = (
        project.to_string(),
        agent_id.map(str::to_string),
        run_id.map(str::to_string),
    );
    let (local, pending) = app
        .store
        .run(move |s| {
            Ok((
                s.list_memories(&p, a.as_deref(), r.as_deref(), LIST_READ_MAX)?,
                s.pending_changes()?,
            ))
        })
        .await?;
    let remote = ask(app, async |c| {
        c.list(project, agent_id, run_id, LIST_READ_MAX).await
    })
    .await;
    let (local_only, server_note) = match &remote {
        Ok(_) => (false, None),
        Err(why) => (true, Some(format!("{why}: the local copy alone"))),
    };
    let mut rows = Vec::new();
    let mut matched: HashSet<String> = HashSet::new();
    if let Ok(remote) = remote {
        // A server memory is matched to the local copy by the `mq_id` in its
        // metadata, or by its Mem0 id (a server that replaced the metadata
        // on an update from elsewhere lost the `mq_id`).
        let remote_ids: Vec<String> = remote.iter().map(|m| m.id.clone()).collect();
        let by_remote = app
            .store
            .run(move |s| s.local_for_remote(&remote_ids))
            .await?;
        let mq_ids: Vec<String> = remote
            .iter()
            .filter_map(|m| m.mq_id().map(str::to_string))
            .chain(by_remote.values().cloned())
            .collect();
        let (live, gone) = app.store.run(move |s| s.local_ids(&mq_ids)).await?;
        for m in remote {
            let mq = m
                .mq_id()
                .map(str::to_string)
                .or_else(|| by_remote.get(&m.id).cloned());
            if hidden(&m, project, &pending, &gone)
                || mq.as_ref().is_some_and(|id| gone.contains(id))
            {
                continue;
            }
            let local = mq.as_ref().and_then(|id| live.get(id));
            let mut v = MemoryView::from_remote(m, project, &pending);
            if let Some(l) = local {
                v.id = Some(l.id.clone());
                matched.insert(l.id.clone());
                v.state = l.state;
                v.edit_queued |= l.edit_queued;
                v.created_at = l.created_at;
            }
            rows.push(v);
        }
    }
    for m in local {
        if !matched.contains(&m.id) {
            rows.push(MemoryView::from_local(m));
        }
    }
    rows.sort_by_key(|v| std::cmp::Reverse(v.created_at));
    let total = rows.len();
    let memories = rows
        .into_iter()
        .skip((page - 1) * page_size)
        .take(page_size)
        .collect();
    Ok(ListResult {
        project: project.to_string(),
        page,
        page_size,
        total,
        memories,
        local_only,
        server_note,
    })
}

/// The projects (users), agents and runs known here and on the server.
pub async fn entities(app: &App) -> Result<EntitiesResult, MemoriesError> {
    let local: Vec<LocalEntity> = app.store.run(|s| s.local_entities()).await?;
    let remote: Result<Vec<RemoteEntity>, String> = ask(app, async |c| c.entities().await).await;
    let mut out: Vec<EntityView> = local
        .into_iter()
        .map(|e| EntityView {
            kind: e.kind.to_string(),
            id: e.id,
            local_memories: e.memories,
            server_memories: None,
            on_server: false,
        })
        .collect();
    let (local_only, server_note) = match &remote {
        Ok(_) => (false, None),
        Err(why) => (true, Some(format!("{why}: the local copy alone"))),
    };
    if let Ok(remote) = remote {
        for r in remote {
            match out.iter_mut().find(|e| e.kind == r.kind && e.id == r.id) {
                Some(e) => {
                    e.on_server = true;
                    e.server_memories = r.memories;
                }
                None => out.push(EntityView {
                    kind: r.kind,
                    id: r.id,
                    local_memories: 0,
                    server_memories: r.memories,
                    on_server: true,
                }),
            }
        }
    }
    out.sort_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
    Ok(EntitiesResult {
        entities: out,
        local_only,
        server_note,
    })
}

/// Whether a memory the server returned is gone here: deleted (by its
/// Mem0 id or its local one) or forgotten with its project. A forget hides
/// every memory of the project that the local copy knows as deleted (all of
/// them up to the forget) and, among those saved elsewhere, the ones
/// created before it; a memory saved after the forget stays.
pub fn hidden(
    m: &RemoteMemory,
    project: &str,
    pending: &PendingChanges,
    gone_locally: &HashSet<String>,
) -> bool {
    if pending.deleted.contains(&m.id) {
        return true;
    }
    match m.mq_id() {
        Some(mq) => gone_locally.contains(mq),
        None => {
            let p = m.user_id.as_deref().unwrap_or(project);
            pending.forgotten.get(p).is_some_and(|&(_, at)| {
                m.created_at
                    .as_deref()
                    .and_then(parse_time)
                    .is_none_or(|t| t <= at)
            })
        }
    }
}

/// Unix ms of an RFC 3339 time as Mem0 writes it (`2026-11-30T10:00:00Z`,
/// `...00.123456-07:00`), None when it is not one.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', ' '])?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let split = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(split);
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next().flatten().unwrap_or(0));
    let ms = frac
        .chars()
        .take(3)
        .collect::<String>()
        .parse::<i64>()
        .map(|v| v * 10_i64.pow(3 - frac.len().min(3) as u32))
        .unwrap_or(0);
    let offset_min = match zone.chars().next() {
        Some(sign @ ('+' | '-')) => {
            let z = &zone[1..];
            let (zh, zm) = z
                .split_once(':')
                .unwrap_or((z.get(..2)?, z.get(2..).unwrap_or("0")));
            let m = zh.parse::<i64>().ok()? * 60 + zm.parse::<i64>().unwrap_or(0);
            if sign == '-' { -m } else { m }
        }
        _ => 0,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3_600 + mi * 60 + se) - offset_min * 60) * 1_000 + ms)
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn mem0_times_parse_with_and_without_offsets() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            parse_time("2023-11-14T15:13:20.123456-07:00"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            parse_time("2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_time("yesterday"), None);
    }
}
