//! The certificate secondary (`[dns_secondary]`) against a real BIND 9 with
//! TSIG and our CA (`certkeeper ca serve`): services publish CSRs with
//! `certkeeper dns request`; the secondary finds them by TSIG-signed AXFR,
//! orders (dns-01 in the same zone, same key), publishes leaf and chain as
//! TLSA records; `dig`, `openssl` and `certkeeper dns fetch` cross-check.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use certkeeper_harness::{
    Bind, CaOptions, CertkeeperCa, Daemon, openssl, openssl_verify, tlsa_kinds, tlsa_record,
};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certkeeper"))
}

fn run_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out: Output = cmd.output().expect("run");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn run(args: &[&str]) -> (bool, String) {
    run_env(args, &[])
}

/// A BIND, our CA validating through it, and a secondary's configuration.
struct World {
    bind: Bind,
    ca: CertkeeperCa,
    dir: tempfile::TempDir,
}

impl World {
    fn start() -> World {
        let bind = Bind::start().expect("BIND");
        let ca = CertkeeperCa::start(
            bin(),
            CaOptions {
                dns_resolver: Some(bind.addr()),
                ..Default::default()
            },
        )
        .expect("CA");
        World::with(bind, ca, "", 1)
    }

    /// A world on `bind` and `ca`; `extra` goes into `[dns_secondary]`.
    fn with(bind: Bind, ca: CertkeeperCa, extra: &str, poll_interval: u64) -> World {
        let dir = tempfile::tempdir().expect("tmp");
        let secret = dir.path().join("tsig.secret");
        std::fs::write(&secret, bind.tsig_secret_b64()).expect("secret");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let w = World { bind, ca, dir };
        let config = format!(
            r#"data = "{data}"
[[issuer]]
name = "ca"
directory = "{directory}"
root = "{root}"

[[dns_server]]
name = "primary"
server = "{server}"
zone = "{zone}"
tsig_key = "{key}"
tsig_secret_file = "{secret}"
nameserver_port = {port}
# A primary started with a secondary lists it as ns2: ask the primary.
nameservers = {{ "ns2.{zone}." = "{server}" }}

[dns_secondary]
issuer = "ca"
poll_interval_seconds = {poll_interval}
{extra}
[[dns_secondary.zone]]
dns_server = "primary"
"#,
            data = w.p("data").display(),
            directory = w.ca.directory_url(),
            root = w.ca.root_pem_path().display(),
            server = w.bind.addr(),
            zone = w.bind.zone(),
            key = w.bind.tsig_key_name(),
            secret = secret.display(),
            port = w.bind.port(),
        );
        std::fs::write(w.p("certkeeper.toml"), config).expect("config");
        w
    }

    fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }

    fn conf(&self) -> String {
        self.p("certkeeper.toml")
            .to_str()
            .expect("utf-8")
            .to_owned()
    }

    fn host(&self, label: &str) -> String {
        format!("{label}.{}", self.bind.zone())
    }

    fn new_key(&self, file: &str) -> PathBuf {
        let path = self.p(file);
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            path.to_str().expect("utf-8"),
        ]);
        path
    }

    /// `certkeeper dns request`: the service publishes its CSR.
    fn request(&self, host: &str, key: &Path) {
        let secret = self.p("tsig.secret");
        let (ok, out) = run(&[
            "dns",
            "request",
            "--host",
            host,
            "--key",
            key.to_str().expect("utf-8"),
            "--server",
            &self.bind.addr().to_string(),
            "--tsig-key",
            self.bind.tsig_key_name(),
            "--tsig-secret-file",
            secret.to_str().expect("utf-8"),
        ]);
        assert!(ok, "{out}");
    }

    /// `certkeeper dns fetch` with `key` into `out`.
    fn fetch(&self, host: &str, key: &Path, out: &str) -> (bool, String) {
        run(&[
            "dns",
            "fetch",
            "--host",
            host,
            "--key",
            key.to_str().expect("utf-8"),
            "--out",
            self.p(out).to_str().expect("utf-8"),
            "--server",
            &self.bind.addr().to_string(),
            "--roots",
            self.ca.root_pem_path().to_str().expect("utf-8"),
        ])
    }

    fn secondary_once(&self, env: &[(&str, &str)]) -> (bool, String) {
        run_env(
            &["dns", "secondary", "--once", "--config", &self.conf()],
            env,
        )
    }

    fn tlsa(&self, host: &str) -> Vec<String> {
        self.bind
            .dig(&format!("_letsencrypt._tcp.{host}"), "TLSA")
            .expect("dig")
    }

    fn public_key_of_cert(&self, cert: &str) -> String {
        openssl(&[
            "x509",
            "-in",
            self.p(cert).to_str().expect("utf-8"),
            "-noout",
            "-pubkey",
        ])
    }

    fn public_key_of_key(&self, key: &Path) -> String {
        openssl(&["pkey", "-in", key.to_str().expect("utf-8"), "-pubout"])
    }

    /// How many orders the secondary placed for `name` (its `ordered` events).
    fn orders_placed(&self, name: &str) -> usize {
        let (ok, out) = run(&["events", "--json", "--config", &self.conf()]);
        assert!(ok, "{out}");
        let events: serde_json::Value = serde_json::from_str(&out).expect("events json");
        events
            .as_array()
            .expect("array")
            .iter()
            .filter(|e| e["kind"] == "ordered" && e["name"] == name)
            .count()
    }
}

