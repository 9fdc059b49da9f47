//! The Mem0 test server: a loopback HTTP server that speaks both Mem0 API shapes of
//! `shared/mem0-api.md` (the self-hosted "oss" REST server and the hosted "platform"),
//! stores every memory it accepts so a test can count lost and duplicated entries, and
//! injects faults (latency, 500/502/503/429, 401, hang, accept-then-hang, reset
//! mid-response, and the whole server going down and coming back on the same port).
//!
//! It owns its accept loop (hyper over tokio) so it can close the listener for
//! "connection refused" and reset a single connection with `SO_LINGER 0`.
//!
//! Fault semantics (see [`FaultPlan`]):
//! - Faults apply to add requests (oss `POST /memories`, platform `POST /v3/memories/add/`
//!   and legacy `POST /v1/memories/`); with `only_adds = false` to every routed request
//!   except the oss `GET /docs`. Unknown routes, 405s and auth failures come first and
//!   consume nothing.
//! - Per faultable request the next `script` entry is used (`None` = normal); once the
//!   script is spent, `mix` is rolled with a `fastrand::Rng` seeded from
//!   [`ServerOptions::seed`] (reseeded by every [`Mem0Server::set_faults`]).
//! - Error faults (500, 502, 503, 429, 401, 422) and `Hang` store nothing. A normal request,
//!   `Latency`, `AcceptThenHang` and `ResetMidResponse` do the work (an add stores) and
//!   then delay, hang or cut the response: like the OSS server, which stores before it
//!   answers.
//! - Platform async adds (`infer` true, or legacy `async_mode` true) store at once and
//!   create an event; [`EventPlan`] can keep it `PENDING` for N polls, or make it end
//!   `FAILED`, in which case nothing is stored.
//! - An add with `infer = false` stores one memory per non-system message; with `infer =
//!   true` (the LLM path) one memory holding the joined texts, or none when they are blank.
//! - Platform search answers `{"results": [...]}`; its legacy `GET /v1/memories/` a list.

#![allow(
    clippy::result_large_err,
    reason = "handlers return their error response by value; size is irrelevant here"
)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Largest request body read; far above any memory mem0-queue sends, small enough for tests.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Listen backlog; the tests open at most a few hundred connections at once.
const LISTEN_BACKLOG: u32 = 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(10);
/// Pause between the partial body and the reset so the headers reach the client first.
const RESET_PAUSE: Duration = Duration::from_millis(20);
/// The memory routes the oss server strips from caller metadata (identity keys).
const IDENTITY_KEYS: [&str; 4] = ["user_id", "agent_id", "run_id", "actor_id"];
/// The entity ids a Mem0 add or search is scoped by.
const ENTITY_KEYS: [&str; 3] = ["user_id", "agent_id", "run_id"];
/// Default and largest `top_k` of oss `GET /memories` (the server's own bounds).
const LIST_TOP_K_DEFAULT: usize = 20;
/// See [`LIST_TOP_K_DEFAULT`].
const LIST_TOP_K_MAX: usize = 1000;
/// Default `top_k` of oss `POST /search`.
const OSS_SEARCH_TOP_K: usize = 20;
/// Default similarity threshold of oss `POST /search` (the server's own).
const OSS_SEARCH_THRESHOLD: f64 = 0.1;
/// Default `top_k` of platform search (its documented default).
const PLATFORM_SEARCH_TOP_K: usize = 10;
/// `org_id` answered by the platform's `GET /v1/ping/`.
const ORG_ID: &str = "test-org";

/// Which Mem0 API the server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The self-hosted FastAPI REST server: no prefix, no trailing slash.
    Oss,
    /// The hosted platform: `/v1`/`/v3` prefixes, every path ends with a slash.
    Platform,
}

/// How to start a [`Mem0Server`].
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub kind: Kind,
    /// When set, requests without this key get 401 (oss: `X-API-Key: K` or
    /// `Authorization: Bearer K`; platform: `Authorization: Token K`). `None` = no auth.
    pub api_key: Option<String>,
    /// Seed of the fault mix's random numbers.
    pub seed: u64,
}

/// One injected fault.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer normally after this extra delay (an add stores before the delay).
    Latency(Duration),
    /// 500 `{"detail": "<text>"}`, as servers before 2026-06 answer every failure.
    Status500,
    /// 502 `{"detail", "code", "request_id"}` with this code, e.g. `"provider_timeout"`.
    Status502(&'static str),
    /// 503, with `Retry-After` when given.
    Status503 { retry_after_secs: Option<u64> },
    /// 429 with `Retry-After` and `X-RateLimit-*` headers.
    Status429 { retry_after_secs: u64 },
    /// Do the work (an add stores), send the headers and part of the body, then reset
    /// the connection (`SO_LINGER 0`).
    ResetMidResponse,
    /// Never answer and store nothing; the connection stays open.
    Hang,
    /// Store the memory, then never answer.
    AcceptThenHang,
    /// 401, as for a wrong key.
    Unauthorized,
    /// 422 with FastAPI's validation error: the server rejects this request
    /// itself. Stores nothing.
    Status422,
}

/// How platform add events progress when polled at `GET /v1/event/{id}/`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventPlan {
    /// Polls answered `PENDING` before the final status.
    pub pending_polls: u32,
    /// End `FAILED` with an `error`, storing nothing.
    pub fail: bool,
}

/// The faults to inject; [`Mem0Server::set_faults`] replaces it. `Default` = no faults.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    /// Consumed one per faultable request; `None` = answer normally.
    pub script: Vec<Option<Fault>>,
    /// After the script: each fault with its probability (summing to at most 1).
    pub mix: Vec<(Fault, f64)>,
    /// Added to every faultable request.
    pub latency: Option<Duration>,
    /// Faults and latency apply to adds only (default); `false` = to every route.
    pub only_adds: bool,
    /// Platform events.
    pub events: EventPlan,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            script: Vec::new(),
            mix: Vec::new(),
            latency: None,
            only_adds: true,
            events: EventPlan::default(),
        }
    }
}

impl FaultPlan {
    /// A plan that plays `script` once, then answers normally.
    pub fn script(script: impl IntoIterator<Item = Option<Fault>>) -> Self {
        FaultPlan {
            script: script.into_iter().collect(),
            ..Self::default()
        }
    }

    /// A plan that rolls `mix` for every add.
    pub fn mix(mix: impl IntoIterator<Item = (Fault, f64)>) -> Self {
        FaultPlan {
            mix: mix.into_iter().collect(),
            ..Self::default()
        }
    }
}

/// A memory the server accepted. Deleted ones stay listed, with `deleted` set.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMemory {
    pub id: String,
    pub memory: String,
    pub user_id: Option<String>,
    pub agent_id: Option<String>,
    pub run_id: Option<String>,
    /// Caller metadata without identity keys; `null` when none was sent.
    pub metadata: Value,
    pub created_at: String,
    /// Platform only: the `timestamp` (unix seconds) the add carried.
    pub timestamp: Option<i64>,
    pub updated_at: Option<String>,
    pub deleted: bool,
}

/// One request the server received, in arrival order.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub x_api_key: Option<String>,
    pub authorization: Option<String>,
    /// The status sent; `None` while unanswered and for hangs.
    pub status: Option<u16>,
    /// The body, when it was JSON.
    pub body: Option<Value>,
    /// The fault injected into this request.
    pub fault: Option<Fault>,
}

