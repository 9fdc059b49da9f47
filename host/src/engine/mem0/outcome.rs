//! What one request's result says about the Mem0 server, classified by what
//! could have happened there, not by the status code alone.
//!
//! A user's Mem0 is rarely reached directly: nginx or Caddy sit in front
//! (TLS, a 60 s read timeout, `http → https` redirects), sometimes a login
//! gate (Cloudflare Access, oauth2-proxy), sometimes the URL is wrong. So an
//! answer may come from something that is not Mem0, and a failure may come
//! after Mem0 stored the memory. For every result this module asks two
//! questions: could the server have stored it, and did Mem0 itself answer?
//!
//! | result | class |
//! |---|---|
//! | 2xx with the body Mem0 gives for that call | delivered (the caller reads it) |
//! | 2xx with any other body (HTML, empty, JSON of another shape) | configuration problem; may have been stored, so it is reconciled |
//! | 3xx (never followed) | configuration problem, not stored |
//! | 401, 403 with Mem0's JSON error | configuration problem (the key), not stored |
//! | 404, 405 | configuration problem (wrong URL or API kind), not stored |
//! | 400, 409, 422 with Mem0's JSON error; 413 | the entry itself is rejected (permanent) |
//! | any other 4xx without Mem0's JSON error | configuration problem (a proxy or gate answered) |
//! | 429 | retryable, not stored |
//! | 500, 502, 503 with Mem0's JSON error | retryable, not stored |
//! | 502, 503, 504 with any other body (a gateway's page) | unknown: may have been stored; counts for the breaker |
//! | 500 with any other body; 408; other 5xx | unknown: may have been stored |
//! | connect refused, DNS | not sent (counts for the breaker) |
//! | connect timeout | not sent (counts for the breaker) |
//! | TLS: certificate not trusted, handshake failure | configuration problem, not sent |
//! | sent, then timeout | unknown, and no answer (counts for the breaker) |
//! | sent, then reset or a broken body | unknown |
//!
//! A server's error body is read only to tell Mem0's JSON from something
//! else, and for Mem0's short 502 `code`; it is never kept or logged (a
//! 500's `detail` can echo the memory's text).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest `Location` kept in a configuration problem: enough for a
/// login page's URL with its return address, short enough for an alert.
const MAX_LOCATION: usize = 300;

/// Why one request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The connection could not be made (refused, DNS): nothing was sent.
    Connect(String),
    /// The connect timed out: nothing was sent.
    TimeoutBeforeSend,
    /// Sent, and the result does not say whether Mem0 stored it. `silent`
    /// when nothing shows the server is up: no answer in time (a hung
    /// server, a tarpit) or a gateway's 502/503/504 page. The breaker counts
    /// a silent one like a refused connection.
    Unknown { reason: String, silent: bool },
    /// A retryable answer from which nothing was stored: 429, or Mem0's own
    /// error for a 500, 502, 503.
    Http {
        status: u16,
        retry_after_ms: Option<u64>,
        code: Option<String>,
    },
    /// Mem0 rejected this request itself; a retry cannot fix it.
    Permanent { status: u16 },
    /// Mem0 says the memory named in the path does not exist (its own 404
    /// for a memory id, not a route's 404).
    NotFound,
    /// What answered is not the Mem0 API as configured. Nothing about this
    /// entry is wrong: it waits, uncharged, until the configuration is fixed.
    Config(ConfigProblem),
}

impl Failure {
    /// A short description for logs and `last_error`; never a body.
    pub fn describe(&self) -> String {
        match self {
            Failure::Connect(e) => format!("connect error: {e}"),
            Failure::TimeoutBeforeSend => "connect timeout (not sent)".into(),
            Failure::Unknown { reason, .. } => format!("outcome unknown: {reason}"),
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
            Failure::Permanent { status } => format!("HTTP {status} rejected"),
            Failure::NotFound => "HTTP 404: the memory does not exist on the server".into(),
            Failure::Config(p) => format!("configuration: {}", p.describe()),
        }
    }

