//! `mem0-queue status --no-probe` exit codes on the real binary, with the
//! embedded default policy's thresholds (the seed's): 0 OK at 20 pending and
//! 5 failed, 1 WARNING over 20 pending, 2 CRITICAL over 5 failed, 3 UNKNOWN
//! when the queue file is garbage.

use mem0_queue::store::FailureRecord;
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
    let now = mem0_queue::clock::now_ms();
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
