//! A reverse proxy on 127.0.0.1 in front of an upstream (normally a running
//! [`Mem0Server`](crate::mem0_server::Mem0Server)), modelling what sits between a
//! user's mem0-queue and their Mem0: nginx or Caddy (a read timeout, its HTML error
//! pages, `return 301 https://…`, a `location /prefix/`), an SSO gate (oauth2-proxy,
//! Cloudflare Access), or some other app at the configured URL.
//!
//! - Each [`ProxyMode`] answers with the status, headers and body the real software
//!   sends; [`Proxy::set_mode`] switches at run time.
//! - Every request is recorded ([`ProxyRecord`]): what was answered and whether it
//!   went upstream.
//! - Every upstream call runs in a task of its own that finishes even when the proxy
//!   has already given up on it (as Mem0 finishes and stores an add after nginx's
//!   504); [`Proxy::settle`] waits for those.
//! - [`Proxy::start_tls`] serves any mode over TLS with a
//!   [`TestCa`](crate::tls::TestCa)'s certificate.
//!
//! It never follows a redirect and talks to nothing but its upstream. Every upstream
//! call, handshake and wait is bounded; a [`ProxyMode::Tarpit`] connection lasts
//! until [`Proxy::shutdown`] (or drop), by design.
//!
//! ```text
//! let server = worker::server(Kind::Oss, None, 1).await;
//! let proxy = Proxy::start(server.url(), ProxyMode::GatewayTimeout {
//!     read_timeout: Duration::from_millis(100),
//! }).await;
//! // point the client at proxy.url() …
//! proxy.settle().await; // the upstream calls the proxy gave up on have ended
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, SERVER};
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::tls::TestCa;

/// How long [`ProxyMode::Pass`] waits for the upstream's answer before it answers
/// 504: nginx's default `proxy_read_timeout`.
pub const NGINX_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The hard limit of one upstream call (connect, send, whole answer), so a detached
/// call always ends. Longer than [`NGINX_READ_TIMEOUT`], so that in `Pass` mode the
/// 504 comes from the read timeout, as nginx's does.
pub const UPSTREAM_LIMIT: Duration = Duration::from_secs(120);

/// Connect timeout to the upstream: it is on loopback, where a connect is made or
/// refused at once; this only bounds the unexpected.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Idle keep-alive connections kept to the upstream: a test sends at most a few
/// requests at once; bounded so a long test does not pile up sockets.
const UPSTREAM_POOL_IDLE: usize = 8;

/// The largest request body accepted; bigger ones get 413 as from nginx, whose
/// default `client_max_body_size` this is (1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long [`Proxy::settle`] waits for the detached upstream calls. Tests inject
/// latencies well under a second; a call to a hanging upstream ends only at
/// [`UPSTREAM_LIMIT`], so such a test uses [`Proxy::settle_within`] or none.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// How long a TLS handshake may take: a client that opens TCP and never speaks TLS
/// must not hold a task until shutdown.
const TLS_HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// The path of the SSO gate's sign-in page; `GET` on it answers [`LOGIN_PAGE_HTML`] in
/// every mode but [`ProxyMode::Tarpit`] (no Mem0 route is called `/login`, so a gate
/// in front owns it).
pub const LOGIN_PATH: &str = "/login";

/// The statuses a [`ProxyMode::Redirect`] may use: the five redirects with a
/// `Location` that nginx's `return` and Go's `http.Redirect` send.
pub const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

/// The body of [`ProxyMode::JsonOfAnotherShape`]: valid JSON with ids, the list page
/// of some other app, not a Mem0 answer.
pub const JSON_OF_ANOTHER_SHAPE: &str = r#"{"status":"ok","items":[{"id":"x1"},{"id":"x2"}]}"#;

/// `Content-Type` of nginx's own pages (error pages and `return 30x`).
const NGINX_CONTENT_TYPE: &str = "text/html";

/// `Content-Type` of the SSO gate's pages (Go's `net/http`, as oauth2-proxy sends).
pub const LOGIN_CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// The SSO gate's sign-in page, shaped like oauth2-proxy's: a `<title>Sign In</title>`
/// page whose only action is a "Sign in with …" button. Answered with status 200.
pub const LOGIN_PAGE_HTML: &str = "<!DOCTYPE html>
<html lang=\"en\" charset=\"utf-8\">
  <head>
    <meta charset=\"utf-8\">
    <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">
    <title>Sign In</title>
  </head>
  <body class=\"has-background-light\">
  <section class=\"section\">
    <div class=\"box block sign-in-box has-text-centered\">
      <form method=\"GET\" action=\"/oauth2/start\">
        <input type=\"hidden\" name=\"rd\" value=\"/\">
        <button type=\"submit\" class=\"button block is-primary\">Sign in with OpenID Connect</button>
      </form>
    </div>
  </section>
  <footer class=\"footer has-text-grey has-background-light is-size-7\">
    <div class=\"content has-text-centered\"><p>Secured with OAuth2 Proxy</p></div>
  </footer>
  </body>
</html>
";

