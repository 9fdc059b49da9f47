//! Benchmark (issue 16): the daemon, against the loopback Mem0 test server.
//!
//! 1. `mem0_save` round trips over Streamable HTTP (a session on the
//!    daemon) beside the same over stdio (a `serve` window on the same data
//!    dir), alternated in the same run so both meet the same conditions
//!    (the daemon delivering in the background): p50, p95, p99 and the
//!    ratio of the p50s.
//! 2. Save to delivery with the daemon running: from a save's reply to the
//!    memory on the server, for saves made by another process (a `serve`
//!    window: the daemon finds them by its one-second look) and for the
//!    daemon's own (over HTTP: it is nudged at once). A random pause before
//!    each save, so saves fall anywhere in the daemon's second. Goal: p50
//!    under 2 s.
//!
//!     cargo bench -p mem0-queue --bench daemon

use std::time::{Duration, Instant};

use mem0_queue_testkit::bench::{machine, memory};
use mem0_queue_testkit::bin;
use mem0_queue_testkit::daemon::{Daemon, HttpMcp};
use mem0_queue_testkit::mcp::{Server, is_error, structured, text};
use mem0_queue_testkit::mem0_server::{Kind, Mem0Server};
use mem0_queue_testkit::sandbox::Sandbox;
use mem0_queue_testkit::worker::server;
use serde_json::json;

const WARMUP: usize = 20;
const SAMPLES: usize = 400;
/// Saves timed from reply to delivery, per path.
const DELIVERY_SAMPLES: usize = 60;
/// The longest a delivery may take before the bench calls it lost.
const DELIVERY_LIMIT: Duration = Duration::from_secs(30);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    println!("{}", machine());
    rt.block_on(run());
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}

async fn run() {
    let sb = Sandbox::new(bin!());
    let srv = server(Kind::Oss, None, 16).await;
    let url = srv.url();
    let d = Daemon::delivering_to(&sb, &url, &[]).await;
    let mut cmd = sb.command(&["serve"]);
    cmd.env("MEM0_API_URL", &url);
    let window = Server::start(cmd).await;
    let http = HttpMcp::connect(&d.url, &d.token)
        .await
        .expect("an HTTP session");

    println!(
        "mem0_save round trip, {SAMPLES} sequential saves per transport after {WARMUP} warm-up \
         saves, alternated (the daemon delivering to the loopback test server meanwhile):"
    );
    let (mut over_http, mut over_stdio) = (Vec::new(), Vec::new());
    for i in 0..WARMUP + SAMPLES {
        let t = Instant::now();
        let r = window
            .save(json!({"content": memory("stdio save", i), "project": "bench"}))
            .await;
        let ds = t.elapsed();
        assert!(!is_error(&r), "a stdio save failed: {}", text(&r));
        let t = Instant::now();
        http.save(json!({"content": memory("http save", i), "project": "bench"}))
            .await
            .expect("an HTTP save");
        let dh = t.elapsed();
        if i >= WARMUP {
            over_stdio.push(ds);
            over_http.push(dh);
        }
    }
    let s = percentiles(&mut over_stdio);
    let h = percentiles(&mut over_http);
    println!("  stdio (`serve`): {}", s.show());
    println!("  HTTP (daemon):   {}", h.show());
    println!(
        "  p50 HTTP / p50 stdio = {:.2}",
        h.p50.as_secs_f64() / s.p50.as_secs_f64()
    );

    println!(
        "save to delivery with the daemon running, {DELIVERY_SAMPLES} saves per path, each after a \
         random pause of 0-1 s:"
    );
    let mut rng = fastrand::Rng::with_seed(16);
    let mut from_window = Vec::new();
    for i in 0..DELIVERY_SAMPLES {
        tokio::time::sleep(Duration::from_millis(rng.u64(0..1000))).await;
        let r = window
            .save(json!({"content": memory("window delivery", i), "project": "bench"}))
            .await;
        let t = Instant::now();
        let id = structured(&r)["id"].as_str().expect("an id").to_string();
        from_window.push(delivered(&srv, &id, t).await);
    }
    let mut from_http = Vec::new();
    for i in 0..DELIVERY_SAMPLES {
        tokio::time::sleep(Duration::from_millis(rng.u64(0..1000))).await;
        let id = http
            .save(json!({"content": memory("http delivery", i), "project": "bench"}))
            .await
            .expect("an HTTP save");
        let t = Instant::now();
        from_http.push(delivered(&srv, &id, t).await);
    }
    let w = percentiles(&mut from_window);
    let h = percentiles(&mut from_http);
    println!("  saved by a `serve` window: {}", w.show());
    println!("  saved over HTTP:           {}", h.show());
    println!(
        "  goal p50 < 2 s: {}",
        if w.p50.max(h.p50) < Duration::from_secs(2) {
            "met"
        } else {
            "NOT MET"
        }
    );
    http.close().await;
    window.stop().await;
    let _ = tokio::task::spawn_blocking(move || d.stop()).await;
}

/// How long after `since` the entry `id` is on the server.
async fn delivered(srv: &Mem0Server, id: &str, since: Instant) -> Duration {
    loop {
        if srv.count_by_mq_id().contains_key(id) {
            return since.elapsed();
        }
        assert!(since.elapsed() < DELIVERY_LIMIT, "{id} not delivered");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

struct Figures {
    p50: Duration,
    p95: Duration,
    p99: Duration,
    max: Duration,
}

impl Figures {
    fn show(&self) -> String {
        format!(
            "p50 {:>8.3} ms   p95 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms",
            ms(self.p50),
            ms(self.p95),
            ms(self.p99),
            ms(self.max)
        )
    }
}

fn percentiles(v: &mut [Duration]) -> Figures {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    Figures {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: v[v.len() - 1],
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
