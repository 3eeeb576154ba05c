//! A rustls certificate resolver whose certificate is swapped in place on
//! renewal: handshakes after `set` see the new certificate, handshakes in
//! flight finish with the old one, and nothing restarts.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Serves the current certificate for every SNI name (one managed
/// certificate per listener).
#[derive(Debug, Default)]
pub struct CertResolver {
    current: ArcSwapOption<CertifiedKey>,
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

impl CertResolver {
    /// An empty resolver (handshakes fail until `set`).
    pub fn new() -> CertResolver {
        CertResolver::default()
    }

    /// Replaces the served certificate with `chain_pem` (leaf first) and its key.
    pub fn set(&self, chain_pem: &str, key_pem: &str) -> Result<(), ResolverError> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| ResolverError::Pem(e.to_string()))?;
        if chain.is_empty() {
            return Err(ResolverError::EmptyChain);
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| ResolverError::Pem(e.to_string()))?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let certified = CertifiedKey::from_der(chain, key, &provider)
            .map_err(|e| ResolverError::Key(e.to_string()))?;
        self.current.store(Some(Arc::new(certified)));
        Ok(())
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
        self.current.load_full()
    }
}
