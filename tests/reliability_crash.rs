//! R1, crash: `kill -9` at random points of a save and of a sync, trial
//! after trial on one data dir, for each API kind.
//!
//! - A save trial starts `serve` (half the time with the Mem0 server
//!   configured, so its own delivery loop runs too), pipelines
//!   [`SAVES_PER_TRIAL`] saves through a real MCP client, and SIGKILLs the
//!   process after a random delay: before, during or after the commits.
//! - A sync trial gives the test server a random latency (an add stores
//!   first, then waits: a kill in that window leaves a delivered memory the
//!   queue does not know about) and SIGKILLs `sync` after a random delay.
//!
//! After every trial the queue is reopened (which recovers the WAL), must
//! pass `PRAGMA integrity_check`, and the checker runs: nothing acknowledged
//! is lost, nothing is stored twice, nothing unknown is on the server. A save
//! whose reply never came is indeterminate, as in Jepsen's total-queue
//! checker. At the end a clean `sync` drains the queue and the checker must
//! find every acknowledged save delivered exactly once.
//!
//! Trials per kind: `MQ_R1_TRIALS` (default [`DEFAULT_TRIALS`], the CI short
//! form; the full run uses 1,000). Seed: `MQ_R1_SEED`.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use mem0_queue::engine::store::Store;
use mem0_queue_testkit::bin;
use mem0_queue_testkit::checker::{self, CheckReport};
use mem0_queue_testkit::db;
use mem0_queue_testkit::mcp::{self, Server, is_error, structured};
use mem0_queue_testkit::mem0_server::{FaultPlan, Kind, Mem0Server};
use mem0_queue_testkit::process::env_or;
use mem0_queue_testkit::sandbox::Sandbox;
use mem0_queue_testkit::wait::{PROCESS_LIMIT, child_async};
use mem0_queue_testkit::worker::{command, run_to_end, server};
use serde_json::json;
use tokio::sync::mpsc;

/// Trials per API kind in CI; issue 7 asks for at least 100 there.
const DEFAULT_TRIALS: usize = 100;

/// Saves pipelined in one save trial: enough that a kill lands among them.
const SAVES_PER_TRIAL: usize = 30;

/// A save trial's kill comes 0 to this many ms after the first save is
/// sent. In a debug build the 30 pipelined saves take about this long, so
/// the kill lands before, among and after the commits.
const SAVE_KILL_WINDOW_MS: u64 = 250;

/// A sync trial's kill comes 0 to this many ms after the spawn: across the
/// start (policy load from the cache), the claims and the requests.
const SYNC_KILL_WINDOW_MS: u64 = 500;

/// The test server's latency in a sync trial is drawn from 0 to this: adds
/// are in flight (stored, not answered) when the kill comes.
const MAX_LATENCY_MS: u64 = 80;

/// The trials' seed unless `MQ_R1_SEED` gives one (printed either way).
const DEFAULT_SEED: u64 = 0x5231_6372_6173_6821;

/// Clean `sync` runs allowed for the final drain. One suffices (no fault is
/// left); the rest is room for a lease whose pid was reused.
const DRAIN_RUNS: usize = 5;

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Oss => "oss",
        Kind::Platform => "platform",
    }
}

/// What the trials of one kind did.
#[derive(Default)]
struct Tally {
    save_trials: usize,
    sync_trials: usize,
    /// Syncs that had already ended when the kill came.
    syncs_done_before_kill: usize,
    sent: usize,
    acknowledged: HashSet<String>,
    /// The text each acknowledged save was sent with.
    texts: HashMap<String, String>,
    /// Saves committed whose reply never came.
    indeterminate: HashSet<String>,
    /// Saves sent whose reply never came and that are not on disk.
    not_committed: usize,
    /// Entries a kill left in flight under a dead process's lease (a kill
    /// mid-request), summed over the trials.
    left_in_flight: usize,
}

/// One save trial: pipelined saves, then SIGKILL after a random delay.
async fn save_trial(
    sb: &Sandbox,
    srv: &Mem0Server,
    trial: usize,
    rng: &mut fastrand::Rng,
    t: &mut Tally,
) {
    let kind = kind_name(srv.kind());
    let mut cmd = sb.command(&["serve"]);
    cmd.env("MEM0_QUEUE_LOG", "warn").env("MEM0_API_KIND", kind);
    if rng.bool() {
        cmd.env("MEM0_API_URL", srv.url());
    }
    let server = Server::start(cmd).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let contents: Vec<String> = (0..SAVES_PER_TRIAL)
        .map(|j| format!("r1 {kind} trial {trial} save {j}: the user prefers tabs"))
        .collect();
    let mut tasks = Vec::new();
    for content in &contents {
        let peer = server.client.peer().clone();
        let tx = tx.clone();
        let content = content.clone();
        tasks.push(tokio::spawn(async move {
            let params = rmcp::model::CallToolRequestParams::new("mem0_save")
                .with_arguments(mcp::object(json!({"content": content})));
            let reply = peer.call_tool(params).await;
            let _ = tx.send((content, reply));
        }));
    }
    drop(tx);
    tokio::time::sleep(Duration::from_millis(rng.u64(0..=SAVE_KILL_WINDOW_MS))).await;
    server.kill9().await;
    for task in tasks {
        tokio::time::timeout(mcp::CALL_TIMEOUT, task)
            .await
            .expect("a sender ends once the server is dead")
            .expect("a sender task");
    }
    let mut unanswered = HashSet::new();
    while let Some((content, reply)) = rx.recv().await {
        match reply {
            Ok(r) => {
                assert!(!is_error(&r), "trial {trial}: an error reply: {r:?}");
                let s = structured(&r);
                assert_eq!(s["status"], "queued", "trial {trial}: {s}");
                let id = s["id"].as_str().expect("an id").to_string();
                t.acknowledged.insert(id.clone());
                t.texts.insert(id, content);
            }
            // The transport closed before the reply: the outcome is unknown.
            Err(_) => {
                unanswered.insert(content);
            }
        }
    }
    t.sent += SAVES_PER_TRIAL;
    t.save_trials += 1;
    // Which unanswered saves were committed anyway.
    let c = db::connect(&sb.db());
    for content in &unanswered {
        let id: Option<String> = c
            .query_row(
                "SELECT id FROM entries WHERE content = ?1",
                [content],
                |r| r.get(0),
            )
            .ok();
        match id {
            Some(id) => {
                t.indeterminate.insert(id);
            }
            None => t.not_committed += 1,
        }
    }
}

