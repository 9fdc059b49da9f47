//! `mem0-queue doctor`: checks the installation, one [`Check`] per check,
//! `OK`, `WARN` or `FAIL`, with the fix to apply for each FAIL or WARN. The
//! command line prints them, one line each, and exits 0 when nothing FAILs,
//! 1 otherwise. It reads and probes; it writes nothing (not even the data
//! dir).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::config::{ApiKind, Env, ProcessEnv, Resolved, Source};
use crate::engine::daemon::{self, Seen};
use crate::engine::mem0::{Client, ConfigProblem, Reachability};
use crate::engine::paths::Paths;
use crate::engine::policy::{PolicySource, Runtime};
use crate::ops::Invocation;
use crate::ops::install::{self, ClaudeFiles, Doc};
use crate::ops::schedule::{self, Files, Job, ToolRun};

/// The whole probe's bound (the client's own probe timeout is 2 s; an OSS
/// server without the providers route costs a second request).
const PROBE_BOUND: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Check {
    pub verdict: Verdict,
    pub name: &'static str,
    pub detail: String,
    pub fix: Option<String>,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        verdict: Verdict::Ok,
        name,
        detail: detail.into(),
        fix: None,
    }
}

fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        verdict: Verdict::Fail,
        name,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        verdict: Verdict::Warn,
        name,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn mode(p: &Path) -> Option<u32> {
    std::fs::metadata(p)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

/// `mem0-queue doctor`: every check, in the order they are shown.
pub fn run(inv: &Invocation) -> Vec<Check> {
    let (resolved, paths) = (&inv.resolved, &inv.paths);
    let mut checks = Vec::new();
    config_checks(resolved, &mut checks);
    data_checks(paths, &mut checks);
    checks.push(probe_check(resolved));
    checks.push(policy_check(resolved, paths));
    let seen = daemon::probe(paths);
    checks.push(schedule_check(&seen));
    let http = claude_checks(inv, &seen, &mut checks);
    daemon_checks(inv, &seen, http, &mut checks);
    seed_check(&mut checks);
    checks
}

fn config_checks(r: &Resolved, checks: &mut Vec<Check>) {
    let c = &r.config;
    match &r.file {
        Some(f) => {
            checks.push(ok("config file", f.display().to_string()));
            let has_key = matches!(r.sources.get("api_key"), Some(Source::File(_)));
            match mode(f) {
                Some(m) if has_key && m & 0o077 != 0 => checks.push(fail(
                    "config mode",
                    format!("{} holds an API key and is mode {m:04o}", f.display()),
                    format!(
                        "chmod 600 {}",
                        install::shell_quote(&f.display().to_string())
                    ),
                )),
                Some(m) if has_key => {
                    checks.push(ok("config mode", format!("{m:04o} (it holds the API key)")))
                }
                Some(m) => checks.push(ok("config mode", format!("{m:04o} (no key in it)"))),
                None => {}
            }
        }
        None => {
            let path = crate::engine::config::config_path(&ProcessEnv, None)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "~/.config/mem0-queue/config.toml".into());
            checks.push(fail(
                "config file",
                format!("{path} does not exist; the schedule and the hook only see a config file"),
                "mem0-queue config init, then set api_url (and api_key) in it",
            ));
        }
    }
    match (&c.api_url, r.sources.get("api_url")) {
        (None, _) => checks.push(fail(
            "api_url",
            "not set: memories are queued but never delivered",
            "set api_url = \"http://your-server:8888\" in the config file",
        )),
        (Some(u), Some(Source::Env(v))) => checks.push(warn(
            "api_url",
            format!("{u} (from ${v}: cron, systemd and Claude Code's hook may not see it)"),
            "put api_url in the config file",
        )),
        (Some(u), _) => checks.push(ok("api_url", u.clone())),
    }
    match (&c.api_key, c.api_kind) {
        (None, ApiKind::Platform) => checks.push(fail(
            "api_key",
            "api_kind is platform and no API key is set",
            "set api_key = \"m0-...\" in the config file (mode 0600)",
        )),
        (None, ApiKind::Oss) => checks.push(ok(
            "api_key",
            "none (a self-hosted server without auth needs none)",
        )),
        (Some(_), _) => match r.sources.get("api_key") {
            Some(Source::Env(v)) => checks.push(warn(
                "api_key",
                format!("set (from ${v}: cron, systemd and Claude Code's hook may not see it)"),
                "put api_key in the config file (mode 0600)",
            )),
            _ => checks.push(ok("api_key", "set")),
        },
    }
}

