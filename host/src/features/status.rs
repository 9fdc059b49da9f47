//! The state of the queue at a glance: the one status model that
//! `mem0-queue status` (text or JSON), the `mem0_queue_status` tool and the
//! dashboard render. It gathers and words; it picks no exit code: its
//! verdict is a [`Severity`], which each face turns into its own terms.

use serde_json::{Value, json};

use crate::engine::app::{App, RunningPolicy};
use crate::engine::daemon::{self, Seen};
use crate::engine::mem0::Reachability;
use crate::engine::policy::{Alert, Level, PolicyInfo};
use crate::engine::store::{Stats, StoreError};

/// How the queue is doing, in the monitoring convention's four levels: the
/// most severe alert's level, or `Unknown` when the queue cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Ok,
    Warning,
    Critical,
    Unknown,
}

pub struct StatusReport {
    pub stats: Stats,
    pub now_ms: i64,
    pub alerts: Vec<Alert>,
    pub policy: PolicyInfo,
    /// The policy a running `serve` or daemon of this data dir decides
    /// with (hot reloads included), when one runs.
    pub running: Option<RunningPolicy>,
    pub reachability: Reachability,
    pub breaker_open_until: Option<i64>,
    pub data_dir: String,
    pub db: String,
    pub log: String,
    pub config_file: Option<String>,
    pub api_url: Option<String>,
    /// The configuration problem the last delivery run stopped on.
    pub config_problem: Option<crate::engine::worker::ConfigProblemRecord>,
    /// The changes in the queue (updates, deletes, forgets) by kind and
    /// state; the counts above hold them too.
    pub changes: Vec<(crate::engine::store::Op, crate::engine::store::State, u64)>,
    /// Whether a daemon runs for this data dir.
    pub daemon: Seen,
    /// When a daemon last delivered something (unix ms).
    pub daemon_last_delivery: Option<i64>,
}

/// Reads the queue, asks the policy for alerts and, when `probe`, asks
/// Mem0 whether it answers (bounded to 2 s).
pub async fn gather(app: &App, probe: bool) -> Result<StatusReport, StoreError> {
    let (stats, breaker, changes, daemon_last_delivery) = app
        .store
        .run(|s| {
            let num = |k: &str| -> Result<Option<i64>, StoreError> {
                Ok(s.meta_get(k)?.and_then(|v| v.parse().ok()))
            };
            let open = num(crate::engine::store::meta_keys::BREAKER_OPEN_UNTIL)?;
            let last = num(crate::engine::store::meta_keys::DAEMON_LAST_DELIVERY)?;
            Ok((s.stats()?, open, s.op_counts()?, last))
        })
        .await?;
    let daemon = daemon::probe(&app.paths);
    let alerts = app.alerts(&stats).await.unwrap_or_default();
    let config_problem = app.config_problem().await;
    let now_ms = app.clock.now_ms();
    let reachability = match (&app.client, probe) {
        (Err(_), _) => Reachability::NotConfigured,
        (Ok(c), true) => c.probe().await,
        (Ok(_), false) => Reachability::Unreachable {
            error: "not probed".into(),
        },
    };
    Ok(StatusReport {
        stats,
        now_ms,
        alerts,
        policy: app.policy_info(),
        running: app.running_policy().await,
        reachability,
        breaker_open_until: breaker.filter(|&t| t > now_ms),
        data_dir: app.paths.data_dir.display().to_string(),
        db: app.paths.db().display().to_string(),
        log: app.paths.worker_log().display().to_string(),
        config_file: app.resolved.file.as_ref().map(|p| p.display().to_string()),
        api_url: app.config().api_url.clone(),
        config_problem,
        changes,
        daemon,
        daemon_last_delivery,
    })
}

fn age(now: i64, t: Option<i64>) -> Option<u64> {
    t.map(|t| ((now - t).max(0) / 1000) as u64)
}

fn human_secs(s: u64) -> String {
    crate::engine::text::truncate(
        &humantime::format_duration(std::time::Duration::from_secs(s)).to_string(),
        40,
    )
}

impl StatusReport {
    /// The most severe alert's level.
    pub fn severity(&self) -> Severity {
        if self.alerts.iter().any(|a| a.level == Level::Critical) {
            Severity::Critical
        } else if self.alerts.is_empty() {
            Severity::Ok
        } else {
            Severity::Warning
        }
    }

