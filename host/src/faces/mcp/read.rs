//! `mem0_search` and `mem0_recent`: reading memories, Mem0's and the local
//! copy's (`features::search`, the store).

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, JsonObject};
use rmcp::{ErrorData, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::{Mem0QueueServer, error_reply, guarded, input_schema, parse, reply};
use crate::engine::store::RECENT_MAX;
use crate::features::search;

/// Arguments of `mem0_recent`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecentArgs {
    /// How many of the most recent saves to return, 1 to 100. Default 20.
    #[serde(default)]
    pub limit: Option<i64>,
    /// Only saves of this project.
    #[serde(default)]
    pub project: Option<String>,
}

/// Arguments of `mem0_search`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// What to look for, in plain words.
    pub query: String,
    /// Only memories of this project (Mem0 user_id). Default: the configured
    /// default_project for Mem0's side; all projects locally.
    #[serde(default)]
    pub project: Option<String>,
    /// How many results, 1 to 100. Default 10.
    #[serde(default)]
    pub limit: Option<i64>,
}

/// The default `limit` of `mem0_recent`.
const RECENT_DEFAULT: i64 = 20;

#[tool_router(router = read_tools, vis = "pub(super)")]
impl Mem0QueueServer {
    /// Search Mem0 merged with the local copy (read-your-writes, offline).
    #[tool(
        name = "mem0_search",
        description = "Search memories. Asks Mem0 (bounded timeout) and merges in matching memories saved here but not delivered yet (source \"pending\"), so a memory saved a second ago is found. When Mem0 is down or not configured, answers from the local copy of every saved memory (source \"local\") and says the results are local only. Each result has a score and its source; no duplicates.",
        input_schema = input_schema::<SearchArgs>(),
        annotations(title = "Search memories", read_only_hint = true, open_world_hint = true)
    )]
    async fn mem0_search(
        &self,
        Parameters(raw): Parameters<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        guarded("mem0_search", self.search(raw)).await
    }

    /// The most recent saves, newest first, whatever their delivery state.
    #[tool(
        name = "mem0_recent",
        description = "List the most recent saved memories (up to 100, newest first), whatever their delivery state, with their text, project, state and remote ids. Works offline.",
        input_schema = input_schema::<RecentArgs>(),
        annotations(title = "Recent memories", read_only_hint = true, open_world_hint = false)
    )]
    async fn mem0_recent(
        &self,
        Parameters(raw): Parameters<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        guarded("mem0_recent", self.recent(raw)).await
    }
}

impl Mem0QueueServer {
    async fn search(&self, raw: JsonObject) -> CallToolResult {
        let app = match &self.app {
            Ok(a) => a.clone(),
            Err(e) => return error_reply(format!("the local queue cannot be used: {e}")),
        };
        let args: SearchArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return error_reply(format!("invalid arguments: {e}")),
        };
        let limit = args.limit.unwrap_or(search::DEFAULT_LIMIT as i64);
        if !(1..=search::MAX_LIMIT as i64).contains(&limit) {
            return error_reply(format!(
                "limit must be between 1 and {}, got {limit}",
                search::MAX_LIMIT
            ));
        }
        if args.query.trim().is_empty() {
            return error_reply("query is empty".into());
        }
        match search::search(&app, &args.query, args.project, limit as usize).await {
            Ok(r) => reply(
                r.text(),
                serde_json::to_value(&r).unwrap_or_default(),
                false,
            ),
            Err(e) => error_reply(format!("cannot read the local copy: {e}")),
        }
    }

    async fn recent(&self, raw: JsonObject) -> CallToolResult {
        let app = match &self.app {
            Ok(a) => a.clone(),
            Err(e) => return error_reply(format!("the local queue cannot be used: {e}")),
        };
        let args: RecentArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => {
                return reply(
                    format!("invalid arguments: {e}"),
                    json!({"status": "error", "error": e}),
                    true,
                );
            }
        };
        let limit = args.limit.unwrap_or(RECENT_DEFAULT);
        if !(1..=RECENT_MAX as i64).contains(&limit) {
            let e = format!("limit must be between 1 and {RECENT_MAX}, got {limit}");
            return reply(e.clone(), json!({"status": "error", "error": e}), true);
        }
        let project = args.project;
        let rows = app
            .store
            .run(move |s| s.recent(limit as usize, project.as_deref()))
            .await;
        match rows {
            Ok(rows) => {
                let mut text = format!("{} most recent memories:", rows.len());
                for r in &rows {
                    text.push_str(&format!(
                        "\n- [{}] {} ({}): {}",
                        r.state.as_str(),
                        r.id,
                        r.project,
                        r.content.as_deref().unwrap_or_default()
                    ));
                }
                reply(text, json!({"memories": rows}), false)
            }
            Err(e) => reply(
                format!("cannot read the queue: {e}"),
                json!({"status": "error", "error": e.to_string()}),
                true,
            ),
        }
    }
}
