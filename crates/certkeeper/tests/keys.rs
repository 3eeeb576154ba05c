//! `certkeeper keys …` end to end: racing sweep processes on one store, and
//! `keys serve` publishing to a real HPKE client (pyhpke) over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certkeeper"))
}

fn write_config(dir: &Path, hpke_suites: &str) {
    let text = format!(
        "data = \"{}\"\n[keys]\nkek_file = \"{}\"\n[keys.hpke]\nsuites = [{hpke_suites}]\n[keys.signing]\nsuites = [\"Ed25519\"]\n",
        dir.join("data").display(),
        dir.join("kek").display()
    );
    std::fs::write(dir.join("certkeeper.toml"), text).unwrap();
}

fn certkeeper(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .arg("--config")
        .arg(dir.join("certkeeper.toml"))
        .env("CERTKEEPER_LOG", "warn");
    c
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs two `keys sweep --json` processes at once; returns each one's change count.
fn race(dir: &Path) -> (usize, usize) {
    let spawn = || {
        certkeeper(dir, &["keys", "sweep", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let changes = |out: String| -> usize {
        let report: Value = serde_json::from_str(&out).unwrap();
        report["plans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["ops"].as_array().unwrap().len())
            .sum()
    };
    (
        changes(ok(a.wait_with_output().unwrap())),
        changes(ok(b.wait_with_output().unwrap())),
    )
}

fn listed(dir: &Path) -> Vec<Value> {
    let out = ok(certkeeper(dir, &["keys", "list", "--json"])
        .output()
        .unwrap());
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn two_racing_sweep_processes_make_exactly_one_set_of_changes() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_config(d, "\"X25519/HKDF-SHA256/AES-128-GCM\"");
        ok(Command::new(bin())
            .args(["keys", "new-kek"])
            .arg(d.join("kek"))
            .output()
            .unwrap());
        // Empty store: one active key per suite, made once.
        let (a, b) = race(d);
        assert_eq!((a.min(b), a.max(b)), (0, 2), "round {round}: {a} and {b}");
        assert_eq!(listed(d).len(), 2);
        // A suite added: one pending key, made once.
        write_config(
            d,
            "\"X25519/HKDF-SHA256/AES-128-GCM\", \"P-384/HKDF-SHA384/AES-256-GCM\"",
        );
        let (a, b) = race(d);
        assert_eq!((a.min(b), a.max(b)), (0, 1), "round {round}: {a} and {b}");
        let keys = listed(d);
        assert_eq!(keys.len(), 3);
        let pending: Vec<&Value> = keys.iter().filter(|k| k["state"] == "pending").collect();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0]["suite"], "P-384/HKDF-SHA384/AES-256-GCM");
        // Signing keys are listed with their RFC 7638 thumbprint.
        assert!(keys.iter().any(|k| k["kind"] == "signing" && k["kid"].as_str().is_some_and(|s| s.len() == 43)));
    }
}

#[test]
fn dry_run_prints_the_plan_with_reasons_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, "\"X25519/HKDF-SHA256/AES-128-GCM\"");
    // The KEK is checked before anything else.
    let out = certkeeper(d, &["keys", "sweep"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("keys new-kek"));
    ok(Command::new(bin())
        .args(["keys", "new-kek"])
        .arg(d.join("kek"))
        .output()
        .unwrap());
    let out = ok(certkeeper(d, &["keys", "sweep", "--dry-run"])
        .output()
        .unwrap());
    assert!(
        out.contains("hpke: would make 1 change(s)")
            && out.contains("create active key 0 (X25519/HKDF-SHA256/AES-128-GCM): no key of this kind is active"),
        "{out}"
    );
    assert!(listed(d).is_empty());
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CERTKEEPER_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-test/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run ./scripts/test (it creates the venv with pyhpke)",
        p.display()
    );
    p
}

