//! MCP over Streamable HTTP from the daemon (issue 16), with independent
//! clients:
//!
//! - the Python `mcp` SDK's Streamable HTTP client (tests/python/
//!   mcp_http_check.py): the tools listed over HTTP are those of stdio,
//!   byte for byte; saves get the same replies into one queue; no token or
//!   a wrong one → 401, a foreign Origin or Host → 403; two clients saving
//!   at once all get "queued", with distinct ids;
//! - a client killed with SIGKILL in the middle of `mem0_save` (the save
//!   held back by a write lock the test takes on the queue): the save is in
//!   the queue afterwards;
//! - the MCP Inspector CLI (pinned in tests/inspector) lists the tools with
//!   the `Authorization` header, and is refused without it;
//! - the real Claude Code CLI (pinned in tests/claude), after `install
//!   claude-code --http`, connects to the daemon;
//! - with `--bind 0.0.0.0 --allow-remote`, any Host may reach the endpoint,
//!   the token is still required, and there is no dashboard.
//!
//! Python's `mcp`, the Inspector and Claude Code are installed by .ci/run;
//! a test whose client is missing says so and passes, except under CI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mem0_queue_testkit::bin;
use mem0_queue_testkit::daemon::Daemon;
use mem0_queue_testkit::dash;
use mem0_queue_testkit::process::required;
use mem0_queue_testkit::sandbox::{Sandbox, clean_command, workspace_root};
use mem0_queue_testkit::wait;
use serde_json::Value;

/// The python script's exit code when its packages are missing.
const EXIT_SKIPPED: i32 = 3;

/// The longest the python check or a node CLI may run.
const CLIENT_LIMIT: Duration = Duration::from_secs(180);

/// How long the test holds the queue's write lock while a save waits on
/// it: well inside the store's 10 s busy timeout, long enough for the
/// client to be killed while its call is in the daemon.
const LOCK_HOLD: Duration = Duration::from_millis(1_500);

/// The core tools every client must see.
const CORE_TOOLS: [&str; 3] = ["mem0_save", "mem0_queue_status", "mem0_recent"];

fn script() -> PathBuf {
    workspace_root().join("tests/python/mcp_http_check.py")
}

fn python(args: &[&str]) -> Command {
    let mut c = Command::new("python3");
    c.arg(script()).args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MEM0_") {
            c.env_remove(k);
        }
    }
    c
}

fn start(sb: &Sandbox, extra: &[&str]) -> Daemon {
    Daemon::start(Daemon::command(sb, &sb.data_dir(), extra), &sb.data_dir())
}

#[test]
fn the_python_sdk_over_http_sees_stdio_s_tools_and_the_guard_holds() {
    let sb = Sandbox::new(bin!());
    let d = start(&sb, &[]);
    // The official schemas beside the repository (as tests/mcp_python.rs
    // finds them), or where MQ_MCP_SCHEMA_DIR says.
    let schemas = std::env::var_os("MQ_MCP_SCHEMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/mcp-schema"));
    assert!(
        schemas.join("2025-11-25.json").is_file(),
        "the MCP schema {} is missing",
        schemas.join("2025-11-25.json").display()
    );
    let data = sb.data_dir().display().to_string();
    let mut c = python(&[
        "check",
        bin!(),
        &d.url,
        &d.token,
        &data,
        &schemas.display().to_string(),
    ]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = match c.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            required(None::<()>, "python3 is not installed");
            return;
        }
        Err(e) => panic!("cannot run python3: {e}"),
    };
    let out = wait::output(child, CLIENT_LIMIT, "the python HTTP check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    if out.status.code() == Some(EXIT_SKIPPED) {
        required(
            None::<()>,
            "the python mcp SDK is missing (pip install mcp jsonschema)",
        );
        return;
    }
    assert!(
        out.status.success() && stdout.contains("PASSED"),
        "the python HTTP check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let (status, _) = d.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn a_client_killed_in_the_middle_of_a_save_loses_nothing() {
    let sb = Sandbox::new(bin!());
    let d = start(&sb, &[]);
    let content = "saved by a client killed mid-call: the commit finishes anyway";

    // Hold the queue's write lock, so the daemon's save waits inside the call.
    let mut conn = rusqlite::Connection::open(sb.db()).expect("open the queue");
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .expect("take the write lock");
    let mut c = python(&["save", &d.url, &d.token, content]);
    c.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = match c.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            required(None::<()>, "python3 is not installed");
            return;
        }
        Err(e) => panic!("cannot run python3: {e}"),
    };
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    match lines.next() {
        Some(Ok(l)) if l == "calling" => {}
        Some(Ok(l)) if l.starts_with("SKIPPED") => {
            let _ = child.wait();
            required(
                None::<()>,
                "the python mcp SDK is missing (pip install mcp jsonschema)",
            );
            return;
        }
        other => panic!("the client did not start its call: {other:?}"),
    }
    std::thread::sleep(LOCK_HOLD / 2);
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the call cannot have answered: the queue is locked"
    );
    child.kill().expect("SIGKILL the client");
    let _ = child.wait();
    std::thread::sleep(LOCK_HOLD / 2);
    tx.rollback().expect("release the write lock");
    drop(conn);

    let found = wait::until(Duration::from_secs(15), || {
        let conn = rusqlite::Connection::open(sb.db()).expect("open");
        conn.query_row(
            "SELECT count(*) FROM entries WHERE content = ?1",
            [content],
            |r| r.get::<_, i64>(0),
        )
        .unwrap_or(0)
            == 1
    });
    assert!(found, "the save of the killed client is in the queue");
    let (status, _) = d.stop();
    assert!(status.success(), "{status}");
}

