//! HPKE ([RFC 9180]) with the suite chosen at run time, and the key config
//! encoding of Oblivious HTTP ([RFC 9458 §3]).
//!
//! The `hpke` crate fixes a suite at compile time (three type parameters);
//! the rotator's suites come from configuration, so every call dispatches
//! once, KEM then KDF then AEAD, to a generic function.
//!
//! [RFC 9180]: https://www.rfc-editor.org/rfc/rfc9180
//! [RFC 9458 §3]: https://www.rfc-editor.org/rfc/rfc9458#section-3

use hpke::aead::{Aead, AesGcm128, AesGcm256, ChaCha20Poly1305};
use hpke::kdf::{HkdfSha256, HkdfSha384, HkdfSha512, Kdf};
use hpke::kem::{DhP256HkdfSha256, DhP384HkdfSha384, X25519HkdfSha256};
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};

use crate::KeysError;
use crate::model::{HpkeAead, HpkeKdf, HpkeKem, Suite};

/// An HPKE suite as three runtime values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HpkeSuite {
    /// The KEM.
    pub kem: HpkeKem,
    /// The KDF.
    pub kdf: HpkeKdf,
    /// The AEAD.
    pub aead: HpkeAead,
}

impl HpkeSuite {
    /// The HPKE half of a [`Suite`], if it is one.
    pub fn from_suite(suite: Suite) -> Option<HpkeSuite> {
        match suite {
            Suite::Hpke(kem, kdf, aead) => Some(HpkeSuite { kem, kdf, aead }),
            Suite::Signing(_) => None,
        }
    }

    /// The [`Suite`] it is.
    pub fn suite(self) -> Suite {
        Suite::Hpke(self.kem, self.kdf, self.aead)
    }
}

/// A generated key pair: (private, public), both in RFC 9180 §7.1.1 serialization.
pub type KeyPair = (Vec<u8>, Vec<u8>);

/// Generates a key pair for the suite's KEM.
pub fn generate(kem: HpkeKem) -> KeyPair {
    fn gen_kem<M: Kem>() -> KeyPair {
        let (sk, pk) = M::gen_keypair();
        (sk.to_bytes().to_vec(), pk.to_bytes().to_vec())
    }
    match kem {
        HpkeKem::X25519 => gen_kem::<X25519HkdfSha256>(),
        HpkeKem::P256 => gen_kem::<DhP256HkdfSha256>(),
        HpkeKem::P384 => gen_kem::<DhP384HkdfSha384>(),
    }
}

/// Checks that a private key parses for the KEM (a row written by another
/// version, or altered, is caught at load, not at the first message).
pub fn check_private(kem: HpkeKem, sk: &[u8]) -> bool {
    match kem {
        HpkeKem::X25519 => <X25519HkdfSha256 as Kem>::PrivateKey::from_bytes(sk).is_ok(),
        HpkeKem::P256 => <DhP256HkdfSha256 as Kem>::PrivateKey::from_bytes(sk).is_ok(),
        HpkeKem::P384 => <DhP384HkdfSha384 as Kem>::PrivateKey::from_bytes(sk).is_ok(),
    }
}

/// What one call does, so one dispatch serves both directions.
enum Call<'a> {
    Open {
        sk: &'a [u8],
        enc: &'a [u8],
        ct: &'a [u8],
    },
    Seal {
        pk: &'a [u8],
        pt: &'a [u8],
    },
}

/// Result of a call: the plaintext, or (enc, ciphertext).
type Out = (Vec<u8>, Vec<u8>);

fn run<A: Aead, K: Kdf, M: Kem>(call: Call<'_>, info: &[u8], aad: &[u8]) -> Result<Out, KeysError> {
    let hpke = |e: hpke::HpkeError| KeysError::Hpke(e.to_string());
    match call {
        Call::Open { sk, enc, ct } => {
            let sk = M::PrivateKey::from_bytes(sk).map_err(hpke)?;
            let enc = M::EncappedKey::from_bytes(enc).map_err(|_| {
                KeysError::Malformed("the encapsulated key does not parse for the key's KEM".into())
            })?;
            let pt = hpke::single_shot_open::<A, K, M>(&OpModeR::Base, &sk, &enc, info, ct, aad)
                .map_err(|_| {
                    KeysError::Hpke("cannot open the message: wrong key, or it was altered".into())
                })?;
            Ok((pt, Vec::new()))
        }
        Call::Seal { pk, pt } => {
            let pk = M::PublicKey::from_bytes(pk).map_err(hpke)?;
            let (enc, ct) = hpke::single_shot_seal::<A, K, M>(&OpModeS::Base, &pk, info, pt, aad)
                .map_err(hpke)?;
            Ok((enc.to_bytes().to_vec(), ct))
        }
    }
}

