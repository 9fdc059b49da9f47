//! What the WASM policy costs, measured in one run:
//! `cargo bench -p mem0-queue --bench policy`.
//!
//! - the Cranelift compile of the default component (`Component::new`);
//! - `Runtime::new` with no cache, a cold cache dir and a warm one;
//! - one decision (`on_failure`, `alerts`) three ways in the same run: on a
//!   fresh store and instance per call (what every call cost before issue
//!   16), through the runtime, which reuses one live store per policy
//!   (recycled every `RECYCLE_EVERY` calls, the rebuild included in the
//!   average), and the same logic compiled natively (`policy::native`);
//! - the sizes of the components and of their compiled artifacts.
//!
//! Medians of many iterations; the whole run stays well under a minute.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mem0_queue::engine::policy::wasm::{self, Host};
use mem0_queue::engine::policy::{
    EntryState, Operation, Outcome, PolicySource, QueueStats, Runtime, native,
};
use wasmtime::component::Component;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Times `f` `n` times, after one untimed warm-up; returns (median, min).
fn sample<R>(n: usize, mut f: impl FnMut() -> R) -> (Duration, Duration) {
    std::hint::black_box(f());
    let v: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .collect();
    let min = v.iter().min().copied().unwrap_or_default();
    (median(v), min)
}

/// The median per-call time of `f` over `batches` batches of `per_batch` calls.
fn per_call<R>(batches: usize, per_batch: u32, mut f: impl FnMut(u32) -> R) -> Duration {
    for i in 0..per_batch.min(1_000) {
        std::hint::black_box(f(i));
    }
    let v: Vec<Duration> = (0..batches)
        .map(|_| {
            let start = Instant::now();
            for i in 0..per_batch {
                std::hint::black_box(f(i));
            }
            start.elapsed() / per_batch
        })
        .collect();
    median(v)
}

fn show(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

fn bytes(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out} B")
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A fresh, empty scratch dir.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mem0-queue-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch dir");
    dir
}

fn cwasm_size(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .and_then(|e| e.metadata().ok())
        .map(|m| m.len())
}

