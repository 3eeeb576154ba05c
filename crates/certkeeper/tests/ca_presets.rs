//! The CA's default limits are sized for a private CA, and `--limits
//! letsencrypt` reproduces Let's Encrypt's (issue 9, part 2). Real http-01
//! through the agent's responder; names under `example.test` resolve
//! through the harness BIND, so all of them share one registered domain.

use std::path::Path;
use std::sync::Arc;

use certkeeper_agent::acme::{
    AcmeAccount, AcmeDirectory, AcmeError, Http01Responder, NewAccountOptions, OrderRequest,
};
use certkeeper_harness::{Bind, CaOptions, CertkeeperCa};

fn start(extra_args: &[&str]) -> (Bind, CertkeeperCa) {
    let bind = Bind::start().expect("BIND");
    let ca = CertkeeperCa::start(
        Path::new(env!("CARGO_BIN_EXE_certkeeper")),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    )
    .expect("CA");
    (bind, ca)
}

/// `count` distinct identifier sets over a few names under
/// `reg.example.test`: every single name, then every pair, so only
/// `names` validations are needed and no set repeats.
fn distinct_sets(names: usize, count: usize) -> Vec<Vec<String>> {
    let name = |i: usize| format!("n{i}.reg.example.test");
    let mut sets: Vec<Vec<String>> = (0..names).map(|i| vec![name(i)]).collect();
    for i in 0..names {
        for j in i + 1..names {
            sets.push(vec![name(i), name(j)]);
        }
    }
    assert!(sets.len() >= count, "not enough distinct sets");
    sets.truncate(count);
    sets
}

async fn account(ca: &CertkeeperCa) -> (AcmeAccount, Arc<Http01Responder>) {
    let dir = AcmeDirectory::new(ca.directory_url()).with_root_pem(ca.root_pem_path());
    let (account, _) = AcmeAccount::create(&dir, &NewAccountOptions::default())
        .await
        .expect("account");
    let responder = Http01Responder::bind(([127, 0, 0, 1], ca.http01_port()).into())
        .await
        .expect("http-01 responder");
    (account, Arc::new(responder))
}

/// Issues every set, `parallel` at a time; returns the outcome of each, in order.
async fn issue_all(
    account: &AcmeAccount,
    responder: &Arc<Http01Responder>,
    sets: Vec<Vec<String>>,
    parallel: usize,
) -> Vec<Result<(), AcmeError>> {
    let mut out = Vec::new();
    for chunk in sets.chunks(parallel) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|set| {
                let (account, responder) = (account.clone(), Arc::clone(responder));
                let req = OrderRequest::new(set.clone());
                tokio::spawn(
                    async move { account.issue(&req, responder.as_ref()).await.map(|_| ()) },
                )
            })
            .collect();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
    }
    out
}

/// The private default: 500 certificates under one registered domain from
/// one account all succeed (Let's Encrypt would refuse the 51st).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_issues_500_certificates_under_one_domain() {
    let (_bind, ca) = start(&[]);
    let (account, responder) = account(&ca).await;
    let results = issue_all(&account, &responder, distinct_sets(32, 500), 8).await;
    let failures: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.report()))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of 500 failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(ca.list().expect("list").as_array().map(Vec::len), Some(500));
}

/// `--limits letsencrypt`: 50 certificates per registered domain per week,
/// and the 51st is refused with Let's Encrypt's own words and link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn letsencrypt_preset_refuses_the_51st_as_lets_encrypt_words_it() {
    let (_bind, ca) = start(&["--limits", "letsencrypt"]);
    let (account, responder) = account(&ca).await;
    let sets = distinct_sets(11, 51);
    let results = issue_all(&account, &responder, sets[..50].to_vec(), 8).await;
    assert!(
        results.iter().all(Result::is_ok),
        "the first 50 must be issued: {:?}",
        results
            .iter()
            .find_map(|r| r.as_ref().err().map(|e| e.report()))
    );
    let e = account
        .issue(&OrderRequest::new(sets[50].clone()), responder.as_ref())
        .await
        .map(|_| ())
        .expect_err("the 51st must be refused");
    let p = e.problem().expect("a problem document");
    assert_eq!(
        p.r#type.as_deref(),
        Some("urn:ietf:params:acme:error:rateLimited")
    );
    let detail = p.detail.clone().unwrap_or_default();
    let prefix = "too many certificates (50) already issued for \"example.test\" in the last 168h0m0s, retry after ";
    let suffix = " UTC: see https://letsencrypt.org/docs/rate-limits/#new-certificates-per-registered-domain";
    assert!(
        detail.starts_with(prefix) && detail.ends_with(suffix),
        "{detail}"
    );
    // Between them: a date and time, `YYYY-MM-DD HH:MM:SS`.
    let when = &detail[prefix.len()..detail.len() - suffix.len()];
    assert_eq!(when.len(), 19, "{when}");
    assert_eq!(ca.list().expect("list").as_array().map(Vec::len), Some(50));
}
