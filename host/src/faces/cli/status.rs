//! `mem0-queue status [--json]`: the status model (`features::status`) as
//! text or JSON, with the monitoring exit code.

use std::io::Write;
use std::process::ExitCode;

use crate::engine::app::App;
use crate::engine::config::Resolved;
use crate::engine::paths::Paths;
use crate::faces::cli::exit;
use crate::faces::runtime::runtime;
use crate::features::status::{self, Severity};

/// `mem0-queue status`: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
pub fn run(resolved: Resolved, paths: Paths, json: bool, probe: bool) -> anyhow::Result<ExitCode> {
    let app = match App::open(resolved, paths.clone()) {
        Ok(a) => a,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"status": "unknown", "error": e.to_string(), "exit_code": exit::status_code(Severity::Unknown)})
                );
            } else {
                println!(
                    "UNKNOWN: cannot read the queue at {}: {e}",
                    paths.db().display()
                );
            }
            return Ok(exit::status(Severity::Unknown));
        }
    };
    let report = runtime()?.block_on(status::gather(&app, probe));
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            println!("UNKNOWN: cannot read the queue: {e}");
            return Ok(exit::status(Severity::Unknown));
        }
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&exit::status_json(&report))?
        )?;
    } else {
        out.write_all(report.text().as_bytes())?;
    }
    Ok(exit::status(report.severity()))
}
