//! Accept-then-timeout: the server stores the memory and never answers (the
//! OSS server storing before its LLM call returns). The attempt's outcome is
//! unknown, so the entry is looked up by its mq_id before any resend: it is
//! found, counted delivered, and never duplicated. A server that keeps
//! every add unanswered is hung: the breaker stops each run after one
//! round of requests, and the next run's lookups find what was stored.

use std::time::Duration;

use mem0_queue::engine::store::State;
use mem0_queue::engine::worker::Stop;
use mem0_queue_testkit::mem0_server::{Fault, FaultPlan, Kind};
use mem0_queue_testkit::worker::{Harness, KINDS, Options, RUN_LIMIT, add_requests};

/// Entries in the scenario: enough that several are in flight at once.
const ENTRIES: usize = 12;

/// The most runs the scenario may take: the breaker stops each run after
/// `concurrency` unanswered adds, the next run's lookups find them; twelve
/// entries take a few such rounds.
const MAX_RUNS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_but_unanswered_add_is_reconciled_before_any_resend() {
    for kind in KINDS {
        let h = Harness::start(Options::new(kind)).await;
        let ids = h.enqueue(ENTRIES).await;
        // Every add stores, then hangs past the client's timeout.
        h.server
            .set_faults(FaultPlan::mix([(Fault::AcceptThenHang, 1.0)]));

        let first = h.run().await;
        // Three entries in a row without an answer: the server is hung, and
        // the run stops after the requests already in flight.
        assert_eq!(first.stopped, Some(Stop::Breaker), "{kind:?}: {first:?}");
        assert!(
            first.attempts <= h.config.concurrency as u64,
            "{kind:?}: a hung server costs one round of requests, not one per entry: {first:?}"
        );
        let mut total = first.clone();
        let mut runs = 1;
        while total.remaining > 0 && runs < MAX_RUNS {
            let r = h.run().await;
            runs += 1;
            total.delivered += r.delivered;
            total.reconciled += r.reconciled;
            total.retried += r.retried;
            total.remaining = r.remaining;
        }
        assert_eq!(total.remaining, 0, "{kind:?}: drained in {runs} runs");
        assert_eq!(total.delivered, ENTRIES as u64, "{kind:?}: {total:?}");
        assert_eq!(
            total.reconciled, ENTRIES as u64,
            "{kind:?}: all found by mq_id"
        );
        assert_eq!(
            total.retried, ENTRIES as u64,
            "{kind:?}: one unknown outcome each"
        );
        // Zero duplicates: each add was sent once, and stored once.
        assert_eq!(
            add_requests(&h.server).len(),
            ENTRIES,
            "{kind:?}: never resent"
        );
        let counts = h.server.count_by_mq_id();
        assert_eq!(h.server.stored().len(), ENTRIES, "{kind:?}");
        for id in &ids {
            assert_eq!(counts.get(id), Some(&1), "{kind:?}: {id}");
            let row = h.row(id);
            assert_eq!(row.state, State::Delivered, "{kind:?}");
            assert!(!row.needs_reconcile);
            // The lookup found the server's own memory id.
            let stored_id = h
                .server
                .stored()
                .into_iter()
                .find(|m| m.metadata["mq_id"] == id.as_str())
                .map(|m| m.id)
                .expect("stored");
            assert_eq!(row.remote_ids, vec![stored_id], "{kind:?}");
        }
        // Each lookup came before the (absent) resend: one search per entry,
        // filtered by its mq_id in the form the kind's server takes.
        let searches: Vec<_> = h
            .server
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.contains("search"))
            .collect();
        assert_eq!(searches.len(), ENTRIES, "{kind:?}");
        for s in &searches {
            let filters = s.body.as_ref().map(|b| b["filters"].clone());
            let mq_id = filters.as_ref().and_then(|f| match kind {
                Kind::Oss => f["mq_id"].as_str().map(str::to_string),
                Kind::Platform => f["metadata"]["mq_id"].as_str().map(str::to_string),
            });
            assert!(
                mq_id.is_some_and(|m| ids.contains(&m)),
                "{kind:?}: the lookup filters by mq_id: {:?}",
                s.body
            );
            assert_eq!(s.status, Some(200), "{kind:?}: the server took the filter");
        }
        let log = h.log_text();
        for id in &ids {
            assert!(
                log.contains(&format!("reconciled id={id}")),
                "{kind:?}: the worker log says {id} was reconciled:\n{log}"
            );
        }
        assert!(log.contains("class=no_answer"), "{kind:?}:\n{log}");
    }
}

/// The mark survives the run: an attempt abandoned mid-request (the run hit
/// `--max-duration` while the server held the stored add unanswered) is
/// given back marked for reconciliation and uncharged, and the next run
/// looks it up instead of resending it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_attempt_is_reconciled_by_the_next_run() {
    for kind in KINDS {
        let mut opts = Options::new(kind);
        // Long enough that the run's end, not the timeout, ends the attempt.
        opts.add_timeout = Duration::from_secs(10);
        let h = Harness::start(opts).await;
        let ids = h.enqueue(1).await;
        let id = &ids[0];
        h.server
            .set_faults(FaultPlan::script([Some(Fault::AcceptThenHang)]));
        let mut w = h.worker();
        w.settings.max_duration = Some(Duration::from_secs(1));
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let r = tokio::time::timeout(RUN_LIMIT, w.run(rx))
            .await
            .expect("bounded")
            .expect("run");
        assert_eq!(r.stopped, Some(Stop::MaxDuration), "{kind:?}: {r:?}");
        assert_eq!((r.attempts, r.released), (1, 1), "{kind:?}: {r:?}");
        assert_eq!(
            h.server.count_by_mq_id().get(id),
            Some(&1),
            "{kind:?}: it was stored"
        );
        let row = h.row(id);
        assert_eq!(row.state, State::Pending, "{kind:?}: {row:?}");
        assert!(
            row.needs_reconcile,
            "{kind:?}: abandoned mid-request: {row:?}"
        );
        assert_eq!(row.lease_owner, None, "{kind:?}: the lease was released");
        assert_eq!(
            row.attempts, 0,
            "{kind:?}: an abandoned attempt is not charged"
        );

        let report = h.run().await;
        assert_eq!(
            (report.delivered, report.reconciled),
            (1, 1),
            "{kind:?}: {report:?}"
        );
        assert_eq!(add_requests(&h.server).len(), 1, "{kind:?}: never resent");
        assert_eq!(h.server.count_by_mq_id().get(id), Some(&1));
        assert!(h.log_text().contains(&format!("reconciled id={id}")));
    }
}
