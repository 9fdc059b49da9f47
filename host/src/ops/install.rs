//! `mem0-queue install claude-code` / `uninstall claude-code`: registers the
//! MCP server at user scope in Claude Code's `~/.claude.json` and adds the
//! SessionStart, SessionEnd and PreCompact hooks (the plugin's three) to
//! `~/.claude/settings.json` (both under `$CLAUDE_CONFIG_DIR` instead when
//! that is set, as Claude Code does), for users who do not use plugins.
//! The server is a `serve` command (stdio), or with `--http` the daemon's
//! endpoint with its bearer token, in the shape `claude mcp add --transport
//! http --header "Authorization: Bearer …"` writes:
//! `{"type": "http", "url": …, "headers": {"Authorization": "Bearer …"}}`.
//!
//! The edits are surgical: each file is parsed into an order-keeping JSON
//! tree ([`Doc`]), only our entries are added, updated or removed, and every
//! other key is written back in its place. A file whose content would not
//! change is not written at all (a second run is byte-identical). A file that
//! does change is first copied to `<file>.bak.<unix-time>` (mode kept), then
//! replaced atomically (temp file + rename, mode kept, through a symlink to
//! its target). `--dry-run` prints the diff and writes nothing.
//!
//! The shared helpers ([`InstalledCommand`], [`write_file`], [`backup`],
//! [`print_diff`], [`shell_quote`]) serve `schedule` and `doctor` too.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::engine::config::{Env, ProcessEnv, Resolved, Source};
use crate::ops::Invocation;

/// The name of our MCP server in Claude Code's config.
pub const MCP_NAME: &str = "mem0-queue";

/// One of our hooks in Claude Code's settings.
#[derive(Debug, Clone, Copy)]
pub struct HookSpec {
    /// Claude Code's event.
    pub event: &'static str,
    /// The subcommand; also how our entries of this event are recognised.
    pub args: &'static str,
    /// Its timeout, seconds (the plugin's `hooks/hooks.json` has the same).
    pub timeout_s: u64,
}

/// The hooks `install claude-code` adds, as the plugin declares them:
/// recall at session start (it waits at most `recall_timeout` for Mem0);
/// the detached sync at session end (SessionEnd hooks get 1.5 s in all
/// unless a settings file raises it); the capture before a compaction.
pub const HOOKS: [HookSpec; 3] = [
    HookSpec {
        event: "SessionStart",
        args: "hook session-start",
        timeout_s: 10,
    },
    HookSpec {
        event: "SessionEnd",
        args: "hook session-end",
        timeout_s: 5,
    },
    HookSpec {
        event: "PreCompact",
        args: "hook pre-compact",
        timeout_s: 30,
    },
];

/// The SessionEnd hook, which `doctor` checks.
pub const SESSION_END: HookSpec = HOOKS[1];

// ---------------------------------------------------------------------------
// How the installed entries start this binary.

/// The command that installed entries run: this binary's absolute path and
/// the global flags that locate the same config and data dir.
#[derive(Debug, Clone)]
pub struct InstalledCommand {
    pub exe: PathBuf,
    /// `--config PATH`, `--data-dir DIR`, `--policy WASM` when they differ
    /// from what a bare run (cron, Claude Code) would find on its own.
    pub global: Vec<String>,
    pub data_dir: PathBuf,
}

impl InstalledCommand {
    /// This binary and the flags that make a run started by Claude Code,
    /// systemd, launchd or cron find the same config and queue as this one.
    /// Secrets (`--set api_key=…`) are never carried into a command line.
    pub fn current(inv: &Invocation) -> anyhow::Result<Self> {
        let (resolved, paths) = (&inv.resolved, &inv.paths);
        let exe = std::env::current_exe().context("cannot find this program's own path")?;
        let exe = exe.canonicalize().unwrap_or(exe);
        let home = ProcessEnv.var("HOME").map(PathBuf::from);
        let mut global = Vec::new();

        let default_config = home
            .as_ref()
            .map(|h| h.join(".config/mem0-queue/config.toml"));
        let config = crate::engine::config::config_path(&ProcessEnv, inv.config.as_deref());
        if let Some(c) = config {
            // A path given by flag exists (the config would not resolve
            // otherwise); any other is carried only when the file exists.
            if Some(&c) != default_config.as_ref() && (inv.config.is_some() || c.exists()) {
                global.push("--config".into());
                global.push(absolute(&c).display().to_string());
            }
        }

        let default_data = home.as_ref().map(|h| h.join(".local/share/mem0-queue"));
        let data_dir = absolute(&paths.data_dir);
        let from_file = matches!(resolved.sources.get("data_dir"), Some(Source::File(_)));
        if !from_file && Some(&data_dir) != default_data.as_ref() {
            global.push("--data-dir".into());
            global.push(data_dir.display().to_string());
        }

        if matches!(
            resolved.sources.get("policy"),
            Some(Source::Flag | Source::Env(_))
        ) && let Some(p) = &resolved.config.policy
        {
            global.push("--policy".into());
            global.push(absolute(p).display().to_string());
        }
        Ok(Self {
            exe,
            global,
            data_dir,
        })
    }