fn data_checks(paths: &Paths, checks: &mut Vec<Check>) {
    let dir = &paths.data_dir;
    let shown = install::shell_quote(&dir.display().to_string());
    match mode(dir) {
        None => {
            checks.push(ok(
                "data dir",
                format!(
                    "{} (not created yet: the first save creates it, 0700)",
                    dir.display()
                ),
            ));
        }
        Some(0o700) => checks.push(ok("data dir", format!("{} (0700)", dir.display()))),
        Some(m) => checks.push(fail(
            "data dir",
            format!(
                "{} is mode {m:04o}; it holds private memories",
                dir.display()
            ),
            format!("chmod 700 {shown}"),
        )),
    }
    let db = paths.db();
    match mode(&db) {
        None => {}
        Some(m) if m & 0o077 == 0 => {
            checks.push(ok("queue db", format!("{} ({m:04o})", db.display())))
        }
        Some(m) => checks.push(fail(
            "queue db",
            format!("{} is mode {m:04o}", db.display()),
            format!(
                "chmod 600 {}",
                install::shell_quote(&db.display().to_string())
            ),
        )),
    }
    // The filesystem of the data dir, or of its nearest existing parent.
    let mut probe: PathBuf = dir.clone();
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p.to_path_buf(),
            None => break,
        }
    }
    match fs_type(&probe) {
        Ok((name, true)) => checks.push(ok("filesystem", format!("{name} (local)"))),
        Ok((name, false)) => checks.push(fail(
            "filesystem",
            format!(
                "{} is on {name}, a network or FUSE filesystem: SQLite's locking is not safe there",
                dir.display()
            ),
            "set data_dir in the config to a local disk, e.g. ~/.local/share/mem0-queue",
        )),
        Err(e) => checks.push(warn(
            "filesystem",
            format!("cannot tell ({e})"),
            "make sure the data dir is on a local disk",
        )),
    }
}

/// statfs(2) of `path`.
#[cfg(any(target_os = "linux", target_os = "macos"))]
fn statfs(path: &Path) -> std::io::Result<libc::statfs> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    #[allow(unsafe_code)]
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out pointer.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

/// The filesystem type of `path` and whether it is local.
#[cfg(target_os = "linux")]
pub fn fs_type(path: &Path) -> std::io::Result<(String, bool)> {
    let st = statfs(path)?;
    // f_type's width differs between libcs and architectures.
    #[allow(clippy::unnecessary_cast)]
    let t = st.f_type as i64 as u32;
    let (name, local) = match t {
        0x6969 => ("nfs", false),
        0x517b => ("smb", false),
        0xff53_4d42 => ("cifs", false),
        0xfe53_4d42 => ("smb2", false),
        0x6573_5546 => ("fuse", false),
        0x0102_1997 => ("9p", false),
        0x0000_564c => ("ncp", false),
        0x7375_7245 => ("coda", false),
        0x5346_414f => ("afs", false),
        0x00c3_6400 => ("ceph", false),
        0xef53 => ("ext2/3/4", true),
        0x5846_5342 => ("xfs", true),
        0x9123_683e => ("btrfs", true),
        0x0102_1994 => ("tmpfs", true),
        0x794c_7630 => ("overlayfs", true),
        0x2fc1_2fc1 => ("zfs", true),
        0xf2f5_2010 => ("f2fs", true),
        0x4d44 => ("vfat", true),
        0x2011_bab0 => ("exfat", true),
        _ => return Ok((format!("type 0x{t:x}"), true)),
    };
    Ok((name.to_string(), local))
}

