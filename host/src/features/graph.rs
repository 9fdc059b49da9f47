//! Interop with `@modelcontextprotocol/server-memory`, the knowledge-graph
//! MCP server many users run beside Mem0: its JSONL file holds one object per
//! line, `{"type":"entity","name","entityType","observations":[...]}` or
//! `{"type":"relation","from","to","relationType"}`.
//!
//! - [`mirror`] merges the local graph into that file. It only ever adds:
//!   lines mem0-queue did not write stay as they are, and an entity of
//!   theirs that a memory names gains observations, never loses any. Each
//!   write holds a lock (`<file>.mem0-queue.lock`), goes through a temp file
//!   and a rename, and is retried when the file changed while it merged, so
//!   a write by server-memory itself is not lost.
//! - [`mirror_configured`] does so for the configured `graph_jsonl`, and
//!   [`mirror_loop`] after saves while `serve` runs.
//! - [`parse_jsonl`] reads such a file for `mem0-queue graph import`.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::engine::app::App;
use crate::engine::store::StoreError;
use crate::engine::store::graph::{Entity, Graph, Relation};

/// How many times a mirror re-merges when the file changes under it.
const MIRROR_ATTEMPTS: usize = 5;

/// The pause that gathers a burst of saves into one mirror write.
const MIRROR_DEBOUNCE: Duration = Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}; nothing was imported")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path} kept changing while mem0-queue merged into it; try again")]
    Busy { path: PathBuf },
    /// The local graph could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a mirror wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MirrorReport {
    pub entities_added: usize,
    pub observations_added: usize,
    pub relations_added: usize,
    /// Observations of ours taken out: their memory was deleted here, or
    /// its text changed (the new one is added).
    pub observations_removed: usize,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())))
}

/// Merges `ours` into the JSONL file at `path`, creating it if needed.
/// `known` holds the local ids of every memory this queue knows or deleted:
/// an observation of the file that names one of them (`(mq:ID, …)`, as
/// [`observation`](crate::engine::store::graph::observation) writes it) and
/// is no longer in `ours` is taken out; every other line of the file stays.
pub fn mirror(
    ours: &Graph,
    known: &HashSet<String>,
    path: &Path,
) -> Result<MirrorReport, GraphError> {
    let werr = |source| GraphError::Write {
        path: path.to_path_buf(),
        source,
    };
    let lock_path = lock_path(path);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(werr)?;
    lock.lock().map_err(werr)?;
    for _ in 0..MIRROR_ATTEMPTS {
        let before = stamp(path);
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(GraphError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let (out, report) = merge(&text, ours, known);
        if out == text {
            return Ok(report);
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.mem0-queue.{}.tmp",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("memory.jsonl"),
            std::process::id()
        ));
        {
            let mut f = std::fs::File::create(&tmp).map_err(werr)?;
            f.write_all(out.as_bytes()).map_err(werr)?;
            f.sync_all().map_err(werr)?;
        }
        if stamp(path) != before {
            let _ = std::fs::remove_file(&tmp);
            continue;
        }
        std::fs::rename(&tmp, path).map_err(werr)?;
        return Ok(report);
    }
    Err(GraphError::Busy {
        path: path.to_path_buf(),
    })
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".mem0-queue.lock");
    PathBuf::from(p)
}

/// The merged file text. Existing lines keep their place and their fields;
/// observations and new lines are added.
/// The memory id an observation of ours names: `... (mq:ID, time)`.
fn marker_id(observation: &str) -> Option<&str> {
    let start = observation.rfind("(mq:")? + 4;
    let rest = &observation[start..];
    Some(&rest[..rest.find(',')?])
}

