//! Certificate-key revocation against a CA that rejects nonces on cue: a
//! fault pebble only produces at random (`PEBBLE_WFE_NONCEREJECT`), so the
//! retry rule of RFC 8555 §6.5 is pinned down here with a small ACME
//! endpoint on loopback that speaks real HTTP and checks the real JWS.
//! Real-CA revocation is in `crates/certkeeper/tests/agent_revocation.rs`.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use certkeeper_agent::acme::{
    AcmeDirectory, CertificateKey, CertificateKeyRevoker, KeyAlgorithm, RevocationReason,
    RevokeError,
};
use certkeeper_proto::{Jws, KeyRef};
use rcgen::{CertificateParams, KeyPair};

const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";

#[derive(Default)]
struct Seen {
    /// Nonces the revocation POSTs carried, in order.
    nonces: Vec<String>,
    /// HEAD/GET requests to newNonce.
    new_nonce_calls: usize,
    /// POSTs without a valid signature by the key in their `jwk` header.
    not_signed_by_jwk: usize,
}

#[derive(Clone)]
struct Ca {
    base: String,
    /// How many POSTs to refuse with badNonce before accepting.
    reject: usize,
    /// Whether a badNonce answer carries a fresh Replay-Nonce.
    nonce_in_error: bool,
    seen: Arc<Mutex<Seen>>,
}

async fn directory(State(ca): State<Ca>) -> Response {
    axum::Json(serde_json::json!({
        "newNonce": format!("{}/nonce", ca.base),
        "revokeCert": format!("{}/revoke", ca.base),
    }))
    .into_response()
}

async fn nonce(State(ca): State<Ca>) -> Response {
    let n = {
        let mut seen = ca.seen.lock().expect("lock");
        seen.new_nonce_calls += 1;
        format!("head{}", seen.new_nonce_calls)
    };
    (StatusCode::OK, [("replay-nonce", n)]).into_response()
}

async fn revoke(State(ca): State<Ca>, body: axum::body::Bytes) -> Response {
    let jws = Jws::parse(&body).expect("the client sends a valid JWS");
    let signed = match &jws.protected.key {
        KeyRef::Jwk(jwk) => jws.verify(jwk).is_ok(),
        KeyRef::Kid(_) => false,
    };
    let attempt = {
        let mut seen = ca.seen.lock().expect("lock");
        if !signed {
            seen.not_signed_by_jwk += 1;
        }
        seen.nonces
            .push(jws.protected.nonce.clone().unwrap_or_default());
        seen.nonces.len()
    };
    if attempt <= ca.reject {
        let problem = serde_json::json!({
            "type": BAD_NONCE,
            "detail": "JWS has an invalid anti-replay nonce",
            "status": 400,
        })
        .to_string();
        let mut rsp = (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/problem+json")],
            problem,
        )
            .into_response();
        if ca.nonce_in_error {
            rsp.headers_mut().insert(
                "replay-nonce",
                format!("fresh{attempt}").parse().expect("header"),
            );
        }
        return rsp;
    }
    StatusCode::OK.into_response()
}

async fn start(reject: usize, nonce_in_error: bool) -> Ca {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let ca = Ca {
        base,
        reject,
        nonce_in_error,
        seen: Arc::default(),
    };
    let app = Router::new()
        .route("/dir", get(directory))
        .route("/nonce", get(nonce))
        .route("/revoke", post(revoke))
        .with_state(ca.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    ca
}

fn certificate() -> (Vec<u8>, CertificateKey) {
    let key = CertificateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
    let pair = KeyPair::try_from(key.pkcs8_der()).expect("rcgen key");
    let der = CertificateParams::new(vec!["nonce.example.test".to_string()])
        .expect("params")
        .self_signed(&pair)
        .expect("certificate")
        .der()
        .to_vec();
    (der, key)
}

async fn run(ca: &Ca) -> Result<(), RevokeError> {
    let (der, key) = certificate();
    CertificateKeyRevoker::new(&AcmeDirectory::new(format!("{}/dir", ca.base)))
        .expect("revoker")
        .revoke(&der, &key, RevocationReason::KeyCompromise)
        .await
}

#[tokio::test]
async fn rfc8555_6_5_bad_nonce_is_retried_with_the_nonce_from_the_error() {
    let ca = start(2, true).await;
    run(&ca).await.expect("third attempt succeeds");
    let seen = ca.seen.lock().expect("lock");
    assert_eq!(seen.nonces, ["head1", "fresh1", "fresh2"]);
    assert_eq!(
        seen.new_nonce_calls, 1,
        "the error's nonce is used, no HEAD"
    );
    assert_eq!(
        seen.not_signed_by_jwk, 0,
        "every attempt is signed with the certificate key"
    );
}

#[tokio::test]
async fn bad_nonce_without_a_fresh_nonce_asks_new_nonce_again() {
    let ca = start(1, false).await;
    run(&ca).await.expect("second attempt succeeds");
    let seen = ca.seen.lock().expect("lock");
    assert_eq!(seen.nonces, ["head1", "head2"]);
}

#[tokio::test]
async fn endless_bad_nonce_gives_up_with_the_typed_problem() {
    let ca = start(usize::MAX, true).await;
    let err = run(&ca).await.expect_err("gives up");
    assert_eq!(err.problem_type(), Some(BAD_NONCE), "{err}");
    assert!(err.is_retryable(), "a later attempt may succeed");
    assert!(err.to_string().contains("anti-replay nonce"), "{err}");
    assert_eq!(
        ca.seen.lock().expect("lock").nonces.len(),
        4,
        "one attempt plus three retries"
    );
}