/// A running test server. Dropping it stops the listener; prefer [`Mem0Server::shutdown`].
pub struct Mem0Server {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Mem0Server {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime.
    pub async fn start(opts: ServerOptions) -> Mem0Server {
        Self::start_on(opts, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind a loopback port for the Mem0 test server")
    }

    /// Binds `addr` (port 0 = any) and serves on the current tokio runtime.
    pub async fn start_on(opts: ServerOptions, addr: SocketAddr) -> io::Result<Mem0Server> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(opts));
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Mem0Server {
            shared,
            addr,
            accept: Mutex::new(Some(task)),
        })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn kind(&self) -> Kind {
        self.shared.kind
    }

    /// Replaces the fault plan; restarts its script and reseeds its random numbers.
    pub fn set_faults(&self, plan: FaultPlan) {
        let mut st = self.shared.lock();
        st.script = plan.script.iter().cloned().collect();
        st.rng = fastrand::Rng::with_seed(self.shared.seed);
        st.plan = plan;
    }

    /// Every memory accepted, in order (deleted ones included, flagged).
    pub fn stored(&self) -> Vec<StoredMemory> {
        self.shared.lock().memories.clone()
    }

    /// `metadata.mq_id` -> times stored (deleted ones count: they were stored).
    pub fn count_by_mq_id(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for m in &self.shared.lock().memories {
            if let Some(id) = m.metadata.get("mq_id").and_then(Value::as_str) {
                *counts.entry(id.to_string()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Stops accepting: closes the listener and every open connection, so connects are refused.
    pub async fn go_down(&self) {
        let task = self
            .accept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port (no-op when up). Stored memories are kept.
    pub async fn come_back(&self) {
        let mut accept = self.accept.lock().unwrap_or_else(PoisonError::into_inner);
        if accept.is_none() {
            let listener =
                bind(self.addr).expect("rebind the test server's port (SO_REUSEADDR is set)");
            *accept = Some(tokio::spawn(accept_loop(listener, self.shared.clone())));
        }
    }

    pub async fn shutdown(self) {
        self.go_down().await;
    }
}

impl Drop for Mem0Server {
    fn drop(&mut self) {
        if let Some(task) = self
            .accept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts until aborted; aborting drops the listener and, with the `JoinSet`, every connection.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => { conns.spawn(serve_conn(stream, shared.clone())); }
                Err(_) => tokio::time::sleep(ACCEPT_RETRY_PAUSE).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_conn(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    // A second handle on the socket lets a handler set SO_LINGER 0 for a reset.
    let Ok(std_stream) = stream.into_std() else {
        return;
    };
    let Ok(handle) = std_stream.try_clone() else {
        return;
    };
    let Ok(stream) = TcpStream::from_std(std_stream) else {
        return;
    };
    let handle = Arc::new(handle);
    let service = hyper::service::service_fn(move |req| {
        let (shared, handle) = (shared.clone(), handle.clone());
        async move { Ok::<_, Infallible>(handle_request(shared, handle, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

struct Shared {
    kind: Kind,
    api_key: Option<String>,
    seed: u64,
    state: Mutex<State>,
}

struct State {
    plan: FaultPlan,
    script: VecDeque<Option<Fault>>,
    rng: fastrand::Rng,
    memories: Vec<StoredMemory>,
    events: HashMap<String, Event>,
    requests: Vec<RequestRecord>,
}

struct Event {
    polls_left: u32,
    fail: bool,
    results: Vec<Value>,
}

impl Shared {
    fn new(opts: ServerOptions) -> Self {
        let state = State {
            plan: FaultPlan::default(),
            script: VecDeque::new(),
            rng: fastrand::Rng::with_seed(opts.seed),
            memories: Vec::new(),
            events: HashMap::new(),
            requests: Vec::new(),
        };
        Shared {
            kind: opts.kind,
            api_key: opts.api_key,
            seed: opts.seed,
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(key) = &self.api_key else {
            return true;
        };
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let auth = header(AUTHORIZATION.as_str());
        match self.kind {
            Kind::Oss => header("x-api-key") == Some(key) || auth == Some(&format!("Bearer {key}")),
            Kind::Platform => auth == Some(&format!("Token {key}")),
        }
    }

    /// The fault for one faultable request, plus the plan's latency.
    fn next_fault(&self) -> (Option<Fault>, Duration) {
        let mut st = self.lock();
        let latency = st.plan.latency.unwrap_or_default();
        if let Some(next) = st.script.pop_front() {
            return (next, latency);
        }
        let roll = st.rng.f64();
        let mut acc = 0.0;
        for (fault, p) in &st.plan.mix {
            acc += p;
            if roll < acc {
                return (Some(fault.clone()), latency);
            }
        }
        (None, latency)
    }

    fn set_status(&self, idx: usize, status: StatusCode) {
        if let Some(r) = self.lock().requests.get_mut(idx) {
            r.status = Some(status.as_u16());
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Route {
    Docs,
    Providers,
    Add,
    LegacyAdd,
    Search,
    List,
    Get(String),
    Update(String),
    Delete(String),
    History(String),
    Ping,
    Event(String),
    NotFound,
    MethodNotAllowed,
}

fn route(kind: Kind, method: &Method, path: &str) -> Route {
    use Route::*;
    let inner = match kind {
        Kind::Oss => path.strip_prefix('/'),
        Kind::Platform => path.strip_prefix('/').and_then(|p| p.strip_suffix('/')),
    };
    let Some(inner) = inner else { return NotFound };
    let segs: Vec<&str> = inner.split('/').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return NotFound;
    }
    let m = method.as_str();
    let id = |i: usize| segs[i].to_string();
    let r = match (kind, segs.as_slice()) {
        (Kind::Oss, ["docs"]) => [("GET", Docs)].to_vec(),
        (Kind::Oss, ["configure", "providers"]) => [("GET", Providers)].to_vec(),
        (Kind::Oss, ["memories"]) => [("POST", Add), ("GET", List)].to_vec(),
        (Kind::Oss, ["memories", _]) | (Kind::Platform, ["v1", "memories", _]) => {
            let i = segs.len() - 1;
            [
                ("GET", Get(id(i))),
                ("PUT", Update(id(i))),
                ("DELETE", Delete(id(i))),
            ]
            .to_vec()
        }
        (Kind::Oss, ["memories", _, "history"]) => [("GET", History(id(1)))].to_vec(),
        (Kind::Oss, ["search"]) | (Kind::Platform, ["v3", "memories", "search"]) => {
            [("POST", Search)].to_vec()
        }
        (Kind::Platform, ["v1", "ping"]) => [("GET", Ping)].to_vec(),
        (Kind::Platform, ["v3", "memories", "add"]) => [("POST", Add)].to_vec(),
        (Kind::Platform, ["v1", "memories"]) => [("POST", LegacyAdd), ("GET", List)].to_vec(),
        (Kind::Platform, ["v1", "event", _]) => [("GET", Event(id(2)))].to_vec(),
        _ => return NotFound,
    };
    r.into_iter()
        .find(|(verb, _)| *verb == m)
        .map_or(MethodNotAllowed, |(_, route)| route)
}

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn detail(status: StatusCode, text: &str) -> Response<Body> {
    json_response(status, json!({ "detail": text }))
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

async fn handle_request(
    shared: Arc<Shared>,
    conn: Arc<std::net::TcpStream>,
    req: Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES)
        .await
        .unwrap_or_default();
    let body_json: Option<Value> = serde_json::from_slice(&bytes).ok();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let record = RequestRecord {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        x_api_key: header("x-api-key"),
        authorization: header(AUTHORIZATION.as_str()),
        status: None,
        body: body_json.clone(),
        fault: None,
    };
    let idx = {
        let mut st = shared.lock();
        st.requests.push(record);
        st.requests.len() - 1
    };

    let route = route(shared.kind, &parts.method, parts.uri.path());
    let early = match route {
        Route::NotFound => Some(detail(StatusCode::NOT_FOUND, "Not Found")),
        Route::MethodNotAllowed => {
            Some(detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"))
        }
        Route::Docs => None,
        _ if !shared.authorized(&parts.headers) => Some(unauthorized(shared.kind)),
        _ => None,
    };
    if let Some(resp) = early {
        shared.set_status(idx, resp.status());
        return resp;
    }

    let is_add = matches!(route, Route::Add | Route::LegacyAdd);
    let only_adds = shared.lock().plan.only_adds;
    let (fault, latency) = if is_add || (!only_adds && route != Route::Docs) {
        shared.next_fault()
    } else {
        (None, Duration::ZERO)
    };
    if let Some(r) = shared.lock().requests.get_mut(idx) {
        r.fault = fault.clone();
    }
    let req = Req {
        query: parts.uri.query().unwrap_or(""),
        body: body_json.as_ref(),
        raw_empty: bytes.is_empty(),
    };

    let resp = match fault {
        Some(Fault::Hang) => std::future::pending().await,
        Some(Fault::AcceptThenHang) => {
            let _ = shared.dispatch(&route, &req);
            std::future::pending().await
        }
        Some(Fault::Status500) => detail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error: injected fault",
        ),
        Some(Fault::Status502(code)) => json_response(
            StatusCode::BAD_GATEWAY,
            json!({"detail": "Upstream provider failed (injected)", "code": code, "request_id": uuid::Uuid::new_v4().to_string()}),
        ),
        Some(Fault::Status503 { retry_after_secs }) => {
            let mut resp = detail(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
            if let Some(secs) = retry_after_secs {
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(secs));
            }
            resp
        }
        Some(Fault::Status429 { retry_after_secs }) => {
            let mut resp = detail(StatusCode::TOO_MANY_REQUESTS, "Request was throttled.");
            let h = resp.headers_mut();
            h.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            h.insert("x-ratelimit-limit", HeaderValue::from(1000u64));
            h.insert("x-ratelimit-remaining", HeaderValue::from(0u64));
            h.insert("x-ratelimit-reset", HeaderValue::from(retry_after_secs));
            resp
        }
        Some(Fault::Unauthorized) => unauthorized(shared.kind),
        Some(Fault::Status422) => unprocessable(vec![validation_error(
            json!(["body", "messages"]),
            "Value error, injected rejection",
            "value_error",
        )]),
        Some(Fault::Latency(extra)) => {
            let resp = shared.dispatch(&route, &req);
            tokio::time::sleep(extra).await;
            resp
        }
        Some(Fault::ResetMidResponse) | None => shared.dispatch(&route, &req),
    };
    tokio::time::sleep(latency).await;
    shared.set_status(idx, resp.status());
    if fault == Some(Fault::ResetMidResponse) {
        reset_mid_response(&conn, resp).await
    } else {
        resp
    }
}

fn unauthorized(kind: Kind) -> Response<Body> {
    match kind {
        Kind::Oss => detail(StatusCode::UNAUTHORIZED, "Invalid or missing API key"),
        Kind::Platform => detail(StatusCode::UNAUTHORIZED, "Invalid API key"),
    }
}

/// Sends the headers (with the full Content-Length) and half the body, then fails the
/// body so hyper drops the connection; `SO_LINGER 0` turns that close into a TCP reset.
async fn reset_mid_response(conn: &std::net::TcpStream, resp: Response<Body>) -> Response<Body> {
    let _ = socket2::SockRef::from(conn).set_linger(Some(Duration::ZERO));
    let (mut parts, body) = resp.into_parts();
    let full = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .unwrap_or_default();
    let half = full.slice(..full.len() / 2);
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(full.len()));
    let stream = futures_util::stream::iter([Ok::<Bytes, io::Error>(half)]).chain(
        futures_util::stream::once(async {
            tokio::time::sleep(RESET_PAUSE).await;
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "injected reset mid-response",
            ))
        }),
    );
    Response::from_parts(parts, Body::from_stream(stream))
}

/// What a route handler needs of the request.
struct Req<'a> {
    query: &'a str,
    body: Option<&'a Value>,
    raw_empty: bool,
}

/// A validated add body.
struct AddReq {
    texts: Vec<String>,
    ids: [Option<String>; 3],
    metadata: Value,
    infer: bool,
    async_mode: bool,
    timestamp: Option<i64>,
}

fn validation_error(loc: Value, msg: &str, kind: &str) -> Value {
    json!({"loc": loc, "msg": msg, "type": kind})
}

fn unprocessable(errors: Vec<Value>) -> Response<Body> {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({ "detail": errors }),
    )
}

/// The JSON object body, or the 422 FastAPI sends for a missing, invalid or non-object body.
fn body_object<'a>(req: &Req<'a>) -> Result<&'a Map<String, Value>, Response<Body>> {
    match req.body {
        Some(Value::Object(obj)) => Ok(obj),
        Some(_) => Err(unprocessable(vec![validation_error(
            json!(["body"]),
            "Input should be a valid dictionary or object to extract fields from",
            "model_attributes_type",
        )])),
        None if req.raw_empty => Err(unprocessable(vec![validation_error(
            json!(["body"]),
            "Field required",
            "missing",
        )])),
        None => Err(unprocessable(vec![validation_error(
            json!(["body", 0]),
            "JSON decode error",
            "json_invalid",
        )])),
    }
}

/// Entity ids from `obj`: 422 errors for non-strings go to `errors`.
fn entity_ids(obj: &Map<String, Value>, errors: &mut Vec<Value>) -> [Option<String>; 3] {
    ENTITY_KEYS.map(|k| match obj.get(k) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(validation_error(
                json!(["body", k]),
                "Input should be a valid string",
                "string_type",
            ));
            None
        }
    })
}

/// 400 unless at least one id is given and every given id is non-empty without whitespace.
fn check_ids(ids: &[Option<String>; 3]) -> Result<(), Response<Body>> {
    if ids.iter().all(Option::is_none) {
        return Err(detail(
            StatusCode::BAD_REQUEST,
            "At least one identifier (user_id, agent_id, run_id) is required.",
        ));
    }
    for (key, id) in ENTITY_KEYS.iter().zip(ids) {
        if let Some(id) = id
            && (id.is_empty() || id.chars().any(char::is_whitespace))
        {
            return Err(detail(
                StatusCode::BAD_REQUEST,
                &format!("Invalid {key}: must be non-empty and hold no whitespace."),
            ));
        }
    }
    Ok(())
}

fn parse_add(req: &Req) -> Result<AddReq, Response<Body>> {
    let obj = body_object(req)?;
    let mut errors = Vec::new();
    let mut texts = Vec::new();
    match obj.get("messages") {
        None => errors.push(validation_error(
            json!(["body", "messages"]),
            "Field required",
            "missing",
        )),
        Some(Value::Array(messages)) => {
            for (i, msg) in messages.iter().enumerate() {
                let Some(msg) = msg.as_object() else {
                    errors.push(validation_error(
                        json!(["body", "messages", i]),
                        "Input should be a valid dictionary",
                        "dict_type",
                    ));
                    continue;
                };
                let mut field = |name: &str| match msg.get(name) {
                    None => {
                        errors.push(validation_error(
                            json!(["body", "messages", i, name]),
                            "Field required",
                            "missing",
                        ));
                        None
                    }
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => {
                        errors.push(validation_error(
                            json!(["body", "messages", i, name]),
                            "Input should be a valid string",
                            "string_type",
                        ));
                        None
                    }
                };
                let (role, content) = (field("role"), field("content"));
                if let (Some(role), Some(content)) = (role, content)
                    && role != "system"
                {
                    texts.push(content);
                }
            }
        }
        Some(_) => errors.push(validation_error(
            json!(["body", "messages"]),
            "Input should be a valid list",
            "list_type",
        )),
    }
    let ids = entity_ids(obj, &mut errors);
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Object(m)) => {
            let mut m = m.clone();
            IDENTITY_KEYS.iter().for_each(|k| {
                m.remove(*k);
            });
            Value::Object(m)
        }
        Some(_) => {
            errors.push(validation_error(
                json!(["body", "metadata"]),
                "Input should be a valid dictionary",
                "dict_type",
            ));
            Value::Null
        }
    };
    let mut flag = |name: &str, default: bool| match obj.get(name) {
        None | Some(Value::Null) => default,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.push(validation_error(
                json!(["body", name]),
                "Input should be a valid boolean",
                "bool_type",
            ));
            default
        }
    };
    let (infer, async_mode) = (flag("infer", true), flag("async_mode", true));
    let timestamp = match obj.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64().filter(|t| *t >= 0) {
            Some(t) => Some(t),
            None => {
                errors.push(validation_error(
                    json!(["body", "timestamp"]),
                    "Input should be a valid unix time",
                    "int_type",
                ));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(unprocessable(errors));
    }
    check_ids(&ids)?;
    Ok(AddReq {
        texts,
        ids,
        metadata,
        infer,
        async_mode,
        timestamp,
    })
}

/// Lowercase alphanumeric words.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A word-overlap score in (0, 1]: 1 when every query word is in the memory.
/// A stand-in for vector similarity: 0 for a memory that shares no word with
/// the query (noise), else in (0, 1], growing with the shared words.
fn score(query: &str, memory: &str) -> f64 {
    let mut q = words(query);
    q.sort();
    q.dedup();
    let m = words(memory);
    let overlap = q.iter().filter(|w| m.contains(w)).count();
    if overlap == 0 {
        return 0.0;
    }
    (1 + overlap) as f64 / (1 + q.len()) as f64
}

/// A short content hash (FNV-1a), standing in for Mem0's md5.
fn hash(text: &str) -> String {
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

fn field_of(m: &StoredMemory, key: &str) -> Option<Value> {
    match key {
        "user_id" => m.user_id.clone().map(Value::String),
        "agent_id" => m.agent_id.clone().map(Value::String),
        "run_id" => m.run_id.clone().map(Value::String),
        "memory" => Some(Value::String(m.memory.clone())),
        "created_at" => Some(Value::String(m.created_at.clone())),
        _ => m.metadata.get(key).cloned(),
    }
}

/// The platform's allowed top-level filter fields (besides `AND`/`OR`/`NOT`).
const PLATFORM_FILTER_FIELDS: [&str; 9] = [
    "user_id",
    "agent_id",
    "app_id",
    "run_id",
    "metadata",
    "created_at",
    "updated_at",
    "categories",
    "keywords",
];

/// Each server's refusal of a filter key it does not take: the platform
/// answers 400 to a metadata key given flat (`{"mq_id": x}`, it wants
/// `{"metadata": {"mq_id": x}}`), the self-hosted server answers 400 to a
/// `metadata` object (its vector store reads `mq_id` inside it as an operator).
fn check_filter_keys(kind: Kind, filters: &Map<String, Value>) -> Result<(), Response<Body>> {
    for (key, cond) in filters {
        if matches!(key.as_str(), "AND" | "OR" | "NOT") {
            let list = match cond {
                Value::Array(a) => a.iter().collect::<Vec<_>>(),
                other => vec![other],
            };
            for f in list {
                if let Some(o) = f.as_object() {
                    check_filter_keys(kind, o)?;
                }
            }
            continue;
        }
        match kind {
            Kind::Platform if !PLATFORM_FILTER_FIELDS.contains(&key.as_str()) => {
                return Err(json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": format!("Top-level key must be a logical operator or an allowed field: {PLATFORM_FILTER_FIELDS:?}")}),
                ));
            }
            Kind::Oss if key == "metadata" => {
                return Err(detail(
                    StatusCode::BAD_REQUEST,
                    "Unsupported filter operator",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The Mem0 filter language: equality, `{op: value}` operators, `AND`/`OR`/`NOT`, `"*"`,
/// and the platform's `{"metadata": {key: cond}}`.
fn matches(m: &StoredMemory, filters: &Map<String, Value>) -> bool {
    let each = |v: &Value, all: bool| {
        let list: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let hit = |f: &&Value| f.as_object().is_some_and(|o| matches(m, o));
        if all {
            list.iter().all(hit)
        } else {
            list.iter().any(hit)
        }
    };
    filters.iter().all(|(key, cond)| match key.as_str() {
        "AND" => each(cond, true),
        "OR" => each(cond, false),
        "NOT" => !each(cond, false),
        "metadata" => cond
            .as_object()
            .is_some_and(|o| o.iter().all(|(k, c)| cond_matches(m.metadata.get(k), c))),
        _ => cond_matches(field_of(m, key).as_ref(), cond),
    })
}

fn cond_matches(actual: Option<&Value>, cond: &Value) -> bool {
    const OPS: [&str; 10] = [
        "eq",
        "ne",
        "in",
        "nin",
        "gt",
        "gte",
        "lt",
        "lte",
        "contains",
        "icontains",
    ];
    match cond {
        Value::String(s) if s == "*" => actual.is_some(),
        Value::Object(ops) if !ops.is_empty() && ops.keys().all(|k| OPS.contains(&k.as_str())) => {
            ops.iter().all(|(op, v)| op_matches(actual, op, v))
        }
        other => actual == Some(other),
    }
}

fn op_matches(actual: Option<&Value>, op: &str, v: &Value) -> bool {
    let in_list = || {
        v.as_array()
            .is_some_and(|l| actual.is_some_and(|a| l.contains(a)))
    };
    let order = || match (actual, v) {
        (Some(Value::Number(a)), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Some(Value::String(a)), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
        _ => None,
    };
    let contains = |fold: bool| match (actual, v) {
        (Some(Value::String(a)), Value::String(b)) if fold => {
            a.to_lowercase().contains(&b.to_lowercase())
        }
        (Some(Value::String(a)), Value::String(b)) => a.contains(b.as_str()),
        (Some(Value::Array(a)), b) => a.contains(b),
        _ => false,
    };
    use std::cmp::Ordering::*;
    match op {
        "eq" => actual == Some(v),
        "ne" => actual != Some(v),
        "in" => in_list(),
        "nin" => !in_list(),
        "gt" => order() == Some(Greater),
        "gte" => matches!(order(), Some(Greater | Equal)),
        "lt" => order() == Some(Less),
        "lte" => matches!(order(), Some(Less | Equal)),
        "contains" => contains(false),
        "icontains" => contains(true),
        _ => false,
    }
}

/// True when the filters scope by an entity id, at top level or inside `AND`/`OR`.
fn has_entity(filters: &Map<String, Value>) -> bool {
    filters.iter().any(|(k, v)| match k.as_str() {
        "AND" | "OR" => v
            .as_array()
            .is_some_and(|l| l.iter().any(|f| f.as_object().is_some_and(has_entity))),
        _ => ENTITY_KEYS.contains(&k.as_str()),
    })
}

fn memory_json(m: &StoredMemory) -> Value {
    let mut obj = json!({
        "id": m.id, "memory": m.memory, "hash": hash(&m.memory), "metadata": m.metadata,
        "created_at": m.created_at, "updated_at": m.updated_at,
    });
    for (key, id) in ENTITY_KEYS.iter().zip([&m.user_id, &m.agent_id, &m.run_id]) {
        if let (Some(id), Some(obj)) = (id, obj.as_object_mut()) {
            obj.insert(key.to_string(), json!(id));
        }
    }
    obj
}

impl Shared {
    fn dispatch(&self, route: &Route, req: &Req) -> Response<Body> {
        let result = match (self.kind, route) {
            (_, Route::Docs) => {
                let mut resp = Response::new(Body::from(
                    "<!doctype html><title>Mem0 REST APIs - Swagger UI</title>",
                ));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                Ok(resp)
            }
            (_, Route::Providers) => Ok(json_response(
                StatusCode::OK,
                json!({"llm": {"provider": "test"}, "embedder": {"provider": "test"}, "vector_store": {"provider": "memory"}}),
            )),
            (_, Route::Ping) => Ok(json_response(
                StatusCode::OK,
                json!({"status": "ok", "org_id": ORG_ID, "project_id": "test-project", "user_email": "test@example.invalid"}),
            )),
            (_, Route::Add) | (_, Route::LegacyAdd) => self.add(route, req),
            (_, Route::Search) => self.search(req),
            (_, Route::List) => self.list(req),
            (_, Route::Get(id)) => Ok(self.get(id)),
            (_, Route::Update(id)) => self.update(id, req),
            (_, Route::Delete(id)) => Ok(self.delete(id)),
            (_, Route::History(id)) => Ok(self.history(id)),
            (_, Route::Event(id)) => Ok(self.poll_event(id)),
            (_, Route::NotFound | Route::MethodNotAllowed) => {
                Ok(detail(StatusCode::NOT_FOUND, "Not Found"))
            }
        };
        result.unwrap_or_else(|resp| resp)
    }

    fn store(&self, add: &AddReq) -> Vec<Value> {
        let created_at = match add.timestamp {
            Some(t) if self.kind == Kind::Platform => {
                humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_secs(t.unsigned_abs()))
                    .to_string()
            }
            _ => now_rfc3339(),
        };
        let texts: Vec<String> = if add.infer {
            let joined = add.texts.join("\n");
            if joined.trim().is_empty() {
                vec![]
            } else {
                vec![joined]
            }
        } else {
            add.texts.clone()
        };
        let mut st = self.lock();
        texts
            .into_iter()
            .map(|memory| {
                let [user_id, agent_id, run_id] = add.ids.clone();
                let m = StoredMemory {
                    id: uuid::Uuid::new_v4().to_string(),
                    memory,
                    user_id,
                    agent_id,
                    run_id,
                    metadata: add.metadata.clone(),
                    created_at: created_at.clone(),
                    timestamp: if self.kind == Kind::Platform {
                        add.timestamp
                    } else {
                        None
                    },
                    updated_at: None,
                    deleted: false,
                };
                let result = json!({"id": m.id, "memory": m.memory, "event": "ADD"});
                st.memories.push(m);
                result
            })
            .collect()
    }

    fn add(&self, route: &Route, req: &Req) -> Result<Response<Body>, Response<Body>> {
        let add = parse_add(req)?;
        let asynchronous = match (self.kind, route) {
            (Kind::Oss, _) => false,
            (Kind::Platform, Route::LegacyAdd) => add.async_mode,
            (Kind::Platform, _) => add.infer,
        };
        if !asynchronous {
            let results = self.store(&add);
            return Ok(json_response(StatusCode::OK, json!({ "results": results })));
        }
        let event_id = uuid::Uuid::new_v4().to_string();
        let plan = self.lock().plan.events.clone();
        let results = if plan.fail {
            Vec::new()
        } else {
            self.store(&add)
        };
        self.lock().events.insert(
            event_id.clone(),
            Event {
                polls_left: plan.pending_polls,
                fail: plan.fail,
                results,
            },
        );
        Ok(json_response(
            StatusCode::OK,
            match route {
                Route::LegacyAdd => {
                    json!([{"message": "Memory processing has been queued for background execution", "status": "PENDING", "event_id": event_id}])
                }
                _ => json!({"event_id": event_id, "status": "PENDING"}),
            },
        ))
    }

    fn poll_event(&self, id: &str) -> Response<Body> {
        let mut st = self.lock();
        let Some(ev) = st.events.get_mut(id) else {
            return detail(StatusCode::NOT_FOUND, "Event not found");
        };
        let (status, error) = if ev.polls_left > 0 {
            ev.polls_left -= 1;
            ("PENDING", Value::Null)
        } else if ev.fail {
            ("FAILED", json!("Memory processing failed (injected)"))
        } else {
            ("SUCCEEDED", Value::Null)
        };
        let results = if status == "SUCCEEDED" {
            json!(ev.results)
        } else {
            json!([])
        };
        json_response(
            StatusCode::OK,
            json!({"id": id, "event_id": id, "event_type": "ADD", "status": status, "results": results, "error": error}),
        )
    }

    fn search(&self, req: &Req) -> Result<Response<Body>, Response<Body>> {
        let obj = body_object(req)?;
        let mut errors = Vec::new();
        let query = match obj.get("query") {
            Some(Value::String(q)) => q.clone(),
            Some(_) => {
                errors.push(validation_error(
                    json!(["body", "query"]),
                    "Input should be a valid string",
                    "string_type",
                ));
                String::new()
            }
            None => {
                errors.push(validation_error(
                    json!(["body", "query"]),
                    "Field required",
                    "missing",
                ));
                String::new()
            }
        };
        let mut filters = match obj.get("filters") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(f)) => f.clone(),
            Some(_) => {
                errors.push(validation_error(
                    json!(["body", "filters"]),
                    "Input should be a valid dictionary",
                    "dict_type",
                ));
                Map::new()
            }
        };
        let ids = entity_ids(obj, &mut errors);
        if !errors.is_empty() {
            return Err(unprocessable(errors));
        }
        match self.kind {
            Kind::Platform if ids.iter().any(Option::is_some) => {
                return Err(detail(
                    StatusCode::BAD_REQUEST,
                    "Top-level entity parameters are not supported; use filters.",
                ));
            }
            Kind::Platform => {}
            // The oss server still copies top-level ids into the filters.
            Kind::Oss => {
                for (key, id) in ENTITY_KEYS.iter().zip(ids) {
                    if let Some(id) = id {
                        filters.insert(key.to_string(), Value::String(id));
                    }
                }
            }
        }
        if !has_entity(&filters) {
            return Err(detail(
                StatusCode::BAD_REQUEST,
                "At least one of 'user_id', 'agent_id', or 'run_id' must be provided in filters.",
            ));
        }
        check_filter_keys(self.kind, &filters)?;
        let default_top_k = if self.kind == Kind::Oss {
            OSS_SEARCH_TOP_K
        } else {
            PLATFORM_SEARCH_TOP_K
        };
        let top_k = obj
            .get("top_k")
            .and_then(Value::as_u64)
            .map_or(default_top_k, |k| k as usize);
        // The self-hosted server's default threshold is 0.1: what scores
        // under it is noise, and a client sending 0 gets that noise too.
        let threshold = obj
            .get("threshold")
            .and_then(Value::as_f64)
            .or(match self.kind {
                Kind::Oss => Some(OSS_SEARCH_THRESHOLD),
                Kind::Platform => None,
            });
        let st = self.lock();
        let mut hits: Vec<(f64, &StoredMemory)> = st
            .memories
            .iter()
            .filter(|m| !m.deleted && matches(m, &filters))
            .map(|m| (score(&query, &m.memory), m))
            .filter(|(s, _)| threshold.is_none_or(|t| *s >= t))
            .collect();
        hits.sort_by(|a, b| b.0.total_cmp(&a.0));
        let results: Vec<Value> = hits
            .into_iter()
            .take(top_k)
            .map(|(s, m)| {
                let mut v = memory_json(m);
                v["score"] = json!(s);
                v
            })
            .collect();
        Ok(json_response(StatusCode::OK, json!({ "results": results })))
    }

    fn list(&self, req: &Req) -> Result<Response<Body>, Response<Body>> {
        let mut ids: [Option<String>; 3] = Default::default();
        let mut top_k = LIST_TOP_K_DEFAULT;
        for (key, value) in form_urlencoded::parse(req.query.as_bytes()) {
            if let Some(i) = ENTITY_KEYS.iter().position(|k| *k == key) {
                ids[i] = Some(value.into_owned());
            } else if key == "top_k" || key == "limit" {
                top_k = match value.parse::<usize>() {
                    Ok(k) if k <= LIST_TOP_K_MAX => k,
                    Ok(_) => {
                        return Err(unprocessable(vec![validation_error(
                            json!(["query", "top_k"]),
                            "Input should be less than or equal to 1000",
                            "less_than_equal",
                        )]));
                    }
                    Err(_) => {
                        return Err(unprocessable(vec![validation_error(
                            json!(["query", "top_k"]),
                            "Input should be a valid integer, unable to parse string as an integer",
                            "int_parsing",
                        )]));
                    }
                };
            }
        }
        check_ids(&ids)?;
        let st = self.lock();
        let found: Vec<Value> = st
            .memories
            .iter()
            .filter(|m| {
                !m.deleted
                    && [&m.user_id, &m.agent_id, &m.run_id]
                        .iter()
                        .zip(&ids)
                        .all(|(have, want)| want.is_none() || *have == want)
            })
            .take(top_k)
            .map(memory_json)
            .collect();
        Ok(json_response(
            StatusCode::OK,
            if self.kind == Kind::Oss {
                json!({ "results": found })
            } else {
                json!(found)
            },
        ))
    }

    fn find(&self, id: &str) -> Option<StoredMemory> {
        self.lock()
            .memories
            .iter()
            .find(|m| m.id == id && !m.deleted)
            .cloned()
    }

    fn not_found(&self) -> Response<Body> {
        detail(StatusCode::NOT_FOUND, "Memory not found")
    }

    fn get(&self, id: &str) -> Response<Body> {
        match (self.find(id), self.kind) {
            (Some(m), _) => json_response(StatusCode::OK, memory_json(&m)),
            // The oss server answers a missing memory with `null` and 200.
            (None, Kind::Oss) => json_response(StatusCode::OK, Value::Null),
            (None, Kind::Platform) => self.not_found(),
        }
    }

    fn update(&self, id: &str, req: &Req) -> Result<Response<Body>, Response<Body>> {
        let obj = body_object(req)?;
        let text = obj.get("text").and_then(Value::as_str).map(str::to_string);
        let metadata = obj.get("metadata").filter(|m| m.is_object()).cloned();
        let mut st = self.lock();
        let Some(m) = st.memories.iter_mut().find(|m| m.id == id && !m.deleted) else {
            return Err(self.not_found());
        };
        if let Some(text) = text {
            m.memory = text;
        }
        if let Some(metadata) = metadata {
            m.metadata = metadata;
        }
        m.updated_at = Some(now_rfc3339());
        Ok(json_response(
            StatusCode::OK,
            json!({"message": "Memory updated successfully!"}),
        ))
    }

    fn delete(&self, id: &str) -> Response<Body> {
        let mut st = self.lock();
        match st.memories.iter_mut().find(|m| m.id == id && !m.deleted) {
            Some(m) => {
                m.deleted = true;
                json_response(
                    StatusCode::OK,
                    json!({"message": "Memory deleted successfully!"}),
                )
            }
            None => self.not_found(),
        }
    }

    fn history(&self, id: &str) -> Response<Body> {
        let rows: Vec<Value> = self
            .lock()
            .memories
            .iter()
            .filter(|m| m.id == id)
            .map(|m| {
                json!({"id": uuid::Uuid::new_v4().to_string(), "memory_id": m.id, "old_memory": null, "new_memory": m.memory,
                       "event": "ADD", "created_at": m.created_at, "updated_at": m.updated_at, "is_deleted": m.deleted})
            })
            .collect();
        json_response(StatusCode::OK, json!(rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Client;

    /// Client timeout for the hang faults: short, the server is on loopback.
    const HANG_TIMEOUT: Duration = Duration::from_millis(300);

    async fn server(kind: Kind, key: Option<&str>) -> Mem0Server {
        Mem0Server::start(ServerOptions {
            kind,
            api_key: key.map(str::to_string),
            seed: 7,
        })
        .await
    }

    fn client() -> Client {
        Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("build a reqwest client")
    }

    fn add_body(user: &str, mq_id: &str, text: &str) -> Value {
        json!({"messages": [{"role": "user", "content": text}], "user_id": user,
               "metadata": {"mq_id": mq_id, "user_id": "stripped"}, "infer": false})
    }

    async fn send(rb: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = rb.send().await.expect("request reaches the test server");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The status code of a request's answer.
    async fn status(rb: reqwest::RequestBuilder) -> u16 {
        send(rb).await.0
    }

    #[tokio::test]
    async fn oss_routes() {
        let s = server(Kind::Oss, Some("k")).await;
        let (c, u) = (client(), s.url());
        let post = |path: &str| c.post(format!("{u}{path}")).header("X-API-Key", "k");
        let get = |path: &str| c.get(format!("{u}{path}")).header("X-API-Key", "k");

        assert_eq!(
            c.get(format!("{u}/docs"))
                .send()
                .await
                .expect("docs")
                .status(),
            200
        );
        assert_eq!(status(c.get(format!("{u}/configure/providers"))).await, 401);
        assert_eq!(
            status(
                c.get(format!("{u}/configure/providers"))
                    .header("X-API-Key", "bad")
            )
            .await,
            401
        );
        assert_eq!(
            status(c.get(format!("{u}/configure/providers")).bearer_auth("k")).await,
            200
        );

        let (st, body) = send(post("/memories").json(&add_body("u", "a", "likes green tea"))).await;
        assert_eq!(st, 200);
        assert_eq!(body["results"][0]["event"], "ADD");
        assert_eq!(body["results"][0]["memory"], "likes green tea");
        let id = body["results"][0]["id"].as_str().expect("id").to_string();
        assert_eq!(s.stored()[0].metadata, json!({"mq_id": "a"}));
        let (_, inferred) = send(
            post("/memories")
                .json(&json!({"messages": [{"role": "user", "content": "x y"}], "agent_id": "ag"})),
        )
        .await;
        assert_eq!(inferred["results"].as_array().map(Vec::len), Some(1));

        assert_eq!(
            status(post("/memories/").json(&add_body("u", "b", "t"))).await,
            404
        );
        assert_eq!(status(get("/search")).await, 405);
        assert_eq!(
            status(
                post("/memories").json(&json!({"messages": [{"role": "user", "content": "t"}]}))
            )
            .await,
            400
        );
        assert_eq!(
            status(post("/memories").json(&add_body("a b", "b", "t"))).await,
            400
        );
        let (st, body) = send(post("/memories").json(&json!({"user_id": "u"}))).await;
        assert_eq!(
            (st, &body["detail"][0]["loc"]),
            (422, &json!(["body", "messages"]))
        );
        let (st, body) = send(
            post("/memories")
                .json(&json!({"user_id": "u", "messages": [{"role": "user", "content": 5}]})),
        )
        .await;
        assert_eq!(
            (st, body["detail"][0]["type"].as_str()),
            (422, Some("string_type"))
        );

        for filters in [
            json!({"user_id": "u", "mq_id": "a"}),
            json!({"user_id": "u", "mq_id": {"eq": "a"}}),
            json!({"AND": [{"user_id": "u"}, {"mq_id": {"in": ["a", "z"]}}]}),
        ] {
            let (st, body) = send(post("/search").json(
                &json!({"query": "green tea", "filters": filters, "top_k": 5, "threshold": 0.1}),
            ))
            .await;
            assert_eq!(st, 200, "{filters}");
            let hit = &body["results"][0];
            assert_eq!(
                (
                    hit["id"].as_str(),
                    hit["user_id"].as_str(),
                    &hit["metadata"]
                ),
                (Some(id.as_str()), Some("u"), &json!({"mq_id": "a"}))
            );
            assert!(
                hit["score"].as_f64().is_some_and(|x| x > 0.0 && x <= 1.0)
                    && hit["hash"].is_string()
            );
        }
        let (_, body) = send(
            post("/search")
                .json(&json!({"query": "tea", "filters": {"user_id": "u", "mq_id": "zzz"}})),
        )
        .await;
        assert_eq!(body["results"], json!([]));
        let (_, body) = send(post("/search").json(&json!({"query": "tea", "user_id": "u"}))).await;
        assert_eq!(body["results"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            status(post("/search").json(&json!({"query": "tea", "filters": {"mq_id": "a"}}))).await,
            400
        );
        // The self-hosted server refuses the platform's metadata form.
        assert_eq!(
            status(post("/search").json(
                &json!({"query": "tea", "filters": {"user_id": "u", "metadata": {"mq_id": "a"}}})
            ))
            .await,
            400
        );

        let (st, body) = send(get("/memories?user_id=u&top_k=10")).await;
        assert_eq!(
            (st, body["results"].as_array().map(Vec::len)),
            (200, Some(1))
        );
        assert_eq!(status(get("/memories")).await, 400);
        assert_eq!(status(get("/memories?user_id=u&top_k=1001")).await, 422);
        let (st, body) = send(get(&format!("/memories/{id}"))).await;
        assert_eq!(
            (st, body["memory"].as_str()),
            (200, Some("likes green tea"))
        );
        assert_eq!(send(get("/memories/nope")).await, (200, Value::Null));
        let (st, body) = send(get(&format!("/memories/{id}/history"))).await;
        assert_eq!((st, body.as_array().map(Vec::len)), (200, Some(1)));
        let put = c
            .put(format!("{u}/memories/{id}"))
            .header("X-API-Key", "k")
            .json(&json!({"text": "likes tea"}));
        assert_eq!(status(put).await, 200);
        assert_eq!(
            status(
                c.delete(format!("{u}/memories/{id}"))
                    .header("X-API-Key", "k")
            )
            .await,
            200
        );
        assert_eq!(
            status(
                c.delete(format!("{u}/memories/{id}"))
                    .header("X-API-Key", "k")
            )
            .await,
            404
        );

        assert_eq!(s.count_by_mq_id(), HashMap::from([("a".to_string(), 1)]));
        let reqs = s.requests();
        assert!(reqs.iter().all(|r| r.status.is_some()));
        assert_eq!(reqs[3].authorization.as_deref(), Some("Bearer k"));
        assert_eq!(reqs[4].x_api_key.as_deref(), Some("k"));
        s.shutdown().await;
    }

    #[tokio::test]
    async fn platform_routes() {
        let s = server(Kind::Platform, Some("m0-k")).await;
        let (c, u) = (client(), s.url());
        let post = |path: &str| {
            c.post(format!("{u}{path}"))
                .header("Authorization", "Token m0-k")
        };
        let get = |path: &str| {
            c.get(format!("{u}{path}"))
                .header("Authorization", "Token m0-k")
        };

        let (st, body) = send(get("/v1/ping/")).await;
        assert_eq!((st, body["org_id"].as_str()), (200, Some(ORG_ID)));
        assert_eq!(
            status(
                c.get(format!("{u}/v1/ping/"))
                    .header("Authorization", "Token bad")
            )
            .await,
            401
        );
        assert_eq!(status(get("/v1/ping")).await, 404);
        assert_eq!(
            status(post("/v3/memories/add").json(&add_body("u", "a", "t"))).await,
            404
        );

        let mut body = add_body("u", "a", "likes green tea");
        body["infer"] = json!(true);
        body["timestamp"] = json!(1_700_000_000);
        let (st, added) = send(post("/v3/memories/add/").json(&body)).await;
        assert_eq!((st, added["status"].as_str()), (200, Some("PENDING")));
        let event = added["event_id"].as_str().expect("event_id").to_string();
        let (_, polled) = send(get(&format!("/v1/event/{event}/"))).await;
        assert_eq!(polled["status"], "SUCCEEDED");
        let id = polled["results"][0]["id"]
            .as_str()
            .expect("result id")
            .to_string();
        assert_eq!(s.stored()[0].timestamp, Some(1_700_000_000));
        assert!(s.stored()[0].created_at.starts_with("2023-11-14T22:13:20"));

        let (st, sync) =
            send(post("/v3/memories/add/").json(&add_body("u", "b", "plays chess"))).await;
        assert_eq!(
            (st, sync["results"][0]["memory"].as_str()),
            (200, Some("plays chess"))
        );
        let (_, legacy) = send(post("/v1/memories/").json(&add_body("u", "c", "owns a cat"))).await;
        assert_eq!(legacy[0]["status"], "PENDING");

        let search = json!({"query": "green tea", "filters": {"user_id": "u", "metadata": {"mq_id": "a"}}, "top_k": 5});
        let (st, found) = send(post("/v3/memories/search/").json(&search)).await;
        assert_eq!(
            (st, found["results"][0]["id"].as_str()),
            (200, Some(id.as_str()))
        );
        // The platform refuses a metadata key given flat.
        let flat =
            json!({"query": "green tea", "filters": {"user_id": "u", "mq_id": "a"}, "top_k": 5});
        assert_eq!(status(post("/v3/memories/search/").json(&flat)).await, 400);
        assert_eq!(
            status(post("/v3/memories/search/").json(&json!({"query": "tea", "user_id": "u"})))
                .await,
            400
        );

        assert_eq!(status(get(&format!("/v1/memories/{id}/"))).await, 200);
        assert_eq!(
            status(
                c.delete(format!("{u}/v1/memories/{id}/"))
                    .header("Authorization", "Token m0-k")
            )
            .await,
            200
        );
        assert_eq!(status(get(&format!("/v1/memories/{id}/"))).await, 404);

        s.set_faults(FaultPlan {
            events: EventPlan {
                pending_polls: 2,
                fail: false,
            },
            ..FaultPlan::default()
        });
        let mut body = add_body("u", "d", "slow");
        body["infer"] = json!(true);
        let (_, added) = send(post("/v3/memories/add/").json(&body)).await;
        let event = added["event_id"].as_str().expect("event_id").to_string();
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(send(get(&format!("/v1/event/{event}/"))).await.1["status"].clone());
        }
        assert_eq!(
            statuses,
            [json!("PENDING"), json!("PENDING"), json!("SUCCEEDED")]
        );
        s.set_faults(FaultPlan {
            events: EventPlan {
                pending_polls: 0,
                fail: true,
            },
            ..FaultPlan::default()
        });
        body["metadata"]["mq_id"] = json!("e");
        let (_, added) = send(post("/v3/memories/add/").json(&body)).await;
        let event = added["event_id"].as_str().expect("event_id").to_string();
        assert_eq!(
            send(get(&format!("/v1/event/{event}/"))).await.1["status"],
            "FAILED"
        );
        assert_eq!(s.count_by_mq_id().get("e"), None);
        s.shutdown().await;
    }

    #[tokio::test]
    async fn status_faults_and_latency() {
        let s = server(Kind::Oss, None).await;
        let (c, u) = (client(), s.url());
        s.set_faults(FaultPlan::script([
            Some(Fault::Status500),
            Some(Fault::Status502("provider_timeout")),
            Some(Fault::Status503 {
                retry_after_secs: Some(2),
            }),
            Some(Fault::Status429 {
                retry_after_secs: 3,
            }),
            Some(Fault::Unauthorized),
            Some(Fault::Latency(Duration::from_millis(50))),
            None,
        ]));
        let add = || {
            c.post(format!("{u}/memories"))
                .json(&add_body("u", "a", "t"))
        };
        let r = add().send().await.expect("500");
        assert_eq!(r.status(), 500);
        assert!(r.json::<Value>().await.expect("500 body")["detail"].is_string());
        // Searches are not faulted and consume no script entry.
        assert_eq!(
            status(
                c.post(format!("{u}/search"))
                    .json(&json!({"query": "t", "filters": {"user_id": "u"}}))
            )
            .await,
            200
        );
        let (st, body) = send(add()).await;
        assert_eq!((st, body["code"].as_str()), (502, Some("provider_timeout")));
        assert!(body["detail"].is_string() && body["request_id"].is_string());
        let r = add().send().await.expect("503");
        assert_eq!(
            (
                r.status().as_u16(),
                r.headers().get("retry-after").and_then(|v| v.to_str().ok())
            ),
            (503, Some("2"))
        );
        let r = add().send().await.expect("429");
        assert_eq!(
            (
                r.status().as_u16(),
                r.headers().get("retry-after").and_then(|v| v.to_str().ok())
            ),
            (429, Some("3"))
        );
        assert_eq!(add().send().await.expect("401").status(), 401);
        assert!(s.stored().is_empty());
        let t0 = std::time::Instant::now();
        assert_eq!(add().send().await.expect("latency").status(), 200);
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert_eq!(status(add()).await, 200);
        assert_eq!(s.count_by_mq_id()["a"], 2);
        let faults: Vec<_> = s.requests().into_iter().map(|r| r.fault).collect();
        assert_eq!(faults[0], Some(Fault::Status500));
        assert_eq!(faults[1], None);
        s.shutdown().await;
    }

    #[tokio::test]
    async fn wrong_key_consumes_no_fault() {
        let s = server(Kind::Platform, Some("m0-k")).await;
        let c = client();
        s.set_faults(FaultPlan::script([Some(Fault::Status500)]));
        let url = format!("{}/v3/memories/add/", s.url());
        let (st, _) = send(
            c.post(&url)
                .header("Authorization", "Token wrong")
                .json(&add_body("u", "a", "t")),
        )
        .await;
        assert_eq!(st, 401);
        assert_eq!(
            status(
                c.post(&url)
                    .header("Authorization", "Token m0-k")
                    .json(&add_body("u", "a", "t"))
            )
            .await,
            500
        );
        assert!(s.stored().is_empty());
        s.shutdown().await;
    }

    #[tokio::test]
    async fn hang_and_accept_then_hang() {
        let s = server(Kind::Oss, None).await;
        let c = Client::builder()
            .timeout(HANG_TIMEOUT)
            .build()
            .expect("client");
        s.set_faults(FaultPlan::script([
            Some(Fault::Hang),
            Some(Fault::AcceptThenHang),
        ]));
        let url = format!("{}/memories", s.url());
        let e = c
            .post(&url)
            .json(&add_body("u", "hang", "t"))
            .send()
            .await
            .expect_err("hang times out");
        assert!(e.is_timeout());
        assert!(s.stored().is_empty());
        let e = c
            .post(&url)
            .json(&add_body("u", "ath", "t"))
            .send()
            .await
            .expect_err("accept-then-hang times out");
        assert!(e.is_timeout());
        assert_eq!(s.count_by_mq_id()["ath"], 1);
        assert!(s.requests().iter().all(|r| r.status.is_none()));
        s.shutdown().await;
    }

    #[tokio::test]
    async fn reset_mid_response() {
        let s = server(Kind::Oss, None).await;
        let c = client();
        s.set_faults(FaultPlan::script([Some(Fault::ResetMidResponse)]));
        let url = format!("{}/memories", s.url());
        let resp = c
            .post(&url)
            .json(&add_body("u", "r", "t"))
            .send()
            .await
            .expect("headers arrive before the reset");
        assert_eq!(resp.status(), 200);
        let err = resp
            .json::<Value>()
            .await
            .expect_err("the body is cut by a reset");
        assert!(format!("{err:?}").contains("ConnectionReset"), "{err:?}");
        assert_eq!(s.count_by_mq_id()["r"], 1);
        // The next request, on a new connection, is fine.
        assert_eq!(
            status(c.post(&url).json(&add_body("u", "r2", "t"))).await,
            200
        );
        s.shutdown().await;
    }

    #[tokio::test]
    async fn down_and_back_on_same_port() {
        let s = server(Kind::Oss, None).await;
        let c = client();
        let url = format!("{}/memories", s.url());
        assert_eq!(
            status(c.post(&url).json(&add_body("u", "1", "t"))).await,
            200
        );
        s.go_down().await;
        let e = c
            .post(&url)
            .json(&add_body("u", "2", "t"))
            .send()
            .await
            .expect_err("server is down");
        assert!(e.is_connect() || e.is_request(), "{e:?}");
        s.come_back().await;
        assert_eq!(
            status(c.post(&url).json(&add_body("u", "3", "t"))).await,
            200
        );
        assert_eq!(s.stored().len(), 2);
        s.shutdown().await;
    }

    #[tokio::test]
    async fn seeded_mix_is_reproducible() {
        let mut runs = Vec::new();
        for _ in 0..2 {
            let s = server(Kind::Oss, None).await;
            let c = client();
            s.set_faults(FaultPlan::mix([(Fault::Status500, 0.5)]));
            let mut statuses = Vec::new();
            for i in 0..20 {
                statuses.push(
                    status(c.post(format!("{}/memories", s.url())).json(&add_body(
                        "u",
                        &i.to_string(),
                        "t",
                    )))
                    .await,
                );
            }
            runs.push(statuses);
            s.shutdown().await;
        }
        assert_eq!(runs[0], runs[1]);
        assert!(runs[0].contains(&200) && runs[0].contains(&500));
    }
}
