//! An alternative mem0-queue policy, for users whose server is shared or
//! rate-limited, and the proof that a policy can be swapped without a rebuild.
//!
//! - Capped full-jitter exponential backoff, the scheme of AWS's "Exponential
//!   Backoff And Jitter": `delay = random(0, min(cap, base * 2^attempt))`. Full
//!   jitter spreads the retries of many entries, so a server coming back is
//!   not hit by all of them in the same second.
//! - Up to 6 attempts in one run before `failed`.
//! - A failed entry is retried at a run start only after a cool-down that
//!   doubles with every run it has failed: 10 min, 20 min, 40 min, ... 24 h.
//! - Thresholds of its own: WARNING over 100 pending or when the oldest pending
//!   entry is over a day old; CRITICAL over 20 failed; WARNING
//!   `server-unreachable` after 6 worker runs or an hour with no answer from
//!   the server.
//! - The entry's `operation` is not used: every operation gets the same
//!   decisions.
//!
//! Like every policy it decides and never does I/O.

use mem0_queue_policy_sdk::{
    Alert, BreakerDecision, BreakerInput, Decision, EntryState, FailedSummary, Guest, Identity,
    Level, Outcome, QueueStats, SECOND_MS, WIT_VERSION, human_ms,
};

/// The first backoff window. One second: the shortest pause that still gives
/// a restarting server a chance.
pub const BASE_MS: u64 = SECOND_MS;

/// The widest backoff window: 5 minutes. Past that, waiting inside one run
/// holds the worker for nothing; the next run is the better retry.
pub const CAP_MS: u64 = 5 * 60 * SECOND_MS;

/// Failed attempts in one run before the entry moves to `failed`.
pub const MAX_ATTEMPTS_PER_RUN: u32 = 6;

/// The cool-down after a first failed run; it doubles with every further one.
pub const COOLDOWN_BASE_MS: u64 = 10 * 60 * SECOND_MS;

/// The longest cool-down: a failed entry is tried at least once a day.
pub const COOLDOWN_CAP_MS: u64 = 24 * 3_600 * SECOND_MS;

/// Connection-level failures in a row that stop a run.
pub const BREAKER_THRESHOLD: u32 = 5;

/// The pause before the next probe once the breaker stopped a run.
pub const PROBE_PAUSE_MS: u64 = 2 * 60 * SECOND_MS;

/// WARNING when more entries than this are pending.
pub const WARN_PENDING_OVER: u64 = 100;

/// WARNING when the oldest pending entry is older than this.
pub const WARN_OLDEST_PENDING_MS: u64 = 24 * 3_600 * SECOND_MS;

/// CRITICAL when more entries than this have failed.
pub const CRITICAL_FAILED_OVER: u64 = 20;

/// WARNING `server-unreachable` from this many worker runs in a row with no
/// answer from the server: twice the default's 3, for a shared server whose
/// outages are expected to last longer.
pub const WARN_UNREACHABLE_RUNS: u32 = 6;

/// WARNING `server-unreachable` once the server has not answered for this
/// long, whatever the runs: one hour, twice the default's 30 minutes.
pub const WARN_UNREACHABLE_MS: u64 = 3_600 * SECOND_MS;

/// The jitter policy.
pub struct JitterPolicy;

/// `min(cap, base * 2^exp)` without overflow.
fn window(base: u64, exp: u32, cap: u64) -> u64 {
    base.saturating_mul(1u64 << exp.min(40)).min(cap)
}

impl Guest for JitterPolicy {
    fn describe() -> Identity {
        Identity {
            name: "jitter".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            wit_version: WIT_VERSION.into(),
        }
    }

    fn on_failure(entry: EntryState, outcome: Outcome, random: u32) -> Result<Decision, String> {
        let floor = match &outcome {
            Outcome::Permanent(r) => {
                return Ok(Decision::Dead(format!(
                    "HTTP {}: permanent rejection{}",
                    r.status,
                    if r.auth { " (API key)" } else { "" }
                )));
            }
            Outcome::Http(h) => h.retry_after_ms.unwrap_or(0),
            _ => 0,
        };
        if entry.attempts_this_run >= MAX_ATTEMPTS_PER_RUN {
            return Ok(Decision::Fail);
        }
        let ceiling = window(BASE_MS, entry.attempts_this_run.saturating_sub(1), CAP_MS);
        let jittered = ((u128::from(ceiling) * u128::from(random)) / u128::from(u32::MAX)) as u64;
        Ok(Decision::RetryAfterMs(jittered.max(floor)))
    }

    fn on_run_start(failed: Vec<FailedSummary>, _random: u32) -> Result<Vec<String>, String> {
        Ok(failed
            .into_iter()
            .filter(|f| {
                let cooldown = window(
                    COOLDOWN_BASE_MS,
                    f.runs_failed.saturating_sub(1),
                    COOLDOWN_CAP_MS,
                );
                f.since_last_attempt_ms >= cooldown
            })
            .map(|f| f.id)
            .collect())
    }

    fn breaker(input: BreakerInput) -> Result<BreakerDecision, String> {
        let threshold = if input.previous_run_tripped {
            2
        } else {
            BREAKER_THRESHOLD
        };
        Ok(if input.consecutive_failures >= threshold {
            BreakerDecision::Stop(PROBE_PAUSE_MS)
        } else {
            BreakerDecision::Continue
        })
    }

