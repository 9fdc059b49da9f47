//! Policy hot reload (issue 16): a new component replaces the running one
//! only once it passes what `policy check` runs; a refused one leaves the
//! running policy deciding and raises CRITICAL `policy-refused`; a decision
//! in progress finishes on the policy that started it.
//!
//! The end-to-end tests run the real `serve`, and the real daemon, with `policy` in its config
//! pointing at a file, under load (saves flowing over MCP, a test server
//! answering some adds 503 so the policy decides), swaps the default for the
//! jitter policy, then writes garbage into the file, and ends with the
//! checker: nothing lost, nothing duplicated.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mem0_queue::engine::policy::{
    self, Decision, Level, Outcome, POLICY_REFUSED, PolicyHandle, PolicySource,
};
use mem0_queue_testkit::bin;
use mem0_queue_testkit::checker;
use mem0_queue_testkit::mcp::{is_error, structured, text};
use mem0_queue_testkit::mem0_server::{Fault, FaultPlan, Kind};
use mem0_queue_testkit::policy::{embedded, entry, fixture, hostile, shared_cache, stats};
use mem0_queue_testkit::sandbox::{Sandbox, TempDir};
use mem0_queue_testkit::wait::until_async;
use mem0_queue_testkit::worker::server;
use serde_json::{Value, json};

fn jitter_path() -> PathBuf {
    PathBuf::from(mem0_queue_embed::JITTER_POLICY_PATH)
}

/// A draw that no shipped policy maps onto the seed's 2/4/8 s schedule.
const DRAW: u32 = u32::MAX / 3;

// ---------------------------------------------------------------------------
// The runtime.

/// The runtime thread runs one job at a time: a reload sent while a
/// decision is under way waits behind it, and that decision is made by the
/// policy that started it; the next one by the new policy.
#[test]
fn a_decision_in_progress_finishes_on_the_policy_that_started_it() {
    let handle = PolicyHandle::start(PolicySource::Embedded, Some(shared_cache().to_path_buf()))
        .expect("the policy thread starts");
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let h = handle.clone();
    let decision = std::thread::spawn(move || {
        h.run_blocking(move |rt| {
            let before = rt.info().name;
            started_tx.send(()).expect("the test waits");
            // The reload is sent meanwhile.
            go_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the test lets the decision go on");
            let d = rt.on_failure(entry(1), Outcome::Unknown, DRAW);
            (before, d, rt.info().name)
        })
        .expect("the policy thread answers")
    });
    started_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the decision started");

    let h = handle.clone();
    let reload = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(h.reload(PolicySource::File(jitter_path())))
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !reload.is_finished(),
        "the reload must wait behind the decision in progress"
    );
    go_tx.send(()).expect("the decision waits");
    let (before, d, after) = decision.join().expect("the decision thread");
    assert_eq!((before.as_str(), after.as_str()), ("default", "default"));
    assert_eq!(d, Decision::RetryAfterMs(2_000), "the default's decision");

    let info = reload
        .join()
        .expect("the reload thread")
        .expect("the policy thread answers")
        .expect("jitter passes the check");
    assert_eq!(info.name, "jitter");
    let (name, d) = handle
        .run_blocking(|rt| {
            (
                rt.info().name,
                rt.on_failure(entry(1), Outcome::Unknown, DRAW),
            )
        })
        .expect("the policy thread answers");
    assert_eq!(name, "jitter");
    let mut reference = mem0_queue_testkit::policy::user(&jitter_path());
    assert_eq!(d, reference.on_failure(entry(1), Outcome::Unknown, DRAW));
    assert_ne!(d, Decision::RetryAfterMs(2_000));
}

