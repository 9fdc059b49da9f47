//! The Claude Code plugin (`.claude-plugin/marketplace.json` at the root,
//! the plugin in `plugins/mem0-queue/`) with the real Claude Code CLI, and
//! the MCP Registry's `server.json`.
//!
//! - The CLI, pinned in `tests/claude/package.json`, validates both
//!   manifests (`--strict`), adds the repository as a marketplace and
//!   installs the plugin in a throwaway HOME, offline; without `mem0-queue`
//!   on PATH the plugin's server fails and its log holds the install
//!   advice; with the binary under test on PATH it shows `✔ Connected`, on
//!   a data dir inside the throwaway HOME; `plugin details` lists the three
//!   hooks and the server.
//! - `scripts/run-hook.sh` never breaks a session: with no binary, or one
//!   without the event's hook, it exits 0 with nothing on stdout and one
//!   line on stderr; otherwise it hands stdin over to `mem0-queue hook`.
//! - `server.json` is valid against the registry's schema (a copy in
//!   `tests/fixtures/mcp-registry/`), and its version, the plugin's and the
//!   workspace's are the same.
//!
//! The CLI is installed by `.ci/run` under `tests/claude/` and python's
//! `jsonschema` by its pip line. Where either is missing on a developer's
//! machine the test that needs it says so and passes; in CI (`CI` set) it
//! fails.

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use mem0_queue_testkit::process::required;
use mem0_queue_testkit::{
    bin,
    ops::text,
    process::{hook_sync_pid, running},
    sandbox::{Sandbox, TempDir, clean_command, workspace_root},
    wait,
};
use serde_json::Value;

/// The longest one `claude` command may take. `mcp list` waits for the
/// server's handshake (bounded by [`MCP_TIMEOUT_MS`]); the others are local
/// file work that takes well under a second.
const CLAUDE_LIMIT: Duration = Duration::from_secs(30);

/// Claude Code's MCP startup timeout for the test (its default is 30 s): a
/// connected server answers within a couple of seconds, so a hang fails the
/// test sooner.
const MCP_TIMEOUT_MS: &str = "15000";

/// The longest the wrapper scripts or the python check may run.
const SCRIPT_LIMIT: Duration = Duration::from_secs(20);

/// The PATH of the system tools (`sh` for the wrapper scripts), without
/// the developer's own bin dirs, where a real mem0-queue may be installed.
const SYSTEM_PATH: &str = "/usr/bin:/bin";

/// The plugin's server id in `claude mcp list`.
const SERVER_ID: &str = "plugin:mem0-queue:mem0-queue";

/// What every missing-binary line names (the install command of
/// `scripts/find-mem0-queue.sh`).
const INSTALL_ADVICE: &str = "cargo install --locked";

/// The plugin's folder in the repository.
fn plugin_dir() -> PathBuf {
    workspace_root().join("plugins/mem0-queue")
}

/// The pinned Claude Code CLI, if installed.
fn claude() -> Option<PathBuf> {
    let exe = workspace_root().join("tests/claude/node_modules/.bin/claude");
    required(
        exe.exists().then_some(exe),
        "the Claude Code CLI is not installed under tests/claude \
         (npm install --silent --no-package-lock --prefix tests/claude)",
    )
}

/// The real CLI in a throwaway HOME, offline: no updater, telemetry or
/// official marketplace, and a proxy on a closed loopback port so any
/// request it would still make fails at once instead of leaving the machine.
struct Claude {
    exe: PathBuf,
    sb: Sandbox,
    /// The cwd of every command (Claude Code keys its logs on it).
    project: PathBuf,
}

impl Claude {
    fn new(exe: PathBuf) -> Self {
        let sb = Sandbox::new(bin!());
        let project = sb.home().join("project");
        std::fs::create_dir(&project).expect("the project dir");
        Self { exe, sb, project }
    }

    /// The data dir the plugin's server must use, inside the throwaway HOME.
    fn data_dir(&self) -> PathBuf {
        self.sb.home().join("mq-data")
    }

