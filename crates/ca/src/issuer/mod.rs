//! The issuer: the only module that holds a CA private key and signs.
//!
//! Two-phase issuance after Boulder's `issuance`: [`Issuer::prepare`] lints a
//! request into a [`Prepared`] value, and only [`Issuer::sign`] turns one into
//! a certificate, which is linted again after signing.

mod ari;
mod crl;
mod keys;
pub(crate) mod pki;

pub use ari::{RenewalWindow, parse_cert_id, renewal_window};
pub use keys::{KeyType, classify_spki};
pub use pki::Pki;

use std::net::IpAddr;

use rcgen::{
    CertificateParams, CrlDistributionPoint, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, KeyUsagePurpose, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::CaError;

/// What the RA asks to be signed: already-authorized identifiers and a vetted key.
#[derive(Clone, Debug)]
pub struct LeafRequest {
    /// DNS names (possibly `*.`-wildcards) and IP addresses, as authorized.
    pub names: Vec<String>,
    /// The subscriber's SubjectPublicKeyInfo, DER, from a verified CSR.
    pub spki_der: Vec<u8>,
    /// Profile name, recorded with the certificate.
    pub profile: String,
    /// Lifetime from the profile, seconds.
    pub validity_secs: i64,
}

/// A linted request, ready to sign. Only `prepare` makes one.
#[derive(Debug)]
pub struct Prepared {
    params: CertificateParams,
    spki: SubjectPublicKeyInfo,
    request: LeafRequest,
    serial: Vec<u8>,
}

/// A signed certificate and what the store records about it.
#[derive(Clone, Debug)]
pub struct Issued {
    /// Lowercase hex serial.
    pub serial: String,
    /// Leaf DER.
    pub der: Vec<u8>,
    /// Leaf then intermediate, PEM.
    pub chain_pem: String,
    /// Validity start, unix seconds.
    pub not_before: i64,
    /// Validity end, unix seconds.
    pub not_after: i64,
    /// Hex SHA-256 of the leaf's SPKI.
    pub spki_sha256: String,
}

/// Hex SHA-256, the form keys are compared and blocked by.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Boulder backdates notBefore by an hour so clients with slow clocks accept
/// a certificate at once; never more than a tenth of the lifetime, so a very
/// short-lived certificate is not born half expired.
const BACKDATE_SECS: i64 = 3600;

impl Prepared {
    /// The serial chosen for this certificate, lowercase hex: the RA
    /// reserves it in the store before [`Pki::sign`] may use it.
    pub fn serial_hex(&self) -> String {
        hex::encode(&self.serial)
    }
}

impl Pki {
    /// Lints a request and builds fresh certificate parameters from it: nothing
    /// from the CSR beyond the public key and the authorized names is copied.
    pub fn prepare(&self, request: LeafRequest, now: i64) -> Result<Prepared, CaError> {
        if request.names.is_empty() {
            return Err(CaError::Internal("prepare: no names".into()));
        }
        if request.validity_secs <= 0 {
            return Err(CaError::Internal("prepare: non-positive validity".into()));
        }
        let key_type = classify_spki(&request.spki_der).map_err(CaError::Internal)?;
        let spki = SubjectPublicKeyInfo::from_der(&request.spki_der).map_err(|e| {
            CaError::Internal(format!("prepare: key not usable by the signer: {e}"))
        })?;

        let backdate = BACKDATE_SECS.min(request.validity_secs / 10);
        let not_before = time::OffsetDateTime::from_unix_timestamp(now - backdate)
            .map_err(|e| CaError::Internal(e.to_string()))?;
        let mut params = CertificateParams::default();
        params.not_before = not_before;
        // RFC 5280 validity is inclusive of notAfter: subtract a second.
        params.not_after = not_before + time::Duration::seconds(request.validity_secs - 1);
        let serial = random_serial();
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.distinguished_name = DistinguishedName::new();
        let mut sans = Vec::with_capacity(request.names.len());
        for name in &request.names {
            match name.parse::<IpAddr>() {
                Ok(ip) => sans.push(SanType::IpAddress(ip)),
                Err(_) => {
                    sans.push(SanType::DnsName(name.clone().try_into().map_err(|e| {
                        CaError::Internal(format!("prepare: {name}: {e}"))
                    })?))
                }
            }
        }
        // A CN is optional (BR §7.1.4.3) but older clients still read it.
        if let Some(first) = request.names.iter().find(|n| n.len() <= 64) {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.subject_alt_names = sans;
        // Always an explicit CA:FALSE, whatever the CSR asked for.
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if key_type.is_rsa() {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![self.crl_url().to_string()],
        }];
        params.use_authority_key_identifier_extension = true;
        Ok(Prepared {
            params,
            spki,
            request,
            serial,
        })
    }

    /// Signs a prepared certificate and lints the result before anyone sees it.
    pub fn sign(&self, prepared: Prepared) -> Result<Issued, CaError> {
        let cert = prepared
            .params
            .signed_by(&prepared.spki, self.signer())
            .map_err(|e| CaError::Internal(format!("signing failed: {e}")))?;
        let der = cert.der().to_vec();
        lint_leaf(&der, &prepared.request)?;
        let chain_pem = format!("{}{}", cert.pem(), self.intermediate_pem());
        Ok(Issued {
            serial: hex::encode(&prepared.serial),
            not_before: prepared.params.not_before.unix_timestamp(),
            not_after: prepared.params.not_after.unix_timestamp(),
            spki_sha256: sha256_hex(&prepared.request.spki_der),
            der,
            chain_pem,
        })
    }
}

/// 128 random bits with the top bit clear and a non-zero first byte, so the
/// DER INTEGER is positive, 16 bytes long and its hex is stable.
fn random_serial() -> Vec<u8> {
    let mut serial: [u8; 16] = rand::random();
    serial[0] = (serial[0] & 0x7f).max(1);
    serial.to_vec()
}

/// Post-signing lint: the certificate says exactly what was prepared.
fn lint_leaf(der: &[u8], request: &LeafRequest) -> Result<(), CaError> {
    let fail = |m: String| CaError::Internal(format!("post-issuance lint: {m}"));
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| fail(e.to_string()))?;
    if cert.is_ca() {
        return Err(fail("leaf is a CA".into()));
    }
    if cert.public_key().raw != request.spki_der.as_slice() {
        return Err(fail("public key differs from the request".into()));
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| fail("no subjectAltName".into()))?;
    let mut names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|g| match g {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(b) => ip_from_bytes(b)
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
            other => format!("{other:?}"),
        })
        .collect();
    names.sort();
    let mut want = request.names.clone();
    want.sort();
    if names != want {
        return Err(fail(format!("SANs {names:?} differ from {want:?}")));
    }
    Ok(())
}

/// An IP address from its SAN/identifier octets.
pub fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}
