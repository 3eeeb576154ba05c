//! The CA's transparency log against real clients: certificates obtained by
//! certbot and lego are in the log and prove their inclusion against the
//! signed checkpoint with only the public key (`certkeeper tlog verify` over
//! HTTPS); a tile modified on disk is caught with its position; kill -9
//! during heavy issuance loses no certificate a client received and forks
//! nothing a checkpoint published.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certkeeper_harness::{Bind, CaOptions, Certbot, CertkeeperCa, Lego, LegoChallenge};
use certkeeper_tlog::client::{DirFetch, audit};
use certkeeper_tlog::leaf_hash;
use certkeeper_tlog::note::{Checkpoint, NoteVerifier};
use certkeeper_tlog::proof::{consistency_proof, verify_consistency, verify_inclusion};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certkeeper"))
}

fn start() -> (Bind, CertkeeperCa) {
    let bind = Bind::start().expect("start BIND");
    let ca = CertkeeperCa::start(
        bin(),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            ..Default::default()
        },
    )
    .expect("start certkeeper ca serve");
    (bind, ca)
}

fn tlog_verify(ca: &CertkeeperCa, extra: &[&str]) -> Output {
    Command::new(bin())
        .args([
            "tlog",
            "verify",
            "--log",
            &ca.tlog_url(),
            "--checkpoint-key",
            &ca.tlog_public_key(),
            "--root",
        ])
        .arg(ca.root_pem_path())
        .args(extra)
        .output()
        .expect("run certkeeper tlog verify")
}

fn leaf_der(pem_path: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(pem_path)
        .expect("PEM")
        .next()
        .expect("a certificate")
        .expect("PEM certificate")
        .to_vec()
}

