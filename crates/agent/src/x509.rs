//! Facts the agent reads from certificates it holds: one place that parses
//! PEM chains and leaves, for the planner, the deployer and the monitor.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::FromDer;

/// What the agent records about a leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafFacts {
    /// Lowercase hex serial.
    pub serial: String,
    /// Hex SHA-256 of the SubjectPublicKeyInfo.
    pub spki_sha256: String,
    /// Validity start, unix seconds.
    pub not_before: i64,
    /// Validity end, unix seconds.
    pub not_after: i64,
}

/// The certificates of a PEM chain, leaf first; unparsable blocks are an error.
pub fn chain_der(chain_pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM chain: {e}"))
}

/// The leaf of a PEM chain.
pub fn leaf_der(chain_pem: &str) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()?
        .ok()
}

/// Serial, key hash and validity of a DER certificate.
pub fn leaf_facts(der: &[u8]) -> Result<LeafFacts, String> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| format!("unparsable certificate: {e}"))?;
    Ok(LeafFacts {
        serial: certkeeper_proto::serial::serial_hex(cert.raw_serial()),
        spki_sha256: spki_sha256(cert.public_key().raw),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Hex SHA-256 of DER SubjectPublicKeyInfo bytes: how keys are named in the
/// ledger and the blocked-key registry (and by `certkeeper compromised --spki`).
pub fn spki_sha256(spki_der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der).as_ref())
}

/// The SPKI hash of a PKCS#8 private key's public half.
pub fn key_spki_sha256(key_pem: &str) -> Result<String, String> {
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| format!("unusable key: {e}"))?;
    Ok(spki_sha256(&rcgen::PublicKeyData::subject_public_key_info(
        &key,
    )))
}

/// Why a certificate must not be installed at `now`, if it must not: a
/// CA returning an expired (or not yet valid) certificate must never
/// replace a working one. `skew` allows for clock differences.
pub fn validity_problem(facts: &LeafFacts, now: i64, skew: i64) -> Option<String> {
    if facts.not_after <= now {
        return Some(format!(
            "it expired at {} (serial {})",
            certkeeper_proto::clock::rfc3339(facts.not_after),
            facts.serial
        ));
    }
    if facts.not_before > now.saturating_add(skew) {
        return Some(format!(
            "it is not valid before {} (serial {}); check this machine's clock",
            certkeeper_proto::clock::rfc3339(facts.not_before),
            facts.serial
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(not_before: i64, not_after: i64) -> LeafFacts {
        LeafFacts {
            serial: "01".into(),
            spki_sha256: String::new(),
            not_before,
            not_after,
        }
    }

    #[test]
    fn expired_and_future_certificates_are_refused() {
        assert!(validity_problem(&facts(0, 100), 100, 300).is_some());
        assert!(validity_problem(&facts(1000, 2000), 100, 300).is_some());
        assert!(validity_problem(&facts(350, 2000), 100, 300).is_none());
        assert!(validity_problem(&facts(0, 2000), 100, 300).is_none());
    }

    #[test]
    fn key_and_certificate_hash_to_the_same_spki() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["a.test".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let f = leaf_facts(cert.der()).expect("facts");
        assert_eq!(
            f.spki_sha256,
            key_spki_sha256(&key.serialize_pem()).expect("spki")
        );
    }
}
