//! The memory lifecycle tools: `mem0_get`, `mem0_list`, `mem0_update`,
//! `mem0_delete`, `mem0_forget`, `mem0_entities`.
//!
//! A change is acknowledged only once it is committed to the local queue,
//! like a save; a reply says plainly when nothing was changed. Arguments are
//! parsed here, so a bad one is a tool error the model can read.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, JsonObject};
use rmcp::{ErrorData, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Mem0QueueServer, error_reply, guarded, input_schema, parse, reply};
use crate::engine::store::{ChangeOutcome, Changes};
use crate::features::memories::{self, MemoriesError, MemoryView};

/// Arguments of `mem0_get`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetArgs {
    /// The memory's id: the local id `mem0_save` answered (`mq_id`), or its
    /// Mem0 id.
    pub id: String,
}

/// Arguments of `mem0_list`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// The project (Mem0 user_id). Default: the project of the folder
    /// Claude Code works in, else the configured default_project.
    #[serde(default)]
    pub project: Option<String>,
    /// Only memories of this agent_id.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Only memories of this run_id.
    #[serde(default)]
    pub run_id: Option<String>,
    /// The page, from 1. Default 1.
    #[serde(default)]
    pub page: Option<i64>,
    /// Memories per page, 1 to 100. Default 20.
    #[serde(default)]
    pub page_size: Option<i64>,
}

/// Arguments of `mem0_update`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateArgs {
    /// The memory's id: the local id (`mq_id`) or its Mem0 id. A save that
    /// became several Mem0 memories is changed one at a time, by Mem0 id.
    pub id: String,
    /// The new text. At most 64 KiB by default.
    #[serde(default)]
    pub text: Option<String>,
    /// Metadata keys to set (merged: the keys given replace, the others stay).
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, Value>>,
    /// The project, only for a Mem0 id this queue never saw. Default: the
    /// project of the folder Claude Code works in, else the configured
    /// default_project.
    #[serde(default)]
    pub project: Option<String>,
}

/// Arguments of `mem0_delete`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    /// The memory's id: the local id (`mq_id`: every Mem0 memory the save
    /// became) or one Mem0 id.
    pub id: String,
    /// The project, only for a Mem0 id this queue never saw.
    #[serde(default)]
    pub project: Option<String>,
}

/// Arguments of `mem0_forget`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgetArgs {
    /// The project whose memories are all deleted (Mem0 user_id).
    pub project: String,
    /// Must be the project's name, to confirm. Without it, nothing is
    /// deleted and the reply says how many memories would be.
    #[serde(default)]
    pub confirm: Option<String>,
}

/// Arguments of `mem0_entities` (none).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntitiesArgs {}

/// A change that was not made: the words every refusal starts with.
const NOT_CHANGED: &str = "NOT CHANGED";

fn view_line(v: &MemoryView) -> String {
    let id = v.id.as_deref().or(v.mem0_id.as_deref()).unwrap_or("?");
    format!(
        "- [{}{}] {} ({}, {}): {}",
        v.state.as_str(),
        if v.edit_queued { ", edit queued" } else { "" },
        id,
        v.project,
        crate::engine::text::rfc3339(v.created_at),
        v.memory
    )
}

fn change_text(verb: &str, o: &ChangeOutcome) -> String {
    match o {
        ChangeOutcome::AppliedLocally { id } => format!(
            "{verb}: memory {id} had not reached Mem0 yet; the local copy is changed and nothing will be sent for it."
        ),
        ChangeOutcome::Queued {
            behind_add: true,
            id,
            ..
        } => format!(
            "{verb}: queued on local disk behind the save of {} (in flight to Mem0 now); it is applied here at once and sent once the save is delivered.",
            id.as_deref().unwrap_or("?")
        ),
        ChangeOutcome::Queued { remote_ids, .. } => format!(
            "{verb}: queued on local disk against Mem0 memor{} {}; applied here at once and delivered in the background.",
            if remote_ids.len() == 1 { "y" } else { "ies" },
            remote_ids.join(", ")
        ),
    }
}

fn refusal(e: &MemoriesError) -> CallToolResult {
    let why = e.to_string();
    reply(
        format!("{NOT_CHANGED}: {why}. Nothing was written."),
        json!({"status": "not_changed", "error": why}),
        true,
    )
}

