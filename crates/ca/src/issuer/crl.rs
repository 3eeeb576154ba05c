//! CRL signing (RFC 5280 §5). The CRL covers every unexpired revoked
//! certificate of the intermediate and is re-signed on each revocation and
//! periodically, so nextUpdate never passes.

use std::sync::Arc;

use certkeeper_store::CertificateRow;
use rcgen::{
    CertificateRevocationListParams, CrlDistributionPoint, CrlIssuingDistributionPoint, CrlScope,
    KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};

use super::Pki;
use crate::CaError;

/// RFC 5280 §5.3.1 reason code to rcgen's enum.
fn reason(code: i64) -> Option<RevocationReason> {
    Some(match code {
        1 => RevocationReason::KeyCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        9 => RevocationReason::PrivilegeWithdrawn,
        // RFC 5280 §5.3.1: unspecified (0) SHOULD be expressed by omitting the extension.
        _ => return None,
    })
}

impl Pki {
    /// Signs a CRL listing `revoked` and makes it the current one.
    pub fn sign_crl(
        &self,
        revoked: &[CertificateRow],
        now: i64,
        validity_secs: i64,
    ) -> Result<Arc<Vec<u8>>, CaError> {
        let ts = |t: i64| {
            time::OffsetDateTime::from_unix_timestamp(t)
                .map_err(|e| CaError::Internal(e.to_string()))
        };
        let mut entries = Vec::with_capacity(revoked.len());
        for cert in revoked {
            let serial = hex::decode(&cert.serial)
                .map_err(|e| CaError::Internal(format!("stored serial: {e}")))?;
            entries.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: ts(cert.revoked_at.unwrap_or(now))?,
                reason_code: cert.revocation_reason.and_then(reason),
                invalidity_date: None,
            });
        }
        let number = self.next_crl_number(now);
        let params = CertificateRevocationListParams {
            this_update: ts(now)?,
            next_update: ts(now + validity_secs)?,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: Some(CrlIssuingDistributionPoint {
                distribution_point: CrlDistributionPoint {
                    uris: vec![self.crl_url().to_string()],
                },
                scope: Some(CrlScope::UserCertsOnly),
            }),
            revoked_certs: entries,
            key_identifier_method: KeyIdMethod::PreSpecified(self.intermediate_key_id().to_vec()),
        };
        let crl = params
            .signed_by(self.signer())
            .map_err(|e| CaError::Internal(format!("CRL signing: {e}")))?;
        let der = Arc::new(crl.der().to_vec());
        let (slot, _) = self.crl_slot();
        if let Ok(mut current) = slot.write() {
            *current = Arc::clone(&der);
        }
        Ok(der)
    }
}
