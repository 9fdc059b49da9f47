//! The policy tests' support: building the fixture components of
//! `tests/fixtures/` for wasm32-wasip2, runtimes on a shared compiled cache,
//! and policy inputs.
//!
//! Each fixture is built at most once per process, one at a time, under a
//! mutex and a file lock (another test binary may build at the same time),
//! with `cargo build --release --target wasm32-wasip2` into
//! `<workspace>/target/wasm-fixtures`. Features of one crate overwrite the same
//! output file, so each result is copied to a file named after its feature.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use mem0_queue::engine::policy::{
    BreakerInput, EntryState, FailedSummary, HttpFailure, Operation, Outcome, PolicySource,
    QueueStats, Rejection, Runtime,
};

use crate::sandbox::workspace_root;

const TARGET: &str = "wasm32-wasip2";

/// Where the fixtures are built, whatever CARGO_TARGET_DIR says.
pub fn fixtures_target_dir() -> PathBuf {
    workspace_root().join("target").join("wasm-fixtures")
}

/// The hostile policy, built with one misbehaviour (see
/// tests/fixtures/hostile/Cargo.toml for the features).
pub fn hostile(feature: &str) -> PathBuf {
    fixture("hostile", Some(feature))
}

/// The `.wasm` of fixture crate `name` built with `feature`, built on first
/// use. The crate's library is `mem0_queue_policy_` and `name` with `-` and
/// `.` as `_`.
pub fn fixture(name: &str, feature: Option<&str>) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let key = format!("{name}-{}", feature.unwrap_or("plain"));
    // Held across the build: builds run one at a time within this process.
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(p) = built.get(&key) {
        return p.clone();
    }
    let path = build_fixture(name, feature, &key);
    built.insert(key, path.clone());
    path
}

fn build_fixture(name: &str, feature: Option<&str>, key: &str) -> PathBuf {
    let root = workspace_root();
    let manifest = root.join("tests/fixtures").join(name).join("Cargo.toml");
    let target_dir = fixtures_target_dir();
    std::fs::create_dir_all(&target_dir).expect("create the fixtures target dir");

    // Across processes: a test binary running at the same time must not
    // overwrite the shared output file between our build and our copy.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(target_dir.join(".fixtures.lock"))
        .expect("open the fixtures lock file");
    lock.lock().expect("lock the fixtures lock file");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--target", TARGET, "--release", "--quiet"])
        .arg("--target-dir")
        .arg(&target_dir);
    if let Some(f) = feature {
        cmd.args(["--features", f]);
    }
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build fixture {key}: {e}"));
    assert!(
        out.status.success(),
        "building fixture {key} failed ({}); is the {TARGET} target installed? \
         (rustup target add {TARGET})\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let produced = target_dir.join(TARGET).join("release").join(format!(
        "mem0_queue_policy_{}.wasm",
        name.replace(['-', '.'], "_")
    ));
    let dest = target_dir.join(format!("{key}.wasm"));
    let tmp = target_dir.join(format!(".{key}.wasm.{}.tmp", std::process::id()));
    std::fs::copy(&produced, &tmp)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", produced.display(), tmp.display()));
    std::fs::rename(&tmp, &dest).expect("rename the fixture into place");
    drop(lock);
    dest
}

/// A compiled-component cache shared by the tests (it outlives them, under
/// the fixtures' target dir), so that each `Runtime::new` does not recompile
/// the embedded default. Tests of the cache itself use a dir of their own.
pub fn shared_cache() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = fixtures_target_dir().join("cwasm-cache");
        std::fs::create_dir_all(&dir).expect("create the shared cache dir");
        // Fill it for the default once, before tests load in parallel.
        Runtime::new(PolicySource::Embedded, Some(&dir)).expect("the embedded default loads");
        dir
    })
}

/// A runtime for `source` on the shared cache. The first load of each
/// component is done alone, so parallel tests do not write the same cache
/// file at once.
pub fn runtime(source: PolicySource) -> Runtime {
    static FIRST: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let cache = shared_cache();
    {
        let mut seen = FIRST
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.insert(format!("{source:?}")) {
            return Runtime::new(source, Some(cache)).expect("the embedded default loads");
        }
    }
    Runtime::new(source, Some(cache)).expect("the embedded default loads")
}

/// A runtime with only the embedded default: the reference for fallbacks.
pub fn embedded() -> Runtime {
    runtime(PolicySource::Embedded)
}

/// A runtime for the component at `path`.
pub fn user(path: &Path) -> Runtime {
    runtime(PolicySource::File(path.to_path_buf()))
}

pub fn entry(attempts_this_run: u32) -> EntryState {
    EntryState {
        attempts_this_run,
        total_attempts: attempts_this_run,
        runs_failed: 0,
        age_ms: 60_000,
        size_bytes: 512,
        operation: Operation::Add,
    }
}

/// `pending` and `failed` entries, the rest as `policy check`'s scenario.
pub fn stats(pending: u64, failed: u64) -> QueueStats {
    mem0_queue::engine::policy::check::scenario_stats(pending, failed)
}

pub fn breaker_input(consecutive_failures: u32, previous_run_tripped: bool) -> BreakerInput {
    BreakerInput {
        consecutive_failures,
        previous_run_tripped,
        consecutive_failing_runs: u32::from(previous_run_tripped),
    }
}

/// A failed entry `minutes` after its last attempt, having failed `runs` runs.
pub fn failed(id: &str, runs: u32, minutes: u64) -> FailedSummary {
    FailedSummary {
        id: id.into(),
        runs_failed: runs,
        total_attempts: runs * 4,
        age_ms: minutes * 120_000,
        since_last_attempt_ms: minutes * 60_000,
        operation: Operation::Add,
    }
}

/// Every kind of outcome the contract has.
pub fn outcomes() -> Vec<Outcome> {
    vec![
        Outcome::ConnectError,
        Outcome::TimeoutBeforeSend,
        Outcome::Unknown,
        Outcome::Http(HttpFailure {
            status: 429,
            retry_after_ms: Some(30_000),
            code: None,
        }),
        Outcome::Http(HttpFailure {
            status: 502,
            retry_after_ms: None,
            code: Some("provider_timeout".into()),
        }),
        Outcome::Permanent(Rejection {
            status: 401,
            auth: true,
        }),
        Outcome::Permanent(Rejection {
            status: 422,
            auth: false,
        }),
    ]
}

/// Checks the report of the `snoop` fixture (its alert's message, probes
/// `name=OK(..)` / `name=ERR(..)` joined by "; "): no file read or written,
/// no socket, no environment variable, no argument. Returns the probes.
pub fn assert_snoop_found_nothing(message: &str) -> std::collections::BTreeMap<&str, &str> {
    let found: std::collections::BTreeMap<&str, &str> = message
        .split("; ")
        .filter_map(|kv| kv.split_once('='))
        .collect();
    for probe in [
        "read_dir_root",
        "read_dir_dot",
        "read_passwd",
        "write_tmp",
        "tcp_connect",
        "dns",
    ] {
        let v = found
            .get(probe)
            .unwrap_or_else(|| panic!("no {probe} in {message}"));
        assert!(v.starts_with("ERR("), "{probe}: {v}");
    }
    assert_eq!(found.get("env_vars"), Some(&"0()"), "{message}");
    assert_eq!(found.get("args"), Some(&"0"), "{message}");
    found
}
