//! DESIGN.md story 1, the reason certkeeper exists: a service restarted in a
//! loop must never trip the CA's limits or lose its key. The agent daemon runs
//! against our CA (Let's Encrypt's production limits, the built-in default)
//! and is killed with SIGKILL 30 times at random moments, orders in flight
//! included. Then: one certificate for the set, no 429, and the deployed key
//! matches the deployed certificate.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use certkeeper_harness::{Bind, CaOptions, CertkeeperCa};

fn write_config(dir: &Path, ca: &CertkeeperCa, extra_issuer: &str) -> std::path::PathBuf {
    let config = dir.join("certkeeper.toml");
    std::fs::write(
        &config,
        format!(
            r#"data = "{data}"
[agent]
http01_listen = "127.0.0.1:{http01}"
check_interval_seconds = 1

[[issuer]]
name = "ours"
directory = "{directory}"
root = "{root}"
{extra_issuer}

[[certificate]]
name = "web"
names = ["loop.example.test"]
issuer = "ours"

[[certificate.deploy]]
dir = "{deploy}"
"#,
            data = dir.join("data").display(),
            http01 = ca.http01_port(),
            directory = ca.directory_url(),
            root = ca.root_pem_path().display(),
            deploy = dir.join("deploy").display(),
        ),
    )
    .expect("config");
    config
}

fn public_key_of(args: &[&str], path: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .arg(path)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn thirty_kill_9s_issue_one_certificate_and_lose_no_key() {
    let bind = Bind::start().expect("BIND");
    let ca = CertkeeperCa::start(
        Path::new(env!("CARGO_BIN_EXE_certkeeper")),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            ..Default::default()
        },
    )
    .expect("CA");
    let work = tempfile::tempdir().expect("tempdir");
    let config = write_config(work.path(), &ca, "limits = \"letsencrypt\"");
    let log_path = work.path().join("daemon.log");

    for round in 0..30 {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
            .arg("up")
            .arg("--config")
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn");
        // Random moments across startup, ordering, validation and finalize.
        let ms = rand::random::<u64>() % 600 + (round % 3) * 50;
        std::thread::sleep(Duration::from_millis(ms));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
    // Let a last run finish whatever was in flight.
    let done = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(["issue", "web", "--config"])
        .arg(&config)
        .output()
        .expect("issue");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(done.status.success(), "{text}");

    let certs = ca.list().expect("ca list");
    let issued = certs.as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(
        issued, 1,
        "30 crashes must cost one certificate, not {issued}: {certs}"
    );
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(!log.contains("rateLimited"), "the CA must never answer 429");

    // No key lost: the deployed pair matches, and matches the CA's record.
    let deploy = work.path().join("deploy");
    let cert_key = public_key_of(
        &["x509", "-noout", "-pubkey", "-in"],
        &deploy.join("cert.pem"),
    );
    let key_key = public_key_of(&["pkey", "-pubout", "-in"], &deploy.join("key.pem"));
    assert_eq!(
        cert_key, key_key,
        "deployed key.pem does not belong to cert.pem"
    );
}

/// The CA itself answers 429 (a tiny limit in its policy, no local preset on
/// the agent): the Retry-After is persisted and obeyed by the next process,
/// even with --force.
#[test]
fn a_real_429_from_our_ca_is_obeyed_across_restarts() {
    let work = tempfile::tempdir().expect("tempdir");
    let text = certkeeper_ca::policy::DEFAULT_POLICY.replace(
        "[limits.CertificatesPerFQDNSet]\ncount = 48",
        "[limits.CertificatesPerFQDNSet]\ncount = 1",
    );
    assert!(
        text.contains("CertificatesPerFQDNSet]\ncount = 1"),
        "policy edit applied"
    );
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
    let config = write_config(work.path(), &ca, "limits = \"none\"");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, text) = run(&["issue", "web"]);
    assert!(ok, "{text}");
    // The second certificate for the set is over the CA's limit: 429.
    let (ok, text) = run(&["renew", "web", "--force"]);
    assert!(!ok, "the CA must refuse: {text}");
    assert!(
        text.contains("rateLimited")
            || text.contains("Retry-After")
            || text.contains("retry after"),
        "{text}"
    );
    // The CA logs every denial; the one above is there.
    let denials = || {
        std::fs::read_to_string(ca_log_path(&ca))
            .unwrap_or_default()
            .matches("rate limited")
            .count()
    };
    let before = denials();
    assert!(before >= 1, "the CA logged its 429");
    // New processes, --force included: nothing is sent before Retry-After.
    let (_, text) = run(&["renew", "web", "--force"]);
    assert!(text.to_lowercase().contains("retry"), "{text}");
    let (ok, text) = run(&["issue", "web"]);
    assert!(ok, "{text}");
    assert_eq!(ca.list().expect("list").as_array().map(Vec::len), Some(1));
    assert_eq!(
        denials(),
        before,
        "the CA was asked again while its Retry-After was in force"
    );
}

fn ca_log_path(ca: &CertkeeperCa) -> std::path::PathBuf {
    ca.data_dir().parent().expect("ca dir").join("ca.log")
}
