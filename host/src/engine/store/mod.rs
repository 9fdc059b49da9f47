//! The durable queue: one SQLite file shared by every process (several
//! `serve` windows, worker runs, the CLI).
//!
//! - WAL mode, a 10 s busy timeout on every connection, and every write in a
//!   `BEGIN IMMEDIATE` transaction, so writers queue up instead of failing
//!   with SQLITE_BUSY halfway through a transaction.
//! - `synchronous=FULL`: a save is acknowledged only after its commit is on
//!   disk (in WAL mode FULL syncs the WAL at each commit).
//! - The file is created 0600 before SQLite opens it; SQLite gives the WAL
//!   and SHM files the same mode.
//!
//! The store never performs network I/O, and no transaction outlives a call
//! into it: the worker claims, then talks HTTP, then records.

mod delivery;
pub mod graph;
mod history;
pub mod lifecycle;
mod schema;
mod shared;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use delivery::{Claimed, FailureRecord, RunStart};
pub use lifecycle::{
    ChangeOutcome, Changes, ForgetOutcome, LocalEntity, LocalMemory, Op, PendingChanges,
};
pub use schema::SCHEMA_VERSION;
pub use shared::SharedStore;

/// How long a connection waits for another process's write lock before it
/// gives up. Saves are tiny, so anything close to this means a process is
/// stuck; 10 s stays well inside an MCP client's tool timeout.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `last_error` kept. Enough for a status code and an error
/// class; short enough that nothing like a memory's text fits in by accident.
pub const MAX_ERROR_TEXT: usize = 160;

/// The most a `recent` call returns: the seed's last-100 cache.
pub const RECENT_MAX: usize = 100;

/// The longest id (project, agent_id, run_id) accepted.
pub const MAX_ID_LEN: usize = 256;

/// Keys of the `meta` table that more than one process or layer reads.
pub mod meta_keys {
    /// Until when the breaker holds delivery runs back, unix ms (absent or
    /// in the past: closed).
    pub const BREAKER_OPEN_UNTIL: &str = "breaker_open_until";
    /// The configuration problem the last delivery run stopped on (JSON of
    /// the worker's `ConfigProblemRecord`); absent once a run reaches Mem0.
    pub const CONFIG_PROBLEM: &str = "config_problem";
    /// Delivery runs in a row in which nothing answered.
    pub const UNREACHABLE_RUNS: &str = "unreachable_runs";
    /// When the first of those runs started, unix ms.
    pub const UNREACHABLE_SINCE: &str = "unreachable_since";
    /// Left by the schema upgrade that gave back entries which had died of
    /// a configuration problem: how many. The next run logs it and removes it.
    pub const UPGRADE_REVIVED: &str = "upgrade_revived";
    /// When the daemon last delivered something, unix ms (for `status`).
    pub const DAEMON_LAST_DELIVERY: &str = "daemon_last_delivery";
}

/// The lifecycle of an entry, stored as TEXT with a CHECK constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    InFlight,
    Failed,
    Dead,
    Delivered,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Pending,
        State::InFlight,
        State::Failed,
        State::Dead,
        State::Delivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::InFlight => "in_flight",
            State::Failed => "failed",
            State::Dead => "dead",
            State::Delivered => "delivered",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the queue database {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the queue database {path} is corrupt or not a database ({message}); it was left untouched"
    )]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "the queue database is schema version {found}, newer than this build's {supported}; upgrade mem0-queue"
    )]
    TooNew { found: i64, supported: i64 },
    #[error("the queue database is still locked by another process after {}s", BUSY_TIMEOUT.as_secs())]
    Busy,
    #[error("the disk is full")]
    DiskFull,
    #[error("the queue database is read-only (check the data dir's permissions and free space)")]
    ReadOnly,
    #[error("{what} is {size} bytes, over the limit of {max} bytes")]
    TooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
    #[error(
        "the queue holds {len} undelivered entries, the cap (max_queue_len = {max}); deliver or purge some first"
    )]
    QueueFull { len: u64, max: u64 },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("no entry with id {0}")]
    NotFound(String),
    #[error("SQLite: {0}")]
    Sqlite(rusqlite::Error),
    #[error("a store task failed: {0}")]
    Task(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
            Some(ErrorCode::DiskFull) => StoreError::DiskFull,
            Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
                StoreError::ReadOnly
            }
            _ => StoreError::Sqlite(e),
        }
    }
}

