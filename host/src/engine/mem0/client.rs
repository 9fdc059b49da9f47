//! The Mem0 HTTP client, for both kinds of server (`../shared/mem0-api.md`):
//! the self-hosted REST server (`oss`) and the hosted platform.
//!
//! Every answer goes through [`super::outcome`]: a 2xx counts only with the
//! body Mem0 gives for that call, a redirect is never followed, and each
//! failure is classified by what could have happened on the server. It
//! never logs the API key, and never keeps a server's error body.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};

use super::outcome::{
    Answer, Asked, ConfigProblem, Expect, Failure, classify_answer, classify_transport, error_kind,
};
use crate::engine::config::{ApiKind, Config};
use crate::engine::text::rfc3339;

/// How long a reachability probe may take: the status tool answers within
/// this even when the server hangs.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Candidates asked of a reconciliation search. The filter on `mq_id` should
/// leave one; a few more cover servers that ignore metadata filters.
const RECONCILE_TOP_K: u32 = 10;

/// How much of a memory's text a reconciliation search sends as its query.
/// The match is on `mq_id`; the query only has to be a valid one.
const RECONCILE_QUERY_CHARS: usize = 200;

/// The most of an answer's body that is read. A search of 1,000 memories
/// (the largest `top_k`) is well under this; a body cut here is not Mem0's
/// answer, and reading on would only cost memory.
const MAX_BODY_BYTES: usize = 16 << 20;

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
    #[error("ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
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
    /// Whether Mem0 infers facts from it; None: the client's (the config's).
    pub infer: Option<bool>,
}

/// What a probe found.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reachability {
    NotConfigured,
    Reachable,
    AuthRejected {
        http_status: u16,
    },
    /// Something answered that is not the Mem0 API as configured.
    Misconfigured {
        problem: ConfigProblem,
    },
    Unreachable {
        error: String,
    },
}

/// A remote memory from a search.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RemoteMemory {
    pub id: String,
    pub memory: String,
    pub score: Option<f64>,
    pub metadata: Value,
    /// As the server gives it (RFC 3339), when it does.
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub user_id: Option<String>,
    pub agent_id: Option<String>,
    pub run_id: Option<String>,
}

impl RemoteMemory {
    /// Reads a memory object of either API; None without an id.
    pub fn from_json(m: &Value) -> Option<RemoteMemory> {
        let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        Some(RemoteMemory {
            id: s("id")?,
            memory: s("memory").unwrap_or_default(),
            score: m.get("score").and_then(Value::as_f64),
            metadata: m.get("metadata").cloned().unwrap_or(Value::Null),
            created_at: s("created_at"),
            updated_at: s("updated_at"),
            user_id: s("user_id"),
            agent_id: s("agent_id"),
            // The platform calls a run a session.
            run_id: s("run_id").or_else(|| s("session_id")),
        })
    }

    /// The local id this memory was saved under, when mem0-queue saved it.
    pub fn mq_id(&self) -> Option<&str> {
        self.metadata.get("mq_id").and_then(Value::as_str)
    }
}

/// An entity the server knows: a user (a project), an agent or a run.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct RemoteEntity {
    /// "user", "agent", "run" (the platform also has "app").
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    /// How many memories it has, when the server says.
    pub memories: Option<u64>,
}

/// The most memories one listing reads from the server: the self-hosted
/// server's own `top_k` cap (it has no pagination).
pub const LIST_MAX: usize = 1_000;

