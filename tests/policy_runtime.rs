//! The policy runtime with well-behaved components: the two shipped policies
//! load through wasmtime and decide as designed, `policy check` and `policy
//! show` on the real binary, the compiled cache, and the host's clamping of
//! absurd values.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mem0_queue::engine::policy::{
    self, Alert, BreakerDecision, Decision, Level, MAX_ATTEMPTS_PER_RUN, MAX_DELAY_MS, Outcome,
    PolicySource, Runtime,
};
use mem0_queue_policy_sdk::Guest as _;
use mem0_queue_testkit::bin;
use mem0_queue_testkit::policy::{
    breaker_input, embedded, entry, failed, fixture, hostile, outcomes, stats, user,
};
use mem0_queue_testkit::sandbox::{Sandbox, TempDir};
use sha2::Digest as _;

fn jitter_path() -> PathBuf {
    PathBuf::from(mem0_queue_embed::JITTER_POLICY_PATH)
}

fn retry_ms(d: Decision) -> u64 {
    match d {
        Decision::RetryAfterMs(ms) => ms,
        other => panic!("expected a retry, got {other:?}"),
    }
}

fn codes(alerts: &[Alert]) -> Vec<(Level, &str)> {
    alerts.iter().map(|a| (a.level, a.code.as_str())).collect()
}

fn cwasm_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

// ---------------------------------------------------------------------------
// The shipped components.

#[test]
fn the_embedded_default_is_the_built_component_and_decides_the_seed_schedule() {
    let on_disk = std::fs::read(mem0_queue_embed::DEFAULT_POLICY_PATH).expect("built default");
    assert_eq!(on_disk, mem0_queue_embed::DEFAULT_POLICY);
    assert_eq!(&mem0_queue_embed::DEFAULT_POLICY[..4], b"\0asm");

    let mut rt = embedded();
    let info = rt.info();
    assert_eq!(info.name, "default");
    assert_eq!(info.wit_version, "0.2.0");
    assert_eq!(info.wit_version, policy::WIT_VERSION);
    assert_eq!(info.source, "embedded default");
    assert_eq!(info.broken, None);
    assert_eq!(
        info.sha256,
        format!(
            "{:x}",
            sha2::Sha256::digest(mem0_queue_embed::DEFAULT_POLICY)
        )
    );

    // The seed: 2 s, 4 s, 8 s, then `failed` after the fourth failed attempt,
    // whatever the random draw.
    for random in [0, 12_345, u32::MAX] {
        for outcome in [
            Outcome::ConnectError,
            Outcome::TimeoutBeforeSend,
            Outcome::Unknown,
        ] {
            let d: Vec<Decision> = (1..=5)
                .map(|a| rt.on_failure(entry(a), outcome.clone(), random))
                .collect();
            assert_eq!(
                d,
                [
                    Decision::RetryAfterMs(2_000),
                    Decision::RetryAfterMs(4_000),
                    Decision::RetryAfterMs(8_000),
                    Decision::Fail,
                    Decision::Fail,
                ],
                "{outcome:?}, random {random}"
            );
        }
    }
    // Retry-After is a floor; permanent rejections are dead at once.
    let o429 = &outcomes()[3];
    assert_eq!(
        rt.on_failure(entry(1), o429.clone(), 0),
        Decision::RetryAfterMs(30_000)
    );
    match rt.on_failure(entry(1), outcomes()[5].clone(), 0) {
        Decision::Dead(reason) => assert!(reason.contains("401"), "{reason}"),
        other => panic!("401 must be dead, got {other:?}"),
    }
    // Every failed entry gets a fresh start.
    let f = [failed("a", 1, 1), failed("b", 9, 1_500)];
    assert_eq!(rt.on_run_start(&f, 0), ["a", "b"]);
    // The breaker: 3 in a row, or 1 after a tripped run.
    assert_eq!(
        rt.breaker(breaker_input(2, false)),
        BreakerDecision::Continue
    );
    assert_eq!(
        rt.breaker(breaker_input(3, false)),
        BreakerDecision::Stop(30_000)
    );
    assert_eq!(
        rt.breaker(breaker_input(1, true)),
        BreakerDecision::Stop(60_000)
    );
    // The seed's thresholds: WARNING over 20 pending, CRITICAL over 5 failed.
    assert!(rt.alerts(stats(20, 5)).is_empty());
    assert_eq!(
        codes(&rt.alerts(stats(21, 5))),
        [(Level::Warning, "queue-backlog")]
    );
    assert_eq!(
        codes(&rt.alerts(stats(20, 6))),
        [(Level::Critical, "failed-backlog")]
    );
}

