//! Revocation status from the CRL a certificate names in its CRL
//! distribution points ([RFC 5280 §4.2.1.13], [§5]).
//!
//! The decision is sans-IO: [`evaluate`] takes the CRL bytes, both
//! certificates and `now`, and checks what [RFC 5280 §6.3.3] asks of a
//! complete CRL: it was signed by the certificate's issuer (name and key),
//! the issuer may sign CRLs, it is current, it covers the certificate
//! (issuing distribution point), and it has no critical extension we do not
//! understand. [`CrlChecker`] adds the I/O around it: a bounded, timed
//! download and a per-URL cache that lasts until nextUpdate, or at most
//! [`CrlOptions::max_cache_age_secs`].
//!
//! Time is always the caller's `now` (unix seconds), never the system clock.
//!
//! Not supported, each refused with a precise error rather than guessed
//! at: delta CRLs, indirect CRLs, CRLs partitioned by reason, and
//! distribution points named relative to the issuer. Redirects are not
//! followed (the URL in the certificate is the one the CA signed).
//!
//! [RFC 5280 §4.2.1.13]: https://www.rfc-editor.org/rfc/rfc5280#section-4.2.1.13
//! [§5]: https://www.rfc-editor.org/rfc/rfc5280#section-5
//! [RFC 5280 §6.3.3]: https://www.rfc-editor.org/rfc/rfc5280#section-6.3.3

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use certkeeper_proto::clock::rfc3339;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ACCEPT, USER_AGENT};
use hyper::{Method, Request, StatusCode};

use crate::bounded_http::{BoundedHttp, HttpError};

mod verify;

use verify::{VerifiedCrl, check_issued_by, crl_url, parse_cert, verify_crl};

/// Default cap on a CRL body: large public CAs shard their CRLs, so 10 MiB
/// holds any one shard with room to spare while bounding memory per fetch.
pub const DEFAULT_MAX_BYTES: usize = 10 * 1024 * 1024;

/// Default deadline for one CRL download (connect, headers and body).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Default longest time a cached CRL is used before it is fetched again,
/// even when its nextUpdate is further away: CAs re-sign on revocation
/// (ours does, so do most), and nextUpdate is often days out, so this is
/// what bounds how late a revocation is noticed.
pub const DEFAULT_MAX_CACHE_AGE_SECS: i64 = 3600;

/// How a [`CrlChecker`] fetches and caches.
#[derive(Clone, Debug)]
pub struct CrlOptions {
    /// Deadline for one download.
    pub http_timeout: Duration,
    /// Largest CRL body accepted, in bytes.
    pub max_bytes: usize,
    /// Longest a cached CRL is used before it is fetched again.
    pub max_cache_age_secs: i64,
    /// Roots trusted for `https://` CRL URLs (every certificate in the
    /// file), for CAs with a private root such as ours; `None` uses the
    /// platform verifier.
    pub root_pem: Option<PathBuf>,
}

impl Default for CrlOptions {
    fn default() -> Self {
        Self {
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
            max_cache_age_secs: DEFAULT_MAX_CACHE_AGE_SECS,
            root_pem: None,
        }
    }
}

/// A CRL entry's reason code ([RFC 5280 §5.3.1]), in RFC order.
///
/// [RFC 5280 §5.3.1]: https://www.rfc-editor.org/rfc/rfc5280#section-5.3.1
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrlReason {
    /// unspecified (0).
    Unspecified,
    /// keyCompromise (1): the certificate's key is known or suspected to be exposed.
    KeyCompromise,
    /// cACompromise (2).
    CaCompromise,
    /// affiliationChanged (3).
    AffiliationChanged,
    /// superseded (4).
    Superseded,
    /// cessationOfOperation (5).
    CessationOfOperation,
    /// certificateHold (6): suspended, may be released.
    CertificateHold,
    /// removeFromCRL (8), meaningful in delta CRLs only.
    RemoveFromCrl,
    /// privilegeWithdrawn (9).
    PrivilegeWithdrawn,
    /// aACompromise (10).
    AaCompromise,
    /// A code RFC 5280 does not define, kept rather than dropped.
    Unrecognized(u8),
}

