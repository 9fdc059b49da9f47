//! MCP over Streamable HTTP, for the daemon: rmcp's server implementation
//! mounted at `/mcp`, one session per client, serving the same
//! [`Mem0QueueServer`] (the same tools, the same replies) as stdio.
//!
//! Security (the MCP specification's "Security Warning" for this
//! transport, and what a local service reachable by every web page the
//! user opens needs):
//! - Every request must carry `Authorization: Bearer <token>` (the token in
//!   `<data dir>/daemon.token`, mode 0600), compared in constant time;
//!   without it, or with a wrong one: 401 with `WWW-Authenticate: Bearer`.
//! - A request with an `Origin` header other than the daemon's own
//!   (`http://127.0.0.1:PORT`, `http://localhost:PORT`,
//!   `http://[::1]:PORT`) gets 403 before the token is even looked at: a
//!   web page's cross-site request is refused whatever it carries (DNS
//!   rebinding). Clients that are not browsers send no Origin.
//! - On a loopback address, the Host header must name a loopback host too
//!   (rmcp's own check, 403): a rebinding page's requests carry the
//!   attacker's host name. On a non-loopback address (`daemon_allow_remote`)
//!   the Host is not checked (any name may reach the machine); the token
//!   and the Origin check still apply.
//!
//! A client that goes away in the middle of a call loses nothing it was
//! told was saved: rmcp runs each request in a task of its own that a
//! disconnect does not cancel, and a save commits in one `spawn_blocking`
//! closure that runs to its end once started.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Mem0QueueServer;
use crate::engine::app::App;

/// How long a session may stay idle before the daemon closes it. rmcp's
/// default is 5 minutes; a Claude Code window left alone over lunch would
/// then find its session gone, and whether a client starts a new one on
/// the 404 (as the specification asks) varies. A day keeps every window of
/// a working day connected, and still ends the sessions of clients that
/// died without saying goodbye (each costs one idle task until then).
const SESSION_IDLE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Who may call the endpoint.
#[derive(Clone)]
pub struct Access {
    /// The bearer token.
    pub token: Arc<str>,
    /// The port the daemon listens on (its own origins are allowed).
    pub port: u16,
    /// True when listening on a non-loopback address: the Host header is
    /// then not restricted to loopback names.
    pub remote: bool,
}

impl Access {
    /// The origins of the daemon's own pages.
    fn origins(&self) -> Vec<String> {
        ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .map(|h| format!("http://{h}:{}", self.port))
            .collect()
    }
}

/// The `/mcp` routes: rmcp's Streamable HTTP service behind the token and
/// Origin guard. Each session gets a clone of one server value (cheap:
/// `Arc`s and the tool router), made once here.
pub fn router(
    app: Result<Arc<App>, String>,
    nudge: Arc<Notify>,
    access: Access,
    cancel: CancellationToken,
) -> Router {
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(cancel)
        .with_allowed_origins(access.origins());
    if access.remote {
        config = config.disable_allowed_hosts();
    }
    let server = Mem0QueueServer::new(app, nudge);
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(SESSION_IDLE);
    let service =
        StreamableHttpService::new(move || Ok(server.clone()), Arc::new(sessions), config);
    Router::new()
        .nest_service(crate::engine::daemon::MCP_PATH, service)
        .layer(middleware::from_fn_with_state(Arc::new(access), guard))
}

/// The Origin check, then the token; every request to `/mcp` goes through.
async fn guard(State(a): State<Arc<Access>>, req: Request, next: Next) -> Response {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .is_ok_and(|o| a.origins().iter().any(|x| x.eq_ignore_ascii_case(o)));
        if !ok {
            return (StatusCode::FORBIDDEN, "Forbidden: Origin not allowed\n").into_response();
        }
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    if !given.is_some_and(|t| ct_eq(t.as_bytes(), a.token.as_bytes())) {
        let mut r = (
            StatusCode::UNAUTHORIZED,
            "Unauthorized: this endpoint needs `Authorization: Bearer <token>` (the token is in \
             the data dir's daemon.token)\n",
        )
            .into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    next.run(req).await
}

/// Compares in time that depends on the lengths only (the token's length
/// is no secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_origins() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        let a = Access {
            token: "t".into(),
            port: 9,
            remote: false,
        };
        assert_eq!(
            a.origins(),
            ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9"]
        );
    }
}
