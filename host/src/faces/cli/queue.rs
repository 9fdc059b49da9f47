//! `mem0-queue list`, `retry` and `purge`: the queue's entries, one state
//! at a time, straight from the store.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use crate::engine::paths::Paths;
use crate::engine::store::{State, Store};
use crate::faces::cli::exit;

/// `mem0-queue list --state S`.
pub fn list(
    paths: &Paths,
    state: State,
    show_content: bool,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let store = Store::open(&paths.db())?;
    let rows = store.list(state, limit, show_content)?;
    let now = crate::engine::clock::now_ms();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<36}  {:<10}  {:>10}  {:>8}  {:<16}  last error",
        "id", "operation", "age", "attempts", "project"
    )?;
    for r in rows {
        let age = humantime::format_duration(Duration::from_secs(
            ((now - r.created_at).max(0) / 1000) as u64,
        ));
        writeln!(
            out,
            "{:<36}  {:<10}  {:>10}  {:>8}  {:<16}  {}",
            r.id,
            r.op.as_str(),
            age.to_string()
                .split(' ')
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
            r.attempts,
            r.project,
            r.dead_reason.or(r.last_error).unwrap_or_default()
        )?;
        if let Some(c) = r.content {
            writeln!(out, "    {c}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `mem0-queue retry [--dead|--delivered] [ID...]`.
pub fn retry(
    paths: &Paths,
    ids: &[String],
    dead: bool,
    delivered: bool,
) -> anyhow::Result<ExitCode> {
    paths.ensure_dir()?;
    let mut store = Store::open(&paths.db())?;
    let from = match (dead, delivered) {
        (true, _) => State::Dead,
        (_, true) => State::Delivered,
        _ => State::Failed,
    };
    let n = store.retry(ids, from, crate::engine::clock::now_ms())?;
    println!("{n} entries moved back to pending");
    Ok(ExitCode::SUCCESS)
}

/// `mem0-queue purge --dead`.
pub fn purge(paths: &Paths, older_than: Option<Duration>, yes: bool) -> anyhow::Result<ExitCode> {
    let mut store = Store::open(&paths.db())?;
    let before = older_than.map(|d| crate::engine::clock::now_ms() - d.as_millis() as i64);
    let candidates = store
        .list(State::Dead, usize::MAX >> 1, false)?
        .into_iter()
        .filter(|r| before.is_none_or(|b| r.created_at < b))
        .count();
    if candidates == 0 {
        println!("no dead entries to purge");
        return Ok(ExitCode::SUCCESS);
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "mem0-queue: purge would delete {candidates} dead entries; pass --yes to confirm"
            );
            return Ok(exit::refused());
        }
        eprint!("delete {candidates} dead entries for good? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !answer.trim().eq_ignore_ascii_case("y") {
            println!("nothing deleted");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let n = store.purge_dead(before)?;
    println!("{n} dead entries deleted");
    Ok(ExitCode::SUCCESS)
}
