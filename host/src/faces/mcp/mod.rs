//! The MCP tools, served over stdio by `mem0-queue serve` and over
//! Streamable HTTP by the daemon ([`http`]) (rmcp): the server here, the
//! tools one file per group, each with its own router.
//!
//! - [`save`]: `mem0_save` commits the memory to the local queue and
//!   answers at once; a save that was not queued is a tool error that says
//!   so plainly.
//! - [`read`]: `mem0_search` and `mem0_recent` read memories.
//! - [`graph`]: `mem0_graph_search` and `mem0_graph_open` read the local
//!   knowledge graph.
//! - [`status`]: `mem0_queue_status`, the queue at a glance.
//! - [`memories`]: the lifecycle: `mem0_get`, `mem0_list`, `mem0_update`,
//!   `mem0_delete`, `mem0_forget`, `mem0_entities`.
//!
//! A new tool goes in the file of its group (or a new one, its router added
//! in [`Mem0QueueServer::new`]), over a function of a feature or the engine.
//!
//! Arguments are parsed by the tools (`parse`), not by rmcp, so that a bad
//! argument is a tool error the model can read ("NOT QUEUED: ...") rather than an opaque
//! protocol error. Every tool body runs under `catch_unwind`: a panic is an
//! error reply, never a dead server. This module writes nothing to stdout
//! itself; stdout is the JSON-RPC channel.

pub mod graph;
pub mod http;
pub mod memories;
pub mod read;
pub mod save;
pub mod status;

use std::sync::Arc;

use futures::FutureExt;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, JsonObject, ServerCapabilities, ServerConfig,
};
use rmcp::{ErrorData, ServerHandler, tool_handler};
use schemars::JsonSchema;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::engine::app::App;

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

impl Mem0QueueServer {
    pub fn new(app: Result<Arc<App>, String>, nudge: Arc<Notify>) -> Self {
        Self {
            app,
            nudge,
            tool_router: Self::save_tools()
                + Self::read_tools()
                + Self::graph_tools()
                + Self::status_tools()
                + Self::memories_router(),
        }
    }
}

fn error_reply(e: String) -> CallToolResult {
    reply(e.clone(), json!({"status": "error", "error": e}), true)
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Mem0QueueServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mem0-queue", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "mem0-queue saves memories to a local durable queue and delivers them to Mem0 in \
                 the background. Use mem0_save to remember something, mem0_search or mem0_list to \
                 find memories, mem0_get to read one, mem0_update to correct one, mem0_delete to \
                 remove one, mem0_forget (with confirm) to remove a whole project, mem0_recent to \
                 see what was saved lately, and mem0_queue_status when the user asks whether \
                 memories reach Mem0. Every change is durable at once and works with Mem0 down.",
            )
    }
}
