//! A total-queue checker in the manner of Jepsen's: it compares what was
//! acknowledged to the client, what the local queue holds, and what the Mem0
//! test server stored, and counts what went wrong.
//!
//! - lost: acknowledged, but neither delivered (on the server) nor still
//!   held by the queue (pending, in flight, failed or dead);
//! - duplicated: stored more than once on the server;
//! - unexpected: on the server, but never acknowledged (nor attempted, for
//!   the saves whose outcome the client never learnt).
//!
//! Like Jepsen's total-queue checker, a save whose reply never came (the
//! process was killed between the commit and the reply) is indeterminate:
//! it may be delivered or not, and is neither lost nor unexpected either way.
//!
//! A suite passes only when all three are zero.

use std::collections::{HashMap, HashSet};
use std::path::Path;

/// What the checker found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub acknowledged: usize,
    /// Indeterminate saves (committed, reply never received) given to the
    /// checker; they may be delivered without being unexpected.
    pub indeterminate: usize,
    /// Acknowledged and stored on the server (exactly once or more).
    pub delivered: usize,
    /// Acknowledged, not on the server, still held by the queue.
    pub queued: usize,
    pub lost: Vec<String>,
    /// mq_id and how many copies the server holds.
    pub duplicated: Vec<(String, usize)>,
    pub unexpected: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.lost.is_empty() && self.duplicated.is_empty() && self.unexpected.is_empty()
    }

    /// One line: `acknowledged=N indeterminate=N delivered=N queued=N lost=0
    /// duplicated=0 unexpected=0`.
    pub fn summary(&self) -> String {
        format!(
            "acknowledged={} indeterminate={} delivered={} queued={} lost={} duplicated={} unexpected={}",
            self.acknowledged,
            self.indeterminate,
            self.delivered,
            self.queued,
            self.lost.len(),
            self.duplicated.len(),
            self.unexpected.len()
        )
    }
}

/// The ids the queue database still holds, by state name.
pub fn queue_states(db: &Path) -> HashMap<String, String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the queue read-only");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    let mut stmt = conn
        .prepare("SELECT id, state FROM entries")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Compares the three sets. `server` maps `metadata.mq_id` to the number of
/// stored copies (`Mem0Server::count_by_mq_id`); memories stored without an
/// mq_id count as unexpected under the key "".
pub fn check(
    acknowledged: &HashSet<String>,
    db: &Path,
    server: &HashMap<String, usize>,
) -> CheckReport {
    check_with_indeterminate(acknowledged, &HashSet::new(), db, server)
}

/// [`check`], where `indeterminate` holds the saves whose outcome the client
/// never learnt: each may be on the server (once) or not, and is counted
/// neither lost nor unexpected; a copy stored twice is still a duplicate.
pub fn check_with_indeterminate(
    acknowledged: &HashSet<String>,
    indeterminate: &HashSet<String>,
    db: &Path,
    server: &HashMap<String, usize>,
) -> CheckReport {
    let states = queue_states(db);
    let mut r = CheckReport {
        acknowledged: acknowledged.len(),
        indeterminate: indeterminate.difference(acknowledged).count(),
        ..Default::default()
    };
    for id in acknowledged {
        match server.get(id) {
            Some(&n) if n >= 1 => {
                r.delivered += 1;
                if n > 1 {
                    r.duplicated.push((id.clone(), n));
                }
            }
            _ => match states.get(id).map(String::as_str) {
                Some("pending" | "in_flight" | "failed" | "dead") => r.queued += 1,
                // Not on the server, and the queue says delivered or has
                // forgotten it: lost.
                _ => r.lost.push(id.clone()),
            },
        }
    }
    for (id, &n) in server {
        if !acknowledged.contains(id) {
            if !indeterminate.contains(id) {
                r.unexpected.push(id.clone());
            }
            if n > 1 {
                r.duplicated.push((id.clone(), n));
            }
        }
    }
    r.lost.sort();
    r.duplicated.sort();
    r.unexpected.sort();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue database holding these (id, state) rows, in a temp dir.
    fn queue_of(rows: &[(&str, &str)]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("q.db");
        let conn = rusqlite::Connection::open(&db).expect("db");
        conn.execute_batch("CREATE TABLE entries (id TEXT, state TEXT)")
            .expect("create");
        for (id, state) in rows {
            conn.execute("INSERT INTO entries VALUES (?1, ?2)", [id, state])
                .expect("insert");
        }
        (dir, db)
    }

    fn ids(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_checker_counts_each_kind_of_error() {
        let (_dir, db) = queue_of(&[
            ("a", "delivered"),
            ("b", "pending"),
            ("c", "delivered"),
            ("d", "dead"),
        ]);
        let acked = ids(&["a", "b", "c", "d", "e"]);
        let server: HashMap<String, usize> = [("a".to_string(), 2), ("z".to_string(), 1)]
            .into_iter()
            .collect();
        let r = check(&acked, &db, &server);
        assert_eq!(r.delivered, 1);
        assert_eq!(r.queued, 2, "b pending, d dead");
        assert_eq!(
            r.lost,
            ["c", "e"],
            "c: delivered per the queue but not on the server; e: gone"
        );
        assert_eq!(r.duplicated, [("a".to_string(), 2)]);
        assert_eq!(r.unexpected, ["z"]);
        assert!(!r.ok());
        assert_eq!(
            r.summary(),
            "acknowledged=5 indeterminate=0 delivered=1 queued=2 lost=2 duplicated=1 unexpected=1"
        );
    }

    #[test]
    fn indeterminate_saves_are_neither_lost_nor_unexpected_but_may_duplicate() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("q.db");
        let conn = rusqlite::Connection::open(&db).expect("db");
        conn.execute_batch(
            "CREATE TABLE entries (id TEXT, state TEXT);
             INSERT INTO entries VALUES ('a','delivered'), ('i1','delivered'), ('i3','delivered');",
        )
        .expect("fill");
        let acked: HashSet<String> = ["a".to_string()].into_iter().collect();
        let indeterminate: HashSet<String> =
            ["i1", "i2", "i3"].iter().map(|s| s.to_string()).collect();
        let server: HashMap<String, usize> = [
            ("a".to_string(), 1),
            ("i1".to_string(), 1),
            ("i3".to_string(), 2),
            ("z".to_string(), 1),
        ]
        .into_iter()
        .collect();
        let r = check_with_indeterminate(&acked, &indeterminate, &db, &server);
        assert_eq!(r.indeterminate, 3);
        assert_eq!(r.delivered, 1);
        assert!(r.lost.is_empty(), "i2 was never confirmed: not lost");
        assert_eq!(r.unexpected, ["z"], "i1 and i3 were attempted");
        assert_eq!(r.duplicated, [("i3".to_string(), 2)]);
        // The same server without the indeterminate set: i1 and i3 are unexpected.
        let plain = check(&acked, &db, &server);
        assert_eq!(plain.unexpected, ["i1", "i3", "z"]);
    }
}
