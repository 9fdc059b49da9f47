//! `mem0-queue dashboard [--port P] [--open]`: the dashboard face
//! (`faces::dashboard`), until Ctrl-C; or, while a daemon runs on this data
//! dir, the URL of the daemon's dashboard (it is always there), and exit.

use std::io::Write;
use std::process::ExitCode;

use crate::engine::config::Resolved;
use crate::engine::daemon;
use crate::engine::paths::Paths;

/// `mem0-queue dashboard`.
pub fn run(resolved: Resolved, paths: Paths, port: u16, open: bool) -> anyhow::Result<ExitCode> {
    if let Some(rec) = daemon::probe(&paths).record()
        && let Some(url) = &rec.dashboard_url
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "dashboard: {url}")?;
        out.flush()?;
        eprintln!(
            "mem0-queue: the daemon (pid {}) serves the dashboard; the URL above holds its access \
             token, valid while this daemon runs{}",
            rec.pid,
            if port != 0 {
                " (--port is ignored)"
            } else {
                ""
            }
        );
        if open {
            crate::faces::dashboard::open_browser(url);
        }
        return Ok(ExitCode::SUCCESS);
    }
    crate::faces::dashboard::run(super::open_app(resolved, paths)?, port, open)?;
    Ok(ExitCode::SUCCESS)
}
