//! The Mem0 HTTP client, for both kinds of server (`../shared/mem0-api.md`):
//! the self-hosted REST server (`oss`) and the hosted platform.
//!
//! It classifies every outcome the way the policy contract speaks: delivered,
//! connect error, timeout before send, unknown (the request may have been
//! stored), a retryable HTTP answer, or a permanent rejection. It never logs
//! the API key, and never keeps a server's error body (a 500's `detail` can
//! echo the memory's text): only the status and Mem0's error `code`.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::config::{ApiKind, Config};

/// How long a reachability probe may take: the status tool answers within
/// this even when the server hangs.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Candidates asked of a reconciliation search. The filter on `mq_id` should
/// leave one; a few more cover servers that ignore metadata filters.
const RECONCILE_TOP_K: u32 = 10;

/// How much of a memory's text a reconciliation search sends as its query.
/// The match is on `mq_id`; the query only has to be a valid one.
const RECONCILE_QUERY_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no Mem0 server is configured (set api_url or MEM0_API_URL)")]
    NotConfigured,
    #[error("api_url {0} is not a valid URL")]
    BadUrl(String),
    #[error(
        "api_url {0} is plain http to a host that is not loopback; the key would travel in clear. \
         Use https, or set allow_insecure_http = true"
    )]
    InsecureHttp(String),
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// Why one request failed, classified for the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The connection could not be made (refused, DNS, TLS handshake).
    Connect(String),
    /// The connect timed out: nothing was sent.
    TimeoutBeforeSend,
    /// Sent, and no complete answer: the server may have stored it.
    Unknown(String),
    /// A retryable answer: 408, 429, 5xx.
    Http {
        status: u16,
        retry_after_ms: Option<u64>,
        code: Option<String>,
    },
    /// A rejection a retry cannot fix.
    Permanent { status: u16, auth: bool },
}

impl Failure {
    /// A short description for logs and `last_error`; never a body.
    pub fn describe(&self) -> String {
        match self {
            Failure::Connect(e) => format!("connect error: {e}"),
            Failure::TimeoutBeforeSend => "connect timeout (not sent)".into(),
            Failure::Unknown(e) => format!("outcome unknown: {e}"),
            Failure::Http {
                status,
                retry_after_ms,
                code,
            } => {
                let mut s = format!("HTTP {status}");
                if let Some(c) = code {
                    s.push_str(&format!(" {c}"));
                }
                if let Some(ms) = retry_after_ms {
                    s.push_str(&format!(" (Retry-After {}s)", ms / 1000));
                }
                s
            }
            Failure::Permanent { status, auth } => {
                format!(
                    "HTTP {status}{}",
                    if *auth { " auth rejected" } else { " rejected" }
                )
            }
        }
    }

    /// The outcome as the policy contract speaks it.
    pub fn to_outcome(&self) -> crate::policy::Outcome {
        use crate::policy::{HttpFailure, Outcome, Rejection};
        match self {
            Failure::Connect(_) => Outcome::ConnectError,
            Failure::TimeoutBeforeSend => Outcome::TimeoutBeforeSend,
            Failure::Unknown(_) => Outcome::Unknown,
            Failure::Http {
                status,
                retry_after_ms,
                code,
            } => Outcome::Http(HttpFailure {
                status: *status,
                retry_after_ms: *retry_after_ms,
                code: code.clone(),
            }),
            Failure::Permanent { status, auth } => Outcome::Permanent(Rejection {
                status: *status,
                auth: *auth,
            }),
        }
    }

    /// True when the request may have reached the server's store.
    pub fn maybe_stored(&self) -> bool {
        matches!(self, Failure::Unknown(_))
    }

    /// True for what the run breaker counts.
    pub fn is_connection_level(&self) -> bool {
        matches!(self, Failure::Connect(_) | Failure::TimeoutBeforeSend)
    }
}

/// The result of an add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddResult {
    /// Stored; the server's memory ids (possibly none: nothing new to extract).
    Delivered(Vec<String>),
    /// The platform accepted it for processing; confirm through the event.
    Pending { event_id: String },
}

/// The state of a platform event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventState {
    Succeeded(Vec<String>),
    Pending,
    Failed,
}

/// One memory to add.
pub struct AddRequest<'a> {
    pub mq_id: &'a str,
    pub project: &'a str,
    pub agent_id: Option<&'a str>,
    pub run_id: Option<&'a str>,
    pub content: &'a str,
    pub metadata: &'a Value,
    /// Unix ms of the original save.
    pub created_at: i64,
}

