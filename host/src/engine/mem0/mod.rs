//! Mem0: the HTTP client ([`client`]) and the classification of every
//! answer by what could have happened on the server ([`outcome`]).
//!
//! Part of the engine: it imports the config and nothing above it.

mod client;
pub mod outcome;

pub use client::*;
pub use outcome::{ConfigProblem, Failure};
