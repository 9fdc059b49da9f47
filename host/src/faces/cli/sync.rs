//! `mem0-queue sync`: one delivery run, for cron, the schedule and the
//! SessionEnd hook, with a progress bar on a terminal; its exit code says
//! what is left (`exit::sync`).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::engine::app::App;
use crate::engine::mem0::ClientError;
use crate::engine::worker::{Settings, Stop};
use crate::faces::cli::exit;
use crate::faces::runtime::{runtime, terminated};
use crate::features::notify;

/// `sync`'s default time bound: the 10-minute schedule's period minus a
/// minute, so a run never overlaps the next one and a hung server cannot
/// hold a run for longer than a period.
pub const DEFAULT_SYNC_MAX_DURATION: Duration = Duration::from_secs(9 * 60);

/// `mem0-queue sync [--max-duration D]`: [`DEFAULT_SYNC_MAX_DURATION`]
/// when none is given, no bound for `0s`.
pub fn run(app: App, max_duration: Option<Duration>) -> anyhow::Result<ExitCode> {
    let bound = match max_duration {
        None => Some(DEFAULT_SYNC_MAX_DURATION),
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
    };
    let mut settings = Settings::from_config(app.config());
    settings.max_duration = bound;
    let worker = match app.worker(settings) {
        Ok(w) => w,
        Err(e) => {
            let hint = match &*e {
                ClientError::NotConfigured => " (entries stay queued until one is)",
                _ => "",
            };
            eprintln!("mem0-queue: error: {e}{hint}");
            return Ok(exit::config());
        }
    };
    let tty = std::io::stderr().is_terminal();
    let report = runtime()?.block_on(async {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            terminated().await;
            let _ = stop_tx.send(true);
        });
        let progress = if tty {
            Some(Progress::start(&app).await)
        } else {
            None
        };
        let report = worker.run(stop_rx).await;
        if let Some(p) = progress {
            p.finish().await;
        }
        notify::after_run(&app).await;
        report
    })?;
    if tty {
        eprintln!(
            "delivered {} ({} found already on the server), retried {}, failed {}, dead {}; {} remain{}",
            report.delivered,
            report.reconciled,
            report.retried,
            report.failed,
            report.dead,
            report.remaining,
            match report.stopped {
                Some(Stop::Breaker) => "; the server is down (breaker)",
                Some(Stop::MaxDuration) => "; stopped at --max-duration",
                Some(Stop::Shutdown) => "; interrupted",
                Some(Stop::Config) => "; stopped on a configuration problem",
                None => "",
            }
        );
    }
    // Always said, also under cron (whose mail is how it reaches a person).
    if let Some(p) = &report.config_problem {
        let url = app.config().api_url.clone().unwrap_or_default();
        eprintln!(
            "mem0-queue: configuration problem: {}; {} memories stay queued",
            p.describe(),
            report.remaining
        );
        for (i, step) in p.fix(&url).iter().enumerate() {
            eprintln!("  {}. {step}", i + 1);
        }
    }
    Ok(exit::sync(&report))
}

/// How often `sync`'s progress bar reads the queue's counts.
const PROGRESS_TICK: Duration = Duration::from_millis(200);

/// `sync`'s progress bar on a terminal: delivered and failed counts and the
/// rate, read from the store's counts every [`PROGRESS_TICK`] while the run
/// goes (the worker itself reports nothing until it ends).
struct Progress {
    bar: indicatif::ProgressBar,
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    async fn start(app: &App) -> Progress {
        let store = app.store.clone();
        let start = store.run(|s| s.counts()).await.unwrap_or_default();
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(start.undelivered()),
            indicatif::ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} delivered, {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(format!("{} failed", start.failed));
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn({
            let bar = bar.clone();
            let stop = stop.clone();
            async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(PROGRESS_TICK) => {}
                        _ = stop.notified() => return,
                    }
                    let Ok(now) = store.run(|s| s.counts()).await else {
                        continue;
                    };
                    let delivered = now.delivered.saturating_sub(start.delivered);
                    let dead = now.dead.saturating_sub(start.dead);
                    if delivered > bar.length().unwrap_or(0) {
                        bar.set_length(delivered);
                    }
                    bar.set_position(delivered);
                    let rate = delivered as f64 / bar.elapsed().as_secs_f64().max(0.001);
                    bar.set_message(if dead > 0 {
                        format!("{} failed, {dead} dead ({rate:.1}/s)", now.failed)
                    } else {
                        format!("{} failed ({rate:.1}/s)", now.failed)
                    });
                }
            }
        });
        Progress { bar, stop, task }
    }

    /// Stops polling and clears the bar; the run's report is printed next.
    async fn finish(self) {
        self.stop.notify_one();
        let _ = self.task.await;
        self.bar.finish_and_clear();
    }
}
