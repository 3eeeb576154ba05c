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

/// RFC 8555 §6.5 across a restart: nonces are stateless (HMAC under a key
/// in the data directory), so a nonce fetched before `kill -9` is still
/// good afterwards, once; its replay is `badNonce`.
#[tokio::test(flavor = "multi_thread")]
async fn a_nonce_from_before_a_restart_is_good_once() {
    use certkeeper_proto::jws::{SigningKey, sign};
    use serde_json::{Value, json};
    let bind = Bind::start().expect("BIND");
    let mut ca = CertkeeperCa::start(
        Path::new(env!("CARGO_BIN_EXE_certkeeper")),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            ..Default::default()
        },
    )
    .expect("CA");
    let root = reqwest::Certificate::from_pem(&std::fs::read(ca.root_pem_path()).expect("root"))
        .expect("root PEM");
    let http = reqwest::Client::builder()
        .tls_certs_only([root])
        .no_proxy()
        .build()
        .expect("client");
    let dir: Value = http
        .get(ca.directory_url())
        .send()
        .await
        .expect("directory")
        .json()
        .await
        .expect("JSON");
    let url = |k: &str| dir[k].as_str().expect("directory URL").to_string();
    let nonce = http
        .head(url("newNonce"))
        .send()
        .await
        .expect("newNonce")
        .headers()
        .get("replay-nonce")
        .and_then(|v| v.to_str().ok())
        .expect("nonce")
        .to_string();

    ca.kill();
    ca.restart().expect("restart");

    let key = SigningKey::generate_p256().expect("key");
    let body = |nonce: &str| {
        let header =
            json!({ "nonce": nonce, "url": url("newAccount"), "jwk": key.jwk().to_json() });
        let payload = serde_json::to_vec(&json!({ "termsOfServiceAgreed": true })).expect("json");
        serde_json::to_vec(&sign(&key, header, &payload).expect("sign")).expect("json")
    };
    let post = |b: Vec<u8>| {
        http.post(url("newAccount"))
            .header("content-type", "application/jose+json")
            .body(b)
            .send()
    };
    let r = post(body(&nonce)).await.expect("newAccount");
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
    let r = post(body(&nonce)).await.expect("replay");
    let status = r.status().as_u16();
    let problem: Value = r.json().await.expect("problem");
    assert_eq!(
        (status, problem["type"].as_str()),
        (400, Some("urn:ietf:params:acme:error:badNonce")),
        "{problem}"
    );
}
