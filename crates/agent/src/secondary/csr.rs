//! Checking a CSR found in DNS before anything is ordered for it. The
//! record comes from a zone anyone with the zone's update key can write, so
//! every check is a refusal with a reason, never a panic: it must parse
//! (DER, nothing after it), be self-signed correctly (RFC 2986 §3: the
//! requester proves possession of the key), use a key type the secondary's
//! policy allows, and ask only for DNS names inside the watched zone,
//! including the host it was published at.

use base64::Engine;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::config::KeyType;
use crate::x509::spki_sha256;

/// At most this many names per CSR: Let's Encrypt's limit, and a bound on
/// what a hostile record can make us order.
pub const MAX_NAMES: usize = 100;

const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// A CSR that passed every check: what the secondary orders with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignCsr {
    /// The host it was published at (`_letsencrypt._tcp.HOST`).
    pub host: String,
    /// The CSR as published (DER).
    pub der: Vec<u8>,
    /// The names it asks for, lower case, sorted, the host among them.
    pub names: Vec<String>,
    /// Hex SHA-256 of its public key (as the ledger names keys).
    pub spki_sha256: String,
    /// Its key type.
    pub key_type: KeyType,
}

impl ForeignCsr {
    /// The CSR as PEM (`CERTIFICATE REQUEST`): how the store keeps it.
    pub fn pem(&self) -> String {
        csr_pem(&self.der)
    }
}

/// `der` as a PEM `CERTIFICATE REQUEST`.
pub fn csr_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE REQUEST-----\n");
    pem
}

/// The DER of a PEM `CERTIFICATE REQUEST`, or `None` for anything else (a
/// private key PEM): how a slot's stored order tells a foreign CSR from a
/// key the agent holds.
pub fn csr_der_from_pem(pem: &str) -> Option<Vec<u8>> {
    let p = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .next()?
        .ok()?;
    (p.label == "CERTIFICATE REQUEST").then_some(p.contents)
}

/// Checks the CSR `der` published at `_letsencrypt._tcp.HOST` in `zone`
/// (both without a trailing dot, lower case). `Err` says why it is refused,
/// in words for the operator's log and `status`.
pub fn check(
    host: &str,
    zone: &str,
    der: &[u8],
    allowed: &[KeyType],
) -> Result<ForeignCsr, String> {
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| format!("the record is not a DER CSR ({e})"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes follow the CSR", rest.len()));
    }
    let info = &csr.certification_request_info;
    // The key type first: aws-lc refuses small RSA keys, and "bad
    // signature" would hide the real reason.
    let key_type = key_type(&info.subject_pki)?;
    if !allowed.contains(&key_type) {
        return Err(format!(
            "key type {} is not allowed by [dns_secondary] key_types {allowed:?}",
            key_name(key_type)
        ));
    }
    csr.verify_signature().map_err(|_| {
        "the CSR's self-signature does not verify (it was not signed by the key it holds)"
            .to_string()
    })?;
    let mut names = Vec::new();
    for cn in info.subject.iter_common_name() {
        let cn = cn
            .as_str()
            .map_err(|_| "the CSR's common name is not a string".to_string())?;
        names.push(cn.to_ascii_lowercase());
    }
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => names.push(d.to_ascii_lowercase()),
                        other => {
                            return Err(format!(
                                "the CSR asks for {other:?}; only DNS names in {zone} are ordered"
                            ));
                        }
                    }
                }
            }
        }
    }
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err("the CSR names no DNS name".into());
    }
    if names.len() > MAX_NAMES {
        return Err(format!(
            "the CSR asks for {} names; at most {MAX_NAMES}",
            names.len()
        ));
    }
    for name in &names {
        let bare = name.strip_prefix("*.").unwrap_or(name);
        if !in_zone(bare, zone) || certkeeper_dns::fqdn(bare).is_err() {
            return Err(format!(
                "the CSR asks for {name}, which is not a name in the watched zone {zone}"
            ));
        }
    }
    if !names.iter().any(|n| n == host) {
        return Err(format!(
            "the CSR does not name {host}, the host it is published at (it names {})",
            names.join(", ")
        ));
    }
    Ok(ForeignCsr {
        host: host.to_owned(),
        der: der.to_vec(),
        names,
        spki_sha256: spki_sha256(info.subject_pki.raw),
        key_type,
    })
}

/// `name` is `zone` or below it.
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || name
            .strip_suffix(zone)
            .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
}

