use serde_json::{Value, json};

use super::*;
use crate::testutil::{pkcs8_keys, signing_keys};

const URL: &str = "https://ca.example/acme/new-order";

fn header_jwk(key: &SigningKey) -> Value {
    json!({"nonce": "n0nce", "url": URL, "jwk": key.jwk().to_json()})
}

fn header_kid() -> Value {
    json!({"nonce": "n0nce", "url": URL, "kid": "https://ca.example/acme/acct/1"})
}

fn to_body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Builds a flattened JWS from raw parts, signing with `key` whatever
/// header is given; for crafting requests `sign` refuses to produce.
fn hand_signed(key: &SigningKey, header: &Value, payload: &[u8]) -> Value {
    let protected = b64::encode(&to_body(header));
    let payload = b64::encode(payload);
    let sig = key
        .sign_raw(format!("{protected}.{payload}").as_bytes())
        .unwrap();
    json!({"protected": protected, "payload": payload, "signature": b64::encode(&sig)})
}

#[test]
fn sign_parse_verify_round_trip_all_key_types() {
    for key in signing_keys() {
        let jwk = key.jwk();
        let payload = br#"{"identifiers":[{"type":"dns","value":"example.com"}]}"#;

        let body = to_body(&sign(&key, header_jwk(&key), payload).unwrap());
        let jws = Jws::parse(&body).unwrap();
        assert_eq!(jws.protected.alg, key.alg());
        assert_eq!(jws.protected.nonce.as_deref(), Some("n0nce"));
        assert_eq!(jws.protected.url, URL);
        assert_eq!(jws.protected.key, KeyRef::Jwk(jwk.clone()));
        assert_eq!(jws.protected.raw["alg"], json!(key.alg().name()));
        assert_eq!(jws.payload, payload);
        assert!(!jws.is_post_as_get());
        jws.verify(&jwk).unwrap();
        let v: Value = jws.payload_json().unwrap();
        assert_eq!(v["identifiers"][0]["value"], json!("example.com"));

        let body = to_body(&sign(&key, header_kid(), payload).unwrap());
        let jws = Jws::parse(&body).unwrap();
        assert_eq!(
            jws.protected.key.kid(),
            Some("https://ca.example/acme/acct/1")
        );
        assert_eq!(jws.protected.key.jwk(), None);
        jws.verify(&jwk).unwrap();
    }
}

#[test]
fn post_as_get_has_empty_payload() {
    let key = SigningKey::generate_p256().unwrap();
    let v = sign(&key, header_kid(), b"").unwrap();
    // RFC 8555 §6.3: the payload field is the empty string.
    assert_eq!(v["payload"], json!(""));
    let jws = Jws::parse(&to_body(&v)).unwrap();
    assert!(jws.is_post_as_get());
    assert!(jws.payload.is_empty());
    jws.verify(&key.jwk()).unwrap();
    assert!(matches!(
        jws.payload_json::<Value>(),
        Err(ProtoError::Malformed(_))
    ));
}

#[test]
fn tampering_breaks_the_signature() {
    for key in signing_keys() {
        let jwk = key.jwk();
        let v = sign(&key, header_kid(), b"{\"a\":1}").unwrap();

        let mut payload = v.clone();
        payload["payload"] = json!(b64::encode(b"{\"a\":2}"));
        let jws = Jws::parse(&to_body(&payload)).unwrap();
        assert_eq!(jws.verify(&jwk), Err(ProtoError::BadSignature));

        let mut header = v.clone();
        let other = json!({"alg": key.alg().name(), "nonce": "n0nce", "url": "https://evil.example/", "kid": "https://ca.example/acme/acct/1"});
        header["protected"] = json!(b64::encode(&to_body(&other)));
        let jws = Jws::parse(&to_body(&header)).unwrap();
        assert_eq!(jws.verify(&jwk), Err(ProtoError::BadSignature));

        let mut sig = v.clone();
        let mut raw = b64::decode(v["signature"].as_str().unwrap()).unwrap();
        raw[5] ^= 0x40;
        sig["signature"] = json!(b64::encode(&raw));
        let jws = Jws::parse(&to_body(&sig)).unwrap();
        assert_eq!(jws.verify(&jwk), Err(ProtoError::BadSignature));

        let mut empty = v.clone();
        empty["signature"] = json!("");
        let jws = Jws::parse(&to_body(&empty)).unwrap();
        assert_eq!(jws.verify(&jwk), Err(ProtoError::BadSignature));
    }
}

