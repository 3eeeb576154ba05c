//! CA-side rate limits against the real `certkeeper ca serve`: GCRA buckets
//! as in Boulder's `ratelimits`, 429 `rateLimited` with `Retry-After`
//! (RFC 8555 §6.6), operator overrides and the ARI renewal exemption.
//! Validation is real http-01 through the agent's responder; names under
//! `example.test` resolve through the harness BIND.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use certkeeper_agent::acme::{
    AcmeAccount, AcmeDirectory, AcmeError, Http01Responder, NewAccountOptions, OrderRequest,
    cert_id,
};
use certkeeper_harness::{Bind, CaOptions, CertkeeperCa};
use certkeeper_proto::jws::{SigningKey, sign};
use serde_json::{Value, json};

const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certkeeper"))
}

/// The default policy with its `[limits]` replaced by `limits` (limits left
/// out keep Let's Encrypt's defaults).
fn policy_with(limits: &str) -> String {
    let default = certkeeper_ca::policy::DEFAULT_POLICY;
    let cut = default
        .find("[limits.")
        .expect("the default policy has limits");
    format!("{}\n{limits}\n", &default[..cut])
}

struct Setup {
    _bind: Bind,
    ca: CertkeeperCa,
}

fn start(limits: &str) -> Setup {
    let bind = Bind::start().expect("BIND");
    let ca = CertkeeperCa::start(
        bin(),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            policy: Some(policy_with(limits)),
            ..Default::default()
        },
    )
    .expect("CA");
    Setup { _bind: bind, ca }
}

fn directory(ca: &CertkeeperCa) -> AcmeDirectory {
    AcmeDirectory::new(ca.directory_url()).with_root_pem(ca.root_pem_path())
}

async fn responder(ca: &CertkeeperCa) -> Http01Responder {
    Http01Responder::bind(([127, 0, 0, 1], ca.http01_port()).into())
        .await
        .expect("http-01 responder")
}

/// The problem (type, detail) of a call that must fail.
fn problem<T>(r: Result<T, AcmeError>) -> (String, String) {
    match r {
        Ok(_) => panic!("the call succeeded; it must fail"),
        Err(e) => match e.problem() {
            Some(p) => (
                p.r#type.clone().unwrap_or_default(),
                p.detail.clone().unwrap_or_default(),
            ),
            None => (
                format!("no problem document: {}", e.report()),
                String::new(),
            ),
        },
    }
}

/// Story 1 from the CA's side: 64 clients race for one identifier set with a
/// limit of 5 per 7 days; exactly 5 certificates exist afterwards and every
/// other client is told `rateLimited`, with the limit and when to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_clients_get_exactly_the_fqdn_set_limit() {
    let s = start(
        "[limits.NewRegistrationsPerIPAddress]\ncount = 1000\nperiod_seconds = 10800\n\
         [limits.CertificatesPerFQDNSet]\ncount = 5\nperiod_seconds = 604800\n",
    );
    let dir = Arc::new(directory(&s.ca));
    let responder = Arc::new(responder(&s.ca).await);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (dir, responder) = (Arc::clone(&dir), Arc::clone(&responder));
        tasks.push(tokio::spawn(async move {
            let (account, _) = AcmeAccount::create(&dir, &NewAccountOptions::default())
                .await
                .expect("account");
            account
                .issue(
                    &OrderRequest::new(["race.example.test", "www.race.example.test"]),
                    responder.as_ref(),
                )
                .await
                .map(|_| ())
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => ok += 1,
            Err(e) => {
                let (kind, detail) = problem::<()>(Err(e));
                assert_eq!(kind, RATE_LIMITED, "{detail}");
                assert!(
                    detail.starts_with(
                        "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after "
                    ) && detail.ends_with(
                        "UTC: see https://letsencrypt.org/docs/rate-limits/#new-certificates-per-exact-set-of-identifiers"
                    ),
                    "{detail}"
                );
            }
        }
    }
    assert_eq!(ok, 5, "exactly the limit must be issued");
    assert_eq!(s.ca.issued_count().expect("ca list"), 5, "{}", s.ca.log());
}

