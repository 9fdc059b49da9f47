//! The policy runtime: every decision the seed calls policy (backoff, failed
//! recovery, the run breaker, alert thresholds) comes from a sandboxed WASI
//! component, the embedded default or a user's `.wasm`.
//!
//! What this module guarantees to the rest of the host:
//! - a decision is always returned: a user policy that fails to load, traps,
//!   runs out of fuel or memory, has the wrong WIT version or returns
//!   nonsense is logged, raises a CRITICAL `policy-broken` alert, and the
//!   embedded default decides instead (and, should even that fail, the same
//!   default logic compiled natively);
//! - every returned value is clamped to sane bounds ([`MAX_DELAY_MS`],
//!   [`MAX_ATTEMPTS_PER_RUN`], bounded alert texts);
//! - a component of an older WIT version (0.1.0) is called in its own types
//!   (see `wasm`), and since it is not told how long the Mem0 server has been
//!   unreachable, the runtime adds the default policy's `server-unreachable`
//!   alert to its alerts itself ([`Runtime::alerts`]).
//!
//! - a new policy replaces the running one only once it passed the same
//!   load and scenario as `policy check` ([`Runtime::reload`]); a refused
//!   one leaves the running policy deciding and raises a CRITICAL
//!   `policy-refused` alert until a later reload succeeds.
//!
//! Wasmtime's WASI bindings must not run on a tokio worker thread (they
//! `block_on` the ambient runtime), so the async side talks to the runtime
//! through [`PolicyHandle`], which owns it on a thread of its own. That
//! thread runs one job at a time, in order: a decision in progress always
//! finishes on the policy that started it, and a reload waits behind it.

mod cache;
pub mod check;
pub mod native;
pub mod wasm;

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use wasmtime::Store;

use crate::engine::text::truncate;

pub use wasm::{
    Alert, BreakerDecision, BreakerInput, Decision, EntryState, FailedSummary, HttpFailure,
    Identity, Level, Operation, Outcome, QueueStats, Rejection, WIT_VERSION, WitVersion,
};

/// The alert of a new policy that was refused while the running one kept
/// deciding (see [`Runtime::reload`]).
pub const POLICY_REFUSED: &str = "policy-refused";

/// The alert of a Mem0 server that has stopped answering (WIT 0.2.0's
/// unreachable statistics), which the host raises itself for a 0.1.0 policy.
pub const SERVER_UNREACHABLE: &str = "server-unreachable";

/// The longest delay a policy may ask for: one hour. A longer wait inside one
/// run holds the worker for nothing; the next run is the better retry.
pub const MAX_DELAY_MS: u64 = 3_600_000;

/// The most attempts one entry gets in one run, whatever the policy says.
pub const MAX_ATTEMPTS_PER_RUN: u32 = 10;

/// Bounds on what an alert may carry, so a hostile policy cannot flood a
/// tool reply.
const MAX_ALERTS: usize = 16;
const MAX_ALERT_TEXT: usize = 1_000;
const MAX_ACTIONS: usize = 10;
const MAX_ACTION_TEXT: usize = 200;
const MAX_REASON_TEXT: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the policy file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a valid component: {0}")]
    Invalid(String),
    #[error("wrong world: {0}")]
    WrongWorld(String),
    #[error("wrong WIT version: {0}")]
    Version(String),
    #[error("the policy trapped: {0}")]
    Trap(String),
    #[error("{0}")]
    OutOfFuel(String),
    #[error("the policy exceeded its memory limit: {0}")]
    Memory(String),
    #[error("the policy returned an error: {0}")]
    Returned(String),
    #[error("the policy returned nonsense: {0}")]
    Nonsense(String),
    #[error("the wasmtime engine failed: {0}")]
    Engine(String),
    #[error("the policy thread is gone")]
    Gone,
}

