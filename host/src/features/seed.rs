//! Migration from the seed's JSON queue (`~/.claude/mem0_queue.json`):
//! `{"queue": [...], "last_100": [...], "failed": [...], "stats": {...}}`.
//!
//! The import reads the whole file and validates it before writing anything;
//! it writes in one transaction, gives every entry a stable id (its own UUID
//! if it has one, else one derived from its project, text and time), and so
//! a second import adds nothing. The file itself is never modified.
//!
//! The seed's entries are loosely shaped; accepted fields are `content` (or
//! `text`, `memory`), `project` (or `user_id`), `timestamp` (or
//! `created_at`: RFC 3339 text or unix seconds), `metadata`, `id`, `retries`.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::engine::store::{EntryView, Limits, NewEntry, Origin, State, Stats, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a seed queue file: {reason}; nothing was imported")]
    Malformed { path: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import did.
#[derive(Debug, Default, Clone, serde::Serialize, PartialEq, Eq)]
pub struct ImportReport {
    pub pending: u64,
    pub failed: u64,
    /// From `last_100` only: saved before and already synced by the seed.
    pub delivered: u64,
    /// Already present (a previous import, or the same text twice).
    pub skipped: u64,
    pub stats_merged: bool,
}

struct SeedEntry {
    new: NewEntry,
    state: State,
    retries: u32,
}

/// Parses and checks the whole file; returns the entries to import.
fn parse(
    path: &str,
    text: &str,
    default_project: &str,
    now_ms: i64,
) -> Result<(Vec<SeedEntry>, Value), SeedError> {
    let bad = |reason: String| SeedError::Malformed {
        path: path.into(),
        reason,
    };
    let root: Value = serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON ({e})")))?;
    let obj = root
        .as_object()
        .ok_or_else(|| bad("the top level is not an object".into()))?;
    if !["queue", "failed", "last_100", "stats"]
        .iter()
        .any(|k| obj.contains_key(*k))
    {
        return Err(bad("it has none of queue, failed, last_100, stats".into()));
    }
    for k in obj.keys() {
        if !["queue", "failed", "last_100", "stats"].contains(&k.as_str()) {
            return Err(bad(format!("unknown top-level key `{k}`")));
        }
    }
    let mut out = Vec::new();
    for (list, state) in [
        ("queue", State::Pending),
        ("failed", State::Failed),
        ("last_100", State::Delivered),
    ] {
        let items = match obj.get(list) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(a)) => a,
            Some(_) => return Err(bad(format!("`{list}` is not a list"))),
        };
        for (i, item) in items.iter().enumerate() {
            out.push(
                entry(item, state, default_project, now_ms)
                    .map_err(|r| bad(format!("{list}[{i}]: {r}")))?,
            );
        }
    }
    let stats = obj.get("stats").cloned().unwrap_or(Value::Null);
    if !(stats.is_null() || stats.is_object()) {
        return Err(bad("`stats` is not an object".into()));
    }
    Ok((out, stats))
}

fn entry(
    item: &Value,
    state: State,
    default_project: &str,
    now_ms: i64,
) -> Result<SeedEntry, String> {
    let o = item.as_object().ok_or("not an object")?;
    let text = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str))
            .map(str::to_string)
    };
    let content = text(&["content", "text", "memory"]).ok_or("no content")?;
    let project = text(&["project", "user_id"]).unwrap_or_else(|| default_project.to_string());
    let created_at = match o.get("timestamp").or_else(|| o.get("created_at")) {
        None | Some(Value::Null) => now_ms,
        Some(Value::Number(n)) => n
            .as_f64()
            .map(|s| {
                if s > 1e11 {
                    s as i64
                } else {
                    (s * 1000.0) as i64
                }
            })
            .ok_or("bad timestamp")?,
        Some(Value::String(s)) => parse_time(s).ok_or_else(|| format!("bad timestamp `{s}`"))?,
        Some(_) => return Err("bad timestamp".into()),
    };
    let metadata = match o.get("metadata") {
        None | Some(Value::Null) => json!({}),
        Some(m @ Value::Object(_)) => m.clone(),
        Some(_) => return Err("metadata is not an object".into()),
    };
    let id = match o
        .get("id")
        .and_then(Value::as_str)
        .map(uuid::Uuid::parse_str)
    {
        Some(Ok(u)) => u.to_string(),
        _ => stable_id(&project, &content, created_at),
    };
    let retries = o.get("retries").and_then(Value::as_u64).unwrap_or(0) as u32;
    Ok(SeedEntry {
        new: NewEntry {
            project,
            agent_id: None,
            run_id: None,
            content,
            metadata,
            created_at,
            origin: Origin::Import,
            infer: None,
            id: Some(id),
        },
        state,
        retries,
    })
}

