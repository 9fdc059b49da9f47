//! The command line. The one place where errors become exit codes and are
//! printed, with their whole cause chain, on stderr.

pub mod args;
pub mod commands;
pub mod exit;
pub mod ops;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::engine::app::App;
use crate::engine::config::{self, ProcessEnv, Resolved};
use crate::engine::paths::Paths;
use crate::engine::policy::{self, PolicySource, Runtime};
use crate::engine::store::{State, Store};
use args::{Cli, Command, ConfigCommand, PolicyCommand};

/// `sync`'s default time bound: the 10-minute schedule's period minus a
/// minute, so a run never overlaps the next one and a hung server cannot
/// hold a run for longer than a period.
pub const DEFAULT_SYNC_MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(9 * 60);

/// Entry point for `main`: parse, set up tracing, run, map errors.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
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
pub fn resolve_config(cli: &Cli) -> Result<Resolved, config::ConfigError> {
    let mut flags = cli.set.clone();
    if let Some(d) = &cli.data_dir {
        flags.push(("data_dir".into(), d.display().to_string()));
    }
    if let Some(p) = &cli.policy {
        flags.push(("policy".into(), p.display().to_string()));
    }
    config::resolve(&ProcessEnv, cli.config.as_deref(), &flags)
}

fn policy_source(resolved: &Resolved) -> PolicySource {
    match &resolved.config.policy {
        Some(p) => PolicySource::File(p.clone()),
        None => PolicySource::Embedded,
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let resolved = resolve_config(&cli)?;
    let paths = Paths::resolve(resolved.config.data_dir.as_deref(), &ProcessEnv)?;
    match &cli.command {
        Command::Policy { command } => policy_command(command, &resolved, &paths),
        Command::Config { command } => config_command(command, &cli, &resolved),
        Command::Status { json, no_probe } => {
            crate::faces::cli::commands::status(resolved, paths, *json, !*no_probe)
        }
        Command::Serve => {
            // A queue that cannot be opened (read-only or full data dir,
            // corrupt file) still gets an MCP server: each save then answers
            // NOT QUEUED with the reason, instead of a failed handshake.
            let app = open_app(resolved, paths).map_err(|e| format!("{e:#}"));
            crate::faces::cli::commands::serve(app)
        }
        Command::Sync { max_duration } => {
            let app = open_app(resolved, paths)?;
            let bound = match max_duration {
                None => Some(DEFAULT_SYNC_MAX_DURATION),
                Some(d) if d.is_zero() => None,
                Some(d) => Some(*d),
            };
            crate::faces::cli::commands::sync(app, bound)
        }
        Command::List {
            state,
            show_content,
            limit,
        } => {
            let store = Store::open(&paths.db())?;
            crate::faces::cli::commands::list(&store, (*state).into(), *show_content, *limit)
        }
        Command::Retry {
            dead,
            delivered,
            ids,
        } => {
            paths.ensure_dir()?;
            let mut store = Store::open(&paths.db())?;
            let from = match (dead, delivered) {
                (true, _) => State::Dead,
                (_, true) => State::Delivered,
                _ => State::Failed,
            };
            let n = store.retry(ids, from, crate::engine::clock::now_ms())?;
            println!("{n} entries moved back to pending");
            Ok(ExitCode::SUCCESS)
        }
        Command::Purge {
            dead: _,
            older_than,
            yes,
        } => {
            let mut store = Store::open(&paths.db())?;
            crate::faces::cli::commands::purge(&mut store, *older_than, *yes)
        }
        Command::Import { path } => {
            paths.ensure_dir()?;
            let mut store = Store::open(&paths.db())?;
            let limits = crate::engine::store::Limits {
                max_content_bytes: resolved.config.max_content_bytes,
                max_metadata_bytes: resolved.config.max_metadata_bytes,
                max_queue_len: resolved.config.max_queue_len,
            };
            let r = crate::features::seed::import(
                &mut store,
                path,
                &resolved.config.default_project,
                &limits,
                crate::engine::clock::now_ms(),
            )?;
            println!(
                "imported {} pending, {} failed, {} delivered (from last_100); {} already present; stats {}",
                r.pending,
                r.failed,
                r.delivered,
                r.skipped,
                if r.stats_merged {
                    "merged"
                } else {
                    "already merged"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Search {
            query,
            project,
            limit,
            json,
        } => {
            let app = open_app(resolved, paths)?;
            crate::faces::cli::commands::search(app, query, project.clone(), *limit, *json)
        }
        Command::Graph { command } => {
            let app = open_app(resolved, paths)?;
            crate::faces::cli::commands::graph(app, command)
        }
        Command::Export { vault: Some(dir) } => {
            paths.ensure_dir()?;
            let store = Store::open(&paths.db())?;
            let report = crate::features::vault::export_once(&store, dir)?;
            println!("{}", report.text(&dir.join(crate::features::vault::ROOT)));
            Ok(ExitCode::SUCCESS)
        }
        Command::Dashboard { port, open } => {
            let app = open_app(resolved, paths)?;
            crate::faces::dashboard::run(app, *port, *open)
        }
        Command::Export { vault: None } => {
            paths.ensure_dir()?;
            let store = Store::open(&paths.db())?;
            let v = crate::features::seed::export(&store)?;
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
            Ok(ExitCode::SUCCESS)
        }
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

/// The compiled-policy cache dir, when the data dir exists or can be made.
fn cache_dir(paths: &Paths) -> Option<PathBuf> {
    paths.ensure_dir().ok().map(|()| paths.cache_dir())
}

fn policy_command(
    command: &PolicyCommand,
    resolved: &Resolved,
    paths: &Paths,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        PolicyCommand::Check { path } => {
            let rt = Runtime::new(PolicySource::Embedded, cache_dir(paths).as_deref())
                .context("the embedded default policy does not load")?;
            let report = match path {
                Some(p) => policy::check::run(&rt, p),
                None => policy::check::run(
                    &rt,
                    std::path::Path::new(mem0_queue_embed::DEFAULT_POLICY_PATH),
                ),
            };
            match report {
                Ok(text) => {
                    out.write_all(text.as_bytes())?;
                    writeln!(out, "\nusable: yes")?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    let shown = path
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "the embedded default".into());
                    eprintln!("mem0-queue: policy {shown} is not usable: {e}");
                    Ok(exit::policy(false))
                }
            }
        }
        PolicyCommand::Show { json } => {
            let rt = Runtime::new(policy_source(resolved), cache_dir(paths).as_deref())
                .context("the embedded default policy does not load")?;
            let info = rt.info();
            let from = match &resolved.config.policy {
                None => "embedded default (no `policy` configured)".to_string(),
                Some(_) => format!(
                    "{} (set by {})",
                    rt.source(),
                    resolved
                        .sources
                        .get("policy")
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                ),
            };
            if *json {
                let mut v = serde_json::to_value(&info)?;
                v["configured"] = serde_json::Value::String(from);
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                writeln!(
                    out,
                    "active policy: {} {} (WIT {})",
                    info.name, info.version, info.wit_version
                )?;
                writeln!(out, "source:        {}", info.source)?;
                writeln!(out, "configured:    {from}")?;
                writeln!(out, "sha256:        {}", info.sha256)?;
                writeln!(
                    out,
                    "compiled:      {}",
                    if info.from_cache {
                        "from the on-disk cache"
                    } else {
                        "just now"
                    }
                )?;
                if let Some(b) = &info.broken {
                    writeln!(
                        out,
                        "BROKEN:        {b}\n               the embedded default decides instead"
                    )?;
                }
            }
            Ok(exit::policy(info.broken.is_none()))
        }
    }
}

fn config_command(
    command: &ConfigCommand,
    cli: &Cli,
    resolved: &Resolved,
) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Init => {
            let path = config::config_path(&ProcessEnv, cli.config.as_deref())
                .context("no config path: set HOME or MEM0_QUEUE_CONFIG")?;
            config::write_sample(&path)?;
            eprintln!("wrote {} (mode 0600)", path.display());
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Show { json } => {
            let mut out = std::io::stdout().lock();
            if *json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&resolved.show_json())?
                )?;
            } else {
                out.write_all(resolved.show().as_bytes())?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
