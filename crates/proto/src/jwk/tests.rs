use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::signature::KeyPair;
use serde_json::json;

use super::*;
use crate::jws::SigningKey;
use crate::testutil::signing_keys;

/// RFC 7638 §3.1 example RSA key.
const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

/// RFC 7515 Appendix A.3 P-256 public key.
const RFC7515_A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const RFC7515_A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

/// RFC 8037 Appendix A.2 Ed25519 public key.
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

fn rfc7515_a3_key() -> Jwk {
    Jwk::from_json(&json!({"kty": "EC", "crv": "P-256", "x": RFC7515_A3_X, "y": RFC7515_A3_Y}))
        .unwrap()
}

#[test]
fn rfc7638_section_3_1_thumbprint() {
    // The RFC's JWK also carries "alg" and "kid", which must not matter.
    let jwk = Jwk::from_json(&json!({
        "kty": "RSA",
        "n": RFC7638_N,
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }))
    .unwrap();
    assert_eq!(
        jwk.thumbprint(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    // RFC 7638 §3.1 also gives the canonical JSON it hashes.
    assert_eq!(
        jwk.thumbprint_input(),
        format!(r#"{{"e":"AQAB","kty":"RSA","n":"{RFC7638_N}"}}"#)
    );
}

#[test]
fn rfc8037_appendix_a_3_thumbprint() {
    let jwk = Jwk::from_json(&json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X})).unwrap();
    assert_eq!(
        jwk.thumbprint(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
}

#[test]
fn rfc7515_appendix_a_3_es256_signature() {
    let input = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
    let sig = b64::decode(
        "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q",
    )
    .unwrap();
    let key = rfc7515_a3_key();
    key.verify(Alg::Es256, input.as_bytes(), &sig).unwrap();
    assert_eq!(
        key.verify(Alg::Es256, b"tampered", &sig),
        Err(ProtoError::BadSignature)
    );
    assert!(matches!(
        key.verify(Alg::Es384, input.as_bytes(), &sig),
        Err(ProtoError::BadSignatureAlgorithm(_))
    ));
}

#[test]
fn rfc8037_appendix_a_4_eddsa_signature() {
    let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
    let sig = b64::decode(
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg",
    )
    .unwrap();
    let key = Jwk::from_json(&json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X})).unwrap();
    key.verify(Alg::EdDsa, input.as_bytes(), &sig).unwrap();
    assert!(matches!(
        key.verify(Alg::Rs256, input.as_bytes(), &sig),
        Err(ProtoError::BadSignatureAlgorithm(_))
    ));
}

#[test]
fn json_round_trip_all_types() {
    for key in signing_keys() {
        let jwk = key.jwk();
        let json = jwk.to_json();
        assert_eq!(Jwk::from_json(&json).unwrap(), jwk, "{json}");
        assert_eq!(jwk.alg(), key.alg());
    }
}

#[test]
fn alg_names() {
    for alg in Alg::ALL {
        assert_eq!(Alg::from_name(alg.name()), Some(alg));
    }
    for bad in [
        "none", "HS256", "es256", "RS384", "PS256", "ES512", "Ed25519", "",
    ] {
        assert_eq!(Alg::from_name(bad), None, "{bad}");
    }
}

#[test]
fn rejects_invalid_ec_points() {
    // Flip the last bit of y: the point leaves the curve.
    let mut y = b64::decode(RFC7515_A3_Y).unwrap();
    *y.last_mut().unwrap() ^= 1;
    let err = Jwk::from_json(&json!({
        "kty": "EC", "crv": "P-256", "x": RFC7515_A3_X, "y": b64::encode(&y),
    }))
    .unwrap_err();
    assert!(matches!(err, ProtoError::BadPublicKey(_)), "{err}");

    // All-zero coordinates are not a valid point either.
    let zero = b64::encode(&[0; 32]);
    assert!(matches!(
        Jwk::from_json(&json!({"kty": "EC", "crv": "P-256", "x": zero, "y": zero})),
        Err(ProtoError::BadPublicKey(_))
    ));

    // RFC 7518 §6.2.1.2: short coordinates are refused even if the value is
    // otherwise valid.
    let x = b64::decode(RFC7515_A3_X).unwrap();
    assert!(matches!(
        Jwk::from_json(&json!({
            "kty": "EC", "crv": "P-256", "x": b64::encode(&x[1..]), "y": RFC7515_A3_Y,
        })),
        Err(ProtoError::BadPublicKey(_))
    ));
    // A P-256 point labelled P-384 has the wrong length.
    assert!(matches!(
        Jwk::from_json(&json!({"kty": "EC", "crv": "P-384", "x": RFC7515_A3_X, "y": RFC7515_A3_Y})),
        Err(ProtoError::BadPublicKey(_))
    ));
}

#[test]
fn rejects_unsupported_and_private_keys() {
    let cases = [
        json!({"kty": "oct", "k": "AAAA"}),
        json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
        json!({"kty": "EC", "crv": "secp256k1", "x": RFC7515_A3_X, "y": RFC7515_A3_Y}),
        json!({"kty": "OKP", "crv": "Ed448", "x": RFC8037_X}),
        json!({"kty": "OKP", "crv": "X25519", "x": RFC8037_X}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
        json!({"kty": "RSA", "n": "AAAA", "e": "AQAB"}),
        json!({
            "kty": "OKP", "crv": "Ed25519", "x": RFC8037_X,
            "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
        }),
    ];
    for case in cases {
        assert!(
            matches!(Jwk::from_json(&case), Err(ProtoError::BadPublicKey(_))),
            "{case}"
        );
    }
}

#[test]
fn rejects_malformed_jwks() {
    let cases = [
        json!("not an object"),
        json!([]),
        json!({}),
        json!({"kty": 1}),
        json!({"kty": "EC", "x": RFC7515_A3_X, "y": RFC7515_A3_Y}),
        json!({"kty": "EC", "crv": "P-256", "x": RFC7515_A3_X}),
        json!({"kty": "EC", "crv": "P-256", "x": RFC7515_A3_X, "y": 5}),
        json!({"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU=", "y": RFC7515_A3_Y}),
        json!({"kty": "RSA", "n": "a+b/", "e": "AQAB"}),
        json!({"kty": "RSA", "n": RFC7638_N}),
    ];
    for case in cases {
        assert!(
            matches!(Jwk::from_json(&case), Err(ProtoError::Malformed(_))),
            "{case}"
        );
    }
}

#[test]
fn rsa_leading_zeros_are_stripped() {
    let mut n = vec![0, 0];
    n.extend(b64::decode(RFC7638_N).unwrap());
    let jwk = Jwk::from_json(&json!({"kty": "RSA", "n": b64::encode(&n), "e": "AAEAAQ"})).unwrap();
    assert_eq!(
        jwk.thumbprint(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    let Jwk::Rsa { n, e } = &jwk else {
        panic!("not RSA")
    };
    assert_ne!(n[0], 0);
    assert_eq!(e, &[1, 0, 1]);
}

#[test]
fn spki_matches_aws_lc_and_round_trips() {
    for key in signing_keys() {
        let expected: Vec<u8> = match &key {
            SigningKey::P256(kp) | SigningKey::P384(kp) => {
                AsDer::<PublicKeyX509Der>::as_der(kp.public_key())
                    .unwrap()
                    .as_ref()
                    .to_vec()
            }
            SigningKey::Rsa(kp) => AsDer::<PublicKeyX509Der>::as_der(kp.public_key())
                .unwrap()
                .as_ref()
                .to_vec(),
            SigningKey::Ed25519(kp) => AsDer::<PublicKeyX509Der>::as_der(kp.public_key())
                .unwrap()
                .as_ref()
                .to_vec(),
        };
        let jwk = key.jwk();
        assert_eq!(jwk.spki_der(), expected, "{:?}", jwk.alg());
        assert_eq!(Jwk::from_spki_der(&expected).unwrap(), jwk);
        assert_eq!(jwk.spki_sha256(), sha256(&expected));
    }
}

#[test]
fn spki_matches_rcgen_p256() {
    use rcgen::PublicKeyData;
    let kp = rcgen::KeyPair::generate().unwrap();
    let spki = kp.subject_public_key_info();
    let jwk = Jwk::from_spki_der(&spki).unwrap();
    assert_eq!(jwk.alg(), Alg::Es256);
    assert_eq!(jwk.spki_der(), spki);
    // rcgen's private key loads as our signing key with the same public key.
    let signer = SigningKey::from_pkcs8_der(&kp.serialize_der()).unwrap();
    assert_eq!(signer.jwk(), jwk);
}

#[test]
fn rsa_spki_adds_sign_octet() {
    let jwk = Jwk::rsa(&[0x80, 0, 0, 1], &[1, 0, 1]).unwrap();
    let spki = jwk.spki_der();
    // INTEGER 0x0080000001, INTEGER 0x010001.
    let tail = [0x02, 0x05, 0x00, 0x80, 0, 0, 1, 0x02, 0x03, 1, 0, 1];
    assert!(spki.ends_with(&tail), "{spki:02x?}");
    assert_eq!(Jwk::from_spki_der(&spki).unwrap(), jwk);
    // Too small to verify with.
    assert!(matches!(
        jwk.verify(Alg::Rs256, b"x", &[0; 4]),
        Err(ProtoError::BadPublicKey(_))
    ));
}

#[test]
fn from_spki_rejects_unsupported_and_bad_der() {
    let good = rfc7515_a3_key().spki_der();

    // P-521 curve OID 1.3.132.0.35 in place of P-256.
    let p521 = {
        let mut alg = der::tlv(der::OID, der::OID_EC_PUBLIC_KEY);
        der::write_tlv(&mut alg, der::OID, &[0x2b, 0x81, 0x04, 0x00, 0x23]);
        let mut spki = der::tlv(der::SEQUENCE, &alg);
        spki.extend(der::bit_string(&[4; 133]));
        der::tlv(der::SEQUENCE, &spki)
    };
    assert!(matches!(
        Jwk::from_spki_der(&p521),
        Err(ProtoError::BadPublicKey(_))
    ));

    // Unknown algorithm (id-dsa, 1.2.840.10040.4.1).
    let dsa = {
        let alg = der::tlv(der::OID, &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01]);
        let mut spki = der::tlv(der::SEQUENCE, &alg);
        spki.extend(der::bit_string(&[1, 2, 3]));
        der::tlv(der::SEQUENCE, &spki)
    };
    assert!(matches!(
        Jwk::from_spki_der(&dsa),
        Err(ProtoError::BadPublicKey(_))
    ));

    // Compressed point.
    let compressed = {
        let mut alg = der::tlv(der::OID, der::OID_EC_PUBLIC_KEY);
        der::write_tlv(&mut alg, der::OID, der::OID_P256);
        let mut point = vec![0x02];
        point.extend(b64::decode(RFC7515_A3_X).unwrap());
        let mut spki = der::tlv(der::SEQUENCE, &alg);
        spki.extend(der::bit_string(&point));
        der::tlv(der::SEQUENCE, &spki)
    };
    assert!(matches!(
        Jwk::from_spki_der(&compressed),
        Err(ProtoError::BadPublicKey(_))
    ));

    // Trailing garbage and truncation.
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(Jwk::from_spki_der(&trailing).is_err());
    for len in 0..good.len() {
        assert!(Jwk::from_spki_der(&good[..len]).is_err(), "prefix {len}");
    }
}

#[test]
fn verify_rejects_wrong_alg_for_every_key_type() {
    for key in signing_keys() {
        let jwk = key.jwk();
        for alg in Alg::ALL {
            if alg == jwk.alg() {
                continue;
            }
            assert!(matches!(
                jwk.verify(alg, b"input", &[0; 64]),
                Err(ProtoError::BadSignatureAlgorithm(_))
            ));
        }
    }
}

#[test]
fn hand_built_invalid_jwks_do_not_panic() {
    // Public fields allow invalid values; every method must still be total.
    let odd = [
        Jwk::Ec {
            crv: EcCurve::P384,
            x: vec![1],
            y: vec![],
        },
        Jwk::Rsa {
            n: vec![],
            e: vec![],
        },
        Jwk::Okp { x: vec![0; 3] },
    ];
    for jwk in odd {
        let _ = jwk.thumbprint();
        let spki = jwk.spki_der();
        let _ = Jwk::from_spki_der(&spki);
        let _ = jwk.to_json();
        assert!(jwk.verify(jwk.alg(), b"x", &[]).is_err());
    }
}
