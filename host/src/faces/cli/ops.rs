//! `install`, `uninstall`, `hook` and `doctor`: the operations on the
//! user's machine (`crate::ops`), given a plain [`Invocation`] built from the
//! global flags, printed here.

use std::io::Write;
use std::process::ExitCode;

use crate::engine::config::Resolved;
use crate::engine::paths::Paths;
use crate::faces::cli::args::{Cli, HookEvent, InstallTarget};
use crate::faces::cli::exit;
use crate::ops::doctor::Verdict;
use crate::ops::{Invocation, doctor, hook, install, schedule};

/// The global flags as given, and what they resolved to.
pub fn invocation(cli: &Cli, resolved: Resolved, paths: Paths) -> Invocation {
    Invocation {
        config: cli.config.clone(),
        data_dir: cli.data_dir.clone(),
        policy: cli.policy.clone(),
        set: cli.set.clone(),
        resolved,
        paths,
    }
}

/// `mem0-queue install ...` (`install`) or `uninstall ...`.
pub fn install(inv: Invocation, target: InstallTarget, install: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match target {
        InstallTarget::ClaudeCode { dry_run, http } => {
            install::claude_code(&inv, install, dry_run, http, &mut out)?
        }
        InstallTarget::Schedule { cron, dry_run } => {
            schedule::command(&inv, install, cron, dry_run, &mut out)?
        }
        InstallTarget::Daemon { dry_run } => {
            schedule::apply(&inv, schedule::Job::Daemon, install, dry_run, &mut out)?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `mem0-queue hook EVENT`: the answer (SessionStart's JSON) alone on
/// stdout, one note on stderr, exit 0 whatever happened.
pub fn hook(inv: Invocation, event: HookEvent) -> anyhow::Result<ExitCode> {
    match event {
        HookEvent::SessionStart => {
            let started = hook::session_start(&inv);
            if let Some(json) = started.answer() {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{json}")?;
                out.flush()?;
            }
            eprintln!("mem0-queue hook session-start: {}", started.note());
        }
        HookEvent::SessionEnd => {
            let ended = hook::session_end(&inv)?;
            if let hook::Captured::Failed(why) = &ended.capture {
                eprintln!("mem0-queue hook session-end: capture failed: {why}");
            }
            if let hook::SyncStart::CannotStart(e) = ended.sync {
                eprintln!("mem0-queue hook session-end: cannot start a background sync: {e}");
            }
        }
        HookEvent::PreCompact => {
            if let hook::Captured::Failed(why) = hook::pre_compact(&inv) {
                eprintln!("mem0-queue hook pre-compact: capture failed: {why}");
            }
        }
    }
    Ok(exit::hook())
}

/// `mem0-queue doctor`: one line per check, the fix under each FAIL or
/// WARN, then the verdict.
pub fn doctor(inv: Invocation) -> anyhow::Result<ExitCode> {
    let checks = doctor::run(&inv);
    let mut out = std::io::stdout().lock();
    for c in &checks {
        let tag = match c.verdict {
            Verdict::Ok => "OK  ",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        writeln!(out, "{tag} {}: {}", c.name, c.detail)?;
        if let Some(fix) = &c.fix {
            writeln!(out, "     fix: {fix}")?;
        }
    }
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    if failed == 0 {
        writeln!(out, "all checks passed")?;
    } else {
        writeln!(out, "{failed} check(s) failed")?;
    }
    Ok(exit::doctor(failed))
}
