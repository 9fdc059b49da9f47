//! The user services of mem0-queue, one [`Job`] each:
//!
//! - `mem0-queue install schedule` / `uninstall schedule` ([`Job::Sync`]):
//!   runs `mem0-queue sync` every 10 minutes, like the seed's cron line;
//! - `mem0-queue install daemon` / `uninstall daemon` ([`Job::Daemon`]):
//!   runs `mem0-queue daemon` at login, kept alive, restarted on failure.
//!
//! How, for both:
//! - Linux: systemd user units in `~/.config/systemd/user/`
//!   (`$XDG_CONFIG_HOME/systemd/user/` when set), then `systemctl --user
//!   daemon-reload` and `enable` on the timer (sync) or the service
//!   (daemon). Where systemctl cannot reach a user manager (no login
//!   session, a container), the files are still written and the commands to
//!   run are printed: not an error.
//! - macOS: a launchd agent in `~/Library/LaunchAgents/`
//!   (`com.mem0-queue.sync.plist` with `StartInterval` 600,
//!   `com.mem0-queue.daemon.plist` with `KeepAlive`), loaded with
//!   `launchctl bootstrap gui/$UID`.
//! - `install schedule --cron`: prints a crontab line and writes nothing.
//!
//! Files are written only when their content changes (a backup of a
//! changed file first); `uninstall` stops the timer, service or agent and
//! removes the files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::engine::config::{Env, ProcessEnv, Resolved};
use crate::ops::Invocation;
use crate::ops::install::{self, InstalledCommand};

/// The sync schedule's systemd units' base name.
pub const UNIT: &str = "mem0-queue-sync";

/// The sync schedule's launchd agent label.
pub const LAUNCHD_LABEL: &str = "com.mem0-queue.sync";

/// The daemon's systemd service's base name.
pub const DAEMON_UNIT: &str = "mem0-queue-daemon";

/// The daemon's launchd agent label.
pub const DAEMON_LABEL: &str = "com.mem0-queue.daemon";

/// How long systemd and launchd wait before they start a daemon that
/// failed again: a daemon that cannot start (its port taken, another
/// daemon running) is retried six times a minute, never in a tight loop.
pub const DAEMON_RESTART_SECS: u32 = 10;

/// What a set of unit files runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// `mem0-queue sync` every 10 minutes.
    Sync,
    /// `mem0-queue daemon`, always on.
    Daemon,
}

impl Job {
    /// The word of the command line: `install schedule`, `install daemon`.
    pub fn what(self) -> &'static str {
        match self {
            Job::Sync => "schedule",
            Job::Daemon => "daemon",
        }
    }

    /// The systemd units' base name.
    pub fn unit(self) -> &'static str {
        match self {
            Job::Sync => UNIT,
            Job::Daemon => DAEMON_UNIT,
        }
    }

    /// The launchd agent's label.
    pub fn label(self) -> &'static str {
        match self {
            Job::Sync => LAUNCHD_LABEL,
            Job::Daemon => DAEMON_LABEL,
        }
    }

    /// The unit systemctl enables: the timer, or the daemon's service.
    pub fn systemd_unit(self) -> String {
        match self {
            Job::Sync => format!("{UNIT}.timer"),
            Job::Daemon => format!("{DAEMON_UNIT}.service"),
        }
    }

    /// Where `systemctl enable` links the enabled unit.
    fn wants_dir(self) -> &'static str {
        match self {
            Job::Sync => "timers.target.wants",
            Job::Daemon => "default.target.wants",
        }
    }
}

/// A scheduled run stops after this long, so runs do not pile up.
pub const MAX_RUN: &str = "9m";

/// How long a systemctl or launchctl call may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(15);

/// The files of a job on this system.
#[derive(Debug, Clone)]
pub enum Files {
    /// The service, and the timer that starts it (the sync schedule only).
    Systemd {
        service: PathBuf,
        timer: Option<PathBuf>,
    },
    Launchd {
        plist: PathBuf,
    },
}

