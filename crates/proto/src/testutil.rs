//! Key material shared by the unit tests.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};

use crate::jws::SigningKey;

/// PKCS#8 documents for one key of each supported type, in the order
/// P-256, P-384, RSA 2048, Ed25519.
pub(crate) fn pkcs8_keys() -> Vec<Vec<u8>> {
    let p256 = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let p384 = EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let ed = Ed25519KeyPair::generate().unwrap();
    vec![
        p256.to_pkcs8v1().unwrap().as_ref().to_vec(),
        p384.to_pkcs8v1().unwrap().as_ref().to_vec(),
        AsDer::<Pkcs8V1Der>::as_der(&rsa).unwrap().as_ref().to_vec(),
        // v2 (with the public key) to cover the other PKCS#8 version.
        ed.to_pkcs8().unwrap().as_ref().to_vec(),
    ]
}

/// One signing key of each supported type, same order as [`pkcs8_keys`].
pub(crate) fn signing_keys() -> Vec<SigningKey> {
    pkcs8_keys()
        .iter()
        .map(|der| SigningKey::from_pkcs8_der(der).unwrap())
        .collect()
}
