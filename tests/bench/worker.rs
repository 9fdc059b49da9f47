//! Delivery-worker benchmarks (`cargo bench --bench worker`), on the real
//! clock, against the in-process test Mem0 server on loopback:
//!
//! (a) drain throughput of 1,000 entries, at 0 ms and 100 ms added latency
//!     per add, with concurrency 1, 4 and 8, and the speedup of each
//!     concurrency over 1 measured in the same run;
//! (b) a run against a blackholed server (a loopback listener whose accept
//!     queue is full, so connects hang until the 5 s connect timeout) with
//!     1,000 entries queued: wall time and attempts charged, for a first run
//!     and for the run after it (the breaker's previous-run-tripped path);
//! (c) worker cold start: from `mem0-queue sync` being spawned to its first
//!     request seen by the server, with and without the compiled-policy cache.
//!
//! The whole bench takes about three minutes, most of it the 100 ms,
//! concurrency 1 drain (1,000 sequential adds of at least 100 ms each).

use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use mem0_queue_testkit::mem0_server::{FaultPlan, Kind};
use mem0_queue_testkit::{
    bin,
    sandbox::Sandbox,
    wait::child_async,
    worker::{Harness, Options, add_requests, command, enqueue_into, server},
};

/// Entries drained or queued per measurement.
const ENTRIES: usize = 1_000;

/// Concurrency levels of the throughput table.
const CONCURRENCY: [usize; 3] = [1, 4, 8];

/// Added latencies per add of the throughput table.
const LATENCIES_MS: [u64; 2] = [0, 100];

/// The connect timeout of the blackhole measurement: the config's default.
const BLACKHOLE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Cold starts measured per cache state.
const COLD_START_REPS: usize = 3;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    machine();
    rt.block_on(async {
        let started = Instant::now();
        throughput().await;
        blackhole().await;
        cold_start().await;
        println!("\nwhole bench: {:.1} s", started.elapsed().as_secs_f64());
    });
}

fn machine() {
    let out = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    println!("# mem0-queue worker bench");
    println!(
        "machine: nproc={} arch={} kernel={} date={}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        out("uname", &["-m"]),
        out("uname", &["-r"]),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    println!(
        "store: SQLite WAL, synchronous=FULL, in {}; server: in-process, same 2-thread runtime",
        std::env::temp_dir().display()
    );
}

/// (a) Drain throughput.
async fn throughput() {
    println!("\n## (a) drain throughput, {ENTRIES} entries, oss API");
    println!("latency_ms  concurrency  wall_s  entries_per_s  speedup_vs_c1");
    for latency in LATENCIES_MS {
        let mut base = None;
        for c in CONCURRENCY {
            let mut opts = Options::new(Kind::Oss);
            opts.concurrency = c;
            opts.real_clock = true;
            opts.add_timeout = Duration::from_secs(30);
            let h = Harness::start(opts).await;
            h.enqueue(ENTRIES).await;
            h.server.set_faults(FaultPlan {
                latency: (latency > 0).then(|| Duration::from_millis(latency)),
                ..FaultPlan::default()
            });
            let t = Instant::now();
            let r = h.run().await;
            let wall = t.elapsed().as_secs_f64();
            assert_eq!(r.delivered, ENTRIES as u64, "{r:?}");
            assert_eq!(h.server.count_by_mq_id().len(), ENTRIES);
            let rate = ENTRIES as f64 / wall;
            let base_rate = *base.get_or_insert(rate);
            println!(
                "{latency:>10}  {c:>11}  {wall:>6.2}  {rate:>13.1}  {:>13.2}",
                rate / base_rate
            );
        }
    }
}

/// A loopback listener with a backlog of 0 and its accept queue filled by
/// one connection that is never accepted: further SYNs are dropped, so a
/// connect hangs until its timeout, as with a VPS that went dark.
fn blackhole_listener() -> (socket2::Socket, Vec<TcpStream>, SocketAddr) {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    sock.bind(&any.into()).expect("bind loopback");
    sock.listen(0).expect("listen");
    let addr = sock
        .local_addr()
        .expect("local addr")
        .as_socket()
        .expect("an inet address");
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => return (sock, fillers, addr),
        }
    }
    panic!("the listener's accept queue never filled: no blackhole on this kernel");
}

/// (b) A run against a blackholed server.
async fn blackhole() {
    println!(
        "\n## (b) blackholed server, {ENTRIES} queued, connect_timeout {}s, concurrency 4",
        BLACKHOLE_CONNECT_TIMEOUT.as_secs()
    );
    let (_listener, _fillers, addr) = blackhole_listener();
    let mut opts = Options::new(Kind::Oss);
    opts.real_clock = true;
    opts.connect_timeout = BLACKHOLE_CONNECT_TIMEOUT;
    opts.add_timeout = Duration::from_secs(120);
    let unused = server(Kind::Oss, None, 1).await;
    let h = Harness::with_server(opts, unused, Some(format!("http://{addr}")));
    h.enqueue(ENTRIES).await;
    println!("run                    wall_s  attempts  charged_total  stopped  next_probe_s");
    for label in ["first run", "next run (tripped)"] {
        let t = Instant::now();
        let r = h.run().await;
        let wall = t.elapsed().as_secs_f64();
        let charged = h.rows().values().filter(|r| r.attempts > 0).count();
        println!(
            "{label:<21}  {wall:>6.2}  {:>8}  {charged:>13}  {:>7}  {:>12}",
            r.attempts,
            format!("{:?}", r.stopped).to_lowercase(),
            r.next_probe_ms.map_or(0, |ms| ms / 1000)
        );
    }
}

/// (c) Cold start: spawn to first request seen.
async fn cold_start() {
    println!("\n## (c) cold start: `mem0-queue sync` spawned -> first request at the server");
    let srv = server(Kind::Oss, None, 1).await;
    let sb = Sandbox::new(bin!());
    let data = sb.data_dir();
    std::fs::create_dir_all(&data).expect("data dir");
    let mut store =
        mem0_queue::engine::store::Store::open(&data.join("queue.db")).expect("open the queue");
    let mut results: Vec<(&str, Vec<f64>)> =
        vec![("without cache", vec![]), ("with cache", vec![])];
    for rep in 0..COLD_START_REPS {
        for (label, times) in results.iter_mut() {
            if *label == "without cache" {
                let _ = std::fs::remove_dir_all(data.join("cache"));
            }
            enqueue_into(&mut store, 1, &format!("cold start {label} {rep}"));
            let before = add_requests(&srv).len();
            let t = Instant::now();
            let mut child = command(&sb, Some(&srv.url()), Kind::Oss, &["sync"])
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn sync");
            // A 1 ms poll: finer than the helpers' default.
            let mut seen = false;
            while t.elapsed() < Duration::from_secs(60) {
                if add_requests(&srv).len() > before {
                    seen = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let status = child_async(&mut child, Duration::from_secs(60)).await;
            assert!(seen && status.success(), "sync ran: {status:?}");
            times.push(ms);
        }
    }
    println!("cache          runs  min_ms  median_ms  max_ms");
    for (label, mut times) in results {
        times.sort_by(f64::total_cmp);
        println!(
            "{label:<13}  {:>4}  {:>6.0}  {:>9.0}  {:>6.0}",
            times.len(),
            times[0],
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
    println!("(polled every 1 ms)");
}
