//! The seed's two flows, on both API kinds, with an in-process worker on a
//! virtual clock:
//! - nominal: every entry delivered once, with its `mq_id` and its original
//!   time; the queue ends empty;
//! - degraded: the server hangs (timeouts), the worker retries after 2 s,
//!   4 s and 8 s, moves the entry to `failed` after the 4th failed attempt,
//!   and the next run, once the server is back, revives and delivers it,
//!   exactly once.

use std::time::Duration;

use mem0_queue::engine::store::State;
use mem0_queue_testkit::mem0_server::{Fault, FaultPlan, Kind};
use mem0_queue_testkit::worker::{
    CREATED_AT_MS, CREATED_AT_RFC3339, Harness, KINDS, Options, PROJECT, add_requests,
};

const SEED_BACKOFF: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nominal_flow_delivers_each_entry_once_with_its_id_and_time() {
    for kind in KINDS {
        let h = Harness::start(Options::new(kind)).await;
        let ids = h.enqueue(10).await;

        let report = h.run().await;

        assert_eq!(report.delivered, 10, "{kind:?}: {report:?}");
        assert_eq!(report.attempts, 10, "{kind:?}: one attempt each");
        assert_eq!(report.remaining, 0, "{kind:?}");
        assert_eq!((report.retried, report.failed, report.dead), (0, 0, 0));
        assert!(
            h.vclock.slept().is_empty(),
            "{kind:?}: no wait on the nominal path"
        );
        let counts = h.stats().await.counts;
        assert_eq!((counts.pending, counts.in_flight, counts.failed), (0, 0, 0));
        assert_eq!(counts.delivered, 10);

        let by_id = h.server.count_by_mq_id();
        assert_eq!(by_id.len(), 10, "{kind:?}");
        let stored = h.server.stored();
        assert_eq!(stored.len(), 10, "{kind:?}: nothing else stored");
        for id in &ids {
            assert_eq!(by_id.get(id), Some(&1), "{kind:?}: {id} stored once");
            let m = stored
                .iter()
                .find(|m| m.metadata["mq_id"] == id.as_str())
                .expect("stored");
            assert_eq!(m.user_id.as_deref(), Some(PROJECT));
            // The original time: the platform's `timestamp` (unix seconds),
            // and on both kinds `metadata.created_at` (the OSS library keeps it).
            assert_eq!(m.metadata["created_at"], CREATED_AT_RFC3339, "{kind:?}");
            match kind {
                Kind::Platform => {
                    assert_eq!(m.timestamp, Some(CREATED_AT_MS / 1000), "{kind:?}")
                }
                Kind::Oss => assert_eq!(m.timestamp, None),
            }
            let row = h.row(id);
            assert_eq!(row.state, State::Delivered);
            assert_eq!(
                row.remote_ids,
                vec![m.id.clone()],
                "{kind:?}: the server's id kept"
            );
            assert_eq!(row.attempts, 0, "a delivery is not a failed attempt");
        }
        assert_eq!(add_requests(&h.server).len(), 10, "{kind:?}: one add each");
    }
}

