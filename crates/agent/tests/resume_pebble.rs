//! Resumable orders (DESIGN: "a restarted process resumes an order in flight
//! instead of creating a new one") and ARI, against a real pebble with a real
//! BIND resolving `*.example.test` to 127.0.0.1.
//!
//! Each test stops the flow where a `kill -9` could: after `newOrder`, after
//! some or all validations, after finalize; then resumes from nothing but
//! what the agent persists (account credentials as JSON, order URL, key).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use certkeeper_agent::acme::{
    AcmeAccount, AcmeDirectory, AcmeError, CertificateKey, Http01Responder, KeyAlgorithm,
    KeyChoice, NewAccountOptions, OrderRequest, PendingChallenge, PollPolicy, Solver, SolverFuture,
    Step, cert_id,
};
use certkeeper_harness::{Bind, Pebble};
use instant_acme::{AuthorizationStatus, ChallengeType, Identifier, OrderStatus};
use x509_parser::extensions::GeneralName;

const PEBBLE_ENV: &[(&str, &str)] = &[("PEBBLE_WFE_NONCEREJECT", "0")];

fn start_peers() -> (Bind, Pebble) {
    let bind = Bind::start().expect("start BIND");
    let pebble = Pebble::start(Some(&bind), PEBBLE_ENV).expect("start pebble");
    (bind, pebble)
}

fn directory(pebble: &Pebble) -> AcmeDirectory {
    AcmeDirectory::new(pebble.directory_url()).with_root_pem(pebble.tls_ca_pem_path())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The wall clock, what the agent's clock reads outside tests that move it.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

/// Registers an account and returns what the agent would have stored.
async fn stored_account(pebble: &Pebble) -> String {
    let (_, credentials) = AcmeAccount::create(&directory(pebble), &NewAccountOptions::default())
        .await
        .expect("account");
    serde_json::to_string(&credentials).expect("credentials serialize")
}

/// What a restarted agent does first: load the account from the store.
async fn restore(pebble: &Pebble, stored: &str) -> AcmeAccount {
    AcmeAccount::load(
        &directory(pebble),
        serde_json::from_str(stored).expect("credentials parse"),
    )
    .await
    .expect("account restored")
}

fn leaf_dns_names(issued: &certkeeper_agent::acme::IssuedCertificate) -> Vec<String> {
    let (_, leaf) =
        x509_parser::parse_x509_certificate(issued.chain[0].as_ref()).expect("leaf parses");
    let san = leaf
        .subject_alternative_name()
        .expect("SAN well-formed")
        .expect("leaf has a SAN");
    let mut out: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// An http-01 solver that records which identifiers it was asked to present.
struct Recording<'a> {
    inner: &'a Http01Responder,
    presented: Mutex<Vec<String>>,
}

impl<'a> Recording<'a> {
    fn new(inner: &'a Http01Responder) -> Self {
        Self {
            inner,
            presented: Mutex::default(),
        }
    }

    fn presented(&self) -> Vec<String> {
        self.presented.lock().expect("lock").clone()
    }
}

impl Solver for Recording<'_> {
    fn challenge_type(&self) -> ChallengeType {
        self.inner.challenge_type()
    }

    fn present<'a>(&'a self, challenge: &'a PendingChallenge) -> SolverFuture<'a> {
        self.presented
            .lock()
            .expect("lock")
            .push(challenge.identifier.clone());
        self.inner.present(challenge)
    }

    fn cleanup<'a>(&'a self, challenge: &'a PendingChallenge) -> SolverFuture<'a> {
        self.inner.cleanup(challenge)
    }

    fn wait_until_visible(&self) -> SolverFuture<'_> {
        self.inner.wait_until_visible()
    }
}

