//! The delivery service: the loop that a long-running process runs beside
//! its faces (`serve` beside its MCP server on stdio; the daemon beside its
//! MCP server over HTTP and its dashboard). One worker run
//! ([`worker`](crate::engine::worker)) after another, paced by the config,
//! the breaker and the process's [`Role`].
//!
//! What follows each run (desktop notifications, a feature) is given by the
//! face that starts the loop, so the engine imports nothing above it.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::engine::app::App;
use crate::engine::daemon::{self, Seen};
use crate::engine::store::meta_keys;
use crate::engine::worker::{RunReport, Settings, Stop};

/// Who runs the loop, which sets its pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A `serve` window: a run every `sync_interval` and right after each
    /// of its own saves; none while a daemon holds the lock of its data dir
    /// (it looks again at each of those wake-ups, and delivers again once
    /// the daemon is gone).
    Window,
    /// The daemon: a run right after each save it takes, every
    /// [`daemon::POLL`] when an entry saved by another process is due, and
    /// every `sync_interval` while anything is undelivered (failed entries'
    /// fresh start, leases of dead workers).
    Daemon,
}

/// Why the loop woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Start,
    Nudge,
    Tick,
}

/// The delivery loop of `role`; `after_run` after each run. Returns when
/// `stop` turns true. No run starts while the breaker says the server is
/// down and its probe is not due.
pub async fn delivery_loop<F, Fut>(
    app: Arc<App>,
    nudge: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    role: Role,
    after_run: F,
) where
    F: Fn(Arc<App>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Ok(worker) = app.worker(Settings::from_config(app.config())) else {
        return; // No server configured: saves queue up; status says so.
    };
    let interval = app.config().sync_interval;
    let tick = match role {
        Role::Window => interval,
        Role::Daemon => daemon::POLL.min(interval),
    };
    // The daemon this window leaves delivery to, while there is one.
    let mut deferring: Option<Option<u32>> = None;
    let mut last_run: Option<Instant> = None;
    let mut wake = Wake::Start;
    loop {
        let now = app.clock.now_ms();
        let due = match role {
            Role::Window => match daemon::probe(&app.paths) {
                Seen::Running(rec) => {
                    if deferring.is_none() {
                        let pid = rec.as_ref().map(|r| r.pid);
                        app.log.line(&format!(
                            "serve pid {}: the daemon{} delivers; this window leaves delivery to it",
                            std::process::id(),
                            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                        ));
                        deferring = Some(pid);
                    }
                    false
                }
                Seen::NotRunning => {
                    if deferring.take().is_some() {
                        app.log.line(&format!(
                            "serve pid {}: no daemon runs any more; this window delivers",
                            std::process::id()
                        ));
                    }
                    true
                }
            },
            Role::Daemon => {
                let periodic = last_run.is_none_or(|t| t.elapsed() >= interval);
                let look = app
                    .store
                    .run(move |s| {
                        Ok(if periodic {
                            s.counts()?.undelivered() > 0
                        } else {
                            s.due_now(now)?
                        })
                    })
                    .await
                    .unwrap_or(false);
                wake != Wake::Tick || look
            }
        };
        if due && now >= breaker_open_until(&app).await {
            last_run = Some(Instant::now());
            match worker.run(stop.clone()).await {
                Ok(r) if r.stopped == Some(Stop::Shutdown) => return,
                Ok(r) => {
                    if role == Role::Daemon {
                        record_delivery(&app, &r).await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "a worker run failed"),
            }
            after_run(app.clone()).await;
        }
        wake = tokio::select! {
            _ = tokio::time::sleep(tick) => Wake::Tick,
            _ = nudge.notified() => Wake::Nudge,
            _ = stop.changed() => return,
        };
        if *stop.borrow() {
            return;
        }
    }
}

/// Until when the breaker holds runs back (unix ms; 0 when closed).
async fn breaker_open_until(app: &App) -> i64 {
    app.store
        .run(|s| s.meta_get("breaker_open_until"))
        .await
        .ok()
        .flatten()
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0)
}

/// The daemon's last delivery, for `status`.
async fn record_delivery(app: &App, r: &RunReport) {
    if r.delivered == 0 {
        return;
    }
    let now = app.clock.now_ms().to_string();
    let _ = app
        .store
        .run(move |s| s.meta_set(meta_keys::DAEMON_LAST_DELIVERY, &now))
        .await;
}
