//! The key model: kinds, states, suites, and the facts the planner reads.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which rotator a key belongs to. Ids, policies and sweeps are per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// RFC 9180 HPKE key configs, published as RFC 9458 `application/ohttp-keys`.
    Hpke,
    /// JWS signing keys, published as an RFC 7517 JWKS.
    Signing,
}

impl Kind {
    /// The name used in the store and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hpke => "hpke",
            Kind::Signing => "signing",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hpke" => Ok(Kind::Hpke),
            "signing" => Ok(Kind::Signing),
            _ => Err(format!("unknown key kind {s:?}: hpke or signing")),
        }
    }
}

/// Where a key is in its life. For HPKE: pending decrypts but is not
/// advertised (replicas' caches learn the private key before any client
/// sees the public one); active is advertised and decrypts; expired is no
/// longer advertised but still decrypts (clients hold cached configs). For
/// signing keys: pending is published but does not sign yet (verifiers'
/// cached JWKS learn it first); active signs; expired stays published until
/// every token it signed has expired and every cached JWKS has refreshed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Usable, not advertised (HPKE) / published, not signing (signing).
    Pending,
    /// Advertised and usable / signs.
    Active,
    /// Not advertised, still usable / published, not signing.
    Expired,
}

impl State {
    /// The name used in the store and in messages.
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Active => "active",
            State::Expired => "expired",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(State::Pending),
            "active" => Ok(State::Active),
            "expired" => Ok(State::Expired),
            _ => Err(format!("unknown key state {s:?}")),
        }
    }
}

/// RFC 9180 §7.1 KEMs this crate offers (the DHKEMs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HpkeKem {
    /// DHKEM(X25519, HKDF-SHA256), 0x0020.
    X25519,
    /// DHKEM(P-256, HKDF-SHA256), 0x0010.
    P256,
    /// DHKEM(P-384, HKDF-SHA384), 0x0011.
    P384,
}

/// RFC 9180 §7.2 KDFs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HpkeKdf {
    /// HKDF-SHA256, 0x0001.
    Sha256,
    /// HKDF-SHA384, 0x0002.
    Sha384,
    /// HKDF-SHA512, 0x0003.
    Sha512,
}

/// RFC 9180 §7.3 AEADs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HpkeAead {
    /// AES-128-GCM, 0x0001.
    Aes128Gcm,
    /// AES-256-GCM, 0x0002.
    Aes256Gcm,
    /// ChaCha20-Poly1305, 0x0003.
    ChaCha20Poly1305,
}

impl HpkeKem {
    /// RFC 9180 §7.1 identifier.
    pub fn id(self) -> u16 {
        match self {
            HpkeKem::X25519 => 0x0020,
            HpkeKem::P256 => 0x0010,
            HpkeKem::P384 => 0x0011,
        }
    }
    fn name(self) -> &'static str {
        match self {
            HpkeKem::X25519 => "X25519",
            HpkeKem::P256 => "P-256",
            HpkeKem::P384 => "P-384",
        }
    }
}

impl HpkeKdf {
    /// RFC 9180 §7.2 identifier.
    pub fn id(self) -> u16 {
        match self {
            HpkeKdf::Sha256 => 0x0001,
            HpkeKdf::Sha384 => 0x0002,
            HpkeKdf::Sha512 => 0x0003,
        }
    }
    fn name(self) -> &'static str {
        match self {
            HpkeKdf::Sha256 => "HKDF-SHA256",
            HpkeKdf::Sha384 => "HKDF-SHA384",
            HpkeKdf::Sha512 => "HKDF-SHA512",
        }
    }
}

impl HpkeAead {
    /// RFC 9180 §7.3 identifier.
    pub fn id(self) -> u16 {
        match self {
            HpkeAead::Aes128Gcm => 0x0001,
            HpkeAead::Aes256Gcm => 0x0002,
            HpkeAead::ChaCha20Poly1305 => 0x0003,
        }
    }
    fn name(self) -> &'static str {
        match self {
            HpkeAead::Aes128Gcm => "AES-128-GCM",
            HpkeAead::Aes256Gcm => "AES-256-GCM",
            HpkeAead::ChaCha20Poly1305 => "ChaCha20-Poly1305",
        }
    }
}

/// JWS algorithms for signing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SigningAlg {
    /// Ed25519 (RFC 8037 `EdDSA`).
    Ed25519,
    /// ECDSA P-256 with SHA-256 (RFC 7518 `ES256`).
    Es256,
}