/// Validates the authorization for `name` alone with raw instant-acme calls,
/// as an agent killed right after that validation would have left it.
async fn validate_only(
    account: &AcmeAccount,
    order_url: &str,
    name: &str,
    responder: &Http01Responder,
) {
    let mut order = account
        .inner()
        .order(order_url.to_owned())
        .await
        .expect("load order");
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.expect("authorization");
        if authz.identifier().to_string() != name {
            continue;
        }
        let mut challenge = authz
            .challenge(ChallengeType::Http01)
            .expect("http-01 offered");
        let Identifier::Dns(dns) = challenge.identifier().identifier.clone() else {
            panic!("DNS identifier expected");
        };
        let key_auth = challenge.key_authorization();
        let mut digest = [0u8; 32];
        digest.copy_from_slice(key_auth.digest().as_ref());
        let pending = PendingChallenge {
            identifier: dns,
            wildcard: false,
            is_ip: false,
            token: challenge.token.clone(),
            key_authorization: key_auth.as_str().to_owned(),
            digest,
            dns_value: key_auth.dns_value(),
        };
        responder.present(&pending).await.expect("present");
        challenge.set_ready().await.expect("challenge ready");
        break;
    }
    drop(order);
    for _ in 0..200 {
        if authorization_status(account, order_url, name).await == AuthorizationStatus::Valid {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("authorization for {name} never became valid");
}

/// The status pebble reports now for the authorization of `name`.
async fn authorization_status(
    account: &AcmeAccount,
    order_url: &str,
    name: &str,
) -> AuthorizationStatus {
    let mut order = account
        .inner()
        .order(order_url.to_owned())
        .await
        .expect("load order");
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let authz = authz.expect("authorization");
        if authz.identifier().to_string() == name {
            return authz.status;
        }
    }
    panic!("no authorization for {name}");
}

/// The status pebble reports for the order now.
async fn order_status(account: &AcmeAccount, order_url: &str) -> OrderStatus {
    let mut order = account
        .inner()
        .order(order_url.to_owned())
        .await
        .expect("load order");
    order.state().status
}

/// A restart between `newOrder` and the first challenge: the resumed agent
/// completes the same order with the persisted key. A resumed order URL the
/// CA does not know, or one for other names, is reported as dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_new_order_completes_the_same_order() {
    let (_bind, pebble) = start_peers();
    let stored = stored_account(&pebble).await;
    let name = "resume.example.test";

    // First life: create the order, persist (URL, key), get killed.
    let (order_url, key_pem) = {
        let account = restore(&pebble, &stored).await;
        let key = CertificateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
        let url = account
            .create_order(&OrderRequest::new([name]))
            .await
            .expect("create order");
        assert_eq!(order_status(&account, &url).await, OrderStatus::Pending);
        (url, key.to_pem().expect("key PEM"))
    };

    // Second life: nothing but the persisted strings.
    let account = restore(&pebble, &stored).await;
    let key = CertificateKey::from_pem(&key_pem).expect("key restored");
    let responder = Http01Responder::bind(loopback(pebble.http01_port()))
        .await
        .expect("bind http-01");
    let solver = Recording::new(&responder);
    let issued = account
        .complete_order(
            &order_url,
            &names(&[name]),
            &key,
            &solver,
            &PollPolicy::default(),
            unix_now(),
        )
        .await
        .unwrap_or_else(|e| panic!("{}\npebble log:\n{}", e.report(), pebble.log_tail()));
    assert_eq!(issued.order_url, order_url, "the same order, not a new one");
    assert_eq!(leaf_dns_names(&issued), vec![name.to_owned()]);
    assert_eq!(issued.key.pkcs8_der(), key.pkcs8_der());
    assert_eq!(solver.presented(), vec![name.to_owned()]);
    assert_eq!(responder.pending(), 0, "challenge withdrawn");
    assert!(issued.timings.finalize > Duration::ZERO);

    // An order the CA does not know: discard it, create a new one.
    let gone = format!("{order_url}-gone");
    let err = account
        .complete_order(
            &gone,
            &names(&[name]),
            &key,
            &solver,
            &PollPolicy::default(),
            unix_now(),
        )
        .await
        .expect_err("unknown order");
    assert_eq!(err.step(), Some(Step::LoadOrder), "{}", err.report());
    assert!(err.needs_new_order(), "{}", err.report());

    // A persisted order for other names is never finalized with ours.
    let other = account
        .create_order(&OrderRequest::new(["other.example.test"]))
        .await
        .expect("create order");
    let err = account
        .complete_order(
            &other,
            &names(&[name]),
            &key,
            &solver,
            &PollPolicy::default(),
            unix_now(),
        )
        .await
        .expect_err("names differ");
    assert!(
        matches!(err, AcmeError::OrderMismatch { .. }),
        "{}",
        err.report()
    );
    assert!(err.needs_new_order());
    assert!(err.to_string().contains("other.example.test"), "{err}");
    assert_eq!(order_status(&account, &other).await, OrderStatus::Pending);
}