impl Files {
    pub fn locate(env: &dyn Env, job: Job) -> anyhow::Result<Self> {
        let home = PathBuf::from(env.var("HOME").context("HOME is not set")?);
        Ok(if cfg!(target_os = "macos") {
            Files::Launchd {
                plist: home
                    .join("Library/LaunchAgents")
                    .join(format!("{}.plist", job.label())),
            }
        } else {
            let dir = env
                .var("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".config"))
                .join("systemd/user");
            Files::Systemd {
                service: dir.join(format!("{}.service", job.unit())),
                timer: (job == Job::Sync).then(|| dir.join(format!("{UNIT}.timer"))),
            }
        })
    }

    /// The file whose presence means "installed".
    pub fn marker(&self) -> &Path {
        match self {
            Files::Systemd {
                timer: Some(timer), ..
            } => timer,
            Files::Systemd { service, .. } => service,
            Files::Launchd { plist } => plist,
        }
    }
}

/// `ExecStart=` quoting: systemd's own rules (and `%` specifiers, `$` vars).
fn systemd_word(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    if escaped.chars().any(|c| c.is_whitespace() || c == '\'') || escaped != s {
        format!("\"{escaped}\"")
    } else {
        escaped
    }
}

/// A path in a systemd setting that takes the rest of the line
/// (`StandardOutput=append:PATH`): only `%` specifiers need escaping.
fn systemd_path(p: &Path) -> String {
    p.display().to_string().replace('%', "%%")
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The systemd service unit.
pub fn service_unit(installed: &InstalledCommand) -> String {
    let exec = installed
        .argv(&["sync", "--max-duration", MAX_RUN])
        .iter()
        .map(|w| systemd_word(w))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "# Written by `mem0-queue install schedule`; removed by `mem0-queue uninstall schedule`.\n\
         [Unit]\n\
         Description=mem0-queue: deliver queued memories to Mem0\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={exec}\n\
         # Exit 75: entries remain (the server is down); the next run retries them.\n\
         SuccessExitStatus=75\n\
         Nice=10\n"
    )
}

/// The systemd timer unit: every 10 minutes, and a missed run at boot.
pub fn timer_unit() -> String {
    format!(
        "# Written by `mem0-queue install schedule`; removed by `mem0-queue uninstall schedule`.\n\
         [Unit]\n\
         Description=Run mem0-queue sync every 10 minutes\n\
         \n\
         [Timer]\n\
         OnCalendar=*:0/10\n\
         Persistent=true\n\
         AccuracySec=1min\n\
         Unit={UNIT}.service\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n"
    )
}

/// The sync schedule's launchd agent.
pub fn launchd_plist(installed: &InstalledCommand) -> String {
    plist(
        Job::Sync,
        installed,
        &["sync", "--max-duration", MAX_RUN],
        "\x20 <key>StartInterval</key>\n\
         \x20 <integer>600</integer>\n\
         \x20 <key>RunAtLoad</key>\n\
         \x20 <true/>\n\
         \x20 <key>ProcessType</key>\n\
         \x20 <string>Background</string>\n",
    )
}

/// The daemon's systemd service: started at login (`default.target`),
/// restarted on failure (a crash, SIGKILL, a second daemon's exit 75)
/// after [`DAEMON_RESTART_SECS`], not after a clean stop (SIGTERM); its
/// output appended to the worker log, where its runs are logged too.
pub fn daemon_service_unit(installed: &InstalledCommand) -> String {
    let exec = installed
        .argv(&["daemon"])
        .iter()
        .map(|w| systemd_word(w))
        .collect::<Vec<_>>()
        .join(" ");
    let log = systemd_path(&installed.worker_log());
    format!(
        "# Written by `mem0-queue install daemon`; removed by `mem0-queue uninstall daemon`.\n\
         [Unit]\n\
         Description=mem0-queue daemon: delivers memories to Mem0, serves MCP over HTTP\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={exec}\n\
         Restart=on-failure\n\
         RestartSec={DAEMON_RESTART_SECS}\n\
         StandardOutput=append:{log}\n\
         StandardError=append:{log}\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n"
    )
}

/// The daemon's launchd agent: started at load and login, restarted when
/// it exits with a failure (`KeepAlive`/`SuccessfulExit` false), at most
/// every [`DAEMON_RESTART_SECS`].
pub fn daemon_plist(installed: &InstalledCommand) -> String {
    plist(
        Job::Daemon,
        installed,
        &["daemon"],
        &format!(
            "\x20 <key>RunAtLoad</key>\n\
             \x20 <true/>\n\
             \x20 <key>KeepAlive</key>\n\
             \x20 <dict>\n\
             \x20   <key>SuccessfulExit</key>\n\
             \x20   <false/>\n\
             \x20 </dict>\n\
             \x20 <key>ThrottleInterval</key>\n\
             \x20 <integer>{DAEMON_RESTART_SECS}</integer>\n"
        ),
    )
}

/// A launchd agent running `args` after the installed command's flags,
/// with `keys` (already indented), its output to the worker log.
fn plist(job: Job, installed: &InstalledCommand, args: &[&str], keys: &str) -> String {
    let args = installed
        .argv(args)
        .iter()
        .map(|a| format!("    <string>{}</string>\n", xml(a)))
        .collect::<String>();
    let log = xml(&installed.worker_log().display().to_string());
    let what = job.what();
    let label = job.label();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <!-- Written by `mem0-queue install {what}`; removed by `mem0-queue uninstall {what}`. -->\n\
         <plist version=\"1.0\">\n\
         <dict>\n\
         \x20 <key>Label</key>\n\
         \x20 <string>{label}</string>\n\
         \x20 <key>ProgramArguments</key>\n\
         \x20 <array>\n\
         {args}\
         \x20 </array>\n\
         {keys}\
         \x20 <key>StandardOutPath</key>\n\
         \x20 <string>{log}</string>\n\
         \x20 <key>StandardErrorPath</key>\n\
         \x20 <string>{log}</string>\n\
         </dict>\n\
         </plist>\n"
    )
}

