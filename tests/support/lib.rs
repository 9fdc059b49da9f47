//! Test support.

pub mod mem0_server;
