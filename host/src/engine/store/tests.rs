//! Unit tests of the store against a real SQLite file in a temp dir.

use super::*;

pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        let p = std::env::temp_dir().join(format!("mq-store-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&p).expect("mkdir");
        Self(p)
    }
    pub(crate) fn db(&self) -> PathBuf {
        self.0.join("queue.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const LIMITS: Limits = Limits {
    max_content_bytes: 1024,
    max_metadata_bytes: 256,
    max_queue_len: 5,
};

fn new(content: &str) -> NewEntry {
    NewEntry {
        project: "proj".into(),
        agent_id: None,
        run_id: None,
        content: content.into(),
        metadata: serde_json::json!({"k": "v"}),
        created_at: 1_000,
        origin: Origin::Mcp,
        id: None,
    }
}

#[test]
fn enqueue_then_read_back_with_counts_and_stats() {
    let d = TempDir::new();
    let mut s = Store::open(&d.db()).expect("open");
    let a = s.enqueue(new("first"), &LIMITS).expect("save");
    let b = s.enqueue(new("second"), &LIMITS).expect("save");
    assert!(!a.deduplicated && !b.deduplicated);
    assert_eq!(b.depth, 2);
    assert_eq!(
        uuid::Uuid::parse_str(&a.id)
            .expect("uuid")
            .get_version_num(),
        7
    );
    let stats = s.stats().expect("stats");
    assert_eq!(stats.counts.pending, 2);
    assert_eq!(stats.total_queued, 2);
    assert_eq!(stats.oldest_pending, Some(1_000));
    let recent = s.recent(10, None).expect("recent");
    assert_eq!(recent[0].content.as_deref(), Some("second"));
    assert_eq!(recent[1].id, a.id);
    assert_eq!(s.integrity_check().expect("check"), "ok");
}

#[test]
fn the_same_undelivered_content_is_deduplicated() {
    let d = TempDir::new();
    let mut s = Store::open(&d.db()).expect("open");
    let a = s.enqueue(new("same"), &LIMITS).expect("save");
    let b = s.enqueue(new("same"), &LIMITS).expect("save");
    assert!(b.deduplicated);
    assert_eq!(a.id, b.id);
    let mut other = new("same");
    other.project = "other".into();
    assert!(!s.enqueue(other, &LIMITS).expect("save").deduplicated);
    assert_eq!(s.counts().expect("counts").pending, 2);
    // Once delivered, the same text is a new memory.
    s.record_delivered(&a.id, &["r1".into()], 2_000)
        .expect("deliver");
    let c = s.enqueue(new("same"), &LIMITS).expect("save");
    assert!(!c.deduplicated);
    assert_ne!(c.id, a.id);
}

#[test]
fn bounds_are_enforced_and_nothing_is_written() {
    let d = TempDir::new();
    let mut s = Store::open(&d.db()).expect("open");
    let big = "x".repeat(1025);
    assert!(matches!(
        s.enqueue(new(&big), &LIMITS),
        Err(StoreError::TooLarge {
            what: "content",
            ..
        })
    ));
    let mut meta = new("m");
    meta.metadata = serde_json::json!({"k": "y".repeat(300)});
    assert!(matches!(
        s.enqueue(meta, &LIMITS),
        Err(StoreError::TooLarge {
            what: "metadata",
            ..
        })
    ));
    let mut bad = new("b");
    bad.project = "has space".into();
    assert!(matches!(
        s.enqueue(bad, &LIMITS),
        Err(StoreError::Invalid {
            field: "project",
            ..
        })
    ));
    assert!(matches!(
        s.enqueue(new("   "), &LIMITS),
        Err(StoreError::Invalid {
            field: "content",
            ..
        })
    ));
    let mut arr = new("a");
    arr.metadata = serde_json::json!([1]);
    assert!(matches!(
        s.enqueue(arr, &LIMITS),
        Err(StoreError::Invalid {
            field: "metadata",
            ..
        })
    ));
    for i in 0..5 {
        s.enqueue(new(&format!("n{i}")), &LIMITS)
            .expect("under the cap");
    }
    assert!(matches!(
        s.enqueue(new("over"), &LIMITS),
        Err(StoreError::QueueFull { len: 5, max: 5 })
    ));
    let stats = s.stats().expect("stats");
    assert_eq!(stats.counts.pending, 5);
    assert_eq!(stats.total_queued, 5);
}

#[test]
fn the_database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = TempDir::new();
    let s = Store::open(&d.db()).expect("open");
    drop(s);
    let mode = std::fs::metadata(d.db())
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_corrupt_file_is_a_clear_error_and_left_untouched() {
    let d = TempDir::new();
    let garbage = b"this is not a sqlite database, just some bytes that a bad write left behind. "
        .repeat(100);
    std::fs::write(d.db(), &garbage).expect("write");
    let err = Store::open(&d.db()).err().expect("corrupt");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("left untouched"));
    assert_eq!(std::fs::read(d.db()).expect("read"), garbage);
}

#[test]
fn claims_lease_and_record_outcomes() {
    let d = TempDir::new();
    let mut s = Store::open(&d.db()).expect("open");
    let a = s.enqueue(new("a"), &LIMITS).expect("save").id;
    let b = s.enqueue(new("b"), &LIMITS).expect("save").id;
    let claimed = s.claim("w1", 5_000, 60_000, 10).expect("claim");
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].id, a);
    // Nothing is left for a second worker.
    assert!(s.claim("w2", 5_000, 60_000, 10).expect("claim").is_empty());
    assert_eq!(s.counts().expect("c").in_flight, 2);

    s.record_failure(
        &a,
        "w1",
        &FailureRecord::Retry { delay_ms: 2_000 },
        "timeout",
        true,
        6_000,
    )
    .expect("retry");
    // Not due before its delay.
    assert!(s.claim("w1", 7_999, 60_000, 10).expect("claim").is_empty());
    let again = s.claim("w1", 8_000, 60_000, 10).expect("claim");
    assert_eq!(again.len(), 1);
    assert!(again[0].needs_reconcile);
    assert_eq!(again[0].attempts_run, 1);

    s.record_failure(&a, "w1", &FailureRecord::Fail, "timeout", false, 9_000)
        .expect("fail");
    s.record_failure(
        &b,
        "w1",
        &FailureRecord::Dead {
            reason: "HTTP 401".into(),
            auth: true,
        },
        "401",
        false,
        9_000,
    )
    .expect("dead");
    let c = s.counts().expect("c");
    assert_eq!(
        (c.pending, c.in_flight, c.failed, c.dead, c.dead_auth),
        (0, 0, 1, 1, 1)
    );
    assert_eq!(s.stats().expect("s").total_failed, 1);

    // A run start revives the failed entry with its per-run attempts reset.
    let summaries = s.failed_summaries(10_000).expect("summaries");
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].runs_failed, 1);
    assert_eq!(
        s.revive(std::slice::from_ref(&a), 10_000).expect("revive"),
        1
    );
    let fresh = s.claim("w1", 10_000, 60_000, 10).expect("claim");
    assert_eq!(fresh[0].attempts_run, 0);
    assert_eq!(fresh[0].attempts, 2);
    assert!(
        s.record_delivered(&a, &["m-1".into()], 11_000)
            .expect("deliver")
    );
    let stats = s.stats().expect("s");
    assert_eq!(stats.total_synced, 1);
    assert_eq!(stats.last_success, Some(11_000));
    assert_eq!(s.get(&a, false).expect("get").remote_ids, ["m-1"]);

    // retry --dead moves the dead one back, and the auth count follows.
    assert_eq!(s.retry(&[], State::Dead, 12_000).expect("retry"), 1);
    assert_eq!(s.counts().expect("c").dead_auth, 0);
}

