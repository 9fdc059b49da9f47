//! Benchmark: `mem0_save` round trips through a real MCP stdio client (the
//! rmcp client over a `mem0-queue serve` child; `cargo bench` builds it in
//! release) at queue sizes 100, 10,000 and 100,000; `mem0_update` and
//! `mem0_delete` at 10,000 (on memories never sent and on delivered ones);
//! and, in the same run,
//! the seed's way of saving (read the JSON file, append, rewrite it with
//! tmp + fsync + rename) at 10,000 entries, so the ratio is measured; and
//! the floor any durable save pays on this disk, one 4 KiB write + fdatasync.
//!
//!     cargo bench -p mem0-queue --bench save

use std::io::Write;
use std::time::{Duration, Instant};

use mem0_queue::engine::store::{NewEntry, Origin, State, Store};
use mem0_queue_testkit::bench::{machine, memory};
use mem0_queue_testkit::{
    bin,
    mcp::{is_error, text},
    sandbox::Sandbox,
};
use serde_json::{Value, json};

const SIZES: [usize; 3] = [100, 10_000, 100_000];
const WARMUP: usize = 20;
const SAMPLES: usize = 400;
const SEED_ENTRIES: usize = 10_000;
const SEED_SAMPLES: usize = 100;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    println!("{}", machine());
    println!(
        "mem0_save round trip over MCP stdio (rmcp client -> `mem0-queue serve`), \
         {SAMPLES} sequential saves per size after {WARMUP} warm-up saves:"
    );
    let mut p50s = Vec::new();
    for size in SIZES {
        let sb = Sandbox::new(bin!());
        let t = Instant::now();
        prefill(&sb, size);
        let fill = t.elapsed();
        let mut lat = rt.block_on(measure(&sb, size));
        let (p50, p99) = percentiles(&mut lat);
        println!(
            "  queue {size:>7}: p50 {:>7.3} ms   p99 {:>7.3} ms   (prefilled in {:.1} s)",
            ms(p50),
            ms(p99),
            fill.as_secs_f64()
        );
        p50s.push((size, p50));
    }
    // The lifecycle's changes, in the same run, on a queue of 10,000.
    let changes = rt.block_on(measure_changes());
    println!(
        "mem0_update and mem0_delete round trips over MCP stdio, queue 10,000, {CHANGE_SAMPLES} each:"
    );
    for (what, mut lat) in changes {
        let (p50, p99) = percentiles(&mut lat);
        println!(
            "  {what:<44} p50 {:>7.3} ms   p99 {:>7.3} ms",
            ms(p50),
            ms(p99)
        );
    }
    let p50_of = |n: usize| {
        p50s.iter()
            .find(|(s, _)| *s == n)
            .map(|(_, d)| *d)
            .expect("size")
    };
    println!(
        "  p50(100,000) / p50(100) = {:.2}",
        p50_of(100_000).as_secs_f64() / p50_of(100).as_secs_f64()
    );

    let mut seed = seed_baseline();
    let (s50, s99) = percentiles(&mut seed);
    println!(
        "seed-style JSON file, {SEED_ENTRIES} entries, read + append + rewrite (tmp, fsync, rename) \
         per save, {SEED_SAMPLES} saves (file I/O only, no MCP, Rust's JSON):"
    );
    println!("  p50 {:>7.3} ms   p99 {:>7.3} ms", ms(s50), ms(s99));
    println!(
        "  seed p50 / mem0_save p50 at 10,000 entries = {:.1}x",
        s50.as_secs_f64() / p50_of(10_000).as_secs_f64()
    );
    let mut floor = fsync_floor();
    let (f50, f99) = percentiles(&mut floor);
    println!(
        "the floor of a durable save on this disk: a 4 KiB write + fdatasync, {FSYNC_SAMPLES} times:"
    );
    println!("  p50 {:>7.3} ms   p99 {:>7.3} ms", ms(f50), ms(f99));
    println!(
        "  mem0_save p50 at 10,000 entries / fdatasync p50 = {:.1}x",
        p50_of(10_000).as_secs_f64() / f50.as_secs_f64()
    );
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}

/// Writes timed for the fsync floor.
const FSYNC_SAMPLES: usize = 200;

/// The cost of one durable 4 KiB write on the disk the queue lives on: the
/// least any save that is on disk before its reply can take (a WAL commit
/// with `synchronous=FULL` pays at least one).
fn fsync_floor() -> Vec<Duration> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut f = std::fs::File::create(dir.path().join("floor")).expect("create");
    let page = [0x5au8; 4096];
    (0..FSYNC_SAMPLES)
        .map(|_| {
            let t = Instant::now();
            f.write_all(&page).expect("write");
            f.sync_data().expect("fdatasync");
            t.elapsed()
        })
        .collect()
}

/// Puts `n` pending entries in a fresh queue in one transaction.
fn prefill(sb: &Sandbox, n: usize) {
    std::fs::create_dir_all(sb.data_dir()).expect("data dir");
    let mut store = Store::open(&sb.db()).expect("open the queue");
    let now = 1_764_410_400_000_i64;
    let rows: Vec<(NewEntry, State, u32)> = (0..n)
        .map(|i| {
            (
                NewEntry {
                    project: "bench".into(),
                    agent_id: None,
                    run_id: None,
                    content: memory("prefilled", i),
                    metadata: json!({"tags": ["bench"]}),
                    created_at: now + i as i64,
                    origin: Origin::Import,
                    infer: None,
                    id: Some(
                        uuid::Uuid::from_u128(
                            0xbe9c_0000_0000_4000_8000_0000_0000_0000 | i as u128,
                        )
                        .to_string(),
                    ),
                },
                State::Pending,
                0,
            )
        })
        .collect();
    let (inserted, _) = store
        .import_batch(&rows, &Value::Null, "bench-prefill")
        .expect("prefill");
    assert_eq!(inserted.iter().filter(|b| **b).count(), n);
    assert_eq!(store.counts().expect("counts").pending, n as u64);
}