fn main() {
    let total = Instant::now();
    let default_wasm = mem0_queue_embed::DEFAULT_POLICY;
    let jitter_wasm =
        std::fs::read(mem0_queue_embed::JITTER_POLICY_PATH).expect("the jitter component");

    let date = command_line("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]).unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        format!("{secs} s since the epoch")
    });
    let arch = command_line("uname", &["-m"]).unwrap_or_else(|| std::env::consts::ARCH.into());
    let nproc = command_line("nproc", &[]).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into())
    });
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    println!("mem0-queue policy benchmark");
    println!("  date:    {date}");
    println!("  machine: {arch}, nproc {nproc}, {cpu}, load average {load} at start");
    println!(
        "  build:   {} profile, wasmtime with fuel, a reused store per policy (fresh every {} calls)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "optimised"
        },
        wasm::RECYCLE_EVERY
    );

    // Sizes.
    let rt = Runtime::new(PolicySource::Embedded, None).expect("the default loads");
    let engine = rt.engine().clone();
    let default_cwasm = engine
        .precompile_component(default_wasm)
        .expect("precompile the default")
        .len();
    let jitter_cwasm = engine
        .precompile_component(&jitter_wasm)
        .expect("precompile jitter")
        .len();
    println!("\ncomponent sizes              .wasm          .cwasm");
    println!(
        "  default (embedded)  {:>14}  {:>14}",
        bytes(default_wasm.len()),
        bytes(default_cwasm)
    );
    println!(
        "  jitter              {:>14}  {:>14}",
        bytes(jitter_wasm.len()),
        bytes(jitter_cwasm)
    );

    // Compile.
    const COMPILES: usize = 15;
    let (compile, compile_min) = sample(COMPILES, || {
        Component::new(&engine, default_wasm).expect("compile the default")
    });
    println!(
        "\nCranelift compile of the default (Component::new), median of {COMPILES}: {} (min {})",
        show(compile),
        show(compile_min)
    );

    // Start-up through the cache.
    const COLD: usize = 10;
    const WARM: usize = 50;
    let (no_cache, _) = sample(COLD, || {
        Runtime::new(PolicySource::Embedded, None).expect("loads")
    });
    let cold_root = scratch("cold");
    let mut n = 0;
    let (cold, _) = sample(COLD, || {
        n += 1;
        let dir = cold_root.join(n.to_string());
        Runtime::new(PolicySource::Embedded, Some(&dir)).expect("loads")
    });
    let warm_dir = scratch("warm");
    drop(Runtime::new(PolicySource::Embedded, Some(&warm_dir)).expect("fills the cache"));
    let (warm, warm_min) = sample(WARM, || {
        let rt = Runtime::new(PolicySource::Embedded, Some(&warm_dir)).expect("loads");
        assert!(rt.info().from_cache, "the warm cache was not used");
        rt
    });
    println!("\nRuntime::new(Embedded, cache) — engine, linker, load, describe()");
    println!(
        "  no cache dir              median of {COLD:>3}: {}",
        show(no_cache)
    );
    println!(
        "  cold cache dir (compile)  median of {COLD:>3}: {}",
        show(cold)
    );
    println!(
        "  warm cache dir            median of {WARM:>3}: {} (min {}), {:.0}x faster than cold",
        show(warm),
        show(warm_min),
        cold.as_secs_f64() / warm.as_secs_f64()
    );
    if let Some(size) = cwasm_size(&warm_dir) {
        println!("  the cache file: {}", bytes(size as usize));
    }

    // Per decision.
    const BATCHES: usize = 25;
    const WASM_CALLS: u32 = 20_000;
    const NATIVE_CALLS: u32 = 200_000;
    const FRESH_CALLS: u32 = 500;
    let mut rt = Runtime::new(PolicySource::Embedded, Some(&warm_dir)).expect("loads");
    let entry = |i: u32| EntryState {
        attempts_this_run: i % 5 + 1,
        total_attempts: i % 5 + 1,
        runs_failed: 0,
        age_ms: 60_000,
        size_bytes: 512,
        operation: Operation::Add,
    };
    let outcome = Outcome::TimeoutBeforeSend;
    // Two alerts, with their formatted texts: the common bad case.
    let stats = QueueStats {
        pending: 42,
        in_flight: 1,
        failed: 7,
        dead: 0,
        dead_auth: 0,
        oldest_pending_age_ms: Some(3_600_000),
        last_success_age_ms: Some(5_400_000),
        consecutive_failing_runs: 2,
        unreachable_runs: 0,
        unreachable_for_ms: None,
    };
    assert_eq!(rt.alerts(stats), native::alerts(stats));
    assert_eq!(rt.alerts(stats).len(), 2);
    assert_eq!(
        rt.on_failure(entry(0), outcome.clone(), 0),
        native::on_failure(entry(0), &outcome, 0)
    );

    let wasm_failure = per_call(BATCHES, WASM_CALLS, |i| {
        rt.on_failure(entry(i), outcome.clone(), i)
    });
    let native_failure = per_call(BATCHES, NATIVE_CALLS, |i| {
        native::on_failure(entry(i), &outcome, i)
    });
    let wasm_alerts = per_call(BATCHES, WASM_CALLS, |_| rt.alerts(stats));
    let native_alerts = per_call(BATCHES, NATIVE_CALLS, |_| native::alerts(stats));
    assert_eq!(rt.info().broken, None);
    // The same calls on a fresh store and instance each (`Host::call`).
    let host = Host::new().expect("an engine");
    let loaded = host.load(default_wasm, Some(&warm_dir)).expect("loads");
    let fresh_failure = per_call(BATCHES, FRESH_CALLS, |i| {
        host.call(&loaded, 0, |d, s| {
            d.call_on_failure(s, entry(i), &outcome, i)
        })
        .expect("on_failure")
    });
    let fresh_alerts = per_call(BATCHES, FRESH_CALLS, |_| {
        host.call(&loaded, 0, |d, s| d.call_alerts(s, stats))
            .expect("alerts")
    });
    // The floor under a fresh call: a fresh instance and one trivial call.
    let instantiate = per_call(BATCHES, FRESH_CALLS, |_| {
        host.call(&loaded, 0, |d, s| d.call_describe(s))
            .expect("describe")
    });

    println!(
        "\nper decision, median of {BATCHES} batches ({WASM_CALLS} reused-store calls, {FRESH_CALLS} fresh-instance calls, {NATIVE_CALLS} native calls per batch)"
    );
    println!(
        "                         fresh instance  reused store (Runtime)     native   fresh/reused  reused/native"
    );
    for (what, f, w, n) in [
        ("on_failure", fresh_failure, wasm_failure, native_failure),
        (
            "alerts (2 alerts)",
            fresh_alerts,
            wasm_alerts,
            native_alerts,
        ),
    ] {
        println!(
            "  {what:<22} {:>14} {:>23} {:>10} {:>13.0}x {:>13.0}x",
            show(f),
            show(w),
            show(n),
            f.as_secs_f64() / w.as_secs_f64().max(1e-12),
            w.as_secs_f64() / n.as_secs_f64().max(1e-12)
        );
    }
    // Part of that floor: the empty WASI context every fresh store builds.
    let wasi_ctx = per_call(BATCHES, WASM_CALLS, |_| {
        wasmtime_wasi::WasiCtx::builder().build()
    });
    println!(
        "  the floor of a fresh call: a fresh instance + describe(): {}, of which building the empty WasiCtx: {}",
        show(instantiate),
        show(wasi_ctx)
    );
    println!(
        "  the reused store is rebuilt every {} calls: {} amortised per call",
        wasm::RECYCLE_EVERY,
        show(instantiate / wasm::RECYCLE_EVERY)
    );

    let _ = std::fs::remove_dir_all(&cold_root);
    let _ = std::fs::remove_dir_all(&warm_dir);
    println!("\nbenchmark time: {:.1} s", total.elapsed().as_secs_f64());
}
