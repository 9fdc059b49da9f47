//! `mem0-test-server`: runs the Mem0 test server of `mem0_queue_testkit::mem0_server` on
//! its own, for manual testing and benchmarks.
//!
//! `mem0-test-server [--kind oss|platform] [--port N] [--api-key K] [--latency-ms N] [--seed N]`
//! binds 127.0.0.1, prints `listening on http://127.0.0.1:PORT`, and serves until killed.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use mem0_queue_testkit::mem0_server::{FaultPlan, Kind, Mem0Server, ServerOptions};

/// Printed on bad arguments.
const USAGE: &str = "usage: mem0-test-server [--kind oss|platform] [--port N] [--api-key K] [--latency-ms N] [--seed N]";

struct Args {
    opts: ServerOptions,
    port: u16,
    latency: Option<Duration>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        opts: ServerOptions {
            kind: Kind::Oss,
            api_key: None,
            seed: 0,
        },
        port: 0,
        latency: None,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--kind" => {
                parsed.opts.kind = match value()?.as_str() {
                    "oss" => Kind::Oss,
                    "platform" => Kind::Platform,
                    other => return Err(format!("unknown kind {other:?}")),
                }
            }
            "--port" => parsed.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--api-key" => parsed.opts.api_key = Some(value()?),
            "--latency-ms" => {
                let ms: u64 = value()?.parse().map_err(|e| format!("--latency-ms: {e}"))?;
                parsed.latency = Some(Duration::from_millis(ms));
            }
            "--seed" => parsed.opts.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("mem0-test-server: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let server = match Mem0Server::start_on(args.opts, addr).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("mem0-test-server: cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.latency.is_some() {
        server.set_faults(FaultPlan {
            latency: args.latency,
            ..FaultPlan::default()
        });
    }
    println!("listening on {}", server.url());
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
    ExitCode::SUCCESS
}