/// Limits on what a save may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_content_bytes: usize,
    pub max_metadata_bytes: usize,
    pub max_queue_len: u64,
}

/// A memory to save.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub project: String,
    pub agent_id: Option<String>,
    pub run_id: Option<String>,
    pub content: String,
    /// A JSON object.
    pub metadata: serde_json::Value,
    /// When it was saved, unix ms. The import keeps the seed's own time.
    pub created_at: i64,
    pub origin: Origin,
    /// The id to use (the import keeps stable ids; a capture's comes from
    /// its session id); a new UUIDv7 when None.
    pub id: Option<String>,
    /// Whether Mem0 extracts facts from this memory with its LLM; None: the
    /// config's `infer`. A captured session is always `Some(true)`: its text
    /// is a conversation, never a memory to store as it is.
    pub infer: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Mcp,
    Cli,
    Import,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Mcp => "mcp",
            Origin::Cli => "cli",
            Origin::Import => "import",
        }
    }
}

/// The answer to a save.
#[derive(Debug, Clone, Serialize)]
pub struct Enqueued {
    pub id: String,
    /// True when an undelivered copy of the same memory was already queued:
    /// `id` is that copy's.
    pub deduplicated: bool,
    /// Undelivered entries (pending, in flight, failed) after this save.
    pub depth: u64,
}

/// Entry counts by state.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub pending: u64,
    pub in_flight: u64,
    pub failed: u64,
    pub dead: u64,
    pub delivered: u64,
    /// Dead entries whose reason is an auth rejection.
    pub dead_auth: u64,
}

impl Counts {
    /// Entries not delivered yet and still being tried.
    pub fn undelivered(&self) -> u64 {
        self.pending + self.in_flight + self.failed
    }
}

/// The seed's stats plus what the alerts need.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub counts: Counts,
    pub total_queued: u64,
    pub total_synced: u64,
    pub total_failed: u64,
    /// Unix ms of the last worker run's end.
    pub last_sync: Option<i64>,
    /// Unix ms of the last successful delivery.
    pub last_success: Option<i64>,
    /// Unix ms of the oldest pending entry's save.
    pub oldest_pending: Option<i64>,
    pub consecutive_failing_runs: u32,
    /// Delivery runs in a row in which nothing answered.
    pub unreachable_runs: u32,
    /// Unix ms of the start of the first of those runs.
    pub unreachable_since: Option<i64>,
}

