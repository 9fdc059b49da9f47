//! The delivery engine: one run takes due entries to Mem0 and applies the
//! policy's decisions. `mem0-queue sync` runs it once (cron, the SessionEnd
//! hook); `serve` runs it in a loop.
//!
//! - A run starts by taking back the leases of dead or expired workers and
//!   asking the policy which failed entries get a fresh start.
//! - Entries are claimed with a lease, committed before any HTTP; each
//!   outcome is recorded in a second short transaction. No transaction is
//!   ever held across I/O.
//! - Up to `concurrency` requests are in flight. Claims go oldest-due first,
//!   but an entry waiting out its backoff never blocks the others: Mem0
//!   memories are independent facts, each carrying its original time, so
//!   throughput wins over strict order.
//! - An entry whose last attempt has an unknown outcome is looked up by its
//!   `mq_id` before it is resent: a timeout after the server stored it never
//!   becomes a duplicate.
//! - After each request that got no answer (refused, connect timeout, a
//!   timeout after send, a gateway's 502/503/504 page) the policy's breaker
//!   may stop the run; untried entries are not charged. A hung server costs
//!   one add timeout per run, not one per entry.
//! - A configuration problem (a redirect, a login page, a wrong route, a
//!   rejected key, untrusted TLS) stops the run at once: the entry is given
//!   back uncharged, nothing goes to `failed` or `dead` for it, and the
//!   problem is recorded for `status` and `doctor` until a run reaches Mem0.
//! - Shutdown (SIGTERM, SIGINT, end of `--max-duration`) abandons in-flight
//!   requests and releases their leases, marked for reconciliation.

mod lifecycle;
pub mod log;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::engine::clock::Clock;
use crate::engine::mem0::{AddRequest, AddResult, Client, ConfigProblem, EventState, Failure};
use crate::engine::policy::{
    BreakerDecision, BreakerInput, Decision, EntryState, PolicyError, PolicyHandle,
};
use crate::engine::store::{Claimed, FailureRecord, SharedStore, StoreError};

use self::log::WorkerLog;

/// The first pause between polls of a platform event; it doubles up to
/// [`EVENT_POLL_MAX`]. The platform usually finishes an add in seconds.
const EVENT_POLL_FIRST: Duration = Duration::from_millis(500);
const EVENT_POLL_MAX: Duration = Duration::from_secs(4);

/// When a platform event is still pending at the end of an attempt, the
/// entry is looked at again after this long, without being charged.
pub const EVENT_RECHECK: Duration = Duration::from_secs(30);

/// The longest wait for a due entry inside one run. A longer delay (a long
/// Retry-After, a policy's cool-down) ends the run instead; the entry stays
/// pending and the next run (cron, the serve loop) takes it when due.
pub const MAX_IN_RUN_WAIT: Duration = Duration::from_secs(300);

/// Margin added to a lease beyond the request's own timeouts, so a slow but
/// alive worker never loses its lease mid-request.
const LEASE_MARGIN: Duration = Duration::from_secs(60);

/// After a run stopped on a configuration problem, `serve`'s loop waits
/// this long before it probes again (a `sync` always probes once). Nothing
/// changes until someone edits the config, and `serve` reads the config at
/// its start; five minutes keeps a save-triggered run from sending one
/// doomed request per save.
pub const CONFIG_PROBE_PAUSE: Duration = Duration::from_secs(300);

pub use crate::engine::store::meta_keys::{
    CONFIG_PROBLEM as CONFIG_PROBLEM_KEY, UNREACHABLE_RUNS as UNREACHABLE_RUNS_KEY,
    UNREACHABLE_SINCE as UNREACHABLE_SINCE_KEY, UPGRADE_REVIVED as UPGRADE_REVIVED_KEY,
};