/// The seed's degraded case with a server that hangs without storing
/// (`Hang`): every attempt times out, so the entry goes the whole schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_flow_backs_off_2_4_8_then_fails_then_recovers() {
    for kind in KINDS {
        let h = Harness::start(Options::new(kind)).await;
        let ids = h.enqueue(1).await;
        let id = &ids[0];
        h.server.set_faults(FaultPlan::mix([(Fault::Hang, 1.0)]));
        let t0 = h.vclock.slept().len();
        assert_eq!(t0, 0);

        let report = h.run().await;

        assert_eq!(
            report.attempts, 4,
            "{kind:?}: the first try and 3 retries: {report:?}"
        );
        assert_eq!(report.retried, 3, "{kind:?}");
        assert_eq!(report.failed, 1, "{kind:?}");
        assert_eq!(report.delivered, 0);
        assert_eq!(report.remaining, 1);
        assert_eq!(
            h.vclock.slept(),
            SEED_BACKOFF.to_vec(),
            "{kind:?}: the seed's waits, in order"
        );
        let row = h.row(id);
        assert_eq!(row.state, State::Failed, "{kind:?}");
        assert_eq!((row.attempts, row.attempts_run, row.runs_failed), (4, 4, 1));
        assert!(
            row.needs_reconcile,
            "a timeout after send is an unknown outcome"
        );
        assert!(
            row.last_error
                .as_deref()
                .unwrap_or("")
                .contains("outcome unknown"),
            "{kind:?}: {:?}",
            row.last_error
        );
        // The timeouts happened after the request was sent: each try after
        // the first looked the entry up by its mq_id first, then resent it.
        assert_eq!(add_requests(&h.server).len(), 4, "{kind:?}");
        let lookups = h
            .server
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.contains("search"))
            .count();
        assert_eq!(lookups, 3, "{kind:?}: one lookup before each resend");
        assert!(
            h.server.stored().is_empty(),
            "{kind:?}: Hang stores nothing"
        );
        let log = h.log_text();
        for d in [
            "retry in 2000ms",
            "retry in 4000ms",
            "retry in 8000ms",
            "decision=failed",
        ] {
            assert!(
                log.contains(d),
                "{kind:?}: the worker log says {d:?}:\n{log}"
            );
        }
        let stats = h.stats().await;
        assert_eq!(stats.total_failed, 1);

        // The VPS is back: the next run revives the failed entry and delivers it.
        h.server.set_faults(FaultPlan::default());
        let report = h.run().await;
        assert_eq!(report.revived, 1, "{kind:?}: {report:?}");
        assert_eq!(report.delivered, 1);
        assert_eq!(
            report.reconciled, 0,
            "{kind:?}: Hang stored nothing to find"
        );
        assert_eq!(report.remaining, 0);
        let row = h.row(id);
        assert_eq!(row.state, State::Delivered, "{kind:?}: it left failed");
        assert!(!row.needs_reconcile);
        assert_eq!(h.stats().await.counts.failed, 0);
        assert_eq!(
            h.server.count_by_mq_id().get(id),
            Some(&1),
            "{kind:?}: exactly one copy"
        );
        assert_eq!(h.server.stored().len(), 1);
    }
}

/// The same schedule read from the queue itself: each retry is due exactly
/// its backoff after the failed attempt (the virtual clock does not move
/// while a request is in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_retry_is_due_its_backoff_after_the_failure() {
    for kind in KINDS {
        let h = Harness::start(Options::new(kind)).await;
        let ids = h.enqueue(1).await;
        let id = &ids[0];
        h.server.set_faults(FaultPlan::script([
            Some(Fault::Hang),
            Some(Fault::Hang),
            Some(Fault::Hang),
            None,
        ]));
        let start = h.now();
        let report = h.run().await;
        assert_eq!(report.attempts, 4, "{kind:?}: {report:?}");
        assert_eq!(report.retried, 3);
        assert_eq!(report.delivered, 1);
        assert_eq!(h.vclock.slept(), SEED_BACKOFF.to_vec(), "{kind:?}");
        let row = h.row(id);
        assert_eq!(row.state, State::Delivered);
        // Virtual time moved only by the waits: 2 + 4 + 8 s.
        assert_eq!(row.delivered_at, Some(start + 14_000), "{kind:?}");
        // The last recorded retry was due 8 s after the third failure.
        assert_eq!(row.next_attempt_at, start + 6_000 + 8_000, "{kind:?}");
        assert_eq!(h.server.count_by_mq_id().get(id), Some(&1));
    }
}

/// A hang that stores (`AcceptThenHang`, the OSS server storing before its
/// LLM answers) ends differently from one that does not: the second try
/// finds the entry by its mq_id and never resends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_flow_with_a_hang_that_stored_is_reconciled_not_resent() {
    for kind in KINDS {
        let h = Harness::start(Options::new(kind)).await;
        let ids = h.enqueue(1).await;
        let id = &ids[0];
        h.server
            .set_faults(FaultPlan::mix([(Fault::AcceptThenHang, 1.0)]));

        let report = h.run().await;

        assert_eq!(report.attempts, 2, "{kind:?}: {report:?}");
        assert_eq!(report.retried, 1);
        assert_eq!((report.delivered, report.reconciled), (1, 1), "{kind:?}");
        assert_eq!(h.vclock.slept(), vec![SEED_BACKOFF[0]], "{kind:?}");
        assert_eq!(add_requests(&h.server).len(), 1, "{kind:?}: never resent");
        assert_eq!(h.server.count_by_mq_id().get(id), Some(&1));
        let row = h.row(id);
        assert_eq!(row.state, State::Delivered);
        assert_eq!(row.attempts, 1, "the hang was one failed attempt");
    }
}