#[test]
fn expired_leases_are_reclaimed_for_reconciliation() {
    let d = TempDir::new();
    let mut s = Store::open(&d.db()).expect("open");
    let a = s.enqueue(new("a"), &LIMITS).expect("save").id;
    s.claim("dead-worker", 1_000, 500, 1).expect("claim");
    let alive = |_: &str| true;
    assert_eq!(
        s.reclaim_expired(1_400, &alive).expect("reclaim").reclaimed,
        0
    );
    assert_eq!(
        s.reclaim_expired(1_501, &alive).expect("reclaim").reclaimed,
        1
    );
    let c = s.claim("w", 1_501, 500, 1).expect("claim");
    assert_eq!(c[0].id, a);
    assert!(c[0].needs_reconcile);
    assert_eq!(
        c[0].attempts, 0,
        "a reclaimed lease is not charged an attempt"
    );
}

#[test]
fn a_dead_workers_lease_is_reclaimed_before_it_expires() {
    let d = TempDir::new();
    let mut s = Store::open(&d.db()).expect("open");
    s.enqueue(new("a"), &LIMITS).expect("save");
    s.enqueue(new("b"), &LIMITS).expect("save");
    s.claim("gone", 1_000, 600_000, 1).expect("claim");
    s.claim("alive", 1_000, 600_000, 1).expect("claim");
    let alive = |o: &str| o == "alive";
    assert_eq!(
        s.reclaim_expired(2_000, &alive).expect("reclaim").reclaimed,
        1
    );
    let c = s.counts().expect("c");
    assert_eq!((c.pending, c.in_flight), (1, 1));
}

