//! Renewal driven by the CA's ARI window (RFC 9773), in real time: our CA
//! with a 90-second profile and a 2-second ARI Retry-After; the agent daemon
//! (`certkeeper up --config`) renews inside the window with `replaces`, a
//! real TLS client sees the new certificate without a restart, and revoking
//! the certificate pulls the next renewal forward to the next poll.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use certkeeper_harness::{Bind, CaOptions, Certbot, CertkeeperCa, free_port, served_serial};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_serial_change(root: &Path, port: u16, from: Option<&str>, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(serial) = served_serial(root, port, "ari.example.test")
            && Some(serial.as_str()) != from
        {
            return serial;
        }
        assert!(
            Instant::now() < deadline,
            "the served certificate did not change from {from:?} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn list(ca: &CertkeeperCa) -> Vec<serde_json::Value> {
    ca.list()
        .expect("ca list")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn ari_window_drives_renewal_with_replaces_and_revocation_pulls_it_forward() {
    let work = tempfile::tempdir().expect("tempdir");
    let policy = certkeeper_ca::policy::DEFAULT_POLICY.replace(
        "ari_retry_after_seconds = 21600",
        "ari_retry_after_seconds = 2",
    ) + "\n[[profile]]\nname = \"tiny\"\ndescription = \"90 seconds, for renewal tests\"\nvalidity_hours = 0.025\n";

    let bind = Bind::start().expect("BIND");
    let ca = CertkeeperCa::start(
        Path::new(env!("CARGO_BIN_EXE_certkeeper")),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            policy: Some(policy),
            ..Default::default()
        },
    )
    .expect("CA");

    let status_port = free_port();
    let deploy = work.path().join("deploy");
    let config = work.path().join("certkeeper.toml");
    std::fs::write(
        &config,
        format!(
            r#"data = "{data}"
[agent]
http01_listen = "127.0.0.1:{http01}"
check_interval_seconds = 5

[[issuer]]
name = "ours"
directory = "{directory}"
root = "{root}"
profile = "tiny"

[[certificate]]
name = "web"
names = ["ari.example.test"]
issuer = "ours"

[[certificate.deploy]]
dir = "{deploy}"

[status]
listen = "127.0.0.1:{status_port}"
certificate = "web"
"#,
            data = work.path().join("data").display(),
            http01 = ca.http01_port(),
            directory = ca.directory_url(),
            root = ca.root_pem_path().display(),
            deploy = deploy.display(),
        ),
    )
    .expect("config");
    let log = std::fs::File::create(work.path().join("daemon.log")).expect("log");
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_certkeeper"))
            .arg("up")
            .arg("--config")
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn daemon"),
    );
    let root = ca.root_pem_path();

    // First certificate, served at once.
    let first = wait_for_serial_change(&root, status_port, None, Duration::from_secs(30));

    // The window of a 90 s certificate opens about 35 s in; the renewal lands
    // in it, says which certificate it replaces, and is served without a restart.
    let second = wait_for_serial_change(&root, status_port, Some(&first), Duration::from_secs(75));
    let certs = list(&ca);
    let renewed = certs
        .iter()
        .find(|c| c["serial"] == second.as_str())
        .expect("second certificate at the CA");
    assert!(
        renewed["replaces"].is_string(),
        "the renewal order carried ARI replaces: {renewed}"
    );
    let original = certs
        .iter()
        .find(|c| c["serial"] == first.as_str())
        .expect("first certificate");
    let issued_at = |c: &serde_json::Value| {
        time::OffsetDateTime::parse(
            c["not_before"].as_str().unwrap_or_default(),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("not_before")
    };
    let elapsed = issued_at(renewed) - issued_at(original);
    assert!(
        elapsed >= time::Duration::seconds(25),
        "renewed {elapsed} after issuance: before the ARI window opened"
    );

    // Revoke the current certificate with its own key: the next ARI poll sees
    // a window already open and the agent renews at once, not 35 s later.
    let certbot = Certbot::new(&ca.directory_url(), &root).expect("certbot");
    certbot
        .revoke(
            &deploy.join("cert.pem"),
            Some(&deploy.join("key.pem")),
            "superseded",
        )
        .expect("revoke");
    let third = wait_for_serial_change(&root, status_port, Some(&second), Duration::from_secs(20));
    let certs = list(&ca);
    assert!(
        certs
            .iter()
            .any(|c| c["serial"] == second.as_str() && c["status"] == "revoked")
    );
    let latest = certs
        .iter()
        .find(|c| c["serial"] == third.as_str())
        .expect("third certificate");
    assert!(latest["replaces"].is_string(), "{latest}");
}
