//! `mem0-queue serve`: the MCP server on stdio, with the background tasks
//! beside it: the delivery loop (the engine's; it leaves delivery to the
//! daemon while one runs) and the policy watcher (the engine's), the vault
//! and graph mirrors (the features').

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rmcp::ServiceExt;
use tokio::sync::{Notify, watch};

use crate::engine::app::App;
use crate::engine::config::{Env, ProcessEnv};
use crate::engine::project;
use crate::engine::service;
use crate::faces::mcp::Mem0QueueServer;
use crate::faces::runtime::{runtime, terminated};
use crate::features::{graph, notify, vault};

/// How long `serve` waits for its worker to give leases back at exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long the runtime waits, at exit, for its blocking threads. The one
/// reading stdin never returns while the client keeps stdin open (Claude
/// Code sends SIGTERM, then SIGKILL half a second later), so it is left
/// behind; a save's commit, also on a blocking thread, takes milliseconds
/// and was acknowledged only after it finished.
const RUNTIME_GRACE: Duration = Duration::from_millis(250);

/// The project of saves that name none, in a `serve` that Claude Code
/// started: the project of its `CLAUDE_PROJECT_DIR` (Claude Code sets it
/// to the session's project folder for the MCP servers it starts), by the
/// rule the hooks use for the session's `cwd`, so a save and the next
/// session's recall agree. Started by anything else (no
/// `CLAUDE_PROJECT_DIR`), `default_project` as before: such a client's
/// working directory says nothing about a project.
pub fn session_project(app: &App) -> String {
    let dir = ProcessEnv.var("CLAUDE_PROJECT_DIR").map(PathBuf::from);
    let home = ProcessEnv.var("HOME").map(PathBuf::from);
    project::project_of(app.config(), dir.as_deref(), home.as_deref()).project
}

/// `mem0-queue serve`: the MCP server on stdio plus the background worker.
pub fn run(app: Result<App, String>) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let result = rt.block_on(async move {
        let app = app.map(|mut a| {
            a.project = session_project(&a);
            Arc::new(a)
        });
        let nudge = Arc::new(Notify::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut background = Vec::new();
        match &app {
            Ok(app) => {
                background.push(tokio::spawn(service::delivery_loop(
                    app.clone(),
                    nudge.clone(),
                    stop_rx.clone(),
                    service::Role::Window,
                    |app| async move { notify::after_run(&app).await },
                )));
                background.push(tokio::spawn(service::watch_policy(app.clone(), stop_rx.clone())));
                background.push(tokio::spawn(vault::mirror_loop(app.clone(), stop_rx.clone())));
                background.push(tokio::spawn(graph::mirror_loop(app.clone(), stop_rx)));
            }
            Err(e) => {
                tracing::error!(error = %e, "the local queue cannot be used; every save will answer NOT QUEUED");
            }
        }
        let server = Mem0QueueServer::new(app, nudge);
        let serving = async {
            let running = server
                .serve(rmcp::transport::stdio())
                .await
                .context("the MCP handshake failed")?;
            running
                .waiting()
                .await
                .context("the MCP server task failed")?;
            anyhow::Ok(())
        };
        // SIGTERM or SIGINT ends it at any point, the handshake included.
        let result = tokio::select! {
            r = serving => r,
            _ = terminated() => Ok(()),
        };
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, futures::future::join_all(background)).await;
        result.map(|()| ExitCode::SUCCESS)
    });
    rt.shutdown_timeout(RUNTIME_GRACE);
    result
}
