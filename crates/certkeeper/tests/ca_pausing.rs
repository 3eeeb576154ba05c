//! Let's Encrypt's pausing: an account that keeps failing to validate an
//! identifier is refused new orders for it (429, naming the way out) until
//! the operator runs `certkeeper ca unpause`.

use std::path::Path;
use std::process::Command;

use certkeeper_agent::acme::{
    AcmeAccount, AcmeDirectory, Http01Responder, NewAccountOptions, OrderRequest,
};
use certkeeper_harness::{Bind, CaOptions, CertkeeperCa, free_port};

#[tokio::test(flavor = "multi_thread")]
async fn consecutive_failures_pause_until_the_operator_unpauses() {
    let text = certkeeper_ca::policy::DEFAULT_POLICY
        .replace("consecutive_failures = 1152", "consecutive_failures = 2");
    assert!(text.contains("consecutive_failures = 2"));
    let bind = Bind::start().expect("BIND");
    let ca = CertkeeperCa::start(
        Path::new(env!("CARGO_BIN_EXE_certkeeper")),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            policy: Some(text),
            ..Default::default()
        },
    )
    .expect("CA");
    let dir = AcmeDirectory::new(ca.directory_url()).with_root_pem(ca.root_pem_path());
    let (account, _) = AcmeAccount::create(&dir, &NewAccountOptions::default())
        .await
        .expect("account");
    let name = "paused.example.test";

    // A responder where the CA does not look: every validation fails.
    let wrong = Http01Responder::bind(([127, 0, 0, 1], free_port()).into())
        .await
        .expect("responder");
    for _ in 0..2 {
        assert!(
            account
                .issue(&OrderRequest::new([name]), &wrong)
                .await
                .is_err(),
            "validation must fail"
        );
    }
    let err = account
        .issue(&OrderRequest::new([name]), &wrong)
        .await
        .expect_err("paused");
    let problem = err.problem().cloned().expect("problem document");
    assert_eq!(
        problem.r#type.as_deref(),
        Some("urn:ietf:params:acme:error:rateLimited")
    );
    let detail = problem.detail.unwrap_or_default();
    assert!(
        detail.contains("paused") && detail.contains("certkeeper ca unpause"),
        "{detail}"
    );

    let account_id = account
        .id()
        .rsplit('/')
        .next()
        .expect("account id")
        .to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(["ca", "unpause", "--data"])
        .arg(ca.data_dir())
        .args(["--account", &account_id, "--identifier", name])
        .output()
        .expect("unpause");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let right = Http01Responder::bind(([127, 0, 0, 1], ca.http01_port()).into())
        .await
        .expect("responder");
    account
        .issue(&OrderRequest::new([name]), &right)
        .await
        .expect("issuance after unpause");
}
