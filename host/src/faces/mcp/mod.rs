//! The MCP tools, served over stdio by `mem0-queue serve` (rmcp).
//!
//! - `mem0_save` commits the memory to the local queue and answers at once;
//!   a save that was not queued is a tool error that says so plainly.
//! - `mem0_queue_status` and `mem0_recent` read the queue.
//!
//! Arguments are parsed here, not by rmcp, so that a bad argument is a tool
//! error the model can read ("NOT QUEUED: ...") rather than an opaque
//! protocol error. Every tool body runs under `catch_unwind`: a panic is an
//! error reply, never a dead server. This module writes nothing to stdout
//! itself; stdout is the JSON-RPC channel.

use std::sync::Arc;

use futures::FutureExt;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, JsonObject, ServerCapabilities, ServerConfig,
};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::engine::app::App;
use crate::engine::store::{NewEntry, Origin, RECENT_MAX, StoreError};
use crate::faces::cli::exit;
use crate::features::status::alert_json;

/// Arguments of `mem0_save`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveArgs {
    /// The memory to save, as plain text: one fact, decision, preference or
    /// note worth remembering in later sessions. At most 64 KiB by default.
    pub content: String,
    /// The project the memory belongs to (sent to Mem0 as user_id), e.g.
    /// "windsurf-project". No whitespace. Default: the configured
    /// default_project.
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

/// Arguments of `mem0_queue_status` (none).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {}

/// The default `limit` of `mem0_recent`.
const RECENT_DEFAULT: i64 = 20;

/// The MCP server.
#[derive(Clone)]
pub struct Mem0QueueServer {
    /// The app, or why it could not open (a read-only or full data dir, a
    /// corrupt queue): then every tool answers with that reason, and a save
    /// says NOT QUEUED, instead of the server failing its handshake.
    app: Result<Arc<App>, String>,
    /// Wakes the serve loop's worker right after a save.
    nudge: Arc<Notify>,
    tool_router: ToolRouter<Self>,
}

/// The input schema of `T`, without the non-standard `format` values
/// (`uint32`, `int64`, ...) that schemars adds and strict clients warn about.
pub fn input_schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    let schema = rmcp::handler::server::common::schema_for_input::<T>()
        .unwrap_or_else(|_| Arc::new(JsonObject::new()));
    let mut value = Value::Object((*schema).clone());
    strip_formats(&mut value);
    match value {
        Value::Object(o) => Arc::new(o),
        _ => schema,
    }
}

/// The `format` values JSON Schema 2020-12 defines that we keep.
const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "uri",
    "uuid",
];

fn strip_formats(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(f)) = o.get("format")
                && !STANDARD_FORMATS.contains(&f.as_str())
            {
                o.remove("format");
            }
            o.values_mut().for_each(strip_formats);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_formats),
        _ => {}
    }
}

fn parse<T: serde::de::DeserializeOwned>(raw: JsonObject) -> Result<T, String> {
    serde_json::from_value(Value::Object(raw)).map_err(|e| e.to_string())
}

/// A reply with readable text and the same facts as structured content.
fn reply(text: String, structured: Value, is_error: bool) -> CallToolResult {
    let mut r = if is_error {
        CallToolResult::structured_error(structured)
    } else {
        CallToolResult::structured(structured)
    };
    r.content = vec![ContentBlock::text(text)];
    r
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

/// Runs a tool body, turning a panic into an error reply.
async fn guarded(
    name: &str,
    body: impl std::future::Future<Output = CallToolResult>,
) -> Result<CallToolResult, ErrorData> {
    match std::panic::AssertUnwindSafe(body).catch_unwind().await {
        Ok(r) => Ok(r),
        Err(_) => {
            tracing::error!(tool = name, "a tool panicked; the server carries on");
            Ok(reply(
                format!(
                    "{name} failed with an internal error; if this was a save, it was NOT QUEUED."
                ),
                json!({"status": "error", "error": "internal error"}),
                true,
            ))
        }
    }
}

#[tool_router]
impl Mem0QueueServer {
    pub fn new(app: Result<Arc<App>, String>, nudge: Arc<Notify>) -> Self {
        Self {
            app,
            nudge,
            tool_router: Self::tool_router(),
        }
    }

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

fn error_reply(e: String) -> CallToolResult {
    reply(e.clone(), json!({"status": "error", "error": e}), true)
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
        let limit = args
            .limit
            .unwrap_or(crate::features::search::DEFAULT_LIMIT as i64);
        if !(1..=crate::features::search::MAX_LIMIT as i64).contains(&limit) {
            return error_reply(format!(
                "limit must be between 1 and {}, got {limit}",
                crate::features::search::MAX_LIMIT
            ));
        }
        if args.query.trim().is_empty() {
            return error_reply("query is empty".into());
        }
        match crate::features::search::search(&app, &args.query, args.project, limit as usize).await
        {
            Ok(r) => reply(
                r.text(),
                serde_json::to_value(&r).unwrap_or_default(),
                false,
            ),
            Err(e) => error_reply(format!("cannot read the local copy: {e}")),
        }
    }

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
            project: args
                .project
                .unwrap_or_else(|| app.config().default_project.clone()),
            agent_id: args.agent_id,
            run_id: args.run_id,
            content: args.content,
            metadata: Value::Object(args.metadata.unwrap_or_default()),
            created_at: app.clock.now_ms(),
            origin: Origin::Mcp,
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
        let report = match crate::features::status::gather(&app, true).await {
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

/// The reason a save was not queued, in words for the model and the user.
fn store_reason(e: &StoreError) -> String {
    match e {
        StoreError::DiskFull => "the disk is full".into(),
        StoreError::ReadOnly => "the data dir is read-only".into(),
        StoreError::Busy => "the queue database is locked by another process".into(),
        other => other.to_string(),
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Mem0QueueServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mem0-queue", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "mem0-queue saves memories to a local durable queue and delivers them to Mem0 in \
                 the background. Use mem0_save to remember something, mem0_recent to see what was \
                 saved lately, and mem0_queue_status when the user asks whether memories reach Mem0.",
            )
    }
}
