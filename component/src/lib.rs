//! The default mem0-queue policy: the seed's validated decisions.
//!
//! - After a first failed attempt, retry after 2 s, then 4 s, then 8 s; the
//!   third failed retry (the fourth failed attempt of the run) moves the entry
//!   to `failed`. This is the seed's degraded flow step for step: "timeout,
//!   retry 1 (2 s), retry 2 (4 s), retry 3 (8 s), moved to failed".
//! - Every failed entry gets a fresh start at each worker run.
//! - WARNING when more than 20 entries are pending; CRITICAL when more than
//!   5 have failed.
//!
//! And what the seed is silent on:
//! - permanent rejections (400, 401, 403, 404, 413, 422) go straight to dead,
//!   and auth rejections raise an alert of their own;
//! - a server's Retry-After is a floor on the delay;
//! - the breaker stops a run after 3 entries in a row got no answer (refused,
//!   timed out, a gateway's page), or after the first one when the previous
//!   run was stopped the same way;
//! - WARNING `server-unreachable` when the Mem0 server has not answered for 3
//!   worker runs in a row over at least 10 minutes, or for 30 minutes,
//!   whatever the queue size.
//!
//! The entry's `operation` (add, update, delete, delete-all) is not used: every
//! operation gets the same retries and the same decisions, and a permanent
//! rejection of a delete is dead like any other.
//!
//! This crate decides and never does I/O. The logic is plain Rust behind the
//! generated `Guest` trait, so `cargo test` runs it natively.

use mem0_queue_policy_sdk::{
    Alert, BreakerDecision, BreakerInput, Decision, EntryState, FailedSummary, Guest, Identity,
    Level, Outcome, QueueStats, SECOND_MS, WIT_VERSION, human_ms,
};

/// The seed's backoff schedule, in order: the delay before the 1st, 2nd and
/// 3rd retry of a run.
pub const BACKOFF_MS: [u64; 3] = [2 * SECOND_MS, 4 * SECOND_MS, 8 * SECOND_MS];

/// Failed attempts in one run after which the entry moves to `failed`: the
/// first attempt plus the seed's three retries.
pub const MAX_ATTEMPTS_PER_RUN: u32 = BACKOFF_MS.len() as u32 + 1;

/// The seed's WARNING threshold: "queue > 20".
pub const WARN_PENDING_OVER: u64 = 20;

/// The seed's CRITICAL threshold: "failed > 5".
pub const CRITICAL_FAILED_OVER: u64 = 5;

/// Worker runs in a row in which the Mem0 server never answered, from which
/// `server-unreachable` is raised: three periods of the seed's 10-minute
/// cron. One or two missed runs are a restart or a short network cut; a third
/// means someone should look.
pub const WARN_UNREACHABLE_RUNS: u32 = 3;

/// How long the server may go unanswered before `server-unreachable` is
/// raised, whatever the number of runs: 30 minutes, three periods of the
/// seed's 10-minute cron.
pub const WARN_UNREACHABLE_MS: u64 = 30 * 60 * SECOND_MS;

/// The shortest time over which [`WARN_UNREACHABLE_RUNS`] runs raise the
/// alert: one cron period. `serve` runs every 30 s and probes a down server
/// from 30 s on, so three of its runs can pass in two minutes, while a
/// server restart takes about one; a runs count alone would cry wolf.
pub const WARN_UNREACHABLE_RUNS_MIN_MS: u64 = 10 * 60 * SECOND_MS;

/// Connection-level failures in a row that stop a run. Three refused or
/// timed-out connections in a row mean the server is down, not flaky; going
/// on would charge every entry attempts for nothing.
pub const BREAKER_THRESHOLD: u32 = 3;

/// The first pause before the next probe after the breaker stopped a run. It
/// matches the serve loop's default 30 s interval, so the breaker costs
/// nothing while the server is merely restarting.
pub const PROBE_BASE_MS: u64 = 30 * SECOND_MS;

/// The longest pause between probes: the seed's 10-minute cron interval, so a
/// server that comes back is found within one cron period.
pub const PROBE_CAP_MS: u64 = 10 * 60 * SECOND_MS;

/// The default policy. A unit struct: all state lives in the host's queue.
pub struct DefaultPolicy;

impl Guest for DefaultPolicy {
    fn describe() -> Identity {
        Identity {
            name: "default".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            wit_version: WIT_VERSION.into(),
        }
    }

    fn on_failure(entry: EntryState, outcome: Outcome, _random: u32) -> Result<Decision, String> {
        let retry_after = match &outcome {
            Outcome::Permanent(r) if r.auth => {
                return Ok(Decision::Dead(format!(
                    "HTTP {}: the Mem0 server rejected the API key",
                    r.status
                )));
            }
            Outcome::Permanent(r) => {
                return Ok(Decision::Dead(format!(
                    "HTTP {}: the Mem0 server rejected the request; a retry cannot fix it",
                    r.status
                )));
            }
            Outcome::Http(h) => h.retry_after_ms.unwrap_or(0),
            Outcome::ConnectError | Outcome::TimeoutBeforeSend | Outcome::Unknown => 0,
        };
        if entry.attempts_this_run >= MAX_ATTEMPTS_PER_RUN || entry.attempts_this_run == 0 {
            return Ok(Decision::Fail);
        }
        let backoff = BACKOFF_MS[(entry.attempts_this_run - 1) as usize];
        Ok(Decision::RetryAfterMs(backoff.max(retry_after)))
    }

