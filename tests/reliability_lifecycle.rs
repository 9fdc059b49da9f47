//! R8, the memory lifecycle's history: several `serve` processes, each
//! driven by a real MCP client, run random programs of add, update, delete
//! and forget over their own memories, while `sync` processes deliver them
//! through a server that faults every write (latency, 500, 503, resets,
//! hangs, accept-then-hang) and are SIGKILLed at random points. At the end,
//! with the faults gone, a clean `sync` drains the queue, and the server's
//! state must equal what a sequential model of the acknowledged operations
//! predicts:
//!
//! - every memory alive in the model is alive on the server exactly once,
//!   with the model's last text (no lost change, no duplicate);
//! - every memory deleted in the model is gone (no resurrected memory);
//! - nothing else of these projects is alive on the server (nothing
//!   unexpected);
//! - the server applied each memory's changes in the order they were made:
//!   the texts it wrote are a non-decreasing walk through the model's
//!   texts, and nothing was written to a memory after its delete.
//!
//! Each client owns its project and memories and waits for each reply, so
//! the model's order per memory is the client's program order. `serve` has
//! no Mem0 server configured (changes only queue); delivery is only the
//! killed and restarted `sync` processes', which exercises leases taken
//! back from dead workers and the reconciliation of unknown outcomes (a
//! change is read back before it is sent again).
//!
//! Sizes: `MQ_R8_HISTORIES` histories (default [`DEFAULT_HISTORIES`], both
//! API kinds in turn), `MQ_R8_OPS` operations per client. Seed: `MQ_R8_SEED`.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mem0_queue_testkit::bin;
use mem0_queue_testkit::db;
use mem0_queue_testkit::mcp::{Server, is_error, structured, text};
use mem0_queue_testkit::mem0_server::{Fault, FaultPlan, FaultScope, Kind, MutationKind};
use mem0_queue_testkit::process::env_or;
use mem0_queue_testkit::sandbox::Sandbox;
use mem0_queue_testkit::wait::{PROCESS_LIMIT, child_async};
use mem0_queue_testkit::worker::{command, run_to_end, server};
use serde_json::json;

/// Histories in CI: one per API kind.
const DEFAULT_HISTORIES: usize = 2;

/// Clients (each a `serve` process with its MCP client) per history.
const CLIENTS: usize = 3;

/// Operations per client in CI.
const DEFAULT_OPS: usize = 30;

/// The fault rate on every write while the clients run: most writes are
/// answered, a quarter are not (or not as they should be).
const FAULT_RATE: f64 = 0.25;

/// The client's add timeout in the sync processes: a hang resolves fast.
const ADD_TIMEOUT: &str = "800ms";

/// A sync is SIGKILLed 0 to this many ms after it starts, half the time.
const KILL_WINDOW_MS: u64 = 700;

/// The most clean syncs the final drain may take.
const DRAIN_RUNS: usize = 20;

/// A client pauses 0 to this many ms between operations: a debug `sync`
/// takes about 100 ms to start, so a program of 30 operations spans a
/// handful of syncs.
const PAUSE_MS: u64 = 100;

/// The seed unless `MQ_R8_SEED` gives one (printed).
const DEFAULT_SEED: u64 = 0x5238_6c69_6665_6379;

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Oss => "oss",
        Kind::Platform => "platform",
    }
}

/// One memory in the model: the texts it had, in order, and whether it is
/// gone.
#[derive(Debug, Clone, Default)]
struct Model {
    project: String,
    texts: Vec<String>,
    deleted: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    adds: usize,
    updates: usize,
    deletes: usize,
    forgets: usize,
}