/// The configuration problem a run stopped on, kept for the other processes
/// (`status`, the dashboard, the MCP tools) and for `doctor`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigProblemRecord {
    pub problem: ConfigProblem,
    /// The `api_url` the problem was met at.
    pub api_url: String,
    pub at_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct Settings {
    pub concurrency: usize,
    /// How long a claim holds an entry.
    pub lease: Duration,
    /// How long an attempt waits on a platform event before deferring.
    pub event_wait: Duration,
    /// Stop the run after this long (`sync --max-duration`).
    pub max_duration: Option<Duration>,
    /// Drop the local copy of delivered entries older than this at the end
    /// of a run (`retention_days`); None keeps everything.
    pub retention: Option<Duration>,
}

impl Settings {
    pub fn from_config(c: &crate::engine::config::Config) -> Self {
        let event_wait = Duration::from_secs(30).min(c.add_timeout);
        Self {
            concurrency: c.concurrency,
            lease: c.connect_timeout + c.add_timeout * 2 + event_wait + LEASE_MARGIN,
            event_wait,
            max_duration: None,
            retention: c
                .retention_days
                .map(|d| Duration::from_secs(d.saturating_mul(86_400))),
        }
    }
}

/// Why a run ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// The policy's breaker: the server is down.
    Breaker,
    /// SIGTERM, SIGINT or the server shutting down.
    Shutdown,
    /// `--max-duration` ran out.
    MaxDuration,
    /// A configuration problem: what answered is not the Mem0 API as
    /// configured (see [`RunReport::config_problem`]).
    Config,
}

/// What one run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunReport {
    pub attempts: u64,
    pub delivered: u64,
    /// Delivered because a lookup found the entry already on the server.
    pub reconciled: u64,
    pub retried: u64,
    /// Moved to `failed`.
    pub failed: u64,
    pub dead: u64,
    /// Failed entries given a fresh start at the run's start.
    pub revived: u64,
    /// Leases of dead or expired workers taken back.
    pub reclaimed: u64,
    /// Entries given back unfinished (shutdown, end of the run).
    pub released: u64,
    pub stopped: Option<Stop>,
    /// When the breaker stopped the run: the pause before the next probe.
    pub next_probe_ms: Option<u64>,
    /// Entries left pending, in flight or failed at the end.
    pub remaining: u64,
    pub elapsed_ms: u64,
    /// True when some request of this run reached the server (anything but
    /// no answer and a configuration problem).
    pub reached: bool,
    /// The configuration problem the run stopped on.
    pub config_problem: Option<ConfigProblem>,
}

enum Attempt {
    Delivered {
        ids: Vec<String>,
        reconciled: bool,
    },
    /// The platform has not finished processing; look again later.
    Deferred,
    Failed(Failure),
    /// Moot: a change of a memory that never reached Mem0, or an add deleted
    /// here that the server does not have. The entry is dropped.
    Dropped,
    /// Dead without asking the policy: the change cannot be made (the
    /// memory is gone from the server, or which one to change is unknown).
    Rejected(String),
}

/// The delivery engine. Its clock, RNG, client and store are parameters.
pub struct Worker {
    pub store: SharedStore,
    pub client: Client,
    pub policy: PolicyHandle,
    pub clock: Arc<dyn Clock>,
    pub rng: Mutex<fastrand::Rng>,
    pub settings: Settings,
    pub log: Arc<WorkerLog>,
    /// This worker's lease owner id: `pid-<pid>-<nonce>`.
    pub owner: String,
}

/// A lease owner id for this process.
/// The meta key of the last run's [`PolicyBroken`] (empty when the
/// configured policy worked through the whole run).
pub const POLICY_BROKEN_KEY: &str = "policy_broken";

/// A configured policy that failed during a delivery run and was replaced
/// by the embedded default.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PolicyBroken {
    /// The policy's source as `PolicyInfo::source` says it.
    pub source: String,
    pub reason: String,
    pub at_ms: i64,
}

pub fn owner_id() -> String {
    format!(
        "pid-{}-{}",
        std::process::id(),
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    )
}

