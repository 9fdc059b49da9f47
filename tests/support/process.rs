//! Processes the tests start and look at: the SessionEnd hook and the sync
//! it leaves running in a session of its own; knobs read from the
//! environment (trial counts of the long runs).

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `cmd` (a `mem0-queue hook session-end` command) as Claude Code
/// does: the hook's JSON for `session` on stdin, then waits for it. Returns
/// its output (stdout and stderr captured).
pub fn run_session_end_hook(mut cmd: Command, session: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the hook");
    let input = format!(
        r#"{{"session_id": "{session}", "reason": "other", "hook_event_name": "SessionEnd"}}"#
    );
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write the hook input");
    let out = child.wait_with_output().expect("wait for the hook");
    assert!(
        out.status.success(),
        "the hook failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A number from the environment variable `name`, else `default`: the
/// sizes of the suites whose long form runs bigger.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether a process runs (a zombie waiting for its reaper does not).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat[stat.rfind(')')? + 2..].chars().next())
        .is_some_and(|state| state != 'Z')
}

/// The pid of the sync that `hook session-end` started for `session`, from
/// the worker log's line "hook session-end: session S (...); started sync (pid N)".
pub fn hook_sync_pid(worker_log: &str, session: &str) -> Option<u32> {
    worker_log
        .lines()
        .filter(|l| l.contains(&format!("hook session-end: session {session} ")))
        .find_map(|l| l.rsplit("pid ").next()?.trim_end_matches(')').parse().ok())
}

/// A tool a test needs from outside (a Python package, an npm CLI):
/// `found`, or the test is skipped with `why`; under `CI`, which installs
/// them all (`.ci/run`), a missing one fails instead.
pub fn required<T>(found: Option<T>, why: &str) -> Option<T> {
    if found.is_some() {
        return found;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{why}, and CI must install it (.ci/run)"
    );
    eprintln!("SKIPPED: {why}");
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_hook_sync_pid_of_a_session() {
        let log = "x\n2026 hook session-end: session s1 (other); started sync (pid 4242)\n\
                   2026 hook session-end: session s2 (clear); started sync (pid 99)\n";
        assert_eq!(hook_sync_pid(log, "s1"), Some(4242));
        assert_eq!(hook_sync_pid(log, "s2"), Some(99));
        assert_eq!(hook_sync_pid(log, "s"), None);
    }

    #[test]
    fn this_process_runs_and_pid_zero_does_not() {
        assert!(running(std::process::id()));
        assert!(!running(0));
    }
}
