//! Revocation (RFC 8555 §7.6) with the key-compromise rule Let's Encrypt
//! applies since the Mozilla Root Store Policy 2.8 (its incident report,
//! Mozilla Bugzilla 1886876; DESIGN.md story 2):
//!
//! - the subscriber's word is enough to revoke *with reason keyCompromise*,
//!   whichever key signed the request;
//! - only a request signed by the certificate's own key *demonstrates*
//!   compromise, and only then is the key blocked and every other unexpired
//!   certificate with it revoked, up to `revocation.max_cascade`;
//! - an account that controls every identifier of a certificate it did not
//!   request may revoke it, with the reason forced to cessationOfOperation
//!   (Boulder `RevokeCertByApplicant`);
//! - every revocation is recorded with the certificate's SPKI, the reason and
//!   how the request was signed.

use certkeeper_proto::problem::ProblemType;
use certkeeper_proto::{Jwk, b64};
use certkeeper_store::{CertificateRow, RevocationRow, RevokeOutcome};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Account, Ra, new_id};
use crate::CaError;

/// Who signed the revocation request.
#[derive(Debug)]
pub enum Revoker<'a> {
    /// An account key (`kid`): the subscriber, or an account that holds
    /// valid authorizations for every identifier of the certificate.
    Account(&'a Account),
    /// A key in the JWS (`jwk`): must be the certificate's own key.
    CertificateKey(&'a Jwk),
}

/// RFC 5280 §5.3.1 reason code for keyCompromise.
pub const KEY_COMPROMISE: i64 = 1;
/// RFC 5280 §5.3.1 cessationOfOperation: what Boulder records when an
/// account other than the subscriber revokes ("the subscriber no longer
/// owns the domain names in the certificate").
pub const CESSATION_OF_OPERATION: i64 = 5;
/// Reasons a subscriber may give (Boulder's set): unspecified, keyCompromise,
/// affiliationChanged, superseded, cessationOfOperation.
const SUBSCRIBER_REASONS: &[i64] = &[0, 1, 3, 4, 5];

/// How a revocation request was authorized; recorded with every revocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    /// An account holding valid authorizations for every identifier.
    AuthorizedAccount,
    /// The certificate's own key signed the request.
    CertificateKey,
    /// The account the certificate was issued to.
    SubscriberAccount,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::AuthorizedAccount => "authorized-account",
            Method::CertificateKey => "certificate-key",
            Method::SubscriberAccount => "subscriber-account",
        }
    }
}

/// What a revocation did, for the log and the tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// Serial of the certificate the request named.
    pub serial: String,
    /// The reason recorded (may differ from the one asked for).
    pub reason: i64,
    /// Whether the key is now blocked.
    pub key_blocked: bool,
    /// Other certificates revoked because they share the compromised key.
    pub cascaded: usize,
}

