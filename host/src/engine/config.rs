//! The configuration: a TOML file, overridden by environment variables,
//! overridden by command-line flags (`--set key=value` and the named flags).
//!
//! Every key is declared once in [`KEYS`], with its env variable, its type and
//! its default. Resolution records where each value came from, for `config
//! show`. An unknown key or a bad value is an error naming the key and where
//! it came from. This module reads files and the environment it is given; it
//! never writes, except `write_sample` for `config init`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The kind of Mem0 API at `api_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKind {
    /// The self-hosted REST server of the mem0 repository.
    Oss,
    /// Mem0's hosted platform.
    Platform,
}

/// When a session's transcript is captured (`capture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaptureAt {
    /// Never (the default): only what the assistant saves is remembered.
    #[default]
    Off,
    /// When the session ends (Claude Code's SessionEnd hook).
    SessionEnd,
    /// When Claude Code compacts the conversation (its PreCompact hook),
    /// the moment the early turns are about to leave the context.
    PreCompact,
}

impl CaptureAt {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureAt::Off => "off",
            CaptureAt::SessionEnd => "session-end",
            CaptureAt::PreCompact => "pre-compact",
        }
    }
}

/// What a value is, to parse env and flag strings.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Secret,
    Path,
    Bool,
    Int,
    Duration,
    Kind,
    /// A table of strings (`[projects]`); in env and flags
    /// `KEY=VALUE;KEY=VALUE`.
    Map,
}

/// One configuration key.
struct Key {
    name: &'static str,
    env: &'static str,
    ty: Ty,
    help: &'static str,
    /// The default as it appears in the sample; `None` when unset by default.
    default: Option<&'static str>,
}

