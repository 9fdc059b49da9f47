//! Hostile policy components against the host's sandbox and fallback.
//!
//! For each misbehaviour (an infinite loop, a memory bomb, a trap, error
//! values, the wrong WIT version, the wrong world, garbage bytes, a core
//! module) the host stops the guest within its fuel or memory limit or
//! refuses it at load time, with an error naming the cause; the decision
//! then equals the embedded default's; `info().broken` says why; and
//! `alerts()` starts with a CRITICAL `policy-broken` alert. The guest also
//! sees no file, no environment variable and no network.
//!
//! The fixtures are real components, built from tests/fixtures/ on first use.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mem0_queue::engine::policy::wasm::{self, Host};
use mem0_queue::engine::policy::{
    Alert, BreakerDecision, Decision, Level, Outcome, PolicyError, PolicyHandle, PolicySource,
    Runtime,
};
use mem0_queue_testkit::bin;
use mem0_queue_testkit::policy::{
    assert_snoop_found_nothing, breaker_input, embedded, entry, failed, fixture, hostile, outcomes,
    shared_cache, stats, user,
};
use mem0_queue_testkit::sandbox::{Sandbox, TempDir};

/// The longest one guarded call may take here. Fuel stops a loop after about
/// 10 ms of guest code; the bound is generous for a loaded 2-core machine
/// running an unoptimised host.
const CALL_BOUND: Duration = Duration::from_secs(5);

/// What the fixture's well-behaved parts answer (tests/fixtures/hostile).
const SANE_RETRY_MS: u64 = 1_234;
const SANE_PAUSE_MS: u64 = 4_321;

fn timed<R>(f: impl FnOnce() -> R) -> R {
    let start = Instant::now();
    let r = f();
    let took = start.elapsed();
    assert!(took < CALL_BOUND, "a guarded call took {took:?}");
    r
}

/// Loads `path` on a host of its own, with no fallback: the error of the
/// load itself, or a component to call directly.
fn load_alone(path: &Path) -> (Host, Result<wasm::Loaded, PolicyError>) {
    // Fills the shared cache for it first, alone (see mem0_queue_testkit::policy::runtime).
    drop(user(path));
    let host = Host::new().expect("an engine");
    let loaded = std::fs::read(path)
        .map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })
        .and_then(|bytes| host.load(&bytes, Some(shared_cache())));
    (host, loaded)
}

/// Asserts that the runtime has recorded `rt`'s policy as broken for a reason
/// containing every needle, and that `alerts()` leads with the CRITICAL
/// `policy-broken` alert naming the component and the reason. Returns the
/// alerts that follow it.
fn assert_broken(rt: &mut Runtime, path: &Path, needles: &[&str]) -> Vec<Alert> {
    let broken = rt.info().broken.expect("the policy is recorded as broken");
    for n in needles {
        assert!(broken.contains(n), "`{n}` not in the reason: {broken}");
    }
    assert!(!broken.chars().any(char::is_control), "{broken:?}");
    let mut alerts = rt.alerts(stats(0, 0));
    assert!(!alerts.is_empty(), "no policy-broken alert");
    let first = alerts.remove(0);
    assert_eq!(first.level, Level::Critical);
    assert_eq!(first.code, "policy-broken");
    assert!(
        first.message.starts_with("POLICY BROKEN - CRITICAL"),
        "{}",
        first.message
    );
    assert!(
        first.message.contains(&path.display().to_string()),
        "{}",
        first.message
    );
    assert!(first.message.chars().count() <= 1_000);
    assert!(!first.message.chars().any(char::is_control));
    for n in needles {
        assert!(
            first.message.contains(n),
            "`{n}` not in the alert: {}",
            first.message
        );
    }
    assert_eq!(
        first.actions[0],
        format!("mem0-queue policy check {}", path.display())
    );
    alerts
}

/// Every decision of `rt` equals the embedded default's, on a grid of inputs.
fn assert_decides_like_the_default(rt: &mut Runtime) {
    let mut reference = embedded();
    for outcome in outcomes() {
        for attempts in 1..=6 {
            let got = timed(|| rt.on_failure(entry(attempts), outcome.clone(), 42));
            assert_eq!(
                got,
                reference.on_failure(entry(attempts), outcome.clone(), 42),
                "{outcome:?}, attempts {attempts}"
            );
        }
    }
    for (n, tripped) in [(1, false), (3, false), (1, true)] {
        let got = timed(|| rt.breaker(breaker_input(n, tripped)));
        assert_eq!(got, reference.breaker(breaker_input(n, tripped)));
    }
    let f = [failed("a", 1, 1), failed("b", 3, 100)];
    let got = timed(|| rt.on_run_start(&f, 0));
    assert_eq!(got, reference.on_run_start(&f, 0));
    for s in [stats(0, 0), stats(21, 6)] {
        let mut got = timed(|| rt.alerts(s));
        assert_eq!(got.remove(0).code, "policy-broken");
        assert_eq!(got, reference.alerts(s));
    }
}