#[test]
fn the_embedded_component_decides_exactly_like_its_native_twin() {
    let mut rt = embedded();
    for outcome in outcomes() {
        for attempts in 0..=12 {
            for random in [0, 1, u32::MAX / 3, u32::MAX] {
                let e = entry(attempts);
                assert_eq!(
                    rt.on_failure(e, outcome.clone(), random),
                    policy::native::on_failure(e, &outcome, random),
                    "{outcome:?}, attempts {attempts}"
                );
            }
        }
    }
    for failures in 0..6 {
        for tripped in [false, true] {
            for runs in [0, 1, 3, 8, 30] {
                let mut input = breaker_input(failures, tripped);
                input.consecutive_failing_runs = runs;
                assert_eq!(rt.breaker(input), policy::native::breaker(input));
            }
        }
    }
    for (pending, failed_n, dead, dead_auth) in
        [(0, 0, 0, 0), (21, 0, 0, 0), (21, 6, 3, 1), (500, 40, 0, 7)]
    {
        let mut s = stats(pending, failed_n);
        s.dead = dead;
        s.dead_auth = dead_auth;
        s.last_success_age_ms = None;
        assert_eq!(rt.alerts(s), policy::native::alerts(s));
    }
    let f = [failed("x", 1, 1), failed("y", 2, 30)];
    assert_eq!(rt.on_run_start(&f, 7), policy::native::on_run_start(&f, 7));
}

/// The jitter crate's own logic, natively, in the host's types.
fn jitter_native(e: policy::EntryState, outcome: &Outcome, random: u32) -> Decision {
    use mem0_queue_policy_sdk as sdk;
    let (e, o) = (
        policy::native::sdk_entry(e),
        policy::native::sdk_outcome(outcome),
    );
    match mem0_queue_policy_jitter::JitterPolicy::on_failure(e, o, random) {
        Ok(sdk::Decision::RetryAfterMs(ms)) => Decision::RetryAfterMs(ms),
        Ok(sdk::Decision::Fail) => Decision::Fail,
        Ok(sdk::Decision::Dead(r)) => Decision::Dead(r),
        Err(e) => panic!("the jitter policy returned an error: {e}"),
    }
}