/// Request headers not passed upstream: hop-by-hop ones (RFC 9110 §7.6.1), `Host`
/// (the upstream's is set, like nginx's default `Host $proxy_host`) and the length
/// (recomputed from the body).
const REQUEST_HEADERS_DROPPED: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Response headers not relayed: hop-by-hop ones, the length (recomputed), and
/// `Server`/`Date`, which nginx hides from the upstream's answer and sends its own.
const RESPONSE_HEADERS_DROPPED: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "server",
    "date",
];

/// What the proxy does with each request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// nginx's `proxy_pass`: forward method, path, query, headers (`X-API-Key`,
    /// `Authorization`…) and body; relay status, headers and body, with `Server:
    /// nginx`. No answer within [`NGINX_READ_TIMEOUT`]: 504 page; upstream unreachable
    /// or cut: 502 page.
    Pass,
    /// `Pass` with a short `proxy_read_timeout`: no answer within `read_timeout` gets
    /// nginx's 504 page while the upstream call keeps running to its end (Mem0 still
    /// stores the add). [`Proxy::settle`] waits for such calls.
    GatewayTimeout { read_timeout: Duration },
    /// nginx's 502 page. `forward: true`: the request first goes upstream and runs to
    /// its end (an add is stored), then 502; `false`: nothing is forwarded.
    BadGatewayHtml { forward: bool },
    /// A redirect with `Location` from `to`; nothing is forwarded. `status` is one of
    /// [`REDIRECT_STATUSES`]. Upstream and `Url` targets are nginx's `return` (its HTML
    /// page); `LoginPage` is oauth2-proxy's (Go's `http.Redirect`: a one-line link for
    /// `GET`, no body otherwise).
    Redirect { status: u16, to: RedirectTarget },
    /// An SSO gate that serves its sign-in page itself (e.g. Cloudflare Access): every
    /// request, any method, gets 200 [`LOGIN_PAGE_HTML`].
    LoginPage,
    /// nginx's `location /prefix/ { proxy_pass http://upstream/; }`: `/prefix/…` goes
    /// upstream with the prefix stripped (otherwise like `Pass`); exactly `/prefix` gets
    /// nginx's 301 to `/prefix/`; anything else nginx's 404 page.
    PathPrefix { prefix: String },
    /// Accept the connection, read the request, never answer, never close (until
    /// shutdown).
    Tarpit,
    /// 200 `application/json` [`JSON_OF_ANOTHER_SHAPE`]: some other app's page.
    JsonOfAnotherShape,
    /// 200 with an empty body.
    Empty200,
}

/// Where a [`ProxyMode::Redirect`] points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedirectTarget {
    /// The upstream's base + the same path and query (the right server elsewhere, e.g.
    /// a moved host). A client that follows it reaches the upstream itself.
    Upstream,
    /// `<proxy base>/login?rd=<the original URL, urlencoded>`, as oauth2-proxy sends.
    LoginPage,
    /// This base URL + the same path and query: nginx's `return 301
    /// https://$host$request_uri;` when it is the https front's URL.
    Url(String),
}

impl ProxyMode {
    /// Panics on a mode the real software could not be configured to: a redirect
    /// with a status that is not one of [`REDIRECT_STATUSES`].
    fn check(&self) {
        if let ProxyMode::Redirect { status, .. } = self {
            assert!(
                REDIRECT_STATUSES.contains(status),
                "ProxyMode::Redirect status {status} is not one of {REDIRECT_STATUSES:?}"
            );
        }
    }
}

/// One request the proxy received, in arrival order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyRecord {
    pub method: String,
    /// The path as the client sent it (before a [`ProxyMode::PathPrefix`] strip).
    pub path: String,
    pub query: Option<String>,
    /// The status the proxy answered; `None` while unanswered, and for a tarpit.
    pub status: Option<u16>,
    /// Whether the request was sent upstream.
    pub forwarded: bool,
    /// The upstream's status once its answer arrived, even after the proxy gave up
    /// on it; `None` when not forwarded, still running, or the call failed.
    pub upstream_status: Option<u16>,
}