#[test]
fn local_search_ranks_only_the_newest_candidates_of_its_project() {
    let d = TempDir::new();
    let mut s = Store::open(&d.db()).expect("open");
    let roomy = Limits {
        max_queue_len: 100,
        ..LIMITS
    };
    // The oldest match is the best by bm25 (the word three times).
    s.enqueue(new("rsync rsync rsync, and the deploy key"), &roomy)
        .expect("save");
    for i in 0..3 {
        s.enqueue(
            new(&format!("note {i}: rsync once among many other words here")),
            &roomy,
        )
        .expect("save");
    }
    // Newer matches in another project use none of the candidates.
    for i in 0..3 {
        let mut other = new(&format!("rsync rsync elsewhere {i}"));
        other.project = "other".into();
        s.enqueue(other, &roomy).expect("save");
    }
    let content = |h: &[(EntryView, f64)]| h[0].0.content.clone().unwrap_or_default();
    let all = s
        .search_local_among("rsync", Some("proj"), 10, 100)
        .expect("search");
    assert_eq!(all.len(), 4);
    assert!(
        content(&all).contains("deploy key"),
        "ranked over all: the best first"
    );
    let newest = s
        .search_local_among("rsync", Some("proj"), 10, 3)
        .expect("search");
    assert_eq!(
        newest.len(),
        3,
        "only the newest 3 matches of the project are ranked"
    );
    assert!(!content(&newest).contains("deploy key"));
    // A rarer word has fewer matches than the cap: the old memory is found.
    let rare = s
        .search_local_among("deploy", Some("proj"), 10, 3)
        .expect("search");
    assert!(content(&rare).contains("deploy key"));
}

#[test]
fn local_search_finds_a_save_at_once_ranked_by_bm25() {
    let d = TempDir::new();
    let mut s = Store::open(&d.db()).expect("open");
    s.enqueue(new("The deploy uses rsync over ssh"), &LIMITS)
        .expect("save");
    s.enqueue(new("Alice prefers tabs; rsync flags: -avz"), &LIMITS)
        .expect("save");
    s.enqueue(new("unrelated note about coffee"), &LIMITS)
        .expect("save");
    let hits = s.search_local("rsync deploy", None, 10).expect("search");
    assert_eq!(hits.len(), 2);
    assert!(
        hits[0]
            .0
            .content
            .as_deref()
            .unwrap_or("")
            .contains("deploy"),
        "both words rank first"
    );
    assert!(hits[0].1 > hits[1].1 && hits[1].1 > 0.0);
    // User text is never FTS syntax.
    assert!(s.search_local("\"unbalanced AND (", None, 10).is_ok());
    assert!(s.search_local("   ", None, 10).expect("empty").is_empty());
    let mut other = new("rsync in another project");
    other.project = "other".into();
    s.enqueue(other, &LIMITS).expect("save");
    assert_eq!(
        s.search_local("rsync", Some("other"), 10)
            .expect("search")
            .len(),
        1
    );
}