    /// The outcome as the policy contract speaks it; None for a
    /// configuration problem, which the policy is never asked about.
    pub fn to_outcome(&self) -> Option<crate::engine::policy::Outcome> {
        use crate::engine::policy::{HttpFailure, Outcome, Rejection};
        Some(match self {
            Failure::Connect(_) => Outcome::ConnectError,
            Failure::TimeoutBeforeSend => Outcome::TimeoutBeforeSend,
            Failure::Unknown { .. } => Outcome::Unknown,
            Failure::Http {
                status,
                retry_after_ms,
                code,
            } => Outcome::Http(HttpFailure {
                status: *status,
                retry_after_ms: *retry_after_ms,
                code: code.clone(),
            }),
            Failure::Permanent { status } => Outcome::Permanent(Rejection {
                status: *status,
                auth: false,
            }),
            Failure::NotFound => Outcome::Permanent(Rejection {
                status: 404,
                auth: false,
            }),
            Failure::Config(_) => return None,
        })
    }

    /// True when the request may have reached the server's store.
    pub fn maybe_stored(&self) -> bool {
        match self {
            Failure::Unknown { .. } => true,
            Failure::Config(p) => p.maybe_stored(),
            _ => false,
        }
    }

    /// True for what the run breaker counts: nothing answered, whether the
    /// request was sent or not.
    pub fn is_no_answer(&self) -> bool {
        matches!(
            self,
            Failure::Connect(_)
                | Failure::TimeoutBeforeSend
                | Failure::Unknown { silent: true, .. }
        )
    }

    /// True when Mem0 itself answered (its own error JSON).
    pub fn mem0_answered(&self) -> bool {
        matches!(
            self,
            Failure::Http { .. } | Failure::Permanent { .. } | Failure::NotFound
        )
    }

    /// A short class name for the worker log.
    pub fn class(&self) -> &'static str {
        match self {
            Failure::Connect(_) => "connect",
            Failure::TimeoutBeforeSend => "timeout_before_send",
            Failure::Unknown { silent: true, .. } => "no_answer",
            Failure::Unknown { .. } => "unknown",
            Failure::Http { .. } => "retryable_http",
            Failure::Permanent { .. } => "permanent",
            Failure::NotFound => "not_found",
            Failure::Config(_) => "configuration",
        }
    }
}

/// A configuration problem: the request reached something that is not the
/// Mem0 API as configured (a redirect, a login page, a proxy's page, a wrong
/// route), the key was refused, or TLS failed. Entries wait for the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ConfigProblem {
    /// A 3xx. mem0-queue never follows one: a redirected POST becomes a GET
    /// and its 2xx says nothing about the memory.
    Redirect {
        status: u16,
        /// The absolute `Location`, when the answer had one.
        location: Option<String>,
        /// When the redirect only moves the base (`http://` → `https://`,
        /// another host), the `api_url` to use instead.
        suggested_api_url: Option<String>,
    },
    /// Not Mem0's answer: an HTML page, an empty body, JSON of another
    /// shape, or a proxy's own error page.
    NotMem0 {
        status: u16,
        /// What came back, in words: "an HTML page", "an empty body"...
        what: String,
    },
    /// 404 or 405 on a route Mem0 has: a wrong path prefix in `api_url`, or
    /// the wrong `api_kind`.
    WrongRoute {
        status: u16,
        /// The path that was asked for (no query).
        path: String,
        /// True when the answer was Mem0's (FastAPI's) JSON, not a proxy's page.
        mem0: bool,
    },
    /// 401 or 403 with Mem0's JSON error: the key is wrong or lacks rights.
    AuthRejected { status: u16 },
    /// TLS failed before anything was sent.
    Tls {
        /// True for an untrusted certificate (a self-signed one: `ca_file`).
        untrusted: bool,
        detail: String,
    },
}

