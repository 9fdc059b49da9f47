//! `mem0_queue_status`: the status model (`features::status`), as text and
//! as JSON with the exit code `mem0-queue status` would give.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, JsonObject};
use rmcp::{ErrorData, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::{Mem0QueueServer, error_reply, guarded, input_schema, parse, reply};
use crate::faces::cli::exit;
use crate::features::status;

/// Arguments of `mem0_queue_status` (none).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {}

#[tool_router(router = status_tools, vis = "pub(super)")]
impl Mem0QueueServer {
    /// Queue counts, stats, the active policy, alerts and Mem0 reachability.
    #[tool(
        name = "mem0_queue_status",
        description = "Show the local memory queue: pending, in flight, failed and dead counts, the oldest pending entry's age, the seed stats (total_queued, total_synced, total_failed, last_sync), the active policy, current WARNING/CRITICAL alerts with the actions to take, and whether the Mem0 server answers (probe bounded to 2 s).",
        input_schema = input_schema::<StatusArgs>(),
        annotations(title = "Memory queue status", read_only_hint = true, open_world_hint = true)
    )]
    async fn mem0_queue_status(
        &self,
        Parameters(raw): Parameters<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        guarded("mem0_queue_status", self.status(raw)).await
    }
}

impl Mem0QueueServer {
    async fn status(&self, raw: JsonObject) -> CallToolResult {
        let app = match &self.app {
            Ok(a) => a.clone(),
            Err(e) => return error_reply(format!("the local queue cannot be used: {e}")),
        };
        if let Err(e) = parse::<StatusArgs>(raw) {
            return reply(
                format!("invalid arguments: {e}"),
                json!({"status": "error", "error": e}),
                true,
            );
        }
        let report = match status::gather(&app, true).await {
            Ok(r) => r,
            Err(e) => {
                return reply(
                    format!("cannot read the queue: {e}"),
                    json!({"status": "error", "error": e.to_string()}),
                    true,
                );
            }
        };
        reply(report.text(), exit::status_json(&report), false)
    }
}