impl CrlReason {
    /// The reason for an RFC 5280 `CRLReason` code.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Unspecified,
            1 => Self::KeyCompromise,
            2 => Self::CaCompromise,
            3 => Self::AffiliationChanged,
            4 => Self::Superseded,
            5 => Self::CessationOfOperation,
            6 => Self::CertificateHold,
            8 => Self::RemoveFromCrl,
            9 => Self::PrivilegeWithdrawn,
            10 => Self::AaCompromise,
            other => Self::Unrecognized(other),
        }
    }

    /// The RFC 5280 code.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::CaCompromise => 2,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::CertificateHold => 6,
            Self::RemoveFromCrl => 8,
            Self::PrivilegeWithdrawn => 9,
            Self::AaCompromise => 10,
            Self::Unrecognized(code) => code,
        }
    }
}

impl fmt::Display for CrlReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::CaCompromise => "cACompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
            Self::CertificateHold => "certificateHold",
            Self::RemoveFromCrl => "removeFromCRL",
            Self::PrivilegeWithdrawn => "privilegeWithdrawn",
            Self::AaCompromise => "aACompromise",
            Self::Unrecognized(code) => return write!(f, "reason code {code}"),
        };
        f.write_str(name)
    }
}

/// What the issuer's current CRL says about a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrlStatus {
    /// Not listed in a CRL that is current until `next_update` (unix seconds).
    Good {
        /// The CRL's nextUpdate: the answer holds at least until then.
        next_update: i64,
    },
    /// The certificate names no CRL distribution point, so a CRL cannot say.
    NoDistributionPoint,
    /// Listed as revoked.
    Revoked {
        /// The entry's reason code; `None` when the CA omitted it, which
        /// RFC 5280 §5.3.1 says means unspecified.
        reason: Option<CrlReason>,
        /// The entry's revocationDate (unix seconds).
        revoked_at: i64,
    },
}

