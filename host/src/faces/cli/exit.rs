//! Exit codes: the one place where an outcome or an error becomes the
//! number the process exits with. Commands, operations and features return
//! values (a run's report, a severity, the failed checks, an error); the
//! command line maps them here, so the numbers that cron, systemd, the
//! SessionEnd hook and a monitor read are written down once.
//!
//! - `sync`: 0 drained, 75 entries remain, 65 the server rejected entries
//!   in this run, 78 a configuration problem (sysexits);
//! - `status`: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the monitoring
//!   convention), also given as `exit_code` in its JSON;
//! - `doctor`: 0 when no check fails, 1 otherwise;
//! - `policy check` / `policy show`: 2 when the policy is not usable;
//! - `hook ...`: always 0, even on an error or a panic (a hook must never
//!   break a session: Claude Code shows any other code as a hook error, and
//!   an exit 2 from PreCompact would block the compaction);
//! - `daemon`: 75 when a daemon already runs for the data dir, 0 after
//!   SIGTERM or SIGINT;
//! - any command: 78 for a configuration error, 1 for any other error or a
//!   refusal, 0 when the reader of stdout went away (a broken pipe).

use std::process::ExitCode;

use serde_json::Value;

use crate::engine::config::ConfigError;
use crate::engine::worker::{RunReport, Stop};
use crate::features::status::{Severity, StatusReport};

/// Exit code of `sync` when entries remain undelivered (sysexits' EX_TEMPFAIL).
pub const TEMPFAIL: u8 = 75;

/// Exit code for a configuration error (sysexits' EX_CONFIG): no server
/// configured, or a run stopped on a configuration problem (a redirect, a
/// login page, a wrong URL or API kind, a rejected key, untrusted TLS).
pub const CONFIG: u8 = 78;

/// Exit code of `sync` when the server rejected entries in this run, which
/// went to `dead` (sysexits' EX_DATAERR): they need a person.
pub const DATAERR: u8 = 65;

/// Exit code of `daemon` when another daemon holds the data dir's lock
/// (sysexits' EX_TEMPFAIL: try again later; a service manager that
/// restarts it takes over once the other one is gone).
pub const DAEMON_RUNNING: u8 = 75;

/// Exit code of `policy check` and `policy show` when the policy does not
/// load or is broken.
pub const POLICY_UNUSABLE: u8 = 2;

/// `sync`'s exit code: a configuration problem first (nothing will move
/// until a person fixes it), then entries the server rejected in this run,
/// then entries that remain; 0 only when the queue is drained.
pub fn sync_code(r: &RunReport) -> u8 {
    if r.stopped == Some(Stop::Config) {
        CONFIG
    } else if r.dead > 0 {
        DATAERR
    } else if r.remaining > 0 {
        TEMPFAIL
    } else {
        0
    }
}

/// [`sync_code`] as the process's exit code.
pub fn sync(r: &RunReport) -> ExitCode {
    ExitCode::from(sync_code(r))
}

/// A configuration error met by a command (no server for `sync`, no
/// `graph_jsonl` for `graph mirror`).
pub fn config() -> ExitCode {
    ExitCode::from(CONFIG)
}

/// `status`'s code for a severity (the Nagios convention).
pub fn status_code(s: Severity) -> u8 {
    match s {
        Severity::Ok => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
        Severity::Unknown => 3,
    }
}

/// [`status_code`] as the process's exit code.
pub fn status(s: Severity) -> ExitCode {
    ExitCode::from(status_code(s))
}

/// The status report as JSON, for `status --json` and the
/// `mem0_queue_status` tool, with the exit code `status` gives for it
/// (`exit_code`): a monitor reading the JSON gets the same verdict.
pub fn status_json(report: &StatusReport) -> Value {
    let mut v = report.json();
    v["exit_code"] = status_code(report.severity()).into();
    v
}

/// `daemon`, when another daemon runs.
pub fn daemon_running() -> ExitCode {
    ExitCode::from(DAEMON_RUNNING)
}

/// `doctor`: 0 when no check failed.
pub fn doctor(failed: usize) -> ExitCode {
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `policy check` / `policy show`: 0 when the policy is usable.
pub fn policy(usable: bool) -> ExitCode {
    if usable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(POLICY_UNUSABLE)
    }
}

/// A hook's exit code, whatever happened: 0.
pub fn hook() -> ExitCode {
    ExitCode::SUCCESS
}

/// A command that did not do what was asked, and said why on stderr
/// (`purge` without a confirmation).
pub fn refused() -> ExitCode {
    ExitCode::FAILURE
}

/// The exit code of an error that ended a command: 0 for a broken pipe
/// (the reader of our output went away, as with `| head`), EX_CONFIG for a
/// configuration error, 1 for anything else.
pub fn error(e: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(e) {
        ExitCode::SUCCESS
    } else if e.downcast_ref::<ConfigError>().is_some() {
        ExitCode::from(CONFIG)
    } else {
        ExitCode::FAILURE
    }
}

/// Whether the error is a write to a closed pipe, anywhere in its chain.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