// ---------------------------------------------------------------------------
// Misbehaving at call time.

#[test]
fn a_looping_policy_runs_out_of_fuel_and_the_default_decides() {
    let path = hostile("looping");
    let (host, loaded) = load_alone(&path);
    let loaded = loaded.expect("a looping policy loads: describe() is fine");
    let err = timed(|| {
        host.call(&loaded, 0, |d, s| {
            d.call_on_failure(s, entry(1), &Outcome::ConnectError, 0)
        })
    })
    .expect_err("an infinite loop cannot return");
    assert!(matches!(err, PolicyError::OutOfFuel(_)), "{err:?}");
    assert!(err.to_string().contains("ran out of fuel"), "{err}");

    let mut rt = user(&path);
    assert_eq!(rt.info().name, "hostile-looping");
    assert_eq!(rt.info().broken, None);
    let d = timed(|| rt.on_failure(entry(1), Outcome::ConnectError, 0));
    assert_eq!(d, embedded().on_failure(entry(1), Outcome::ConnectError, 0));
    assert_eq!(d, Decision::RetryAfterMs(2_000));
    let rest = assert_broken(&mut rt, &path, &["ran out of fuel"]);
    // Its other exports work and are still asked.
    assert_eq!(rest[0].code, "hostile-sane");
    assert_eq!(
        rt.breaker(breaker_input(1, false)),
        BreakerDecision::Stop(SANE_PAUSE_MS)
    );
}

#[test]
fn a_looping_policy_used_for_many_decisions_never_hangs() {
    let path = hostile("looping");
    let mut rt = user(&path);
    let mut reference = embedded();
    let start = Instant::now();
    for i in 0..40u32 {
        let attempts = i % 6 + 1;
        let outcome = outcomes()[(i % 7) as usize].clone();
        let d = timed(|| rt.on_failure(entry(attempts), outcome.clone(), i));
        assert_eq!(
            d,
            reference.on_failure(entry(attempts), outcome, i),
            "call {i}"
        );
        // The host carries on between the loops: the other exports answer.
        assert_eq!(
            rt.breaker(breaker_input(2, false)),
            BreakerDecision::Stop(SANE_PAUSE_MS)
        );
    }
    eprintln!(
        "40 looping decisions and 40 sane ones took {:?}",
        start.elapsed()
    );
    assert!(rt.info().broken.is_some_and(|b| b.contains("fuel")));

    // The same through the policy thread, blocking and async.
    let handle = PolicyHandle::start(
        PolicySource::File(path.clone()),
        Some(shared_cache().to_path_buf()),
    )
    .expect("the policy thread starts");
    for i in 0..10 {
        let d = handle
            .run_blocking(move |rt| {
                let start = Instant::now();
                (
                    rt.on_failure(entry(2), Outcome::Unknown, i),
                    start.elapsed(),
                )
            })
            .expect("the policy thread answers");
        assert_eq!(d.0, Decision::RetryAfterMs(4_000));
        assert!(d.1 < CALL_BOUND, "{:?}", d.1);
    }
    let rt_async = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt_async.block_on(async {
        for i in 0..10 {
            let d = tokio::time::timeout(
                CALL_BOUND,
                handle.run(move |rt| rt.on_failure(entry(3), Outcome::TimeoutBeforeSend, i)),
            )
            .await
            .expect("the decision came back in time")
            .expect("the policy thread answers");
            assert_eq!(d, Decision::RetryAfterMs(8_000));
        }
        let broken = handle
            .run(|rt| rt.info().broken)
            .await
            .expect("the policy thread answers");
        assert!(broken.is_some_and(|b| b.contains("fuel")));
    });
}

