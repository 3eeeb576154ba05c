//! CRL downloads against faults a real CA cannot produce on demand: a body
//! over the size limit (declared and chunked), a server that never answers,
//! an HTTP error; and the cache, observed by counting requests. The server
//! is a few lines of raw HTTP/1.1 on a loopback port; the CRLs it serves
//! are real, signed with rcgen. Real-CA behaviour is tested in
//! `crates/certkeeper/tests/agent_revocation.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use certkeeper_agent::monitor::crl::{CrlChecker, CrlError, CrlOptions, CrlReason, CrlStatus};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const NOW: i64 = 1_800_000_000;

/// What the server sends for every request.
#[derive(Clone)]
enum Reply {
    /// 200 with Content-Length.
    Body(Vec<u8>),
    /// 200, chunked, no Content-Length: `chunks` chunks of `size` bytes.
    Chunked { chunks: usize, size: usize },
    /// 200 with a Content-Length header only (the body never comes).
    Declared(u64),
    /// A status line and no body.
    Status(u16),
    /// Read the request, then say nothing.
    Silent,
    /// The body for the first request, 503 for every later one.
    Once(Vec<u8>),
    /// The n-th body for the n-th request, the last one from then on.
    Sequence(Vec<Vec<u8>>),
}

struct Server {
    url: String,
    hits: Arc<AtomicUsize>,
}

async fn serve(reply: Reply) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let reply = reply.clone();
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let hit = counter.fetch_add(1, Ordering::SeqCst);
                let reply = match reply {
                    Reply::Once(body) if hit == 0 => Reply::Body(body),
                    Reply::Once(_) => Reply::Status(503),
                    Reply::Sequence(bodies) => match bodies.get(hit).or(bodies.last()) {
                        Some(body) => Reply::Body(body.clone()),
                        None => Reply::Status(404),
                    },
                    other => other,
                };
                let head = |extra: &str| {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nConnection: close\r\n{extra}\r\n"
                    )
                };
                let _ = match reply {
                    Reply::Body(body) => {
                        let mut out = head(&format!("Content-Length: {}\r\n", body.len())).into_bytes();
                        out.extend_from_slice(&body);
                        sock.write_all(&out).await
                    }
                    Reply::Chunked { chunks, size } => {
                        let mut r = sock.write_all(head("Transfer-Encoding: chunked\r\n").as_bytes()).await;
                        let data = vec![0x30u8; size];
                        for _ in 0..chunks {
                            if r.is_err() {
                                break;
                            }
                            let mut out = format!("{size:x}\r\n").into_bytes();
                            out.extend_from_slice(&data);
                            out.extend_from_slice(b"\r\n");
                            r = sock.write_all(&out).await;
                        }
                        if r.is_ok() {
                            r = sock.write_all(b"0\r\n\r\n").await;
                        }
                        r
                    }
                    Reply::Declared(len) => {
                        let r = sock.write_all(head(&format!("Content-Length: {len}\r\n")).as_bytes()).await;
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        r
                    }
                    Reply::Status(code) => {
                        sock.write_all(
                            format!("HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                                .as_bytes(),
                        )
                        .await
                    }
                    Reply::Silent | Reply::Once(_) | Reply::Sequence(_) => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        Ok(())
                    }
                };
            });
        }
    });
    Server {
        url: format!("http://127.0.0.1:{port}/int.crl"),
        hits,
    }
}

struct Pki {
    issuer: Issuer<'static, KeyPair>,
    issuer_der: Vec<u8>,
}

fn pki() -> Pki {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, "Loopback CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer_der = p.self_signed(&key).expect("CA").der().to_vec();
    Pki {
        issuer: Issuer::new(p, key),
        issuer_der,
    }
}

fn leaf(pki: &Pki, url: &str) -> Vec<u8> {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec!["leaf.example.test".to_string()]).expect("params");
    p.serial_number = Some(SerialNumber::from_slice(&[7]));
    p.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![url.to_string()],
    }];
    p.signed_by(&key, &pki.issuer).expect("leaf").der().to_vec()
}

fn empty_crl(pki: &Pki) -> Vec<u8> {
    numbered_crl(pki, 1, &[])
}