/// The filesystem type of `path` and whether it is local.
#[cfg(target_os = "macos")]
pub fn fs_type(path: &Path) -> std::io::Result<(String, bool)> {
    let st = statfs(path)?;
    let name: String = st
        .f_fstypename
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as u8 as char)
        .collect();
    let remote = ["nfs", "smbfs", "afpfs", "webdav", "ftp", "cifs"].contains(&name.as_str())
        || name.contains("fuse");
    Ok((name, !remote))
}

/// The filesystem type of `path` and whether it is local.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn fs_type(_path: &Path) -> std::io::Result<(String, bool)> {
    Err(std::io::Error::other("not checked on this system"))
}

fn probe_check(r: &Resolved) -> Check {
    let client = match Client::from_config(&r.config) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                "mem0 server",
                e.to_string(),
                "set api_url in the config file",
            );
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let reach = match rt {
        Ok(rt) => rt.block_on(async {
            tokio::time::timeout(PROBE_BOUND, client.probe())
                .await
                .unwrap_or(Reachability::Unreachable {
                    error: "no answer in time".into(),
                })
        }),
        Err(e) => Reachability::Unreachable {
            error: e.to_string(),
        },
    };
    let url = r.config.api_url.clone().unwrap_or_default();
    match reach {
        Reachability::Reachable => ok("mem0 server", format!("{url} answers (auth accepted)")),
        Reachability::Misconfigured { problem } => {
            let mut steps: Vec<String> = problem
                .fix(&url)
                .into_iter()
                .filter(|s| !s.starts_with("mem0-queue doctor"))
                .collect();
            if let ConfigProblem::WrongRoute { .. } = problem
                && let Some(hint) = rt_hint(&r.config)
            {
                steps.insert(0, hint);
            }
            fail(
                "mem0 server",
                format!(
                    "{url} is not the Mem0 API as configured: {}; memories stay queued, nothing is sent until this is fixed",
                    problem.describe()
                ),
                steps.join("; then "),
            )
        }
        Reachability::AuthRejected { http_status } => fail(
            "mem0 server",
            format!("{url} rejects the API key (HTTP {http_status})"),
            "check api_key (and api_kind: oss or platform) against the server",
        ),
        Reachability::Unreachable { error } => fail(
            "mem0 server",
            format!("{url} does not answer ({error})"),
            "start the Mem0 server or fix api_url; memories stay queued meanwhile",
        ),
        Reachability::NotConfigured => fail(
            "mem0 server",
            "not configured",
            "set api_url in the config file",
        ),
    }
}

/// For a wrong route: tries the other API kind and the bare host, and
/// says which one answers, on a runtime of its own.
fn rt_hint(c: &crate::engine::config::Config) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async { tokio::time::timeout(PROBE_BOUND, wrong_route_hint(c)).await })
        .ok()
        .flatten()
}

