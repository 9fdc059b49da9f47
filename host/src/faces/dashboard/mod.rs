//! `mem0-queue dashboard`: the queue on a local web page, served by this
//! binary (static HTML, CSS and JS embedded below; no build step), alone
//! or by the daemon on its own port ([`Dashboard`]).
//!
//! Security, since any web page the user visits can make their browser
//! send requests to 127.0.0.1:
//! - It listens on 127.0.0.1 only.
//! - Every request, the page and its assets included, must carry a fresh
//!   random token (32 bytes from the OS RNG): `?token=` in the page's URL,
//!   then the `X-Dashboard-Token` header from the page's script. Compared in
//!   constant time. Without it: 403 with an empty body.
//! - The Host header must be `127.0.0.1:PORT` or `localhost:PORT` (a DNS
//!   rebinding attack sends the attacker's host name); a request with a
//!   foreign `Origin`, or that the browser marks cross-site or same-site
//!   (another port of localhost), is refused as well.
//! - No CORS headers at all, so no other origin may read an answer; the
//!   actions are POSTs carrying the token.
//! - Every answer has `Cache-Control: no-store`, `X-Content-Type-Options:
//!   nosniff`, `Referrer-Policy: no-referrer` and a Content-Security-Policy
//!   that allows no inline script or style: the script and the stylesheet
//!   are separate, token-protected routes.
//! - Memory texts are not part of the page's state: a click on "reveal"
//!   fetches one text from `GET /api/entry/{id}`.

use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{Path as UrlPath, Request, State as Ax};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::engine::app::App;
use crate::engine::mem0::Reachability;
use crate::engine::store::{Counts, EntryView, State};
use crate::engine::text::rfc3339;
use crate::engine::worker::Settings;
use crate::faces::runtime::{runtime, terminated};
use crate::features::status::reachability_text;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
const FAVICON_SVG: &str = include_str!("favicon.svg");

/// The header that carries the token on API calls.
pub const TOKEN_HEADER: &str = "x-dashboard-token";

/// No inline script or style, nothing from another origin.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// How long a Mem0 probe result is shown before the next probe.
const PROBE_EVERY: Duration = Duration::from_secs(15);

/// The most failed or dead entries listed.
const LIST_MAX: usize = 100;

/// How long the dashboard waits for a running sync to give its leases back
/// when it is stopped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

struct Dash {
    app: Arc<App>,
    token: String,
    /// `127.0.0.1:PORT` and `localhost:PORT`.
    hosts: [String; 2],
    sync: Mutex<SyncState>,
    probe: Mutex<ProbeCache>,
    stop: watch::Receiver<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
struct SyncState {
    running: bool,
    started_at: Option<i64>,
    start: Counts,
    due: u64,
    /// The last finished run of this dashboard.
    report: Option<Value>,
    error: Option<String>,
}

#[derive(Default)]
struct ProbeCache {
    at: Option<Instant>,
    value: Option<Reachability>,
    probing: bool,
}

/// A fresh token: 32 bytes from the OS RNG, hex.
fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the OS RNG failed: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares in time that depends on the lengths only (the token's length
/// is no secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// `mem0-queue dashboard`: serves until SIGTERM or SIGINT.
pub fn run(app: App, port: u16, open: bool) -> anyhow::Result<()> {
    runtime()?.block_on(serve(app, port, open))
}

/// The dashboard's routes for one port, behind a fresh token: what
/// `mem0-queue dashboard` serves alone, and what the daemon serves beside
/// its MCP endpoint (on the daemon's port, its token made at the daemon's
/// start and shown by `mem0-queue dashboard`).
pub struct Dashboard {
    dash: Arc<Dash>,
}

impl Dashboard {
    /// The dashboard of `app` on 127.0.0.1:`port` (the port the listener
    /// got), stopping its sync when `stop` turns true. Starts a first
    /// probe of Mem0, so the page shows its answer at once: call it on the
    /// async runtime.
    pub fn new(app: Arc<App>, port: u16, stop: watch::Receiver<bool>) -> anyhow::Result<Self> {
        let dash = Arc::new(Dash {
            app,
            token: new_token()?,
            hosts: [format!("127.0.0.1:{port}"), format!("localhost:{port}")],
            sync: Mutex::new(SyncState::default()),
            probe: Mutex::new(ProbeCache::default()),
            stop,
            task: Mutex::new(None),
        });
        let _ = reachability(&dash);
        Ok(Self { dash })
    }

    /// The page's URL, with its token.
    pub fn url(&self) -> String {
        format!("http://{}/?token={}", self.dash.hosts[0], self.dash.token)
    }

    /// Every route of the dashboard, each behind its guard.
    pub fn router(&self) -> Router {
        router(self.dash.clone())
    }

    /// Waits (bounded) for a sync started from the page to give its leases
    /// back, once `stop` has turned true.
    pub async fn finish(&self) {
        let task = self.dash.task.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = task {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, t).await;
        }
    }
}

async fn serve(app: App, port: u16, open: bool) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    let port = listener.local_addr()?.port();
    let (stop_tx, stop_rx) = watch::channel(false);
    let dashboard = Dashboard::new(Arc::new(app), port, stop_rx.clone())?;
    let url = dashboard.url();
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "dashboard: {url}")?;
        out.flush()?;
    }
    eprintln!("mem0-queue: the dashboard runs until Ctrl-C; the URL above holds its access token");
    if open {
        open_browser(&url);
    }
    let shutdown = async move {
        terminated().await;
        let _ = stop_tx.send(true);
    };
    let server = axum::serve(listener, dashboard.router())
        .with_graceful_shutdown(shutdown)
        .into_future();
    let mut stop = stop_rx;
    tokio::select! {
        r = server => r.context("the dashboard server failed")?,
        // Open keep-alive connections may hold a graceful shutdown; bound it.
        _ = async {
            let _ = stop.changed().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {}
    }
    dashboard.finish().await;
    Ok(())
}

