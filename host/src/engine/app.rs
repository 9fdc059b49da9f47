//! The parts one process works with, put together once from the config:
//! the store, the policy, the Mem0 client (if configured), the clock, the
//! worker log. Commands and the MCP server take an [`App`].

use std::sync::{Arc, Mutex};

use crate::engine::clock::{Clock, SystemClock};
use crate::engine::config::{Config, Resolved};
use crate::engine::mem0::{Client, ClientError};
use crate::engine::paths::{Paths, PathsError};
use crate::engine::policy::{
    self, Alert, PolicyError, PolicyHandle, PolicyInfo, PolicySource, QueueStats,
};
use crate::engine::store::{Limits, SharedStore, Stats, Store, StoreError};
use crate::engine::worker::log::WorkerLog;
use crate::engine::worker::{self, Settings, Worker};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Paths(#[from] PathsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

pub struct App {
    pub resolved: Resolved,
    pub paths: Paths,
    pub store: SharedStore,
    pub policy: PolicyHandle,
    /// The Mem0 client, or why there is none.
    pub client: Result<Client, Arc<ClientError>>,
    pub clock: Arc<dyn Clock>,
    pub log: Arc<WorkerLog>,
    pub policy_info: Mutex<PolicyInfo>,
    /// Set after a save, when a graph JSONL mirror is configured.
    pub graph_dirty: tokio::sync::Notify,
    /// The project of saves and lists that name none: `default_project`,
    /// or the project of the folder this process works for (`serve`
    /// started by Claude Code: its `CLAUDE_PROJECT_DIR`, by the rule of
    /// [`crate::engine::project`], as the hooks use it).
    pub project: String,
}

impl App {
    /// Creates the data dir (0700), opens the queue, loads the policy.
    pub fn open(resolved: Resolved, paths: Paths) -> Result<Self, AppError> {
        paths.ensure_dir()?;
        let store = Store::open(&paths.db())?;
        let source = match &resolved.config.policy {
            Some(p) => PolicySource::File(p.clone()),
            None => PolicySource::Embedded,
        };
        let policy = PolicyHandle::start(source, Some(paths.cache_dir()))?;
        let info = policy.run_blocking(|p| p.info())?;
        let client = Client::from_config(&resolved.config).map_err(Arc::new);
        let log = Arc::new(WorkerLog::new(
            paths.worker_log(),
            resolved.config.log_max_bytes,
        ));
        Ok(Self {
            paths,
            store: SharedStore::new(store),
            policy,
            client,
            clock: Arc::new(SystemClock),
            log,
            policy_info: Mutex::new(info),
            graph_dirty: tokio::sync::Notify::new(),
            project: resolved.config.default_project.clone(),
            resolved,
        })
    }

    pub fn config(&self) -> &Config {
        &self.resolved.config
    }

    pub fn limits(&self) -> Limits {
        let c = self.config();
        Limits {
            max_content_bytes: c.max_content_bytes,
            max_metadata_bytes: c.max_metadata_bytes,
            max_queue_len: c.max_queue_len,
        }
    }

    /// A worker over this app's parts, or why delivery cannot happen.
    pub fn worker(&self, settings: Settings) -> Result<Worker, Arc<ClientError>> {
        let client = self.client.clone()?;
        Ok(Worker {
            store: self.store.clone(),
            client,
            policy: self.policy.clone(),
            clock: self.clock.clone(),
            rng: Mutex::new(fastrand::Rng::new()),
            settings,
            log: self.log.clone(),
            owner: worker::owner_id(),
        })
    }

    /// The policy's alerts for these stats; refreshes the policy info (a
    /// policy that broke on a decision shows it).
    /// The policy's alerts for these statistics. A configured policy that
    /// broke in the last delivery run of any process (a `sync` from cron,
    /// say) raises `policy-broken` here too, while that same policy is
    /// configured.
    pub async fn alerts(&self, stats: &Stats) -> Result<Vec<Alert>, PolicyError> {
        let q = queue_stats(stats, self.clock.now_ms());
        let (mut alerts, info) = self.policy.run(move |p| (p.alerts(q), p.info())).await?;
        // One trip to the store for both records (alerts are asked on every
        // save): the last run's broken policy, and the running process's
        // policy.
        let (recorded, running) = self
            .store
            .run(|s| {
                let broken = s
                    .meta_get(crate::engine::worker::POLICY_BROKEN_KEY)
                    .ok()
                    .flatten()
                    .and_then(|v| {
                        serde_json::from_str::<crate::engine::worker::PolicyBroken>(&v).ok()
                    });
                Ok((broken, read_running_policy(s)))
            })
            .await
            .unwrap_or_default();
        if let Some(b) = recorded {
            let here = alerts.iter().any(|a| a.code == "policy-broken");
            if !here && b.source == info.source && info.source != PolicySource::Embedded.to_string()
            {
                alerts.insert(
                    0,
                    crate::engine::policy::broken_alert_text(
                        &b.source,
                        &format!("{}, in the last delivery run", b.reason),
                    ),
                );
            }
        }
        // A long-running process (serve, the daemon) that refused a new
        // policy keeps deciding with its old one: its refusal is the alert.
        // This process, loading the same refused file itself, failed too;
        // its own `policy-broken` ("the embedded default decides") is not
        // what happens in the process that decides, so the refusal replaces
        // it.
        if let Some(running) = running
            && running.pid != std::process::id()
            && let Some(refusal) = &running.policy.refused
        {
            let same_file = self
                .config()
                .policy
                .as_ref()
                .is_some_and(|p| p.display().to_string() == refusal.source);
            if same_file
                && info.broken.is_some()
                && info.source == PolicySource::Embedded.to_string()
            {
                alerts.retain(|a| a.code != "policy-broken");
            }
            if !alerts.iter().any(|a| a.code == policy::POLICY_REFUSED) {
                alerts.insert(
                    0,
                    policy::refused_alert(refusal, &running.policy.name, &running.policy.version),
                );
            }
        }
        if let Some(rec) = self.config_problem().await {
            alerts.insert(0, config_problem_alert(&rec, stats.counts.undelivered()));
        }
        if let Ok(mut i) = self.policy_info.lock() {
            *i = info;
        }
        Ok(alerts)
    }

    /// The configuration problem the last delivery run (of any process)
    /// stopped on, if no run has reached Mem0 since.
    pub async fn config_problem(&self) -> Option<crate::engine::worker::ConfigProblemRecord> {
        self.store
            .run(|s| s.meta_get(crate::engine::worker::CONFIG_PROBLEM_KEY))
            .await
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_str(&v).ok())
    }

    /// The policy a long-running process of this data dir (serve, the
    /// daemon) decides with, as it last recorded it, if that process still
    /// runs.
    pub async fn running_policy(&self) -> Option<RunningPolicy> {
        self.store
            .run(|s| Ok(read_running_policy(s)))
            .await
            .ok()
            .flatten()
    }

    /// Records the policy this process decides with, for `status` and
    /// `policy show` in other processes.
    pub async fn record_running_policy(&self, policy: PolicyInfo) {
        if let Ok(mut i) = self.policy_info.lock() {
            *i = policy.clone();
        }
        let record = RunningPolicy {
            pid: std::process::id(),
            policy,
        };
        if let Ok(v) = serde_json::to_string(&record)
            && let Err(e) = self
                .store
                .run(move |s| s.meta_set(RUNNING_POLICY_KEY, &v))
                .await
        {
            tracing::warn!(error = %e, "cannot record the running policy");
        }
    }

    pub fn policy_info(&self) -> PolicyInfo {
        self.policy_info
            .lock()
            .map(|i| i.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }
}

/// The meta key of the [`RunningPolicy`] record.
pub const RUNNING_POLICY_KEY: &str = "policy_running";

/// The policy a long-running process (serve, the daemon) decides with, and
/// its last refused reload, kept in the queue's meta table so that
/// `status`, `policy show` and the dashboard in other processes name the
/// policy in use and when it was loaded. Written at the start of the
/// policy watcher and after each reload; ignored once `pid` no longer runs.
/// With several such processes on one data dir, the last to write wins (they
/// watch the same files).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunningPolicy {
    pub pid: u32,
    pub policy: PolicyInfo,
}