/// Every configuration key. Defaults here are what the sample shows; the
/// typed defaults live in [`Config::default`] and must agree.
const KEYS: &[Key] = &[
    Key {
        name: "api_url",
        env: "MEM0_API_URL",
        ty: Ty::Str,
        help: "Base URL of the Mem0 server, e.g. http://vps:8888 (oss) or https://api.mem0.ai (platform). Unset: saves queue up, nothing is delivered.",
        default: None,
    },
    Key {
        name: "api_key",
        env: "MEM0_API_KEY",
        ty: Ty::Secret,
        help: "API key. oss: sent as X-API-Key; platform: Authorization: Token. Keep this file mode 0600.",
        default: None,
    },
    Key {
        name: "api_kind",
        env: "MEM0_API_KIND",
        ty: Ty::Kind,
        help: "\"oss\" (self-hosted REST server) or \"platform\" (api.mem0.ai).",
        default: Some("\"oss\""),
    },
    Key {
        name: "ca_file",
        env: "MEM0_QUEUE_CA_FILE",
        ty: Ty::Path,
        help: "A PEM file of CA certificates to trust for an https api_url, for a server with a self-signed certificate. The system's roots stay trusted; plain http is never used instead.",
        default: None,
    },
    Key {
        name: "data_dir",
        env: "MEM0_QUEUE_HOME",
        ty: Ty::Path,
        help: "Where the queue lives. Default: $XDG_DATA_HOME/mem0-queue or ~/.local/share/mem0-queue.",
        default: None,
    },
    Key {
        name: "policy",
        env: "MEM0_QUEUE_POLICY",
        ty: Ty::Path,
        help: "A policy component (.wasm) to use instead of the embedded default.",
        default: None,
    },
    Key {
        name: "default_project",
        env: "MEM0_QUEUE_DEFAULT_PROJECT",
        ty: Ty::Str,
        help: "Project (Mem0 user_id) for saves that name none.",
        default: Some("\"default\""),
    },
    Key {
        name: "max_content_bytes",
        env: "MEM0_QUEUE_MAX_CONTENT_BYTES",
        ty: Ty::Int,
        help: "Largest memory text accepted, in bytes.",
        default: Some("65536"),
    },
    Key {
        name: "max_metadata_bytes",
        env: "MEM0_QUEUE_MAX_METADATA_BYTES",
        ty: Ty::Int,
        help: "Largest metadata object accepted, as JSON bytes.",
        default: Some("16384"),
    },
    Key {
        name: "max_queue_len",
        env: "MEM0_QUEUE_MAX_QUEUE_LEN",
        ty: Ty::Int,
        help: "Most undelivered entries kept; a save beyond it is refused, not dropped.",
        default: Some("100000"),
    },
    Key {
        name: "connect_timeout",
        env: "MEM0_QUEUE_CONNECT_TIMEOUT",
        ty: Ty::Duration,
        help: "TCP+TLS connect timeout.",
        default: Some("\"5s\""),
    },
    Key {
        name: "add_timeout",
        env: "MEM0_QUEUE_ADD_TIMEOUT",
        ty: Ty::Duration,
        help: "Whole-request timeout of an add; the OSS server runs an LLM first (4 s to 2 min).",
        default: Some("\"120s\""),
    },
    Key {
        name: "search_timeout",
        env: "MEM0_QUEUE_SEARCH_TIMEOUT",
        ty: Ty::Duration,
        help: "Timeout of a remote search.",
        default: Some("\"10s\""),
    },
    Key {
        name: "sync_interval",
        env: "MEM0_QUEUE_SYNC_INTERVAL",
        ty: Ty::Duration,
        help: "How often `serve` runs the delivery worker.",
        default: Some("\"30s\""),
    },
    Key {
        name: "concurrency",
        env: "MEM0_QUEUE_CONCURRENCY",
        ty: Ty::Int,
        help: "Deliveries in flight at once.",
        default: Some("4"),
    },
    Key {
        name: "infer",
        env: "MEM0_QUEUE_INFER",
        ty: Ty::Bool,
        help: "Ask Mem0 to extract facts with its LLM (true) or store the text verbatim (false).",
        default: Some("true"),
    },
    Key {
        name: "allow_insecure_http",
        env: "MEM0_QUEUE_ALLOW_INSECURE_HTTP",
        ty: Ty::Bool,
        help: "Allow http:// to a host other than loopback (the key travels in clear).",
        default: Some("false"),
    },
    Key {
        name: "notify",
        env: "MEM0_QUEUE_NOTIFY",
        ty: Ty::Bool,
        help: "Desktop notification when an alert level is first reached.",
        default: Some("false"),
    },
    Key {
        name: "graph_jsonl",
        env: "MEM0_QUEUE_GRAPH_JSONL",
        ty: Ty::Path,
        help: "Mirror the knowledge graph into this @modelcontextprotocol/server-memory JSONL file (its MEMORY_FILE_PATH).",
        default: None,
    },
    Key {
        name: "vault_dir",
        env: "MEM0_QUEUE_VAULT_DIR",
        ty: Ty::Path,
        help: "An Obsidian vault: `serve` mirrors each memory into <vault_dir>/Mem0/<project>/ as a Markdown note (as `mem0-queue export --vault` does). Your own notes are never touched.",
        default: None,
    },
    Key {
        name: "retention_days",
        env: "MEM0_QUEUE_RETENTION_DAYS",
        ty: Ty::Int,
        help: "Drop the local copy of delivered memories after this many days. Unset: keep all (search answers offline from it).",
        default: None,
    },
    Key {
        name: "daemon_port",
        env: "MEM0_QUEUE_DAEMON_PORT",
        ty: Ty::Int,
        help: "The port of the daemon's MCP endpoint (http://127.0.0.1:PORT/mcp) and dashboard. 0 picks a free one at each start (then `status` says which).",
        default: Some("8767"),
    },
    Key {
        name: "daemon_bind",
        env: "MEM0_QUEUE_DAEMON_BIND",
        ty: Ty::Str,
        help: "The address the daemon listens on. Anything but a loopback address (127.0.0.1, ::1) needs daemon_allow_remote = true.",
        default: Some("\"127.0.0.1\""),
    },
    Key {
        name: "daemon_allow_remote",
        env: "MEM0_QUEUE_DAEMON_ALLOW_REMOTE",
        ty: Ty::Bool,
        help: "Let the daemon listen on a non-loopback address (other machines can then reach it; every request still needs the token, and the dashboard stays off).",
        default: Some("false"),
    },
    Key {
        name: "log_max_bytes",
        env: "MEM0_QUEUE_LOG_MAX_BYTES",
        ty: Ty::Int,
        help: "Size at which the worker log is rotated.",
        default: Some("1048576"),
    },
    Key {
        name: "recall",
        env: "MEM0_QUEUE_RECALL",
        ty: Ty::Bool,
        help: "At the start of a Claude Code session (its SessionStart hook), add the project's most relevant and most recent memories to the context. false: the hook prints nothing.",
        default: Some("true"),
    },
    Key {
        name: "recall_max_chars",
        env: "MEM0_QUEUE_RECALL_MAX_CHARS",
        ty: Ty::Int,
        help: "The most characters recall adds to the context (about a quarter as many tokens), 300 to 9000.",
        default: Some("2000"),
    },
    Key {
        name: "recall_timeout",
        env: "MEM0_QUEUE_RECALL_TIMEOUT",
        ty: Ty::Duration,
        help: "How long recall may wait for Mem0's own search, on top of the local copy (a hard bound; \"0s\": the local copy only). At most 5s.",
        default: Some("\"300ms\""),
    },
    Key {
        name: "capture",
        env: "MEM0_QUEUE_CAPTURE",
        ty: Ty::Str,
        help: "Queue the user's and the assistant's words of each Claude Code session (no tool calls or outputs, secrets redacted) as one memory that Mem0's LLM turns into facts: \"off\", \"session-end\" or \"pre-compact\". At most once per session.",
        default: Some("\"off\""),
    },
    // A table: last in the sample, since in TOML every key after a
    // `[table]` header belongs to that table.
    Key {
        name: "projects",
        env: "MEM0_QUEUE_PROJECTS",
        ty: Ty::Map,
        help: "The project (Mem0 user_id) of a folder and everything under it, for the hooks and for saves from Claude Code that name none; the longest matching folder wins. Else a folder's git repository gives its name, else default_project. Env: \"~/code/acme=acme;~/src/blog=blog\".",
        default: None,
    },
];

