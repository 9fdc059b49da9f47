//! `mem0-queue doctor` on the real binary in a temp HOME: all green (exit 0)
//! against the Mem0 test server once the config, the schedule (its unit
//! files: systemd is not reachable from a test) and Claude Code's hook and
//! MCP server are in place; a FAIL line with its fix, and exit 1, when the
//! server is down, when the config file exposes its key, and when nothing
//! is installed. The Claude Code plugin counts as the hook and the MCP
//! server; the plugin and `install claude-code` both active is a WARN.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use mem0_queue_testkit::mem0_server::Kind;
use mem0_queue_testkit::worker::server;
use mem0_queue_testkit::{
    bin,
    db::store,
    ops::{enqueue, ok, run, text},
    sandbox::Sandbox,
};

fn write_config(home: &Sandbox, body: &str, mode: u32) -> PathBuf {
    let p = home.home().join(".config/mem0-queue/config.toml");
    std::fs::create_dir_all(p.parent().expect("dir")).expect("mkdir");
    std::fs::write(&p, body).expect("write config");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    p
}

async fn doctor(home: &Sandbox) -> (Option<i32>, String) {
    let c = home.ops_command(&["doctor"]);
    let o = tokio::task::spawn_blocking(move || run(c))
        .await
        .expect("join");
    let (out, err) = text(&o);
    (o.status.code(), format!("{out}{err}"))
}