/// Why a revocation status could not be decided; each names the URL and
/// what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrlError {
    /// The root file for https CRL URLs is unusable.
    #[error("cannot use CRL trust roots from {path}: {reason}")]
    Roots {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A certificate passed in does not parse.
    #[error("the {which} certificate does not parse: {reason}")]
    BadCertificate {
        /// `leaf` or `issuer`.
        which: &'static str,
        /// The parser's complaint.
        reason: String,
    },
    /// The issuer certificate passed in did not sign the leaf.
    #[error(
        "the leaf was not issued by the given issuer: {reason}; pass the certificate that signed it"
    )]
    NotIssuedBy {
        /// Name or signature mismatch.
        reason: String,
    },
    /// The certificate has CRL distribution points, none of which this
    /// checker can use (no http(s) URI, indirect or partial).
    #[error("the certificate's CRL distribution points cannot be used: {reason}")]
    UnusableDistributionPoint {
        /// What each point had instead.
        reason: String,
    },
    /// The download failed (connection, TLS, HTTP framing).
    #[error("fetching CRL {url} failed: {reason}")]
    Fetch {
        /// The CRL URL.
        url: String,
        /// The transport error and its causes.
        reason: String,
    },
    /// The download did not finish within the deadline.
    #[error("no complete CRL from {url} within {timeout:?}")]
    Timeout {
        /// The CRL URL.
        url: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The server answered with a status other than 200.
    #[error("CRL {url} answered HTTP {status}")]
    Status {
        /// The CRL URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The body exceeded the configured limit.
    #[error(
        "CRL {url} is larger than the {limit}-byte limit; raise the limit if this CA really publishes CRLs that large"
    )]
    TooLarge {
        /// The CRL URL.
        url: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not one DER CRL.
    #[error("CRL {url} is not a DER-encoded CRL: {reason}")]
    Malformed {
        /// The CRL URL.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The CRL's issuer name is not the certificate issuer's subject
    /// (RFC 5280 §6.3.3 (b)(1)).
    #[error(
        "CRL {url} was issued by \"{crl_issuer}\", not by the certificate's issuer \"{expected}\""
    )]
    WrongIssuer {
        /// The CRL URL.
        url: String,
        /// The CRL's issuer name.
        crl_issuer: String,
        /// The certificate issuer's subject.
        expected: String,
    },
    /// The CRL's signature does not verify with the issuer's key
    /// (RFC 5280 §6.3.3 (g)): forged, or signed by another key of that name.
    #[error("CRL {url} is not signed by the issuer's key: {reason}")]
    BadSignature {
        /// The CRL URL.
        url: String,
        /// The verifier's complaint.
        reason: String,
    },
    /// The issuer's keyUsage does not allow cRLSign (RFC 5280 §6.3.3 (f)).
    #[error("issuer \"{issuer}\" may not sign CRLs: its keyUsage lacks cRLSign")]
    IssuerCannotSignCrls {
        /// The issuer's subject.
        issuer: String,
    },
    /// The CRL's nextUpdate has passed: the CA has not published a newer one.
    #[error(
        "CRL {url} is stale: its nextUpdate {} has passed (now {}); the CA has not published a fresh CRL",
        rfc3339(*.next_update),
        rfc3339(*.now)
    )]
    Stale {
        /// The CRL URL.
        url: String,
        /// The CRL's nextUpdate (unix seconds).
        next_update: i64,
        /// The time of the check.
        now: i64,
    },
    /// The CRL's thisUpdate is in the future, beyond clock skew.
    #[error(
        "CRL {url} is not valid yet: thisUpdate {} is after now {}; check this host's clock",
        rfc3339(*.this_update),
        rfc3339(*.now)
    )]
    NotYetValid {
        /// The CRL URL.
        url: String,
        /// The CRL's thisUpdate (unix seconds).
        this_update: i64,
        /// The time of the check.
        now: i64,
    },
    /// The CRL has no nextUpdate, so it could be arbitrarily old
    /// (RFC 5280 §5.1.2.5 requires conforming CAs to include it).
    #[error("CRL {url} has no nextUpdate, so its freshness cannot be judged")]
    NoNextUpdate {
        /// The CRL URL.
        url: String,
    },
    /// The CRL's issuing distribution point says it does not cover this
    /// certificate (RFC 5280 §5.2.5).
    #[error("CRL {url} does not cover this certificate: {reason}")]
    OutOfScope {
        /// The CRL URL.
        url: String,
        /// Which scope rule excluded it.
        reason: String,
    },
    /// The CRL uses a feature this checker refuses rather than misreads.
    #[error("CRL {url} is {feature}, which this checker does not support")]
    Unsupported {
        /// The CRL URL.
        url: String,
        /// The feature.
        feature: String,
    },
}

impl CrlError {
    /// Whether trying again later can succeed without a change here: the
    /// network, the CA's web server or its CRL publication may recover.
    /// Everything else needs a fix (configuration, CA, or this code).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Fetch { .. }
            | Self::Timeout { .. }
            | Self::Stale { .. }
            | Self::NotYetValid { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            _ => false,
        }
    }

    /// The CRL URL involved, when the error is about one CRL.
    pub fn url(&self) -> Option<&str> {
        match self {
            Self::Fetch { url, .. }
            | Self::Timeout { url, .. }
            | Self::Status { url, .. }
            | Self::TooLarge { url, .. }
            | Self::Malformed { url, .. }
            | Self::WrongIssuer { url, .. }
            | Self::BadSignature { url, .. }
            | Self::Stale { url, .. }
            | Self::NotYetValid { url, .. }
            | Self::NoNextUpdate { url }
            | Self::OutOfScope { url, .. }
            | Self::Unsupported { url, .. } => Some(url),
            _ => None,
        }
    }
}

/// The first CRL URL in `leaf_der` that [`CrlChecker`] can fetch, or `None`
/// when the certificate has no CRL distribution points extension.
pub fn distribution_point(leaf_der: &[u8]) -> Result<Option<String>, CrlError> {
    let leaf = parse_cert(leaf_der, "leaf")?;
    crl_url(&leaf)
}

