//! The agent's revocation pieces against real CAs on loopback: the CRL
//! checker (RFC 5280) against the CRL `certkeeper ca serve` publishes, and
//! revocation (RFC 8555 §7.6) signed with the certificate's own key against
//! our CA, which must record the proof and block the key, and pebble.
//! Certificates come from the agent's own ACME client over real http-01;
//! names under `example.test` resolve through the harness BIND.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use certkeeper_agent::acme::{
    AcmeAccount, AcmeDirectory, CertificateKeyRevoker, Http01Responder, IssuedCertificate,
    KeyAlgorithm, KeyChoice, NewAccountOptions, OrderRequest, RevocationReason,
};
use certkeeper_agent::monitor::crl::{
    CrlChecker, CrlError, CrlOptions, CrlReason, CrlStatus, distribution_point, evaluate,
};
use certkeeper_harness::{Bind, CaOptions, CertkeeperCa, Pebble};

const BAD_PUBLIC_KEY: &str = "urn:ietf:params:acme:error:badPublicKey";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certkeeper"))
}

/// The test's wall clock; the library only ever gets it as an argument.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

struct Ours {
    _bind: Bind,
    ca: CertkeeperCa,
    account: AcmeAccount,
    responder: Http01Responder,
}

impl Ours {
    async fn start() -> Ours {
        let bind = Bind::start().expect("BIND");
        let ca = CertkeeperCa::start(
            bin(),
            CaOptions {
                dns_resolver: Some(bind.addr()),
                ..Default::default()
            },
        )
        .expect("certkeeper ca serve");
        let responder = Http01Responder::bind(([127, 0, 0, 1], ca.http01_port()).into())
            .await
            .expect("http-01 responder");
        let (account, _) = AcmeAccount::create(&directory(&ca), &NewAccountOptions::default())
            .await
            .expect("account");
        Ours {
            _bind: bind,
            ca,
            account,
            responder,
        }
    }

    async fn issue(&self, name: &str, key: KeyChoice) -> IssuedCertificate {
        let mut order = OrderRequest::new([name]);
        order.key = key;
        let issued = self
            .account
            .issue(&order, &self.responder)
            .await
            .unwrap_or_else(|e| panic!("issue {name}: {}", e.report()));
        assert!(issued.chain.len() >= 2, "leaf and intermediate");
        issued
    }

    /// The CA's own record of a certificate (`certkeeper ca list --json`).
    fn record(&self, issued: &IssuedCertificate) -> serde_json::Value {
        let serial = serial_hex(issued);
        let list = self.ca.list().expect("ca list");
        list.as_array()
            .expect("array")
            .iter()
            .find(|c| c["serial"].as_str() == Some(serial.as_str()))
            .cloned()
            .unwrap_or_else(|| panic!("serial {serial} not in `ca list`: {list}"))
    }

    fn checker(&self) -> CrlChecker {
        CrlChecker::with_options(&CrlOptions {
            root_pem: Some(self.ca.root_pem_path()),
            max_cache_age_secs: 60,
            ..CrlOptions::default()
        })
        .expect("checker")
    }
}

fn directory(ca: &CertkeeperCa) -> AcmeDirectory {
    AcmeDirectory::new(ca.directory_url()).with_root_pem(ca.root_pem_path())
}

fn leaf(issued: &IssuedCertificate) -> &[u8] {
    issued.chain[0].as_ref()
}

fn intermediate(issued: &IssuedCertificate) -> &[u8] {
    issued.chain[1].as_ref()
}

/// The serial as `ca list` spells it: lowercase hex, no leading zero octet.
fn serial_hex(issued: &IssuedCertificate) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf(issued)).expect("leaf parses");
    certkeeper_proto::serial::serial_hex(cert.raw_serial())
}