impl ConfigProblem {
    /// The alert code.
    pub fn code(&self) -> &'static str {
        match self {
            ConfigProblem::Redirect { .. } => "config-redirect",
            ConfigProblem::NotMem0 { .. } => "config-not-mem0",
            ConfigProblem::WrongRoute { .. } => "config-wrong-url",
            ConfigProblem::AuthRejected { .. } => "auth-rejected",
            ConfigProblem::Tls { .. } => "config-tls",
        }
    }

    /// One line: what came back.
    pub fn describe(&self) -> String {
        match self {
            ConfigProblem::Redirect {
                status, location, ..
            } => format!(
                "HTTP {status} redirect to {} (never followed)",
                location.as_deref().unwrap_or("(no Location)")
            ),
            ConfigProblem::NotMem0 { status, what } => {
                format!("HTTP {status} with {what}, not Mem0's answer")
            }
            ConfigProblem::WrongRoute { status, path, mem0 } => format!(
                "HTTP {status} for {path}{}",
                if *mem0 {
                    " from the server"
                } else {
                    ", not from Mem0 (a proxy's or another server's page)"
                }
            ),
            ConfigProblem::AuthRejected { status } => {
                format!("HTTP {status}: the server rejected the API key")
            }
            ConfigProblem::Tls { untrusted, detail } => {
                if *untrusted {
                    format!("the server's TLS certificate is not trusted ({detail})")
                } else {
                    format!("TLS failed ({detail})")
                }
            }
        }
    }

    /// True when the request may have been stored although the answer was
    /// not Mem0's: a 2xx from something we cannot identify. The entry is
    /// reconciled before it is sent again.
    pub fn maybe_stored(&self) -> bool {
        matches!(self, ConfigProblem::NotMem0 { status, .. } if (200..300).contains(status))
    }

    /// What to do, one step per item, for the configured `api_url`.
    pub fn fix(&self, api_url: &str) -> Vec<String> {
        match self {
            ConfigProblem::Redirect {
                suggested_api_url: Some(url),
                ..
            } => vec![
                format!("set api_url = \"{url}\" in the config file (it is now {api_url})"),
                "mem0-queue doctor".into(),
                "mem0-queue sync".into(),
            ],
            ConfigProblem::Redirect { location, .. } => vec![
                format!(
                    "{api_url} sends requests to {}, which looks like a login page (an SSO gate such as Cloudflare Access or oauth2-proxy): let the API through the gate without a browser login, or point api_url at the server itself",
                    location.as_deref().unwrap_or("another page")
                ),
                "mem0-queue doctor".into(),
                "mem0-queue sync".into(),
            ],
            ConfigProblem::NotMem0 { .. } => vec![
                format!(
                    "open {api_url} in a browser: a login page or another application answers there, not the Mem0 API; set api_url to the Mem0 server itself (for a gate, let the API path through without a browser login)"
                ),
                "mem0-queue doctor".into(),
                "mem0-queue sync".into(),
            ],
            ConfigProblem::WrongRoute { path, .. } => vec![
                format!(
                    "{api_url} has no Mem0 route {path}: check api_url's path prefix (the self-hosted server has no /v1 and no /api prefix; the platform is https://api.mem0.ai) and api_kind (oss for the self-hosted server, platform for api.mem0.ai)"
                ),
                "mem0-queue doctor (it tries the other kind and the bare host)".into(),
                "mem0-queue sync".into(),
            ],
            ConfigProblem::AuthRejected { .. } => vec![
                "check api_key in the config file (and api_kind: oss or platform) against the server".into(),
                "mem0-queue doctor".into(),
                "mem0-queue sync".into(),
            ],
            ConfigProblem::Tls {
                untrusted: true, ..
            } => vec![
                "if the server uses a self-signed certificate, set ca_file = \"/path/to/its-ca.pem\" in the config file; otherwise renew the server's certificate".into(),
                "mem0-queue doctor".into(),
                "mem0-queue sync".into(),
            ],
            ConfigProblem::Tls { .. } => vec![
                format!(
                    "check that {api_url} really speaks https on that port (an http-only port answers https with garbage)"
                ),
                "mem0-queue doctor".into(),
            ],
        }
    }
}