/// Reads the [`RunningPolicy`] record straight from a store, for a command
/// that has no [`App`] (`policy show`); `None` when its process is gone.
pub fn read_running_policy(store: &Store) -> Option<RunningPolicy> {
    store
        .meta_get(RUNNING_POLICY_KEY)
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_str::<RunningPolicy>(&v).ok())
        .filter(|r| crate::engine::worker::owner_alive(&format!("pid-{}", r.pid)))
}

/// The CRITICAL alert of a configuration problem. It is the host's, not
/// the policy's: no policy can turn "nothing will be delivered until a
/// person fixes the config" into anything milder.
pub fn config_problem_alert(
    rec: &crate::engine::worker::ConfigProblemRecord,
    waiting: u64,
) -> Alert {
    Alert {
        level: policy::Level::Critical,
        code: rec.problem.code().into(),
        message: crate::engine::text::truncate(
            &format!(
                "MEM0 CONFIG - CRITICAL: {} answered {}. Nothing is delivered until this is fixed; \
                 {waiting} memories wait safely in the local queue, and the first run after the fix delivers them.",
                rec.api_url,
                rec.problem.describe()
            ),
            1_000,
        ),
        actions: rec.problem.fix(&rec.api_url),
    }
}

/// The policy's view of the queue statistics at `now_ms`.
pub fn queue_stats(s: &Stats, now_ms: i64) -> QueueStats {
    let age = |t: Option<i64>| t.map(|t| (now_ms - t).max(0) as u64);
    QueueStats {
        pending: s.counts.pending,
        in_flight: s.counts.in_flight,
        failed: s.counts.failed,
        dead: s.counts.dead,
        dead_auth: s.counts.dead_auth,
        oldest_pending_age_ms: age(s.oldest_pending),
        last_success_age_ms: age(s.last_success),
        consecutive_failing_runs: s.consecutive_failing_runs,
        unreachable_runs: s.unreachable_runs,
        unreachable_for_ms: age(s.unreachable_since),
    }
}
