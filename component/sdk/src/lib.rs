//! Guest-side bindings for `wit/v0.2.0/policy.wit` (`mem0-queue:policy@0.2.0`),
//! shared by every policy component.
//!
//! A policy crate implements [`Guest`] on a unit struct and, on wasm32 only,
//! calls [`export_policy!`] on it. The bindings compile natively too, so the
//! policy logic is unit-tested with a plain `cargo test` and the host can run
//! the default policy natively for its benchmark and last-resort fallback.
//! This crate never does I/O: the world imports nothing.

wit_bindgen::generate!({
    world: "decider",
    path: "../../wit/v0.2.0",
    pub_export_macro: true,
    export_macro_name: "export_policy",
    default_bindings_module: "mem0_queue_policy_sdk",
    additional_derives: [PartialEq, Eq, Clone],
});

pub use exports::mem0_queue::policy::policy::{
    Alert, BreakerDecision, BreakerInput, Decision, EntryState, FailedSummary, Guest, HttpFailure,
    Identity, Level, Operation, Outcome, QueueStats, Rejection,
};

/// The WIT package version these bindings were generated from.
pub const WIT_VERSION: &str = "0.2.0";

/// One second, in the milliseconds the contract speaks.
pub const SECOND_MS: u64 = 1_000;

/// True for outcomes where the connection itself failed, which is what the
/// run-level breaker counts.
pub fn is_connection_level(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::ConnectError | Outcome::TimeoutBeforeSend)
}

/// Turns a millisecond age into words for alert texts: "3 h 12 min", "45 s".
pub fn human_ms(ms: u64) -> String {
    let s = ms / 1_000;
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min", s / 60),
        3_600..86_400 => format!("{} h {} min", s / 3_600, (s % 3_600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3_600),
    }
}
