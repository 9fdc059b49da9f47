//! `mem0_graph_search` and `mem0_graph_open`: the local knowledge graph that
//! every save feeds.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, JsonObject};
use rmcp::{ErrorData, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Mem0QueueServer, error_reply, guarded, input_schema, parse, reply};

/// Arguments of `mem0_graph_search`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphSearchArgs {
    /// Text to find in entity names, types and observations (any case).
    pub query: String,
}

/// Arguments of `mem0_graph_open`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphOpenArgs {
    /// Entity names to open, e.g. ["windsurf-project", "rust"].
    pub names: Vec<String>,
}

#[tool_router(router = graph_tools, vis = "pub(super)")]
impl Mem0QueueServer {
    /// Find entities in the local knowledge graph.
    #[tool(
        name = "mem0_graph_search",
        description = "Search the local knowledge graph that every save feeds (the project, the entities named in a save's metadata, relations): returns the matching entities with their observations, and the relations among them.",
        input_schema = input_schema::<GraphSearchArgs>(),
        annotations(title = "Search the knowledge graph", read_only_hint = true, open_world_hint = false)
    )]
    async fn mem0_graph_search(
        &self,
        Parameters(raw): Parameters<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        guarded("mem0_graph_search", self.graph(raw, false)).await
    }

    /// Open named entities of the local knowledge graph.
    #[tool(
        name = "mem0_graph_open",
        description = "Open entities of the local knowledge graph by name: their observations (the memories about them) and every relation touching them.",
        input_schema = input_schema::<GraphOpenArgs>(),
        annotations(title = "Open graph entities", read_only_hint = true, open_world_hint = false)
    )]
    async fn mem0_graph_open(
        &self,
        Parameters(raw): Parameters<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        guarded("mem0_graph_open", self.graph(raw, true)).await
    }
}

impl Mem0QueueServer {
    async fn graph(&self, raw: JsonObject, open: bool) -> CallToolResult {
        let app = match &self.app {
            Ok(a) => a.clone(),
            Err(e) => return error_reply(format!("the local queue cannot be used: {e}")),
        };
        let result = if open {
            match parse::<GraphOpenArgs>(raw) {
                Ok(a) => app.store.run(move |s| s.graph_open(&a.names)).await,
                Err(e) => return error_reply(format!("invalid arguments: {e}")),
            }
        } else {
            match parse::<GraphSearchArgs>(raw) {
                Ok(a) if a.query.trim().is_empty() => return error_reply("query is empty".into()),
                Ok(a) => app.store.run(move |s| s.graph_search(&a.query)).await,
                Err(e) => return error_reply(format!("invalid arguments: {e}")),
            }
        };
        match result {
            Ok(g) => {
                let mut text = format!(
                    "{} entities, {} relations",
                    g.entities.len(),
                    g.relations.len()
                );
                for e in &g.entities {
                    text.push_str(&format!("\n{} ({}):", e.name, e.entity_type));
                    for o in &e.observations {
                        text.push_str(&format!("\n  - {o}"));
                    }
                }
                for r in &g.relations {
                    text.push_str(&format!("\n{} -[{}]-> {}", r.from, r.relation_type, r.to));
                }
                reply(text, serde_json::to_value(&g).unwrap_or_default(), false)
            }
            Err(e) => error_reply(format!("cannot read the graph: {e}")),
        }
    }
}
