//! The agent through its CLI (`issue`, `renew`, `status`) against real CAs:
//! pebble (with half of all nonces rejected) and our own CA. Issuance,
//! deployment, forced renewal, crashes at exact steps (the next run finishes
//! the same order), and failure backoff that survives restarts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use certkeeper_harness::{
    AgentDir, Bind, CaOptions, CertkeeperCa, Pebble, free_port, openssl_verify,
};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certkeeper"))
}

/// The agent's directory; its helpers panic with what went wrong.
struct Setup {
    agent: AgentDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            agent: AgentDir::new(bin()).expect("agent dir"),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.agent.path(p)
    }

    /// Writes certkeeper.toml for one certificate `web` from one issuer.
    fn config(&self, directory: &str, root: &Path, http01_port: u16, name: &str) -> PathBuf {
        let deploy = self.path("deploy");
        let text = format!(
            r#"data = "{data}"
[agent]
http01_listen = "127.0.0.1:{http01_port}"
backoff_initial_seconds = 600

[[issuer]]
name = "ca"
directory = "{directory}"
root = "{root}"

[[certificate]]
name = "web"
names = ["{name}"]
issuer = "ca"

[[certificate.deploy]]
dir = "{deploy}"
reload = "touch {deploy}/reloaded"
"#,
            data = self.path("data").display(),
            root = root.display(),
            deploy = deploy.display(),
        );
        self.agent.write_config(&text).expect("write config");
        self.agent.config_path()
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.agent.run(args, env).expect("run certkeeper")
    }

    fn ok(&self, args: &[&str]) -> String {
        self.agent.ok(args).unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn status(&self) -> serde_json::Value {
        self.agent.status().expect("status")["certificates"][0].clone()
    }
}

/// Issue, deploy (files, modes, reload), reuse on the next run, forced
/// renewal — against pebble rejecting half of all nonces.
#[test]
fn pebble_issue_deploy_and_forced_renewal_despite_nonce_rejection() {
    let bind = Bind::start().expect("BIND");
    let pebble = Pebble::start(Some(&bind), &[("PEBBLE_WFE_NONCEREJECT", "50")]).expect("pebble");
    let s = Setup::new();
    s.config(
        &pebble.directory_url(),
        pebble.tls_ca_pem_path(),
        pebble.http01_port(),
        "agent.example.test",
    );

    let first = s.ok(&["issue", "web"]);
    assert!(first.contains("obtained serial"), "{first}");
    let deploy = s.path("deploy");
    let root = pebble.issuing_root_pem_path().expect("pebble root");
    openssl_verify(&root, &deploy.join("fullchain.pem")).expect("deployed chain verifies");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(deploy.join("key.pem"))
        .expect("key.pem")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(deploy.join("reloaded").exists(), "reload command ran");
    let serial = s.status()["serial"].as_str().expect("serial").to_string();

    // A second run reuses the stored certificate: nothing due.
    let again = s.ok(&["issue", "web"]);
    assert!(again.contains("nothing due"), "{again}");
    assert_eq!(s.status()["serial"].as_str(), Some(serial.as_str()));

    let before = std::fs::read_to_string(deploy.join("fullchain.pem")).expect("fullchain");
    s.ok(&["renew", "web", "--force"]);
    let status = s.status();
    assert_ne!(
        status["serial"].as_str(),
        Some(serial.as_str()),
        "forced renewal must replace the certificate"
    );
    assert_eq!(status["state"], "valid");
    let after = std::fs::read_to_string(deploy.join("fullchain.pem")).expect("fullchain");
    assert_ne!(before, after, "the new certificate was deployed");
}

/// kill -9 right after the order is created, and right after finalize: the
/// next run completes the same order; the CA issues exactly one certificate.
#[test]
fn a_crash_mid_order_is_finished_by_the_next_run() {
    let bind = Bind::start().expect("BIND");
    for (i, point) in ["order-created", "finalized"].iter().enumerate() {
        let ca = CertkeeperCa::start(
            bin(),
            CaOptions {
                dns_resolver: Some(bind.addr()),
                ..Default::default()
            },
        )
        .expect("CA");
        let s = Setup::new();
        s.config(
            &ca.directory_url(),
            &ca.root_pem_path(),
            ca.http01_port(),
            &format!("crash{i}.example.test"),
        );
        let crashed = s.run(&["issue", "web"], &[("CERTKEEPER_CRASH_AT", point)]);
        assert!(
            !crashed.status.success(),
            "{point}: the crash point must abort"
        );
        assert_eq!(
            s.status()["state"],
            "order in flight",
            "{point}: the order is recorded before it is driven"
        );

        let done = s.ok(&["issue", "web"]);
        assert!(done.contains("obtained serial"), "{point}: {done}");
        assert_eq!(
            ca.issued_count().expect("ca list"),
            1,
            "{point}: one certificate, not two"
        );
        assert_eq!(s.status()["state"], "valid");
    }
}

