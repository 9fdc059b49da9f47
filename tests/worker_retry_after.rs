//! Retry-After is a floor on the delay: a 429 with `Retry-After: 30` delays
//! the next attempt by 30 s, not the schedule's 2 s; a Retry-After shorter
//! than the schedule does not shorten it.

use std::time::Duration;

use mem0_queue::engine::store::State;
use mem0_queue_testkit::mem0_server::{Fault, FaultPlan};
use mem0_queue_testkit::worker::{Harness, KINDS, Options, add_requests};

/// Runs one entry through `first` then a normal answer; returns the virtual
/// waits and (next_attempt_at - start) of the retry.
async fn delay_after(
    kind: mem0_queue_testkit::mem0_server::Kind,
    first: Fault,
) -> (Vec<Duration>, i64) {
    let h = Harness::start(Options::new(kind)).await;
    let ids = h.enqueue(1).await;
    h.server
        .set_faults(FaultPlan::script([Some(first.clone())]));
    let start = h.now();

    let report = h.run().await;

    assert_eq!(
        (report.attempts, report.retried, report.delivered),
        (2, 1, 1),
        "{kind:?} {first:?}: {report:?}"
    );
    let row = h.row(&ids[0]);
    assert_eq!(row.state, State::Delivered);
    assert_eq!(add_requests(&h.server).len(), 2);
    assert_eq!(h.server.count_by_mq_id().get(&ids[0]), Some(&1));
    // The failure was recorded at `start` (virtual time stands still during
    // a request); the delivery happened once the wait was over.
    let delay = row.next_attempt_at - start;
    assert_eq!(row.delivered_at, Some(row.next_attempt_at), "{kind:?}");
    (h.vclock.slept(), delay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_30_waits_30_seconds_not_2() {
    for kind in KINDS {
        let (slept, delay) = delay_after(
            kind,
            Fault::Status429 {
                retry_after_secs: 30,
            },
        )
        .await;
        assert_eq!(delay, 30_000, "{kind:?}: the retry is due 30 s later");
        assert_eq!(slept, vec![Duration::from_secs(30)], "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_with_retry_after_is_a_floor_too() {
    for kind in KINDS {
        let (slept, delay) = delay_after(
            kind,
            Fault::Status503 {
                retry_after_secs: Some(45),
            },
        )
        .await;
        assert_eq!(delay, 45_000, "{kind:?}");
        assert_eq!(slept, vec![Duration::from_secs(45)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_retry_after_does_not_shorten_the_schedule() {
    for kind in KINDS {
        let (slept, delay) = delay_after(
            kind,
            Fault::Status429 {
                retry_after_secs: 1,
            },
        )
        .await;
        assert_eq!(delay, 2_000, "{kind:?}: the schedule's 2 s wins over 1 s");
        assert_eq!(slept, vec![Duration::from_secs(2)]);
    }
}

/// A Retry-After beyond the longest in-run wait (300 s) ends the run: the
/// entry stays pending, due when the server said, and a later run sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_beyond_the_in_run_wait_ends_the_run() {
    for kind in KINDS {
        let h = Harness::start(Options::new(kind)).await;
        let ids = h.enqueue(1).await;
        h.server
            .set_faults(FaultPlan::script([Some(Fault::Status429 {
                retry_after_secs: 600,
            })]));
        let start = h.now();

        let first = h.run().await;

        assert_eq!(
            (first.attempts, first.retried, first.remaining),
            (1, 1, 1),
            "{kind:?}: {first:?}"
        );
        assert!(
            h.vclock.slept().is_empty(),
            "{kind:?}: the run did not wait 600 s"
        );
        let row = h.row(&ids[0]);
        assert_eq!(row.state, State::Pending);
        assert_eq!(row.next_attempt_at - start, 600_000, "{kind:?}");

        // Not due yet: a run now sends nothing.
        let early = h.run().await;
        assert_eq!(early.attempts, 0, "{kind:?}: {early:?}");
        h.vclock.advance(Duration::from_secs(600));
        let later = h.run().await;
        assert_eq!(
            (later.attempts, later.delivered),
            (1, 1),
            "{kind:?}: {later:?}"
        );
        assert_eq!(h.server.count_by_mq_id().get(&ids[0]), Some(&1));
    }
}
