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
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{
    DistributionPointName, GeneralName, IssuingDistributionPoint, ParsedExtension,
};
use x509_parser::oid_registry::{
    OID_X509_EXT_CRL_DISTRIBUTION_POINTS, OID_X509_EXT_DELTA_CRL_INDICATOR,
};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::bounded_http::{BoundedHttp, HttpError};

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

/// How far in the future a CRL's thisUpdate may be before it is refused:
/// tolerates ordinary clock skew between the CA and this host.
const CLOCK_SKEW_SECS: i64 = 300;

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

fn parse_cert<'a>(der: &'a [u8], which: &'static str) -> Result<X509Certificate<'a>, CrlError> {
    let bad = |reason: String| CrlError::BadCertificate { which, reason };
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the certificate", rest.len())));
    }
    Ok(cert)
}

/// The issuer given must be the one that signed the leaf; otherwise every
/// later check would be about the wrong CA.
fn check_issued_by(
    leaf: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
) -> Result<(), CrlError> {
    if leaf.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(CrlError::NotIssuedBy {
            reason: format!(
                "the leaf names issuer \"{}\", the certificate given is \"{}\"",
                leaf.issuer(),
                issuer.subject()
            ),
        });
    }
    leaf.verify_signature(Some(issuer.public_key()))
        .map_err(|e| CrlError::NotIssuedBy {
            reason: format!(
                "the leaf's signature does not verify with the key of \"{}\": {e}",
                issuer.subject()
            ),
        })
}

/// RFC 5280 §4.2.1.13: pick a distribution point we can use on our own: a
/// full name with an http(s) URI, for all reasons, from the certificate's
/// issuer (no cRLIssuer). Conforming CAs (and ours) publish exactly that.
fn crl_url(leaf: &X509Certificate<'_>) -> Result<Option<String>, CrlError> {
    let mut seen = false;
    let mut skipped: Vec<String> = Vec::new();
    for ext in leaf.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(points) => {
                seen = true;
                for point in points.iter() {
                    if point.crl_issuer.is_some() {
                        skipped.push("an indirect CRL (cRLIssuer)".into());
                        continue;
                    }
                    if point.reasons.is_some() {
                        skipped.push("a CRL for some reasons only".into());
                        continue;
                    }
                    match &point.distribution_point {
                        Some(DistributionPointName::FullName(names)) => {
                            for name in names {
                                if let GeneralName::URI(uri) = name
                                    && is_http_url(uri)
                                {
                                    return Ok(Some((*uri).to_string()));
                                }
                            }
                            skipped.push("no http or https URI".into());
                        }
                        Some(DistributionPointName::NameRelativeToCRLIssuer(_)) => {
                            skipped.push("a name relative to the CRL issuer".into());
                        }
                        None => skipped.push("no distribution point name".into()),
                    }
                }
            }
            ParsedExtension::ParseError { error }
                if ext.oid == OID_X509_EXT_CRL_DISTRIBUTION_POINTS =>
            {
                return Err(CrlError::BadCertificate {
                    which: "leaf",
                    reason: format!("CRL distribution points: {error}"),
                });
            }
            _ => {}
        }
    }
    if seen {
        if skipped.is_empty() {
            skipped.push("the extension is empty".into());
        }
        return Err(CrlError::UnusableDistributionPoint {
            reason: skipped.join("; "),
        });
    }
    Ok(None)
}