    /// Runs `claude ARGS` with `path` as PATH; bounded by [`CLAUDE_LIMIT`].
    fn run(&self, path: &str, args: &[&str]) -> Output {
        let mut c = clean_command(&self.exe, &self.sb.home(), Some(path.as_ref()));
        c.args(args)
            .current_dir(&self.project)
            .env("DISABLE_AUTOUPDATER", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL", "1")
            .env("MCP_TIMEOUT", MCP_TIMEOUT_MS)
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("MEM0_QUEUE_HOME", self.data_dir())
            .stdin(Stdio::null());
        wait::run(c, CLAUDE_LIMIT)
    }

    /// [`run`](Self::run), expecting exit 0; returns stdout.
    fn ok(&self, path: &str, args: &[&str]) -> String {
        let o = self.run(path, args);
        let (out, err) = text(&o);
        assert!(
            o.status.success(),
            "claude {args:?}: {}\nstdout:\n{out}\nstderr:\n{err}",
            o.status
        );
        out
    }

    /// The plugin server's line of `claude mcp list` (which exits 0 even
    /// when a server fails, so the line is what tells).
    fn server_line(&self, path: &str) -> String {
        let out = self.ok(path, &["mcp", "list"]);
        out.lines()
            .find(|l| l.starts_with(&format!("{SERVER_ID}: ")))
            .unwrap_or_else(|| panic!("no {SERVER_ID} in `claude mcp list`:\n{out}"))
            .to_string()
    }

    /// What Claude Code logged about the plugin server (its stderr included).
    fn server_log(&self) -> String {
        let mut logs = String::new();
        let mut dirs = vec![self.sb.home().join(".cache")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if d.ends_with("mcp-logs-plugin-mem0-queue-mem0-queue") {
                    logs += &std::fs::read_to_string(&p).unwrap_or_default();
                }
            }
        }
        logs
    }
}

#[test]
fn the_real_cli_validates_installs_and_connects_the_plugin() {
    let Some(exe) = claude() else { return };
    let cc = Claude::new(exe);
    let root = workspace_root();
    let root_s = root.display().to_string();
    let plugin_s = plugin_dir().display().to_string();

    // Both manifests, warnings counted as errors.
    for dir in [&root_s, &plugin_s] {
        let out = cc.ok(SYSTEM_PATH, &["plugin", "validate", dir, "--strict"]);
        assert!(out.contains("✔ Validation passed"), "{dir}:\n{out}");
    }
    let out = cc.ok(SYSTEM_PATH, &["plugin", "validate", &plugin_s]);
    for provides in [
        "hooks: SessionStart startup|resume|clear|compact",
        "hooks: SessionEnd",
        "hooks: PreCompact",
        "mcpServers: mem0-queue stdio",
    ] {
        assert!(out.contains(provides), "{provides}:\n{out}");
    }

    let out = cc.ok(SYSTEM_PATH, &["plugin", "marketplace", "add", &root_s]);
    assert!(
        out.contains("Successfully added marketplace: mem0-queue"),
        "{out}"
    );
    let out = cc.ok(SYSTEM_PATH, &["plugin", "install", "mem0-queue@mem0-queue"]);
    assert!(
        out.contains("Successfully installed plugin: mem0-queue@mem0-queue"),
        "{out}"
    );

    // No mem0-queue anywhere: the server fails, and its log says how to
    // install the binary (run-server.sh's stderr).
    assert!(
        !SYSTEM_PATH
            .split(':')
            .any(|d| Path::new(d).join("mem0-queue").exists()),
        "a mem0-queue is installed in {SYSTEM_PATH}: this test needs a machine without one there"
    );
    let line = cc.server_line(SYSTEM_PATH);
    assert!(line.contains("✘ Failed"), "{line}");
    let log = cc.server_log();
    assert!(
        log.contains("mem0-queue is not installed") && log.contains(INSTALL_ADVICE),
        "the server's log does not carry the install advice:\n{log}"
    );

    // The binary under test on PATH: connected, on the data dir given to
    // Claude Code (so the environment reaches the server), not on the
    // default one under HOME.
    symlink(bin!(), cc.sb.bin_dir().join("mem0-queue")).expect("symlink mem0-queue");
    let path = format!("{}:{SYSTEM_PATH}", cc.sb.bin_dir().display());
    let line = cc.server_line(&path);
    assert!(line.ends_with("✔ Connected"), "{line}");
    assert!(
        line.contains("plugins/mem0-queue/scripts/run-server.sh"),
        "{line}"
    );
    assert!(
        cc.data_dir().join("queue.db").exists(),
        "the server did not use MEM0_QUEUE_HOME={}",
        cc.data_dir().display()
    );
    assert!(
        !cc.sb.home().join(".local/share/mem0-queue").exists(),
        "the server used the default data dir"
    );

    let out = cc.ok(&path, &["plugin", "details", "mem0-queue@mem0-queue"]);
    assert!(
        out.contains("Hooks (3)  SessionStart, SessionEnd, PreCompact"),
        "{out}"
    );
    assert!(out.contains("MCP servers (1)  mem0-queue"), "{out}");
}