fn line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| {
            l.get(4..)
                .is_some_and(|rest| rest.trim_start().starts_with(&format!("{name}:")))
        })
        .unwrap_or_else(|| panic!("no `{name}` check in\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_green_when_installed_then_a_fail_with_its_fix_when_the_server_is_down() {
    let srv = server(Kind::Oss, Some("k-doctor"), 3).await;
    let home = Sandbox::new(bin!());
    write_config(
        &home,
        &format!("api_url = \"{}\"\napi_key = \"k-doctor\"\n", srv.url()),
        0o600,
    );
    enqueue(&mut store(&home.data_dir()), 1, "doctor");
    let c = home.ops_command(&["install", "claude-code"]);
    tokio::task::spawn_blocking(move || ok(c))
        .await
        .expect("join");
    let c = home.ops_command(&["install", "schedule"]);
    tokio::task::spawn_blocking(move || ok(c))
        .await
        .expect("join");

    let (code, out) = doctor(&home).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    for name in [
        "config file",
        "config mode",
        "api_url",
        "api_key",
        "data dir",
        "queue db",
        "filesystem",
        "mem0 server",
        "policy",
        "schedule",
        "hook",
        "mcp server",
    ] {
        assert!(line(&out, name).starts_with("OK"), "{name}:\n{out}");
    }
    assert!(line(&out, "config mode").contains("0600"), "{out}");
    assert!(out.contains("all checks passed"), "{out}");

    // The server goes down: a FAIL line, its fix, exit 1.
    srv.go_down().await;
    let (code, out) = doctor(&home).await;
    assert_eq!(code, Some(1), "{out}");
    let l = line(&out, "mem0 server");
    assert!(
        l.starts_with("FAIL") && l.contains("does not answer"),
        "{out}"
    );
    let fix = out
        .lines()
        .skip_while(|x| !x.starts_with("FAIL mem0 server"))
        .nth(1)
        .unwrap_or("");
    assert!(fix.trim_start().starts_with("fix: "), "{out}");
    assert!(out.contains("1 check(s) failed"), "{out}");
    srv.come_back().await;

    // A wrong key: FAIL, with the key to check.
    write_config(
        &home,
        &format!("api_url = \"{}\"\napi_key = \"wrong\"\n", srv.url()),
        0o600,
    );
    let (code, out) = doctor(&home).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        line(&out, "mem0 server").contains("rejects the API key"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_installed_and_a_readable_key_each_fail_with_a_fix() {
    let srv = server(Kind::Oss, None, 4).await;
    let home = Sandbox::new(bin!());
    let cfg = write_config(
        &home,
        &format!("api_url = \"{}\"\napi_key = \"k\"\n", srv.url()),
        0o644,
    );
    let (code, out) = doctor(&home).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(line(&out, "config mode").starts_with("FAIL"), "{out}");
    assert!(
        out.contains(&format!("fix: chmod 600 {}", cfg.display())),
        "{out}"
    );
    assert!(line(&out, "mem0 server").starts_with("OK"), "{out}");
    for name in ["schedule", "hook", "mcp server"] {
        assert!(line(&out, name).starts_with("FAIL"), "{name}:\n{out}");
    }
    assert!(out.contains("fix: mem0-queue install schedule"), "{out}");
    // The plugin first, install claude-code for those without plugins.
    assert!(
        out.contains("fix: claude plugin install mem0-queue@mem0-queue (or, without plugins, mem0-queue install claude-code)"),
        "{out}"
    );

    // No config file at all, platform kind without a key.
    let home = Sandbox::new(bin!());
    let mut c = home.ops_command(&["doctor"]);
    c.env("MEM0_API_KIND", "platform")
        .env("MEM0_API_URL", srv.url());
    let o = tokio::task::spawn_blocking(move || run(c))
        .await
        .expect("join");
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(line(&out, "config file").starts_with("FAIL"), "{out}");
    assert!(out.contains("fix: mem0-queue config init"), "{out}");
    assert!(line(&out, "api_key").starts_with("FAIL"), "{out}");
    assert!(line(&out, "api_url").starts_with("WARN"), "{out}");
}

/// Regression (issue 12): behind a redirect `doctor` said the server
/// answers; with a wrong prefix it said the memories stay queued while they
/// died. Now: an `http://` URL answered by `301 https://...` is a FAIL whose
/// fix is the exact new `api_url`; a login gate's redirect is a FAIL that
/// names the page; a missing path prefix is a FAIL that names the prefix
/// that works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_fix_for_a_redirect_a_login_gate_and_a_wrong_prefix() {
    use mem0_queue_testkit::proxy::{Proxy, ProxyMode, RedirectTarget};
    use mem0_queue_testkit::tls::{TestCa, https_redirector, tls_front};
    let srv = server(Kind::Oss, None, 5).await;
    let ca = TestCa::new();
    let front = tls_front(srv.url(), &ca).await;
    let redirector = https_redirector(&front.url()).await;
    let home = Sandbox::new(bin!());
    write_config(
        &home,
        &format!(
            "api_url = \"{}\"\nca_file = \"{}\"\n",
            redirector.url(),
            ca.ca_file().display()
        ),
        0o600,
    );
    let (code, out) = doctor(&home).await;
    assert_eq!(code, Some(1), "{out}");
    let l = line(&out, "mem0 server");
    assert!(l.starts_with("FAIL") && l.contains("301"), "{out}");
    assert!(
        out.contains(&format!("set api_url = \"{}\"", front.url())),
        "the exact new api_url:\n{out}"
    );

    let gate = Proxy::start(
        srv.url(),
        ProxyMode::Redirect {
            status: 302,
            to: RedirectTarget::LoginPage,
        },
    )
    .await;
    write_config(&home, &format!("api_url = \"{}\"\n", gate.url()), 0o600);
    let (_, out) = doctor(&home).await;
    let l = line(&out, "mem0 server");
    assert!(l.starts_with("FAIL") && l.contains("/login"), "{out}");
    assert!(out.contains("login page"), "{out}");

    let prefixed = Proxy::start(
        srv.url(),
        ProxyMode::PathPrefix {
            prefix: "/mem0".into(),
        },
    )
    .await;
    let wrong = format!("{}/api", prefixed.url());
    write_config(&home, &format!("api_url = \"{wrong}\"\n"), 0o600);
    let (_, out) = doctor(&home).await;
    let l = line(&out, "mem0 server");
    assert!(l.starts_with("FAIL") && l.contains("404"), "{out}");
    assert!(
        out.contains("memories stay queued, nothing is sent until this is fixed"),
        "{out}"
    );
    let _ = srv;
}

/// The Claude Code plugin (enabled in settings.json) registers the server
/// and the hooks: `doctor` counts it, checks that its scripts find the
/// binary, and warns when `install claude-code`'s entries are active too (a
/// double registration), with the fix; `install claude-code` says so too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_is_a_registration_and_the_plugin_with_install_is_a_warning() {
    let srv = server(Kind::Oss, None, 6).await;
    let home = Sandbox::new(bin!());
    write_config(&home, &format!("api_url = \"{}\"\n", srv.url()), 0o600);
    let c = home.ops_command(&["install", "schedule"]);
    tokio::task::spawn_blocking(move || ok(c))
        .await
        .expect("join");
    let settings = home.home().join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().expect("dir")).expect("mkdir");
    let enabled = |on: bool| {
        std::fs::write(
            &settings,
            serde_json::json!({"enabledPlugins": {"mem0-queue@mem0-queue": on}}).to_string(),
        )
        .expect("settings")
    };
    let doctor_with = |bin: Option<&'static str>| {
        let mut c = home.ops_command(&["doctor"]);
        if let Some(b) = bin {
            c.env("MEM0_QUEUE_BIN", b);
        }
        async move {
            let o = tokio::task::spawn_blocking(move || run(c))
                .await
                .expect("join");
            let (out, err) = text(&o);
            (o.status.code(), format!("{out}{err}"))
        }
    };

    // The plugin alone: hook and server OK, through the plugin.
    enabled(true);
    let (code, out) = doctor_with(Some(bin!())).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(line(&out, "plugin").starts_with("OK"), "{out}");
    assert!(line(&out, "plugin").contains(bin!()), "{out}");
    assert!(
        line(&out, "hook").starts_with("OK")
            && line(&out, "hook").contains("SessionStart, SessionEnd and PreCompact"),
        "{out}"
    );
    assert!(
        line(&out, "mcp server").starts_with("OK") && line(&out, "mcp server").contains("plugin"),
        "{out}"
    );
    assert!(!out.contains("registration:"), "{out}");
    // Its scripts would not find the binary: a WARN with the fix.
    let (_, out) = doctor_with(None).await;
    let l = line(&out, "plugin");
    assert!(
        l.starts_with("WARN") && l.contains("will not find the binary"),
        "{out}"
    );

    // And `install claude-code` on top: it warns, and doctor warns.
    let c = home.ops_command(&["install", "claude-code"]);
    let installed = tokio::task::spawn_blocking(move || ok(c))
        .await
        .expect("join");
    assert!(
        installed.contains("warning: the Claude Code plugin mem0-queue@mem0-queue is enabled too"),
        "{installed}"
    );
    let (code, out) = doctor_with(Some(bin!())).await;
    assert_eq!(code, Some(0), "a warning fails nothing:\n{out}");
    let l = line(&out, "registration");
    assert!(
        l.starts_with("WARN") && l.contains("two MCP servers"),
        "{out}"
    );
    assert!(
        out.contains(
            "fix: keep the plugin and remove the others: mem0-queue uninstall claude-code"
        ),
        "{out}"
    );

    // Uninstalled: the warning goes.
    let c = home.ops_command(&["uninstall", "claude-code"]);
    tokio::task::spawn_blocking(move || ok(c))
        .await
        .expect("join");
    let (code, out) = doctor_with(Some(bin!())).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("registration:"), "{out}");

    // A disabled plugin registers nothing: FAIL, naming both ways.
    enabled(false);
    let (code, out) = doctor_with(Some(bin!())).await;
    assert_eq!(code, Some(1), "{out}");
    for name in ["hook", "mcp server"] {
        assert!(line(&out, name).starts_with("FAIL"), "{name}:\n{out}");
    }
    assert!(
        out.contains("fix: claude plugin install mem0-queue@mem0-queue (or, without plugins, mem0-queue install claude-code)"),
        "{out}"
    );
    assert!(!out.contains("plugin:"), "{out}");
}