#[test]
fn csr_in_dns_is_ordered_published_fetched_renewed_and_rekeyed() {
    let w = World::start();
    let host = w.host("svc");
    let key = w.new_key("service.key");
    w.request(&host, &key);
    let records = w.tlsa(&host);
    assert_eq!(tlsa_kinds(&records), vec!["3 255 0"], "{records:?}");
    let csr_record = tlsa_record(&records, "3 255 0").to_owned();

    // The secondary finds the CSR, orders (dns-01 in the same zone),
    // publishes leaf + intermediate next to the CSR.
    let (ok, out) = w.secondary_once(&[]);
    assert!(ok, "{out}");
    assert!(out.contains("1 CSR(s) accepted, 0 refused"), "{out}");
    assert!(
        out.contains(&format!("dns:{host}: obtained serial")),
        "{out}"
    );
    let records = w.tlsa(&host);
    assert_eq!(
        tlsa_kinds(&records),
        vec!["0 0 0", "3 0 0", "3 255 0"],
        "exactly CSR, leaf, intermediate: {records:?}"
    );
    assert_eq!(
        tlsa_record(&records, "3 255 0"),
        csr_record,
        "the CSR stays"
    );
    assert_eq!(w.ca.issued_count().expect("ca list"), 1);

    // The service fetches with its own key: chain verifies, key is its own.
    let (ok, out) = w.fetch(&host, &key, "fetched");
    assert!(ok, "{out}");
    openssl_verify(&w.ca.root_pem_path(), &w.p("fetched/fullchain.pem")).expect("openssl verify");
    assert_eq!(
        w.public_key_of_cert("fetched/cert.pem"),
        w.public_key_of_key(&key),
        "the certificate is for the service's own key"
    );

    // Our own updates (dns-01, TLSA) moved the serial: the next look
    // transfers again and finds nothing to do; the one after sees an
    // unchanged zone (one SOA query) and orders nothing either.
    let (ok, out) = w.secondary_once(&[]);
    assert!(ok, "{out}");
    assert!(out.contains("nothing due"), "{out}");
    let (ok, out) = w.secondary_once(&[]);
    assert!(ok, "{out}");
    assert!(out.contains("unchanged"), "{out}");
    assert!(out.contains("nothing due"), "{out}");
    assert_eq!(w.ca.issued_count().expect("ca list"), 1);

    // Someone deletes the leaf record: the next pass publishes the stored
    // certificate again, without ordering.
    let leaf = tlsa_record(&w.tlsa(&host), "3 0 0").to_owned();
    w.bind
        .nsupdate(&format!(
            "update delete _letsencrypt._tcp.{host}. TLSA {leaf}"
        ))
        .expect("nsupdate");
    assert_eq!(tlsa_kinds(&w.tlsa(&host)), vec!["0 0 0", "3 255 0"]);
    let (ok, out) = w.secondary_once(&[]);
    assert!(ok, "{out}");
    assert_eq!(
        tlsa_kinds(&w.tlsa(&host)),
        vec!["0 0 0", "3 0 0", "3 255 0"],
        "{out}"
    );
    assert_eq!(
        tlsa_record(&w.tlsa(&host), "3 0 0"),
        leaf,
        "the same certificate"
    );
    assert_eq!(w.ca.issued_count().expect("ca list"), 1);

    // `status` shows the host and its certificate.
    let (ok, out) = run(&["status", "--config", &w.conf()]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("{host} accepted: certificate dns:{host}")),
        "{out}"
    );
    assert!(out.contains(&format!("dns:{host}")), "{out}");

    // A forced renewal replaces the certificate records in one UPDATE: a
    // reader querying all along never sees the name without one leaf.
    let first_leaf = tlsa_record(&w.tlsa(&host), "3 0 0").to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = Arc::clone(&stop);
        let addr = w.bind.addr();
        let host = host.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            let server = certkeeper_dns::Server::new(addr);
            let (mut seen, mut bad) = (0usize, 0usize);
            while !stop.load(Ordering::SeqCst) {
                let set = rt
                    .block_on(certkeeper_dns::tlsa::fetch(&server, &host))
                    .expect("query");
                seen += 1;
                if set.leaves.len() != 1 || set.csrs.len() != 1 {
                    bad += 1;
                }
            }
            (seen, bad)
        })
    };
    let name = format!("dns:{host}");
    let (ok, out) = run(&["renew", &name, "--force", "--config", &w.conf()]);
    stop.store(true, Ordering::SeqCst);
    let (seen, bad) = watcher.join().expect("watcher");
    assert!(ok, "{out}");
    assert!(seen > 0);
    assert_eq!(
        bad, 0,
        "{bad} of {seen} answers lacked exactly one leaf and one CSR"
    );
    let records = w.tlsa(&host);
    assert_eq!(
        tlsa_kinds(&records),
        vec!["0 0 0", "3 0 0", "3 255 0"],
        "{records:?}"
    );
    assert_ne!(
        tlsa_record(&records, "3 0 0"),
        first_leaf,
        "the leaf was replaced"
    );
    assert_eq!(w.ca.issued_count().expect("ca list"), 2);

    // The service re-keys: a new CSR at the same host means a new
    // certificate for the new key; the old key is refused by fetch.
    let key2 = w.new_key("service2.key");
    w.request(&host, &key2);
    let (ok, out) = w.secondary_once(&[]);
    assert!(ok, "{out}");
    assert!(out.contains("obtained serial"), "{out}");
    assert_eq!(w.ca.issued_count().expect("ca list"), 3);
    let records = w.tlsa(&host);
    assert_eq!(
        tlsa_kinds(&records),
        vec!["0 0 0", "3 0 0", "3 255 0"],
        "{records:?}"
    );
    let (ok, out) = w.fetch(&host, &key2, "fetched2");
    assert!(ok, "{out}");
    assert_eq!(
        w.public_key_of_cert("fetched2/cert.pem"),
        w.public_key_of_key(&key2)
    );
    let (ok, out) = w.fetch(&host, &key, "refused");
    assert!(!ok, "{out}");
    assert!(out.contains("is for another key"), "{out}");
}

