//! The run breaker, with 1,000 entries queued and the server down
//! (connections refused):
//! - a run stops after a handful of requests: what was in flight when the
//!   first connection failed (no slot is refilled after it), or the policy's
//!   threshold of 3 failures in a row if that is more; the entries it never
//!   tried are not charged;
//! - the next run, the previous one having tripped, stops at the first
//!   failure: a dead VPS costs one probe per run;
//! - once the server is back, the probe succeeds and the queue drains, each
//!   entry exactly once.

use std::collections::HashMap;
use std::time::Duration;

use mem0_queue::engine::store::State;
use mem0_queue::engine::worker::Stop;
use mem0_queue_policy_default::{BREAKER_THRESHOLD, PROBE_BASE_MS};
use mem0_queue_testkit::{
    db::Row,
    worker::{Harness, KINDS, Options, assert_exactly_once_or_dead},
};

const ENTRIES: usize = 1_000;
const CONCURRENCY: usize = 4;

fn charged(rows: &HashMap<String, Row>) -> usize {
    rows.values().filter(|r| r.attempts > 0).count()
}

async fn down_harness(kind: mem0_queue_testkit::mem0_server::Kind) -> (Harness, Vec<String>) {
    let mut opts = Options::new(kind);
    opts.concurrency = CONCURRENCY;
    let h = Harness::start(opts).await;
    let ids = h.enqueue(ENTRIES).await;
    h.server.go_down().await;
    (h, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_stops_the_run_after_a_handful_of_requests() {
    for kind in KINDS {
        let (h, _ids) = down_harness(kind).await;
        let start = h.now();

        let r = h.run().await;

        assert_eq!(r.stopped, Some(Stop::Breaker), "{kind:?}: {r:?}");
        assert_eq!(
            r.next_probe_ms,
            Some(PROBE_BASE_MS),
            "{kind:?}: the first pause"
        );
        assert!(
            r.attempts as usize <= CONCURRENCY.max(BREAKER_THRESHOLD as usize),
            "{kind:?}: {} attempts for a dead server (no refill after a connection failure): {r:?}",
            r.attempts
        );
        assert!(r.attempts >= BREAKER_THRESHOLD as u64, "{kind:?}: {r:?}");
        assert_eq!(
            r.retried, r.attempts,
            "{kind:?}: each tried entry is retried later"
        );
        assert_eq!(r.remaining, ENTRIES as u64);
        assert!(
            h.server.requests().is_empty(),
            "{kind:?}: nothing reached the server"
        );
        let rows = h.rows();
        assert_eq!(
            charged(&rows),
            r.attempts as usize,
            "{kind:?}: only tried entries charged"
        );
        for row in rows.values() {
            assert_eq!(row.state, State::Pending, "{kind:?}: {row:?}");
            if row.attempts == 0 {
                assert_eq!(row.attempts_run, 0);
                assert_eq!(row.last_error, None, "{kind:?}: untried: {row:?}");
            } else {
                assert_eq!(row.attempts, 1);
                assert!(row.last_error.as_deref().unwrap_or("").contains("connect"));
                assert_eq!(
                    row.next_attempt_at,
                    start + 2_000,
                    "{kind:?}: the seed's 2 s"
                );
                assert!(
                    !row.needs_reconcile,
                    "{kind:?}: a refused connect sent nothing"
                );
            }
        }
        let open_until = h
            .store
            .run(|s| s.meta_get("breaker_open_until"))
            .await
            .expect("meta")
            .and_then(|v| v.parse::<i64>().ok());
        assert_eq!(open_until, Some(h.now() + PROBE_BASE_MS as i64), "{kind:?}");
    }
}

/// The second run after a trip: the policy's threshold drops to one
/// failure, the pause before the next probe doubles, and the entries the
/// run did not try stay uncharged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_after_a_trip_stops_at_its_first_failure() {
    for kind in KINDS {
        let (h, _ids) = down_harness(kind).await;
        let first = h.run().await;
        assert_eq!(first.stopped, Some(Stop::Breaker));
        let charged_before = charged(&h.rows());

        let second = h.run().await;

        assert_eq!(second.stopped, Some(Stop::Breaker), "{kind:?}: {second:?}");
        assert_eq!(
            second.next_probe_ms,
            Some(2 * PROBE_BASE_MS),
            "{kind:?}: the pause doubles with each failing run"
        );
        assert!(
            (1..=CONCURRENCY as u64).contains(&second.attempts),
            "{kind:?}: {second:?}"
        );
        assert_eq!(
            charged(&h.rows()) - charged_before,
            second.attempts as usize,
            "{kind:?}: the untried are still uncharged"
        );
        println!(
            "{kind:?}: first run {} attempts, second run {} attempts (concurrency {CONCURRENCY})",
            first.attempts, second.attempts
        );
    }
}

/// The design: "a dead VPS costs one probe per run". After a tripped run the
/// next run sends a single request, and widens to `concurrency` only once
/// an answer shows the server is up (see the drain test below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_after_a_trip_costs_one_probe() {
    for kind in KINDS {
        let (h, _ids) = down_harness(kind).await;
        let first = h.run().await;
        assert_eq!(first.stopped, Some(Stop::Breaker));

        let second = h.run().await;

        assert_eq!(
            second.attempts, 1,
            "{kind:?}: a run after a tripped run costs one probe, not a batch of \
             `concurrency` charged attempts: {second:?}"
        );
    }
}

/// The server comes back: the next run's probe succeeds, the breaker closes
/// and the whole queue drains, each entry exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_drains_once_the_server_is_back() {
    for kind in KINDS {
        let (h, ids) = down_harness(kind).await;
        for _ in 0..2 {
            assert_eq!(h.run().await.stopped, Some(Stop::Breaker), "{kind:?}");
        }
        h.server.come_back().await;
        // Past the breaker's pause, as the serve loop would wait.
        h.vclock.advance(Duration::from_millis(2 * PROBE_BASE_MS));

        let r = h.run().await;

        assert_eq!(r.stopped, None, "{kind:?}: {r:?}");
        assert_eq!(r.delivered, ENTRIES as u64, "{kind:?}: {r:?}");
        assert_eq!(r.remaining, 0);
        let (delivered, dead) = assert_exactly_once_or_dead(&h.server, &h.db_path(), &ids);
        assert_eq!((delivered, dead), (ENTRIES, 0));
        let tripped = h
            .store
            .run(|s| s.meta_get("previous_run_tripped"))
            .await
            .expect("meta");
        assert_eq!(
            tripped.as_deref(),
            Some("0"),
            "{kind:?}: the breaker closed"
        );
    }
}