/// RFC 5280 §6.3.3 against the CRL our CA publishes over HTTPS with its
/// private root: good before; after a revocation the cached answer holds
/// until the cache age bound, a forced check sees it at once, with reason
/// and date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_from_our_ca_shows_good_then_revoked_with_the_reason() {
    let s = Ours::start().await;
    let issued = s
        .issue(
            "crl.example.test",
            KeyChoice::Generate(KeyAlgorithm::EcdsaP256),
        )
        .await;
    let url = distribution_point(leaf(&issued))
        .expect("leaf parses")
        .expect("our CA names a CRL");
    assert!(url.starts_with("https://localhost:"), "{url}");

    // Two checkers, both warmed before the revocation.
    let forced = s.checker();
    let aged = s.checker();
    let t0 = now();
    for checker in [&forced, &aged] {
        let status = checker
            .check(leaf(&issued), intermediate(&issued), t0)
            .await
            .expect("CRL check");
        let CrlStatus::Good { next_update } = status else {
            panic!("a fresh certificate must be good, got {status:?}");
        };
        assert!(
            next_update > t0,
            "nextUpdate {next_update} is in the future"
        );
    }

    s.account
        .revoke(leaf(&issued), RevocationReason::Superseded)
        .await
        .expect("account-signed revocation");
    assert_eq!(s.record(&issued)["revocation_reason"], 4);

    // Cached: the answer is the CRL already verified, by design.
    assert!(matches!(
        forced.check(leaf(&issued), intermediate(&issued), t0).await,
        Ok(CrlStatus::Good { .. })
    ));
    // The CA re-signs its CRL on every revocation; a forced check sees it.
    let revoked = forced
        .check_forced(leaf(&issued), intermediate(&issued), t0)
        .await
        .expect("forced CRL check");
    match revoked {
        CrlStatus::Revoked { reason, revoked_at } => {
            assert_eq!(reason, Some(CrlReason::Superseded));
            assert!(
                (revoked_at - t0).abs() < 120,
                "revoked at {revoked_at}, now {t0}"
            );
        }
        other => panic!("must be revoked after revocation, got {other:?}"),
    }
    // Unforced, but past the 60 s cache-age bound (nextUpdate is a day
    // out): the CRL is downloaded again and the revocation seen.
    assert!(matches!(
        aged.check(leaf(&issued), intermediate(&issued), t0 + 61)
            .await,
        Ok(CrlStatus::Revoked {
            reason: Some(CrlReason::Superseded),
            ..
        })
    ));
}

/// A CRL is only believed for the issuer that signed it, and a leaf is only
/// checked against the certificate that signed it (RFC 5280 §6.3.3 (b), (g)).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_from_our_ca_is_refused_for_the_wrong_issuer() {
    let s = Ours::start().await;
    let issued = s
        .issue(
            "wrong.example.test",
            KeyChoice::Generate(KeyAlgorithm::EcdsaP256),
        )
        .await;
    let root = std::fs::read(s.ca.root_pem_path()).expect("root PEM");
    let root = rustls_pki_types::pem::PemObject::from_pem_slice(&root)
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .expect("root DER");
    let checker = s.checker();

    let err = checker
        .check(leaf(&issued), &root, now())
        .await
        .expect_err("the root did not sign the leaf");
    assert!(matches!(err, CrlError::NotIssuedBy { .. }), "{err}");

    // The CA's real CRL (signed by the intermediate) judged as if the root
    // had issued it, for the intermediate: refused on the issuer name.
    let url = distribution_point(leaf(&issued))
        .expect("parses")
        .expect("url");
    let crl = s.ca.crl_der().expect("CRL");
    let err = evaluate(&crl, &url, intermediate(&issued), &root, now())
        .expect_err("the root did not sign this CRL");
    assert!(
        matches!(&err, CrlError::WrongIssuer { crl_issuer, .. } if crl_issuer.contains("intermediate")),
        "{err}"
    );
    assert!(!err.is_retryable());
}

/// DESIGN.md story 2 from the client side: keyCompromise signed with the
/// certificate's own key (RFC 8555 §7.6, `jwk`) is the proof our CA
/// records; it revokes with reason keyCompromise, publishes it in the CRL,
/// answers a repeat with alreadyRevoked, and refuses the key in any new
/// order with badPublicKey.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_compromise_signed_by_the_certificate_key_blocks_the_key_at_our_ca() {
    let s = Ours::start().await;
    let issued = s
        .issue(
            "kc.example.test",
            KeyChoice::Generate(KeyAlgorithm::EcdsaP256),
        )
        .await;
    assert_eq!(s.record(&issued)["status"], "valid");

    let revoker = CertificateKeyRevoker::new(&directory(&s.ca)).expect("revoker");
    revoker
        .revoke(leaf(&issued), &issued.key, RevocationReason::KeyCompromise)
        .await
        .unwrap_or_else(|e| panic!("certificate-key revocation: {e}"));

    let record = s.record(&issued);
    assert_eq!(record["status"], "revoked", "{record}");
    assert_eq!(record["revocation_reason"], 1, "{record}");
    assert_eq!(record["key_proven_at_revocation"], true, "{record}");

    let status = s
        .checker()
        .check(leaf(&issued), intermediate(&issued), now())
        .await
        .expect("CRL check");
    assert!(
        matches!(
            status,
            CrlStatus::Revoked {
                reason: Some(CrlReason::KeyCompromise),
                ..
            }
        ),
        "{status:?}"
    );

    let again = revoker
        .revoke(leaf(&issued), &issued.key, RevocationReason::KeyCompromise)
        .await
        .expect_err("already revoked");
    assert!(again.is_already_revoked(), "{again}");

    let reuse = s
        .account
        .issue(
            &OrderRequest {
                key: KeyChoice::Reuse(issued.key.clone()),
                ..OrderRequest::new(["kc2.example.test"])
            },
            &s.responder,
        )
        .await
        .expect_err("a blocked key must be refused");
    let kind = reuse.problem().and_then(|p| p.r#type.clone());
    assert_eq!(kind.as_deref(), Some(BAD_PUBLIC_KEY), "{}", reuse.report());
}