/// A running proxy. Dropping it stops it; prefer [`Proxy::shutdown`].
pub struct Proxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    /// Binds 127.0.0.1:0 and proxies plain HTTP to `upstream_url` (e.g.
    /// `Mem0Server::url()`, no trailing slash) on the current tokio runtime.
    pub async fn start(upstream_url: String, mode: ProxyMode) -> Proxy {
        Self::start_with(upstream_url, mode, None).await
    }

    /// [`Proxy::start`] over TLS with `ca`'s certificate for 127.0.0.1 and localhost;
    /// [`Proxy::url`] is then `https://127.0.0.1:PORT`. The upstream stays plain HTTP.
    pub async fn start_tls(upstream_url: String, mode: ProxyMode, ca: &TestCa) -> Proxy {
        Self::start_with(upstream_url, mode, Some(ca.acceptor())).await
    }

    async fn start_with(upstream_url: String, mode: ProxyMode, tls: Option<TlsAcceptor>) -> Proxy {
        mode.check();
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind a loopback port for the proxy");
        let addr = listener.local_addr().expect("the proxy's local address");
        let scheme = if tls.is_some() { "https" } else { "http" };
        // reqwest rather than hyper-util's legacy client: it is already in the tree
        // (the product's own client), and it gives the whole-call timeout, the
        // no-redirect policy and the pool bound as settings. What it adds to a
        // request (`Accept: */*` when absent) means nothing to Mem0.
        let client = reqwest::Client::builder()
            // The proxy relays redirects; it never follows them.
            .redirect(reqwest::redirect::Policy::none())
            // Never route the loopback call through an HTTP(S)_PROXY of the environment.
            .no_proxy()
            .connect_timeout(UPSTREAM_CONNECT_TIMEOUT)
            .timeout(UPSTREAM_LIMIT)
            .pool_max_idle_per_host(UPSTREAM_POOL_IDLE)
            .build()
            .expect("build the proxy's upstream client");
        let shared = Arc::new(Shared {
            upstream: upstream_url.trim_end_matches('/').to_string(),
            base: format!("{scheme}://{addr}"),
            mode: Mutex::new(mode),
            records: Arc::new(Mutex::new(Vec::new())),
            client,
            in_flight: watch::Sender::new(0),
            detached: Mutex::new(JoinSet::new()),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone(), tls));
        Proxy {
            shared,
            addr,
            accept: Mutex::new(Some(task)),
        }
    }

    /// `http://127.0.0.1:PORT` (`https://…` from [`Proxy::start_tls`]), no trailing slash.
    pub fn url(&self) -> String {
        self.shared.base.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upstream's base URL, as given (less a trailing slash).
    pub fn upstream(&self) -> &str {
        &self.shared.upstream
    }

    /// Switches the mode; requests already in progress finish in their old mode.
    pub fn set_mode(&self, mode: ProxyMode) {
        mode.check();
        *lock(&self.shared.mode) = mode;
    }

    pub fn mode(&self) -> ProxyMode {
        lock(&self.shared.mode).clone()
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<ProxyRecord> {
        lock(&self.shared.records).clone()
    }

    /// Waits until every upstream call has ended (those the proxy gave up on too);
    /// panics past [`SETTLE_LIMIT`].
    pub async fn settle(&self) {
        assert!(
            self.settle_within(SETTLE_LIMIT).await,
            "the proxy's upstream calls did not end within {SETTLE_LIMIT:?}"
        );
    }

    /// Waits up to `limit` until every upstream call has ended; whether they did.
    pub async fn settle_within(&self, limit: Duration) -> bool {
        let mut rx = self.shared.in_flight.subscribe();
        matches!(
            tokio::time::timeout(limit, rx.wait_for(|n| *n == 0)).await,
            Ok(Ok(_))
        )
    }

    /// Stops accepting, closes every connection (tarpits too) and cancels the
    /// upstream calls still running.
    pub async fn shutdown(self) {
        let task = lock(&self.accept).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        lock(&self.shared.detached).abort_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.accept).take() {
            task.abort();
        }
        lock(&self.shared.detached).abort_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Shared {
    upstream: String,
    /// The proxy's own base URL.
    base: String,
    mode: Mutex<ProxyMode>,
    /// Shared with the detached upstream calls, which fill in `upstream_status`.
    records: Arc<Mutex<Vec<ProxyRecord>>>,
    client: reqwest::Client,
    /// Upstream calls not yet ended.
    in_flight: watch::Sender<usize>,
    /// The upstream calls, so shutdown can cancel them.
    detached: Mutex<JoinSet<()>>,
}

/// Accepts until aborted; aborting drops the listener and, with the `JoinSet`, every connection.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => { conns.spawn(connection(stream, shared.clone(), tls.clone())); }
                Err(_) => tokio::time::sleep(ACCEPT_RETRY_PAUSE).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn connection(stream: TcpStream, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve(stream, shared).await,
        Some(acceptor) => {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(TLS_HANDSHAKE_LIMIT, acceptor.accept(stream)).await
            {
                serve(stream, shared).await;
            }
        }
    }
}

async fn serve<S>(io: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(io), service)
        .await;
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let idx = {
        let mut records = lock(&shared.records);
        records.push(ProxyRecord {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            status: None,
            forwarded: false,
            upstream_status: None,
        });
        records.len() - 1
    };
    let mode = lock(&shared.mode).clone();
    let declared_too_large = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES as u64);
    let body = if declared_too_large {
        None
    } else {
        axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES)
            .await
            .ok()
    };
    if mode == ProxyMode::Tarpit {
        return std::future::pending().await;
    }
    let resp = match body {
        None => nginx_page(StatusCode::PAYLOAD_TOO_LARGE),
        Some(body) => answer(&shared, idx, mode, parts, body).await,
    };
    if let Some(r) = lock(&shared.records).get_mut(idx) {
        r.status = Some(resp.status().as_u16());
    }
    resp
}

