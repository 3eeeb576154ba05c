//! One small HTTP client for requests whose cost must stay bounded: CRL
//! downloads and certificate-key revocation.
//!
//! Every request has one deadline covering connect, headers and body, and
//! every body is read against a byte limit, so a stalled or hostile server
//! can neither hang a caller nor exhaust its memory. Trust is explicit:
//! private roots from a PEM file (pebble and our own CA use them), or the
//! platform verifier.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_LENGTH, HeaderMap};
use hyper::{Request, StatusCode};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

type Hyper = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What went wrong with one bounded request; callers map it into their own
/// error type, adding the URL they asked for.
#[derive(Debug)]
pub(crate) enum HttpError {
    /// The root file could not be used.
    Roots {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Connecting, TLS or HTTP failed.
    Transport {
        /// The underlying error, with its causes.
        reason: String,
    },
    /// No complete response within the deadline.
    Timeout {
        /// The deadline.
        timeout: Duration,
    },
    /// The body is larger than the caller allows.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// A complete response whose body fit the limit.
#[derive(Debug)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: StatusCode,
    /// The response headers.
    pub(crate) headers: HeaderMap,
    /// The whole body.
    pub(crate) body: Bytes,
}

/// An HTTP(S) client with a deadline per request and a cap per body.
#[derive(Clone)]
pub(crate) struct BoundedHttp {
    inner: Hyper,
    timeout: Duration,
}

impl std::fmt::Debug for BoundedHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedHttp")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl BoundedHttp {
    /// Builds a client trusting the roots in `root_pem` (every certificate
    /// in the file) or, when `None`, the platform verifier.
    ///
    /// `allow_http` permits plain `http://` URLs: right for CRLs, which are
    /// signed and conventionally served over HTTP (RFC 5280 §4.2.1.13), and
    /// for an ACME directory the operator wrote as `http://`.
    pub(crate) fn new(
        root_pem: Option<&Path>,
        allow_http: bool,
        timeout: Duration,
    ) -> Result<Self, HttpError> {
        let connector = https_connector(root_pem, allow_http, timeout)
            .map_err(|(path, reason)| HttpError::Roots { path, reason })?;
        Ok(Self {
            inner: HyperClient::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }

    /// Sends `req` and reads the whole body, failing past `max_body` bytes.
    ///
    /// A `Content-Length` above the limit fails before any body is read; a
    /// body without one (chunked) fails as soon as the limit is crossed.
    pub(crate) async fn send(
        &self,
        req: Request<Full<Bytes>>,
        max_body: usize,
    ) -> Result<Response, HttpError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.receive(req, max_body)).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout { timeout }),
        }
    }

    async fn receive(
        &self,
        req: Request<Full<Bytes>>,
        max_body: usize,
    ) -> Result<Response, HttpError> {
        let rsp = self.inner.request(req).await.map_err(|e| transport(&e))?;
        let (parts, mut body) = rsp.into_parts();
        let too_large = || HttpError::TooLarge { limit: max_body };
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > max_body as u64) {
            return Err(too_large());
        }
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| transport(&e))?;
            if let Ok(data) = frame.into_data() {
                match buf.len().checked_add(data.len()) {
                    Some(len) if len <= max_body => buf.extend_from_slice(&data),
                    _ => return Err(too_large()),
                }
            }
        }
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body: Bytes::from(buf),
        })
    }
}

/// The error and every cause below it: hyper hides the useful part
/// ("connection refused", "invalid peer certificate") a few levels down.
fn transport(err: &dyn std::error::Error) -> HttpError {
    let mut reason = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !reason.contains(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        cause = e.source();
    }
    HttpError::Transport { reason }
}

/// The TLS connector of every HTTP client of the agent (ACME and CRLs):
/// roots from `root_pem` (every certificate in the file) or the platform
/// verifier, http/1.1 and h2, TCP_NODELAY, a connect deadline; plain
/// `http://` only when `allow_http`. An unusable root file is `(path, why)`.
pub(crate) fn https_connector(
    root_pem: Option<&Path>,
    allow_http: bool,
    timeout: Duration,
) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, (PathBuf, String)> {
    // Name the provider explicitly: relying on the process default
    // panics when a second provider enters the dependency graph.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = match root_pem {
        Some(path) => {
            let roots = load_roots(path)?;
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| (path.to_owned(), e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            HttpsConnectorBuilder::new().with_tls_config(config)
        }
        None => HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(provider)
            .map_err(|e| (PathBuf::from("<platform verifier>"), e.to_string()))?,
    };
    let mut tcp = HttpConnector::new();
    // The TLS layer dials https URLs through this connector.
    tcp.enforce_http(false);
    // Without TCP_NODELAY a request written in two segments waits for the
    // peer's delayed ACK: ~40 ms per round trip.
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(timeout));
    let connector = if allow_http {
        builder.https_or_http().enable_http1().enable_http2()
    } else {
        builder.https_only().enable_http1().enable_http2()
    };
    Ok(connector.wrap_connector(tcp))
}

fn load_roots(path: &Path) -> Result<RootCertStore, (PathBuf, String)> {
    let err = |e: &dyn std::fmt::Display| (path.to_owned(), e.to_string());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(&e))? {
        let cert = cert.map_err(|e| err(&e))?;
        roots.add(cert).map_err(|e| err(&e))?;
    }
    if roots.is_empty() {
        return Err(err(&"no CERTIFICATE blocks found"));
    }
    Ok(roots)
}
