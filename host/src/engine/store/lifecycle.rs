//! The memory lifecycle in the queue: update, delete and forget (delete
//! all of a project) are operations of the same queue as a save, each one
//! committed in one transaction before it is acknowledged.
//!
//! - A change to a memory that never reached Mem0 is applied to the local
//!   copy in the same transaction, and nothing is sent for it: a delete
//!   cancels the add, an update replaces the queued text (and its dedup key).
//! - A change to a memory whose add is in flight is applied locally too, and
//!   queued behind the add: it is sent once the add is delivered (and
//!   dropped if the add never reaches Mem0).
//! - A change to a delivered memory is queued against its Mem0 id. One save
//!   may have become several Mem0 memories (with `infer`); an update must
//!   then name which, a delete by the local id removes them all.
//! - Read-your-writes: the local copy shows an update at once, and a deleted
//!   memory is hidden from every read at once (`deleted_at`), whatever the
//!   server still returns before the delete reaches it.
//!
//! The order in which operations may be claimed (a change after the earlier
//! changes of its memory, a project's changes around its forget) lives in
//! [`CLAIMABLE`], shared with the worker's claim.

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Limits, State, Store, StoreError, content_hash_of, graph, validate_id};

/// What a queued operation does to Mem0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Add,
    Update,
    Delete,
    DeleteAll,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Add, Op::Update, Op::Delete, Op::DeleteAll];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::DeleteAll => "delete_all",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl From<Op> for crate::engine::policy::Operation {
    fn from(op: Op) -> Self {
        match op {
            Op::Add => crate::engine::policy::Operation::Add,
            Op::Update => crate::engine::policy::Operation::Update,
            Op::Delete => crate::engine::policy::Operation::Delete,
            Op::DeleteAll => crate::engine::policy::Operation::DeleteAll,
        }
    }
}

/// The rule that orders the queue, as an SQL condition on a pending row `e`
/// (shared by the worker's claim and its next-due time):
/// - an update or a delete waits until its memory's add, and every earlier
///   change of the same memory (local or Mem0 id), is settled;
/// - a forget (`delete_all`) waits until everything earlier in its project
///   is settled, so no add lands after it;
/// - anything in a project waits behind an earlier forget of that project,
///   so a memory saved after a forget is never deleted by it.
///
/// Settled means delivered or dead; a failed row still blocks (it is
/// revived at the next run).
pub const CLAIMABLE: &str = "
    NOT EXISTS (SELECT 1 FROM entries b
                 WHERE b.op = 'delete_all' AND b.project = e.project AND b.seq < e.seq
                   AND b.state IN ('pending', 'in_flight', 'failed'))
    AND (e.op = 'add' OR e.op = 'delete_all' OR NOT EXISTS (
        SELECT 1 FROM entries b
         WHERE b.seq < e.seq AND b.state IN ('pending', 'in_flight', 'failed')
           AND ((e.target IS NOT NULL AND (b.id = e.target OR b.target = e.target))
             OR (e.remote_target IS NOT NULL AND b.remote_target = e.remote_target))))
    AND (e.op != 'delete_all' OR NOT EXISTS (
        SELECT 1 FROM entries b
         WHERE b.project = e.project AND b.seq < e.seq
           AND b.state IN ('pending', 'in_flight', 'failed')))";

/// An add that never reached Mem0: not delivered, not in flight, and no
/// earlier attempt may have stored it.
const NEVER_SENT: &str =
    "state IN ('pending', 'failed', 'dead') AND needs_reconcile = 0 AND event_id IS NULL";

/// New text and/or metadata for a memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub text: Option<String>,
    /// Merged into the memory's metadata: the keys given replace, the others
    /// stay (the self-hosted server's own rule).
    pub metadata: Option<Value>,
}

