//! A `serve` process fed saves and SIGKILLed mid-stream, round after round
//! on one data dir: every save whose "queued" reply arrived is on disk after
//! the crash, and the database stays sound.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mem0_queue::store::Store;
use mem0_queue_testkit::{
    bin,
    db::{connect, integrity},
    mcp::{CALL_TIMEOUT, is_error, object, structured},
    sandbox::Sandbox,
};
use serde_json::json;
use tokio::sync::mpsc;

/// Rounds wanted; fewer only if the time budget runs out first.
const ROUNDS: usize = 20;
const MIN_ROUNDS: usize = 5;
const BUDGET: Duration = Duration::from_secs(50);
/// Saves sent per round, all pipelined; the kill lands among them.
const SENT_PER_ROUND: usize = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_saves_survive_sigkill() {
    let sb = Sandbox::new(bin!());
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(0x6d65_6d30);
    let mut acked: HashMap<String, String> = HashMap::new(); // id -> content
    let mut rounds = 0;
    let mut lost_in_flight = 0usize;
    // Saves on disk whose reply never arrived (the kill came between the
    // commit and the reply): allowed, and a sign the kill landed mid-save.
    let mut committed_unacked = 0usize;
    while rounds < ROUNDS && (rounds < MIN_ROUNDS || started.elapsed() < BUDGET) {
        let server = sb.serve(&[]).await;
        let kill_after = rng.usize(1..=60);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let client = server.client.peer().clone();
        let mut tasks = Vec::new();
        for i in 0..SENT_PER_ROUND {
            let content = format!("round {rounds} save {i}");
            let client = client.clone();
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let params = rmcp::model::CallToolRequestParams::new("mem0_save")
                    .with_arguments(object(json!({"content": content})));
                if let Ok(r) = client.call_tool(params).await {
                    let _ = tx.send((content, r));
                }
            }));
        }
        drop(tx);
        // Kill once `kill_after` replies have arrived (or all have).
        let mut got = Vec::new();
        while got.len() < kill_after {
            match tokio::time::timeout(CALL_TIMEOUT, rx.recv()).await {
                Ok(Some(reply)) => got.push(reply),
                Ok(None) => break,
                Err(_) => panic!("round {rounds}: no reply within {:?}", CALL_TIMEOUT),
            }
        }
        server.kill9().await;
        for t in tasks {
            tokio::time::timeout(CALL_TIMEOUT, t)
                .await
                .expect("the senders end once the server is dead")
                .expect("a sender task");
        }
        // Replies that arrived before the process died count as acknowledged.
        while let Some(reply) = rx.recv().await {
            got.push(reply);
        }
        lost_in_flight += SENT_PER_ROUND - got.len();
        for (content, r) in got {
            assert!(!is_error(&r), "round {rounds}: an error reply");
            let s = structured(&r);
            assert_eq!(s["status"], "queued", "{s}");
            let id = s["id"].as_str().expect("id").to_string();
            acked.insert(id, content);
        }

        // Reopen (this recovers the WAL) and check every acknowledged save.
        let store = Store::open(&sb.db()).expect("reopen after SIGKILL");
        for (id, content) in &acked {
            let e = store
                .get(id, true)
                .unwrap_or_else(|e| panic!("round {rounds}: acknowledged save {id} is lost: {e}"));
            assert_eq!(e.content.as_deref(), Some(content.as_str()));
        }
        assert_eq!(store.integrity_check().expect("integrity_check"), "ok");
        drop(store);
        let c = connect(&sb.db());
        let mut stmt = c
            .prepare("SELECT id FROM entries WHERE content LIKE ?1")
            .expect("prepare");
        let on_disk: Vec<String> = stmt
            .query_map([format!("round {rounds} save %")], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        committed_unacked += on_disk.iter().filter(|id| !acked.contains_key(*id)).count();
        rounds += 1;
    }
    assert!(rounds >= MIN_ROUNDS);
    assert_eq!(integrity(&sb.db()), "ok");
    println!(
        "{rounds} SIGKILL rounds in {:?}: {} acknowledged saves all present; \
         {lost_in_flight} sent but unacknowledged when killed, {committed_unacked} of them committed",
        started.elapsed(),
        acked.len()
    );
}