    /// The report as JSON, without the exit code, which is the command
    /// line's to give (`faces::cli::exit::status_json` adds it).
    pub fn json(&self) -> Value {
        let s = &self.stats;
        let mut changes = serde_json::Map::new();
        for (op, state, n) in &self.changes {
            let e = changes
                .entry(op.as_str().to_string())
                .or_insert_with(|| json!({}));
            e[state.as_str()] = json!(n);
        }
        json!({
            "counts": s.counts,
            "changes": changes,
            "oldest_pending_age_s": age(self.now_ms, s.oldest_pending),
            "stats": {
                "total_queued": s.total_queued,
                "total_synced": s.total_synced,
                "total_failed": s.total_failed,
                "last_sync": s.last_sync.map(crate::engine::text::rfc3339),
                "last_success": s.last_success.map(crate::engine::text::rfc3339),
                "consecutive_failing_runs": s.consecutive_failing_runs,
                "unreachable_runs": s.unreachable_runs,
                "unreachable_since": s.unreachable_since.map(crate::engine::text::rfc3339),
            },
            "config_problem": self.config_problem.as_ref().map(|c| json!({
                "code": c.problem.code(),
                "problem": c.problem,
                "description": c.problem.describe(),
                "api_url": c.api_url,
                "at": crate::engine::text::rfc3339(c.at_ms),
                "fix": c.problem.fix(&c.api_url),
            })),
            "breaker": match self.breaker_open_until {
                Some(t) => json!({"state": "open", "next_probe_at": crate::engine::text::rfc3339(t)}),
                None => json!({"state": "closed"}),
            },
            "policy": self.policy,
            "policy_running": self.running.as_ref().map(|r| json!({
                "pid": r.pid,
                "name": r.policy.name,
                "version": r.policy.version,
                "wit_version": r.policy.wit_version,
                "source": r.policy.source,
                "sha256": r.policy.sha256,
                "loaded_at": r.policy.loaded_at,
                "loaded_at_rfc3339": crate::engine::text::rfc3339(r.policy.loaded_at),
                "broken": r.policy.broken,
                "refused": r.policy.refused,
            })),
            "alerts": self.alerts.iter().map(alert_json).collect::<Vec<_>>(),
            "mem0": {
                "url": self.api_url,
                "reachability": self.reachability,
            },
            "daemon": self.daemon_json(),
            "paths": {
                "data_dir": self.data_dir,
                "db": self.db,
                "worker_log": self.log,
                "config_file": self.config_file,
            },
        })
    }

    /// Whether a daemon runs, since when, its pid and MCP endpoint, and its
    /// last delivery (never its tokens).
    fn daemon_json(&self) -> Value {
        let last = self.daemon_last_delivery.map(crate::engine::text::rfc3339);
        match &self.daemon {
            Seen::NotRunning => json!({"running": false, "last_delivery": last}),
            Seen::Running(r) => json!({
                "running": true,
                "pid": r.as_ref().map(|r| r.pid),
                "since": r.as_ref().map(|r| crate::engine::text::rfc3339(r.since_ms)),
                "version": r.as_ref().map(|r| r.version.clone()),
                "mcp_url": r.as_ref().and_then(|r| r.mcp_url.clone()),
                "last_delivery": last,
            }),
        }
    }

    /// The daemon's line of `status`.
    pub fn daemon_text(&self) -> String {
        match &self.daemon {
            Seen::NotRunning => {
                "daemon: not running (each `serve` window delivers; `mem0-queue install daemon` \
                 for the always-on one)"
                    .into()
            }
            Seen::Running(r) => {
                let mut t = String::from("daemon: running");
                if let Some(r) = r {
                    t.push_str(&format!(
                        " since {}, pid {}",
                        crate::engine::text::rfc3339(r.since_ms),
                        r.pid
                    ));
                }
                t.push_str(&format!(
                    ", last delivery {}",
                    self.daemon_last_delivery
                        .map(crate::engine::text::rfc3339)
                        .unwrap_or_else(|| "never".into())
                ));
                if let Some(u) = r.as_ref().and_then(|r| r.mcp_url.as_deref()) {
                    t.push_str(&format!(", MCP at {u}"));
                }
                t
            }
        }
    }

