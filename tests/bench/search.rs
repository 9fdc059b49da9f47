//! Benchmark: local search (FTS5, bm25) with 100,000 local entries, p50 and
//! p99, through the store's own query (what `mem0_search` runs when Mem0 is
//! down, and for read-your-writes), on two corpora (a worst-case 30-word
//! vocabulary and a Zipf-distributed 20,000-word one), each with the
//! candidate cap and, in the same run, with every match ranked. Also P7: the binary's size (as
//! built, and stripped) and the RSS of an idle `serve`, on its first start (which compiles the
//! policy) and on a later one (from the compiled cache), and of an idle daemon.
//!
//! Run: `cargo bench -p mem0-queue --bench search`

use std::io::Write;
use std::time::{Duration, Instant};

use mem0_queue::engine::store::{NewEntry, Origin, SEARCH_CANDIDATES, Store};
use mem0_queue_testkit::bench::machine;

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

/// Queries timed with every match ranked (the search before the candidate
/// cap): each takes about 100 ms on the worst-case corpus, so fewer.
const UNCAPPED_QUERIES: usize = 200;

/// The realistic vocabulary: distinct words, drawn by Zipf's law (the k-th
/// most common word has weight 1/k), as in natural text.
const VOCABULARY: usize = 20_000;

/// A corpus: how its texts and its queries' words are drawn.
enum Corpus {
    /// Every word from the 30 of [`WORDS`], uniformly: any two query words
    /// match about half the memories. The worst case for ranking.
    Narrow,
    /// Words from a Zipf law over [`VOCABULARY`] words (cumulative weights).
    Zipf(Vec<f64>),
}

impl Corpus {
    fn zipf() -> Self {
        let mut acc = 0.0;
        Corpus::Zipf(
            (1..=VOCABULARY)
                .map(|k| {
                    acc += 1.0 / k as f64;
                    acc
                })
                .collect(),
        )
    }

    fn word(&self, rng: &mut fastrand::Rng) -> String {
        match self {
            Corpus::Narrow => WORDS[rng.usize(..WORDS.len())].to_string(),
            Corpus::Zipf(cumulative) => {
                let total = cumulative[cumulative.len() - 1];
                let x = rng.f64() * total;
                let k = cumulative.partition_point(|&c| c < x);
                format!("w{k}x")
            }
        }
    }

    fn text(&self, rng: &mut fastrand::Rng, i: usize) -> String {
        let n = rng.usize(6..20);
        let mut s = format!("note {i}:");
        for _ in 0..n {
            s.push(' ');
            s.push_str(&self.word(rng));
        }
        s
    }