impl Changes {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(t) = &self.text {
            m.insert("text".into(), Value::String(t.clone()));
        }
        if let Some(md) = &self.metadata {
            m.insert("metadata".into(), md.clone());
        }
        Value::Object(m)
    }

    /// Reads the `changes` column of an update row.
    pub fn from_json(v: &Value) -> Changes {
        Changes {
            text: v.get("text").and_then(Value::as_str).map(str::to_string),
            metadata: v.get("metadata").filter(|m| m.is_object()).cloned(),
        }
    }
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ChangeOutcome {
    /// The memory never reached Mem0: the local copy was changed (or, for a
    /// delete, the save cancelled) and nothing will be sent.
    AppliedLocally { id: String },
    /// Queued for delivery: `op_ids` are the queued operations, each
    /// against one Mem0 memory of `remote_ids` (empty while the memory's add
    /// is in flight: they are sent once it is delivered).
    Queued {
        /// The local memory, when the local copy has it.
        id: Option<String>,
        op_ids: Vec<String>,
        remote_ids: Vec<String>,
        /// True when the add is in flight and the change waits behind it.
        behind_add: bool,
    },
}

/// What a forget did, or would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ForgetOutcome {
    pub project: String,
    /// Saves that never reached Mem0, cancelled here.
    pub cancelled: u64,
    /// Memories on Mem0 (delivered, or with their add in flight), hidden
    /// here at once and deleted on the server by the queued operation.
    pub on_server: u64,
    /// Queued changes of the project dropped: the forget covers them.
    pub changes_dropped: u64,
    /// The queued `delete_all` (None for a preview). It is queued even when
    /// this queue never sent anything to the project: Mem0 may hold memories
    /// of it saved by other tools, and forget means all of them.
    pub op_id: Option<String>,
}

/// A memory of the local copy, as the lifecycle tools show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LocalMemory {
    pub id: String,
    pub project: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub content: String,
    pub metadata: Value,
    pub created_at: i64,
    pub state: State,
    pub remote_ids: Vec<String>,
    /// True when a change of this memory is queued and not delivered yet.
    pub edit_queued: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_reason: Option<String>,
}

/// A change queued against a Mem0 memory and not delivered yet, for the
/// read-your-writes overlay of what the server returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PendingChanges {
    /// Mem0 ids whose latest queued change is an update: the new text and
    /// metadata to show instead of the server's.
    pub updated: HashMap<String, Changes>,
    /// Mem0 ids deleted here (queued or delivered): never shown again.
    pub deleted: HashSet<String>,
    /// Projects with a forget, and the `seq` and time it was made at: a
    /// server memory of the project older than it is not shown.
    pub forgotten: HashMap<String, (i64, i64)>,
}

/// An entity known to the local copy: a project (Mem0's `user_id`), an
/// agent or a run, with how many live memories it has.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LocalEntity {
    /// "user", "agent" or "run", as Mem0 names them.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub memories: u64,
}

/// The columns of a memory (an add row) that the lifecycle reads.
const MEMORY_COLUMNS: &str = "id, project, agent_id, run_id, content, metadata, created_at, state, \
     remote_ids, last_error, dead_reason, deleted_at, (needs_reconcile = 1 OR event_id IS NOT NULL)";

struct MemoryRow {
    m: LocalMemory,
    deleted: bool,
    /// An earlier attempt of the add may have stored it (an unknown
    /// outcome, a platform event not confirmed): not "never sent".
    maybe_sent: bool,
}

impl MemoryRow {
    /// The state a change goes by: an add that may already be on the
    /// server (its last outcome unknown) counts as in flight, so a change
    /// goes behind it, in case the lookup finds it there.
    fn effective_state(&self) -> State {
        match self.m.state {
            State::Pending | State::Failed if self.maybe_sent => State::InFlight,
            s => s,
        }
    }
}

fn memory_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MemoryRow> {
    let metadata: String = r.get(5)?;
    let state: String = r.get(7)?;
    let remote: String = r.get(8)?;
    Ok(MemoryRow {
        m: LocalMemory {
            id: r.get(0)?,
            project: r.get(1)?,
            agent_id: r.get(2)?,
            run_id: r.get(3)?,
            content: r.get(4)?,
            metadata: serde_json::from_str(&metadata).unwrap_or_default(),
            created_at: r.get(6)?,
            state: State::parse(&state).unwrap_or(State::Pending),
            remote_ids: serde_json::from_str(&remote).unwrap_or_default(),
            edit_queued: false,
            last_error: r.get(9)?,
            dead_reason: r.get(10)?,
        },
        deleted: r.get::<_, Option<i64>>(11)?.is_some(),
        maybe_sent: r.get::<_, i64>(12)? != 0,
    })
}

