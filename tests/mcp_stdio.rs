//! `mem0-queue serve` driven over stdio by the rmcp client: the three tools'
//! replies, what a save leaves in the SQLite queue, dedup, the default
//! project (and the folder's project when Claude Code starts it), the tool annotations and schemas, and a stdout that carries only
//! JSON-RPC.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mem0_queue::engine::store::{State, Store};
use mem0_queue_testkit::{
    bin,
    db::count,
    mcp::{Server, is_error, structured, text},
    sandbox::Sandbox,
    wait,
};
use serde_json::{Value, json};

/// A save on a small queue answers well inside this (debug build included).
const FAST: Duration = Duration::from_secs(2);

#[tokio::test]
async fn save_replies_queued_fast_and_the_entry_is_on_disk() {
    let sb = Sandbox::new(bin!());
    let server = sb.serve(&[]).await;
    let content = "Decision: the queue is one SQLite file in WAL mode";
    let started = Instant::now();
    let r = server
        .save(json!({
            "content": content,
            "project": "windsurf-project",
            "agent_id": "claude",
            "metadata": {"tags": ["decision"], "entities": ["sqlite"]}
        }))
        .await;
    let elapsed = started.elapsed();
    assert!(!is_error(&r), "save failed: {}", text(&r));
    assert!(elapsed < FAST, "the save took {elapsed:?}");

    let s = structured(&r);
    let id = s["id"].as_str().expect("structuredContent.id").to_string();
    uuid_like(&id);
    assert_eq!(s["status"], "queued", "{s}");
    assert_eq!(s["queue_depth"], 1, "{s}");
    assert_eq!(s["deduplicated"], false, "{s}");
    assert!(s["alerts"].is_array(), "alerts must be a list: {s}");
    let t = text(&r);
    assert!(t.starts_with("queued"), "reply text: {t}");
    assert!(t.contains(&id), "the reply text names the id: {t}");

    // The reply came after the commit: the entry is there, from another
    // connection, while the server still runs.
    let store = Store::open(&sb.db()).expect("open the queue");
    let e = store.get(&id, true).expect("the saved entry");
    assert_eq!(e.content.as_deref(), Some(content));
    assert_eq!(e.project, "windsurf-project");
    assert_eq!(e.agent_id.as_deref(), Some("claude"));
    assert_eq!(e.state, State::Pending);
    assert_eq!(
        e.metadata,
        json!({"tags": ["decision"], "entities": ["sqlite"]})
    );
    assert_eq!(store.stats().expect("stats").total_queued, 1);
    drop(store);

    let stderr = server.stop().await;
    assert!(
        !stderr.contains("WAL mode"),
        "stderr holds the memory text: {stderr}"
    );
}

#[tokio::test]
async fn the_same_text_twice_is_one_entry() {
    let sb = Sandbox::new(bin!());
    let server = sb.serve(&[]).await;
    let args = json!({"content": "Preference: answers in French", "project": "p1"});
    let first = server.save(args.clone()).await;
    let second = server.save(args).await;
    assert!(!is_error(&first) && !is_error(&second));
    let (a, b) = (structured(&first), structured(&second));
    assert_eq!(a["id"], b["id"], "same text, same id: {a} / {b}");
    assert_eq!(a["deduplicated"], false);
    assert_eq!(b["deduplicated"], true, "{b}");
    assert_eq!(b["status"], "queued");
    assert_eq!(b["queue_depth"], 1);
    assert!(
        text(&second).contains("already in the queue"),
        "{}",
        text(&second)
    );
    assert_eq!(count(&sb.db()), 1);

    // The project is part of the key: the same text elsewhere is its own entry.
    let other = server
        .save(json!({"content": "Preference: answers in French", "project": "p2"}))
        .await;
    assert_ne!(structured(&other)["id"], a["id"]);
    assert_eq!(structured(&other)["deduplicated"], false);
    assert_eq!(count(&sb.db()), 2);
    server.stop().await;
}

async fn project_of_a_save_without_one(sb: &Sandbox, server: Server) -> String {
    let r = server.save(json!({"content": "no project named"})).await;
    assert!(!is_error(&r), "{}", text(&r));
    let id = structured(&r)["id"].as_str().expect("id").to_string();
    server.stop().await;
    Store::open(&sb.db())
        .expect("open")
        .get(&id, false)
        .expect("entry")
        .project
}