#[tool_router(router = memories_router, vis = "pub(super)")]
impl Mem0QueueServer {
    /// One memory, from Mem0 or the local copy.
    #[tool(
        name = "mem0_get",
        description = "Read one memory by its local id (mq_id, from mem0_save) or its Mem0 id: its text, project, metadata, delivery state (delivered, pending, failed, dead) and whether an edit of it is still queued. A memory not delivered yet comes from the local copy and says so; works with Mem0 down.",
        input_schema = input_schema::<GetArgs>(),
        annotations(title = "Get a memory", read_only_hint = true, open_world_hint = true)
    )]
    async fn mem0_get(
        &self,
        Parameters(raw): Parameters<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        guarded("mem0_get", self.get_memory(raw)).await
    }

    /// A project's memories, newest first.
    #[tool(
        name = "mem0_list",
        description = "List the memories of a project (optionally of one agent or run), newest first, a page at a time: Mem0's list merged with the local copy, one row per memory, each with its delivery state and whether an edit is queued. Deleted memories never show, updates show at once. With Mem0 down, the local copy alone, said so.",
        input_schema = input_schema::<ListArgs>(),
        annotations(title = "List memories", read_only_hint = true, open_world_hint = true)
    )]
    async fn mem0_list(
        &self,
        Parameters(raw): Parameters<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        guarded("mem0_list", self.list_memories(raw)).await
    }

    /// Correct a memory.
    #[tool(
        name = "mem0_update",
        description = "Change a memory's text and/or metadata (by mq_id or Mem0 id). Committed to the local queue at once and delivered to Mem0 in order after the memory's earlier changes; a memory not sent yet is simply corrected before it goes. The reply says what was queued, or NOT CHANGED with the reason.",
        input_schema = input_schema::<UpdateArgs>(),
        annotations(title = "Update a memory", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = true)
    )]
    async fn mem0_update(
        &self,
        Parameters(raw): Parameters<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        guarded("mem0_update", self.update_memory(raw)).await
    }

    /// Delete a memory.
    #[tool(
        name = "mem0_delete",
        description = "Delete a memory (by mq_id: every Mem0 memory the save became; or by one Mem0 id). It disappears from every read here at once; the delete is committed to the local queue and delivered to Mem0 in order; a memory not sent yet is just cancelled.",
        input_schema = input_schema::<DeleteArgs>(),
        annotations(title = "Delete a memory", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = true)
    )]
    async fn mem0_delete(
        &self,
        Parameters(raw): Parameters<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        guarded("mem0_delete", self.delete_memory(raw)).await
    }

    /// Delete every memory of a project.
    #[tool(
        name = "mem0_forget",
        description = "Delete EVERY memory of a project, here and on Mem0 (Mem0's delete-all for that user_id, including memories saved by other tools). Requires confirm equal to the project name; without it nothing is deleted and the reply says how many memories would be removed, locally and on the server.",
        input_schema = input_schema::<ForgetArgs>(),
        annotations(title = "Forget a project", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = true)
    )]
    async fn mem0_forget(
        &self,
        Parameters(raw): Parameters<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        guarded("mem0_forget", self.forget(raw)).await
    }

    /// Projects, agents and runs.
    #[tool(
        name = "mem0_entities",
        description = "List the projects (Mem0 users), agents and runs that have memories, known locally and, when Mem0 answers, on the server, with their counts.",
        input_schema = input_schema::<EntitiesArgs>(),
        annotations(title = "List entities", read_only_hint = true, open_world_hint = true)
    )]
    async fn mem0_entities(
        &self,
        Parameters(raw): Parameters<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        guarded("mem0_entities", self.entities(raw)).await
    }
}