#[test]
fn a_crash_mid_order_resumes_the_same_order_and_hostile_records_are_refused() {
    let w = World::start();
    let zone = w.bind.zone().to_owned();

    // Hostile records next to a good one: garbage, a CSR for a name outside
    // the zone, a CSR whose self-signature is broken.
    let outside_key = w.new_key("outside.key");
    let outside_csr = w.p("outside.der");
    openssl(&[
        "req",
        "-new",
        "-key",
        outside_key.to_str().expect("utf-8"),
        "-subj",
        &format!("/CN=out.{zone}"),
        "-addext",
        &format!("subjectAltName=DNS:out.{zone},DNS:victim.other.test"),
        "-outform",
        "DER",
        "-out",
        outside_csr.to_str().expect("utf-8"),
    ]);
    let mut broken = std::fs::read(&outside_csr).expect("csr");
    let last = broken.len() - 1;
    broken[last] ^= 0x01;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
    w.bind
        .nsupdate(&format!(
            "update add _letsencrypt._tcp.garbage.{zone}. 300 TLSA 3 255 0 DEADBEEF00\n\
             update add _letsencrypt._tcp.out.{zone}. 300 TLSA 3 255 0 {}\n\
             update add _letsencrypt._tcp.badsig.{zone}. 300 TLSA 3 255 0 {}",
            hex(&std::fs::read(&outside_csr).expect("csr")),
            hex(&broken)
        ))
        .expect("nsupdate");

    let host = w.host("crash");
    let key = w.new_key("crash.key");
    w.request(&host, &key);

    // kill -9 (abort) right after the order is created and persisted.
    let (ok, out) = w.secondary_once(&[("CERTKEEPER_CRASH_AT", "order-created")]);
    assert!(!ok, "the crash point aborts: {out}");
    assert!(out.contains("CERTKEEPER_CRASH_AT=order-created"), "{out}");
    assert!(out.contains("1 CSR(s) accepted, 3 refused"), "{out}");
    assert_eq!(w.ca.issued_count().expect("ca list"), 0);
    let name = format!("dns:{host}");
    assert_eq!(w.orders_placed(&name), 1);

    // Restart: the same order completes; no second order, one certificate.
    let (ok, out) = w.secondary_once(&[]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{name}: obtained serial")), "{out}");
    assert_eq!(w.orders_placed(&name), 1, "the restart placed no new order");
    assert_eq!(w.ca.issued_count().expect("ca list"), 1);
    assert_eq!(
        tlsa_kinds(&w.tlsa(&host)),
        vec!["0 0 0", "3 0 0", "3 255 0"]
    );
    let (ok, out) = w.fetch(&host, &key, "fetched");
    assert!(ok, "{out}");

    // The hostile records: reported with their reason, nothing ordered for
    // them, nothing published next to them.
    let (ok, out) = run(&["status", "--config", &w.conf()]);
    assert!(ok, "{out}");
    for (label, reason) in [
        ("garbage", "not a DER CSR"),
        ("out", "not a name in the watched zone"),
        ("badsig", "self-signature does not verify"),
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("{label}.{zone} refused")))
            .unwrap_or_else(|| panic!("{label} not reported: {out}"));
        assert!(line.contains(reason), "{line}");
        assert_eq!(
            tlsa_kinds(&w.tlsa(&format!("{label}.{zone}"))),
            vec!["3 255 0"],
            "nothing published for {label}"
        );
        assert_eq!(w.orders_placed(&format!("dns:{label}.{zone}")), 0);
    }
    let ca_names = w.ca.list().expect("ca list").to_string();
    assert!(!ca_names.contains("victim.other.test"), "{ca_names}");
}

