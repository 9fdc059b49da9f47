//! The daemon serves the dashboard on its own port (issue 16), with the
//! dashboard's token rules: `mem0-queue dashboard` prints the running
//! daemon's URL (and exits) instead of starting a server of its own; the
//! page and its API answer with the token; without it, with a wrong one,
//! with a foreign Host or Origin, the answer is an empty 403; the MCP
//! endpoint beside it keeps its own token (the dashboard's opens nothing
//! there, and the MCP token opens no page).

use mem0_queue_testkit::bin;
use mem0_queue_testkit::daemon::Daemon;
use mem0_queue_testkit::dash::{self, Dashboard};
use mem0_queue_testkit::sandbox::Sandbox;
use mem0_queue_testkit::wait;

#[test]
fn the_daemon_serves_the_dashboard_behind_its_token() {
    let sb = Sandbox::new(bin!());
    let data = sb.data_dir();
    dash::seed(&sb.db(), 3, 2, 1, 5);
    let d = Daemon::start(Daemon::command(&sb, &data, &[]), &data);

    // `mem0-queue dashboard` points at the daemon's page and exits.
    let out = wait::run(Dashboard::command(&sb, &data, &[]), wait::PROCESS_LIMIT);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let url = stdout
        .trim()
        .strip_prefix("dashboard: ")
        .unwrap_or_else(|| panic!("`dashboard: URL`, got {stdout}"));
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{}/?token=", d.port)),
        "{url}"
    );
    assert!(
        stderr.contains(&format!("the daemon (pid {})", d.pid)),
        "{stderr}"
    );
    let token = url.split("token=").nth(1).expect("a token");
    assert_ne!(token, d.token, "the dashboard has a token of its own");

    let host = format!("127.0.0.1:{}", d.port);
    let page = dash::get(d.port, &format!("/?token={token}"), &host, &[]);
    assert_eq!(page.status, 200);
    assert!(
        String::from_utf8_lossy(&page.body).contains("<html"),
        "{page:?}"
    );
    let state = dash::get(
        d.port,
        "/api/state",
        &host,
        &[&format!("X-Dashboard-Token: {token}")],
    );
    assert_eq!(state.status, 200, "{state:?}");
    let state = state.json();
    assert_eq!(state["counts"]["pending"], 3, "{state}");
    assert_eq!(state["counts"]["failed"], 2, "{state}");

    // Its token rules.
    for (path, h, extra) in [
        ("/".to_string(), host.clone(), vec![]),
        ("/?token=00".to_string(), host.clone(), vec![]),
        (format!("/?token={}", d.token), host.clone(), vec![]),
        (
            format!("/?token={token}"),
            format!("evil.example:{}", d.port),
            vec![],
        ),
        (
            format!("/?token={token}"),
            host.clone(),
            vec!["Origin: http://evil.example".to_string()],
        ),
    ] {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let a = dash::get(d.port, &path, &h, &extra);
        assert_eq!(a.status, 403, "{path} Host {h} {extra:?}");
        assert!(a.body.is_empty(), "an empty 403");
    }
    // The MCP endpoint wants its own token, not the dashboard's.
    let mcp = dash::raw(
        d.port,
        &format!(
            "POST /mcp HTTP/1.1\nHost: {host}\nContent-Type: application/json\n\
             Accept: application/json, text/event-stream\nAuthorization: Bearer {token}\n"
        ),
        b"{}",
    );
    assert_eq!(mcp.status, 401);

    let (status, _) = d.stop();
    assert!(status.success(), "{status}");
}
