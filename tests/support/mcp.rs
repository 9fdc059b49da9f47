//! An MCP client (rmcp) over the stdio of a real `mem0-queue serve`, and
//! reads of tool results.

use std::process::Stdio;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::sandbox::Sandbox;

/// The longest any one MCP call or handshake may take before a test fails.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Sandbox {
    /// `mem0-queue serve EXTRA...` on this sandbox, with an MCP client.
    pub async fn serve(&self, extra: &[&str]) -> Server {
        let mut args = vec!["serve"];
        args.extend_from_slice(extra);
        Server::start(self.command(&args)).await
    }
}

/// A running `serve` process and the rmcp client driving it.
pub struct Server {
    pub client: RunningService<RoleClient, ()>,
    pub pid: u32,
    stderr: tokio::task::JoinHandle<String>,
}

impl Server {
    /// Spawns `cmd` (a `serve` command) and does the MCP handshake.
    pub async fn start(cmd: std::process::Command) -> Server {
        Self::try_start(cmd).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like `start`, but a server that exits before the handshake is an
    /// `Err` holding what it said on stderr.
    pub async fn try_start(cmd: std::process::Command) -> Result<Server, String> {
        let (transport, stderr) = TokioChildProcess::builder(tokio::process::Command::from(cmd))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mem0-queue serve");
        let pid = transport.id().expect("the child's pid");
        let mut stderr = stderr.expect("stderr is piped");
        let stderr = tokio::spawn(async move {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s).await;
            s
        });
        match tokio::time::timeout(CALL_TIMEOUT, ().serve(transport)).await {
            Ok(Ok(client)) => Ok(Server {
                client,
                pid,
                stderr,
            }),
            Ok(Err(e)) => {
                let err = tokio::time::timeout(Duration::from_secs(10), stderr)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                Err(format!(
                    "the MCP handshake failed ({e}); server stderr: {}",
                    err.trim()
                ))
            }
            Err(_) => panic!("no MCP handshake within {CALL_TIMEOUT:?}"),
        }
    }

    /// Calls a tool; a transport or protocol error is returned, not a panic.
    pub async fn try_call(&self, tool: &str, args: Value) -> Result<CallToolResult, ServiceError> {
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(object(args));
        match tokio::time::timeout(CALL_TIMEOUT, self.client.call_tool(params)).await {
            Ok(r) => r,
            Err(_) => panic!("{tool} did not answer within {CALL_TIMEOUT:?}"),
        }
    }

    /// Calls a tool and expects a tool result (maybe an error result).
    pub async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        self.try_call(tool, args)
            .await
            .unwrap_or_else(|e| panic!("{tool} failed at the protocol level: {e}"))
    }

    pub async fn save(&self, args: Value) -> CallToolResult {
        self.call("mem0_save", args).await
    }

    /// Closes stdin (the MCP way to stop a stdio server), waits for the
    /// process to end, and returns everything it wrote on stderr.
    pub async fn stop(self) -> String {
        let _ = tokio::time::timeout(CALL_TIMEOUT, self.client.cancel()).await;
        tokio::time::timeout(CALL_TIMEOUT, self.stderr)
            .await
            .expect("stderr closes once the server has exited")
            .unwrap_or_default()
    }

    /// SIGKILLs the server process (for crash tests), then returns its stderr.
    pub async fn kill9(self) -> String {
        let status = std::process::Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL {} failed", self.pid);
        let out = tokio::time::timeout(CALL_TIMEOUT, self.stderr)
            .await
            .expect("stderr closes once the server is dead")
            .unwrap_or_default();
        let _ = tokio::time::timeout(CALL_TIMEOUT, self.client.cancel()).await;
        out
    }
}

pub fn object(v: Value) -> JsonObject {
    match v {
        Value::Object(o) => o,
        other => panic!("tool arguments must be an object, got {other}"),
    }
}

/// The text blocks of a tool result, joined by newlines.
pub fn text(r: &CallToolResult) -> String {
    let v = serde_json::to_value(r).expect("a tool result serializes");
    v["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

pub fn is_error(r: &CallToolResult) -> bool {
    r.is_error == Some(true)
}

pub fn structured(r: &CallToolResult) -> Value {
    r.structured_content.clone().unwrap_or(Value::Null)
}
