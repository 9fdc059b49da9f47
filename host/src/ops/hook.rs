//! Claude Code's hooks: `mem0-queue hook session-start`, `session-end`
//! and `pre-compact`.
//!
//! A hook must never break a session. Each one reads Claude Code's JSON
//! input under a short timeout (stdin may stay open), does its work within
//! a bound, and returns an outcome; the command line prints the one JSON
//! answer a hook may have on stdout (SessionStart's context, or nothing),
//! a one-line note on stderr (Claude Code keeps it in its debug log), and
//! exits 0 whatever happened: an exit 2 would block a compaction, any
//! other code shows as a hook error in the session.
//!
//! - `session-start`: recall ([`crate::features::recall`]) for the project
//!   of the session's folder ([`crate::engine::project`]), the local copy
//!   first and Mem0 only within `recall_timeout`; the answer is
//!   `{"hookSpecificOutput": {"hookEventName": "SessionStart",
//!   "additionalContext": "..."}}`. Nothing when `recall = false` or there
//!   is nothing to recall.
//! - `session-end`: with `capture = "session-end"`, the session is captured
//!   ([`crate::features::capture`]); then `mem0-queue sync` is started
//!   DETACHED (a new session via `setsid`, stdin from /dev/null, output
//!   appended to the worker log, never waited for) and the hook returns at
//!   once: Claude Code gives SessionEnd hooks 1.5 s in all and kills what
//!   they started when it exits. The sync outlives both. While a daemon
//!   runs for the data dir it starts nothing: the daemon delivers the
//!   session's saves within a second anyway.
//! - `pre-compact`: with `capture = "pre-compact"`, the session is captured.
//!
//! The worker log gets one line per hook: the session id, what was done,
//! sizes and counts; never a memory's text or the transcript's.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::engine::config::{CaptureAt, Env, ProcessEnv};
use crate::engine::mem0::Client;
use crate::engine::project::{self, ProjectOf};
use crate::engine::store::{Store, StoreError};
use crate::engine::worker::log::WorkerLog;
use crate::features::{capture, recall};
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
fn clean(v: Option<&str>) -> String {
    let s: String = v
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(64)
        .collect();
    if s.is_empty() { "?".into() } else { s }
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

/// How long a capture waits for another process's write lock: the
/// SessionEnd budget is 1.5 s in all, and a capture that cannot get the
/// lock in a second says so in the log rather than be killed mid-wait.
const CAPTURE_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Claude Code's hook input: the fields the hooks use (others are ignored).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Payload {
    pub session_id: Option<String>,
    pub transcript_path: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
    pub hook_event_name: Option<String>,
    /// SessionStart: startup, resume, clear, compact.
    pub source: Option<String>,
    /// SessionEnd: why the session ended.
    pub reason: Option<String>,
    /// PreCompact: manual or auto.
    pub trigger: Option<String>,
}

/// The hook input on stdin: None when nothing complete arrived in time or
/// it is not a JSON object.
pub fn read_payload() -> Option<Payload> {
    read_stdin(STDIN_TIMEOUT).and_then(|b| serde_json::from_slice::<Payload>(&b).ok())
}

/// The session's folder: the input's `cwd`, else `$CLAUDE_PROJECT_DIR`.
fn session_dir(p: &Payload) -> Option<PathBuf> {
    p.cwd
        .clone()
        .filter(|d| d.is_absolute())
        .or_else(|| ProcessEnv.var("CLAUDE_PROJECT_DIR").map(PathBuf::from))
}

/// The project of a folder by the one rule saves use too.
pub fn project_for(inv: &Invocation, dir: Option<&Path>) -> ProjectOf {
    let home = ProcessEnv.var("HOME").map(PathBuf::from);
    project::project_of(&inv.resolved.config, dir, home.as_deref())
}

/// What `hook session-start` did.
#[derive(Debug)]
pub enum Started {
    /// `recall = false`: nothing printed.
    Off,
    /// No usable hook input on stdin: nothing printed.
    NoInput,
    /// Recall ran: the context, when there was something to recall.
    Recalled {
        project: String,
        recall: recall::Recall,
        took: Duration,
    },
    /// Something failed: nothing printed, and why.
    Failed(String),
}