#[test]
fn the_daemon_orders_for_a_csr_published_while_it_runs_and_stops_on_sigterm() {
    let w = World::start();
    let mut daemon =
        Daemon::spawn(bin(), Path::new(&w.conf()), w.p("daemon.log"), &[]).expect("certkeeper up");
    let daemon_log = || daemon.log();
    certkeeper_harness::wait_for(
        "the daemon is up",
        std::time::Duration::from_secs(60),
        || {
            daemon_log()
                .contains("Ctrl-C or SIGTERM stops")
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {}", daemon_log()));
    assert!(
        daemon_log().contains("DNS secondary: 1 zone(s)"),
        "{}",
        daemon_log()
    );

    // A service appears after the daemon started: the next look finds its
    // CSR, the agent restarts on it, orders and publishes.
    let host = w.host("late");
    let key = w.new_key("late.key");
    w.request(&host, &key);
    certkeeper_harness::wait_for(
        "the certificate is published",
        std::time::Duration::from_secs(120),
        || (tlsa_kinds(&w.tlsa(&host)) == ["0 0 0", "3 0 0", "3 255 0"]).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}: {}", daemon_log()));
    let (ok, out) = w.fetch(&host, &key, "fetched");
    assert!(ok, "{out}");
    assert_eq!(
        w.public_key_of_cert("fetched/cert.pem"),
        w.public_key_of_key(&key)
    );
    let (ok, out) = run(&["status", "--config", &w.conf()]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{host} accepted")), "{out}");

    let exit = daemon
        .signal_and_wait("TERM", std::time::Duration::from_secs(60))
        .expect("SIGTERM");
    assert!(exit.success(), "{exit:?}: {}", daemon.log());
    assert_eq!(w.ca.issued_count().expect("ca list"), 1);
}

#[test]
fn a_notify_from_the_primary_makes_the_daemon_look_at_once() {
    // A primary that NOTIFYs a "secondary" on its own port: our listener.
    let bind = Bind::start_with_secondary().expect("BIND");
    let notify_port = bind.secondary_port().expect("port");
    let ca = CertkeeperCa::start(
        bin(),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            ..Default::default()
        },
    )
    .expect("CA");
    let w = World::with(
        bind,
        ca,
        &format!("notify_listen = \"127.0.0.1:{notify_port}\"\n"),
        3600,
    );
    let mut daemon =
        Daemon::spawn(bin(), Path::new(&w.conf()), w.p("daemon.log"), &[]).expect("certkeeper up");
    let daemon_log = || daemon.log();
    certkeeper_harness::wait_for(
        "the daemon is up",
        std::time::Duration::from_secs(60),
        || {
            daemon_log()
                .contains("Ctrl-C or SIGTERM stops")
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {}", daemon_log()));
    assert!(
        daemon_log().contains("NOTIFY:      listening"),
        "{}",
        daemon_log()
    );

    // Zones are polled only hourly: only the NOTIFY can bring this CSR in.
    let host = w.host("notified");
    let key = w.new_key("notified.key");
    w.request(&host, &key);
    certkeeper_harness::wait_for(
        "the certificate is published",
        std::time::Duration::from_secs(120),
        || (tlsa_kinds(&w.tlsa(&host)) == ["0 0 0", "3 0 0", "3 255 0"]).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}: {}", daemon_log()));
    let (ok, out) = w.fetch(&host, &key, "fetched");
    assert!(ok, "{out}");
    let exit = daemon
        .signal_and_wait("TERM", std::time::Duration::from_secs(60))
        .expect("SIGTERM");
    assert!(exit.success(), "{exit:?}: {}", daemon.log());
}
