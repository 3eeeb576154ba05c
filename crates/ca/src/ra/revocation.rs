//! Revocation (RFC 8555 §7.6) and the key-compromise rule learned the hard way:
//! only a request signed by the certificate's own key proves compromise, and
//! only then is the key blocked and its other certificates revoked, with a cap.

use certkeeper_proto::Jwk;
use certkeeper_proto::problem::ProblemType;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Account, Ra};
use crate::CaError;

/// Who signed the revocation request.
#[derive(Debug)]
pub enum Revoker<'a> {
    /// An account key (`kid`): must be the account the certificate was issued to.
    Account(&'a Account),
    /// A key in the JWS (`jwk`): must be the certificate's own key.
    CertificateKey(&'a Jwk),
}

/// RFC 5280 §5.3.1 reason code for keyCompromise.
pub const KEY_COMPROMISE: i64 = 1;
/// Reasons a subscriber may give (Boulder's set): unspecified, keyCompromise,
/// affiliationChanged, superseded, cessationOfOperation.
const SUBSCRIBER_REASONS: &[i64] = &[0, 1, 3, 4, 5];

impl Ra {
    /// Revokes a certificate; returns how many were revoked (more than one
    /// after a proven key compromise).
    pub async fn revoke(
        &self,
        revoker: Revoker<'_>,
        cert_der: &[u8],
        reason: Option<i64>,
    ) -> Result<usize, CaError> {
        let reason = reason.unwrap_or(0);
        if !SUBSCRIBER_REASONS.contains(&reason) {
            return Err(CaError::acme(
                ProblemType::BadRevocationReason,
                format!(
                    "reason code {reason} is not accepted; use 0, 1, 3, 4 or 5 (RFC 5280 §5.3.1)"
                ),
            ));
        }
        let (_, parsed) = X509Certificate::from_der(cert_der)
            .map_err(|e| CaError::malformed(format!("certificate does not parse: {e}")))?;
        let serial = hex::encode(parsed.raw_serial())
            .trim_start_matches("00")
            .to_string();
        let spki_der = parsed.public_key().raw.to_vec();
        let cert = self
            .store
            .certificate_by_serial(&serial)
            .await?
            .ok_or_else(|| {
                CaError::NotFound(format!("certificate {serial} was not issued by this CA"))
            })?;
        // The submitted certificate must be the very one we issued, not a
        // look-alike carrying our serial.
        if leaf_der(&cert.chain_pem).as_deref() != Some(cert_der) {
            return Err(CaError::NotFound(format!(
                "certificate {serial} was not issued by this CA"
            )));
        }
        let proven_key = match revoker {
            Revoker::CertificateKey(jwk) => {
                if jwk.spki_der() != spki_der {
                    return Err(CaError::unauthorized(
                        "the JWS key is not the certificate's key",
                    ));
                }
                true
            }
            Revoker::Account(account) => {
                if account.row.id != cert.account_id {
                    return Err(CaError::unauthorized(
                        "this account did not request the certificate; sign with the certificate's key instead",
                    ));
                }
                if reason == KEY_COMPROMISE {
                    return Err(CaError::acme(
                        ProblemType::BadRevocationReason,
                        "keyCompromise must be proven: sign the revocation request with the certificate's private key (jwk), not the account key",
                    ));
                }
                false
            }
        };
        let now = self.now();
        let proof = if proven_key {
            Some(cert.spki_sha256.as_str())
        } else {
            None
        };
        if !self
            .store
            .revoke_certificate(&serial, now, reason, proof)
            .await?
        {
            return Err(CaError::acme(
                ProblemType::AlreadyRevoked,
                format!("certificate {serial} is already revoked"),
            ));
        }
        let mut revoked = 1;
        if proven_key && reason == KEY_COMPROMISE {
            revoked += self
                .block_and_cascade(&cert.spki_sha256, &serial, now)
                .await?;
        }
        self.refresh_crl().await?;
        tracing::info!(serial = %serial, reason, proven_key, revoked, "revoked");
        Ok(revoked)
    }

    /// Blocks a compromised key and revokes its other certificates, at most
    /// `revocation.max_cascade` of them.
    async fn block_and_cascade(
        &self,
        spki_sha256: &str,
        source: &str,
        now: i64,
    ) -> Result<usize, CaError> {
        self.store.block_key(spki_sha256, source, now).await?;
        let cap = self.policy.revocation.max_cascade;
        let others = self
            .store
            .valid_certificates_with_key(spki_sha256, cap + 1)
            .await?;
        if others.len() as i64 > cap {
            tracing::warn!(key = %spki_sha256, cap, "key compromise cascade hit its cap; revoke the rest by hand after review");
        }
        let mut n = 0;
        for other in others.iter().take(cap as usize) {
            if self
                .store
                .revoke_certificate(&other.serial, now, KEY_COMPROMISE, Some(spki_sha256))
                .await?
            {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The leaf's DER from a stored chain.
fn leaf_der(chain_pem: &str) -> Option<Vec<u8>> {
    let mut reader = std::io::BufReader::new(chain_pem.as_bytes());
    rustls_pemfile::certs(&mut reader)
        .next()?
        .ok()
        .map(|c| c.to_vec())
}