/// The daemon's default port: fixed, so a client registered once (Claude
/// Code's `~/.claude.json`) finds it after every restart. Below Linux's
/// ephemeral range (32768 and up, where an outgoing connection could hold
/// it when the daemon starts), and clear of the defaults of what developers
/// commonly run beside it: 3000, 5000, 5173, 8000, 8080, 8888 (Mem0's own
/// server), 8765 (the websockets examples), 6274/6277 (the MCP Inspector),
/// 11434 (Ollama).
pub const DEFAULT_DAEMON_PORT: u16 = 8767;

/// The resolved configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub api_url: Option<String>,
    pub api_key: Option<String>,
    pub api_kind: ApiKind,
    pub ca_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub policy: Option<PathBuf>,
    pub default_project: String,
    pub max_content_bytes: usize,
    pub max_metadata_bytes: usize,
    pub max_queue_len: u64,
    #[serde(with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub add_timeout: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub search_timeout: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub sync_interval: Duration,
    pub concurrency: usize,
    pub infer: bool,
    pub allow_insecure_http: bool,
    pub notify: bool,
    pub graph_jsonl: Option<PathBuf>,
    pub vault_dir: Option<PathBuf>,
    pub retention_days: Option<u64>,
    pub daemon_port: u16,
    pub daemon_bind: String,
    pub daemon_allow_remote: bool,
    pub log_max_bytes: u64,
    pub recall: bool,
    pub recall_max_chars: usize,
    #[serde(with = "humantime_serde_compat")]
    pub recall_timeout: Duration,
    pub capture: CaptureAt,
    /// Folder (a leading `~` is HOME) to project name.
    pub projects: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api_url: None,
            api_key: None,
            api_kind: ApiKind::Oss,
            ca_file: None,
            data_dir: None,
            policy: None,
            default_project: "default".into(),
            max_content_bytes: 64 << 10,
            max_metadata_bytes: 16 << 10,
            max_queue_len: 100_000,
            connect_timeout: Duration::from_secs(5),
            add_timeout: Duration::from_secs(120),
            search_timeout: Duration::from_secs(10),
            sync_interval: Duration::from_secs(30),
            concurrency: 4,
            infer: true,
            allow_insecure_http: false,
            notify: false,
            graph_jsonl: None,
            vault_dir: None,
            retention_days: None,
            daemon_port: DEFAULT_DAEMON_PORT,
            daemon_bind: "127.0.0.1".into(),
            daemon_allow_remote: false,
            log_max_bytes: 1 << 20,
            recall: true,
            recall_max_chars: RECALL_MAX_CHARS,
            recall_timeout: RECALL_TIMEOUT,
            capture: CaptureAt::Off,
            projects: BTreeMap::new(),
        }
    }
}

