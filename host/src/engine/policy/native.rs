//! The default policy's logic compiled natively: the last resort when even
//! the embedded component fails, and the baseline of the WASM-cost benchmark.
//!
//! Only conversions live here; the logic is `component/src/lib.rs` itself.

use mem0_queue_policy_default::DefaultPolicy;
use mem0_queue_policy_sdk as sdk;
use sdk::Guest;

use super::wasm::{
    Alert, BreakerDecision, BreakerInput, Decision, EntryState, FailedSummary, Level, Operation,
    Outcome, QueueStats,
};

/// The host's operation kind in the guest SDK's type.
pub fn sdk_operation(o: Operation) -> sdk::Operation {
    match o {
        Operation::Add => sdk::Operation::Add,
        Operation::Update => sdk::Operation::Update,
        Operation::Delete => sdk::Operation::Delete,
        Operation::DeleteAll => sdk::Operation::DeleteAll,
    }
}

/// The host's entry state in the guest SDK's type.
pub fn sdk_entry(e: EntryState) -> sdk::EntryState {
    sdk::EntryState {
        attempts_this_run: e.attempts_this_run,
        total_attempts: e.total_attempts,
        runs_failed: e.runs_failed,
        age_ms: e.age_ms,
        size_bytes: e.size_bytes,
        operation: sdk_operation(e.operation),
    }
}

/// The host's queue statistics in the guest SDK's type.
pub fn sdk_stats(s: QueueStats) -> sdk::QueueStats {
    sdk::QueueStats {
        pending: s.pending,
        in_flight: s.in_flight,
        failed: s.failed,
        dead: s.dead,
        dead_auth: s.dead_auth,
        oldest_pending_age_ms: s.oldest_pending_age_ms,
        last_success_age_ms: s.last_success_age_ms,
        consecutive_failing_runs: s.consecutive_failing_runs,
        unreachable_runs: s.unreachable_runs,
        unreachable_for_ms: s.unreachable_for_ms,
    }
}

fn host_alert(a: sdk::Alert) -> Alert {
    Alert {
        level: match a.level {
            sdk::Level::Warning => Level::Warning,
            sdk::Level::Critical => Level::Critical,
        },
        code: a.code,
        message: a.message,
        actions: a.actions,
    }
}

/// The host's classified outcome in the guest SDK's type.
pub fn sdk_outcome(o: &Outcome) -> sdk::Outcome {
    match o {
        Outcome::ConnectError => sdk::Outcome::ConnectError,
        Outcome::TimeoutBeforeSend => sdk::Outcome::TimeoutBeforeSend,
        Outcome::Unknown => sdk::Outcome::Unknown,
        Outcome::Http(h) => sdk::Outcome::Http(sdk::HttpFailure {
            status: h.status,
            retry_after_ms: h.retry_after_ms,
            code: h.code.clone(),
        }),
        Outcome::Permanent(r) => sdk::Outcome::Permanent(sdk::Rejection {
            status: r.status,
            auth: r.auth,
        }),
    }
}

pub fn on_failure(e: EntryState, o: &Outcome, random: u32) -> Decision {
    match DefaultPolicy::on_failure(sdk_entry(e), sdk_outcome(o), random) {
        Ok(sdk::Decision::RetryAfterMs(ms)) => Decision::RetryAfterMs(ms),
        Ok(sdk::Decision::Dead(r)) => Decision::Dead(r),
        Ok(sdk::Decision::Fail) | Err(_) => Decision::Fail,
    }
}

pub fn on_run_start(failed: &[FailedSummary], random: u32) -> Vec<String> {
    let failed = failed
        .iter()
        .map(|f| sdk::FailedSummary {
            id: f.id.clone(),
            runs_failed: f.runs_failed,
            total_attempts: f.total_attempts,
            age_ms: f.age_ms,
            since_last_attempt_ms: f.since_last_attempt_ms,
            operation: sdk_operation(f.operation),
        })
        .collect();
    DefaultPolicy::on_run_start(failed, random).unwrap_or_default()
}

pub fn breaker(b: BreakerInput) -> BreakerDecision {
    match DefaultPolicy::breaker(sdk::BreakerInput {
        consecutive_failures: b.consecutive_failures,
        previous_run_tripped: b.previous_run_tripped,
        consecutive_failing_runs: b.consecutive_failing_runs,
    }) {
        Ok(sdk::BreakerDecision::Continue) => BreakerDecision::Continue,
        Ok(sdk::BreakerDecision::Stop(ms)) => BreakerDecision::Stop(ms),
        Err(_) => BreakerDecision::Stop(super::MAX_DELAY_MS),
    }
}

pub fn alerts(s: QueueStats) -> Vec<Alert> {
    DefaultPolicy::alerts(sdk_stats(s))
        .unwrap_or_default()
        .into_iter()
        .map(host_alert)
        .collect()
}

/// The default's `server-unreachable` alert alone, if these statistics
/// raise it: what the runtime adds for a 0.1.0 policy.
pub fn server_unreachable(s: QueueStats) -> Option<Alert> {
    mem0_queue_policy_default::server_unreachable(&sdk_stats(s)).map(host_alert)
}
