//! The dashboard in a real browser: Debian's headless Chromium, driven by
//! playwright-core (`tests/browser/dashboard.mjs`), against the real
//! `mem0-queue dashboard` on a seeded queue and the Mem0 test server.
//!
//! It loads the page and reads the counts, alerts and lists; reveals one
//! memory; clicks "Retry failed" and sees the failed count go to 0 (the
//! database agrees); clicks "Sync now" and follows the progress bar until
//! the queue is drained (the database and the Mem0 server agree); and is
//! refused without the token. The screenshot goes to `target/dashboard.png`
//! (CI keeps it as an artifact).
//!
//! Chromium (`apt-get install chromium`) and playwright-core (`npm install
//! --no-package-lock --prefix tests/browser`) are installed by `.ci/run`.
//! Where either is missing the test says so and passes; in CI (`CI` set) it
//! fails.

use std::path::Path;
use std::time::Duration;

use mem0_queue::engine::store::State;
use mem0_queue_testkit::bin;
use mem0_queue_testkit::dash::{get, seed, slow_server, syncing};
use mem0_queue_testkit::db::{counts, state_of};
use mem0_queue_testkit::sandbox::{Sandbox, workspace_root};
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether the browser tools are here; panics in CI when they are not.
fn tools() -> bool {
    let pw = workspace_root().join("tests/browser/node_modules/playwright-core/package.json");
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing: Vec<&str> = [
        (!Path::new(CHROMIUM).exists()).then_some("chromium (apt-get install chromium)"),
        (!node).then_some("node"),
        (!pw.exists())
            .then_some("playwright-core (npm install --no-package-lock --prefix tests/browser)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("missing in CI: {}", missing.join(", "));
    }
    eprintln!("SKIPPED: the browser test needs {}", missing.join(", "));
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium() {
    if !tools() {
        return;
    }
    let sb = Sandbox::new(bin!());
    // Where a user's queue lives by default.
    let data = sb.home().join(".local/share/mem0-queue");
    let db = data.join("queue.db");
    // 6 failed: over the default policy's CRITICAL threshold (more than 5);
    // 1 dead: a WARNING.
    let seeded = seed(&db, 4, 6, 1, 30);

    // A Mem0 server slow enough (250 ms an add, one at a time) for the
    // progress bar to be seen moving.
    let server = slow_server(7, Duration::from_millis(250)).await;
    let dash = syncing(&sb, &data, &server).await;

    let shot = workspace_root().join("target/dashboard.png");
    std::fs::create_dir_all(shot.parent().expect("target/")).expect("target/");
    let _ = std::fs::remove_file(&shot);
    let node = tokio::process::Command::new("node")
        .arg(workspace_root().join("tests/browser/dashboard.mjs"))
        .arg(&dash.url)
        .arg(&shot)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), node)
        .await
        .expect("the browser run ends within 180 s")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let seen: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    assert!(
        out.status.success(),
        "the browser run failed\nseen: {seen:#}\nstderr: {stderr}"
    );
    eprintln!("browser saw: {seen:#}");

    // 1. The counts as seeded, the alerts in their colours, the lists.
    assert_eq!(
        seen["initial"],
        serde_json::json!({"pending": 4, "in_flight": 0, "failed": 6, "dead": 1, "delivered": 30}),
        "{seen:#}"
    );
    let alerts = seen["alerts"].as_array().expect("alerts");
    let critical = alerts
        .iter()
        .find(|a| a["level"] == "critical")
        .unwrap_or_else(|| panic!("a CRITICAL banner: {seen:#}"));
    assert!(
        critical["text"]
            .as_str()
            .is_some_and(|t| t.contains("CRITICAL")),
        "{critical}"
    );
    let warning = alerts
        .iter()
        .find(|a| a["level"] == "warning")
        .unwrap_or_else(|| panic!("a WARNING banner: {seen:#}"));
    assert!(
        warning["text"]
            .as_str()
            .is_some_and(|t| t.contains("WARNING")),
        "{warning}"
    );
    assert_ne!(
        critical["background"], warning["background"],
        "CRITICAL red, WARNING amber"
    );
    let mut rows: Vec<String> = seen["failedRows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    rows.sort();
    let mut failed = seeded.failed.clone();
    failed.sort();
    assert_eq!(rows, failed, "the failed list shows the failed entries");
    assert_eq!(seen["deadRows"], serde_json::json!(seeded.dead));
    let bars = seen["chartBars"].as_array().expect("7 daily bars");
    assert_eq!(bars.len(), 7);
    let saves: u64 = bars.iter().map(|b| b[0].as_u64().unwrap_or(0)).sum();
    assert_eq!(saves, 41, "every seeded save is in the 7-day chart");
    assert_eq!(seen["reachability"], "reachable", "{seen:#}");
    assert!(
        seen["footer"]
            .as_str()
            .is_some_and(|f| f.contains("queue: ~/.local/share/mem0-queue ")),
        "the queue's place, under ~: {seen:#}"
    );
    assert_eq!(seen["textBeforeReveal"], false, "texts only on reveal");
    assert!(
        seen["revealed"]
            .as_str()
            .is_some_and(|t| t.contains("Dead memory 0: <b>not</b> HTML")),
        "{seen:#}"
    );
    assert_eq!(seen["revealedHtmlElements"], 0, "a memory is shown as text");

    // 2. Retry failed moved them; the database agrees.
    assert_eq!(seen["afterRetry"]["failed"], 0, "{seen:#}");
    assert_eq!(seen["afterRetry"]["pending"], 10, "{seen:#}");
    assert!(
        !seen["alertsAfterRetry"]
            .as_array()
            .expect("levels")
            .iter()
            .any(|l| l == "critical"),
        "the CRITICAL banner clears once nothing has failed: {seen:#}"
    );

    // 3. The sync drained the queue, and the bar showed it going.
    let progress = seen["progress"].as_array().expect("progress samples");
    assert!(
        progress
            .iter()
            .any(|p| p["state"] == "running" && p["visible"] == true && p["disabled"] == true),
        "the progress bar was seen running, the button disabled: {seen:#}"
    );
    let last = progress.last().expect("a final sample");
    assert_eq!(last["state"], "done", "{seen:#}");
    assert!(
        last["text"]
            .as_str()
            .is_some_and(|t| t.contains("10 delivered")),
        "{last}"
    );
    assert_eq!(
        seen["final"],
        serde_json::json!({"pending": 0, "in_flight": 0, "failed": 0, "dead": 1, "delivered": 40}),
        "{seen:#}"
    );
    assert_eq!(
        seen["errorsBeforeRefusal"],
        serde_json::json!([]),
        "no script error and no CSP violation"
    );

    // 4. Refusals.
    assert_eq!(seen["noTokenStatus"], 403, "{seen:#}");
    assert_eq!(seen["wrongTokenStatus"], 403, "{seen:#}");
    assert_eq!(
        seen["localhostStatus"], 200,
        "localhost:PORT serves the page: {seen:#}"
    );

    // The database agrees with what the page said.
    let c = counts(&db);
    assert_eq!(
        (c.pending, c.in_flight, c.failed, c.dead, c.delivered),
        (0, 0, 0, 1, 40),
        "{c:?}"
    );
    for id in seeded.failed.iter().chain(&seeded.pending) {
        assert_eq!(state_of(&db, id), State::Delivered, "{id}");
    }
    assert_eq!(state_of(&db, &seeded.dead[0]), State::Dead);
    let by_id = server.count_by_mq_id();
    for id in seeded.failed.iter().chain(&seeded.pending) {
        assert_eq!(by_id.get(id), Some(&1), "{id} reached Mem0 exactly once");
    }

    // And from outside the browser: no token, a wrong token, a foreign Host.
    let port = dash.port;
    let host = format!("127.0.0.1:{port}");
    for (path, host, what) in [
        ("/".to_string(), host.clone(), "no token"),
        (
            format!("/?token={}", "0".repeat(64)),
            host.clone(),
            "a wrong token",
        ),
        (
            format!("/?token={}", dash.token),
            format!("attacker.example:{port}"),
            "a foreign Host",
        ),
    ] {
        let a = get(port, &path, &host, &[]);
        assert_eq!(a.status, 403, "{what}: {a:?}");
        assert!(a.body.is_empty(), "{what}");
    }

    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(png.len() > 10_000, "a real page, not a blank one");
    let rest = tokio::task::spawn_blocking(move || dash.stop())
        .await
        .expect("stop");
    assert_eq!(rest, "", "nothing on stdout but the URL");
    server.shutdown().await;
}