/// One client's program, run to its end; returns its model.
async fn client(
    server: Server,
    idx: usize,
    history: usize,
    ops: usize,
    seed: u64,
) -> (HashMap<String, Model>, Counts) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let project = format!("r8-h{history}-c{idx}");
    let mut model: HashMap<String, Model> = HashMap::new();
    let mut live: Vec<String> = Vec::new();
    let mut c = Counts::default();
    for n in 0..ops {
        // A short, random pause between operations, so that syncs (and
        // their kills) land between and among them, not after them all.
        tokio::time::sleep(Duration::from_millis(rng.u64(0..=PAUSE_MS))).await;
        let roll = rng.u32(0..100);
        let text = format!("h{history} c{idx} op{n}: fact {}", rng.u32(..));
        if live.is_empty() || roll < 40 {
            let r = server
                .save(json!({"content": text, "project": project}))
                .await;
            assert!(!is_error(&r), "save: {}", text_of(&r));
            let id = structured(&r)["id"].as_str().expect("id").to_string();
            model.insert(
                id.clone(),
                Model {
                    project: project.clone(),
                    texts: vec![text],
                    deleted: false,
                },
            );
            live.push(id);
            c.adds += 1;
        } else if roll < 75 {
            let id = live[rng.usize(..live.len())].clone();
            let r = server
                .call("mem0_update", json!({"id": id, "text": text}))
                .await;
            assert!(!is_error(&r), "update {id}: {}", text_of(&r));
            model.get_mut(&id).expect("known").texts.push(text);
            c.updates += 1;
        } else if roll < 97 {
            let id = live.swap_remove(rng.usize(..live.len()));
            let r = server.call("mem0_delete", json!({"id": id})).await;
            assert!(!is_error(&r), "delete {id}: {}", text_of(&r));
            model.get_mut(&id).expect("known").deleted = true;
            c.deletes += 1;
        } else {
            let r = server
                .call(
                    "mem0_forget",
                    json!({"project": project, "confirm": project}),
                )
                .await;
            assert!(!is_error(&r), "forget: {}", text_of(&r));
            for id in live.drain(..) {
                model.get_mut(&id).expect("known").deleted = true;
            }
            c.forgets += 1;
        }
    }
    server.stop().await;
    (model, c)
}

fn text_of(r: &rmcp::model::CallToolResult) -> String {
    text(r)
}

/// One sync against `url`, killed after a random delay half the time.
async fn sync_once(sb: &Sandbox, url: &str, kind: Kind, rng: &mut fastrand::Rng) -> bool {
    let mut cmd = command(sb, Some(url), kind, &["sync", "--max-duration", "20s"]);
    cmd.env("MEM0_QUEUE_ADD_TIMEOUT", ADD_TIMEOUT)
        .env("MEM0_QUEUE_INFER", "false")
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn sync");
    let kill = rng.bool();
    if kill {
        tokio::time::sleep(Duration::from_millis(rng.u64(0..=KILL_WINDOW_MS))).await;
        let _ = child.start_kill();
    }
    child_async(&mut child, PROCESS_LIMIT).await;
    kill
}

#[derive(Debug, Default)]
struct Verdict {
    lost: usize,
    duplicated: usize,
    resurrected: usize,
    wrong_text: usize,
    unexpected: usize,
    out_of_order: usize,
}

impl Verdict {
    fn ok(&self) -> bool {
        self.lost
            + self.duplicated
            + self.resurrected
            + self.wrong_text
            + self.unexpected
            + self.out_of_order
            == 0
    }
}

