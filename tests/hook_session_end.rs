//! `mem0-queue hook session-end` on the real binary: it returns well within
//! Claude Code's 1.5 s hook budget even when stdin stays open, logs the
//! session id (and no memory text), and the sync it starts is detached (its
//! own session) and really delivers afterwards, even when the hook's whole
//! process group is killed right after the hook returns, as Claude Code
//! does when it exits.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mem0_queue::engine::store::State;
use mem0_queue_testkit::mem0_server::{Fault, FaultPlan, Kind};
use mem0_queue_testkit::worker::server;
use mem0_queue_testkit::{bin, db::store, ops::enqueue, process::running, sandbox::Sandbox};

/// Claude Code's budget for a SessionEnd hook.
const HOOK_BUDGET: Duration = Duration::from_millis(1500);

/// How long the detached sync may take to deliver.
const DELIVERY_LIMIT: Duration = Duration::from_secs(20);

fn session_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name "(...)": state ppid pgrp session ...
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_at_once_with_stdin_open_and_a_detached_sync_delivers() {
    let srv = server(Kind::Oss, None, 7).await;
    // Slow adds: the sync is still running when the hook's group is killed.
    srv.set_faults(FaultPlan::script([Some(Fault::Latency(
        Duration::from_millis(1500),
    ))]));
    let home = Sandbox::new(bin!());
    let ids = {
        let mut s = store(&home.data_dir());
        enqueue(&mut s, 1, "hook")
    };

    let mut cmd = home.ops_command(&["hook", "session-end"]);
    cmd.env("MEM0_API_URL", srv.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, which the test kills afterwards like
        // Claude Code kills what its hook started.
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn the hook");
    let hook_pid = child.id();
    // Half the JSON, and stdin left open.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(
            br#"{"session_id": "abc-123", "reason": "prompt_input_exit", "transcript_path": "/x"#,
        )
        .expect("write");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the hook hangs with stdin open"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = started.elapsed();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(status.success(), "hook failed: {err}");
    assert!(
        took < HOOK_BUDGET,
        "the hook took {took:?}, over Claude Code's budget"
    );

    // The log names the session and the sync's pid.
    let log = std::fs::read_to_string(home.data_dir().join("mem0_worker.log")).expect("worker log");
    let line = log
        .lines()
        .find(|l| l.contains("hook session-end"))
        .unwrap_or_else(|| panic!("no hook line in\n{log}"));
    assert!(
        line.contains("session ?"),
        "half a JSON has no session: {line}"
    );
    let pid: u32 = line
        .rsplit("pid ")
        .next()
        .and_then(|s| s.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line}"));
    assert!(
        !log.contains("ops test memory"),
        "memory text in the log:\n{log}"
    );

    // The sync runs in a session of its own, not the hook's group...
    if let Some(sid) = session_of(pid) {
        assert_eq!(sid, pid, "the sync is not a session leader");
    }
    // ...so killing the hook's process group leaves it running.
    // SAFETY: kill with a negative pid signals that process group only.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(-(hook_pid as i32), libc::SIGKILL);
    }
    drop(stdin);

    let deadline = Instant::now() + DELIVERY_LIMIT;
    loop {
        let s = store(&home.data_dir());
        let e = s.get(&ids[0], false).expect("entry");
        if e.state == State::Delivered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered within {DELIVERY_LIMIT:?}: {:?}\nlog:\n{}",
            e.state,
            std::fs::read_to_string(home.data_dir().join("mem0_worker.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(srv.count_by_mq_id().get(&ids[0]), Some(&1));

    // Let the sync finish before the temp HOME goes away.
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn logs_the_session_id_and_returns_fast_with_closed_stdin() {
    // No server configured: the hook says so in the log and starts nothing.
    let home = Sandbox::new(bin!());
    let mut cmd = home.ops_command(&["hook", "session-end"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(br#"{"session_id": "sess-42;rm -rf", "reason": "clear", "hook_event_name": "SessionEnd"}"#)
            .expect("write");
    }
    let status = child.wait().expect("wait");
    assert!(status.success());
    assert!(started.elapsed() < HOOK_BUDGET);
    let log = std::fs::read_to_string(home.data_dir().join("mem0_worker.log")).expect("log");
    assert!(log.contains("session sess-42rm-rf (clear)"), "{log}");
    assert!(log.contains("no Mem0 server configured"), "{log}");
}

/// Issue 16: while a daemon runs for the data dir, the hook starts no sync
/// (the daemon delivers the session's saves within a second) and says so.
#[test]
fn with_a_daemon_running_the_hook_starts_no_sync() {
    use mem0_queue_testkit::daemon::Daemon;
    let home = Sandbox::new(bin!());
    let mut c = Daemon::command(&home, &home.data_dir(), &[]);
    c.env("MEM0_API_URL", "http://127.0.0.1:9");
    let d = Daemon::start(c, &home.data_dir());
    let mut cmd = home.ops_command(&["hook", "session-end"]);
    cmd.env("MEM0_API_URL", "http://127.0.0.1:9")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(br#"{"session_id": "s-daemon", "reason": "other"}"#)
        .expect("write");
    assert!(child.wait().expect("wait").success());
    let log = std::fs::read_to_string(home.data_dir().join("mem0_worker.log")).expect("log");
    assert!(
        log.contains(&format!(
            "hook session-end: session s-daemon (other); the daemon (pid {}) delivers, no sync started",
            d.pid
        )),
        "{log}"
    );
    assert!(!log.contains("started sync"), "{log}");
    let (status, _) = d.stop();
    assert!(status.success());
}