async fn measure(sb: &Sandbox, size: usize) -> Vec<Duration> {
    // The prefilled queue may be at the default cap; lift it for the bench.
    let server = sb.serve(&["--set", "max_queue_len=10000000"]).await;
    let mut lat = Vec::with_capacity(SAMPLES);
    for i in 0..WARMUP + SAMPLES {
        let args = json!({"content": memory("bench save", i), "project": "bench"});
        let t = Instant::now();
        let r = server.save(args).await;
        let d = t.elapsed();
        assert!(!is_error(&r), "a bench save failed: {}", text(&r));
        assert_eq!(
            r.structured_content
                .as_ref()
                .map(|s| s["queue_depth"].clone()),
            Some(json!(size + i + 1))
        );
        if i >= WARMUP {
            lat.push(d);
        }
    }
    server.stop().await;
    lat
}

/// Changes timed per kind in the lifecycle part.
const CHANGE_SAMPLES: usize = 200;

/// `mem0_update` and `mem0_delete` on a queue of 10,000: on memories never
/// sent (applied to the local copy) and on delivered ones (queued against
/// their Mem0 id): each one transaction with its fsync, like a save.
async fn measure_changes() -> Vec<(&'static str, Vec<Duration>)> {
    let sb = Sandbox::new(bin!());
    prefill(&sb, SIZES[1]);
    // Deliver the oldest 2 x CHANGE_SAMPLES, as a worker would.
    let mut delivered = Vec::new();
    {
        let mut store = Store::open(&sb.db()).expect("open the queue");
        let claimed = store
            .claim("bench", 1, 600_000, 2 * CHANGE_SAMPLES)
            .expect("claim");
        for c in claimed {
            let remote = uuid::Uuid::new_v4().to_string();
            store
                .record_delivered(&c.id, std::slice::from_ref(&remote), 2)
                .expect("deliver");
            delivered.push(c.id);
        }
    }
    let pending: Vec<String> = (2 * CHANGE_SAMPLES..4 * CHANGE_SAMPLES)
        .map(|i| {
            uuid::Uuid::from_u128(0xbe9c_0000_0000_4000_8000_0000_0000_0000 | i as u128).to_string()
        })
        .collect();
    let server = sb.serve(&["--set", "max_queue_len=10000000"]).await;
    let mut out = Vec::new();
    for (what, tool, ids) in [
        (
            "update, never sent (applied locally)",
            "mem0_update",
            &pending[..CHANGE_SAMPLES],
        ),
        (
            "update, delivered (queued for Mem0)",
            "mem0_update",
            &delivered[..CHANGE_SAMPLES],
        ),
        (
            "delete, never sent (the save cancelled)",
            "mem0_delete",
            &pending[CHANGE_SAMPLES..],
        ),
        (
            "delete, delivered (queued for Mem0)",
            "mem0_delete",
            &delivered[CHANGE_SAMPLES..],
        ),
    ] {
        let mut lat = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let args = if tool == "mem0_update" {
                json!({"id": id, "text": memory("bench edit", i)})
            } else {
                json!({"id": id})
            };
            let t = Instant::now();
            let r = server.call(tool, args).await;
            lat.push(t.elapsed());
            assert!(!is_error(&r), "a bench {tool} failed: {}", text(&r));
        }
        out.push((what, lat));
    }
    server.stop().await;
    out
}

/// The seed's save: load the whole JSON file, append, write it back
/// atomically. Timed per save at SEED_ENTRIES entries.
fn seed_baseline() -> Vec<Duration> {
    let sb = Sandbox::new(bin!());
    let path = sb.root().join("mem0_queue.json");
    let entry = |tag: &str, i: usize| {
        json!({"content": memory(tag, i), "project": "windsurf-project",
               "timestamp": "2025-11-29T10:00:00.123456", "retries": 0, "metadata": {}})
    };
    let queue: Vec<Value> = (0..SEED_ENTRIES).map(|i| entry("prefilled", i)).collect();
    let last: Vec<Value> = queue[SEED_ENTRIES - 100..].to_vec();
    let file = json!({"queue": queue, "last_100": last, "failed": [],
                      "stats": {"total_queued": SEED_ENTRIES, "total_synced": 0, "total_failed": 0, "last_sync": null}});
    std::fs::write(&path, serde_json::to_vec_pretty(&file).expect("json")).expect("write seed");

    let tmp = sb.root().join("mem0_queue.json.tmp");
    let mut lat = Vec::with_capacity(SEED_SAMPLES);
    for i in 0..SEED_SAMPLES {
        let t = Instant::now();
        let text = std::fs::read_to_string(&path).expect("read");
        let mut v: Value = serde_json::from_str(&text).expect("parse");
        let e = entry("bench save", i);
        v["queue"].as_array_mut().expect("queue").push(e.clone());
        let last = v["last_100"].as_array_mut().expect("last_100");
        last.push(e);
        if last.len() > 100 {
            last.remove(0);
        }
        v["stats"]["total_queued"] = json!(v["stats"]["total_queued"].as_u64().unwrap_or(0) + 1);
        let mut f = std::fs::File::create(&tmp).expect("tmp");
        f.write_all(&serde_json::to_vec_pretty(&v).expect("json"))
            .expect("write");
        f.sync_all().expect("fsync");
        drop(f);
        std::fs::rename(&tmp, &path).expect("rename");
        lat.push(t.elapsed());
    }
    lat
}

fn percentiles(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.50), at(0.99))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