/// One sync trial: a random server latency, then SIGKILL after a random delay.
async fn sync_trial(sb: &Sandbox, srv: &Mem0Server, rng: &mut fastrand::Rng, t: &mut Tally) {
    srv.set_faults(FaultPlan {
        latency: Some(Duration::from_millis(rng.u64(0..=MAX_LATENCY_MS))),
        ..FaultPlan::default()
    });
    let url = srv.url();
    let mut child = command(sb, Some(&url), srv.kind(), &["sync"])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sync");
    tokio::time::sleep(Duration::from_millis(rng.u64(0..=SYNC_KILL_WINDOW_MS))).await;
    if child.try_wait().expect("try_wait").is_some() {
        t.syncs_done_before_kill += 1;
    }
    let _ = child.start_kill();
    child_async(&mut child, PROCESS_LIMIT).await;
    t.sync_trials += 1;
}

/// The queue reopened after a crash: sound, and the checker finds nothing wrong.
fn reopen_and_check(sb: &Sandbox, srv: &Mem0Server, t: &Tally, trial: usize) -> CheckReport {
    let store = Store::open(&sb.db()).expect("the queue reopens after SIGKILL");
    assert_eq!(
        store.integrity_check().expect("integrity_check"),
        "ok",
        "trial {trial}"
    );
    drop(store);
    let report = checker::check_with_indeterminate(
        &t.acknowledged,
        &t.indeterminate,
        &sb.db(),
        &srv.count_by_mq_id(),
    );
    assert!(
        report.ok(),
        "trial {trial}: {}\n{report:?}",
        report.summary()
    );
    report
}

async fn crash_trials(kind: Kind) {
    let trials = env_or("MQ_R1_TRIALS", DEFAULT_TRIALS);
    let seed = env_or("MQ_R1_SEED", DEFAULT_SEED) ^ kind as u64;
    let mut rng = fastrand::Rng::with_seed(seed);
    let sb = Sandbox::new(bin!());
    let srv = server(kind, None, seed).await;
    let mut t = Tally::default();
    let started = Instant::now();
    for trial in 0..trials {
        if trial % 2 == 0 {
            save_trial(&sb, &srv, trial, &mut rng, &mut t).await;
        } else {
            sync_trial(&sb, &srv, &mut rng, &mut t).await;
        }
        t.left_in_flight += checker::queue_states(&sb.db())
            .values()
            .filter(|s| *s == "in_flight")
            .count();
        reopen_and_check(&sb, &srv, &t, trial);
    }
    let trials_took = started.elapsed();

    // Finish the drain with no fault left.
    srv.set_faults(FaultPlan::default());
    let url = srv.url();
    let mut drained = false;
    for _ in 0..DRAIN_RUNS {
        let (code, err) = run_to_end(command(&sb, Some(&url), kind, &["sync"])).await;
        assert!(
            matches!(code, Some(0 | 75)),
            "{kind:?}: sync exit {code:?}: {err}"
        );
        if code == Some(0) {
            drained = true;
            break;
        }
    }
    assert!(
        drained,
        "{kind:?}: the queue drains within {DRAIN_RUNS} clean runs"
    );
    let report = reopen_and_check(&sb, &srv, &t, trials);
    assert_eq!(
        report.queued,
        0,
        "{kind:?}: everything delivered: {}",
        report.summary()
    );
    assert_eq!(report.delivered, t.acknowledged.len());
    let stored = srv.count_by_mq_id();
    assert_eq!(
        stored.len(),
        t.acknowledged.len()
            + t.indeterminate
                .iter()
                .filter(|id| stored.contains_key(*id))
                .count(),
        "{kind:?}: the server holds the acknowledged and the committed-but-unanswered saves, nothing else"
    );
    assert!(
        t.indeterminate.iter().all(|id| stored.get(id) == Some(&1)),
        "{kind:?}: every committed save is delivered once, answered or not"
    );
    // Every acknowledged save kept its text, byte for byte.
    let c = db::connect(&sb.db());
    for (id, text) in &t.texts {
        let kept: String = c
            .query_row("SELECT content FROM entries WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .expect("an acknowledged entry");
        assert_eq!(&kept, text, "{kind:?}: entry {id}");
    }
    println!(
        "R1 crash {}: trials={trials} (save kills={}, sync kills={}, syncs already ended={}, \
         entries left in flight={}) saves sent={} uncommitted={} seed={seed:#x} in {:.1?}; {}",
        kind_name(kind),
        t.save_trials,
        t.sync_trials,
        t.syncs_done_before_kill,
        t.left_in_flight,
        t.sent,
        t.not_committed,
        trials_took,
        report.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_kill9_during_save_and_sync_oss() {
    crash_trials(Kind::Oss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_kill9_during_save_and_sync_platform() {
    crash_trials(Kind::Platform).await;
}
