//! Shared helpers of the integration tests: the real `mem0-queue` binary in
//! a fresh temp dir with a clean environment, an MCP client over its stdio,
//! and a few reads of the queue database.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tokio::io::AsyncReadExt;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_mem0-queue");

/// The longest any one MCP call or handshake may take before a test fails.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A fresh temp dir holding `home/` (HOME, so no real config is read) and
/// `data/` (the data dir, created by the binary itself).
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mem0-queue-test-")
            .tempdir()
            .expect("a temp dir");
        std::fs::create_dir(dir.path().join("home")).expect("the sandbox HOME");
        Self { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }

    pub fn db(&self) -> PathBuf {
        self.data_dir().join("queue.db")
    }

    /// The binary on this sandbox's data dir.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        self.command_in(&self.data_dir(), args)
    }

    /// The binary with a clean environment (only PATH, and HOME in the
    /// sandbox: no MEM0_* or XDG_* variables) and `--data-dir DIR`.
    pub fn command_in(&self, data_dir: &Path, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(BIN);
        c.env_clear()
            .env("HOME", self.home())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .arg("--data-dir")
            .arg(data_dir)
            .args(args);
        c
    }

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

/// A read-write connection to an existing queue database (never creates it).
pub fn connect(db: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
    c.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    c
}

/// How many entries the queue database holds, in any state.
pub fn count(db: &Path) -> i64 {
    connect(db)
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .expect("count entries")
}

/// Everything a save could change: every entry (id, state, content) and the
/// counters, as one comparable string.
pub fn fingerprint(db: &Path) -> String {
    let c = connect(db);
    let mut out = String::new();
    let mut rows = c
        .prepare("SELECT id, state, content FROM entries ORDER BY seq")
        .expect("prepare");
    let rows = rows
        .query_map([], |r| {
            Ok(format!(
                "{}|{}|{}\n",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?
            ))
        })
        .expect("query entries");
    for r in rows {
        out.push_str(&r.expect("row"));
    }
    let mut stats = c
        .prepare("SELECT key, value FROM stats ORDER BY key")
        .expect("prepare");
    let stats = stats
        .query_map([], |r| {
            Ok(format!(
                "{}={:?}\n",
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?
            ))
        })
        .expect("query stats");
    for s in stats {
        out.push_str(&s.expect("row"));
    }
    out
}

/// `PRAGMA integrity_check` of a queue database.
pub fn integrity(db: &Path) -> String {
    let c = connect(db);
    let rows: Vec<String> = c
        .prepare("PRAGMA integrity_check")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("integrity_check")
        .collect::<Result<_, _>>()
        .expect("rows");
    rows.join("; ")
}