fn is_http_url(uri: &str) -> bool {
    let lower = uri.get(..8).unwrap_or(uri).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Serial numbers compare as integers: drop leading zero octets so a CA
/// that pads its encoding still matches.
fn serial_key(raw: &[u8]) -> &[u8] {
    let skip = raw.iter().take_while(|&&b| b == 0).count();
    raw.get(skip..).unwrap_or_default()
}

/// One revoked entry, reduced to what a status needs.
#[derive(Clone, Copy, Debug)]
struct Revocation {
    reason: Option<CrlReason>,
    revoked_at: i64,
}

/// Which certificates an issuing distribution point says the CRL covers.
#[derive(Clone, Copy, Debug, Default)]
struct Scope {
    only_user_certs: bool,
    only_ca_certs: bool,
}

/// A CRL whose issuer, signature, scope and extensions were checked,
/// reduced to a serial lookup (so a cached CRL is not re-parsed per check).
#[derive(Debug)]
struct VerifiedCrl {
    issuer_name: Vec<u8>,
    issuer_spki: Vec<u8>,
    this_update: i64,
    next_update: i64,
    scope: Scope,
    revoked: HashMap<Vec<u8>, Revocation>,
}

impl VerifiedCrl {
    /// Whether this CRL was verified against exactly this issuer.
    fn verified_for(&self, issuer: &X509Certificate<'_>) -> bool {
        self.issuer_name == issuer.subject().as_raw() && self.issuer_spki == issuer.public_key().raw
    }

    fn status_of(
        &self,
        url: &str,
        leaf: &X509Certificate<'_>,
        now: i64,
    ) -> Result<CrlStatus, CrlError> {
        // Again at lookup: a cached CRL ages.
        check_current(url, self.this_update, self.next_update, now)?;
        let is_ca = leaf.is_ca();
        let out_of_scope = |reason: &str| CrlError::OutOfScope {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if self.scope.only_user_certs && is_ca {
            return Err(out_of_scope("it lists end-entity certificates only"));
        }
        if self.scope.only_ca_certs && !is_ca {
            return Err(out_of_scope("it lists CA certificates only"));
        }
        Ok(match self.revoked.get(serial_key(leaf.raw_serial())) {
            Some(r) => CrlStatus::Revoked {
                reason: r.reason,
                revoked_at: r.revoked_at,
            },
            None => CrlStatus::Good {
                next_update: self.next_update,
            },
        })
    }
}

fn check_current(url: &str, this_update: i64, next_update: i64, now: i64) -> Result<(), CrlError> {
    if this_update > now.saturating_add(CLOCK_SKEW_SECS) {
        return Err(CrlError::NotYetValid {
            url: url.to_string(),
            this_update,
            now,
        });
    }
    // RFC 5280 §5.1.2.5: the next CRL is issued "on or before" nextUpdate,
    // so from then on this one may omit revocations.
    if now >= next_update {
        return Err(CrlError::Stale {
            url: url.to_string(),
            next_update,
            now,
        });
    }
    Ok(())
}

/// RFC 5280 §6.3.3 for a complete CRL from the certificate's own issuer.
fn verify_crl(
    der: &[u8],
    url: &str,
    issuer: &X509Certificate<'_>,
    now: i64,
) -> Result<VerifiedCrl, CrlError> {
    let malformed = |reason: String| CrlError::Malformed {
        url: url.to_string(),
        reason,
    };
    let unsupported = |feature: String| CrlError::Unsupported {
        url: url.to_string(),
        feature,
    };
    let (rest, crl) =
        CertificateRevocationList::from_der(der).map_err(|e| malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(malformed(format!("{} bytes after the CRL", rest.len())));
    }
    // §6.3.3 (b)(1): the CRL issuer must be the certificate's issuer (we
    // refuse indirect CRLs, so the names must be equal).
    if crl.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(CrlError::WrongIssuer {
            url: url.to_string(),
            crl_issuer: crl.issuer().to_string(),
            expected: issuer.subject().to_string(),
        });
    }
    // §6.3.3 (f): "verify that the cRLSign bit is set" when keyUsage is present.
    match issuer.key_usage() {
        Ok(Some(ku)) if !ku.value.crl_sign() => {
            return Err(CrlError::IssuerCannotSignCrls {
                issuer: issuer.subject().to_string(),
            });
        }
        Ok(_) => {}
        Err(e) => {
            return Err(CrlError::BadCertificate {
                which: "issuer",
                reason: format!("keyUsage: {e}"),
            });
        }
    }
    // §6.3.3 (g): the signature, before anything in the CRL is believed.
    crl.verify_signature(issuer.public_key())
        .map_err(|e| CrlError::BadSignature {
            url: url.to_string(),
            reason: e.to_string(),
        })?;

    let this_update = crl.last_update().timestamp();
    let next_update = crl
        .next_update()
        .ok_or_else(|| CrlError::NoNextUpdate {
            url: url.to_string(),
        })?
        .timestamp();
    check_current(url, this_update, next_update, now)?;

    let mut scope = Scope::default();
    for ext in crl.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::IssuingDistributionPoint(idp) => scope = idp_scope(url, idp)?,
            ParsedExtension::ParseError { error } => {
                return Err(malformed(format!("extension {}: {error}", ext.oid)));
            }
            // §5.2.4: a delta CRL lists only changes since a base CRL;
            // reading it as complete would miss revocations.
            _ if ext.oid == OID_X509_EXT_DELTA_CRL_INDICATOR => {
                return Err(unsupported("a delta CRL (RFC 5280 §5.2.4)".into()));
            }
            // §5.2: "If a CRL contains a critical extension that the
            // application cannot process, then the application MUST NOT
            // use that CRL to determine the status of certificates."
            _ if ext.critical => {
                return Err(unsupported(format!(
                    "marked with critical extension {}",
                    ext.oid
                )));
            }
            _ => {}
        }
    }

    let mut revoked = HashMap::new();
    for entry in crl.iter_revoked_certificates() {
        for ext in entry.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::ReasonCode(_) | ParsedExtension::InvalidityDate(_) => {}
                ParsedExtension::ParseError { error } => {
                    return Err(malformed(format!(
                        "entry {}: extension {}: {error}",
                        entry.raw_serial_as_string(),
                        ext.oid
                    )));
                }
                // §5.3: the same rule for entry extensions (certificateIssuer
                // of an indirect CRL is the usual one).
                _ if ext.critical => {
                    return Err(unsupported(format!(
                        "listing entries with critical extension {}",
                        ext.oid
                    )));
                }
                _ => {}
            }
        }
        revoked.insert(
            serial_key(entry.raw_serial()).to_vec(),
            Revocation {
                reason: entry
                    .reason_code()
                    .map(|(_, code)| CrlReason::from_code(code.0)),
                revoked_at: entry.revocation_date.timestamp(),
            },
        );
    }

    Ok(VerifiedCrl {
        issuer_name: issuer.subject().as_raw().to_vec(),
        issuer_spki: issuer.public_key().raw.to_vec(),
        this_update,
        next_update,
        scope,
        revoked,
    })
}

