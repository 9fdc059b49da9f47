//! `mem0-queue daemon`: the always-on process, one per user and data dir.
//!
//! It takes the data dir's daemon lock (`engine::daemon`; a second daemon
//! exits at once with [`exit::DAEMON_RUNNING`]), then runs, until SIGTERM
//! or SIGINT:
//! - the delivery loop in the daemon's role (`engine::service`): a save
//!   made anywhere is delivered within seconds, and the `serve` windows
//!   leave delivery to it;
//! - MCP over Streamable HTTP at `http://ADDR:PORT/mcp`
//!   (`faces::mcp::http`), behind the bearer token of `daemon.token`;
//! - the dashboard on the same port (`faces::dashboard`, its own token),
//!   when it listens on a loopback address;
//! - the vault and graph mirrors, as `serve` does.
//!
//! Its record in the lock file (pid, start, the two URLs) is what `status`,
//! `doctor` and `dashboard` read.

use std::future::IntoFuture;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::engine::app::App;
use crate::engine::config::{Resolved, Source};
use crate::engine::daemon::{self, Acquired, Lock, Record};
use crate::engine::paths::Paths;
use crate::engine::service::{self, Role};
use crate::faces::cli::args::DaemonArgs;
use crate::faces::cli::exit;
use crate::faces::dashboard::Dashboard;
use crate::faces::mcp::http;
use crate::faces::runtime::{runtime, terminated};
use crate::features::{graph, notify, vault};

/// How long the daemon waits at exit for its worker to give leases back,
/// and for open HTTP connections to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long the runtime waits at exit for its blocking threads (a save's
/// commit takes milliseconds and was acknowledged only once finished).
const RUNTIME_GRACE: Duration = Duration::from_millis(500);

/// `mem0-queue daemon`.
pub fn run(mut resolved: Resolved, paths: Paths, args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    if let Some(p) = args.port {
        resolved.config.daemon_port = p;
        resolved.sources.insert("daemon_port", Source::Flag);
    }
    if let Some(b) = &args.bind {
        resolved.config.daemon_bind = b.to_string();
        resolved.sources.insert("daemon_bind", Source::Flag);
    }
    if args.allow_remote {
        resolved.config.daemon_allow_remote = true;
        resolved.sources.insert("daemon_allow_remote", Source::Flag);
    }
    let addr = resolved.daemon_listen()?;
    paths.ensure_dir()?;
    let lock = match daemon::acquire(&paths)? {
        Acquired::Ours(lock) => lock,
        Acquired::Held(record) => {
            eprintln!("mem0-queue: {}", already_running(&paths, record.as_ref()));
            return Ok(exit::daemon_running());
        }
    };
    let app = Arc::new(super::open_app(resolved, paths)?);
    let token: Arc<str> = daemon::token(&app.paths)?.into();
    let rt = runtime()?;
    let result = rt.block_on(serve(app, lock, token, addr));
    rt.shutdown_timeout(RUNTIME_GRACE);
    result
}

/// What a second daemon says before it exits.
fn already_running(paths: &Paths, record: Option<&Record>) -> String {
    let who = match record {
        Some(r) => format!(
            " (pid {}, since {}{})",
            r.pid,
            crate::engine::text::rfc3339(r.since_ms),
            r.mcp_url
                .as_deref()
                .map(|u| format!(", MCP at {u}"))
                .unwrap_or_default()
        ),
        None => String::new(),
    };
    format!(
        "a daemon already runs for the data dir {}{who}; this one exits. One daemon per data \
         dir delivers for every window; `mem0-queue status` shows it.",
        paths.data_dir.display()
    )
}

async fn serve(
    app: Arc<App>,
    mut lock: Lock,
    token: Arc<str>,
    addr: SocketAddr,
) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "the daemon cannot listen on {addr}; if another program uses that port, set \
             daemon_port in the config (or pass --port)"
        )
    })?;
    let local = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let cancel = CancellationToken::new();
    let nudge = Arc::new(Notify::new());

    // The dashboard is for this machine's user alone: on 127.0.0.1 only
    // (its Host check admits `127.0.0.1:PORT` and `localhost:PORT`).
    let dashboard = if local.ip().is_loopback() && local.is_ipv4() {
        Some(Dashboard::new(app.clone(), local.port(), stop_rx.clone())?)
    } else {
        None
    };
    let mcp_url = daemon::mcp_url(local);
    let pid = std::process::id();
    lock.publish(&Record {
        pid,
        since_ms: app.clock.now_ms(),
        version: env!("CARGO_PKG_VERSION").into(),
        mcp_url: Some(mcp_url.clone()),
        dashboard_url: dashboard.as_ref().map(Dashboard::url),
    })?;

    // The daemon's tasks.
    let background = vec![
        tokio::spawn(service::delivery_loop(
            app.clone(),
            nudge.clone(),
            stop_rx.clone(),
            Role::Daemon,
            |app| async move { notify::after_run(&app).await },
        )),
        tokio::spawn(vault::mirror_loop(app.clone(), stop_rx.clone())),
        tokio::spawn(graph::mirror_loop(app.clone(), stop_rx.clone())),
        tokio::spawn(service::watch_policy(app.clone(), stop_rx.clone())),
    ];

    let access = http::Access {
        token,
        port: local.port(),
        remote: !local.ip().is_loopback(),
    };
    let mut router = http::router(Ok(app.clone()), nudge, access, cancel.clone());
    if let Some(d) = &dashboard {
        router = router.merge(d.router());
    }

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "daemon: pid {pid}, MCP at {mcp_url}")?;
        writeln!(
            out,
            "daemon: the token is in {}; `mem0-queue dashboard` prints the dashboard's URL",
            daemon::token_path(&app.paths).display()
        )?;
        out.flush()?;
    }
    app.log.line(&format!(
        "daemon pid {pid} started: MCP at {mcp_url}{}",
        if dashboard.is_some() {
            ", dashboard on the same port"
        } else {
            " (not a loopback address: no dashboard)"
        }
    ));

    let shutdown = {
        let cancel = cancel.clone();
        async move {
            terminated().await;
            let _ = stop_tx.send(true);
            cancel.cancel();
        }
    };
    // TCP_NODELAY: an MCP answer goes out as several small writes (the
    // headers, then the SSE events); with Nagle's algorithm each one after
    // the first waits for the client's delayed ACK, 40 ms on Linux.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
    });
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .into_future();
    let mut stop = stop_rx;
    let served = tokio::select! {
        r = server => r.context("the daemon's HTTP server failed"),
        // Open keep-alive connections may hold a graceful shutdown; bound it.
        _ = async {
            let _ = stop.changed().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
    };
    cancel.cancel();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, futures::future::join_all(background)).await;
    if let Some(d) = &dashboard {
        d.finish().await;
    }
    app.log.line(&format!("daemon pid {pid} stopped"));
    served.map(|()| ExitCode::SUCCESS)
}
