//! The command line: parse, set up logging, run one command, and turn its
//! outcome into an exit code. Errors are printed here, with their whole
//! cause chain, on stderr.
//!
//! - [`args`]: every clap type;
//! - [`exit`]: the one place outcomes and errors become exit codes;
//! - one file per command or group: [`serve`], [`daemon`], [`sync`], [`status`],
//!   [`queue`] (list, retry, purge), [`seed`] (import, export), [`search`],
//!   [`graph`], [`dashboard`], [`policy`], [`config`], [`ops`] (install,
//!   uninstall, hook, doctor), [`memories`] (get, list, update, delete,
//!   forget, entities).
//!
//! A new command: its clap type in `args.rs`, its code in the file of its
//! group (or a new one) over a function of the engine, a feature or an
//! operation, its exit code in `exit.rs`.

pub mod args;
pub mod exit;

pub mod config;
pub mod daemon;
pub mod dashboard;
pub mod graph;
pub mod memories;
pub mod ops;
pub mod policy;
pub mod queue;
pub mod search;
pub mod seed;
pub mod serve;
pub mod status;
pub mod sync;

use std::process::ExitCode;

use clap::Parser;

use crate::engine::app::App;
use crate::engine::config::{ConfigError, ProcessEnv, Resolved};
use crate::engine::paths::Paths;
use args::{Cli, Command};

/// Entry point for `main`: parse, set up tracing, run, map errors.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    if let Command::Hook { event } = &cli.command {
        return hook_main(cli_hook_name(*event), cli);
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if !exit::is_broken_pipe(&e) {
                eprintln!("mem0-queue: error: {e:#}");
            }
            exit::error(&e)
        }
    }
}

fn cli_hook_name(e: args::HookEvent) -> &'static str {
    match e {
        args::HookEvent::SessionStart => "session-start",
        args::HookEvent::SessionEnd => "session-end",
        args::HookEvent::PreCompact => "pre-compact",
    }
}

/// A hook: whatever goes wrong (a bad config, an error, a panic), one line
/// on stderr and exit 0, with nothing on stdout but a complete answer.
fn hook_main(name: &str, cli: Cli) -> ExitCode {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli))) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("mem0-queue hook {name}: nothing done: {e:#}");
            exit::hook()
        }
        Err(_) => {
            eprintln!("mem0-queue hook {name}: nothing done: an internal error (a panic)");
            exit::hook()
        }
    }
}

/// Logs go to stderr, never stdout (stdout is MCP's in `serve`). The level
/// comes from MEM0_QUEUE_LOG (default `warn`). A bare level (`debug`,
/// `trace`) is for mem0-queue's own logs: the dependencies stay at warn,
/// because cranelift logs every compiler pass below that (a trace-level
/// policy compile then takes minutes) and the HTTP and TLS stacks their
/// traffic. Full directives (`warn,hyper=debug`) are taken as written.
fn init_tracing() {
    let spec = std::env::var("MEM0_QUEUE_LOG").unwrap_or_default();
    let spec = match spec.trim() {
        "" => "warn".to_string(),
        s if s.contains(['=', ',']) => s.to_string(),
        level => format!("warn,mem0_queue={level}"),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // rmcp logs whole requests, memory texts included, below warn: never.
    let filter = match "rmcp=warn".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Resolves the config with the global flags folded into `--set`.
pub fn resolve_config(cli: &Cli) -> Result<Resolved, ConfigError> {
    let mut flags = cli.set.clone();
    if let Some(d) = &cli.data_dir {
        flags.push(("data_dir".into(), d.display().to_string()));
    }
    if let Some(p) = &cli.policy {
        flags.push(("policy".into(), p.display().to_string()));
    }
    crate::engine::config::resolve(&ProcessEnv, cli.config.as_deref(), &flags)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let resolved = resolve_config(&cli)?;
    let paths = Paths::resolve(resolved.config.data_dir.as_deref(), &ProcessEnv)?;
    match &cli.command {
        Command::Policy { command } => policy::run(command, &resolved, &paths),
        Command::Config { command } => config::run(command, cli.config.as_deref(), &resolved),
        Command::Status { json, no_probe } => status::run(resolved, paths, *json, !*no_probe),
        Command::Serve => {
            // A queue that cannot be opened (read-only or full data dir,
            // corrupt file) still gets an MCP server: each save then answers
            // NOT QUEUED with the reason, instead of a failed handshake.
            let app = open_app(resolved, paths).map_err(|e| format!("{e:#}"));
            serve::run(app)
        }
        Command::Daemon(args) => daemon::run(resolved, paths, args),
        Command::Sync { max_duration } => sync::run(open_app(resolved, paths)?, *max_duration),
        Command::List {
            state: Some(state),
            show_content,
            limit,
            ..
        } => queue::list(&paths, (*state).into(), *show_content, *limit),
        Command::List {
            state: None,
            project,
            agent_id,
            run_id,
            page,
            page_size,
            json,
            ..
        } => memories::list(
            open_app(resolved, paths)?,
            project.clone(),
            agent_id.as_deref(),
            run_id.as_deref(),
            *page,
            *page_size,
            *json,
        ),
        Command::Get { id, json } => memories::get(open_app(resolved, paths)?, id, *json),
        Command::Update {
            id,
            text,
            metadata,
            project,
        } => memories::update(
            open_app(resolved, paths)?,
            id,
            text.clone(),
            metadata.as_deref(),
            project.clone(),
        ),
        Command::Delete { id, project } => {
            memories::delete(open_app(resolved, paths)?, id, project.clone())
        }
        Command::Forget { project, yes } => {
            memories::forget(open_app(resolved, paths)?, project, *yes)
        }
        Command::Entities { json } => memories::entities(open_app(resolved, paths)?, *json),
        Command::Retry {
            dead,
            delivered,
            ids,
        } => queue::retry(&paths, ids, *dead, *delivered),
        Command::Purge {
            dead: _,
            older_than,
            yes,
        } => queue::purge(&paths, *older_than, *yes),
        Command::Import { path } => seed::import(&resolved, &paths, path),
        Command::Export { vault } => seed::export(&paths, vault.as_deref()),
        Command::Search {
            query,
            project,
            limit,
            json,
        } => search::run(
            open_app(resolved, paths)?,
            query,
            project.clone(),
            *limit,
            *json,
        ),
        Command::Graph { command } => graph::run(open_app(resolved, paths)?, command),
        Command::Dashboard { port, open } => dashboard::run(resolved, paths, *port, *open),
        Command::Install { target } => {
            ops::install(ops::invocation(&cli, resolved, paths), *target, true)
        }
        Command::Uninstall { target } => {
            ops::install(ops::invocation(&cli, resolved, paths), *target, false)
        }
        Command::Hook { event } => ops::hook(ops::invocation(&cli, resolved, paths), *event),
        Command::Doctor => ops::doctor(ops::invocation(&cli, resolved, paths)),
    }
}

fn open_app(resolved: Resolved, paths: Paths) -> anyhow::Result<App> {
    if resolved.file_exposes_key {
        let file = resolved
            .file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        tracing::warn!(file = %file, "the config file holds an API key and is readable by group or other; run: chmod 600 {file}");
        eprintln!(
            "mem0-queue: warning: {file} holds an API key and is readable by group or other; run: chmod 600 {file}"
        );
    }
    Ok(App::open(resolved, paths)?)
}