/// The platform's largest page.
const PLATFORM_PAGE: usize = 200;

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
        let mut builder = reqwest::Client::builder()
            .connect_timeout(c.connect_timeout)
            .user_agent(concat!("mem0-queue/", env!("CARGO_PKG_VERSION")))
            // A redirected POST turns into a GET whose 2xx says nothing about
            // the memory: a 3xx is shown as a configuration problem instead.
            .redirect(reqwest::redirect::Policy::none())
            .use_rustls_tls();
        if let Some(ca) = &c.ca_file {
            for cert in read_ca_file(ca)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
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
            "infer": r.infer.unwrap_or(self.infer),
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

    /// Sends one request and classifies its answer: `Ok` holds Mem0's 2xx
    /// body, of the shape `expect` names.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
        expect: Expect,
    ) -> Result<Value, Failure> {
        let mut rb = self.request(method, path).timeout(timeout);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.map_err(|e| classify_transport(&e))?;
        let status = resp.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let location = header(reqwest::header::LOCATION);
        let retry_after = header(reqwest::header::RETRY_AFTER);
        let bytes = match read_body(resp).await {
            Ok(b) => b,
            // A 2xx whose body broke: the server may have it.
            Err(e) if (200..300).contains(&status) => {
                return Err(Failure::Unknown {
                    reason: format!("the response body broke: {}", error_kind(&e)),
                    silent: false,
                });
            }
            Err(_) => Vec::new(),
        };
        let path_only = path.split('?').next().unwrap_or(path);
        classify_answer(
            Asked {
                base: &self.base,
                path: path_only,
                expect,
            },
            Answer {
                status,
                content_type: content_type.as_deref(),
                location: location.as_deref(),
                retry_after: retry_after.as_deref(),
                body: &bytes,
            },
        )
    }

    /// Sends one add.
    pub async fn add(&self, r: &AddRequest<'_>) -> Result<AddResult, Failure> {
        let path = match self.kind {
            ApiKind::Oss => "/memories",
            ApiKind::Platform => "/v3/memories/add/",
        };
        let body = self
            .send(
                reqwest::Method::POST,
                path,
                Some(&self.add_body(r)),
                self.add_timeout,
                Expect::Add,
            )
            .await?;
        if body.get("results").is_none()
            && let Some(event_id) = body.get("event_id").and_then(Value::as_str)
        {
            return Ok(AddResult::Pending {
                event_id: event_id.to_string(),
            });
        }
        Ok(AddResult::Delivered(result_ids(&body)))
    }

    /// Polls a platform event once.
    pub async fn event(&self, event_id: &str) -> Result<EventState, Failure> {
        let body = self
            .send(
                reqwest::Method::GET,
                &format!("/v1/event/{event_id}/"),
                None,
                self.search_timeout,
                Expect::Event,
            )
            .await?;
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
        let mut filters = json!({"user_id": r.project});
        if let Some(a) = r.agent_id {
            filters["agent_id"] = json!(a);
        }
        if let Some(run) = r.run_id {
            filters["run_id"] = json!(run);
        }
        // The self-hosted server takes metadata keys flat in `filters` and
        // refuses a `metadata` object; the platform refuses an unknown flat
        // key and takes them under `metadata`.
        match self.kind {
            ApiKind::Oss => filters["mq_id"] = json!(r.mq_id),
            ApiKind::Platform => filters["metadata"] = json!({"mq_id": r.mq_id}),
        }
        let query: String = r.content.chars().take(RECONCILE_QUERY_CHARS).collect();
        // No similarity threshold: the match is on `mq_id`, and an inferred
        // memory may be worded far from the text that was sent.
        let found = self
            .search_raw(&query, filters, RECONCILE_TOP_K, Some(0.0))
            .await?;
        let ids: Vec<String> = found
            .into_iter()
            .filter(|m| m.metadata.get("mq_id").and_then(Value::as_str) == Some(r.mq_id))
            .map(|m| m.id)
            .collect();
        Ok(if ids.is_empty() { None } else { Some(ids) })
    }

    /// Searches the memories of a project, with Mem0's own default
    /// similarity threshold.
    pub async fn search(
        &self,
        query: &str,
        project: &str,
        top_k: u32,
    ) -> Result<Vec<RemoteMemory>, Failure> {
        self.search_raw(query, json!({"user_id": project}), top_k, None)
            .await
    }

    async fn search_raw(
        &self,
        query: &str,
        filters: Value,
        top_k: u32,
        threshold: Option<f64>,
    ) -> Result<Vec<RemoteMemory>, Failure> {
        let mut body = json!({"query": query, "filters": filters, "top_k": top_k});
        if let Some(t) = threshold {
            body["threshold"] = json!(t);
        }
        let path = match self.kind {
            ApiKind::Oss => "/search",
            ApiKind::Platform => "/v3/memories/search/",
        };
        let body = self
            .send(
                reqwest::Method::POST,
                path,
                Some(&body),
                self.search_timeout,
                Expect::Search,
            )
            .await?;
        let items = match &body {
            Value::Array(a) => a.clone(),
            other => other
                .get("results")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        };
        Ok(items.iter().filter_map(RemoteMemory::from_json).collect())
    }

    /// The path of one memory.
    fn memory_path(&self, id: &str) -> String {
        match self.kind {
            ApiKind::Oss => format!("/memories/{id}"),
            ApiKind::Platform => format!("/v1/memories/{id}/"),
        }
    }

    /// One memory by its Mem0 id; None when the server does not have it.
    pub async fn get(&self, id: &str) -> Result<Option<RemoteMemory>, Failure> {
        match self
            .send(
                reqwest::Method::GET,
                &self.memory_path(id),
                None,
                self.search_timeout,
                Expect::Memory,
            )
            .await
        {
            Ok(v) => Ok(RemoteMemory::from_json(&v)),
            Err(Failure::NotFound) => Ok(None),
            Err(f) => Err(f),
        }
    }

    /// Sets a memory's text and/or metadata. The self-hosted server merges
    /// the metadata it is given; the platform may replace it, so the caller
    /// sends the whole of it there.
    pub async fn update(
        &self,
        id: &str,
        text: Option<&str>,
        metadata: Option<&Value>,
    ) -> Result<(), Failure> {
        let mut body = serde_json::Map::new();
        if let Some(t) = text {
            body.insert("text".into(), json!(t));
        }
        if let Some(m) = metadata {
            body.insert("metadata".into(), m.clone());
        }
        self.send(
            reqwest::Method::PUT,
            &self.memory_path(id),
            Some(&Value::Object(body)),
            self.add_timeout,
            Expect::Change,
        )
        .await
        .map(|_| ())
    }

    /// Deletes one memory. `Err(Failure::NotFound)` when it is not there.
    pub async fn delete(&self, id: &str) -> Result<(), Failure> {
        self.send(
            reqwest::Method::DELETE,
            &self.memory_path(id),
            None,
            self.add_timeout,
            Expect::Change,
        )
        .await
        .map(|_| ())
    }

    /// Deletes every memory of a project (its `user_id`). Never with `*`:
    /// the caller validates the project as an id.
    pub async fn delete_all(&self, project: &str) -> Result<(), Failure> {
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("user_id", project)
            .finish();
        let path = match self.kind {
            ApiKind::Oss => format!("/memories?{q}"),
            ApiKind::Platform => format!("/v1/memories/?{q}"),
        };
        self.send(
            reqwest::Method::DELETE,
            &path,
            None,
            self.add_timeout,
            Expect::DeleteAll,
        )
        .await
        .map(|_| ())
    }

    /// The memories of a project (and agent, run), at most `limit` (capped
    /// at [`LIST_MAX`]), in the server's order.
    pub async fn list(
        &self,
        project: &str,
        agent_id: Option<&str>,
        run_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RemoteMemory>, Failure> {
        let limit = limit.clamp(1, LIST_MAX);
        let items = |v: &Value| -> Vec<RemoteMemory> {
            match v {
                Value::Array(a) => a.iter().filter_map(RemoteMemory::from_json).collect(),
                other => other
                    .get("results")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(RemoteMemory::from_json).collect())
                    .unwrap_or_default(),
            }
        };
        match self.kind {
            ApiKind::Oss => {
                let query = {
                    let mut q = url::form_urlencoded::Serializer::new(String::new());
                    q.append_pair("user_id", project);
                    if let Some(a) = agent_id {
                        q.append_pair("agent_id", a);
                    }
                    if let Some(r) = run_id {
                        q.append_pair("run_id", r);
                    }
                    q.append_pair("top_k", &limit.to_string());
                    q.finish()
                };
                let v = self
                    .send(
                        reqwest::Method::GET,
                        &format!("/memories?{query}"),
                        None,
                        self.search_timeout,
                        Expect::List,
                    )
                    .await?;
                Ok(items(&v))
            }
            ApiKind::Platform => {
                let mut and = vec![json!({"user_id": project})];
                if let Some(a) = agent_id {
                    and.push(json!({"agent_id": a}));
                }
                if let Some(r) = run_id {
                    and.push(json!({"run_id": r}));
                }
                let body = json!({"filters": {"AND": and}});
                let mut out = Vec::new();
                let mut page = 1;
                while out.len() < limit {
                    let size = PLATFORM_PAGE.min(limit - out.len());
                    let v = self
                        .send(
                            reqwest::Method::POST,
                            &format!("/v3/memories/?page={page}&page_size={size}"),
                            Some(&body),
                            self.search_timeout,
                            Expect::List,
                        )
                        .await?;
                    let got = items(&v);
                    let more = v.get("next").is_some_and(|n| !n.is_null()) && !got.is_empty();
                    out.extend(got);
                    if !more {
                        break;
                    }
                    page += 1;
                }
                out.truncate(limit);
                Ok(out)
            }
        }
    }

    /// The entities the server knows. An older self-hosted server has no
    /// entities route: its 404 is an empty answer, not an error.
    pub async fn entities(&self) -> Result<Vec<RemoteEntity>, Failure> {
        let path = match self.kind {
            ApiKind::Oss => "/entities",
            ApiKind::Platform => "/v1/entities/",
        };
        let v = match self
            .send(
                reqwest::Method::GET,
                path,
                None,
                self.search_timeout,
                Expect::AnyJson,
            )
            .await
        {
            Ok(v) => v,
            Err(Failure::Config(ConfigProblem::WrongRoute { mem0: true, .. }))
                if self.kind == ApiKind::Oss =>
            {
                return Ok(Vec::new());
            }
            Err(f) => return Err(f),
        };
        let list = match &v {
            Value::Array(a) => a.clone(),
            other => other
                .get("results")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        };
        Ok(list
            .iter()
            .filter_map(|e| {
                // The platform's `name` is the entity's own id; its `id` is
                // an internal number.
                let id = e.get("name").or_else(|| e.get("id")).and_then(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .or_else(|| Some(v.to_string()))
                })?;
                Some(RemoteEntity {
                    kind: e
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("user")
                        .to_string(),
                    id,
                    memories: e.get("total_memories").and_then(Value::as_u64),
                })
            })
            .collect())
    }

    /// A cheap authenticated request, bounded by [`PROBE_TIMEOUT`], judged
    /// by the same rules as a delivery: a redirect, a login page or a
    /// proxy's page is a configuration problem, not a server that answers.
    pub async fn probe(&self) -> Reachability {
        let path = match self.kind {
            ApiKind::Oss => "/configure/providers",
            ApiKind::Platform => "/v1/ping/",
        };
        let first = self
            .send(
                reqwest::Method::GET,
                path,
                None,
                PROBE_TIMEOUT,
                Expect::AnyJson,
            )
            .await;
        match first {
            // An OSS server from before the providers route answers FastAPI's
            // JSON 404 there, and its HTML /docs without auth.
            Err(Failure::Config(ConfigProblem::WrongRoute {
                status: 404,
                mem0: true,
                ..
            })) if self.kind == ApiKind::Oss => self.probe_docs().await,
            other => reachability(other),
        }
    }

    async fn probe_docs(&self) -> Reachability {
        match self
            .request(reqwest::Method::GET, "/docs")
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
        {
            Ok(d) if d.status().is_success() => Reachability::Reachable,
            Ok(_) => Reachability::Misconfigured {
                problem: ConfigProblem::WrongRoute {
                    status: 404,
                    path: "/configure/providers".into(),
                    mem0: true,
                },
            },
            Err(e) => reachability(Err(classify_transport(&e))),
        }
    }
}