/// The crontab line (cron's `%` is special: escaped).
pub fn cron_line(installed: &InstalledCommand) -> String {
    let cmd = installed.shell(&["sync", "--max-duration", MAX_RUN]);
    let log = install::shell_quote(&installed.worker_log().display().to_string());
    format!("*/10 * * * * {cmd} >> {log} 2>&1").replace('%', "\\%")
}

/// The result of running an external tool.
pub enum ToolRun {
    Ok(String),
    Failed(String),
    Missing,
}

/// Runs `program args`, bounded by [`TOOL_TIMEOUT`], stdin closed.
pub fn run_tool(program: &str, args: &[&str]) -> ToolRun {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return ToolRun::Missing,
        Err(e) => return ToolRun::Failed(e.to_string()),
    };
    // Read the pipes on threads, so a chatty tool cannot block on a full pipe.
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).trim().to_string()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return ToolRun::Failed(format!("no answer within {}s", TOOL_TIMEOUT.as_secs()));
            }
            Err(e) => return ToolRun::Failed(e.to_string()),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if status.success() {
        ToolRun::Ok(stdout)
    } else if stderr.is_empty() {
        ToolRun::Failed(format!("{status}"))
    } else {
        ToolRun::Failed(stderr)
    }
}

/// The current user's id.
#[allow(unsafe_code)]
pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Lines of `crontab -l` that run `mem0-queue sync`, and the seed's worker
/// lines; `None` when crontab is unavailable.
pub fn crontab_lines() -> Option<(Vec<String>, Vec<String>)> {
    match run_tool("crontab", &["-l"]) {
        ToolRun::Ok(text) => {
            let live = text.lines().filter(|l| !l.trim_start().starts_with('#'));
            let (mut ours, mut seed) = (Vec::new(), Vec::new());
            for l in live {
                if l.contains("mem0-queue") && l.contains(" sync") {
                    ours.push(l.to_string());
                } else if l.contains("mem0_queue_worker") {
                    seed.push(l.to_string());
                }
            }
            Some((ours, seed))
        }
        // "no crontab for user" is a failure with an empty table.
        ToolRun::Failed(_) => Some((Vec::new(), Vec::new())),
        ToolRun::Missing => None,
    }
}

