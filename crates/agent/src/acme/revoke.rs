//! Certificate revocation ([RFC 8555 §7.6]).
//!
//! [`CertificateKeyRevoker`] signs the request with the **certificate's own
//! key** (`jwk` in the protected header, not `kid`). That is the only proof
//! of key compromise a CA can trust: an account key proves who ordered the
//! certificate, not who holds its key. A CA that sees this proof blocks the
//! key (ours does, as Let's Encrypt does; DESIGN.md story 2). instant-acme
//! signs with the account key only, so this request is built here with
//! `certkeeper_proto::jws::sign`.
//!
//! [`AcmeAccount::revoke`] is the account-signed form, for the reasons that
//! need no proof (superseded, cessationOfOperation, ...).
//!
//! [RFC 8555 §7.6]: https://www.rfc-editor.org/rfc/rfc8555#section-7.6

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use certkeeper_proto::jws::{SigningKey, sign};
use certkeeper_proto::{Jwk, b64};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request};
use instant_acme::{Problem, RevocationRequest};
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::client::{AcmeAccount, AcmeDirectory};
use super::key::CertificateKey;
use crate::bounded_http::{BoundedHttp, HttpError};

/// Largest CA response read: directories, nonces and problem documents
/// are a few kilobytes; anything near this is not an ACME server.
pub(crate) const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How many times a `badNonce` refusal is retried with the fresh nonce the
/// CA sent (RFC 8555 §6.5: the client "SHOULD retry"); pebble rejects a
/// share of nonces on purpose, real CAs after a restart or failover.
const BAD_NONCE_RETRIES: usize = 3;

/// Longest `Retry-After` believed; a larger value is clamped so a broken CA
/// cannot silence revocation for years.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";
const ALREADY_REVOKED: &str = "urn:ietf:params:acme:error:alreadyRevoked";
const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";
const SERVER_INTERNAL: &str = "urn:ietf:params:acme:error:serverInternal";

/// The reasons a subscriber may give when revoking its own certificate
/// ([RFC 5280 §5.3.1] codes; the set CAs accept from subscribers under the
/// Mozilla Root Store Policy §6.1.1 and Let's Encrypt's).
///
/// [RFC 5280 §5.3.1]: https://www.rfc-editor.org/rfc/rfc5280#section-5.3.1
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    /// unspecified (0): none of the others applies.
    Unspecified,
    /// keyCompromise (1): the private key is known or suspected to be
    /// exposed. Sign with the certificate's key to prove it.
    KeyCompromise,
    /// affiliationChanged (3): the subject's name or other information changed.
    AffiliationChanged,
    /// superseded (4): replaced by a new certificate.
    Superseded,
    /// cessationOfOperation (5): the names are no longer in use.
    CessationOfOperation,
}

impl RevocationReason {
    /// Every reason, in code order.
    pub const ALL: [Self; 5] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
    ];

    /// The RFC 5280 `CRLReason` code sent in the request's `reason`.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
        }
    }

    /// The RFC 5280 name, as operators type it (`keyCompromise`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A revocation reason that is not one a subscriber may give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown revocation reason {0:?}; use unspecified, keyCompromise, affiliationChanged, superseded or cessationOfOperation"
)]
pub struct UnknownReason(pub String);

impl FromStr for RevocationReason {
    type Err = UnknownReason;

    /// Accepts the RFC 5280 name in any case (`keyCompromise`,
    /// `keycompromise`) or the numeric code (`1`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s) || r.code().to_string() == s)
            .ok_or_else(|| UnknownReason(s.to_string()))
    }
}

impl From<RevocationReason> for instant_acme::RevocationReason {
    fn from(reason: RevocationReason) -> Self {
        match reason {
            RevocationReason::Unspecified => Self::Unspecified,
            RevocationReason::KeyCompromise => Self::KeyCompromise,
            RevocationReason::AffiliationChanged => Self::AffiliationChanged,
            RevocationReason::Superseded => Self::Superseded,
            RevocationReason::CessationOfOperation => Self::CessationOfOperation,
        }
    }
}