/// An `install claude-code` made before recall added only the SessionEnd
/// hook: a WARN saying sessions start without recall, fixed by installing
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_without_the_session_start_hook_is_a_warning() {
    let srv = server(Kind::Oss, None, 7).await;
    let home = Sandbox::new(bin!());
    write_config(&home, &format!("api_url = \"{}\"\n", srv.url()), 0o600);
    let c = home.ops_command(&["install", "claude-code"]);
    tokio::task::spawn_blocking(move || ok(c))
        .await
        .expect("join");
    let settings = home.home().join(".claude/settings.json");
    let mut s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&settings).expect("settings")).expect("json");
    let hooks = s["hooks"].as_object_mut().expect("hooks");
    hooks.remove("SessionStart");
    hooks.remove("PreCompact");
    std::fs::write(&settings, s.to_string()).expect("write");

    let (_, out) = doctor(&home).await;
    let l = line(&out, "hook");
    assert!(
        l.starts_with("WARN") && l.contains("no SessionStart or PreCompact hook"),
        "{out}"
    );
    assert!(
        out.contains("fix: mem0-queue install claude-code (it adds them)"),
        "{out}"
    );

    let c = home.ops_command(&["install", "claude-code"]);
    tokio::task::spawn_blocking(move || ok(c))
        .await
        .expect("join");
    let (_, out) = doctor(&home).await;
    let l = line(&out, "hook");
    assert!(
        l.starts_with("OK") && l.contains("(and SessionStart, PreCompact)"),
        "{out}"
    );
}

