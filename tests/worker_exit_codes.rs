//! `mem0-queue sync` exit codes, on the real binary: 0 when drained (or
//! nothing to do), 75 when entries remain (the server is down), 65 when the
//! server rejected entries in the run, 78 with no Mem0 server configured or
//! a run stopped on a configuration problem; and SIGTERM during a long
//! request ends the
//! process promptly with the entry back to pending, its lease released and
//! marked for reconciliation.

use std::process::Stdio;
use std::time::Duration;

use mem0_queue::engine::store::State;
use mem0_queue_testkit::mem0_server::{Fault, FaultPlan, Kind};
use mem0_queue_testkit::{
    bin,
    db::rows,
    sandbox::Sandbox,
    wait::{PROCESS_LIMIT, child_async, until_async},
    worker::{add_requests, command, enqueue_in_dir, run_to_end, server, sigterm, sync},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_exits_0() {
    let srv = server(Kind::Oss, None, 1).await;
    let sb = Sandbox::new(bin!());
    let data = sb.data_dir();

    let (code, err) = sync(&sb, Some(&srv.url()), Kind::Oss).await;
    assert_eq!(code, Some(0), "nothing to do: {err}");

    let ids = enqueue_in_dir(&data, 3);
    let (code, err) = sync(&sb, Some(&srv.url()), Kind::Oss).await;
    assert_eq!(code, Some(0), "drained: {err}");
    let rows = rows(&data.join("queue.db"));
    for id in &ids {
        assert_eq!(rows[id].state, State::Delivered);
        assert_eq!(srv.count_by_mq_id().get(id), Some(&1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_with_entries_left_exits_75() {
    let srv = server(Kind::Oss, None, 1).await;
    let url = srv.url();
    srv.go_down().await;
    let sb = Sandbox::new(bin!());
    let data = sb.data_dir();
    let ids = enqueue_in_dir(&data, 5);

    let (code, err) = sync(&sb, Some(&url), Kind::Oss).await;

    assert_eq!(code, Some(75), "entries remain: {err}");
    let rows = rows(&data.join("queue.db"));
    for id in &ids {
        assert_eq!(rows[id].state, State::Pending, "{:?}", rows[id]);
    }
    assert!(srv.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_api_url_exits_78_and_touches_nothing() {
    let sb = Sandbox::new(bin!());
    let data = sb.data_dir();
    let ids = enqueue_in_dir(&data, 2);

    let (code, err) = sync(&sb, None, Kind::Oss).await;

    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("no Mem0 server is configured"), "{err}");
    let rows = rows(&data.join("queue.db"));
    for id in &ids {
        assert_eq!(rows[id].state, State::Pending);
        assert_eq!(rows[id].attempts, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_long_request_releases_the_lease() {
    for kind in [Kind::Oss, Kind::Platform] {
        let srv = server(kind, None, 1).await;
        let url = srv.url();
        let sb = Sandbox::new(bin!());
        let data = sb.data_dir();
        let ids = enqueue_in_dir(&data, 1);
        let id = &ids[0];
        // The add hangs, storing nothing; the default add timeout is 120 s.
        srv.set_faults(FaultPlan::script([Some(Fault::Hang)]));

        let mut child = command(&sb, Some(&url), kind, &["sync"])
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sync");
        let seen = until_async(PROCESS_LIMIT, || add_requests(&srv).len() == 1).await;
        assert!(seen, "{kind:?}: the add reached the server");
        let row = rows(&data.join("queue.db")).remove(id).expect("entry");
        assert_eq!(row.state, State::InFlight, "{kind:?}");

        sigterm(child.id().expect("pid"));
        let status = child_async(&mut child, Duration::from_secs(10)).await;

        assert_eq!(
            status.code(),
            Some(75),
            "{kind:?}: exits, the entry remaining: {status:?}"
        );
        let row = rows(&data.join("queue.db")).remove(id).expect("entry");
        assert_eq!(
            row.state,
            State::Pending,
            "{kind:?}: back to pending: {row:?}"
        );
        assert_eq!(row.lease_owner, None, "{kind:?}: lease released");
        assert!(
            row.needs_reconcile,
            "{kind:?}: it may have been sent: {row:?}"
        );
        assert_eq!(
            row.attempts, 0,
            "{kind:?}: an interrupted attempt is not charged"
        );

        // And the next sync delivers it, once (Hang stored nothing: the
        // lookup finds nothing, then the add goes through).
        let (code, err) = sync(&sb, Some(&url), kind).await;
        assert_eq!(code, Some(0), "{kind:?}: {err}");
        assert_eq!(srv.count_by_mq_id().get(id), Some(&1), "{kind:?}");
        assert_eq!(add_requests(&srv).len(), 2, "{kind:?}");
    }
}

/// Regression (issue 12, "exit codes hide trouble"): `sync` exited 0 when
/// every entry had just been sent to dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_rejected_in_the_run_exit_65() {
    let srv = server(Kind::Oss, None, 1).await;
    let sb = Sandbox::new(bin!());
    let data = sb.data_dir();
    let ids = enqueue_in_dir(&data, 3);
    srv.set_faults(FaultPlan::mix([(Fault::Status422, 1.0)]));

    let (code, err) = sync(&sb, Some(&srv.url()), Kind::Oss).await;

    assert_eq!(code, Some(65), "{err}");
    let rows = rows(&data.join("queue.db"));
    for id in &ids {
        assert_eq!(rows[id].state, State::Dead, "{:?}", rows[id]);
    }
    // A later run with nothing left to do is clean again.
    let (code, err) = sync(&sb, Some(&srv.url()), Kind::Oss).await;
    assert_eq!(code, Some(0), "{err}");
}

/// Regression (issue 12): a rejected key sent every entry to dead and `sync`
/// exited 0. Now the run stops on a configuration problem: 78, the fix on
/// stderr, every entry pending and uncharged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_exits_78_and_keeps_every_entry() {
    for kind in [Kind::Oss, Kind::Platform] {
        let srv = server(kind, Some("m0-right"), 1).await;
        let sb = Sandbox::new(bin!());
        let data = sb.data_dir();
        let ids = enqueue_in_dir(&data, 3);

        let mut cmd = command(&sb, Some(&srv.url()), kind, &["sync"]);
        cmd.env("MEM0_API_KEY", "m0-wrong");
        let (code, err) = run_to_end(cmd).await;

        assert_eq!(code, Some(78), "{kind:?}: {err}");
        assert!(
            err.contains("configuration problem") && err.contains("api_key"),
            "{kind:?}: says what and how to fix: {err}"
        );
        assert!(!err.contains("m0-wrong"), "{kind:?}: never the key: {err}");
        let rows = rows(&data.join("queue.db"));
        for id in &ids {
            assert_eq!(rows[id].state, State::Pending, "{kind:?}: {:?}", rows[id]);
            assert_eq!(rows[id].attempts, 0, "{kind:?}");
        }
    }
}