#[test]
fn other_key_of_same_type_fails() {
    let a = SigningKey::generate_p256().unwrap();
    let b = SigningKey::generate_p256().unwrap();
    let jws = Jws::parse(&to_body(&sign(&a, header_kid(), b"{}").unwrap())).unwrap();
    assert_eq!(jws.verify(&b.jwk()), Err(ProtoError::BadSignature));
}

#[test]
fn alg_must_match_key() {
    let keys = signing_keys();
    for key in &keys {
        for alg in Alg::ALL {
            if alg == key.alg() {
                continue;
            }
            // Embedded JWK: refused at parse time.
            let mut header = header_jwk(key);
            header["alg"] = json!(alg.name());
            let body = to_body(&hand_signed(key, &header, b"{}"));
            assert!(
                matches!(Jws::parse(&body), Err(ProtoError::BadSignatureAlgorithm(_))),
                "{alg} with {:?}",
                key.alg()
            );

            // kid: the account key is only known at verify time.
            let mut header = header_kid();
            header["alg"] = json!(alg.name());
            let jws = Jws::parse(&to_body(&hand_signed(key, &header, b"{}"))).unwrap();
            assert!(matches!(
                jws.verify(&key.jwk()),
                Err(ProtoError::BadSignatureAlgorithm(_))
            ));
        }
    }
}

