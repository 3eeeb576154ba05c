//! A built-in tls-alpn-01 responder (RFC 8737).
//!
//! One TLS listener serves every concurrent order. The handshake picks the
//! self-signed challenge certificate by SNI from a shared map, and only when
//! the client offers ALPN `acme-tls/1`, as §3 requires.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rcgen::{CertificateParams, CustomExtension, DistinguishedName, KeyPair};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use super::solver::{ChallengeType, PendingChallenge, Solver, SolverError, SolverFuture};

/// The ALPN protocol id of RFC 8737.
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// A validation handshake that takes longer than this is abandoned, so a
/// slow or hostile peer cannot pile up tasks.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// SNI name → (token, challenge certificate).
type CertMap = Arc<RwLock<HashMap<String, (String, Arc<CertifiedKey>)>>>;

/// Answers tls-alpn-01 validation handshakes.
///
/// Dropping it stops the listener.
#[derive(Debug)]
pub struct TlsAlpn01Responder {
    certs: CertMap,
    local_addr: SocketAddr,
    provider: Arc<rustls::crypto::CryptoProvider>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Resolver(CertMap);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offers_acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if !offers_acme {
            return None;
        }
        let name = hello.server_name()?.to_ascii_lowercase();
        let map = self.0.read().ok()?;
        map.get(&name).map(|(_, cert)| cert.clone())
    }
}

impl TlsAlpn01Responder {
    /// Binds `listen` (port 443 in production, the CA's `tlsPort` in tests)
    /// and starts answering in the background.
    pub async fn bind(listen: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let certs: CertMap = Arc::default();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(certs.clone())));
        config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Usually EMFILE; back off instead of spinning.
                        tracing::warn!(error = %e, "tls-alpn-01 accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(mut tls)) => {
                            debug!(%peer, "tls-alpn-01 handshake answered");
                            // The validator only needs the handshake (§3).
                            let _ = tls.shutdown().await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "tls-alpn-01 handshake failed"),
                        Err(_) => debug!(%peer, "tls-alpn-01 handshake timed out"),
                    }
                });
            }
        });
        debug!(%local_addr, "tls-alpn-01 responder listening");
        Ok(Self {
            certs,
            local_addr,
            provider,
            task,
        })
    }

    /// The bound address (useful when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Number of challenge certificates currently served.
    pub fn pending(&self) -> usize {
        self.certs.read().map(|map| map.len()).unwrap_or(0)
    }

    fn challenge_cert(
        &self,
        challenge: &PendingChallenge,
    ) -> Result<Arc<CertifiedKey>, SolverError> {
        let key = KeyPair::generate().map_err(SolverError::new)?;
        // An IP identifier goes in the SAN as an address (RFC 8738 §6).
        let mut params =
            CertificateParams::new(vec![challenge.identifier.clone()]).map_err(SolverError::new)?;
        params.distinguished_name = DistinguishedName::new();
        params.custom_extensions = vec![CustomExtension::new_acme_identifier(&challenge.digest)];
        let cert = params.self_signed(&key).map_err(SolverError::new)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        // Not `CertifiedKey::from_der`: its key check parses the certificate
        // with webpki, which rejects the critical acmeIdentifier extension.
        let signing_key = self
            .provider
            .key_provider
            .load_private_key(der)
            .map_err(SolverError::new)?;
        Ok(Arc::new(CertifiedKey::new(
            vec![cert.der().clone()],
            signing_key,
        )))
    }
}

/// The SNI a validator sends for an identifier: the name itself, or the
/// reverse-mapping name for an IP address (RFC 8738 §6).
fn sni_for(challenge: &PendingChallenge) -> String {
    certkeeper_proto::identifier::reverse_dns_name(&challenge.identifier)
}

impl Drop for TlsAlpn01Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Solver for TlsAlpn01Responder {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::TlsAlpn01
    }

    fn present<'a>(&'a self, challenge: &'a PendingChallenge) -> SolverFuture<'a> {
        let result = self.challenge_cert(challenge).and_then(|cert| {
            let mut map = self
                .certs
                .write()
                .map_err(|_| SolverError::new("tls-alpn-01 certificate map poisoned"))?;
            map.insert(sni_for(challenge), (challenge.token.clone(), cert));
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn cleanup<'a>(&'a self, challenge: &'a PendingChallenge) -> SolverFuture<'a> {
        let result = self
            .certs
            .write()
            .map_err(|_| SolverError::new("tls-alpn-01 certificate map poisoned"))
            .map(|mut map| {
                let sni = sni_for(challenge);
                // Only remove our own entry: a newer order for the same name
                // may have replaced it meanwhile.
                if map
                    .get(&sni)
                    .is_some_and(|(token, _)| *token == challenge.token)
                {
                    map.remove(&sni);
                }
            });
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(identifier: &str) -> PendingChallenge {
        PendingChallenge {
            identifier: identifier.to_owned(),
            wildcard: false,
            is_ip: identifier.parse::<std::net::IpAddr>().is_ok(),
            token: "t".into(),
            key_authorization: "t.x".into(),
            digest: [7; 32],
            dns_value: String::new(),
        }
    }

    /// RFC 8738 §6: the SNI for an IP is its reverse-mapping name.
    #[test]
    fn sni_reverse_names() {
        assert_eq!(sni_for(&pending("Example.TEST")), "example.test");
        assert_eq!(sni_for(&pending("192.0.2.1")), "1.2.0.192.in-addr.arpa");
        assert_eq!(
            sni_for(&pending("2001:db8::1")),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }
}
