//! A rustls certificate resolver that holds **both** slots of a managed
//! certificate loaded and ready, and serves one of them. A swap is one
//! atomic store (no parsing, no allocation), so every handshake after it
//! sees the other certificate; handshakes in flight finish with the old one
//! and nothing restarts. Renewals replace a slot's certificate in place.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use arc_swap::ArcSwapOption;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::model::Slot;

/// Serves the chosen slot's certificate for every SNI name (one managed
/// certificate per listener).
#[derive(Debug, Default)]
pub struct CertResolver {
    primary: ArcSwapOption<CertifiedKey>,
    backup: ArcSwapOption<CertifiedKey>,
    /// 0: primary, 1: backup.
    served: AtomicU8,
}

/// Why a certificate could not be loaded for serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolverError {
    /// The chain PEM holds no certificate.
    #[error("the certificate chain holds no PEM certificate")]
    EmptyChain,
    /// The PEM did not parse.
    #[error("bad PEM: {0}")]
    Pem(String),
    /// rustls cannot sign with the key, or the key does not match the certificate.
    #[error("unusable private key: {0}")]
    Key(String),
}

/// Parses a chain and key into what rustls serves.
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<CertifiedKey, ResolverError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| ResolverError::Pem(e.to_string()))?;
    if chain.is_empty() {
        return Err(ResolverError::EmptyChain);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| ResolverError::Pem(e.to_string()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|e| ResolverError::Key(e.to_string()))
}

impl CertResolver {
    /// An empty resolver (handshakes fail until a slot is loaded).
    pub fn new() -> CertResolver {
        CertResolver::default()
    }

    /// Loads `slot`'s certificate (leaf first) and key; served at once if
    /// `slot` is the served one.
    pub fn load(&self, slot: Slot, chain_pem: &str, key_pem: &str) -> Result<(), ResolverError> {
        let certified = Arc::new(certified_key(chain_pem, key_pem)?);
        self.load_parsed(slot, certified);
        Ok(())
    }

    /// Loads an already parsed certificate into `slot`.
    pub fn load_parsed(&self, slot: Slot, certified: Arc<CertifiedKey>) {
        self.cell(slot).store(Some(certified));
    }

    /// Empties `slot` (its certificate must not be served again).
    pub fn clear(&self, slot: Slot) {
        self.cell(slot).store(None);
    }

    /// Serves `slot` from the next handshake on.
    pub fn serve(&self, slot: Slot) {
        self.served.store(
            match slot {
                Slot::Primary => 0,
                Slot::Backup => 1,
            },
            Ordering::Release,
        );
    }

    /// The slot served now.
    pub fn served(&self) -> Slot {
        match self.served.load(Ordering::Acquire) {
            0 => Slot::Primary,
            _ => Slot::Backup,
        }
    }

    /// Whether `slot` holds a certificate.
    pub fn has(&self, slot: Slot) -> bool {
        self.cell(slot).load().is_some()
    }

    fn cell(&self, slot: Slot) -> &ArcSwapOption<CertifiedKey> {
        match slot {
            Slot::Primary => &self.primary,
            Slot::Backup => &self.backup,
        }
    }

    /// A TLS server configuration serving through this resolver: TLS 1.2
    /// minimum, rustls' default key exchange order (X25519MLKEM768 first).
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.cell(self.served()).load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn swap_serves_the_other_slot_and_back() {
        let r = CertResolver::new();
        let (pc, pk) = pair("a.test");
        let (bc, bk) = pair("a.test");
        r.load(Slot::Primary, &pc, &pk).expect("primary");
        r.load(Slot::Backup, &bc, &bk).expect("backup");
        let primary = r.cell(Slot::Primary).load_full().expect("p");
        let backup = r.cell(Slot::Backup).load_full().expect("b");
        assert_eq!(r.served(), Slot::Primary);
        assert!(Arc::ptr_eq(
            &r.cell(r.served()).load_full().expect("s"),
            &primary
        ));
        r.serve(Slot::Backup);
        assert!(Arc::ptr_eq(
            &r.cell(r.served()).load_full().expect("s"),
            &backup
        ));
        r.serve(Slot::Primary);
        assert_eq!(r.served(), Slot::Primary);
    }

    #[test]
    fn a_key_that_does_not_match_is_refused() {
        let r = CertResolver::new();
        let (pc, _) = pair("a.test");
        let (_, other) = pair("a.test");
        assert!(matches!(
            r.load(Slot::Primary, &pc, &other),
            Err(ResolverError::Key(_))
        ));
        assert!(!r.has(Slot::Primary));
    }
}
