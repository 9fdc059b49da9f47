//! Operations: what touches the user's machine outside the data dir.
//!
//! - [`install`]: Claude Code's MCP server entry and SessionEnd hook;
//! - [`schedule`]: the systemd timer, launchd agent or cron line of `sync`;
//! - [`hook`]: the SessionEnd hook itself (a detached `sync`);
//! - [`doctor`]: the checks of all of it, with the fix for each failure.
//!
//! May import: the engine, the features and the operations, never a face.

pub mod install;

pub mod schedule;

pub mod hook;

pub mod doctor;