async fn wrong_route_hint(c: &crate::engine::config::Config) -> Option<String> {
    let url = c.api_url.clone()?;
    let other = match c.api_kind {
        ApiKind::Oss => ApiKind::Platform,
        ApiKind::Platform => ApiKind::Oss,
    };
    let try_with = |api_url: String, kind: ApiKind| {
        let cfg = crate::engine::config::Config {
            api_url: Some(api_url),
            api_kind: kind,
            ..c.clone()
        };
        async move {
            match Client::from_config(&cfg) {
                Ok(client) => matches!(
                    client.probe().await,
                    Reachability::Reachable | Reachability::AuthRejected { .. }
                ),
                Err(_) => false,
            }
        }
    };
    let kind_name = |k: ApiKind| match k {
        ApiKind::Oss => "oss",
        ApiKind::Platform => "platform",
    };
    if try_with(url.clone(), other).await {
        return Some(format!(
            "the {} API answers at {url}: set api_kind = \"{}\"",
            kind_name(other),
            kind_name(other)
        ));
    }
    let parsed = url::Url::parse(&url).ok()?;
    if parsed.path().trim_matches('/').is_empty() {
        return None;
    }
    let mut origin = format!("{}://{}", parsed.scheme(), parsed.host_str()?);
    if let Some(port) = parsed.port() {
        origin.push_str(&format!(":{port}"));
    }
    for kind in [c.api_kind, other] {
        if try_with(origin.clone(), kind).await {
            return Some(format!(
                "the Mem0 API answers at {origin} without the path prefix: set api_url = \"{origin}\" (api_kind = \"{}\")",
                kind_name(kind)
            ));
        }
    }
    None
}

fn policy_check(r: &Resolved, paths: &Paths) -> Check {
    let source = match &r.config.policy {
        Some(p) => PolicySource::File(p.clone()),
        None => PolicySource::Embedded,
    };
    let cache = paths.cache_dir();
    let cache = cache.is_dir().then_some(cache);
    match Runtime::new(source, cache.as_deref()) {
        Ok(rt) => {
            let info = rt.info();
            match info.broken {
                None => ok(
                    "policy",
                    format!("{} {} ({})", info.name, info.version, info.source),
                ),
                Some(b) => fail(
                    "policy",
                    format!(
                        "{} is broken: {b}; the embedded default decides instead",
                        info.source
                    ),
                    "mem0-queue policy check <path>, or remove `policy` from the config",
                ),
            }
        }
        Err(e) => fail(
            "policy",
            format!("the embedded default policy does not load: {e}"),
            "reinstall mem0-queue",
        ),
    }
}

fn schedule_check(seen: &Seen) -> Check {
    if let Some(r) = seen.record() {
        return ok(
            "schedule",
            format!(
                "not needed: the daemon (pid {}) delivers continuously",
                r.pid
            ),
        );
    }
    let files = match Files::locate(&ProcessEnv, Job::Sync) {
        Ok(f) => f,
        Err(e) => return fail("schedule", e.to_string(), "set HOME"),
    };
    let marker = files.marker().to_path_buf();
    if marker.exists() {
        return match &files {
            Files::Systemd { .. } => {
                let timer = format!("{}.timer", schedule::UNIT);
                if !schedule::systemd_usable() {
                    return ok(
                        "schedule",
                        format!(
                            "{} is installed (systemd's user manager is not reachable from here to \
                             confirm it runs)",
                            marker.display()
                        ),
                    );
                }
                match schedule::run_tool("systemctl", &["--user", "is-active", &timer]) {
                    ToolRun::Ok(s) if s == "active" => {
                        ok("schedule", format!("systemd timer {timer} is active"))
                    }
                    _ => fail(
                        "schedule",
                        format!("{} exists but the timer is not active", marker.display()),
                        format!(
                            "systemctl --user daemon-reload && systemctl --user enable --now {timer}"
                        ),
                    ),
                }
            }
            Files::Launchd { .. } => ok("schedule", format!("launchd agent {}", marker.display())),
        };
    }
    if let Some((ours, _)) = schedule::crontab_lines()
        && let Some(l) = ours.first()
    {
        return ok("schedule", format!("crontab: {l}"));
    }
    fail(
        "schedule",
        "no schedule runs `mem0-queue sync` (no timer or agent, no crontab line), and no daemon runs",
        "mem0-queue install schedule (or install schedule --cron for a crontab line; or \
         mem0-queue install daemon, which delivers all the time)",
    )
}

