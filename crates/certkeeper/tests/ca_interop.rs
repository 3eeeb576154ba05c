//! The built-in CA against ACME clients nobody here wrote: certbot and lego,
//! over every challenge type, with BIND 9 as the CA's resolver. Chains must
//! verify with `openssl verify` and rustls-webpki; revocations must reach the CRL.

use std::path::Path;

use certkeeper_harness::{
    Bind, CaOptions, Certbot, CertkeeperCa, Lego, LegoChallenge, openssl_serial_hex,
    openssl_verify, split_pem_certificates,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::FromDer;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certkeeper"))
}

/// BIND for example.test (wildcard A → 127.0.0.1) and our CA resolving through it.
fn start() -> (Bind, CertkeeperCa) {
    let bind = Bind::start().expect("start BIND");
    let ca = CertkeeperCa::start(
        bin(),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            ..Default::default()
        },
    )
    .expect("start certkeeper ca serve");
    (bind, ca)
}

/// Chain validation with rustls-webpki: path to our root, serverAuth, and the name.
fn webpki_verify(root_pem: &Path, chain_pem: &str, name: &str) {
    let root = CertificateDer::from_pem_file(root_pem).expect("root PEM");
    let anchor = webpki::anchor_from_trusted_cert(&root).expect("trust anchor");
    let certs: Vec<CertificateDer<'static>> = split_pem_certificates(chain_pem)
        .iter()
        .map(|p| CertificateDer::from_pem_slice(p.as_bytes()).expect("chain PEM"))
        .collect();
    let leaf = webpki::EndEntityCert::try_from(&certs[0]).expect("leaf parses");
    let algs = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
    leaf.verify_for_usage(
        algs.all,
        &[anchor],
        &certs[1..],
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .expect("webpki builds a path to the root");
    let server_name = ServerName::try_from(name).expect("server name");
    leaf.verify_is_valid_for_subject_name(&server_name)
        .expect("certificate valid for the name");
}

fn revoked_serials(crl_der: &[u8]) -> Vec<String> {
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(crl_der)
        .expect("CRL parses");
    crl.iter_revoked_certificates()
        .map(|r| hex::encode(r.raw_serial()))
        .collect()
}

fn statuses(ca: &CertkeeperCa) -> Vec<(String, String)> {
    let list = ca.list().expect("ca list");
    list.as_array()
        .expect("array")
        .iter()
        .map(|c| {
            (
                c["serial"].as_str().unwrap_or_default().to_string(),
                c["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// RFC 8555 §7.4 and §7.6 with certbot: standalone http-01 issuance, then
/// `certbot revoke`; the serial lands in the CRL the certificate points to.
#[test]
fn certbot_http01_issues_and_revokes_into_the_crl() {
    let (_bind, ca) = start();
    let certbot = Certbot::new(&ca.directory_url(), &ca.root_pem_path()).expect("certbot");
    let cert = certbot
        .certonly_standalone(&["certbot.example.test"], ca.http01_port(), &[])
        .expect("certbot certonly");
    openssl_verify(&ca.root_pem_path(), &cert.fullchain).expect("openssl verify");
    webpki_verify(
        &ca.root_pem_path(),
        &std::fs::read_to_string(&cert.fullchain).expect("read"),
        "certbot.example.test",
    );

    let serial = openssl_serial_hex(&cert.cert)
        .expect("serial")
        .to_lowercase();
    assert_eq!(statuses(&ca), vec![(serial.clone(), "valid".to_string())]);
    assert!(!revoked_serials(&ca.crl_der().expect("crl")).contains(&serial));

    certbot
        .revoke(&cert.cert, None, "superseded")
        .expect("certbot revoke");
    assert_eq!(statuses(&ca), vec![(serial.clone(), "revoked".to_string())]);
    assert!(
        revoked_serials(&ca.crl_der().expect("crl")).contains(&serial),
        "serial {serial} missing from the CRL"
    );
}

/// DESIGN.md story 2: certbot's keyCompromise signed with the *account* key
/// is refused; signed with the certificate's own key it is accepted and the
/// CA records that the key was proven.
#[test]
fn certbot_key_compromise_needs_the_certificate_key() {
    let (_bind, ca) = start();
    let certbot = Certbot::new(&ca.directory_url(), &ca.root_pem_path()).expect("certbot");
    let cert = certbot
        .certonly_standalone(&["kc.example.test"], ca.http01_port(), &[])
        .expect("certonly");
    certbot
        .revoke(&cert.cert, None, "keycompromise")
        .expect_err("account-key keyCompromise must fail");
    // certbot 2.1 crashes while displaying the error (a josepy bug), so read
    // the problem document the CA sent from certbot's own log.
    let log =
        std::fs::read_to_string(certbot.dir().join("logs/letsencrypt.log")).expect("certbot log");
    assert!(
        log.contains("urn:ietf:params:acme:error:badRevocationReason"),
        "CA did not answer badRevocationReason"
    );
    assert_eq!(
        ca.list().expect("list")[0]["status"],
        "valid",
        "refused revocation must not revoke"
    );
    certbot
        .revoke(&cert.cert, Some(&cert.privkey), "keycompromise")
        .expect("revoke with the certificate key");
    let list = ca.list().expect("list");
    assert_eq!(list[0]["status"], "revoked");
    assert_eq!(list[0]["revocation_reason"], 1);
    assert_eq!(list[0]["key_proven_at_revocation"], true);
}

fn lego_issues(
    challenge: impl for<'a> Fn(&'a Bind, &CertkeeperCa) -> LegoChallenge<'a>,
    names: &[&str],
) {
    let (bind, ca) = start();
    let lego = Lego::new(&ca.directory_url(), &ca.root_pem_path()).expect("lego");
    let cert = lego.run(names, &challenge(&bind, &ca)).expect("lego run");
    openssl_verify(&ca.root_pem_path(), &cert.cert).expect("openssl verify");
    let chain = std::fs::read_to_string(&cert.cert).expect("read chain");
    for name in names {
        webpki_verify(&ca.root_pem_path(), &chain, &name.replace('*', "x"));
    }
    assert_eq!(ca.list().expect("list").as_array().map(Vec::len), Some(1));
}

/// RFC 8555 §8.3 with lego's built-in http-01 server.
#[test]
fn lego_http01() {
    lego_issues(
        |_, ca| LegoChallenge::Http01 {
            port: ca.http01_port(),
        },
        &["lego-http.example.test"],
    );
}

/// RFC 8737 with lego's tls-alpn-01 server (our VA's own certificate checks).
#[test]
fn lego_tlsalpn01() {
    lego_issues(
        |_, ca| LegoChallenge::TlsAlpn01 {
            port: ca.tlsalpn01_port(),
        },
        &["lego-alpn.example.test"],
    );
}

/// RFC 8555 §8.4 with lego's rfc2136 provider writing TSIG-signed updates to
/// BIND, which is also the CA's resolver; a wildcard rides along (§7.1.3).
#[test]
fn lego_dns01_rfc2136_with_wildcard() {
    lego_issues(
        |bind, _| LegoChallenge::Dns01Rfc2136 { bind },
        &["lego-dns.example.test", "*.lego-dns.example.test"],
    );
}
