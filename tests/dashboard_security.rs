//! `mem0-queue dashboard` without a browser: who may talk to it. Every
//! request needs the token and a loopback Host; no CORS header is ever
//! sent; every answer says no-store, nosniff and a strict CSP; actions are
//! token-checked POSTs. Requests go over raw TCP so that each header is
//! exactly what the test wrote.

use mem0_queue::engine::store::State;
use mem0_queue_testkit::bin;
use mem0_queue_testkit::dash::{Answer, Dashboard, Seeded, get, raw, seed, slow_server, syncing};
use mem0_queue_testkit::db::{counts, state_of};
use mem0_queue_testkit::sandbox::Sandbox;

struct Setup {
    _sb: Sandbox,
    db: std::path::PathBuf,
    seeded: Seeded,
    dash: Dashboard,
}

fn setup() -> Setup {
    let sb = Sandbox::new(bin!());
    let db = sb.db();
    let seeded = seed(&db, 2, 3, 1, 4);
    let dash = Dashboard::start(Dashboard::command(&sb, &sb.data_dir(), &[]));
    Setup {
        _sb: sb,
        db,
        seeded,
        dash,
    }
}

fn assert_hardened(a: &Answer, what: &str) {
    assert_eq!(a.header("cache-control"), Some("no-store"), "{what}: {a:?}");
    assert_eq!(
        a.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    let csp = a
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: a CSP"));
    assert!(csp.contains("default-src 'self'"), "{what}: {csp}");
    assert!(csp.contains("script-src 'self'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{what}: {csp}");
    for (k, _) in &a.headers {
        assert!(
            !k.starts_with("access-control-"),
            "{what}: no CORS header may be sent, got {k}"
        );
    }
}

fn assert_refused(a: &Answer, what: &str) {
    assert_eq!(a.status, 403, "{what}: {a:?}");
    assert!(
        a.body.is_empty(),
        "{what}: a refusal gives no hints, got {:?}",
        String::from_utf8_lossy(&a.body)
    );
    assert_hardened(a, what);
}

#[test]
fn the_url_is_the_only_stdout_and_binds_loopback_only() {
    let s = setup();
    assert_eq!(s.dash.token.len(), 64, "a 32-byte token, hex");
    assert!(
        s.dash.token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}",
        s.dash.token
    );
    // Another loopback address reaches a server bound to 0.0.0.0, not one
    // bound to 127.0.0.1.
    let other = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 2], s.dash.port)),
        std::time::Duration::from_secs(2),
    );
    assert!(
        other.is_err(),
        "the dashboard answers on 127.0.0.2: it is not bound to 127.0.0.1 only"
    );
    let rest = s.dash.stop();
    assert_eq!(rest, "", "nothing but the URL line on stdout");
}

#[test]
fn the_page_needs_the_token_and_a_loopback_host() {
    let s = setup();
    let (port, token) = (s.dash.port, s.dash.token.clone());
    let host = format!("127.0.0.1:{port}");

    let ok = get(port, &format!("/?token={token}"), &host, &[]);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_hardened(&ok, "the page");
    assert!(
        ok.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{ok:?}"
    );
    let html = String::from_utf8_lossy(&ok.body);
    assert!(html.contains("/app.js?token="), "{html}");
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline script or style: {html}"
    );
    let local = get(
        port,
        &format!("/?token={token}"),
        &format!("localhost:{port}"),
        &[],
    );
    assert_eq!(local.status, 200, "Host localhost:PORT is fine");

    for (path, what) in [
        ("/".to_string(), "no token"),
        ("/?token=".to_string(), "an empty token"),
        (
            format!("/?token={}", "0".repeat(64)),
            "a wrong token of the right length",
        ),
        (format!("/?token={}", &token[..63]), "a truncated token"),
        (format!("/?token={token}x"), "a token with a suffix"),
        ("/app.js".to_string(), "the script without a token"),
        ("/app.css".to_string(), "the stylesheet without a token"),
        ("/api/state".to_string(), "the API without a token"),
        (
            "/no/such/page".to_string(),
            "an unknown path without a token",
        ),
        (
            format!("/api/entry/{}", s.seeded.dead[0]),
            "an entry without a token",
        ),
    ] {
        assert_refused(&get(port, &path, &host, &[]), what);
    }
    // DNS rebinding: the right token, the attacker's host name.
    for bad_host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        format!("127.0.0.1.evil.example:{port}"),
    ] {
        assert_refused(
            &get(port, &format!("/?token={token}"), &bad_host, &[]),
            &format!("Host {bad_host}"),
        );
    }
    // No Host at all (HTTP/1.0).
    let a = raw(port, &format!("GET /?token={token} HTTP/1.0\n"), b"");
    assert_refused(&a, "no Host header");
    // With the token, an unknown path is a plain 404.
    let a = get(port, &format!("/nope?token={token}"), &host, &[]);
    assert_eq!(a.status, 404);
    assert_hardened(&a, "a 404");
}

