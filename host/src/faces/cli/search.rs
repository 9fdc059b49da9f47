//! `mem0-queue search QUERY`: the `mem0_search` tool's search, printed.

use std::io::Write;
use std::process::ExitCode;

use crate::engine::app::App;
use crate::faces::runtime::runtime;
use crate::features::search;

/// `mem0-queue search`.
pub fn run(
    app: App,
    query: &str,
    project: Option<String>,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let r = runtime()?.block_on(search::search(&app, query, project, limit))?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
    } else {
        writeln!(out, "{}", r.text().trim_end())?;
    }
    Ok(ExitCode::SUCCESS)
}
