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
        infer: None,
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
fn captured_conversations_are_neither_found_nor_recalled_and_keep_their_infer() {
    let d = TempDir::new();
    let mut s = Store::open(&d.db()).expect("open");
    let kept = s
        .enqueue(new("the deploy uses rsync"), &LIMITS)
        .expect("save")
        .id;
    let mut cap = new("User: how does the deploy work?\n\nAssistant: rsync");
    cap.metadata = serde_json::json!({"capture": {"session_id": "s", "source": "session-end"}});
    cap.infer = Some(true);
    let cap = s.enqueue(cap, &LIMITS).expect("capture").id;
    let hits = s.search_local("deploy rsync", None, 10).expect("search");
    assert_eq!(
        hits.iter().map(|h| h.0.id.as_str()).collect::<Vec<_>>(),
        [kept.as_str()]
    );
    let r = s
        .recall_candidates("proj", "deploy rsync", 10, 10)
        .expect("recall");
    assert_eq!(r.matches.len(), 1);
    assert_eq!(
        r.newest.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        [kept.as_str()]
    );
    assert_eq!(r.total, 1);
    // The claim carries each entry's own infer.
    let claimed = s.claim("w", 2_000, 60_000, 10).expect("claim");
    let infer = |id: &str| claimed.iter().find(|c| c.id == id).map(|c| c.infer);
    assert_eq!(infer(&kept), Some(None));
    assert_eq!(infer(&cap), Some(Some(true)));
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
    // A queue as schema 2 (the version before the fix) left it.
    {
        let mut conn = rusqlite::Connection::open(d.db()).expect("open");
        schema::migrate_to(&mut conn, 2).expect("schema 2");
        // What an older version recorded: `Failure::describe` of a permanent
        // rejection, e.g. "HTTP 404 rejected", "HTTP 401 auth rejected".
        for (i, error, auth) in [
            (0, "HTTP 404 rejected", 0),
            (1, "HTTP 401 auth rejected", 1),
            (2, "HTTP 405 rejected", 0),
            (3, "HTTP 422 rejected", 0),
            (4, "HTTP 413 rejected", 0),
            (5, "HTTP 400 rejected", 0),
        ] {
            conn.execute(
                "INSERT INTO entries (id, project, content, content_hash, created_at, state,
                                      attempts, last_error, dead_reason, dead_auth)
                 VALUES (?1, 'proj', ?2, ?3, 1000, 'dead', 1, ?4, 'rejected', ?5)",
                rusqlite::params![
                    format!("0190c0de-0000-7000-8000-00000000000{i}"),
                    format!("memory {i}"),
                    format!("hash-{i}"),
                    error,
                    auth
                ],
            )
            .expect("insert a dead entry");
        }
    }
    let ids: Vec<String> = (0..6)
        .map(|i| format!("0190c0de-0000-7000-8000-00000000000{i}"))
        .collect();

    let s = Store::open(&d.db()).expect("open: the upgrade runs");
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

mod lifecycle {
    use super::*;
    use crate::engine::store::{ChangeOutcome, Changes, Op};

    fn limits() -> Limits {
        Limits {
            max_queue_len: 1_000,
            ..LIMITS
        }
    }

    fn text(t: &str) -> Changes {
        Changes {
            text: Some(t.into()),
            metadata: None,
        }
    }

    fn deliver(s: &mut Store, id: &str, remote: &[&str]) {
        let c = s.claim("w", 1_000, 60_000, 100).expect("claim");
        assert!(c.iter().any(|c| c.id == id), "{id} claimable: {c:?}");
        let ids: Vec<String> = remote.iter().map(|r| r.to_string()).collect();
        s.record_delivered(id, &ids, 2_000).expect("deliver");
        for other in c.iter().filter(|c| c.id != id) {
            s.release(&other.id, "w", false, 0).expect("release");
        }
    }

