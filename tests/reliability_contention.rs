//! R2, contention: four `serve` processes saving at once into one data dir
//! (each with its own delivery loop), two `sync` processes run back to back
//! in loops, and a sync started by the SessionEnd hook, all against one Mem0
//! test server with a small latency. When the saves are done and the queue
//! drained, the checker must find every acknowledged save delivered exactly
//! once, and nothing else on the server.
//!
//! R2 with the daemon (issue 16): four MCP clients over Streamable HTTP and
//! two stdio `serve` windows saving at once while the daemon delivers; the
//! same checker, and only the daemon delivered (the windows left it to it).
//!
//! Saves per `serve` process: `MQ_R2_SAVES` (default [`DEFAULT_SAVES`]);
//! per client of the daemon's run: `MQ_R2_DAEMON_SAVES` (default
//! [`DEFAULT_DAEMON_SAVES`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mem0_queue_testkit::bin;
use mem0_queue_testkit::checker;
use mem0_queue_testkit::daemon::{Daemon, HttpMcp, delivering_pids};
use mem0_queue_testkit::db::integrity;
use mem0_queue_testkit::mcp::{Server, is_error, structured, text};
use mem0_queue_testkit::mem0_server::{FaultPlan, Kind};
use mem0_queue_testkit::process::{env_or, hook_sync_pid, run_session_end_hook, running};
use mem0_queue_testkit::sandbox::Sandbox;
use mem0_queue_testkit::wait::until_async;
use mem0_queue_testkit::worker::{command, run_to_end, server};
use serde_json::json;

/// `serve` processes saving at once.
const PROCESSES: usize = 4;

/// Saves per process: issue 7's 4 × 2,500.
const DEFAULT_SAVES: usize = 2_500;

/// Saves in flight per MCP client, as a busy assistant pipelines them.
const IN_FLIGHT: usize = 8;

/// `sync` processes looping beside the servers.
const SYNC_LOOPS: usize = 2;

/// The test server's latency per request: real enough that deliveries
/// overlap, small enough that 10,000 of them take seconds, not minutes.
const SERVER_LATENCY: Duration = Duration::from_millis(5);

/// The saves of all processes must end within this.
const SAVE_BUDGET: Duration = Duration::from_secs(600);

/// After the saves, the loops must drain the queue within this.
const DRAIN_BUDGET: Duration = Duration::from_secs(600);

/// Each sync of the loops stops after this (`--max-duration`), as the
/// hook's does: while saves keep coming, a run would otherwise never end.
const SYNC_MAX_DURATION: &str = "15s";

/// Bounds one sync loop: far more runs than a drain needs.
const MAX_SYNC_RUNS: usize = 500;

/// The daemon's run: MCP clients over HTTP saving at once...
const HTTP_CLIENTS: usize = 4;

/// ...beside stdio `serve` windows.
const WINDOWS: usize = 2;