fn by_aead<K: Kdf, M: Kem>(
    s: HpkeSuite,
    call: Call<'_>,
    info: &[u8],
    aad: &[u8],
) -> Result<Out, KeysError> {
    match s.aead {
        HpkeAead::Aes128Gcm => run::<AesGcm128, K, M>(call, info, aad),
        HpkeAead::Aes256Gcm => run::<AesGcm256, K, M>(call, info, aad),
        HpkeAead::ChaCha20Poly1305 => run::<ChaCha20Poly1305, K, M>(call, info, aad),
    }
}

fn by_kdf<M: Kem>(s: HpkeSuite, call: Call<'_>, info: &[u8], aad: &[u8]) -> Result<Out, KeysError> {
    match s.kdf {
        HpkeKdf::Sha256 => by_aead::<HkdfSha256, M>(s, call, info, aad),
        HpkeKdf::Sha384 => by_aead::<HkdfSha384, M>(s, call, info, aad),
        HpkeKdf::Sha512 => by_aead::<HkdfSha512, M>(s, call, info, aad),
    }
}

fn dispatch(s: HpkeSuite, call: Call<'_>, info: &[u8], aad: &[u8]) -> Result<Out, KeysError> {
    match s.kem {
        HpkeKem::X25519 => by_kdf::<X25519HkdfSha256>(s, call, info, aad),
        HpkeKem::P256 => by_kdf::<DhP256HkdfSha256>(s, call, info, aad),
        HpkeKem::P384 => by_kdf::<DhP384HkdfSha384>(s, call, info, aad),
    }
}

/// RFC 9180 §6.1 `OpenBase`.
pub fn open(
    s: HpkeSuite,
    sk: &[u8],
    enc: &[u8],
    info: &[u8],
    aad: &[u8],
    ct: &[u8],
) -> Result<Vec<u8>, KeysError> {
    dispatch(s, Call::Open { sk, enc, ct }, info, aad).map(|(pt, _)| pt)
}

/// RFC 9180 §6.1 `SealBase`: (enc, ciphertext). The service only opens;
/// this is for clients and tests.
pub fn seal(
    s: HpkeSuite,
    pk: &[u8],
    info: &[u8],
    aad: &[u8],
    pt: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), KeysError> {
    dispatch(s, Call::Seal { pk, pt }, info, aad)
}

/// Length of the encapsulated key (`Nenc`, RFC 9180 §7.1) per KEM.
pub fn enc_len(kem: HpkeKem) -> usize {
    match kem {
        HpkeKem::X25519 => 32,
        HpkeKem::P256 => 65,
        HpkeKem::P384 => 97,
    }
}

/// One key config ([RFC 9458 §3.1]):
///
/// ```text
/// HPKE Symmetric Algorithms { HPKE KDF ID (16), HPKE AEAD ID (16) }
/// Key Config { Key Identifier (8), HPKE KEM ID (16), HPKE Public Key (Npk * 8),
///   HPKE Symmetric Algorithms Length (16) = 4..65532,
///   HPKE Symmetric Algorithms (32) ..., }
/// ```
///
/// One key row has one suite, so one symmetric pair.
///
/// [RFC 9458 §3.1]: https://www.rfc-editor.org/rfc/rfc9458#section-3.1
pub fn key_config(id: u8, s: HpkeSuite, public: &[u8]) -> Vec<u8> {
    let mut out = vec![id];
    out.extend_from_slice(&s.kem.id().to_be_bytes());
    out.extend_from_slice(public);
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&s.kdf.id().to_be_bytes());
    out.extend_from_slice(&s.aead.id().to_be_bytes());
    out
}