impl Started {
    /// The hook's one line on stdout, if any: Claude Code's JSON answer.
    pub fn answer(&self) -> Option<String> {
        match self {
            Started::Recalled { recall, .. } => recall.text.as_ref().map(|t| {
                serde_json::json!({
                    "hookSpecificOutput": {
                        "hookEventName": "SessionStart",
                        "additionalContext": t,
                    }
                })
                .to_string()
            }),
            _ => None,
        }
    }

    /// The one-line note for stderr.
    pub fn note(&self) -> String {
        match self {
            Started::Off => "recall is off (recall = false)".into(),
            Started::NoInput => "no hook input on stdin: nothing recalled".into(),
            Started::Recalled {
                project,
                recall,
                took,
            } => {
                let remote = match &recall.remote {
                    recall::Remote::NotAsked => "not asked".to_string(),
                    recall::Remote::Answered(n) => format!("{n} results"),
                    recall::Remote::Failed(why) => format!("did not answer ({why})"),
                    recall::Remote::TimedOut => "no answer in time".to_string(),
                };
                format!(
                    "recalled {} of {} memories of project {project} in {} ms (Mem0: {remote})",
                    recall.shown,
                    recall.total,
                    took.as_millis()
                )
            }
            Started::Failed(why) => format!("recall failed, nothing recalled: {why}"),
        }
    }
}

/// Opens the queue for reading without taking the write lock (a session
/// start never waits on a sync's commit); an older queue is migrated.
fn open_for_reading(db: &Path) -> Result<Store, StoreError> {
    match Store::open_read_only(db) {
        Ok(s) => Ok(s),
        Err(StoreError::TooNew { found, supported }) if found < supported => Store::open(db),
        Err(e) => Err(e),
    }
}

/// `mem0-queue hook session-start`.
pub fn session_start(inv: &Invocation) -> Started {
    let started = Instant::now();
    let Some(payload) = read_payload() else {
        return Started::NoInput;
    };
    let config = &inv.resolved.config;
    if !config.recall {
        return Started::Off;
    }
    let dir = session_dir(&payload);
    let of = project_for(inv, dir.as_deref());
    let db = inv.paths.db();
    if !db.exists() {
        // Nothing saved yet: nothing to recall, and no queue to create.
        return Started::Recalled {
            project: of.project,
            recall: recall::Recall {
                text: None,
                shown: 0,
                total: 0,
                remote: recall::Remote::NotAsked,
            },
            took: started.elapsed(),
        };
    }
    let store = match open_for_reading(&db) {
        Ok(s) => s,
        Err(e) => return Started::Failed(e.to_string()),
    };
    let client = if config.api_url.is_some() && !config.recall_timeout.is_zero() {
        match Client::from_config(config) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "recall: Mem0 is not asked");
                None
            }
        }
    } else {
        None
    };
    let req = recall::Request {
        project: of.project.clone(),
        folder: of.folder.clone(),
        branch: of.branch.clone(),
        max_chars: config.recall_max_chars,
        timeout: config.recall_timeout,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Started::Failed(format!("cannot start the async runtime: {e}")),
    };
    let result = rt.block_on(recall::recall(&store, client.as_ref(), &req, started));
    // A DNS lookup still running on a blocking thread is not waited for.
    rt.shutdown_background();
    match result {
        Ok(recall) => Started::Recalled {
            project: of.project,
            recall,
            took: started.elapsed(),
        },
        Err(e) => Started::Failed(e.to_string()),
    }
}

/// What a capture did, when one was asked for.
#[derive(Debug)]
pub enum Captured {
    /// The config's `capture` is not this hook's.
    NotAsked,
    Done(capture::Outcome),
    Failed(String),
}

impl Captured {
    fn log_text(&self) -> Option<String> {
        Some(match self {
            Captured::NotAsked => return None,
            Captured::Done(capture::Outcome::Queued {
                id,
                turns,
                turns_found,
                bytes,
                redacted,
            }) => format!(
                "captured {turns} of {turns_found} turns ({bytes} bytes, {redacted} secrets redacted) as {id}"
            ),
            Captured::Done(capture::Outcome::AlreadyCaptured { id }) => {
                format!("already captured as {id}, nothing queued")
            }
            Captured::Done(capture::Outcome::Nothing(why)) => format!("nothing captured: {why}"),
            Captured::Failed(why) => format!("capture failed: {why}"),
        })
    }
}