/// Why a revocation did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// The CA root file is unusable.
    #[error("cannot use CA root certificates from {path}: {reason}")]
    Roots {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The certificate to revoke does not parse.
    #[error("the certificate to revoke does not parse: {reason}")]
    BadCertificate {
        /// The parser's complaint.
        reason: String,
    },
    /// The private key cannot sign a JWS (unsupported type).
    #[error("the private key cannot sign a revocation request: {reason}")]
    BadKey {
        /// Why.
        reason: String,
    },
    /// The key given is not the certificate's: the CA would refuse, and
    /// sending it would only disclose which key we think is compromised.
    #[error(
        "the private key given is not the key of the certificate to revoke; pass the certificate's own key"
    )]
    KeyMismatch,
    /// Connecting, TLS or HTTP failed.
    #[error("request to {url} failed: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// The error and its causes.
        reason: String,
    },
    /// The CA did not answer within the deadline.
    #[error("no complete response from {url} within {timeout:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The response body exceeded 1 MiB.
    #[error("the response from {url} is larger than {limit} bytes; this is not an ACME server")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The directory is not usable (not JSON, or no newNonce/revokeCert).
    #[error("ACME directory {url} is unusable: {reason}")]
    BadDirectory {
        /// The directory URL.
        url: String,
        /// What is missing or wrong.
        reason: String,
    },
    /// The CA sent no usable `Replay-Nonce` (RFC 8555 §7.2).
    #[error("{url} sent no usable Replay-Nonce header (RFC 8555 §7.2)")]
    NoNonce {
        /// The URL that should have.
        url: String,
    },
    /// The CA refused with a problem document (RFC 8555 §6.7).
    #[error("the CA refused the revocation at {url} (HTTP {status}): {}", problem_text(.problem))]
    Problem {
        /// The revokeCert URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The problem document, type and detail as the CA sent them.
        problem: Box<Problem>,
        /// The CA's `Retry-After` (delay-seconds form), clamped to 30 days.
        retry_after: Option<Duration>,
    },
    /// The account-signed request through instant-acme failed.
    #[error("account-signed revocation failed: {}", acme_text(.source))]
    Account {
        /// instant-acme's error; `Api` carries the CA's problem document.
        #[source]
        source: Box<instant_acme::Error>,
    },
}

impl RevokeError {
    /// The CA's problem document, from either form of revocation.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Problem { problem, .. } => Some(problem),
            Self::Account { source } => match source.as_ref() {
                instant_acme::Error::Api(problem) => Some(problem),
                _ => None,
            },
            _ => None,
        }
    }

    /// The problem type URN, e.g. `urn:ietf:params:acme:error:badPublicKey`.
    pub fn problem_type(&self) -> Option<&str> {
        self.problem().and_then(|p| p.r#type.as_deref())
    }

    /// Whether the CA says the certificate is already revoked: the goal is
    /// met, though perhaps with another reason.
    pub fn is_already_revoked(&self) -> bool {
        self.problem_type() == Some(ALREADY_REVOKED)
    }

    /// The CA's `Retry-After`, to persist and obey.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Problem { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether sending the same request later can succeed: transport
    /// failures, timeouts, missing nonces, rate limits and server errors.
    /// A refusal on the merits (unauthorized, badRevocationReason,
    /// alreadyRevoked) and local mistakes are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } | Self::NoNonce { .. } => true,
            Self::Problem {
                status, problem, ..
            } => *status >= 500 || retryable_problem(problem),
            Self::Account { source } => match source.as_ref() {
                instant_acme::Error::Api(problem) => {
                    problem.status.is_some_and(|s| s >= 500) || retryable_problem(problem)
                }
                // Everything else instant-acme reports here is the
                // transport (our TimedHttpClient's errors).
                _ => true,
            },
            _ => false,
        }
    }
}

fn retryable_problem(problem: &Problem) -> bool {
    matches!(
        problem.r#type.as_deref(),
        Some(BAD_NONCE | RATE_LIMITED | SERVER_INTERNAL)
    )
}

fn problem_text(problem: &Problem) -> String {
    let kind = problem.r#type.as_deref().unwrap_or("about:blank");
    match &problem.detail {
        Some(detail) => format!("{kind}: {detail}"),
        None => kind.to_string(),
    }
}

fn acme_text(err: &instant_acme::Error) -> String {
    match err {
        instant_acme::Error::Api(problem) => problem_text(problem),
        other => other.to_string(),
    }
}

/// Revokes certificates with a request signed by their own key.
///
/// Cheap to clone and safe to share: one connection pool to one CA. Each
/// call fetches the directory and a fresh nonce, so it holds no state
/// between calls and a crash at any point leaves nothing to clean up; a
/// repeated call after an unseen success gets `alreadyRevoked`
/// ([`RevokeError::is_already_revoked`]).
#[derive(Clone, Debug)]
pub struct CertificateKeyRevoker {
    http: BoundedHttp,
    directory_url: String,
}

/// The two URLs revocation needs from the directory (RFC 8555 §7.1.1).
struct Endpoints {
    new_nonce: String,
    revoke_cert: String,
}

impl CertificateKeyRevoker {
    /// A revoker for the CA at `directory` (its URL, roots and request
    /// timeout). Plain `http://` is used only when the directory URL is
    /// `http://`, as for the account client.
    pub fn new(directory: &AcmeDirectory) -> Result<Self, RevokeError> {
        let allow_http = directory.url.starts_with("http://");
        let http = BoundedHttp::new(
            directory.root_pem.as_deref(),
            allow_http,
            directory.request_timeout,
        )
        .map_err(|e| map_http(&directory.url, e))?;
        Ok(Self {
            http,
            directory_url: directory.url.clone(),
        })
    }