/// `reload` takes a component exactly when `policy check` does (the same
/// code), and a refusal leaves the running policy, its `loaded_at` and its
/// decisions as they were, with the reason, the path and the time recorded
/// and a CRITICAL `policy-refused` alert first among the alerts.
#[test]
fn a_reload_takes_what_policy_check_takes_and_refuses_the_rest() {
    let tmp = TempDir::new("reload");
    let garbage = tmp.file("garbage.wasm", b"\0asm but not a component");
    let missing = tmp.path().join("missing.wasm");
    let mut rt = embedded();
    let started = rt.info().loaded_at;
    std::thread::sleep(Duration::from_millis(5));

    let info = rt
        .reload(PolicySource::File(jitter_path()))
        .expect("jitter passes the check");
    assert_eq!(info.name, "jitter");
    assert_eq!(info.source, jitter_path().display().to_string());
    assert!(info.loaded_at > started, "{} > {started}", info.loaded_at);
    assert_eq!((info.broken, info.refused), (None, None));
    let jitter_decision = rt.on_failure(entry(1), Outcome::Unknown, DRAW);
    assert_ne!(jitter_decision, Decision::RetryAfterMs(2_000));

    for (what, path, needle) in [
        ("garbage", garbage, "not a valid component"),
        ("a looping policy", hostile("looping"), "ran out of fuel"),
        (
            "another WIT version",
            fixture("wrong-version", None),
            "wrong WIT version",
        ),
        ("a missing file", missing, "cannot read the policy file"),
    ] {
        let checked = policy::check::run(&rt, &path).expect_err(what).to_string();
        let refusal = rt.reload(PolicySource::File(path.clone())).expect_err(what);
        assert!(
            refusal.reason.contains(needle),
            "{what}: {}",
            refusal.reason
        );
        let head = |s: &str| s.chars().take(60).collect::<String>();
        assert_eq!(
            head(&refusal.reason),
            head(&checked),
            "{what}: as `policy check` says"
        );
        assert_eq!(refusal.source, path.display().to_string());
        assert!(refusal.at_ms >= info.loaded_at);

        // Nothing that decides has changed.
        let now = rt.info();
        assert_eq!(now.name, "jitter", "{what}");
        assert_eq!(now.loaded_at, info.loaded_at, "{what}");
        assert_eq!(now.broken, None, "{what}");
        assert_eq!(now.refused.as_ref(), Some(&refusal), "{what}");
        assert_eq!(
            rt.on_failure(entry(1), Outcome::Unknown, DRAW),
            jitter_decision,
            "{what}"
        );
        let alerts = rt.alerts(stats(0, 0));
        let first = &alerts[0];
        assert_eq!(
            (first.level, first.code.as_str()),
            (Level::Critical, POLICY_REFUSED)
        );
        assert!(
            first.message.starts_with("POLICY REFUSED - CRITICAL")
                && first.message.contains(&path.display().to_string())
                && first.message.contains("jitter"),
            "{}",
            first.message
        );
        assert!(!first.message.chars().any(char::is_control));
        assert_eq!(
            first.actions[0],
            format!("mem0-queue policy check {}", path.display())
        );
    }

    // Back to the embedded default: always valid, and the refusal clears.
    let info = rt.reload(PolicySource::Embedded).expect("the default");
    assert_eq!(info.name, "default");
    assert_eq!(info.source, "embedded default");
    assert_eq!(info.refused, None);
    assert!(
        rt.alerts(stats(0, 0))
            .iter()
            .all(|a| a.code != POLICY_REFUSED)
    );
    assert_eq!(
        rt.on_failure(entry(1), Outcome::Unknown, DRAW),
        Decision::RetryAfterMs(2_000)
    );
}

// ---------------------------------------------------------------------------
// The real binary.

/// How long the watcher may take to act on a change: its 2 s poll, the
/// settle pause, and a Cranelift compile in an unoptimised build on a
/// loaded 2-core machine.
const RELOAD_LIMIT: Duration = Duration::from_secs(60);

/// How long the queue may take to drain once the saves stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(90);

/// The pause between two saves of the load.
const SAVE_EVERY: Duration = Duration::from_millis(25);

/// The share of adds the test server answers 503 (Mem0's own error, a
/// retryable failure: the policy decides each one).
const FAULT_RATE: f64 = 0.25;

/// Writes `bytes` to `path` through a temp file and a rename, as an
/// installer would.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write the temp file");
    std::fs::rename(&tmp, path).expect("rename it over the policy");
}

