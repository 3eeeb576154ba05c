//! Certificates distributed as TLSA records at `_letsencrypt._tcp.HOST`
//! (dns-letsencrypt-secondary's layout) through a real BIND 9: `dns
//! request` publishes a CSR, the agent's `tlsa` deploy target publishes leaf
//! and intermediate, `dns fetch` checks and writes them, `dig` and
//! `openssl verify` cross-check.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use certkeeper_harness::{
    Bind, CaOptions, CertkeeperCa, openssl, openssl_verify, tlsa_kinds, tlsa_record,
};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certkeeper"))
}

fn run(args: &[&str]) -> (bool, String) {
    let out: Output = Command::new(bin()).args(args).output().expect("run");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn csr_published_certificate_published_in_one_update_and_fetched() {
    let bind = Bind::start().expect("BIND");
    let ca = CertkeeperCa::start(
        bin(),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            ..Default::default()
        },
    )
    .expect("CA");
    let dir = tempfile::tempdir().expect("tmp");
    let p = |s: &str| -> PathBuf { dir.path().join(s) };
    let secret = p("tsig.secret");
    std::fs::write(&secret, bind.tsig_secret_b64()).expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let host = "svc.example.test";
    let owner = format!("_letsencrypt._tcp.{host}");
    let server = bind.addr().to_string();

    // The service: its own key, a CSR in DNS.
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        p("service.key").to_str().expect("utf-8"),
    ]);
    let (ok, out) = run(&[
        "dns",
        "request",
        "--host",
        host,
        "--key",
        p("service.key").to_str().expect("utf-8"),
        "--server",
        &server,
        "--tsig-key",
        bind.tsig_key_name(),
        "--tsig-secret-file",
        secret.to_str().expect("utf-8"),
    ]);
    assert!(ok, "{out}");
    let records = bind.dig(&owner, "TLSA").expect("dig");
    assert_eq!(tlsa_kinds(&records), vec!["3 255 0"], "{records:?}");
    let csr_record = tlsa_record(&records, "3 255 0").to_owned();

    // The agent publishes its certificate there (dns-01 through the same BIND).
    let config = format!(
        r#"data = "{data}"
[[issuer]]
name = "ca"
directory = "{directory}"
root = "{root}"

[[certificate]]
name = "web"
names = ["{host}"]
issuer = "ca"
challenge = "dns-01"

[certificate.dns]
server = "{server}"
tsig_key = "{key}"
tsig_secret_file = "{secret}"
nameserver_port = {port}

[certificate.tlsa]

[[certificate.deploy]]
dir = "{deploy}"
"#,
        data = p("data").display(),
        directory = ca.directory_url(),
        root = ca.root_pem_path().display(),
        key = bind.tsig_key_name(),
        secret = secret.display(),
        port = bind.port(),
        deploy = p("deploy").display(),
    );
    std::fs::write(p("certkeeper.toml"), config).expect("config");
    let conf = p("certkeeper.toml");
    let conf = conf.to_str().expect("utf-8");
    let (ok, out) = run(&["issue", "web", "--config", conf]);
    assert!(ok, "{out}");
    let records = bind.dig(&owner, "TLSA").expect("dig");
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
    let first_leaf = tlsa_record(&records, "3 0 0").to_owned();

    // Fetched with the key the certificate is for: checked and written.
    let fetch = |key: &Path, out_dir: &Path| {
        run(&[
            "dns",
            "fetch",
            "--host",
            host,
            "--key",
            key.to_str().expect("utf-8"),
            "--out",
            out_dir.to_str().expect("utf-8"),
            "--server",
            &server,
            "--roots",
            ca.root_pem_path().to_str().expect("utf-8"),
        ])
    };
    let (ok, out) = fetch(&p("deploy/key.pem"), &p("fetched"));
    assert!(ok, "{out}");
    openssl_verify(&ca.root_pem_path(), &p("fetched/fullchain.pem")).expect("openssl verify");
    let cert_pub = openssl(&[
        "x509",
        "-in",
        p("fetched/cert.pem").to_str().expect("utf-8"),
        "-noout",
        "-pubkey",
    ]);
    let key_pub = openssl(&[
        "pkey",
        "-in",
        p("deploy/key.pem").to_str().expect("utf-8"),
        "-pubout",
    ]);
    assert_eq!(
        cert_pub, key_pub,
        "the fetched certificate is for the local key"
    );

    // With another key (the CSR's, which no secondary has ordered for): refused.
    let (ok, out) = fetch(&p("service.key"), &p("refused"));
    assert!(!ok, "{out}");
    assert!(out.contains("is for another key"), "{out}");
    assert!(!p("refused/cert.pem").exists(), "nothing written");

    // A renewal replaces the certificate records in one UPDATE: a client
    // querying all the while never sees the name without a leaf.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = Arc::clone(&stop);
        let addr = bind.addr();
        let owner = owner.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            let server = certkeeper_dns::Server::new(addr);
            let host = owner.trim_start_matches("_letsencrypt._tcp.").to_owned();
            let mut seen = 0usize;
            let mut without_leaf = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let set = rt
                    .block_on(certkeeper_dns::tlsa::fetch(&server, &host))
                    .expect("query");
                seen += 1;
                if set.leaves.len() != 1 || set.csrs.len() != 1 {
                    without_leaf += 1;
                }
            }
            (seen, without_leaf)
        })
    };
    let (ok, out) = run(&["renew", "web", "--force", "--config", conf]);
    stop.store(true, Ordering::SeqCst);
    let (seen, without_leaf) = watcher.join().expect("watcher");
    assert!(ok, "{out}");
    assert!(seen > 0);
    assert_eq!(
        without_leaf, 0,
        "{without_leaf} of {seen} answers lacked exactly one leaf and one CSR"
    );
    let records = bind.dig(&owner, "TLSA").expect("dig");
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
    assert_eq!(
        tlsa_record(&records, "3 255 0"),
        csr_record,
        "the CSR stays"
    );
    let (ok, out) = fetch(&p("deploy/key.pem"), &p("fetched"));
    assert!(ok && out.contains("wrote"), "{out}");
}