#[test]
fn rejects_unsupported_algorithms() {
    let key = SigningKey::generate_p256().unwrap();
    // RFC 8555 §6.2: "none" and MAC algorithms are never acceptable.
    for alg in [
        "none", "HS256", "HS512", "RS512", "PS256", "ES512", "es256", "Ed25519",
    ] {
        let mut header = header_kid();
        header["alg"] = json!(alg);
        let body = to_body(&hand_signed(&key, &header, b"{}"));
        let err = Jws::parse(&body).unwrap_err();
        assert!(
            matches!(err, ProtoError::BadSignatureAlgorithm(_)),
            "{alg}: {err}"
        );
        assert_eq!(
            err.problem_type(),
            crate::ProblemType::BadSignatureAlgorithm
        );
    }
    // alg "none" with an empty signature, the classic downgrade.
    let protected = b64::encode(br#"{"alg":"none","nonce":"n","url":"u","kid":"k"}"#);
    let body = to_body(&json!({"protected": protected, "payload": "", "signature": ""}));
    assert!(matches!(
        Jws::parse(&body),
        Err(ProtoError::BadSignatureAlgorithm(_))
    ));
}

#[test]
fn header_key_rules() {
    let key = SigningKey::generate_p256().unwrap();

    let mut both = header_jwk(&key);
    both["kid"] = json!("https://ca.example/acme/acct/1");
    let err = Jws::parse(&to_body(&hand_signed(&key, &both, b"{}"))).unwrap_err();
    assert!(matches!(err, ProtoError::Malformed(_)), "{err}");

    let neither = json!({"alg": "ES256", "nonce": "n", "url": URL});
    let err = Jws::parse(&to_body(&hand_signed(&key, &neither, b"{}"))).unwrap_err();
    assert!(matches!(err, ProtoError::Malformed(_)), "{err}");

    let bad_jwk =
        json!({"alg": "ES256", "nonce": "n", "url": URL, "jwk": {"kty": "oct", "k": "AA"}});
    let err = Jws::parse(&to_body(&hand_signed(&key, &bad_jwk, b"{}"))).unwrap_err();
    assert!(matches!(err, ProtoError::BadPublicKey(_)), "{err}");
}

#[test]
fn rejects_malformed_headers() {
    let key = SigningKey::generate_p256().unwrap();
    let cases = [
        json!({"alg": "ES256", "nonce": "n", "kid": "k"}),
        json!({"alg": "ES256", "nonce": "n", "kid": "k", "url": 1}),
        json!({"alg": "ES256", "nonce": 7, "kid": "k", "url": URL}),
        json!({"alg": "ES256", "nonce": "n", "kid": ["k"], "url": URL}),
        json!({"nonce": "n", "kid": "k", "url": URL}),
        json!({"alg": 256, "nonce": "n", "kid": "k", "url": URL}),
        json!({"alg": "ES256", "nonce": "n", "kid": "k", "url": URL, "crit": ["exp"], "exp": 1}),
        json!({"alg": "ES256", "nonce": "n", "kid": "k", "url": URL, "b64": false}),
        json!(["not", "an", "object"]),
    ];
    for header in cases {
        let err = Jws::parse(&to_body(&hand_signed(&key, &header, b"{}"))).unwrap_err();
        assert!(matches!(err, ProtoError::Malformed(_)), "{header}: {err}");
    }
}

#[test]
fn rejects_malformed_envelopes() {
    let key = SigningKey::generate_p256().unwrap();
    let good = sign(&key, header_kid(), b"{}").unwrap();

    // RFC 8555 §6.2: general serialization and unprotected headers.
    let general = json!({
        "payload": good["payload"],
        "signatures": [{"protected": good["protected"], "signature": good["signature"]}],
    });
    let mut with_header = good.clone();
    with_header["header"] = json!({"kid": "k"});
    let mut no_payload = good.clone();
    no_payload.as_object_mut().unwrap().remove("payload");
    let mut padded = good.clone();
    padded["signature"] = json!(format!("{}==", good["signature"].as_str().unwrap()));
    let mut std_alphabet = good.clone();
    std_alphabet["payload"] = json!("e30+");
    let mut not_string = good.clone();
    not_string["protected"] = json!({"alg": "ES256"});
    let mut not_json_header = good.clone();
    not_json_header["protected"] = json!(b64::encode(b"{nope"));

    let bodies = [
        to_body(&general),
        to_body(&with_header),
        to_body(&no_payload),
        to_body(&padded),
        to_body(&std_alphabet),
        to_body(&not_string),
        to_body(&not_json_header),
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{".to_vec(),
        b"eyJhbGciOiJFUzI1NiJ9.e30.AAAA".to_vec(),
    ];
    for body in bodies {
        let err = Jws::parse(&body).unwrap_err();
        assert!(
            matches!(err, ProtoError::Malformed(_)),
            "{}: {err}",
            String::from_utf8_lossy(&body)
        );
    }

    // RFC 7515 §7.2: unknown top-level members are ignored.
    let mut extra = good.clone();
    extra["x-extra"] = json!(1);
    Jws::parse(&to_body(&extra))
        .unwrap()
        .verify(&key.jwk())
        .unwrap();
}

#[test]
fn key_change_inner_jws() {
    // RFC 8555 §7.3.5: the inner JWS is signed by the new key, carries it as
    // "jwk", repeats the outer "url" and has no nonce.
    let old = SigningKey::generate_p256().unwrap();
    let new = SigningKey::from_pkcs8_der(&pkcs8_keys()[3]).unwrap();
    let url = "https://ca.example/acme/key-change";
    let account = "https://ca.example/acme/acct/1";
    let inner = sign(
        &new,
        json!({"url": url, "jwk": new.jwk().to_json()}),
        &to_body(&json!({"account": account, "oldKey": old.jwk().to_json()})),
    )
    .unwrap();
    let outer = sign(
        &old,
        json!({"nonce": "n", "url": url, "kid": account}),
        &to_body(&inner),
    )
    .unwrap();

    let outer = Jws::parse(&to_body(&outer)).unwrap();
    outer.verify(&old.jwk()).unwrap();
    let inner = Jws::parse(&outer.payload).unwrap();
    assert_eq!(inner.protected.nonce, None);
    assert_eq!(inner.protected.url, outer.protected.url);
    let new_jwk = inner.protected.key.jwk().unwrap();
    inner.verify(new_jwk).unwrap();
    let body: Value = inner.payload_json().unwrap();
    assert_eq!(Jwk::from_json(&body["oldKey"]).unwrap(), old.jwk());
}

#[test]
fn sign_requires_object_header_and_sets_alg() {
    let key = SigningKey::generate_p256().unwrap();
    assert!(sign(&key, json!("x"), b"").is_err());
    let v = sign(&key, json!({"alg": "none", "url": URL, "kid": "k"}), b"").unwrap();
    let jws = Jws::parse(&to_body(&v)).unwrap();
    assert_eq!(jws.protected.alg, Alg::Es256);
}

#[test]
fn pkcs8_round_trip_and_detection() {
    let expected = [Alg::Es256, Alg::Es384, Alg::Rs256, Alg::EdDsa];
    for (der, alg) in pkcs8_keys().iter().zip(expected) {
        let key = SigningKey::from_pkcs8_der(der).unwrap();
        assert_eq!(key.alg(), alg);
        let again = SigningKey::from_pkcs8_der(&key.to_pkcs8_der().unwrap()).unwrap();
        assert_eq!(again.jwk(), key.jwk());
    }
    for junk in [&b""[..], b"\x30\x00", &[0x30; 64]] {
        assert!(matches!(
            SigningKey::from_pkcs8_der(junk),
            Err(ProtoError::BadPrivateKey(_))
        ));
    }
    // A public key is not a private key.
    let spki = SigningKey::generate_p256().unwrap().jwk().spki_der();
    assert!(SigningKey::from_pkcs8_der(&spki).is_err());
}

#[test]
fn challenge_helpers() {
    // RFC 8555 §8.1 with the RFC 7638 §3.1 key.
    let jwk = Jwk::from_json(&json!({"kty": "RSA", "e": "AQAB", "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"})).unwrap();
    assert_eq!(
        key_authorization("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", &jwk),
        "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    // FIPS 180-2 "abc" vector: SHA-256 = ba7816bf...f20015ad.
    assert_eq!(
        dns01_txt_value("abc"),
        "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
    );
    let digest = tlsalpn01_digest("abc");
    assert_eq!(digest[0], 0xba);
    assert_eq!(digest[31], 0xad);
    assert_eq!(b64::encode(&digest), dns01_txt_value("abc"));
}

/// A tiny deterministic PRNG (xorshift64*), enough to shake the parsers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..=self.below(4) {
            let pos = self.below(out.len() + 1);
            match self.below(4) {
                0 if pos < out.len() => out[pos] ^= 1 << self.below(8),
                1 if pos < out.len() => {
                    out.remove(pos);
                }
                2 => out.insert(pos, self.next() as u8),
                _ => out.truncate(pos),
            }
        }
        out
    }
}