/// Whether the program at the start of a command line exists.
fn command_exists(cmd: &str) -> bool {
    let first = if let Some(rest) = cmd.strip_prefix('\'') {
        rest.split('\'').next().unwrap_or("").to_string()
    } else {
        cmd.split_whitespace().next().unwrap_or("").to_string()
    };
    !first.is_empty() && Path::new(&first).is_file()
}

fn read_doc(p: &Path) -> Result<Option<Doc>, String> {
    match install::read_optional(p) {
        Ok(None) => Ok(None),
        Ok(Some(b)) => serde_json::from_slice::<Doc>(&b)
            .map(Some)
            .map_err(|e| format!("{} is not valid JSON: {e}", p.display())),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// How long doctor waits for the daemon's port to answer.
const PORT_TIMEOUT: Duration = Duration::from_secs(2);

/// The daemon: whether it runs (its lock), whether its port answers as
/// ours does (401 to a request without the token: proof it is the daemon,
/// without sending the token over), and the token file's mode. `http` is
/// true when Claude Code is registered over HTTP, which needs the daemon.
fn daemon_checks(inv: &Invocation, seen: &Seen, http: bool, checks: &mut Vec<Check>) {
    let files = Files::locate(&ProcessEnv, Job::Daemon).ok();
    let installed = files.as_ref().is_some_and(|f| f.marker().exists());
    let start_fix = match &files {
        Some(Files::Launchd { .. }) => format!(
            "launchctl kickstart gui/{}/{}; the worker log says why it stopped",
            schedule::uid(),
            schedule::DAEMON_LABEL
        ),
        _ => format!(
            "systemctl --user restart {}.service; the worker log (and `systemctl --user status \
             {}`) says why it stopped",
            schedule::DAEMON_UNIT,
            schedule::DAEMON_UNIT
        ),
    };
    match seen {
        Seen::Running(r) => checks.push(ok(
            "daemon",
            match r {
                Some(r) => format!(
                    "running since {}, pid {}{}",
                    crate::engine::text::rfc3339(r.since_ms),
                    r.pid,
                    if installed {
                        " (installed as a service)"
                    } else {
                        ""
                    }
                ),
                None => "running".into(),
            },
        )),
        Seen::NotRunning if installed => checks.push(fail(
            "daemon",
            format!(
                "installed ({}) but not running",
                files
                    .as_ref()
                    .map(|f| f.marker().display().to_string())
                    .unwrap_or_default()
            ),
            start_fix.clone(),
        )),
        Seen::NotRunning if http => checks.push(fail(
            "daemon",
            "not running, but Claude Code reaches mem0-queue through it (an HTTP registration)",
            "mem0-queue install daemon (or run `mem0-queue daemon`)",
        )),
        Seen::NotRunning => checks.push(ok(
            "daemon",
            "not running (each `serve` window delivers; `mem0-queue install daemon` for the \
             always-on one)",
        )),
    }
    match seen.record().and_then(|r| r.mcp_url.clone()) {
        Some(url) => checks.push(match unauthenticated_status(&url) {
            Ok(401) => ok(
                "daemon port",
                format!("{url} answers, and refuses a request without the token (401)"),
            ),
            Ok(code) => fail(
                "daemon port",
                format!("{url} answers HTTP {code} to a request without the token, not 401: is it the daemon?"),
                "check what listens there (`ss -ltnp` / `lsof -i`), and restart the daemon",
            ),
            Err(e) => fail(
                "daemon port",
                format!("{url} does not answer ({e})"),
                start_fix.clone(),
            ),
        }),
        None if installed || http => {
            if let Ok(addr) = inv.resolved.daemon_listen()
                && let Err(e) = std::net::TcpListener::bind(addr)
                && e.kind() == std::io::ErrorKind::AddrInUse
            {
                checks.push(fail(
                    "daemon port",
                    format!("{addr} is taken by another program: the daemon cannot listen there"),
                    "set daemon_port = <a free port> in the config, then `mem0-queue install \
                     claude-code --http` again",
                ));
            }
        }
        None => {}
    }
    let token = daemon::token_path(&inv.paths);
    let shown = install::shell_quote(&token.display().to_string());
    match mode(&token) {
        None if installed || http || seen.is_running() => checks.push(ok(
            "daemon token",
            format!(
                "{} not made yet (the daemon's first start makes it)",
                token.display()
            ),
        )),
        None => {}
        Some(m) if m & 0o077 == 0 => {
            checks.push(ok("daemon token", format!("{} ({m:04o})", token.display())))
        }
        Some(m) => checks.push(fail(
            "daemon token",
            format!(
                "{} is mode {m:04o}; whoever reads it can use the daemon",
                token.display()
            ),
            format!("chmod 600 {shown}"),
        )),
    }
}

/// The HTTP status of a POST to `url` without a token.
fn unauthenticated_status(url: &str) -> Result<u16, String> {
    use std::io::{Read, Write};
    let u = url::Url::parse(url).map_err(|e| e.to_string())?;
    let host = u.host_str().ok_or("no host")?.to_string();
    let port = u.port_or_known_default().ok_or("no port")?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.trim_matches(['[', ']']), port))
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, PORT_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(PORT_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
        u.path()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&head[..n])
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "not an HTTP answer".into())
}