/// Best effort: the desktop's browser on the URL.
pub fn open_browser(url: &str) {
    let cmd = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    // The URL holds the token; it goes to the user's own opener only.
    match std::process::Command::new(cmd)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            std::thread::spawn(move || {
                if let Ok(status) = child.wait()
                    && !status.success()
                {
                    eprintln!(
                        "mem0-queue: {cmd} could not open a browser ({status}); open the URL above yourself"
                    );
                }
            });
        }
        Err(e) => eprintln!(
            "mem0-queue: cannot start {cmd} ({e}); open the URL above in your browser yourself"
        ),
    }
}

fn router(dash: Arc<Dash>) -> Router {
    Router::new()
        .route("/", get(page))
        .route(
            "/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/app.css",
            get(|| asset("text/css; charset=utf-8", APP_CSS)),
        )
        .route("/favicon.svg", get(|| asset("image/svg+xml", FAVICON_SVG)))
        .route("/api/state", get(api_state))
        .route("/api/entry/{id}", get(api_entry))
        .route("/api/retry", post(api_retry))
        .route("/api/sync", post(api_sync))
        .route("/api/sync/progress", get(api_progress))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(middleware::from_fn_with_state(dash.clone(), guard))
        .with_state(dash)
}

/// Every request goes through here, whatever its route.
async fn guard(Ax(d): Ax<Arc<Dash>>, req: Request, next: Next) -> Response {
    let mut resp = if allowed(&d, req.headers(), req.uri().query()) {
        next.run(req).await
    } else {
        StatusCode::FORBIDDEN.into_response()
    };
    secure(resp.headers_mut());
    resp
}