    pub fn text(&self) -> String {
        let s = &self.stats;
        let c = &s.counts;
        let mut out = String::new();
        out.push_str(&format!(
            "queue: {} pending, {} in flight, {} failed, {} dead, {} delivered\n",
            c.pending, c.in_flight, c.failed, c.dead, c.delivered
        ));
        let waiting: Vec<String> = crate::engine::store::Op::ALL
            .iter()
            .filter_map(|op| {
                let n: u64 = self
                    .changes
                    .iter()
                    .filter(|(o, st, _)| {
                        o == op && !matches!(st, crate::engine::store::State::Delivered)
                    })
                    .map(|(_, _, n)| n)
                    .sum();
                (n > 0).then(|| format!("{n} {}", op.as_str()))
            })
            .collect();
        if !waiting.is_empty() {
            out.push_str(&format!(
                "changes among them (not delivered): {}\n",
                waiting.join(", ")
            ));
        }
        out.push_str(&format!(
            "oldest pending: {}\n",
            age(self.now_ms, s.oldest_pending)
                .map(|a| format!("{} ago", human_secs(a)))
                .unwrap_or_else(|| "none".into())
        ));
        out.push_str(&format!(
            "stats: total_queued {}, total_synced {}, total_failed {}\n",
            s.total_queued, s.total_synced, s.total_failed
        ));
        out.push_str(&format!(
            "last sync: {}; last delivery: {}\n",
            s.last_sync
                .map(crate::engine::text::rfc3339)
                .unwrap_or_else(|| "never".into()),
            s.last_success
                .map(crate::engine::text::rfc3339)
                .unwrap_or_else(|| "never".into()),
        ));
        out.push_str(&self.daemon_text());
        out.push('\n');
        out.push_str(&format!(
            "breaker: {}\n",
            match self.breaker_open_until {
                Some(t) => format!(
                    "open (server down); next probe at {}",
                    crate::engine::text::rfc3339(t)
                ),
                None => "closed".into(),
            }
        ));
        out.push_str(&format!(
            "mem0: {} {}\n",
            self.api_url.as_deref().unwrap_or("(no api_url)"),
            reachability_text(&self.reachability)
        ));
        if s.unreachable_runs > 0 {
            out.push_str(&format!(
                "unreachable: the last {} delivery runs reached nothing{}\n",
                s.unreachable_runs,
                age(self.now_ms, s.unreachable_since)
                    .map(|a| format!(" (since {} ago)", human_secs(a)))
                    .unwrap_or_default()
            ));
        }
        if let Some(c) = &self.config_problem {
            out.push_str(&format!(
                "configuration problem (last run, {}): {}\n",
                crate::engine::text::rfc3339(c.at_ms),
                c.problem.describe()
            ));
        }
        out.push_str(&format!(
            "policy: {} {} from {}, loaded {}{}\n",
            self.policy.name,
            self.policy.version,
            self.policy.source,
            crate::engine::text::rfc3339(self.policy.loaded_at),
            self.policy
                .broken
                .as_ref()
                .map(|b| format!(" (configured policy BROKEN: {b})"))
                .unwrap_or_default()
        ));
        if let Some(r) = &self.running {
            out.push_str(&format!(
                "policy in use by the running serve/daemon (pid {}): {} {} from {}, loaded {}{}\n",
                r.pid,
                r.policy.name,
                r.policy.version,
                r.policy.source,
                crate::engine::text::rfc3339(r.policy.loaded_at),
                r.policy
                    .refused
                    .as_ref()
                    .map(|f| format!(" (new policy REFUSED: {})", f.reason))
                    .unwrap_or_default()
            ));
        }
        if self.alerts.is_empty() {
            out.push_str("alerts: none\n");
        }
        for a in &self.alerts {
            out.push_str(&format!(
                "{}: {}\n",
                level_name(a).to_uppercase(),
                a.message
            ));
            for (i, action) in a.actions.iter().enumerate() {
                out.push_str(&format!("  {}. {action}\n", i + 1));
            }
        }
        out.push_str(&format!(
            "paths: data {} | db {} | log {} | config {}\n",
            self.data_dir,
            self.db,
            self.log,
            self.config_file.as_deref().unwrap_or("(none)")
        ));
        out
    }
}

/// Mem0 reachability in words.
pub fn reachability_text(r: &Reachability) -> String {
    match r {
        Reachability::NotConfigured => "not configured (saves queue up locally)".into(),
        Reachability::Reachable => "reachable".into(),
        Reachability::AuthRejected { http_status } => {
            format!("reachable, but the API key is rejected (HTTP {http_status})")
        }
        Reachability::Misconfigured { problem } => {
            format!("MISCONFIGURED: {}", problem.describe())
        }
        Reachability::Unreachable { error } => format!("unreachable ({error})"),
    }
}

/// An alert as JSON for tool replies and `status --json`.
pub fn alert_json(a: &Alert) -> serde_json::Value {
    serde_json::json!({
        "level": level_name(a),
        "code": a.code,
        "message": a.message,
        "actions": a.actions,
    })
}

pub fn level_name(a: &Alert) -> &'static str {
    match a.level {
        Level::Warning => "warning",
        Level::Critical => "critical",
    }
}