    /// The argv for `args` (e.g. `["serve"]`) after the global flags.
    pub fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![self.exe.display().to_string()];
        v.extend(self.global.iter().cloned());
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// The same as one shell command line.
    pub fn shell(&self, args: &[&str]) -> String {
        self.argv(args)
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The worker log a scheduled run appends to.
    pub fn worker_log(&self) -> PathBuf {
        self.data_dir.join("mem0_worker.log")
    }

    /// A note when this binary sits in a build directory that `cargo clean`
    /// or a rebuild would pull from under Claude Code and the schedule.
    pub fn build_dir_note(&self) -> Option<String> {
        let s = self.exe.display().to_string();
        (s.contains("/target/debug/") || s.contains("/target/release/")).then(|| {
            format!(
                "note: {s} is inside a cargo build directory; a `cargo clean` would break what is \
                 installed. For everyday use, `cargo install --path host` and run the installed \
                 mem0-queue's install again."
            )
        })
    }
}

/// `p` made absolute against the current dir, with `.` and `..` resolved
/// lexically (symlinks are left alone).
pub fn absolute(p: &Path) -> PathBuf {
    use std::path::Component;
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Quotes a word for a POSIX shell, only when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./,:=+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Warnings for a config that only this shell can see.
pub fn env_only_notes(resolved: &Resolved) -> Vec<String> {
    let mut notes = Vec::new();
    for key in ["api_url", "api_key", "api_kind"] {
        if let Some(Source::Env(var)) = resolved.sources.get(key) {
            notes.push(format!(
                "note: {key} comes from ${var} in this shell only; Claude Code's hook, systemd, \
                 launchd and cron do not see it. Put `{key} = ...` in the config file \
                 (`mem0-queue config init` writes one, mode 0600)."
            ));
        }
    }
    notes
}

// ---------------------------------------------------------------------------
// Claude Code's files.

/// Claude Code's two files.
#[derive(Debug, Clone)]
pub struct ClaudeFiles {
    /// `~/.claude.json` (user-scope MCP servers and much else).
    pub config: PathBuf,
    /// `~/.claude/settings.json` (hooks).
    pub settings: PathBuf,
}

impl ClaudeFiles {
    /// From `$CLAUDE_CONFIG_DIR` if set, else `$HOME`.
    pub fn locate(env: &dyn Env) -> anyhow::Result<Self> {
        if let Some(dir) = env.var("CLAUDE_CONFIG_DIR") {
            let dir = PathBuf::from(dir);
            return Ok(Self {
                config: dir.join(".claude.json"),
                settings: dir.join("settings.json"),
            });
        }
        let home = PathBuf::from(env.var("HOME").context("HOME is not set")?);
        Ok(Self {
            config: home.join(".claude.json"),
            settings: home.join(".claude/settings.json"),
        })
    }
}

/// Our MCP server entry.
fn mcp_entry(installed: &InstalledCommand) -> Doc {
    let mut args = installed.global.clone();
    args.push("serve".into());
    Doc::Object(vec![
        ("type".into(), Doc::String("stdio".into())),
        (
            "command".into(),
            Doc::String(installed.exe.display().to_string()),
        ),
        (
            "args".into(),
            Doc::Array(args.into_iter().map(Doc::String).collect()),
        ),
        ("env".into(), Doc::Object(vec![])),
    ])
}

/// Our MCP server entry for the daemon's HTTP endpoint.
pub fn http_entry(url: &str, token: &str) -> Doc {
    Doc::Object(vec![
        ("type".into(), Doc::String("http".into())),
        ("url".into(), Doc::String(url.into())),
        (
            "headers".into(),
            Doc::Object(vec![(
                "Authorization".into(),
                Doc::String(format!("Bearer {token}")),
            )]),
        ),
    ])
}

/// A hook's command line.
pub fn hook_command(installed: &InstalledCommand, spec: HookSpec) -> String {
    let args: Vec<&str> = spec.args.split(' ').collect();
    installed.shell(&args)
}

/// Whether a hook object is ours for `spec` (whatever path the binary had
/// then).
pub fn is_our_hook(h: &Doc, spec: HookSpec) -> bool {
    let cmd = h.get("command").and_then(Doc::as_str).unwrap_or("");
    h.get("type").and_then(Doc::as_str) == Some("command")
        && cmd.contains("mem0-queue")
        && cmd.trim_end().ends_with(spec.args)
}

/// Whether a hook object is the seed's worker hook.
fn is_seed_hook(h: &Doc) -> bool {
    let cmd = h.get("command").and_then(Doc::as_str).unwrap_or("");
    cmd.contains("mem0_queue_worker") || cmd.contains("pre-session-close")
}

/// What an edit did to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    Added,
    Updated,
    Removed,
}

/// Adds or updates our MCP server in a `~/.claude.json` tree.
pub fn add_mcp(root: &mut Doc, entry: Doc) -> anyhow::Result<Change> {
    let servers = root
        .object_entry("mcpServers", || Doc::Object(vec![]))
        .context("`mcpServers` is not an object")?;
    let Doc::Object(fields) = servers else {
        bail!("`mcpServers` is not an object");
    };
    match fields.iter_mut().find(|(k, _)| k == MCP_NAME) {
        None => {
            fields.push((MCP_NAME.into(), entry));
            Ok(Change::Added)
        }
        Some((_, existing)) if existing.get("type") != entry.get("type") => {
            // stdio to http or back: none of the old entry's keys apply.
            *existing = entry;
            Ok(Change::Updated)
        }
        Some((_, existing)) => {
            // Keep an `env` the user added (e.g. MEM0_API_KEY).
            let mut wanted = existing.clone();
            if !matches!(wanted, Doc::Object(_)) {
                wanted = Doc::Object(vec![]);
            }
            for (k, v) in entry.fields() {
                if k == "env" && wanted.get("env").is_some() {
                    continue;
                }
                wanted.set(k, v.clone());
            }
            if wanted == *existing {
                Ok(Change::Unchanged)
            } else {
                *existing = wanted;
                Ok(Change::Updated)
            }
        }
    }
}

/// Removes our MCP server. An emptied `mcpServers` stays (`{}`): Claude
/// Code keeps one in the file anyway.
pub fn remove_mcp(root: &mut Doc) -> Change {
    let Some(Doc::Object(fields)) = root.get_mut("mcpServers") else {
        return Change::Unchanged;
    };
    let before = fields.len();
    fields.retain(|(k, _)| k != MCP_NAME);
    if fields.len() == before {
        return Change::Unchanged;
    }
    Change::Removed
}

/// Adds or updates our hook of `spec.event` in a settings tree.
pub fn add_hook(root: &mut Doc, spec: HookSpec, command: &str) -> anyhow::Result<Change> {
    let hooks = root
        .object_entry("hooks", || Doc::Object(vec![]))
        .context("`hooks` is not an object")?;
    if !matches!(hooks, Doc::Object(_)) {
        bail!("`hooks` is not an object");
    }
    let event = hooks
        .object_entry(spec.event, || Doc::Array(vec![]))
        .context("`hooks` is not an object")?;
    let Doc::Array(groups) = event else {
        bail!("`hooks.{}` is not an array", spec.event);
    };
    let ours = Doc::Object(vec![
        ("type".into(), Doc::String("command".into())),
        ("command".into(), Doc::String(command.into())),
        ("timeout".into(), Doc::Number(spec.timeout_s.into())),
    ]);
    let mut found = false;
    let mut changed = false;
    for group in groups.iter_mut() {
        let Some(Doc::Array(list)) = group.get_mut("hooks") else {
            continue;
        };
        for h in list.iter_mut() {
            if is_our_hook(h, spec) {
                if !found {
                    let mut wanted = h.clone();
                    for (k, v) in ours.fields() {
                        wanted.set(k, v.clone());
                    }
                    if wanted != *h {
                        *h = wanted;
                        changed = true;
                    }
                }
                found = true;
            }
        }
    }
    if !found {
        groups.push(Doc::Object(vec![("hooks".into(), Doc::Array(vec![ours]))]));
        return Ok(Change::Added);
    }
    Ok(if changed {
        Change::Updated
    } else {
        Change::Unchanged
    })
}

/// Removes our hooks of `spec.event`, and the groups, list and object that
/// this leaves empty.
pub fn remove_hook(root: &mut Doc, spec: HookSpec) -> Change {
    let Some(hooks) = root.get_mut("hooks") else {
        return Change::Unchanged;
    };
    if !matches!(hooks, Doc::Object(_)) {
        return Change::Unchanged;
    }
    let Some(Doc::Array(groups)) = hooks.get_mut(spec.event) else {
        return Change::Unchanged;
    };
    let mut removed = false;
    groups.retain_mut(|group| {
        let Some(Doc::Array(list)) = group.get_mut("hooks") else {
            return true;
        };
        let before = list.len();
        list.retain(|h| !is_our_hook(h, spec));
        if list.len() == before {
            return true;
        }
        removed = true;
        !list.is_empty()
    });
    if !removed {
        return Change::Unchanged;
    }
    if groups.is_empty() {
        hooks.remove(spec.event);
        if matches!(hooks, Doc::Object(f) if f.is_empty()) {
            root.remove("hooks");
        }
    }
    Change::Removed
}

/// Our hook's command of `spec.event` in a settings tree, if installed.
pub fn installed_hook_for(root: &Doc, spec: HookSpec) -> Option<String> {
    hook_commands(root, spec.event)
        .into_iter()
        .find(|h| is_our_hook(h, spec))
        .and_then(|h| h.get("command").and_then(Doc::as_str).map(str::to_string))
}

/// Our SessionEnd hook's command in a settings tree, if installed.
pub fn installed_hook(root: &Doc) -> Option<String> {
    installed_hook_for(root, SESSION_END)
}

fn hook_commands<'a>(root: &'a Doc, event: &str) -> Vec<&'a Doc> {
    let mut out = Vec::new();
    if let Some(Doc::Array(groups)) = root.get("hooks").and_then(|h| h.get(event)) {
        for g in groups {
            if let Some(Doc::Array(list)) = g.get("hooks") {
                out.extend(list.iter());
            }
        }
    }
    out
}

