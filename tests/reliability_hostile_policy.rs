//! R5, hostile policies, end to end: the real `sync` configured with a
//! policy that loops, bombs its memory, traps, lies about its WIT version,
//! or is no component at all, against a test server whose first adds fail
//! (so the policy is asked to decide). The host falls back to the embedded
//! default, delivers everything exactly once, and `status` raises the
//! CRITICAL `policy-broken` alert. (`tests/policy_hostile.rs` checks each
//! misbehaviour against the runtime itself.)

use std::collections::HashSet;
use std::path::PathBuf;

use mem0_queue_testkit::bin;
use mem0_queue_testkit::checker;
use mem0_queue_testkit::mem0_server::{Fault, FaultPlan, Kind};
use mem0_queue_testkit::policy;
use mem0_queue_testkit::sandbox::{Sandbox, TempDir};
use mem0_queue_testkit::worker::{command, enqueue_in_dir, run_to_end, server};
use serde_json::Value;

/// Entries per policy: a few, each failing once before it is delivered.
const ENTRIES: usize = 6;

/// The hostile policies, by name.
fn policies(dir: &TempDir) -> Vec<(&'static str, PathBuf)> {
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm this is not a component at all").expect("write garbage");
    vec![
        ("looping", policy::hostile("looping")),
        ("membomb", policy::hostile("membomb")),
        ("trap", policy::hostile("trap")),
        ("lying-version", policy::hostile("lying-version")),
        ("wrong-version", policy::fixture("wrong-version", None)),
        ("garbage", garbage),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_every_hostile_policy_falls_back_and_delivery_goes_on() {
    let scratch = TempDir::new("r5");
    for (name, policy) in policies(&scratch) {
        let srv = server(Kind::Oss, None, 5).await;
        // Every entry's first add fails: the policy's on_failure is called.
        srv.set_faults(FaultPlan::script(std::iter::repeat_n(
            Some(Fault::Status500),
            ENTRIES,
        )));
        let sb = Sandbox::new(bin!());
        let data = sb.data_dir();
        let acked: HashSet<String> = enqueue_in_dir(&data, ENTRIES).into_iter().collect();
        let url = srv.url();
        let policy_arg = policy.display().to_string();
        let sync = ["--policy", policy_arg.as_str(), "sync"];
        let (code, err) = run_to_end(command(&sb, Some(&url), Kind::Oss, &sync)).await;
        assert_eq!(
            code,
            Some(0),
            "{name}: the sync drains on the fallback: {err}"
        );

        let report = checker::check(&acked, &data.join("queue.db"), &srv.count_by_mq_id());
        assert!(
            report.ok() && report.queued == 0,
            "{name}: {}",
            report.summary()
        );

        let status = ["--policy", policy_arg.as_str(), "status", "--json"];
        let mut cmd = command(&sb, None, Kind::Oss, &status);
        cmd.stdout(std::process::Stdio::piped());
        let out = cmd.output().await.expect("status");
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: status --json: {e}"));
        let alert = v["alerts"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["code"] == "policy-broken"))
            .unwrap_or_else(|| panic!("{name}: no policy-broken alert in {v:#}"));
        assert_eq!(alert["level"], "critical", "{name}: {alert}");
        // Once the policy is no longer configured, the record of its
        // failure raises nothing.
        let mut cmd = command(&sb, None, Kind::Oss, &["status", "--json"]);
        cmd.stdout(std::process::Stdio::piped());
        let out = cmd.output().await.expect("status");
        let v: Value = serde_json::from_slice(&out.stdout).expect("status --json");
        assert!(
            !v.to_string().contains("policy-broken"),
            "{name}: the default policy is not broken: {v:#}"
        );
        println!(
            "R5 hostile policy {name}: the sync fell back and drained (exit 0), \
             policy-broken raised; {}",
            report.summary()
        );
    }
}
