//! mem0-queue: a durable local queue between an AI assistant and Mem0.
//!
//! `mem0_save` commits a memory to a local SQLite queue and answers at once;
//! a worker delivers it to Mem0 later, with the backoff, failed recovery and
//! alert thresholds of a sandboxed WASI policy component.
//!
//! The map: four layers, each a folder, in this order. A layer imports only
//! itself and the layers above it in this list (`tests/layers.rs` checks it,
//! and that no two files import each other).
//!
//! 1. [`engine`]: the queue and its delivery. The config, the data dir,
//!    time, the policy runtime, the SQLite store, the Mem0 client, the
//!    worker, and the parts of one process put together (`App`).
//! 2. [`features`]: what the product offers over the engine: search, the
//!    knowledge graph, the Obsidian vault, the status model, notifications,
//!    the seed's JSON queue.
//! 3. [`ops`]: what touches the user's machine outside the data dir:
//!    Claude Code's files, the schedule, the SessionEnd hook, `doctor`.
//! 4. [`faces`]: how a person or an assistant reaches all of it: the MCP
//!    server, the dashboard, the command line (the one place errors become
//!    exit codes). Each face is a thin adapter.

pub mod engine;

pub mod features;

pub mod ops;

pub mod faces;
