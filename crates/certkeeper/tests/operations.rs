//! What operators rely on around the daemon: it stops cleanly on SIGTERM
//! (what systemd sends) and SIGINT, with exit 0, and the next start
//! resumes where it stopped; JSON logs; the shell completions; the systemd
//! unit, checked by systemd itself.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use certkeeper_harness::{AgentDir, Bind, CaOptions, CertkeeperCa, wait_for};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certkeeper"))
}

/// Our CA, resolving names at a BIND of its own.
fn our_ca() -> (Bind, CertkeeperCa) {
    let bind = Bind::start().expect("BIND");
    let ca = CertkeeperCa::start(
        bin(),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            ..Default::default()
        },
    )
    .expect("CA");
    (bind, ca)
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

/// SIGTERM while an order hangs at the CA: the daemon waits its grace
/// period, cancels the job, exits 0; the next start drives the same order
/// to a certificate, and the CA issued exactly one.
#[test]
fn sigterm_mid_order_exits_0_and_the_next_start_finishes_the_same_order() {
    let (_bind, ca) = our_ca();
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
    assert_eq!(ca.issued_count().expect("ca list"), 0);

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
        ca.issued_count().expect("ca list"),
        1,
        "the same order finished: one certificate"
    );
}

/// `certkeeper ca serve` stops cleanly on SIGTERM too, and with
/// `CERTKEEPER_LOG_FORMAT=json` every log line is a JSON object.
#[test]
fn the_ca_exits_0_on_sigterm_and_logs_json_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::fs::File::create(dir.path().join("ca.out")).expect("out");
    let err = std::fs::File::create(dir.path().join("ca.log")).expect("log");
    let port = certkeeper_harness::free_port();
    let metrics_port = certkeeper_harness::free_port();
    let mut child = Command::new(bin())
        .args(["ca", "serve", "--data"])
        .arg(dir.path().join("ca"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{metrics_port}"))
        .env("CERTKEEPER_LOG_FORMAT", "json")
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("ca serve");
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
    wait_for("the CA serving", Duration::from_secs(30), || {
        read("ca.out").contains("directory:").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", read("ca.log")));
    // Its metrics listener answers with the CA's series.
    let (status, metrics) =
        certkeeper_harness::http_get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
            .expect("GET /metrics");
    let metrics = String::from_utf8_lossy(&metrics);
    assert_eq!(status, 200, "{metrics}");
    assert!(
        metrics.contains("certkeeper_ca_crl_age_seconds"),
        "{metrics}"
    );
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(killed.success());
    let exit = wait_for("the CA exiting", Duration::from_secs(20), || {
        child.try_wait().expect("wait")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", read("ca.log")));
    assert_eq!(exit.code(), Some(0), "{}", read("ca.log"));

    let log = read("ca.log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "SIGTERM: stopping" && l["level"] == "INFO"),
        "{log}"
    );
}

/// The bash completion script loads and completes subcommands and flags.
#[test]
fn bash_completion_completes_subcommands_and_flags() {
    let script = Command::new(bin())
        .args(["completions", "bash"])
        .output()
        .expect("completions");
    assert!(script.status.success());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("certkeeper.bash");
    std::fs::write(&path, &script.stdout).expect("write");
    let complete = |words: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                r#"source {path}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
                   _certkeeper certkeeper "${{COMP_WORDS[$COMP_CWORD]}}" "${{COMP_WORDS[$COMP_CWORD-1]}}"; \
                   printf '%s\n' "${{COMPREPLY[@]}}""#,
                path = path.display()
            ))
            .output()
            .expect("bash");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let subcommands = complete("certkeeper sta");
    assert!(subcommands.lines().any(|l| l == "status"), "{subcommands}");
    let flags = complete("certkeeper revoke --re");
    assert!(flags.lines().any(|l| l == "--reason"), "{flags}");
}

/// `systemd-analyze verify` accepts the shipped unit without a single
/// warning (it exits 0 even when it ignores a misspelt setting).
#[test]
fn the_systemd_unit_verifies_cleanly() {
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/systemd/certkeeper.service");
    let unit = std::fs::read_to_string(&shipped).expect("the unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/certkeeper "));
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("certkeeper.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/certkeeper", &bin().display().to_string()),
    )
    .expect("write");
    let analyze = certkeeper_harness::require_peer("systemd-analyze");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");

    // And the check is real: a misspelt value is reported.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .expect("unit")
            .replace("NoNewPrivileges=yes", "NoNewPrivileges=perhaps"),
    )
    .expect("write");
    let out = Command::new(certkeeper_harness::require_peer("systemd-analyze"))
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("perhaps"), "{said}");
}

fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

/// The audit logs of a real run: our CA records every signature with its
/// SPKI and the keyCompromise revocation with who signed it; the agent
/// records its orders, certificates and the blocked key; `audit verify`
/// passes, then names the line after one edited record.
#[test]
fn audit_logs_record_a_real_run_and_verify_names_an_edited_record() {
    let (_bind, ca) = our_ca();
    let agent = agent_for(&ca, "audit.example.test");
    agent.ok(&["issue", "web"]).expect("issue");
    let status = agent.status().expect("status");
    let first_spki = status["certificates"][0]["slots"]
        .as_array()
        .and_then(|slots| slots.iter().find(|s| s["slot"] == "primary"))
        .and_then(|s| s["spki_sha256"].as_str())
        .unwrap_or_else(|| panic!("no primary SPKI in {status}"))
        .to_string();
    agent
        .ok(&["revoke", "web", "--reason", "keyCompromise"])
        .expect("revoke");

    let ca_log = audit_lines(&ca.data_dir().join("audit.jsonl"));
    let signed: Vec<_> = ca_log.iter().filter(|r| r["event"] == "signing").collect();
    assert_eq!(
        signed.len(),
        ca.issued_count().expect("ca list"),
        "one record per signature"
    );
    assert_eq!(signed[0]["spki_sha256"], first_spki.as_str());
    assert_eq!(signed[0]["names"][0], "audit.example.test");
    let revoked: Vec<_> = ca_log.iter().filter(|r| r["event"] == "revoked").collect();
    assert_eq!(revoked.len(), 1, "{ca_log:?}");
    assert_eq!(revoked[0]["signed_by"], "certificate-key");
    assert_eq!(revoked[0]["reason"], 1);
    assert_eq!(revoked[0]["spki_sha256"], first_spki.as_str());

    let agent_log = audit_lines(&agent.path("data/audit.jsonl"));
    for event in ["ordered", "obtained", "revoked", "key-blocked"] {
        assert!(
            agent_log.iter().any(|r| r["event"] == event),
            "{event} missing from {agent_log:?}"
        );
    }

    let verify = |dir: &Path| {
        Command::new(bin())
            .args(["audit", "verify", "--data"])
            .arg(dir)
            .output()
            .expect("audit verify")
    };
    for dir in [ca.data_dir(), agent.path("data")] {
        let out = verify(&dir);
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("chain intact"));
    }

    // One field of the second record changed: the third no longer links.
    let path = ca.data_dir().join("audit.jsonl");
    let text = std::fs::read_to_string(&path).expect("audit");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert!(lines.len() >= 3, "{text}");
    lines[1] = lines[1].replacen("\"by\":\"ca\"", "\"by\":\"cA\"", 1);
    std::fs::write(&path, lines.join("\n") + "\n").expect("edit");
    let out = verify(&ca.data_dir());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("line 3: prev does not match"), "{said}");
    assert!(said.contains("line 2 was edited"), "{said}");
}