/// What a 2xx body must hold for a call to count as answered by Mem0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// An add: `{"results": [{"id", "event"}...]}` (possibly empty), or the
    /// platform's `{"event_id", "status"}`.
    Add,
    /// A platform event: `{"status": PENDING|RUNNING|SUCCEEDED|FAILED}`.
    Event,
    /// A search: `{"results": [{"id"}...]}` or a bare list of such.
    Search,
    /// A probe: any JSON value.
    AnyJson,
    /// One memory by id: a memory object, or the self-hosted server's
    /// `null` for a missing one.
    Memory,
    /// An update or a delete of one memory: Mem0's `{"message"}`, or the
    /// platform's updated memory object.
    Change,
    /// A delete-all: `{"message"}` (the platform adds an `event_id`).
    DeleteAll,
    /// A listing: `{"results": [...]}`, the platform's page of them, or a
    /// bare list.
    List,
}

impl Expect {
    /// The calls whose path names one memory: there, Mem0's own 404 means
    /// the memory does not exist.
    fn names_a_memory(self) -> bool {
        matches!(self, Expect::Memory | Expect::Change)
    }
}

/// One request, for the classification of its answer.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// The configured base URL, without a trailing slash.
    pub base: &'a str,
    /// The path asked for, without the query.
    pub path: &'a str,
    pub expect: Expect,
}

/// An answer as received.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub location: Option<&'a str>,
    pub retry_after: Option<&'a str>,
    pub body: &'a [u8],
}

/// What a body is, as far as telling Mem0 from anything else goes.
enum Body {
    Json(Value),
    Html,
    Empty,
    Other,
}

fn body_kind(content_type: Option<&str>, bytes: &[u8]) -> Body {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Body::Empty;
    }
    let html_type = content_type.is_some_and(|t| t.to_ascii_lowercase().contains("html"));
    if html_type || trimmed.starts_with('<') {
        return Body::Html;
    }
    match serde_json::from_slice(bytes) {
        Ok(v) => Body::Json(v),
        Err(_) => Body::Other,
    }
}

/// True for the error JSON of Mem0's servers: FastAPI's `{"detail": ...}`
/// (the self-hosted server), Django REST's `{"detail"}` or `{"error"}` /
/// `{"message"}` (the platform).
fn is_mem0_error(v: &Value) -> bool {
    v.as_object().is_some_and(|o| {
        ["detail", "error", "message"]
            .iter()
            .any(|k| o.contains_key(*k))
    })
}

fn what(b: &Body) -> &'static str {
    match b {
        Body::Json(_) => "JSON that is not Mem0's answer to this call",
        Body::Html => "an HTML page (a login page or a proxy's page)",
        Body::Empty => "an empty body",
        Body::Other => "a body that is not JSON",
    }
}

/// Whether a 2xx JSON body has the shape Mem0 gives for this call.
pub fn shape_ok(expect: Expect, v: &Value) -> bool {
    let items_with = |items: &[Value], key: &str| {
        items.iter().all(|r| {
            r.get("id").and_then(Value::as_str).is_some()
                && (key.is_empty() || r.get(key).and_then(Value::as_str).is_some())
        })
    };
    let results = |v: &Value| v.get("results").and_then(Value::as_array).cloned();
    match expect {
        Expect::Add => {
            if let Some(items) = results(v) {
                return items_with(&items, "event");
            }
            v.get("event_id").and_then(Value::as_str).is_some()
                && v.get("status").and_then(Value::as_str).is_some()
        }
        Expect::Event => matches!(
            v.get("status").and_then(Value::as_str),
            Some("PENDING" | "RUNNING" | "SUCCEEDED" | "FAILED")
        ),
        Expect::Search => match v {
            Value::Array(items) => items_with(items, ""),
            _ => results(v).is_some_and(|items| items_with(&items, "")),
        },
        Expect::AnyJson => true,
        Expect::Memory => v.is_null() || v.get("id").and_then(Value::as_str).is_some(),
        Expect::Change => {
            v.get("message").and_then(Value::as_str).is_some()
                || v.get("id").and_then(Value::as_str).is_some()
        }
        Expect::DeleteAll => v.get("message").and_then(Value::as_str).is_some(),
        Expect::List => match v {
            Value::Array(items) => items_with(items, ""),
            _ => results(v).is_some_and(|items| items_with(&items, "")),
        },
    }
}