#[test]
fn the_jitter_component_loads_and_decides_differently_from_the_default() {
    let path = jitter_path();
    let mut jit = user(&path);
    let mut def = embedded();
    let info = jit.info();
    assert_eq!(info.name, "jitter");
    assert_eq!(info.wit_version, "0.2.0");
    assert_eq!(info.source, path.display().to_string());
    assert_eq!(info.broken, None);
    assert_ne!(info.sha256, def.info().sha256);

    // Full jitter: the delay is random * min(5 min, 1 s * 2^(attempt-1)).
    let ceilings = [1_000, 2_000, 4_000, 8_000, 16_000];
    for (i, ceiling) in ceilings.into_iter().enumerate() {
        let attempts = i as u32 + 1;
        let d = |rt: &mut Runtime, random| {
            retry_ms(rt.on_failure(entry(attempts), Outcome::ConnectError, random))
        };
        assert_eq!(d(&mut jit, 0), 0, "attempt {attempts}");
        assert_eq!(d(&mut jit, u32::MAX), ceiling, "attempt {attempts}");
        let half = d(&mut jit, u32::MAX / 2);
        assert!(
            (ceiling / 2 - 1..=ceiling / 2).contains(&half),
            "attempt {attempts}: {half}"
        );
        // The default ignores the draw.
        if attempts <= 3 {
            assert_eq!(d(&mut def, 0), 2_000 << i);
            assert_eq!(d(&mut def, u32::MAX), 2_000 << i);
        }
    }
    // Six attempts in a run for jitter, four for the default.
    assert_eq!(
        def.on_failure(entry(4), Outcome::Unknown, u32::MAX),
        Decision::Fail
    );
    assert_eq!(
        jit.on_failure(entry(4), Outcome::Unknown, u32::MAX),
        Decision::RetryAfterMs(8_000)
    );
    assert_eq!(
        jit.on_failure(entry(6), Outcome::Unknown, u32::MAX),
        Decision::Fail
    );

    // The component decides like the jitter crate compiled natively.
    for outcome in outcomes() {
        for attempts in 0..=8 {
            for random in [0, 1, 77_777, u32::MAX / 2, u32::MAX] {
                assert_eq!(
                    jit.on_failure(entry(attempts), outcome.clone(), random),
                    jitter_native(entry(attempts), &outcome, random),
                    "{outcome:?}, attempts {attempts}, random {random}"
                );
            }
        }
    }

    // A cool-down before a failed entry is revived: 10 min after one failed
    // run, 20 after two. The default revives everything.
    let f = [
        failed("one-run-5min", 1, 5),
        failed("one-run-15min", 1, 15),
        failed("two-runs-15min", 2, 15),
        failed("two-runs-45min", 2, 45),
    ];
    assert_eq!(jit.on_run_start(&f, 0), ["one-run-15min", "two-runs-45min"]);
    assert_eq!(def.on_run_start(&f, 0).len(), 4);

    // Breaker: 5 in a row (2 when probing) and a fixed 2 min pause.
    assert_eq!(
        jit.breaker(breaker_input(3, false)),
        BreakerDecision::Continue
    );
    assert_eq!(
        def.breaker(breaker_input(3, false)),
        BreakerDecision::Stop(30_000)
    );
    assert_eq!(
        jit.breaker(breaker_input(5, false)),
        BreakerDecision::Stop(120_000)
    );
    assert_eq!(
        jit.breaker(breaker_input(1, true)),
        BreakerDecision::Continue
    );
    assert_eq!(
        jit.breaker(breaker_input(2, true)),
        BreakerDecision::Stop(120_000)
    );

    // Thresholds: 21 pending alerts under the default, not under jitter.
    assert_eq!(
        codes(&def.alerts(stats(21, 0))),
        [(Level::Warning, "queue-backlog")]
    );
    assert!(jit.alerts(stats(21, 0)).is_empty());
    assert_eq!(
        codes(&def.alerts(stats(0, 6))),
        [(Level::Critical, "failed-backlog")]
    );
    assert!(jit.alerts(stats(0, 6)).is_empty());
    assert_eq!(
        codes(&jit.alerts(stats(101, 21))),
        [
            (Level::Critical, "failed-backlog"),
            (Level::Warning, "queue-backlog")
        ]
    );
    let mut stale = stats(1, 0);
    stale.oldest_pending_age_ms = Some(25 * 3_600_000);
    assert_eq!(
        codes(&jit.alerts(stale)),
        [(Level::Warning, "stale-pending")]
    );
    assert!(def.alerts(stale).is_empty());
    // Neither was found broken along the way.
    assert_eq!(jit.info().broken, None);
    assert_eq!(def.info().broken, None);
}