/// Whether the systemd user manager answers here.
pub fn systemd_usable() -> bool {
    matches!(
        run_tool("systemctl", &["--user", "show-environment"]),
        ToolRun::Ok(_)
    )
}

/// `mem0-queue install schedule` and `uninstall schedule`.
pub fn command(
    inv: &Invocation,
    install: bool,
    cron: bool,
    dry_run: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if cron {
        let installed = InstalledCommand::current(inv)?;
        return print_cron(&installed, &inv.resolved, install, out);
    }
    apply(inv, Job::Sync, install, dry_run, out)
}

/// The unit files of `job` on this system and what they must hold.
fn wanted(job: Job, files: &Files, installed: &InstalledCommand) -> Vec<(PathBuf, String)> {
    match (job, files) {
        (Job::Sync, Files::Systemd { service, timer }) => {
            let mut v = vec![(service.clone(), service_unit(installed))];
            v.extend(timer.iter().map(|t| (t.clone(), timer_unit())));
            v
        }
        (Job::Daemon, Files::Systemd { service, .. }) => {
            vec![(service.clone(), daemon_service_unit(installed))]
        }
        (Job::Sync, Files::Launchd { plist }) => vec![(plist.clone(), launchd_plist(installed))],
        (Job::Daemon, Files::Launchd { plist }) => vec![(plist.clone(), daemon_plist(installed))],
    }
}

