//! Accounts and renewal information against `certkeeper ca serve`, driven by
//! the agent's ACME client (instant-acme underneath): external account
//! binding (RFC 8555 §7.3.4), key change (§7.3.5), deactivation (§7.3.6) and
//! ARI windows (RFC 9773 §4.2).

use std::path::Path;
use std::process::Command;

use certkeeper_agent::acme::{
    AcmeAccount, AcmeDirectory, CertificateIdentifier, ExternalAccountBinding, Http01Responder,
    NewAccountOptions, OrderRequest,
};
use certkeeper_harness::{Bind, CaOptions, CertkeeperCa};
use certkeeper_proto::b64;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certkeeper"))
}

fn start(extra: &[&str]) -> (Bind, CertkeeperCa) {
    let bind = Bind::start().expect("BIND");
    let ca = CertkeeperCa::start(
        bin(),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    )
    .expect("CA");
    (bind, ca)
}

/// The ACME problem type of a call that must fail.
fn problem_type<T>(result: Result<T, certkeeper_agent::acme::AcmeError>) -> String {
    match result {
        Ok(_) => panic!("the call succeeded; it must fail"),
        Err(e) => e
            .problem()
            .and_then(|p| p.r#type.clone())
            .unwrap_or_else(|| format!("no problem document: {e}")),
    }
}

fn directory(ca: &CertkeeperCa) -> AcmeDirectory {
    AcmeDirectory::new(ca.directory_url()).with_root_pem(ca.root_pem_path())
}

/// `certkeeper ca eab-add` prints `kid: …` and `hmac key: …`.
fn eab_add(ca: &CertkeeperCa) -> ExternalAccountBinding {
    let out = Command::new(bin())
        .args(["ca", "eab-add", "--data"])
        .arg(ca.data_dir())
        .output()
        .expect("eab-add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .expect("eab-add output field")
    };
    ExternalAccountBinding {
        key_id: field("kid:"),
        hmac_key: b64::decode(&field("hmac key:")).expect("base64url"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn section_7_3_4_eab_is_required_and_single_use() {
    let (_bind, ca) = start(&["--require-eab"]);
    let dir = directory(&ca);
    assert_eq!(
        problem_type(AcmeAccount::create(&dir, &NewAccountOptions::default()).await),
        "urn:ietf:params:acme:error:externalAccountRequired"
    );

    let eab = eab_add(&ca);
    let options = NewAccountOptions {
        eab: Some(eab),
        ..Default::default()
    };
    let _bound = AcmeAccount::create(&dir, &options)
        .await
        .expect("account with EAB");
    // A second account may not reuse the binding (a new key, so a new account).
    let reused = AcmeAccount::create(&dir, &options).await;
    let reused_detail = problem_detail(&reused);
    assert_eq!(
        problem_type(reused),
        "urn:ietf:params:acme:error:unauthorized"
    );
    // A valid key id with the wrong MAC, and an unknown key id, get the
    // very same answer: nothing tells a prober which key ids exist.
    let fresh = eab_add(&ca);
    for eab in [
        ExternalAccountBinding {
            key_id: fresh.key_id.clone(),
            hmac_key: vec![7u8; 32],
        },
        ExternalAccountBinding {
            key_id: "kid-does-not-exist".into(),
            hmac_key: fresh.hmac_key.clone(),
        },
    ] {
        let options = NewAccountOptions {
            eab: Some(eab),
            ..Default::default()
        };
        let r = AcmeAccount::create(&dir, &options).await;
        assert_eq!(problem_detail(&r), reused_detail);
    }
}

/// The detail of a failed call's problem document.
fn problem_detail<T>(result: &Result<T, certkeeper_agent::acme::AcmeError>) -> String {
    match result {
        Ok(_) => panic!("the call succeeded; it must fail"),
        Err(e) => e
            .problem()
            .and_then(|p| p.detail.clone())
            .unwrap_or_else(|| format!("no problem document: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn section_7_3_5_key_change_then_deactivation() {
    let (_bind, ca) = start(&[]);
    let dir = directory(&ca);
    let (account, _) = AcmeAccount::create(&dir, &NewAccountOptions::default())
        .await
        .expect("account");
    let mut inner = account.inner().clone();
    let old_thumbprint = inner.key_thumbprint().to_string();
    let credentials = inner.update_key().await.expect("keyChange");
    assert_ne!(inner.key_thumbprint(), old_thumbprint);

    // The account keeps working under its new key (same account URL).
    let reloaded = AcmeAccount::load(&dir, credentials)
        .await
        .expect("load with the new key");
    assert_eq!(reloaded.id(), account.id());
    let responder = Http01Responder::bind(([127, 0, 0, 1], ca.http01_port()).into())
        .await
        .expect("responder");
    reloaded
        .issue(&OrderRequest::new(["keychange.example.test"]), &responder)
        .await
        .expect("issue after keyChange");
    // The old key no longer authenticates the account (the CA keeps
    // accounts in memory: the key change must reach that copy too).
    assert!(
        account
            .issue(&OrderRequest::new(["oldkey.example.test"]), &responder)
            .await
            .is_err(),
        "a request signed by the replaced key was accepted"
    );

    // §7.3.6: a deactivated account can do nothing more.
    reloaded
        .inner()
        .clone()
        .deactivate()
        .await
        .expect("deactivate");
    assert_eq!(
        problem_type(
            reloaded
                .issue(&OrderRequest::new(["after.example.test"]), &responder)
                .await
        ),
        "urn:ietf:params:acme:error:unauthorized"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rfc9773_renewal_window_moves_to_now_on_revocation() {
    let (_bind, ca) = start(&[]);
    let dir = directory(&ca);
    let (account, _) = AcmeAccount::create(&dir, &NewAccountOptions::default())
        .await
        .expect("account");
    let responder = Http01Responder::bind(([127, 0, 0, 1], ca.http01_port()).into())
        .await
        .expect("responder");
    let issued = account
        .issue(&OrderRequest::new(["ari.example.test"]), &responder)
        .await
        .expect("issue");
    let id = CertificateIdentifier::try_from(&issued.chain[0]).expect("certID");

    let (nb, na) = (
        issued.not_before.unix_timestamp(),
        issued.not_after.unix_timestamp(),
    );
    let validity = na - nb;
    let (info, _retry_after) = account
        .inner()
        .renewal_info(&id)
        .await
        .expect("renewalInfo");
    let (start, end) = (
        info.suggested_window.start.unix_timestamp(),
        info.suggested_window.end.unix_timestamp(),
    );
    // Boulder's window: centred at notAfter − validity/3, ± validity/100.
    let ideal = na - validity / 3;
    assert!(
        (start - (ideal - validity / 100)).abs() <= 2
            && (end - (ideal + validity / 100)).abs() <= 2,
        "{start}..{end}"
    );

    let revocation = instant_acme::RevocationRequest {
        certificate: &issued.chain[0],
        reason: None,
    };
    account.inner().revoke(&revocation).await.expect("revoke");
    let (info, _) = account
        .inner()
        .renewal_info(&id)
        .await
        .expect("renewalInfo after revocation");
    let now = time::OffsetDateTime::now_utc();
    assert!(
        info.suggested_window.end <= now,
        "a revoked certificate's window must already be open and closing"
    );
}