#[test]
fn a_run_start_with_100000_failed_entries_gets_fuel_for_each() {
    // Fuel grows with the list (FUEL_PER_ITEM): a big failed backlog is not
    // mistaken for a runaway policy. Jitter is a user policy here, so a
    // starved call would show as `broken` instead of silently falling back.
    let mut jit = user(&jitter_path());
    let summaries: Vec<policy::FailedSummary> = (0..100_000u32)
        .map(|i| {
            failed(
                &format!("0190a1b2-c3d4-7e5f-8a9b-{i:012}"),
                i % 12 + 1,
                u64::from(i % 2_000),
            )
        })
        .collect();
    let revived = jit.on_run_start(&summaries, 0);
    assert_eq!(jit.info().broken, None);
    let native: Vec<String> = mem0_queue_policy_jitter::JitterPolicy::on_run_start(
        summaries
            .iter()
            .map(|f| mem0_queue_policy_sdk::FailedSummary {
                id: f.id.clone(),
                runs_failed: f.runs_failed,
                total_attempts: f.total_attempts,
                age_ms: f.age_ms,
                since_last_attempt_ms: f.since_last_attempt_ms,
                operation: mem0_queue_policy_sdk::Operation::Add,
            })
            .collect(),
        0,
    )
    .expect("ok");
    assert!(
        !native.is_empty() && native.len() < summaries.len(),
        "{}",
        native.len()
    );
    assert_eq!(revived, native);
    // The default revives them all.
    assert_eq!(embedded().on_run_start(&summaries, 0).len(), 100_000);
}

// ---------------------------------------------------------------------------
// `policy check` and `policy show` on the real binary.

/// The decision cells of one row of `policy check`'s failure table.
fn check_row<'a>(stdout: &'a str, label: &str) -> Vec<&'a str> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no row `{label}` in:\n{stdout}"));
    line[label.len()..].split_whitespace().collect()
}

fn alerts_row(stdout: &str, pending: u64, failed: u64) -> &str {
    let key = format!("{pending:>4}, {failed:>3} -> ");
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(key.trim_start()))
        .unwrap_or_else(|| panic!("no alerts row `{key}` in:\n{stdout}"));
    line.split(" -> ").nth(1).expect("an arrow")
}

#[test]
fn policy_check_accepts_both_components_and_prints_two_different_schedules() {
    let tmp = Sandbox::new(bin!());
    let run = |path: Option<&Path>| {
        let mut cmd = tmp.command(&[]);
        cmd.args(["policy", "check"]);
        if let Some(p) = path {
            cmd.arg(p);
        }
        let out = cmd.output().expect("run mem0-queue");
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "{path:?}: {}\n{stdout}\n{stderr}",
            out.status
        );
        assert!(stderr.trim().is_empty(), "{path:?}: stderr: {stderr}");
        assert!(stdout.trim_end().ends_with("usable: yes"), "{stdout}");
        stdout
    };
    let implicit = run(None);
    let default = run(Some(Path::new(mem0_queue_embed::DEFAULT_POLICY_PATH)));
    let jitter = run(Some(&jitter_path()));

    assert_eq!(implicit, default, "no PATH means the embedded default");
    assert!(
        default.starts_with("policy default 0.1.0 (WIT 0.2.0)"),
        "{default}"
    );
    assert!(
        jitter.starts_with("policy jitter 0.1.0 (WIT 0.2.0)"),
        "{jitter}"
    );

    // The seed's schedule, and full jitter at the scenario's mid-range draw.
    assert_eq!(
        check_row(&default, "timeout before send"),
        [
            "2.0s", "4.0s", "8.0s", "failed", "failed", "failed", "failed"
        ]
    );
    assert_eq!(
        check_row(&jitter, "timeout before send"),
        ["0.5s", "1.0s", "2.0s", "4.0s", "8.0s", "failed", "failed"]
    );
    for out in [&default, &jitter] {
        let r = check_row(out, "429 Retry-After 30s");
        assert!(
            r[..3].iter().all(|c| *c == "30.0s"),
            "Retry-After is a floor: {r:?}"
        );
        assert!(check_row(out, "401 auth").iter().all(|c| *c == "dead"));
    }
    assert_eq!(alerts_row(&default, 21, 5), "WARNING queue-backlog");
    assert_eq!(alerts_row(&jitter, 21, 5), "none");
    assert_eq!(alerts_row(&default, 20, 6), "CRITICAL failed-backlog");
    assert_eq!(alerts_row(&jitter, 20, 6), "none");
    assert_eq!(
        alerts_row(&jitter, 101, 21),
        "CRITICAL failed-backlog, WARNING queue-backlog"
    );
    assert!(
        default.contains("3 in a row -> stop, next probe in 30s"),
        "{default}"
    );
    assert!(jitter.contains("3 in a row -> continue"), "{jitter}");

    // The embedded default was compiled once into DIR/cache.
    let cache = tmp.data_dir().join("cache");
    assert_eq!(cwasm_files(&cache).len(), 1, "{}", cache.display());
}