    #[test]
    fn a_change_to_a_memory_never_sent_is_applied_locally_and_sends_nothing() {
        let d = TempDir::new();
        let mut s = Store::open(&d.db()).expect("open");
        let a = s.enqueue(new("the port is 5432"), &limits()).expect("q").id;
        let out = s
            .update_memory(&a, &text("the port is 5433"), "proj", &limits(), 1_500)
            .expect("update");
        assert_eq!(out, ChangeOutcome::AppliedLocally { id: a.clone() });
        let m = s.get_memory(&a).expect("get").expect("there");
        assert_eq!(m.content, "the port is 5433");
        // The dedup key follows: the new text dedups, the old one is free.
        let again = s.enqueue(new("the port is 5433"), &limits()).expect("q");
        assert!(again.deduplicated && again.id == a);
        assert_eq!(s.search_local("5433", None, 10).expect("s").len(), 1);
        assert!(s.search_local("5432", None, 10).expect("s").is_empty());
        let out = s.delete_memory(&a, "proj", 1_600).expect("delete");
        assert_eq!(out, ChangeOutcome::AppliedLocally { id: a.clone() });
        assert!(s.get_memory(&a).expect("get").is_none());
        assert_eq!(s.counts().expect("c").undelivered(), 0, "nothing to send");
        assert!(s.search_local("5433", None, 10).expect("s").is_empty());
    }

    #[test]
    fn changes_to_a_delivered_memory_are_queued_in_order_against_its_mem0_id() {
        let d = TempDir::new();
        let mut s = Store::open(&d.db()).expect("open");
        let a = s.enqueue(new("likes tea"), &limits()).expect("q").id;
        deliver(&mut s, &a, &["11111111-1111-4111-8111-111111111111"]);
        let r = "11111111-1111-4111-8111-111111111111";
        let up = s
            .update_memory(&a, &text("likes green tea"), "proj", &limits(), 3_000)
            .expect("update");
        let ChangeOutcome::Queued {
            op_ids,
            remote_ids,
            behind_add,
            ..
        } = up
        else {
            panic!("queued: {up:?}");
        };
        assert_eq!(
            (remote_ids.as_slice(), behind_add),
            (&[r.to_string()][..], false)
        );
        // By its Mem0 id, the same memory; read-your-writes at once.
        assert_eq!(
            s.get_memory(r).expect("g").expect("m").content,
            "likes green tea"
        );
        let del = s.delete_memory(r, "proj", 3_100).expect("delete");
        assert!(matches!(del, ChangeOutcome::Queued { .. }), "{del:?}");
        assert!(s.get_memory(&a).expect("g").is_none(), "hidden at once");
        assert!(s.pending_changes().expect("p").deleted.contains(r));
        // Only the update may go first; the delete waits behind it.
        let c = s.claim("w", 4_000, 60_000, 10).expect("claim");
        assert_eq!(c.iter().map(|c| c.op).collect::<Vec<_>>(), [Op::Update]);
        assert_eq!(c[0].id, op_ids[0]);
        assert_eq!(c[0].remote_target.as_deref(), Some(r));
        assert!(s.claim("w", 4_000, 60_000, 10).expect("claim").is_empty());
        s.record_delivered(&op_ids[0], &[], 4_500).expect("done");
        let c = s.claim("w", 5_000, 60_000, 10).expect("claim");
        assert_eq!(c.iter().map(|c| c.op).collect::<Vec<_>>(), [Op::Delete]);
    }