/// The default size of what recall adds to the context: 2,000 characters,
/// about 500 tokens, ten to fifteen memories of a sentence or two. Enough
/// for the project's decisions and what was done last; a quarter of one
/// percent of a 200k context, and a fifth of the 10,000 characters past
/// which Claude Code moves a hook's output to a file and shows a preview.
pub const RECALL_MAX_CHARS: usize = 2_000;

/// The bounds of `recall_max_chars`: below 300 the header and one memory
/// of 80 characters with its date hardly fit; 9,000 stays under Claude
/// Code's 10,000-character cap.
pub const RECALL_MAX_CHARS_RANGE: std::ops::RangeInclusive<usize> = 300..=9_000;

/// The default bound on Mem0's part of recall: 300 ms. A session start
/// the user waits for; a Mem0 on the LAN or a nearby VPS answers a search
/// in 50 to 200 ms, a slower one is skipped for the local copy.
pub const RECALL_TIMEOUT: Duration = Duration::from_millis(300);

/// The most `recall_timeout` may be: the plugin gives the hook 10 s, and a
/// session start should not wait longer than a few seconds for anything.
pub const RECALL_TIMEOUT_MAX: Duration = Duration::from_secs(5);

/// Durations as humantime strings ("5s", "2m 30s") in TOML.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag => f.write_str("flag"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("unknown config key `{key}` in {origin} (known keys: {known})")]
    UnknownKey {
        key: String,
        origin: Source,
        known: String,
    },
    #[error("bad value for `{key}` from {origin}: {message}")]
    BadValue {
        key: String,
        origin: Source,
        message: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} exists already; remove it first or edit it")]
    Exists { path: PathBuf },
}

/// The resolved config plus where each value came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Config,
    pub sources: BTreeMap<&'static str, Source>,
    /// The config file that was read, if one exists.
    pub file: Option<PathBuf>,
    /// True when the file holds an API key and is readable by group or other.
    pub file_exposes_key: bool,
}

/// The environment a resolution reads: injected so tests do not touch the
/// process environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// The config file's path: `$MEM0_QUEUE_CONFIG`, else
/// `$XDG_CONFIG_HOME/mem0-queue/config.toml`, else
/// `~/.config/mem0-queue/config.toml` (on macOS too: CLI users expect it).
pub fn config_path(env: &dyn Env, explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = env.var("MEM0_QUEUE_CONFIG") {
        return Some(PathBuf::from(p));
    }
    if let Some(x) = env.var("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(x).join("mem0-queue/config.toml"));
    }
    env.var("HOME")
        .map(|h| PathBuf::from(h).join(".config/mem0-queue/config.toml"))
}