/// A key's algorithms: what a configured suite names and a key row stores.
/// Written `X25519/HKDF-SHA256/AES-128-GCM` (KEM/KDF/AEAD) for HPKE, and
/// `Ed25519` or `ES256` for signing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Suite {
    /// An HPKE suite.
    Hpke(HpkeKem, HpkeKdf, HpkeAead),
    /// A signing algorithm.
    Signing(SigningAlg),
}

impl Suite {
    /// The default HPKE suite (the issue's, and the most widely deployed).
    pub const DEFAULT_HPKE: Suite =
        Suite::Hpke(HpkeKem::X25519, HpkeKdf::Sha256, HpkeAead::Aes128Gcm);

    /// Which kind of key this suite makes.
    pub fn kind(self) -> Kind {
        match self {
            Suite::Hpke(..) => Kind::Hpke,
            Suite::Signing(_) => Kind::Signing,
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Suite::Hpke(kem, kdf, aead) => {
                write!(f, "{}/{}/{}", kem.name(), kdf.name(), aead.name())
            }
            Suite::Signing(SigningAlg::Ed25519) => f.write_str("Ed25519"),
            Suite::Signing(SigningAlg::Es256) => f.write_str("ES256"),
        }
    }
}

impl FromStr for Suite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "unknown suite {s:?}: write KEM/KDF/AEAD for HPKE (KEM X25519, P-256 or P-384; KDF HKDF-SHA256, \
                 HKDF-SHA384 or HKDF-SHA512; AEAD AES-128-GCM, AES-256-GCM or ChaCha20-Poly1305), or Ed25519 / ES256"
            )
        };
        match s {
            "Ed25519" => return Ok(Suite::Signing(SigningAlg::Ed25519)),
            "ES256" => return Ok(Suite::Signing(SigningAlg::Es256)),
            _ => {}
        }
        let mut parts = s.split('/');
        let (Some(kem), Some(kdf), Some(aead), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let kem = [HpkeKem::X25519, HpkeKem::P256, HpkeKem::P384]
            .into_iter()
            .find(|k| k.name() == kem)
            .ok_or_else(bad)?;
        let kdf = [HpkeKdf::Sha256, HpkeKdf::Sha384, HpkeKdf::Sha512]
            .into_iter()
            .find(|k| k.name() == kdf)
            .ok_or_else(bad)?;
        let aead = [
            HpkeAead::Aes128Gcm,
            HpkeAead::Aes256Gcm,
            HpkeAead::ChaCha20Poly1305,
        ]
        .into_iter()
        .find(|k| k.name() == aead)
        .ok_or_else(bad)?;
        Ok(Suite::Hpke(kem, kdf, aead))
    }
}

impl Serialize for Suite {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Suite {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What the planner knows of a key: no key material, so plans are cheap and
/// can be printed (`keys sweep --dry-run`) and property-tested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KeyMeta {
    /// Key id, unique within its kind (RFC 9458 §3: one octet).
    pub id: u8,
    /// Its algorithms.
    pub suite: Suite,
    /// Its state.
    pub state: State,
    /// Last state change, unix seconds.
    pub changed_at: i64,
}

impl KeyMeta {
    /// The fixed order "newest" means: by last state change, then by id.
    /// Janus broke one-second ties by HashMap order, i.e. at random.
    pub fn age_key(&self) -> (i64, u8) {
        (self.changed_at, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_round_trip_through_their_names() {
        for kem in [HpkeKem::X25519, HpkeKem::P256, HpkeKem::P384] {
            for kdf in [HpkeKdf::Sha256, HpkeKdf::Sha384, HpkeKdf::Sha512] {
                for aead in [
                    HpkeAead::Aes128Gcm,
                    HpkeAead::Aes256Gcm,
                    HpkeAead::ChaCha20Poly1305,
                ] {
                    let s = Suite::Hpke(kem, kdf, aead);
                    assert_eq!(s.to_string().parse::<Suite>(), Ok(s));
                }
            }
        }
        assert_eq!(
            "ES256".parse::<Suite>(),
            Ok(Suite::Signing(SigningAlg::Es256))
        );
        let e = "X25519/HKDF-SHA1/AES-128-GCM".parse::<Suite>().unwrap_err();
        assert!(e.contains("HKDF-SHA256"), "{e}");
    }
}
