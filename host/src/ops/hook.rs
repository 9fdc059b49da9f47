//! `mem0-queue hook session-end`: Claude Code's SessionEnd hook.
//!
//! Claude Code gives a hook little time (about 1.5 s at session end) and
//! kills what it started when it exits. So the hook reads its JSON input
//! under a short timeout (stdin may stay open), logs the session id (never
//! any memory text), starts `mem0-queue sync` DETACHED (a new session via
//! `setsid`, stdin from /dev/null, output appended to the worker log, never
//! waited for) and returns at once. The sync then outlives the hook and
//! Claude Code. While a daemon runs for the data dir it starts nothing: the
//! daemon delivers the session's saves within a second anyway.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::engine::worker::log::WorkerLog;
use crate::ops::Invocation;

/// How long the hook waits for its JSON input.
pub const STDIN_TIMEOUT: Duration = Duration::from_millis(300);

/// The most input read (the hook's JSON is small).
const MAX_INPUT: u64 = 1 << 20;

/// How long the detached sync may run.
pub const SYNC_MAX_DURATION: &str = "10m";

/// Reads stdin for at most `timeout`; `None` if nothing complete arrived.
/// The reading thread is left behind when stdin stays open: the process
/// exits without waiting for it.
fn read_stdin(timeout: Duration) -> Option<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let r = std::io::stdin()
            .lock()
            .take(MAX_INPUT)
            .read_to_end(&mut buf);
        let _ = tx.send(r.map(|_| buf));
    });
    rx.recv_timeout(timeout).ok().and_then(Result::ok)
}

/// A value from the hook input safe for the log: short, plain characters.
fn clean(v: Option<&serde_json::Value>) -> String {
    let s: String = v
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(64)
        .collect();
    if s.is_empty() { "?".into() } else { s }
}

/// What the hook did, for the command line to report.
#[derive(Debug)]
pub enum Outcome {
    /// No Mem0 server is configured: logged, nothing started.
    NotConfigured,
    /// A detached `sync` runs, with this pid.
    Started(u32),
    /// A daemon (this pid, if known) delivers: nothing started.
    DaemonDelivers(Option<u32>),
    /// The `sync` could not be started (logged too).
    CannotStart(std::io::Error),
}

/// The global flags given to this process, for the child.
fn passthrough(inv: &Invocation) -> Vec<String> {
    let mut args = Vec::new();
    let abs = crate::ops::install::absolute;
    if let Some(c) = &inv.config {
        args.push("--config".into());
        args.push(abs(c).display().to_string());
    }
    if let Some(d) = &inv.data_dir {
        args.push("--data-dir".into());
        args.push(abs(d).display().to_string());
    }
    if let Some(p) = &inv.policy {
        args.push("--policy".into());
        args.push(abs(p).display().to_string());
    }
    for (k, v) in &inv.set {
        args.push("--set".into());
        args.push(format!("{k}={v}"));
    }
    args
}

/// `mem0-queue hook session-end`.
#[allow(unsafe_code)]
pub fn session_end(inv: &Invocation) -> anyhow::Result<Outcome> {
    let (resolved, paths) = (&inv.resolved, &inv.paths);
    let input = read_stdin(STDIN_TIMEOUT);
    let json: serde_json::Value = input
        .as_deref()
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or(serde_json::Value::Null);
    let session = clean(json.get("session_id"));
    let reason = clean(json.get("reason"));

    paths.ensure_dir()?;
    let log = WorkerLog::new(paths.worker_log(), resolved.config.log_max_bytes);
    if resolved.config.api_url.is_none() {
        log.line(&format!(
            "hook session-end: session {session} ({reason}); no Mem0 server configured (api_url), \
             entries stay queued"
        ));
        return Ok(Outcome::NotConfigured);
    }
    if let crate::engine::daemon::Seen::Running(r) = crate::engine::daemon::probe(paths) {
        let pid = r.map(|r| r.pid);
        log.line(&format!(
            "hook session-end: session {session} ({reason}); the daemon{} delivers, no sync started",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        ));
        return Ok(Outcome::DaemonDelivers(pid));
    }

    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(paths.worker_log())
    };
    let (stdout, stderr) = match (open_log(), open_log()) {
        (Ok(a), Ok(b)) => (Stdio::from(a), Stdio::from(b)),
        _ => (Stdio::null(), Stdio::null()),
    };
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(passthrough(inv))
        .args(["sync", "--max-duration", SYNC_MAX_DURATION])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // A new session (and so a new process group, without a terminal): the
    // sync survives Claude Code killing the hook's process group. (Not
    // `process_group(0)` as well: setsid fails in a group leader.)
    // SAFETY: setsid is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    match cmd.spawn() {
        Ok(child) => {
            // Not waited for: it is reparented when this process exits.
            log.line(&format!(
                "hook session-end: session {session} ({reason}); started sync (pid {})",
                child.id()
            ));
            let pid = child.id();
            drop(child);
            Ok(Outcome::Started(pid))
        }
        Err(e) => {
            log.line(&format!(
                "hook session-end: session {session} ({reason}); cannot start sync: {e}"
            ));
            Ok(Outcome::CannotStart(e))
        }
    }
}