fn key_type(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<KeyType, String> {
    match spki
        .parsed()
        .map_err(|e| format!("the CSR's public key does not parse ({e})"))?
    {
        PublicKey::RSA(rsa) => match rsa.key_size() {
            2048 => Ok(KeyType::Rsa2048),
            3072 => Ok(KeyType::Rsa3072),
            4096 => Ok(KeyType::Rsa4096),
            bits => Err(format!(
                "RSA keys of {bits} bits are not ordered for (2048, 3072 or 4096)"
            )),
        },
        PublicKey::EC(_) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                OID_P256 => Ok(KeyType::EcdsaP256),
                OID_P384 => Ok(KeyType::EcdsaP384),
                other => Err(format!(
                    "elliptic curve {other} is not ordered for (P-256 or P-384)"
                )),
            }
        }
        _ => Err(format!(
            "public key algorithm {} is not ordered for (ECDSA P-256/P-384 or RSA)",
            spki.algorithm.algorithm.to_id_string()
        )),
    }
}

/// The configuration name of a key type.
pub fn key_name(k: KeyType) -> &'static str {
    match k {
        KeyType::EcdsaP256 => "ecdsa-p256",
        KeyType::EcdsaP384 => "ecdsa-p384",
        KeyType::Rsa2048 => "rsa2048",
        KeyType::Rsa3072 => "rsa3072",
        KeyType::Rsa4096 => "rsa4096",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[KeyType] = &[
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
    ];

    fn csr(names: &[&str]) -> (Vec<u8>, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        let der = params.serialize_request(&key).expect("csr").der().to_vec();
        (der, key)
    }

    #[test]
    fn a_good_csr_is_accepted_with_its_names_and_key() {
        let (der, key) = csr(&["svc.example.test", "www.svc.example.test"]);
        let c = check("svc.example.test", "example.test", &der, ALL).expect("accepted");
        assert_eq!(c.names, vec!["svc.example.test", "www.svc.example.test"]);
        assert_eq!(c.key_type, KeyType::EcdsaP256);
        assert_eq!(
            c.spki_sha256,
            spki_sha256(&rcgen::PublicKeyData::subject_public_key_info(&key))
        );
        assert_eq!(csr_der_from_pem(&c.pem()), Some(der));
    }

    #[test]
    fn hostile_records_are_refused_with_a_reason() {
        let refuse = |host: &str, der: &[u8], allowed: &[KeyType]| {
            check(host, "example.test", der, allowed).expect_err("refused")
        };
        assert!(refuse("a.example.test", b"\x30\x03garbage", ALL).contains("not a DER CSR"));
        assert!(refuse("a.example.test", &[], ALL).contains("not a DER CSR"));
        let (der, _) = csr(&["a.example.test", "evil.other.test"]);
        assert!(refuse("a.example.test", &der, ALL).contains("not a name in the watched zone"));
        // A suffix match on characters is not a name in the zone.
        let (der, _) = csr(&["a.badexample.test"]);
        assert!(refuse("a.badexample.test", &der, ALL).contains("watched zone"));
        let (der, _) = csr(&["b.example.test"]);
        assert!(refuse("a.example.test", &der, ALL).contains("does not name a.example.test"));
        let (mut der, _) = csr(&["a.example.test"]);
        let last = der.len() - 1;
        der[last] ^= 0x01;
        assert!(refuse("a.example.test", &der, ALL).contains("self-signature"));
        let (der, _) = csr(&["a.example.test"]);
        assert!(refuse("a.example.test", &der, &[KeyType::Rsa2048]).contains("not allowed"));
        let mut long = der.clone();
        long.push(0);
        assert!(refuse("a.example.test", &long, ALL).contains("follow the CSR"));
    }

    #[test]
    fn every_truncation_of_a_csr_is_refused_without_panic() {
        let (der, _) = csr(&["a.example.test"]);
        for n in 0..der.len() {
            assert!(check("a.example.test", "example.test", &der[..n], ALL).is_err());
        }
    }

    #[test]
    fn zone_membership_is_by_label() {
        assert!(in_zone("example.test", "example.test"));
        assert!(in_zone("a.b.example.test", "example.test"));
        assert!(!in_zone("badexample.test", "example.test"));
        assert!(!in_zone(".example.test", "example.test"));
        assert!(!in_zone("test", "example.test"));
    }
}
