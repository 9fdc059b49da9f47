//! The delivery service: the loop that a long-running process runs beside
//! its face (`serve` beside its MCP server; the coming daemon too). One
//! worker run ([`worker`](crate::engine::worker)) after another, paced by
//! the config and the breaker.
//!
//! What follows each run (desktop notifications, a feature) is given by the
//! face that starts the loop, so the engine imports nothing above it.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Notify, watch};

use crate::engine::app::App;
use crate::engine::worker::{Settings, Stop};

/// The delivery loop: a run every `sync_interval`, and right after a save
/// (`nudge`), unless the breaker says the server is down and its probe is
/// not due; `after_run` after each run. Returns when `stop` turns true.
pub async fn delivery_loop<F, Fut>(
    app: Arc<App>,
    nudge: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    after_run: F,
) where
    F: Fn(Arc<App>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Ok(worker) = app.worker(Settings::from_config(app.config())) else {
        return; // No server configured: saves queue up; status says so.
    };
    let interval = app.config().sync_interval;
    loop {
        let now = app.clock.now_ms();
        let open_until = app
            .store
            .run(|s| s.meta_get("breaker_open_until"))
            .await
            .ok()
            .flatten()
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        if now >= open_until {
            match worker.run(stop.clone()).await {
                Ok(r) if r.stopped == Some(Stop::Shutdown) => return,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "a worker run failed"),
            }
            after_run(app.clone()).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = nudge.notified() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}