fn merge(text: &str, ours: &Graph, known: &HashSet<String>) -> (String, MirrorReport) {
    let mut report = MirrorReport::default();
    let mut lines: Vec<Value> = Vec::new();
    let mut raw: Vec<Option<String>> = Vec::new(); // unparseable lines kept verbatim
    let mut entity_at: HashMap<String, usize> = HashMap::new();
    let mut relations: HashSet<(String, String, String)> = HashSet::new();
    for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => {
                match v.get("type").and_then(Value::as_str) {
                    Some("entity") => {
                        if let Some(n) = v.get("name").and_then(Value::as_str) {
                            entity_at.insert(n.to_string(), lines.len());
                        }
                    }
                    Some("relation") => {
                        let f = |k| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                        relations.insert((f("from"), f("to"), f("relationType")));
                    }
                    _ => {}
                }
                lines.push(v);
                raw.push(None);
            }
            Err(_) => {
                lines.push(Value::Null);
                raw.push(Some(line.to_string()));
            }
        }
    }
    let mut changed = vec![false; lines.len()];
    let current: HashSet<&str> = ours
        .entities
        .iter()
        .flat_map(|e| e.observations.iter().map(String::as_str))
        .collect();
    for (i, v) in lines.iter_mut().enumerate() {
        if v.get("type").and_then(Value::as_str) != Some("entity") {
            continue;
        }
        let Some(obs) = v.get_mut("observations").and_then(Value::as_array_mut) else {
            continue;
        };
        let before = obs.len();
        obs.retain(|o| {
            let Some(text) = o.as_str() else { return true };
            // Kept: not ours to take back, or still what the memory says.
            !marker_id(text).is_some_and(|id| known.contains(id)) || current.contains(text)
        });
        if obs.len() != before {
            report.observations_removed += before - obs.len();
            changed[i] = true;
        }
    }
    for e in &ours.entities {
        match entity_at.get(&e.name) {
            Some(&i) => {
                let obs = lines[i]
                    .get_mut("observations")
                    .and_then(Value::as_array_mut);
                let Some(obs) = obs else { continue };
                let have: HashSet<String> = obs
                    .iter()
                    .filter_map(|o| o.as_str().map(str::to_string))
                    .collect();
                for o in &e.observations {
                    if !have.contains(o) {
                        obs.push(json!(o));
                        report.observations_added += 1;
                        changed[i] = true;
                    }
                }
            }
            None => {
                entity_at.insert(e.name.clone(), lines.len());
                lines.push(json!({
                    "type": "entity",
                    "name": e.name,
                    "entityType": e.entity_type,
                    "observations": e.observations,
                }));
                raw.push(None);
                changed.push(true);
                report.entities_added += 1;
                report.observations_added += e.observations.len();
            }
        }
    }
    for r in &ours.relations {
        let key = (r.from.clone(), r.to.clone(), r.relation_type.clone());
        if relations.insert(key) {
            lines.push(json!({"type": "relation", "from": r.from, "to": r.to, "relationType": r.relation_type}));
            raw.push(None);
            changed.push(true);
            report.relations_added += 1;
        }
    }
    if !changed.iter().any(|c| *c) {
        return (text.to_string(), report);
    }
    // Re-serialize only what changed; other lines stay byte for byte.
    let original: Vec<&str> = text.split('\n').filter(|l| !l.trim().is_empty()).collect();
    let mut out = String::new();
    for (i, v) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match (&raw[i], changed[i], original.get(i)) {
            (Some(r), _, _) => out.push_str(r),
            (None, false, Some(o)) => out.push_str(o),
            _ => out.push_str(&v.to_string()),
        }
    }
    (out, report)
}

/// Reads a server-memory JSONL file. Every line must be an entity or a
/// relation; the first bad line fails the whole read.
pub fn parse_jsonl(path: &Path) -> Result<Graph, GraphError> {
    let text = std::fs::read_to_string(path).map_err(|source| GraphError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut g = Graph::default();
    for (i, line) in text.split('\n').enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| GraphError::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let v: Value =
            serde_json::from_str(line).map_err(|e| bad(format!("invalid JSON ({e})")))?;
        match v.get("type").and_then(Value::as_str) {
            Some("entity") => g.entities.push(
                serde_json::from_value::<Entity>(v)
                    .map_err(|e| bad(format!("bad entity ({e})")))?,
            ),
            Some("relation") => g.relations.push(
                serde_json::from_value::<Relation>(v)
                    .map_err(|e| bad(format!("bad relation ({e})")))?,
            ),
            _ => return Err(bad("neither an entity nor a relation".into())),
        }
    }
    Ok(g)
}

