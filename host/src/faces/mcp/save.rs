//! `mem0_save`: a memory committed to the local queue, answered at once;
//! one that was not queued is a tool error that says NOT QUEUED and why.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, JsonObject};
use rmcp::{ErrorData, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Mem0QueueServer, guarded, input_schema, parse, reply};
use crate::engine::store::{NewEntry, Origin, StoreError};
use crate::features::status::alert_json;

/// Arguments of `mem0_save`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveArgs {
    /// The memory to save, as plain text: one fact, decision, preference or
    /// note worth remembering in later sessions. At most 64 KiB by default.
    pub content: String,
    /// The project the memory belongs to (sent to Mem0 as user_id), e.g.
    /// "windsurf-project". No whitespace. Default: the project of the
    /// folder Claude Code works in (the config's [projects], else its git
    /// repository's name), else the configured default_project: the
    /// project the session-start recall shows.
    #[serde(default)]
    pub project: Option<String>,
    /// Optional Mem0 agent_id, e.g. the assistant's name. No whitespace.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Optional Mem0 run_id, e.g. a session id. No whitespace.
    #[serde(default)]
    pub run_id: Option<String>,
    /// Optional JSON object stored with the memory, e.g.
    /// {"entities": ["rust"], "tags": ["decision"]}. At most 16 KiB.
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, Value>>,
}

#[tool_router(router = save_tools, vis = "pub(super)")]
impl Mem0QueueServer {
    /// Save a memory to the local durable queue; it is delivered to Mem0 in
    /// the background. Answers in milliseconds.
    #[tool(
        name = "mem0_save",
        description = "Save a memory for later sessions. It is committed to a local durable queue at once and delivered to Mem0 in the background, with retries; nothing is lost if Mem0 is slow or down. Saving the same text again while it is still undelivered returns the same entry. The reply says \"queued\" with the entry id, or NOT QUEUED with the reason.",
        input_schema = input_schema::<SaveArgs>(),
        annotations(title = "Save a memory", read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn mem0_save(
        &self,
        Parameters(raw): Parameters<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        guarded("mem0_save", self.save(raw)).await
    }
}

impl Mem0QueueServer {
    async fn save(&self, raw: JsonObject) -> CallToolResult {
        let app = match &self.app {
            Ok(a) => a.clone(),
            Err(e) => return not_queued(e),
        };
        let args: SaveArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return not_queued(&format!("invalid arguments: {e}")),
        };
        let new = NewEntry {
            project: args.project.unwrap_or_else(|| app.project.clone()),
            agent_id: args.agent_id,
            run_id: args.run_id,
            content: args.content,
            metadata: Value::Object(args.metadata.unwrap_or_default()),
            created_at: app.clock.now_ms(),
            origin: Origin::Mcp,
            infer: None,
            id: None,
        };
        let limits = app.limits();
        let saved = app
            .store
            .run(move |s| {
                let e = s.enqueue(new, &limits)?;
                Ok((e, s.stats()?))
            })
            .await;
        let (entry, stats) = match saved {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "a save was not queued");
                return not_queued(&store_reason(&e));
            }
        };
        let alerts = app.alerts(&stats).await.unwrap_or_default();
        if app.client.is_ok() {
            self.nudge.notify_one();
        }
        app.graph_dirty.notify_one();
        let mut text = if entry.deduplicated {
            format!(
                "queued: already in the queue as {} (same text, not yet delivered); queue depth {}.",
                entry.id, entry.depth
            )
        } else {
            format!(
                "queued: saved on local disk as {}; queue depth {}. It will be delivered to Mem0 in the background.",
                entry.id, entry.depth
            )
        };
        if app.client.is_err() {
            text.push_str(" No Mem0 server is configured yet: it stays queued until one is.");
        }
        for a in &alerts {
            text.push_str(&format!("\n{}", a.message));
            for (i, action) in a.actions.iter().enumerate() {
                text.push_str(&format!("\n  {}. {action}", i + 1));
            }
        }
        reply(
            text,
            json!({
                "id": entry.id,
                "status": "queued",
                "deduplicated": entry.deduplicated,
                "queue_depth": entry.depth,
                "alerts": alerts.iter().map(alert_json).collect::<Vec<_>>(),
            }),
            false,
        )
    }
}

fn not_queued(reason: &str) -> CallToolResult {
    reply(
        format!(
            "NOT QUEUED: {reason}. The memory was not saved; nothing was written. \
             Fix the call and save again."
        ),
        json!({"status": "not_queued", "error": reason}),
        true,
    )
}

/// The reason a save was not queued, in words for the model and the user.
fn store_reason(e: &StoreError) -> String {
    match e {
        StoreError::DiskFull => "the disk is full".into(),
        StoreError::ReadOnly => "the data dir is read-only".into(),
        StoreError::Busy => "the queue database is locked by another process".into(),
        other => other.to_string(),
    }
}