/// Which memory an id names.
enum Found {
    /// A memory of the local copy; `remote` when it was named by one of its
    /// Mem0 ids.
    Local {
        row: Box<MemoryRow>,
        remote: Option<String>,
    },
    /// A Mem0 id the local copy does not know (a memory saved elsewhere).
    RemoteOnly(String),
}

fn find(tx: &Transaction<'_>, id: &str) -> Result<Found, StoreError> {
    let by_local = tx
        .query_row(
            &format!("SELECT {MEMORY_COLUMNS} FROM entries WHERE id = ?1 AND op = 'add'"),
            [id],
            memory_row,
        )
        .optional()?;
    if let Some(row) = by_local {
        return Ok(Found::Local {
            row: Box::new(row),
            remote: None,
        });
    }
    let by_remote = tx
        .query_row(
            &format!(
                "SELECT {MEMORY_COLUMNS} FROM entries
                  WHERE id = (SELECT entry_id FROM remote_memories WHERE remote_id = ?1)"
            ),
            [id],
            memory_row,
        )
        .optional()?;
    Ok(match by_remote {
        Some(row) => Found::Local {
            row: Box::new(row),
            remote: Some(id.to_string()),
        },
        None => Found::RemoteOnly(id.to_string()),
    })
}

/// Mem0 ids and our own ids are UUIDs; anything else is refused before it
/// is queued (the self-hosted server answers a malformed id with a 502 that
/// would be retried forever).
pub fn validate_memory_id(id: &str) -> Result<(), StoreError> {
    uuid::Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| StoreError::Invalid {
            field: "id",
            reason: "not a memory id (a UUID: the local id `mq_id` or the Mem0 id)".into(),
        })
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound(id.to_string())
}

fn insert_op(
    tx: &Transaction<'_>,
    op: Op,
    project: &str,
    target: Option<&str>,
    remote_target: Option<&str>,
    changes: Option<&Changes>,
    now_ms: i64,
) -> Result<String, StoreError> {
    let id = uuid::Uuid::now_v7().to_string();
    let content = changes.and_then(|c| c.text.clone()).unwrap_or_default();
    let metadata = changes
        .and_then(|c| c.metadata.clone())
        .unwrap_or_else(|| Value::Object(Map::new()));
    tx.execute(
        "INSERT INTO entries (id, op, project, content, content_hash, metadata, created_at,
                              target, remote_target, changes, origin)
         VALUES (?1, ?2, ?3, ?4, ?1, ?5, ?6, ?7, ?8, ?9, 'mcp')",
        params![
            id,
            op.as_str(),
            project,
            content,
            metadata.to_string(),
            now_ms,
            target,
            remote_target,
            changes.map(|c| c.to_json().to_string()),
        ],
    )?;
    tx.execute(
        "UPDATE stats SET value = value + 1 WHERE key = 'total_queued'",
        [],
    )?;
    Ok(id)
}

/// Counts every change made here (meta `local_changes`), so a mirror that
/// watches the queue sees an edit of a memory that was never sent, which
/// changes no count.
fn bump_changes(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('local_changes', '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
        [],
    )?;
    Ok(())
}

/// Records that a memory is gone here (for the vault mirror).
fn tombstone(tx: &Transaction<'_>, id: &str, project: &str, now_ms: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR IGNORE INTO tombstones (entry_id, project, deleted_at) VALUES (?1, ?2, ?3)",
        params![id, project, now_ms],
    )?;
    Ok(())
}

/// Removes a memory's local traces: its graph observations and relations.
fn drop_graph(tx: &Transaction<'_>, entry_id: &str) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM graph_observations WHERE entry_id = ?1",
        [entry_id],
    )?;
    tx.execute(
        "DELETE FROM graph_relations WHERE entry_id = ?1",
        [entry_id],
    )?;
    Ok(())
}

