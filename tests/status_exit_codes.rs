//! `mem0-queue status --no-probe` exit codes on the real binary, with the
//! embedded default policy's thresholds (the seed's): 0 OK at 20 pending and
//! 5 failed, 1 WARNING over 20 pending, 2 CRITICAL over 5 failed, 3 UNKNOWN
//! when the queue file is garbage.

use mem0_queue::engine::store::FailureRecord;
use mem0_queue_testkit::{
    bin,
    db::store,
    ops::{enqueue, run, text},
    sandbox::Sandbox,
};

fn status(home: &Sandbox) -> (Option<i32>, String) {
    let o = run(home.ops_command(&["status", "--no-probe"]));
    let (out, err) = text(&o);
    (o.status.code(), format!("{out}{err}"))
}

/// Moves `n` new entries to `failed`, as a worker does after the third retry.
fn fail_entries(home: &Sandbox, n: usize, tag: &str) {
    let mut s = store(&home.data_dir());
    let ids = enqueue(&mut s, n, tag);
    let now = mem0_queue::engine::clock::now_ms();
    let claimed = s.claim("test-owner", now, 60_000, n).expect("claim");
    assert_eq!(claimed.len(), n);
    for id in &ids {
        s.record_failure(
            id,
            "test-owner",
            &FailureRecord::Fail,
            "HTTP 503",
            false,
            now,
        )
        .expect("record failure");
    }
}

#[test]
fn pending_over_20_is_a_warning() {
    let home = Sandbox::new(bin!());
    enqueue(&mut store(&home.data_dir()), 20, "p");
    let (code, out) = status(&home);
    assert_eq!(code, Some(0), "20 pending is fine:\n{out}");
    assert!(out.contains("alerts: none"), "{out}");

    enqueue(&mut store(&home.data_dir()), 1, "p21");
    let (code, out) = status(&home);
    assert_eq!(code, Some(1), "21 pending:\n{out}");
    assert!(
        out.contains("WARNING") && out.contains("21 memories waiting"),
        "{out}"
    );
}

#[test]
fn failed_over_5_is_critical() {
    let home = Sandbox::new(bin!());
    fail_entries(&home, 5, "f");
    let (code, out) = status(&home);
    assert_eq!(code, Some(0), "5 failed is fine:\n{out}");
    assert!(out.contains("5 failed"), "{out}");

    fail_entries(&home, 1, "f6");
    let (code, out) = status(&home);
    assert_eq!(code, Some(2), "6 failed:\n{out}");
    assert!(
        out.contains("CRITICAL") && out.contains("6 failed entries"),
        "{out}"
    );

    // CRITICAL wins over WARNING.
    enqueue(&mut store(&home.data_dir()), 21, "both");
    let (code, out) = status(&home);
    assert_eq!(code, Some(2), "{out}");
}

#[test]
fn a_garbage_queue_file_is_unknown() {
    let home = Sandbox::new(bin!());
    std::fs::create_dir_all(home.data_dir()).expect("mkdir");
    std::fs::write(
        home.data_dir().join("queue.db"),
        b"this is not an SQLite database, just garbage bytes. ".repeat(100),
    )
    .expect("write garbage");
    let (code, out) = status(&home);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("UNKNOWN"), "{out}");
}

/// Regression (issue 12, "status hides trouble"): `status` stayed OK
/// ("alerts: none") while nothing at all had been reachable for six runs, as
/// long as fewer than 21 entries waited. Three real `sync` runs against a
/// server that is down, then the streak is dated back past the default
/// policy's 10-minute floor: WARNING `server-unreachable` with three entries
/// (three, so the breaker stops each run at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_warns_when_the_server_has_been_unreachable_whatever_the_queue_size() {
    use mem0_queue_testkit::mem0_server::Kind;
    use mem0_queue_testkit::worker::{server, sync};
    let home = Sandbox::new(bin!());
    enqueue(&mut store(&home.data_dir()), 3, "few");
    let srv = server(Kind::Oss, None, 3).await;
    let url = srv.url();
    srv.go_down().await;
    for _ in 0..3 {
        let (code, err) = sync(&home, Some(&url), Kind::Oss).await;
        assert_eq!(code, Some(75), "{err}");
    }
    let (code, out) = status(&home);
    assert_eq!(
        code,
        Some(0),
        "three runs within seconds are a restart, not yet an outage:\n{out}"
    );
    assert!(
        out.contains("the last 3 delivery runs reached nothing"),
        "{out}"
    );

    let mut s = store(&home.data_dir());
    let eleven_minutes_ago = mem0_queue::engine::clock::now_ms() - 11 * 60 * 1000;
    s.meta_set(
        mem0_queue::engine::store::meta_keys::UNREACHABLE_SINCE,
        &eleven_minutes_ago.to_string(),
    )
    .expect("date the streak back");
    let (code, out) = status(&home);
    assert_eq!(
        code,
        Some(1),
        "three entries, server gone for 11 min:\n{out}"
    );
    assert!(
        out.contains("WARNING") && out.contains("has not answered for 11 min (3 worker runs"),
        "{out}"
    );

    // A run that reaches the server ends the streak.
    srv.come_back().await;
    let (code, err) = sync(&home, Some(&url), Kind::Oss).await;
    assert_eq!(code, Some(0), "{err}");
    let (code, out) = status(&home);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("alerts: none"), "{out}");
}

/// Regression (issue 12): behind a login gate's redirect `status` said OK
/// while every entry was marked delivered with nothing on the server. Now
/// the `sync` that met the redirect exits 78, and `status` (another process)
/// is CRITICAL, names the page the requests were sent to, and counts the
/// memories still waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_problem_is_critical_and_names_the_location() {
    use mem0_queue_testkit::mem0_server::Kind;
    use mem0_queue_testkit::proxy::{Proxy, ProxyMode, RedirectTarget};
    use mem0_queue_testkit::worker::{server, sync};
    let home = Sandbox::new(bin!());
    enqueue(&mut store(&home.data_dir()), 2, "gated");
    let srv = server(Kind::Oss, None, 4).await;
    let gate = Proxy::start(
        srv.url(),
        ProxyMode::Redirect {
            status: 302,
            to: RedirectTarget::LoginPage,
        },
    )
    .await;
    let (code, err) = sync(&home, Some(&gate.url()), Kind::Oss).await;
    assert_eq!(code, Some(78), "{err}");
    let (code, out) = status(&home);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("CRITICAL")
            && out.contains(&format!("{}/login", gate.url()))
            && out.contains("2 memories wait"),
        "{out}"
    );
    assert!(srv.stored().is_empty());
}