fn reachability(r: Result<Value, Failure>) -> Reachability {
    match r {
        Ok(_) => Reachability::Reachable,
        Err(Failure::Config(ConfigProblem::AuthRejected { status })) => {
            Reachability::AuthRejected {
                http_status: status,
            }
        }
        Err(Failure::Config(problem)) => Reachability::Misconfigured { problem },
        Err(f) => Reachability::Unreachable {
            error: f.describe(),
        },
    }
}

/// Reads at most [`MAX_BODY_BYTES`] of a body.
async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        out.extend_from_slice(&chunk);
        if out.len() > MAX_BODY_BYTES {
            break;
        }
    }
    Ok(out)
}

/// The certificates of a PEM file, for a self-signed server.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, ClientError> {
    let err = |reason: String| ClientError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs)
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

/// The ids an add became: its ADD and UPDATE events (an UPDATE rewrote an
/// existing memory with this text). DELETE and NONE events name memories
/// this text did not become.
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
        .filter(|r| {
            !matches!(
                r.get("event").and_then(Value::as_str),
                Some("DELETE" | "NONE")
            )
        })
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

#[cfg(test)]
mod tests {
    use super::*;

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
            infer: None,
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
        // An entry's own `infer` (a captured session) wins over the config's.
        let captured = AddRequest {
            infer: Some(true),
            ..r
        };
        let p = Client::from_config(&c).expect("client").add_body(&captured);
        assert_eq!(p["infer"], true);
    }
}