    /// Revokes `certificate_der` for `reason`, signing with `key`, which
    /// must be the certificate's own key (checked here before anything is
    /// sent).
    pub async fn revoke(
        &self,
        certificate_der: &[u8],
        key: &CertificateKey,
        reason: RevocationReason,
    ) -> Result<(), RevokeError> {
        let signer =
            SigningKey::from_pkcs8_der(key.pkcs8_der()).map_err(|e| RevokeError::BadKey {
                reason: e.to_string(),
            })?;
        check_key_matches(certificate_der, &signer.jwk())?;
        let endpoints = self.endpoints().await?;
        let mut nonce = self.new_nonce(&endpoints.new_nonce).await?;
        let url = endpoints.revoke_cert;
        let mut attempt = 0;
        loop {
            let body = revocation_jws(&signer, &nonce, &url, certificate_der, reason)?;
            let req = Request::builder()
                .method(Method::POST)
                .uri(url.as_str())
                // RFC 8555 §6.2: "application/jose+json".
                .header(CONTENT_TYPE, "application/jose+json")
                .header(USER_AGENT, user_agent())
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| bad_url(&self.directory_url, "revokeCert", &url, &e))?;
            let rsp = self.send(req, &url).await?;
            // RFC 8555 §7.6: "If the revocation succeeds, the server
            // responds with status code 200 (OK)."
            if rsp.status.is_success() {
                tracing::info!(%url, %reason, "certificate revoked with its own key");
                return Ok(());
            }
            let problem = parse_problem(rsp.status.as_u16(), &url, &rsp.body);
            let fresh = replay_nonce(&rsp.headers);
            if problem.r#type.as_deref() == Some(BAD_NONCE) && attempt < BAD_NONCE_RETRIES {
                attempt += 1;
                // RFC 8555 §6.5: a badNonce error carries a fresh nonce;
                // ask newNonce only when the CA left it out.
                nonce = match fresh {
                    Some(n) => n,
                    None => self.new_nonce(&endpoints.new_nonce).await?,
                };
                tracing::debug!(%url, attempt, "badNonce; retrying with a fresh nonce");
                continue;
            }
            return Err(RevokeError::Problem {
                url,
                status: rsp.status.as_u16(),
                problem: Box::new(problem),
                retry_after: retry_after(&rsp.headers),
            });
        }
    }

    async fn send(
        &self,
        req: Request<Full<Bytes>>,
        url: &str,
    ) -> Result<crate::bounded_http::Response, RevokeError> {
        self.http
            .send(req, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| map_http(url, e))
    }

    /// RFC 8555 §7.1.1: the directory names newNonce and revokeCert.
    async fn endpoints(&self) -> Result<Endpoints, RevokeError> {
        let url = &self.directory_url;
        let bad = |reason: String| RevokeError::BadDirectory {
            url: url.clone(),
            reason,
        };
        let req = Request::builder()
            .method(Method::GET)
            .uri(url.as_str())
            .header(USER_AGENT, user_agent())
            .body(Full::new(Bytes::new()))
            .map_err(|e| bad(format!("invalid URL: {e}")))?;
        let rsp = self.send(req, url).await?;
        if !rsp.status.is_success() {
            return Err(bad(format!("HTTP {}", rsp.status)));
        }
        let dir: Value =
            serde_json::from_slice(&rsp.body).map_err(|e| bad(format!("not JSON: {e}")))?;
        let member = |name: &str| {
            dir.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| bad(format!("no {name} URL")))
        };
        Ok(Endpoints {
            new_nonce: member("newNonce")?,
            revoke_cert: member("revokeCert")?,
        })
    }

    /// RFC 8555 §7.2: HEAD newNonce answers with a Replay-Nonce.
    async fn new_nonce(&self, url: &str) -> Result<String, RevokeError> {
        let req = Request::builder()
            .method(Method::HEAD)
            .uri(url)
            .header(USER_AGENT, user_agent())
            .body(Full::new(Bytes::new()))
            .map_err(|e| bad_url(&self.directory_url, "newNonce", url, &e))?;
        let rsp = self.send(req, url).await?;
        replay_nonce(&rsp.headers).ok_or_else(|| RevokeError::NoNonce {
            url: url.to_string(),
        })
    }
}

