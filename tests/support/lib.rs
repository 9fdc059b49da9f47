//! Test support for mem0-queue, shared by the integration tests and
//! benchmarks of the host package:
//!
//! - [`mem0_server`]: a faithful Mem0 test server with fault injection;
//! - [`checker`]: the lost/duplicated checker;
//! - [`sandbox`]: scratch dirs and the one sandbox the binary runs in, with
//!   the one clean-environment command builder;
//! - [`wait`]: bounded polls and bounded waits for child processes;
//! - [`db`]: direct reads and seeding of a queue database;
//! - [`mcp`]: an MCP client over a `serve` process's stdio;
//! - [`ops`]: running the operations commands (install, schedule, doctor…);
//! - [`dash`]: the dashboard process, raw HTTP to it, a seeded queue;
//! - [`daemon`]: the daemon process, and an MCP client over Streamable HTTP;
//! - [`worker`]: the in-process delivery worker harness and the `sync` process;
//! - [`policy`]: fixture policy components, runtimes and policy inputs;
//! - [`proxy`]: a reverse proxy in front of the test server, modelling nginx,
//!   Caddy, SSO gates and wrong URLs (timeouts, HTML error pages, redirects,
//!   login pages, path prefixes, tarpits);
//! - [`tls`]: a test CA made at run time, TLS fronts and an http→https redirector.
//!
//! The binary under test is only known where Cargo compiles the host's
//! integration tests: call sites pass [`bin!()`](bin) to the constructors.
//! A test file starts like this:
//!
//! ```text
//! use mem0_queue_testkit::bin;
//! use mem0_queue_testkit::sandbox::Sandbox;
//!
//! let sb = Sandbox::new(bin!());
//! let out = sb.command(&["status"]).output().expect("run");
//! ```

pub mod bench;
pub mod checker;
pub mod daemon;
pub mod dash;
pub mod db;
pub mod mcp;
pub mod mem0_server;
pub mod ops;
pub mod policy;
pub mod process;
pub mod proxy;
pub mod sandbox;
pub mod tls;
pub mod wait;
pub mod worker;

/// The `mem0-queue` binary under test, as a `&'static str`.
///
/// Cargo defines `CARGO_BIN_EXE_mem0-queue` only when it compiles the host
/// package's integration tests and benchmarks, so the `env!` must expand
/// there, at the call site, not in this crate.
#[macro_export]
macro_rules! bin {
    () => {
        env!("CARGO_BIN_EXE_mem0-queue")
    };
}
