//! Faults no real CA produces on demand, from tiny servers that speak real
//! HTTP on a loopback port (DESIGN.md, "Real peers, not mocks": a mock only
//! for a fault a real peer cannot produce, and then over a real socket).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use certkeeper_agent::acme::{AcmeAccount, AcmeDirectory, AcmeError, NewAccountOptions};
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