/// Where the active policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// The default built from `component/` and embedded in the binary.
    Embedded,
    /// A user's component, from `MEM0_QUEUE_POLICY` or the config's `policy`.
    File(PathBuf),
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicySource::Embedded => f.write_str("embedded default"),
            PolicySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What `policy show` and the status tools say of the active policy.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
    pub wit_version: String,
    /// "embedded default" or the path of the user's component.
    pub source: String,
    /// SHA-256 of the active component, hex.
    pub sha256: String,
    /// True when the compiled artifact came from the on-disk cache.
    pub from_cache: bool,
    /// Why the configured policy is not (fully) in use, if it is not.
    pub broken: Option<String>,
    /// When the active policy was loaded (this process), unix ms.
    pub loaded_at: i64,
    /// The last new policy refused while this one kept deciding, until a
    /// reload succeeds.
    pub refused: Option<Refusal>,
}

/// A new policy that [`Runtime::reload`] refused: the running one keeps
/// deciding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    /// The refused component's path (or "embedded default").
    pub source: String,
    /// Why, in one line, as `policy check` says it.
    pub reason: String,
    /// When, unix ms.
    pub at_ms: i64,
}

/// The synchronous runtime. Owned by one thread; see [`PolicyHandle`].
pub struct Runtime {
    host: wasm::Host,
    default: wasm::Loaded,
    user: Option<wasm::Loaded>,
    source: PolicySource,
    /// The last reason the user policy failed, if it did.
    broken: Option<String>,
    /// Where compiled components are cached (also for reloads).
    cache_dir: Option<PathBuf>,
    /// When the active policy was loaded, unix ms.
    loaded_at: i64,
    /// The last refused reload, until one succeeds.
    refused: Option<Refusal>,
}

impl Runtime {
    /// Loads the embedded default and, when configured, the user's policy. A
    /// user policy that fails to load is not an error here: it is recorded
    /// as broken and the default decides.
    pub fn new(source: PolicySource, cache_dir: Option<&Path>) -> Result<Self, PolicyError> {
        let host = wasm::Host::new()?;
        let default = host.load(mem0_queue_embed::DEFAULT_POLICY, cache_dir)?;
        let mut rt = Self {
            host,
            default,
            user: None,
            source: source.clone(),
            broken: None,
            cache_dir: cache_dir.map(Path::to_path_buf),
            loaded_at: crate::engine::clock::now_ms(),
            refused: None,
        };
        if let PolicySource::File(path) = &source {
            match rt.load_file(path, cache_dir) {
                Ok(loaded) => rt.user = Some(loaded),
                Err(e) => rt.mark_broken(format!("{e}")),
            }
        }
        Ok(rt)
    }

    /// Loads a component file on this runtime's engine, for `policy check`.
    pub fn load_file(
        &self,
        path: &Path,
        cache_dir: Option<&Path>,
    ) -> Result<wasm::Loaded, PolicyError> {
        let bytes = std::fs::read(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.host.load(&bytes, cache_dir)
    }

    pub fn info(&self) -> PolicyInfo {
        let active = self.user.as_ref().unwrap_or(&self.default);
        PolicyInfo {
            name: active.identity.name.clone(),
            version: active.identity.version.clone(),
            wit_version: active.identity.wit_version.clone(),
            source: if self.user.is_some() {
                self.source.to_string()
            } else {
                PolicySource::Embedded.to_string()
            },
            sha256: active.hash.clone(),
            from_cache: active.from_cache,
            broken: self.broken.clone(),
            loaded_at: self.loaded_at,
            refused: self.refused.clone(),
        }
    }

    /// Replaces the running policy with `source`, only if it passes what
    /// `policy check` runs: the same load (read, compile or the compiled
    /// cache, the WIT version, the world, `describe()`) and the same fixed
    /// scenario through every export, with no fallback
    /// ([`check::validate`]). A refused policy changes nothing that decides:
    /// the running policy (a configured one, or the embedded default) goes
    /// on, the refusal is kept (reason, path, time) for [`Self::alerts`]
    /// and [`Self::info`], and one line is logged. A successful reload
    /// clears the refusal and any broken mark, and sets `loaded_at`.
    ///
    /// Runs on the policy thread between two jobs: a decision in progress
    /// has finished on the old policy before this starts.
    pub fn reload(&mut self, source: PolicySource) -> Result<PolicyInfo, Refusal> {
        let now = crate::engine::clock::now_ms();
        let loaded = match &source {
            PolicySource::Embedded => None,
            PolicySource::File(path) => {
                match check::validate(self, path, self.cache_dir.as_deref()) {
                    Ok((loaded, _report)) => Some(loaded),
                    Err(e) => {
                        let refusal = Refusal {
                            source: source.to_string(),
                            reason: truncate(&e.to_string(), MAX_REASON_TEXT * 2),
                            at_ms: now,
                        };
                        tracing::error!(
                            policy = %refusal.source,
                            reason = %refusal.reason,
                            running = %self.info().name,
                            "the new policy is refused; the running policy keeps deciding"
                        );
                        self.refused = Some(refusal.clone());
                        return Err(refusal);
                    }
                }
            }
        };
        self.user = loaded;
        self.source = source;
        self.broken = None;
        self.refused = None;
        self.loaded_at = now;
        let info = self.info();
        tracing::info!(policy = %info.source, name = %info.name, version = %info.version, "policy loaded");
        Ok(info)
    }

    /// Drops every live store: the next decision of each policy starts
    /// from a fresh instance. Done at each worker run start, so no state a
    /// guest keeps between calls outlives a run, and after a panic on the
    /// policy thread.
    pub fn recycle(&mut self) {
        self.default.recycle();
        if let Some(u) = &mut self.user {
            u.recycle();
        }
    }

    /// Where compiled components are cached.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    pub fn engine(&self) -> &wasmtime::Engine {
        self.host.engine()
    }

