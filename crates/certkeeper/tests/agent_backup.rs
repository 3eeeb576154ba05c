//! Backup certificates (DESIGN.md story 4) against two real CAs at once:
//! the primary from our CA (`certkeeper ca serve`), the backup from pebble,
//! each on its own key. Revoking the primary with a real client (certbot)
//! makes the daemon serve the backup — seen by a real TLS client, in the
//! files, through one reload — and then re-key and re-issue the primary and
//! serve it again. Also: the operator's swap, and crashes at the new steps.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use certkeeper_harness::{
    AgentDir, Bind, CaOptions, Certbot, CertkeeperCa, Daemon, Pebble, free_port,
    openssl_serial_hex, served_serial, wait_for,
};

const NAME: &str = "backup.example.test";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certkeeper"))
}

/// Both CAs, validating http-01 on the same port (the agent has one responder).
struct Cas {
    _bind: Bind,
    pebble: Pebble,
    ours: CertkeeperCa,
    /// Both issuing roots in one file, for the TLS client.
    roots: PathBuf,
    _roots_dir: tempfile::TempDir,
}

fn two_cas() -> Cas {
    let bind = Bind::start().expect("BIND");
    let pebble = Pebble::start(Some(&bind), &[("PEBBLE_WFE_NONCEREJECT", "0")]).expect("pebble");
    // ARI polls every 2 s, so a revocation shows at the next poll.
    let policy = certkeeper_ca::policy::DEFAULT_POLICY.replace(
        "ari_retry_after_seconds = 21600",
        "ari_retry_after_seconds = 2",
    );
    let ours = CertkeeperCa::start(
        bin(),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            http01_port: pebble.http01_port(),
            policy: Some(policy),
            ..Default::default()
        },
    )
    .expect("our CA");
    let roots_dir = tempfile::tempdir().expect("tempdir");
    let roots = roots_dir.path().join("roots.pem");
    let both = format!(
        "{}\n{}",
        std::fs::read_to_string(ours.root_pem_path()).expect("our root"),
        pebble.issuing_root_pem().expect("pebble root")
    );
    std::fs::write(&roots, both).expect("roots");
    Cas {
        _bind: bind,
        pebble,
        ours,
        roots,
        _roots_dir: roots_dir,
    }
}

struct Setup {
    agent: AgentDir,
    status_port: u16,
}

impl Setup {
    fn new(cas: &Cas, return_to_primary: bool) -> Setup {
        Setup::with_agent_settings(cas, return_to_primary, "")
    }

    /// `agent` is extra `[agent]` TOML lines.
    fn with_agent_settings(cas: &Cas, return_to_primary: bool, agent: &str) -> Setup {
        let s = Setup {
            agent: AgentDir::new(bin()).expect("agent dir"),
            status_port: free_port(),
        };
        let deploy = s.path("deploy");
        let text = format!(
            r#"data = "{data}"
[agent]
http01_listen = "127.0.0.1:{http01}"
check_interval_seconds = 5
revocation_check_seconds = 1
event_hook = "echo \"$CERTKEEPER_EVENT $CERTKEEPER_CERTIFICATE $CERTKEEPER_SLOT\" >> {hooked}"
{agent}

[[issuer]]
name = "ours"
directory = "{ours}"
root = "{ours_root}"

[[issuer]]
name = "pebble"
directory = "{pebble}"
root = "{pebble_root}"

[[certificate]]
name = "web"
names = ["{NAME}"]
issuer = "ours"
backup = "pebble"
return_to_primary = {return_to_primary}

[[certificate.deploy]]
dir = "{deploy}"
reload = "openssl x509 -in {deploy}/cert.pem -noout -serial >> {reloads}"

[status]
listen = "127.0.0.1:{status_port}"
certificate = "web"
"#,
            data = s.path("data").display(),
            http01 = cas.pebble.http01_port(),
            ours = cas.ours.directory_url(),
            ours_root = cas.ours.root_pem_path().display(),
            pebble = cas.pebble.directory_url(),
            pebble_root = cas.pebble.tls_ca_pem_path().display(),
            deploy = deploy.display(),
            reloads = s.path("reloads").display(),
            hooked = s.path("hooked").display(),
            status_port = s.status_port,
        );
        s.agent.write_config(&text).expect("config");
        s
    }

    fn path(&self, p: &str) -> PathBuf {
        self.agent.path(p)
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

    fn slot(&self, slot: &str) -> serde_json::Value {
        self.status()["slots"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["slot"] == slot).cloned())
            .unwrap_or_default()
    }

    fn daemon(&self) -> Daemon {
        self.agent.spawn_daemon(&[]).expect("spawn daemon")
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }

    fn reloads(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("reloads"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().trim_start_matches("serial=").to_lowercase())
            .collect()
    }

    fn deployed_serial(&self, sub: &str) -> String {
        openssl_serial_hex(&self.path(&format!("deploy/{sub}cert.pem"))).expect("deployed serial")
    }

    fn wait<T>(&self, what: &str, within: Duration, f: impl FnMut() -> Option<T>) -> T {
        wait_for(what, within, f).unwrap_or_else(|e| panic!("{e}\n{}", self.daemon_log()))
    }
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The serial (lowercase hex, as `status` shows it) a TLS server on
/// 127.0.0.1:`port` presents, after a handshake verified against `config`'s
/// roots: in process, a few milliseconds per handshake.
fn handshake_serial(config: &Arc<rustls::ClientConfig>, port: u16) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let name = rustls::pki_types::ServerName::try_from(NAME).ok()?;
    let mut conn = rustls::ClientConnection::new(Arc::clone(config), name).ok()?;
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).ok()?;
    }
    let leaf = conn.peer_certificates()?.first()?.clone();
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&leaf).ok()?;
    Some(certkeeper_proto::serial::serial_hex(cert.raw_serial()))
}

fn client_config(roots_pem: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for root in rustls::pki_types::CertificateDer::pem_file_iter(roots_pem).expect("roots") {
        roots.add(root.expect("root")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A TLS client handshaking with the status page back to back, recording
/// every serial it sees (consecutive repeats folded) and every failure.
struct Watcher {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<(Vec<String>, usize)>>,
}

impl Watcher {
    fn start(roots: &Path, port: u16) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let (config, flag) = (client_config(roots), Arc::clone(&stop));
        let handle = std::thread::spawn(move || {
            let (mut seen, mut failures) = (Vec::<String>::new(), 0);
            while !flag.load(Ordering::SeqCst) {
                match handshake_serial(&config, port) {
                    Some(s) if seen.last() != Some(&s) => seen.push(s),
                    Some(_) => {}
                    None => failures += 1,
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (seen, failures)
        });
        Watcher {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

#[test]
fn revoked_primary_is_replaced_by_the_backup_at_once_then_reissued_on_a_new_key() {
    let cas = two_cas();
    let s = Setup::new(&cas, true);
    let _daemon = s.daemon();

    // Both slots are obtained, from different CAs, on different keys.
    s.wait("both slots valid", Duration::from_secs(60), || {
        let st = s.status();
        let slots = st["slots"].as_array()?;
        (slots.len() == 2 && slots.iter().all(|x| x["state"] == "valid")).then_some(())
    });
    let (primary, backup) = (s.slot("primary"), s.slot("backup"));
    assert_eq!(primary["issuer"], "ours");
    assert_eq!(backup["issuer"], "pebble");
    assert_ne!(
        primary["spki_sha256"], backup["spki_sha256"],
        "one key per slot"
    );
    let (p1, b1) = (text(&primary["serial"]), text(&backup["serial"]));
    assert_eq!(s.status()["served"], "primary");

    // The primary is served; the backup is held in backup/ for inspection.
    let served = s.wait("primary served over TLS", Duration::from_secs(20), || {
        served_serial(&cas.roots, s.status_port, NAME)
    });
    assert_eq!(served, p1);
    s.wait("files deployed", Duration::from_secs(20), || {
        (s.reloads().len() == 1).then_some(())
    });
    assert_eq!(s.deployed_serial(""), p1);
    s.wait("backup files", Duration::from_secs(20), || {
        openssl_serial_hex(&s.path("deploy/backup/cert.pem"))
            .ok()
            .filter(|serial| *serial == b1)
    });

    // A real client revokes the primary at the CA (signed with its own key).
    let watcher = Watcher::start(&cas.roots, s.status_port);
    let revoked_at = Instant::now();
    Certbot::new(&cas.ours.directory_url(), &cas.ours.root_pem_path())
        .expect("certbot")
        .revoke(
            &s.path("deploy/cert.pem"),
            Some(&s.path("deploy/key.pem")),
            "superseded",
        )
        .expect("certbot revoke");

    // The backup is served within one poll interval (2 s ARI + 1 s tick).
    s.wait("backup served", Duration::from_secs(15), || {
        let events = s.ok(&["events", "--json"]);
        events
            .contains("now serving the backup certificate")
            .then_some(())
    });
    let swap_latency = revoked_at.elapsed();

    // A new primary on a new key follows, and is served again.
    let p2 = s.wait("new primary served", Duration::from_secs(60), || {
        let p = s.slot("primary");
        let serial = text(&p["serial"]);
        (serial != p1 && p["health"] == "healthy" && s.status()["served"] == "primary")
            .then_some(serial)
    });
    let primary2 = s.slot("primary");
    assert_ne!(primary2["spki_sha256"], primary["spki_sha256"], "re-keyed");
    assert_ne!(primary2["spki_sha256"], backup["spki_sha256"]);
    s.wait("new primary in the files", Duration::from_secs(20), || {
        (s.reloads().len() == 3).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let (seen, failures) = watcher.finish();

    // Reloads: one per change of the served certificate, in order; the
    // revoked certificate is never deployed again.
    assert_eq!(s.reloads(), vec![p1.clone(), b1.clone(), p2.clone()]);
    assert_eq!(s.deployed_serial(""), p2);
    // A TLS client saw primary → backup → new primary, and no handshake failed.
    assert_eq!(
        seen,
        vec![p1.clone(), b1.clone(), p2.clone()],
        "served sequence"
    );
    assert_eq!(failures, 0, "handshakes failed during the swap");
    eprintln!("revocation to backup served: {swap_latency:?}");
    // The CA has the old primary revoked; the new one replaced it via ARI.
    let certs = cas.ours.list().expect("ca list");
    let list = certs.as_array().cloned().unwrap_or_default();
    assert!(
        list.iter()
            .any(|c| c["serial"] == p1.as_str() && c["status"] == "revoked")
    );
    assert!(
        list.iter()
            .any(|c| c["serial"] == p2.as_str() && c["replaces"].is_string()),
        "the re-issue names the revoked certificate in ARI replaces"
    );
}

#[test]
fn operator_swap_sticks_and_a_crash_mid_swap_finishes_on_restart() {
    let cas = two_cas();
    let s = Setup::new(&cas, true);
    let first = s.ok(&["issue", "web"]);
    assert!(first.contains("obtained serial"), "{first}");
    let (p1, b1) = (
        text(&s.slot("primary")["serial"]),
        text(&s.slot("backup")["serial"]),
    );
    assert!(!p1.is_empty() && !b1.is_empty(), "{}", s.status());
    assert_eq!(s.deployed_serial(""), p1);
    let orders = |ca: &CertkeeperCa| ca.list().expect("list").as_array().map_or(0, Vec::len);
    assert_eq!(orders(&cas.ours), 1);

    // kill -9 right after the served slot is recorded, before any file moved.
    let crashed = s.run(
        &["swap", "web", "--to", "backup"],
        &[("CERTKEEPER_CRASH_AT", "swap-recorded")],
    );
    assert!(!crashed.status.success(), "the crash point must abort");
    assert_eq!(s.deployed_serial(""), p1, "files not yet swapped");
    assert_eq!(s.status()["served"], "backup", "the decision survived");

    // The next run finishes the swap and, pinned by the operator, stays there
    // although the primary is healthy; no order is placed.
    s.ok(&["issue", "web"]);
    assert_eq!(s.deployed_serial(""), b1);
    assert_eq!(s.reloads().last(), Some(&b1));
    s.ok(&["issue", "web"]);
    assert_eq!(s.status()["served"], "backup");
    assert_eq!(orders(&cas.ours), 1, "no new order");

    // Swapping back.
    s.ok(&["swap", "web", "--to", "primary"]);
    assert_eq!(s.deployed_serial(""), p1);

    // The operator's event hook saw every step, with its environment (the
    // swap to the backup was the one killed before its event).
    let hooked = std::fs::read_to_string(s.path("hooked")).expect("hook ran");
    for line in [
        "obtained web primary",
        "obtained web backup",
        "deployed web backup",
        "swapped web primary",
        "deployed web primary",
    ] {
        assert!(
            hooked.lines().any(|l| l == line),
            "missing {line:?} in:\n{hooked}"
        );
    }
}

#[test]
fn a_crash_between_storing_a_certificate_and_deploying_it_loses_nothing() {
    let cas = two_cas();
    // One job at a time: the crash lands after the first slot's certificate
    // is stored, never while the other slot's challenge is being validated.
    let s = Setup::with_agent_settings(&cas, true, "max_concurrent_jobs = 1");
    // Regression: the certificate and its slot's cleared order are one
    // transaction. (Before, a kill between the two left the order in flight,
    // and every later run re-downloaded it and failed on the duplicate
    // certificate until it expired.)
    let crashed = s.run(&["issue", "web"], &[("CERTKEEPER_CRASH_AT", "stored")]);
    assert!(!crashed.status.success(), "the crash point must abort");
    let done = s.ok(&["issue", "web"]);
    let st = s.status();
    for slot in st["slots"].as_array().expect("slots") {
        assert_eq!(slot["state"], "valid", "{st}\n{done}");
        assert_eq!(slot["failures"], 0, "{st}");
    }
    assert_eq!(
        cas.ours
            .list()
            .expect("list")
            .as_array()
            .map_or(0, Vec::len),
        1,
        "one certificate from our CA, not two"
    );
}

/// `certkeeper revoke web --reason keyCompromise` while the daemon serves:
/// the backup is served first, then the primary is revoked signed with its
/// own key — our CA records the compromise as proven — the key is blocked
/// locally, and the daemon re-keys the primary and serves it again. Then
/// the backup (pebble) is revoked the same way. A TLS client polling all
/// along never fails a handshake.
#[test]
fn key_compromise_revocation_from_the_cli_swaps_first_and_never_drops_a_handshake() {
    let cas = two_cas();
    let s = Setup::new(&cas, true);
    let _daemon = s.daemon();
    s.wait("both slots valid", Duration::from_secs(60), || {
        let st = s.status();
        let slots = st["slots"].as_array()?;
        (slots.len() == 2 && slots.iter().all(|x| x["state"] == "valid")).then_some(())
    });
    let (primary, backup) = (s.slot("primary"), s.slot("backup"));
    let (p1, b1) = (text(&primary["serial"]), text(&backup["serial"]));
    let config = client_config(&cas.roots);
    s.wait("primary served", Duration::from_secs(20), || {
        (handshake_serial(&config, s.status_port)? == p1).then_some(())
    });
    let watcher = Watcher::start(&cas.roots, s.status_port);

    let out = s.ok(&["revoke", "web", "--reason", "keyCompromise"]);
    assert!(
        out.contains(&format!("serial {p1} revoked (keyCompromise)")),
        "{out}"
    );
    assert!(out.contains(&format!("now serving serial {b1}")), "{out}");

    // Our CA recorded a proven compromise (signed with the certificate key).
    let list = cas.ours.list().expect("ca list");
    let record = list
        .as_array()
        .and_then(|l| l.iter().find(|c| c["serial"] == p1.as_str()).cloned())
        .expect("primary at the CA");
    assert_eq!(record["status"], "revoked", "{record}");
    assert_eq!(record["revocation_reason"], 1, "{record}");
    assert_eq!(record["key_proven_at_revocation"], true, "{record}");

    // Blocked locally, and the daemon re-keys and serves a new primary.
    let text_status = s.ok(&["status"]);
    assert!(
        text_status.contains(&text(&primary["spki_sha256"])),
        "blocked key listed:\n{text_status}"
    );
    let p2 = s.wait("new primary served", Duration::from_secs(60), || {
        let p = s.slot("primary");
        let serial = text(&p["serial"]);
        (serial != p1 && p["health"] == "healthy" && s.status()["served"] == "primary")
            .then_some(serial)
    });
    assert_ne!(s.slot("primary")["spki_sha256"], primary["spki_sha256"]);
    s.wait("new primary over TLS", Duration::from_secs(20), || {
        (handshake_serial(&config, s.status_port)? == p2).then_some(())
    });

    // The backup, revoked at pebble with its own key, while not served.
    let b1_pem = s.path("b1.pem");
    std::fs::copy(s.path("deploy/backup/cert.pem"), &b1_pem).expect("copy backup");
    assert_eq!(openssl_serial_hex(&b1_pem).expect("serial"), b1);
    let out = s.ok(&[
        "revoke",
        "web",
        "--slot",
        "backup",
        "--reason",
        "keyCompromise",
    ]);
    assert!(
        out.contains(&format!("backup serial {b1} revoked")),
        "{out}"
    );
    let pebble_status = cas.pebble.cert_status(&b1_pem).expect("pebble status");
    assert!(pebble_status.contains("Revoked"), "{pebble_status}");
    let b2 = s.wait("backup re-issued", Duration::from_secs(60), || {
        let b = s.slot("backup");
        let serial = text(&b["serial"]);
        (serial != b1 && b["health"] == "healthy").then_some(serial)
    });
    assert_ne!(b2, b1);
    std::thread::sleep(Duration::from_millis(300));
    let (seen, failures) = watcher.finish();
    assert_eq!(failures, 0, "handshakes failed: served {seen:?}");
    assert_eq!(seen, vec![p1, b1, p2], "served sequence");
    assert!(
        !s.reloads().contains(&text(&primary["serial"]))
            || s.reloads().first() == Some(&text(&primary["serial"])),
        "the revoked primary was deployed again: {:?}",
        s.reloads()
    );
}

/// `certkeeper compromised --key FILE`: the operator reports the primary's
/// key as leaked. It is blocked, the backup is served, the primary is
/// revoked with proof at our CA; a kill -9 during the re-key resumes the
/// same order, and the new primary never uses the blocked key.
#[test]
fn a_reported_key_is_blocked_replaced_and_revoked_and_a_crash_mid_rekey_resumes() {
    let cas = two_cas();
    let s = Setup::new(&cas, true);
    s.ok(&["issue", "web"]);
    let primary = s.slot("primary");
    let p1 = text(&primary["serial"]);
    let leaked = s.path("leaked-key.pem");
    std::fs::copy(s.path("deploy/key.pem"), &leaked).expect("copy key");

    let out = s.ok(&["compromised", "--key", leaked.to_str().expect("path")]);
    assert!(out.contains("blocked"), "{out}");
    assert!(
        out.contains(&format!("serial {p1} revoked (keyCompromise)")),
        "{out}"
    );
    let st = s.status();
    assert_eq!(st["served"], "backup", "{st}");
    assert_eq!(s.deployed_serial(""), text(&s.slot("backup")["serial"]));
    let record = cas
        .ours
        .list()
        .expect("list")
        .as_array()
        .and_then(|l| l.iter().find(|c| c["serial"] == p1.as_str()).cloned())
        .expect("record");
    assert_eq!(record["key_proven_at_revocation"], true, "{record}");
    let orders = |ca: &CertkeeperCa| ca.list().expect("list").as_array().map_or(0, Vec::len);
    assert_eq!(orders(&cas.ours), 1);

    // The re-key crashes right after its order is recorded; the next run
    // finishes that order: one new certificate, on a new key.
    let crashed = s.run(
        &["issue", "web"],
        &[("CERTKEEPER_CRASH_AT", "order-created")],
    );
    assert!(!crashed.status.success(), "the crash point must abort");
    assert_eq!(s.slot("primary")["state"], "order in flight");
    s.ok(&["issue", "web"]);
    assert_eq!(
        orders(&cas.ours),
        2,
        "the crashed order was resumed, not replaced"
    );
    let p2 = s.slot("primary");
    assert_ne!(
        p2["spki_sha256"], primary["spki_sha256"],
        "never the blocked key"
    );
    assert_eq!(p2["health"], "healthy");
    assert_eq!(s.status()["served"], "primary", "back to the new primary");
    assert_eq!(s.deployed_serial(""), text(&p2["serial"]));
    // The blocked key stays listed.
    let out = s.run(&["status", "--json"], &[]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        report["blocked_keys"][0]["spki_sha256"], primary["spki_sha256"],
        "{report}"
    );
}

/// kill -9 inside `certkeeper revoke`, after the decision is recorded and
/// before the CA answered: the revoked certificate is never served again,
/// and the next run sends the revocation (with its proof) and re-keys.
#[test]
fn a_crash_mid_revoke_never_serves_the_certificate_and_the_next_run_sends_it() {
    let cas = two_cas();
    let s = Setup::new(&cas, true);
    s.ok(&["issue", "web"]);
    let primary = s.slot("primary");
    let (p1, b1) = (text(&primary["serial"]), text(&s.slot("backup")["serial"]));
    let at_ca = |serial: &str| {
        cas.ours
            .list()
            .expect("list")
            .as_array()
            .and_then(|l| l.iter().find(|c| c["serial"] == serial).cloned())
            .expect("record")
    };

    let crashed = s.run(
        &["revoke", "web", "--reason", "keyCompromise"],
        &[("CERTKEEPER_CRASH_AT", "revoke-recorded")],
    );
    assert!(!crashed.status.success(), "the crash point must abort");
    assert_eq!(at_ca(&p1)["status"], "valid", "nothing reached the CA yet");
    assert_eq!(s.status()["served"], "backup");
    assert_eq!(s.deployed_serial(""), b1, "the backup is served");
    assert_eq!(s.slot("primary")["health"], "revoked", "never served again");

    s.ok(&["issue", "web"]);
    let record = at_ca(&p1);
    assert_eq!(record["status"], "revoked", "{record}");
    assert_eq!(record["key_proven_at_revocation"], true, "{record}");
    let p2 = s.slot("primary");
    assert_ne!(text(&p2["serial"]), p1);
    assert_ne!(p2["spki_sha256"], primary["spki_sha256"]);
    assert!(
        !s.reloads().iter().skip(1).any(|r| *r == p1),
        "{:?}",
        s.reloads()
    );
}