impl AcmeAccount {
    /// Revokes `certificate_der` with the **account** key (`kid`), for
    /// reasons that need no proof of key possession.
    ///
    /// A keyCompromise request signed this way is not proof: our CA refuses
    /// it with `badRevocationReason`, Let's Encrypt revokes without
    /// blocking the key. Use [`CertificateKeyRevoker`] for keyCompromise.
    pub async fn revoke(
        &self,
        certificate_der: &[u8],
        reason: RevocationReason,
    ) -> Result<(), RevokeError> {
        let certificate = CertificateDer::from(certificate_der);
        self.inner()
            .revoke(&RevocationRequest {
                certificate: &certificate,
                reason: Some(reason.into()),
            })
            .await
            .map_err(|e| RevokeError::Account {
                source: Box::new(e),
            })?;
        tracing::info!(account = self.id(), %reason, "certificate revoked with the account key");
        Ok(())
    }
}

/// The certificate's SubjectPublicKeyInfo must be the signing key's:
/// RFC 8555 §7.6 has the CA check it, and catching a mix-up here keeps a
/// wrong key from ever leaving the host in a request.
fn check_key_matches(certificate_der: &[u8], jwk: &Jwk) -> Result<(), RevokeError> {
    let (_, cert) =
        X509Certificate::from_der(certificate_der).map_err(|e| RevokeError::BadCertificate {
            reason: e.to_string(),
        })?;
    let cert_key =
        Jwk::from_spki_der(cert.public_key().raw).map_err(|e| RevokeError::BadCertificate {
            reason: format!("its public key: {e}"),
        })?;
    if &cert_key != jwk {
        return Err(RevokeError::KeyMismatch);
    }
    Ok(())
}

/// The flattened JWS body of a revocation signed by the certificate key:
/// protected `{alg, jwk, nonce, url}` (RFC 8555 §6.2: `jwk`, not `kid`,
/// since no account signs) and payload `{certificate, reason}` (§7.6).
pub(crate) fn revocation_jws(
    key: &SigningKey,
    nonce: &str,
    url: &str,
    certificate_der: &[u8],
    reason: RevocationReason,
) -> Result<Vec<u8>, RevokeError> {
    let header = json!({
        "jwk": key.jwk().to_json(),
        "nonce": nonce,
        "url": url,
    });
    // §7.6: "certificate (required, string): The certificate to be revoked,
    // in the base64url-encoded version of the DER format."
    let payload = json!({
        "certificate": b64::encode(certificate_der),
        "reason": reason.code(),
    });
    let payload = serde_json::to_vec(&payload).map_err(|e| RevokeError::BadKey {
        reason: format!("payload: {e}"),
    })?;
    let jws = sign(key, header, &payload).map_err(|e| RevokeError::BadKey {
        reason: e.to_string(),
    })?;
    serde_json::to_vec(&jws).map_err(|e| RevokeError::BadKey {
        reason: format!("JWS: {e}"),
    })
}

/// RFC 8555 §6.5.1: the nonce is base64url; anything else is ignored
/// rather than echoed back.
fn replay_nonce(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("replay-nonce")?.to_str().ok()?.trim();
    let valid = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then(|| value.to_string())
}

/// `Retry-After` as delay-seconds (RFC 9110 §10.2.3), clamped; an
/// HTTP-date is left to the caller's clock and not interpreted here.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// The problem document of an error response, or one made up from the
/// status when the body is not one (a proxy's HTML page).
fn parse_problem(status: u16, url: &str, body: &[u8]) -> Problem {
    if let Ok(mut problem) = serde_json::from_slice::<Problem>(body) {
        problem.status.get_or_insert(status);
        return problem;
    }
    let text = String::from_utf8_lossy(body);
    let snippet: String = text.trim().chars().take(200).collect();
    let mut detail = format!("HTTP {status} from {url} without a problem document");
    if !snippet.is_empty() {
        detail.push_str(": ");
        detail.push_str(&snippet);
    }
    Problem {
        r#type: None,
        detail: Some(detail),
        status: Some(status),
        subproblems: Vec::new(),
    }
}

fn user_agent() -> &'static str {
    concat!("certkeeper-agent/", env!("CARGO_PKG_VERSION"))
}

fn bad_url(directory: &str, name: &str, url: &str, e: &dyn fmt::Display) -> RevokeError {
    RevokeError::BadDirectory {
        url: directory.to_string(),
        reason: format!("its {name} URL {url:?} is invalid: {e}"),
    }
}

fn map_http(url: &str, e: HttpError) -> RevokeError {
    match e {
        HttpError::Roots { path, reason } => RevokeError::Roots { path, reason },
        HttpError::Transport { reason } => RevokeError::Transport {
            url: url.to_string(),
            reason,
        },
        HttpError::Timeout { timeout } => RevokeError::Timeout {
            url: url.to_string(),
            timeout,
        },
        HttpError::TooLarge { limit } => RevokeError::TooLarge {
            url: url.to_string(),
            limit,
        },
    }
}

#[cfg(test)]
mod tests;