fn hv<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn allowed(d: &Dash, h: &HeaderMap, query: Option<&str>) -> bool {
    // DNS rebinding: the browser sends the attacker's host name.
    match hv(h, header::HOST.as_str()) {
        Some(host) if d.hosts.iter().any(|a| a.eq_ignore_ascii_case(host)) => {}
        _ => return false,
    }
    if let Some(origin) = hv(h, header::ORIGIN.as_str()) {
        let ok = origin
            .strip_prefix("http://")
            .is_some_and(|o| d.hosts.iter().any(|a| a.eq_ignore_ascii_case(o)));
        if !ok {
            return false;
        }
    }
    // Another site, or another port of localhost ("same-site").
    if let Some(site) = hv(h, "sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    let given = hv(h, TOKEN_HEADER)
        .map(str::to_string)
        .or_else(|| query_token(query));
    given.is_some_and(|t| ct_eq(t.as_bytes(), d.token.as_bytes()))
}

fn secure(h: &mut HeaderMap) {
    for (k, v) in [
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("content-security-policy", CSP),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
}

async fn page(Ax(d): Ax<Arc<Dash>>) -> Response {
    // The token is hex: nothing to escape.
    let html = INDEX_HTML.replace("{{TOKEN}}", &d.token);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

async fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The API URL without credentials or query.
fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "(not a valid URL)".into(),
    }
}

/// The last probe's result; starts a new probe in the background when it is
/// stale, so a state poll never waits on a slow server.
fn reachability(d: &Arc<Dash>) -> (Option<Reachability>, bool) {
    let Ok(client) = d.app.client.clone() else {
        return (Some(Reachability::NotConfigured), false);
    };
    let Ok(mut p) = d.probe.lock() else {
        return (None, false);
    };
    let stale = p.at.is_none_or(|t| t.elapsed() >= PROBE_EVERY);
    if stale && !p.probing {
        p.probing = true;
        let d = d.clone();
        tokio::spawn(async move {
            let r = client.probe().await;
            if let Ok(mut p) = d.probe.lock() {
                p.value = Some(r);
                p.at = Some(Instant::now());
                p.probing = false;
            }
        });
    }
    (p.value.clone(), p.probing)
}

/// A path under $HOME, shown as `~/...`.
fn tilde(path: &str) -> String {
    match std::env::var("HOME") {
        Ok(home) if !home.is_empty() && home != "/" => match path.strip_prefix(home.as_str()) {
            Some(rest) if rest.starts_with('/') => format!("~{rest}"),
            _ => path.to_string(),
        },
        _ => path.to_string(),
    }
}

fn row(e: &EntryView, now: i64) -> Value {
    json!({
        "id": e.id,
        "project": e.project,
        "created": rfc3339(e.created_at),
        "age_s": ((now - e.created_at).max(0) / 1000),
        "attempts": e.attempts,
        "runs_failed": e.runs_failed,
        "last_error": e.dead_reason.clone().or_else(|| e.last_error.clone()),
    })
}

async fn api_state(Ax(d): Ax<Arc<Dash>>) -> Response {
    let report = match crate::features::status::gather(&d.app, false).await {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read the queue: {e}"),
            );
        }
    };
    let now = report.now_ms;
    let lists = d
        .app
        .store
        .run(move |s| {
            Ok((
                s.list(State::Failed, LIST_MAX, false)?,
                s.list(State::Dead, LIST_MAX, false)?,
                s.history(now, HOUR_MS, 24)?,
                s.history(now, DAY_MS, 7)?,
            ))
        })
        .await;
    let (failed, dead, hours, days) = match lists {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read the queue: {e}"),
            );
        }
    };
    let (reach, probing) = reachability(&d);
    let s = &report.stats;
    let base = report.json();
    let last_result = if s.last_sync.is_none() {
        "no sync has run yet".to_string()
    } else if s.consecutive_failing_runs == 0 {
        "everything due was delivered".to_string()
    } else {
        format!(
            "entries were left undelivered ({} run{} in a row)",
            s.consecutive_failing_runs,
            if s.consecutive_failing_runs == 1 {
                ""
            } else {
                "s"
            }
        )
    };
    let buckets = |v: Vec<(i64, u64, u64)>| -> Value {
        v.into_iter()
            .map(|(t, saves, deliveries)| json!({"start": t, "saves": saves, "deliveries": deliveries}))
            .collect()
    };
    let body = json!({
        "now": now,
        "counts": base["counts"],
        "changes": base["changes"],
        "alerts": base["alerts"],
        "breaker": base["breaker"],
        "stats": base["stats"],
        "oldest_pending_age_s": base["oldest_pending_age_s"],
        "last_sync": {
            "at": s.last_sync.map(rfc3339),
            "age_s": s.last_sync.map(|t| (now - t).max(0) / 1000),
            "result": last_result,
            "last_success": s.last_success.map(rfc3339),
        },
        "mem0": {
            "configured": d.app.client.is_ok(),
            "url": report.api_url.as_deref().map(shown_url),
            "reachability": reach,
            "text": reach.as_ref().map(reachability_text),
            "probing": probing,
        },
        "policy": report.policy,
        "failed": failed.iter().map(|e| row(e, now)).collect::<Vec<_>>(),
        "dead": dead.iter().map(|e| row(e, now)).collect::<Vec<_>>(),
        "list_max": LIST_MAX,
        "history": { "hours": buckets(hours), "days": buckets(days) },
        "sync": progress(&d).await,
        "data_dir": tilde(&report.data_dir),
    });
    Json(body).into_response()
}

