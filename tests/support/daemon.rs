//! The daemon's tests' support: a real `mem0-queue daemon` process (started
//! on a free port, its MCP URL read from what it prints, stopped or killed),
//! and a small MCP client over Streamable HTTP (reqwest), for the suites
//! and benchmarks that drive many sessions from Rust. The independent
//! clients (the Python SDK, the MCP Inspector) are the daemon_http test's.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::sandbox::Sandbox;

/// How long a daemon may take to start listening (a debug build compiles
/// the policy component on its first start in a fresh data dir).
pub const START_LIMIT: Duration = Duration::from_secs(90);

/// A running `mem0-queue daemon`.
pub struct Daemon {
    child: Child,
    pub pid: u32,
    /// `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    pub port: u16,
    /// The bearer token (the data dir's `daemon.token`).
    pub token: String,
    /// Everything it printed on stdout after its first line, once it ends.
    rest: Option<std::thread::JoinHandle<String>>,
}

impl Daemon {
    /// `mem0-queue daemon --port 0 EXTRA` on `data_dir`, in the sandbox's
    /// clean environment (a test may add variables to it).
    pub fn command(sb: &Sandbox, data_dir: &Path, extra: &[&str]) -> Command {
        let mut c = sb.command_in(data_dir, &["daemon", "--port", "0"]);
        c.args(extra);
        c
    }

    /// A daemon on the sandbox's data dir that delivers to `url`, with the
    /// extra environment `env`, started off the async runtime (its start
    /// blocks on the first line).
    pub async fn delivering_to(sb: &Sandbox, url: &str, env: &[(&str, &str)]) -> Self {
        let mut c = Self::command(sb, &sb.data_dir(), &[]);
        c.env("MEM0_API_URL", url);
        for (k, v) in env {
            c.env(k, v);
        }
        let data = sb.data_dir();
        tokio::task::spawn_blocking(move || Self::start(c, &data))
            .await
            .expect("start the daemon")
    }