fn http(ca: &CertkeeperCa) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(&std::fs::read(ca.root_pem_path()).expect("root"))
        .expect("root PEM");
    reqwest::Client::builder()
        .tls_certs_only([root])
        .no_proxy()
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn certbot_and_lego_certificates_are_logged_and_verify_with_only_the_public_key() {
    let (_bind, ca) = start();
    // The clients own their temp dirs: keep them alive to the end.
    let (_certbot, certbot_cert, _lego, lego_cert) = tokio::task::block_in_place(|| {
        let certbot = Certbot::new(&ca.directory_url(), &ca.root_pem_path()).expect("certbot");
        let c = certbot
            .certonly_standalone(&["certbot.example.test"], ca.http01_port(), &[])
            .expect("certbot certonly");
        let lego = Lego::new(&ca.directory_url(), &ca.root_pem_path()).expect("lego");
        let l = lego
            .run(
                &["lego.example.test"],
                &LegoChallenge::Http01 {
                    port: ca.http01_port(),
                },
            )
            .expect("lego run");
        (certbot, c.cert, lego, l.cert)
    });

    // `ca list --json` names each certificate's leaf index.
    let list = tokio::task::block_in_place(|| ca.list()).expect("ca list");
    let mut indices: Vec<i64> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|c| {
            c["tlog_index"]
                .as_i64()
                .unwrap_or_else(|| panic!("no tlog_index: {c}"))
        })
        .collect();
    indices.sort();
    assert_eq!(indices, vec![0, 1]);

    // A third party with only the public key: audit the whole log over
    // HTTPS and prove each client's certificate is in it.
    for cert in [&certbot_cert, &lego_cert] {
        let out =
            tokio::task::block_in_place(|| tlog_verify(&ca, &["--cert", cert.to_str().unwrap()]));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "tlog verify: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("2 entries"), "{stdout}");
        assert!(stdout.contains("inclusion proof"), "{stdout}");
    }

    // The CA's entry endpoint: its proof checks out against the checkpoint
    // with nothing but the verifier key.
    let verifier = NoteVerifier::parse(&ca.tlog_public_key()).expect("vkey");
    let client = http(&ca);
    let der = leaf_der(&lego_cert);
    let serial = {
        use x509_parser::prelude::FromDer;
        let (_, c) = x509_parser::certificate::X509Certificate::from_der(&der).expect("cert");
        certkeeper_proto::serial::serial_hex(c.raw_serial())
    };
    let index = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["serial"] == serial.as_str())
        .expect("lego's certificate in ca list")["tlog_index"]
        .as_u64()
        .unwrap();
    let entry: serde_json::Value = client
        .get(format!("{}entry/{index}", ca.tlog_url()))
        .send()
        .await
        .expect("GET entry")
        .json()
        .await
        .expect("JSON");
    let cp = Checkpoint::open(entry["checkpoint"].as_str().unwrap(), &verifier)
        .expect("signed checkpoint");
    let proof: Vec<[u8; 32]> = entry["inclusion_proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            STANDARD
                .decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    verify_inclusion(index, cp.size, &leaf_hash(&der), &proof, &cp.root).expect("inclusion proof");
    assert!(
        verify_inclusion(
            index,
            cp.size,
            &leaf_hash(b"another certificate"),
            &proof,
            &cp.root
        )
        .is_err()
    );

    // `tlog prove --serial` on the CA host gives the same proof.
    let out = Command::new(bin())
        .args(["tlog", "prove", "--serial", &serial, "--data"])
        .arg(ca.data_dir())
        .output()
        .expect("tlog prove");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let proved: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(proved["index"], index);
    assert_eq!(proved["inclusion_proof"], entry["inclusion_proof"]);
    let out = Command::new(bin())
        .args(["tlog", "consistency", "1", "2", "--data"])
        .arg(ca.data_dir())
        .output()
        .expect("tlog consistency");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A tile modified on disk: the audit names the tile and the entry.
    let tile = ca.data_dir().join("tlog/tile/0/000.p/2");
    let mut bytes = std::fs::read(&tile).expect("level-0 tile");
    bytes[32 + 5] ^= 0x40;
    std::fs::write(&tile, &bytes).expect("tamper");
    let out = tokio::task::block_in_place(|| tlog_verify(&ca, &[]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a modified tile must fail the audit");
    assert!(
        stderr.contains("tile/0/000.p/2 hash 1 (entry 1)"),
        "{stderr}"
    );

    // A modified certificate in the entry bundle is caught too.
    bytes[32 + 5] ^= 0x40;
    std::fs::write(&tile, &bytes).expect("restore");
    let bundle = ca.data_dir().join("tlog/tile/entries/000.p/2");
    let mut b = std::fs::read(&bundle).expect("bundle");
    let at = b.len() - 10;
    b[at] ^= 1;
    std::fs::write(&bundle, &b).expect("tamper bundle");
    let out = tokio::task::block_in_place(|| tlog_verify(&ca, &[]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("(entry 1)"), "{stderr}");
}

type Tokens = Arc<Mutex<HashMap<String, String>>>;

async fn serve_http01(port: u16, tokens: Tokens) {
    let app = axum::Router::new()
        .route(
            "/.well-known/acme-challenge/{token}",
            axum::routing::get(
                |State(t): State<Tokens>, UrlPath(token): UrlPath<String>| async move {
                    t.lock()
                        .expect("lock")
                        .get(&token)
                        .cloned()
                        .unwrap_or_default()
                },
            ),
        )
        .with_state(tokens);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind http-01");
    tokio::spawn(async move { axum::serve(listener, app).await });
}

/// One ACME client issuing certificates in a loop until told to stop;
/// every chain it downloads is recorded.
async fn issue_loop(
    directory: String,
    root: std::path::PathBuf,
    tokens: Tokens,
    worker: usize,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    use instant_acme::{Account, ChallengeType, Identifier, NewAccount, NewOrder, RetryPolicy};
    let Ok(builder) = Account::builder_with_root(&root) else {
        return;
    };
    let Ok((account, _)) = builder
        .create(
            &NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory,
            None,
        )
        .await
    else {
        return;
    };
    let retry = RetryPolicy::new()
        .initial_delay(std::time::Duration::from_millis(20))
        .timeout(std::time::Duration::from_secs(10));
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        n += 1;
        let name = format!("w{worker}-{n}.example.test");
        let result: Result<String, String> = async {
            let mut order = account
                .new_order(&NewOrder::new(&[Identifier::Dns(name.clone())]))
                .await
                .map_err(|e| e.to_string())?;
            {
                let mut authzs = order.authorizations();
                while let Some(authz) = authzs.next().await {
                    let mut authz = authz.map_err(|e| e.to_string())?;
                    let mut ch = authz.challenge(ChallengeType::Http01).ok_or("no http-01")?;
                    tokens.lock().expect("lock").insert(
                        ch.token.clone(),
                        ch.key_authorization().as_str().to_string(),
                    );
                    ch.set_ready().await.map_err(|e| e.to_string())?;
                }
            }
            order.poll_ready(&retry).await.map_err(|e| e.to_string())?;
            let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
            let mut params =
                rcgen::CertificateParams::new(vec![name.clone()]).map_err(|e| e.to_string())?;
            params.distinguished_name = rcgen::DistinguishedName::new();
            let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
            order
                .finalize_csr(csr.der())
                .await
                .map_err(|e| e.to_string())?;
            order
                .poll_certificate(&retry)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(chain) => {
                let der = CertificateDer::pem_slice_iter(chain.as_bytes())
                    .next()
                    .expect("a certificate")
                    .expect("PEM")
                    .to_vec();
                received.lock().expect("lock").push(der);
            }
            // The CA was killed under us: this client stops.
            Err(_) => return,
        }
    }
}

/// kill -9 during heavy issuance (8 clients in parallel, checkpoints
/// watched as they are published): after the restart the log holds every
/// certificate a client received, and the tree is consistent with every
/// checkpoint published before the crash.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_issuance_loses_no_received_certificate_and_forks_nothing() {
    let (_bind, mut ca) = start();
    let tokens: Tokens = Arc::default();
    serve_http01(ca.http01_port(), Arc::clone(&tokens)).await;
    let verifier = NoteVerifier::parse(&ca.tlog_public_key()).expect("vkey");
    let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8 {
        workers.push(tokio::spawn(issue_loop(
            ca.directory_url(),
            ca.root_pem_path(),
            Arc::clone(&tokens),
            w,
            Arc::clone(&received),
            Arc::clone(&stop),
        )));
    }
    // Watch checkpoints while the clients work.
    let client = http(&ca);
    let mut seen: Vec<Checkpoint> = Vec::new();
    for _ in 0..2000 {
        if let Ok(r) = client
            .get(format!("{}checkpoint", ca.tlog_url()))
            .send()
            .await
            && let Ok(note) = r.text().await
        {
            let cp = Checkpoint::open(&note, &verifier).expect("every served checkpoint is signed");
            if seen.last() != Some(&cp) {
                seen.push(cp);
            }
        }
        if received.lock().expect("lock").len() >= 40 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(
        received.lock().expect("lock").len() >= 40,
        "clients got too few certificates"
    );
    tokio::task::block_in_place(|| ca.kill());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in workers {
        let _ = w.await;
    }
    let received = received.lock().expect("lock").clone();
    tokio::task::block_in_place(|| ca.restart()).expect("restart the CA");

    let a = audit(&DirFetch(ca.data_dir().join("tlog")), &verifier)
        .await
        .expect("the log verifies after the crash");
    for der in &received {
        a.prove(der)
            .expect("every certificate a client received is in the log");
    }
    assert!(seen.len() >= 2, "saw {} checkpoints", seen.len());
    for old in &seen {
        assert!(old.size <= a.checkpoint.size);
        let proof = consistency_proof(&a.tree, old.size, a.checkpoint.size).expect("proof");
        verify_consistency(
            old.size,
            a.checkpoint.size,
            &old.root,
            &a.checkpoint.root,
            &proof,
        )
        .unwrap_or_else(|e| {
            panic!(
                "not consistent with the checkpoint of size {}: {e}",
                old.size
            )
        });
    }
    // Every certificate the CA recorded is logged and indexed.
    let list = tokio::task::block_in_place(|| ca.list()).expect("ca list");
    for c in list.as_array().expect("array") {
        assert!(c["tlog_index"].as_u64().is_some(), "not indexed: {c}");
    }
    // And the restarted CA serves the same log over HTTPS.
    let out = tokio::task::block_in_place(|| tlog_verify(&ca, &[]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
