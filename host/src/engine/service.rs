//! The delivery service: the loop that a long-running process runs beside
//! its faces (`serve` beside its MCP server on stdio; the daemon beside its
//! MCP server over HTTP and its dashboard). One worker run
//! ([`worker`](crate::engine::worker)) after another, paced by the config,
//! the breaker and the process's [`Role`].
//!
//! What follows each run (desktop notifications, a feature) is given by the
//! face that starts the loop, so the engine imports nothing above it.
//!
//! Also the policy watcher ([`watch_policy`]), the hot reload a
//! long-running process runs beside the loop.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::engine::app::App;
use crate::engine::config::{self, ProcessEnv, Source};
use crate::engine::daemon::{self, Seen};
use crate::engine::policy::PolicySource;
use crate::engine::store::meta_keys;
use crate::engine::worker::{RunReport, Settings, Stop};

/// Who runs the loop, which sets its pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A `serve` window: a run every `sync_interval` and right after each
    /// of its own saves; none while a daemon holds the lock of its data dir
    /// (it looks again at each of those wake-ups, and delivers again once
    /// the daemon is gone).
    Window,
    /// The daemon: a run right after each save it takes, every
    /// [`daemon::POLL`] when an entry saved by another process is due, and
    /// every `sync_interval` while anything is undelivered (failed entries'
    /// fresh start, leases of dead workers).
    Daemon,
}

/// Why the loop woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Start,
    Nudge,
    Tick,
}

/// The delivery loop of `role`; `after_run` after each run. Returns when
/// `stop` turns true. No run starts while the breaker says the server is
/// down and its probe is not due.
pub async fn delivery_loop<F, Fut>(
    app: Arc<App>,
    nudge: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    role: Role,
    after_run: F,
) where
    F: Fn(Arc<App>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Ok(worker) = app.worker(Settings::from_config(app.config())) else {
        return; // No server configured: saves queue up; status says so.
    };
    let interval = app.config().sync_interval;
    let tick = match role {
        Role::Window => interval,
        Role::Daemon => daemon::POLL.min(interval),
    };
    // The daemon this window leaves delivery to, while there is one.
    let mut deferring: Option<Option<u32>> = None;
    let mut last_run: Option<Instant> = None;
    let mut wake = Wake::Start;
    loop {
        let now = app.clock.now_ms();
        let due = match role {
            Role::Window => match daemon::probe(&app.paths) {
                Seen::Running(rec) => {
                    if deferring.is_none() {
                        let pid = rec.as_ref().map(|r| r.pid);
                        app.log.line(&format!(
                            "serve pid {}: the daemon{} delivers; this window leaves delivery to it",
                            std::process::id(),
                            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                        ));
                        deferring = Some(pid);
                    }
                    false
                }
                Seen::NotRunning => {
                    if deferring.take().is_some() {
                        app.log.line(&format!(
                            "serve pid {}: no daemon runs any more; this window delivers",
                            std::process::id()
                        ));
                    }
                    true
                }
            },
            Role::Daemon => {
                let periodic = last_run.is_none_or(|t| t.elapsed() >= interval);
                let look = app
                    .store
                    .run(move |s| {
                        Ok(if periodic {
                            s.counts()?.undelivered() > 0
                        } else {
                            s.due_now(now)?
                        })
                    })
                    .await
                    .unwrap_or(false);
                wake != Wake::Tick || look
            }
        };
        if due && now >= breaker_open_until(&app).await {
            last_run = Some(Instant::now());
            match worker.run(stop.clone()).await {
                Ok(r) if r.stopped == Some(Stop::Shutdown) => return,
                Ok(r) => {
                    if role == Role::Daemon {
                        record_delivery(&app, &r).await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "a worker run failed"),
            }
            after_run(app.clone()).await;
            trim_heap();
        }
        wake = tokio::select! {
            _ = tokio::time::sleep(tick) => Wake::Tick,
            _ = nudge.notified() => Wake::Nudge,
            _ = stop.changed() => return,
        };
        if *stop.borrow() {
            return;
        }
    }
}

/// How often [`watch_policy`] looks at the policy file and the config file.
///
/// Polling, not an OS file watcher (inotify, FSEvents, through a crate):
/// one `stat` of each file every 2 s costs nothing, and polling works the
/// same on every filesystem and for every way a file is replaced (an
/// editor's rename over it, `cp` onto it, a network or bind mount where
/// change events never come, a file or directory that does not exist yet),
/// with no dependency and no platform code. A new policy is then in use
/// within about 2 s of being written, which nobody waits on.
pub const POLICY_POLL: Duration = Duration::from_secs(2);

/// After a file's size or time changed, it is looked at again after this
/// pause, and loaded only if it did not change meanwhile: a policy still
/// being copied is not refused half-written (the next poll takes it).
const SETTLE: Duration = Duration::from_millis(200);

/// What was last seen of a watched file: its size and modification time
/// (cheap, looked at every poll) and its SHA-256 (read only when those
/// change, so a `touch` reloads nothing). `None`: the file is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileSeen {
    quick: Option<(u64, SystemTime)>,
    sha256: Option<[u8; 32]>,
}

impl FileSeen {
    fn now(path: &Path) -> Self {
        let quick = quick_look(path);
        let sha256 = quick.and_then(|_| sha256_of(path));
        Self { quick, sha256 }
    }
}

fn quick_look(path: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
}

fn sha256_of(path: &Path) -> Option<[u8; 32]> {
    use sha2::Digest;
    std::fs::read(path)
        .ok()
        .map(|b| sha2::Sha256::digest(&b).into())
}

