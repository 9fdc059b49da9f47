//! The dashboard tests' support: a queue seeded through the public store
//! API (pending, failed, dead and delivered entries spread over a week),
//! the real `mem0-queue dashboard` process, and raw HTTP requests to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mem0_queue::engine::store::{FailureRecord, Store};

use crate::db;
use crate::mem0_server::{FaultPlan, Kind, Mem0Server, ServerOptions};
use crate::sandbox::Sandbox;

const HOUR: i64 = 3_600_000;

/// The ids of what [`seed`] wrote, by state.
#[derive(Debug, Default)]
pub struct Seeded {
    pub pending: Vec<String>,
    pub failed: Vec<String>,
    pub dead: Vec<String>,
    pub delivered: Vec<String>,
}

fn add(store: &mut Store, project: &str, content: &str, created_at: i64) -> String {
    let e = db::entry(
        project,
        content,
        serde_json::json!({"tags": ["seeded"]}),
        created_at,
    );
    db::add(store, e).id
}

/// Fills `db` with `delivered` delivered entries over the last week,
/// `failed` failed and `dead` dead ones, then `pending` pending ones, all
/// through the store's own API (claims and recorded outcomes).
pub fn seed(db: &Path, pending: usize, failed: usize, dead: usize, delivered: usize) -> Seeded {
    std::fs::create_dir_all(db.parent().expect("a parent")).expect("the data dir");
    let mut store = Store::open(db).expect("open the queue");
    let now = mem0_queue::engine::clock::now_ms();
    let mut out = Seeded::default();
    for i in 0..delivered {
        // Spread over the last 6 days (inside the 7-day chart whatever the
        // hour), denser in the last day.
        let back = if i % 3 == 0 {
            (i as i64 % 24) * HOUR
        } else {
            (i as i64 * 7) % (6 * 24) * HOUR
        };
        let at = now - back - 60_000;
        let content = format!("Delivered memory {i}: the queue keeps saves local");
        let id = add(&mut store, "windsurf-project", &content, at);
        let remote = [format!("remote-{i}")];
        db::deliver_one(&mut store, "seed", &id, &remote, at, at + 30_000);
        out.delivered.push(id);
    }
    for i in 0..failed {
        let at = now - (i as i64 + 2) * HOUR;
        let content = format!("Failed memory {i}: the VPS was down");
        let id = add(&mut store, "windsurf-project", &content, at);
        let error = "HTTP 503 Service Unavailable";
        db::fail_one(
            &mut store,
            "seed",
            &id,
            &FailureRecord::Fail,
            error,
            at,
            at + 1000,
        );
        out.failed.push(id);
    }
    for i in 0..dead {
        let at = now - (i as i64 + 5) * HOUR;
        let content = format!("Dead memory {i}: <b>not</b> HTML, a secret-ish text");
        let id = add(&mut store, "secondbrain", &content, at);
        let record = FailureRecord::Dead {
            reason: "HTTP 422: the server rejected the memory".into(),
            auth: false,
        };
        db::fail_one(&mut store, "seed", &id, &record, "HTTP 422", at, at + 1000);
        out.dead.push(id);
    }
    for i in 0..pending {
        let at = now - (i as i64 * 17 + 3) * 60_000;
        let content = format!("Pending memory {i}: waiting for the worker");
        out.pending
            .push(add(&mut store, "windsurf-project", &content, at));
    }
    out
}

/// A running `mem0-queue dashboard --port 0`.
pub struct Dashboard {
    child: Child,
    pub url: String,
    pub port: u16,
    pub token: String,
    stdout: Option<BufReader<std::process::ChildStdout>>,
}

impl Dashboard {
    /// `mem0-queue dashboard --port 0 EXTRA` on `data_dir`, in the
    /// sandbox's clean environment (a test may add variables to it).
    pub fn command(sb: &Sandbox, data_dir: &Path, extra: &[&str]) -> Command {
        let mut c = sb.command_in(data_dir, &["dashboard", "--port", "0"]);
        c.args(extra);
        c
    }

    /// Spawns a [`Dashboard::command`] and reads the URL it prints.
    pub fn start(mut c: Command) -> Self {
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = c.spawn().expect("spawn mem0-queue dashboard");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let n = r.read_line(&mut line);
            let _ = tx.send((n.map(|_| line), r));
        });
        let (line, reader) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((Ok(line), r)) => (line, r),
            Ok((Err(e), _)) => panic!("reading the dashboard's stdout: {e}"),
            Err(_) => {
                let _ = child.kill();
                panic!("the dashboard printed no URL within 60 s")
            }
        };
        let url = line
            .trim_end()
            .strip_prefix("dashboard: ")
            .unwrap_or_else(|| panic!("the first line is `dashboard: URL`, got {line:?}"))
            .to_string();
        let rest = url
            .strip_prefix("http://127.0.0.1:")
            .unwrap_or_else(|| panic!("a 127.0.0.1 URL, got {url}"));
        let (port, query) = rest.split_once("/?token=").expect("/?token= in the URL");
        Dashboard {
            child,
            port: port.parse().expect("a port"),
            token: query.to_string(),
            url,
            stdout: Some(reader),
        }
    }

    /// SIGTERM, then what it printed on stdout after the URL line.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let mut rest = String::new();
        if let Some(mut r) = self.stdout.take() {
            let _ = r.read_to_string(&mut rest);
        }
        crate::wait::child(
            &mut self.child,
            Duration::from_secs(20),
            "the dashboard (after SIGTERM)",
        );
        rest
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Lowercased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("a JSON body ({e}): {}", String::from_utf8_lossy(&self.body))
        })
    }
}

/// Sends `head` (request line and headers, without the blank line) and
/// `body` to 127.0.0.1:`port` over a plain TCP socket, exactly as given:
/// nothing is added, so a test controls Host and every other header.
pub fn raw(port: u16, head: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the dashboard");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = head.replace('\n', "\r\n");
    if !req.ends_with("\r\n") {
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n");
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send");
    s.write_all(body).expect("send the body");
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read the answer");
    parse(&all)
}

fn parse(all: &[u8]) -> Answer {
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP answer, got {:?}", String::from_utf8_lossy(all)));
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = all[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..eol])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}

/// A GET with the given Host and extra header lines.
pub fn get(port: u16, path: &str, host: &str, extra: &[&str]) -> Answer {
    let mut head = format!("GET {path} HTTP/1.1\nHost: {host}\n");
    for h in extra {
        head.push_str(h);
        head.push('\n');
    }
    raw(port, &head, b"")
}

/// An OSS test Mem0 server that takes `latency` over each request, so that
/// a sync's progress can be seen moving.
pub async fn slow_server(seed: u64, latency: Duration) -> Mem0Server {
    let server = Mem0Server::start(ServerOptions {
        kind: Kind::Oss,
        api_key: None,
        seed,
    })
    .await;
    server.set_faults(FaultPlan {
        latency: Some(latency),
        ..FaultPlan::default()
    });
    server
}

/// The dashboard on `data_dir`, delivering to `server` one add at a time
/// (`concurrency=1`), started off the async runtime.
pub async fn syncing(sb: &Sandbox, data_dir: &Path, server: &Mem0Server) -> Dashboard {
    let mut c = Dashboard::command(sb, data_dir, &["--set", "concurrency=1"]);
    c.env("MEM0_API_URL", server.url());
    tokio::task::spawn_blocking(move || Dashboard::start(c))
        .await
        .expect("start the dashboard")
}
