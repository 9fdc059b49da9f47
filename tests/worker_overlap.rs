//! Overlapping workers, as real processes: two `mem0-queue sync` and one
//! `mem0-queue serve` start at once on the same data dir and the same test
//! server, with some latency per add so their runs overlap. Each of the 200
//! entries is delivered exactly once: claims are leases taken in one SQLite
//! transaction, so no two processes ever send the same entry.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use mem0_queue_testkit::mem0_server::{FaultPlan, Kind};
use mem0_queue_testkit::{
    bin,
    db::rows,
    sandbox::Sandbox,
    wait::{PROCESS_LIMIT, child_async, until_async},
    worker::{add_requests, assert_exactly_once_or_dead, command, enqueue_in_dir, server, sync},
};

const ENTRIES: usize = 200;

/// Added to every add, so that a process's run lasts long enough (200 adds
/// at 4 in flight: about a second alone) for the others to start meanwhile.
const LATENCY: Duration = Duration::from_millis(20);

/// `run owner=pid-<pid>-<nonce> attempts=<n> delivered=<n> ...` lines of the
/// worker log: delivered entries per process.
fn delivered_by_pid(log: &str) -> HashMap<String, u64> {
    let mut by = HashMap::new();
    for line in log.lines() {
        let Some(rest) = line.split(" run owner=pid-").nth(1) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("").to_string();
        let delivered = rest
            .split_whitespace()
            .find_map(|w| w.strip_prefix("delivered="))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        *by.entry(pid).or_insert(0) += delivered;
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_syncs_and_a_serve_deliver_each_entry_exactly_once() {
    let srv = server(Kind::Oss, None, 1).await;
    let sb = Sandbox::new(bin!());
    let data = sb.data_dir();
    let url = srv.url();

    // Warm the compiled-policy cache first, so that the three processes
    // start within milliseconds of each other rather than each compiling.
    let (code, err) = sync(&sb, Some(&url), Kind::Oss).await;
    assert_eq!(code, Some(0), "an empty queue syncs: {err}");

    let ids = enqueue_in_dir(&data, ENTRIES);
    srv.set_faults(FaultPlan {
        latency: Some(LATENCY),
        ..FaultPlan::default()
    });

    let mut serve = command(&sb, Some(&url), Kind::Oss, &["serve"]);
    serve
        .env("MEM0_QUEUE_SYNC_INTERVAL", "1s")
        // Kept open: serve waits on it for the MCP handshake; closing it ends serve.
        .stdin(Stdio::piped())
        .stderr(Stdio::null());
    let mut serve = serve.spawn().expect("spawn serve");
    let syncs: Vec<_> = (0..2)
        .map(|_| {
            command(&sb, Some(&url), Kind::Oss, &["sync"])
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn sync")
        })
        .collect();

    for mut s in syncs {
        let status = child_async(&mut s, PROCESS_LIMIT).await;
        // 75 when the others still held entries in flight as it ended.
        assert!(
            matches!(status.code(), Some(0 | 75)),
            "sync exited {status:?}"
        );
    }
    let db = data.join("queue.db");
    let drained = until_async(PROCESS_LIMIT, || {
        rows(&db)
            .values()
            .all(|r| r.state == mem0_queue::engine::store::State::Delivered)
    })
    .await;
    drop(serve.stdin.take());
    let _ = child_async(&mut serve, Duration::from_secs(20)).await;
    assert!(drained, "the queue drained within {PROCESS_LIMIT:?}");

    let (delivered, dead) = assert_exactly_once_or_dead(&srv, &db, &ids);
    assert_eq!((delivered, dead), (ENTRIES, 0));
    assert_eq!(
        add_requests(&srv).len(),
        ENTRIES,
        "no entry was ever sent twice"
    );

    // The runs did overlap: more than one process delivered.
    let log = std::fs::read_to_string(data.join("mem0_worker.log")).unwrap_or_default();
    let by_pid = delivered_by_pid(&log);
    assert_eq!(by_pid.values().sum::<u64>(), ENTRIES as u64, "{by_pid:?}");
    let working: HashSet<_> = by_pid.iter().filter(|(_, n)| **n > 0).collect();
    assert!(
        working.len() >= 2,
        "the processes overlapped (entries delivered per pid: {by_pid:?})"
    );
    println!("entries delivered per process: {by_pid:?}");
}