/// The answer of `mode` to one request whose body has been read.
async fn answer(
    shared: &Shared,
    idx: usize,
    mode: ProxyMode,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> Response<Body> {
    let path = parts.uri.path();
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let target = format!("{path}{query}");
    if parts.method == Method::GET && path == LOGIN_PATH {
        return login_page();
    }
    let forward = |target: &str| {
        shared.forward(
            idx,
            parts.method.clone(),
            target,
            &parts.headers,
            body.clone(),
        )
    };
    match mode {
        ProxyMode::Pass => relay(forward(&target), NGINX_READ_TIMEOUT).await,
        ProxyMode::GatewayTimeout { read_timeout } => relay(forward(&target), read_timeout).await,
        ProxyMode::BadGatewayHtml { forward: go } => {
            if go {
                let _ = tokio::time::timeout(UPSTREAM_LIMIT, forward(&target)).await;
            }
            nginx_page(StatusCode::BAD_GATEWAY)
        }
        ProxyMode::Redirect { status, to } => {
            let code = StatusCode::from_u16(status).expect("a checked redirect status");
            match to {
                RedirectTarget::Upstream => {
                    nginx_redirect(code, &format!("{}{target}", shared.upstream))
                }
                RedirectTarget::Url(base) => {
                    nginx_redirect(code, &format!("{}{target}", base.trim_end_matches('/')))
                }
                RedirectTarget::LoginPage => {
                    let original = format!("{}{target}", shared.base);
                    let rd: String = form_urlencoded::byte_serialize(original.as_bytes()).collect();
                    let location = format!("{}{LOGIN_PATH}?rd={rd}", shared.base);
                    go_redirect(code, &parts.method, &location)
                }
            }
        }
        ProxyMode::LoginPage => login_page(),
        ProxyMode::PathPrefix { prefix } => {
            let prefix = normalized_prefix(&prefix);
            if prefix.is_empty() {
                relay(forward(&target), NGINX_READ_TIMEOUT).await
            } else if path == prefix {
                // nginx: a request for the location's name without its slash is
                // redirected to it with the slash (absolute, args kept).
                nginx_redirect(
                    StatusCode::MOVED_PERMANENTLY,
                    &format!("{}{prefix}/{query}", shared.base),
                )
            } else if let Some(rest) = path.strip_prefix(&prefix).filter(|r| r.starts_with('/')) {
                relay(forward(&format!("{rest}{query}")), NGINX_READ_TIMEOUT).await
            } else {
                nginx_page(StatusCode::NOT_FOUND)
            }
        }
        ProxyMode::Tarpit => std::future::pending().await,
        ProxyMode::JsonOfAnotherShape => {
            let mut resp = Response::new(Body::from(JSON_OF_ANOTHER_SHAPE));
            let h = resp.headers_mut();
            h.insert(SERVER, HeaderValue::from_static("nginx"));
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        ProxyMode::Empty200 => {
            let mut resp = Response::new(Body::empty());
            resp.headers_mut()
                .insert(SERVER, HeaderValue::from_static("nginx"));
            resp
        }
    }
}

/// `/mem0`, `mem0/` and `/mem0/` all mean `/mem0`; `""` and `/` mean no prefix.
fn normalized_prefix(prefix: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        String::new()
    } else {
        format!("/{p}")
    }
}

/// An upstream answer, read whole.
struct Upstream {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

type UpstreamResult = Result<Upstream, reqwest::Error>;

impl Shared {
    /// Sends the request upstream in a detached task that runs to its end whatever
    /// the caller does with the receiver; marks the record forwarded.
    fn forward(
        &self,
        idx: usize,
        method: Method,
        target: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> oneshot::Receiver<UpstreamResult> {
        let request = self
            .client
            .request(method, format!("{}{target}", self.upstream))
            .headers(request_headers(headers))
            .body(body);
        if let Some(r) = lock(&self.records).get_mut(idx) {
            r.forwarded = true;
        }
        let records = self.records.clone();
        let in_flight = InFlight::new(self.in_flight.clone());
        let (tx, rx) = oneshot::channel();
        let call = async move {
            let _in_flight = in_flight;
            let result = async {
                let resp = request.send().await?;
                let (status, headers) = (resp.status(), resp.headers().clone());
                let body = resp.bytes().await?;
                Ok(Upstream {
                    status,
                    headers,
                    body,
                })
            }
            .await;
            if let Ok(up) = &result
                && let Some(r) = lock(&records).get_mut(idx)
            {
                r.upstream_status = Some(up.status.as_u16());
            }
            let _ = tx.send(result);
        };
        let mut detached = lock(&self.detached);
        while detached.try_join_next().is_some() {}
        detached.spawn(call);
        rx
    }
}

/// Counts one upstream call in flight for as long as it lives (an aborted call too).
struct InFlight(watch::Sender<usize>);

impl InFlight {
    fn new(counter: watch::Sender<usize>) -> Self {
        counter.send_modify(|n| *n += 1);
        InFlight(counter)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// nginx's answer to a forwarded request: the upstream's within `read_timeout`, else
/// the 504 page (the call goes on); 502 page when the upstream could not be reached
/// or cut the answer.
async fn relay(rx: oneshot::Receiver<UpstreamResult>, read_timeout: Duration) -> Response<Body> {
    match tokio::time::timeout(read_timeout, rx).await {
        Err(_) => nginx_page(StatusCode::GATEWAY_TIMEOUT),
        Ok(Ok(Ok(up))) => {
            let mut resp = Response::new(Body::from(up.body));
            *resp.status_mut() = up.status;
            *resp.headers_mut() = response_headers(&up.headers);
            resp
        }
        Ok(Ok(Err(e))) if e.is_timeout() => nginx_page(StatusCode::GATEWAY_TIMEOUT),
        Ok(Ok(Err(_))) | Ok(Err(_)) => nginx_page(StatusCode::BAD_GATEWAY),
    }
}

/// The headers of the client's request that go upstream.
fn request_headers(headers: &HeaderMap) -> HeaderMap {
    without(headers, &REQUEST_HEADERS_DROPPED)
}

/// The upstream's answer's headers as relayed, with nginx's `Server`.
fn response_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = without(headers, &RESPONSE_HEADERS_DROPPED);
    out.insert(SERVER, HeaderValue::from_static("nginx"));
    out
}

/// `headers` less `dropped` and less what their own `Connection` header names.
fn without(headers: &HeaderMap, dropped: &[&str]) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if !dropped.contains(&n) && !named.iter().any(|t| t == n) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The title nginx gives its own page for `status` (its wording, e.g. "Time-out").
fn nginx_title(status: u16) -> &'static str {
    match status {
        301 => "301 Moved Permanently",
        302 => "302 Found",
        303 => "303 See Other",
        307 => "307 Temporary Redirect",
        308 => "308 Permanent Redirect",
        404 => "404 Not Found",
        413 => "413 Request Entity Too Large",
        502 => "502 Bad Gateway",
        504 => "504 Gateway Time-out",
        _ => panic!("no nginx page modelled for status {status}"),
    }
}

/// The body of nginx's default page for `status` (301, 302, 303, 307, 308, 404, 413,
/// 502 or 504), as nginx sends it with `server_tokens off`.
pub fn nginx_page_html(status: u16) -> String {
    let title = nginx_title(status);
    format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n\
         <center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
}

/// nginx's own page for `status`: `Content-Type: text/html`, `Server: nginx`.
fn nginx_page(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Body::from(nginx_page_html(status.as_u16())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(SERVER, HeaderValue::from_static("nginx"));
    h.insert(CONTENT_TYPE, HeaderValue::from_static(NGINX_CONTENT_TYPE));
    resp
}

/// nginx's `return <status> <location>;`: its page for the status plus `Location`.
fn nginx_redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut resp = nginx_page(status);
    resp.headers_mut().insert(LOCATION, header_value(location));
    resp
}

/// Go's `http.Redirect`, as oauth2-proxy sends it: `Location`; for `GET` and `HEAD`
/// `Content-Type: text/html; charset=utf-8`; for `GET` the body
/// `<a href="…">Found</a>.\n\n`; no `Server` header.
fn go_redirect(status: StatusCode, method: &Method, location: &str) -> Response<Body> {
    let body = if *method == Method::GET {
        let text = status.canonical_reason().unwrap_or_default();
        format!("<a href=\"{}\">{text}</a>.\n\n", html_escape(location))
    } else {
        String::new()
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(LOCATION, header_value(location));
    if *method == Method::GET || *method == Method::HEAD {
        h.insert(CONTENT_TYPE, HeaderValue::from_static(LOGIN_CONTENT_TYPE));
    }
    resp
}

/// The SSO gate's sign-in page, 200.
fn login_page() -> Response<Body> {
    let mut resp = Response::new(Body::from(LOGIN_PAGE_HTML));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(LOGIN_CONTENT_TYPE));
    resp
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("a URL made of a request's path is a valid header value")
}

/// Go's `htmlEscape`: `&`, `'`, `<`, `>` and `"`.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            c => out.push(c),
        }
    }
    out
}