#[tokio::test]
async fn the_default_project_is_default_when_nothing_is_configured() {
    let sb = Sandbox::new(bin!());
    let server = sb.serve(&[]).await;
    assert_eq!(project_of_a_save_without_one(&sb, server).await, "default");
}

#[tokio::test]
async fn the_default_project_comes_from_the_set_flag() {
    let sb = Sandbox::new(bin!());
    let server = sb.serve(&["--set", "default_project=flag-project"]).await;
    assert_eq!(
        project_of_a_save_without_one(&sb, server).await,
        "flag-project"
    );
}

#[tokio::test]
async fn the_default_project_comes_from_the_environment() {
    let sb = Sandbox::new(bin!());
    let mut cmd = sb.command(&["serve"]);
    cmd.env("MEM0_QUEUE_DEFAULT_PROJECT", "env-project");
    let server = Server::start(cmd).await;
    assert_eq!(
        project_of_a_save_without_one(&sb, server).await,
        "env-project"
    );
}

/// Claude Code starts `serve` with `CLAUDE_PROJECT_DIR` set to the
/// session's folder (checked on Claude Code 2.1.332, for plugin and
/// user-scope servers): a save naming no project goes to that folder's
/// project, by the rule the SessionStart hook uses for its `cwd`, so the
/// next session's recall there shows it.
#[tokio::test]
async fn the_default_project_is_claude_project_dirs_and_recall_there_shows_the_save() {
    let sb = Sandbox::new(bin!());
    let repo = sb.root().join("src/My Shop");
    std::fs::create_dir_all(repo.join(".git")).expect("a repository");
    let sub = repo.join("web");
    std::fs::create_dir_all(&sub).expect("a subfolder");
    let mut cmd = sb.command(&["serve"]);
    cmd.env("CLAUDE_PROJECT_DIR", &sub)
        .env("MEM0_QUEUE_DEFAULT_PROJECT", "unused");
    let server = Server::start(cmd).await;
    assert_eq!(project_of_a_save_without_one(&sb, server).await, "My-Shop");

    // A [projects] entry wins over the repository.
    let cfg = sb.file(
        "config.toml",
        format!("[projects]\n\"{}\" = \"shop\"\n", repo.display()).as_bytes(),
    );
    let mut cmd = sb.command(&["serve"]);
    cmd.env("CLAUDE_PROJECT_DIR", &sub)
        .env("MEM0_QUEUE_CONFIG", &cfg);
    let server = Server::start(cmd).await;
    assert_eq!(project_of_a_save_without_one(&sb, server).await, "shop");

    // The session-start hook in the same folder recalls it.
    let mut hook = sb.command(&["hook", "session-start"]);
    hook.env("MEM0_QUEUE_CONFIG", &cfg);
    let payload = json!({"session_id": "s", "cwd": sub, "hook_event_name": "SessionStart", "source": "startup"});
    let (o, _) = mem0_queue_testkit::ops::hook(hook, Some(payload.to_string().as_bytes()));
    let out = String::from_utf8_lossy(&o.stdout);
    let v: Value = serde_json::from_str(&out).expect("the hook's JSON");
    let ctx = v["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .expect("context");
    assert!(ctx.starts_with("Memories of project \"shop\""), "{ctx}");
    assert!(ctx.contains("[queued] no project named"), "{ctx}");
}

#[tokio::test]
async fn recent_lists_newest_first_and_bounds_its_limit() {
    let sb = Sandbox::new(bin!());
    let server = sb.serve(&[]).await;
    let mut ids = Vec::new();
    for (i, project) in ["alpha", "beta", "alpha"].iter().enumerate() {
        let r = server
            .save(json!({"content": format!("memory number {i}"), "project": project}))
            .await;
        ids.push(structured(&r)["id"].as_str().expect("id").to_string());
    }

    let r = server.call("mem0_recent", json!({})).await;
    assert!(!is_error(&r), "{}", text(&r));
    let all = structured(&r);
    let got: Vec<&str> = all["memories"]
        .as_array()
        .expect("memories")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(got, newest_first);
    let m = &structured(&r)["memories"][0];
    assert_eq!(m["content"], "memory number 2");
    assert_eq!(m["state"], "pending");
    assert!(text(&r).contains("memory number 0"), "{}", text(&r));

    let r = server.call("mem0_recent", json!({"limit": 2})).await;
    assert_eq!(structured(&r)["memories"].as_array().map(Vec::len), Some(2));
    let r = server.call("mem0_recent", json!({"limit": 1})).await;
    assert_eq!(structured(&r)["memories"][0]["id"], ids[2].as_str());
    let r = server.call("mem0_recent", json!({"limit": 100})).await;
    assert!(!is_error(&r));
    assert_eq!(structured(&r)["memories"].as_array().map(Vec::len), Some(3));
    let r = server.call("mem0_recent", json!({"project": "beta"})).await;
    let beta = structured(&r)["memories"].clone();
    assert_eq!(beta.as_array().map(Vec::len), Some(1), "{beta}");
    assert_eq!(beta[0]["id"], ids[1].as_str());

    for bad in [0, 101, -1] {
        let r = server.call("mem0_recent", json!({"limit": bad})).await;
        assert!(is_error(&r), "limit {bad} must be an error: {}", text(&r));
        assert!(
            text(&r).contains("between 1 and 100"),
            "limit {bad}: {}",
            text(&r)
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn status_says_mem0_is_not_configured() {
    let sb = Sandbox::new(bin!());
    let server = sb.serve(&[]).await;
    server.save(json!({"content": "one pending memory"})).await;
    let r = server.call("mem0_queue_status", json!({})).await;
    assert!(!is_error(&r), "{}", text(&r));
    let t = text(&r);
    assert!(t.contains("not configured"), "status text: {t}");
    assert!(t.contains("1 pending"), "status text: {t}");
    let s = structured(&r);
    assert_eq!(s["mem0"]["reachability"]["status"], "not_configured", "{s}");
    assert_eq!(s["counts"]["pending"], 1, "{s}");
    assert_eq!(s["stats"]["total_queued"], 1, "{s}");
    server.stop().await;
}

/// The `format` values JSON Schema 2020-12 defines.
const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

fn nonstandard_formats(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(f)) = o.get("format")
                && !STANDARD_FORMATS.contains(&f.as_str())
            {
                out.push(format!("{path}/format = {f}"));
            }
            for (k, v) in o {
                nonstandard_formats(v, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                nonstandard_formats(v, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn tools_list_has_honest_annotations_and_standard_schemas() {
    let sb = Sandbox::new(bin!());
    let server = sb.serve(&[]).await;
    let tools = server.client.list_all_tools().await.expect("tools/list");
    let tools: Vec<Value> = tools
        .iter()
        .map(|t| serde_json::to_value(t).expect("tool json"))
        .collect();
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for want in ["mem0_save", "mem0_queue_status", "mem0_recent"] {
        assert!(names.contains(&want), "{want} is not listed: {names:?}");
    }
    let tool = |name: &str| {
        tools
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .expect("tool")
    };

    let save = tool("mem0_save");
    let a = &save["annotations"];
    assert_eq!(a["idempotentHint"], true, "{a}");
    assert_eq!(a["readOnlyHint"], false, "{a}");
    assert_eq!(a["destructiveHint"], false, "{a}");
    assert_eq!(save["inputSchema"]["required"], json!(["content"]));
    for name in ["mem0_queue_status", "mem0_recent"] {
        let a = &tool(name)["annotations"];
        assert_eq!(a["readOnlyHint"], true, "{name}: {a}");
    }

    let mut bad = Vec::new();
    for t in &tools {
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        assert!(t["description"].as_str().is_some_and(|d| !d.is_empty()));
        nonstandard_formats(
            &t["inputSchema"],
            t["name"].as_str().unwrap_or("?"),
            &mut bad,
        );
    }
    assert!(bad.is_empty(), "non-standard formats: {bad:?}");
    // The one integer argument stays an integer.
    let limit = &tool("mem0_recent")["inputSchema"]["properties"]["limit"];
    assert!(limit.to_string().contains("integer"), "{limit}");
    // The lifecycle tools: the changes say they destroy, the reads that
    // they only read.
    for name in ["mem0_update", "mem0_delete", "mem0_forget"] {
        let a = &tool(name)["annotations"];
        assert_eq!(
            (&a["destructiveHint"], &a["readOnlyHint"]),
            (&json!(true), &json!(false)),
            "{name}: {a}"
        );
    }
    for name in ["mem0_get", "mem0_list", "mem0_entities"] {
        let a = &tool(name)["annotations"];
        assert_eq!(a["readOnlyHint"], true, "{name}: {a}");
    }
    assert_eq!(
        tool("mem0_forget")["inputSchema"]["required"],
        json!(["project"])
    );
    server.stop().await;
}

/// Regression (found with the Claude Code plugin): `serve` did not stop on
/// SIGTERM while its client kept stdin open, because the runtime waited at
/// exit for the thread blocked reading stdin; Claude Code then killed it
/// with SIGKILL. It exits, successfully, on SIGTERM now.
#[test]
fn serve_exits_on_sigterm_while_stdin_stays_open() {
    let sb = Sandbox::new(bin!());
    let mut child = sb
        .command(&["serve"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = line_reader(child.stdout.take().expect("stdout"));
    writeln!(
        stdin,
        "{}",
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "sigterm-test", "version": "0"}}})
    )
    .expect("write");
    stdin.flush().expect("flush");
    let line = stdout
        .recv_timeout(Duration::from_secs(30))
        .expect("the handshake's reply");
    assert!(line.contains("mem0-queue"), "{line}");
    // SAFETY: kill(2) on the child this test spawned and has not reaped.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = wait::child(&mut child, Duration::from_secs(10), "serve after SIGTERM");
    assert!(status.success(), "{status}");
    drop(stdin);
}

/// A line reader with a deadline over a child's pipe.
fn line_reader(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn stdout_carries_only_json_rpc_and_stderr_no_memory_text() {
    let sb = Sandbox::new(bin!());
    let mut child = sb
        .command(&["serve"])
        .env("MEM0_QUEUE_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = line_reader(child.stdout.take().expect("stdout"));
    let stderr = line_reader(child.stderr.take().expect("stderr"));
    let secret = "the-memory-text-7f3a9 must never reach stderr";

    let mut send = |v: Value| {
        writeln!(stdin, "{v}").expect("write a request");
        stdin.flush().expect("flush");
    };
    let mut lines = Vec::new();
    let expect_reply = |id: i64, lines: &mut Vec<String>| loop {
        let line = stdout
            .recv_timeout(Duration::from_secs(30))
            .expect("a reply on stdout within 30 s");
        lines.push(line.clone());
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
        assert_eq!(v["jsonrpc"], "2.0", "not JSON-RPC: {line}");
        if v["id"] == id {
            return v;
        }
    };

    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw-pipe-test", "version": "0"}}}),
    );
    let init = expect_reply(1, &mut lines);
    assert_eq!(init["result"]["serverInfo"]["name"], "mem0-queue", "{init}");
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    expect_reply(2, &mut lines);
    send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "mem0_save", "arguments": {"content": secret}}}));
    let saved = expect_reply(3, &mut lines);
    assert_eq!(
        saved["result"]["structuredContent"]["status"], "queued",
        "{saved}"
    );
    send(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "mem0_save", "arguments": {"content": 5}}}));
    let refused = expect_reply(4, &mut lines);
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    send(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "mem0_queue_status", "arguments": {}}}));
    expect_reply(5, &mut lines);
    drop(stdin); // EOF: the server exits.

    // Whatever else reaches stdout before exit must be JSON-RPC too.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(line) = stdout.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
        assert_eq!(v["jsonrpc"], "2.0", "not JSON-RPC: {line}");
        lines.push(line);
    }
    let status = wait::child(&mut child, Duration::from_secs(30), "the server");
    assert!(status.success(), "serve exited with {status} at stdin EOF");
    // The reader thread ends at EOF; collect until then, bounded.
    let mut err = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok(line) = stderr.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        err.push_str(&line);
        err.push('\n');
    }
    assert!(
        !err.contains("7f3a9"),
        "stderr (at debug level) holds the memory text:\n{err}"
    );
    assert_eq!(count(&sb.db()), 1);
}

fn uuid_like(id: &str) {
    let parts: Vec<usize> = id.split('-').map(str::len).collect();
    assert_eq!(parts, [8, 4, 4, 4, 12], "not a UUID: {id}");
}