#[test]
fn a_memory_bomb_is_stopped_at_the_memory_limit() {
    let path = hostile("membomb");
    let (host, loaded) = load_alone(&path);
    let loaded = loaded.expect("loads");
    let err = timed(|| host.call(&loaded, 0, |d, s| d.call_alerts(s, stats(1, 0))))
        .expect_err("unbounded growth cannot return");
    assert!(matches!(err, PolicyError::Memory(_)), "{err:?}");

    let mut rt = user(&path);
    let s = stats(21, 6);
    let mut alerts = timed(|| rt.alerts(s));
    assert_eq!(alerts.remove(0).code, "policy-broken");
    assert_eq!(alerts, embedded().alerts(s));
    assert_eq!(alerts.len(), 2, "the default's two alerts: {alerts:?}");
    assert_broken(&mut rt, &path, &["memory limit"]);
    // Each call has a fresh store: the next one starts from scratch.
    assert_eq!(
        rt.on_failure(entry(1), Outcome::Unknown, 0),
        Decision::RetryAfterMs(SANE_RETRY_MS)
    );
}

#[test]
fn a_trapping_policy_falls_back_and_the_next_call_still_works() {
    let path = hostile("trap");
    let (host, loaded) = load_alone(&path);
    let loaded = loaded.expect("loads");
    let err = host
        .call(&loaded, 0, |d, s| {
            d.call_breaker(s, breaker_input(3, false))
        })
        .expect_err("a panic cannot return");
    assert!(matches!(err, PolicyError::Trap(_)), "{err:?}");
    let err = host
        .call(&loaded, 0, |d, s| {
            d.call_on_failure(s, entry(1), &Outcome::Unknown, 0)
        })
        .expect_err("`unreachable` cannot return");
    assert!(matches!(err, PolicyError::Trap(_)), "{err:?}");

    let mut rt = user(&path);
    let mut reference = embedded();
    for _ in 0..3 {
        // A trap poisons an instance; each call instantiates afresh.
        assert_eq!(
            timed(|| rt.breaker(breaker_input(3, false))),
            reference.breaker(breaker_input(3, false))
        );
        assert_eq!(
            timed(|| rt.on_failure(entry(1), Outcome::ConnectError, 0)),
            Decision::RetryAfterMs(2_000)
        );
        let f = [failed("a", 1, 1)];
        assert_eq!(rt.on_run_start(&f, 0), ["a"]);
    }
    let rest = assert_broken(&mut rt, &path, &["the policy trapped"]);
    assert_eq!(rest[0].code, "hostile-sane", "alerts() does not trap");
}

#[test]
fn error_values_fall_back_with_a_bounded_clean_reason() {
    let path = hostile("error");
    let (host, loaded) = load_alone(&path);
    let loaded = loaded.expect("loads");
    let returned = host
        .call(&loaded, 0, |d, s| {
            d.call_on_failure(s, entry(1), &Outcome::Unknown, 0)
        })
        .expect("an error value is not a trap");
    let text = returned.expect_err("the fixture returns Err");
    assert!(text.starts_with("hostile error from on_failure"));
    assert!(text.len() > 1 << 20, "the raw error is a megabyte");

    let mut rt = user(&path);
    assert_eq!(rt.info().broken, None);
    assert_decides_like_the_default(&mut rt);
    let broken = rt.info().broken.expect("broken");
    assert!(
        broken.chars().count() <= 300,
        "{} chars",
        broken.chars().count()
    );
    // The last decision asked was alerts().
    assert_broken(
        &mut rt,
        &path,
        &["returned an error", "hostile error from alerts"],
    );
}

// ---------------------------------------------------------------------------
// Reused stores: a guest keeps its memory between calls, within a window.

fn retry(d: Decision) -> u64 {
    match d {
        Decision::RetryAfterMs(ms) => ms,
        other => panic!("expected a retry, got {other:?}"),
    }
}

/// The runtime reuses one store and instance per policy: a guest's state
/// carries over from call to call (the `stateful` fixture answers its call
/// count), and is dropped at every run start and every `RECYCLE_EVERY`
/// calls, so it never outlives that window.
#[test]
fn a_guest_keeps_state_between_calls_only_within_the_recycle_window() {
    let mut rt = user(&hostile("stateful"));
    let counts: Vec<u64> = (0..5)
        .map(|i| retry(rt.on_failure(entry(1), Outcome::Unknown, i)))
        .collect();
    assert_eq!(counts, [1, 2, 3, 4, 5], "the instance is reused");
    // A run start recycles the store, and is the new store's first call.
    assert_eq!(rt.on_run_start(&[failed("a", 1, 1)], 0), ["a"]);
    let counts: Vec<u64> = (0..wasm::RECYCLE_EVERY)
        .map(|i| retry(rt.on_failure(entry(1), Outcome::Unknown, i)))
        .collect();
    let n = wasm::RECYCLE_EVERY as usize;
    // Calls 2 to RECYCLE_EVERY of that store answer 1 to RECYCLE_EVERY - 1;
    // the next call is the first of a fresh instance.
    assert_eq!(counts[0], 1, "fresh at the run start");
    assert_eq!(counts[n - 2], n as u64 - 1);
    assert_eq!(
        counts[n - 1],
        1,
        "a fresh instance after RECYCLE_EVERY calls"
    );
    assert_eq!(rt.info().broken, None);
}