/// RS256 with an RSA certificate key is accepted by a real CA as proof too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_compromise_with_an_rsa_certificate_key_is_proven_at_our_ca() {
    let s = Ours::start().await;
    let issued = s
        .issue(
            "rsa.example.test",
            KeyChoice::Generate(KeyAlgorithm::Rsa2048),
        )
        .await;
    CertificateKeyRevoker::new(&directory(&s.ca))
        .expect("revoker")
        .revoke(leaf(&issued), &issued.key, RevocationReason::KeyCompromise)
        .await
        .unwrap_or_else(|e| panic!("RSA certificate-key revocation: {e}"));
    let record = s.record(&issued);
    assert_eq!(record["revocation_reason"], 1, "{record}");
    assert_eq!(record["key_proven_at_revocation"], true, "{record}");
}

/// The account-signed form: reasons are honoured without proof. Since the
/// Mozilla Root Store Policy 2.8 (Let's Encrypt's rule, issue 9) that
/// includes keyCompromise: revoked with reason 1, but not recorded as
/// proven, and the key is not blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_signed_revocation_records_the_reason_without_proof() {
    let s = Ours::start().await;
    let first = s.issue("acct1.example.test", KeyChoice::default()).await;
    let second = s.issue("acct2.example.test", KeyChoice::default()).await;

    s.account
        .revoke(leaf(&first), RevocationReason::CessationOfOperation)
        .await
        .expect("account-signed revocation");
    let record = s.record(&first);
    assert_eq!(record["revocation_reason"], 5, "{record}");
    assert_eq!(record["key_proven_at_revocation"], false, "{record}");

    s.account
        .revoke(leaf(&second), RevocationReason::KeyCompromise)
        .await
        .expect("account-signed keyCompromise is honoured");
    let record = s.record(&second);
    assert_eq!(record["status"], "revoked", "{record}");
    assert_eq!(record["revocation_reason"], 1, "{record}");
    assert_eq!(record["key_proven_at_revocation"], false, "{record}");
}

/// Against pebble (Let's Encrypt's test CA): the certificate-key revocation
/// succeeds and pebble's management API shows it revoked for keyCompromise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_compromise_signed_by_the_certificate_key_at_pebble() {
    let bind = Bind::start().expect("BIND");
    let pebble = Pebble::start(Some(&bind), &[("PEBBLE_WFE_NONCEREJECT", "0")]).expect("pebble");
    let directory =
        AcmeDirectory::new(pebble.directory_url()).with_root_pem(pebble.tls_ca_pem_path());
    let responder = Http01Responder::bind(([127, 0, 0, 1], pebble.http01_port()).into())
        .await
        .expect("http-01 responder");
    let (account, _) = AcmeAccount::create(&directory, &NewAccountOptions::default())
        .await
        .expect("account");
    let issued = account
        .issue(&OrderRequest::new(["kc.example.test"]), &responder)
        .await
        .unwrap_or_else(|e| panic!("issue: {}", e.report()));
    let pem = pebble.dir().join("kc.pem");
    std::fs::write(&pem, &issued.chain_pem).expect("write leaf");
    let status = |pebble: &Pebble| -> serde_json::Value {
        serde_json::from_str(&pebble.cert_status(&pem).expect("cert status")).expect("status JSON")
    };
    assert_eq!(status(&pebble)["Status"], "Valid");

    CertificateKeyRevoker::new(&directory)
        .expect("revoker")
        .revoke(leaf(&issued), &issued.key, RevocationReason::KeyCompromise)
        .await
        .unwrap_or_else(|e| panic!("revocation at pebble: {e}\n{}", pebble.log_tail()));
    let after = status(&pebble);
    assert_eq!(after["Status"], "Revoked", "{after}");
    assert_eq!(after["Reason"], 1, "{after}");
}
