//! TLS for tests, as users run a self-signed VPS setup: a test CA made at run time,
//! a leaf certificate it signs for `127.0.0.1` and `localhost`, the CA's PEM in a file
//! (for a product config's `ca_file`), and the TLS fronts built on
//! [`Proxy`](crate::proxy::Proxy):
//!
//! - [`tls_front`]: `https://127.0.0.1:PORT` that terminates TLS and passes plain HTTP
//!   to the upstream (any other [`ProxyMode`] over TLS: [`Proxy::start_tls`]);
//! - [`https_redirector`]: plain HTTP that answers every request with nginx's
//!   `return 301 https://$host$request_uri;`.
//!
//! A second [`TestCa::untrusted`] is an unrelated CA, for the rejection path.
//!
//! rustls is the 0.23 line reqwest already uses, with its `ring` provider (no
//! aws-lc-rs); certificates are made by rcgen (the rustls project's generator, also
//! on `ring`). Nothing here reads or writes outside its own temp dir.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use crate::proxy::{Proxy, ProxyMode, RedirectTarget};
use crate::sandbox::TempDir;

/// The names the leaf certificate is for: the IP (an IP SAN) the proxies bind and
/// serve their URL on, and `localhost` (a DNS SAN), the two ways a user writes a
/// loopback URL.
pub const LEAF_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// The name of the CA's PEM file in its temp dir.
pub const CA_FILE_NAME: &str = "ca.pem";

/// The trusted test CA's common name.
const CA_NAME: &str = "mem0-queue test CA";

/// The unrelated CA's common name: a different name and key, so nothing it signed
/// chains to [`CA_NAME`].
const UNTRUSTED_CA_NAME: &str = "mem0-queue untrusted test CA";

/// The organisation of both CAs' names.
const CA_ORGANIZATION: &str = "mem0-queue tests";

/// The only application protocol the fronts offer: they serve HTTP/1.1 (hyper's
/// http1), so a client that would speak h2 must not be told it may.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A test certificate authority and the leaf certificate it signed for
/// [`LEAF_NAMES`], with a rustls server config serving that leaf. Its temp dir, with
/// the CA's PEM, lives as long as it does.
pub struct TestCa {
    name: &'static str,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_config: Arc<ServerConfig>,
    ca_file: PathBuf,
    _dir: TempDir,
}

impl TestCa {
    /// A fresh CA, its leaf, and its PEM written to a temp dir.
    pub fn new() -> TestCa {
        Self::generate(CA_NAME)
    }

    /// Another fresh CA, unrelated to any [`TestCa::new`]: a client trusting it
    /// rejects their leaves, and a client trusting them rejects its.
    pub fn untrusted() -> TestCa {
        Self::generate(UNTRUSTED_CA_NAME)
    }

    fn generate(name: &'static str) -> TestCa {
        let ca_key = KeyPair::generate().expect("generate the test CA's key");
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).expect("a CA without names");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, name);
        ca_params
            .distinguished_name
            .push(DnType::OrganizationName, CA_ORGANIZATION);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .expect("self-sign the test CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("generate the leaf's key");
        let mut leaf_params = CertificateParams::new(LEAF_NAMES.map(str::to_string).to_vec())
            .expect("valid leaf names");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.use_authority_key_identifier_extension = true;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("sign the leaf with the test CA");

        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("ring supports rustls's default TLS versions")
                .with_no_client_auth()
                .with_single_cert(vec![leaf.der().clone()], key)
                .expect("the leaf and its key match");
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];

        let dir = TempDir::new("tls");
        let ca_pem = ca_cert.pem();
        let ca_file = dir.file(CA_FILE_NAME, ca_pem.as_bytes());
        TestCa {
            name,
            ca_pem,
            ca_der: ca_cert.der().clone(),
            server_config: Arc::new(config),
            ca_file,
            _dir: dir,
        }
    }

    /// The CA's common name.
    pub fn name(&self) -> &str {
        self.name
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The file holding [`TestCa::ca_pem`], for a config's `ca_file`.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The CA as a root certificate for a reqwest client.
    pub fn root_certificate(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_der(&self.ca_der).expect("the test CA parses")
    }

    /// A TLS acceptor serving the leaf (HTTP/1.1 only).
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server_config.clone())
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A TLS front: `https://127.0.0.1:PORT` with `ca`'s leaf, passing plain HTTP to
/// `upstream_url` (nginx's `proxy_pass` behind `listen 443 ssl`).
pub async fn tls_front(upstream_url: String, ca: &TestCa) -> Proxy {
    Proxy::start_tls(upstream_url, ProxyMode::Pass, ca).await
}

/// A plain-HTTP server answering every request with nginx's `return 301
/// https://$host$request_uri;` towards `https_url` (e.g. a [`tls_front`]'s URL).
pub async fn https_redirector(https_url: &str) -> Proxy {
    Proxy::start(
        https_url.to_string(),
        ProxyMode::Redirect {
            status: 301,
            to: RedirectTarget::Url(https_url.to_string()),
        },
    )
    .await
}