/// Where the plugin's scripts find the binary (`find-mem0-queue.sh`):
/// `$MEM0_QUEUE_BIN`, else `mem0-queue` on PATH, else cargo's bin dir.
fn plugin_binary(env: &dyn Env) -> Result<PathBuf, String> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if let Some(b) = env.var("MEM0_QUEUE_BIN") {
        let p = PathBuf::from(&b);
        return if executable(&p) {
            Ok(p)
        } else {
            Err(format!("MEM0_QUEUE_BIN={b} is not an executable file"))
        };
    }
    if let Some(path) = env.var("PATH") {
        for dir in path.split(':').filter(|d| !d.is_empty()) {
            let p = Path::new(dir).join("mem0-queue");
            if executable(&p) {
                return Ok(p);
            }
        }
    }
    let cargo = env
        .var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env.var("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(p) = cargo.map(|c| c.join("bin/mem0-queue"))
        && executable(&p)
    {
        return Ok(p);
    }
    Err("mem0-queue is neither on PATH nor in ~/.cargo/bin".into())
}

/// Claude Code: the plugin (`enabledPlugins["mem0-queue@mem0-queue"]` in
/// settings.json) and `install claude-code`'s entries (the SessionEnd hook
/// in settings.json, the MCP server in ~/.claude.json) are each a valid
/// registration; both at once is a double registration (two servers, every
/// hook twice): a WARN with the fix.
/// Returns whether the registration is the daemon's HTTP endpoint.
fn claude_checks(inv: &Invocation, seen: &Seen, checks: &mut Vec<Check>) -> bool {
    let files = match ClaudeFiles::locate(&ProcessEnv) {
        Ok(f) => f,
        Err(e) => {
            checks.push(fail("claude code", e.to_string(), "set HOME"));
            return false;
        }
    };
    let fix = "claude plugin install mem0-queue@mem0-queue (or, without plugins, \
               mem0-queue install claude-code), then restart Claude Code";
    let settings = read_doc(&files.settings);
    let plugin = matches!(&settings, Ok(Some(d)) if install::plugin_enabled(d));
    let hook = match &settings {
        Err(e) => {
            checks.push(fail(
                "hook",
                e.clone(),
                "fix the file by hand, or restore a backup",
            ));
            None
        }
        Ok(doc) => doc.as_ref().and_then(install::installed_hook),
    };
    // The hooks besides SessionEnd that `install claude-code` adds (an
    // install made before recall has none of them).
    let missing: Vec<&str> = match &settings {
        Ok(Some(doc)) => install::HOOKS
            .iter()
            .filter(|h| install::installed_hook_for(doc, **h).is_none())
            .map(|h| h.event)
            .collect(),
        _ => Vec::new(),
    };
    let mcp = match read_doc(&files.config) {
        Err(e) => {
            checks.push(fail(
                "mcp server",
                e,
                "fix the file by hand, or restore a backup",
            ));
            None
        }
        Ok(doc) => Some(
            doc.as_ref()
                .and_then(|d| install::installed_mcp(d).cloned()),
        ),
    };

    if plugin {
        match plugin_binary(&ProcessEnv) {
            Ok(bin) => checks.push(ok(
                "plugin",
                format!(
                    "{} is enabled ({}); its server and hooks run {}",
                    install::PLUGIN_ID,
                    files.settings.display(),
                    bin.display()
                ),
            )),
            Err(why) => checks.push(warn(
                "plugin",
                format!(
                    "{} is enabled, but its scripts will not find the binary: {why}",
                    install::PLUGIN_ID
                ),
                "cargo install --locked --path host (in a clone), or set MEM0_QUEUE_BIN in \
                 Claude Code's environment",
            )),
        }
    }

    if settings.is_ok() {
        match (hook, plugin) {
            (Some(cmd), false) if command_exists(&cmd) && !missing.is_empty() => checks.push(warn(
                "hook",
                format!(
                    "SessionEnd runs `{cmd}`, but no {} hook is installed: sessions start \
                         without recall",
                    missing.join(" or ")
                ),
                "mem0-queue install claude-code (it adds them), then restart Claude Code",
            )),
            (Some(cmd), _) if command_exists(&cmd) => {
                let also = if missing.is_empty() {
                    " (and SessionStart, PreCompact)"
                } else {
                    ""
                };
                checks.push(ok("hook", format!("SessionEnd runs `{cmd}`{also}")))
            }
            (Some(cmd), _) => checks.push(fail(
                "hook",
                format!("SessionEnd runs `{cmd}`, whose program no longer exists"),
                "mem0-queue install claude-code, then restart Claude Code",
            )),
            (None, true) => checks.push(ok(
                "hook",
                format!(
                    "the plugin {} runs the SessionStart, SessionEnd and PreCompact hooks",
                    install::PLUGIN_ID
                ),
            )),
            (None, false) => checks.push(fail(
                "hook",
                format!(
                    "no mem0-queue SessionEnd hook in {} and the plugin {} is not enabled",
                    files.settings.display(),
                    install::PLUGIN_ID
                ),
                fix,
            )),
        }
    }
    let installed_mcp = matches!(&mcp, Some(Some(_)));
    let mut http = false;
    if let Some(entry) = mcp {
        match (entry, plugin) {
            (Some(e), _) if e.get("type").and_then(Doc::as_str) == Some("http") => {
                http = true;
                checks.push(http_registration_check(inv, seen, &e));
            }
            (Some(e), _) => {
                let cmd = e.get("command").and_then(Doc::as_str).unwrap_or("");
                if Path::new(cmd).is_file() {
                    checks.push(ok(
                        "mcp server",
                        format!("\"{}\" registered (user scope): {cmd}", install::MCP_NAME),
                    ));
                } else {
                    checks.push(fail(
                        "mcp server",
                        format!(
                            "\"{}\" points at {cmd:?}, which does not exist",
                            install::MCP_NAME
                        ),
                        "mem0-queue install claude-code, then restart Claude Code",
                    ));
                }
            }
            (None, true) => checks.push(ok(
                "mcp server",
                format!(
                    "the plugin {} registers it (plugin:mem0-queue:mem0-queue)",
                    install::PLUGIN_ID
                ),
            )),
            (None, false) => checks.push(fail(
                "mcp server",
                format!(
                    "\"{}\" is not registered in {} and the plugin {} is not enabled",
                    install::MCP_NAME,
                    files.config.display(),
                    install::PLUGIN_ID
                ),
                fix,
            )),
        }
    }
    if plugin
        && (installed_mcp
            || matches!(&settings, Ok(Some(d)) if install::installed_hook(d).is_some()))
    {
        checks.push(warn(
            "registration",
            format!(
                "both the plugin {} and `mem0-queue install claude-code`'s entries are active: \
                 Claude Code runs two MCP servers (every tool listed twice) and each hook twice",
                install::PLUGIN_ID
            ),
            "keep the plugin and remove the others: mem0-queue uninstall claude-code \
             (or keep those and run: claude plugin uninstall mem0-queue@mem0-queue)",
        ));
    }
    http
}