async fn api_entry(Ax(d): Ax<Arc<Dash>>, UrlPath(id): UrlPath<String>) -> Response {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return error(StatusCode::NOT_FOUND, "no such entry");
    }
    match d.app.store.run(move |s| s.get(&id, true)).await {
        Ok(e) => Json(json!({
            "id": e.id,
            "project": e.project,
            "state": e.state,
            "created": rfc3339(e.created_at),
            "content": e.content,
            "metadata": e.metadata,
        }))
        .into_response(),
        Err(crate::engine::store::StoreError::NotFound(_)) => {
            error(StatusCode::NOT_FOUND, "no such entry")
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct RetryBody {
    #[serde(default)]
    dead: bool,
    #[serde(default)]
    ids: Vec<String>,
}

async fn api_retry(Ax(d): Ax<Arc<Dash>>, Json(body): Json<RetryBody>) -> Response {
    if body.ids.len() > 10_000 {
        return error(StatusCode::BAD_REQUEST, "too many ids");
    }
    let now = d.app.clock.now_ms();
    match d
        .app
        .store
        .run(move |s| {
            let from = if body.dead {
                State::Dead
            } else {
                State::Failed
            };
            s.retry(&body.ids, from, now)
        })
        .await
    {
        Ok(moved) => Json(json!({ "moved": moved })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn api_sync(Ax(d): Ax<Arc<Dash>>) -> Response {
    let worker = match d.app.worker(Settings::from_config(d.app.config())) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::CONFLICT, format!("cannot sync: {e}")),
    };
    let start = match d.app.store.run(|s| s.counts()).await {
        Ok(c) => c,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    {
        let Ok(mut s) = d.sync.lock() else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the sync state is broken",
            );
        };
        if s.running {
            return error(StatusCode::CONFLICT, "a sync is already running");
        }
        *s = SyncState {
            running: true,
            started_at: Some(d.app.clock.now_ms()),
            start,
            due: start.undelivered(),
            report: None,
            error: None,
        };
    }
    let task = tokio::spawn({
        let d = d.clone();
        async move {
            let result = worker.run(d.stop.clone()).await;
            crate::features::notify::after_run(&d.app).await;
            if let Ok(mut s) = d.sync.lock() {
                s.running = false;
                match result {
                    Ok(r) => {
                        s.report = serde_json::to_value(&r).ok();
                        s.error = None;
                    }
                    Err(e) => {
                        s.report = None;
                        s.error = Some(e.to_string());
                    }
                }
            }
        }
    });
    if let Ok(mut t) = d.task.lock() {
        *t = Some(task);
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({"started": true, "due": start.undelivered()})),
    )
        .into_response()
}

async fn api_progress(Ax(d): Ax<Arc<Dash>>) -> Response {
    Json(progress(&d).await).into_response()
}

/// The dashboard's sync: counts against the number due at its start while
/// it runs, its report once it ended.
async fn progress(d: &Arc<Dash>) -> Value {
    let (running, start, due, started_at, report, err) = match d.sync.lock() {
        Ok(s) => (
            s.running,
            s.start,
            s.due,
            s.started_at,
            s.report.clone(),
            s.error.clone(),
        ),
        Err(_) => return json!({"running": false}),
    };
    if started_at.is_none() {
        return json!({"running": false});
    }
    let mut v = json!({
        "running": running,
        "due": due,
        "started_at": started_at.map(rfc3339),
        "report": report,
        "error": err,
    });
    if running {
        if let Ok(now) = d.app.store.run(|s| s.counts()).await {
            v["delivered"] = json!(now.delivered.saturating_sub(start.delivered));
            v["dead"] = json!(now.dead.saturating_sub(start.dead));
            v["failed"] = json!(now.failed);
        }
    } else if let Some(r) = &report {
        v["delivered"] = r["delivered"].clone();
        v["dead"] = r["dead"].clone();
        v["failed"] = r["failed"].clone();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_and_long() {
        let a = new_token().expect("token");
        let b = new_token().expect("token");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn compare_and_query() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert_eq!(
            query_token(Some("x=1&token=ab%20c")).as_deref(),
            Some("ab c")
        );
        assert_eq!(query_token(None), None);
    }

    #[test]
    fn shown_url_drops_credentials() {
        assert_eq!(
            shown_url("https://user:secret@example.org/x?key=1"),
            "https://example.org/x"
        );
    }
}
