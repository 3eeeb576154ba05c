//! The CA's own keys and certificates: an ECDSA P-384 root and an ECDSA P-256
//! intermediate, created at first start and persisted in `DATA/ca/`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use certkeeper_store::files::{PRIVATE, PUBLIC, write_atomic};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::CaError;

/// The CA hierarchy and the current CRL.
pub struct Pki {
    root_pem: String,
    root_der: Vec<u8>,
    intermediate_pem: String,
    intermediate_der: Vec<u8>,
    intermediate_ski: Vec<u8>,
    signer: Issuer<'static, KeyPair>,
    crl_url: String,
    crl: RwLock<Arc<Vec<u8>>>,
    crl_number: AtomicI64,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Pki")
            .field("crl_url", &self.crl_url)
            .finish_non_exhaustive()
    }
}

/// Where the CA's files live inside a data directory.
pub fn ca_dir(data: &Path) -> PathBuf {
    data.join("ca")
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path)
        .map_err(|e| CaError::Internal(format!("cannot read {}: {e}", path.display())))
}

fn write(path: &Path, data: &str, mode: u32) -> Result<(), CaError> {
    write_atomic(path, data.as_bytes(), mode)
        .map_err(|e| CaError::Internal(format!("cannot write {}: {e}", path.display())))
}

fn rc(e: rcgen::Error) -> CaError {
    CaError::Internal(format!("certificate generation: {e}"))
}

impl Pki {
    /// Loads the hierarchy from `DATA/ca/`, creating it on first start.
    /// `crl_url` is written into every certificate's CRL distribution point.
    pub fn load_or_create(data: &Path, crl_url: &str) -> Result<Pki, CaError> {
        let dir = ca_dir(data);
        let paths = [
            dir.join("root.pem"),
            dir.join("root.key"),
            dir.join("intermediate.pem"),
            dir.join("intermediate.key"),
        ];
        if !paths[2].exists() || !paths[3].exists() {
            if paths.iter().any(|p| p.exists()) {
                return Err(CaError::Internal(format!(
                    "{} holds part of a CA hierarchy; restore the missing files or move the directory away",
                    dir.display()
                )));
            }
            create(&dir)?;
        }
        let root_pem = read(&paths[0])?;
        let intermediate_pem = read(&paths[2])?;
        let intermediate_key = KeyPair::from_pem(&read(&paths[3])?).map_err(rc)?;
        let root_der = pem_der(&root_pem)?;
        let intermediate_der = pem_der(&intermediate_pem)?;
        let signer = Issuer::from_ca_cert_der(
            &CertificateDer::from(intermediate_der.clone()),
            intermediate_key,
        )
        .map_err(rc)?;
        let intermediate_ski = subject_key_id(&intermediate_der)?;
        Ok(Pki {
            root_pem,
            root_der,
            intermediate_pem,
            intermediate_der,
            intermediate_ski,
            signer,
            crl_url: crl_url.to_string(),
            crl: RwLock::new(Arc::new(Vec::new())),
            crl_number: AtomicI64::new(0),
        })
    }

