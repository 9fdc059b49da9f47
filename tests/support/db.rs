//! Direct reads of a queue database (columns and tables the binary does not
//! show) and seeding through the store's public API.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use mem0_queue::engine::config::Config;
use mem0_queue::engine::store::{Enqueued, FailureRecord, Limits, NewEntry, Origin, State, Store};
use rusqlite::{Connection, OpenFlags};

fn open(db: &Path, flags: OpenFlags) -> Connection {
    let c = Connection::open_with_flags(db, flags)
        .unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
    c.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    c
}

/// A read-write connection to an existing queue database (never creates it).
pub fn connect(db: &Path) -> Connection {
    open(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// The one value `sql` (with `params`) selects from a queue database.
pub fn scalar<T: rusqlite::types::FromSql>(
    db: &Path,
    sql: &str,
    params: impl rusqlite::Params,
) -> T {
    connect(db)
        .query_row(sql, params, |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// How many entries the queue database holds, in any state.
pub fn count(db: &Path) -> i64 {
    scalar(db, "SELECT count(*) FROM entries", [])
}

/// Everything a save could change: every entry (id, state, content) and the
/// counters, as one comparable string.
pub fn fingerprint(db: &Path) -> String {
    let c = connect(db);
    let mut out = String::new();
    let mut rows = c
        .prepare("SELECT id, state, content FROM entries ORDER BY seq")
        .expect("prepare");
    let rows = rows
        .query_map([], |r| {
            Ok(format!(
                "{}|{}|{}\n",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?
            ))
        })
        .expect("query entries");
    for r in rows {
        out.push_str(&r.expect("row"));
    }
    let mut stats = c
        .prepare("SELECT key, value FROM stats ORDER BY key")
        .expect("prepare");
    let stats = stats
        .query_map([], |r| {
            Ok(format!(
                "{}={:?}\n",
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?
            ))
        })
        .expect("query stats");
    for s in stats {
        out.push_str(&s.expect("row"));
    }
    out
}

/// `PRAGMA integrity_check` of a queue database.
pub fn integrity(db: &Path) -> String {
    let c = connect(db);
    let rows: Vec<String> = c
        .prepare("PRAGMA integrity_check")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("integrity_check")
        .collect::<Result<_, _>>()
        .expect("rows");
    rows.join("; ")
}

/// One entry's row, with the columns the store's views do not expose.
#[derive(Debug, Clone)]
pub struct Row {
    pub state: State,
    pub attempts: u32,
    pub attempts_run: u32,
    pub runs_failed: u32,
    pub next_attempt_at: i64,
    pub last_attempt_at: Option<i64>,
    pub needs_reconcile: bool,
    pub lease_owner: Option<String>,
    pub dead_reason: Option<String>,
    pub dead_auth: bool,
    pub delivered_at: Option<i64>,
    pub last_error: Option<String>,
    pub remote_ids: Vec<String>,
}

/// Every row of a queue database by id, read on a read-only connection of
/// its own.
pub fn rows(db: &Path) -> HashMap<String, Row> {
    let conn = open(db, OpenFlags::SQLITE_OPEN_READ_ONLY);
    let mut stmt = conn
        .prepare(
            "SELECT id, state, attempts, attempts_run, runs_failed, next_attempt_at,
                    last_attempt_at, needs_reconcile, lease_owner, dead_reason, dead_auth,
                    delivered_at, last_error, remote_ids
               FROM entries",
        )
        .expect("prepare");
    stmt.query_map([], |r| {
        let state: String = r.get(1)?;
        let remote: String = r.get(13)?;
        Ok((
            r.get::<_, String>(0)?,
            Row {
                state: State::parse(&state).expect("a known state"),
                attempts: r.get(2)?,
                attempts_run: r.get(3)?,
                runs_failed: r.get(4)?,
                next_attempt_at: r.get(5)?,
                last_attempt_at: r.get(6)?,
                needs_reconcile: r.get::<_, i64>(7)? != 0,
                lease_owner: r.get(8)?,
                dead_reason: r.get(9)?,
                dead_auth: r.get::<_, i64>(10)? != 0,
                delivered_at: r.get(11)?,
                last_error: r.get(12)?,
                remote_ids: serde_json::from_str(&remote).unwrap_or_default(),
            },
        ))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// Counts of rows by state.
pub fn count_states(rows: &HashMap<String, Row>) -> HashMap<&'static str, usize> {
    let mut m = HashMap::new();
    for r in rows.values() {
        *m.entry(r.state.as_str()).or_insert(0) += 1;
    }
    m
}

/// Counts of entries by state, through the store.
pub fn counts(db: &Path) -> mem0_queue::engine::store::Counts {
    Store::open(db).expect("open").counts().expect("counts")
}

/// The state of entry `id`, through the store.
pub fn state_of(db: &Path, id: &str) -> State {
    Store::open(db)
        .expect("open")
        .get(id, false)
        .expect("the entry")
        .state
}

/// Opens the queue of a data dir (the dir created 0700 if missing).
pub fn store(data: &Path) -> Store {
    if !data.exists() {
        std::fs::create_dir_all(data).expect("mkdir data");
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    Store::open(&data.join("queue.db")).expect("open the queue")
}

/// The limits of a default config.
pub fn limits() -> Limits {
    let c = Config::default();
    Limits {
        max_content_bytes: c.max_content_bytes,
        max_metadata_bytes: c.max_metadata_bytes,
        max_queue_len: c.max_queue_len,
    }
}

/// A CLI-origin entry of `project` with no agent or run, and a generated id.
pub fn entry(
    project: &str,
    content: impl Into<String>,
    metadata: serde_json::Value,
    created_at: i64,
) -> NewEntry {
    NewEntry {
        project: project.into(),
        agent_id: None,
        run_id: None,
        content: content.into(),
        metadata,
        created_at,
        origin: Origin::Cli,
        infer: None,
        id: None,
    }
}

/// Enqueues `e` under the default [`limits`].
pub fn add(store: &mut Store, e: NewEntry) -> Enqueued {
    store.enqueue(e, &limits()).expect("enqueue")
}

/// Claims the one due entry as `owner` at `at`; it must be `id`.
pub fn claim_one(store: &mut Store, owner: &str, id: &str, at: i64) {
    let c = store.claim(owner, at, 60_000, 1).expect("claim");
    assert_eq!(c.len(), 1, "one entry to claim");
    assert_eq!(c[0].id, id, "the entry just saved is claimed");
}

/// Takes `id`, the only due entry, through a delivery: claimed at `at`,
/// delivered as `remote` at `done_at`.
pub fn deliver_one(
    store: &mut Store,
    owner: &str,
    id: &str,
    remote: &[String],
    at: i64,
    done_at: i64,
) {
    claim_one(store, owner, id, at);
    store
        .record_delivered(id, remote, done_at)
        .expect("record delivered");
}

/// Takes `id`, the only due entry, through a failed attempt: claimed at
/// `at`, `record` (with the attempt's `error`) recorded at `done_at`.
pub fn fail_one(
    store: &mut Store,
    owner: &str,
    id: &str,
    record: &FailureRecord,
    error: &str,
    at: i64,
    done_at: i64,
) {
    claim_one(store, owner, id, at);
    store
        .record_failure(id, owner, record, error, false, done_at)
        .expect("record the failure");
}
