//! Finalize-time CSR checks (RFC 8555 §7.4): a valid self-signature, exactly
//! the order's names, and a key the policy accepts.
//!
//! Only the public key and the names leave this module; every other CSR
//! field and extension (a CA:TRUE basicConstraints, say) is ignored.

use std::net::IpAddr;

use certkeeper_proto::problem::ProblemType;
use certkeeper_proto::{Identifier, IdentifierType};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::CaError;
use crate::issuer::{classify_spki, ip_from_bytes};
use crate::policy::KeyPolicy;

/// What a CSR contributes to a certificate.
#[derive(Debug)]
pub struct CheckedCsr {
    /// SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
}

fn bad_csr(detail: impl Into<String>) -> CaError {
    CaError::acme(ProblemType::BadCsr, detail)
}

/// Parses and checks a CSR against an order's identifiers and the key policy.
pub(crate) fn check(
    der: &[u8],
    identifiers: &[Identifier],
    keys: &KeyPolicy,
) -> Result<CheckedCsr, CaError> {
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| bad_csr(format!("CSR does not parse: {e}")))?;
    if !rest.is_empty() {
        return Err(bad_csr("trailing bytes after the CSR"));
    }
    let info = &csr.certification_request_info;
    let spki_der = info.subject_pki.raw.to_vec();

    // Key policy before the signature: aws-lc refuses to verify with RSA
    // keys under 2048 bits, and "bad signature" would hide the real reason.
    let key_type =
        classify_spki(&spki_der).map_err(|e| CaError::acme(ProblemType::BadPublicKey, e))?;
    if !keys.allowed.iter().any(|k| *k == key_type.policy_name()) {
        return Err(CaError::acme(
            ProblemType::BadPublicKey,
            format!(
                "key type {} is not allowed; use one of {:?}",
                key_type.policy_name(),
                keys.allowed
            ),
        ));
    }
    csr.verify_signature()
        .map_err(|_| bad_csr("CSR signature does not verify"))?;

    let mut names: Vec<Identifier> = Vec::new();
    for cn in info.subject.iter_common_name() {
        let cn = cn
            .as_str()
            .map_err(|_| bad_csr("CSR common name is not a string"))?;
        names.push(ident_from_text(cn));
    }
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => {
                            names.push(Identifier::dns(d.to_ascii_lowercase()))
                        }
                        GeneralName::IPAddress(b) => match ip_from_bytes(b) {
                            Some(ip) => names.push(Identifier::ip(ip)),
                            None => return Err(bad_csr("CSR holds a malformed IP address")),
                        },
                        other => {
                            return Err(bad_csr(format!(
                                "CSR holds an unsupported subjectAltName {other:?}"
                            )));
                        }
                    }
                }
            }
        }
    }
    names.sort_by(|a, b| (a.id_type.as_str(), &a.value).cmp(&(b.id_type.as_str(), &b.value)));
    names.dedup();
    if names.as_slice() != identifiers {
        let show = |v: &[Identifier]| {
            v.iter()
                .map(|i| i.value.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(bad_csr(format!(
            "CSR names [{}] do not match the order's identifiers [{}]",
            show(&names),
            show(identifiers)
        )));
    }
    Ok(CheckedCsr { spki_der })
}

/// A CN may hold a DNS name or an IP address in text form.
fn ident_from_text(s: &str) -> Identifier {
    match s.parse::<IpAddr>() {
        Ok(ip) => Identifier::ip(ip),
        Err(_) => Identifier {
            id_type: IdentifierType::Dns,
            value: s.to_ascii_lowercase(),
        },
    }
}