/// Decides the status of `leaf_der` from a CRL already downloaded from
/// `url`, at `now` (unix seconds). Sans-IO: [`CrlChecker::check`] is this
/// plus the download and the cache.
///
/// `url` must be the distribution point the CRL came from, so that the
/// CRL's issuing distribution point can be matched against it.
pub fn evaluate(
    crl_der: &[u8],
    url: &str,
    leaf_der: &[u8],
    issuer_der: &[u8],
    now: i64,
) -> Result<CrlStatus, CrlError> {
    let leaf = parse_cert(leaf_der, "leaf")?;
    let issuer = parse_cert(issuer_der, "issuer")?;
    check_issued_by(&leaf, &issuer)?;
    verify_crl(crl_der, url, &issuer, now)?.status_of(url, &leaf, now)
}

/// A downloaded, verified CRL and when it was fetched.
#[derive(Debug)]
struct CacheEntry {
    fetched_at: i64,
    der: Bytes,
    verified: Arc<VerifiedCrl>,
}

impl CacheEntry {
    fn is_fresh(&self, now: i64, max_age: i64) -> bool {
        now < self.verified.next_update && now.saturating_sub(self.fetched_at) < max_age
    }
}

/// One cache slot per URL; its async lock makes concurrent checks of
/// certificates sharing a CRL wait for one download instead of each
/// starting their own.
type Slot = Arc<tokio::sync::Mutex<Option<CacheEntry>>>;

/// Fetches, verifies and caches CRLs, and answers revocation status.
///
/// Safe to share across tasks. The cache holds one entry per CRL URL
/// (a CA publishes a handful) and is kept in memory only: a restarted
/// agent fetches again, which costs one download per URL.
#[derive(Debug)]
pub struct CrlChecker {
    http: BoundedHttp,
    max_bytes: usize,
    max_cache_age_secs: i64,
    cache: Mutex<HashMap<String, Slot>>,
}

impl CrlChecker {
    /// A checker with the given download deadline and body cap, the
    /// default cache age and platform trust for https URLs.
    pub fn new(http_timeout: Duration, max_bytes: usize) -> Result<Self, CrlError> {
        Self::with_options(&CrlOptions {
            http_timeout,
            max_bytes,
            ..CrlOptions::default()
        })
    }