/// Merges the local graph into the configured JSONL file (`graph_jsonl`),
/// if any.
pub async fn mirror_configured(app: &App) -> Result<Option<MirrorReport>, GraphError> {
    let Some(path) = app.config().graph_jsonl.clone() else {
        return Ok(None);
    };
    let (graph, known) = app
        .store
        .run(|s| Ok((s.graph_all()?, s.memory_ids()?)))
        .await?;
    let report = tokio::task::spawn_blocking(move || mirror(&graph, &known, &path))
        .await
        .map_err(|e| GraphError::Store(StoreError::Task(e.to_string())))??;
    Ok(Some(report))
}

/// Keeps the graph JSONL mirror up to date while `serve` runs: after saves,
/// at most once per `MIRROR_DEBOUNCE` (300 ms), and once more at shutdown.
pub async fn mirror_loop(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    if app.config().graph_jsonl.is_none() {
        return;
    }
    loop {
        let stopping = tokio::select! {
            _ = app.graph_dirty.notified() => false,
            _ = stop.changed() => true,
        };
        if !stopping {
            tokio::time::sleep(MIRROR_DEBOUNCE).await;
        }
        if let Err(e) = mirror_configured(&app).await {
            tracing::warn!(error = %e, "the graph JSONL mirror failed; it is retried after the next save");
        }
        if stopping || *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> Graph {
        Graph {
            entities: vec![
                Entity {
                    name: "proj".into(),
                    entity_type: "project".into(),
                    observations: vec!["a memory (mq:1)".into()],
                },
                Entity {
                    name: "alice".into(),
                    entity_type: "entity".into(),
                    observations: vec!["a memory (mq:1)".into()],
                },
            ],
            relations: vec![Relation {
                from: "alice".into(),
                to: "proj".into(),
                relation_type: "works_on".into(),
            }],
        }
    }

    #[test]
    fn merging_keeps_foreign_lines_and_only_adds() {
        let theirs = "{\"type\":\"entity\",\"name\":\"alice\",\"entityType\":\"person\",\"observations\":[\"likes tea\"]}\n\
                      {\"type\":\"relation\",\"from\":\"alice\",\"to\":\"bob\",\"relationType\":\"knows\"}";
        let known = HashSet::from(["1".to_string()]);
        let (out, report) = merge(theirs, &ours(), &known);
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines[0]["entityType"], "person", "their type is kept");
        assert_eq!(
            lines[0]["observations"],
            json!(["likes tea", "a memory (mq:1)"])
        );
        assert_eq!(
            out.lines().nth(1),
            theirs.lines().nth(1),
            "their relation is untouched"
        );
        assert_eq!(lines.len(), 4);
        assert_eq!(
            report,
            MirrorReport {
                entities_added: 1,
                observations_added: 2,
                relations_added: 1,
                observations_removed: 0,
            }
        );
        // Idempotent.
        let (again, r2) = merge(&out, &ours(), &known);
        assert_eq!(again, out);
        assert_eq!(r2, MirrorReport::default());
    }

    #[test]
    fn a_deleted_or_edited_memory_takes_its_observations_back() {
        let theirs = "{\"type\":\"entity\",\"name\":\"proj\",\"entityType\":\"project\",\"observations\":[\"likes tea\",\"old text (mq:7, 2026-01-01T00:00:00.000Z)\",\"gone (mq:8, 2026-01-01T00:00:00.000Z)\",\"elsewhere (mq:9, 2026-01-01T00:00:00.000Z)\"]}";
        let mut g = ours();
        g.entities[0]
            .observations
            .push("new text (mq:7, 2026-01-01T00:00:00.000Z)".into());
        // 7 was edited, 8 deleted here; 9 is another queue's memory.
        let known = HashSet::from(["1".to_string(), "7".to_string(), "8".to_string()]);
        let (out, report) = merge(theirs, &g, &known);
        let first: Value = serde_json::from_str(out.lines().next().expect("a line")).expect("json");
        assert_eq!(
            first["observations"],
            json!([
                "likes tea",
                "elsewhere (mq:9, 2026-01-01T00:00:00.000Z)",
                "a memory (mq:1)",
                "new text (mq:7, 2026-01-01T00:00:00.000Z)"
            ])
        );
        assert_eq!(report.observations_removed, 2);
    }
}