/// RFC 3339, or the seed's Python `isoformat()` without a zone (taken as UTC).
fn parse_time(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z').split('+').next()?).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64)
}

/// A UUID (version 8) derived from the entry, so a re-import finds it.
fn stable_id(project: &str, content: &str, created_at: i64) -> String {
    let mut h = Sha256::new();
    h.update(b"mem0-queue seed import\0");
    h.update(project.as_bytes());
    h.update(b"\0");
    h.update(content.as_bytes());
    h.update(created_at.to_le_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Uuid::new_v8(b).to_string()
}

/// Imports a seed file. Validates everything first; writes in one transaction.
pub fn import(
    store: &mut Store,
    path: &std::path::Path,
    default_project: &str,
    limits: &Limits,
    now_ms: i64,
) -> Result<ImportReport, SeedError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SeedError::Read {
        path: shown.clone(),
        source,
    })?;
    let (entries, stats) = parse(&shown, &text, default_project, now_ms)?;
    for e in &entries {
        if e.new.content.len() > limits.max_content_bytes {
            return Err(SeedError::Malformed {
                path: shown,
                reason: format!(
                    "an entry of {} bytes is over max_content_bytes",
                    e.new.content.len()
                ),
            });
        }
    }
    let stats_key = format!(
        "seed_stats_imported:{}",
        hex(&Sha256::digest(stats.to_string().as_bytes()))
    );
    let rows: Vec<(NewEntry, State, u32)> = entries
        .into_iter()
        .map(|e| (e.new, e.state, e.retries))
        .collect();
    let (inserted, merged) = store.import_batch(&rows, &stats, &stats_key)?;
    let mut report = ImportReport {
        stats_merged: merged,
        ..Default::default()
    };
    for ((_, state, _), ok) in rows.iter().zip(inserted) {
        match (ok, state) {
            (false, _) => report.skipped += 1,
            (true, State::Pending) => report.pending += 1,
            (true, State::Failed) => report.failed += 1,
            (true, _) => report.delivered += 1,
        }
    }
    Ok(report)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One entry in the seed's item shape. A change (not a save) says which
/// operation it is and what it changes, beyond the seed's own fields.
fn seed_item(e: &EntryView) -> Value {
    let mut item = json!({
        "id": e.id,
        "project": e.project,
        "content": e.content,
        "timestamp": crate::engine::text::rfc3339(e.created_at),
        "retries": e.attempts,
        "metadata": e.metadata,
        "state": e.state,
        "remote_ids": e.remote_ids,
    });
    if e.op != crate::engine::store::Op::Add {
        item["operation"] = json!(e.op);
        item["target"] = json!(e.target);
        item["mem0_id"] = json!(e.remote_target);
    }
    item
}

/// The queue in the seed's JSON shape.
pub fn export(store: &Store) -> Result<Value, StoreError> {
    let all = |state| store.list(state, usize::MAX >> 1, true);
    let mut queue = all(State::Pending)?;
    queue.extend(all(State::InFlight)?);
    let mut failed = all(State::Failed)?;
    failed.extend(all(State::Dead)?);
    let recent = store.recent(crate::engine::store::RECENT_MAX, None)?;
    let s: Stats = store.stats()?;
    Ok(json!({
        "queue": queue.iter().map(seed_item).collect::<Vec<_>>(),
        "last_100": recent.iter().map(seed_item).collect::<Vec<_>>(),
        "failed": failed.iter().map(seed_item).collect::<Vec<_>>(),
        "stats": {
            "total_queued": s.total_queued,
            "total_synced": s.total_synced,
            "total_failed": s.total_failed,
            "last_sync": s.last_sync.map(crate::engine::text::rfc3339),
        }
    }))
}
