//! The HTTP transport under instant-acme.
//!
//! instant-acme's own client trusts either the platform store or a single
//! root from a file, and never times out. We need private roots (pebble and
//! our own CA use them; a bundle may hold several) and a hard per-request
//! deadline so a stalled CA cannot hang an agent forever.

use std::error::Error as StdError;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Bytes;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesBody, BytesResponse, HttpClient};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::error::AcmeError;

type Hyper = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;
type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// An instant-acme `HttpClient` with explicit trust roots and a deadline on
/// every request (headers and body).
pub(crate) struct TimedHttpClient {
    inner: Hyper,
    timeout: Duration,
}

impl TimedHttpClient {
    /// Builds a client that trusts the roots in `root_pem` (all certificates
    /// in the file), or the platform verifier when `None`.
    ///
    /// Plain `http://` is allowed only when the operator wrote an `http://`
    /// directory URL, so a typo can never downgrade a production CA.
    pub(crate) fn new(
        root_pem: Option<&Path>,
        allow_http: bool,
        timeout: Duration,
    ) -> Result<Self, AcmeError> {
        // Name the provider explicitly: relying on the process default
        // panics when a second provider ever enters the dependency graph.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = match root_pem {
            Some(path) => {
                let roots = load_roots(path)?;
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| root_err(path, e))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                HttpsConnectorBuilder::new().with_tls_config(config)
            }
            None => HttpsConnectorBuilder::new()
                .with_provider_and_platform_verifier(provider)
                .map_err(|e| AcmeError::RootPem {
                    path: "<platform verifier>".into(),
                    reason: e.to_string(),
                })?,
        };
        let mut tcp = HttpConnector::new();
        // The TLS layer dials https URLs through this connector.
        tcp.enforce_http(false);
        // Without TCP_NODELAY a request written in two segments waits for
        // the peer's delayed ACK: ~40 ms per round trip, which would swamp
        // the CA's own latency in the bench.
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(timeout));
        let connector = if allow_http {
            builder.https_or_http().enable_http1().enable_http2()
        } else {
            builder.https_only().enable_http1().enable_http2()
        }
        .wrap_connector(tcp);
        Ok(Self {
            inner: HyperClient::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }
}

fn root_err(path: &Path, e: impl ToString) -> AcmeError {
    AcmeError::RootPem {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn load_roots(path: &Path) -> Result<RootCertStore, AcmeError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| root_err(path, e))? {
        let cert = cert.map_err(|e| root_err(path, e))?;
        roots.add(cert).map_err(|e| root_err(path, e))?;
    }
    if roots.is_empty() {
        return Err(root_err(path, "no CERTIFICATE blocks found"));
    }
    Ok(roots)
}

impl HttpClient for TimedHttpClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let timeout = self.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let uri = req.uri().to_string();
        let fut = self.inner.request(req);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, fut).await {
                Ok(Ok(rsp)) => {
                    let mut rsp = BytesResponse::from(rsp);
                    // The body is read later by instant-acme; carry the same
                    // deadline so a CA that stalls mid-body still times out.
                    rsp.body = Box::new(TimedBody {
                        inner: rsp.body,
                        deadline,
                        uri,
                    });
                    Ok(rsp)
                }
                Ok(Err(e)) => Err(instant_acme::Error::Other(Box::new(e))),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("no response from {uri} within {timeout:?}").into(),
                )),
            }
        })
    }
}

struct TimedBody {
    inner: Box<dyn BytesBody>,
    deadline: tokio::time::Instant,
    uri: String,
}

// `BytesBody` is declared with `#[async_trait]`; this is the signature that
// macro expands to, written out to avoid a dependency for one impl.
impl BytesBody for TimedBody {
    fn into_bytes<'life0, 'async_trait>(
        &'life0 mut self,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, BoxError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            match tokio::time::timeout_at(self.deadline, self.inner.into_bytes()).await {
                Ok(result) => result,
                Err(_) => Err(format!("response body from {} timed out", self.uri).into()),
            }
        })
    }
}
