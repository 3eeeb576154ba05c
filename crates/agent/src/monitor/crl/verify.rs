//! The sans-IO half of the CRL check: RFC 5280 §6.3.3 for a complete CRL
//! from the certificate's own issuer, and the lookup of one serial in it.

use std::collections::HashMap;

use certkeeper_proto::serial::magnitude;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{
    DistributionPointName, GeneralName, IssuingDistributionPoint, ParsedExtension,
};
use x509_parser::num_bigint::BigUint;
use x509_parser::oid_registry::{
    OID_X509_EXT_CRL_DISTRIBUTION_POINTS, OID_X509_EXT_DELTA_CRL_INDICATOR,
};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::{CrlError, CrlReason, CrlStatus};

/// How far in the future a CRL's thisUpdate may be before it is refused:
/// tolerates ordinary clock skew between the CA and this host.
pub(super) const CLOCK_SKEW_SECS: i64 = 300;

/// Parses one DER certificate with nothing after it.
pub(super) fn parse_cert<'a>(
    der: &'a [u8],
    which: &'static str,
) -> Result<X509Certificate<'a>, CrlError> {
    let bad = |reason: String| CrlError::BadCertificate { which, reason };
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the certificate", rest.len())));
    }
    Ok(cert)
}

/// The issuer given must be the one that signed the leaf; otherwise every
/// later check would be about the wrong CA.
pub(super) fn check_issued_by(
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
pub(super) fn crl_url(leaf: &X509Certificate<'_>) -> Result<Option<String>, CrlError> {
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

pub(super) fn is_http_url(uri: &str) -> bool {
    let lower = uri.get(..8).unwrap_or(uri).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// One revoked entry, reduced to what a status needs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Revocation {
    pub(super) reason: Option<CrlReason>,
    pub(super) revoked_at: i64,
}

/// Which certificates an issuing distribution point says the CRL covers.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Scope {
    pub(super) only_user_certs: bool,
    pub(super) only_ca_certs: bool,
}

/// A CRL whose issuer, signature, scope and extensions were checked,
/// reduced to a serial lookup (so a cached CRL is not re-parsed per check).
#[derive(Debug)]
pub(super) struct VerifiedCrl {
    pub(super) issuer_name: Vec<u8>,
    pub(super) issuer_spki: Vec<u8>,
    pub(super) this_update: i64,
    pub(super) crl_number: Option<BigUint>,
    pub(super) next_update: i64,
    pub(super) scope: Scope,
    pub(super) revoked: HashMap<Vec<u8>, Revocation>,
}

impl VerifiedCrl {
    /// Whether this CRL was verified against exactly this issuer.
    pub(super) fn verified_for(&self, issuer: &X509Certificate<'_>) -> bool {
        self.issuer_name == issuer.subject().as_raw() && self.issuer_spki == issuer.public_key().raw
    }

    /// Whether this CRL was issued before `other`: by CRL number when both
    /// carry one (RFC 5280 §5.2.3: "monotonically increasing"), else by
    /// thisUpdate.
    pub(super) fn is_older_than(&self, other: &VerifiedCrl) -> bool {
        match (&self.crl_number, &other.crl_number) {
            (Some(mine), Some(theirs)) => mine < theirs,
            _ => self.this_update < other.this_update,
        }
    }

    pub(super) fn status_of(
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
        Ok(match self.revoked.get(magnitude(leaf.raw_serial())) {
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

pub(super) fn check_current(
    url: &str,
    this_update: i64,
    next_update: i64,
    now: i64,
) -> Result<(), CrlError> {
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
pub(super) fn verify_crl(
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
            magnitude(entry.raw_serial()).to_vec(),
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
        crl_number: crl.crl_number().cloned(),
        next_update,
        scope,
        revoked,
    })
}

/// RFC 5280 §5.2.5 and §6.3.3 (b)(2): what the issuing distribution point
/// allows us to conclude from this CRL.
pub(super) fn idp_scope(url: &str, idp: &IssuingDistributionPoint<'_>) -> Result<Scope, CrlError> {
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