/// A raw test client that trusts `ca` on top of the built-in roots (none extra when
/// `None`), follows no redirect, ignores the environment's proxies, and gives up
/// after `timeout`.
pub fn client(ca: Option<&TestCa>, timeout: Duration) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout);
    if let Some(ca) = ca {
        builder = builder.add_root_certificate(ca.root_certificate());
    }
    builder.build().expect("build a reqwest client")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem0_server::{Fault, FaultPlan, Kind, Mem0Server, ServerOptions};
    use crate::proxy::nginx_page_html;
    use serde_json::json;

    /// The test clients' whole-request timeout: everything is on loopback.
    const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

    async fn server() -> Mem0Server {
        Mem0Server::start(ServerOptions {
            kind: Kind::Oss,
            api_key: None,
            seed: 7,
        })
        .await
    }

    fn add_body(mq_id: &str) -> serde_json::Value {
        json!({"messages": [{"role": "user", "content": format!("memory {mq_id}")}],
               "user_id": "u", "metadata": {"mq_id": mq_id}, "infer": false})
    }

    /// The error and its sources, as `{:#}` prints an anyhow chain.
    fn chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut out = e.to_string();
        let mut next = e.source();
        while let Some(cause) = next {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            next = cause.source();
        }
        out
    }

    #[tokio::test]
    async fn a_client_trusting_the_ca_reaches_the_upstream() {
        let s = server().await;
        let ca = TestCa::new();
        let front = tls_front(s.url(), &ca).await;
        assert!(
            front.url().starts_with("https://127.0.0.1:"),
            "{}",
            front.url()
        );

        let resp = client(Some(&ca), CLIENT_TIMEOUT)
            .post(format!("{}/memories", front.url()))
            .json(&add_body("tls"))
            .send()
            .await
            .expect("the TLS front answers");
        assert_eq!(resp.status(), 200);
        assert_eq!(s.count_by_mq_id().get("tls"), Some(&1));

        // The CA file is the PEM a product config points `ca_file` at.
        let pem = std::fs::read(ca.ca_file()).expect("read the CA file");
        assert_eq!(pem, ca.ca_pem().as_bytes());
        assert!(ca.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        // The DNS name is in the leaf too: https://localhost:PORT via that file.
        let by_name = reqwest::Client::builder()
            .no_proxy()
            .timeout(CLIENT_TIMEOUT)
            .resolve("localhost", front.addr())
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM"))
            .build()
            .expect("a client");
        let resp = by_name
            .get(format!("https://localhost:{}/docs", front.addr().port()))
            .send()
            .await
            .expect("the TLS front answers for localhost");
        assert_eq!(resp.status(), 200);
    }

    #[tokio::test]
    async fn a_client_without_the_ca_gets_a_certificate_error() {
        let s = server().await;
        let ca = TestCa::new();
        let untrusted = TestCa::untrusted();
        assert_ne!(ca.ca_pem(), untrusted.ca_pem());
        assert_ne!(ca.name(), untrusted.name());
        let front = tls_front(s.url(), &ca).await;
        for trust in [None, Some(&untrusted)] {
            let err = client(trust, CLIENT_TIMEOUT)
                .post(format!("{}/memories", front.url()))
                .json(&add_body("no"))
                .send()
                .await
                .expect_err("the leaf is not trusted");
            let text = chain(&err);
            assert!(err.is_connect(), "{text}");
            assert!(
                text.contains("certificate") && text.contains("UnknownIssuer"),
                "{text}"
            );
        }
        assert!(front.requests().is_empty());
        assert!(s.requests().is_empty());
    }

    #[tokio::test]
    async fn any_mode_runs_over_tls() {
        let s = server().await;
        s.set_faults(FaultPlan::script([Some(Fault::Latency(
            Duration::from_millis(600),
        ))]));
        let ca = TestCa::new();
        let p = Proxy::start_tls(
            s.url(),
            ProxyMode::GatewayTimeout {
                read_timeout: Duration::from_millis(150),
            },
            &ca,
        )
        .await;
        let resp = client(Some(&ca), CLIENT_TIMEOUT)
            .post(format!("{}/memories", p.url()))
            .json(&add_body("slow"))
            .send()
            .await
            .expect("the TLS proxy answers");
        assert_eq!(resp.status(), 504);
        assert_eq!(resp.text().await.expect("a body"), nginx_page_html(504));
        p.settle().await;
        assert_eq!(s.count_by_mq_id().get("slow"), Some(&1));
    }

    #[tokio::test]
    async fn the_http_redirector_points_at_the_https_front() {
        let s = server().await;
        let ca = TestCa::new();
        let front = tls_front(s.url(), &ca).await;
        let redirector = https_redirector(&front.url()).await;
        assert!(redirector.url().starts_with("http://"));

        let resp = client(Some(&ca), CLIENT_TIMEOUT)
            .get(format!("{}/docs?x=1", redirector.url()))
            .send()
            .await
            .expect("the redirector answers");
        assert_eq!(resp.status(), 301);
        let location = resp.headers().get("location").and_then(|v| v.to_str().ok());
        assert_eq!(location, Some(format!("{}/docs?x=1", front.url()).as_str()));
        assert_eq!(resp.text().await.expect("a body"), nginx_page_html(301));

        let following = reqwest::Client::builder()
            .no_proxy()
            .timeout(CLIENT_TIMEOUT)
            .add_root_certificate(ca.root_certificate())
            .build()
            .expect("a client");
        let resp = following
            .get(format!("{}/docs", redirector.url()))
            .send()
            .await
            .expect("followed to the front");
        assert_eq!(resp.status(), 200);

        // A client following a 301 turns the POST into a GET: the add never arrives.
        let resp = following
            .post(format!("{}/memories", redirector.url()))
            .json(&add_body("lost"))
            .send()
            .await
            .expect("followed to the front");
        // The self-hosted server answers a list without an entity with
        // every memory (200), which a following client takes for success.
        assert_eq!(resp.status(), 200);
        let last = s
            .requests()
            .pop()
            .expect("the upstream saw the followed request");
        assert_eq!(
            (last.method.as_str(), last.path.as_str()),
            ("GET", "/memories")
        );
        assert!(s.stored().is_empty());
    }
}