/// Mem0's own "this memory does not exist" (the self-hosted server's
/// "Memory with id ... not found", the platform's "Memory not found!"), as
/// opposed to a route's 404 (FastAPI's bare "Not Found").
fn is_memory_not_found(v: &Value) -> bool {
    ["detail", "error", "message"].iter().any(|k| {
        v.get(*k)
            .and_then(Value::as_str)
            .is_some_and(|t| t != "Not Found" && t.to_ascii_lowercase().contains("not found"))
    })
}

/// Classifies an answer. `Ok` holds Mem0's 2xx body, of the expected shape.
pub fn classify_answer(asked: Asked<'_>, a: Answer<'_>) -> Result<Value, Failure> {
    let body = body_kind(a.content_type, a.body);
    let mem0_error = matches!(&body, Body::Json(v) if is_mem0_error(v));
    let not_mem0 = |status: u16, body: &Body| {
        Failure::Config(ConfigProblem::NotMem0 {
            status,
            what: what(body).into(),
        })
    };
    let status = a.status;
    match status {
        200..=299 => match body {
            Body::Json(v) if shape_ok(asked.expect, &v) => Ok(v),
            other => Err(not_mem0(status, &other)),
        },
        300..=399 => {
            let location = a.location.map(|l| resolve(asked, l));
            let suggested_api_url = location.as_deref().and_then(|l| suggest_base(asked, l));
            Err(Failure::Config(ConfigProblem::Redirect {
                status,
                location: location.map(|l| crate::engine::text::truncate(&l, MAX_LOCATION)),
                suggested_api_url,
            }))
        }
        // A delete-all on the self-hosted server needs an admin key: Mem0
        // refuses this call, not the key (which still adds).
        403 if mem0_error && asked.expect == Expect::DeleteAll => {
            Err(Failure::Permanent { status })
        }
        401 | 403 if mem0_error => Err(Failure::Config(ConfigProblem::AuthRejected { status })),
        404 if asked.expect.names_a_memory()
            && matches!(&body, Body::Json(v) if is_memory_not_found(v)) =>
        {
            Err(Failure::NotFound)
        }
        404 | 405 => Err(Failure::Config(ConfigProblem::WrongRoute {
            status,
            path: crate::engine::text::truncate(asked.path, 200),
            mem0: matches!(body, Body::Json(_)),
        })),
        408 => Err(Failure::Unknown {
            reason: "HTTP 408".into(),
            silent: false,
        }),
        429 => Err(Failure::Http {
            status,
            retry_after_ms: a.retry_after.and_then(super::parse_retry_after),
            code: None,
        }),
        // A proxy's size limit (nginx's client_max_body_size) refuses this
        // entry and no other: it is the entry's rejection, whoever answered.
        413 => Err(Failure::Permanent { status }),
        400..=499 if mem0_error => Err(Failure::Permanent { status }),
        400..=499 => Err(not_mem0(status, &body)),
        500 | 502 | 503 if mem0_error => {
            let code = match &body {
                Body::Json(v) if status == 502 => {
                    v.get("code").and_then(Value::as_str).map(short_code)
                }
                _ => None,
            };
            Err(Failure::Http {
                status,
                retry_after_ms: a.retry_after.and_then(super::parse_retry_after),
                code,
            })
        }
        // A gateway's page: the server behind it did not answer in time, or
        // dropped the request midway (it may have stored it).
        502..=504 => Err(Failure::Unknown {
            reason: format!("HTTP {status} from a gateway, with {}", what(&body)),
            silent: true,
        }),
        _ => Err(Failure::Unknown {
            reason: format!("HTTP {status} with {}", what(&body)),
            silent: false,
        }),
    }
}

fn short_code(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect()
}

/// The `Location` as an absolute URL (it may be relative to the request).
fn resolve(asked: Asked<'_>, location: &str) -> String {
    let request = format!("{}{}", asked.base, asked.path);
    match url::Url::parse(&request).and_then(|r| r.join(location)) {
        Ok(u) => u.to_string(),
        Err(_) => location.to_string(),
    }
}

