//! `mem0-queue policy check PATH`: load a component and run it through a
//! fixed scenario, so a user sees what a policy will do before using it.
//!
//! The scenario calls the component directly, with no fallback: a check must
//! show the component's own decisions or fail with its own error.

use std::fmt::Write as _;
use std::path::Path;

use super::wasm::{self, Loaded};
use super::{
    BreakerDecision, BreakerInput, Decision, EntryState, FailedSummary, HttpFailure, Level,
    Operation, Outcome, PolicyError, QueueStats, Rejection, Runtime, SERVER_UNREACHABLE,
    WitVersion,
};

/// The outcomes of the scenario, with the label each row shows.
fn outcomes() -> Vec<(&'static str, Outcome)> {
    vec![
        ("timeout before send", Outcome::TimeoutBeforeSend),
        ("connect error", Outcome::ConnectError),
        ("unknown (timeout after send)", Outcome::Unknown),
        (
            "429 Retry-After 30s",
            Outcome::Http(HttpFailure {
                status: 429,
                retry_after_ms: Some(30_000),
                code: None,
            }),
        ),
        (
            "502 provider_timeout",
            Outcome::Http(HttpFailure {
                status: 502,
                retry_after_ms: None,
                code: Some("provider_timeout".into()),
            }),
        ),
        (
            "401 auth",
            Outcome::Permanent(Rejection {
                status: 401,
                auth: true,
            }),
        ),
        (
            "422 validation",
            Outcome::Permanent(Rejection {
                status: 422,
                auth: false,
            }),
        ),
    ]
}

/// The queue sizes at which alerts are shown: (pending, failed).
const ALERT_POINTS: [(u64, u64); 6] = [(0, 0), (20, 5), (21, 5), (20, 6), (101, 21), (500, 40)];

/// Random values fed to the policy in the scenario: fixed, so a check's
/// output is reproducible.
const SCENARIO_RANDOM: u32 = u32::MAX / 2;

/// Runs the scenario and renders it as text tables.
pub fn run(rt: &Runtime, path: &Path) -> Result<String, PolicyError> {
    validate(rt, path, None).map(|(_, report)| report)
}

/// What `policy check` does, and what a reload must pass before its policy
/// replaces the running one ([`Runtime::reload`]): load the component (on
/// the compiled cache in `cache_dir`, if given) and run it through the
/// fixed scenario, every export called directly with no fallback. Returns
/// the loaded component and the scenario's text.
pub fn validate(
    rt: &Runtime,
    path: &Path,
    cache_dir: Option<&Path>,
) -> Result<(Loaded, String), PolicyError> {
    let loaded = rt.load_file(path, cache_dir)?;
    let report = render(rt, &loaded)?;
    Ok((loaded, report))
}