/// Issue 16: the daemon's checks. Running: its lock, its port answering 401
/// to a request without the token (ours, and the token never sent), the
/// token file 0600, and an HTTP registration carrying that token. Each
/// broken in turn is a FAIL with its fix: a token readable by others, a
/// registration with another token, the daemon gone while Claude Code
/// reaches mem0-queue through it.
#[test]
fn the_daemon_its_port_its_token_and_an_http_registration() {
    use mem0_queue_testkit::daemon::Daemon;
    let home = Sandbox::new(bin!());
    let d = Daemon::start(
        Daemon::command(&home, &home.data_dir(), &[]),
        &home.data_dir(),
    );
    let port = format!("daemon_port={}", d.port);
    ok(home.ops_command(&["--set", &port, "install", "claude-code", "--http"]));
    let doctor = || {
        let o = run(home.ops_command(&["--set", &port, "doctor"]));
        let (out, err) = text(&o);
        (o.status.code(), format!("{out}{err}"))
    };
    let (_, out) = doctor();
    let l = line(&out, "daemon");
    assert!(
        l.starts_with("OK") && l.contains(&format!("pid {}", d.pid)),
        "{out}"
    );
    let l = line(&out, "daemon port");
    assert!(l.starts_with("OK") && l.contains("(401)"), "{out}");
    assert!(line(&out, "daemon token").starts_with("OK"), "{out}");
    let l = line(&out, "mcp server");
    assert!(l.starts_with("OK") && l.contains("over HTTP"), "{out}");
    assert!(line(&out, "schedule").contains("not needed"), "{out}");

    let token = home.data_dir().join("daemon.token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, out) = doctor();
    assert_eq!(code, Some(1), "{out}");
    assert!(line(&out, "daemon token").starts_with("FAIL"), "{out}");
    assert!(
        out.contains(&format!("fix: chmod 600 {}", token.display())),
        "{out}"
    );
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    let cfg = home.home().join(".claude.json");
    let text_before = std::fs::read_to_string(&cfg).expect("read");
    let t = std::fs::read_to_string(&token).expect("token");
    std::fs::write(&cfg, text_before.replace(t.trim(), &"f".repeat(64))).expect("edit");
    let (_, out) = doctor();
    let l = line(&out, "mcp server");
    assert!(
        l.starts_with("FAIL") && l.contains("does not carry the token"),
        "{out}"
    );
    assert!(
        out.contains("fix: mem0-queue install claude-code --http"),
        "{out}"
    );
    std::fs::write(&cfg, text_before).expect("restore");

    d.kill9();
    let (code, out) = doctor();
    assert_eq!(code, Some(1), "{out}");
    let l = line(&out, "daemon");
    assert!(l.starts_with("FAIL") && l.contains("not running"), "{out}");
    assert!(out.contains("fix: mem0-queue install daemon"), "{out}");
}