/// RFC 5280 §5.2.5 and §6.3.3 (b)(2): what the issuing distribution point
/// allows us to conclude from this CRL.
fn idp_scope(url: &str, idp: &IssuingDistributionPoint<'_>) -> Result<Scope, CrlError> {
    let unsupported = |feature: &str| CrlError::Unsupported {
        url: url.to_string(),
        feature: feature.to_string(),
    };
    if idp.indirect_crl {
        return Err(unsupported("an indirect CRL (RFC 5280 §5.2.5)"));
    }
    if idp.only_some_reasons.is_some() {
        return Err(unsupported(
            "partitioned by reason (onlySomeReasons, RFC 5280 §5.2.5)",
        ));
    }
    if idp.only_contains_attribute_certs {
        return Err(CrlError::OutOfScope {
            url: url.to_string(),
            reason: "it lists attribute certificates only".into(),
        });
    }
    match &idp.distribution_point {
        // §6.3.3 (b)(2)(i): one of the IDP's names must be the point we
        // fetched; a sharded CA serving the wrong shard fails here.
        Some(DistributionPointName::FullName(names)) => {
            let matches = names
                .iter()
                .any(|n| matches!(n, GeneralName::URI(uri) if *uri == url));
            if !matches {
                return Err(CrlError::OutOfScope {
                    url: url.to_string(),
                    reason: "its issuing distribution point names another URL".into(),
                });
            }
        }
        Some(DistributionPointName::NameRelativeToCRLIssuer(_)) => {
            return Err(unsupported(
                "scoped by a distribution point name relative to the issuer",
            ));
        }
        None => {}
    }
    Ok(Scope {
        only_user_certs: idp.only_contains_user_certs,
        only_ca_certs: idp.only_contains_ca_certs,
    })
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
                    let verified = Arc::new(verify_crl(&der, &url, &issuer, now)?);
                    tracing::debug!(
                        %url,
                        bytes = der.len(),
                        revoked = verified.revoked.len(),
                        next_update = verified.next_update,
                        "CRL fetched"
                    );
                    *entry = Some(CacheEntry {
                        fetched_at: now,
                        der,
                        verified: Arc::clone(&verified),
                    });
                    verified
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