/// `status --json --no-probe` in another process: (exit code, JSON).
async fn status(sb: &Sandbox) -> (Option<i32>, Value) {
    let mut cmd = tokio::process::Command::from(sb.command(&["status", "--json", "--no-probe"]));
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("status answers in time")
        .expect("run status");
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

/// The delays of the policy's retry decisions in the worker log lines
/// `lines` (`decision=retry in Nms`).
fn retry_delays<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<u64> {
    lines
        .filter_map(|l| l.split("decision=retry in ").nth(1))
        .filter_map(|rest| rest.trim_end().strip_suffix("ms")?.parse().ok())
        .collect()
}

/// A delay the default policy never gives (its 2/4/8 s schedule, or a
/// Retry-After floor, which these 503s do not carry).
fn not_the_default(ms: u64) -> bool {
    ![2_000, 4_000, 8_000].contains(&ms)
}

fn worker_log(sb: &Sandbox) -> String {
    std::fs::read_to_string(sb.data_dir().join("mem0_worker.log")).unwrap_or_default()
}

/// The worker log after its first line containing `marker`.
fn log_after(log: &str, marker: &str) -> Option<String> {
    let at = log.find(marker)?;
    Some(log[at..].lines().skip(1).collect::<Vec<_>>().join("\n"))
}

/// Who makes the decisions in [`swap_under_load`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    /// A `serve` window, saves over stdio; it delivers itself.
    Serve,
    /// The daemon, saves over Streamable HTTP; it delivers.
    Daemon,
}

/// The saver's side of the process under test.
enum Face {
    Serve(mem0_queue_testkit::mcp::Server),
    Daemon(mem0_queue_testkit::daemon::HttpMcp),
}