/// Captures the session when `capture` is `at`.
fn capture_if(inv: &Invocation, payload: &Payload, at: CaptureAt) -> Captured {
    let config = &inv.resolved.config;
    if config.capture != at {
        return Captured::NotAsked;
    }
    let dir = session_dir(payload);
    let of = project_for(inv, dir.as_deref());
    let run = || -> Result<capture::Outcome, String> {
        inv.paths.ensure_dir().map_err(|e| e.to_string())?;
        let mut store = Store::open(&inv.paths.db()).map_err(|e| e.to_string())?;
        store
            .set_busy_timeout(CAPTURE_BUSY_TIMEOUT)
            .map_err(|e| e.to_string())?;
        let limits = crate::engine::store::Limits {
            max_content_bytes: config.max_content_bytes,
            max_metadata_bytes: config.max_metadata_bytes,
            max_queue_len: config.max_queue_len,
        };
        let req = capture::Request {
            session_id: payload.session_id.as_deref().unwrap_or(""),
            transcript: payload.transcript_path.as_deref(),
            project: of.project.clone(),
            source: at,
            now_ms: crate::engine::clock::now_ms(),
        };
        capture::capture(&mut store, &limits, &req).map_err(|e| e.to_string())
    };
    match run() {
        Ok(o) => Captured::Done(o),
        Err(e) => Captured::Failed(e),
    }
}

/// Whether the detached sync started.
#[derive(Debug)]
pub enum SyncStart {
    /// No Mem0 server is configured: logged, nothing started.
    NotConfigured,
    /// A detached `sync` runs, with this pid.
    Started(u32),
    /// A daemon (this pid, if known) delivers: nothing started.
    DaemonDelivers(Option<u32>),
    /// The `sync` could not be started (logged too).
    CannotStart(std::io::Error),
}

/// What `hook session-end` did.
#[derive(Debug)]
pub struct Ended {
    pub capture: Captured,
    pub sync: SyncStart,
}

/// `mem0-queue hook session-end`.
pub fn session_end(inv: &Invocation) -> anyhow::Result<Ended> {
    let (resolved, paths) = (&inv.resolved, &inv.paths);
    let payload = read_payload().unwrap_or_default();
    let session = clean(payload.session_id.as_deref());
    let reason = clean(payload.reason.as_deref());

    // The capture first, so that the sync started next delivers it.
    let captured = capture_if(inv, &payload, CaptureAt::SessionEnd);
    paths.ensure_dir()?;
    let log = WorkerLog::new(paths.worker_log(), resolved.config.log_max_bytes);
    if let Some(t) = captured.log_text() {
        log.line(&format!("hook session-end: session {session}; {t}"));
    }
    let sync = start_sync(inv, &log, &session, &reason)?;
    Ok(Ended {
        capture: captured,
        sync,
    })
}

/// `mem0-queue hook pre-compact`.
pub fn pre_compact(inv: &Invocation) -> Captured {
    let payload = read_payload().unwrap_or_default();
    let captured = capture_if(inv, &payload, CaptureAt::PreCompact);
    if let Some(t) = captured.log_text()
        && inv.paths.ensure_dir().is_ok()
    {
        let log = WorkerLog::new(inv.paths.worker_log(), inv.resolved.config.log_max_bytes);
        log.line(&format!(
            "hook pre-compact: session {} ({}); {t}",
            clean(payload.session_id.as_deref()),
            clean(payload.trigger.as_deref())
        ));
    }
    captured
}

/// Starts the detached `sync`.
#[allow(unsafe_code)]
fn start_sync(
    inv: &Invocation,
    log: &WorkerLog,
    session: &str,
    reason: &str,
) -> anyhow::Result<SyncStart> {
    let (resolved, paths) = (&inv.resolved, &inv.paths);
    if resolved.config.api_url.is_none() {
        log.line(&format!(
            "hook session-end: session {session} ({reason}); no Mem0 server configured (api_url), \
             entries stay queued"
        ));
        return Ok(SyncStart::NotConfigured);
    }
    if let crate::engine::daemon::Seen::Running(r) = crate::engine::daemon::probe(paths) {
        let pid = r.map(|r| r.pid);
        log.line(&format!(
            "hook session-end: session {session} ({reason}); the daemon{} delivers, no sync started",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        ));
        return Ok(SyncStart::DaemonDelivers(pid));
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
            Ok(SyncStart::Started(pid))
        }
        Err(e) => {
            log.line(&format!(
                "hook session-end: session {session} ({reason}); cannot start sync: {e}"
            ));
            Ok(SyncStart::CannotStart(e))
        }
    }
}
