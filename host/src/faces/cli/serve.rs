//! `mem0-queue serve`: the MCP server on stdio, with the background tasks
//! beside it: the delivery loop (the engine's), the vault and graph mirrors
//! (the features').

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rmcp::ServiceExt;
use tokio::sync::{Notify, watch};

use crate::engine::app::App;
use crate::engine::service;
use crate::faces::mcp::Mem0QueueServer;
use crate::faces::runtime::{runtime, terminated};
use crate::features::{graph, notify, vault};

/// How long `serve` waits for its worker to give leases back at exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// `mem0-queue serve`: the MCP server on stdio plus the background worker.
pub fn run(app: Result<App, String>) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        let app = app.map(Arc::new);
        let nudge = Arc::new(Notify::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut background = Vec::new();
        match &app {
            Ok(app) => {
                background.push(tokio::spawn(service::delivery_loop(
                    app.clone(),
                    nudge.clone(),
                    stop_rx.clone(),
                    |app| async move { notify::after_run(&app).await },
                )));
                background.push(tokio::spawn(vault::mirror_loop(app.clone(), stop_rx.clone())));
                background.push(tokio::spawn(graph::mirror_loop(app.clone(), stop_rx)));
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