    fn on_run_start(failed: Vec<FailedSummary>, _random: u32) -> Result<Vec<String>, String> {
        // The seed: "reset retries à 0, nouvelle chance à chaque run".
        Ok(failed.into_iter().map(|f| f.id).collect())
    }

    fn breaker(input: BreakerInput) -> Result<BreakerDecision, String> {
        let threshold = if input.previous_run_tripped {
            1
        } else {
            BREAKER_THRESHOLD
        };
        if input.consecutive_failures < threshold {
            return Ok(BreakerDecision::Continue);
        }
        let doublings = input.consecutive_failing_runs.min(8);
        let pause = PROBE_BASE_MS
            .saturating_mul(1 << doublings)
            .min(PROBE_CAP_MS);
        Ok(BreakerDecision::Stop(pause))
    }

    fn alerts(stats: QueueStats) -> Result<Vec<Alert>, String> {
        let mut alerts = Vec::new();
        if stats.dead_auth > 0 {
            alerts.push(Alert {
                level: Level::Critical,
                code: "auth-rejected".into(),
                message: format!(
                    "MEM0 AUTH - CRITICAL: the Mem0 server rejected the API key; {} memories \
                     are held as dead. They are safe in the local queue and will not be lost.",
                    stats.dead_auth
                ),
                actions: vec![
                    "Check MEM0_API_KEY (or api_key in the config) against the server".into(),
                    "mem0-queue doctor".into(),
                    "mem0-queue retry --dead".into(),
                ],
            });
        }
        if stats.failed > CRITICAL_FAILED_OVER {
            alerts.push(Alert {
                level: Level::Critical,
                code: "failed-backlog".into(),
                message: format!(
                    "MEM0 VPS - CRITICAL: {} failed entries; the Mem0 server is probably down. \
                     The memories are safe in the local queue and are retried at every worker run.",
                    stats.failed
                ),
                actions: vec![
                    "Urgent: check the Mem0 server (ssh to it, read its logs)".into(),
                    "mem0-queue status".into(),
                    "mem0-queue sync once it is back".into(),
                ],
            });
        }
        if let Some(alert) = server_unreachable(&stats) {
            alerts.push(alert);
        }
        if stats.pending > WARN_PENDING_OVER {
            let since = match stats.last_success_age_ms {
                Some(ms) => format!("last delivery {} ago", human_ms(ms)),
                None => "no delivery yet".into(),
            };
            alerts.push(Alert {
                level: Level::Warning,
                code: "queue-backlog".into(),
                message: format!(
                    "MEM0 VPS - WARNING: {} memories waiting in the local queue ({since}). \
                     They are saved: local queue and knowledge graph.",
                    stats.pending
                ),
                actions: vec![
                    "Check the Mem0 server (ssh to it, tail its API log)".into(),
                    "mem0-queue status".into(),
                ],
            });
        }
        let dead_other = stats.dead.saturating_sub(stats.dead_auth);
        if dead_other > 0 {
            alerts.push(Alert {
                level: Level::Warning,
                code: "dead-entries".into(),
                message: format!(
                    "{dead_other} memories were rejected by the Mem0 server and are held as dead. \
                     They stay in the local queue."
                ),
                actions: vec![
                    "mem0-queue list --state dead".into(),
                    "mem0-queue retry --dead ID, once the cause is fixed".into(),
                ],
            });
        }
        Ok(alerts)
    }
}

/// The WARNING for a server that has stopped answering: from
/// [`WARN_UNREACHABLE_RUNS`] runs over at least
/// [`WARN_UNREACHABLE_RUNS_MIN_MS`], or from [`WARN_UNREACHABLE_MS`], whatever the
/// queue size, so a quiet queue does not hide a dead server. Public: the host
/// raises it, computed natively, for a policy of WIT 0.1.0, which is not
/// given the statistics it needs.
pub fn server_unreachable(stats: &QueueStats) -> Option<Alert> {
    let runs = stats.unreachable_runs;
    let for_ms = stats.unreachable_for_ms.unwrap_or(0);
    let by_runs = runs >= WARN_UNREACHABLE_RUNS && for_ms >= WARN_UNREACHABLE_RUNS_MIN_MS;
    if !by_runs && for_ms < WARN_UNREACHABLE_MS {
        return None;
    }
    let in_runs = if runs == 1 {
        "1 worker run".to_string()
    } else {
        format!("{runs} worker runs in a row")
    };
    let how_long = match stats.unreachable_for_ms {
        Some(ms) if runs > 0 => format!("for {} ({in_runs})", human_ms(ms)),
        Some(ms) => format!("for {}", human_ms(ms)),
        None => format!("for {in_runs}"),
    };
    Some(Alert {
        level: Level::Warning,
        code: "server-unreachable".into(),
        message: format!(
            "MEM0 VPS - WARNING: the Mem0 server has not answered {how_long}. \
             The memories are safe in the local queue and are delivered once it answers."
        ),
        actions: vec![
            "Check the Mem0 server: is it up, is it reachable from here (ssh to it, read its logs)"
                .into(),
            "mem0-queue doctor".into(),
        ],
    })
}

#[cfg(target_arch = "wasm32")]
mem0_queue_policy_sdk::export_policy!(DefaultPolicy);

#[cfg(test)]
mod tests;