/// The base URL a redirect moves to, when it keeps the request's path (a
/// scheme or host change, or a path prefix): `https://h/memories` for a
/// request of `/memories` suggests `https://h`.
fn suggest_base(asked: Asked<'_>, location: &str) -> Option<String> {
    let u = url::Url::parse(location).ok()?;
    let path = u.path();
    let base_path = path.strip_suffix(asked.path)?;
    let mut base = format!("{}://{}", u.scheme(), u.host_str()?);
    if let Some(port) = u.port() {
        base.push_str(&format!(":{port}"));
    }
    base.push_str(base_path.trim_end_matches('/'));
    (base != asked.base).then_some(base)
}

/// Classifies a transport error: nothing answered.
pub fn classify_transport(e: &reqwest::Error) -> Failure {
    if let Some(tls) = tls_problem(e) {
        return Failure::Config(tls);
    }
    if e.is_connect() {
        if e.is_timeout() {
            Failure::TimeoutBeforeSend
        } else {
            Failure::Connect(error_kind(e))
        }
    } else if e.is_builder() {
        // Nothing left the machine.
        Failure::Connect(error_kind(e))
    } else if e.is_timeout() {
        Failure::Unknown {
            reason: "sent, and no answer in time".into(),
            silent: true,
        }
    } else {
        // A reset mid-response, a broken body: the server may have it.
        Failure::Unknown {
            reason: error_kind(e),
            silent: false,
        }
    }
}

/// Every error in a chain, looking inside `io::Error`s (whose `source()`
/// skips the error they wrap).
fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(e);
    while let Some(cur) = next {
        if out.len() > 16 {
            break;
        }
        out.push(cur);
        next = match cur.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => cur.source(),
        };
    }
    out
}

/// A TLS failure in a transport error, if it is one.
fn tls_problem(e: &reqwest::Error) -> Option<ConfigProblem> {
    for cause in chain(e) {
        if let Some(t) = cause.downcast_ref::<rustls::Error>() {
            let untrusted = matches!(
                t,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            );
            return Some(ConfigProblem::Tls {
                untrusted,
                detail: crate::engine::text::truncate(&t.to_string(), 160),
            });
        }
    }
    None
}

