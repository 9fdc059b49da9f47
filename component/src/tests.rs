//! Table-driven tests of the default policy, run natively.

use super::*;
use mem0_queue_policy_sdk::{HttpFailure, Operation, Rejection};

fn entry(attempts_this_run: u32) -> EntryState {
    EntryState {
        attempts_this_run,
        total_attempts: attempts_this_run,
        runs_failed: 0,
        age_ms: 1_000,
        size_bytes: 42,
        operation: Operation::Add,
    }
}

fn stats(pending: u64, failed: u64) -> QueueStats {
    QueueStats {
        pending,
        in_flight: 0,
        failed,
        dead: 0,
        dead_auth: 0,
        oldest_pending_age_ms: None,
        last_success_age_ms: None,
        consecutive_failing_runs: 0,
        unreachable_runs: 0,
        unreachable_for_ms: None,
    }
}

fn decide(attempts: u32, outcome: Outcome) -> Decision {
    DefaultPolicy::on_failure(entry(attempts), outcome, 0).expect("the default never errs")
}

#[test]
fn the_seed_schedule_is_2_4_8_seconds_then_failed() {
    let table = [
        (1, Decision::RetryAfterMs(2_000)),
        (2, Decision::RetryAfterMs(4_000)),
        (3, Decision::RetryAfterMs(8_000)),
        (4, Decision::Fail),
        (5, Decision::Fail),
    ];
    for (attempts, want) in table {
        for outcome in [
            Outcome::TimeoutBeforeSend,
            Outcome::ConnectError,
            Outcome::Unknown,
        ] {
            assert_eq!(decide(attempts, outcome), want, "attempt {attempts}");
        }
    }
}

#[test]
fn retry_after_is_a_floor_on_the_delay() {
    let http = |retry_after_ms| {
        Outcome::Http(HttpFailure {
            status: 429,
            retry_after_ms,
            code: None,
        })
    };
    let table = [
        (1, None, Decision::RetryAfterMs(2_000)),
        (1, Some(500), Decision::RetryAfterMs(2_000)),
        (1, Some(30_000), Decision::RetryAfterMs(30_000)),
        (3, Some(7_999), Decision::RetryAfterMs(8_000)),
        (3, Some(8_001), Decision::RetryAfterMs(8_001)),
        (4, Some(30_000), Decision::Fail),
    ];
    for (attempts, retry_after, want) in table {
        assert_eq!(decide(attempts, http(retry_after)), want);
    }
}

#[test]
fn every_operation_gets_the_same_decisions() {
    let outcomes = [
        Outcome::ConnectError,
        Outcome::Unknown,
        Outcome::Http(HttpFailure {
            status: 429,
            retry_after_ms: Some(30_000),
            code: None,
        }),
        Outcome::Permanent(Rejection {
            status: 404,
            auth: false,
        }),
    ];
    for attempts in 0..=5 {
        for outcome in &outcomes {
            let add = decide(attempts, outcome.clone());
            for operation in [Operation::Update, Operation::Delete, Operation::DeleteAll] {
                let e = EntryState {
                    operation,
                    ..entry(attempts)
                };
                let got = DefaultPolicy::on_failure(e, outcome.clone(), 0).expect("never errs");
                assert_eq!(got, add, "{operation:?}, attempt {attempts}, {outcome:?}");
            }
        }
    }
}

#[test]
fn permanent_errors_go_straight_to_dead() {
    for (status, auth) in [
        (400, false),
        (401, true),
        (403, true),
        (404, false),
        (413, false),
        (422, false),
    ] {
        let d = decide(1, Outcome::Permanent(Rejection { status, auth }));
        match d {
            Decision::Dead(reason) => {
                assert!(reason.contains(&status.to_string()), "{reason}");
                assert_eq!(reason.contains("API key"), auth, "{reason}");
            }
            other => panic!("{status} gave {other:?}"),
        }
    }
}

#[test]
fn every_failed_entry_gets_a_fresh_start() {
    let failed: Vec<_> = (0..7)
        .map(|i| FailedSummary {
            id: format!("id-{i}"),
            runs_failed: i,
            total_attempts: 4 * i,
            age_ms: 1,
            since_last_attempt_ms: 0,
            operation: Operation::Add,
        })
        .collect();
    let revived = DefaultPolicy::on_run_start(failed, 0).expect("never errs");
    assert_eq!(revived.len(), 7);
    assert_eq!(revived[6], "id-6");
}

#[test]
fn warning_when_pending_is_over_20() {
    let codes = |pending| -> Vec<String> {
        DefaultPolicy::alerts(stats(pending, 0))
            .expect("never errs")
            .into_iter()
            .map(|a| a.code)
            .collect()
    };
    assert!(codes(20).is_empty());
    assert_eq!(codes(21), ["queue-backlog"]);
}