/// The seed's hook commands still in a settings tree (any event).
pub fn seed_hooks(root: &Doc) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(Doc::Object(events)) = root.get("hooks") {
        for (event, _) in events {
            for h in hook_commands(root, event) {
                if is_seed_hook(h)
                    && let Some(c) = h.get("command").and_then(Doc::as_str)
                {
                    out.push(format!("{event}: {c}"));
                }
            }
        }
    }
    out
}

/// The plugin's id in Claude Code (`<plugin>@<marketplace>`), as
/// `claude plugin install` writes it into `enabledPlugins`.
pub const PLUGIN_ID: &str = "mem0-queue@mem0-queue";

/// Whether the mem0-queue plugin is enabled in a settings tree
/// (`enabledPlugins["mem0-queue@mem0-queue"] == true`): it then registers
/// the MCP server and the SessionStart, SessionEnd and PreCompact hooks.
pub fn plugin_enabled(root: &Doc) -> bool {
    matches!(
        root.get("enabledPlugins").and_then(|p| p.get(PLUGIN_ID)),
        Some(Doc::Bool(true))
    )
}

/// Our MCP server entry in a `~/.claude.json` tree, if registered.
pub fn installed_mcp(root: &Doc) -> Option<&Doc> {
    root.get("mcpServers").and_then(|s| s.get(MCP_NAME))
}