/// Whether `path` changed since `seen` (updated when it did). A file whose
/// size or time moved during the [`SETTLE`] pause is still being written:
/// not a change yet.
async fn changed(path: &Path, seen: &mut FileSeen) -> bool {
    let quick = quick_look(path);
    if quick == seen.quick {
        return false;
    }
    tokio::time::sleep(SETTLE).await;
    if quick_look(path) != quick {
        return false;
    }
    let now = FileSeen {
        quick,
        sha256: quick.and_then(|_| sha256_of(path)),
    };
    let differs = now.sha256 != seen.sha256;
    *seen = now;
    differs
}

/// The `policy` key of the config file at `path`: `Ok(None)` when the file
/// or the key is missing (the embedded default), an error when the file
/// cannot be read as TOML (then nothing changes). Only this key is read
/// again: every other key takes a restart, as before.
fn configured_policy(path: &Path) -> Result<Option<PathBuf>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("{} is not valid TOML: {}", path.display(), e.message()))?;
    match table.get("policy") {
        None => Ok(None),
        Some(toml::Value::String(p)) if p.is_empty() => Ok(None),
        Some(toml::Value::String(p)) => Ok(Some(PathBuf::from(p))),
        Some(other) => Err(format!(
            "`policy` in {} is not a path: {other}",
            path.display()
        )),
    }
}

/// Hot reload: watches the configured policy file and the config file's
/// `policy` key, and reloads the policy when either changes, through
/// [`PolicyHandle::reload`](crate::engine::policy::PolicyHandle::reload):
/// the new component must pass what `policy check` runs, or it is refused
/// (the running policy keeps deciding, `status` raises CRITICAL
/// `policy-refused`, one line in the log and the worker log). A key changed
/// to another path loads that file; a key removed, or a config file
/// removed, loads the embedded default. When `policy` comes from
/// `MEM0_QUEUE_POLICY` or `--policy`, the config file cannot change it and
/// only the policy file is watched.
///
/// The policy runtime handles one job at a time on its own thread, so a
/// decision in progress finishes on the policy that started it; the reload
/// is queued behind it, and the next decision uses the new policy.
///
/// Records the policy in use ([`RunningPolicy`](crate::engine::app::RunningPolicy))
/// at start and after each reload, for `status` and `policy show` in other
/// processes. Polls every [`POLICY_POLL`]; returns when `stop` turns true.
/// `serve` starts it beside the delivery loop; the daemon does the same.
pub async fn watch_policy(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let config_file = match app.resolved.sources.get("policy") {
        Some(Source::Env(_) | Source::Flag) => None,
        _ => app
            .resolved
            .file
            .clone()
            .or_else(|| config::config_path(&ProcessEnv, None)),
    };
    let mut target = match &app.config().policy {
        Some(p) => PolicySource::File(p.clone()),
        None => PolicySource::Embedded,
    };
    let mut config_seen = config_file.as_deref().map(FileSeen::now);
    let mut policy_seen = match &target {
        PolicySource::File(p) => FileSeen::now(p),
        PolicySource::Embedded => FileSeen {
            quick: None,
            sha256: None,
        },
    };
    if let Ok(info) = app.policy.run(|rt| rt.info()).await {
        app.record_running_policy(info).await;
    }
    // Start-up (opening the queue, loading or compiling the policies) is
    // over: what it freed goes back to the system before the process idles.
    trim_heap();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLICY_POLL) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let mut reload = false;
        if let (Some(path), Some(seen)) = (&config_file, &mut config_seen)
            && changed(path, seen).await
        {
            match configured_policy(path) {
                Ok(p) => {
                    let now = p.map(PolicySource::File).unwrap_or(PolicySource::Embedded);
                    if now != target {
                        target = now;
                        policy_seen = FileSeen {
                            quick: None,
                            sha256: None,
                        };
                        if let PolicySource::File(p) = &target {
                            policy_seen = FileSeen::now(p);
                        }
                        reload = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the config file changed but cannot be read; the policy stays");
                }
            }
        }
        if let PolicySource::File(p) = &target
            && !reload
            && changed(p, &mut policy_seen).await
        {
            reload = true;
        }
        if !reload {
            continue;
        }
        let Ok(result) = app.policy.reload(target.clone()).await else {
            return; // The policy thread is gone: nothing left to reload.
        };
        match &result {
            Ok(info) => app.log.line(&format!(
                "policy loaded: {} {} (WIT {}) from {}, sha256 {}",
                info.name,
                info.version,
                info.wit_version,
                info.source,
                &info.sha256[..16.min(info.sha256.len())]
            )),
            Err(refusal) => app.log.line(&format!(
                "policy refused: {} ({}); the running policy keeps deciding",
                refusal.source, refusal.reason
            )),
        }
        if let Ok(info) = app.policy.run(|rt| rt.info()).await {
            app.record_running_policy(info).await;
        }
        // A compile's heap (several MB) is freed by now; give it back.
        trim_heap();
    }
}

/// Gives the C heap's free memory back to the system (glibc's
/// `malloc_trim`). A long-running process calls it after a burst (a worker
/// run, a policy compile): glibc keeps freed memory in its arenas, and an
/// idle daemon would otherwise hold the peak of its last burst.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and shrinks the allocator's own free
    // lists; it takes no pointer and is thread-safe in glibc.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Until when the breaker holds runs back (unix ms; 0 when closed).
async fn breaker_open_until(app: &App) -> i64 {
    app.store
        .run(|s| s.meta_get(meta_keys::BREAKER_OPEN_UNTIL))
        .await
        .ok()
        .flatten()
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0)
}

/// The daemon's last delivery, for `status`.
async fn record_delivery(app: &App, r: &RunReport) {
    if r.delivered == 0 {
        return;
    }
    let now = app.clock.now_ms().to_string();
    let _ = app
        .store
        .run(move |s| s.meta_set(meta_keys::DAEMON_LAST_DELIVERY, &now))
        .await;
}
