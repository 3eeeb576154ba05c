//! Rate-limit safety of the agent (DESIGN.md story 1), through the real
//! binary: a restart loop or an operator hammering `renew --force` can never
//! spend a CA's limits, and a CA's 429 + Retry-After is obeyed across
//! processes, `--force` included.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use certkeeper_harness::{Bind, CaOptions, CertkeeperCa, TestCa, free_port};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certkeeper"))
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// certkeeper.toml: one certificate `web` for `name` from issuer `ca`
    /// with the given `limits` line.
    fn config(&self, directory: &str, root: &Path, http01_port: u16, name: &str, limits: &str) {
        let text = format!(
            r#"data = "{data}"
[agent]
http01_listen = "127.0.0.1:{http01_port}"

[[issuer]]
name = "ca"
directory = "{directory}"
root = "{root}"
{limits}

[[certificate]]
name = "web"
names = ["{name}"]
issuer = "ca"
"#,
            data = self.path("data").display(),
            root = root.display(),
        );
        std::fs::write(self.path("certkeeper.toml"), text).expect("write config");
    }

    fn run(&self, args: &[&str]) -> (bool, String) {
        let out: Output = Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(self.path("certkeeper.toml"))
            .output()
            .expect("run certkeeper");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.run(args);
        assert!(ok, "certkeeper {args:?} failed:\n{text}");
        text
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.ok(args);
        let start = text.find(['[', '{']).expect("JSON");
        serde_json::from_str(&text[start..]).expect("JSON")
    }
}

/// Five certificates for one set in a week (the Let's Encrypt preset): the
/// sixth forced renewal is refused locally, with the limit, the count, the
/// window and the time it becomes possible; the CA never sees it.
#[test]
fn a_sixth_certificate_for_a_set_is_refused_locally() {
    let bind = Bind::start().expect("BIND");
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
        "budget.example.test",
        r#"limits = "letsencrypt""#,
    );
    let first = s.ok(&["issue", "web"]);
    assert!(first.contains("obtained serial"), "{first}");
    for i in 2..=5 {
        let out = s.ok(&["renew", "web", "--force"]);
        assert!(out.contains("obtained serial"), "renewal {i}: {out}");
    }
    assert_eq!(ca.issued_count().expect("ca list"), 5);

    let (ok, refused) = s.run(&["renew", "web", "--force"]);
    assert!(!ok, "the sixth must be refused:\n{refused}");
    assert!(
        refused.contains(
            "CertificatesPerFQDNSet: 5 certificates for [budget.example.test] in the last 168h at ca; next possible at "
        ),
        "{refused}"
    );
    assert!(refused.contains("nothing sent to the CA"), "{refused}");
    assert_eq!(
        ca.issued_count().expect("ca list"),
        5,
        "the CA saw no sixth order"
    );

    // Obeyed by the next run too (the refusal is the backoff), and shown.
    let (ok, again) = s.run(&["renew", "web", "--force"]);
    assert!(!ok && again.contains("CertificatesPerFQDNSet"), "{again}");
    assert_eq!(ca.issued_count().expect("ca list"), 5);

    let limits = s.json(&["limits", "--json"]);
    let set = limits
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["limit"] == "CertificatesPerFQDNSet")
        .unwrap_or_else(|| panic!("no set row in {limits:#}"));
    assert_eq!(set["used"], 5, "{set}");
    assert_eq!(set["max"], 5, "{set}");
    assert_eq!(set["window"], "168h", "{set}");
    let next_free = set["next_free"].as_str().expect("next free slot");
    assert!(refused.contains(next_free), "{next_free} vs {refused}");
    let table = s.ok(&["limits"]);
    assert!(
        table.contains("5/5") && table.contains(next_free),
        "{table}"
    );
    let status = s.json(&["status", "--json"]);
    assert!(
        status["certificates"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("CertificatesPerFQDNSet")),
        "{status:#}"
    );
}