#[test]
fn the_api_takes_the_token_in_a_header_and_never_sends_cors() {
    let s = setup();
    let (port, token) = (s.dash.port, s.dash.token.clone());
    let host = format!("127.0.0.1:{port}");
    let tok = format!("X-Dashboard-Token: {token}");

    let st = get(port, "/api/state", &host, &[&tok]);
    assert_eq!(st.status, 200, "{st:?}");
    assert_hardened(&st, "/api/state");
    let v = st.json();
    assert_eq!(v["counts"]["pending"], 2, "{v}");
    assert_eq!(v["counts"]["failed"], 3, "{v}");
    assert_eq!(v["counts"]["dead"], 1, "{v}");
    assert_eq!(v["counts"]["delivered"], 4, "{v}");
    assert_eq!(v["failed"].as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(v["failed"][0]["last_error"], "HTTP 503 Service Unavailable");
    assert_eq!(v["history"]["hours"].as_array().map(Vec::len), Some(24));
    assert_eq!(v["history"]["days"].as_array().map(Vec::len), Some(7));
    let saves: u64 = v["history"]["days"]
        .as_array()
        .expect("days")
        .iter()
        .map(|b| b["saves"].as_u64().expect("a count"))
        .sum();
    assert_eq!(saves, 10, "every seeded save falls in the last 7 days: {v}");
    // The state never carries memory texts.
    let text = st.body.clone();
    assert!(
        !String::from_utf8_lossy(&text).contains("the VPS was down"),
        "memory texts appear only on reveal"
    );
    // The query works as well for the API.
    let q = get(port, &format!("/api/state?token={token}"), &host, &[]);
    assert_eq!(q.status, 200);

    // Reveal: the text, on its own route.
    let e = get(
        port,
        &format!("/api/entry/{}", s.seeded.failed[0]),
        &host,
        &[&tok],
    );
    assert_eq!(e.status, 200, "{e:?}");
    assert!(
        e.json()["content"]
            .as_str()
            .is_some_and(|c| c.contains("the VPS was down")),
        "{e:?}"
    );

    // A foreign Origin, or a browser saying cross-site or same-site (another
    // port of localhost), is refused even with the token.
    for h in [
        "Origin: http://evil.example",
        "Origin: null",
        &format!("Origin: http://localhost:{}", port.wrapping_add(1)),
        "Sec-Fetch-Site: cross-site",
        "Sec-Fetch-Site: same-site",
    ] {
        assert_refused(&get(port, "/api/state", &host, &[&tok, h]), h);
    }
    let own = get(
        port,
        "/api/state",
        &host,
        &[
            &tok,
            &format!("Origin: http://127.0.0.1:{port}"),
            "Sec-Fetch-Site: same-origin",
        ],
    );
    assert_eq!(own.status, 200, "the page's own origin: {own:?}");

    // A CORS preflight gets nothing that would allow a cross-origin call.
    let pre = raw(
        port,
        &format!(
            "OPTIONS /api/retry HTTP/1.1\nHost: {host}\nOrigin: http://evil.example\n\
             Access-Control-Request-Method: POST\nAccess-Control-Request-Headers: x-dashboard-token, content-type\n"
        ),
        b"",
    );
    assert_refused(&pre, "a preflight");
}

#[test]
fn actions_are_token_checked_posts() {
    let s = setup();
    let (port, token) = (s.dash.port, s.dash.token.clone());
    let host = format!("127.0.0.1:{port}");
    let body = br#"{"dead": false}"#;
    let post = |extra: &str, body: &[u8]| {
        raw(
            port,
            &format!(
                "POST /api/retry HTTP/1.1\nHost: {host}\nContent-Type: application/json\n{extra}"
            ),
            body,
        )
    };

    assert_refused(&post("", body), "a retry without the token");
    assert_refused(
        &post(&format!("X-Dashboard-Token: {}\n", "f".repeat(64)), body),
        "a retry with a wrong token",
    );
    assert_refused(
        &raw(
            port,
            &format!(
                "POST /api/retry HTTP/1.1\nHost: evil.example:{port}\nContent-Type: application/json\nX-Dashboard-Token: {token}\n"
            ),
            body,
        ),
        "a retry with a foreign Host",
    );
    assert_refused(
        &post(
            &format!("X-Dashboard-Token: {token}\nOrigin: http://evil.example\n"),
            body,
        ),
        "a retry from another origin",
    );
    assert_eq!(counts(&s.db).failed, 3, "no refused request moved anything");

    // A GET is no way to act.
    let g = get(
        port,
        "/api/retry",
        &host,
        &[&format!("X-Dashboard-Token: {token}")],
    );
    assert_eq!(g.status, 405, "{g:?}");
    assert_eq!(counts(&s.db).failed, 3);

    let ok = post(&format!("X-Dashboard-Token: {token}\n"), body);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_hardened(&ok, "a retry");
    assert_eq!(ok.json()["moved"], 3);
    let c = counts(&s.db);
    assert_eq!((c.failed, c.pending, c.dead), (0, 5, 1), "{c:?}");
    for id in &s.seeded.failed {
        assert_eq!(state_of(&s.db, id), State::Pending);
    }

    // Without a Mem0 server, a sync is refused with the reason.
    let sync = raw(
        port,
        &format!("POST /api/sync HTTP/1.1\nHost: {host}\nX-Dashboard-Token: {token}\n"),
        b"",
    );
    assert_eq!(sync.status, 409, "{sync:?}");
    assert!(
        sync.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("no Mem0 server is configured")),
        "{sync:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sync_at_a_time_with_its_progress() {
    let sb = Sandbox::new(bin!());
    let db = sb.db();
    let seeded = seed(&db, 5, 0, 0, 0);
    let server = slow_server(1, std::time::Duration::from_millis(300)).await;
    let dash = syncing(&sb, &sb.data_dir(), &server).await;
    let (port, token) = (dash.port, dash.token.clone());
    let post_sync = move || {
        raw(
            port,
            &format!(
                "POST /api/sync HTTP/1.1\nHost: 127.0.0.1:{port}\nX-Dashboard-Token: {token}\n"
            ),
            b"",
        )
    };
    let first = tokio::task::spawn_blocking(post_sync.clone())
        .await
        .expect("post");
    assert_eq!(first.status, 202, "{first:?}");
    assert_eq!(first.json()["due"], 5);
    let second = tokio::task::spawn_blocking(post_sync).await.expect("post");
    assert_eq!(second.status, 409, "{second:?}");
    assert!(
        second.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("already running")),
        "{second:?}"
    );
    let host = format!("127.0.0.1:{port}");
    let tok = format!("X-Dashboard-Token: {}", dash.token);
    let mut samples = Vec::new();
    let mut done = None;
    for _ in 0..300 {
        let p = tokio::task::spawn_blocking({
            let (host, tok) = (host.clone(), tok.clone());
            move || get(port, "/api/sync/progress", &host, &[&tok])
        })
        .await
        .expect("get")
        .json();
        if p["running"] == false {
            done = Some(p);
            break;
        }
        assert_eq!(p["due"], 5, "{p}");
        samples.push(p["delivered"].as_u64().unwrap_or(0));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let done = done.expect("the sync ends within 30 s");
    assert!(
        samples.iter().any(|&d| d > 0 && d < 5),
        "progress was seen between 0 and 5: {samples:?}"
    );
    assert!(samples.windows(2).all(|w| w[0] <= w[1]), "{samples:?}");
    assert_eq!(done["delivered"], 5, "{done}");
    assert_eq!(done["report"]["remaining"], 0, "{done}");
    let c = counts(&db);
    assert_eq!((c.pending, c.delivered), (0, 5), "{c:?}");
    for id in &seeded.pending {
        assert_eq!(state_of(&db, id), State::Delivered);
    }
    // A new sync may start once the last one ended.
    let again = raw(
        port,
        &format!(
            "POST /api/sync HTTP/1.1\nHost: {host}\nX-Dashboard-Token: {}\n",
            dash.token
        ),
        b"",
    );
    assert_eq!(again.status, 202, "{again:?}");
    assert_eq!(again.json()["due"], 0);
    tokio::task::spawn_blocking(move || dash.stop())
        .await
        .expect("stop");
    server.shutdown().await;
}
