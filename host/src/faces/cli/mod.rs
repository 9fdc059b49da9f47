//! The command line. The one place where errors become exit codes and are
//! printed, with their whole cause chain, on stderr.

pub mod commands;
pub mod exit;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::engine::app::App;
use crate::engine::config::{self, ProcessEnv, Resolved};
use crate::engine::paths::Paths;
use crate::engine::policy::{self, PolicySource, Runtime};
use crate::engine::store::{State, Store};

/// `sync`'s default time bound: the 10-minute schedule's period minus a
/// minute, so a run never overlaps the next one and a hung server cannot
/// hold a run for longer than a period.
pub const DEFAULT_SYNC_MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(9 * 60);

#[derive(Parser, Debug)]
#[command(
    name = "mem0-queue",
    version,
    about = "A durable local queue between an AI assistant and Mem0"
)]
pub struct Cli {
    /// The config file (default: $MEM0_QUEUE_CONFIG, else
    /// $XDG_CONFIG_HOME/mem0-queue/config.toml, else ~/.config/mem0-queue/config.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The data dir (overrides MEM0_QUEUE_HOME and the config's data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A policy component to use (overrides MEM0_QUEUE_POLICY and the config).
    #[arg(long, global = true, value_name = "WASM")]
    pub policy: Option<PathBuf>,
    /// Set any config key, e.g. --set concurrency=8. Repeatable; wins over
    /// the file and the environment.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE", value_parser = parse_set)]
    pub set: Vec<(String, String)>,
    #[command(subcommand)]
    pub command: Command,
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the MCP server on stdio (what Claude Code starts), with the
    /// delivery worker in the background.
    Serve,
    /// Deliver what is due once, then exit (for cron and the SessionEnd
    /// hook). Exit 0: drained or nothing to do; 75: entries remain (the
    /// server is down or failing); 65: the server rejected entries in this
    /// run (now dead); 78: a configuration problem (see `status`).
    Sync {
        /// Stop after this long, e.g. "5m" (default 9m, inside the
        /// schedule's 10-minute period; "0s" for no bound); in-flight
        /// requests are abandoned and reconciled on the next run.
        #[arg(long, value_parser = humantime::parse_duration)]
        max_duration: Option<std::time::Duration>,
    },
    /// The queue at a glance. Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    Status {
        #[arg(long)]
        json: bool,
        /// Do not probe the Mem0 server.
        #[arg(long)]
        no_probe: bool,
    },
    /// List entries in one state: ids, age, attempts, last error.
    List {
        #[arg(long, value_enum, default_value = "pending")]
        state: ListState,
        /// Also print each memory's text.
        #[arg(long)]
        show_content: bool,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Move failed entries (or dead ones, with --dead) back to pending.
    /// With --delivered, entries marked delivered go back too (after a
    /// redirect or a login page was taken for Mem0 by an older version):
    /// each is looked up by its id on the server before it is sent again,
    /// so none is stored twice.
    Retry {
        #[arg(long, conflicts_with = "delivered")]
        dead: bool,
        #[arg(long)]
        delivered: bool,
        /// Only these entries; all of them when none are given.
        ids: Vec<String>,
    },
    /// Delete dead entries. Asks first unless --yes.
    Purge {
        #[arg(long, required = true)]
        dead: bool,
        /// Only entries saved longer ago than this, e.g. "30d".
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<std::time::Duration>,
        #[arg(long)]
        yes: bool,
    },
    /// Import the seed's JSON queue (~/.claude/mem0_queue.json). Idempotent;
    /// the file is left untouched.
    Import { path: PathBuf },
    /// Print the queue in the seed's JSON shape; with --vault, write it as
    /// Markdown notes into an Obsidian vault instead.
    Export {
        /// An Obsidian vault: one note per memory under DIR/Mem0/<project>/,
        /// an index note per project. Idempotent; never touches your notes.
        #[arg(long, value_name = "DIR")]
        vault: Option<PathBuf>,
    },
    /// The queue on a local web page (127.0.0.1 only, behind a random
    /// token): counts, alerts, charts, failed and dead entries, retry, sync.
    Dashboard {
        /// The port to listen on; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Open the page in the desktop's browser (xdg-open / open).
        #[arg(long)]
        open: bool,
    },
    /// Search Mem0 merged with the local copy (like the mem0_search tool).
    Search {
        query: String,
        #[arg(long)]
        project: Option<String>,
        #[arg(long, default_value_t = crate::features::search::DEFAULT_LIMIT)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// The local knowledge graph.
    Graph {
        #[command(subcommand)]
        command: GraphCommand,
    },
    /// Policy components: check one, or show the active one.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The configuration: write a sample, or show the resolved values.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Install into Claude Code (MCP server + SessionEnd hook) or the
    /// scheduler (sync every 10 minutes). Idempotent; backs up what it changes.
    Install {
        #[command(subcommand)]
        target: crate::ops::install::Target,
    },
    /// Remove exactly what `install` added.
    Uninstall {
        #[command(subcommand)]
        target: crate::ops::install::Target,
    },
    /// Hooks that Claude Code runs.
    Hook {
        #[command(subcommand)]
        event: crate::ops::hook::Event,
    },
    /// Check the installation: config, permissions, server, policy,
    /// schedule, hook, MCP registration. Exit 0 when all pass, 1 otherwise.
    Doctor,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ListState {
    Pending,
    InFlight,
    Failed,
    Dead,
    Delivered,
}

impl From<ListState> for State {
    fn from(s: ListState) -> State {
        match s {
            ListState::Pending => State::Pending,
            ListState::InFlight => State::InFlight,
            ListState::Failed => State::Failed,
            ListState::Dead => State::Dead,
            ListState::Delivered => State::Delivered,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum GraphCommand {
    /// Read a @modelcontextprotocol/server-memory JSONL file into the local
    /// graph. Idempotent; the file is left untouched.
    Import { path: PathBuf },
    /// Merge the local graph into the configured graph_jsonl file now.
    Mirror,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Load a component, check its world and version, and print its decisions
    /// on a fixed scenario. Exits 0 when it is usable.
    Check {
        /// The component (.wasm). Default: the embedded default.
        path: Option<PathBuf>,
    },
    /// Which policy is active, and where it came from.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Write a commented sample config (mode 0600).
    Init,
    /// Print the resolved config, secrets redacted, with each value's source.
    Show {
        #[arg(long)]
        json: bool,
    },
}

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
        Command::Install { target } | Command::Uninstall { target } => {
            let install = matches!(cli.command, Command::Install { .. });
            match *target {
                crate::ops::install::Target::ClaudeCode { dry_run } => {
                    crate::ops::install::claude_code(&cli, &resolved, &paths, install, dry_run)
                }
                crate::ops::install::Target::Schedule { cron, dry_run } => {
                    crate::ops::schedule::command(&cli, &resolved, &paths, install, cron, dry_run)
                }
            }
        }
        Command::Hook { event } => match event {
            crate::ops::hook::Event::SessionEnd => {
                crate::ops::hook::session_end(&cli, &resolved, &paths)
            }
        },
        Command::Doctor => crate::ops::doctor::run(&resolved, &paths),
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
