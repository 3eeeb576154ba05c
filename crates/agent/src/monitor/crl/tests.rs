//! The sans-IO decision, against CAs, leaves and CRLs built with rcgen.
//! Downloads and the cache are tested against real servers in
//! `crates/agent/tests/crl_loopback.rs` and `crates/certkeeper/tests/agent_crl.rs`.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    CrlIssuingDistributionPoint, CrlScope, DnType, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
};

use super::verify::CLOCK_SKEW_SECS;
use super::*;

const URL: &str = "http://crl.example.test/int.crl";
const NOW: i64 = 1_800_000_000;
const HOUR: i64 = 3600;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: Vec<u8>,
}

fn ca_params(name: &str, usages: Vec<KeyUsagePurpose>) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = usages;
    p
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("key");
    let params = ca_params(
        name,
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
    );
    let der = params.self_signed(&key).expect("CA cert").der().to_vec();
    Ca {
        issuer: Issuer::new(params, key),
        der,
    }
}

fn leaf(ca: &Ca, serial: &[u8], crl_url: Option<&str>) -> Vec<u8> {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec!["leaf.example.test".to_string()]).expect("params");
    p.serial_number = Some(SerialNumber::from_slice(serial));
    if let Some(url) = crl_url {
        p.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![url.to_string()],
        }];
    }
    p.signed_by(&key, &ca.issuer).expect("leaf").der().to_vec()
}

fn at(t: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t).expect("time")
}