/// `mem0-queue install JOB` and `uninstall JOB` (schedule, daemon): writes
/// or removes the job's unit files, then tells systemd or launchd.
pub fn apply(
    inv: &Invocation,
    job: Job,
    install: bool,
    dry_run: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let installed = InstalledCommand::current(inv)?;
    let resolved = &inv.resolved;
    let files = Files::locate(&ProcessEnv, job)?;
    let verb = if install { "install" } else { "uninstall" };
    writeln!(
        out,
        "mem0-queue {verb} {}{}",
        job.what(),
        if dry_run {
            " (dry run: nothing is written)"
        } else {
            ""
        }
    )?;
    let wanted = wanted(job, &files, &installed);
    let stamp = install::unix_now();
    let mut changed = false;
    // Uninstall: stop and disable the unit while its file still exists.
    let mut disabled = None;
    if !install
        && !dry_run
        && let Files::Systemd { .. } = &files
    {
        let unit = job.systemd_unit();
        if files.marker().exists() {
            let r = run_tool("systemctl", &["--user", "disable", "--now", &unit]);
            if let ToolRun::Ok(_) = r {
                writeln!(out, "  ran: systemctl --user disable --now {unit}")?;
            }
            disabled = Some(r);
        }
        // The link `enable` made, should systemctl not be reachable now.
        let wants = files
            .marker()
            .parent()
            .map(|d| d.join(job.wants_dir()).join(&unit));
        if let Some(w) = wants
            && std::fs::symlink_metadata(&w).is_ok_and(|m| m.file_type().is_symlink())
        {
            std::fs::remove_file(&w).with_context(|| format!("cannot remove {}", w.display()))?;
            writeln!(out, "  {}: removed", w.display())?;
        }
    }
    for (path, text) in &wanted {
        let current = install::read_optional(path)?;
        if install {
            if current.as_deref() == Some(text.as_bytes()) {
                writeln!(out, "  {}: up to date; unchanged", path.display())?;
                continue;
            }
            changed = true;
            if dry_run {
                let old = current
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                install::print_diff(out, path, &old, text)?;
                continue;
            }
            if current.is_some() {
                let b = install::backup(path, path, stamp)?;
                writeln!(out, "  backup: {}", b.display())?;
            }
            install::write_file(path, text.as_bytes(), None, 0o644)?;
            writeln!(
                out,
                "  {}: {}",
                path.display(),
                if current.is_some() {
                    "updated"
                } else {
                    "written"
                }
            )?;
        } else if current.is_some() {
            changed = true;
            if dry_run {
                writeln!(out, "  {}: would be removed", path.display())?;
            } else {
                install::remove_file(path, text.as_bytes(), stamp, out)?;
                writeln!(out, "  {}: removed", path.display())?;
            }
        } else {
            writeln!(out, "  {}: not there; unchanged", path.display())?;
        }
    }
    if dry_run {
        writeln!(
            out,
            "{}",
            if changed {
                "dry run: nothing was written"
            } else {
                "nothing to change"
            }
        )?;
        return Ok(());
    }
    match &files {
        Files::Systemd { .. } if install => systemd_activate(job, changed, &installed, out)?,
        Files::Systemd { .. } => systemd_deactivate(job, changed, disabled, out)?,
        Files::Launchd { plist } => launchd_activate(job, install, changed, plist, out)?,
    }
    if install {
        if job == Job::Sync
            && let Some((_, seed)) = crontab_lines()
        {
            for l in seed {
                writeln!(
                    out,
                    "note: the seed's cron line still runs: {l}\n      remove it with `crontab -e` \
                     once its queue is imported (`mem0-queue import ~/.claude/mem0_queue.json`)."
                )?;
            }
        }
        for n in install::env_only_notes(resolved) {
            writeln!(out, "{n}")?;
        }
        if let Some(n) = installed.build_dir_note() {
            writeln!(out, "{n}")?;
        }
    }
    Ok(())
}

fn print_cron(
    installed: &InstalledCommand,
    resolved: &Resolved,
    install: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let line = cron_line(installed);
    if install {
        writeln!(
            out,
            "# Add this line with `crontab -e` (nothing was written):\n{line}"
        )?;
    } else {
        writeln!(
            out,
            "# Remove this line with `crontab -e` (nothing was written):\n{line}"
        )?;
    }
    if install {
        for n in install::env_only_notes(resolved) {
            writeln!(out, "# {n}")?;
        }
    }
    if let Some((ours, seed)) = crontab_lines() {
        if install && ours.iter().any(|l| l.trim() == line) {
            writeln!(out, "# your crontab has it already")?;
        }
        for l in ours.iter().filter(|l| l.trim() != line) {
            writeln!(out, "# your crontab also runs: {l}")?;
        }
        for l in seed {
            writeln!(
                out,
                "# the seed's worker is still in your crontab; remove it once imported: {l}"
            )?;
        }
    }
    Ok(())
}

