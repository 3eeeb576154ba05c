//! Faults no real CA produces on demand, from tiny servers that speak real
//! HTTP on a loopback port (DESIGN.md, "Real peers, not mocks": a mock only
//! for a fault a real peer cannot produce, and then over a real socket).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use certkeeper_agent::acme::{
    AcmeAccount, AcmeDirectory, AcmeError, CertificateKey, ChallengeType, KeyAlgorithm,
    NewAccountOptions, OrderRequest, PendingChallenge, Solver, SolverFuture,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `app` on an ephemeral loopback port for the rest of the test.
async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Registers an account at `http://ADDR/dir` and returns the error it must fail with.
async fn account_error(addr: SocketAddr) -> AcmeError {
    let directory = AcmeDirectory::new(format!("http://{addr}/dir"));
    match AcmeAccount::create(&directory, &NewAccountOptions::default()).await {
        Ok(_) => panic!("the faulty CA must not yield an account"),
        Err(e) => e,
    }
}

/// A CA that answers everything `503` with this `Retry-After`.
async fn unavailable_with(retry_after: &'static str) -> SocketAddr {
    serve(Router::new().fallback(any(move || async move {
        let mut rsp = (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/problem+json")],
            r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"come back later","status":503}"#,
        )
            .into_response();
        rsp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(retry_after));
        rsp
    })))
    .await
}

const THIRTY_DAYS: Duration = Duration::from_secs(30 * 24 * 3600);

fn assert_capped(e: &AcmeError, sent: &str) {
    let wait = e.retry_after().expect("the CA's Retry-After is kept");
    assert!(
        wait <= THIRTY_DAYS && wait >= THIRTY_DAYS - Duration::from_secs(60),
        "capped to 30 days, got {wait:?}"
    );
    let report = e.report();
    assert!(report.contains("capped"), "{report}");
    assert!(
        report.contains(sent),
        "the CA's own value is quoted: {report}"
    );
}

/// RFC 9110 §10.2.3 delay-seconds has no upper bound; `u64::MAX` once
/// panicked the agent (`SystemTime + Duration` overflow).
#[tokio::test]
async fn retry_after_u64_max_seconds_is_capped_not_a_panic() {
    let sent = "18446744073709551615";
    let addr = unavailable_with(sent).await;
    let e = account_error(addr).await;
    assert_capped(&e, sent);
}

/// An HTTP-date in year 9999 once silenced the issuer for 8000 years.
#[tokio::test]
async fn retry_after_date_in_year_9999_is_capped() {
    let sent = "Fri, 31 Dec 9999 23:59:59 GMT";
    let addr = unavailable_with(sent).await;
    let e = account_error(addr).await;
    assert_capped(&e, sent);
}

/// A valid directory, padded past the 1 MiB limit so that only the limit
/// (not a JSON error) can refuse it.
fn padded_directory(addr: SocketAddr) -> Vec<u8> {
    let mut body = format!(
        r#"{{"newNonce":"http://{addr}/nonce","newAccount":"http://{addr}/account","newOrder":"http://{addr}/order"}}"#
    )
    .into_bytes();
    body.resize(2 * 1024 * 1024, b' ');
    body
}

fn assert_too_large(e: &AcmeError, addr: SocketAddr) {
    let report = e.report();
    assert!(report.contains(&format!("http://{addr}/dir")), "{report}");
    assert!(report.contains("1 MiB"), "{report}");
}

/// A body with a `Content-Length` over the limit is refused without reading it.
#[tokio::test]
async fn oversized_body_with_content_length_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = padded_directory(addr);
    let app = Router::new().fallback(any(move || {
        let body = body.clone();
        async move {
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(body))
                .expect("response")
        }
    }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let e = account_error(addr).await;
    assert_too_large(&e, addr);
}

/// A chunked body (no length announced) is cut off once past the limit.
#[tokio::test]
async fn oversized_chunked_body_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = padded_directory(addr);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                // One request per connection: read its head, answer, close.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                          transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                for chunk in body.chunks(64 * 1024) {
                    let size = format!("{:x}\r\n", chunk.len());
                    if sock.write_all(size.as_bytes()).await.is_err()
                        || sock.write_all(chunk).await.is_err()
                        || sock.write_all(b"\r\n").await.is_err()
                    {
                        return;
                    }
                }
                let _ = sock.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    let e = account_error(addr).await;
    assert_too_large(&e, addr);
}

/// A CA whose order for `asked.example.test` carries a second authorization,
/// for `evil.example.test`, that nobody asked for. Records every challenge
/// POST so the test can see nothing was triggered.
struct SneakyCa {
    base: String,
    challenge_posts: Arc<Mutex<Vec<String>>>,
}

const ASKED: &str = "asked.example.test";
const EVIL: &str = "evil.example.test";

impl SneakyCa {
    async fn start() -> SneakyCa {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let challenge_posts = Arc::new(Mutex::new(Vec::new()));
        let (b, posts) = (base.clone(), challenge_posts.clone());
        let app = Router::new().fallback(any(move |method: Method, uri: Uri| {
            let (b, posts) = (b.clone(), posts.clone());
            async move { sneaky_answer(&b, &posts, &method, uri.path()) }
        }));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SneakyCa {
            base,
            challenge_posts,
        }
    }

