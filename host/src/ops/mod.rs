//! Operations: what touches the user's machine outside the data dir.
//!
//! - [`install`]: Claude Code's MCP server entry and hooks (without the
//!   plugin);
//! - [`schedule`]: the systemd timer, launchd agent or cron line of `sync`;
//! - [`hook`]: the hooks themselves: recall at session start, capture, a
//!   detached `sync` at session end;
//! - [`doctor`]: the checks of all of it, with the fix for each failure.
//!
//! May import: the engine, the features and the operations, never a face.
//! An operation gets what it needs from the command line as a plain
//! [`Invocation`], writes its report to the writer it is given, and returns a
//! value (an outcome, the checks); the command line prints it and picks the
//! exit code.

pub mod install;

pub mod schedule;

pub mod hook;

pub mod doctor;

use std::path::PathBuf;

use crate::engine::config::Resolved;
use crate::engine::paths::Paths;

/// What an operation gets from the command line that started it, in plain
/// values: `faces::cli` builds it from its flags, so no operation sees a
/// clap type. The flags are kept as given, because what an operation
/// installs or starts (Claude Code's MCP entry, the schedule, the hook's
/// sync) must find the same config and queue as this run.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// `--config PATH`, as given.
    pub config: Option<PathBuf>,
    /// `--data-dir DIR`, as given.
    pub data_dir: Option<PathBuf>,
    /// `--policy WASM`, as given.
    pub policy: Option<PathBuf>,
    /// Every `--set KEY=VALUE`, in order.
    pub set: Vec<(String, String)>,
    /// The configuration they resolved to.
    pub resolved: Resolved,
    /// The data dir and its files.
    pub paths: Paths,
}