fn systemd_activate(
    job: Job,
    changed: bool,
    installed: &InstalledCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let unit = job.systemd_unit();
    // The timer starts runs on its own; the daemon's service is restarted
    // so that a changed unit (a new binary path) takes effect now.
    let steps: Vec<Vec<&str>> = match job {
        Job::Sync => vec![
            vec!["--user", "daemon-reload"],
            vec!["--user", "enable", "--now", &unit],
        ],
        Job::Daemon => vec![
            vec!["--user", "daemon-reload"],
            vec!["--user", "enable", &unit],
            vec!["--user", "restart", &unit],
        ],
    };
    if !changed
        && let ToolRun::Ok(state) = run_tool("systemctl", &["--user", "is-active", &unit])
        && state == "active"
    {
        let what = match job {
            Job::Sync => "timer",
            Job::Daemon => "service",
        };
        writeln!(
            out,
            "the {what} {unit} is active already; nothing to change"
        )?;
        return Ok(());
    }
    for step in &steps {
        let shown = format!("systemctl {}", step.join(" "));
        match run_tool("systemctl", step) {
            ToolRun::Ok(_) => writeln!(out, "  ran: {shown}")?,
            ToolRun::Missing => {
                return manual(out, job, true, "systemctl is not installed here", &steps);
            }
            ToolRun::Failed(e) => {
                let why = format!("`{shown}` failed: {}", first_line(&e));
                return manual(out, job, true, &why, &steps);
            }
        }
    }
    match job {
        Job::Sync => writeln!(
            out,
            "done. `mem0-queue sync` runs every 10 minutes; see `systemctl --user list-timers {unit}` \
             and `journalctl --user -u {UNIT}`."
        )?,
        Job::Daemon => writeln!(
            out,
            "done. The daemon runs now and at each login, restarted on failure; `mem0-queue status` \
             shows it, and its output goes to {}.\n\
             note: systemd stops user services when you log out; to keep the daemon running then, \
             run `loginctl enable-linger $USER` once.",
            installed.worker_log().display()
        )?,
    }
    Ok(())
}

/// After the unit files are gone: reload, or say what to run.
fn systemd_deactivate(
    job: Job,
    changed: bool,
    disabled: Option<ToolRun>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if !changed {
        writeln!(out, "nothing to change")?;
        return Ok(());
    }
    let unit = job.systemd_unit();
    let steps: Vec<Vec<&str>> = vec![
        vec!["--user", "stop", &unit],
        vec!["--user", "daemon-reload"],
    ];
    let gone = match job {
        Job::Sync => "The schedule is removed.",
        Job::Daemon => "The daemon's service is removed (and the daemon stopped).",
    };
    match (
        disabled,
        run_tool("systemctl", &["--user", "daemon-reload"]),
    ) {
        (Some(ToolRun::Ok(_)) | None, ToolRun::Ok(_)) => {
            writeln!(out, "  ran: systemctl --user daemon-reload")?;
            writeln!(out, "done. {gone}")?;
            Ok(())
        }
        (_, ToolRun::Missing) | (Some(ToolRun::Missing), _) => {
            manual(out, job, false, "systemctl is not installed here", &steps)
        }
        (Some(ToolRun::Failed(e)), _) | (_, ToolRun::Failed(e)) => manual(
            out,
            job,
            false,
            &format!("systemctl failed: {}", first_line(&e)),
            &steps,
        ),
    }
}

fn manual(
    out: &mut dyn Write,
    job: Job,
    install: bool,
    why: &str,
    steps: &[Vec<&str>],
) -> anyhow::Result<()> {
    let what = match job {
        Job::Sync => "timer",
        Job::Daemon => "service",
    };
    if install {
        writeln!(
            out,
            "the unit files are in place, but the {what} could not be switched on here: {why}.\n\
             Run these yourself in your login session:"
        )?;
    } else {
        writeln!(
            out,
            "the unit files are removed, but systemd could not be told here: {why}.\n\
             If the {what} was running, run these in your login session:"
        )?;
    }
    for s in steps {
        writeln!(out, "  systemctl {}", s.join(" "))?;
    }
    if install {
        match job {
            Job::Sync => writeln!(
                out,
                "(or use `mem0-queue install schedule --cron` for a crontab line instead)"
            )?,
            Job::Daemon => writeln!(
                out,
                "(or start `mem0-queue daemon` yourself, e.g. from your session's autostart)"
            )?,
        }
    }
    Ok(())
}

