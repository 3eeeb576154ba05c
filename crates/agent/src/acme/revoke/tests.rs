//! Reasons and the JWS a certificate-key revocation sends; the exchange
//! with real CAs is in `crates/certkeeper/tests/agent_revoke.rs`, the
//! badNonce retry in `crates/agent/tests/revoke_loopback.rs`.

use certkeeper_proto::{Alg, Jws, KeyRef};
use rcgen::CertificateParams;

use super::*;
use crate::acme::KeyAlgorithm;

fn self_signed(key: &CertificateKey) -> Vec<u8> {
    let pair = key.key_pair().expect("key pair");
    CertificateParams::new(vec!["revoke.example.test".to_string()])
        .expect("params")
        .self_signed(&pair)
        .expect("certificate")
        .der()
        .to_vec()
}

#[test]
fn rfc5280_5_3_1_reason_codes_and_names() {
    let expected = [
        (RevocationReason::Unspecified, 0, "unspecified"),
        (RevocationReason::KeyCompromise, 1, "keyCompromise"),
        (
            RevocationReason::AffiliationChanged,
            3,
            "affiliationChanged",
        ),
        (RevocationReason::Superseded, 4, "superseded"),
        (
            RevocationReason::CessationOfOperation,
            5,
            "cessationOfOperation",
        ),
    ];
    for (reason, code, name) in expected {
        assert_eq!(reason.code(), code);
        assert_eq!(reason.to_string(), name);
        assert_eq!(name.parse::<RevocationReason>(), Ok(reason));
        assert_eq!(
            name.to_ascii_lowercase().parse::<RevocationReason>(),
            Ok(reason)
        );
        assert_eq!(code.to_string().parse::<RevocationReason>(), Ok(reason));
        assert_eq!(
            instant_acme::RevocationReason::from(reason) as u8,
            code,
            "instant-acme mapping of {name}"
        );
    }
    // Not subscriber reasons: a CA-only code and a made-up one.
    for bad in ["cACompromise", "2", "certificateHold", "compromised", ""] {
        let err = bad.parse::<RevocationReason>().expect_err(bad);
        assert!(err.to_string().contains("keyCompromise"), "{err}");
    }
}

/// Every key type the agent generates can sign the request, and the JWS is
/// what RFC 8555 §7.6 asks: `jwk` (never `kid`) equal to the certificate's
/// key, the nonce and URL, and the certificate and reason in the payload.
#[test]
fn rfc8555_7_6_the_request_is_signed_by_the_certificate_key_for_every_agent_key_type() {
    let cases = [
        (KeyAlgorithm::EcdsaP256, Alg::Es256),
        (KeyAlgorithm::EcdsaP384, Alg::Es384),
        (KeyAlgorithm::Rsa2048, Alg::Rs256),
        (KeyAlgorithm::Rsa3072, Alg::Rs256),
        (KeyAlgorithm::Rsa4096, Alg::Rs256),
    ];
    for (algorithm, alg) in cases {
        let key = CertificateKey::generate(algorithm).expect("key");
        let cert = self_signed(&key);
        let signer = SigningKey::from_pkcs8_der(key.pkcs8_der())
            .unwrap_or_else(|e| panic!("{algorithm:?} loads as a JWS key: {e}"));
        check_key_matches(&cert, &signer.jwk()).expect("the certificate's own key");

        let body = revocation_jws(
            &signer,
            "nonce-1",
            "https://ca.test/revoke",
            &cert,
            RevocationReason::KeyCompromise,
        )
        .expect("JWS");
        let jws = Jws::parse(&body).expect("parses");
        assert_eq!(jws.protected.alg, alg, "{algorithm:?}");
        assert_eq!(jws.protected.nonce.as_deref(), Some("nonce-1"));
        assert_eq!(jws.protected.url, "https://ca.test/revoke");
        let KeyRef::Jwk(jwk) = &jws.protected.key else {
            panic!("{algorithm:?}: the header must carry jwk, not kid");
        };
        let (_, parsed) = X509Certificate::from_der(&cert).expect("cert");
        assert_eq!(jwk.spki_der(), parsed.public_key().raw, "{algorithm:?}");
        jws.verify(jwk)
            .expect("signature verifies with the embedded key");

        let payload: Value = jws.payload_json().expect("payload");
        assert_eq!(payload["reason"], 1);
        let sent =
            b64::decode(payload["certificate"].as_str().expect("certificate")).expect("base64url");
        assert_eq!(sent, cert);
    }
}