/// A validation failure at pebble starts a backoff that a restart does not
/// skip; a configuration change does.
#[test]
fn failure_backoff_survives_a_restart_and_yields_to_a_config_change() {
    let bind = Bind::start().expect("BIND");
    let pebble = Pebble::start(Some(&bind), &[("PEBBLE_WFE_NONCEREJECT", "0")]).expect("pebble");
    let s = Setup::new();
    // The responder listens where pebble does not look: validation fails.
    s.config(
        &pebble.directory_url(),
        pebble.tls_ca_pem_path(),
        free_port(),
        "backoff.example.test",
    );
    let failed = s.run(&["issue", "web"], &[]);
    assert!(!failed.status.success());
    let status = s.status();
    assert_eq!(status["state"], "failing", "{status}");
    assert_eq!(status["failures"], 1);
    assert!(
        status["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("backoff.example.test"),
        "{status}"
    );

    // A new process: still backing off, no new attempt.
    let waited = s.ok(&["issue", "web"]);
    assert!(waited.contains("nothing due"), "{waited}");
    assert_eq!(
        s.status()["failures"],
        1,
        "no attempt was made during the backoff"
    );

    // The operator fixes the port: the change skips the backoff.
    s.config(
        &pebble.directory_url(),
        pebble.tls_ca_pem_path(),
        pebble.http01_port(),
        "backoff.example.test",
    );
    let fixed = s.ok(&["issue", "web"]);
    assert!(fixed.contains("obtained serial"), "{fixed}");
    assert_eq!(s.status()["state"], "valid");
}

/// dns-01 through the exec hook, with real `nsupdate` (TSIG) writing to BIND,
/// which pebble resolves through: a wildcard, on an RSA-3072 key.
#[test]
fn dns01_hook_with_nsupdate_gets_a_wildcard() {
    let bind = Bind::start().expect("BIND");
    let pebble = Pebble::start(Some(&bind), &[("PEBBLE_WFE_NONCEREJECT", "0")]).expect("pebble");
    let s = Setup::new();
    // The hook an operator would write: one script, add or delete.
    let hook = s.path("nsupdate-hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nprintf 'server 127.0.0.1 {port}\\nzone example.test.\\nupdate %s %s. 60 TXT \"%s\"\\nsend\\n' \"$1\" \"$CERTKEEPER_TXT_NAME\" \"$CERTKEEPER_TXT_VALUE\" | nsupdate -y {alg}:{key}:{secret}\n",
            port = bind.port(),
            alg = bind.tsig_algorithm(),
            key = bind.tsig_key_name(),
            secret = bind.tsig_secret_b64(),
        ),
    )
    .expect("hook");
    let text = format!(
        r#"data = "{data}"
[[issuer]]
name = "ca"
directory = "{directory}"
root = "{root}"

[[certificate]]
name = "wild"
names = ["dns.example.test", "*.dns.example.test"]
issuer = "ca"
key = "rsa3072"
challenge = "dns-01"

[certificate.dns_hook]
present = "sh {hook} add"
cleanup = "sh {hook} delete"
"#,
        data = s.path("data").display(),
        directory = pebble.directory_url(),
        root = pebble.tls_ca_pem_path().display(),
        hook = hook.display(),
    );
    std::fs::write(s.path("certkeeper.toml"), text).expect("config");
    let out = s.ok(&["issue", "wild"]);
    assert!(out.contains("obtained serial"), "{out}");
    assert!(
        bind.dig("_acme-challenge.dns.example.test", "TXT")
            .expect("dig")
            .is_empty(),
        "cleanup removed the TXT records"
    );
}

/// http-01 through a webroot served by a web server nobody here wrote
/// (Python's http.server) on the port pebble validates.
#[test]
fn webroot_served_by_another_web_server() {
    let bind = Bind::start().expect("BIND");
    let pebble = Pebble::start(Some(&bind), &[("PEBBLE_WFE_NONCEREJECT", "0")]).expect("pebble");
    let s = Setup::new();
    let webroot = s.path("www");
    std::fs::create_dir_all(&webroot).expect("webroot");
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Server(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &pebble.http01_port().to_string(),
                "--directory",
            ])
            .arg(&webroot)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 http.server"),
    );
    s.config(
        &pebble.directory_url(),
        pebble.tls_ca_pem_path(),
        free_port(),
        "webroot.example.test",
    );
    let text = std::fs::read_to_string(s.path("certkeeper.toml")).expect("config");
    let text = text.replace(
        "issuer = \"ca\"\n",
        &format!("issuer = \"ca\"\nwebroot = \"{}\"\n", webroot.display()),
    );
    std::fs::write(s.path("certkeeper.toml"), text).expect("config");
    // Python needs a moment to listen; the agent's backoff would otherwise bite.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = s.ok(&["issue", "web"]);
    assert!(out.contains("obtained serial"), "{out}");
    let left = std::fs::read_dir(webroot.join(".well-known/acme-challenge"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "challenge files are cleaned up");
}

/// `check-config` names the problem and the fix, and touches nothing.
#[test]
fn check_config_names_the_problem() {
    let s = Setup::new();
    let path = s.config(
        "https://ca.example/directory",
        Path::new("/nonexistent.pem"),
        80,
        "a.example.test",
    );
    let ok = Command::new(bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .expect("read")
            .replace("issuer = \"ca\"\n", "issuer = \"other\"\n"),
    )
    .expect("write");
    let bad = Command::new(bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("issuer \"other\" is not defined"), "{err}");
    assert!(
        !s.path("data").exists(),
        "check-config must not create the data directory"
    );
}