    #[test]
    fn a_change_behind_an_add_in_flight_waits_for_it() {
        let d = TempDir::new();
        let mut s = Store::open(&d.db()).expect("open");
        let a = s.enqueue(new("draft"), &limits()).expect("q").id;
        let c = s.claim("w", 1_000, 60_000, 10).expect("claim");
        assert_eq!(c.len(), 1);
        let out = s
            .update_memory(&a, &text("final"), "proj", &limits(), 1_100)
            .expect("update");
        assert!(
            matches!(
                out,
                ChangeOutcome::Queued {
                    behind_add: true,
                    ..
                }
            ),
            "{out:?}"
        );
        assert!(
            s.claim("w2", 1_200, 60_000, 10).expect("c").is_empty(),
            "waits"
        );
        assert_eq!(s.next_due().expect("due"), None, "not due while it waits");
        s.record_delivered(&a, &["22222222-2222-4222-8222-222222222222".into()], 1_300)
            .expect("deliver");
        let c = s.claim("w2", 1_400, 60_000, 10).expect("claim");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].op, Op::Update);
        assert_eq!(
            c[0].target_now,
            Some((
                State::Delivered,
                vec!["22222222-2222-4222-8222-222222222222".into()]
            ))
        );
    }

    #[test]
    fn a_forget_orders_the_project_around_it() {
        let d = TempDir::new();
        let mut s = Store::open(&d.db()).expect("open");
        let sent = s.enqueue(new("old fact"), &limits()).expect("q").id;
        deliver(&mut s, &sent, &["33333333-3333-4333-8333-333333333333"]);
        let never = s.enqueue(new("never sent"), &limits()).expect("q").id;
        let preview = s.forget_preview("proj").expect("preview");
        assert_eq!((preview.cancelled, preview.on_server), (1, 1));
        let out = s.forget_project("proj", 5_000).expect("forget");
        assert!(out.op_id.is_some());
        assert!(s.get_memory(&sent).expect("g").is_none());
        assert!(!s.contains(&never).expect("c"), "cancelled");
        let later = s.enqueue(new("new fact"), &limits()).expect("q").id;
        // The forget goes first; the later save waits behind it.
        let c = s.claim("w", 6_000, 60_000, 10).expect("claim");
        assert_eq!(c.iter().map(|c| c.op).collect::<Vec<_>>(), [Op::DeleteAll]);
        s.record_delivered(&c[0].id, &[], 6_500).expect("done");
        let c = s.claim("w", 7_000, 60_000, 10).expect("claim");
        assert_eq!(
            c.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            [later.as_str()]
        );
        assert!(
            s.pending_changes()
                .expect("p")
                .forgotten
                .contains_key("proj")
        );
    }

    /// Regression (R8, "an update lost behind an unknown outcome"): an
    /// update of a save whose last attempt timed out was applied to the
    /// local copy only, as if the save had never been sent; the lookup then
    /// found the save on the server with its old text, and the update was
    /// lost. Such a change now goes behind the save.
    #[test]
    fn a_change_to_a_save_that_may_be_on_the_server_is_queued_behind_it() {
        let d = TempDir::new();
        let mut s = Store::open(&d.db()).expect("open");
        let a = s.enqueue(new("old text"), &limits()).expect("q").id;
        let b = s.enqueue(new("to delete"), &limits()).expect("q").id;
        s.claim("w", 1_000, 60_000, 10).expect("claim");
        for id in [&a, &b] {
            // A timeout after the request was sent: maybe stored.
            s.record_failure(
                id,
                "w",
                &FailureRecord::Retry { delay_ms: 0 },
                "timed out",
                true,
                1_100,
            )
            .expect("unknown outcome");
        }
        let up = s
            .update_memory(&a, &text("new text"), "proj", &limits(), 1_200)
            .expect("update");
        assert!(
            matches!(
                up,
                ChangeOutcome::Queued {
                    behind_add: true,
                    ..
                }
            ),
            "{up:?}"
        );
        let del = s.delete_memory(&b, "proj", 1_300).expect("delete");
        assert!(
            matches!(
                del,
                ChangeOutcome::Queued {
                    behind_add: true,
                    ..
                }
            ),
            "{del:?}"
        );
        assert!(s.contains(&b).expect("c"), "kept, to be looked up");
        assert_eq!(s.get_memory(&a).expect("g").expect("m").content, "new text");
        assert!(s.get_memory(&b).expect("g").is_none());
    }

    /// Regression (R8, "a change applied out of order"): an add resent
    /// after an unknown outcome carried the memory's newest text, and the
    /// updates queued behind it were sent after it, so the server went back
    /// to an older text in between. An add now resends its first text.
    #[test]
    fn a_resent_add_sends_its_first_text_and_the_changes_follow_it() {
        let d = TempDir::new();
        let mut s = Store::open(&d.db()).expect("open");
        let a = s.enqueue(new("v1"), &limits()).expect("q").id;
        let first = s.claim("w", 1_000, 60_000, 10).expect("claim");
        assert_eq!(first[0].content, "v1");
        s.update_memory(&a, &text("v2"), "proj", &limits(), 1_050)
            .expect("update while in flight");
        s.record_failure(
            &a,
            "w",
            &FailureRecord::Retry { delay_ms: 0 },
            "timed out",
            true,
            1_100,
        )
        .expect("unknown");
        let again = s.claim("w", 2_000, 60_000, 10).expect("claim");
        assert_eq!(again.len(), 1, "only the add: the update waits");
        assert_eq!(again[0].content, "v1", "the add resends what it first sent");
        s.record_delivered(&a, &["44444444-4444-4444-8444-444444444444".into()], 2_100)
            .expect("delivered");
        let next = s.claim("w", 3_000, 60_000, 10).expect("claim");
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].op, Op::Update);
        assert_eq!(
            next[0].changes.as_ref().and_then(|c| c.text.as_deref()),
            Some("v2")
        );
    }

    /// `retry --delivered` re-checks saves: never a memory deleted here
    /// (it would come back), never a change already delivered.
    #[test]
    fn retry_delivered_never_brings_a_deleted_memory_back() {
        let d = TempDir::new();
        let mut s = Store::open(&d.db()).expect("open");
        let a = s.enqueue(new("kept"), &limits()).expect("q").id;
        let b = s.enqueue(new("deleted"), &limits()).expect("q").id;
        s.claim("w", 1_000, 60_000, 10).expect("claim");
        s.record_delivered(&a, &["66666666-6666-4666-8666-666666666666".into()], 1_100)
            .expect("a");
        s.record_delivered(&b, &["77777777-7777-4777-8777-777777777777".into()], 1_100)
            .expect("b");
        let ChangeOutcome::Queued { op_ids, .. } = s.delete_memory(&b, "proj", 1_200).expect("del")
        else {
            panic!("queued");
        };
        let c = s.claim("w", 1_300, 60_000, 10).expect("claim the delete");
        assert_eq!(c.len(), 1);
        s.record_delivered(&op_ids[0], &[], 1_400)
            .expect("delete delivered");
        assert_eq!(s.retry(&[], State::Delivered, 1_500).expect("retry"), 1);
        assert_eq!(s.get(&a, false).expect("a").state, State::Pending);
        assert_eq!(s.get(&b, false).expect("b").state, State::Delivered);
        assert_eq!(
            s.get(&op_ids[0], false).expect("op").state,
            State::Delivered
        );
    }

    #[test]
    fn bad_changes_are_refused_and_write_nothing() {
        let d = TempDir::new();
        let mut s = Store::open(&d.db()).expect("open");
        let a = s.enqueue(new("x"), &limits()).expect("q").id;
        let before = s.counts().expect("c");
        for (id, c) in [
            (a.as_str(), Changes::default()),
            (a.as_str(), text("  ")),
            (a.as_str(), text(&"y".repeat(2_000))),
            ("not-a-uuid", text("z")),
            (
                a.as_str(),
                Changes {
                    text: None,
                    metadata: Some(serde_json::json!([1])),
                },
            ),
        ] {
            assert!(
                s.update_memory(id, &c, "proj", &limits(), 1).is_err(),
                "{id} {c:?}"
            );
        }
        assert!(s.delete_memory("nope", "proj", 1).is_err());
        assert_eq!(s.counts().expect("c"), before);
        assert_eq!(s.get_memory(&a).expect("g").expect("m").content, "x");
    }
}