impl Ra {
    /// Revokes a certificate under the rules in the module doc.
    pub async fn revoke(
        &self,
        revoker: Revoker<'_>,
        cert_der: &[u8],
        reason: Option<i64>,
    ) -> Result<Revoked, CaError> {
        let requested = reason.unwrap_or(0);
        if !SUBSCRIBER_REASONS.contains(&requested) {
            return Err(CaError::acme(
                ProblemType::BadRevocationReason,
                format!(
                    "reason code {requested} is not accepted; use 0, 1, 3, 4 or 5 (RFC 5280 §5.3.1)"
                ),
            ));
        }
        let (_, parsed) = X509Certificate::from_der(cert_der)
            .map_err(|e| CaError::malformed(format!("certificate does not parse: {e}")))?;
        let serial = certkeeper_proto::serial::serial_hex(parsed.raw_serial());
        let spki_der = parsed.public_key().raw.to_vec();
        let not_found =
            || CaError::NotFound(format!("certificate {serial} was not issued by this CA"));
        let cert = self
            .store
            .certificate_by_serial(&serial)
            .await?
            .ok_or_else(not_found)?;
        // The submitted certificate must be the very one we issued, not a
        // look-alike carrying our serial.
        if leaf_der(&cert.chain_pem).as_deref() != Some(cert_der) {
            return Err(not_found());
        }
        let (method, requester, reason) = match revoker {
            Revoker::CertificateKey(jwk) => {
                if jwk.spki_der() != spki_der {
                    return Err(CaError::unauthorized(
                        "the JWS key is not the certificate's key",
                    ));
                }
                // Boulder `RevokeCertByKey`: whoever holds the private key
                // has demonstrated that it is out of the subscriber's sole
                // control, so the reason is keyCompromise whatever was asked.
                (
                    Method::CertificateKey,
                    format!("jwk:{}", jwk.thumbprint()),
                    KEY_COMPROMISE,
                )
            }
            Revoker::Account(account) if account.row.id == cert.account_id => {
                // The subscriber's word: any subscriber reason, keyCompromise
                // included, but nothing is blocked on it.
                (Method::SubscriberAccount, account.row.id.clone(), requested)
            }
            Revoker::Account(account) => {
                self.check_controls_all(account, &cert).await?;
                (
                    Method::AuthorizedAccount,
                    account.row.id.clone(),
                    CESSATION_OF_OPERATION,
                )
            }
        };
        let now = self.now();
        let record = RevocationRow {
            id: new_id(),
            serial: serial.clone(),
            spki_sha256: cert.spki_sha256.clone(),
            spki_der: b64::encode(&spki_der),
            reason,
            requested_reason: Some(requested),
            method: method.as_str().to_string(),
            requester,
            source_serial: None,
            key_blocked: method == Method::CertificateKey,
            revoked_at: now,
            recorded_at: now,
        };
        let mut cascaded_serials: Vec<String> = Vec::new();
        let outcome = if method == Method::CertificateKey {
            let cap = self.policy.revocation.max_cascade;
            let out = self.store.revoke_key_compromise(&record, cap, now).await?;
            if out.capped {
                tracing::warn!(key = %cert.spki_sha256, cap, "key compromise cascade hit revocation.max_cascade; review and revoke the rest by hand");
            }
            self.refresh_crl().await?;
            if out.primary == RevokeOutcome::Unchanged {
                return Err(already_revoked(&serial));
            }
            cascaded_serials.clone_from(&out.cascaded);
            Revoked {
                serial,
                reason,
                key_blocked: true,
                cascaded: out.cascaded.len(),
            }
        } else {
            // `Some` only for the certificate key: the column marks a proof.
            match self.store.revoke_recorded(&record, None).await? {
                RevokeOutcome::Unchanged => return Err(already_revoked(&serial)),
                RevokeOutcome::Revoked | RevokeOutcome::ReasonRaised => {}
            }
            self.refresh_crl().await?;
            Revoked {
                serial,
                reason,
                key_blocked: false,
                cascaded: 0,
            }
        };
        // After the commit: the revocation stands whatever happens to the
        // file, and its row carries the same facts.
        let audited = self
            .audit(
                "revoked",
                serde_json::json!({
                    "serial": outcome.serial,
                    "reason": reason,
                    "signed_by": method.as_str(),
                    "requester": record.requester,
                    "spki_sha256": record.spki_sha256,
                    "key_blocked": outcome.key_blocked,
                    "cascaded": cascaded_serials,
                })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            )
            .await;
        if let Err(e) = audited {
            tracing::error!(serial = %outcome.serial, error = %e, "revocation not in the audit log");
        }
        metrics::counter!(
            "certkeeper_ca_revoked_total",
            "reason" => reason.to_string(),
            "signed_by" => method.as_str(),
        )
        .increment(1 + outcome.cascaded as u64);
        tracing::info!(serial = %outcome.serial, reason, method = method.as_str(), cascaded = outcome.cascaded, "revoked");
        Ok(outcome)
    }

    /// RFC 8555 §7.6: an account other than the subscriber is authorized
    /// when it holds a valid, unexpired authorization for every identifier
    /// of the certificate (a wildcard needs a wildcard authorization).
    async fn check_controls_all(
        &self,
        account: &Account,
        cert: &CertificateRow,
    ) -> Result<(), CaError> {
        let now = self.now();
        for name in cert.names.split(',') {
            let key = match name.parse::<std::net::IpAddr>() {
                Ok(_) => format!("ip:{name}"),
                Err(_) => format!("dns:{name}"),
            };
            if self
                .store
                .reusable_authz(&account.row.id, &key, now)
                .await?
                .is_none()
            {
                return Err(CaError::unauthorized(format!(
                    "this account neither requested certificate {} nor holds a valid authorization for {name}; \
                     revoke from the subscriber's account, with the certificate's key, or after validating every identifier",
                    cert.serial
                )));
            }
        }
        Ok(())
    }
}

fn already_revoked(serial: &str) -> CaError {
    CaError::acme(
        ProblemType::AlreadyRevoked,
        format!("certificate {serial} is already revoked"),
    )
}

/// The leaf's DER from a stored chain.
fn leaf_der(chain_pem: &str) -> Option<Vec<u8>> {
    let mut reader = std::io::BufReader::new(chain_pem.as_bytes());
    rustls_pemfile::certs(&mut reader)
        .next()?
        .ok()
        .map(|c| c.to_vec())
}