/// A guest that leaks memory on every call meets the memory limit on its
/// reused store (the limit holds for the store's whole life), is stopped,
/// the default decides that call, and the next call gets a fresh store: no
/// decision is starved, and the leak never outgrows the limit.
#[test]
fn a_guest_leaking_memory_across_reused_calls_is_stopped_and_later_decisions_go_on() {
    let path = hostile("leaky");
    let mut rt = user(&path);
    let fallback = retry(embedded().on_failure(entry(1), Outcome::Unknown, 0));
    assert_eq!(fallback, 2_000);
    let start = Instant::now();
    let answers: Vec<u64> = (0..60)
        .map(|i| retry(timed(|| rt.on_failure(entry(1), Outcome::Unknown, i))))
        .collect();
    eprintln!(
        "60 decisions of a leaking guest took {:?}: {answers:?}",
        start.elapsed()
    );
    let stops: Vec<usize> = answers
        .iter()
        .enumerate()
        .filter(|(_, ms)| **ms == fallback)
        .map(|(i, _)| i)
        .collect();
    // 4 MiB a call under a 64 MiB cap: stopped after at most 16 calls.
    assert!(
        stops.len() >= 3,
        "the limit stopped it {} times: {answers:?}",
        stops.len()
    );
    assert!(stops[0] <= 16, "{answers:?}");
    for &i in &stops {
        if i + 1 < answers.len() {
            assert_eq!(
                answers[i + 1],
                1,
                "call {} after the stop starts afresh: {answers:?}",
                i + 1
            );
        }
    }
    // Between stops, the guest answered (its call count: the store was reused).
    assert_eq!(&answers[..3], [1, 2, 3]);
    assert_broken(&mut rt, &path, &["memory limit"]);
    // Its other exports were never starved either.
    assert_eq!(
        rt.breaker(breaker_input(1, false)),
        BreakerDecision::Stop(SANE_PAUSE_MS)
    );
}

/// The reason a user reads (in `policy show`, the `policy-broken` alert and
/// `policy check`) must say what the guest did, not only that it trapped.
#[test]
fn a_trap_or_memory_reason_names_what_the_guest_did() {
    let mut rt = user(&hostile("trap"));
    rt.breaker(breaker_input(3, false));
    let trap = rt.info().broken.expect("broken");
    let mut rt = user(&hostile("membomb"));
    rt.alerts(stats(0, 0));
    let memory = rt.info().broken.expect("broken");
    assert!(
        trap.contains("unreachable") && memory.contains("growing memory"),
        "the reasons do not name the trap:\n  trap:   {trap}\n  memory: {memory}"
    );
}

/// `policy check` calls the component directly, with no fallback: each
/// misbehaviour must end it with exit 2 and one short, clean line on stderr,
/// whatever text the guest produced.
#[test]
fn policy_check_refuses_each_misbehaving_policy_with_one_clean_line() {
    let tmp = Sandbox::new(bin!());
    for (feature, expect) in [
        ("looping", "ran out of fuel"),
        ("membomb", "memory limit"),
        ("trap", "the policy trapped"),
        ("lying-version", "wrong WIT version"),
        ("error", "hostile error from on_failure"),
    ] {
        let path = hostile(feature);
        let start = Instant::now();
        let out = tmp
            .command(&[])
            .args(["policy", "check"])
            .arg(&path)
            .output()
            .expect("run mem0-queue");
        let took = start.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{feature}");
        assert!(
            out.stdout.is_empty(),
            "{feature}: a failed check prints no table"
        );
        let shown: String = stderr.chars().take(300).collect();
        assert!(
            stderr.ends_with('\n') && stderr.matches('\n').count() == 1,
            "{feature}: one line expected, got {} lines ({} bytes), starting: {shown:?}",
            stderr.matches('\n').count(),
            stderr.len()
        );
        let line = stderr.trim_end_matches('\n');
        assert!(
            line.chars().count() <= 1_000,
            "{feature}: {} chars",
            line.chars().count()
        );
        assert!(
            !line.chars().any(char::is_control),
            "{feature}: control characters: {shown:?}"
        );
        assert!(
            line.starts_with(&format!(
                "mem0-queue: policy {} is not usable: ",
                path.display()
            )),
            "{feature}: {line}"
        );
        assert!(line.contains(expect), "{feature}: {line}");
        // Bounded: compiling the component in an unoptimised build, then one
        // guarded call.
        assert!(took < Duration::from_secs(60), "{feature}: took {took:?}");
    }
}

