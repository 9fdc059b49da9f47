//! One daemon per data dir (issue 16): a second `mem0-queue daemon` on the
//! same data dir exits at once with 75 (EX_TEMPFAIL) and a message naming
//! the first one; `status` says which runs; after the first is killed with
//! SIGKILL, its lock (an flock the kernel dropped) is taken over by the next
//! daemon, with no clean-up; a SIGTERM ends a daemon with 0 and releases it.

use mem0_queue_testkit::bin;
use mem0_queue_testkit::daemon::Daemon;
use mem0_queue_testkit::sandbox::Sandbox;
use mem0_queue_testkit::wait::{self, PROCESS_LIMIT};
use serde_json::Value;

fn status(sb: &Sandbox) -> (Value, String) {
    let json = wait::run(
        sb.command(&["status", "--json", "--no-probe"]),
        PROCESS_LIMIT,
    );
    let text = wait::run(sb.command(&["status", "--no-probe"]), PROCESS_LIMIT);
    (
        serde_json::from_slice(&json.stdout).expect("status --json prints JSON"),
        String::from_utf8_lossy(&text.stdout).into_owned(),
    )
}

#[test]
fn a_second_daemon_exits_and_a_dead_daemons_lock_is_taken_over() {
    let sb = Sandbox::new(bin!());
    let data = sb.data_dir();
    let first = Daemon::start(Daemon::command(&sb, &data, &[]), &data);

    let (json, text) = status(&sb);
    let d = &json["daemon"];
    assert_eq!(d["running"], true, "{json}");
    assert_eq!(d["pid"], first.pid, "{json}");
    assert_eq!(d["mcp_url"], first.url.as_str(), "{json}");
    assert!(d["since"].is_string(), "{json}");
    assert!(
        text.contains("daemon: running since ")
            && text.contains(&format!(
                ", pid {}, last delivery never, MCP at {}",
                first.pid, first.url
            )),
        "{text}"
    );
    assert!(
        !json.to_string().contains(&first.token),
        "status never shows the token"
    );

    // A second daemon on the same data dir: exit 75, naming the first.
    let second = wait::run(Daemon::command(&sb, &data, &[]), PROCESS_LIMIT);
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(75), "{err}");
    assert!(
        err.contains("a daemon already runs for the data dir")
            && err.contains(&format!("pid {}", first.pid)),
        "{err}"
    );
    assert!(second.stdout.is_empty(), "it never listened");

    // SIGKILL: no clean-up happens, the lock file stays, yet nobody holds it.
    let lock = data.join("daemon.lock");
    first.kill9();
    assert!(lock.exists(), "the dead daemon's lock file is left behind");
    let (json, text) = status(&sb);
    assert_eq!(json["daemon"]["running"], false, "{json}");
    assert!(text.contains("daemon: not running"), "{text}");

    // The next daemon takes the lock over, with the same token.
    let token = std::fs::read_to_string(data.join("daemon.token")).expect("the token");
    let third = Daemon::start(Daemon::command(&sb, &data, &[]), &data);
    assert_eq!(third.token, token.trim(), "the token is made once and kept");
    let (json, _) = status(&sb);
    assert_eq!(json["daemon"]["pid"], third.pid, "{json}");

    // SIGTERM: a clean exit, the lock released, a line in the worker log.
    let pid = third.pid;
    let (code, _) = third.stop();
    assert!(code.success(), "SIGTERM ends the daemon with 0: {code}");
    let (json, _) = status(&sb);
    assert_eq!(json["daemon"]["running"], false, "{json}");
    let log = std::fs::read_to_string(data.join("mem0_worker.log")).expect("the worker log");
    assert!(
        log.contains(&format!("daemon pid {pid} started: MCP at ")),
        "{log}"
    );
    assert!(log.contains(&format!("daemon pid {pid} stopped")), "{log}");
}

#[test]
fn a_non_loopback_address_is_refused_unless_asked_for() {
    let sb = Sandbox::new(bin!());
    let out = wait::run(
        Daemon::command(&sb, &sb.data_dir(), &["--bind", "0.0.0.0"]),
        PROCESS_LIMIT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "a configuration error: {err}");
    assert!(
        err.contains("daemon_bind") && err.contains("daemon_allow_remote"),
        "{err}"
    );
    assert!(
        !sb.data_dir().join("daemon.lock").exists(),
        "refused before it took anything"
    );
}