    fn posts(&self) -> Vec<String> {
        self.challenge_posts.lock().expect("lock").clone()
    }
}

fn sneaky_answer(base: &str, posts: &Mutex<Vec<String>>, method: &Method, path: &str) -> Response {
    let authz = |name: &str, n: u32| {
        serde_json::json!({
            "status": "pending",
            "identifier": {"type": "dns", "value": name},
            "challenges": [{
                "type": "http-01", "url": format!("{base}/chall/{n}"),
                "token": format!("token{n}"), "status": "pending"
            }]
        })
    };
    let order = serde_json::json!({
        "status": "pending",
        "identifiers": [{"type": "dns", "value": ASKED}],
        "authorizations": [format!("{base}/authz/1"), format!("{base}/authz/2")],
        "finalize": format!("{base}/finalize/1"),
    });
    let (status, location, body) = match path {
        "/dir" => (
            StatusCode::OK,
            None,
            serde_json::json!({
                "newNonce": format!("{base}/nonce"),
                "newAccount": format!("{base}/account"),
                "newOrder": format!("{base}/new-order"),
            }),
        ),
        "/nonce" => (StatusCode::OK, None, serde_json::Value::Null),
        "/account" => (
            StatusCode::CREATED,
            Some(format!("{base}/account/1")),
            serde_json::json!({"status": "valid"}),
        ),
        "/new-order" => (StatusCode::CREATED, Some(format!("{base}/order/1")), order),
        "/order/1" => (StatusCode::OK, None, order),
        "/authz/1" => (StatusCode::OK, None, authz(ASKED, 1)),
        "/authz/2" => (StatusCode::OK, None, authz(EVIL, 2)),
        p if p.starts_with("/chall/") && *method == Method::POST => {
            posts.lock().expect("lock").push(p.to_owned());
            let challenge = serde_json::json!({
                "type": "http-01", "url": format!("{base}{p}"), "token": "t", "status": "processing"
            });
            (StatusCode::OK, None, challenge)
        }
        _ => (StatusCode::NOT_FOUND, None, serde_json::Value::Null),
    };
    let mut rsp = Response::builder()
        .status(status)
        .header("replay-nonce", format!("nonce{}", rand::random::<u64>()))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(location) = location {
        rsp = rsp.header(header::LOCATION, location);
    }
    let body = if body.is_null() {
        axum::body::Body::empty()
    } else {
        axum::body::Body::from(body.to_string())
    };
    rsp.body(body).expect("response")
}

/// Counts what it is asked to present; publishes nothing.
#[derive(Default)]
struct CountingSolver(Mutex<Vec<String>>);

impl Solver for CountingSolver {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Http01
    }

    fn present<'a>(&'a self, challenge: &'a PendingChallenge) -> SolverFuture<'a> {
        self.0
            .lock()
            .expect("lock")
            .push(challenge.identifier.clone());
        Box::pin(async { Ok(()) })
    }

    fn cleanup<'a>(&'a self, _: &'a PendingChallenge) -> SolverFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

fn assert_refused_unrequested(e: &AcmeError) {
    let text = e.report();
    assert!(
        matches!(e, AcmeError::UnrequestedIdentifier { identifier, .. } if identifier == EVIL),
        "{text}"
    );
    assert!(text.contains(EVIL) && text.contains(ASKED), "{text}");
    assert!(e.needs_new_order(), "{text}");
}

/// An authorization for an identifier the order never asked for is refused
/// before anything is presented or any challenge is triggered: proving
/// control of it would hand the CA (or whoever controls it) an authorization
/// on our account for a name that is not ours to ask about. Both for a
/// fresh order and for a resumed one.
#[tokio::test]
async fn authorization_for_an_unrequested_identifier_is_refused_before_presenting() {
    let ca = SneakyCa::start().await;
    let directory = AcmeDirectory::new(format!("{}/dir", ca.base));
    let (account, _) = AcmeAccount::create(&directory, &NewAccountOptions::default())
        .await
        .expect("account");
    let solver = CountingSolver::default();
    let mut request = OrderRequest::new([ASKED]);
    // Without the fix the client waits for `ready`; do not wait long.
    request.poll.timeout = Duration::from_secs(2);

    let e = account
        .issue(&request, &solver)
        .await
        .expect_err("fresh order");
    assert_refused_unrequested(&e);
    assert_eq!(*solver.0.lock().expect("lock"), Vec::<String>::new());
    assert_eq!(ca.posts(), Vec::<String>::new(), "no challenge triggered");

    let key = CertificateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
    let e = account
        .complete_order(
            &format!("{}/order/1", ca.base),
            &[ASKED.to_owned()],
            &key,
            &solver,
            &request.poll,
            1_800_000_000,
        )
        .await
        .expect_err("resumed order");
    assert_refused_unrequested(&e);
    assert_eq!(*solver.0.lock().expect("lock"), Vec::<String>::new());
    assert_eq!(ca.posts(), Vec::<String>::new(), "no challenge triggered");
}
