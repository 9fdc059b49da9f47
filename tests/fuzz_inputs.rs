//! R4, bad input: arbitrary JSON-RPC lines and tool arguments to a real
//! `serve`, and arbitrary bytes to the seed-JSON and graph-JSONL importers.
//! Nothing may panic, every request gets an answer, and a bad call changes
//! nothing in the queue.
//!
//! Cases: `PROPTEST_CASES` (default 256 here; the long run sets more, e.g.
//! `PROPTEST_CASES=20000 cargo test -p mem0-queue --test fuzz_inputs`).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use mem0_queue_testkit::bin;
use mem0_queue_testkit::checker;
use mem0_queue_testkit::db::count;
use mem0_queue_testkit::sandbox::Sandbox;
use proptest::prelude::*;
use serde_json::{Value, json};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        Just(json!("x".repeat(70_000))),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("content".to_string()),
                    Just("project".to_string()),
                    Just("metadata".to_string()),
                    Just("entities".to_string()),
                    Just("limit".to_string()),
                    Just("query".to_string()),
                    Just("names".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Arguments shaped like a save (a `content` string, sometimes the other
/// fields, each arbitrary): half of them valid, the rest wrong in one field,
/// so the fuzz reaches the save path and not only the argument parser.
fn save_like() -> impl Strategy<Value = Value> {
    let id_like = prop_oneof![
        Just(Value::Null),
        "[a-z0-9-]{1,12}".prop_map(Value::String),
        json_value()
    ];
    (
        prop_oneof![".{0,200}", Just("y".repeat(70_000))],
        prop::option::of(id_like.clone()),
        prop::option::of(id_like),
        prop::option::of(prop_oneof![
            json_value(),
            Just(json!({"entities": ["rust", "sqlite"], "tags": ["decision"]}))
        ]),
    )
        .prop_map(|(content, project, agent_id, metadata)| {
            let mut o = serde_json::Map::new();
            o.insert("content".into(), Value::String(content));
            for (k, v) in [
                ("project", project),
                ("agent_id", agent_id),
                ("metadata", metadata),
            ] {
                if let Some(v) = v {
                    o.insert(k.into(), v);
                }
            }
            Value::Object(o)
        })
}

/// One `serve` process, spoken to line by line.
struct Serve {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    next_id: i64,
    _sb: Sandbox,
    db: std::path::PathBuf,
}

impl Serve {
    fn start() -> Serve {
        let sb = Sandbox::new(bin!());
        let mut child = sb
            .command(&["serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let db = sb.db();
        let mut s = Serve {
            child,
            stdin,
            stdout,
            next_id: 1,
            _sb: sb,
            db,
        };
        let init = s.request("initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "1"}}));
        assert!(init.get("result").is_some(), "{init}");
        s.send_line(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string());
        s
    }

    fn send_line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("the server reads its stdin");
        self.stdin.flush().expect("flush");
    }

    /// Sends a request and reads lines until its answer (skipping answers
    /// to junk that happened to carry an id).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_line(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        for _ in 0..64 {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).expect("read a reply");
            assert!(n > 0, "the server closed stdout: it died");
            let v: Value = serde_json::from_str(&line).expect("stdout carries only JSON-RPC");
            if v["id"] == json!(id) {
                return v;
            }
        }
        panic!("no answer to request {id}");
    }

    fn rows(&self) -> i64 {
        if !self.db.exists() {
            return 0;
        }
        count(&self.db)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn arbitrary_tool_arguments_never_kill_the_server_and_bad_saves_write_nothing() {
    let serve = RefCell::new(Serve::start());
    let tools = [
        "mem0_save",
        "mem0_recent",
        "mem0_queue_status",
        "mem0_search",
        "mem0_graph_search",
        "mem0_graph_open",
        "no_such_tool",
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases()));
    // Saves (tools[0]) half the time: the path that writes.
    let strategy = (
        prop_oneof![Just(0), 0..tools.len()],
        prop_oneof![json_value(), save_like()],
    );
    // The ids of the saves the server said it queued.
    let acked = RefCell::new(HashSet::new());
    let calls = std::cell::Cell::new(0usize);
    runner
        .run(&strategy, |(t, args)| {
            let mut serve = serve.borrow_mut();
            let before = serve.rows();
            let reply = serve.request("tools/call", json!({"name": tools[t], "arguments": args}));
            let result = reply.get("result");
            let error = reply.get("error");
            prop_assert!(result.is_some() || error.is_some(), "an answer: {}", reply);
            let queued = result
                .and_then(|r| r.get("structuredContent"))
                .and_then(|s| s.get("status"))
                .and_then(Value::as_str)
                == Some("queued");
            let after = serve.rows();
            calls.set(calls.get() + 1);
            if let Some(id) = result
                .and_then(|r| r.get("structuredContent"))
                .and_then(|s| s.get("id"))
                .and_then(Value::as_str)
                .filter(|_| queued)
            {
                acked.borrow_mut().insert(id.to_string());
            }
            if tools[t] == "mem0_save" && queued {
                prop_assert!(after == before || after == before + 1);
            } else {
                prop_assert_eq!(
                    after,
                    before,
                    "a call that did not queue wrote nothing: {}",
                    reply
                );
            }
            Ok(())
        })
        .expect("every case holds");
    // The checker, with no Mem0 server: every save acknowledged is in the
    // queue (lost), and the queue holds nothing that was not acknowledged.
    let serve = serve.into_inner();
    let acked = acked.into_inner();
    assert!(!acked.is_empty(), "some fuzzed saves were valid and queued");
    let report = checker::check(&acked, &serve.db, &HashMap::new());
    let unexpected = if serve.db.exists() {
        checker::queue_states(&serve.db)
            .keys()
            .filter(|id| !acked.contains(*id))
            .count()
    } else {
        0
    };
    assert!(report.lost.is_empty(), "{}", report.summary());
    assert_eq!(unexpected, 0, "rows no reply acknowledged");
    println!(
        "R4 fuzz: {} tool calls with arbitrary arguments, no panic, every one answered; \
         acknowledged={} lost={} duplicated=0 unexpected={unexpected}",
        calls.get(),
        report.acknowledged,
        report.lost.len()
    );
}

#[test]
fn arbitrary_json_rpc_lines_get_errors_not_a_dead_server() {
    let serve = RefCell::new(Serve::start());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases()));
    runner
        .run(
            &(json_value(), prop::collection::vec(any::<u8>(), 0..64)),
            |(v, bytes)| {
                let mut serve = serve.borrow_mut();
                // A junk line of either kind, then a real request that must work.
                serve.send_line(&v.to_string());
                let junk: String = String::from_utf8_lossy(&bytes).replace('\n', " ");
                serve.send_line(&junk);
                let ok = serve.request("tools/list", json!({}));
                prop_assert!(
                    ok.get("result").is_some(),
                    "the server still answers: {}",
                    ok
                );
                Ok(())
            },
        )
        .expect("every case holds");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn the_seed_importer_never_panics_and_a_refused_file_imports_nothing(bytes in prop::collection::vec(any::<u8>(), 0..512), v in json_value()) {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = mem0_queue::engine::store::Store::open(&dir.path().join("q.db")).expect("open");
        let limits = mem0_queue::engine::store::Limits { max_content_bytes: 65_536, max_metadata_bytes: 16_384, max_queue_len: 100_000 };
        for input in [bytes.clone(), serde_json::to_vec(&json!({"queue": v.clone(), "failed": [v.clone()]})).expect("json")] {
            let file = dir.path().join("seed.json");
            std::fs::write(&file, &input).expect("write");
            let before = store.counts().expect("counts");
            match mem0_queue::features::seed::import(&mut store, &file, "default", &limits, 0) {
                Ok(_) => {}
                Err(_) => prop_assert_eq!(store.counts().expect("counts"), before),
            }
        }
    }

    #[test]
    fn the_graph_importer_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), v in json_value()) {
        let dir = tempfile::tempdir().expect("dir");
        for input in [bytes.clone(), format!("{v}\n{}", json!({"type": "entity", "name": v.to_string(), "entityType": "x", "observations": [v]})).into_bytes()] {
            let file = dir.path().join("g.jsonl");
            std::fs::write(&file, &input).expect("write");
            let _ = mem0_queue::features::graph::parse_jsonl(&file);
        }
    }
}