#[test]
fn a_save_writes_the_graph_in_its_transaction() {
    let d = TempDir::new();
    let mut s = Store::open(&d.db()).expect("open");
    let mut e = new("Alice maintains the rust build");
    e.metadata = serde_json::json!({
        "entities": ["alice", "rust"],
        "relations": [{"from": "alice", "to": "rust", "type": "maintains"}]
    });
    let id = s.enqueue(e, &LIMITS).expect("save").id;
    let g = s.graph_all().expect("graph");
    let names: Vec<_> = g.entities.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["alice", "proj", "rust"]);
    assert!(
        g.entities
            .iter()
            .all(|e| e.observations.len() == 1 && e.observations[0].contains(&id))
    );
    assert_eq!(g.relations.len(), 1);
    let found = s.graph_search("RUST build").expect("search");
    assert_eq!(
        found.entities.len(),
        3,
        "the observation text matches on every entity"
    );
    let opened = s.graph_open(&["alice".into()]).expect("open");
    assert_eq!(opened.entities.len(), 1);
    assert_eq!(opened.relations.len(), 1);
    // Bad graph metadata refuses the save, and writes nothing.
    let mut bad = new("bad graph");
    bad.metadata = serde_json::json!({"entities": "alice"});
    assert!(matches!(
        s.enqueue(bad, &LIMITS),
        Err(StoreError::Invalid {
            field: "metadata",
            ..
        })
    ));
    assert_eq!(s.counts().expect("c").pending, 1);
}

/// Regression (issue 12, "a wrong URL kills every entry"): entries that an
/// older version sent to `dead` for a 401, 403, 404 or 405 (a configuration
/// problem) come back once at the upgrade, counted for the log; a real
/// rejection of the entry (400, 409, 413, 422) stays dead.
#[test]
fn the_upgrade_gives_back_entries_that_died_of_a_configuration_problem() {
    let d = TempDir::new();
    let mut s = Store::open(&d.db()).expect("open");
    let mut ids = Vec::new();
    let limits = Limits {
        max_queue_len: 100,
        ..LIMITS
    };
    for i in 0..6 {
        ids.push(
            s.enqueue(new(&format!("memory {i}")), &limits)
                .expect("q")
                .id,
        );
    }
    let claimed = s.claim("w", 1_000, 60_000, 6).expect("claim");
    assert_eq!(claimed.len(), 6);
    // What an older version recorded: `Failure::describe` of a permanent
    // rejection, e.g. "HTTP 404 rejected", "HTTP 401 auth rejected".
    for (id, error, auth) in [
        (&ids[0], "HTTP 404 rejected", false),
        (&ids[1], "HTTP 401 auth rejected", true),
        (&ids[2], "HTTP 405 rejected", false),
        (&ids[3], "HTTP 422 rejected", false),
        (&ids[4], "HTTP 413 rejected", false),
        (&ids[5], "HTTP 400 rejected", false),
    ] {
        let record = FailureRecord::Dead {
            reason: "rejected".into(),
            auth,
        };
        s.record_failure(id, "w", &record, error, false, 2_000)
            .expect("dead");
    }
    assert_eq!(s.counts().expect("c").dead, 6);
    // Back to the schema before the fix, as an existing queue is.
    s.conn()
        .execute_batch("PRAGMA user_version = 2; DELETE FROM meta WHERE key = 'upgrade_revived';")
        .expect("downgrade the version");
    drop(s);

    let s = Store::open(&d.db()).expect("reopen: the upgrade runs");
    let state = |id: &str| s.get(id, false).expect("get").state;
    for id in &ids[..3] {
        assert_eq!(state(id), State::Pending, "{id}");
    }
    for id in &ids[3..] {
        assert_eq!(state(id), State::Dead, "{id}: a real rejection stays dead");
    }
    let c = s.counts().expect("c");
    assert_eq!((c.pending, c.dead, c.dead_auth), (3, 3, 0));
    assert_eq!(
        s.meta_get(meta_keys::UPGRADE_REVIVED)
            .expect("meta")
            .as_deref(),
        Some("3")
    );
    drop(s);
    // Once: a later open changes nothing.
    let s = Store::open(&d.db()).expect("reopen again");
    assert_eq!(s.counts().expect("c").dead, 3);
}
