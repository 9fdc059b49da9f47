//! Benchmark: local search (FTS5, bm25) with 100,000 local entries, p50 and
//! p99, through the store's own query (what `mem0_search` runs when Mem0 is
//! down, and for read-your-writes). Also P7: the binary's size and the RSS
//! of an idle `serve`.
//!
//! Run: `cargo bench -p mem0-queue --bench search`

use std::io::Write;
use std::time::{Duration, Instant};

use mem0_queue::store::{NewEntry, Origin, Store};

/// Entries in the local copy, as the issue asks.
const ENTRIES: usize = 100_000;

/// Queries timed. Enough for a stable p99.
const QUERIES: usize = 2_000;

const WORDS: &[&str] = &[
    "rust", "deploy", "staging", "database", "alice", "bob", "kafka", "rsync", "backup", "nightly",
    "port", "config", "token", "cache", "policy", "queue", "vps", "nginx", "docker", "tests",
    "coffee", "review", "merge", "branch", "release", "tag", "schema", "index", "latency",
    "budget",
];

fn text(rng: &mut fastrand::Rng, i: usize) -> String {
    let n = rng.usize(6..20);
    let mut s = format!("note {i}:");
    for _ in 0..n {
        s.push(' ');
        s.push_str(WORDS[rng.usize(..WORDS.len())]);
    }
    s
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("queue.db");
    let mut store = Store::open(&db).expect("open");
    let mut rng = fastrand::Rng::with_seed(42);
    let rows: Vec<_> = (0..ENTRIES)
        .map(|i| {
            let new = NewEntry {
                project: format!("p{}", i % 5),
                agent_id: None,
                run_id: None,
                content: text(&mut rng, i),
                metadata: serde_json::json!({}),
                created_at: 1_700_000_000_000 + i as i64,
                origin: Origin::Import,
                id: Some(uuid::Uuid::now_v7().to_string()),
            };
            (new, mem0_queue::store::State::Delivered, 0)
        })
        .collect();
    let t = Instant::now();
    store
        .import_batch(&rows, &serde_json::Value::Null, "bench")
        .expect("fill");
    let fill = t.elapsed();
    drop(rows);

    let mut times = Vec::with_capacity(QUERIES);
    let mut hits = 0;
    for _ in 0..QUERIES {
        let q = format!(
            "{} {}",
            WORDS[rng.usize(..WORDS.len())],
            WORDS[rng.usize(..WORDS.len())]
        );
        let t = Instant::now();
        let r = store.search_local(&q, None, 10).expect("search");
        times.push(t.elapsed());
        hits += r.len();
    }
    times.sort();
    let (p50, p99) = (pct(&times, 0.5), pct(&times, 0.99));

    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_mem0-queue"));
    let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    let rss = idle_serve_rss_kib(bin, dir.path());

    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "## Local search and footprint (P7)\n");
    let _ = writeln!(out, "{}\n", machine());
    let _ = writeln!(out, "| what | figure |\n|---|---|");
    let _ = writeln!(
        out,
        "| local entries (filled in one transaction) | {ENTRIES} in {:.1} s |",
        fill.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| local search, 2 words, top 10: p50 | {:.3} ms |",
        p50.as_secs_f64() * 1e3
    );
    let _ = writeln!(
        out,
        "| local search: p99 | {:.3} ms |",
        p99.as_secs_f64() * 1e3
    );
    let _ = writeln!(
        out,
        "| mean hits per query | {:.1} |",
        hits as f64 / QUERIES as f64
    );
    let _ = writeln!(
        out,
        "| binary size (this build profile) | {:.1} MB |",
        size as f64 / 1e6
    );
    match rss {
        Some(kib) => {
            let _ = writeln!(
                out,
                "| RSS of an idle `serve` (after handshake, 1 s idle) | {:.1} MB |",
                kib as f64 / 1024.0
            );
        }
        None => {
            let _ = writeln!(out, "| RSS of an idle `serve` | not measured (no /proc) |");
        }
    }
}

/// Starts `serve`, does the MCP handshake by hand, waits a second, and
/// reads VmRSS from /proc.
fn idle_serve_rss_kib(bin: &std::path::Path, dir: &std::path::Path) -> Option<u64> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin)
        .arg("--data-dir")
        .arg(dir.join("serve-data"))
        .arg("serve")
        .env_remove("MEM0_API_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;
    writeln!(stdin, "{init}").ok()?;
    let mut stdout = std::io::BufReader::new(child.stdout.take()?);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).ok()?;
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .ok()?;
    std::thread::sleep(Duration::from_secs(1));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok();
    drop(stdin);
    let _ = child.wait();
    status?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    format!(
        "Machine: {cores} cores, {}; measured {now}.",
        std::env::consts::ARCH
    )
}
