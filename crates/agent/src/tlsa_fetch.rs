//! The service side of TLSA distribution (`certkeeper dns request` /
//! `dns fetch`): publish a CSR for a key that never leaves the host, and
//! take a certificate from DNS only after checking it — the chain builds to
//! the configured roots, the leaf's key is the local key, and it covers the
//! names — then write it atomically.

use std::path::Path;

use certkeeper_dns::tlsa::TlsaSet;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::x509::{key_spki_sha256, leaf_facts};

/// A certificate taken from DNS and written out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// Lowercase hex serial.
    pub serial: String,
    /// Validity start and end, unix seconds.
    pub not_before: i64,
    /// Validity end.
    pub not_after: i64,
    /// Whether the files changed.
    pub written: bool,
}

/// A CSR (DER) for `names`, signed with `key_pem` (PKCS#8).
pub fn csr_der(key_pem: &str, names: &[String]) -> Result<Vec<u8>, String> {
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| format!("unusable key: {e}"))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| format!("bad names {names:?}: {e}"))?;
    // Names go in the SANs only: rcgen's default subject (CN "rcgen self
    // signed cert") is not a name any CA would issue for.
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| format!("cannot make the CSR: {e}"))?;
    Ok(csr.der().to_vec())
}

/// Checks the published set and writes `cert.pem`, `chain.pem` and
/// `fullchain.pem` into `out` (each atomically, only when changed).
pub fn verify_and_write(
    host: &str,
    set: &TlsaSet,
    key_pem: &str,
    names: &[String],
    roots_pem: &[u8],
    now: i64,
    out: &Path,
) -> Result<Fetched, String> {
    let at = format!("_letsencrypt._tcp.{host}");
    let leaf = match set.leaves.as_slice() {
        [] => {
            return Err(format!(
                "no certificate (3 0 0) published at {at} yet{}",
                if set.csrs.is_empty() {
                    "; and no CSR either: run `certkeeper dns request` first"
                } else {
                    " (a CSR is there: the secondary has not issued yet)"
                }
            ));
        }
        [one] => one,
        more => {
            return Err(format!(
                "{} certificates (3 0 0) published at {at}: expected one",
                more.len()
            ));
        }
    };
    let facts = leaf_facts(leaf)?;
    let ours = key_spki_sha256(key_pem)?;
    if facts.spki_sha256 != ours {
        return Err(format!(
            "the certificate at {at} (serial {}) is for another key (SPKI SHA-256 {}), not the local key ({ours}): the published CSR is not this key's; run `certkeeper dns request` with this key",
            facts.serial, facts.spki_sha256
        ));
    }
    let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(roots_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad roots PEM: {e}"))?;
    if roots.is_empty() {
        return Err("the roots file holds no certificate".into());
    }
    let anchors: Vec<_> = roots
        .iter()
        .map(|r| webpki::anchor_from_trusted_cert(r).map(|a| a.to_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("unusable root: {e:?}"))?;
    let leaf_der = CertificateDer::from(leaf.clone());
    let intermediates: Vec<CertificateDer<'static>> = set
        .intermediates
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    let ee = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|e| format!("the certificate at {at} does not parse: {e:?}"))?;
    let algs = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(now).unwrap_or(0),
    ));
    let path = ee
        .verify_for_usage(
            algs.all,
            &anchors,
            &intermediates,
            time,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| {
            format!(
                "the chain at {at} does not verify against the configured roots: {e:?} (the records may be from another CA, or an intermediate is missing)"
            )
        })?;
    let chain: Vec<Vec<u8>> = path
        .intermediate_certificates()
        .map(|c| c.der().as_ref().to_vec())
        .collect();
    for name in names {
        let server_name = ServerName::try_from(name.as_str())
            .map_err(|e| format!("{name:?} is not a DNS name: {e}"))?;
        ee.verify_is_valid_for_subject_name(&server_name)
            .map_err(|_| format!("the certificate at {at} does not cover {name}"))?;
    }
    let pem = |der: &[u8]| {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    };
    let cert_pem = pem(leaf);
    let chain_pem: String = chain.iter().map(|d| pem(d)).collect();
    let fullchain_pem = format!("{cert_pem}{chain_pem}");
    let mut written = false;
    for (file, text) in [
        ("cert.pem", &cert_pem),
        ("chain.pem", &chain_pem),
        ("fullchain.pem", &fullchain_pem),
    ] {
        let path = out.join(file);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        certkeeper_store::files::write_atomic(
            &path,
            text.as_bytes(),
            certkeeper_store::files::PUBLIC,
        )
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written = true;
    }
    Ok(Fetched {
        serial: facts.serial,
        not_before: facts.not_before,
        not_after: facts.not_after,
        written,
    })
}