/// A raw test client: follows no redirect, ignores the environment's proxies, and
/// gives up after `timeout`.
pub fn raw_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("build a reqwest client")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem0_server::{Fault, FaultPlan, Kind, Mem0Server, ServerOptions};
    use serde_json::{Value, json};
    use tokio::time::Instant;

    /// The test clients' whole-request timeout: everything is on loopback and the
    /// slowest answer here is one [`SLOW`] latency fault.
    const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
    /// The proxy's read timeout in the gateway-timeout tests: short, real time.
    const READ_TIMEOUT: Duration = Duration::from_millis(150);
    /// The upstream's injected latency: well past [`READ_TIMEOUT`], with room for a
    /// loaded 2-core machine between the proxy's 504 and the upstream's answer.
    const SLOW: Duration = Duration::from_secs(1);
    /// The client timeout that gives up on a tarpit.
    const TARPIT_PATIENCE: Duration = Duration::from_millis(300);
    /// The test server's API key.
    const KEY: &str = "k";

    async fn server() -> Mem0Server {
        Mem0Server::start(ServerOptions {
            kind: Kind::Oss,
            api_key: Some(KEY.to_string()),
            seed: 7,
        })
        .await
    }

    /// An OSS add body per shared/mem0-api.md, carrying `mq_id` in its metadata.
    fn add_body(mq_id: &str) -> Value {
        json!({"messages": [{"role": "user", "content": format!("memory {mq_id}")}],
               "user_id": "u", "metadata": {"mq_id": mq_id}, "infer": false})
    }

    struct Answer {
        status: u16,
        headers: reqwest::header::HeaderMap,
        body: String,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).and_then(|v| v.to_str().ok())
        }

        fn json(&self) -> Value {
            serde_json::from_str(&self.body).expect("a JSON body")
        }
    }

    async fn send(rb: reqwest::RequestBuilder) -> Answer {
        let resp = rb.send().await.expect("the request is answered");
        Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.expect("the body"),
        }
    }

    fn post_add(c: &reqwest::Client, base: &str, mq_id: &str) -> reqwest::RequestBuilder {
        c.post(format!("{base}/memories"))
            .header("X-API-Key", KEY)
            .json(&add_body(mq_id))
    }

    async fn add(base: &str, mq_id: &str) -> Answer {
        send(post_add(&raw_client(CLIENT_TIMEOUT), base, mq_id)).await
    }

    fn assert_nginx_page(a: &Answer, status: u16) {
        assert_eq!(a.status, status);
        assert_eq!(a.body, nginx_page_html(status));
        assert_eq!(a.header("content-type"), Some("text/html"));
        assert_eq!(a.header("server"), Some("nginx"));
    }

    fn stored(server: &Mem0Server, mq_id: &str) -> usize {
        server
            .count_by_mq_id()
            .get(mq_id)
            .copied()
            .unwrap_or_default()
    }

    #[test]
    fn nginx_pages_are_nginx_s() {
        assert_eq!(
            nginx_page_html(504),
            "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n\
             <center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n\
             </body>\r\n</html>\r\n"
        );
        assert!(nginx_page_html(502).contains("<title>502 Bad Gateway</title>"));
        assert!(nginx_page_html(301).contains("<h1>301 Moved Permanently</h1>"));
    }

    #[tokio::test]
    async fn pass_forwards_the_request_and_relays_the_answer() {
        let s = server().await;
        let p = Proxy::start(s.url(), ProxyMode::Pass).await;
        let c = raw_client(CLIENT_TIMEOUT);
        let u = p.url();

        let a = add(&u, "a").await;
        assert_eq!(a.status, 200);
        assert_eq!(a.json()["results"][0]["event"], "ADD");
        assert_eq!(a.header("content-type"), Some("application/json"));
        assert_eq!(a.header("server"), Some("nginx"));
        assert_eq!(stored(&s, "a"), 1);
        let up = &s.requests()[0];
        assert_eq!(
            (up.method.as_str(), up.path.as_str()),
            ("POST", "/memories")
        );
        assert_eq!(up.x_api_key.as_deref(), Some(KEY));
        assert_eq!(
            up.body.as_ref().map(|b| &b["metadata"]["mq_id"]),
            Some(&json!("a"))
        );

        let a = send(c.get(format!("{u}/memories?user_id=u")).bearer_auth(KEY)).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.json()["results"].as_array().map(Vec::len), Some(1));
        let up = &s.requests()[1];
        assert_eq!(up.query.as_deref(), Some("user_id=u"));
        assert_eq!(up.authorization.as_deref(), Some("Bearer k"));

        // The upstream's own errors are relayed as they are, not as nginx pages.
        let a = send(c.post(format!("{u}/memories")).json(&add_body("b"))).await;
        assert_eq!(a.status, 401);
        assert_eq!(a.json()["detail"], "Invalid or missing API key");
        let a = send(c.get(format!("{u}/memories/")).header("X-API-Key", KEY)).await;
        assert_eq!(a.status, 404);
        assert_eq!(a.json()["detail"], "Not Found");

        let records = p.requests();
        assert_eq!(records.len(), 4);
        assert!(records.iter().all(|r| r.forwarded));
        let statuses: Vec<_> = records
            .iter()
            .map(|r| (r.status, r.upstream_status))
            .collect();
        assert_eq!(
            statuses,
            [200, 200, 401, 404].map(|s| (Some(s), Some(s))).to_vec()
        );
        p.shutdown().await;
    }

    #[tokio::test]
    async fn pass_answers_502_when_the_upstream_is_down() {
        let s = server().await;
        let p = Proxy::start(s.url(), ProxyMode::Pass).await;
        s.go_down().await;
        assert_nginx_page(&add(&p.url(), "a").await, 502);
        let r = &p.requests()[0];
        assert!(r.forwarded);
        assert_eq!((r.status, r.upstream_status), (Some(502), None));
    }

    #[tokio::test]
    async fn gateway_timeout_answers_504_while_the_upstream_finishes_and_stores() {
        let s = server().await;
        s.set_faults(FaultPlan::script([Some(Fault::Latency(SLOW))]));
        let p = Proxy::start(
            s.url(),
            ProxyMode::GatewayTimeout {
                read_timeout: READ_TIMEOUT,
            },
        )
        .await;

        let started = Instant::now();
        assert_nginx_page(&add(&p.url(), "gt").await, 504);
        assert!(
            started.elapsed() < SLOW,
            "the proxy answered before the upstream"
        );
        assert_eq!(
            p.requests()[0].upstream_status,
            None,
            "the upstream is still working"
        );

        p.settle().await;
        assert_eq!(stored(&s, "gt"), 1);
        let r = &p.requests()[0];
        assert!(r.forwarded);
        assert_eq!((r.status, r.upstream_status), (Some(504), Some(200)));

        // An upstream answering in time is relayed.
        assert_eq!(add(&p.url(), "fast").await.status, 200);
        assert_eq!(stored(&s, "fast"), 1);
    }

    #[tokio::test]
    async fn bad_gateway_html_stores_first_when_forwarding() {
        let s = server().await;
        let p = Proxy::start(s.url(), ProxyMode::BadGatewayHtml { forward: true }).await;
        assert_nginx_page(&add(&p.url(), "bg").await, 502);
        assert_eq!(stored(&s, "bg"), 1);
        assert_eq!(p.requests()[0].upstream_status, Some(200));

        p.set_mode(ProxyMode::BadGatewayHtml { forward: false });
        assert_nginx_page(&add(&p.url(), "none").await, 502);
        assert_eq!(s.requests().len(), 1, "nothing more reached the upstream");
        let r = &p.requests()[1];
        assert!(!r.forwarded);
        assert_eq!(r.status, Some(502));
    }

    #[tokio::test]
    async fn redirect_to_the_upstream_keeps_path_and_query() {
        let s = server().await;
        let p = Proxy::start(s.url(), ProxyMode::Pass).await;
        let c = raw_client(CLIENT_TIMEOUT);
        for status in REDIRECT_STATUSES {
            p.set_mode(ProxyMode::Redirect {
                status,
                to: RedirectTarget::Upstream,
            });
            let a = send(
                c.post(format!("{}/memories?x=1", p.url()))
                    .json(&add_body("r")),
            )
            .await;
            assert_nginx_page(&a, status);
            assert_eq!(
                a.header("location"),
                Some(format!("{}/memories?x=1", s.url()).as_str())
            );
        }
        assert!(s.requests().is_empty());
        assert!(p.requests().iter().all(|r| !r.forwarded));

        // A client that follows a 307 reaches the upstream itself, which stores.
        p.set_mode(ProxyMode::Redirect {
            status: 307,
            to: RedirectTarget::Upstream,
        });
        let following = reqwest::Client::builder()
            .no_proxy()
            .timeout(CLIENT_TIMEOUT)
            .build()
            .expect("a client");
        assert_eq!(
            send(post_add(&following, &p.url(), "moved")).await.status,
            200
        );
        assert_eq!(stored(&s, "moved"), 1);
    }

    #[tokio::test]
    async fn redirect_to_the_login_page_then_200_html() {
        let s = server().await;
        let p = Proxy::start(
            s.url(),
            ProxyMode::Redirect {
                status: 302,
                to: RedirectTarget::LoginPage,
            },
        )
        .await;
        let c = raw_client(CLIENT_TIMEOUT);
        let u = p.url();
        let rd: String =
            form_urlencoded::byte_serialize(format!("{u}/memories?user_id=u").as_bytes()).collect();
        let login = format!("{u}/login?rd={rd}");

        let a = send(c.get(format!("{u}/memories?user_id=u"))).await;
        assert_eq!(a.status, 302);
        assert_eq!(a.header("location"), Some(login.as_str()));
        assert_eq!(a.header("content-type"), Some(LOGIN_CONTENT_TYPE));
        assert_eq!(a.body, format!("<a href=\"{login}\">Found</a>.\n\n"));

        let a = send(
            c.post(format!("{u}/memories?user_id=u"))
                .json(&add_body("x")),
        )
        .await;
        assert_eq!(a.status, 302);
        assert_eq!(a.header("location"), Some(login.as_str()));
        assert_eq!(a.header("content-type"), None);
        assert_eq!(a.body, "");

        let a = send(c.get(&login)).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-type"), Some(LOGIN_CONTENT_TYPE));
        assert_eq!(a.body, LOGIN_PAGE_HTML);

        // A client that follows ends on a 200 HTML page: success by status alone.
        let following = reqwest::Client::builder()
            .no_proxy()
            .timeout(CLIENT_TIMEOUT)
            .build()
            .expect("a client");
        let a = send(post_add(&following, &u, "gated")).await;
        assert_eq!(a.status, 200);
        assert!(a.body.contains("<title>Sign In</title>"));
        assert!(s.requests().is_empty());
        assert!(s.stored().is_empty());
    }

    #[tokio::test]
    async fn login_page_answers_every_method_with_200_html() {
        let s = server().await;
        let p = Proxy::start(s.url(), ProxyMode::LoginPage).await;
        let c = raw_client(CLIENT_TIMEOUT);
        let u = p.url();
        for rb in [
            post_add(&c, &u, "a"),
            c.get(format!("{u}/memories?user_id=u")),
            c.delete(format!("{u}/memories/1")),
        ] {
            let a = send(rb).await;
            assert_eq!(a.status, 200);
            assert_eq!(a.header("content-type"), Some(LOGIN_CONTENT_TYPE));
            assert_eq!(a.body, LOGIN_PAGE_HTML);
        }
        assert!(s.requests().is_empty());
        assert!(
            p.requests()
                .iter()
                .all(|r| !r.forwarded && r.status == Some(200))
        );
    }

    #[tokio::test]
    async fn path_prefix_strips_the_prefix_and_404s_the_rest() {
        let s = server().await;
        let p = Proxy::start(
            s.url(),
            ProxyMode::PathPrefix {
                prefix: "/mem0/".to_string(),
            },
        )
        .await;
        let u = p.url();

        assert_eq!(add(&format!("{u}/mem0"), "pp").await.status, 200);
        assert_eq!(stored(&s, "pp"), 1);
        assert_eq!(s.requests()[0].path, "/memories");
        assert_eq!(p.requests()[0].path, "/mem0/memories");

        assert_nginx_page(&add(&u, "root").await, 404);
        assert_eq!(s.requests().len(), 1);

        let a = send(raw_client(CLIENT_TIMEOUT).get(format!("{u}/mem0?x=1"))).await;
        assert_nginx_page(&a, 301);
        assert_eq!(
            a.header("location"),
            Some(format!("{u}/mem0/?x=1").as_str())
        );
    }

    #[tokio::test]
    async fn tarpit_never_answers_until_shutdown() {
        let s = server().await;
        let p = Proxy::start(s.url(), ProxyMode::Tarpit).await;
        let err = post_add(&raw_client(TARPIT_PATIENCE), &p.url(), "t")
            .send()
            .await
            .expect_err("a tarpit never answers");
        assert!(err.is_timeout(), "{err}");
        let r = &p.requests()[0];
        assert_eq!((r.status, r.forwarded), (None, false));
        assert!(s.requests().is_empty());

        // Shutdown closes the connection it held open.
        let pending = tokio::spawn(post_add(&raw_client(CLIENT_TIMEOUT), &p.url(), "t2").send());
        assert!(crate::wait::until_async(CLIENT_TIMEOUT, || p.requests().len() == 2).await);
        let started = Instant::now();
        p.shutdown().await;
        let err = pending
            .await
            .expect("the request task")
            .expect_err("the connection is closed without an answer");
        assert!(!err.is_timeout(), "{err}");
        assert!(started.elapsed() < CLIENT_TIMEOUT);
    }

    #[tokio::test]
    async fn json_of_another_shape_and_empty_200() {
        let s = server().await;
        let p = Proxy::start(s.url(), ProxyMode::JsonOfAnotherShape).await;
        let a = add(&p.url(), "j").await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-type"), Some("application/json"));
        assert_eq!(
            a.json(),
            json!({"status": "ok", "items": [{"id": "x1"}, {"id": "x2"}]})
        );

        p.set_mode(ProxyMode::Empty200);
        let a = add(&p.url(), "e").await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body, "");
        assert_eq!(a.header("content-length"), Some("0"));
        assert!(s.requests().is_empty());
    }

    #[tokio::test]
    async fn set_mode_switches_at_run_time() {
        let s = server().await;
        let p = Proxy::start(s.url(), ProxyMode::Pass).await;
        assert_eq!(add(&p.url(), "1").await.status, 200);
        p.set_mode(ProxyMode::LoginPage);
        assert_eq!(p.mode(), ProxyMode::LoginPage);
        assert_eq!(add(&p.url(), "2").await.body, LOGIN_PAGE_HTML);
        p.set_mode(ProxyMode::Pass);
        assert_eq!(
            add(&p.url(), "3").await.json()["results"][0]["event"],
            "ADD"
        );
        assert_eq!(s.stored().len(), 2);
    }

    #[tokio::test]
    async fn a_body_over_nginx_s_limit_gets_413() {
        let s = server().await;
        let p = Proxy::start(s.url(), ProxyMode::Pass).await;
        let big = "x".repeat(MAX_BODY_BYTES + 1);
        let a = send(
            raw_client(CLIENT_TIMEOUT)
                .post(format!("{}/memories", p.url()))
                .body(big),
        )
        .await;
        assert_nginx_page(&a, 413);
        assert!(!p.requests()[0].forwarded);
        assert!(s.requests().is_empty());
    }

    #[tokio::test]
    #[should_panic(expected = "is not one of")]
    async fn a_redirect_status_must_be_a_redirect() {
        let _ = Proxy::start(
            "http://127.0.0.1:9".to_string(),
            ProxyMode::Redirect {
                status: 200,
                to: RedirectTarget::Upstream,
            },
        )
        .await;
    }
}