/// Compares the server's end state and its write log with the model.
fn check(
    srv: &mem0_queue_testkit::mem0_server::Mem0Server,
    model: &HashMap<String, Model>,
) -> Verdict {
    let mut v = Verdict::default();
    let live = srv.live();
    let mut alive: HashMap<String, Vec<String>> = HashMap::new();
    for m in &live {
        if let Some(mq) = m.metadata.get("mq_id").and_then(|x| x.as_str()) {
            alive
                .entry(mq.to_string())
                .or_default()
                .push(m.memory.clone());
        }
    }
    let stored = srv.count_by_mq_id();
    for (id, m) in model {
        let here = alive.get(id).cloned().unwrap_or_default();
        if m.deleted {
            if !here.is_empty() {
                v.resurrected += 1;
                eprintln!("R8: {id} deleted in the model, alive on the server: {here:?}");
                for w in srv
                    .mutations()
                    .iter()
                    .filter(|w| w.mq_id.as_deref() == Some(id))
                {
                    eprintln!(
                        "R8:   server write {:?} {:?} {:?}",
                        w.kind, w.memory_id, w.text
                    );
                }
            }
        } else {
            match here.as_slice() {
                [] => {
                    v.lost += 1;
                    eprintln!("R8: {id} lost: {m:?}");
                }
                [one] if Some(one) != m.texts.last() => {
                    v.wrong_text += 1;
                    eprintln!("R8: {id} has {one:?}, the model {:?}", m.texts.last());
                }
                [_] => {}
                many => {
                    v.duplicated += 1;
                    eprintln!("R8: {id} alive {} times", many.len());
                }
            }
        }
        if stored.get(id).copied().unwrap_or(0) > 1 {
            v.duplicated += 1;
            eprintln!("R8: {id} stored {} times", stored[id]);
        }
    }
    let projects: std::collections::HashSet<&str> =
        model.values().map(|m| m.project.as_str()).collect();
    for m in &live {
        let mq = m.metadata.get("mq_id").and_then(|x| x.as_str());
        let ours = m.user_id.as_deref().is_some_and(|u| projects.contains(u));
        if ours && mq.is_none_or(|id| !model.contains_key(id)) {
            v.unexpected += 1;
            eprintln!("R8: unexpected on the server: {m:?}");
        }
    }
    // Order: per memory, the texts the server wrote walk forward through
    // the model's texts, and nothing is written after its delete.
    let mut walk: HashMap<String, (usize, bool)> = HashMap::new();
    for w in srv.mutations() {
        let Some(mq) = w.mq_id.clone() else { continue };
        let Some(m) = model.get(&mq) else { continue };
        let state = walk.entry(mq.clone()).or_insert((0, false));
        match w.kind {
            MutationKind::Delete => state.1 = true,
            MutationKind::Add | MutationKind::Update => {
                if state.1 {
                    v.out_of_order += 1;
                    eprintln!("R8: {mq} written after its delete: {w:?}");
                    continue;
                }
                let text = w.text.clone().unwrap_or_default();
                match m.texts.iter().skip(state.0).position(|t| *t == text) {
                    Some(i) => state.0 += i,
                    None => {
                        v.out_of_order += 1;
                        eprintln!(
                            "R8: {mq} got {text:?} after {:?} (model {:?})",
                            m.texts.get(state.0),
                            m.texts
                        );
                    }
                }
            }
            MutationKind::DeleteAll => {}
        }
    }
    v
}

