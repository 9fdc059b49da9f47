//! Features: what mem0-queue offers over the engine, each a set of plain
//! functions over an [`App`](crate::engine::app::App) or a
//! [`Store`](crate::engine::store::Store) that any face can call.
//!
//! - [`search`]: Mem0's search merged with the local copy;
//! - [`graph`]: the knowledge graph's JSONL mirror and import;
//! - [`vault`]: the Obsidian vault export and its mirror;
//! - [`status`]: the status model that `status`, `mem0_queue_status` and the
//!   dashboard all render;
//! - [`notify`]: desktop notifications of alerts;
//! - [`seed`]: the seed's JSON queue, imported and exported;
//! - [`memories`]: the memory lifecycle (get, list, update, delete, forget,
//!   entities) over the local copy and Mem0;
//! - [`recall`]: what a Claude Code session starts with, the project's most
//!   relevant and most recent memories, within a size and a time budget;
//! - [`capture`]: a session's conversation (its words only, secrets
//!   redacted) queued once for Mem0 to draw facts from.
//!
//! May import: the engine and the features. A feature returns values (a
//! report, a severity); it never prints, and never picks an exit code.

pub mod search;

pub mod graph;

pub mod vault;

pub mod status;

pub mod notify;

pub mod seed;

pub mod memories;

pub mod recall;

pub mod capture;