/// What a probe found.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reachability {
    NotConfigured,
    Reachable,
    AuthRejected { http_status: u16 },
    Unreachable { error: String },
}

/// A remote memory from a search.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RemoteMemory {
    pub id: String,
    pub memory: String,
    pub score: Option<f64>,
    pub metadata: Value,
}

/// The client. Cheap to clone (reqwest's client is an `Arc`).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    kind: ApiKind,
    key: Option<String>,
    add_timeout: Duration,
    search_timeout: Duration,
    infer: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("kind", &self.kind)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// Builds a client from the config; `NotConfigured` when no URL is set.
    pub fn from_config(c: &Config) -> Result<Self, ClientError> {
        let url = c.api_url.as_deref().ok_or(ClientError::NotConfigured)?;
        let base = url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base).map_err(|_| ClientError::BadUrl(base.clone()))?;
        if parsed.scheme() == "http" && !c.allow_insecure_http && !is_loopback(&parsed) {
            return Err(ClientError::InsecureHttp(base));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(c.connect_timeout)
            .user_agent(concat!("mem0-queue/", env!("CARGO_PKG_VERSION")))
            .use_rustls_tls()
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(Self {
            http,
            base,
            kind: c.api_kind,
            key: c.api_key.clone(),
            add_timeout: c.add_timeout,
            search_timeout: c.search_timeout,
            infer: c.infer,
        })
    }

    pub fn kind(&self) -> ApiKind {
        self.kind
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match (&self.key, self.kind) {
            (Some(k), ApiKind::Oss) => rb.header("X-API-Key", k),
            (Some(k), ApiKind::Platform) => rb.header("Authorization", format!("Token {k}")),
            (None, _) => rb,
        }
    }

    /// The add body, exactly as `mem0-api.md` gives it for each kind.
    pub fn add_body(&self, r: &AddRequest<'_>) -> Value {
        let mut metadata = match r.metadata {
            Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        metadata.insert("mq_id".into(), json!(r.mq_id));
        metadata.insert("created_at".into(), json!(rfc3339(r.created_at)));
        let mut body = json!({
            "messages": [{"role": "user", "content": r.content}],
            "user_id": r.project,
            "metadata": metadata,
            "infer": self.infer,
        });
        if let Some(a) = r.agent_id {
            body["agent_id"] = json!(a);
        }
        if let Some(run) = r.run_id {
            body["run_id"] = json!(run);
        }
        if self.kind == ApiKind::Platform {
            body["timestamp"] = json!(r.created_at.div_euclid(1000));
        }
        body
    }

    /// Sends one add.
    pub async fn add(&self, r: &AddRequest<'_>) -> Result<AddResult, Failure> {
        let path = match self.kind {
            ApiKind::Oss => "/memories",
            ApiKind::Platform => "/v3/memories/add/",
        };
        let resp = self
            .request(reqwest::Method::POST, path)
            .timeout(self.add_timeout)
            .json(&self.add_body(r))
            .send()
            .await
            .map_err(classify_send_error)?;
        let body = read_success(resp).await?;
        if let Some(event_id) = body.get("event_id").and_then(Value::as_str)
            && body.get("results").is_none()
        {
            return Ok(AddResult::Pending {
                event_id: event_id.to_string(),
            });
        }
        Ok(AddResult::Delivered(result_ids(&body)))
    }

    /// Polls a platform event once.
    pub async fn event(&self, event_id: &str) -> Result<EventState, Failure> {
        let resp = self
            .request(reqwest::Method::GET, &format!("/v1/event/{event_id}/"))
            .timeout(self.search_timeout)
            .send()
            .await
            .map_err(classify_send_error)?;
        let body = read_success(resp).await?;
        Ok(
            match body.get("status").and_then(Value::as_str).unwrap_or("") {
                "SUCCEEDED" => EventState::Succeeded(result_ids(&body)),
                "FAILED" => EventState::Failed,
                _ => EventState::Pending,
            },
        )
    }

    /// Looks an entry up by its `mq_id`: its remote ids if the server has it.
    pub async fn find_by_mq_id(&self, r: &AddRequest<'_>) -> Result<Option<Vec<String>>, Failure> {
        let mut filters = json!({"user_id": r.project, "mq_id": r.mq_id});
        if let Some(a) = r.agent_id {
            filters["agent_id"] = json!(a);
        }
        if let Some(run) = r.run_id {
            filters["run_id"] = json!(run);
        }
        let query: String = r.content.chars().take(RECONCILE_QUERY_CHARS).collect();
        let found = self.search_raw(&query, filters, RECONCILE_TOP_K).await?;
        let ids: Vec<String> = found
            .into_iter()
            .filter(|m| m.metadata.get("mq_id").and_then(Value::as_str) == Some(r.mq_id))
            .map(|m| m.id)
            .collect();
        Ok(if ids.is_empty() { None } else { Some(ids) })
    }

    /// Searches the memories of a project.
    pub async fn search(
        &self,
        query: &str,
        project: &str,
        top_k: u32,
    ) -> Result<Vec<RemoteMemory>, Failure> {
        self.search_raw(query, json!({"user_id": project}), top_k)
            .await
    }

    async fn search_raw(
        &self,
        query: &str,
        filters: Value,
        top_k: u32,
    ) -> Result<Vec<RemoteMemory>, Failure> {
        let (path, body) = match self.kind {
            ApiKind::Oss => (
                "/search",
                json!({"query": query, "filters": filters, "top_k": top_k, "threshold": 0.0}),
            ),
            ApiKind::Platform => (
                "/v3/memories/search/",
                json!({"query": query, "filters": filters, "top_k": top_k}),
            ),
        };
        let resp = self
            .request(reqwest::Method::POST, path)
            .timeout(self.search_timeout)
            .json(&body)
            .send()
            .await
            .map_err(classify_send_error)?;
        let body = read_success(resp).await?;
        let items = match &body {
            Value::Array(a) => a.clone(),
            other => other
                .get("results")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        };
        Ok(items
            .into_iter()
            .filter_map(|m| {
                Some(RemoteMemory {
                    id: m.get("id")?.as_str()?.to_string(),
                    memory: m
                        .get("memory")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    score: m.get("score").and_then(Value::as_f64),
                    metadata: m.get("metadata").cloned().unwrap_or(Value::Null),
                })
            })
            .collect())
    }

    /// A cheap authenticated request, bounded by [`PROBE_TIMEOUT`].
    pub async fn probe(&self) -> Reachability {
        let path = match self.kind {
            ApiKind::Oss => "/configure/providers",
            ApiKind::Platform => "/v1/ping/",
        };
        let sent = self
            .request(reqwest::Method::GET, path)
            .timeout(PROBE_TIMEOUT)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Reachability::Reachable,
            Ok(r) if matches!(r.status().as_u16(), 401 | 403) => Reachability::AuthRejected {
                http_status: r.status().as_u16(),
            },
            // An OSS server from before the providers route: /docs answers
            // without auth and proves the server is up.
            Ok(r) if r.status() == StatusCode::NOT_FOUND && self.kind == ApiKind::Oss => match self
                .request(reqwest::Method::GET, "/docs")
                .timeout(PROBE_TIMEOUT)
                .send()
                .await
            {
                Ok(d) if d.status().is_success() => Reachability::Reachable,
                Ok(d) => Reachability::Unreachable {
                    error: format!("HTTP {}", d.status().as_u16()),
                },
                Err(e) => Reachability::Unreachable {
                    error: classify_send_error(e).describe(),
                },
            },
            Ok(r) => Reachability::Unreachable {
                error: format!("HTTP {}", r.status().as_u16()),
            },
            Err(e) => Reachability::Unreachable {
                error: classify_send_error(e).describe(),
            },
        }
    }
}