/// Resolves file < env < flags. `flags` are `(key, value)` pairs.
pub fn resolve(
    env: &dyn Env,
    explicit_file: Option<&Path>,
    flags: &[(String, String)],
) -> Result<Resolved, ConfigError> {
    let mut merged = toml::Table::new();
    let mut sources: BTreeMap<&'static str, Source> =
        KEYS.iter().map(|k| (k.name, Source::Default)).collect();

    let path = config_path(env, explicit_file);
    let mut file = None;
    let mut file_exposes_key = false;
    if let Some(path) = path {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let table: toml::Table =
                    toml::from_str(&text).map_err(|e| ConfigError::Syntax {
                        path: path.clone(),
                        message: e.message().to_string(),
                    })?;
                for (k, v) in table {
                    let key = find(&k).ok_or_else(|| ConfigError::UnknownKey {
                        key: k.clone(),
                        origin: Source::File(path.clone()),
                        known: known_keys(),
                    })?;
                    sources.insert(key.name, Source::File(path.clone()));
                    merged.insert(k, v);
                }
                if merged.contains_key("api_key") {
                    file_exposes_key = group_or_other_readable(&path);
                }
                file = Some(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit_file.is_none() => {}
            Err(source) => return Err(ConfigError::Read { path, source }),
        }
    }

    for key in KEYS {
        if let Some(raw) = env.var(key.env) {
            let v = parse_raw(key, &raw, &Source::Env(key.env))?;
            merged.insert(key.name.into(), v);
            sources.insert(key.name, Source::Env(key.env));
        }
    }
    for (k, raw) in flags {
        let key = find(k).ok_or_else(|| ConfigError::UnknownKey {
            key: k.clone(),
            origin: Source::Flag,
            known: known_keys(),
        })?;
        let v = parse_raw(key, raw, &Source::Flag)?;
        merged.insert(key.name.into(), v);
        sources.insert(key.name, Source::Flag);
    }

    // Check each key alone first, so the error names the key and its source.
    for (k, v) in &merged {
        let mut one = toml::Table::new();
        one.insert(k.clone(), v.clone());
        if let Err(e) = toml::Value::Table(one).try_into::<Config>() {
            let key = find(k).map(|k| k.name).unwrap_or("?");
            return Err(ConfigError::BadValue {
                key: k.clone(),
                origin: sources.get(key).cloned().unwrap_or(Source::Default),
                message: e.message().to_string(),
            });
        }
    }
    let config: Config =
        toml::Value::Table(merged)
            .try_into()
            .map_err(|e| ConfigError::BadValue {
                key: "?".into(),
                origin: Source::Default,
                message: e.message().to_string(),
            })?;
    validate(&config, &sources)?;
    Ok(Resolved {
        config,
        sources,
        file,
        file_exposes_key,
    })
}

fn validate(c: &Config, sources: &BTreeMap<&'static str, Source>) -> Result<(), ConfigError> {
    let bad = |key: &'static str, message: &str| ConfigError::BadValue {
        key: key.into(),
        origin: sources.get(key).cloned().unwrap_or(Source::Default),
        message: message.into(),
    };
    if c.concurrency == 0 || c.concurrency > 64 {
        return Err(bad("concurrency", "must be between 1 and 64"));
    }
    if c.max_content_bytes == 0 || c.max_content_bytes > 16 << 20 {
        return Err(bad("max_content_bytes", "must be between 1 and 16 MiB"));
    }
    if c.max_metadata_bytes > 1 << 20 {
        return Err(bad("max_metadata_bytes", "must be at most 1 MiB"));
    }
    if c.default_project.trim().is_empty() || c.default_project.chars().any(char::is_whitespace) {
        return Err(bad(
            "default_project",
            "must be non-empty and hold no whitespace (Mem0 rejects such ids)",
        ));
    }
    for (key, d) in [
        ("connect_timeout", c.connect_timeout),
        ("add_timeout", c.add_timeout),
        ("search_timeout", c.search_timeout),
        ("sync_interval", c.sync_interval),
    ] {
        if d.is_zero() {
            return Err(bad(key, "must be more than zero"));
        }
    }
    if let Some(url) = &c.api_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(bad("api_url", "must start with http:// or https://"));
    }
    if !RECALL_MAX_CHARS_RANGE.contains(&c.recall_max_chars) {
        return Err(bad(
            "recall_max_chars",
            &format!(
                "must be between {} and {} (Claude Code moves a hook's output over 10,000 characters to a file)",
                RECALL_MAX_CHARS_RANGE.start(),
                RECALL_MAX_CHARS_RANGE.end()
            ),
        ));
    }
    if c.recall_timeout > RECALL_TIMEOUT_MAX {
        return Err(bad("recall_timeout", "must be at most 5s"));
    }
    for (folder, name) in &c.projects {
        if folder.trim().is_empty() {
            return Err(bad("projects", "a folder is empty"));
        }
        if name.trim().is_empty() || name.chars().any(char::is_whitespace) {
            return Err(bad(
                "projects",
                &format!(
                    "the project of {folder} must be non-empty and hold no whitespace (Mem0 rejects such ids)"
                ),
            ));
        }
    }
    if c.daemon_bind.parse::<std::net::IpAddr>().is_err() {
        return Err(bad(
            "daemon_bind",
            "must be an IP address, e.g. 127.0.0.1 (a host name is not accepted)",
        ));
    }
    Ok(())
}

fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

fn known_keys() -> String {
    KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

/// Turns an env or flag string into the TOML value the key expects.
fn parse_raw(key: &Key, raw: &str, source: &Source) -> Result<toml::Value, ConfigError> {
    let bad = |message: String| ConfigError::BadValue {
        key: key.name.into(),
        origin: source.clone(),
        message,
    };
    Ok(match key.ty {
        Ty::Str | Ty::Secret | Ty::Path | Ty::Duration | Ty::Kind => {
            toml::Value::String(raw.to_string())
        }
        Ty::Bool => match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => toml::Value::Boolean(true),
            "0" | "false" | "no" | "off" => toml::Value::Boolean(false),
            _ => return Err(bad(format!("`{raw}` is not a boolean (true/false)"))),
        },
        Ty::Int => toml::Value::Integer(
            raw.trim()
                .parse::<i64>()
                .map_err(|_| bad(format!("`{raw}` is not a whole number")))?,
        ),
        Ty::Map => {
            let mut table = toml::Table::new();
            for pair in raw.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .rsplit_once('=')
                    .ok_or_else(|| bad(format!("`{pair}` is not FOLDER=NAME")))?;
                table.insert(k.trim().into(), toml::Value::String(v.trim().into()));
            }
            toml::Value::Table(table)
        }
    })
}

#[cfg(unix)]
fn group_or_other_readable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o044 != 0)
        .unwrap_or(false)
}

impl Resolved {
    /// Where the daemon listens: `daemon_bind`:`daemon_port`. A non-loopback
    /// address is refused unless `daemon_allow_remote` is true (the MCP
    /// specification: a local server binds to localhost only).
    pub fn daemon_listen(&self) -> Result<std::net::SocketAddr, ConfigError> {
        let c = &self.config;
        let ip: std::net::IpAddr = c.daemon_bind.parse().map_err(|_| ConfigError::BadValue {
            key: "daemon_bind".into(),
            origin: self.source("daemon_bind"),
            message: "must be an IP address, e.g. 127.0.0.1".into(),
        })?;
        if !ip.is_loopback() && !c.daemon_allow_remote {
            return Err(ConfigError::BadValue {
                key: "daemon_bind".into(),
                origin: self.source("daemon_bind"),
                message: format!(
                    "{ip} is not a loopback address: other machines could reach the daemon. \
                     Set daemon_allow_remote = true (or pass --allow-remote) to mean it; every \
                     request still needs the token"
                ),
            });
        }
        Ok(std::net::SocketAddr::new(ip, c.daemon_port))
    }

    fn source(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
    }

    /// `config show`: every key, its value (secrets redacted) and its source.
    pub fn show(&self) -> String {
        let value =
            toml::Value::try_from(&self.config).unwrap_or(toml::Value::Table(Default::default()));
        let mut out = String::new();
        if let Some(f) = &self.file {
            out.push_str(&format!("# config file: {}\n", f.display()));
        } else {
            out.push_str("# config file: none (defaults, env and flags only)\n");
        }
        for key in KEYS {
            let shown = match (key.ty, value.get(key.name)) {
                (_, None) => "(unset)".to_string(),
                (Ty::Secret, Some(_)) => "\"<redacted>\"".to_string(),
                (Ty::Map, Some(toml::Value::Table(t))) => format!(
                    "{{{}}}",
                    t.iter()
                        .map(|(k, v)| format!(" {} = {}", toml::Value::String(k.clone()), v))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                (_, Some(v)) => v.to_string(),
            };
            let source = self
                .sources
                .get(key.name)
                .cloned()
                .unwrap_or(Source::Default);
            out.push_str(&format!("{:<20} = {:<40} # {source}\n", key.name, shown));
        }
        out
    }

    /// The same as JSON, secrets redacted.
    pub fn show_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        let value = serde_json::to_value(&self.config).unwrap_or_default();
        for key in KEYS {
            let v = value
                .get(key.name)
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            let v = match key.ty {
                Ty::Secret if !v.is_null() => serde_json::Value::String("<redacted>".into()),
                _ => v,
            };
            let source = self
                .sources
                .get(key.name)
                .cloned()
                .unwrap_or(Source::Default);
            map.insert(
                key.name.into(),
                serde_json::json!({"value": v, "source": source.to_string()}),
            );
        }
        serde_json::Value::Object(map)
    }
}

