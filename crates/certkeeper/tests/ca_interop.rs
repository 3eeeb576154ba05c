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
        .map(|r| certkeeper_proto::serial::serial_hex(r.raw_serial()))
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

/// Serial of a PEM certificate as `ca list` prints it (lowercase, no leading zero byte).
fn serial_of(pem: &Path) -> String {
    openssl_serial_hex(pem)
        .expect("serial")
        .to_lowercase()
        .trim_start_matches("00")
        .to_string()
}

fn status_of(ca: &CertkeeperCa, serial: &str) -> (String, Option<i64>) {
    let list = ca.list().expect("ca list");
    let row = list
        .as_array()
        .and_then(|a| a.iter().find(|c| c["serial"] == serial))
        .unwrap_or_else(|| panic!("{serial} not in ca list: {list:#}"))
        .clone();
    (
        row["status"].as_str().unwrap_or_default().to_string(),
        row["revocation_reason"].as_i64(),
    )
}

/// DESIGN.md story 2 with certbot, Let's Encrypt's rule since Mozilla Root
/// Store Policy 2.8 (RFC 8555 §7.6):
/// - `certbot revoke --reason keycompromise` signed by the *account* key is
///   honoured: revoked with reason 1 and on the CRL, but the key is not
///   blocked, so `--reuse-key` gets a new certificate with the same key;
/// - signed by the certificate's own key (`--key-path`): revoked, the key
///   is refused from then on (`badPublicKey`), and the other unexpired
///   certificates with it are revoked up to `revocation.max_cascade` (1 here:
///   the oldest of the two others; the newer one stays valid).
#[test]
fn certbot_key_compromise_by_account_revokes_by_certificate_key_blocks_and_cascades() {
    let bind = Bind::start().expect("start BIND");
    let policy =
        certkeeper_ca::policy::DEFAULT_POLICY.replace("max_cascade = 1000", "max_cascade = 1");
    assert!(
        policy.contains("max_cascade = 1\n"),
        "default policy changed"
    );
    let ca = CertkeeperCa::start(
        bin(),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            policy: Some(policy),
            ..Default::default()
        },
    )
    .expect("start certkeeper ca serve");
    let certbot = Certbot::new(&ca.directory_url(), &ca.root_pem_path()).expect("certbot");
    let name = "kc.example.test";
    let archive = certbot.dir().join("config/archive").join(name);
    let again = |n: usize| {
        certbot
            .certonly_standalone(
                &[name],
                ca.http01_port(),
                &["--force-renewal", "--reuse-key"],
            )
            .unwrap_or_else(|e| panic!("certonly #{n} with the same key: {e:#}"));
        archive.join(format!("cert{n}.pem"))
    };
    let first = certbot
        .certonly_standalone(&[name], ca.http01_port(), &[])
        .expect("certonly");
    let first_serial = serial_of(&first.cert);

    // Account key, reason keyCompromise: honoured, not blocked.
    certbot
        .revoke(&first.cert, None, "keycompromise")
        .expect("account-key keyCompromise is honoured");
    assert_eq!(status_of(&ca, &first_serial), ("revoked".into(), Some(1)));
    assert!(revoked_serials(&ca.crl_der().expect("crl")).contains(&first_serial));
    let second = serial_of(&again(2));
    assert_eq!(status_of(&ca, &second), ("valid".into(), None));
    let third = serial_of(&again(3));
    let fourth_pem = again(4);
    let fourth = serial_of(&fourth_pem);

    // Certificate key: proven. Revoked, cascade capped at 1, key blocked.
    certbot
        .revoke(&fourth_pem, Some(&first.privkey), "keycompromise")
        .expect("certificate-key keyCompromise");
    assert_eq!(status_of(&ca, &fourth), ("revoked".into(), Some(1)));
    assert_eq!(
        status_of(&ca, &second),
        ("revoked".into(), Some(1)),
        "the oldest other valid certificate with the key is revoked"
    );
    assert_eq!(
        status_of(&ca, &third),
        ("valid".into(), None),
        "max_cascade = 1 leaves the third"
    );
    let crl = revoked_serials(&ca.crl_der().expect("crl"));
    for s in [&first_serial, &second, &fourth] {
        assert!(crl.contains(s), "{s} missing from the CRL {crl:?}");
    }
    assert!(!crl.contains(&third));

    assert!(
        certbot
            .certonly_standalone(
                &[name],
                ca.http01_port(),
                &["--force-renewal", "--reuse-key"],
            )
            .is_err(),
        "a blocked key must be refused"
    );
    let log =
        std::fs::read_to_string(certbot.dir().join("logs/letsencrypt.log")).expect("certbot log");
    assert!(
        log.contains("urn:ietf:params:acme:error:badPublicKey"),
        "CA did not answer badPublicKey"
    );
    assert_eq!(ca.list().expect("list").as_array().map(Vec::len), Some(4));
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
