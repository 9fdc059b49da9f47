//! The knowledge-graph dual write and its JSONL mirror, read back by the
//! real `@modelcontextprotocol/server-memory` over stdio.
//!
//! That npm package is installed by `.ci/run` under `tests/node/`. Where it
//! is missing on a developer's machine the interop test says so and is
//! skipped; in CI (`CI` set) a missing package fails the test.

use std::path::{Path, PathBuf};

use mem0_queue_testkit::{
    bin,
    mcp::{Server, is_error, structured},
    sandbox::Sandbox,
};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

/// server-memory's entry point, if installed.
fn server_memory() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .to_path_buf();
    let js = root.join("tests/node/node_modules/@modelcontextprotocol/server-memory/dist/index.js");
    if js.exists() {
        return Some(js);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "@modelcontextprotocol/server-memory is not installed under tests/node (CI installs it)"
        );
    }
    eprintln!(
        "SKIPPED: @modelcontextprotocol/server-memory is not installed (npm install --prefix tests/node @modelcontextprotocol/server-memory)"
    );
    None
}

/// Calls one tool of server-memory on `file` and returns its JSON answer.
async fn server_memory_call(js: &Path, file: &Path, tool: &str, args: Value) -> Value {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(js).env("MEMORY_FILE_PATH", file);
    let client =
        ().serve(TokioChildProcess::new(cmd).expect("spawn node"))
            .await
            .expect("handshake");
    let mut params = CallToolRequestParams::new(tool.to_string());
    if let Value::Object(o) = args {
        params = params.with_arguments(o);
    }
    let r = client.call_tool(params).await.expect("call");
    let _ = client.cancel().await;
    if let Some(s) = r.structured_content {
        return s;
    }
    let text = r
        .content
        .iter()
        .find_map(|c| c.as_text().map(|t| t.text.clone()))
        .expect("a text answer");
    serde_json::from_str(&text).expect("server-memory answers JSON")
}

async fn serve_mirroring(sb: &Sandbox, file: &Path) -> Server {
    let mut cmd = sb.command(&["serve"]);
    cmd.env("MEM0_QUEUE_GRAPH_JSONL", file);
    Server::start(cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_memory_reads_what_mem0_queue_wrote_and_keeps_its_own_lines() {
    let Some(js) = server_memory() else { return };
    let sb = Sandbox::new(bin!());
    let file = sb.root().join("memory.jsonl");
    // server-memory's own entity, written by server-memory itself.
    server_memory_call(
        &js,
        &file,
        "create_entities",
        json!({"entities": [{"name": "bob", "entityType": "person", "observations": ["likes tea"]}]}),
    )
    .await;

    let server = serve_mirroring(&sb, &file).await;
    let saved = server
        .save(json!({
            "content": "Alice maintains the rust build",
            "project": "windsurf-project",
            "metadata": {"entities": ["alice", "bob"], "relations": [{"from": "alice", "to": "bob", "type": "mentors"}]}
        }))
        .await;
    assert!(!is_error(&saved));
    server.stop().await; // flushes the mirror

    let graph = server_memory_call(&js, &file, "read_graph", json!({})).await;
    let entity = |name: &str| {
        graph["entities"]
            .as_array()
            .expect("entities")
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no entity {name} in {graph}"))
    };
    assert_eq!(entity("windsurf-project")["entityType"], "project");
    for name in ["windsurf-project", "alice", "bob"] {
        let obs = entity(name)["observations"].to_string();
        assert!(
            obs.contains("Alice maintains the rust build"),
            "{name}: {obs}"
        );
    }
    assert_eq!(
        entity("bob")["entityType"],
        "person",
        "their entity keeps its type"
    );
    assert!(
        entity("bob")["observations"]
            .to_string()
            .contains("likes tea")
    );
    assert!(graph["relations"].to_string().contains("mentors"));

    // server-memory writes again; a later mirror loses nothing of it.
    server_memory_call(
        &js,
        &file,
        "create_entities",
        json!({"entities": [{"name": "carol", "entityType": "person", "observations": ["on call"]}]}),
    )
    .await;
    let server = serve_mirroring(&sb, &file).await;
    server
        .save(json!({"content": "second memory", "metadata": {"entities": ["alice"]}}))
        .await;
    server.stop().await;
    let graph = server_memory_call(&js, &file, "read_graph", json!({})).await;
    let text = graph.to_string();
    assert!(text.contains("carol") && text.contains("on call"), "{text}");
    assert!(text.contains("second memory"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_processes_leave_a_file_that_parses_and_holds_every_memory() {
    let sb = Sandbox::new(bin!());
    let file = sb.root().join("memory.jsonl");
    let mut servers = Vec::new();
    for _ in 0..4 {
        servers.push(serve_mirroring(&sb, &file).await);
    }
    let mut tasks = Vec::new();
    for (p, server) in servers.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let r = server
                    .save(json!({"content": format!("memory {p}-{i}"), "metadata": {"entities": [format!("e{i}")]}}))
                    .await;
                assert!(!is_error(&r));
            }
            server.stop().await
        }));
    }
    for t in tasks {
        t.await.expect("a writer");
    }
    let text = std::fs::read_to_string(&file).expect("the mirror exists");
    let mut observations = String::new();
    for (n, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
        observations.push_str(&v["observations"].to_string());
    }
    for p in 0..4 {
        for i in 0..25 {
            assert!(
                observations.contains(&format!("memory {p}-{i} (mq:")),
                "memory {p}-{i} is missing"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_import_reads_a_server_memory_file_and_refuses_a_bad_one() {
    let sb = Sandbox::new(bin!());
    let file = sb.root().join("theirs.jsonl");
    std::fs::write(
        &file,
        "{\"type\":\"entity\",\"name\":\"kafka\",\"entityType\":\"tool\",\"observations\":[\"runs on 3 brokers\"]}\n\
         {\"type\":\"relation\",\"from\":\"kafka\",\"to\":\"zookeeper\",\"relationType\":\"needs\"}",
    )
    .expect("write");
    let before = std::fs::read(&file).expect("read");
    for _ in 0..2 {
        let out = sb
            .command(&["graph", "import", file.to_str().expect("utf-8")])
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        std::fs::read(&file).expect("read"),
        before,
        "the file is left untouched"
    );
    let server = sb.serve(&[]).await;
    let found = structured(
        &server
            .call("mem0_graph_search", json!({"query": "brokers"}))
            .await,
    );
    assert_eq!(found["entities"][0]["name"], "kafka");
    assert_eq!(
        found["entities"][0]["observations"],
        json!(["runs on 3 brokers"]),
        "imported once"
    );
    let opened = structured(
        &server
            .call("mem0_graph_open", json!({"names": ["zookeeper"]}))
            .await,
    );
    assert_eq!(opened["relations"][0]["relationType"], "needs");
    server.stop().await;

    let bad = sb.root().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"type\":\"entity\",\"name\":\"x\",\"entityType\":\"t\",\"observations\":[]}\nnot json\n",
    )
    .expect("write");
    let out = sb
        .command(&["graph", "import", bad.to_str().expect("utf-8")])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("nothing was imported"),
        "{err}"
    );
    let server = sb.serve(&[]).await;
    let found = structured(
        &server
            .call("mem0_graph_search", json!({"query": "x"}))
            .await,
    );
    assert!(
        !found["entities"].to_string().contains("\"name\":\"x\""),
        "the good line before the bad one was not imported: {found}"
    );
    server.stop().await;
}