#[test]
fn policy_check_on_a_bad_file_fails_with_one_clear_line() {
    let tmp = Sandbox::new(bin!());
    let garbage = tmp.file(
        "garbage.wasm",
        b"this is not a wasm component at all\n\x00\xff",
    );
    let core = tmp.file("core.wasm", b"\0asm\x01\0\0\0");
    let missing = tmp.root().join("missing.wasm");
    let wrong_version = fixture("wrong-version", None);
    for (path, expect) in [
        (&garbage, "not a valid component"),
        (&core, "not a valid component"),
        (&missing, "cannot read the policy file"),
        (&wrong_version, "mem0-queue:policy/policy@0.9.0"),
    ] {
        let out = tmp
            .command(&[])
            .args(["policy", "check"])
            .arg(path)
            .output()
            .expect("run mem0-queue");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", path.display());
        assert!(
            out.stdout.is_empty(),
            "{}: stdout {:?}",
            path.display(),
            String::from_utf8_lossy(&out.stdout)
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{}: one line expected:\n{stderr}",
            path.display()
        );
        let line = lines[0];
        assert!(
            line.starts_with(&format!(
                "mem0-queue: policy {} is not usable: ",
                path.display()
            )),
            "{line}"
        );
        assert!(line.contains(expect), "{}: {line}", path.display());
    }
}

/// Runs `policy show --json` and returns the exit code and the JSON.
fn show_json(cmd: &mut std::process::Command) -> (Option<i32>, serde_json::Value) {
    let out = cmd
        .args(["policy", "show", "--json"])
        .output()
        .expect("run mem0-queue");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), json)
}

#[test]
fn policy_show_reports_the_source_and_the_cache() {
    let tmp = Sandbox::new(bin!());
    let jitter = jitter_path();
    let jitter_s = jitter.display().to_string();

    let (code, v) = show_json(&mut tmp.command(&[]));
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["name"], "default");
    assert_eq!(v["source"], "embedded default");
    assert_eq!(v["configured"], "embedded default (no `policy` configured)");
    assert_eq!(v["broken"], serde_json::Value::Null);
    assert_eq!(v["from_cache"], false, "a fresh data dir has no cache");
    let (_, v) = show_json(&mut tmp.command(&[]));
    assert_eq!(v["from_cache"], true, "the second run reads the cache");

    // --policy, then MEM0_QUEUE_POLICY.
    let (code, v) = show_json(tmp.command(&[]).arg("--policy").arg(&jitter));
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["name"], "jitter");
    assert_eq!(v["source"], jitter_s.as_str());
    assert_eq!(v["configured"], format!("{jitter_s} (set by flag)"));
    assert_eq!(v["from_cache"], false);
    assert_eq!(v["broken"], serde_json::Value::Null);
    let (code, v) = show_json(tmp.command(&[]).env("MEM0_QUEUE_POLICY", &jitter));
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["name"], "jitter");
    assert_eq!(
        v["configured"],
        format!("{jitter_s} (set by env MEM0_QUEUE_POLICY)")
    );
    assert_eq!(v["from_cache"], true);

    // The text form.
    let out = tmp
        .command(&[])
        .arg("--policy")
        .arg(&jitter)
        .args(["policy", "show"])
        .output()
        .expect("run mem0-queue");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("active policy: jitter 0.1.0 (WIT 0.2.0)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("source:        {jitter_s}\n")),
        "{text}"
    );
    assert!(
        text.contains("compiled:      from the on-disk cache"),
        "{text}"
    );

    // A configured policy that does not load: reported, exit 2, default active.
    let garbage = tmp.file("garbage.wasm", b"garbage");
    let (code, v) = show_json(tmp.command(&[]).arg("--policy").arg(&garbage));
    assert_eq!(code, Some(2), "{v}");
    assert_eq!(v["name"], "default");
    assert_eq!(v["source"], "embedded default");
    let broken = v["broken"].as_str().expect("a reason");
    assert!(broken.contains("not a valid component"), "{broken}");
}

