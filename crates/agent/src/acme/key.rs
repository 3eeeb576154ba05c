//! The certificate's private key: generated here, never by the CA client, so
//! the agent decides algorithm, reuse and storage.

use std::fmt;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;

/// Key algorithms the agent can generate for a certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256: small, fast, accepted everywhere; the default.
    #[default]
    EcdsaP256,
    /// ECDSA on P-384, for policies that require it.
    EcdsaP384,
    /// RSA 2048 for old clients (key generation takes tens of milliseconds).
    Rsa2048,
    /// RSA, 3072-bit modulus.
    Rsa3072,
    /// RSA, 4096-bit modulus.
    Rsa4096,
}

/// A certificate private key in PKCS#8.
///
/// `Debug` is redacted so the key can never end up in a log line.
pub struct CertificateKey {
    pkcs8: PrivatePkcs8KeyDer<'static>,
    algorithm: KeyAlgorithm,
}

impl CertificateKey {
    /// Generates a fresh key.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, rcgen::Error> {
        let pair = match algorithm {
            KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
            KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?,
            KeyAlgorithm::Rsa2048 => KeyPair::generate_for(&PKCS_RSA_SHA256)?,
            KeyAlgorithm::Rsa3072 => {
                KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)?
            }
            KeyAlgorithm::Rsa4096 => {
                KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)?
            }
        };
        Ok(Self {
            pkcs8: PrivatePkcs8KeyDer::from(pair.serialize_der()),
            algorithm,
        })
    }

    /// Loads an existing PKCS#8 DER key, e.g. to keep a pinned key across renewals.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, rcgen::Error> {
        let pair = KeyPair::try_from(der)?;
        let alg = pair.algorithm();
        let algorithm = if alg == &PKCS_ECDSA_P256_SHA256 {
            KeyAlgorithm::EcdsaP256
        } else if alg == &PKCS_ECDSA_P384_SHA384 {
            KeyAlgorithm::EcdsaP384
        } else if alg == &PKCS_RSA_SHA256 {
            // The RSAPublicKey DER grows with the modulus: ~270 bytes for
            // 2048 bits, ~400 for 3072, ~526 for 4096.
            match pair.public_key_raw().len() {
                0..=300 => KeyAlgorithm::Rsa2048,
                301..=450 => KeyAlgorithm::Rsa3072,
                _ => KeyAlgorithm::Rsa4096,
            }
        } else {
            return Err(rcgen::Error::UnsupportedSignatureAlgorithm);
        };
        Ok(Self {
            pkcs8: PrivatePkcs8KeyDer::from(der.to_vec()),
            algorithm,
        })
    }

    /// Loads an existing key from a PEM "PRIVATE KEY" (PKCS#8) block.
    pub fn from_pem(pem: &str) -> Result<Self, rcgen::Error> {
        // Only PKCS#8: SEC1/PKCS#1 blocks would be stored under a PKCS#8 label.
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| rcgen::Error::CouldNotParseKeyPair)?;
        Self::from_pkcs8_der(der.secret_pkcs8_der())
    }

    /// The algorithm of this key.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The PKCS#8 DER bytes, for storage (write 0600, atomically).
    pub fn pkcs8_der(&self) -> &[u8] {
        self.pkcs8.secret_pkcs8_der()
    }

    /// The key as a PEM "PRIVATE KEY" block, for files that servers load.
    pub fn to_pem(&self) -> Result<String, rcgen::Error> {
        Ok(self.key_pair()?.serialize_pem())
    }

    /// The rcgen key pair, to sign a CSR or compare public keys.
    pub(crate) fn key_pair(&self) -> Result<KeyPair, rcgen::Error> {
        KeyPair::try_from(self.pkcs8.secret_pkcs8_der())
    }
}

impl Clone for CertificateKey {
    fn clone(&self) -> Self {
        // pki-types leaves keys non-Clone to make copies deliberate; this one is.
        Self {
            pkcs8: self.pkcs8.clone_key(),
            algorithm: self.algorithm,
        }
    }
}

impl fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateKey")
            .field("algorithm", &self.algorithm)
            .field("pkcs8", &"<redacted>")
            .finish()
    }
}