#[test]
fn another_key_is_refused_before_anything_is_sent() {
    let key = CertificateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
    let other = CertificateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
    let cert = self_signed(&key);
    let signer = SigningKey::from_pkcs8_der(other.pkcs8_der()).expect("key");
    assert!(matches!(
        check_key_matches(&cert, &signer.jwk()),
        Err(RevokeError::KeyMismatch)
    ));
    assert!(matches!(
        check_key_matches(b"not a certificate", &signer.jwk()),
        Err(RevokeError::BadCertificate { .. })
    ));
}

#[tokio::test]
async fn a_mismatched_key_never_reaches_the_network() {
    let key = CertificateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
    let other = CertificateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
    // Port 9 on loopback: a request would fail with a transport error.
    let revoker =
        CertificateKeyRevoker::new(&AcmeDirectory::new("http://127.0.0.1:9/dir")).expect("revoker");
    let err = revoker
        .revoke(&self_signed(&key), &other, RevocationReason::KeyCompromise)
        .await
        .expect_err("mismatch");
    assert!(matches!(err, RevokeError::KeyMismatch), "{err}");
}

#[test]
fn rfc8555_6_5_1_only_base64url_nonces_are_used() {
    let mut headers = HeaderMap::new();
    headers.insert("replay-nonce", "abc-_09XYZ".parse().expect("header"));
    assert_eq!(replay_nonce(&headers).as_deref(), Some("abc-_09XYZ"));
    headers.insert("replay-nonce", "abc def".parse().expect("header"));
    assert_eq!(replay_nonce(&headers), None);
    headers.insert("replay-nonce", "abc+/=".parse().expect("header"));
    assert_eq!(replay_nonce(&headers), None);
    assert_eq!(replay_nonce(&HeaderMap::new()), None);
}

#[test]
fn problems_keep_type_and_detail_and_bare_errors_keep_the_status() {
    let doc = br#"{"type":"urn:ietf:params:acme:error:unauthorized","detail":"not yours"}"#;
    let p = parse_problem(403, "https://ca.test/revoke", doc);
    assert_eq!(
        p.r#type.as_deref(),
        Some("urn:ietf:params:acme:error:unauthorized")
    );
    assert_eq!(p.detail.as_deref(), Some("not yours"));
    assert_eq!(p.status, Some(403));

    let html = parse_problem(502, "https://ca.test/revoke", b"<html>bad gateway</html>");
    assert_eq!(html.r#type, None);
    assert_eq!(html.status, Some(502));
    assert!(html.detail.expect("detail").contains("bad gateway"));

    let err = RevokeError::Problem {
        url: "u".into(),
        status: 400,
        problem: Box::new(parse_problem(
            400,
            "u",
            br#"{"type":"urn:ietf:params:acme:error:alreadyRevoked","detail":"done"}"#,
        )),
        retry_after: None,
    };
    assert!(err.is_already_revoked());
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("alreadyRevoked: done"), "{err}");
}

#[test]
fn retry_after_is_clamped() {
    let mut headers = HeaderMap::new();
    headers.insert(RETRY_AFTER, "120".parse().expect("header"));
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
    headers.insert(RETRY_AFTER, "18446744073709551615".parse().expect("header"));
    assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
    headers.insert(
        RETRY_AFTER,
        "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("header"),
    );
    assert_eq!(retry_after(&headers), None);
}