/// A CRL with CRL number `number` listing `revoked` serials (keyCompromise).
fn numbered_crl(pki: &Pki, number: u8, revoked: &[u8]) -> Vec<u8> {
    let at = |t: i64| time::OffsetDateTime::from_unix_timestamp(t).expect("time");
    CertificateRevocationListParams {
        this_update: at(NOW - 60),
        next_update: at(NOW + 86_400),
        crl_number: SerialNumber::from_slice(&[number]),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&[*serial]),
                revocation_time: at(NOW - 30),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&pki.issuer)
    .expect("CRL")
    .der()
    .to_vec()
}

fn checker(max_bytes: usize, timeout: Duration, max_age: i64) -> CrlChecker {
    CrlChecker::with_options(&CrlOptions {
        http_timeout: timeout,
        max_bytes,
        max_cache_age_secs: max_age,
        root_pem: None,
    })
    .expect("checker")
}

fn assert_too_large(err: &CrlError, url: &str, limit: usize) {
    assert!(
        matches!(err, CrlError::TooLarge { url: u, limit: l } if u == url && *l == limit),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(url) && text.contains(&limit.to_string()),
        "the message names the URL and the limit: {text}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_without_reading_it() {
    let pki = pki();
    // 11 MiB declared, never sent: the default 10 MiB cap must refuse on
    // the header alone (the body would otherwise time out).
    let server = serve(Reply::Declared(11 * 1024 * 1024)).await;
    let checker = CrlChecker::new(Duration::from_secs(5), 10 * 1024 * 1024).expect("checker");
    let err = checker
        .check(&leaf(&pki, &server.url), &pki.issuer_der, NOW)
        .await
        .expect_err("too large");
    assert_too_large(&err, &server.url, 10 * 1024 * 1024);
}

#[tokio::test]
async fn a_chunked_body_is_cut_off_at_the_limit() {
    let pki = pki();
    let server = serve(Reply::Chunked {
        chunks: 64,
        size: 16 * 1024,
    })
    .await;
    let limit = 100 * 1024;
    let err = checker(limit, Duration::from_secs(5), 3600)
        .check(&leaf(&pki, &server.url), &pki.issuer_der, NOW)
        .await
        .expect_err("too large");
    assert_too_large(&err, &server.url, limit);
}

#[tokio::test]
async fn a_silent_server_times_out_and_is_retryable() {
    let pki = pki();
    let server = serve(Reply::Silent).await;
    let err = checker(1024 * 1024, Duration::from_millis(300), 3600)
        .check(&leaf(&pki, &server.url), &pki.issuer_der, NOW)
        .await
        .expect_err("timeout");
    assert!(matches!(err, CrlError::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn an_http_error_is_reported_with_its_status() {
    let pki = pki();
    let server = serve(Reply::Status(503)).await;
    let err = checker(1024 * 1024, Duration::from_secs(5), 3600)
        .check(&leaf(&pki, &server.url), &pki.issuer_der, NOW)
        .await
        .expect_err("503");
    assert!(
        matches!(&err, CrlError::Status { status: 503, url } if *url == server.url),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let server = serve(Reply::Status(404)).await;
    let err = checker(1024 * 1024, Duration::from_secs(5), 3600)
        .check(&leaf(&pki, &server.url), &pki.issuer_der, NOW)
        .await
        .expect_err("404");
    assert!(!err.is_retryable(), "{err}");
}

/// The cache: one download serves checks until the age bound or
/// nextUpdate, concurrent checks share one download, and `check_forced`
/// always downloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_downloads_once_until_due_or_forced() {
    let pki = pki();
    let server = serve(Reply::Body(empty_crl(&pki))).await;
    let cert = leaf(&pki, &server.url);
    let checker = Arc::new(checker(1024 * 1024, Duration::from_secs(5), 600));

    let mut tasks = Vec::new();
    for _ in 0..8 {
        let checker = Arc::clone(&checker);
        let cert = cert.clone();
        let issuer = pki.issuer_der.clone();
        tasks.push(tokio::spawn(async move {
            checker.check(&cert, &issuer, NOW).await
        }));
    }
    for task in tasks {
        assert!(matches!(
            task.await.expect("task"),
            Ok(CrlStatus::Good { .. })
        ));
    }
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        1,
        "concurrent checks share one download"
    );

    checker
        .check(&cert, &pki.issuer_der, NOW + 599)
        .await
        .expect("cached");
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        1,
        "within the age bound"
    );

    checker
        .check(&cert, &pki.issuer_der, NOW + 600)
        .await
        .expect("refetched");
    assert_eq!(server.hits.load(Ordering::SeqCst), 2, "age bound reached");

    checker
        .check_forced(&cert, &pki.issuer_der, NOW + 601)
        .await
        .expect("forced");
    assert_eq!(server.hits.load(Ordering::SeqCst), 3, "forced");

    // Past nextUpdate the cached CRL is not used; the same (stale) CRL
    // downloaded again is refused as stale.
    let err = checker
        .check(&cert, &pki.issuer_der, NOW + 86_400)
        .await
        .expect_err("stale");
    assert!(matches!(err, CrlError::Stale { .. }), "{err}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 4, "nextUpdate passed");
}

/// The CA's CRL endpoint goes down after one download: past the cache-age
/// bound, the cached CRL (still before its nextUpdate) keeps answering;
/// a forced check reports the outage; past nextUpdate nothing answers.
#[tokio::test]
async fn an_outage_falls_back_to_the_cached_crl_until_its_next_update() {
    let pki = pki();
    let server = serve(Reply::Once(empty_crl(&pki))).await;
    let cert = leaf(&pki, &server.url);
    let checker = checker(1024 * 1024, Duration::from_secs(5), 60);
    assert!(matches!(
        checker.check(&cert, &pki.issuer_der, NOW).await,
        Ok(CrlStatus::Good { .. })
    ));

    let status = checker.check(&cert, &pki.issuer_der, NOW + 3600).await;
    assert!(matches!(status, Ok(CrlStatus::Good { .. })), "{status:?}");
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        2,
        "a download was tried"
    );

    let err = checker
        .check_forced(&cert, &pki.issuer_der, NOW + 3600)
        .await
        .expect_err("forced checks report the outage");
    assert!(matches!(err, CrlError::Status { status: 503, .. }), "{err}");

    let err = checker
        .check(&cert, &pki.issuer_der, NOW + 86_400)
        .await
        .expect_err("past nextUpdate the cache is no answer");
    assert!(matches!(err, CrlError::Status { status: 503, .. }), "{err}");
}

/// RFC 5280 §5.2.3: CRL numbers only grow. A replayed older CRL (still
/// current, and validly signed) must not hide a revocation the newer one
/// showed; a newer CRL does replace the cached one.
#[tokio::test]
async fn an_older_crl_never_replaces_a_newer_cached_one() {
    let pki = pki();
    let newer = numbered_crl(&pki, 2, &[7]);
    let older = numbered_crl(&pki, 1, &[]);
    let server = serve(Reply::Sequence(vec![newer.clone(), older.clone()])).await;
    let cert = leaf(&pki, &server.url);
    let checker = checker(1024 * 1024, Duration::from_secs(5), 60);
    let revoked = CrlStatus::Revoked {
        reason: Some(CrlReason::KeyCompromise),
        revoked_at: NOW - 30,
    };
    assert_eq!(
        checker
            .check(&cert, &pki.issuer_der, NOW)
            .await
            .expect("first"),
        revoked
    );
    assert_eq!(
        checker
            .check_forced(&cert, &pki.issuer_der, NOW)
            .await
            .expect("replayed"),
        revoked,
        "the replayed older CRL is ignored"
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 2, "it was downloaded");

    let server = serve(Reply::Sequence(vec![older, newer])).await;
    let cert = leaf(&pki, &server.url);
    let checker = self::checker(1024 * 1024, Duration::from_secs(5), 60);
    assert!(matches!(
        checker.check(&cert, &pki.issuer_der, NOW).await,
        Ok(CrlStatus::Good { .. })
    ));
    assert_eq!(
        checker
            .check_forced(&cert, &pki.issuer_der, NOW)
            .await
            .expect("newer"),
        revoked
    );
}