/// `base` with `patch`'s keys replacing its own (the self-hosted server's
/// metadata rule, used for the local copy and for the platform's update).
pub fn merge_metadata(base: &Value, patch: &Value) -> Value {
    let mut out = base.as_object().cloned().unwrap_or_default();
    if let Some(p) = patch.as_object() {
        for (k, v) in p {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

impl Store {
    /// Changes a memory's text and/or metadata; see the module doc for what
    /// is applied locally and what is queued. `project` names the project of
    /// a memory the local copy does not have (a Mem0 id from elsewhere).
    pub fn update_memory(
        &mut self,
        id: &str,
        changes: &Changes,
        project: &str,
        limits: &Limits,
        now_ms: i64,
    ) -> Result<ChangeOutcome, StoreError> {
        validate_memory_id(id)?;
        validate_changes(changes, limits)?;
        let tx = self
            .conn()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let outcome = match find(&tx, id)? {
            Found::RemoteOnly(remote) => {
                validate_id("project", project)?;
                let op = insert_op(
                    &tx,
                    Op::Update,
                    project,
                    None,
                    Some(&remote),
                    Some(changes),
                    now_ms,
                )?;
                ChangeOutcome::Queued {
                    id: None,
                    op_ids: vec![op],
                    remote_ids: vec![remote],
                    behind_add: false,
                }
            }
            Found::Local { row, .. } if row.deleted => return Err(not_found(id)),
            Found::Local { row, remote } => {
                let m = &row.m;
                match row.effective_state() {
                    State::Pending | State::Failed | State::Dead => {
                        rewrite_local(&tx, m, changes)?;
                        // Not on the server: the next attempt sends the new
                        // text. An edited entry that the server had rejected
                        // gets a fresh start: the edit may be its fix.
                        tx.execute(
                            "UPDATE entries SET sent_text = NULL, sent_metadata = NULL WHERE id = ?1",
                            [&m.id],
                        )?;
                        tx.execute(
                            "UPDATE entries SET state = 'pending', attempts_run = 0, next_attempt_at = 0,
                                    dead_reason = NULL, dead_auth = 0
                              WHERE id = ?1 AND state IN ('failed', 'dead')",
                            [&m.id],
                        )?;
                        ChangeOutcome::AppliedLocally { id: m.id.clone() }
                    }
                    State::InFlight => {
                        rewrite_local(&tx, m, changes)?;
                        let op = insert_op(
                            &tx,
                            Op::Update,
                            &m.project,
                            Some(&m.id),
                            None,
                            Some(changes),
                            now_ms,
                        )?;
                        ChangeOutcome::Queued {
                            id: Some(m.id.clone()),
                            op_ids: vec![op],
                            remote_ids: Vec::new(),
                            behind_add: true,
                        }
                    }
                    State::Delivered => {
                        let target = match (&remote, m.remote_ids.as_slice()) {
                            (Some(r), _) => r.clone(),
                            (None, [one]) => one.clone(),
                            (None, []) => {
                                return Err(StoreError::Invalid {
                                    field: "id",
                                    reason: "Mem0 kept nothing from this save (it found nothing \
                                             new in it), so there is no memory on the server to \
                                             change; save the corrected text as a new memory"
                                        .into(),
                                });
                            }
                            (None, many) => {
                                return Err(StoreError::Invalid {
                                    field: "id",
                                    reason: format!(
                                        "this save became {} memories on Mem0 ({}); name the one \
                                         to change by its Mem0 id",
                                        many.len(),
                                        many.join(", ")
                                    ),
                                });
                            }
                        };
                        // The local copy follows when it is that one memory.
                        if m.remote_ids.len() <= 1 {
                            rewrite_local(&tx, m, changes)?;
                        }
                        let op = insert_op(
                            &tx,
                            Op::Update,
                            &m.project,
                            Some(&m.id),
                            Some(&target),
                            Some(changes),
                            now_ms,
                        )?;
                        ChangeOutcome::Queued {
                            id: Some(m.id.clone()),
                            op_ids: vec![op],
                            remote_ids: vec![target],
                            behind_add: false,
                        }
                    }
                }
            }
        };
        bump_changes(&tx)?;
        tx.commit()?;
        Ok(outcome)
    }

    /// Deletes a memory; see the module doc.
    pub fn delete_memory(
        &mut self,
        id: &str,
        project: &str,
        now_ms: i64,
    ) -> Result<ChangeOutcome, StoreError> {
        validate_memory_id(id)?;
        let tx = self
            .conn()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let outcome = match find(&tx, id)? {
            Found::RemoteOnly(remote) => {
                validate_id("project", project)?;
                let op = insert_op(&tx, Op::Delete, project, None, Some(&remote), None, now_ms)?;
                ChangeOutcome::Queued {
                    id: None,
                    op_ids: vec![op],
                    remote_ids: vec![remote],
                    behind_add: false,
                }
            }
            Found::Local { row, .. } if row.deleted => return Err(not_found(id)),
            Found::Local { row, remote } => {
                let m = &row.m;
                match row.effective_state() {
                    State::Pending | State::Failed | State::Dead => {
                        // Never sent: the save is cancelled.
                        drop_graph(&tx, &m.id)?;
                        tombstone(&tx, &m.id, &m.project, now_ms)?;
                        tx.execute("DELETE FROM entries WHERE id = ?1", [&m.id])?;
                        ChangeOutcome::AppliedLocally { id: m.id.clone() }
                    }
                    State::InFlight => {
                        mark_deleted(&tx, &m.id, &m.project, now_ms)?;
                        let op = insert_op(
                            &tx,
                            Op::Delete,
                            &m.project,
                            Some(&m.id),
                            None,
                            None,
                            now_ms,
                        )?;
                        ChangeOutcome::Queued {
                            id: Some(m.id.clone()),
                            op_ids: vec![op],
                            remote_ids: Vec::new(),
                            behind_add: true,
                        }
                    }
                    State::Delivered => {
                        let targets: Vec<String> = match &remote {
                            Some(r) => vec![r.clone()],
                            None => m.remote_ids.clone(),
                        };
                        let mut ops = Vec::new();
                        for t in &targets {
                            ops.push(insert_op(
                                &tx,
                                Op::Delete,
                                &m.project,
                                Some(&m.id),
                                Some(t),
                                None,
                                now_ms,
                            )?);
                        }
                        // The memory is gone here once every Mem0 memory it
                        // became is deleted (at once, for a delete by its own id).
                        let left: i64 = tx.query_row(
                            "SELECT count(*) FROM remote_memories r WHERE r.entry_id = ?1
                               AND NOT EXISTS (SELECT 1 FROM entries d
                                                WHERE d.op = 'delete' AND d.remote_target = r.remote_id)",
                            [&m.id],
                            |r| r.get(0),
                        )?;
                        if left == 0 {
                            mark_deleted(&tx, &m.id, &m.project, now_ms)?;
                        }
                        if ops.is_empty() {
                            ChangeOutcome::AppliedLocally { id: m.id.clone() }
                        } else {
                            ChangeOutcome::Queued {
                                id: Some(m.id.clone()),
                                op_ids: ops,
                                remote_ids: targets,
                                behind_add: false,
                            }
                        }
                    }
                }
            }
        };
        bump_changes(&tx)?;
        tx.commit()?;
        Ok(outcome)
    }

    /// What forgetting `project` would do, without doing it.
    pub fn forget_preview(&self, project: &str) -> Result<ForgetOutcome, StoreError> {
        let count = |sql: &str| -> Result<u64, StoreError> {
            Ok(self
                .conn
                .query_row(sql, [project], |r| r.get::<_, i64>(0))?
                .max(0) as u64)
        };
        Ok(ForgetOutcome {
            project: project.to_string(),
            cancelled: count(&format!(
                "SELECT count(*) FROM entries WHERE op = 'add' AND project = ?1
                       AND deleted_at IS NULL AND {NEVER_SENT}"
            ))?,
            on_server: count(&format!(
                "SELECT count(*) FROM entries WHERE op = 'add' AND project = ?1
                   AND deleted_at IS NULL AND NOT ({NEVER_SENT})"
            ))?,
            changes_dropped: count(
                "SELECT count(*) FROM entries WHERE op IN ('update', 'delete') AND project = ?1
                   AND state IN ('pending', 'failed')",
            )?,
            op_id: None,
        })
    }

    /// Deletes every memory of `project` (Mem0's delete-all of its
    /// `user_id`): saves never sent are cancelled, the rest hidden at once,
    /// and one `delete_all` is queued, ordered after everything earlier in
    /// the project and before everything later.
    pub fn forget_project(
        &mut self,
        project: &str,
        now_ms: i64,
    ) -> Result<ForgetOutcome, StoreError> {
        validate_id("project", project)?;
        let mut out = self.forget_preview(project)?;
        let tx = self
            .conn()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let doomed: Vec<String> = tx
            .prepare(
                "SELECT id FROM entries WHERE op = 'add' AND project = ?1 AND deleted_at IS NULL",
            )?
            .query_map([project], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for id in &doomed {
            drop_graph(&tx, id)?;
            tombstone(&tx, id, project, now_ms)?;
        }
        bump_changes(&tx)?;
        tx.execute(
            "DELETE FROM entries WHERE op IN ('update', 'delete') AND project = ?1
               AND state IN ('pending', 'failed')",
            [project],
        )?;
        tx.execute(
            &format!(
                "DELETE FROM entries WHERE op = 'add' AND project = ?1 AND deleted_at IS NULL
                   AND {NEVER_SENT}"
            ),
            [project],
        )?;
        tx.execute(
            "UPDATE entries SET deleted_at = ?2 WHERE op = 'add' AND project = ?1 AND deleted_at IS NULL",
            params![project, now_ms],
        )?;
        // A project this queue never sent anything to may still hold
        // memories saved elsewhere: the forget is queued all the same.
        out.op_id = Some(insert_op(
            &tx,
            Op::DeleteAll,
            project,
            None,
            None,
            None,
            now_ms,
        )?);
        tx.commit()?;
        Ok(out)
    }

    /// One memory of the local copy, by its local id or one of its Mem0 ids
    /// (None when it is unknown here or deleted).
    pub fn get_memory(&self, id: &str) -> Result<Option<LocalMemory>, StoreError> {
        let row = self
            .conn
            .query_row(
                &format!(
                    "SELECT {MEMORY_COLUMNS} FROM entries
                      WHERE op = 'add' AND (id = ?1
                         OR id = (SELECT entry_id FROM remote_memories WHERE remote_id = ?1))"
                ),
                [id],
                memory_row,
            )
            .optional()?;
        let Some(row) = row.filter(|r| !r.deleted) else {
            return Ok(None);
        };
        let mut m = row.m;
        m.edit_queued = self.edit_queued(&m.id)?;
        Ok(Some(m))
    }

    fn edit_queued(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM entries WHERE target = ?1 AND op IN ('update', 'delete')
                   AND state IN ('pending', 'in_flight', 'failed') LIMIT 1",
                [id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The live memories of a project (optionally of one agent or run),
    /// newest first, at most `limit`.
    pub fn list_memories(
        &self,
        project: &str,
        agent_id: Option<&str>,
        run_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LocalMemory>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {MEMORY_COLUMNS},
                    EXISTS (SELECT 1 FROM entries o WHERE o.target = e.id
                              AND o.op IN ('update', 'delete')
                              AND o.state IN ('pending', 'in_flight', 'failed'))
               FROM entries e
              WHERE op = 'add' AND project = ?1 AND deleted_at IS NULL
                AND (?2 IS NULL OR agent_id = ?2) AND (?3 IS NULL OR run_id = ?3)
              ORDER BY seq DESC LIMIT ?4"
        ))?;
        let rows = stmt
            .query_map(params![project, agent_id, run_id, limit as i64], |r| {
                let mut row = memory_row(r)?;
                row.m.edit_queued = r.get::<_, i64>(13)? != 0;
                Ok(row.m)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The local ids of these `mq_id`s that are live memories here, and
    /// those deleted here, for merging a server listing.
    pub fn local_ids(
        &self,
        mq_ids: &[String],
    ) -> Result<(HashMap<String, LocalMemory>, HashSet<String>), StoreError> {
        let mut live = HashMap::new();
        let mut gone = HashSet::new();
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {MEMORY_COLUMNS} FROM entries WHERE id = ?1 AND op = 'add'"
        ))?;
        for id in mq_ids {
            if let Some(row) = stmt.query_row([id], memory_row).optional()? {
                if row.deleted {
                    gone.insert(id.clone());
                } else {
                    live.insert(id.clone(), row.m);
                }
            }
        }
        Ok((live, gone))
    }

    /// Whether the local copy knows this id: a memory's own id or one of its
    /// Mem0 ids.
    pub fn knows(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 WHERE EXISTS (SELECT 1 FROM entries WHERE id = ?1 AND op = 'add')
                    OR EXISTS (SELECT 1 FROM remote_memories WHERE remote_id = ?1)",
                [id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The local memory each of these Mem0 ids came from, when known.
    pub fn local_for_remote(&self, ids: &[String]) -> Result<HashMap<String, String>, StoreError> {
        let mut out = HashMap::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT entry_id FROM remote_memories WHERE remote_id = ?1")?;
        for id in ids {
            if let Some(e) = stmt.query_row([id], |r| r.get::<_, String>(0)).optional()? {
                out.insert(id.clone(), e);
            }
        }
        Ok(out)
    }

    /// The changes queued against Mem0 memories and not delivered yet, and
    /// every deletion made here, for showing what the server returns as it
    /// will be once they are delivered.
    pub fn pending_changes(&self) -> Result<PendingChanges, StoreError> {
        let mut out = PendingChanges::default();
        let mut stmt = self.conn.prepare_cached(
            "SELECT op, remote_target, changes, state, project, seq, created_at FROM entries
              WHERE op != 'add' ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })?;
        for row in rows {
            let (op, remote, changes, state, project, seq, at) = row?;
            let undelivered = matches!(state.as_str(), "pending" | "in_flight" | "failed");
            match (Op::parse(&op), remote) {
                (Some(Op::Update), Some(r)) if undelivered => {
                    let c = changes
                        .and_then(|c| serde_json::from_str::<Value>(&c).ok())
                        .map(|v| Changes::from_json(&v))
                        .unwrap_or_default();
                    out.updated.insert(r, c);
                }
                (Some(Op::Delete), Some(r)) => {
                    out.deleted.insert(r);
                }
                (Some(Op::DeleteAll), _) => {
                    out.forgotten.insert(project, (seq, at));
                }
                _ => {}
            }
        }
        // The Mem0 ids of memories deleted here (an add deleted while in
        // flight has its delete queued with no Mem0 id yet).
        let mut stmt = self.conn.prepare_cached(
            "SELECT r.remote_id FROM remote_memories r JOIN entries e ON e.id = r.entry_id
              WHERE e.deleted_at IS NOT NULL",
        )?;
        for id in stmt.query_map([], |r| r.get::<_, String>(0))? {
            out.deleted.insert(id?);
        }
        Ok(out)
    }

    /// The changes in the queue by kind and state (saves are the rest of
    /// the state counts): `(op, state, n)`, only the non-zero ones.
    pub fn op_counts(&self) -> Result<Vec<(Op, State, u64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT op, state, count(*) FROM entries WHERE op != 'add' GROUP BY op, state",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows
            .into_iter()
            .filter_map(|(op, st, n)| Some((Op::parse(&op)?, State::parse(&st)?, n.max(0) as u64)))
            .collect())
    }

    /// The memories deleted here, as (local id, project): their vault notes
    /// go.
    pub fn tombstones(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT entry_id, project FROM tombstones ORDER BY deleted_at")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The local ids of every memory here, live or deleted (tombstones):
    /// the observations the graph mirror may take back.
    pub fn memory_ids(&self) -> Result<HashSet<String>, StoreError> {
        let mut out = HashSet::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM entries WHERE op = 'add' UNION SELECT entry_id FROM tombstones",
        )?;
        for id in stmt.query_map([], |r| r.get::<_, String>(0))? {
            out.insert(id?);
        }
        Ok(out)
    }

    /// How many changes were made here (the meta `local_changes` counter).
    pub fn local_changes(&self) -> Result<u64, StoreError> {
        Ok(self
            .meta_get("local_changes")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// The `seq` of a local memory, for ordering it against a forget.
    pub fn seq_of(&self, id: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT seq FROM entries WHERE id = ?1", [id], |r| r.get(0))
            .optional()?)
    }

    /// The projects, agents and runs of the live memories here.
    pub fn local_entities(&self) -> Result<Vec<LocalEntity>, StoreError> {
        let mut out = Vec::new();
        for (kind, column) in [
            ("user", "project"),
            ("agent", "agent_id"),
            ("run", "run_id"),
        ] {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT {column}, count(*) FROM entries
                  WHERE op = 'add' AND deleted_at IS NULL AND {column} IS NOT NULL
                  GROUP BY {column} ORDER BY {column}"
            ))?;
            let rows = stmt.query_map([], |r| {
                Ok(LocalEntity {
                    kind,
                    id: r.get(0)?,
                    memories: r.get::<_, i64>(1)?.max(0) as u64,
                })
            })?;
            for e in rows {
                out.push(e?);
            }
        }
        Ok(out)
    }
}

fn mark_deleted(
    tx: &Transaction<'_>,
    id: &str,
    project: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE entries SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
        params![id, now_ms],
    )?;
    tombstone(tx, id, project, now_ms)?;
    drop_graph(tx, id)
}

/// Applies `changes` to the local copy of a memory: its text (and dedup
/// key), its metadata (merged), and its graph traces.
fn rewrite_local(
    tx: &Transaction<'_>,
    m: &LocalMemory,
    changes: &Changes,
) -> Result<(), StoreError> {
    let content = changes.text.clone().unwrap_or_else(|| m.content.clone());
    let metadata = match &changes.metadata {
        Some(patch) => merge_metadata(&m.metadata, patch),
        None => m.metadata.clone(),
    };
    let input = graph::graph_input(&metadata)?;
    let hash = content_hash_of(
        &m.project,
        m.agent_id.as_deref(),
        m.run_id.as_deref(),
        &content,
    );
    let clash: Option<String> = tx
        .query_row(
            "SELECT id FROM entries WHERE content_hash = ?1 AND id != ?2 AND op = 'add'
               AND deleted_at IS NULL AND state IN ('pending', 'in_flight', 'failed')",
            params![hash, m.id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(other) = clash
        && matches!(m.state, State::Pending | State::InFlight | State::Failed)
    {
        return Err(StoreError::Invalid {
            field: "text",
            reason: format!(
                "the same text is already queued as memory {other}; delete this one instead"
            ),
        });
    }
    tx.execute(
        "UPDATE entries SET content = ?2, content_hash = ?3, metadata = ?4 WHERE id = ?1",
        params![m.id, content, hash, metadata.to_string()],
    )?;
    bump_changes(tx)?;
    drop_graph(tx, &m.id)?;
    graph::write_save(tx, &m.id, &m.project, &content, m.created_at, &input)?;
    Ok(())
}

fn validate_changes(c: &Changes, limits: &Limits) -> Result<(), StoreError> {
    if c.text.is_none() && c.metadata.is_none() {
        return Err(StoreError::Invalid {
            field: "changes",
            reason: "nothing to change: give a new text, new metadata, or both".into(),
        });
    }
    if let Some(t) = &c.text {
        if t.trim().is_empty() {
            return Err(StoreError::Invalid {
                field: "text",
                reason: "it is empty".into(),
            });
        }
        if t.len() > limits.max_content_bytes {
            return Err(StoreError::TooLarge {
                what: "text",
                size: t.len(),
                max: limits.max_content_bytes,
            });
        }
    }
    if let Some(md) = &c.metadata {
        if !md.is_object() {
            return Err(StoreError::Invalid {
                field: "metadata",
                reason: "it must be a JSON object".into(),
            });
        }
        let size = md.to_string().len();
        if size > limits.max_metadata_bytes {
            return Err(StoreError::TooLarge {
                what: "metadata",
                size,
                max: limits.max_metadata_bytes,
            });
        }
        graph::graph_input(md)?;
    }
    Ok(())
}