/// `keys serve` publishes exactly the active configs, with a max-age below
/// expired_duration, in a form pyhpke parses and seals to.
#[test]
fn keys_serve_publishes_configs_pyhpke_can_use() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(
        d,
        "\"X25519/HKDF-SHA256/AES-128-GCM\", \"P-256/HKDF-SHA256/ChaCha20-Poly1305\"",
    );
    ok(Command::new(bin())
        .args(["keys", "new-kek"])
        .arg(d.join("kek"))
        .output()
        .unwrap());
    ok(certkeeper(d, &["keys", "sweep"]).output().unwrap());
    let mut server = certkeeper(d, &["keys", "serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    // Kept open until the server is killed: dropping the pipe after the
    // first line made its next println hit EPIPE and kill it (a race).
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("serving ")
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .to_string();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../keys/tests/peers/ohttp_client.py");
    let out = Command::new(python())
        .arg(&script)
        .args(["fetch", &url])
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    drop(stdout);
    let out = ok(out);
    assert!(
        out.contains("content-type: application/ohttp-keys"),
        "{out}"
    );
    assert!(out.contains("cache-control: max-age=86400"), "{out}");
    let mut served: Vec<u64> = out
        .lines()
        .filter(|l| !l.contains(':'))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    served.sort();
    let mut active: Vec<u64> = listed(d)
        .iter()
        .filter(|k| k["kind"] == "hpke" && k["state"] == "active")
        .map(|k| k["id"].as_u64().unwrap())
        .collect();
    active.sort();
    assert_eq!(served, active);
    assert_eq!(served.len(), 2);
}

/// The body of a `GET` that must answer 200.
fn http_get(url: &str) -> Vec<u8> {
    let (status, body) = certkeeper_harness::http_get(url).expect("GET");
    assert_eq!(status, 200, "{url}");
    body
}

/// Inside `certkeeper up`, the rotator sweeps on its interval: with second
/// timings the published config is replaced by its successor, no command run.
#[test]
fn the_daemon_rotates_on_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let admin = certkeeper_harness::free_port();
    let text = format!(
        "data = \"{}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[keys]\nkek_file = \"{}\"\nlisten = \"127.0.0.1:0\"\nsweep_interval_seconds = 1\ncache_refresh_seconds = 1\n\
         [keys.hpke]\npending_duration_seconds = 3\nactive_duration_seconds = 3\nexpired_duration_seconds = 30\nmax_age_seconds = 1\n",
        d.join("data").display(),
        d.join("kek").display()
    );
    std::fs::write(d.join("certkeeper.toml"), text).unwrap();
    ok(Command::new(bin())
        .args(["keys", "new-kek"])
        .arg(d.join("kek"))
        .output()
        .unwrap());
    let mut daemon = certkeeper(d, &["up"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(daemon.stdout.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.trim()
                .strip_prefix("keys served: ")
                .and_then(|r| r.split(',').next())
                .map(String::from)
        })
        .expect("up prints where keys are served");
    let first = http_get(&url);
    assert_eq!(first.len(), 2 + 41, "one X25519 config");
    // Active for 3 s, pending for 3 s, a sweep every second: a new config
    // within seconds. Bounded, so a stuck rotator fails instead of hanging.
    let mut rotated = None;
    for _ in 0..300 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = http_get(&url);
        if now != first {
            rotated = Some(now);
            break;
        }
    }
    // The admin listener's /metrics shows the rotator's keys and sweeps.
    let metrics = String::from_utf8(http_get(&format!("http://127.0.0.1:{admin}/metrics")))
        .expect("metrics text");
    let _ = daemon.kill();
    let _ = daemon.wait();
    let rotated = rotated.expect("the daemon never rotated the key");
    for series in [
        "certkeeper_keys{kind=\"hpke\",state=\"active\"} 1",
        "certkeeper_keys{kind=\"hpke\",state=\"expired\"} 1",
        "certkeeper_keys_newest_active_age_seconds{kind=\"hpke\"}",
        "certkeeper_keys_last_sweep_timestamp_seconds ",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    assert_eq!(rotated.len(), 2 + 41);
    assert_ne!(rotated[2], first[2], "a new key id");
    let keys = listed(d);
    assert!(
        keys.iter()
            .any(|k| k["state"] == "expired" && k["id"].as_u64() == Some(u64::from(first[2]))),
        "{keys:?}"
    );
}

/// A `[keys]` that could serve a key before every replica has it is refused
/// by name, with the sum it must exceed; so is an unknown key.
#[test]
fn check_config_refuses_unsafe_key_timings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    for (body, want) in [
        (
            "[keys]\nkek_file = \"k\"\n[keys.hpke]\npending_duration_seconds = 60\n",
            "hpke.pending_duration_seconds = 60 must exceed cache_refresh_seconds + sweep_interval_seconds = 2400",
        ),
        (
            "[keys]\nkek_file = \"k\"\nrotate = true\n[keys.hpke]\n",
            "unknown field `rotate`",
        ),
    ] {
        std::fs::write(&file, body).unwrap();
        let out = Command::new(bin())
            .arg("check-config")
            .arg(&file)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
    }
    let out = Command::new(bin())
        .args(["keys", "list", "--config"])
        .arg({
            std::fs::write(&file, "").unwrap();
            &file
        })
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [keys] section"));
}