/// Whether the process behind a lease owner id still runs. Unknown formats
/// count as alive: their leases expire on their own.
pub fn owner_alive(owner: &str) -> bool {
    let Some(pid) = owner
        .strip_prefix("pid-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return true;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl Worker {
    fn random(&self) -> u32 {
        self.rng.lock().map(|mut r| r.u32(..)).unwrap_or(0)
    }

    /// One run. Returns when the queue is drained, nothing more is due
    /// before the deadline, the breaker stops it, or `shutdown` fires.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<RunReport, WorkerError> {
        let started = self.clock.now_ms();
        let real_start = tokio::time::Instant::now();
        let mut report = RunReport::default();

        let now = self.clock.now_ms();
        report.reclaimed = self
            .store
            .run(move |s| s.reclaim_expired(now, &owner_alive))
            .await?
            .reclaimed;
        let revived_by_upgrade = self
            .store
            .run(|s| {
                let v = s.meta_get(UPGRADE_REVIVED_KEY)?;
                if v.is_some() {
                    s.meta_delete(UPGRADE_REVIVED_KEY)?;
                }
                Ok(v)
            })
            .await?;
        if let Some(n) = revived_by_upgrade.filter(|n| n != "0") {
            self.log.line(&format!(
                "upgrade: {n} entries that had died of a configuration problem (HTTP 401, 403, 404, 405 or another non-Mem0 answer) are pending again"
            ));
        }
        let failed = self.store.run(move |s| s.failed_summaries(now)).await?;
        if !failed.is_empty() {
            let random = self.random();
            let ids = self
                .policy
                .run(move |p| p.on_run_start(&failed, random))
                .await?;
            report.revived = self.store.run(move |s| s.revive(&ids, now)).await?;
        }
        let (previous_run_tripped, consecutive_failing_runs) = self
            .store
            .run(|s| {
                Ok((
                    s.meta_get("previous_run_tripped")?.as_deref() == Some("1"),
                    s.meta_get("consecutive_failing_runs")?
                        .and_then(|v| v.parse::<u32>().ok())
                        .unwrap_or(0),
                ))
            })
            .await?;

        let deadline = self.settings.max_duration.map(|d| real_start + d);
        let mut inflight: JoinSet<(Claimed, Attempt)> = JoinSet::new();
        let mut ids: HashMap<tokio::task::Id, String> = HashMap::new();
        // The entries whose requests got no answer since the server last
        // answered anything. The breaker counts entries, not requests: one
        // entry retried on its 2/4/8 s schedule is the seed's degraded flow,
        // while three different entries in a row without an answer mean the
        // server is down or hung, and the run stops (a hung server costs one
        // add timeout per run, not one per entry).
        let mut streak: std::collections::HashSet<String> = Default::default();
        // After a run the breaker stopped, a single request probes the
        // server; the run opens up to `concurrency` only once an answer
        // shows the server is back. A dead VPS costs one probe per run.
        let mut probing = previous_run_tripped;

        loop {
            if report.stopped.is_none() && *shutdown.borrow() {
                report.stopped = Some(Stop::Shutdown);
            }
            if report.stopped.is_none()
                && deadline.is_some_and(|d| tokio::time::Instant::now() >= d)
            {
                report.stopped = Some(Stop::MaxDuration);
            }
            // One request at a time while probing, and while the last
            // answers were connection failures: a dead server is not sent
            // fresh requests to time out while the breaker counts.
            let width = if probing || !streak.is_empty() {
                1
            } else {
                self.settings.concurrency
            };
            if report.stopped.is_none() {
                let free = width.saturating_sub(inflight.len());
                if free > 0 {
                    let now = self.clock.now_ms();
                    let owner = self.owner.clone();
                    let lease = self.settings.lease.as_millis() as u64;
                    let batch = self
                        .store
                        .run(move |s| s.claim(&owner, now, lease, free))
                        .await?;
                    for c in batch {
                        let id = c.id.clone();
                        let handle = inflight.spawn(attempt(
                            self.client.clone(),
                            self.store.clone(),
                            self.clock.clone(),
                            self.settings.event_wait,
                            c,
                        ));
                        ids.insert(handle.id(), id);
                        report.attempts += 1;
                    }
                }
            }
            // The breaker and a configuration problem let the requests in
            // flight finish (their answers are recorded); the rest abandon them.
            if report.stopped.is_some()
                && !matches!(report.stopped, Some(Stop::Breaker | Stop::Config))
            {
                self.abandon(&mut inflight, &mut ids, &mut report).await?;
                break;
            }
            let next_due = if report.stopped.is_none() && inflight.len() < width {
                self.store.run(|s| s.next_due()).await?
            } else {
                None
            };
            let wait = next_due
                .map(|t| Duration::from_millis((t - self.clock.now_ms()).max(0) as u64))
                .filter(|w| *w <= MAX_IN_RUN_WAIT);
            if inflight.is_empty() && wait.is_none() {
                break;
            }
            if let (Some(w), Some(d)) = (wait, deadline)
                && inflight.is_empty()
                && tokio::time::Instant::now() + w > d
            {
                report.stopped = Some(Stop::MaxDuration);
                break;
            }
            let deadline_sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let due_sleep = async {
                match wait {
                    Some(w) => self.clock.sleep(w).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                joined = inflight.join_next_with_id(), if !inflight.is_empty() => {
                    match joined {
                        Some(Ok((task, (c, outcome)))) => {
                            ids.remove(&task);
                            let entry_id = c.id.clone();
                            let signal = self.record(c, outcome, &mut report).await?;
                            match signal {
                                Signal::NoAnswer => {
                                    streak.insert(entry_id);
                                }
                                Signal::Reached => {
                                    streak.clear();
                                    probing = false;
                                }
                                Signal::Config => {}
                            }
                            if signal == Signal::NoAnswer && report.stopped.is_none() {
                                let input = BreakerInput {
                                    consecutive_failures: streak.len() as u32,
                                    previous_run_tripped,
                                    consecutive_failing_runs,
                                };
                                if let BreakerDecision::Stop(ms) = self.policy.run(move |p| p.breaker(input)).await? {
                                    report.stopped = Some(Stop::Breaker);
                                    report.next_probe_ms = Some(ms);
                                }
                            }
                        }
                        Some(Err(e)) => {
                            // A panicked attempt: give its entry back.
                            if let Some(id) = ids.remove(&e.id()) {
                                self.release(&id, true, &mut report).await?;
                            }
                        }
                        None => {}
                    }
                }
                _ = shutdown.changed() => {
                    report.stopped = Some(Stop::Shutdown);
                }
                _ = deadline_sleep => {
                    report.stopped = Some(Stop::MaxDuration);
                }
                _ = due_sleep => {}
            }
        }

        let now = self.clock.now_ms();
        let counts = self.store.run(|s| s.counts()).await?;
        report.remaining = counts.undelivered();
        let tripped = matches!(report.stopped, Some(Stop::Breaker | Stop::Config));
        if report.stopped == Some(Stop::Config) {
            report.next_probe_ms = Some(CONFIG_PROBE_PAUSE.as_millis() as u64);
        }
        let probe_at = report.next_probe_ms.map(|ms| now + ms as i64).unwrap_or(0);
        // A run that tried something either reached the server or did not;
        // a run with nothing to do says nothing about it.
        let reached = (report.attempts > 0).then_some(report.reached);
        let problem = report
            .config_problem
            .clone()
            .map(|problem| ConfigProblemRecord {
                problem,
                api_url: self.client.base_url().to_string(),
                at_ms: now,
            });
        let left = report.remaining > 0;
        let prune_before = self.settings.retention.map(|r| now - r.as_millis() as i64);
        // Whether the configured policy broke in this process, kept for the
        // other processes (`status`, the dashboard) to raise the alert.
        let broken = self
            .policy
            .run(move |p| {
                let i = p.info();
                i.broken.map(|reason| PolicyBroken {
                    source: i.source,
                    reason,
                    at_ms: now,
                })
            })
            .await?;
        self.store
            .run(move |s| {
                if let Some(before) = prune_before {
                    s.prune_delivered(before)?;
                }
                s.finish_run(now, left, tripped)?;
                s.meta_set(
                    crate::engine::store::meta_keys::BREAKER_OPEN_UNTIL,
                    &probe_at.to_string(),
                )?;
                record_reachability(s, started, reached, problem.as_ref())?;
                let broken = broken.map(|b| serde_json::to_string(&b)).transpose();
                s.meta_set(
                    POLICY_BROKEN_KEY,
                    &broken.unwrap_or_default().unwrap_or_default(),
                )
            })
            .await?;
        report.elapsed_ms = (now - started).max(0) as u64;
        self.log.line(&format!(
            "run owner={} attempts={} delivered={} reconciled={} retried={} failed={} dead={} revived={} reclaimed={} released={} remaining={} stopped={} reached={} elapsed_ms={}",
            self.owner,
            report.attempts,
            report.delivered,
            report.reconciled,
            report.retried,
            report.failed,
            report.dead,
            report.revived,
            report.reclaimed,
            report.released,
            report.remaining,
            report.stopped.map(|s| format!("{s:?}").to_lowercase()).unwrap_or_else(|| "no".into()),
            report.reached,
            report.elapsed_ms
        ));
        if let Some(p) = &report.config_problem {
            self.log.line(&format!(
                "configuration problem at {}: {}; the entries stay pending",
                self.client.base_url(),
                p.describe()
            ));
        }
        Ok(report)
    }

    /// Aborts in-flight attempts; a finished one is recorded, an aborted
    /// one released for reconciliation.
    async fn abandon(
        &self,
        inflight: &mut JoinSet<(Claimed, Attempt)>,
        ids: &mut HashMap<tokio::task::Id, String>,
        report: &mut RunReport,
    ) -> Result<(), WorkerError> {
        inflight.abort_all();
        while let Some(joined) = inflight.join_next_with_id().await {
            match joined {
                Ok((task, (c, outcome))) => {
                    ids.remove(&task);
                    self.record(c, outcome, report).await?;
                }
                Err(e) => {
                    if let Some(id) = ids.remove(&e.id()) {
                        self.release(&id, true, report).await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn release(
        &self,
        id: &str,
        maybe_sent: bool,
        report: &mut RunReport,
    ) -> Result<(), WorkerError> {
        let (id, owner, now) = (id.to_string(), self.owner.clone(), self.clock.now_ms());
        self.store
            .run(move |s| s.release(&id, &owner, maybe_sent, now))
            .await?;
        report.released += 1;
        Ok(())
    }

    /// Records one attempt's outcome, and says what it showed of the server.
    async fn record(
        &self,
        c: Claimed,
        outcome: Attempt,
        report: &mut RunReport,
    ) -> Result<Signal, WorkerError> {
        let now = self.clock.now_ms();
        match outcome {
            Attempt::Delivered { ids, reconciled } => {
                let id = c.id.clone();
                self.store
                    .run(move |s| s.record_delivered(&id, &ids, now))
                    .await?;
                report.delivered += 1;
                report.reached = true;
                if reconciled {
                    report.reconciled += 1;
                    self.log
                        .line(&format!("reconciled id={} (already on the server)", c.id));
                }
                Ok(Signal::Reached)
            }
            Attempt::Deferred => {
                let (id, owner) = (c.id.clone(), self.owner.clone());
                let due = now + EVENT_RECHECK.as_millis() as i64;
                self.store
                    .run(move |s| s.release(&id, &owner, false, due))
                    .await?;
                report.released += 1;
                report.reached = true;
                Ok(Signal::Reached)
            }
            Attempt::Dropped => {
                let (id, owner) = (c.id.clone(), self.owner.clone());
                self.store.run(move |s| s.drop_claimed(&id, &owner)).await?;
                self.log.line(&format!(
                    "dropped id={} op={} (the memory never reached Mem0: nothing to send)",
                    c.id,
                    c.op.as_str()
                ));
                Ok(Signal::Reached)
            }
            Attempt::Rejected(reason) => {
                report.dead += 1;
                report.reached = true;
                self.log.line(&format!(
                    "failure id={} op={} class=rejected decision=dead",
                    c.id,
                    c.op.as_str()
                ));
                let record = FailureRecord::Dead {
                    reason: reason.clone(),
                    auth: false,
                };
                let (id, owner) = (c.id.clone(), self.owner.clone());
                self.store
                    .run(move |s| s.record_failure(&id, &owner, &record, &reason, false, now))
                    .await?;
                Ok(Signal::Reached)
            }
            Attempt::Failed(Failure::Config(problem)) => {
                // Nothing is wrong with the entry: it goes back uncharged,
                // due at once for the first run after the fix.
                self.log.line(&format!(
                    "failure id={} class=configuration error=\"{}\" decision=wait for the fix",
                    c.id,
                    problem.describe()
                ));
                let (id, owner, maybe) = (c.id.clone(), self.owner.clone(), problem.maybe_stored());
                self.store
                    .run(move |s| s.release(&id, &owner, maybe, now))
                    .await?;
                report.released += 1;
                if report.config_problem.is_none() {
                    report.config_problem = Some(problem);
                }
                if report.stopped.is_none() {
                    report.stopped = Some(Stop::Config);
                }
                Ok(Signal::Config)
            }
            Attempt::Failed(failure) => {
                let entry = EntryState {
                    attempts_this_run: c.attempts_run + 1,
                    total_attempts: c.attempts + 1,
                    runs_failed: c.runs_failed,
                    age_ms: (now - c.created_at).max(0) as u64,
                    size_bytes: c.content.len() as u64,
                    // The queue only holds adds yet.
                    operation: c.op.into(),
                };
                let Some(outcome) = failure.to_outcome() else {
                    unreachable!("a configuration problem is handled above");
                };
                let random = self.random();
                let decision = self
                    .policy
                    .run(move |p| p.on_failure(entry, outcome, random))
                    .await?;
                let (record, label) = match decision {
                    Decision::RetryAfterMs(ms) => {
                        report.retried += 1;
                        (
                            FailureRecord::Retry { delay_ms: ms },
                            format!("retry in {ms}ms"),
                        )
                    }
                    Decision::Fail => {
                        report.failed += 1;
                        (FailureRecord::Fail, "failed".to_string())
                    }
                    Decision::Dead(reason) => {
                        report.dead += 1;
                        (
                            FailureRecord::Dead {
                                reason,
                                auth: false,
                            },
                            "dead".to_string(),
                        )
                    }
                };
                let described = failure.describe();
                self.log.line(&format!(
                    "failure id={} class={} error=\"{}\" attempt={} decision={label}",
                    c.id,
                    failure.class(),
                    described,
                    entry.attempts_this_run
                ));
                let (id, owner, unknown) =
                    (c.id.clone(), self.owner.clone(), failure.maybe_stored());
                self.store
                    .run(move |s| s.record_failure(&id, &owner, &record, &described, unknown, now))
                    .await?;
                if failure.is_no_answer() {
                    Ok(Signal::NoAnswer)
                } else {
                    report.reached = true;
                    Ok(Signal::Reached)
                }
            }
        }
    }
}

/// What one attempt showed of the server, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// Nothing answered: refused, timed out, a gateway's page.
    NoAnswer,
    /// Something answered.
    Reached,
    /// A configuration problem; the run stops.
    Config,
}

/// Records a run's end for the reachability alerts: the unreachable streak
/// (`reached` None: the run tried nothing, and the streak stands) and the
/// configuration problem, kept until a run reaches the server.
fn record_reachability(
    s: &mut crate::engine::store::Store,
    started_ms: i64,
    reached: Option<bool>,
    problem: Option<&ConfigProblemRecord>,
) -> Result<(), StoreError> {
    match reached {
        Some(true) => {
            s.meta_delete(UNREACHABLE_RUNS_KEY)?;
            s.meta_delete(UNREACHABLE_SINCE_KEY)?;
        }
        Some(false) => {
            let runs = s
                .meta_get(UNREACHABLE_RUNS_KEY)?
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0);
            s.meta_set(UNREACHABLE_RUNS_KEY, &(runs + 1).to_string())?;
            if s.meta_get(UNREACHABLE_SINCE_KEY)?.is_none() {
                s.meta_set(UNREACHABLE_SINCE_KEY, &started_ms.to_string())?;
            }
        }
        None => {}
    }
    match (problem, reached) {
        (Some(p), _) => s.meta_set(
            CONFIG_PROBLEM_KEY,
            &serde_json::to_string(p).unwrap_or_default(),
        )?,
        (None, Some(true)) => s.meta_delete(CONFIG_PROBLEM_KEY)?,
        (None, _) => {}
    }
    Ok(())
}

/// One delivery attempt: confirm a pending platform event, or reconcile an
/// unknown outcome, or send.
async fn attempt(
    client: Client,
    store: SharedStore,
    clock: Arc<dyn Clock>,
    event_wait: Duration,
    c: Claimed,
) -> (Claimed, Attempt) {
    let outcome = attempt_inner(&client, &store, &*clock, event_wait, &c).await;
    (c, outcome)
}

/// The add request of a claimed entry: what its attempts send, and what
/// its `mq_id` lookup looks for.
pub(super) fn add_request(c: &Claimed) -> AddRequest<'_> {
    AddRequest {
        mq_id: &c.id,
        project: &c.project,
        agent_id: c.agent_id.as_deref(),
        run_id: c.run_id.as_deref(),
        content: &c.content,
        metadata: &c.metadata,
        created_at: c.created_at,
        infer: c.infer,
    }
}

async fn attempt_inner(
    client: &Client,
    store: &SharedStore,
    clock: &dyn Clock,
    event_wait: Duration,
    c: &Claimed,
) -> Attempt {
    let req = add_request(c);
    if c.op != crate::engine::store::Op::Add || c.deleted {
        return lifecycle::attempt(client, c).await;
    }
    if let Some(event_id) = &c.event_id {
        return wait_event(client, store, clock, event_wait, &c.id, event_id).await;
    }
    if c.needs_reconcile {
        match client.find_by_mq_id(&req).await {
            Ok(Some(ids)) => {
                return Attempt::Delivered {
                    ids,
                    reconciled: true,
                };
            }
            Ok(None) => {}
            // A server that cannot answer the lookup: never resend blind,
            // and never call the entry dead for it; retry later.
            Err(Failure::Permanent { status }) => {
                return Attempt::Failed(Failure::Http {
                    status,
                    retry_after_ms: None,
                    code: Some("reconcile_lookup_rejected".into()),
                });
            }
            Err(f) => return Attempt::Failed(f),
        }
    }
    match client.add(&req).await {
        Ok(AddResult::Delivered(ids)) => Attempt::Delivered {
            ids,
            reconciled: false,
        },
        Ok(AddResult::Pending { event_id }) => {
            let (id, ev) = (c.id.clone(), event_id.clone());
            if let Err(e) = store.run(move |s| s.set_event(&id, Some(&ev))).await {
                tracing::warn!(error = %e, "cannot record a platform event id");
            }
            wait_event(client, store, clock, event_wait, &c.id, &event_id).await
        }
        Err(f) => Attempt::Failed(f),
    }
}

/// Polls a platform event until it ends or `event_wait` runs out.
async fn wait_event(
    client: &Client,
    store: &SharedStore,
    clock: &dyn Clock,
    event_wait: Duration,
    id: &str,
    event_id: &str,
) -> Attempt {
    let start = clock.now_ms();
    let mut pause = EVENT_POLL_FIRST;
    loop {
        match client.event(event_id).await {
            Ok(EventState::Succeeded(ids)) => {
                return Attempt::Delivered {
                    ids,
                    reconciled: false,
                };
            }
            Ok(EventState::Failed) => {
                // Not stored: clear the event so the next attempt re-adds.
                let id = id.to_string();
                let _ = store.run(move |s| s.set_event(&id, None)).await;
                return Attempt::Failed(Failure::Http {
                    status: 500,
                    retry_after_ms: None,
                    code: Some("event_failed".into()),
                });
            }
            Ok(EventState::Pending) => {}
            Err(f) => return Attempt::Failed(f),
        }
        if clock.now_ms() - start >= event_wait.as_millis() as i64 {
            return Attempt::Deferred;
        }
        clock.sleep(pause).await;
        pause = (pause * 2).min(EVENT_POLL_MAX);
    }
}