    fn mark_broken(&mut self, reason: String) {
        tracing::error!(policy = %self.source, reason = %reason, "the configured policy is broken; the embedded default decides");
        self.broken = Some(reason);
    }

    /// Asks the user policy, then the embedded default, then the native
    /// default. `call` runs one export; `validate` clamps or rejects.
    fn decide<R>(
        &mut self,
        items: usize,
        call: impl Fn(&wasm::Instance, &mut Store<wasm::Ctx>) -> wasmtime::Result<Result<R, String>>,
        validate: impl Fn(R) -> Result<R, String>,
        native: impl FnOnce() -> R,
    ) -> R {
        self.decide_by(items, call, validate, native).0
    }

    /// [`Self::decide`], also saying which WIT version the component that
    /// answered speaks (none for the native default).
    fn decide_by<R>(
        &mut self,
        items: usize,
        call: impl Fn(&wasm::Instance, &mut Store<wasm::Ctx>) -> wasmtime::Result<Result<R, String>>,
        validate: impl Fn(R) -> Result<R, String>,
        native: impl FnOnce() -> R,
    ) -> (R, Option<WitVersion>) {
        fn attempt<R>(
            host: &wasm::Host,
            loaded: &mut wasm::Loaded,
            items: usize,
            call: &impl Fn(
                &wasm::Instance,
                &mut Store<wasm::Ctx>,
            ) -> wasmtime::Result<Result<R, String>>,
            validate: &impl Fn(R) -> Result<R, String>,
        ) -> Result<R, PolicyError> {
            let r = host
                .call_live(loaded, items, call)?
                .map_err(|e| PolicyError::Returned(truncate(&e, MAX_REASON_TEXT)))
                .and_then(|r| validate(r).map_err(PolicyError::Nonsense));
            if r.is_err() {
                // Any failure, not only a trap: the next call starts afresh.
                loaded.recycle();
            }
            r
        }
        if let Some(user) = &mut self.user {
            match attempt(&self.host, user, items, &call, &validate) {
                Ok(r) => return (r, Some(user.wit())),
                Err(e) => self.mark_broken(e.to_string()),
            }
        }
        match attempt(&self.host, &mut self.default, items, &call, &validate) {
            Ok(r) => (r, Some(self.default.wit())),
            Err(e) => {
                tracing::error!(error = %e, "the embedded default policy failed; using its native twin");
                (native(), None)
            }
        }
    }

