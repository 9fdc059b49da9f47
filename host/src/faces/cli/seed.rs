//! `mem0-queue import FILE` and `export [--vault DIR]`: the seed's JSON
//! queue in and out (`features::seed`), and the Obsidian vault export
//! (`features::vault`).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::engine::config::Resolved;
use crate::engine::paths::Paths;
use crate::engine::store::{Limits, Store};
use crate::features::{seed, vault};

/// `mem0-queue import FILE`.
pub fn import(resolved: &Resolved, paths: &Paths, path: &Path) -> anyhow::Result<ExitCode> {
    paths.ensure_dir()?;
    let mut store = Store::open(&paths.db())?;
    let limits = Limits {
        max_content_bytes: resolved.config.max_content_bytes,
        max_metadata_bytes: resolved.config.max_metadata_bytes,
        max_queue_len: resolved.config.max_queue_len,
    };
    let r = seed::import(
        &mut store,
        path,
        &resolved.config.default_project,
        &limits,
        crate::engine::clock::now_ms(),
    )?;
    println!(
        "imported {} pending, {} failed, {} delivered (from last_100); {} already present; stats {}",
        r.pending,
        r.failed,
        r.delivered,
        r.skipped,
        if r.stats_merged {
            "merged"
        } else {
            "already merged"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `mem0-queue export`: the seed's JSON shape on stdout; with `--vault
/// DIR`, Markdown notes in the vault instead.
pub fn export(paths: &Paths, vault_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    paths.ensure_dir()?;
    let store = Store::open(&paths.db())?;
    match vault_dir {
        Some(dir) => {
            let report = vault::export_once(&store, dir)?;
            println!("{}", report.text(&dir.join(vault::ROOT)));
        }
        None => {
            let v = seed::export(&store)?;
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
