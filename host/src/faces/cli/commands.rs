//! The long-running and operational commands: `serve`, `sync`, `status`,
//! `list`, `purge`. Each builds its own tokio runtime where it needs one.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rmcp::ServiceExt;
use tokio::sync::{Notify, watch};

use crate::engine::app::App;
use crate::engine::config::Resolved;
use crate::engine::mem0::ClientError;
use crate::engine::paths::Paths;
use crate::engine::store::{State, Store};
use crate::engine::worker::{Settings, Stop};
use crate::faces::cli::exit;
use crate::faces::mcp::Mem0QueueServer;
use crate::features::status::Severity;

/// Worker threads of the async runtime. Two: the work is I/O bound, and
/// the machine this runs on is a laptop shared with an editor.
const WORKER_THREADS: usize = 2;

/// How long `serve` waits for its worker to give leases back at exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Resolves when SIGTERM or SIGINT arrives.
pub(crate) async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// `mem0-queue serve`: the MCP server on stdio plus the background worker.
pub fn serve(app: Result<App, String>) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        let app = app.map(Arc::new);
        let nudge = Arc::new(Notify::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut background = Vec::new();
        match &app {
            Ok(app) => {
                background.push(tokio::spawn(serve_loop(app.clone(), nudge.clone(), stop_rx.clone())));
                background.push(tokio::spawn(crate::features::vault::mirror_loop(app.clone(), stop_rx.clone())));
                background.push(tokio::spawn(mirror_loop(app.clone(), stop_rx)));
            }
            Err(e) => {
                tracing::error!(error = %e, "the local queue cannot be used; every save will answer NOT QUEUED");
            }
        }
        let server = Mem0QueueServer::new(app, nudge);
        let result = async {
            let running = server
                .serve(rmcp::transport::stdio())
                .await
                .context("the MCP handshake failed")?;
            tokio::select! {
                r = running.waiting() => { r.context("the MCP server task failed")?; }
                _ = terminated() => {}
            }
            anyhow::Ok(())
        }
        .await;
        let _ = stop_tx.send(true);
        for task in background {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, task).await;
        }
        result.map(|()| ExitCode::SUCCESS)
    })
}

/// The serve loop: a run every `sync_interval`, and right after a save,
/// unless the breaker says the server is down and its probe is not due.
async fn serve_loop(app: Arc<App>, nudge: Arc<Notify>, mut stop: watch::Receiver<bool>) {
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
            crate::features::notify::after_run(&app).await;
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

/// `mem0-queue sync`.
pub fn sync(app: App, max_duration: Option<Duration>) -> anyhow::Result<ExitCode> {
    let mut settings = Settings::from_config(app.config());
    settings.max_duration = max_duration;
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
        crate::features::notify::after_run(&app).await;
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

/// `mem0-queue status`: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
pub fn status(
    resolved: Resolved,
    paths: Paths,
    json: bool,
    probe: bool,
) -> anyhow::Result<ExitCode> {
    let app = match App::open(resolved, paths.clone()) {
        Ok(a) => a,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"status": "unknown", "error": e.to_string(), "exit_code": exit::status_code(Severity::Unknown)})
                );
            } else {
                println!(
                    "UNKNOWN: cannot read the queue at {}: {e}",
                    paths.db().display()
                );
            }
            return Ok(exit::status(Severity::Unknown));
        }
    };
    let report = runtime()?.block_on(crate::features::status::gather(&app, probe));
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            println!("UNKNOWN: cannot read the queue: {e}");
            return Ok(exit::status(Severity::Unknown));
        }
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&exit::status_json(&report))?
        )?;
    } else {
        out.write_all(report.text().as_bytes())?;
    }
    Ok(exit::status(report.severity()))
}

/// `mem0-queue list`.
pub fn list(
    store: &Store,
    state: State,
    show_content: bool,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let rows = store.list(state, limit, show_content)?;
    let now = crate::engine::clock::now_ms();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<36}  {:>10}  {:>8}  {:<16}  last error",
        "id", "age", "attempts", "project"
    )?;
    for r in rows {
        let age = humantime::format_duration(Duration::from_secs(
            ((now - r.created_at).max(0) / 1000) as u64,
        ));
        writeln!(
            out,
            "{:<36}  {:>10}  {:>8}  {:<16}  {}",
            r.id,
            age.to_string()
                .split(' ')
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
            r.attempts,
            r.project,
            r.dead_reason.or(r.last_error).unwrap_or_default()
        )?;
        if let Some(c) = r.content {
            writeln!(out, "    {c}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `mem0-queue purge --dead`.
pub fn purge(
    store: &mut Store,
    older_than: Option<Duration>,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let before = older_than.map(|d| crate::engine::clock::now_ms() - d.as_millis() as i64);
    let candidates = store
        .list(State::Dead, usize::MAX >> 1, false)?
        .into_iter()
        .filter(|r| before.is_none_or(|b| r.created_at < b))
        .count();
    if candidates == 0 {
        println!("no dead entries to purge");
        return Ok(ExitCode::SUCCESS);
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "mem0-queue: purge would delete {candidates} dead entries; pass --yes to confirm"
            );
            return Ok(ExitCode::FAILURE);
        }
        eprint!("delete {candidates} dead entries for good? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !answer.trim().eq_ignore_ascii_case("y") {
            println!("nothing deleted");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let n = store.purge_dead(before)?;
    println!("{n} dead entries deleted");
    Ok(ExitCode::SUCCESS)
}

/// `mem0-queue search`.
pub fn search(
    app: App,
    query: &str,
    project: Option<String>,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let r = runtime()?.block_on(crate::features::search::search(&app, query, project, limit))?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
    } else {
        writeln!(out, "{}", r.text().trim_end())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `mem0-queue graph import|mirror`.
pub fn graph(
    app: App,
    command: &crate::faces::cli::args::GraphCommand,
) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        if let crate::faces::cli::args::GraphCommand::Import { path } = command {
            let g = crate::features::graph::parse_jsonl(path)?;
            let now = app.clock.now_ms();
            let (e, o, r) = app.store.run(move |s| s.graph_import(&g, now)).await?;
            println!("imported {e} new entities, {o} new observations, {r} new relations");
        }
        match app.mirror_graph().await? {
            Some(m) => println!(
                "mirrored to {}: {} entities, {} observations, {} relations added",
                app.config()
                    .graph_jsonl
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                m.entities_added,
                m.observations_added,
                m.relations_added
            ),
            None if matches!(command, crate::faces::cli::args::GraphCommand::Mirror) => {
                eprintln!("mem0-queue: no graph_jsonl is configured; nothing to mirror");
                return Ok(exit::config());
            }
            None => {}
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Keeps the graph JSONL mirror up to date while `serve` runs: after saves,
/// at most once per [`MIRROR_DEBOUNCE`], and once more at shutdown.
async fn mirror_loop(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    if app.config().graph_jsonl.is_none() {
        return;
    }
    loop {
        let stopping = tokio::select! {
            _ = app.graph_dirty.notified() => false,
            _ = stop.changed() => true,
        };
        if !stopping {
            tokio::time::sleep(MIRROR_DEBOUNCE).await;
        }
        if let Err(e) = app.mirror_graph().await {
            tracing::warn!(error = %e, "the graph JSONL mirror failed; it is retried after the next save");
        }
        if stopping || *stop.borrow() {
            return;
        }
    }
}

/// The pause that gathers a burst of saves into one mirror write.
const MIRROR_DEBOUNCE: Duration = Duration::from_millis(300);