/// Reads a 2xx body as JSON, or classifies the status.
async fn read_success(resp: reqwest::Response) -> Result<Value, Failure> {
    let status = resp.status();
    if status.is_success() {
        let bytes = resp.bytes().await.map_err(|e| {
            // The server answered 2xx and the body broke: it has it.
            Failure::Unknown(format!("the response body broke: {}", error_kind(&e)))
        })?;
        return Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
    }
    let retry_after_ms = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let code = status.as_u16();
    // Only Mem0's short error code is kept from the body, never `detail`.
    let mem0_code = if code == 502 {
        resp.json::<Value>()
            .await
            .ok()
            .and_then(|b| b.get("code").and_then(Value::as_str).map(short_code))
    } else {
        None
    };
    Err(classify_status(code, retry_after_ms, mem0_code))
}

/// Classifies a non-2xx status per `mem0-api.md` §3.
pub fn classify_status(status: u16, retry_after_ms: Option<u64>, code: Option<String>) -> Failure {
    match status {
        401 | 403 => Failure::Permanent { status, auth: true },
        400 | 404 | 409 | 413 | 422 => Failure::Permanent {
            status,
            auth: false,
        },
        408 | 429 | 500..=599 => Failure::Http {
            status,
            retry_after_ms,
            code,
        },
        // Other 4xx: the request itself is wrong; retrying cannot help.
        400..=499 => Failure::Permanent {
            status,
            auth: false,
        },
        _ => Failure::Http {
            status,
            retry_after_ms,
            code,
        },
    }
}