/// `mem0-queue install claude-code` and `uninstall claude-code`: edits
/// Claude Code's two files and writes what it did to `out`.
pub fn claude_code(
    inv: &Invocation,
    install: bool,
    dry_run: bool,
    http: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let files = ClaudeFiles::locate(&ProcessEnv)?;
    let installed = InstalledCommand::current(inv)?;
    let stamp = unix_now();
    let verb = if install { "install" } else { "uninstall" };
    writeln!(
        out,
        "mem0-queue {verb} claude-code{}{}",
        if http && install { " --http" } else { "" },
        if dry_run {
            " (dry run: nothing is written)"
        } else {
            ""
        }
    )?;

    let http_url = if http && install {
        Some(crate::engine::daemon::mcp_url(
            inv.resolved.daemon_listen()?,
        ))
    } else {
        None
    };
    let entry = match &http_url {
        Some(url) => {
            // The daemon's token: made now (0600, in the data dir) if the
            // daemon never ran, so both agree from its first start.
            let token = if dry_run {
                crate::engine::daemon::read_token(&inv.paths)?
                    .unwrap_or_else(|| "<the token made at install>".into())
            } else {
                crate::engine::daemon::token(&inv.paths)?
            };
            http_entry(url, &token)
        }
        None => mcp_entry(&installed),
    };
    let mut any = false;

    let would = |done: &str, future: &str| {
        if dry_run {
            format!("would {future}")
        } else {
            done.to_string()
        }
    };

    // ~/.claude.json: the MCP server.
    let mut detail = Vec::new();
    let c = edit_json(&files.config, dry_run, stamp, &mut detail, |doc| {
        if install {
            add_mcp(doc, entry.clone())
        } else {
            Ok(remove_mcp(doc))
        }
    })?;
    any |= c != Change::Unchanged;
    let how = match &http_url {
        Some(url) => format!(" at {url}"),
        None => String::new(),
    };
    writeln!(
        out,
        "  {}: {}",
        files.config.display(),
        match c {
            Change::Added =>
                would("registered", "register")
                    + &format!(" the MCP server \"{MCP_NAME}\"{how} (user scope)"),
            Change::Updated =>
                would("updated", "update") + &format!(" the MCP server \"{MCP_NAME}\"{how}"),
            Change::Removed =>
                would("removed", "remove") + &format!(" the MCP server \"{MCP_NAME}\""),
            Change::Unchanged if install =>
                format!("the MCP server \"{MCP_NAME}\" is registered already; unchanged"),
            Change::Unchanged => format!("no MCP server \"{MCP_NAME}\"; unchanged"),
        }
    )?;
    out.write_all(&detail)?;
    if http_url.is_some() && !dry_run {
        secret_file_note(&files.config, out)?;
    }

    // ~/.claude/settings.json: the hooks.
    let mut seed = Vec::new();
    let mut detail = Vec::new();
    let mut plugin = false;
    let mut changes = Vec::new();
    let c = edit_json(&files.settings, dry_run, stamp, &mut detail, |doc| {
        seed = seed_hooks(doc);
        plugin = plugin_enabled(doc);
        changes.clear();
        for spec in HOOKS {
            let c = if install {
                add_hook(doc, spec, &hook_command(&installed, spec))?
            } else {
                remove_hook(doc, spec)
            };
            changes.push((spec, c));
        }
        Ok(if changes.iter().all(|(_, c)| *c == Change::Unchanged) {
            Change::Unchanged
        } else {
            Change::Updated
        })
    })?;
    any |= c != Change::Unchanged;
    for (spec, c) in &changes {
        let (event, hook) = (spec.event, hook_command(&installed, *spec));
        writeln!(
            out,
            "  {}: {}",
            files.settings.display(),
            match c {
                Change::Added => would("added", "add") + &format!(" the {event} hook `{hook}`"),
                Change::Updated =>
                    would("updated", "update") + &format!(" the {event} hook to `{hook}`"),
                Change::Removed => would("removed", "remove") + &format!(" the {event} hook"),
                Change::Unchanged if install =>
                    format!("the {event} hook is installed already; unchanged"),
                Change::Unchanged => format!("no mem0-queue {event} hook; unchanged"),
            }
        )?;
    }
    out.write_all(&detail)?;

    if !any {
        writeln!(out, "nothing to change")?;
    } else if dry_run {
        writeln!(out, "dry run: nothing was written")?;
    } else if install {
        writeln!(
            out,
            "done. Restart Claude Code to load the MCP server (tools mem0_save, \
             mem0_search, mem0_list and the others) and the hooks; check with \
             `mem0-queue doctor`."
        )?;
    } else {
        writeln!(out, "done. Restart Claude Code to unload the MCP server.")?;
    }
    if install && plugin {
        writeln!(
            out,
            "warning: the Claude Code plugin {PLUGIN_ID} is enabled too ({}): it registers the \
             same MCP server and hooks, so Claude Code would run two servers (every tool listed \
             twice) and each hook twice. Keep one: `mem0-queue uninstall claude-code`, or \
             `claude plugin uninstall {PLUGIN_ID}`.",
            files.settings.display()
        )?;
    }
    if let Some(url) = &http_url {
        let seen = crate::engine::daemon::probe(&inv.paths);
        match seen.record().and_then(|r| r.mcp_url.as_deref()) {
            Some(running) if running == url => {}
            Some(running) => writeln!(
                out,
                "note: the running daemon listens at {running}, not {url}: restart it \
                 (its service, or stop it and run `mem0-queue daemon`) so that it uses the \
                 configured daemon_port and daemon_bind."
            )?,
            None => writeln!(
                out,
                "note: Claude Code now talks to the daemon, which does not run yet: \
                 `mem0-queue install daemon` starts it now and at each login (or run \
                 `mem0-queue daemon` yourself)."
            )?,
        }
    }
    if install {
        for s in &seed {
            writeln!(
                out,
                "note: the seed's hook is still in {}: {s}\n      once its queue is imported \
                 (`mem0-queue import ~/.claude/mem0_queue.json`), remove it there.",
                files.settings.display()
            )?;
        }
        for n in env_only_notes(&inv.resolved) {
            writeln!(out, "{n}")?;
        }
        if let Some(n) = installed.build_dir_note() {
            writeln!(out, "{n}")?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Editing files safely.

/// After writing the daemon's token into `path`: the file must be readable
/// by its owner alone; says so, and narrows it to 0600 if it was wider.
fn secret_file_note(path: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let target = resolve_symlink(path);
    let mode = std::fs::metadata(&target)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o600);
    if mode & 0o077 != 0 {
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot chmod 600 {}", target.display()))?;
        writeln!(
            out,
            "  {}: it was mode {mode:04o}; now 0600, since it holds the daemon's token",
            path.display()
        )?;
    }
    writeln!(
        out,
        "  the token is a secret: {} holds it (mode 0600), as does the data dir's daemon.token; \
         whoever reads it can use the daemon's tools. Never paste the file anywhere.",
        path.display()
    )?;
    Ok(())
}

/// How many times an edit is redone when the file changes under it (Claude
/// Code rewrites `~/.claude.json` while it runs).
const EDIT_TRIES: usize = 3;

/// Reads `path` as JSON (missing or blank: `{}`), applies `f`, and writes
/// the result back when it differs: a backup first, then an atomic replace.
/// With `dry_run`, prints the diff instead.
pub fn edit_json(
    path: &Path,
    dry_run: bool,
    stamp: u64,
    out: &mut dyn Write,
    mut f: impl FnMut(&mut Doc) -> anyhow::Result<Change>,
) -> anyhow::Result<Change> {
    let target = resolve_symlink(path);
    for _ in 0..EDIT_TRIES {
        let before = read_optional(&target)?;
        let mut doc = match before.as_deref() {
            None => Doc::Object(vec![]),
            Some(b) if b.iter().all(u8::is_ascii_whitespace) => Doc::Object(vec![]),
            Some(b) => serde_json::from_slice::<Doc>(b).with_context(|| {
                format!(
                    "{} is not valid JSON; it was left untouched (fix it, or restore a backup)",
                    path.display()
                )
            })?,
        };
        if !matches!(doc, Doc::Object(_)) {
            bail!(
                "{} does not hold a JSON object; it was left untouched",
                path.display()
            );
        }
        let old_text = before.as_ref().map(|_| doc.pretty());
        let change = f(&mut doc).with_context(|| format!("cannot edit {}", path.display()))?;
        if change == Change::Unchanged {
            return Ok(change);
        }
        let trailing_nl = before.as_ref().is_none_or(|b| b.ends_with(b"\n"));
        let mut text = doc.pretty();
        if trailing_nl {
            text.push('\n');
        }
        if dry_run {
            print_diff(out, path, old_text.as_deref().unwrap_or(""), &text)?;
            return Ok(change);
        }
        if before.is_some() {
            let b = backup(&target, path, stamp)?;
            writeln!(out, "  backup: {}", b.display())?;
        }
        match write_file(&target, text.as_bytes(), before.as_deref(), 0o600)? {
            true => return Ok(change),
            false => continue, // Changed under us: read it again.
        }
    }
    bail!(
        "{} kept changing while it was being edited (is Claude Code writing it?); \
         nothing was written: try again",
        path.display()
    )
}

/// The file behind a symlink, so replacing it keeps the link.
pub fn resolve_symlink(path: &Path) -> PathBuf {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => path.canonicalize().unwrap_or(path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}

/// A file's bytes, or `None` when it does not exist.
pub fn read_optional(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Copies `target` to `<shown>.bak.<stamp>` (another suffix if that exists),
/// with the original's mode. Returns the backup's path.
pub fn backup(target: &Path, shown: &Path, stamp: u64) -> anyhow::Result<PathBuf> {
    let mode = std::fs::metadata(target)
        .with_context(|| format!("cannot read {}", target.display()))?
        .permissions()
        .mode()
        & 0o7777;
    let bytes =
        std::fs::read(target).with_context(|| format!("cannot read {}", target.display()))?;
    let base = format!("{}.bak.{stamp}", shown.display());
    for n in 0..100 {
        let p = PathBuf::from(if n == 0 {
            base.clone()
        } else {
            format!("{base}.{n}")
        });
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&p)
        {
            Ok(mut f) => {
                f.write_all(&bytes)
                    .and_then(|()| f.sync_all())
                    .with_context(|| format!("cannot write the backup {}", p.display()))?;
                // The umask may have narrowed the mode: set it exactly.
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
                return Ok(p);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot write the backup {}", p.display()));
            }
        }
    }
    bail!("too many backups named {base}.*")
}

/// Replaces `path` with `bytes` atomically: a temp file in the same dir with
/// the existing file's mode (else `new_mode`), fsync, rename. When
/// `expected` is given and the file no longer holds it, writes nothing and
/// returns false. Creates the parent dir (0700) if missing.
pub fn write_file(
    path: &Path,
    bytes: &[u8],
    expected: Option<&[u8]>,
    new_mode: u32,
) -> anyhow::Result<bool> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(new_mode);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.mem0-queue.{}.tmp", std::process::id()));
    let result = (|| -> anyhow::Result<bool> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        if let Some(expected) = expected
            && read_optional(path)?.as_deref() != Some(expected)
        {
            return Ok(false);
        }
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(true)
    })();
    if !matches!(result, Ok(true)) {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes a file we wrote; backs it up first when its content is not what
/// we would write (`ours`), so nothing of the user's is lost.
pub fn remove_file(
    path: &Path,
    ours: &[u8],
    stamp: u64,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(false);
    };
    if bytes != ours {
        let b = backup(path, path, stamp)?;
        writeln!(out, "  backup: {}", b.display())?;
    }
    std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    Ok(true)
}

/// Prints a line diff of `old` and `new` (their common head and tail
/// trimmed, three lines of context), as `diff -u` would show one hunk.
pub fn print_diff(out: &mut dyn Write, path: &Path, old: &str, new: &str) -> std::io::Result<()> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let ctx = 3;
    let from = head.saturating_sub(ctx);
    writeln!(out, "--- {}", path.display())?;
    writeln!(out, "+++ {} (after)", path.display())?;
    let range = |len: usize, n: usize| {
        if n == 0 && len == 0 {
            "0,0".to_string()
        } else {
            format!("{},{n}", from + 1)
        }
    };
    writeln!(
        out,
        "@@ -{} +{} @@",
        range(a.len(), a.len() - tail - from + ctx.min(tail)),
        range(b.len(), b.len() - tail - from + ctx.min(tail)),
    )?;
    for l in &a[from..head] {
        writeln!(out, " {l}")?;
    }
    for l in &a[head..a.len() - tail] {
        writeln!(out, "-{l}")?;
    }
    for l in &b[head..b.len() - tail] {
        writeln!(out, "+{l}")?;
    }
    for l in a[a.len() - tail..].iter().take(ctx) {
        writeln!(out, " {l}")?;
    }
    Ok(())
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// An order-keeping JSON tree.

/// A JSON value whose objects keep their keys in file order (serde_json's
/// `Value` sorts them), so an edited file differs only where we edit it.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Doc>),
    Object(Vec<(String, Doc)>),
}

impl Doc {
    pub fn get(&self, key: &str) -> Option<&Doc> {
        match self {
            Doc::Object(f) => f.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Doc> {
        match self {
            Doc::Object(f) => f.iter_mut().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Doc::String(s) => Some(s),
            _ => None,
        }
    }

    fn fields(&self) -> &[(String, Doc)] {
        match self {
            Doc::Object(f) => f,
            _ => &[],
        }
    }

    /// Sets `key` in place (or appends it). No-op on a non-object.
    pub fn set(&mut self, key: &str, value: Doc) {
        if let Doc::Object(f) = self {
            match f.iter_mut().rev().find(|(k, _)| k == key) {
                Some((_, v)) => *v = value,
                None => f.push((key.into(), value)),
            }
        }
    }

    pub fn remove(&mut self, key: &str) {
        if let Doc::Object(f) = self {
            f.retain(|(k, _)| k != key);
        }
    }

    /// The value at `key`, inserted from `make` when missing. `None` when
    /// `self` is not an object.
    fn object_entry(&mut self, key: &str, make: impl FnOnce() -> Doc) -> Option<&mut Doc> {
        let Doc::Object(f) = self else {
            return None;
        };
        let i = match f.iter().rposition(|(k, _)| k == key) {
            Some(i) => i,
            None => {
                f.push((key.into(), make()));
                f.len() - 1
            }
        };
        Some(&mut f[i].1)
    }

    /// Two-space indented JSON, as Claude Code writes its files.
    pub fn pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }
}

impl serde::Serialize for Doc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Doc::Null => s.serialize_unit(),
            Doc::Bool(b) => s.serialize_bool(*b),
            Doc::Number(n) => serde::Serialize::serialize(n, s),
            Doc::String(v) => s.serialize_str(v),
            Doc::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Doc::Object(f) => {
                let mut map = s.serialize_map(Some(f.len()))?;
                for (k, v) in f {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Doc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Doc;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Doc, E> {
                Ok(Doc::Null)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Doc, E> {
                Ok(Doc::Null)
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Doc, E> {
                Ok(Doc::Bool(b))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Doc, E> {
                Ok(Doc::Number(n.into()))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Doc, E> {
                Ok(Doc::Number(n.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Doc, E> {
                serde_json::Number::from_f64(n)
                    .map(Doc::Number)
                    .ok_or_else(|| E::custom("a number that is not finite"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Doc, E> {
                Ok(Doc::String(v.into()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Doc, E> {
                Ok(Doc::String(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Doc, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Doc::Array(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Doc, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = a.next_entry::<String, Doc>()? {
                    v.push((k, x));
                }
                Ok(Doc::Object(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(s: &str) -> Doc {
        serde_json::from_str(s).expect("json")
    }

    #[test]
    fn doc_keeps_key_order_and_values() {
        let text =
            r#"{"zeta": 1, "alpha": {"b": [1, 2.5, -3, null, true], "a": "x\"y"}, "mid": {}}"#;
        let d = doc(text);
        let back: serde_json::Value = serde_json::from_str(&d.pretty()).expect("json");
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(text).expect("json")
        );
        let p = d.pretty();
        assert!(
            p.find("zeta") < p.find("alpha") && p.find("alpha") < p.find("mid"),
            "{p}"
        );
    }

    #[test]
    fn mcp_add_is_idempotent_and_remove_restores() {
        let orig = doc(r#"{"numStartups": 3, "mcpServers": {}, "z": 1}"#);
        let entry = doc(r#"{"type": "stdio", "command": "/bin/mq", "args": ["serve"], "env": {}}"#);
        let mut d = orig.clone();
        assert_eq!(add_mcp(&mut d, entry.clone()).expect("add"), Change::Added);
        assert_eq!(
            add_mcp(&mut d, entry.clone()).expect("add"),
            Change::Unchanged
        );
        assert_eq!(remove_mcp(&mut d), Change::Removed);
        assert_eq!(d, orig);
        assert_eq!(remove_mcp(&mut d), Change::Unchanged);
    }

    #[test]
    fn mcp_switches_between_stdio_and_http() {
        let stdio =
            doc(r#"{"type": "stdio", "command": "/bin/mq", "args": ["serve"], "env": {"K": "v"}}"#);
        let http = http_entry("http://127.0.0.1:8767/mcp", "ab12");
        let mut d = doc(r#"{"mcpServers": {}}"#);
        add_mcp(&mut d, stdio.clone()).expect("add");
        assert_eq!(
            add_mcp(&mut d, http.clone()).expect("to http"),
            Change::Updated
        );
        assert_eq!(installed_mcp(&d), Some(&http));
        assert_eq!(
            add_mcp(&mut d, http.clone()).expect("again"),
            Change::Unchanged
        );
        assert_eq!(
            add_mcp(&mut d, stdio.clone()).expect("back"),
            Change::Updated
        );
        assert_eq!(installed_mcp(&d), Some(&stdio));
    }

    #[test]
    fn hook_add_update_remove() {
        let orig = doc(
            r#"{"model": "opus", "hooks": {"SessionEnd": [{"hooks": [{"type": "command", "command": "echo bye"}]}]}}"#,
        );
        let mut d = orig.clone();
        let end = SESSION_END;
        assert_eq!(
            add_hook(&mut d, end, "/a/mem0-queue hook session-end").expect("add"),
            Change::Added
        );
        assert_eq!(
            add_hook(&mut d, end, "/a/mem0-queue hook session-end").expect("add"),
            Change::Unchanged
        );
        assert_eq!(
            add_hook(&mut d, end, "/b/mem0-queue hook session-end").expect("add"),
            Change::Updated
        );
        assert_eq!(
            installed_hook(&d).as_deref(),
            Some("/b/mem0-queue hook session-end")
        );
        // Each event's hook is its own: a session-start entry is not the
        // session-end one.
        let start = HOOKS[0];
        assert_eq!(
            add_hook(&mut d, start, "/b/mem0-queue hook session-start").expect("add"),
            Change::Added
        );
        assert_eq!(
            installed_hook_for(&d, start).as_deref(),
            Some("/b/mem0-queue hook session-start")
        );
        assert_eq!(remove_hook(&mut d, end), Change::Removed);
        assert_eq!(installed_hook(&d), None);
        assert_eq!(remove_hook(&mut d, start), Change::Removed);
        assert_eq!(d, orig);
        let mut empty = doc("{}");
        for spec in HOOKS {
            add_hook(&mut empty, spec, &format!("mem0-queue {}", spec.args)).expect("add");
        }
        for spec in HOOKS {
            remove_hook(&mut empty, spec);
        }
        assert_eq!(empty, doc("{}"));
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/usr/bin/mem0-queue"), "/usr/bin/mem0-queue");
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