/// One entry as listed by `recent`, `list` and the status tools. Content is
/// included only when asked for.
#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    pub id: String,
    /// What the entry does: a save (`add`) or a change (`update`, `delete`,
    /// `delete_all`).
    pub op: Op,
    /// For a change: the local memory it changes, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// For a change: the Mem0 memory it changes, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_target: Option<String>,
    pub project: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub state: State,
    pub created_at: i64,
    pub attempts: u32,
    pub runs_failed: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_reason: Option<String>,
    pub remote_ids: Vec<String>,
    pub metadata: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// The queue database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed, mode 0600) and migrates the database.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_private(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(|e| classify_open(path, e))?;
        let mut store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store.configure().map_err(|e| store.corrupt_or(e))?;
        schema::migrate(&mut store.conn).map_err(|e| store.corrupt_or(e))?;
        Ok(store)
    }

    /// Opens an existing database read-only, for `status` when the data dir
    /// cannot be written. Fails if it does not exist.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify_open(path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let store = Self {
            conn,
            path: path.to_path_buf(),
        };
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| store.corrupt_or(e.into()))?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits at most `d` for another process's write lock instead of
    /// [`BUSY_TIMEOUT`] (a hook inside Claude Code's time budget).
    pub fn set_busy_timeout(&self, d: Duration) -> Result<(), StoreError> {
        Ok(self.conn.busy_timeout(d)?)
    }

    fn configure(&self) -> Result<(), StoreError> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        // journal_mode returns a row; a corrupt file fails here.
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode = %mode, "SQLite refused WAL mode");
        }
        self.conn.execute_batch(
            "PRAGMA synchronous=FULL;
             PRAGMA foreign_keys=ON;
             PRAGMA trusted_schema=OFF;",
        )?;
        Ok(())
    }

    fn corrupt_or(&self, e: StoreError) -> StoreError {
        match &e {
            StoreError::Sqlite(inner)
                if matches!(
                    inner.sqlite_error_code(),
                    Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
                ) =>
            {
                StoreError::Corrupt {
                    path: self.path.clone(),
                    message: inner.to_string(),
                }
            }
            _ => e,
        }
    }

    /// `PRAGMA integrity_check`: "ok" or the problems found.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        let rows: Vec<String> = self
            .conn
            .prepare("PRAGMA integrity_check")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(rows.join("; "))
    }

    /// Commits a memory durably, or returns the undelivered copy already
    /// queued. Nothing is written when it fails.
    pub fn enqueue(&mut self, new: NewEntry, limits: &Limits) -> Result<Enqueued, StoreError> {
        validate_id("project", &new.project)?;
        for (field, v) in [("agent_id", &new.agent_id), ("run_id", &new.run_id)] {
            if let Some(v) = v {
                validate_id(field, v)?;
            }
        }
        if new.content.trim().is_empty() {
            return Err(StoreError::Invalid {
                field: "content",
                reason: "it is empty".into(),
            });
        }
        if new.content.len() > limits.max_content_bytes {
            return Err(StoreError::TooLarge {
                what: "content",
                size: new.content.len(),
                max: limits.max_content_bytes,
            });
        }
        if !new.metadata.is_object() {
            return Err(StoreError::Invalid {
                field: "metadata",
                reason: "it must be a JSON object".into(),
            });
        }
        let metadata = new.metadata.to_string();
        if metadata.len() > limits.max_metadata_bytes {
            return Err(StoreError::TooLarge {
                what: "metadata",
                size: metadata.len(),
                max: limits.max_metadata_bytes,
            });
        }
        let graph_input = graph::graph_input(&new.metadata)?;
        let hash = content_hash(&new);
        let id = match &new.id {
            Some(id) => {
                uuid::Uuid::parse_str(id).map_err(|_| StoreError::Invalid {
                    field: "id",
                    reason: "not a UUID".into(),
                })?;
                id.clone()
            }
            None => uuid::Uuid::now_v7().to_string(),
        };

        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT id FROM entries WHERE content_hash = ?1 AND op = 'add'
                   AND deleted_at IS NULL AND state IN ('pending', 'in_flight', 'failed')",
                [&hash],
                |r| r.get(0),
            )
            .optional()?;
        let counts = read_counts(&tx)?;
        if let Some(id) = existing {
            return Ok(Enqueued {
                id,
                deduplicated: true,
                depth: counts.undelivered(),
            });
        }
        if counts.undelivered() >= limits.max_queue_len {
            return Err(StoreError::QueueFull {
                len: counts.undelivered(),
                max: limits.max_queue_len,
            });
        }
        tx.execute(
            "INSERT INTO entries (id, project, agent_id, run_id, content, content_hash,
                                  metadata, created_at, origin, infer)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                id,
                new.project,
                new.agent_id,
                new.run_id,
                new.content,
                hash,
                metadata,
                new.created_at,
                new.origin.as_str(),
                new.infer
            ],
        )?;
        graph::write_save(
            &tx,
            &id,
            &new.project,
            &new.content,
            new.created_at,
            &graph_input,
        )?;
        tx.execute(
            "UPDATE stats SET value = value + 1 WHERE key = 'total_queued'",
            [],
        )?;
        tx.commit()?;
        Ok(Enqueued {
            id,
            deduplicated: false,
            depth: counts.undelivered() + 1,
        })
    }

    /// Whether an entry with this id exists (any state).
    pub fn contains(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM entries WHERE id = ?1", [id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    pub fn counts(&self) -> Result<Counts, StoreError> {
        read_counts(&self.conn)
    }

    pub fn stats(&self) -> Result<Stats, StoreError> {
        let counts = read_counts(&self.conn)?;
        let stat = |key: &str| -> Result<Option<i64>, StoreError> {
            Ok(self
                .conn
                .query_row("SELECT value FROM stats WHERE key = ?1", [key], |r| {
                    r.get(0)
                })?)
        };
        let oldest_pending: Option<i64> = self.conn.query_row(
            "SELECT min(created_at) FROM entries WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?;
        let meta_num = |key: &str| -> Result<Option<i64>, StoreError> {
            Ok(self.meta_get(key)?.and_then(|v| v.parse().ok()))
        };
        let consecutive_failing_runs = meta_num("consecutive_failing_runs")?.unwrap_or(0) as u32;
        let unreachable_runs = meta_num(meta_keys::UNREACHABLE_RUNS)?.unwrap_or(0) as u32;
        let unreachable_since = meta_num(meta_keys::UNREACHABLE_SINCE)?;
        Ok(Stats {
            counts,
            total_queued: stat("total_queued")?.unwrap_or(0) as u64,
            total_synced: stat("total_synced")?.unwrap_or(0) as u64,
            total_failed: stat("total_failed")?.unwrap_or(0) as u64,
            last_sync: stat("last_sync")?,
            last_success: stat("last_success")?,
            oldest_pending,
            consecutive_failing_runs,
            unreachable_runs,
            unreachable_since,
        })
    }

    /// The most recent saves, newest first, whatever their state (the
    /// seed's last-100 cache). Includes content: the caller asked for it.
    pub fn recent(
        &self,
        limit: usize,
        project: Option<&str>,
    ) -> Result<Vec<EntryView>, StoreError> {
        let limit = limit.clamp(1, RECENT_MAX) as i64;
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {VIEW_COLUMNS}, content FROM entries
              WHERE op = 'add' AND deleted_at IS NULL AND (?1 IS NULL OR project = ?1)
              ORDER BY seq DESC LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![project, limit], |r| view_from_row(r, true))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Entries in one state, oldest first.
    pub fn list(
        &self,
        state: State,
        limit: usize,
        with_content: bool,
    ) -> Result<Vec<EntryView>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {VIEW_COLUMNS}, content FROM entries
              WHERE state = ?1 AND deleted_at IS NULL ORDER BY seq LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![state.as_str(), limit as i64], |r| {
                view_from_row(r, with_content)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Reads one entry.
    pub fn get(&self, id: &str, with_content: bool) -> Result<EntryView, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {VIEW_COLUMNS}, content FROM entries WHERE id = ?1"),
                [id],
                |r| view_from_row(r, with_content),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    pub fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn meta_set(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn meta_delete(&mut self, key: &str) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM meta WHERE key = ?1", [key])?;
        tx.commit()?;
        Ok(())
    }

    /// Moves entries of state `from` (failed, dead, or delivered) back to
    /// pending, all of them or the given ids. Returns how many moved. An
    /// entry whose content is queued again meanwhile stays where it is (the
    /// dedup index). A delivered entry goes back marked for reconciliation:
    /// it is looked up by its `mq_id` before anything is sent, so one that
    /// really is on the server is never stored twice.
    pub fn retry(&mut self, ids: &[String], from: State, now_ms: i64) -> Result<u64, StoreError> {
        if !matches!(from, State::Failed | State::Dead | State::Delivered) {
            return Err(StoreError::Invalid {
                field: "state",
                reason: "only failed, dead or delivered entries can be retried".into(),
            });
        }
        let from = from.as_str();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut moved = 0;
        let sql = "UPDATE OR IGNORE entries
                      SET state = 'pending', attempts_run = 0, next_attempt_at = ?2,
                          dead_reason = NULL, dead_auth = 0,
                          needs_reconcile = max(needs_reconcile, state = 'delivered'),
                          delivered_at = NULL
                    WHERE state = ?1 AND (?3 IS NULL OR id = ?3)
                      -- A memory deleted here is never sent again, and only
                      -- saves are re-checked (a delivered change is done).
                      AND deleted_at IS NULL
                      AND (state != 'delivered' OR op = 'add')";
        if ids.is_empty() {
            moved += tx.execute(sql, params![from, now_ms, Option::<String>::None])? as u64;
        } else {
            for id in ids {
                moved += tx.execute(sql, params![from, now_ms, id])? as u64;
            }
        }
        tx.commit()?;
        Ok(moved)
    }

    /// Drops the local copy of entries delivered before `before_ms` (the
    /// retention setting). Their graph observations stay.
    pub fn prune_delivered(&mut self, before_ms: i64) -> Result<u64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "DELETE FROM entries WHERE state = 'delivered' AND delivered_at < ?1",
            [before_ms],
        )? as u64;
        tx.execute(
            "DELETE FROM remote_memories
              WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.id = remote_memories.entry_id)",
            [],
        )?;
        tx.execute("DELETE FROM tombstones WHERE deleted_at < ?1", [before_ms])?;
        tx.commit()?;
        Ok(n)
    }

    /// Deletes dead entries saved before `before_ms` (all dead ones when
    /// None). Returns how many were deleted.
    pub fn purge_dead(&mut self, before_ms: Option<i64>) -> Result<u64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "DELETE FROM entries WHERE state = 'dead' AND (?1 IS NULL OR created_at < ?1)",
            [before_ms],
        )? as u64;
        tx.commit()?;
        Ok(n)
    }

    /// Inserts imported entries with their given ids and states, in one
    /// transaction; an id or an undelivered text already present is skipped.
    /// The seed's stats are added to ours once per distinct stats object
    /// (`stats_key` in meta). Returns which rows were inserted, and whether
    /// the stats were merged. Everything is validated before any write.
    pub fn import_batch(
        &mut self,
        rows: &[(NewEntry, State, u32)],
        seed_stats: &serde_json::Value,
        stats_key: &str,
    ) -> Result<(Vec<bool>, bool), StoreError> {
        for (e, _, _) in rows {
            validate_id("project", &e.project)?;
            if !e.metadata.is_object() {
                return Err(StoreError::Invalid {
                    field: "metadata",
                    reason: "it must be a JSON object".into(),
                });
            }
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut inserted = Vec::with_capacity(rows.len());
        {
            let mut stmt = tx.prepare(
                "INSERT OR IGNORE INTO entries (id, project, content, content_hash, metadata,
                        created_at, state, attempts, runs_failed, origin, delivered_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'import',
                         CASE WHEN ?7 = 'delivered' THEN ?6 END)",
            )?;
            for (e, state, retries) in rows {
                let n = stmt.execute(params![
                    e.id,
                    e.project,
                    e.content,
                    content_hash(e),
                    e.metadata.to_string(),
                    e.created_at,
                    state.as_str(),
                    retries,
                    (*state == State::Failed) as i64
                ])?;
                if n == 1 {
                    let input = graph::graph_input(&e.metadata).unwrap_or_default();
                    graph::write_save(
                        &tx,
                        e.id.as_deref().unwrap_or_default(),
                        &e.project,
                        &e.content,
                        e.created_at,
                        &input,
                    )?;
                }
                inserted.push(n == 1);
            }
        }
        let already: bool = tx
            .query_row("SELECT 1 FROM meta WHERE key = ?1", [stats_key], |_| Ok(()))
            .optional()?
            .is_some();
        let merge = !already && seed_stats.is_object();
        if merge {
            for key in ["total_queued", "total_synced", "total_failed"] {
                let v = seed_stats
                    .get(key)
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(0)
                    .max(0);
                tx.execute(
                    "UPDATE stats SET value = value + ?2 WHERE key = ?1",
                    params![key, v],
                )?;
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, '1')",
                [stats_key],
            )?;
        }
        tx.commit()?;
        Ok((inserted, merge))
    }

    /// The projects that have memories in the local copy, the most recently
    /// saved to first, at most `limit`.
    pub fn projects(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT project FROM entries GROUP BY project ORDER BY max(seq) DESC LIMIT ?1",
        )?;
        let rows = stmt
            .query_map([limit as i64], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(rows)
    }

    /// Full-text search of the local copy (every saved memory), ranked by
    /// bm25 among the newest [`SEARCH_CANDIDATES`] matches. Returns each
    /// match with a score in (0, 1], best first. A captured conversation
    /// (`metadata.capture`) is not a memory to find: 64 KiB of transcript
    /// would match most words and fill a result; what Mem0 drew from it is
    /// found through Mem0's search.
    pub fn search_local(
        &self,
        query: &str,
        project: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(EntryView, f64)>, StoreError> {
        self.search_local_among(query, project, limit, SEARCH_CANDIDATES)
    }

    /// [`Store::search_local`] ranking the newest `candidates` matches.
    pub fn search_local_among(
        &self,
        query: &str,
        project: Option<&str>,
        limit: usize,
        candidates: i64,
    ) -> Result<Vec<(EntryView, f64)>, StoreError> {
        let Some(fts) = fts_query(query) else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.id, e.project, e.agent_id, e.run_id, e.state, e.created_at, e.attempts,
                    e.runs_failed, e.last_error, e.dead_reason, e.remote_ids, e.metadata,
                    e.op, e.target, e.remote_target, e.content, c.rank
               FROM (SELECT entries_fts.rowid AS seq, bm25(entries_fts) AS rank
                       FROM entries_fts JOIN entries m ON m.seq = entries_fts.rowid
                      WHERE entries_fts MATCH ?1 AND (?2 IS NULL OR m.project = ?2)
                        AND m.op = 'add' AND m.deleted_at IS NULL
                        AND json_extract(m.metadata, '$.capture') IS NULL
                      ORDER BY entries_fts.rowid DESC LIMIT ?4) AS c
               JOIN entries e ON e.seq = c.seq
              ORDER BY c.rank LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(params![fts, project, limit as i64, candidates], |r| {
                let rank: f64 = r.get(16)?;
                let s = -rank;
                Ok((
                    view_from_row(r, true)?,
                    if s > 0.0 { s / (1.0 + s) } else { 0.0 },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Recall's candidates in one project: its memories matching `query`
    /// (bm25 among the newest [`SEARCH_CANDIDATES`] matches, scored in
    /// (0, 1]), at most `relevant`; its newest memories, at most `recent`;
    /// and how many memories it has. Captured conversations
    /// (`metadata.capture`) are not memories to show: left out.
    pub fn recall_candidates(
        &self,
        project: &str,
        query: &str,
        relevant: usize,
        recent: usize,
    ) -> Result<RecallCandidates, StoreError> {
        let mut matches = Vec::new();
        if let Some(fts) = fts_query(query) {
            let mut stmt = self.conn.prepare_cached(
                "SELECT e.id, e.project, e.agent_id, e.run_id, e.state, e.created_at, e.attempts,
                        e.runs_failed, e.last_error, e.dead_reason, e.remote_ids, e.metadata,
                        e.op, e.target, e.remote_target, e.content, c.rank
                   FROM (SELECT entries_fts.rowid AS seq, bm25(entries_fts) AS rank
                           FROM entries_fts JOIN entries m ON m.seq = entries_fts.rowid
                          WHERE entries_fts MATCH ?1 AND m.project = ?2
                            AND m.op = 'add' AND m.deleted_at IS NULL
                            AND json_extract(m.metadata, '$.capture') IS NULL
                          ORDER BY entries_fts.rowid DESC LIMIT ?4) AS c
                   JOIN entries e ON e.seq = c.seq
                  ORDER BY c.rank, c.seq DESC LIMIT ?3",
            )?;
            matches = stmt
                .query_map(
                    params![fts, project, relevant as i64, SEARCH_CANDIDATES],
                    |r| {
                        let rank: f64 = r.get(16)?;
                        let s = -rank;
                        Ok((
                            view_from_row(r, true)?,
                            if s > 0.0 { s / (1.0 + s) } else { 0.0 },
                        ))
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
        }
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {VIEW_COLUMNS}, content FROM entries
              WHERE project = ?1 AND op = 'add' AND deleted_at IS NULL
                AND json_extract(metadata, '$.capture') IS NULL
              ORDER BY seq DESC LIMIT ?2"
        ))?;
        let newest = stmt
            .query_map(params![project, recent as i64], |r| view_from_row(r, true))?
            .collect::<Result<Vec<_>, _>>()?;
        let total: i64 = self.conn.query_row(
            "SELECT count(*) FROM entries
              WHERE project = ?1 AND op = 'add' AND deleted_at IS NULL
                AND json_extract(metadata, '$.capture') IS NULL",
            [project],
            |r| r.get(0),
        )?;
        Ok(RecallCandidates {
            matches,
            newest,
            total: total.max(0) as u64,
        })
    }

    pub(crate) fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// What [`Store::recall_candidates`] found.
#[derive(Debug, Clone, Default)]
pub struct RecallCandidates {
    /// Memories matching the query, best first, with their score.
    pub matches: Vec<(EntryView, f64)>,
    /// The newest memories, newest first.
    pub newest: Vec<EntryView>,
    /// How many memories the project has.
    pub total: u64,
}

/// How many matches of a local search are ranked: the newest ones. bm25
/// scores every match it is given, so a query of common words over 100,000
/// memories (half of them matching) took 468 ms at p99; ranking the newest
/// 2,000 bounds that cost. A query with more matches than this is too vague
/// for its oldest match to be the one wanted, and a query with fewer (any
/// rare word) is ranked over all of its matches as before.
pub const SEARCH_CANDIDATES: i64 = 2_000;

const VIEW_COLUMNS: &str = "id, project, agent_id, run_id, state, created_at, attempts, \
     runs_failed, last_error, dead_reason, remote_ids, metadata, op, target, remote_target";

fn view_from_row(r: &rusqlite::Row<'_>, with_content: bool) -> rusqlite::Result<EntryView> {
    let state: String = r.get(4)?;
    let remote: String = r.get(10)?;
    let metadata: String = r.get(11)?;
    let op: String = r.get(12)?;
    Ok(EntryView {
        id: r.get(0)?,
        op: Op::parse(&op).unwrap_or(Op::Add),
        target: r.get(13)?,
        remote_target: r.get(14)?,
        project: r.get(1)?,
        agent_id: r.get(2)?,
        run_id: r.get(3)?,
        state: State::parse(&state).unwrap_or(State::Pending),
        created_at: r.get(5)?,
        attempts: r.get(6)?,
        runs_failed: r.get(7)?,
        last_error: r.get(8)?,
        dead_reason: r.get(9)?,
        remote_ids: serde_json::from_str(&remote).unwrap_or_default(),
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        content: if with_content { r.get(15)? } else { None },
    })
}

/// An FTS5 query matching any word of `query`, each quoted so that user
/// text can never be read as FTS syntax. None when it has no word.
fn fts_query(query: &str) -> Option<String> {
    let words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(32)
        .map(|w| format!("\"{w}\""))
        .collect();
    (!words.is_empty()).then(|| words.join(" OR "))
}

fn read_counts(conn: &Connection) -> Result<Counts, StoreError> {
    let mut c = Counts::default();
    let mut stmt = conn.prepare_cached("SELECT state, n FROM state_counts")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let state: String = row.get(0)?;
        let n: i64 = row.get(1)?;
        let n = n.max(0) as u64;
        match State::parse(&state) {
            Some(State::Pending) => c.pending = n,
            Some(State::InFlight) => c.in_flight = n,
            Some(State::Failed) => c.failed = n,
            Some(State::Dead) => c.dead = n,
            Some(State::Delivered) => c.delivered = n,
            None => {}
        }
    }
    c.dead_auth = conn
        .query_row("SELECT n FROM dead_auth_count", [], |r| r.get::<_, i64>(0))?
        .max(0) as u64;
    Ok(c)
}

/// Mem0 rejects ids that are empty or hold whitespace; refuse them here, at
/// save time, rather than let them die at delivery.
fn validate_id(field: &'static str, v: &str) -> Result<(), StoreError> {
    let reason = if v.is_empty() {
        "it is empty"
    } else if v.chars().any(char::is_whitespace) {
        "it holds whitespace, which Mem0 rejects"
    } else if v.len() > MAX_ID_LEN {
        "it is over 256 bytes"
    } else if v.chars().any(char::is_control) {
        "it holds control characters"
    } else {
        return Ok(());
    };
    Err(StoreError::Invalid {
        field,
        reason: reason.into(),
    })
}

fn content_hash(e: &NewEntry) -> String {
    content_hash_of(
        &e.project,
        e.agent_id.as_deref(),
        e.run_id.as_deref(),
        &e.content,
    )
}

/// The dedup key of a memory: its project, agent, run and text.
fn content_hash_of(
    project: &str,
    agent_id: Option<&str>,
    run_id: Option<&str>,
    content: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        project,
        agent_id.unwrap_or(""),
        run_id.unwrap_or(""),
        content,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates the database file with mode 0600 if it does not exist, so SQLite
/// never creates it with the umask's mode.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => Err(StoreError::DiskFull),
        Err(e)
            if e.kind() == std::io::ErrorKind::PermissionDenied
                || e.raw_os_error() == Some(libc::EROFS) =>
        {
            Err(StoreError::ReadOnly)
        }
        Err(source) => Err(StoreError::Open {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn classify_open(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
        _ => StoreError::from(e),
    }
}

/// Truncates an error text for `last_error`.
pub fn short_error(s: &str) -> String {
    crate::engine::text::truncate(s, MAX_ERROR_TEXT)
}

#[cfg(test)]
mod tests;