#[test]
fn mutated_inputs_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let keys = signing_keys();
    for key in &keys {
        let jwk = key.jwk();
        let body = to_body(&sign(key, header_jwk(key), b"{\"a\":[1,2]}").unwrap());
        let header = to_body(&header_jwk(key));
        let spki = jwk.spki_der();
        for _ in 0..2000 {
            // Envelope bytes.
            if let Ok(jws) = Jws::parse(&rng.mutate(&body)) {
                let _ = jws.verify(&jwk);
                let _ = jws.payload_json::<Value>();
            }
            // Header JSON inside a well-formed envelope.
            let protected = b64::encode(&rng.mutate(&header));
            let env = json!({"protected": protected, "payload": "e30", "signature": "AAAA"});
            if let Ok(jws) = Jws::parse(&to_body(&env))
                && let Some(k) = jws.protected.key.jwk()
            {
                assert!(jws.verify(k).is_err());
            }
            // DER.
            if let Ok(parsed) = Jwk::from_spki_der(&rng.mutate(&spki)) {
                let _ = parsed.thumbprint();
                assert_eq!(Jwk::from_spki_der(&parsed.spki_der()).as_ref(), Ok(&parsed));
            }
            // PKCS#8.
            let _ = SigningKey::from_pkcs8_der(&rng.mutate(&spki));
        }
    }
}