// ---------------------------------------------------------------------------
// The compiled cache.

#[test]
fn a_second_runtime_loads_both_policies_from_the_cache() {
    let tmp = TempDir::new("cache");
    let dir = tmp.path().join("cache");
    let jitter = PolicySource::File(jitter_path());

    let mut cold = Runtime::new(jitter.clone(), Some(&dir)).expect("loads");
    assert!(!cold.info().from_cache);
    let files = cwasm_files(&dir);
    assert_eq!(
        files.len(),
        2,
        "one artifact each for the default and jitter: {files:?}"
    );
    let dir_mode = std::fs::metadata(&dir)
        .expect("cache dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700, "the cache dir is private");
    for f in &files {
        let mode = std::fs::metadata(f)
            .expect("cache file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
        assert!(
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("policy-"))
        );
    }
    // No temporary file is left behind.
    let entries = std::fs::read_dir(&dir).expect("cache dir").count();
    assert_eq!(entries, 2);

    let mut warm = Runtime::new(jitter, Some(&dir)).expect("loads");
    assert!(warm.info().from_cache);
    assert_eq!(warm.info().sha256, cold.info().sha256);
    let warm_default = Runtime::new(PolicySource::Embedded, Some(&dir)).expect("loads");
    assert!(warm_default.info().from_cache);
    assert_eq!(warm_default.info().name, "default");
    assert_eq!(cwasm_files(&dir), files, "nothing new was written");

    // Same decisions from the cached artifact.
    for a in 1..=7 {
        assert_eq!(
            warm.on_failure(entry(a), Outcome::Unknown, 99_999),
            cold.on_failure(entry(a), Outcome::Unknown, 99_999)
        );
    }
    assert_eq!(warm.alerts(stats(101, 21)), cold.alerts(stats(101, 21)));

    // Without a cache dir nothing is cached.
    let none = Runtime::new(PolicySource::Embedded, None).expect("loads");
    assert!(!none.info().from_cache);
}

#[test]
fn a_corrupted_cache_file_is_discarded_and_recompiled() {
    let tmp = TempDir::new("cache-bad");
    let dir = tmp.path().join("cache");
    drop(Runtime::new(PolicySource::Embedded, Some(&dir)).expect("loads"));
    let files = cwasm_files(&dir);
    assert_eq!(files.len(), 1);
    let file = &files[0];
    let good = std::fs::read(file).expect("cache file");
    // Each damage costs a Cranelift compile: three kinds, not more.
    let damages: [(&str, Vec<u8>); 3] = [
        ("garbage", b"not a compiled component".to_vec()),
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
    ];
    for (what, bytes) in damages {
        std::fs::write(file, &bytes).expect("damage the cache file");
        let mut rt = Runtime::new(PolicySource::Embedded, Some(&dir))
            .unwrap_or_else(|e| panic!("{what}: a bad cache must not stop the load: {e}"));
        assert!(!rt.info().from_cache, "{what}: the bad file was not used");
        assert_eq!(rt.info().broken, None, "{what}");
        assert_eq!(
            rt.on_failure(entry(1), Outcome::ConnectError, 0),
            Decision::RetryAfterMs(2_000)
        );
        assert_eq!(
            cwasm_files(&dir),
            files,
            "{what}: rewritten under the same name"
        );
        assert_eq!(
            std::fs::read(file).expect("rewritten"),
            good,
            "{what}: recompiled afresh"
        );
        let again = Runtime::new(PolicySource::Embedded, Some(&dir)).expect("loads");
        assert!(
            again.info().from_cache,
            "{what}: the rewritten file is used next time"
        );
    }
}

#[test]
fn an_unwritable_cache_dir_is_not_an_error() {
    let tmp = TempDir::new("cache-ro");
    // A file where the cache dir should be: nothing can be written under it.
    let blocker = tmp.file("cache", b"a file, not a dir");
    let mut rt = Runtime::new(PolicySource::File(jitter_path()), Some(&blocker)).expect("loads");
    assert_eq!(rt.info().name, "jitter");
    assert!(!rt.info().from_cache);
    assert_eq!(rt.info().broken, None);
    assert_eq!(rt.on_failure(entry(6), Outcome::Unknown, 0), Decision::Fail);
}

// ---------------------------------------------------------------------------
// The host clamps what a policy returns.

#[test]
fn absurd_values_are_clamped_by_the_host() {
    let mut rt = user(&hostile("nonsense"));
    assert_eq!(rt.info().name, "hostile-nonsense");

    // u64::MAX delays: at most an hour; at most MAX_ATTEMPTS_PER_RUN attempts.
    for a in [1, MAX_ATTEMPTS_PER_RUN - 1] {
        assert_eq!(
            rt.on_failure(entry(a), Outcome::ConnectError, 0),
            Decision::RetryAfterMs(MAX_DELAY_MS)
        );
    }
    for a in [MAX_ATTEMPTS_PER_RUN, MAX_ATTEMPTS_PER_RUN + 1, u32::MAX] {
        assert_eq!(
            rt.on_failure(entry(a), Outcome::ConnectError, 0),
            Decision::Fail
        );
    }
    // An empty dead reason is replaced; a megabyte one is cut and cleaned.
    assert_eq!(
        rt.on_failure(entry(1), outcomes()[6].clone(), 0),
        Decision::Dead("rejected by the policy".into())
    );
    match rt.on_failure(entry(1), outcomes()[4].clone(), 0) {
        Decision::Dead(reason) => {
            assert!(
                reason.chars().count() <= 200,
                "{} chars",
                reason.chars().count()
            );
            assert!(reason.contains("dead"));
            assert!(!reason.chars().any(char::is_control), "{reason:?}");
        }
        other => panic!("expected dead, got {other:?}"),
    }
    assert_eq!(
        rt.breaker(breaker_input(1, false)),
        BreakerDecision::Stop(MAX_DELAY_MS)
    );
    // Made-up ids, repeats and empty ids are dropped.
    let f = [failed("a", 1, 1), failed("b", 1, 1), failed("c", 1, 1)];
    assert_eq!(rt.on_run_start(&f, 0), ["a", "b", "c"]);

    // 10,000 alerts with megabyte texts: at most 16, texts bounded and clean.
    let alerts = rt.alerts(stats(1, 1));
    assert_eq!(alerts.len(), 16, "{:?}", rt.info().broken);
    for a in &alerts {
        assert_eq!(a.level, Level::Critical);
        assert!(
            a.code.chars().count() <= 64,
            "code of {} chars",
            a.code.chars().count()
        );
        assert!(
            a.message.chars().count() <= 1_000,
            "message of {} chars",
            a.message.chars().count()
        );
        assert!(a.message.contains("ALERT"));
        assert!(a.actions.len() <= 10, "{} actions", a.actions.len());
        for text in std::iter::once(&a.code)
            .chain([&a.message])
            .chain(&a.actions)
        {
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
        assert!(a.actions.iter().all(|s| s.chars().count() <= 200));
    }
    // Clamped values are not a broken policy.
    assert_eq!(rt.info().broken, None);
}