    /// After a failed delivery attempt.
    pub fn on_failure(&mut self, entry: EntryState, outcome: Outcome, random: u32) -> Decision {
        let attempts = entry.attempts_this_run;
        self.decide(
            0,
            |d, s| d.call_on_failure(s, entry, &outcome, random),
            |d| Ok(clamp_decision(d, attempts)),
            || native::on_failure(entry, &outcome, random),
        )
    }

    /// At a run start: the ids of the failed entries to revive. Unknown ids
    /// and repeats are dropped.
    /// A run start is also where the live stores are recycled
    /// ([`Self::recycle`]).
    pub fn on_run_start(&mut self, failed: &[FailedSummary], random: u32) -> Vec<String> {
        self.recycle();
        let known: std::collections::HashSet<&str> = failed.iter().map(|f| f.id.as_str()).collect();
        self.decide(
            failed.len(),
            |d, s| d.call_on_run_start(s, failed, random),
            |ids| {
                let mut seen = std::collections::HashSet::new();
                Ok(ids
                    .into_iter()
                    .filter(|id| known.contains(id.as_str()) && seen.insert(id.clone()))
                    .collect())
            },
            || native::on_run_start(failed, random),
        )
    }

    /// After a connection-level failure in a run.
    pub fn breaker(&mut self, input: BreakerInput) -> BreakerDecision {
        self.decide(
            0,
            |d, s| d.call_breaker(s, input),
            |b| {
                Ok(match b {
                    BreakerDecision::Stop(ms) => BreakerDecision::Stop(ms.min(MAX_DELAY_MS)),
                    c => c,
                })
            },
            || native::breaker(input),
        )
    }

    /// The alerts for these statistics, with `policy-broken` first when the
    /// configured policy failed.
    ///
    /// A 0.1.0 policy is not given the unreachable statistics, so it cannot
    /// raise `server-unreachable`: when such a policy answered, the runtime
    /// adds the embedded default's alert (its native logic, on the same
    /// statistics) after the policy's CRITICAL alerts, unless the policy
    /// raised one of that code itself.
    pub fn alerts(&mut self, stats: QueueStats) -> Vec<Alert> {
        let (mut alerts, by) = self.decide_by(
            0,
            |d, s| d.call_alerts(s, stats),
            |a| Ok(clamp_alerts(a)),
            || native::alerts(stats),
        );
        if by == Some(WitVersion::V0_1_0)
            && !alerts.iter().any(|a| a.code == SERVER_UNREACHABLE)
            && let Some(alert) = native::server_unreachable(stats)
        {
            let at = alerts
                .iter()
                .take_while(|a| a.level == Level::Critical)
                .count();
            alerts.insert(at, alert);
        }
        if let Some(reason) = &self.broken {
            alerts.insert(0, broken_alert(&self.source, reason));
        }
        if let Some(refusal) = &self.refused {
            let running = self.info();
            alerts.insert(0, refused_alert(refusal, &running.name, &running.version));
        }
        alerts
    }
}

/// The CRITICAL alert of a new policy refused at a reload, while `running`
/// (name and version) keeps deciding.
pub fn refused_alert(refusal: &Refusal, running: &str, version: &str) -> Alert {
    Alert {
        level: Level::Critical,
        code: POLICY_REFUSED.into(),
        message: truncate(
            &format!(
                "POLICY REFUSED - CRITICAL: the new policy {} was refused at {} ({}). \
                 The running policy {running} {version} keeps deciding; no memory is lost.",
                refusal.source,
                crate::engine::text::rfc3339(refusal.at_ms),
                refusal.reason
            ),
            MAX_ALERT_TEXT,
        ),
        actions: vec![
            format!("mem0-queue policy check {}", refusal.source),
            "Fix the component (it is loaded within seconds of the fix), or point `policy` back at a working one".into(),
        ],
    }
}

/// The CRITICAL alert for a configured policy that does not work.
pub fn broken_alert(source: &PolicySource, reason: &str) -> Alert {
    broken_alert_text(&source.to_string(), reason)
}

