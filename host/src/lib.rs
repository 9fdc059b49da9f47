//! mem0-queue: a durable local queue between an AI assistant and Mem0.
//!
//! `mem0_save` commits a memory to a local SQLite queue and answers at once;
//! a worker delivers it to Mem0 later, with the backoff, failed recovery and
//! alert thresholds of a sandboxed WASI policy component.
//!
//! Modules, one concern each:
//! - [`config`]: the TOML file, env and flags;
//! - [`paths`]: the data dir and its permissions;
//! - [`policy`]: the wasmtime runtime of the policy component;
//! - [`cli`]: the command line, the one place errors become exit codes.

pub mod app;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod dashboard;
pub mod graph;
pub mod mcp;
pub mod mem0;
pub mod memories;
pub mod paths;
pub mod policy;
pub mod search;
pub mod seed;
pub mod status;
pub mod store;
pub mod vault;
pub mod worker;
// Operations: installing into Claude Code, the schedule, the hook, doctor, notifications.
pub mod doctor;
pub mod hook;
pub mod install;
pub mod notify;
pub mod schedule;