async fn history(h: usize, kind: Kind, ops: usize, seed: u64) -> (usize, Counts, usize, usize) {
    let srv = server(kind, None, seed).await;
    let sb = Sandbox::new(bin!());
    let faults = [
        (Fault::Latency(Duration::from_millis(30)), 0.05),
        (Fault::Status500, 0.04),
        (
            Fault::Status503 {
                retry_after_secs: None,
            },
            0.04,
        ),
        (Fault::ResetMidResponse, 0.04),
        (Fault::Hang, 0.04),
        (Fault::AcceptThenHang, 0.04),
    ];
    assert!(faults.iter().map(|f| f.1).sum::<f64>() <= FAULT_RATE + 1e-9);
    srv.set_faults(FaultPlan::mix(faults).in_scope(FaultScope::Writes));
    let mut servers = Vec::new();
    for _ in 0..CLIENTS {
        let mut cmd = sb.command(&["serve"]);
        cmd.env("MEM0_QUEUE_SYNC_INTERVAL", "24h");
        servers.push(Server::start(cmd).await);
    }
    let clients: Vec<_> = servers
        .into_iter()
        .enumerate()
        .map(|(i, s)| tokio::spawn(client(s, i, h, ops, seed ^ (i as u64 + 1))))
        .collect();
    // Deliver while the clients run: two loops of syncs, half of them
    // killed, so two workers also contend for the same operations.
    let url = srv.url();
    let running = || clients.iter().any(|c| !c.is_finished());
    let (mut kills, mut syncs) = (0, 0);
    let mut rngs = [
        fastrand::Rng::with_seed(seed),
        fastrand::Rng::with_seed(seed ^ 0xa5a5),
    ];
    while running() {
        let [a, b] = &mut rngs;
        let (ka, kb) = tokio::join!(sync_once(&sb, &url, kind, a), sync_once(&sb, &url, kind, b));
        kills += ka as usize + kb as usize;
        syncs += 2;
    }
    let mut model = HashMap::new();
    let mut counts = Counts::default();
    for c in clients {
        let (m, n) = c.await.expect("a client ran to its end");
        model.extend(m);
        counts.adds += n.adds;
        counts.updates += n.updates;
        counts.deletes += n.deletes;
        counts.forgets += n.forgets;
    }
    // The faults stop; a clean drain.
    srv.set_faults(FaultPlan::default());
    let start = Instant::now();
    let mut drained = false;
    for _ in 0..DRAIN_RUNS {
        let mut cmd = command(&sb, Some(&url), kind, &["sync"]);
        cmd.env("MEM0_QUEUE_INFER", "false");
        let (code, err) = run_to_end(cmd).await;
        syncs += 1;
        if code == Some(0) {
            drained = true;
            break;
        }
        assert_ne!(code, Some(78), "no configuration problem here: {err}");
        assert_ne!(code, Some(65), "nothing here is rejected: {err}");
    }
    assert!(drained, "{kind:?}: drained within {DRAIN_RUNS} runs");
    let counts_db = db::counts(&sb.db());
    assert_eq!(
        (
            counts_db.pending,
            counts_db.in_flight,
            counts_db.failed,
            counts_db.dead
        ),
        (0, 0, 0, 0),
        "{kind:?}: every operation settled"
    );
    let v = check(&srv, &model);
    if !v.ok() {
        let conn = db::connect(&sb.db());
        let mut stmt = conn
            .prepare("SELECT seq, id, op, state, target, remote_target, deleted_at, needs_reconcile, last_error, project FROM entries ORDER BY seq")
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| {
                Ok(format!(
                    "{} {} {} {} t={:?} rt={:?} del={:?} rec={} err={:?} p={}",
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, String>(9)?,
                ))
            })
            .expect("rows");
        for r in rows {
            eprintln!("R8 queue: {}", r.expect("row"));
        }
        for w in srv.mutations() {
            eprintln!(
                "R8 write: {:?} {:?} mq={:?} {:?} {:?}",
                w.kind, w.memory_id, w.mq_id, w.text, w.entity
            );
        }
        eprintln!(
            "R8 log:\n{}",
            std::fs::read_to_string(sb.data_dir().join("mem0_worker.log")).unwrap_or_default()
        );
    }
    let total = counts.adds + counts.updates + counts.deletes + counts.forgets;
    println!(
        "R8 lifecycle {} history {h}: clients={CLIENTS} operations={total} (adds={}, updates={}, deletes={}, forgets={}), syncs={syncs} (killed={kills}), server writes={}, drain {:.1}s; memories={} lost={} duplicated={} resurrected={} wrong_text={} unexpected={} out_of_order={}",
        kind_name(kind),
        counts.adds,
        counts.updates,
        counts.deletes,
        counts.forgets,
        srv.mutations().len(),
        start.elapsed().as_secs_f64(),
        model.len(),
        v.lost,
        v.duplicated,
        v.resurrected,
        v.wrong_text,
        v.unexpected,
        v.out_of_order
    );
    assert!(v.ok(), "{kind:?} history {h}: {v:?}");
    (total, counts, syncs, kills)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_random_histories_end_where_a_sequential_model_says() {
    let histories: usize = env_or("MQ_R8_HISTORIES", DEFAULT_HISTORIES);
    let ops: usize = env_or("MQ_R8_OPS", DEFAULT_OPS);
    let seed: u64 = env_or("MQ_R8_SEED", DEFAULT_SEED);
    let mut total_ops = 0;
    let mut kills = 0;
    for h in 0..histories {
        let kind = if h % 2 == 0 {
            Kind::Oss
        } else {
            Kind::Platform
        };
        let (n, _, _, k) = history(h, kind, ops, seed.wrapping_add(h as u64)).await;
        total_ops += n;
        kills += k;
    }
    println!(
        "R8 lifecycle: histories={histories} operations={total_ops} sync kills={kills} seed={seed:#x}; lost=0 duplicated=0 resurrected=0 out_of_order=0"
    );
}
