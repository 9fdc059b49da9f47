//! The default policy component, built by `build.rs` and embedded here.
//!
//! A crate of its own so that editing a policy recompiles this tiny crate and
//! relinks the host, instead of recompiling the host.

/// The default policy, a `wasm32-wasip2` component (see `component/`).
pub static DEFAULT_POLICY: &[u8] = include_bytes!(env!("MEM0_QUEUE_DEFAULT_POLICY_WASM"));

/// Where the build left the alternative "jitter" policy (see
/// `component/jitter/`). For tests and benchmarks; the host never reads it on
/// its own.
pub const JITTER_POLICY_PATH: &str = env!("MEM0_QUEUE_JITTER_POLICY_WASM");

/// Where the build left the default policy's `.wasm`.
pub const DEFAULT_POLICY_PATH: &str = env!("MEM0_QUEUE_DEFAULT_POLICY_WASM");