/// [`broken_alert`] for a source already rendered as text.
pub fn broken_alert_text(source: &str, reason: &str) -> Alert {
    Alert {
        level: Level::Critical,
        code: "policy-broken".into(),
        message: truncate(
            &format!(
                "POLICY BROKEN - CRITICAL: the configured policy {source} failed ({reason}). \
                 The embedded default policy decides instead; no memory is lost."
            ),
            MAX_ALERT_TEXT,
        ),
        actions: vec![
            format!("mem0-queue policy check {source}"),
            "Fix the component, or remove `policy` from the config and MEM0_QUEUE_POLICY from the environment".into(),
        ],
    }
}

fn clamp_decision(d: Decision, attempts_this_run: u32) -> Decision {
    match d {
        Decision::RetryAfterMs(_) if attempts_this_run >= MAX_ATTEMPTS_PER_RUN => Decision::Fail,
        Decision::RetryAfterMs(ms) => Decision::RetryAfterMs(ms.min(MAX_DELAY_MS)),
        Decision::Dead(reason) => {
            let reason = truncate(&reason, MAX_REASON_TEXT);
            Decision::Dead(if reason.trim().is_empty() {
                "rejected by the policy".into()
            } else {
                reason
            })
        }
        Decision::Fail => Decision::Fail,
    }
}

fn clamp_alerts(alerts: Vec<Alert>) -> Vec<Alert> {
    alerts
        .into_iter()
        .take(MAX_ALERTS)
        .map(|a| Alert {
            level: a.level,
            code: {
                let c = truncate(&a.code, 64);
                if c.is_empty() {
                    "policy-alert".into()
                } else {
                    c
                }
            },
            message: truncate(&a.message, MAX_ALERT_TEXT),
            actions: a
                .actions
                .iter()
                .take(MAX_ACTIONS)
                .map(|s| truncate(s, MAX_ACTION_TEXT))
                .collect(),
        })
        .collect()
}

type Job = Box<dyn FnOnce(&mut Runtime) + Send>;

/// A cheap, cloneable handle to a [`Runtime`] living on its own thread.
#[derive(Clone)]
pub struct PolicyHandle {
    tx: mpsc::Sender<Job>,
}

impl PolicyHandle {
    /// Starts the policy thread and loads the policies on it.
    pub fn start(source: PolicySource, cache_dir: Option<PathBuf>) -> Result<Self, PolicyError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("mem0-queue-policy".into())
            .spawn(move || {
                let mut rt = match Runtime::new(source, cache_dir.as_deref()) {
                    Ok(rt) => {
                        let _ = ready_tx.send(Ok(()));
                        rt
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    // A panic in one job must not take the thread (and every
                    // later decision) with it; a store it was using may be
                    // mid-call, so every live store is dropped.
                    let ran =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut rt)));
                    if ran.is_err() {
                        rt.recycle();
                    }
                }
            })
            .map_err(|e| PolicyError::Engine(format!("cannot start the policy thread: {e}")))?;
        ready_rx.recv().map_err(|_| PolicyError::Gone)??;
        Ok(Self { tx })
    }

    /// Runs `f` on the policy thread and waits for it without blocking the
    /// async runtime.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Runtime) -> R + Send + 'static,
    ) -> Result<R, PolicyError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Box::new(move |rt| {
                let _ = tx.send(f(rt));
            }))
            .map_err(|_| PolicyError::Gone)?;
        rx.await.map_err(|_| PolicyError::Gone)
    }

    /// [`Runtime::reload`] on the policy thread, queued behind the jobs
    /// already sent: a decision in progress finishes on the policy that
    /// started it. The outer error is the thread being gone.
    pub async fn reload(
        &self,
        source: PolicySource,
    ) -> Result<Result<PolicyInfo, Refusal>, PolicyError> {
        self.run(move |rt| rt.reload(source)).await
    }

    /// Runs `f` on the policy thread, blocking this (non-async) thread.
    pub fn run_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Runtime) -> R + Send + 'static,
    ) -> Result<R, PolicyError> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Box::new(move |rt| {
                let _ = tx.send(f(rt));
            }))
            .map_err(|_| PolicyError::Gone)?;
        rx.recv().map_err(|_| PolicyError::Gone)
    }
}