/// The innermost cause of a reqwest error, without its URL.
pub fn error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let last = chain(e).last().map(|c| c.to_string()).unwrap_or_default();
    crate::engine::text::truncate(&last, 120)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "http://vps.example:8888";

    fn asked(expect: Expect) -> Asked<'static> {
        Asked {
            base: BASE,
            path: "/memories",
            expect,
        }
    }

    fn answer(status: u16, ct: Option<&'static str>, body: &'static str) -> Answer<'static> {
        Answer {
            status,
            content_type: ct,
            location: None,
            retry_after: None,
            body: body.as_bytes(),
        }
    }

    const JSON: Option<&str> = Some("application/json");
    const HTML: Option<&str> = Some("text/html");
    const NGINX_504: &str = "<html>\r\n<head><title>504 Gateway Time-out</title></head></html>";

    #[test]
    fn an_add_counts_only_with_mem0s_shape() {
        let ok = r#"{"results":[{"id":"m1","memory":"x","event":"ADD"}]}"#;
        assert!(classify_answer(asked(Expect::Add), answer(200, JSON, ok)).is_ok());
        let empty = r#"{"results":[]}"#;
        assert!(classify_answer(asked(Expect::Add), answer(200, JSON, empty)).is_ok());
        let event = r#"{"event_id":"e1","status":"PENDING"}"#;
        assert!(classify_answer(asked(Expect::Add), answer(200, JSON, event)).is_ok());
        // A list page: memories without an add event.
        let list = r#"{"results":[{"id":"m1","memory":"x","hash":"h"}]}"#;
        for (ct, body) in [
            (JSON, list),
            (HTML, "<html><body>Sign in</body></html>"),
            (None, ""),
            (JSON, r#"{"status":"ok","items":[{"id":"x"}]}"#),
            (Some("text/plain"), "OK"),
        ] {
            let f =
                classify_answer(asked(Expect::Add), answer(200, ct, body)).expect_err("a failure");
            assert!(
                matches!(
                    &f,
                    Failure::Config(ConfigProblem::NotMem0 { status: 200, .. })
                ),
                "{body}: {f:?}"
            );
            assert!(
                f.maybe_stored(),
                "a 2xx from an unknown answerer is reconciled"
            );
        }
    }

    #[test]
    fn gateway_answers_are_unknown_outcomes() {
        let f = classify_answer(asked(Expect::Add), answer(504, HTML, NGINX_504))
            .expect_err("a failure");
        assert!(f.maybe_stored() && f.is_no_answer(), "{f:?}");
        for s in [502, 503] {
            let f = classify_answer(asked(Expect::Add), answer(s, HTML, "<html>bad</html>"))
                .expect_err("a failure");
            assert!(f.maybe_stored() && f.is_no_answer(), "{s}: {f:?}");
        }
        // uvicorn's own 500 (plain text) or a 500 page: the server itself
        // answered, and may have stored the memory first.
        for (ct, body) in [
            (Some("text/plain"), "Internal Server Error"),
            (HTML, "<html>bad</html>"),
        ] {
            let f =
                classify_answer(asked(Expect::Add), answer(500, ct, body)).expect_err("a failure");
            assert!(f.maybe_stored() && !f.is_no_answer(), "{f:?}");
        }
        let f = classify_answer(asked(Expect::Add), answer(408, None, "")).expect_err("a failure");
        assert!(f.maybe_stored());
    }

    #[test]
    fn mem0s_own_errors_are_retryable_and_not_stored() {
        let f = classify_answer(
            asked(Expect::Add),
            answer(
                502,
                JSON,
                r#"{"detail":"x","code":"provider_timeout","request_id":"r"}"#,
            ),
        )
        .expect_err("a failure");
        assert_eq!(
            f,
            Failure::Http {
                status: 502,
                retry_after_ms: None,
                code: Some("provider_timeout".into())
            }
        );
        assert!(!f.maybe_stored());
        for s in [500, 503] {
            let f = classify_answer(asked(Expect::Add), answer(s, JSON, r#"{"detail":"boom"}"#))
                .expect_err("a failure");
            assert!(matches!(f, Failure::Http { .. }), "{s}");
        }
        let mut a = answer(429, HTML, "<html>slow down</html>");
        a.retry_after = Some("7");
        assert_eq!(
            classify_answer(asked(Expect::Add), a).expect_err("a failure"),
            Failure::Http {
                status: 429,
                retry_after_ms: Some(7_000),
                code: None
            }
        );
    }

    #[test]
    fn only_mem0s_rejection_of_the_entry_is_permanent() {
        for s in [400, 409, 422] {
            let f = classify_answer(asked(Expect::Add), answer(s, JSON, r#"{"detail":[]}"#))
                .expect_err("a failure");
            assert_eq!(f, Failure::Permanent { status: s });
        }
        assert_eq!(
            classify_answer(
                asked(Expect::Add),
                answer(413, HTML, "<html>too large</html>")
            )
            .expect_err("a failure"),
            Failure::Permanent { status: 413 }
        );
        // nginx's "plain HTTP request was sent to HTTPS port".
        let f = classify_answer(asked(Expect::Add), answer(400, HTML, "<html>400</html>"))
            .expect_err("a failure");
        assert!(matches!(f, Failure::Config(ConfigProblem::NotMem0 { .. })));
    }

    #[test]
    fn wrong_urls_keys_and_redirects_are_configuration_problems() {
        for (s, ct, body) in [
            (404, JSON, r#"{"detail":"Not Found"}"#),
            (404, HTML, "<html>404 Not Found</html>"),
            (405, JSON, r#"{"detail":"Method Not Allowed"}"#),
        ] {
            let f =
                classify_answer(asked(Expect::Add), answer(s, ct, body)).expect_err("a failure");
            assert!(
                matches!(&f, Failure::Config(ConfigProblem::WrongRoute { .. })),
                "{f:?}"
            );
            assert!(!f.maybe_stored());
        }
        let f = classify_answer(
            asked(Expect::Add),
            answer(401, JSON, r#"{"detail":"Invalid API key"}"#),
        )
        .expect_err("a failure");
        assert_eq!(
            f,
            Failure::Config(ConfigProblem::AuthRejected { status: 401 })
        );
        let mut a = answer(301, HTML, "<html>moved</html>");
        a.location = Some("https://vps.example/memories");
        let Failure::Config(p @ ConfigProblem::Redirect { .. }) =
            classify_answer(asked(Expect::Add), a).expect_err("a failure")
        else {
            panic!("a redirect");
        };
        assert_eq!(
            p,
            ConfigProblem::Redirect {
                status: 301,
                location: Some("https://vps.example/memories".into()),
                suggested_api_url: Some("https://vps.example".into()),
            }
        );
        assert!(p.fix(BASE)[0].contains("api_url = \"https://vps.example\""));
        let mut a = answer(302, None, "");
        a.location = Some("/oauth2/start?rd=%2Fmemories");
        let Failure::Config(ConfigProblem::Redirect {
            location,
            suggested_api_url,
            ..
        }) = classify_answer(asked(Expect::Add), a).expect_err("a failure")
        else {
            panic!("a redirect");
        };
        assert_eq!(
            location.as_deref(),
            Some("http://vps.example:8888/oauth2/start?rd=%2Fmemories")
        );
        assert_eq!(suggested_api_url, None, "a login page is no new base");
    }

    #[test]
    fn a_missing_memory_is_told_from_a_missing_route() {
        let on = |expect| Asked {
            base: BASE,
            path: "/memories/0190c0de-0000-7000-8000-000000000001",
            expect,
        };
        for body in [
            r#"{"detail":"Memory with id 0190 not found. Please provide a valid 'memory_id'"}"#,
            r#"{"error":"Memory not found!"}"#,
        ] {
            for e in [Expect::Memory, Expect::Change] {
                assert_eq!(
                    classify_answer(on(e), answer(404, JSON, body)).expect_err("404"),
                    Failure::NotFound
                );
            }
        }
        // FastAPI's route 404 and a proxy's page are a wrong URL.
        for (ct, body) in [
            (JSON, r#"{"detail":"Not Found"}"#),
            (HTML, "<html>404</html>"),
        ] {
            assert!(matches!(
                classify_answer(on(Expect::Change), answer(404, ct, body)).expect_err("404"),
                Failure::Config(ConfigProblem::WrongRoute { .. })
            ));
        }
        // The self-hosted get of a missing memory is 200 null.
        assert!(classify_answer(on(Expect::Memory), answer(200, JSON, "null")).is_ok());
        let del = classify_answer(
            on(Expect::DeleteAll),
            answer(403, JSON, r#"{"detail":"Admin role required."}"#),
        );
        assert_eq!(del.expect_err("403"), Failure::Permanent { status: 403 });
        assert!(
            classify_answer(
                on(Expect::Change),
                answer(200, JSON, r#"{"message":"Memory updated successfully!"}"#)
            )
            .is_ok()
        );
        assert!(classify_answer(on(Expect::Change), answer(200, HTML, "<p>ok</p>")).is_err());
    }

    #[test]
    fn searches_and_events_need_their_shapes() {
        let s = r#"{"results":[{"id":"m","memory":"x","score":0.3}]}"#;
        assert!(classify_answer(asked(Expect::Search), answer(200, JSON, s)).is_ok());
        assert!(classify_answer(asked(Expect::Search), answer(200, JSON, "[]")).is_ok());
        assert!(classify_answer(asked(Expect::Search), answer(200, HTML, "<p>")).is_err());
        let e = r#"{"status":"SUCCEEDED","results":[]}"#;
        assert!(classify_answer(asked(Expect::Event), answer(200, JSON, e)).is_ok());
        assert!(classify_answer(asked(Expect::Event), answer(200, JSON, "{}")).is_err());
    }
}