    fn alerts(stats: QueueStats) -> Result<Vec<Alert>, String> {
        let mut alerts = Vec::new();
        if stats.dead_auth > 0 {
            alerts.push(Alert {
                level: Level::Critical,
                code: "auth-rejected".into(),
                message: format!(
                    "{} memories were refused for a bad API key; they are kept locally.",
                    stats.dead_auth
                ),
                actions: vec!["Fix the API key, then: mem0-queue retry --dead".into()],
            });
        }
        if stats.failed > CRITICAL_FAILED_OVER {
            alerts.push(Alert {
                level: Level::Critical,
                code: "failed-backlog".into(),
                message: format!(
                    "{} failed entries (limit {CRITICAL_FAILED_OVER}); they are kept locally and \
                     retried after a growing cool-down.",
                    stats.failed
                ),
                actions: vec!["Check the Mem0 server".into(), "mem0-queue status".into()],
            });
        }
        if stats.unreachable_runs >= WARN_UNREACHABLE_RUNS
            || stats
                .unreachable_for_ms
                .is_some_and(|ms| ms >= WARN_UNREACHABLE_MS)
        {
            let how_long = stats
                .unreachable_for_ms
                .map(|ms| format!(" for {}", human_ms(ms)))
                .unwrap_or_default();
            alerts.push(Alert {
                level: Level::Warning,
                code: "server-unreachable".into(),
                message: format!(
                    "The Mem0 server has not answered{how_long} ({} worker runs); memories are \
                     kept locally.",
                    stats.unreachable_runs
                ),
                actions: vec!["Check the Mem0 server".into(), "mem0-queue doctor".into()],
            });
        }
        if stats.pending > WARN_PENDING_OVER {
            alerts.push(Alert {
                level: Level::Warning,
                code: "queue-backlog".into(),
                message: format!(
                    "{} memories pending (limit {WARN_PENDING_OVER}); they are kept locally.",
                    stats.pending
                ),
                actions: vec!["mem0-queue status".into()],
            });
        }
        if let Some(age) = stats
            .oldest_pending_age_ms
            .filter(|&a| a > WARN_OLDEST_PENDING_MS)
        {
            alerts.push(Alert {
                level: Level::Warning,
                code: "stale-pending".into(),
                message: format!("The oldest pending memory has waited {}.", human_ms(age)),
                actions: vec!["mem0-queue sync".into()],
            });
        }
        Ok(alerts)
    }
}

#[cfg(target_arch = "wasm32")]
mem0_queue_policy_sdk::export_policy!(JitterPolicy);

#[cfg(test)]
mod tests {
    use super::*;
    use mem0_queue_policy_sdk::Operation;

    fn entry(attempts_this_run: u32) -> EntryState {
        EntryState {
            attempts_this_run,
            total_attempts: attempts_this_run,
            runs_failed: 0,
            age_ms: 0,
            size_bytes: 1,
            operation: Operation::Add,
        }
    }

    #[test]
    fn full_jitter_stays_inside_the_capped_window() {
        for attempts in 1..MAX_ATTEMPTS_PER_RUN {
            let ceiling = window(BASE_MS, attempts - 1, CAP_MS);
            let delay = |random| match JitterPolicy::on_failure(
                entry(attempts),
                Outcome::ConnectError,
                random,
            ) {
                Ok(Decision::RetryAfterMs(ms)) => ms,
                other => panic!("attempt {attempts}: {other:?}"),
            };
            assert_eq!(delay(0), 0);
            assert_eq!(delay(u32::MAX), ceiling);
            // Half the random range gives half the window, give or take the rounding.
            assert!((ceiling / 2 - 1..=ceiling / 2).contains(&delay(u32::MAX / 2)));
        }
        assert_eq!(window(BASE_MS, 30, CAP_MS), CAP_MS);
    }

    #[test]
    fn six_attempts_then_failed() {
        let d = JitterPolicy::on_failure(entry(6), Outcome::Unknown, 7);
        assert_eq!(d, Ok(Decision::Fail));
    }

    #[test]
    fn cooldown_grows_with_failed_runs() {
        let summary = |runs_failed, since_last_attempt_ms| FailedSummary {
            id: format!("{runs_failed}-{since_last_attempt_ms}"),
            runs_failed,
            total_attempts: 6,
            age_ms: 0,
            since_last_attempt_ms,
            operation: Operation::Add,
        };
        let min = 60 * SECOND_MS;
        let revived = JitterPolicy::on_run_start(
            vec![
                summary(1, 9 * min),
                summary(1, 10 * min),
                summary(2, 19 * min),
                summary(2, 20 * min),
                summary(40, 24 * 60 * min),
            ],
            0,
        )
        .expect("ok");
        assert_eq!(revived, ["1-600000", "2-1200000", "40-86400000"]);
    }

    #[test]
    fn thresholds_of_its_own() {
        let stats = |pending, failed| QueueStats {
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
        };
        assert!(JitterPolicy::alerts(stats(100, 20)).expect("ok").is_empty());
        assert_eq!(JitterPolicy::alerts(stats(101, 21)).expect("ok").len(), 2);
    }

    #[test]
    fn server_unreachable_after_6_runs_or_an_hour() {
        let codes = |runs, for_ms| -> Vec<String> {
            let stats = QueueStats {
                pending: 0,
                in_flight: 0,
                failed: 0,
                dead: 0,
                dead_auth: 0,
                oldest_pending_age_ms: None,
                last_success_age_ms: None,
                consecutive_failing_runs: 0,
                unreachable_runs: runs,
                unreachable_for_ms: for_ms,
            };
            JitterPolicy::alerts(stats)
                .expect("ok")
                .into_iter()
                .map(|a| a.code)
                .collect()
        };
        let min = 60 * SECOND_MS;
        assert!(codes(5, Some(59 * min)).is_empty());
        assert!(codes(5, None).is_empty());
        assert_eq!(codes(6, None), ["server-unreachable"]);
        assert_eq!(codes(1, Some(60 * min)), ["server-unreachable"]);
    }
}
