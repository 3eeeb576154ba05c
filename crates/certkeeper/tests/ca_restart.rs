//! Durability: the CA is killed (SIGKILL) in the middle of a client's order
//! and restarted; the client finishes the same order afterwards. Accounts,
//! orders, authorizations and certificates live in the store, not in memory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use certkeeper_harness::{Bind, CaOptions, CertkeeperCa};
use instant_acme::{
    Account, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};

type Tokens = Arc<Mutex<HashMap<String, String>>>;

/// A minimal http-01 responder on the port the CA validates.
async fn serve_http01(port: u16, tokens: Tokens) {
    let app = axum::Router::new()
        .route(
            "/.well-known/acme-challenge/{token}",
            axum::routing::get(
                |State(t): State<Tokens>, UrlPath(token): UrlPath<String>| async move {
                    t.lock()
                        .expect("lock")
                        .get(&token)
                        .cloned()
                        .unwrap_or_default()
                },
            ),
        )
        .with_state(tokens);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind http-01");
    tokio::spawn(async move { axum::serve(listener, app).await });
}

/// RFC 8555 §7.1.6: an order validated before a crash is still `ready` after
/// it, and finalizes into a certificate; exactly one certificate is issued.
#[tokio::test(flavor = "multi_thread")]
async fn client_completes_its_order_across_a_ca_restart() {
    let bind = Bind::start().expect("BIND");
    let mut ca = CertkeeperCa::start(
        Path::new(env!("CARGO_BIN_EXE_certkeeper")),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            ..Default::default()
        },
    )
    .expect("CA");
    let tokens: Tokens = Arc::default();
    serve_http01(ca.http01_port(), Arc::clone(&tokens)).await;

    let (account, _) = Account::builder_with_root(ca.root_pem_path())
        .expect("builder")
        .create(
            &NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            ca.directory_url(),
            None,
        )
        .await
        .expect("newAccount");
    let name = "restart.example.test";
    let mut order = account
        .new_order(&NewOrder::new(&[Identifier::Dns(name.into())]))
        .await
        .expect("newOrder");
    {
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz.expect("authz");
            let mut challenge = authz
                .challenge(ChallengeType::Http01)
                .expect("http-01 offered");
            tokens.lock().expect("lock").insert(
                challenge.token.clone(),
                challenge.key_authorization().as_str().to_string(),
            );
            challenge.set_ready().await.expect("challenge ready");
        }
    }
    let retry = RetryPolicy::new()
        .initial_delay(std::time::Duration::from_millis(50))
        .timeout(std::time::Duration::from_secs(20));
    assert_eq!(
        order.poll_ready(&retry).await.expect("poll ready"),
        OrderStatus::Ready
    );

    // Crash and come back; nonces are forgotten, state is not.
    tokio::task::block_in_place(|| ca.restart()).expect("restart CA");

    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).expect("csr");
    order
        .finalize_csr(csr.der())
        .await
        .expect("finalize after restart");
    let chain = order
        .poll_certificate(&retry)
        .await
        .expect("certificate after restart");
    assert!(chain.contains("BEGIN CERTIFICATE"));

    let list = tokio::task::block_in_place(|| ca.list()).expect("list");
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(1),
        "exactly one certificate: {list}"
    );
    assert_eq!(list[0]["names"][0], name);
}