/// The pinned Inspector, or why not.
fn inspector() -> Option<PathBuf> {
    let dir = workspace_root().join("tests/inspector");
    let present = dir
        .join("node_modules/@modelcontextprotocol/inspector/package.json")
        .exists();
    required(
        present.then_some(dir),
        "the MCP Inspector is not installed under tests/inspector \
         (npm install --silent --no-package-lock --prefix tests/inspector)",
    )
}

fn inspector_cli(dir: &Path, url: &str, extra: &[&str]) -> std::process::Output {
    let mut c = Command::new("npx");
    c.current_dir(dir)
        .args([
            "--no-install",
            "@modelcontextprotocol/inspector",
            "--cli",
            url,
            "--transport",
            "http",
            "--method",
            "tools/list",
        ])
        .args(extra)
        .stdin(Stdio::null());
    wait::run(c, CLIENT_LIMIT)
}

#[test]
fn the_inspector_cli_lists_the_tools_with_the_token_only() {
    let Some(dir) = inspector() else { return };
    let sb = Sandbox::new(bin!());
    let d = start(&sb, &[]);
    let header = format!("Authorization: Bearer {}", d.token);
    let out = inspector_cli(&dir, &d.url, &["--header", &header]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inspector: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).expect("the Inspector prints JSON");
    let names: Vec<&str> = v["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for t in CORE_TOOLS {
        assert!(names.contains(&t), "{t} in {names:?}");
    }

    let out = inspector_cli(&dir, &d.url, &[]);
    assert!(!out.status.success(), "refused without the token");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("mem0_save"), "{all}");
    let (status, _) = d.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn claude_code_registered_over_http_connects_to_the_daemon() {
    let exe = workspace_root().join("tests/claude/node_modules/.bin/claude");
    let Some(exe) = required(
        exe.exists().then_some(exe),
        "the Claude Code CLI is not installed under tests/claude \
         (npm install --silent --no-package-lock --prefix tests/claude)",
    ) else {
        return;
    };
    let sb = Sandbox::new(bin!());
    let d = start(&sb, &[]);
    let port = format!("daemon_port={}", d.port);
    let out = wait::run(
        sb.ops_command(&["--set", &port, "install", "claude-code", "--http"]),
        wait::PROCESS_LIMIT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("the token is a secret"), "{text}");

    let project = sb.home().join("project");
    std::fs::create_dir(&project).expect("a project dir");
    let mut c = clean_command(&exe, &sb.home(), Some("/usr/bin:/bin".as_ref()));
    c.args(["mcp", "get", "mem0-queue"])
        .current_dir(&project)
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("MCP_TIMEOUT", "15000")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null());
    let out = wait::run(c, Duration::from_secs(60));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("Type: http") && shown.contains(&d.url),
        "{shown}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("Connected"),
        "Claude Code connects with the registered header:\n{shown}"
    );
    assert!(!shown.contains("Failed"), "{shown}");
    let (status, _) = d.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn a_remote_bind_takes_any_host_but_still_wants_the_token() {
    let sb = Sandbox::new(bin!());
    let d = start(&sb, &["--bind", "0.0.0.0", "--allow-remote"]);
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;
    let post = |host: &str, auth: bool| {
        let mut head = format!(
            "POST /mcp HTTP/1.1\nHost: {host}\nContent-Type: application/json\n\
             Accept: application/json, text/event-stream\n"
        );
        if auth {
            head.push_str(&format!("Authorization: Bearer {}\n", d.token));
        }
        dash::raw(d.port, &head, init.as_bytes())
    };
    let far = format!("192.0.2.7:{}", d.port);
    assert_eq!(
        post(&far, true).status,
        200,
        "a remote host name is accepted"
    );
    assert_eq!(post(&far, false).status, 401, "the token is still required");
    // No dashboard on a non-loopback address.
    let page = dash::get(d.port, "/", &format!("127.0.0.1:{}", d.port), &[]);
    assert!(matches!(page.status, 401 | 404), "no dashboard: {page:?}");
    let out = wait::run(
        sb.command(&["status", "--json", "--no-probe"]),
        wait::PROCESS_LIMIT,
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["daemon"]["mcp_url"], d.url.as_str());
    let (status, _) = d.stop();
    assert!(status.success(), "{status}");
}
