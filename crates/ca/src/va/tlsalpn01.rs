//! tls-alpn-01 (RFC 8737): a TLS handshake with ALPN `acme-tls/1` must present
//! a self-signed certificate for exactly the identifier, carrying the critical
//! acmeIdentifier extension with SHA-256 of the key authorization.
//!
//! webpki refuses such certificates (the critical extension is unknown to it),
//! so the certificate is checked here by hand; the handshake signature is still
//! verified, so the peer holds the certificate's key.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use certkeeper_proto::jws::tlsalpn01_digest;
use certkeeper_proto::problem::ProblemType;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::{Validation, connection_problem, socket};
use crate::CaError;
use crate::issuer::ip_from_bytes;

/// RFC 8737 §6.2 ALPN protocol name.
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// RFC 8737 §6.1 id-pe-acmeIdentifier.
const OID_ACME_IDENTIFIER: &str = "1.3.6.1.5.5.7.1.31";
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn validate(
    addrs: &[IpAddr],
    port: u16,
    v: &Validation,
    key_auth: &str,
) -> Result<(), CaError> {
    let mut last = CaError::acme(
        ProblemType::Connection,
        format!("{}: no address to contact", v.value),
    );
    for ip in addrs {
        match handshake(*ip, port, v).await {
            Ok(cert) => return check_certificate(&cert, v, key_auth),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// RFC 8738 §6: for an IP identifier the SNI is the reverse-DNS name.
fn sni(v: &Validation) -> String {
    certkeeper_proto::identifier::reverse_dns_name(&v.value)
}

async fn handshake(
    ip: IpAddr,
    port: u16,
    v: &Validation,
) -> Result<CertificateDer<'static>, CaError> {
    let addr = socket(ip, port);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| CaError::Internal(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server_name = ServerName::try_from(sni(v))
        .map_err(|e| CaError::malformed(format!("{}: {e}", v.value)))?;
    let work = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| connection_problem(&v.value, addr, e))?;
        connector.connect(server_name, tcp).await.map_err(|e| {
            CaError::acme(
                ProblemType::Tls,
                format!("{} ({addr}): TLS handshake failed: {e}", v.value),
            )
        })
    };
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, work)
        .await
        .map_err(|_| connection_problem(&v.value, addr, "timeout during the TLS handshake"))??;
    let (_, conn) = tls.get_ref();
    if conn.alpn_protocol() != Some(ACME_TLS_ALPN) {
        return Err(CaError::acme(
            ProblemType::Unauthorized,
            format!(
                "{} ({addr}): the server did not negotiate ALPN acme-tls/1",
                v.value
            ),
        ));
    }
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
        .ok_or_else(|| {
            CaError::acme(
                ProblemType::Tls,
                format!("{} ({addr}): no certificate presented", v.value),
            )
        })
}

fn check_certificate(der: &[u8], v: &Validation, key_auth: &str) -> Result<(), CaError> {
    let bad = |m: String| {
        CaError::acme(
            ProblemType::Unauthorized,
            format!("{}: tls-alpn-01 certificate {m}", v.value),
        )
    };
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| bad(format!("does not parse: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| bad(format!("has a bad subjectAltName: {e}")))?
        .ok_or_else(|| bad("has no subjectAltName".into()))?;
    // RFC 8737 §3: the subjectAltName MUST contain exactly one identifier, the one being validated.
    let names = &san.value.general_names;
    let matches = names.len() == 1
        && match &names[0] {
            GeneralName::DNSName(d) => {
                v.identifier_type == "dns" && d.eq_ignore_ascii_case(&v.value)
            }
            GeneralName::IPAddress(b) => {
                v.identifier_type == "ip"
                    && ip_from_bytes(b).map(|ip| ip.to_string())
                        == v.value.parse::<IpAddr>().ok().map(|i| i.to_string())
            }
            _ => false,
        };
    if !matches {
        return Err(bad(format!(
            "names {names:?}, expected exactly {}",
            v.value
        )));
    }
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == OID_ACME_IDENTIFIER)
        .ok_or_else(|| bad("lacks the acmeIdentifier extension".into()))?;
    if !ext.critical {
        return Err(bad("has a non-critical acmeIdentifier extension".into()));
    }
    // extnValue is a DER OCTET STRING of the 32-byte digest.
    let mut want = vec![0x04, 0x20];
    want.extend_from_slice(&tlsalpn01_digest(key_auth));
    if ext.value != want.as_slice() {
        return Err(bad(
            "acmeIdentifier does not match the key authorization".into()
        ));
    }
    Ok(())
}

/// Accepts any certificate (checked by hand above) but verifies the handshake
/// signature with the presented key. rustls' own helpers parse the
/// certificate with webpki, which rejects the critical acmeIdentifier
/// extension, so the key is taken out with x509-parser instead.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Verifies a TLS handshake signature with the certificate's public key.
fn verify_handshake_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    use aws_lc_rs::signature;
    let alg: &'static dyn signature::VerificationAlgorithm = match dss.scheme {
        SignatureScheme::ECDSA_NISTP256_SHA256 => &signature::ECDSA_P256_SHA256_ASN1,
        SignatureScheme::ECDSA_NISTP384_SHA384 => &signature::ECDSA_P384_SHA384_ASN1,
        SignatureScheme::ED25519 => &signature::ED25519,
        SignatureScheme::RSA_PSS_SHA256 => &signature::RSA_PSS_2048_8192_SHA256,
        SignatureScheme::RSA_PSS_SHA384 => &signature::RSA_PSS_2048_8192_SHA384,
        SignatureScheme::RSA_PSS_SHA512 => &signature::RSA_PSS_2048_8192_SHA512,
        SignatureScheme::RSA_PKCS1_SHA256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        SignatureScheme::RSA_PKCS1_SHA384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        SignatureScheme::RSA_PKCS1_SHA512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        _ => {
            return Err(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::NoSignatureSchemesInCommon,
            ));
        }
    };
    let (_, parsed) = X509Certificate::from_der(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let key = parsed.public_key().subject_public_key.data.as_ref();
    signature::UnparsedPublicKey::new(alg, key)
        .verify(message, dss.signature())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature))?;
    Ok(HandshakeSignatureValid::assertion())
}