/// The `application/ohttp-keys` body ([RFC 9458 §3.2]): each key config
/// prefixed by its length in two bytes.
///
/// [RFC 9458 §3.2]: https://www.rfc-editor.org/rfc/rfc9458#section-3.2
pub fn ohttp_keys(configs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in configs {
        // A config is at most 1 + 2 + 97 + 2 + 4 bytes.
        let len = u16::try_from(c.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(c);
    }
    out
}

/// The header of an encapsulated request ([RFC 9458 §4.3]): which key and
/// suite the client used.
///
/// [RFC 9458 §4.3]: https://www.rfc-editor.org/rfc/rfc9458#section-4.3
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// Key Identifier.
    pub key_id: u8,
    /// HPKE KEM ID.
    pub kem_id: u16,
    /// HPKE KDF ID.
    pub kdf_id: u16,
    /// HPKE AEAD ID.
    pub aead_id: u16,
}

impl RequestHeader {
    /// Length on the wire.
    pub const LEN: usize = 7;

    /// Parses the first seven bytes of an encapsulated request.
    pub fn parse(bytes: &[u8]) -> Result<RequestHeader, KeysError> {
        let h = bytes.get(..Self::LEN).ok_or_else(|| {
            KeysError::Malformed(format!(
                "an encapsulated request has a {}-byte header",
                Self::LEN
            ))
        })?;
        let u16_at = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        Ok(RequestHeader {
            key_id: h[0],
            kem_id: u16_at(1),
            kdf_id: u16_at(3),
            aead_id: u16_at(5),
        })
    }

    /// The header bytes.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let [k1, k2] = self.kem_id.to_be_bytes();
        let [d1, d2] = self.kdf_id.to_be_bytes();
        let [a1, a2] = self.aead_id.to_be_bytes();
        [self.key_id, k1, k2, d1, d2, a1, a2]
    }

    /// RFC 9458 §4.3 `info`: "message/bhttp request", a zero byte, the header.
    pub fn info(self) -> Vec<u8> {
        let mut info = b"message/bhttp request\0".to_vec();
        info.extend_from_slice(&self.to_bytes());
        info
    }

    /// True when the header names exactly this suite.
    pub fn matches(self, s: HpkeSuite) -> bool {
        self.kem_id == s.kem.id() && self.kdf_id == s.kdf.id() && self.aead_id == s.aead.id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_suite_seals_and_opens() {
        for kem in [HpkeKem::X25519, HpkeKem::P256, HpkeKem::P384] {
            for kdf in [HpkeKdf::Sha256, HpkeKdf::Sha384, HpkeKdf::Sha512] {
                for aead in [
                    HpkeAead::Aes128Gcm,
                    HpkeAead::Aes256Gcm,
                    HpkeAead::ChaCha20Poly1305,
                ] {
                    let s = HpkeSuite { kem, kdf, aead };
                    let (sk, pk) = generate(kem);
                    assert!(check_private(kem, &sk));
                    let (enc, ct) = seal(s, &pk, b"info", b"aad", b"hello").unwrap();
                    assert_eq!(enc.len(), enc_len(kem));
                    assert_eq!(open(s, &sk, &enc, b"info", b"aad", &ct).unwrap(), b"hello");
                    let e = open(s, &sk, &enc, b"other", b"aad", &ct).unwrap_err();
                    assert!(e.to_string().contains("cannot open"), "{e}");
                }
            }
        }
    }

    /// RFC 9458 Appendix A's key config: id 1, X25519, HKDF-SHA256 with
    /// AES-128-GCM and ChaCha20-Poly1305; our one-pair config has the same layout.
    #[test]
    fn key_config_layout_is_rfc_9458_section_3_1() {
        let pk = [0xAB; 32];
        let s = HpkeSuite {
            kem: HpkeKem::X25519,
            kdf: HpkeKdf::Sha256,
            aead: HpkeAead::Aes128Gcm,
        };
        let c = key_config(1, s, &pk);
        assert_eq!(&c[..3], &[0x01, 0x00, 0x20]);
        assert_eq!(&c[35..], &[0x00, 0x04, 0x00, 0x01, 0x00, 0x01]);
        let body = ohttp_keys(&[c.clone(), c.clone()]);
        assert_eq!(&body[..2], &[0x00, 41]);
        assert_eq!(body.len(), 2 * (2 + 41));
    }

    #[test]
    fn a_short_request_is_refused_not_a_panic() {
        let e = RequestHeader::parse(&[1, 0]).unwrap_err();
        assert!(e.to_string().contains("7-byte header"), "{e}");
    }
}