fn launchd_activate(
    job: Job,
    install: bool,
    changed: bool,
    plist: &Path,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let domain = format!("gui/{}", uid());
    let plist_s = plist.display().to_string();
    let service = format!("{domain}/{}", job.label());
    if !changed {
        writeln!(out, "nothing to change")?;
        return Ok(());
    }
    // Unload any previous version first; failing here just means it was not loaded.
    let _ = run_tool("launchctl", &["bootout", &service]);
    if !install {
        writeln!(
            out,
            "done. {}",
            match job {
                Job::Sync => "The schedule is removed.",
                Job::Daemon => "The daemon's agent is removed (and the daemon stopped).",
            }
        )?;
        return Ok(());
    }
    let running = match job {
        Job::Sync => "`mem0-queue sync` runs every 10 minutes.",
        Job::Daemon => {
            "The daemon runs now and at each login, restarted on failure; `mem0-queue status` shows it."
        }
    };
    match run_tool("launchctl", &["bootstrap", &domain, &plist_s]) {
        ToolRun::Ok(_) => writeln!(
            out,
            "  ran: launchctl bootstrap {domain} {plist_s}\ndone. {running}"
        )?,
        ToolRun::Missing | ToolRun::Failed(_) => writeln!(
            out,
            "the agent file is in place, but launchctl could not load it here. Run:\n  \
             launchctl bootstrap {domain} {}",
            install::shell_quote(&plist_s)
        )?,
    }
    Ok(())
}

/// The line of a tool's stderr that says what went wrong: the first one
/// mentioning a failure, else the last (systemctl prints what it did first).
fn first_line(s: &str) -> &str {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines
        .iter()
        .find(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("fail") || l.contains("error")
        })
        .or(lines.last())
        .copied()
        .unwrap_or(s)
        .trim_end_matches('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(exe: &str) -> InstalledCommand {
        InstalledCommand {
            exe: PathBuf::from(exe),
            global: vec!["--data-dir".into(), "/d/q 1".into()],
            data_dir: PathBuf::from("/d/q 1"),
        }
    }

    #[test]
    fn units_quote_their_words() {
        let s = service_unit(&installed("/opt/mem0-queue"));
        assert!(
            s.contains("ExecStart=/opt/mem0-queue --data-dir \"/d/q 1\" sync --max-duration 9m\n"),
            "{s}"
        );
        assert!(systemd_word("50%").contains("%%"));
        assert!(timer_unit().contains("OnCalendar=*:0/10\nPersistent=true"));
    }

    #[test]
    fn cron_line_escapes_percent() {
        let l = cron_line(&installed("/opt/a%b/mem0-queue"));
        assert!(
            l.starts_with("*/10 * * * * /opt/a\\%b/mem0-queue --data-dir '/d/q 1' sync"),
            "{l}"
        );
        assert!(l.ends_with(">> '/d/q 1/mem0_worker.log' 2>&1"), "{l}");
    }

    #[test]
    fn the_daemon_units_keep_it_alive() {
        let s = daemon_service_unit(&installed("/opt/mem0-queue"));
        assert!(
            s.contains("ExecStart=/opt/mem0-queue --data-dir \"/d/q 1\" daemon\n"),
            "{s}"
        );
        assert!(s.contains("Restart=on-failure\nRestartSec=10\n"), "{s}");
        assert!(
            s.contains("StandardOutput=append:/d/q 1/mem0_worker.log\n"),
            "{s}"
        );
        assert!(s.contains("WantedBy=default.target\n"), "{s}");
        let p = daemon_plist(&installed("/opt/mem0-queue"));
        assert!(p.contains("<string>com.mem0-queue.daemon</string>"), "{p}");
        assert!(p.contains("<key>SuccessfulExit</key>"), "{p}");
        assert!(p.contains("<string>daemon</string>"), "{p}");
    }

    #[test]
    fn plist_escapes_xml() {
        let p = launchd_plist(&installed("/Apps/a&b/mem0-queue"));
        assert!(
            p.contains("<string>/Apps/a&amp;b/mem0-queue</string>"),
            "{p}"
        );
        assert!(p.contains("<integer>600</integer>"));
    }
}