    fn query(&self, rng: &mut fastrand::Rng) -> String {
        format!("{} {}", self.word(rng), self.word(rng))
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A store of [`ENTRIES`] memories of this corpus, filled in one
/// transaction; the time it took.
fn filled(dir: &std::path::Path, corpus: &Corpus, rng: &mut fastrand::Rng) -> (Store, Duration) {
    let mut store = Store::open(&dir.join("queue.db")).expect("open");
    let rows: Vec<_> = (0..ENTRIES)
        .map(|i| {
            let new = NewEntry {
                project: format!("p{}", i % 5),
                agent_id: None,
                run_id: None,
                content: corpus.text(rng, i),
                metadata: serde_json::json!({}),
                created_at: 1_700_000_000_000 + i as i64,
                origin: Origin::Import,
                infer: None,
                id: Some(uuid::Uuid::now_v7().to_string()),
            };
            (new, mem0_queue::engine::store::State::Delivered, 0)
        })
        .collect();
    let t = Instant::now();
    store
        .import_batch(&rows, &serde_json::Value::Null, "bench")
        .expect("fill");
    (store, t.elapsed())
}

/// Times `n` two-word queries, ranking at most `candidates` matches each:
/// (p50, p99, mean hits).
fn timed(
    store: &Store,
    corpus: &Corpus,
    rng: &mut fastrand::Rng,
    n: usize,
    candidates: i64,
) -> (Duration, Duration, f64) {
    let mut times = Vec::with_capacity(n);
    let mut hits = 0;
    for _ in 0..n {
        let q = corpus.query(rng);
        let t = Instant::now();
        let r = store
            .search_local_among(&q, None, 10, candidates)
            .expect("search");
        times.push(t.elapsed());
        hits += r.len();
    }
    times.sort();
    (pct(&times, 0.5), pct(&times, 0.99), hits as f64 / n as f64)
}

fn main() {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut rows = Vec::new();
    let mut fill_line = String::new();
    for (name, corpus) in [
        ("worst case: 30-word vocabulary", Corpus::Narrow),
        ("realistic: 20,000 words by Zipf's law", Corpus::zipf()),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, fill) = filled(dir.path(), &corpus, &mut rng);
        fill_line = format!("{ENTRIES} in {:.1} s", fill.as_secs_f64());
        let capped = timed(&store, &corpus, &mut rng, QUERIES, SEARCH_CANDIDATES);
        let all = timed(&store, &corpus, &mut rng, UNCAPPED_QUERIES, i64::MAX);
        rows.push((name, capped, all));
    }
    let dir = tempfile::tempdir().expect("temp dir");

    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_mem0-queue"));
    let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    let stripped = stripped_size(bin, dir.path());
    // The first start compiles the embedded policy and fills the cache;
    // every later start (and a daemon's restart) loads it from the cache.
    let rss_first = idle_serve_rss_kib(bin, dir.path());
    let rss = idle_serve_rss_kib(bin, dir.path());
    let daemon_rss = idle_daemon_rss_kib(bin, dir.path());

    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "## Local search and footprint (P7)\n");
    let _ = writeln!(out, "{}\n", machine());
    let _ = writeln!(out, "| what | figure |\n|---|---|");
    let _ = writeln!(
        out,
        "| local entries (filled in one transaction) | {fill_line} |"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (name, (p50, p99, hits), (all50, all99, _)) in &rows {
        let _ = writeln!(
            out,
            "| {name}: 2 words, top 10, newest {SEARCH_CANDIDATES} matches ranked: p50 / p99 | {:.3} / {:.3} ms ({hits:.1} hits) |",
            ms(*p50),
            ms(*p99)
        );
        let _ = writeln!(
            out,
            "| {name}: every match ranked ({UNCAPPED_QUERIES} queries): p50 / p99 | {:.3} / {:.3} ms ({:.1}x / {:.1}x the capped) |",
            ms(*all50),
            ms(*all99),
            all50.as_secs_f64() / p50.as_secs_f64(),
            all99.as_secs_f64() / p99.as_secs_f64()
        );
    }
    let _ = writeln!(
        out,
        "| binary size (this build profile) | {:.1} MB |",
        size as f64 / 1e6
    );
    match stripped {
        Some(n) => {
            let _ = writeln!(
                out,
                "| binary size, stripped (`strip` of a copy) | {:.1} MB |",
                n as f64 / 1e6
            );
        }
        None => {
            let _ = writeln!(out, "| binary size, stripped | not measured (no `strip`) |");
        }
    }
    for (what, rss) in [
        (
            "first start: compiles the policy, fills the cache",
            rss_first,
        ),
        ("any later start: the policy from the cache", rss),
    ] {
        match rss {
            Some(kib) => {
                let _ = writeln!(
                    out,
                    "| RSS of an idle `serve` (after handshake, 1 s idle), {what} | {:.1} MB |",
                    kib as f64 / 1024.0
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "| RSS of an idle `serve`, {what} | not measured (no /proc) |"
                );
            }
        }
    }
    match daemon_rss {
        Some(kib) => {
            let _ = writeln!(
                out,
                "| RSS of an idle `daemon` (listening, policy loaded from the cache, {} s idle) | {:.1} MB |",
                DAEMON_IDLE.as_secs(),
                kib as f64 / 1024.0
            );
        }
        None => {
            let _ = writeln!(out, "| RSS of an idle `daemon` | not measured (no /proc) |");
        }
    }
}

/// How long the daemon idles before its RSS is read: past its start-up
/// (the policy watcher loads the policy, then gives the heap back) and a
/// few of its one-second looks at the queue.
const DAEMON_IDLE: Duration = Duration::from_secs(5);

/// Starts `daemon --port 0` on the data dir `serve` used (its policy cache
/// is warm), waits for its first line and [`DAEMON_IDLE`], reads VmRSS,
/// and stops it with SIGTERM.
fn idle_daemon_rss_kib(bin: &std::path::Path, dir: &std::path::Path) -> Option<u64> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin)
        .arg("--data-dir")
        .arg(dir.join("serve-data"))
        .args(["daemon", "--port", "0"])
        .env_remove("MEM0_API_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = std::io::BufReader::new(child.stdout.take()?);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).ok()?;
    std::thread::sleep(DAEMON_IDLE);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok();
    // SAFETY: kill(2) on our own child's pid, which has not been reaped.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    rss_of(&status?)
}

/// VmRSS (KiB) of a /proc status text.
fn rss_of(status: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The size of a stripped copy of `bin` (`strip` from binutils), in bytes.
fn stripped_size(bin: &std::path::Path, dir: &std::path::Path) -> Option<u64> {
    let copy = dir.join("mem0-queue.stripped");
    std::fs::copy(bin, &copy).ok()?;
    let ok = std::process::Command::new("strip")
        .arg(&copy)
        .status()
        .ok()?
        .success();
    let size = std::fs::metadata(&copy).ok()?.len();
    let _ = std::fs::remove_file(&copy);
    ok.then_some(size)
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
    rss_of(&status?)
}