impl Mem0QueueServer {
    async fn get_memory(&self, raw: JsonObject) -> CallToolResult {
        let app = match self.app() {
            Ok(a) => a,
            Err(r) => return r,
        };
        let args: GetArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return error_reply(format!("invalid arguments: {e}")),
        };
        match memories::get(&app, args.id.trim()).await {
            Ok(r) => {
                let mut text = view_line(&r.memory);
                if let Some(n) = &r.server_note {
                    text.push_str(&format!("\n({n})"));
                }
                reply(text, serde_json::to_value(&r).unwrap_or_default(), false)
            }
            Err(e) => error_reply(e.to_string()),
        }
    }

    async fn list_memories(&self, raw: JsonObject) -> CallToolResult {
        let app = match self.app() {
            Ok(a) => a,
            Err(r) => return r,
        };
        let args: ListArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return error_reply(format!("invalid arguments: {e}")),
        };
        let page = args.page.unwrap_or(1);
        let size = args.page_size.unwrap_or(memories::DEFAULT_PAGE_SIZE as i64);
        if page < 1 {
            return error_reply(format!("page must be 1 or more, got {page}"));
        }
        if !(1..=memories::MAX_PAGE_SIZE as i64).contains(&size) {
            return error_reply(format!(
                "page_size must be between 1 and {}, got {size}",
                memories::MAX_PAGE_SIZE
            ));
        }
        let project = args.project.unwrap_or_else(|| app.project.clone());
        match memories::list(
            &app,
            &project,
            args.agent_id.as_deref(),
            args.run_id.as_deref(),
            page as usize,
            size as usize,
        )
        .await
        {
            Ok(r) => {
                let mut text = format!(
                    "{} memories in project {} (page {} of {}, newest first){}",
                    r.total,
                    r.project,
                    r.page,
                    r.total.div_ceil(r.page_size).max(1),
                    r.server_note
                        .as_deref()
                        .map(|n| format!("; {n}"))
                        .unwrap_or_default()
                );
                for m in &r.memories {
                    text.push('\n');
                    text.push_str(&view_line(m));
                }
                reply(text, serde_json::to_value(&r).unwrap_or_default(), false)
            }
            Err(e) => error_reply(e.to_string()),
        }
    }

    async fn update_memory(&self, raw: JsonObject) -> CallToolResult {
        let app = match self.app() {
            Ok(a) => a,
            Err(r) => return r,
        };
        let args: UpdateArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return refusal(&store_invalid("arguments", e)),
        };
        let changes = Changes {
            text: args.text,
            metadata: args.metadata.map(Value::Object),
        };
        match memories::update(&app, args.id.trim(), changes, args.project).await {
            Ok(o) => {
                self.nudge.notify_one();
                app.graph_dirty.notify_one();
                reply(
                    change_text("updated", &o),
                    json!({"status": "queued", "change": o}),
                    false,
                )
            }
            Err(e) => refusal(&e),
        }
    }

    async fn delete_memory(&self, raw: JsonObject) -> CallToolResult {
        let app = match self.app() {
            Ok(a) => a,
            Err(r) => return r,
        };
        let args: DeleteArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return refusal(&store_invalid("arguments", e)),
        };
        match memories::delete(&app, args.id.trim(), args.project).await {
            Ok(o) => {
                self.nudge.notify_one();
                app.graph_dirty.notify_one();
                reply(
                    change_text("deleted", &o),
                    json!({"status": "queued", "change": o}),
                    false,
                )
            }
            Err(e) => refusal(&e),
        }
    }

    async fn forget(&self, raw: JsonObject) -> CallToolResult {
        let app = match self.app() {
            Ok(a) => a,
            Err(r) => return r,
        };
        let args: ForgetArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return refusal(&store_invalid("arguments", e)),
        };
        match memories::forget(&app, &args.project, args.confirm.as_deref()).await {
            Ok(r) => {
                self.nudge.notify_one();
                app.graph_dirty.notify_one();
                reply(
                    format!(
                        "forgotten: every memory of project {} is gone from this queue's reads now, and Mem0's delete-all is queued ({}).",
                        r.outcome.project,
                        r.describe()
                    ),
                    json!({"status": "queued", "forget": r}),
                    false,
                )
            }
            Err(e) => refusal(&e),
        }
    }

    async fn entities(&self, raw: JsonObject) -> CallToolResult {
        let app = match self.app() {
            Ok(a) => a,
            Err(r) => return r,
        };
        if let Err(e) = parse::<EntitiesArgs>(raw) {
            return error_reply(format!("invalid arguments: {e}"));
        }
        match memories::entities(&app).await {
            Ok(r) => {
                let mut text = format!("{} entities", r.entities.len());
                if let Some(n) = &r.server_note {
                    text.push_str(&format!(" ({n})"));
                }
                for e in &r.entities {
                    text.push_str(&format!(
                        "\n- {} {}: {} here{}",
                        e.kind,
                        e.id,
                        e.local_memories,
                        match (e.on_server, e.server_memories) {
                            (true, Some(n)) => format!(", {n} on Mem0"),
                            (true, None) => ", on Mem0".into(),
                            _ => String::new(),
                        }
                    ));
                }
                reply(text, serde_json::to_value(&r).unwrap_or_default(), false)
            }
            Err(e) => error_reply(e.to_string()),
        }
    }

    fn app(&self) -> Result<std::sync::Arc<crate::engine::app::App>, CallToolResult> {
        self.app.clone().map_err(|e| {
            reply(
                format!("{NOT_CHANGED}: the local queue cannot be used: {e}"),
                json!({"status": "not_changed", "error": e}),
                true,
            )
        })
    }
}

fn store_invalid(field: &'static str, reason: String) -> MemoriesError {
    MemoriesError::Store(crate::engine::store::StoreError::Invalid { field, reason })
}
