//! R3: every fault of the test server, alone and mixed, over 50 entries
//! and a bounded number of runs, on both API kinds (and platform events that
//! end FAILED): at the end every entry is
//! delivered exactly once on the server or dead for a permanent reason;
//! nothing is lost from the queue and nothing unexpected is on the server.
//! Faults without an answer (hangs) may trip the breaker, and a 401 stops a
//! run as a configuration problem; both only cost more runs.
//! The network path in front of the server (gateways, redirects, login
//! pages) is R3's other half: `tests/network_path.rs`.

use std::time::Duration;

use mem0_queue::engine::store::State;
use mem0_queue::engine::worker::Stop;
use mem0_queue_testkit::checker;
use mem0_queue_testkit::mem0_server::{EventPlan, Fault, FaultPlan, Kind};
use mem0_queue_testkit::worker::{
    Harness, KINDS, Options, add_requests, assert_exactly_once_or_dead,
};

/// Entries per scenario.
const ENTRIES: usize = 50;

/// The most runs a scenario may take to settle. A fault rate of 30 % fails
/// an entry's four tries in one run with a probability under 1 %, so a
/// handful of runs settles everything; ten leaves room.
const MAX_RUNS: usize = 10;

/// The rate of a fault tested alone.
const RATE: f64 = 0.3;

/// The most runs a scenario whose faults stop runs may take: a run stops at
/// each 401 (a configuration problem) and the next one probes with one
/// request, so a 30 % rate of 401s drains about two entries per run.
const MAX_RUNS_STOPPING: usize = 80;

/// What the runs of one scenario added up to.
#[derive(Debug, Default)]
struct Totals {
    runs: usize,
    attempts: u64,
    delivered: u64,
    reconciled: u64,
    retried: u64,
    failed: u64,
    dead: u64,
    revived: u64,
    delivered_entries: usize,
    dead_entries: usize,
}

/// Runs the worker until nothing is left to deliver, at most `max_runs`
/// times (runs may stop for the `stops` reasons), then checks the end state.
async fn settle_with(
    label: &str,
    kind: Kind,
    plan: FaultPlan,
    seed: u64,
    max_runs: usize,
    stops: &[Stop],
) -> (Harness, Totals) {
    let mut opts = Options::new(kind);
    opts.seed = seed;
    let h = Harness::start(opts).await;
    let ids = h.enqueue(ENTRIES).await;
    h.server.set_faults(plan);
    let mut t = Totals::default();
    while t.runs < max_runs {
        let r = h.run().await;
        t.runs += 1;
        t.attempts += r.attempts;
        t.delivered += r.delivered;
        t.reconciled += r.reconciled;
        t.retried += r.retried;
        t.failed += r.failed;
        t.dead += r.dead;
        t.revived += r.revived;
        assert!(
            r.stopped.is_none_or(|s| stops.contains(&s)),
            "{kind:?}: no fault here stops a run that way: {r:?}"
        );
        if r.remaining == 0 {
            break;
        }
    }
    let counts = h.stats().await.counts;
    assert_eq!(
        counts.undelivered(),
        0,
        "{kind:?}: settled within {max_runs} runs: {counts:?} {t:?}"
    );
    assert_eq!(
        (counts.delivered + counts.dead) as usize,
        ENTRIES,
        "{kind:?}: every entry is accounted for"
    );
    let (delivered, dead) = assert_exactly_once_or_dead(&h.server, &h.db_path(), &ids);
    let acked = ids.iter().cloned().collect();
    let report = checker::check(&acked, &h.db_path(), &h.server.count_by_mq_id());
    assert!(report.ok(), "{kind:?} {label}: {}", report.summary());
    println!(
        "R3 faults {label} {kind:?}: runs={} attempts={} reconciled={} dead={dead}; {}",
        t.runs,
        t.attempts,
        t.reconciled,
        report.summary()
    );
    t.delivered_entries = delivered;
    t.dead_entries = dead;
    assert_eq!(t.delivered as usize, delivered, "{kind:?}: {t:?}");
    assert_eq!(t.dead as usize, dead, "{kind:?}: {t:?}");
    (h, t)
}

