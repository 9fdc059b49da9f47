//! The queue's schema and its migrations, versioned with `PRAGMA user_version`.
//!
//! A migration is append-only: version N's SQL is never edited once released;
//! a change is a new entry in [`MIGRATIONS`].

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Each entry takes the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the queue, its counters and its key-value state.
    r#"
    CREATE TABLE entries (
        seq             INTEGER PRIMARY KEY,
        id              TEXT    NOT NULL UNIQUE,
        project         TEXT    NOT NULL,
        agent_id        TEXT,
        run_id          TEXT,
        content         TEXT    NOT NULL,
        -- sha256 of project, agent, run and content: the dedup key.
        content_hash    TEXT    NOT NULL,
        metadata        TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
        created_at      INTEGER NOT NULL,
        state           TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'in_flight', 'failed', 'dead', 'delivered')),
        attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        attempts_run    INTEGER NOT NULL DEFAULT 0 CHECK (attempts_run >= 0),
        runs_failed     INTEGER NOT NULL DEFAULT 0 CHECK (runs_failed >= 0),
        next_attempt_at INTEGER NOT NULL DEFAULT 0,
        lease_until     INTEGER,
        lease_owner     TEXT,
        last_attempt_at INTEGER,
        -- Truncated; never holds memory text or server error bodies.
        last_error      TEXT,
        -- 1 when the last attempt's outcome is unknown (timeout after send,
        -- crash mid-request): reconcile before resending.
        needs_reconcile INTEGER NOT NULL DEFAULT 0 CHECK (needs_reconcile IN (0, 1)),
        dead_reason     TEXT,
        dead_auth       INTEGER NOT NULL DEFAULT 0 CHECK (dead_auth IN (0, 1)),
        -- The platform's event id while its processing is unconfirmed.
        event_id        TEXT,
        remote_ids      TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(remote_ids)),
        delivered_at    INTEGER,
        origin          TEXT    NOT NULL DEFAULT 'mcp' CHECK (origin IN ('mcp', 'cli', 'import'))
    ) STRICT;

    -- Dedup: one undelivered copy per content. Delivered and dead entries
    -- leave the index, so a later save of the same text is a new entry.
    CREATE UNIQUE INDEX entries_undelivered_hash ON entries (content_hash)
        WHERE state IN ('pending', 'in_flight', 'failed');
    CREATE INDEX entries_due ON entries (state, next_attempt_at, seq);
    CREATE INDEX entries_state_created ON entries (state, created_at);
    CREATE INDEX entries_project_seq ON entries (project, seq);

    -- Entry counts by state, kept by triggers so a save's reply does not
    -- count 100,000 rows.
    CREATE TABLE state_counts (
        state TEXT PRIMARY KEY,
        n     INTEGER NOT NULL CHECK (n >= 0)
    ) STRICT;
    INSERT INTO state_counts (state, n) VALUES
        ('pending', 0), ('in_flight', 0), ('failed', 0), ('dead', 0), ('delivered', 0);
    CREATE TABLE dead_auth_count (only INTEGER PRIMARY KEY CHECK (only = 1), n INTEGER NOT NULL) STRICT;
    INSERT INTO dead_auth_count VALUES (1, 0);

    CREATE TRIGGER entries_count_insert AFTER INSERT ON entries BEGIN
        UPDATE state_counts SET n = n + 1 WHERE state = NEW.state;
        UPDATE dead_auth_count SET n = n + (NEW.state = 'dead' AND NEW.dead_auth = 1);
    END;
    CREATE TRIGGER entries_count_update AFTER UPDATE OF state, dead_auth ON entries BEGIN
        UPDATE state_counts SET n = n - 1 WHERE state = OLD.state;
        UPDATE state_counts SET n = n + 1 WHERE state = NEW.state;
        UPDATE dead_auth_count SET n = n - (OLD.state = 'dead' AND OLD.dead_auth = 1)
                                         + (NEW.state = 'dead' AND NEW.dead_auth = 1);
    END;
    CREATE TRIGGER entries_count_delete AFTER DELETE ON entries BEGIN
        UPDATE state_counts SET n = n - 1 WHERE state = OLD.state;
        UPDATE dead_auth_count SET n = n - (OLD.state = 'dead' AND OLD.dead_auth = 1);
    END;

    -- The seed's stats, as counters.
    CREATE TABLE stats (
        key   TEXT PRIMARY KEY CHECK (key IN ('total_queued', 'total_synced', 'total_failed', 'last_sync', 'last_success')),
        value INTEGER
    ) STRICT;
    INSERT INTO stats (key, value) VALUES
        ('total_queued', 0), ('total_synced', 0), ('total_failed', 0),
        ('last_sync', NULL), ('last_success', NULL);

    -- Small state shared by every process: the breaker, the last run.
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;
    "#,
    // 1 -> 2: the local copy's full-text index, and the knowledge graph.
    r#"
    -- Full-text search over every saved memory (bm25 ranking). An external
    -- content table: the text lives once, in `entries`.
    CREATE VIRTUAL TABLE entries_fts USING fts5(
        content,
        content = 'entries',
        content_rowid = 'seq',
        tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER entries_fts_insert AFTER INSERT ON entries BEGIN
        INSERT INTO entries_fts (rowid, content) VALUES (NEW.seq, NEW.content);
    END;
    CREATE TRIGGER entries_fts_delete AFTER DELETE ON entries BEGIN
        INSERT INTO entries_fts (entries_fts, rowid, content) VALUES ('delete', OLD.seq, OLD.content);
    END;
    INSERT INTO entries_fts (entries_fts) VALUES ('rebuild');

    -- The knowledge graph, written in the same transaction as each save, in
    -- the model of @modelcontextprotocol/server-memory.
    CREATE TABLE graph_entities (
        name        TEXT PRIMARY KEY,
        entity_type TEXT NOT NULL,
        -- 'mq': written by mem0-queue; 'import': read from a JSONL file.
        origin      TEXT NOT NULL DEFAULT 'mq' CHECK (origin IN ('mq', 'import'))
    ) STRICT;
    CREATE TABLE graph_observations (
        id         INTEGER PRIMARY KEY,
        entity     TEXT NOT NULL REFERENCES graph_entities (name) ON DELETE CASCADE,
        text       TEXT NOT NULL,
        entry_id   TEXT,
        created_at INTEGER NOT NULL,
        UNIQUE (entity, text)
    ) STRICT;
    CREATE INDEX graph_observations_entry ON graph_observations (entry_id);
    CREATE TABLE graph_relations (
        from_entity   TEXT NOT NULL,
        to_entity     TEXT NOT NULL,
        relation_type TEXT NOT NULL,
        entry_id      TEXT,
        PRIMARY KEY (from_entity, to_entity, relation_type)
    ) STRICT;
    "#,
    // 2 -> 3: entries that died of what is now a configuration problem come
    // back, once. Before this version an entry went to `dead` for any 4xx,
    // although only 400, 409, 413 and 422 reject the entry itself: 401/403
    // (the key), 404/405 (a wrong URL or API kind) and the rest (a proxy or
    // a gate answering) say nothing about the entry. `last_error` of such an
    // entry reads "HTTP <status> ..."; the dedup index skips a copy that is
    // queued again meanwhile.
    r#"
    UPDATE OR IGNORE entries
       SET state = 'pending', attempts_run = 0, next_attempt_at = 0,
           dead_reason = NULL, dead_auth = 0
     WHERE state = 'dead'
       AND last_error GLOB 'HTTP 4[0-9][0-9] *'
       AND substr(last_error, 6, 3) NOT IN ('400', '409', '413', '422');
    INSERT INTO meta (key, value) VALUES ('upgrade_revived', CAST(changes() AS TEXT))
        ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    "#,
    // 3 -> 4: the whole memory lifecycle. Every change to a memory is a row
    // of this same queue (an operation), delivered by the same worker: an
    // `add` row is also the memory's local copy; `update`, `delete` and
    // `delete_all` rows are changes to send. See docs/DESIGN.md, "The
    // memory lifecycle".
    r#"
    ALTER TABLE entries ADD COLUMN op TEXT NOT NULL DEFAULT 'add'
        CHECK (op IN ('add', 'update', 'delete', 'delete_all'));
    -- update, delete: the local memory (the add's id) it changes, when the
    -- local copy has it.
    ALTER TABLE entries ADD COLUMN target TEXT;
    -- update, delete: the Mem0 memory id it changes, once known.
    ALTER TABLE entries ADD COLUMN remote_target TEXT;
    -- add: when the memory was deleted here; hidden from every read since.
    ALTER TABLE entries ADD COLUMN deleted_at INTEGER;
    -- update: what it changes, {"text"?, "metadata"?}.
    ALTER TABLE entries ADD COLUMN changes TEXT
        CHECK (changes IS NULL OR json_valid(changes));
    -- add: the text and metadata its first attempt sent. Once an add may
    -- have reached the server, every later attempt sends these same ones
    -- (a retry or a reconcile is about that request), and a later change
    -- of the memory follows as an update, in order.
    ALTER TABLE entries ADD COLUMN sent_text TEXT;
    ALTER TABLE entries ADD COLUMN sent_metadata TEXT
        CHECK (sent_metadata IS NULL OR json_valid(sent_metadata));

    -- Dedup covers live memories only: not operations, not a memory
    -- deleted while its add was in flight.
    DROP INDEX entries_undelivered_hash;
    CREATE UNIQUE INDEX entries_undelivered_hash ON entries (content_hash)
        WHERE op = 'add' AND deleted_at IS NULL AND state IN ('pending', 'in_flight', 'failed');
    CREATE INDEX entries_target ON entries (target) WHERE target IS NOT NULL;
    CREATE INDEX entries_remote_target ON entries (remote_target) WHERE remote_target IS NOT NULL;
    CREATE INDEX entries_ops ON entries (op, state, project) WHERE op != 'add';

    -- The full-text index holds memories only, and follows an edit.
    DROP TRIGGER entries_fts_insert;
    DROP TRIGGER entries_fts_delete;
    CREATE TRIGGER entries_fts_insert AFTER INSERT ON entries WHEN NEW.op = 'add' BEGIN
        INSERT INTO entries_fts (rowid, content) VALUES (NEW.seq, NEW.content);
    END;
    CREATE TRIGGER entries_fts_delete AFTER DELETE ON entries WHEN OLD.op = 'add' BEGIN
        INSERT INTO entries_fts (entries_fts, rowid, content) VALUES ('delete', OLD.seq, OLD.content);
    END;
    CREATE TRIGGER entries_fts_update AFTER UPDATE OF content ON entries WHEN NEW.op = 'add' BEGIN
        INSERT INTO entries_fts (entries_fts, rowid, content) VALUES ('delete', OLD.seq, OLD.content);
        INSERT INTO entries_fts (rowid, content) VALUES (NEW.seq, NEW.content);
    END;

    -- Mem0's ids, each to the local memory it came from: a memory is found
    -- by either id, and one save may have become several Mem0 memories.
    CREATE TABLE remote_memories (
        remote_id TEXT PRIMARY KEY,
        entry_id  TEXT NOT NULL
    ) STRICT;
    CREATE INDEX remote_memories_entry ON remote_memories (entry_id);
    INSERT OR IGNORE INTO remote_memories (remote_id, entry_id)
        SELECT j.value, e.id FROM entries e, json_each(e.remote_ids) j
         WHERE e.state = 'delivered' AND j.type = 'text';

    -- Every memory deleted here (cancelled, deleted or forgotten), so the
    -- vault mirror removes its note, and a memory pruned by retention (still
    -- on the server) is never taken for a deleted one.
    CREATE TABLE tombstones (
        entry_id   TEXT PRIMARY KEY,
        project    TEXT NOT NULL,
        deleted_at INTEGER NOT NULL
    ) STRICT;
    "#,
    // 4 -> 5: whether Mem0 infers facts from this entry, when it is not the
    // config's `infer` (NULL): a captured session is always sent with
    // `infer = true`, whatever the config says for saves.
    r#"
    ALTER TABLE entries ADD COLUMN infer INTEGER CHECK (infer IS NULL OR infer IN (0, 1));
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`SCHEMA_VERSION`], one transaction per step.
/// A database newer than this build is refused rather than misread.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Brings the database to `target` (tests build older queues with it).
pub(crate) fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), StoreError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version >= target {
            return Ok(());
        }
        tx.execute_batch(MIGRATIONS[version as usize])?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
        if version + 1 == 3 {
            let revived: Option<String> = conn
                .query_row(
                    "SELECT value FROM meta WHERE key = 'upgrade_revived'",
                    [],
                    |r| r.get(0),
                )
                .ok();
            if let Some(n) = revived.filter(|n| n != "0") {
                tracing::warn!(
                    entries = %n,
                    "upgrade: entries that had died of a configuration problem (HTTP 401, 403, 404, 405 or a non-Mem0 answer) are pending again"
                );
            }
        }
    }
}