/// A restart after finalize: resuming a `valid` order downloads the same
/// certificate and never finalizes again. ARI on a CA without it (pebble
/// 2.4): no window, and `replaces` is left out of the new order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalized_order_is_downloaded_not_finalized_again() {
    let (_bind, pebble) = start_peers();
    let stored = stored_account(&pebble).await;
    let name = "finalized.example.test";
    let responder = Http01Responder::bind(loopback(pebble.http01_port()))
        .await
        .expect("bind http-01");

    let first = {
        let account = restore(&pebble, &stored).await;
        let request = OrderRequest {
            key: KeyChoice::Generate(KeyAlgorithm::EcdsaP384),
            ..OrderRequest::new([name])
        };
        account
            .issue(&request, &responder)
            .await
            .unwrap_or_else(|e| panic!("{}\npebble log:\n{}", e.report(), pebble.log_tail()))
    };

    let account = restore(&pebble, &stored).await;
    assert_eq!(
        order_status(&account, &first.order_url).await,
        OrderStatus::Valid
    );
    let solver = Recording::new(&responder);
    let again = account
        .complete_order(
            &first.order_url,
            &names(&[name]),
            &first.key,
            &solver,
            &PollPolicy::default(),
            unix_now(),
        )
        .await
        .unwrap_or_else(|e| panic!("{}\npebble log:\n{}", e.report(), pebble.log_tail()));
    assert_eq!(again.chain, first.chain, "the same certificate");
    assert_eq!(again.chain_pem, first.chain_pem);
    assert_eq!(again.timings.finalize, Duration::ZERO, "no second finalize");
    assert!(
        solver.presented().is_empty(),
        "no challenge for a valid order"
    );

    // Another key cannot claim this order's certificate.
    let stranger = CertificateKey::generate(KeyAlgorithm::EcdsaP384).expect("key");
    let err = account
        .complete_order(
            &first.order_url,
            &names(&[name]),
            &stranger,
            &solver,
            &PollPolicy::default(),
            unix_now(),
        )
        .await
        .expect_err("wrong key");
    assert!(
        matches!(err, AcmeError::BadCertificate { .. }),
        "{}",
        err.report()
    );
    assert!(err.needs_new_order());

    // ARI: pebble's leaves carry an AKI, pebble's directory no renewalInfo.
    let id = cert_id(&first.chain[0]).expect("ARI id");
    assert!(id.to_string().contains('.'), "{id}");
    let window = account
        .renewal_window(&first.chain[0])
        .await
        .expect("no ARI is not an error");
    assert!(window.is_none(), "{window:?}");
    let renewal = account
        .create_order(&OrderRequest {
            replaces: Some(id),
            ..OrderRequest::new([name])
        })
        .await
        .expect("renewal order without `replaces` on a CA without ARI");
    assert_ne!(renewal, first.order_url);
}