#[test]
fn critical_when_failed_is_over_5() {
    assert!(DefaultPolicy::alerts(stats(0, 5)).expect("ok").is_empty());
    let alerts = DefaultPolicy::alerts(stats(0, 6)).expect("ok");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].level, Level::Critical);
    assert_eq!(alerts[0].code, "failed-backlog");
    assert!(alerts[0].message.contains("6 failed"));
    assert!(!alerts[0].actions.is_empty());
}

#[test]
fn critical_comes_before_warning_and_texts_carry_counts() {
    let mut s = stats(23, 7);
    s.last_success_age_ms = Some(2 * 3_600 * 1_000);
    let alerts = DefaultPolicy::alerts(s).expect("ok");
    assert_eq!(alerts[0].level, Level::Critical);
    assert_eq!(alerts[1].level, Level::Warning);
    assert!(alerts[1].message.contains("23 memories"));
    assert!(alerts[1].message.contains("2 h 0 min ago"));
}

#[test]
fn auth_rejections_raise_their_own_alert() {
    let mut s = stats(0, 0);
    s.dead = 3;
    s.dead_auth = 2;
    let codes: Vec<_> = DefaultPolicy::alerts(s)
        .expect("ok")
        .into_iter()
        .map(|a| (a.level, a.code))
        .collect();
    assert_eq!(
        codes,
        [
            (Level::Critical, "auth-rejected".to_string()),
            (Level::Warning, "dead-entries".to_string())
        ]
    );
}

fn unreachable(runs: u32, for_ms: Option<u64>) -> Vec<Alert> {
    let mut s = stats(0, 0);
    s.unreachable_runs = runs;
    s.unreachable_for_ms = for_ms;
    DefaultPolicy::alerts(s).expect("never errs")
}

#[test]
fn server_unreachable_from_3_runs_whatever_the_queue_size() {
    const MIN: u64 = 60 * SECOND_MS;
    assert!(unreachable(2, Some(29 * MIN)).is_empty());
    assert!(unreachable(2, None).is_empty());
    let alerts = unreachable(3, Some(25 * MIN));
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(
        (a.level, a.code.as_str()),
        (Level::Warning, "server-unreachable")
    );
    assert!(
        a.message.contains("for 25 min (3 worker runs in a row)"),
        "{}",
        a.message
    );
    assert!(
        a.message.contains("safe in the local queue"),
        "{}",
        a.message
    );
    assert!(a.actions.iter().any(|s| s == "mem0-queue doctor"));
    assert!(a.actions.iter().any(|s| s.contains("Mem0 server")));
    // Three of serve's 30 s runs within a server restart: not yet.
    assert!(unreachable(3, Some(2 * MIN)).is_empty());
    assert!(unreachable(3, None).is_empty());
    assert_eq!(unreachable(3, Some(10 * MIN)).len(), 1);
}

#[test]
fn server_unreachable_from_30_minutes_whatever_the_runs() {
    const MIN: u64 = 60 * SECOND_MS;
    assert!(unreachable(1, Some(29 * MIN)).is_empty());
    assert!(unreachable(1, Some(WARN_UNREACHABLE_MS - 1)).is_empty());
    let alerts = unreachable(1, Some(30 * MIN));
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].code, "server-unreachable");
    assert!(alerts[0].message.contains("for 30 min (1 worker run)"));
}

#[test]
fn server_unreachable_sits_between_the_criticals_and_the_backlog() {
    let mut s = stats(23, 7);
    s.unreachable_runs = 4;
    s.unreachable_for_ms = Some(12 * 60 * SECOND_MS);
    let codes: Vec<_> = DefaultPolicy::alerts(s)
        .expect("ok")
        .into_iter()
        .map(|a| a.code)
        .collect();
    assert_eq!(
        codes,
        ["failed-backlog", "server-unreachable", "queue-backlog"]
    );
}

#[test]
fn the_breaker_stops_after_3_in_a_row_or_1_when_probing() {
    let table = [
        (1, false, 0, BreakerDecision::Continue),
        (2, false, 0, BreakerDecision::Continue),
        (3, false, 0, BreakerDecision::Stop(30_000)),
        (1, true, 1, BreakerDecision::Stop(60_000)),
        (1, true, 2, BreakerDecision::Stop(120_000)),
        (1, true, 30, BreakerDecision::Stop(PROBE_CAP_MS)),
    ];
    for (consecutive_failures, previous_run_tripped, consecutive_failing_runs, want) in table {
        let got = DefaultPolicy::breaker(BreakerInput {
            consecutive_failures,
            previous_run_tripped,
            consecutive_failing_runs,
        })
        .expect("ok");
        assert_eq!(got, want, "{consecutive_failures} {previous_run_tripped}");
    }
}

#[test]
fn identity_names_the_wit_version() {
    let id = DefaultPolicy::describe();
    assert_eq!(id.name, "default");
    assert_eq!(id.wit_version, WIT_VERSION);
}