/// A SessionStart payload as Claude Code sends it.
const SESSION_START: &str = r#"{"session_id":"3fb04e1a-0000-4000-8000-000000000001","transcript_path":"/nonexistent/t.jsonl","cwd":"/nonexistent","hook_event_name":"SessionStart","source":"startup"}"#;

/// Runs `sh scripts/NAME ARGS` with `payload` on stdin, HOME `home`, PATH
/// `path` and the extra `env`; bounded by [`SCRIPT_LIMIT`].
fn script(
    name: &str,
    args: &[&str],
    home: &Path,
    path: &Path,
    env: &[(&str, &Path)],
    payload: &str,
) -> Output {
    let mut c = clean_command("/bin/sh", home, Some(path.as_os_str()));
    c.arg(plugin_dir().join("scripts").join(name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("spawn sh");
    let mut stdin = child.stdin.take().expect("stdin");
    // The script may exit without reading: a broken pipe is fine.
    let _ = stdin.write_all(payload.as_bytes());
    drop(stdin);
    wait::output(child, SCRIPT_LIMIT, name)
}

/// Asserts exit `code`, an empty stdout and exactly one stderr line
/// holding `needle`.
fn assert_one_line(o: &Output, code: i32, needle: &str) {
    let (out, err) = text(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.is_empty(), "stdout must stay empty, got:\n{out}");
    assert_eq!(err.lines().count(), 1, "one line on stderr, got:\n{err}");
    assert!(err.contains(needle), "{needle:?} not in:\n{err}");
}

#[test]
fn without_the_binary_the_hooks_exit_0_and_say_how_to_install_on_stderr() {
    // A PATH with no mem0-queue, and no ~/.cargo/bin in the HOME.
    let home = TempDir::new("plugin-home");
    let empty = TempDir::new("plugin-path");
    for event in ["session-start", "session-end", "pre-compact"] {
        let o = script(
            "run-hook.sh",
            &[event],
            home.path(),
            empty.path(),
            &[],
            SESSION_START,
        );
        assert_one_line(&o, 0, INSTALL_ADVICE);
    }
    // The server cannot run: exit 1 (Claude Code shows it failed), the same
    // advice on stderr, nothing on stdout (the MCP stream).
    let o = script("run-server.sh", &[], home.path(), empty.path(), &[], "");
    assert_one_line(&o, 1, INSTALL_ADVICE);
}

#[test]
fn a_binary_without_the_events_hook_is_skipped_quietly() {
    // MEM0_QUEUE_BIN is the binary under test, which has no such hook (like
    // a binary older than the plugin).
    let home = TempDir::new("plugin-home");
    let empty = TempDir::new("plugin-path");
    let o = script(
        "run-hook.sh",
        &["no-such-event"],
        home.path(),
        empty.path(),
        &[("MEM0_QUEUE_BIN", Path::new(bin!()))],
        SESSION_START,
    );
    assert_one_line(
        &o,
        0,
        r#"has no "hook no-such-event"; update it: cargo install"#,
    );
}

#[test]
fn the_hook_finds_the_binary_in_cargo_bin_and_hands_it_stdin() {
    // Not on PATH, only in ~/.cargo/bin (Claude Code started from a desktop
    // launcher): session-end runs, and its log names the session read from
    // the payload on stdin.
    let sb = Sandbox::new(bin!());
    let cargo_bin = sb.home().join(".cargo/bin");
    std::fs::create_dir_all(&cargo_bin).expect("mkdir ~/.cargo/bin");
    symlink(bin!(), cargo_bin.join("mem0-queue")).expect("symlink");
    let session = "plugin-hook-stdin-1";
    let payload = format!(
        r#"{{"session_id":"{session}","transcript_path":"/nonexistent/t.jsonl","cwd":"/nonexistent","hook_event_name":"SessionEnd","reason":"other"}}"#
    );
    let data = sb.data_dir();
    let o = script(
        "run-hook.sh",
        &["session-end"],
        &sb.home(),
        &sb.bin_dir(),
        &[("MEM0_QUEUE_HOME", &data)],
        &payload,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    let log = std::fs::read_to_string(data.join("mem0_worker.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("hook session-end: session {session} (other)")),
        "the hook did not read the session from stdin; worker log:\n{log}"
    );
    // No Mem0 server is configured, so no sync should start; if one does,
    // it ends before the sandbox goes away.
    if let Some(pid) = hook_sync_pid(&log, session) {
        assert!(
            wait::until(SCRIPT_LIMIT, || !running(pid)),
            "the detached sync {pid} did not end"
        );
    }
}

/// python3 with `jsonschema`, if present.
fn python_jsonschema() -> Option<()> {
    let o = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
        .map(|c| wait::output(c, SCRIPT_LIMIT, "python3"));
    required(
        o.filter(|o| o.status.success()).map(|_| ()),
        "python3 with jsonschema is missing (python3 -m pip install jsonschema)",
    )
}

fn json(rel: &str) -> Value {
    let p = workspace_root().join(rel);
    serde_json::from_slice(&std::fs::read(&p).expect(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn server_json_is_valid_and_every_version_is_the_workspaces() {
    let root = workspace_root();
    let server = json("server.json");
    let plugin = json("plugins/mem0-queue/.claude-plugin/plugin.json");
    let market = json(".claude-plugin/marketplace.json");
    let cargo: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .expect("Cargo.toml")
        .parse()
        .expect("Cargo.toml is TOML");
    let version = cargo["workspace"]["package"]["version"]
        .as_str()
        .expect("workspace.package.version");

    // One version for the release: the workspace's, the registry entry's
    // and its package's, the plugin's (the marketplace entry leaves it to
    // plugin.json, or agrees).
    assert_eq!(server["version"], version, "server.json version");
    assert_eq!(
        server["packages"][0]["version"], version,
        "server.json package version"
    );
    assert_eq!(plugin["version"], version, "plugin.json version");
    let entry = &market["plugins"][0];
    assert_eq!(entry["source"], "./plugins/mem0-queue");
    assert!(
        entry.get("version").is_none() || entry["version"] == version,
        "marketplace.json's plugin version"
    );

    // One owner: the registry name, the repository of both, and the README's
    // ownership line on crates.io.
    let name = server["name"].as_str().expect("server.json name");
    let owner = name
        .strip_prefix("io.github.")
        .and_then(|n| n.strip_suffix("/mem0-queue"))
        .expect("io.github.<owner>/mem0-queue");
    let repo = format!("https://github.com/{owner}/mem0-queue");
    assert_eq!(server["repository"]["url"], repo.as_str());
    assert_eq!(plugin["repository"], repo.as_str());
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    assert!(
        readme.contains(&format!("mcp-name: {name}")),
        "README.md lacks the visible line `mcp-name: {name}`"
    );

    let Some(()) = python_jsonschema() else {
        return;
    };
    let check = "import json, sys, jsonschema\n\
                 schema = json.load(open(sys.argv[1]))\n\
                 server = json.load(open(sys.argv[2]))\n\
                 assert server['$schema'] == schema['$id'], (server['$schema'], schema['$id'])\n\
                 jsonschema.Draft7Validator.check_schema(schema)\n\
                 errors = [f'{list(e.path)}: {e.message}' for e in jsonschema.Draft7Validator(schema).iter_errors(server)]\n\
                 print('\\n'.join(errors))\n\
                 sys.exit(1 if errors else 0)\n";
    let c = Command::new("python3")
        .args(["-c", check])
        .arg(root.join("tests/fixtures/mcp-registry/server.schema.json"))
        .arg(root.join("server.json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let o = wait::output(c, SCRIPT_LIMIT, "python3");
    let (out, err) = text(&o);
    assert!(
        o.status.success(),
        "server.json is not valid against the registry schema:\n{out}{err}"
    );
}