fn crl_params(
    revoked: &[(&[u8], Option<RevocationReason>, i64)],
    this_update: i64,
    next_update: i64,
    idp_url: Option<&str>,
) -> CertificateRevocationListParams {
    CertificateRevocationListParams {
        this_update: at(this_update),
        next_update: at(next_update),
        crl_number: SerialNumber::from_slice(&[1]),
        issuing_distribution_point: idp_url.map(|u| CrlIssuingDistributionPoint {
            distribution_point: CrlDistributionPoint {
                uris: vec![u.to_string()],
            },
            scope: Some(CrlScope::UserCertsOnly),
        }),
        revoked_certs: revoked
            .iter()
            .map(|(serial, reason, when)| RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial),
                revocation_time: at(*when),
                reason_code: *reason,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
}

fn crl(ca: &Ca, revoked: &[(&[u8], Option<RevocationReason>, i64)]) -> Vec<u8> {
    crl_params(revoked, NOW - HOUR, NOW + 24 * HOUR, Some(URL))
        .signed_by(&ca.issuer)
        .expect("CRL")
        .der()
        .to_vec()
}

#[test]
fn rfc5280_4_2_1_13_the_http_distribution_point_is_found() {
    let ca = ca("Test CA");
    assert_eq!(
        distribution_point(&leaf(&ca, &[1], Some(URL))).expect("parses"),
        Some(URL.to_string())
    );
    assert_eq!(
        distribution_point(&leaf(&ca, &[1], None)).expect("parses"),
        None
    );
    let ldap_only = leaf(&ca, &[1], Some("ldap://ldap.example.test/cn=crl"));
    let err = distribution_point(&ldap_only).expect_err("no usable point");
    assert!(
        matches!(&err, CrlError::UnusableDistributionPoint { reason } if reason.contains("no http")),
        "{err}"
    );
}

#[test]
fn an_unlisted_certificate_is_good_until_next_update() {
    let ca = ca("Test CA");
    let cert = leaf(&ca, &[0x10], Some(URL));
    let list = crl(
        &ca,
        &[(&[0x11], Some(RevocationReason::Superseded), NOW - 60)],
    );
    assert_eq!(
        evaluate(&list, URL, &cert, &ca.der, NOW).expect("status"),
        CrlStatus::Good {
            next_update: NOW + 24 * HOUR
        }
    );
}

#[test]
fn rfc5280_5_3_1_a_listed_certificate_is_revoked_with_its_reason_and_date() {
    let ca = ca("Test CA");
    let compromised = leaf(&ca, &[0x20], Some(URL));
    let no_reason = leaf(&ca, &[0x21], Some(URL));
    let list = crl(
        &ca,
        &[
            (&[0x20], Some(RevocationReason::KeyCompromise), NOW - 120),
            (&[0x21], None, NOW - 60),
        ],
    );
    assert_eq!(
        evaluate(&list, URL, &compromised, &ca.der, NOW).expect("status"),
        CrlStatus::Revoked {
            reason: Some(CrlReason::KeyCompromise),
            revoked_at: NOW - 120
        }
    );
    // §5.3.1: an absent reasonCode means unspecified.
    assert_eq!(
        evaluate(&list, URL, &no_reason, &ca.der, NOW).expect("status"),
        CrlStatus::Revoked {
            reason: None,
            revoked_at: NOW - 60
        }
    );
}

#[test]
fn rfc5280_5_1_2_5_a_crl_past_next_update_is_stale() {
    let ca = ca("Test CA");
    let cert = leaf(&ca, &[0x30], Some(URL));
    let list = crl(&ca, &[]);
    let later = NOW + 24 * HOUR;
    let err = evaluate(&list, URL, &cert, &ca.der, later).expect_err("stale");
    assert!(
        matches!(err, CrlError::Stale { next_update, now, .. } if next_update == later && now == later),
        "{err}"
    );
    assert!(err.is_retryable(), "the CA may publish a fresh CRL");
    assert!(err.to_string().contains("stale"), "{err}");
}

#[test]
fn a_crl_from_the_future_is_refused_beyond_clock_skew() {
    let ca = ca("Test CA");
    let cert = leaf(&ca, &[0x31], Some(URL));
    let early = crl_params(&[], NOW + 2 * CLOCK_SKEW_SECS, NOW + 24 * HOUR, Some(URL))
        .signed_by(&ca.issuer)
        .expect("CRL")
        .der()
        .to_vec();
    let err = evaluate(&early, URL, &cert, &ca.der, NOW).expect_err("not yet valid");
    assert!(matches!(err, CrlError::NotYetValid { .. }), "{err}");
    let skewed = crl_params(&[], NOW + CLOCK_SKEW_SECS / 2, NOW + 24 * HOUR, Some(URL))
        .signed_by(&ca.issuer)
        .expect("CRL")
        .der()
        .to_vec();
    assert!(evaluate(&skewed, URL, &cert, &ca.der, NOW).is_ok());
}

#[test]
fn rfc5280_6_3_3_b_a_crl_from_another_issuer_is_refused() {
    let ours = ca("Test CA");
    let other = ca("Other CA");
    let cert = leaf(&ours, &[0x40], Some(URL));
    let err = evaluate(&crl(&other, &[]), URL, &cert, &ours.der, NOW).expect_err("wrong issuer");
    assert!(
        matches!(&err, CrlError::WrongIssuer { crl_issuer, .. } if crl_issuer.contains("Other CA")),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[test]
fn rfc5280_6_3_3_g_a_crl_signed_by_another_key_of_the_same_name_is_refused() {
    let ours = ca("Test CA");
    let impostor = ca("Test CA");
    let cert = leaf(&ours, &[0x41], Some(URL));
    // A forged CRL that hides the revocation of 0x41 must not make it good.
    let forged = crl(&impostor, &[]);
    let err = evaluate(&forged, URL, &cert, &ours.der, NOW).expect_err("forged");
    assert!(matches!(err, CrlError::BadSignature { .. }), "{err}");
}

#[test]
fn rfc5280_6_3_3_f_an_issuer_without_crl_sign_is_refused() {
    let key = KeyPair::generate().expect("key");
    let cert_der = ca_params("Test CA", vec![KeyUsagePurpose::KeyCertSign])
        .self_signed(&key)
        .expect("CA cert")
        .der()
        .to_vec();
    // rcgen refuses to sign a CRL for an issuer whose usages lack cRLSign,
    // so sign with the same name and key but no usages declared.
    let key_again = KeyPair::try_from(key.serialize_der()).expect("key");
    let signer = Ca {
        issuer: Issuer::new(ca_params("Test CA", Vec::new()), key_again),
        der: cert_der.clone(),
    };
    let cert = leaf(&signer, &[0x42], Some(URL));
    let err = evaluate(&crl(&signer, &[]), URL, &cert, &cert_der, NOW).expect_err("no cRLSign");
    assert!(
        matches!(err, CrlError::IssuerCannotSignCrls { .. }),
        "{err}"
    );
}

#[test]
fn a_leaf_checked_against_the_wrong_issuer_is_refused() {
    let ours = ca("Test CA");
    let other = ca("Other CA");
    let impostor = ca("Test CA");
    let cert = leaf(&ours, &[0x43], Some(URL));
    let err = evaluate(&crl(&ours, &[]), URL, &cert, &other.der, NOW).expect_err("name");
    assert!(matches!(err, CrlError::NotIssuedBy { .. }), "{err}");
    let err = evaluate(&crl(&ours, &[]), URL, &cert, &impostor.der, NOW).expect_err("key");
    assert!(
        matches!(&err, CrlError::NotIssuedBy { reason } if reason.contains("signature")),
        "{err}"
    );
}

#[test]
fn rfc5280_6_3_3_b_2_a_crl_scoped_to_another_url_does_not_cover_the_certificate() {
    let ca = ca("Test CA");
    let cert = leaf(&ca, &[0x50], Some(URL));
    let shard = crl_params(
        &[],
        NOW - HOUR,
        NOW + HOUR,
        Some("http://crl.example.test/7.crl"),
    )
    .signed_by(&ca.issuer)
    .expect("CRL")
    .der()
    .to_vec();
    let err = evaluate(&shard, URL, &cert, &ca.der, NOW).expect_err("out of scope");
    assert!(matches!(err, CrlError::OutOfScope { .. }), "{err}");
}

#[test]
fn rfc5280_5_2_5_a_user_certs_only_crl_does_not_cover_a_ca_certificate() {
    let root = ca("Root");
    let key = KeyPair::generate().expect("key");
    let mut p = ca_params("Intermediate", vec![KeyUsagePurpose::KeyCertSign]);
    p.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![URL.to_string()],
    }];
    let intermediate = p
        .signed_by(&key, &root.issuer)
        .expect("cert")
        .der()
        .to_vec();
    let err = evaluate(&crl(&root, &[]), URL, &intermediate, &root.der, NOW).expect_err("scope");
    assert!(matches!(err, CrlError::OutOfScope { .. }), "{err}");
}

#[test]
fn bytes_that_are_not_one_der_crl_are_malformed() {
    let ca = ca("Test CA");
    let cert = leaf(&ca, &[0x60], Some(URL));
    let err = evaluate(b"<html>proxy error</html>", URL, &cert, &ca.der, NOW).expect_err("html");
    assert!(matches!(err, CrlError::Malformed { .. }), "{err}");
    let mut trailing = crl(&ca, &[]);
    trailing.push(0);
    let err = evaluate(&trailing, URL, &cert, &ca.der, NOW).expect_err("trailing");
    assert!(matches!(err, CrlError::Malformed { .. }), "{err}");
}

#[test]
fn reason_codes_round_trip_in_rfc5280_numbering() {
    for code in 0..=11u8 {
        assert_eq!(CrlReason::from_code(code).code(), code);
    }
    assert_eq!(CrlReason::from_code(7), CrlReason::Unrecognized(7));
    assert_eq!(CrlReason::from_code(1).to_string(), "keyCompromise");
    assert_eq!(CrlReason::from_code(8), CrlReason::RemoveFromCrl);
}

#[tokio::test]
async fn a_certificate_without_distribution_points_needs_no_download() {
    let ca = ca("Test CA");
    let checker = CrlChecker::new(Duration::from_secs(1), 1024).expect("checker");
    let status = checker
        .check(&leaf(&ca, &[0x70], None), &ca.der, NOW)
        .await
        .expect("status");
    assert_eq!(status, CrlStatus::NoDistributionPoint);
}