/// RFC 8555 §6.6: a rateLimited problem comes with 429 and `Retry-After`;
/// checked on the wire with a raw newAccount (NewRegistrationsPerIPAddress = 2).
#[tokio::test(flavor = "multi_thread")]
async fn a_429_carries_retry_after_and_names_the_limit() {
    let s = start("[limits.NewRegistrationsPerIPAddress]\ncount = 2\nperiod_seconds = 10800\n");
    let root = reqwest::Certificate::from_pem(&std::fs::read(s.ca.root_pem_path()).expect("root"))
        .expect("root PEM");
    let http = reqwest::Client::builder()
        .tls_certs_only([root])
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let dir: Value = http
        .get(s.ca.directory_url())
        .send()
        .await
        .expect("directory")
        .json()
        .await
        .expect("directory JSON");
    let url = |k: &str| dir[k].as_str().expect("directory URL").to_string();
    let mut last = None;
    for _ in 0..3 {
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
        let key = SigningKey::generate_p256().expect("key");
        let header =
            json!({ "nonce": nonce, "url": url("newAccount"), "jwk": key.jwk().to_json() });
        let payload = serde_json::to_vec(&json!({ "termsOfServiceAgreed": true })).expect("json");
        let body = serde_json::to_vec(&sign(&key, header, &payload).expect("sign")).expect("json");
        let r = http
            .post(url("newAccount"))
            .header("content-type", "application/jose+json")
            .body(body)
            .send()
            .await
            .expect("newAccount");
        last = Some((
            r.status().as_u16(),
            r.headers().clone(),
            r.json::<Value>().await.expect("JSON body"),
        ));
        if last.as_ref().is_some_and(|(status, _, _)| *status == 429) {
            break;
        }
    }
    let (status, headers, body) = last.expect("a response");
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["type"], RATE_LIMITED);
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail.starts_with(
            "too many new registrations (2) from this IP address in the last 3h0m0s, retry after "
        ) && detail.contains("#new-registrations-per-ip-address"),
        "{detail}"
    );
    let retry_after: u64 = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    // Two per three hours: a unit comes back every 90 minutes.
    assert!(
        (5300..=5400).contains(&retry_after),
        "Retry-After {retry_after}"
    );
}

/// `certkeeper ca limits --set` raises one key's limit; issuance proceeds.
#[tokio::test(flavor = "multi_thread")]
async fn an_override_raises_the_limit_for_one_key() {
    let s = start("[limits.CertificatesPerFQDNSet]\ncount = 1\nperiod_seconds = 604800\n");
    let dir = directory(&s.ca);
    let responder = responder(&s.ca).await;
    let (account, _) = AcmeAccount::create(&dir, &NewAccountOptions::default())
        .await
        .expect("account");
    let order = OrderRequest::new(["override.example.test"]);
    account.issue(&order, &responder).await.expect("first");
    let (kind, detail) = problem(account.issue(&order, &responder).await);
    assert_eq!(kind, RATE_LIMITED, "{detail}");

    let out = std::process::Command::new(bin())
        .args(["ca", "limits", "--data"])
        .arg(s.ca.data_dir())
        .args([
            "--set",
            "CertificatesPerFQDNSet:override.example.test=3/604800",
        ])
        .output()
        .expect("ca limits --set");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(bin())
        .args(["ca", "limits", "--json", "--data"])
        .arg(s.ca.data_dir())
        .output()
        .expect("ca limits --json");
    let shown: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        shown["overrides"],
        json!([{ "name": "CertificatesPerFQDNSet", "key": "override.example.test",
                 "count": 3, "period_seconds": 604800, "burst": 3 }])
    );

    account
        .issue(&order, &responder)
        .await
        .expect("after override");
    // The override is for this key only.
    account
        .issue(&OrderRequest::new(["other.example.test"]), &responder)
        .await
        .expect("other set, first");
    let (kind, _) = problem(
        account
            .issue(&OrderRequest::new(["other.example.test"]), &responder)
            .await,
    );
    assert_eq!(kind, RATE_LIMITED);
    assert_eq!(s.ca.issued_count().expect("ca list"), 3);
}

/// RFC 9773 §5 + Boulder: an order that `replaces` a certificate whose ARI
/// window has opened is exempt from every limit; one whose window has not
/// opened is not.
#[tokio::test(flavor = "multi_thread")]
async fn an_ari_replacement_is_exempt() {
    let s = start("[limits.CertificatesPerFQDNSet]\ncount = 5\nperiod_seconds = 604800\n");
    let dir = directory(&s.ca);
    let responder = responder(&s.ca).await;
    let (account, _) = AcmeAccount::create(&dir, &NewAccountOptions::default())
        .await
        .expect("account");
    let names = ["ari.example.test"];
    let mut last = None;
    for _ in 0..5 {
        last = Some(
            account
                .issue(&OrderRequest::new(names), &responder)
                .await
                .expect("within the limit"),
        );
    }
    let (kind, _) = problem(account.issue(&OrderRequest::new(names), &responder).await);
    assert_eq!(kind, RATE_LIMITED);

    let last = last.expect("issued");
    let id = cert_id(&last.chain[0]).expect("certID");
    let mut renewal = OrderRequest::new(names);
    renewal.replaces = Some(id.clone());
    // A fresh 90-day certificate's window opens in about 59 days: not exempt.
    let (kind, _) = problem(account.issue(&renewal, &responder).await);
    assert_eq!(kind, RATE_LIMITED);

    // Revocation opens the window now (RFC 9773 §4.2): the replacement is exempt.
    let revocation = instant_acme::RevocationRequest {
        certificate: &last.chain[0],
        reason: None,
    };
    account.inner().revoke(&revocation).await.expect("revoke");
    account
        .issue(&renewal, &responder)
        .await
        .expect("ARI renewal is exempt");
    assert_eq!(s.ca.issued_count().expect("ca list"), 6);
}
