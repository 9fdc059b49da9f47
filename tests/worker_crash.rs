//! A crash mid-request: `mem0-queue sync` is killed with SIGKILL while the
//! server holds its add (stored, answer delayed). The entry stays in flight
//! under the dead process's lease; the next `sync` takes the lease back
//! because that pid is gone, looks the entry up by its mq_id, finds it, and
//! never sends it again: delivered exactly once.

use std::process::Stdio;
use std::time::Duration;

use mem0_queue::engine::store::State;
use mem0_queue_testkit::mem0_server::FaultPlan;
use mem0_queue_testkit::{
    bin,
    db::rows,
    sandbox::Sandbox,
    wait::{PROCESS_LIMIT, child_async, until_async},
    worker::{KINDS, add_requests, command, enqueue_in_dir, server, sync},
};

/// How long the server sits on the add after storing it: long enough to
/// kill the process with the request surely in flight.
const SERVER_LATENCY: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_mid_request_is_reconciled_by_the_next_one() {
    for kind in KINDS {
        let srv = server(kind, None, 3).await;
        let sb = Sandbox::new(bin!());
        let data = sb.data_dir();
        let url = srv.url();
        let ids = enqueue_in_dir(&data, 1);
        let id = &ids[0];
        srv.set_faults(FaultPlan {
            latency: Some(SERVER_LATENCY),
            ..FaultPlan::default()
        });

        let mut child = command(&sb, Some(&url), kind, &["sync"])
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sync");
        let pid = child.id().expect("a pid");
        let seen = until_async(PROCESS_LIMIT, || add_requests(&srv).len() == 1).await;
        assert!(seen, "{kind:?}: the add reached the server");
        // SIGKILL, then reap it: a zombie would still answer kill(pid, 0).
        child.start_kill().expect("SIGKILL");
        let status = child_async(&mut child, Duration::from_secs(10)).await;
        assert_eq!(status.code(), None, "{kind:?}: killed by a signal");

        let row = rows(&data.join("queue.db")).remove(id).expect("the entry");
        assert_eq!(row.state, State::InFlight, "{kind:?}: {row:?}");
        assert!(
            row.lease_owner
                .as_deref()
                .is_some_and(|o| o.starts_with(&format!("pid-{pid}-"))),
            "{kind:?}: held by the dead process: {row:?}"
        );
        assert_eq!(
            srv.count_by_mq_id().get(id),
            Some(&1),
            "{kind:?}: the server stored it"
        );

        srv.set_faults(FaultPlan::default());
        let (code, err) = sync(&sb, Some(&url), kind).await;
        assert_eq!(code, Some(0), "{kind:?}: the next sync drains: {err}");

        let row = rows(&data.join("queue.db")).remove(id).expect("the entry");
        assert_eq!(row.state, State::Delivered, "{kind:?}: {row:?}");
        assert_eq!(row.attempts, 0, "{kind:?}: the crash charged no attempt");
        assert_eq!(
            srv.count_by_mq_id().get(id),
            Some(&1),
            "{kind:?}: exactly once"
        );
        assert_eq!(srv.stored().len(), 1);
        assert_eq!(add_requests(&srv).len(), 1, "{kind:?}: never resent");
        let log = std::fs::read_to_string(data.join("mem0_worker.log")).unwrap_or_default();
        assert!(
            log.contains(&format!("reconciled id={id}")),
            "{kind:?}:\n{log}"
        );
        assert!(
            log.contains("reclaimed=1"),
            "{kind:?}: the lease was taken back:\n{log}"
        );
    }
}