/// A restart after some validations: a `ready` order is only finalized, and
/// a `pending` order with one valid authorization presents only the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_and_partly_valid_orders_resume_where_they_stopped() {
    let (_bind, pebble) = start_peers();
    let stored = stored_account(&pebble).await;
    let account = restore(&pebble, &stored).await;
    let responder = Http01Responder::bind(loopback(pebble.http01_port()))
        .await
        .expect("bind http-01");
    let key = CertificateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");

    // Killed after the only validation: the order is `ready`.
    let ready_name = "ready.example.test";
    let ready_url = account
        .create_order(&OrderRequest::new([ready_name]))
        .await
        .expect("create order");
    validate_only(&account, &ready_url, ready_name, &responder).await;
    let mut status = order_status(&account, &ready_url).await;
    for _ in 0..100 {
        if status == OrderStatus::Ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = order_status(&account, &ready_url).await;
    }
    assert_eq!(status, OrderStatus::Ready);
    let account = restore(&pebble, &stored).await;
    let solver = Recording::new(&responder);
    let issued = account
        .complete_order(
            &ready_url,
            &names(&[ready_name]),
            &key,
            &solver,
            &PollPolicy::default(),
            unix_now(),
        )
        .await
        .unwrap_or_else(|e| panic!("{}\npebble log:\n{}", e.report(), pebble.log_tail()));
    assert_eq!(leaf_dns_names(&issued), vec![ready_name.to_owned()]);
    assert!(solver.presented().is_empty(), "{:?}", solver.presented());
    assert!(issued.timings.finalize > Duration::ZERO, "finalized now");

    // Killed after the first of two validations: `pending`, one authz valid.
    let done = "done.example.test";
    let todo = "todo.example.test";
    let url = account
        .create_order(&OrderRequest::new([done, todo]))
        .await
        .expect("create order");
    validate_only(&account, &url, done, &responder).await;
    assert_eq!(order_status(&account, &url).await, OrderStatus::Pending);
    let account = restore(&pebble, &stored).await;
    let solver = Recording::new(&responder);
    let issued = account
        .complete_order(
            &url,
            &names(&[done, todo]),
            &key,
            &solver,
            &PollPolicy {
                timeout: Duration::from_secs(30),
                ..PollPolicy::default()
            },
            unix_now(),
        )
        .await
        .unwrap_or_else(|e| panic!("{}\npebble log:\n{}", e.report(), pebble.log_tail()));
    assert_eq!(solver.presented(), vec![todo.to_owned()]);
    assert_eq!(
        leaf_dns_names(&issued),
        vec![done.to_owned(), todo.to_owned()]
    );
}

/// A leaf that is not valid at `now` is never returned for deployment: one
/// expired already (it would replace a working certificate), or one whose
/// notBefore is more than the 5-minute clock-skew allowance ahead. `now` is
/// the caller's, so pebble's real certificate is judged at chosen instants.
/// An expired leaf kills the order; a not-yet-valid one leaves it
/// resumable, and the same order later yields the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_not_valid_at_now_is_refused() {
    let (_bind, pebble) = start_peers();
    let stored = stored_account(&pebble).await;
    let account = restore(&pebble, &stored).await;
    let name = "validity.example.test";
    let key = CertificateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
    let url = account
        .create_order(&OrderRequest::new([name]))
        .await
        .expect("create order");
    let responder = Http01Responder::bind(loopback(pebble.http01_port()))
        .await
        .expect("bind http-01");
    let requested = names(&[name]);
    let poll = PollPolicy::default();
    let complete =
        |now: i64| account.complete_order(&url, &requested, &key, &responder, &poll, now);

    // Year 2200: every certificate pebble issues today has expired by then.
    let far_future = 7_258_118_400;
    let err = complete(far_future)
        .await
        .expect_err("an expired leaf must not be returned");
    assert!(
        matches!(err, AcmeError::CertificateNotCurrent { .. }),
        "{}",
        err.report()
    );
    let text = err.report();
    assert!(text.contains(name) && text.contains("expired"), "{text}");
    assert!(
        err.needs_new_order(),
        "an expired certificate stays expired"
    );
    assert_eq!(order_status(&account, &url).await, OrderStatus::Valid);

    // Year 2000: the leaf's notBefore is decades ahead of this `now`.
    let err = complete(946_684_800)
        .await
        .expect_err("a not-yet-valid leaf must not be returned");
    assert!(
        matches!(err, AcmeError::CertificateNotCurrent { .. }),
        "{}",
        err.report()
    );
    let text = err.report();
    assert!(
        text.contains("not valid before") && text.contains("clock"),
        "{text}"
    );
    assert!(!err.needs_new_order(), "resume later: time fixes it");

    // At the real now, the same order yields the certificate.
    let issued = complete(unix_now())
        .await
        .unwrap_or_else(|e| panic!("{}\npebble log:\n{}", e.report(), pebble.log_tail()));
    assert_eq!(issued.order_url, url);
}