    /// The root certificate, PEM (what `certkeeper ca export-root` prints).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }
    /// The root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }
    /// The intermediate certificate, PEM.
    pub fn intermediate_pem(&self) -> &str {
        &self.intermediate_pem
    }
    /// The intermediate certificate, DER.
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }
    /// The intermediate's subject key identifier (the AKI of every leaf, used in ARI certIDs).
    pub fn intermediate_key_id(&self) -> &[u8] {
        &self.intermediate_ski
    }
    /// The CRL distribution point URL.
    pub fn crl_url(&self) -> &str {
        &self.crl_url
    }
    pub(crate) fn signer(&self) -> &Issuer<'static, KeyPair> {
        &self.signer
    }
    pub(crate) fn crl_slot(&self) -> (&RwLock<Arc<Vec<u8>>>, &AtomicI64) {
        (&self.crl, &self.crl_number)
    }

    /// The current CRL, DER (empty before the first signing).
    pub fn current_crl(&self) -> Arc<Vec<u8>> {
        self.crl.read().map(|c| Arc::clone(&c)).unwrap_or_default()
    }

    /// A fresh TLS certificate for the CA's own HTTPS listener, for `names`
    /// (DNS names or IP addresses), from the intermediate. Regenerated at each
    /// start, so it never needs renewing.
    pub fn server_certificate(
        &self,
        names: &[String],
        now: i64,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CaError> {
        let key = KeyPair::generate().map_err(rc)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(rc)?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "certkeeper CA listener");
        params.not_before = time::OffsetDateTime::from_unix_timestamp(now - 3600)
            .map_err(|e| CaError::Internal(e.to_string()))?;
        params.not_after = params.not_before + time::Duration::days(30);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.signer).map_err(rc)?;
        let chain = vec![
            cert.der().clone(),
            CertificateDer::from(self.intermediate_der.clone()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((chain, key))
    }

    /// Increments and returns the CRL number: unix time, but strictly
    /// increasing even if two CRLs are signed in the same second (RFC 5280 §5.2.3).
    pub(crate) fn next_crl_number(&self, now: i64) -> i64 {
        let mut current = self.crl_number.load(Ordering::SeqCst);
        loop {
            let next = now.max(current + 1);
            match self.crl_number.compare_exchange(
                current,
                next,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return next,
                Err(seen) => current = seen,
            }
        }
    }
}

/// Creates a new root and intermediate in `dir`.
fn create(dir: &Path) -> Result<(), CaError> {
    let now = time::OffsetDateTime::now_utc();
    // A random suffix, so two installations never share a subject name.
    let tag = hex::encode(rand::random::<[u8; 4]>());

    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(rc)?;
    let mut root = CertificateParams::default();
    root.distinguished_name = DistinguishedName::new();
    root.distinguished_name
        .push(DnType::OrganizationName, "certkeeper");
    root.distinguished_name
        .push(DnType::CommonName, format!("certkeeper root CA {tag}"));
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    root.not_before = now - time::Duration::hours(1);
    root.not_after = now + time::Duration::days(365 * 20);
    let root_cert = root.self_signed(&root_key).map_err(rc)?;
    let root_issuer = Issuer::new(root, root_key);

    let int_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rc)?;
    let mut int = CertificateParams::default();
    int.distinguished_name = DistinguishedName::new();
    int.distinguished_name
        .push(DnType::OrganizationName, "certkeeper");
    int.distinguished_name
        .push(DnType::CommonName, format!("certkeeper intermediate {tag}"));
    int.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    int.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    int.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    int.use_authority_key_identifier_extension = true;
    int.not_before = now - time::Duration::hours(1);
    int.not_after = now + time::Duration::days(365 * 5);
    let int_cert = int.signed_by(&int_key, &root_issuer).map_err(rc)?;

    // Keys first: a crash before the certificates leaves no usable half-state
    // that load_or_create would mistake for a hierarchy.
    write(
        &dir.join("root.key"),
        &root_issuer.key().serialize_pem(),
        PRIVATE,
    )?;
    write(
        &dir.join("intermediate.key"),
        &int_key.serialize_pem(),
        PRIVATE,
    )?;
    write(&dir.join("root.pem"), &root_cert.pem(), PUBLIC)?;
    write(&dir.join("intermediate.pem"), &int_cert.pem(), PUBLIC)?;
    Ok(())
}

fn pem_der(pem: &str) -> Result<Vec<u8>, CaError> {
    let mut reader = std::io::BufReader::new(pem.as_bytes());
    match rustls_pemfile::certs(&mut reader).next() {
        Some(Ok(der)) => Ok(der.to_vec()),
        _ => Err(CaError::Internal(
            "CA certificate file holds no PEM certificate".into(),
        )),
    }
}

fn subject_key_id(der: &[u8]) -> Result<Vec<u8>, CaError> {
    use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CaError::Internal(e.to_string()))?;
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectKeyIdentifier(id) = ext.parsed_extension() {
            return Ok(id.0.to_vec());
        }
    }
    Err(CaError::Internal(
        "intermediate has no subjectKeyIdentifier".into(),
    ))
}

/// Convenience for the names a listener certificate should carry.
pub fn listener_names(host: &str) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !names.iter().any(|n| n == host) && !host.is_empty() {
        names.push(host.to_string());
    }
    names
}