/// Saves per client in the daemon's run: 6 × 500 = 3,000 saves keep it
/// within a minute of CI time, debug build included.
const DEFAULT_DAEMON_SAVES: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r2_four_servers_two_syncs_and_a_hook_lose_and_duplicate_nothing() {
    let saves = env_or("MQ_R2_SAVES", DEFAULT_SAVES);
    let sb = Arc::new(Sandbox::new(bin!()));
    let srv = server(Kind::Oss, None, 2).await;
    srv.set_faults(FaultPlan {
        latency: Some(SERVER_LATENCY),
        ..FaultPlan::default()
    });
    let url = srv.url();
    // The data dir and the policy cache exist before the racers start.
    let (code, err) = run_to_end(command(&sb, Some(&url), Kind::Oss, &["sync"])).await;
    assert_eq!(code, Some(0), "an empty first sync: {err}");

    let mut servers = Vec::new();
    for _ in 0..PROCESSES {
        let mut cmd = sb.command(&["serve"]);
        cmd.env("MEM0_QUEUE_LOG", "warn").env("MEM0_API_URL", &url);
        servers.push(Server::start(cmd).await);
    }
    let saving = Arc::new(AtomicBool::new(true));
    let sync_runs = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();

    // The sync loops: run after run until the saves are done and a run
    // finds the queue drained (exit 0).
    let loops: Vec<_> = (0..SYNC_LOOPS)
        .map(|_| {
            let (sb, url) = (sb.clone(), url.clone());
            let (saving, runs) = (saving.clone(), sync_runs.clone());
            tokio::spawn(async move {
                for _ in 0..MAX_SYNC_RUNS {
                    let still_saving = saving.load(Ordering::SeqCst);
                    let sync = ["sync", "--max-duration", SYNC_MAX_DURATION];
                    let (code, err) = run_to_end(command(&sb, Some(&url), Kind::Oss, &sync)).await;
                    runs.fetch_add(1, Ordering::SeqCst);
                    assert!(matches!(code, Some(0 | 75)), "sync exit {code:?}: {err}");
                    if code == Some(0) && !still_saving {
                        return;
                    }
                }
                panic!("a sync loop did not drain in {MAX_SYNC_RUNS} runs");
            })
        })
        .collect();

    let saving_runs = servers
        .iter()
        .enumerate()
        .map(|(p, s)| save_all(p, s, saves));
    let hook = async {
        // The hook fires while the saves are under way, as a session ends.
        tokio::time::sleep(Duration::from_millis(500)).await;
        run_hook(&sb, &url)
    };
    let (results, hook_pid) = tokio::time::timeout(
        SAVE_BUDGET,
        futures::future::join(futures::future::join_all(saving_runs), hook),
    )
    .await
    .expect("the saves end within their budget");
    let saves_took = started.elapsed();
    saving.store(false, Ordering::SeqCst);

    let mut acked = HashSet::new();
    for (p, replies) in results.into_iter().enumerate() {
        assert_eq!(replies.len(), saves, "process {p}");
        for r in replies {
            let id = r.unwrap_or_else(|e| panic!("process {p}: {e}"));
            assert!(acked.insert(id.clone()), "id {id} was given twice");
        }
    }

    for l in loops {
        tokio::time::timeout(DRAIN_BUDGET, l)
            .await
            .expect("the sync loops drain within their budget")
            .expect("a sync loop");
    }
    let drained_after = started.elapsed();
    let hook_done = until_async(DRAIN_BUDGET, || !running(hook_pid)).await;
    assert!(hook_done, "the hook's sync ended");
    for s in servers {
        s.stop().await;
    }

    assert_eq!(integrity(&sb.db()), "ok");
    let report = checker::check(&acked, &sb.db(), &srv.count_by_mq_id());
    assert!(report.ok(), "{}\n{report:?}", report.summary());
    assert_eq!(report.queued, 0, "drained: {}", report.summary());
    assert_eq!(report.acknowledged, PROCESSES * saves);
    let log = std::fs::read_to_string(sb.data_dir().join("mem0_worker.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("started sync (pid {hook_pid})")),
        "the hook started its sync"
    );
    println!(
        "R2 contention: serve processes={PROCESSES} x saves={saves}, sync loops={SYNC_LOOPS} \
         (runs={}), hook syncs=1, server latency={SERVER_LATENCY:?}; saves took {saves_took:.1?} \
         ({:.0} saves/s), drained after {drained_after:.1?}; {}",
        sync_runs.load(Ordering::SeqCst),
        (PROCESSES * saves) as f64 / saves_took.as_secs_f64(),
        report.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r2_daemon_four_http_clients_and_two_windows_lose_and_duplicate_nothing() {
    let saves = env_or("MQ_R2_DAEMON_SAVES", DEFAULT_DAEMON_SAVES);
    let sb = Sandbox::new(bin!());
    let srv = server(Kind::Oss, None, 3).await;
    srv.set_faults(FaultPlan {
        latency: Some(SERVER_LATENCY),
        ..FaultPlan::default()
    });
    let url = srv.url();
    let d = Daemon::delivering_to(&sb, &url, &[("MEM0_QUEUE_LOG", "warn")]).await;
    let mut windows = Vec::new();
    for _ in 0..WINDOWS {
        let mut cmd = sb.command(&["serve"]);
        cmd.env("MEM0_QUEUE_LOG", "warn").env("MEM0_API_URL", &url);
        windows.push(Server::start(cmd).await);
    }
    let mut clients = Vec::new();
    for _ in 0..HTTP_CLIENTS {
        clients.push(
            HttpMcp::connect(&d.url, &d.token)
                .await
                .expect("an HTTP session"),
        );
    }
    let started = Instant::now();
    let by_window = windows
        .iter()
        .enumerate()
        .map(|(p, s)| save_all(p, s, saves));
    let by_http = clients
        .iter()
        .enumerate()
        .map(|(p, c)| save_all_http(WINDOWS + p, c, saves));
    let (w, h) = tokio::time::timeout(
        SAVE_BUDGET,
        futures::future::join(
            futures::future::join_all(by_window),
            futures::future::join_all(by_http),
        ),
    )
    .await
    .expect("the saves end within their budget");
    let saves_took = started.elapsed();
    let mut acked = HashSet::new();
    for (p, replies) in w.into_iter().chain(h).enumerate() {
        assert_eq!(replies.len(), saves, "client {p}");
        for r in replies {
            let id = r.unwrap_or_else(|e| panic!("client {p}: {e}"));
            assert!(acked.insert(id.clone()), "id {id} was given twice");
        }
    }

    // The daemon drains the queue on its own.
    let deadline = Instant::now() + DRAIN_BUDGET;
    let report = loop {
        let report = checker::check(&acked, &sb.db(), &srv.count_by_mq_id());
        if report.queued == 0 || Instant::now() >= deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let drained_after = started.elapsed();
    for c in clients {
        c.close().await;
    }
    let window_pids: Vec<u32> = windows.iter().map(|w| w.pid).collect();
    for w in windows {
        w.stop().await;
    }
    let daemon_pid = d.pid;
    let (status, _) = tokio::task::spawn_blocking(move || d.stop())
        .await
        .expect("stop the daemon");
    assert!(status.success(), "{status}");

    assert_eq!(integrity(&sb.db()), "ok");
    assert!(report.ok(), "{}\n{report:?}", report.summary());
    assert_eq!(report.queued, 0, "drained: {}", report.summary());
    assert_eq!(report.acknowledged, (HTTP_CLIENTS + WINDOWS) * saves);
    let log = std::fs::read_to_string(sb.data_dir().join("mem0_worker.log")).unwrap_or_default();
    let deliverers = delivering_pids(&log);
    assert!(
        deliverers.iter().all(|(pid, _)| *pid == daemon_pid),
        "only the daemon ({daemon_pid}) delivered, not the windows ({window_pids:?}): {deliverers:?}"
    );
    println!(
        "R2 contention with the daemon: HTTP clients={HTTP_CLIENTS} + serve windows={WINDOWS} x \
         saves={saves}, server latency={SERVER_LATENCY:?}; saves took {saves_took:.1?} \
         ({:.0} saves/s), drained after {drained_after:.1?}, delivered by the daemon alone \
         ({} runs); {}",
        ((HTTP_CLIENTS + WINDOWS) * saves) as f64 / saves_took.as_secs_f64(),
        deliverers.len(),
        report.summary()
    );
}

/// Saves `n` distinct memories through one HTTP session, [`IN_FLIGHT`] at
/// a time; each reply's id, or why it was not a plain "queued".
async fn save_all_http(client: usize, c: &HttpMcp, n: usize) -> Vec<Result<String, String>> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let content = format!("r2 http client {client} memory {i}: a distinct fact");
            c.save(json!({"content": content, "project": "r2"}))
                .await
                .map_err(|e| format!("save {i}: {e}"))
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await
}

/// Saves `n` distinct memories through one server; each reply's id, or why
/// it was not a plain "queued".
async fn save_all(process: usize, server: &Server, n: usize) -> Vec<Result<String, String>> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let content = format!("r2 process {process} memory {i}: a distinct fact");
            let r = server
                .try_call("mem0_save", json!({"content": content, "project": "r2"}))
                .await
                .map_err(|e| format!("save {i}: protocol error {e}"))?;
            let s = structured(&r);
            if is_error(&r) || s["status"] != "queued" {
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

/// Runs `hook session-end` as Claude Code does and returns the pid of the
/// sync it started (named in the worker log).
fn run_hook(sb: &Sandbox, url: &str) -> u32 {
    let mut cmd = sb.command(&["hook", "session-end"]);
    cmd.env("MEM0_API_URL", url);
    run_session_end_hook(cmd, "r2");
    let log =
        std::fs::read_to_string(sb.data_dir().join("mem0_worker.log")).expect("the worker log");
    hook_sync_pid(&log, "r2").unwrap_or_else(|| panic!("the hook started no sync:\n{log}"))
}
