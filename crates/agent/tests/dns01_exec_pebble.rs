//! dns-01 through the operator's exec hook (`solvers::ExecDnsSolver`), with
//! real `nsupdate` (TSIG) writing to a real BIND that a real pebble resolves
//! through.

use std::time::{Duration, Instant};

use certkeeper_agent::acme::{AcmeAccount, AcmeDirectory, NewAccountOptions, OrderRequest};
use certkeeper_agent::solvers::ExecDnsSolver;
use certkeeper_harness::{Bind, Pebble};

/// The hook an operator would write: `nsupdate` with the record certkeeper
/// puts in the environment; `op` is `add` or `delete`.
fn nsupdate_hook(bind: &Bind, op: &str) -> String {
    format!(
        "printf 'server 127.0.0.1 {port}\\nzone {zone}.\\nupdate {op} %s. 60 TXT \"%s\"\\nsend\\n' \
         \"$CERTKEEPER_TXT_NAME\" \"$CERTKEEPER_TXT_VALUE\" | nsupdate -y {alg}:{key}:{secret}",
        port = bind.port(),
        zone = bind.zone().trim_end_matches('.'),
        alg = bind.tsig_algorithm(),
        key = bind.tsig_key_name(),
        secret = bind.tsig_secret_b64(),
    )
}

/// The propagation wait is paid once per order, after every name's record
/// is published and before any challenge is triggered: three names with a
/// 2 s propagation time take about 2 s to present, not 6 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_hook_waits_for_propagation_once_per_order() {
    let bind = Bind::start().expect("BIND");
    let pebble = Pebble::start(Some(&bind), &[("PEBBLE_WFE_NONCEREJECT", "0")]).expect("pebble");
    let directory =
        AcmeDirectory::new(pebble.directory_url()).with_root_pem(pebble.tls_ca_pem_path());
    let (account, _) = AcmeAccount::create(&directory, &NewAccountOptions::default())
        .await
        .expect("account");
    let propagation = Duration::from_secs(2);
    let solver = ExecDnsSolver {
        present: nsupdate_hook(&bind, "add"),
        cleanup: nsupdate_hook(&bind, "delete"),
        propagation,
    };
    let names = [
        "a.propagation.example.test",
        "b.propagation.example.test",
        "c.propagation.example.test",
    ];
    let started = Instant::now();
    let issued = account
        .issue(&OrderRequest::new(names), &solver)
        .await
        .unwrap_or_else(|e| panic!("{}\npebble log:\n{}", e.report(), pebble.log_tail()));
    let took = started.elapsed();

    // `challenges` is fetching authorizations, presenting, waiting and the
    // challenge POSTs: one wait, plus three short nsupdate runs.
    let presenting = issued.timings.challenges;
    assert!(
        presenting >= propagation,
        "the wait happened: {presenting:?}"
    );
    assert!(
        presenting < Duration::from_millis(4500),
        "one 2 s wait per order, not one per name: presenting took {presenting:?} (whole order {took:?})"
    );
    for name in names {
        assert!(
            bind.dig(&format!("_acme-challenge.{name}"), "TXT")
                .expect("dig")
                .is_empty(),
            "cleanup removed the TXT record for {name}"
        );
    }
}