fn short_code(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect()
}

/// Retry-After as seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<u64> {
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    let when = httpdate::parse_http_date(v.trim()).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

/// Classifies a reqwest error from `send()`.
pub fn classify_send_error(e: reqwest::Error) -> Failure {
    if e.is_connect() {
        if e.is_timeout() {
            Failure::TimeoutBeforeSend
        } else {
            Failure::Connect(error_kind(&e))
        }
    } else if e.is_builder() {
        // Nothing left the machine.
        Failure::Connect(error_kind(&e))
    } else {
        // A timeout after the connection was made, a reset mid-response, a
        // broken body: the server may have stored it.
        Failure::Unknown(error_kind(&e))
    }
}

/// The innermost cause of a reqwest error, without its URL.
fn error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut source: &dyn std::error::Error = e;
    while let Some(s) = source.source() {
        source = s;
    }
    crate::policy::truncate(&source.to_string(), 120)
}

fn result_ids(body: &Value) -> Vec<String> {
    let items = match body {
        Value::Array(a) => a.as_slice(),
        other => other
            .get("results")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]),
    };
    items
        .iter()
        .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_string))
        .collect()
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Unix ms as RFC 3339, for the OSS server's `metadata.created_at`.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_the_api_notes_say() {
        for s in [400, 404, 409, 413, 422] {
            assert_eq!(
                classify_status(s, None, None),
                Failure::Permanent {
                    status: s,
                    auth: false
                }
            );
        }
        for s in [401, 403] {
            assert_eq!(
                classify_status(s, None, None),
                Failure::Permanent {
                    status: s,
                    auth: true
                }
            );
        }
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify_status(s, None, None), Failure::Http { .. }),
                "{s}"
            );
        }
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after("30"), Some(30_000));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(0));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        let mut c = Config {
            api_url: Some("http://vps.example:8888".into()),
            ..Config::default()
        };
        assert!(matches!(
            Client::from_config(&c),
            Err(ClientError::InsecureHttp(_))
        ));
        c.allow_insecure_http = true;
        assert!(Client::from_config(&c).is_ok());
        for ok in [
            "http://127.0.0.1:8888",
            "http://localhost:1",
            "http://[::1]:2",
            "https://api.mem0.ai",
        ] {
            let c = Config {
                api_url: Some(ok.into()),
                ..Config::default()
            };
            assert!(Client::from_config(&c).is_ok(), "{ok}");
        }
    }

    #[test]
    fn add_bodies_follow_each_kind() {
        let mut c = Config {
            api_url: Some("http://127.0.0.1:1".into()),
            ..Config::default()
        };
        let meta = json!({"topic": "x", "mq_id": "spoofed"});
        let r = AddRequest {
            mq_id: "0190-id",
            project: "windsurf-project",
            agent_id: None,
            run_id: Some("r1"),
            content: "contenu",
            metadata: &meta,
            created_at: 1_700_000_000_123,
        };
        let oss = Client::from_config(&c).expect("client").add_body(&r);
        assert_eq!(oss["messages"][0]["content"], "contenu");
        assert_eq!(oss["user_id"], "windsurf-project");
        assert_eq!(oss["run_id"], "r1");
        assert!(oss.get("agent_id").is_none());
        assert_eq!(oss["metadata"]["mq_id"], "0190-id");
        assert_eq!(oss["metadata"]["topic"], "x");
        assert_eq!(oss["metadata"]["created_at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(oss["infer"], true);
        assert!(oss.get("timestamp").is_none());
        c.api_kind = ApiKind::Platform;
        c.infer = false;
        let p = Client::from_config(&c).expect("client").add_body(&r);
        assert_eq!(p["timestamp"], 1_700_000_000);
        assert_eq!(p["infer"], false);
    }
}