impl Face {
    /// One save: its id, or why it was not queued.
    async fn save(&self, content: String) -> Result<String, String> {
        let args = json!({"content": content, "project": "reload"});
        match self {
            Face::Serve(s) => {
                let r = s.call("mem0_save", args).await;
                let v = structured(&r);
                if is_error(&r) || v["status"] != "queued" {
                    return Err(text(&r));
                }
                v["id"].as_str().map(str::to_string).ok_or_else(|| text(&r))
            }
            Face::Daemon(c) => c.save(args).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_swaps_its_policy_under_load_and_refuses_a_broken_file() {
    swap_under_load(Who::Serve).await;
}

/// Issue 16's proof: the same swap while the daemon runs under load, saves
/// coming over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_swaps_its_policy_under_load_and_refuses_a_broken_file() {
    swap_under_load(Who::Daemon).await;
}

/// The process (a `serve` window or the daemon) runs with `policy` in its
/// config pointing at a file, under load (saves flowing, a test server
/// answering some adds 503 so the policy decides); the default is swapped
/// for the jitter policy, then the file gets garbage. Decisions switch, the
/// garbage is refused with a CRITICAL alert while the jitter policy keeps
/// deciding, and the checker finds nothing lost and nothing duplicated.
async fn swap_under_load(who: Who) {
    let srv = server(Kind::Oss, None, 16).await;
    srv.set_faults(FaultPlan::mix([(
        Fault::Status503 {
            retry_after_secs: None,
        },
        FAULT_RATE,
    )]));
    let sb = Sandbox::new(bin!());
    let policy_file = sb.file(
        "policy.wasm",
        &std::fs::read(mem0_queue_embed::DEFAULT_POLICY_PATH).expect("the built default"),
    );
    let config_dir = sb.home().join(".config/mem0-queue");
    std::fs::create_dir_all(&config_dir).expect("the config dir");
    std::fs::write(
        config_dir.join("config.toml"),
        format!(
            "api_url = \"{}\"\npolicy = \"{}\"\nsync_interval = \"1s\"\n",
            srv.url(),
            policy_file.display()
        ),
    )
    .expect("write the config");

    let (face, daemon) = match who {
        Who::Serve => (Face::Serve(sb.serve(&[]).await), None),
        Who::Daemon => {
            let d = mem0_queue_testkit::daemon::Daemon::start(
                mem0_queue_testkit::daemon::Daemon::command(&sb, &sb.data_dir(), &[]),
                &sb.data_dir(),
            );
            let c = mem0_queue_testkit::daemon::HttpMcp::connect(&d.url, &d.token)
                .await
                .expect("an MCP session with the daemon");
            (Face::Daemon(c), Some(d))
        }
    };
    let pid = match (&face, &daemon) {
        (Face::Serve(s), _) => s.pid,
        (_, Some(d)) => d.pid,
        _ => unreachable!("a daemon face has its daemon"),
    };
    let face = Arc::new(face);
    let saving = Arc::new(AtomicBool::new(true));
    let saver = {
        let (face, saving) = (face.clone(), saving.clone());
        tokio::spawn(async move {
            let mut acked = HashSet::new();
            let mut i = 0;
            while saving.load(Ordering::SeqCst) {
                let id = face
                    .save(format!("reload memory {i}: a distinct fact"))
                    .await
                    .unwrap_or_else(|e| panic!("save {i}: {e}"));
                acked.insert(id);
                i += 1;
                tokio::time::sleep(SAVE_EVERY).await;
            }
            acked
        })
    };

    // The default decides first: the seed's schedule.
    let decided = until_async(RELOAD_LIMIT, || {
        !retry_delays(worker_log(&sb).lines()).is_empty()
    })
    .await;
    assert!(
        decided,
        "no decision under the default:\n{}",
        worker_log(&sb)
    );
    let (code, v) = status(&sb).await;
    let running = &v["policy_running"];
    assert_eq!(running["name"], "default", "{v:#}");
    assert_eq!(running["pid"], pid, "{v:#}");
    assert_eq!(running["source"], policy_file.display().to_string());
    let first_loaded = running["loaded_at"].as_i64().expect("loaded_at");
    assert_ne!(code, Some(2), "nothing critical yet: {v:#}");

    // Swap in the jitter policy.
    replace(
        &policy_file,
        &std::fs::read(jitter_path()).expect("the built jitter policy"),
    );
    let mut last = Value::Null;
    let mut swapped = false;
    let deadline = tokio::time::Instant::now() + RELOAD_LIMIT;
    while tokio::time::Instant::now() < deadline {
        let (_, v) = status(&sb).await;
        if v["policy_running"]["name"] == "jitter" {
            swapped = true;
            last = v;
            break;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        swapped,
        "{who:?} did not load the jitter policy: {last:#}\n{}",
        worker_log(&sb)
    );
    let jitter_loaded = last["policy_running"]["loaded_at"]
        .as_i64()
        .expect("loaded_at");
    assert!(jitter_loaded > first_loaded, "a new loaded_at: {last:#}");
    assert_eq!(last["policy_running"]["refused"], Value::Null);
    // Decisions switch: delays the default never gives.
    let switched = until_async(RELOAD_LIMIT, || {
        log_after(&worker_log(&sb), "policy loaded: jitter")
            .is_some_and(|after| retry_delays(after.lines()).into_iter().any(not_the_default))
    })
    .await;
    let log = worker_log(&sb);
    assert!(switched, "no jitter decision after the swap:\n{log}");
    let before_swap = &log[..log.find("policy loaded: jitter").expect("the swap line")];
    let seed = retry_delays(before_swap.lines());
    assert!(
        !seed.is_empty() && seed.iter().all(|&ms| !not_the_default(ms)),
        "the default decided before the swap: {seed:?}"
    );

    // A broken file: refused, and the jitter policy keeps deciding.
    std::fs::write(&policy_file, b"this is not a component").expect("write garbage");
    let mut refused = false;
    let deadline = tokio::time::Instant::now() + RELOAD_LIMIT;
    while tokio::time::Instant::now() < deadline {
        let (code, v) = status(&sb).await;
        let alert = v["alerts"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["code"] == POLICY_REFUSED).cloned());
        if let Some(alert) = alert {
            assert_eq!(code, Some(2), "CRITICAL: {v:#}");
            assert_eq!(alert["level"], "critical");
            let message = alert["message"].as_str().expect("a message");
            assert!(
                message.contains(&policy_file.display().to_string())
                    && message.contains("not a valid component")
                    && message.contains("jitter"),
                "{message}"
            );
            assert!(
                v["alerts"]
                    .as_array()
                    .is_some_and(|a| a.iter().all(|a| a["code"] != "policy-broken")),
                "the refusal, not this process's own failed load: {v:#}"
            );
            let running = &v["policy_running"];
            assert_eq!(running["name"], "jitter", "{v:#}");
            assert_eq!(running["loaded_at"], jitter_loaded, "{v:#}");
            assert!(
                running["refused"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("not a valid component")),
                "{v:#}"
            );
            refused = true;
            break;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        refused,
        "no policy-refused alert: {last:#}\n{}",
        worker_log(&sb)
    );
    let still_jitter = until_async(RELOAD_LIMIT, || {
        log_after(&worker_log(&sb), "policy refused:")
            .is_some_and(|after| retry_delays(after.lines()).into_iter().any(not_the_default))
    })
    .await;
    assert!(
        still_jitter,
        "no jitter decision after the refusal:\n{}",
        worker_log(&sb)
    );
    let log = worker_log(&sb);
    let after = log_after(&log, "policy refused:").expect("the refusal line");
    assert!(
        !after.contains("policy loaded:"),
        "nothing was loaded after the refusal:\n{after}"
    );

    // The end: the saves stop, the queue drains, and the checker counts.
    saving.store(false, Ordering::SeqCst);
    let acked = tokio::time::timeout(Duration::from_secs(60), saver)
        .await
        .expect("the saver stops")
        .expect("the saver");
    srv.set_faults(FaultPlan::default());
    let db = sb.db();
    let drained = until_async(DRAIN_LIMIT, || {
        checker::queue_states(&db)
            .values()
            .all(|s| s != "pending" && s != "in_flight")
    })
    .await;
    assert!(drained, "the queue did not drain:\n{}", worker_log(&sb));
    let face = Arc::try_unwrap(face).unwrap_or_else(|_| panic!("the saver let go of its face"));
    match (face, daemon) {
        (Face::Serve(serve), _) => {
            let stderr = serve.stop().await;
            assert!(
                stderr
                    .lines()
                    .any(|l| l.contains("the new policy is refused")),
                "one log line for the refusal: {stderr}"
            );
        }
        (Face::Daemon(c), Some(d)) => {
            c.close().await;
            let (status, _) = d.stop();
            assert!(status.success(), "the daemon stops cleanly: {status}");
        }
        (Face::Daemon(_), None) => unreachable!("a daemon face has its daemon"),
    }
    let report = checker::check(&acked, &db, &srv.count_by_mq_id());
    assert!(report.ok(), "{}", report.summary());
    assert!(report.delivered > 0, "{}", report.summary());
    println!(
        "policy reload under load ({who:?}): {} saves; {}",
        acked.len(),
        report.summary()
    );
}

/// Waits until `status --json` names `name` as the running policy; returns
/// that status.
async fn wait_running(sb: &Sandbox, name: &str) -> Value {
    let deadline = tokio::time::Instant::now() + RELOAD_LIMIT;
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        let (_, v) = status(sb).await;
        if v["policy_running"]["name"] == name {
            return v;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "serve did not switch to {name}: {last:#}\n{}",
        worker_log(sb)
    );
}

/// The config file's `policy` key is watched too: removed, the embedded
/// default decides; set to another path, that file is loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_follows_the_policy_key_of_its_config_file() {
    let sb = Sandbox::new(bin!());
    let jitter = sb.file(
        "jitter.wasm",
        &std::fs::read(jitter_path()).expect("the built jitter policy"),
    );
    let config_dir = sb.home().join(".config/mem0-queue");
    std::fs::create_dir_all(&config_dir).expect("the config dir");
    let config = config_dir.join("config.toml");
    let with_policy = format!("policy = \"{}\"\n", jitter.display());
    std::fs::write(&config, &with_policy).expect("write the config");
    let serve = sb.serve(&[]).await;

    let v = wait_running(&sb, "jitter").await;
    assert_eq!(v["policy_running"]["source"], jitter.display().to_string());
    let first = v["policy_running"]["loaded_at"]
        .as_i64()
        .expect("loaded_at");

    // The key removed: the embedded default.
    replace(&config, b"default_project = \"elsewhere\"\n");
    let v = wait_running(&sb, "default").await;
    assert_eq!(v["policy_running"]["source"], "embedded default");
    let second = v["policy_running"]["loaded_at"]
        .as_i64()
        .expect("loaded_at");
    assert!(second > first, "{v:#}");

    // Set again: that file.
    replace(&config, with_policy.as_bytes());
    let v = wait_running(&sb, "jitter").await;
    assert!(
        v["policy_running"]["loaded_at"]
            .as_i64()
            .is_some_and(|t| t > second),
        "{v:#}"
    );
    let log = worker_log(&sb);
    assert_eq!(log.matches("policy loaded:").count(), 2, "{log}");
    serve.stop().await;
}
