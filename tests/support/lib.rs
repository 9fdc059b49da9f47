//! Test support.

pub mod checker;
pub mod mem0_server;
pub mod process;
