//! WIT 0.1.0 (`wit/v0.1.0/`, frozen): its bindings, and the calls of a
//! 0.1.0 component in the current version's types.
//!
//! 0.2.0 only added inputs, so a call converts down by dropping them (the
//! entry's and the failed summary's `operation`, the statistics'
//! `unreachable-runs` and `unreachable-for-ms`) and converts the answer up
//! field for field. The `server-unreachable` alert such a policy cannot raise
//! is the runtime's business (`policy::Runtime::alerts`), not this module's.

use wasmtime::Store;

use super::{
    Alert, BreakerDecision, BreakerInput, Ctx, Decision, EntryState, FailedSummary, Identity,
    Level, Outcome, QueueStats,
};

wasmtime::component::bindgen!({
    world: "decider",
    path: "../wit/v0.1.0",
    additional_derives: [PartialEq, Eq],
});

use exports::mem0_queue::policy::policy as old;

type Answer<T> = wasmtime::Result<Result<T, String>>;

pub(super) fn describe(d: &Decider, store: &mut Store<Ctx>) -> wasmtime::Result<Identity> {
    let id = d.mem0_queue_policy_policy().call_describe(store)?;
    Ok(Identity {
        name: id.name,
        version: id.version,
        wit_version: id.wit_version,
    })
}

pub(super) fn on_failure(
    d: &Decider,
    store: &mut Store<Ctx>,
    e: EntryState,
    o: &Outcome,
    random: u32,
) -> Answer<Decision> {
    let entry = old::EntryState {
        attempts_this_run: e.attempts_this_run,
        total_attempts: e.total_attempts,
        runs_failed: e.runs_failed,
        age_ms: e.age_ms,
        size_bytes: e.size_bytes,
    };
    let outcome = match o {
        Outcome::ConnectError => old::Outcome::ConnectError,
        Outcome::TimeoutBeforeSend => old::Outcome::TimeoutBeforeSend,
        Outcome::Unknown => old::Outcome::Unknown,
        Outcome::Http(h) => old::Outcome::Http(old::HttpFailure {
            status: h.status,
            retry_after_ms: h.retry_after_ms,
            code: h.code.clone(),
        }),
        Outcome::Permanent(r) => old::Outcome::Permanent(old::Rejection {
            status: r.status,
            auth: r.auth,
        }),
    };
    let answer = d
        .mem0_queue_policy_policy()
        .call_on_failure(store, entry, &outcome, random)?;
    Ok(answer.map(|d| match d {
        old::Decision::RetryAfterMs(ms) => Decision::RetryAfterMs(ms),
        old::Decision::Fail => Decision::Fail,
        old::Decision::Dead(reason) => Decision::Dead(reason),
    }))
}

pub(super) fn on_run_start(
    d: &Decider,
    store: &mut Store<Ctx>,
    failed: &[FailedSummary],
    random: u32,
) -> Answer<Vec<String>> {
    let failed: Vec<old::FailedSummary> = failed
        .iter()
        .map(|f| old::FailedSummary {
            id: f.id.clone(),
            runs_failed: f.runs_failed,
            total_attempts: f.total_attempts,
            age_ms: f.age_ms,
            since_last_attempt_ms: f.since_last_attempt_ms,
        })
        .collect();
    d.mem0_queue_policy_policy()
        .call_on_run_start(store, &failed, random)
}

pub(super) fn breaker(
    d: &Decider,
    store: &mut Store<Ctx>,
    b: BreakerInput,
) -> Answer<BreakerDecision> {
    let input = old::BreakerInput {
        consecutive_failures: b.consecutive_failures,
        previous_run_tripped: b.previous_run_tripped,
        consecutive_failing_runs: b.consecutive_failing_runs,
    };
    let answer = d.mem0_queue_policy_policy().call_breaker(store, input)?;
    Ok(answer.map(|b| match b {
        old::BreakerDecision::Continue => BreakerDecision::Continue,
        old::BreakerDecision::Stop(ms) => BreakerDecision::Stop(ms),
    }))
}

pub(super) fn alerts(d: &Decider, store: &mut Store<Ctx>, s: QueueStats) -> Answer<Vec<Alert>> {
    let stats = old::QueueStats {
        pending: s.pending,
        in_flight: s.in_flight,
        failed: s.failed,
        dead: s.dead,
        dead_auth: s.dead_auth,
        oldest_pending_age_ms: s.oldest_pending_age_ms,
        last_success_age_ms: s.last_success_age_ms,
        consecutive_failing_runs: s.consecutive_failing_runs,
    };
    let answer = d.mem0_queue_policy_policy().call_alerts(store, stats)?;
    Ok(answer.map(|alerts| {
        alerts
            .into_iter()
            .map(|a| Alert {
                level: match a.level {
                    old::Level::Warning => Level::Warning,
                    old::Level::Critical => Level::Critical,
                },
                code: a.code,
                message: a.message,
                actions: a.actions,
            })
            .collect()
    }))
}
