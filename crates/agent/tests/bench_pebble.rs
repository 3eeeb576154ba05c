//! The ACME client and the bench against a real pebble, with a real BIND
//! resolving `*.example.test` to 127.0.0.1 for pebble's validation authority.

use std::net::SocketAddr;

use certkeeper_agent::acme::{
    AcmeAccount, AcmeDirectory, AcmeError, Http01Responder, NewAccountOptions, OrderRequest,
    TlsAlpn01Responder,
};
use certkeeper_agent::bench::{self, BenchOptions};
use certkeeper_harness::{Bind, Pebble};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::extensions::GeneralName;

/// Pebble rejects 5% of nonces by default to exercise clients' retries;
/// instant-acme retries three times, but these tests assert that *every*
/// order succeeds, so nonce rejection is switched off. The loads here are
/// small on purpose: pebble 2.4 can deadlock under heavy concurrency (an
/// authorization fetch, a new order and a store write in a lock cycle).
const PEBBLE_ENV: &[(&str, &str)] = &[("PEBBLE_WFE_NONCEREJECT", "0")];

fn start_peers() -> (Bind, Pebble) {
    let bind = Bind::start().expect("start BIND");
    let pebble = Pebble::start(Some(&bind), PEBBLE_ENV).expect("start pebble");
    (bind, pebble)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The DNS names in the SAN of the first certificate of `chain_pem`.
fn leaf_dns_names(chain_pem: &str) -> Vec<String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("chain is PEM");
    assert!(chain.len() >= 2, "pebble sends leaf + intermediate");
    let (_, leaf) = x509_parser::parse_x509_certificate(chain[0].as_ref()).expect("leaf parses");
    let san = leaf
        .subject_alternative_name()
        .expect("SAN well-formed")
        .expect("leaf has a SAN");
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// RFC 8555 §7.4 end to end: 8 orders over 4 accounts, each validated by
/// http-01 through one shared responder, each leaf naming exactly its order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_small_against_pebble() {
    let (_bind, pebble) = start_peers();
    let report = bench::run(BenchOptions {
        directory: pebble.directory_url(),
        root_pem: Some(pebble.tls_ca_pem_path().to_owned()),
        concurrency: 4,
        orders: 8,
        http01_listen: loopback(pebble.http01_port()),
        domain_suffix: "example.test".into(),
        keep_chains: true,
        ..BenchOptions::default()
    })
    .await
    .expect("bench runs");
    println!("{report}");

    assert_eq!(
        report.orders_ok,
        8,
        "{report}\npebble log:\n{}",
        pebble.log_tail()
    );
    assert_eq!(report.orders_failed, 0);
    assert!(report.first_error.is_none());
    assert!(report.p50 <= report.p99 && report.p99 <= report.max);
    assert_eq!(report.issued.len(), 8);
    for issued in &report.issued {
        assert!(issued.name.ends_with(".example.test"));
        assert_eq!(leaf_dns_names(&issued.chain_pem), vec![issued.name.clone()]);
    }
}

/// RFC 8737: one certificate through the tls-alpn-01 responder, with a
/// reused key and persisted-then-restored account credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_against_pebble() {
    let (_bind, pebble) = start_peers();
    let directory =
        AcmeDirectory::new(pebble.directory_url()).with_root_pem(pebble.tls_ca_pem_path());
    let (_, credentials) = AcmeAccount::create(&directory, &NewAccountOptions::default())
        .await
        .expect("account");
    // What the agent will persist and load on the next start.
    let stored = serde_json::to_string(&credentials).expect("credentials serialize");
    let account = AcmeAccount::load(&directory, serde_json::from_str(&stored).unwrap())
        .await
        .expect("account restored");

    let responder = TlsAlpn01Responder::bind(loopback(pebble.tlsalpn01_port()))
        .await
        .expect("bind tls-alpn-01");
    let name = "alpn.example.test";
    let issued = account
        .issue(&OrderRequest::new([name]), &responder)
        .await
        .unwrap_or_else(|e| panic!("{e}\npebble log:\n{}", pebble.log_tail()));
    assert_eq!(leaf_dns_names(&issued.chain_pem), vec![name.to_owned()]);
    assert!(issued.order_url.starts_with("https://localhost:"));
    assert!(issued.not_after > issued.not_before);
    assert_eq!(responder.pending(), 0, "challenge certificate withdrawn");
    assert!(format!("{:?}", issued.key).contains("<redacted>"));

    // Same key again, as a deployment with a pinned key would renew.
    let renewed = account
        .issue(
            &OrderRequest {
                key: certkeeper_agent::acme::KeyChoice::Reuse(issued.key.clone()),
                ..OrderRequest::new([name])
            },
            &responder,
        )
        .await
        .expect("renewal with the same key");
    assert_eq!(renewed.key.pkcs8_der(), issued.key.pkcs8_der());
    assert_ne!(renewed.chain[0], issued.chain[0]);
}

/// A failed validation names the identifier and carries pebble's problem:
/// nothing listens on pebble's http-01 port, so the VA cannot connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_validation_is_explained() {
    let (_bind, pebble) = start_peers();
    let directory =
        AcmeDirectory::new(pebble.directory_url()).with_root_pem(pebble.tls_ca_pem_path());
    let (account, _) = AcmeAccount::create(&directory, &NewAccountOptions::default())
        .await
        .expect("account");
    // Port 0: a responder the VA cannot reach.
    let responder = Http01Responder::bind(loopback(0)).await.expect("bind");
    let name = "nobody-home.example.test";
    let err = account
        .issue(&OrderRequest::new([name]), &responder)
        .await
        .expect_err("validation must fail");
    let message = err.to_string();
    println!("{message}");
    assert!(matches!(err, AcmeError::OrderInvalid { .. }), "{message}");
    assert!(message.contains(name), "{message}");
    let problem = err.problem().expect("problem document");
    assert_eq!(
        problem.r#type.as_deref(),
        Some("urn:ietf:params:acme:error:connection"),
        "{message}"
    );
    assert_eq!(responder.pending(), 0, "token withdrawn after failure");
}
