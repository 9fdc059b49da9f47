//! Every clap type of the command line, in one file: the global flags, the
//! commands and their arguments. Nothing outside `faces::cli` sees them: an
//! operation gets a plain [`Invocation`](crate::ops::Invocation), a feature its
//! own arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::engine::store::State;

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
    /// The always-on process, one per user and data dir: delivers every
    /// save within seconds (the `serve` windows leave delivery to it), and
    /// serves MCP over HTTP at http://127.0.0.1:8767/mcp (behind the token
    /// in the data dir's daemon.token) and the dashboard. Runs until SIGTERM
    /// or Ctrl-C. Exit 75: a daemon already runs for this data dir.
    Daemon(DaemonArgs),
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
    /// The memories of a project, newest first (Mem0's list merged with the
    /// local copy, like the mem0_list tool); with --state, the queue's
    /// entries in one state instead: saves and changes, ids, age, attempts,
    /// last error.
    List {
        /// The queue's entries in this state.
        #[arg(long, value_enum)]
        state: Option<ListState>,
        /// With --state: also print each entry's text.
        #[arg(long, requires = "state")]
        show_content: bool,
        /// With --state: at most this many entries.
        #[arg(long, default_value_t = 100, requires = "state")]
        limit: usize,
        /// The project (default: the configured default_project).
        #[arg(long, conflicts_with = "state")]
        project: Option<String>,
        #[arg(long, conflicts_with = "state")]
        agent_id: Option<String>,
        #[arg(long, conflicts_with = "state")]
        run_id: Option<String>,
        #[arg(long, default_value_t = 1, conflicts_with = "state")]
        page: usize,
        #[arg(long, default_value_t = crate::features::memories::DEFAULT_PAGE_SIZE, conflicts_with = "state")]
        page_size: usize,
        #[arg(long, conflicts_with = "state")]
        json: bool,
    },
    /// One memory by its local id (mq_id) or its Mem0 id.
    Get {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a memory's text and/or metadata (queued; delivered in order).
    Update {
        id: String,
        #[arg(long)]
        text: Option<String>,
        /// A JSON object of metadata keys to set.
        #[arg(long, value_name = "JSON")]
        metadata: Option<String>,
        /// Only for a Mem0 id this queue never saw.
        #[arg(long)]
        project: Option<String>,
    },
    /// Delete a memory (a save never sent is just cancelled).
    Delete {
        id: String,
        /// Only for a Mem0 id this queue never saw.
        #[arg(long)]
        project: Option<String>,
    },
    /// Delete EVERY memory of a project, here and on Mem0 (its delete-all).
    /// Asks for the project's name unless --yes.
    Forget {
        project: String,
        #[arg(long)]
        yes: bool,
    },
    /// The projects (users), agents and runs with memories, here and on Mem0.
    Entities {
        #[arg(long)]
        json: bool,
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
    /// Install into Claude Code without its plugin (MCP server + the
    /// SessionStart, SessionEnd and PreCompact hooks), the scheduler (sync
    /// every 10 minutes) or the daemon's service (systemd, launchd).
    /// Idempotent; backs up what it changes.
    Install {
        #[command(subcommand)]
        target: InstallTarget,
    },
    /// Remove exactly what `install` added.
    Uninstall {
        #[command(subcommand)]
        target: InstallTarget,
    },
    /// Hooks that Claude Code runs (session-start, session-end,
    /// pre-compact). They never fail a session: exit 0, JSON or nothing
    /// on stdout.
    Hook {
        #[command(subcommand)]
        event: HookEvent,
    },
    /// Check the installation: config, permissions, server, policy,
    /// schedule, hook, MCP registration. Exit 0 when all pass, 1 otherwise.
    Doctor,
}

/// `mem0-queue daemon`'s flags; each overrides its config key.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DaemonArgs {
    /// The port (config daemon_port, default 8767; 0 picks a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// The address to listen on (config daemon_bind, default 127.0.0.1).
    #[arg(long, value_name = "IP")]
    pub bind: Option<std::net::IpAddr>,
    /// Allow a non-loopback --bind (config daemon_allow_remote): other
    /// machines can then reach it, with the token.
    #[arg(long)]
    pub allow_remote: bool,
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

/// Where `install claude-code` / `uninstall claude-code` go.
#[derive(clap::Subcommand, Debug, Clone, Copy)]
pub enum InstallTarget {
    /// Claude Code: the MCP server (user scope, ~/.claude.json) and the
    /// SessionStart, SessionEnd and PreCompact hooks (~/.claude/settings.json).
    ClaudeCode {
        /// Print what would change, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Register the daemon's HTTP endpoint (with its token) instead of
        /// a `serve` command: every window then shares the one daemon.
        #[arg(long)]
        http: bool,
    },
    /// The schedule that runs `mem0-queue sync` every 10 minutes: a systemd
    /// user timer (Linux) or a launchd agent (macOS).
    Schedule {
        /// Print a crontab line to add by hand instead, and write nothing.
        #[arg(long)]
        cron: bool,
        /// Print what would change, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The daemon (`mem0-queue daemon`) as a systemd user service (Linux)
    /// or a launchd agent (macOS): started at login, restarted on failure,
    /// logging to the worker log.
    Daemon {
        /// Print what would change, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which hook event. Each reads Claude Code's JSON input on stdin and
/// exits 0 whatever happens (a note on stderr says what it did).
#[derive(clap::Subcommand, Debug, Clone, Copy)]
pub enum HookEvent {
    /// Claude Code's SessionStart: print the project's most relevant and
    /// most recent memories as the session's additional context (JSON).
    SessionStart,
    /// Claude Code's SessionEnd: capture the session (with capture =
    /// "session-end"), start a detached `sync` and return at once.
    SessionEnd,
    /// Claude Code's PreCompact: capture the session (with capture =
    /// "pre-compact"). Never blocks the compaction.
    PreCompact,
}
