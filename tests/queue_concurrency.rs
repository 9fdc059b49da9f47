//! Four `serve` processes saving 500 distinct memories each, all at once,
//! into one data dir: every save is queued, none is lost or doubled.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use mem0_queue_testkit::{
    bin,
    db::{count, integrity, scalar},
    mcp::{Server, is_error, structured, text},
    sandbox::Sandbox,
};
use serde_json::json;

const PROCESSES: usize = 4;
const SAVES_EACH: usize = 500;
/// Requests in flight per client.
const IN_FLIGHT: usize = 8;
/// The whole test must end well inside this.
const BUDGET: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_servers_times_500_saves_queue_exactly_2000() {
    let sb = Sandbox::new(bin!());
    // Start them all before the first save, so the saves overlap.
    let mut servers = Vec::new();
    for _ in 0..PROCESSES {
        servers.push(sb.serve(&[]).await);
    }
    let started = Instant::now();
    let runs = servers
        .iter()
        .enumerate()
        .map(|(p, server)| save_all(p, server));
    let results = tokio::time::timeout(BUDGET, futures::future::join_all(runs))
        .await
        .expect("2,000 saves finish within the budget");
    let elapsed = started.elapsed();
    for s in servers {
        s.stop().await;
    }

    let mut ids = HashSet::new();
    for (p, replies) in results.into_iter().enumerate() {
        assert_eq!(replies.len(), SAVES_EACH, "process {p}");
        for r in replies {
            let id = r.unwrap_or_else(|e| panic!("process {p}: {e}"));
            assert!(ids.insert(id.clone()), "id {id} was given twice");
        }
    }
    let total = PROCESSES * SAVES_EACH;
    assert_eq!(ids.len(), total);
    let db = sb.db();
    assert_eq!(count(&db), total as i64);
    let distinct: i64 = scalar(&db, "SELECT count(DISTINCT content) FROM entries", []);
    assert_eq!(distinct, total as i64);
    let queued: i64 = scalar(
        &db,
        "SELECT value FROM stats WHERE key = 'total_queued'",
        [],
    );
    assert_eq!(queued, total as i64);
    let pending: i64 = scalar(
        &db,
        "SELECT n FROM state_counts WHERE state = 'pending'",
        [],
    );
    assert_eq!(pending, total as i64, "the trigger-kept counts agree");
    for id in &ids {
        let n: i64 = scalar(&db, "SELECT count(*) FROM entries WHERE id = ?1", [id]);
        assert_eq!(n, 1, "reply id {id} is not in the queue");
    }
    assert_eq!(integrity(&db), "ok");
    println!(
        "{total} saves from {PROCESSES} processes in {elapsed:?} ({:.0} saves/s)",
        total as f64 / elapsed.as_secs_f64()
    );
}

/// Saves 500 distinct memories through one server; returns each reply's id
/// or why it was not a plain "queued".
async fn save_all(process: usize, server: &Server) -> Vec<Result<String, String>> {
    futures::stream::iter(0..SAVES_EACH)
        .map(|i| async move {
            let content = format!("process {process} memory {i}: a distinct fact");
            let r = server
                .try_call(
                    "mem0_save",
                    json!({"content": content, "project": "concurrency"}),
                )
                .await
                .map_err(|e| format!("save {i}: protocol error {e}"))?;
            let s = structured(&r);
            if is_error(&r) || s["status"] != "queued" || s["deduplicated"] != false {
                return Err(format!("save {i}: {}", text(&r)));
            }
            s["id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("save {i}: no id in {s}"))
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await
}