/// Claude Code registered over HTTP: the URL must be the daemon's, and
/// the header must carry the token of the data dir's `daemon.token`.
fn http_registration_check(inv: &Invocation, seen: &Seen, e: &Doc) -> Check {
    let fix = "mem0-queue install claude-code --http, then restart Claude Code";
    let url = e.get("url").and_then(Doc::as_str).unwrap_or("");
    let expected = seen
        .record()
        .and_then(|r| r.mcp_url.clone())
        .or_else(|| inv.resolved.daemon_listen().ok().map(daemon::mcp_url));
    if let Some(x) = &expected
        && x != url
    {
        return fail(
            "mcp server",
            format!(
                "\"{}\" points at {url}, but the daemon is at {x}",
                install::MCP_NAME
            ),
            fix,
        );
    }
    let header = e
        .get("headers")
        .and_then(|h| h.get("Authorization"))
        .and_then(Doc::as_str)
        .unwrap_or("");
    let token = std::fs::read_to_string(daemon::token_path(&inv.paths))
        .ok()
        .map(|t| t.trim().to_string());
    match token {
        None => fail(
            "mcp server",
            format!(
                "\"{}\" is registered at {url} with a token, but {} does not exist",
                install::MCP_NAME,
                daemon::token_path(&inv.paths).display()
            ),
            fix,
        ),
        Some(t) if header.strip_prefix("Bearer ").map(str::trim) == Some(t.as_str()) => ok(
            "mcp server",
            format!(
                "\"{}\" registered (user scope) over HTTP at {url}, with the daemon's token",
                install::MCP_NAME
            ),
        ),
        Some(_) => fail(
            "mcp server",
            format!(
                "\"{}\" is registered at {url}, but its Authorization header does not carry the \
                 token of {}: every call would get 401",
                install::MCP_NAME,
                daemon::token_path(&inv.paths).display()
            ),
            fix,
        ),
    }
}

