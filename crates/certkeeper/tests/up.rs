//! `certkeeper up` as the README runs it: a localhost certificate from the
//! built-in CA, served on an HTTPS status page; restarts reuse the stored
//! certificate instead of ordering again (DESIGN.md story 1).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use certkeeper_harness::{free_port, served_serial};

struct Up {
    child: Child,
    status_port: u16,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Ports {
    ca: u16,
    http01: u16,
    status: u16,
}

fn start(data: &Path, ports: &Ports) -> Up {
    let log = std::fs::File::create(data.with_extension("log")).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .arg("up")
        .arg("--data")
        .arg(data)
        .arg("--ca-listen")
        .arg(format!("127.0.0.1:{}", ports.ca))
        .arg("--http01-listen")
        .arg(format!("127.0.0.1:{}", ports.http01))
        .arg("--status-listen")
        .arg(format!("127.0.0.1:{}", ports.status))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn certkeeper up");
    Up {
        child,
        status_port: ports.status,
    }
}

fn wait_served(root: &Path, up: &Up, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(serial) = root
            .exists()
            .then(|| served_serial(root, up.status_port, "localhost"))
            .flatten()
        {
            return serial;
        }
        assert!(
            Instant::now() < deadline,
            "status page did not answer over HTTPS within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn issued_count(data: &Path) -> usize {
    let out = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(["ca", "list", "--json", "--data"])
        .arg(data.join("builtin-ca"))
        .output()
        .expect("ca list");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    list.as_array().map(Vec::len).unwrap_or(0)
}

#[test]
fn up_serves_localhost_and_restarts_reuse_the_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data: PathBuf = dir.path().join("data");
    let root = data.join("builtin-ca/ca/root.pem");
    let ports = Ports {
        ca: free_port(),
        http01: free_port(),
        status: free_port(),
    };

    let up = start(&data, &ports);
    let first = wait_served(&root, &up, Duration::from_secs(30));
    drop(up);
    assert_eq!(issued_count(&data), 1);

    // Restart loop: every start must reuse the stored certificate.
    for _ in 0..20 {
        let up = start(&data, &ports);
        assert_eq!(
            wait_served(&root, &up, Duration::from_secs(30)),
            first,
            "a restart served a different certificate"
        );
    }
    assert_eq!(
        issued_count(&data),
        1,
        "restarts must not order new certificates"
    );

    // Every other command works on the same data directory without a
    // configuration file: `up` recorded its embedded defaults there.
    let tmp_cwd = tempfile::tempdir().expect("cwd");
    let out = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(["status", "--json", "--data"])
        .arg(&data)
        .current_dir(tmp_cwd.path())
        .output()
        .expect("status");
    assert!(out.status.success(), "status after up: {out:?}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    let cert = &status["certificates"][0];
    assert_eq!(cert["name"], "localhost", "{status}");
    assert_eq!(cert["serial"], first.as_str(), "{status}");
    assert_eq!(cert["state"], "valid", "{status}");
    let out = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(["limits", "--data"])
        .arg(&data)
        .current_dir(tmp_cwd.path())
        .output()
        .expect("limits");
    assert!(out.status.success(), "limits after up: {out:?}");
    // Without `up` having run there, the error says what to do.
    let out = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(["status", "--data"])
        .arg(tmp_cwd.path().join("nothing-here"))
        .current_dir(tmp_cwd.path())
        .output()
        .expect("status");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run `certkeeper up` first"), "{err}");

    // The database holds private keys: owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("certkeeper.db"))
        .expect("db")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}
