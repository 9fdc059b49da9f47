//! Faces: how a person or an assistant reaches mem0-queue. Each is a thin
//! adapter: it parses its input, calls the engine, a feature or an
//! operation, and renders the result.
//!
//! - [`mcp`]: the MCP server (stdio), one file per group of tools;
//! - [`dashboard`]: the local web page;
//! - [`cli`]: the command line, one file per command or group, and the one
//!   place errors and outcomes become exit codes (`cli/exit.rs`);
//! - [`runtime`]: what they share from the process (the async runtime, the
//!   stop signal).
//!
//! May import: every layer.

pub mod mcp;

pub mod dashboard;

pub mod cli;

pub mod runtime;
