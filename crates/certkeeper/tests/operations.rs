//! What operators rely on around the daemon: it stops cleanly on SIGTERM
//! (what systemd sends) and SIGINT, with exit 0, and the next start
//! resumes where it stopped; the shell completions; the systemd unit.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use certkeeper_harness::{AgentDir, Bind, CaOptions, CertkeeperCa, wait_for};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certkeeper"))
}

/// One certificate `web` for `name` from our CA, `[agent]` shutting down
/// after a 1 s grace.
fn agent_for(ca: &CertkeeperCa, name: &str) -> AgentDir {
    let agent = AgentDir::new(bin()).expect("agent dir");
    agent
        .write_config(&format!(
            r#"data = "{data}"
[agent]
http01_listen = "127.0.0.1:{http01}"
shutdown_grace_seconds = 1

[[issuer]]
name = "ours"
directory = "{directory}"
root = "{root}"

[[certificate]]
name = "web"
names = ["{name}"]
issuer = "ours"
"#,
            data = agent.path("data").display(),
            http01 = ca.http01_port(),
            directory = ca.directory_url(),
            root = ca.root_pem_path().display(),
        ))
        .expect("config");
    agent
}

fn state(agent: &AgentDir) -> Option<String> {
    let status = agent.status().ok()?;
    status["certificates"][0]["state"]
        .as_str()
        .map(str::to_string)
}

fn issued_by(ca: &CertkeeperCa) -> usize {
    ca.list()
        .expect("ca list")
        .as_array()
        .map(Vec::len)
        .unwrap_or(0)
}

/// SIGTERM while an order hangs at the CA: the daemon waits its grace
/// period, cancels the job, exits 0; the next start drives the same order
/// to a certificate, and the CA issued exactly one.
#[test]
fn sigterm_mid_order_exits_0_and_the_next_start_finishes_the_same_order() {
    let bind = Bind::start().expect("BIND");
    let ca = CertkeeperCa::start(
        bin(),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            ..Default::default()
        },
    )
    .expect("CA");
    let agent = agent_for(&ca, "sigterm.example.test");

    let mut daemon = agent
        .spawn_daemon(&[("CERTKEEPER_STALL_AT", "order-created")])
        .expect("daemon");
    wait_for("the order recorded", Duration::from_secs(30), || {
        (state(&agent).as_deref() == Some("order in flight")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()));
    let exit = daemon
        .signal_and_wait("TERM", Duration::from_secs(20))
        .expect("stops");
    let log = daemon.log();
    assert_eq!(exit.code(), Some(0), "SIGTERM is a clean stop:\n{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(
        log.contains("cancelled"),
        "the hung job was cancelled:\n{log}"
    );
    assert_eq!(state(&agent).as_deref(), Some("order in flight"));
    assert_eq!(issued_by(&ca), 0);

    let mut daemon = agent.spawn_daemon(&[]).expect("daemon");
    wait_for("the certificate", Duration::from_secs(30), || {
        (state(&agent).as_deref() == Some("valid")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()));
    let exit = daemon
        .signal_and_wait("INT", Duration::from_secs(20))
        .expect("stops");
    assert_eq!(exit.code(), Some(0), "SIGINT too:\n{}", daemon.log());
    assert_eq!(
        issued_by(&ca),
        1,
        "the same order finished: one certificate"
    );
}

/// `certkeeper ca serve` stops cleanly on SIGTERM too.
#[test]
fn the_ca_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = std::fs::File::create(dir.path().join("ca.log")).expect("log");
    let port = certkeeper_harness::free_port();
    let mut child = Command::new(bin())
        .args(["ca", "serve", "--data"])
        .arg(dir.path().join("ca"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("ca serve");
    let log_text = || std::fs::read_to_string(dir.path().join("ca.log")).unwrap_or_default();
    wait_for("the CA serving", Duration::from_secs(30), || {
        log_text().contains("directory:").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", log_text()));
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(killed.success());
    let exit = wait_for("the CA exiting", Duration::from_secs(20), || {
        child.try_wait().expect("wait")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", log_text()));
    assert_eq!(exit.code(), Some(0), "{}", log_text());
}