    /// A checker with every option spelled out.
    pub fn with_options(options: &CrlOptions) -> Result<Self, CrlError> {
        let http = BoundedHttp::new(options.root_pem.as_deref(), true, options.http_timeout)
            .map_err(|e| map_http("", e))?;
        Ok(Self {
            http,
            max_bytes: options.max_bytes,
            max_cache_age_secs: options.max_cache_age_secs,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The status of `leaf_der` (issued by `issuer_der`) at `now`, from the
    /// cached CRL while it is fresh, else from a new download. When that
    /// download fails for a retryable reason and the cached CRL has not
    /// reached its nextUpdate, the cached CRL answers (with a warning).
    pub async fn check(
        &self,
        leaf_der: &[u8],
        issuer_der: &[u8],
        now: i64,
    ) -> Result<CrlStatus, CrlError> {
        self.run(leaf_der, issuer_der, now, false).await
    }

    /// Like [`CrlChecker::check`], but always downloads the CRL first: for
    /// an operator's "check now", or after the CA announced a revocation.
    /// On failure the previous cached CRL is kept.
    pub async fn check_forced(
        &self,
        leaf_der: &[u8],
        issuer_der: &[u8],
        now: i64,
    ) -> Result<CrlStatus, CrlError> {
        self.run(leaf_der, issuer_der, now, true).await
    }

    async fn run(
        &self,
        leaf_der: &[u8],
        issuer_der: &[u8],
        now: i64,
        force: bool,
    ) -> Result<CrlStatus, CrlError> {
        let leaf = parse_cert(leaf_der, "leaf")?;
        let issuer = parse_cert(issuer_der, "issuer")?;
        check_issued_by(&leaf, &issuer)?;
        let Some(url) = crl_url(&leaf)? else {
            return Ok(CrlStatus::NoDistributionPoint);
        };
        let slot = self.slot(&url);
        let mut entry = slot.lock().await;
        let cached = match entry.as_ref() {
            Some(e) if !force && e.is_fresh(now, self.max_cache_age_secs) => Some(e),
            _ => None,
        };
        let verified = match cached {
            Some(e) if e.verified.verified_for(&issuer) => Arc::clone(&e.verified),
            // Same URL, another issuer certificate (a re-issued
            // intermediate with the same name): verify the bytes again.
            Some(e) => Arc::new(verify_crl(&e.der, &url, &issuer, now)?),
            None => match self.fetch(&url).await {
                Ok(der) => {
                    let verified = verify_crl(&der, &url, &issuer, now)?;
                    adopt(&mut entry, der, verified, &issuer, &url, now)
                }
                Err(err) => {
                    // The CRL endpoint is down, but the last CRL is still
                    // current: until its nextUpdate it remains the CA's
                    // signed answer (RFC 5280 §5.1.2.5), and an outage of
                    // the CA's web server must not blind the agent. An
                    // explicit forced check reports the failure instead.
                    let previous = entry.as_ref().filter(|e| {
                        !force
                            && err.is_retryable()
                            && now < e.verified.next_update
                            && e.verified.verified_for(&issuer)
                    });
                    let Some(previous) = previous else {
                        return Err(err);
                    };
                    tracing::warn!(
                        %url,
                        error = %err,
                        fetched_at = previous.fetched_at,
                        "CRL download failed; using the cached CRL, still current until its nextUpdate"
                    );
                    Arc::clone(&previous.verified)
                }
            },
        };
        drop(entry);
        verified.status_of(&url, &leaf, now)
    }

    fn slot(&self, url: &str) -> Slot {
        // A panic elsewhere while holding this lock cannot leave the map
        // half-updated (one insert), so a poisoned lock is still usable.
        let mut map = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(url.to_string()).or_default())
    }

    async fn fetch(&self, url: &str) -> Result<Bytes, CrlError> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(url)
            .header(ACCEPT, "application/pkix-crl")
            .header(
                USER_AGENT,
                concat!("certkeeper-agent/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::new()))
            .map_err(|e| CrlError::Fetch {
                url: url.to_string(),
                reason: format!("invalid URL: {e}"),
            })?;
        let rsp = self
            .http
            .send(req, self.max_bytes)
            .await
            .map_err(|e| map_http(url, e))?;
        if rsp.status != StatusCode::OK {
            return Err(CrlError::Status {
                url: url.to_string(),
                status: rsp.status.as_u16(),
            });
        }
        Ok(rsp.body)
    }
}

/// Caches a freshly downloaded and verified CRL, unless the cached one is
/// newer: over plain http anyone on the path can replay an older CRL that
/// is still current, to hide a later revocation.
fn adopt(
    entry: &mut Option<CacheEntry>,
    der: Bytes,
    verified: VerifiedCrl,
    issuer: &x509_parser::certificate::X509Certificate<'_>,
    url: &str,
    now: i64,
) -> Arc<VerifiedCrl> {
    if let Some(previous) = entry
        .as_mut()
        .filter(|e| e.verified.verified_for(issuer) && verified.is_older_than(&e.verified))
    {
        tracing::warn!(
            %url,
            "the CA served an older CRL than the one cached; keeping the newer"
        );
        previous.fetched_at = now;
        return Arc::clone(&previous.verified);
    }
    tracing::debug!(
        %url,
        bytes = der.len(),
        revoked = verified.revoked.len(),
        next_update = verified.next_update,
        "CRL fetched"
    );
    let verified = Arc::new(verified);
    *entry = Some(CacheEntry {
        fetched_at: now,
        der,
        verified: Arc::clone(&verified),
    });
    verified
}

fn map_http(url: &str, e: HttpError) -> CrlError {
    match e {
        HttpError::Roots { path, reason } => CrlError::Roots { path, reason },
        HttpError::Transport { reason } => CrlError::Fetch {
            url: url.to_string(),
            reason,
        },
        HttpError::Timeout { timeout } => CrlError::Timeout {
            url: url.to_string(),
            timeout,
        },
        HttpError::TooLarge { limit } => CrlError::TooLarge {
            url: url.to_string(),
            limit,
        },
    }
}

#[cfg(test)]
mod tests;