/// An ACME-shaped HTTPS server whose newOrder always answers 429 with
/// `Retry-After: 3600` — the fault a real CA cannot produce on demand
/// (DESIGN.md allows this mock; it speaks real HTTPS on a real port). It
/// counts every request it receives.
struct RateLimitedCa {
    port: u16,
    requests: Arc<AtomicUsize>,
    orders: Arc<AtomicUsize>,
    _tls: TestCa,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl RateLimitedCa {
    fn start() -> RateLimitedCa {
        use axum::http::{HeaderMap, Method, StatusCode, Uri};
        use axum::response::IntoResponse;
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};

        let dir = tempfile::tempdir().expect("tempdir");
        let tls = TestCa::new(dir.path()).expect("test CA");
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(tls.cert_pem_path())
                .expect("cert pem")
                .map(|c| c.expect("cert"))
                .collect();
        let key = PrivateKeyDer::from_pem_file(tls.key_pem_path()).expect("key pem");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let base = format!("https://127.0.0.1:{port}");
        let requests = Arc::new(AtomicUsize::new(0));
        let orders = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (r, o) = (requests.clone(), orders.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let handler = move |method: Method, uri: Uri| {
                    let (r, o, base) = (r.clone(), o.clone(), base.clone());
                    async move {
                        r.fetch_add(1, Ordering::SeqCst);
                        let mut h = HeaderMap::new();
                        h.insert("replay-nonce", "bm9uY2U".parse().expect("nonce"));
                        match (method.as_str(), uri.path()) {
                            ("GET", "/dir") => {
                                let dir = serde_json::json!({
                                    "newNonce": format!("{base}/nonce"),
                                    "newAccount": format!("{base}/acct"),
                                    "newOrder": format!("{base}/order"),
                                });
                                (StatusCode::OK, h, dir.to_string()).into_response()
                            }
                            ("HEAD" | "GET", "/nonce") => (StatusCode::OK, h).into_response(),
                            ("POST", "/acct") => {
                                h.insert(
                                    "location",
                                    format!("{base}/acct/1").parse().expect("location"),
                                );
                                h.insert("content-type", "application/json".parse().expect("ct"));
                                (StatusCode::CREATED, h, r#"{"status":"valid"}"#).into_response()
                            }
                            ("POST", "/order") => {
                                o.fetch_add(1, Ordering::SeqCst);
                                h.insert("retry-after", "3600".parse().expect("retry-after"));
                                h.insert(
                                    "content-type",
                                    "application/problem+json".parse().expect("ct"),
                                );
                                let body = r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new orders recently","status":429}"#;
                                (StatusCode::TOO_MANY_REQUESTS, h, body).into_response()
                            }
                            _ => (StatusCode::NOT_FOUND, h).into_response(),
                        }
                    }
                };
                let app = axum::Router::new().fallback(handler);
                let server = axum_server::from_tcp_rustls(
                    listener,
                    axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config)),
                )
                .expect("server")
                .serve(app.into_make_service());
                tokio::select! {
                    r = server => r.expect("serve"),
                    _ = rx => {}
                }
            });
        });
        RateLimitedCa {
            port,
            requests,
            orders,
            _tls: tls,
            _dir: dir,
            _shutdown: tx,
        }
    }

    fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    fn root(&self) -> &Path {
        self._tls.ca_pem_path()
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// The CA answers newOrder with 429 and Retry-After: the agent records it,
/// and later runs (new processes, `--force` too) send the CA nothing.
#[test]
fn a_retry_after_is_persisted_and_obeyed_by_later_runs_and_force() {
    let ca = RateLimitedCa::start();
    let s = Setup::new();
    s.config(
        &ca.directory_url(),
        ca.root(),
        free_port(),
        "limited.example.test",
        r#"limits = "none""#,
    );
    let (ok, first) = s.run(&["issue", "web"]);
    assert!(!ok, "{first}");
    assert!(first.contains("rateLimited"), "{first}");
    assert!(
        first.contains("certkeeper sends nothing for [limited.example.test] to ca before"),
        "{first}"
    );
    assert_eq!(ca.orders.load(Ordering::SeqCst), 1);
    let seen = ca.requests();

    // A restart (the cron job, a pod start): the recorded deadline is the
    // backoff, so the plan is to wait for it.
    let (ok, again) = s.run(&["issue", "web"]);
    assert!(ok && again.contains("nothing due"), "{again}");
    assert_eq!(ca.requests(), seen, "a restart contacted the CA:\n{again}");

    // The operator insists: the CA said no, so still nothing is sent.
    let (ok, forced) = s.run(&["renew", "web", "--force"]);
    assert!(!ok, "{forced}");
    assert!(
        forced.contains("asked not to be contacted for [limited.example.test] before")
            && forced.contains("Retry-After"),
        "{forced}"
    );
    assert_eq!(ca.requests(), seen, "--force contacted the CA:\n{forced}");

    let status = s.json(&["status", "--json"]);
    let last = status["certificates"][0]["last_error"]
        .as_str()
        .expect("last error");
    assert!(last.contains("Retry-After"), "{last}");
    let limits = s.json(&["limits", "--json"]);
    let row = limits
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["limit"] == "Retry-After")
        .unwrap_or_else(|| panic!("no Retry-After row in {limits:#}"));
    // About an hour from now.
    let until = time::OffsetDateTime::parse(
        row["next_free"].as_str().expect("until"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    let left = until - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::minutes(55) && left <= time::Duration::minutes(61),
        "{left}"
    );
    assert_eq!(ca.requests(), seen, "`limits` reads the store only");
}