/// The commented sample `config init` writes.
pub fn sample() -> String {
    let mut out = String::from(
        "# mem0-queue configuration. Every key can be overridden by its env variable\n\
         # (shown below) and by `--set key=value` on the command line.\n\
         # This file may hold an API key: keep it mode 0600.\n\n",
    );
    for key in KEYS {
        out.push_str(&format!("# {}\n# env: {}\n", key.help, key.env));
        if let Ty::Map = key.ty {
            out.push_str(&format!(
                "# [{}]\n# \"~/code/acme\" = \"acme\"\n\n",
                key.name
            ));
            continue;
        }
        match key.default {
            Some(d) => out.push_str(&format!("# {} = {d}\n\n", key.name)),
            None => out.push_str(&format!("# {} = \n\n", key.name)),
        }
    }
    out
}

/// Writes the sample with mode 0600; refuses to overwrite.
pub fn write_sample(path: &Path) -> Result<(), ConfigError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ConfigError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                ConfigError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                ConfigError::Write {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    f.write_all(sample().as_bytes())
        .map_err(|source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> (tempdir::Dir, PathBuf) {
        let d = tempdir::Dir::new();
        let p = d.path().join("config.toml");
        std::fs::write(&p, text).expect("write");
        (d, p)
    }

    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "mq-config-test-{}-{}",
                    std::process::id(),
                    uuid::Uuid::now_v7()
                ));
                std::fs::create_dir_all(&p).expect("mkdir");
                Self(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn precedence_is_file_then_env_then_flag() {
        let (_d, p) = file("concurrency = 2\napi_url = \"http://127.0.0.1:1\"\ninfer = false\n");
        let e = env(&[
            ("MEM0_QUEUE_CONCURRENCY", "3"),
            ("MEM0_API_URL", "http://127.0.0.1:2"),
        ]);
        let flags = vec![("concurrency".to_string(), "5".to_string())];
        let r = resolve(&e, Some(&p), &flags).expect("resolves");
        assert_eq!(r.config.concurrency, 5);
        assert_eq!(r.sources["concurrency"], Source::Flag);
        assert_eq!(r.config.api_url.as_deref(), Some("http://127.0.0.1:2"));
        assert_eq!(r.sources["api_url"], Source::Env("MEM0_API_URL"));
        assert!(!r.config.infer);
        assert_eq!(r.sources["infer"], Source::File(p.clone()));
        assert_eq!(r.sources["add_timeout"], Source::Default);
    }

    #[test]
    fn unknown_key_names_the_key_and_file() {
        let (_d, p) = file("concurency = 2\n");
        let err = resolve(&env(&[]), Some(&p), &[]).expect_err("unknown key");
        let text = err.to_string();
        assert!(text.contains("concurency"), "{text}");
        assert!(text.contains(&p.display().to_string()), "{text}");
    }

    #[test]
    fn bad_value_names_the_key_and_source() {
        let (_d, p) = file("add_timeout = \"soon\"\n");
        let text = resolve(&env(&[]), Some(&p), &[])
            .expect_err("bad")
            .to_string();
        assert!(
            text.contains("add_timeout") && text.contains("config.toml"),
            "{text}"
        );
        let e = env(&[("MEM0_QUEUE_INFER", "maybe")]);
        let text = resolve(&e, Some(&p.with_file_name("none.toml")), &[])
            .map(|_| ())
            .expect_err("missing explicit file")
            .to_string();
        assert!(text.contains("none.toml"), "{text}");
        let (_d2, p2) = file("");
        let text = resolve(&e, Some(&p2), &[])
            .expect_err("bad bool")
            .to_string();
        assert!(
            text.contains("infer") && text.contains("MEM0_QUEUE_INFER"),
            "{text}"
        );
    }

    #[test]
    fn durations_parse_as_humantime() {
        let e = env(&[
            ("MEM0_QUEUE_CONNECT_TIMEOUT", "2s"),
            ("MEM0_QUEUE_ADD_TIMEOUT", "1m 30s"),
        ]);
        let (_d, p) = file("");
        let r = resolve(&e, Some(&p), &[]).expect("ok");
        assert_eq!(r.config.connect_timeout, Duration::from_secs(2));
        assert_eq!(r.config.add_timeout, Duration::from_secs(90));
    }

    #[test]
    fn the_sample_parses_and_show_redacts_the_key() {
        let (_d, p) = file(&sample());
        let r =
            resolve(&env(&[("MEM0_API_KEY", "m0-secret")]), Some(&p), &[]).expect("sample parses");
        let shown = r.show();
        assert!(!shown.contains("m0-secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert!(!r.show_json().to_string().contains("m0-secret"));
    }

    #[test]
    fn recall_capture_and_projects_parse_and_are_bounded() {
        let (_d, p) = file(
            "recall = false\nrecall_max_chars = 3000\nrecall_timeout = \"150ms\"\n\
             capture = \"pre-compact\"\n[projects]\n\"~/code/acme\" = \"acme\"\n",
        );
        let r = resolve(&env(&[]), Some(&p), &[]).expect("ok");
        assert!(!r.config.recall);
        assert_eq!(r.config.recall_max_chars, 3000);
        assert_eq!(r.config.recall_timeout, Duration::from_millis(150));
        assert_eq!(r.config.capture, CaptureAt::PreCompact);
        assert_eq!(r.config.projects["~/code/acme"], "acme");
        assert!(
            r.show().contains("\"~/code/acme\" = \"acme\""),
            "{}",
            r.show()
        );

        let d = Config::default();
        assert!(d.recall && d.capture == CaptureAt::Off);
        assert_eq!(d.recall_timeout, Duration::from_millis(300));

        let e = env(&[
            ("MEM0_QUEUE_PROJECTS", "/a/b=bee; /c = sea"),
            ("MEM0_QUEUE_CAPTURE", "session-end"),
        ]);
        let r = resolve(&e, Some(&p.with_file_name("none")), &[]).map(|_| ());
        assert!(r.is_err(), "an explicit missing file is an error");
        let (_d2, empty) = file("");
        let r = resolve(&e, Some(&empty), &[]).expect("ok");
        assert_eq!(r.config.projects["/a/b"], "bee");
        assert_eq!(r.config.projects["/c"], "sea");
        assert_eq!(r.config.capture, CaptureAt::SessionEnd);

        for (k, v) in [
            ("recall_max_chars", "100"),
            ("recall_max_chars", "20000"),
            ("recall_timeout", "6s"),
            ("capture", "always"),
            ("projects", "/x=two words"),
            ("projects", "no-equals-sign"),
        ] {
            let flags = vec![(k.to_string(), v.to_string())];
            let err = resolve(&env(&[]), Some(&empty), &flags)
                .map(|_| ())
                .expect_err(v)
                .to_string();
            assert!(err.contains(k), "{err}");
        }
        let flags = vec![("recall_timeout".to_string(), "0s".to_string())];
        assert!(
            resolve(&env(&[]), Some(&empty), &flags).is_ok(),
            "0s: local only"
        );
    }

    #[test]
    fn a_key_in_a_world_readable_file_is_flagged() {
        use std::os::unix::fs::PermissionsExt;
        let (_d, p) = file("api_key = \"m0-x\"\n");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(
            resolve(&env(&[]), Some(&p), &[])
                .expect("ok")
                .file_exposes_key
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(
            !resolve(&env(&[]), Some(&p), &[])
                .expect("ok")
                .file_exposes_key
        );
    }
}