/// One fault alone at [`RATE`], on both kinds: all delivered, none dead.
async fn transient_alone(fault: Fault) -> Vec<Totals> {
    // Faults with no answer count for the breaker.
    let stops: &[Stop] = match fault {
        Fault::Hang | Fault::AcceptThenHang => &[Stop::Breaker],
        _ => &[],
    };
    let mut all = Vec::new();
    for kind in KINDS {
        let label = format!("{fault:?}");
        let plan = FaultPlan::mix([(fault.clone(), RATE)]);
        let (h, t) = settle_with(&label, kind, plan, 11, MAX_RUNS_STOPPING, stops).await;
        assert_eq!(
            t.dead_entries, 0,
            "{kind:?} {fault:?}: a transient fault kills nothing"
        );
        assert_eq!(t.delivered_entries, ENTRIES, "{kind:?} {fault:?}");
        let injected = add_requests(&h.server)
            .iter()
            .filter(|r| r.fault.as_ref() == Some(&fault))
            .count();
        assert!(injected > 0, "{kind:?} {fault:?}: the fault was injected");
        all.push(t);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_alone() {
    for t in transient_alone(Fault::Latency(Duration::from_millis(50))).await {
        assert_eq!(
            (t.retried, t.failed),
            (0, 0),
            "latency under the timeout is no failure"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_500_alone() {
    for t in transient_alone(Fault::Status500).await {
        assert!(t.retried > 0);
        assert_eq!(
            t.reconciled, 0,
            "a 500 stores nothing and is no unknown outcome"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_502_with_a_provider_code_alone() {
    for t in transient_alone(Fault::Status502("provider_timeout")).await {
        assert!(t.retried > 0);
        assert_eq!(t.reconciled, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_503_alone() {
    for t in transient_alone(Fault::Status503 {
        retry_after_secs: Some(5),
    })
    .await
    {
        assert!(t.retried > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_429_alone() {
    for t in transient_alone(Fault::Status429 {
        retry_after_secs: 30,
    })
    .await
    {
        assert!(t.retried > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_response_alone() {
    // The server stored each reset add: every one is found by its mq_id.
    for t in transient_alone(Fault::ResetMidResponse).await {
        assert!(t.reconciled > 0, "{t:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_alone() {
    for t in transient_alone(Fault::Hang).await {
        assert!(t.retried > 0);
        assert_eq!(t.reconciled, 0, "Hang stores nothing: {t:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_then_hang_alone() {
    for t in transient_alone(Fault::AcceptThenHang).await {
        assert!(t.reconciled > 0, "{t:?}");
        assert_eq!(
            t.failed, 0,
            "a stored entry is found at its second try: {t:?}"
        );
    }
}

/// Regression (issue 12, "a rejected key is a death sentence"): a 401 used
/// to send its entry to `dead`. It is a configuration problem now: the run
/// stops, the entry waits uncharged, and once the server takes the key
/// every entry is delivered, none dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_alone_kills_no_entry() {
    for kind in KINDS {
        let plan = FaultPlan::mix([(Fault::Unauthorized, RATE)]);
        let (h, t) = settle_with(
            "Unauthorized",
            kind,
            plan,
            11,
            MAX_RUNS_STOPPING,
            &[Stop::Config],
        )
        .await;
        let rejected = add_requests(&h.server)
            .iter()
            .filter(|r| r.fault == Some(Fault::Unauthorized))
            .count();
        assert!(rejected > 0, "{kind:?}: the fault was injected");
        assert_eq!((t.dead_entries, t.dead), (0, 0), "{kind:?}: {t:?}");
        assert_eq!(t.delivered_entries, ENTRIES, "{kind:?}");
        assert_eq!(
            (t.retried, t.failed),
            (0, 0),
            "{kind:?}: a 401 is never charged: {t:?}"
        );
        for row in h.rows().values() {
            assert_eq!(row.attempts, 0, "{kind:?}: uncharged: {row:?}");
        }
    }
}

/// Every fault at once, with a fixed seed; platform events also stay
/// PENDING for a poll before they end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_mix_with_a_fixed_seed() {
    // Most adds fail, three in five with a fault that stores nothing, so
    // some entries fail all four tries of a run and are revived by the
    // next: several runs.
    let mix = [
        (Fault::Latency(Duration::from_millis(20)), 0.05),
        (Fault::Status500, 0.12),
        (Fault::Status502("provider_rate_limited"), 0.12),
        (
            Fault::Status503 {
                retry_after_secs: None,
            },
            0.12,
        ),
        (
            Fault::Status429 {
                retry_after_secs: 10,
            },
            0.12,
        ),
        (Fault::Hang, 0.12),
        (Fault::ResetMidResponse, 0.06),
        (Fault::AcceptThenHang, 0.06),
        (Fault::Unauthorized, 0.03),
    ];
    for kind in KINDS {
        let mut plan = FaultPlan::mix(mix.clone());
        plan.events = EventPlan {
            pending_polls: 1,
            fail: false,
        };
        let (h, t) = settle_with(
            "mix",
            kind,
            plan,
            20_260_801,
            MAX_RUNS_STOPPING,
            &[Stop::Breaker, Stop::Config],
        )
        .await;
        let requests = add_requests(&h.server);
        let kinds_seen: std::collections::HashSet<String> = requests
            .iter()
            .filter_map(|r| r.fault.as_ref())
            .map(|f| {
                format!("{f:?}")
                    .split(['(', ' '])
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        assert!(
            kinds_seen.len() >= 5,
            "{kind:?}: a real mix: {kinds_seen:?}"
        );
        assert_eq!(t.dead_entries, 0, "{kind:?}: no fault here kills: {t:?}");
        assert!(
            t.runs >= 2 && t.revived > 0,
            "{kind:?}: several runs: {t:?}"
        );
        println!("{kind:?}: {t:?}; faults seen {kinds_seen:?}");
    }
}

/// The platform accepts each add (an event PENDING for one poll) and then
/// fails the event: nothing was stored. Each entry must be added again, and
/// once the events succeed, delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_platform_events_are_added_again_and_delivered_once() {
    let h = Harness::start(Options::new(Kind::Platform)).await;
    let ids = h.enqueue(ENTRIES).await;
    h.server.set_faults(FaultPlan {
        events: EventPlan {
            pending_polls: 1,
            fail: true,
        },
        ..FaultPlan::default()
    });
    let first = h.run().await;
    assert!(
        h.server.stored().is_empty(),
        "a failed event stores nothing"
    );
    assert_eq!(first.delivered, 0, "{first:?}");
    assert!(first.retried > 0 && first.failed > 0, "{first:?}");
    assert!(
        h.rows().values().all(|r| r.state == State::Failed),
        "every entry used its tries on failed events"
    );

    h.server.set_faults(FaultPlan::default());
    let mut runs = 1;
    while runs < MAX_RUNS && h.run().await.remaining > 0 {
        runs += 1;
    }
    let (delivered, dead) = assert_exactly_once_or_dead(&h.server, &h.db_path(), &ids);
    assert_eq!((delivered, dead), (ENTRIES, 0));
    let adds = add_requests(&h.server).len();
    assert!(
        adds > ENTRIES,
        "each entry was added again after its failed events: {adds} adds"
    );
    let report = checker::check(
        &ids.iter().cloned().collect(),
        &h.db_path(),
        &h.server.count_by_mq_id(),
    );
    println!(
        "R3 faults EventFailed Platform: runs={} attempts={adds} reconciled=0 dead=0; {}",
        runs + 1,
        report.summary()
    );
}