/// The seed's leftovers: its JSON queue, cron line and hook.
fn seed_check(checks: &mut Vec<Check>) {
    let Some(home) = ProcessEnv.var("HOME").map(PathBuf::from) else {
        return;
    };
    let queue = home.join(".claude/mem0_queue.json");
    if queue.exists() {
        checks.push(warn(
            "seed queue",
            format!("{} exists (the seed's JSON queue)", queue.display()),
            "mem0-queue import ~/.claude/mem0_queue.json (idempotent: safe to run again), then \
             move the file aside (e.g. to mem0_queue.json.imported) and remove the seed's cron \
             line and hook",
        ));
    }
    if let Some((_, seed)) = schedule::crontab_lines() {
        for l in seed {
            checks.push(warn(
                "seed cron",
                format!("the seed's worker still runs from cron: {l}"),
                "crontab -e, and delete that line",
            ));
        }
    }
    if let Ok(f) = ClaudeFiles::locate(&ProcessEnv)
        && let Ok(Some(doc)) = read_doc(&f.settings)
    {
        for h in install::seed_hooks(&doc) {
            checks.push(warn(
                "seed hook",
                format!("the seed's hook is still in {}: {h}", f.settings.display()),
                "delete it there once the seed's queue is imported",
            ));
        }
    }
}