fn render(rt: &Runtime, loaded: &Loaded) -> Result<String, PolicyError> {
    let host = HostRef(rt);
    let mut out = String::new();
    let id = &loaded.identity;
    let _ = writeln!(
        out,
        "policy {} {} (WIT {}), sha256 {}",
        id.name,
        id.version,
        id.wit_version,
        &loaded.hash[..16]
    );
    if loaded.wit() != WitVersion::CURRENT {
        let _ = writeln!(
            out,
            "WIT {} is an older contract, still loaded: the policy is not told the operation\n\
             kind nor how long the server has been unreachable, and the host raises\n\
             {SERVER_UNREACHABLE} for it (not in the alerts below).",
            loaded.wit()
        );
    }

    let _ = writeln!(
        out,
        "\nAfter a failed attempt (attempts in this run -> decision):"
    );
    let _ = write!(out, "{:<30}", "outcome");
    for a in 1..=7 {
        let _ = write!(out, " {:>9}", format!("#{a}"));
    }
    out.push('\n');
    for (label, outcome) in outcomes() {
        let _ = write!(out, "{label:<30}");
        for attempts in 1..=7u32 {
            let entry = EntryState {
                attempts_this_run: attempts,
                total_attempts: attempts,
                runs_failed: 0,
                age_ms: 60_000,
                size_bytes: 512,
                operation: Operation::Add,
            };
            let d = host.call(loaded, 0, |d, s| {
                d.call_on_failure(s, entry, &outcome, SCENARIO_RANDOM)
            })?;
            let cell = match d {
                Decision::RetryAfterMs(ms) => format!("{:.1}s", ms as f64 / 1000.0),
                Decision::Fail => "failed".into(),
                Decision::Dead(_) => "dead".into(),
            };
            let _ = write!(out, " {cell:>9}");
        }
        out.push('\n');
    }

    let failed: Vec<FailedSummary> = [(1, 1), (1, 15), (2, 15), (2, 45), (5, 600), (9, 1_500)]
        .iter()
        .enumerate()
        .map(|(i, &(runs_failed, minutes))| FailedSummary {
            id: format!("f{i}-runs{runs_failed}-{minutes}min"),
            runs_failed,
            total_attempts: runs_failed * 4,
            age_ms: minutes * 60_000 * 2,
            since_last_attempt_ms: minutes * 60_000,
            operation: Operation::Add,
        })
        .collect();
    let revived = host.call(loaded, failed.len(), |d, s| {
        d.call_on_run_start(s, &failed, SCENARIO_RANDOM)
    })?;
    let _ = writeln!(
        out,
        "\nAt a run start, failed entries (runs failed, minutes since last attempt) -> fresh start:"
    );
    for f in &failed {
        let _ = writeln!(
            out,
            "  runs {:>2}, {:>5} min -> {}",
            f.runs_failed,
            f.since_last_attempt_ms / 60_000,
            if revived.contains(&f.id) { "yes" } else { "no" }
        );
    }

    let _ = writeln!(
        out,
        "\nBreaker (connection-level failures in a row -> decision):"
    );
    for (failures, tripped) in [
        (1, false),
        (2, false),
        (3, false),
        (5, false),
        (1, true),
        (2, true),
    ] {
        let input = BreakerInput {
            consecutive_failures: failures,
            previous_run_tripped: tripped,
            consecutive_failing_runs: u32::from(tripped),
        };
        let b = host.call(loaded, 0, |d, s| d.call_breaker(s, input))?;
        let _ = writeln!(
            out,
            "  {failures} in a row{} -> {}",
            if tripped {
                ", probing after a tripped run"
            } else {
                ""
            },
            match b {
                BreakerDecision::Continue => "continue".to_string(),
                BreakerDecision::Stop(ms) => format!("stop, next probe in {}s", ms / 1000),
            }
        );
    }

    let _ = writeln!(out, "\nAlerts (pending, failed -> alerts):");
    for (pending, failed) in ALERT_POINTS {
        let stats = scenario_stats(pending, failed);
        let alerts = host.call(loaded, 0, |d, s| d.call_alerts(s, stats))?;
        let text: Vec<String> = alerts
            .iter()
            .map(|a| {
                format!(
                    "{} {}",
                    match a.level {
                        Level::Warning => "WARNING",
                        Level::Critical => "CRITICAL",
                    },
                    a.code
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "  {pending:>4}, {failed:>3} -> {}",
            if text.is_empty() {
                "none".to_string()
            } else {
                text.join(", ")
            }
        );
    }
    Ok(out)
}

struct HostRef<'a>(&'a Runtime);

impl HostRef<'_> {
    /// One direct call; an error value from the policy fails the check.
    fn call<R>(
        &self,
        loaded: &Loaded,
        items: usize,
        f: impl FnOnce(
            &wasm::Instance,
            &mut wasmtime::Store<wasm::Ctx>,
        ) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, PolicyError> {
        self.0
            .host
            .call(loaded, items, f)?
            .map_err(|e| PolicyError::Returned(crate::engine::text::truncate(&e, 200)))
    }
}

/// The queue statistics of the fixed scenario: `pending` and `failed`
/// entries, nothing in flight or dead, the oldest pending and the last
/// success an hour old, the server answering.
pub fn scenario_stats(pending: u64, failed: u64) -> QueueStats {
    QueueStats {
        pending,
        in_flight: 0,
        failed,
        dead: 0,
        dead_auth: 0,
        oldest_pending_age_ms: Some(3_600_000),
        last_success_age_ms: Some(3_600_000),
        consecutive_failing_runs: 0,
        unreachable_runs: 0,
        unreachable_for_ms: None,
    }
}
