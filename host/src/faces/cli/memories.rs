//! `mem0-queue get|list|update|delete|forget|entities`: the lifecycle tools
//! on the command line, over the same feature functions (every change is
//! durable when the command returns, whatever state the server is in).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use serde_json::Value;

use crate::engine::app::App;
use crate::engine::store::{ChangeOutcome, Changes};
use crate::faces::cli::exit;
use crate::faces::runtime::runtime;
use crate::features::memories::{self, MemoriesError, MemoryView};

fn line(v: &MemoryView) -> String {
    format!(
        "{}  {:<9}{}  {}  {}",
        v.id.as_deref().or(v.mem0_id.as_deref()).unwrap_or("?"),
        v.state.as_str(),
        if v.edit_queued { " (edit queued)" } else { "" },
        crate::engine::text::rfc3339(v.created_at),
        v.memory
    )
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(v)?
    )?;
    Ok(())
}

/// A refusal: said on stderr, nothing written, exit 1.
fn refused(e: &MemoriesError) -> anyhow::Result<ExitCode> {
    eprintln!("mem0-queue: NOT CHANGED: {e}");
    Ok(exit::refused())
}

/// `mem0-queue get ID`.
pub fn get(app: App, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    match runtime()?.block_on(memories::get(&app, id.trim())) {
        Ok(r) if json => print_json(&r).map(|()| ExitCode::SUCCESS),
        Ok(r) => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", line(&r.memory))?;
            writeln!(out, "project: {}", r.memory.project)?;
            if !r.memory.mem0_ids.is_empty() {
                writeln!(out, "mem0 ids: {}", r.memory.mem0_ids.join(", "))?;
            }
            if r.memory.metadata.as_object().is_some_and(|m| !m.is_empty()) {
                writeln!(out, "metadata: {}", r.memory.metadata)?;
            }
            if let Some(n) = &r.server_note {
                writeln!(out, "({n})")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => refused(&e),
    }
}

/// `mem0-queue list [--project P]`: the memories of a project.
#[allow(clippy::too_many_arguments)]
pub fn list(
    app: App,
    project: Option<String>,
    agent_id: Option<&str>,
    run_id: Option<&str>,
    page: usize,
    page_size: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let project = project.unwrap_or_else(|| app.config().default_project.clone());
    let r = runtime()?.block_on(memories::list(
        &app, &project, agent_id, run_id, page, page_size,
    ))?;
    if json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} memories in project {} (page {} of {}, newest first)",
        r.total,
        r.project,
        r.page,
        r.total.div_ceil(r.page_size).max(1)
    )?;
    if let Some(n) = &r.server_note {
        writeln!(out, "({n})")?;
    }
    for m in &r.memories {
        writeln!(out, "{}", line(m))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn said(verb: &str, o: &ChangeOutcome) -> String {
    match o {
        ChangeOutcome::AppliedLocally { id } => {
            format!("{verb} {id} here; it had not reached Mem0, nothing will be sent for it")
        }
        ChangeOutcome::Queued {
            behind_add: true,
            id,
            ..
        } => format!(
            "{verb} {} here; queued behind its save, in flight to Mem0",
            id.as_deref().unwrap_or("?")
        ),
        ChangeOutcome::Queued { remote_ids, .. } => format!(
            "{verb} here; queued for Mem0 memory {}",
            remote_ids.join(", ")
        ),
    }
}

/// `mem0-queue update ID [--text T] [--metadata JSON]`.
pub fn update(
    app: App,
    id: &str,
    text: Option<String>,
    metadata: Option<&str>,
    project: Option<String>,
) -> anyhow::Result<ExitCode> {
    let metadata = match metadata.map(serde_json::from_str::<Value>) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            eprintln!("mem0-queue: NOT CHANGED: --metadata is not JSON: {e}");
            return Ok(exit::refused());
        }
    };
    let changes = Changes { text, metadata };
    match runtime()?.block_on(memories::update(&app, id.trim(), changes, project)) {
        Ok(o) => {
            println!("{}", said("updated", &o));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => refused(&e),
    }
}

/// `mem0-queue delete ID`.
pub fn delete(app: App, id: &str, project: Option<String>) -> anyhow::Result<ExitCode> {
    match runtime()?.block_on(memories::delete(&app, id.trim(), project)) {
        Ok(o) => {
            println!("{}", said("deleted", &o));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => refused(&e),
    }
}

/// `mem0-queue forget PROJECT [--yes]`: asks for the project's name on a
/// terminal, refuses without `--yes` elsewhere.
pub fn forget(app: App, project: &str, yes: bool) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let confirm = if yes {
        Some(project.to_string())
    } else {
        let preview = rt.block_on(memories::forget_preview(&app, project))?;
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "mem0-queue: NOT CHANGED: forget removes every memory of project `{project}`: {}. Pass --yes to confirm.",
                preview.describe()
            );
            return Ok(exit::refused());
        }
        eprint!(
            "forget removes every memory of project `{project}`: {}.\ntype the project's name to confirm: ",
            preview.describe()
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        Some(answer.trim().to_string())
    };
    match rt.block_on(memories::forget(&app, project, confirm.as_deref())) {
        Ok(r) => {
            println!(
                "forgotten: project {} is empty here now; Mem0's delete-all is queued ({})",
                r.outcome.project,
                r.describe()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => refused(&e),
    }
}

/// `mem0-queue entities`.
pub fn entities(app: App, json: bool) -> anyhow::Result<ExitCode> {
    let r = runtime()?.block_on(memories::entities(&app))?;
    if json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    if let Some(n) = &r.server_note {
        writeln!(out, "({n})")?;
    }
    for e in &r.entities {
        writeln!(
            out,
            "{:<6} {:<32} {:>6} here{}",
            e.kind,
            e.id,
            e.local_memories,
            match (e.on_server, e.server_memories) {
                (true, Some(n)) => format!("  {n} on Mem0"),
                (true, None) => "  on Mem0".into(),
                _ => String::new(),
            }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
