//! What a replica holds: every key it may use, decrypted, loaded from the
//! store. HPKE: pending, active and expired keys all open (a client may hold
//! a config the replica has not advertised yet, or no longer advertises);
//! only active ones are advertised. Signing: pending, active and expired
//! keys are all published; only the newest active key signs.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use certkeeper_store::Store;
use serde_json::{Value, json};

use crate::hpke::{self, HpkeSuite, RequestHeader};
use crate::model::{State, Suite};
use crate::rotator::meta;
use crate::{Kek, KeysError, signing};

/// One usable HPKE key.
#[derive(Clone)]
struct HpkeKey {
    suite: HpkeSuite,
    state: State,
    public: Vec<u8>,
    private: Vec<u8>,
}

/// One signing key.
#[derive(Clone)]
struct SignKey {
    alg: crate::model::SigningAlg,
    state: State,
    changed_at: i64,
    id: u8,
    kid: String,
    entry: Value,
    pkcs8: Vec<u8>,
}

/// Every usable key of every kind, decrypted. `Debug` shows ids only.
#[derive(Clone, Default)]
pub struct Keyring {
    hpke: BTreeMap<u8, HpkeKey>,
    signing: Vec<SignKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("hpke_ids", &self.hpke.keys().collect::<Vec<_>>())
            .field(
                "signing_ids",
                &self.signing.iter().map(|k| k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    /// Loads and decrypts every stored key. A key that does not decrypt is
    /// an error (wrong KEK file), never silently skipped.
    pub async fn load(store: &Store, kek: &Kek) -> Result<Keyring, KeysError> {
        let mut ring = Keyring::default();
        for row in store.keys_all().await? {
            let m = meta(&row)?;
            let corrupt = |what: &str| {
                KeysError::Corrupt(
                    format!("{}/{}", row.kind, row.id),
                    format!("{what} is not base64"),
                )
            };
            let public = B64
                .decode(&row.public_key)
                .map_err(|_| corrupt("public key"))?;
            let sealed = B64
                .decode(&row.private_sealed)
                .map_err(|_| corrupt("sealed private key"))?;
            let private = kek
                .open(&row.kind, &row.suite, &public, &sealed)
                .ok_or_else(|| KeysError::Unseal {
                    kind: row.kind.clone(),
                    id: row.id,
                })?;
            match m.suite {
                Suite::Hpke(kem, kdf, aead) => {
                    if !hpke::check_private(kem, &private) {
                        return Err(KeysError::Corrupt(
                            format!("hpke/{}", row.id),
                            "private key does not parse".into(),
                        ));
                    }
                    ring.hpke.insert(
                        m.id,
                        HpkeKey {
                            suite: HpkeSuite { kem, kdf, aead },
                            state: m.state,
                            public,
                            private,
                        },
                    );
                }
                Suite::Signing(alg) => ring.signing.push(SignKey {
                    alg,
                    state: m.state,
                    changed_at: m.changed_at,
                    id: m.id,
                    kid: signing::kid(&public)?,
                    entry: signing::jwks_entry(&public, alg)?,
                    pkcs8: private,
                }),
            }
        }
        Ok(ring)
    }

    /// The `application/ohttp-keys` body: the active key configs (RFC 9458 §3.2).
    pub fn ohttp_keys(&self) -> Vec<u8> {
        let configs: Vec<Vec<u8>> = self
            .hpke
            .iter()
            .filter(|(_, k)| k.state == State::Active)
            .map(|(id, k)| hpke::key_config(*id, k.suite, &k.public))
            .collect();
        hpke::ohttp_keys(&configs)
    }

    /// RFC 9180 `OpenBase` with key `id`: any pending, active or expired key.
    pub fn open(
        &self,
        id: u8,
        enc: &[u8],
        info: &[u8],
        aad: &[u8],
        ct: &[u8],
    ) -> Result<Vec<u8>, KeysError> {
        let key = self.hpke.get(&id).ok_or(KeysError::UnknownKeyId(id))?;
        hpke::open(key.suite, &key.private, enc, info, aad, ct)
    }

    /// Opens an RFC 9458 §4.3 encapsulated request (`hdr || enc || ct`) and
    /// returns the plaintext request.
    pub fn open_request(&self, request: &[u8]) -> Result<Vec<u8>, KeysError> {
        let hdr = RequestHeader::parse(request)?;
        let key = self
            .hpke
            .get(&hdr.key_id)
            .ok_or(KeysError::UnknownKeyId(hdr.key_id))?;
        if !hdr.matches(key.suite) {
            return Err(KeysError::Malformed(format!(
                "key config id {} is {}, but the request names KEM {:#06x}, KDF {:#06x}, AEAD {:#06x}",
                hdr.key_id,
                key.suite.suite(),
                hdr.kem_id,
                hdr.kdf_id,
                hdr.aead_id
            )));
        }
        let rest = &request[RequestHeader::LEN..];
        let (enc, ct) = rest
            .split_at_checked(hpke::enc_len(key.suite.kem))
            .ok_or_else(|| {
                KeysError::Malformed("the request is shorter than its encapsulated key".into())
            })?;
        hpke::open(key.suite, &key.private, enc, &hdr.info(), b"", ct)
    }

    /// HPKE key ids held, with their states.
    pub fn hpke_ids(&self) -> Vec<(u8, State)> {
        self.hpke.iter().map(|(id, k)| (*id, k.state)).collect()
    }

    /// The JWKS: every pending, active and expired signing key (RFC 7517 §5).
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.signing.iter().map(|k| k.entry.clone()).collect::<Vec<_>>() })
    }

    /// Signs `claims` as a JWT with the newest active signing key (of `alg`
    /// when given). `None` when no key is active.
    pub fn sign_jwt(
        &self,
        alg: Option<crate::model::SigningAlg>,
        claims: &Value,
    ) -> Option<Result<String, KeysError>> {
        let key = self
            .signing
            .iter()
            .filter(|k| k.state == State::Active && alg.is_none_or(|a| a == k.alg))
            .max_by_key(|k| (k.changed_at, k.id))?;
        Some(signing::sign_jwt(&key.pkcs8, &key.kid, claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HpkeAead, HpkeKdf, HpkeKem};
    use proptest::prelude::*;

    fn ring_with(states: &[(u8, State)]) -> Keyring {
        let suite = HpkeSuite {
            kem: HpkeKem::X25519,
            kdf: HpkeKdf::Sha256,
            aead: HpkeAead::Aes128Gcm,
        };
        let mut ring = Keyring::default();
        for &(id, state) in states {
            let (private, public) = hpke::generate(suite.kem);
            ring.hpke.insert(
                id,
                HpkeKey {
                    suite,
                    state,
                    public,
                    private,
                },
            );
        }
        ring
    }

    fn request_to(ring: &Keyring, id: u8, msg: &[u8]) -> Vec<u8> {
        let key = &ring.hpke[&id];
        let hdr = RequestHeader {
            key_id: id,
            kem_id: key.suite.kem.id(),
            kdf_id: key.suite.kdf.id(),
            aead_id: key.suite.aead.id(),
        };
        let (enc, ct) = hpke::seal(key.suite, &key.public, &hdr.info(), b"", msg).unwrap();
        [hdr.to_bytes().as_slice(), &enc, &ct].concat()
    }

    /// Pending keys open too: a client may hold a config a replica has not
    /// advertised yet (another replica already did). Only active ones are advertised.
    #[test]
    fn pending_active_and_expired_keys_all_open_but_only_active_is_advertised() {
        let ring = ring_with(&[(1, State::Pending), (2, State::Active), (3, State::Expired)]);
        for id in [1, 2, 3] {
            assert_eq!(
                ring.open_request(&request_to(&ring, id, b"m")).unwrap(),
                b"m"
            );
        }
        let body = ring.ohttp_keys();
        assert_eq!(body.len(), 2 + 41);
        assert_eq!(body[2], 2);
    }

    proptest! {
        // Each case makes a key and seals in a debug build: fewer cases.
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Network input never panics: any bytes are refused with an error.
        #[test]
        fn arbitrary_requests_are_refused_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), id in 0u8..3) {
            let ring = ring_with(&[(1, State::Active)]);
            let mut request = bytes;
            if let Some(first) = request.first_mut() {
                *first = id;
            }
            prop_assert!(ring.open_request(&request).is_err());
        }

        /// A valid request with any byte flipped is refused.
        #[test]
        fn a_tampered_request_is_refused(at in 0usize..200, bit in 0u8..8) {
            let ring = ring_with(&[(1, State::Active)]);
            let mut request = request_to(&ring, 1, b"hello");
            let at = at % request.len();
            request[at] ^= 1 << bit;
            prop_assert!(ring.open_request(&request).is_err());
        }
    }
}
