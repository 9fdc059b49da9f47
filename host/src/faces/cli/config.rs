//! `mem0-queue config init` and `config show`: a commented sample config,
//! and the resolved values with their sources.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::engine::config::{self, ProcessEnv, Resolved};
use crate::faces::cli::args::ConfigCommand;

/// `mem0-queue config init` and `config show`; `file` is `--config`, as
/// given.
pub fn run(
    command: &ConfigCommand,
    file: Option<&Path>,
    resolved: &Resolved,
) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Init => {
            let path = config::config_path(&ProcessEnv, file)
                .context("no config path: set HOME or MEM0_QUEUE_CONFIG")?;
            config::write_sample(&path)?;
            eprintln!("wrote {} (mode 0600)", path.display());
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Show { json } => {
            let mut out = std::io::stdout().lock();
            if *json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&resolved.show_json())?
                )?;
            } else {
                out.write_all(resolved.show().as_bytes())?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