// ---------------------------------------------------------------------------
// Refused at load time.

#[test]
fn components_of_the_wrong_version_or_world_or_no_component_are_refused() {
    let tmp = TempDir::new("refused");
    let garbage = tmp.file("garbage.wasm", b"MZ\x90\0 this is no wasm \xff\xfe");
    let core = tmp.file("core.wasm", b"\0asm\x01\0\0\0");
    let empty = tmp.file("empty.wasm", b"");
    let missing = tmp.path().join("missing.wasm");
    type Check = fn(&PolicyError) -> bool;
    let cases: [(&str, PathBuf, Check, &[&str]); 8] = [
        (
            "wrong version",
            fixture("wrong-version", None),
            |e| matches!(e, PolicyError::Version(_)),
            &[
                "wrong WIT version",
                "exports mem0-queue:policy/policy@0.9.0",
                "mem0-queue:policy/policy@0.1.0 or mem0-queue:policy/policy@0.2.0",
            ],
        ),
        (
            "a describe() claiming another version than it exports",
            hostile("lying-version"),
            |e| matches!(e, PolicyError::Version(_)),
            &[
                "wrong WIT version",
                "targets WIT 0.1.0",
                "exports mem0-queue:policy/policy@0.2.0",
            ],
        ),
        (
            "an unrelated world",
            fixture("wrong-world", Some("unrelated")),
            |e| matches!(e, PolicyError::WrongWorld(_)),
            &[
                "wrong world",
                "example:greeter/greet@1.0.0",
                "mem0-queue:policy/policy@0.1.0 or mem0-queue:policy/policy@0.2.0",
            ],
        ),
        (
            "the right export name with the wrong functions",
            fixture("wrong-world", Some("mismatched")),
            |e| matches!(e, PolicyError::WrongWorld(_)),
            &["wrong world"],
        ),
        (
            "garbage bytes",
            garbage,
            |e| matches!(e, PolicyError::Invalid(_)),
            &["not a valid component"],
        ),
        (
            "a core module",
            core,
            |e| matches!(e, PolicyError::Invalid(_)),
            &["not a valid component"],
        ),
        (
            "an empty file",
            empty,
            |e| matches!(e, PolicyError::Invalid(_)),
            &["not a valid component"],
        ),
        (
            "a missing file",
            missing,
            |e| matches!(e, PolicyError::Read { .. }),
            &["cannot read the policy file"],
        ),
    ];
    for (what, path, check, needles) in cases {
        let (_host, loaded) = load_alone(&path);
        let err = loaded.err().unwrap_or_else(|| panic!("{what}: loaded"));
        assert!(check(&err), "{what}: {err:?}");
        for n in needles {
            assert!(err.to_string().contains(n), "{what}: `{n}` not in: {err}");
        }

        let mut rt = user(&path);
        let info = rt.info();
        assert_eq!(info.name, "default", "{what}");
        assert_eq!(info.source, "embedded default", "{what}");
        assert_eq!(rt.source(), &PolicySource::File(path.clone()));
        eprintln!("{what}: {}", info.broken.as_deref().unwrap_or("-"));
        assert_broken(&mut rt, &path, needles);
        assert_decides_like_the_default(&mut rt);
    }
}

// ---------------------------------------------------------------------------
// The sandbox.

#[test]
fn the_guest_sees_no_files_no_env_no_args_and_no_network() {
    // Something to connect to, so a refusal is the sandbox, not a closed port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("an address").port();
    let host_file = Path::new("/tmp/mem0-queue-snoop");
    let existed = host_file.exists();
    assert!(
        std::env::vars().count() > 0,
        "the host has env vars to leak"
    );

    let mut rt = user(&hostile("snoop"));
    let alerts = rt.alerts(stats(u64::from(port), 0));
    assert_eq!(rt.info().broken, None, "snooping is not a failure");
    let [alert] = alerts.as_slice() else {
        panic!("one snoop alert expected: {alerts:?}")
    };
    assert_eq!(alert.code, "snoop");
    let found = assert_snoop_found_nothing(&alert.message);
    eprintln!("the guest found: {found:#?}");
    let cwd = std::env::current_dir().expect("a cwd");
    assert!(
        !alert.message.contains(&*cwd.to_string_lossy()),
        "the host's cwd leaked: {}",
        alert.message
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the guest reached the host's network: {other:?}"),
    }
    if !existed {
        assert!(!host_file.exists(), "the guest wrote a host file");
    }
}
