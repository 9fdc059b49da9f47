//! The host speaks every released WIT version of the policy contract: a
//! component built against 0.1.0 (the default policy as released, in
//! tests/fixtures/policy-v0.1.0) loads through the real runtime and decides;
//! the host raises `server-unreachable` for it, since 0.1.0 is not told how
//! long the server has been unreachable; `policy check` and `policy show`
//! name its WIT version; a version the host does not speak is refused.

use std::path::PathBuf;

use mem0_queue::engine::policy::{
    Alert, BreakerDecision, Decision, Level, Operation, Outcome, PolicyError, PolicySource,
    QueueStats, Runtime, WitVersion,
};
use mem0_queue_testkit::bin;
use mem0_queue_testkit::policy::{
    breaker_input, embedded, entry, failed, fixture, outcomes, shared_cache, stats, user,
};
use mem0_queue_testkit::sandbox::Sandbox;

/// The default policy as released against WIT 0.1.0.
fn v0_1_0() -> PathBuf {
    fixture("policy-v0.1.0", None)
}

fn codes(alerts: &[Alert]) -> Vec<(Level, &str)> {
    alerts.iter().map(|a| (a.level, a.code.as_str())).collect()
}

fn unreachable(mut s: QueueStats, runs: u32, for_ms: Option<u64>) -> QueueStats {
    s.unreachable_runs = runs;
    s.unreachable_for_ms = for_ms;
    s
}

#[test]
fn a_0_1_0_component_loads_through_the_runtime_and_decides() {
    let path = v0_1_0();
    let mut rt = user(&path);
    let info = rt.info();
    assert_eq!(info.name, "default");
    assert_eq!(info.wit_version, "0.1.0");
    assert_eq!(info.source, path.display().to_string());
    assert_eq!(info.broken, None);

    // The seed's schedule, for every operation: 0.1.0 is not told the kind.
    for operation in [
        Operation::Add,
        Operation::Update,
        Operation::Delete,
        Operation::DeleteAll,
    ] {
        for outcome in [
            Outcome::ConnectError,
            Outcome::TimeoutBeforeSend,
            Outcome::Unknown,
        ] {
            let d: Vec<Decision> = (1..=5)
                .map(|a| {
                    let mut e = entry(a);
                    e.operation = operation;
                    rt.on_failure(e, outcome.clone(), 12_345)
                })
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
                "{operation:?}, {outcome:?}"
            );
        }
    }
    // Permanent rejections are dead; Retry-After is a floor.
    for permanent in [&outcomes()[5], &outcomes()[6]] {
        match rt.on_failure(entry(1), permanent.clone(), 0) {
            Decision::Dead(reason) => assert!(reason.starts_with("HTTP 4"), "{reason}"),
            other => panic!("{permanent:?} must be dead, got {other:?}"),
        }
    }
    assert_eq!(
        rt.on_failure(entry(1), outcomes()[3].clone(), 0),
        Decision::RetryAfterMs(30_000)
    );
    let f = [failed("a", 1, 1), failed("b", 9, 1_500)];
    assert_eq!(rt.on_run_start(&f, 0), ["a", "b"]);
    assert_eq!(
        rt.breaker(breaker_input(3, false)),
        BreakerDecision::Stop(30_000)
    );

    // Its own thresholds.
    assert!(rt.alerts(stats(20, 5)).is_empty());
    assert_eq!(
        codes(&rt.alerts(stats(21, 5))),
        [(Level::Warning, "queue-backlog")]
    );

    // server-unreachable, which 0.1.0 cannot raise, is added by the host, in
    // the place and words of the current default policy.
    let mut current = embedded();
    let alone = unreachable(stats(0, 0), 3, Some(10 * 60_000));
    assert_eq!(
        codes(&rt.alerts(alone)),
        [(Level::Warning, "server-unreachable")]
    );
    for s in [
        alone,
        unreachable(stats(21, 6), 3, Some(25 * 60_000)),
        unreachable(stats(0, 0), 1, Some(30 * 60_000)),
        unreachable(stats(21, 6), 2, Some(29 * 60_000)),
        stats(21, 6),
    ] {
        assert_eq!(rt.alerts(s), current.alerts(s), "{s:?}");
    }
    assert_eq!(
        codes(&rt.alerts(unreachable(stats(21, 6), 4, Some(12 * 60_000)))),
        [
            (Level::Critical, "failed-backlog"),
            (Level::Warning, "server-unreachable"),
            (Level::Warning, "queue-backlog"),
        ]
    );
    assert_eq!(rt.info().broken, None);
}

#[test]
fn a_0_1_0_component_loads_from_the_compiled_cache_too() {
    let path = v0_1_0();
    drop(user(&path));
    let rt = Runtime::new(PolicySource::File(path.clone()), Some(shared_cache())).expect("loads");
    assert!(rt.info().from_cache);
    assert_eq!(rt.info().wit_version, "0.1.0");
    let loaded = rt.load_file(&path, Some(shared_cache())).expect("loads");
    assert_eq!(loaded.wit(), WitVersion::V0_1_0);
    assert_eq!(loaded.identity.wit_version, "0.1.0");
}

#[test]
fn policy_check_and_show_name_the_wit_version_0_1_0() {
    let tmp = Sandbox::new(bin!());
    let path = v0_1_0();
    let out = tmp
        .command(&[])
        .args(["policy", "check"])
        .arg(&path)
        .output()
        .expect("run mem0-queue");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("policy default 0.1.0 (WIT 0.1.0)"),
        "{stdout}"
    );
    assert!(stdout.contains("server-unreachable"), "{stdout}");
    assert!(stdout.trim_end().ends_with("usable: yes"), "{stdout}");

    let out = tmp
        .command(&[])
        .arg("--policy")
        .arg(&path)
        .args(["policy", "show"])
        .output()
        .expect("run mem0-queue");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("active policy: default 0.1.0 (WIT 0.1.0)"),
        "{text}"
    );
}

#[test]
fn a_component_of_a_version_the_host_does_not_speak_is_refused_naming_both() {
    let path = fixture("wrong-version", None);
    let rt = embedded();
    let err = rt
        .load_file(&path, Some(shared_cache()))
        .err()
        .expect("refused");
    assert!(matches!(err, PolicyError::Version(_)), "{err:?}");
    let text = err.to_string();
    for needle in [
        "exports mem0-queue:policy/policy@0.9.0",
        "mem0-queue:policy/policy@0.1.0",
        "mem0-queue:policy/policy@0.2.0",
    ] {
        assert!(text.contains(needle), "`{needle}` not in: {text}");
    }
    // Configured anyway: broken, and the embedded default decides.
    let mut rt = user(&path);
    assert_eq!(rt.info().name, "default");
    assert_eq!(rt.info().wit_version, "0.2.0");
    let broken = rt.info().broken.expect("broken");
    assert!(broken.contains("@0.9.0"), "{broken}");
    assert_eq!(
        rt.on_failure(entry(1), Outcome::ConnectError, 0),
        Decision::RetryAfterMs(2_000)
    );
}