    /// Spawns a [`Daemon::command`] and waits for its first line,
    /// `daemon: pid N, MCP at URL`.
    pub fn start(mut c: Command, data_dir: &Path) -> Self {
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = c.spawn().expect("spawn mem0-queue daemon");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let rest = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let n = r.read_line(&mut line);
            let _ = tx.send(n.map(|_| line));
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut r, &mut rest);
            rest
        });
        let line = match rx.recv_timeout(START_LIMIT) {
            Ok(Ok(line)) if !line.is_empty() => line,
            Ok(_) => {
                let status = crate::wait::child(&mut child, START_LIMIT, "the daemon");
                panic!("the daemon exited before listening ({status})");
            }
            Err(_) => {
                let _ = child.kill();
                panic!("the daemon printed nothing within {START_LIMIT:?}")
            }
        };
        let url = line
            .trim_end()
            .split_once("MCP at ")
            .map(|(_, u)| u.to_string())
            .unwrap_or_else(|| panic!("`daemon: pid N, MCP at URL`, got {line:?}"));
        let port = url
            .strip_prefix("http://127.0.0.1:")
            .and_then(|r| r.strip_suffix("/mcp"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("a 127.0.0.1 URL, got {url}"));
        let token = std::fs::read_to_string(token_path(data_dir))
            .expect("the daemon wrote its token")
            .trim()
            .to_string();
        Daemon {
            pid: child.id(),
            child,
            url,
            port,
            token,
            rest: Some(rest),
        }
    }

    /// SIGTERM, then its exit status and what it printed after its first line.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let status = crate::wait::child(
            &mut self.child,
            Duration::from_secs(30),
            "the daemon (after SIGTERM)",
        );
        let rest = self
            .rest
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        (status, rest)
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill9(mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
        crate::wait::child(
            &mut self.child,
            Duration::from_secs(30),
            "the daemon (after SIGKILL)",
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The token file of a data dir.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("daemon.token")
}

/// The pids of the processes whose worker runs delivered something, from
/// the worker log's `run owner=pid-<pid>-… delivered=N` lines.
pub fn delivering_pids(worker_log: &str) -> Vec<(u32, u64)> {
    worker_log
        .lines()
        .filter_map(|l| {
            let owner = l.split(" run owner=pid-").nth(1)?;
            let pid = owner.split('-').next()?.parse().ok()?;
            let delivered = l
                .split(" delivered=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            Some((pid, delivered))
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The protocol revision this client asks for.
const PROTOCOL: &str = "2025-11-25";

/// The longest one HTTP request of the client may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A minimal MCP client over Streamable HTTP: one session, requests in
/// parallel on it (each POST carries its own response stream).
pub struct HttpMcp {
    http: reqwest::Client,
    url: String,
    token: String,
    session: String,
    protocol: String,
    next_id: AtomicU64,
}

impl HttpMcp {
    /// `initialize` and `notifications/initialized`.
    pub async fn connect(url: &str, token: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        let mut c = HttpMcp {
            http,
            url: url.into(),
            token: token.into(),
            session: String::new(),
            protocol: PROTOCOL.into(),
            next_id: AtomicU64::new(1),
        };
        let init = json!({
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "mem0-queue-testkit", "version": "0"},
        });
        let (result, session) = c.post_request("initialize", init).await?;
        c.session = session.ok_or("no Mcp-Session-Id on the initialize answer")?;
        if let Some(v) = result["protocolVersion"].as_str() {
            c.protocol = v.to_string();
        }
        let r = c
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        if r.status().as_u16() != 202 {
            return Err(format!("notifications/initialized: HTTP {}", r.status()));
        }
        Ok(c)
    }

    async fn post(&self, body: Value) -> Result<reqwest::Response, String> {
        let mut req = self
            .http
            .post(&self.url)
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Accept", "application/json, text/event-stream")
            .json(&body);
        if !self.session.is_empty() {
            req = req
                .header("Mcp-Session-Id", &self.session)
                .header("MCP-Protocol-Version", &self.protocol);
        }
        req.send().await.map_err(|e| e.to_string())
    }

    /// One request; its result (or the JSON-RPC error, as `Err`) and the
    /// session id of the answer.
    async fn post_request(
        &self,
        method: &str,
        params: Value,
    ) -> Result<(Value, Option<String>), String> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let r = self
            .post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        let status = r.status().as_u16();
        let session = r
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let sse = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let body = r.text().await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("{method}: HTTP {status}: {body}"));
        }
        let messages: Vec<Value> = if sse {
            sse_data(&body)
                .iter()
                .filter_map(|d| serde_json::from_str(d).ok())
                .collect()
        } else {
            serde_json::from_str(&body).into_iter().collect()
        };
        let answer = messages
            .into_iter()
            .find(|m| m["id"] == json!(id))
            .ok_or_else(|| format!("{method}: no answer in {body:?}"))?;
        if !answer["error"].is_null() {
            return Err(format!("{method}: {}", answer["error"]));
        }
        Ok((answer["result"].clone(), session))
    }

    /// A request's result.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, String> {
        self.post_request(method, params).await.map(|(r, _)| r)
    }

    /// `tools/call`: the tool's result (`content`, `structuredContent`, `isError`).
    pub async fn call(&self, tool: &str, args: Value) -> Result<Value, String> {
        self.request("tools/call", json!({"name": tool, "arguments": args}))
            .await
    }

    /// `mem0_save`: the id of a plain "queued" reply, or why not.
    pub async fn save(&self, args: Value) -> Result<String, String> {
        let r = self.call("mem0_save", args).await?;
        let s = &r["structuredContent"];
        if r["isError"] == json!(true) || s["status"] != "queued" {
            return Err(format!("not queued: {r}"));
        }
        s["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no id in {r}"))
    }

    /// Ends the session (DELETE).
    pub async fn close(self) {
        let _ = self
            .http
            .delete(&self.url)
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Mcp-Session-Id", &self.session)
            .send()
            .await;
    }
}

/// The `data:` payloads of an SSE body, one per event.
fn sse_data(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    for line in body.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if !cur.is_empty() {
                out.push(cur.join("\n"));
                cur.clear();
            }
        } else if let Some(d) = line.strip_prefix("data:") {
            cur.push(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_and_worker_log_owners() {
        let body = "id: 0\nretry: 3000\ndata: \n\n: ping\n\ndata: {\"id\":1}\n\ndata: a\ndata: b\n";
        assert_eq!(sse_data(body), ["", "{\"id\":1}", "a\nb"]);
        let log = "2026 run owner=pid-77-abc attempts=2 delivered=2 reconciled=0\n\
                   2026 run owner=pid-78-abd attempts=0 delivered=0 reconciled=0\n\
                   2026 serve pid 78: the daemon (pid 77) delivers\n";
        assert_eq!(delivering_pids(log), [(77, 2)]);
    }
}
