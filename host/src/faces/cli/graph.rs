//! `mem0-queue graph import FILE` and `graph mirror`: the knowledge graph's
//! JSONL file (`features::graph`).

use std::process::ExitCode;

use crate::engine::app::App;
use crate::faces::cli::args::GraphCommand;
use crate::faces::cli::exit;
use crate::faces::runtime::runtime;
use crate::features::graph;

/// `mem0-queue graph import|mirror`.
pub fn run(app: App, command: &GraphCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        if let GraphCommand::Import { path } = command {
            let g = graph::parse_jsonl(path)?;
            let now = app.clock.now_ms();
            let (e, o, r) = app.store.run(move |s| s.graph_import(&g, now)).await?;
            println!("imported {e} new entities, {o} new observations, {r} new relations");
        }
        match graph::mirror_configured(&app).await? {
            Some(m) => println!(
                "mirrored to {}: {} entities, {} observations, {} relations added",
                app.config()
                    .graph_jsonl
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                m.entities_added,
                m.observations_added,
                m.relations_added
            ),
            None if matches!(command, GraphCommand::Mirror) => {
                eprintln!("mem0-queue: no graph_jsonl is configured; nothing to mirror");
                return Ok(exit::config());
            }
            None => {}
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
