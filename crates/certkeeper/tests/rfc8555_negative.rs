//! Black-box RFC 8555 conformance: the requests a CA must refuse.
//!
//! Every test starts the real `certkeeper ca serve` binary on a free loopback
//! port in its own temporary directory, speaks raw ACME to it over HTTPS
//! (trusting only `DATA/ca/root.pem`), and checks the exact problem type
//! (RFC 8555 §6.7) and HTTP status of the refusal, then that nothing was
//! issued (`certkeeper ca list --json`). The test answers http-01 itself on a
//! port it hands the CA as `--http01-port`, so orders for `localhost` become
//! `ready` without any outside peer.
//!
//! One CA per test: tests run on parallel threads and "nothing was issued"
//! must mean exactly that, not "nothing that another test issued".

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use certkeeper_proto::b64;
use certkeeper_proto::jws::{SigningKey, key_authorization, sign};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Result<T> = anyhow::Result<T>;

const JOSE: &str = "application/jose+json";
const URN: &str = "urn:ietf:params:acme:error:";
/// The CA's request body limit (`certkeeper_ca::wfe::MAX_BODY`).
const MAX_BODY: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// The CA under test and the http-01 responder.
// ---------------------------------------------------------------------------

/// Token → key authorization, served at `/.well-known/acme-challenge/TOKEN`.
type Answers = Arc<Mutex<HashMap<String, String>>>;

/// A running `certkeeper ca serve`, killed on drop.
struct Ca {
    child: Child,
    data: PathBuf,
    log: PathBuf,
    base: String,
    http: reqwest::Client,
    dir: Value,
    answers: Answers,
    /// Milliseconds the http-01 responder waits before answering (to keep
    /// a validation in flight).
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    responder: tokio::task::JoinHandle<()>,
    // Last, so the directory outlives the process that writes into it.
    _tmp: tempfile::TempDir,
}

impl Drop for Ca {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.responder.abort();
        if std::thread::panicking() {
            eprintln!("--- certkeeper ca serve log ---\n{}", self.log_tail());
        }
    }
}

impl Ca {
    async fn start() -> Result<Ca> {
        Ca::start_with(None).await
    }

    /// A CA serving with `policy` (TOML) instead of the built-in policy.
    async fn start_with(policy: Option<String>) -> Result<Ca> {
        let tmp = tempfile::tempdir()?;
        let mut extra = Vec::new();
        if let Some(policy) = policy {
            let path = tmp.path().join("policy.toml");
            std::fs::write(&path, policy)?;
            extra = vec!["--policy".to_string(), path.display().to_string()];
        }
        let data = tmp.path().join("data");
        let log = tmp.path().join("ca.log");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let http01_port = listener.local_addr()?.port();
        let answers: Answers = Arc::default();
        let delay_ms: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let responder = tokio::spawn(serve_http01(
            listener,
            Arc::clone(&answers),
            Arc::clone(&delay_ms),
        ));

        // The port from free_port() could be taken before the CA binds it:
        // try a few.
        let mut last_err = None;
        for _ in 0..3 {
            let port = certkeeper_harness::free_port();
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            let child = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
                .args(["ca", "serve", "--data"])
                .arg(&data)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--http01-port", &http01_port.to_string()])
                .args([
                    "--tlsalpn01-port",
                    &certkeeper_harness::free_port().to_string(),
                ])
                .args(&extra)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file)
                .spawn()
                .context("cannot start certkeeper ca serve")?;
            let mut ca = Ca {
                child,
                data: data.clone(),
                log: log.clone(),
                base: format!("https://localhost:{port}"),
                http: reqwest::Client::new(),
                dir: Value::Null,
                answers: Arc::clone(&answers),
                delay_ms: Arc::clone(&delay_ms),
                responder: tokio::spawn(async {}),
                _tmp: tempfile::tempdir()?,
            };
            match ca.wait_ready().await {
                Ok(()) => {
                    ca.responder = responder;
                    ca._tmp = tmp;
                    return Ok(ca);
                }
                Err(e) => last_err = Some(e.context(ca.log_tail())),
            }
        }
        responder.abort();
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("CA did not start")))
    }

    /// Waits until the root exists and the directory answers over HTTPS.
    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let root = self.data.join("ca/root.pem");
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("certkeeper ca serve exited early: {status}");
            }
            if let Some((http, dir)) = probe(&root, &self.base).await {
                self.http = http;
                self.dir = dir;
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "certkeeper ca serve did not answer {}/directory within 30 s",
                    self.base
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A directory URL by name (`newAccount`, `newOrder`, ...).
    fn url(&self, name: &str) -> String {
        self.dir[name]
            .as_str()
            .unwrap_or_else(|| panic!("directory has no {name}: {}", self.dir))
            .to_string()
    }

    /// `certkeeper ca list --data DIR --json`.
    async fn list(&self) -> Result<Vec<Value>> {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_certkeeper"))
            .args(["ca", "list", "--json", "--data"])
            .arg(&self.data)
            .output()
            .await?;
        ensure!(
            out.status.success(),
            "ca list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).context("ca list --json is not JSON")
    }

    /// `certkeeper ca revocations --data DIR --json`: the audit records.
    async fn revocations(&self) -> Result<Vec<Value>> {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_certkeeper"))
            .args(["ca", "revocations", "--json", "--data"])
            .arg(&self.data)
            .output()
            .await?;
        ensure!(
            out.status.success(),
            "ca revocations failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).context("ca revocations --json is not JSON")
    }

    /// The status of one certificate in `ca list`, with the whole row.
    async fn cert(&self, serial: &str) -> Result<Value> {
        self.list()
            .await?
            .into_iter()
            .find(|c| c["serial"] == serial)
            .with_context(|| format!("ca list has no {serial}"))
    }

    async fn assert_nothing_issued(&self) -> Result<()> {
        let certs = self.list().await?;
        ensure!(
            certs.is_empty(),
            "nothing may be issued, but ca list shows {certs:#?}"
        );
        Ok(())
    }

    /// An ACME client with a fresh P-256 account key (not registered yet).
    fn client(&self) -> Result<Acme> {
        Ok(Acme::with_key(self, SigningKey::generate_p256()?))
    }

    /// A registered account.
    async fn account(&self) -> Result<Acme> {
        let mut acme = self.client()?;
        acme.register().await?;
        Ok(acme)
    }
}

/// One readiness probe: a client trusting only the CA's root, and the
/// directory it fetched; `None` while the CA is still starting.
async fn probe(root: &Path, base: &str) -> Option<(reqwest::Client, Value)> {
    let cert = reqwest::Certificate::from_pem(&std::fs::read(root).ok()?).ok()?;
    let http = reqwest::Client::builder()
        .tls_certs_only([cert])
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .ok()?;
    let r = http.get(format!("{base}/directory")).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    let dir = r.json().await.ok()?;
    Some((http, dir))
}

/// A minimal http-01 responder: answers known tokens, 404 otherwise.
async fn serve_http01(
    listener: TcpListener,
    answers: Answers,
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let answers = Arc::clone(&answers);
        let delay = delay_ms.load(std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let text = String::from_utf8_lossy(&buf);
            let path = text
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("");
            let answer = path
                .strip_prefix("/.well-known/acme-challenge/")
                .and_then(|token| answers.lock().ok()?.get(token).cloned());
            let resp = match answer {
                Some(ka) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ka}",
                    ka.len()
                ),
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .into(),
            };
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

// ---------------------------------------------------------------------------
// A raw ACME client.
// ---------------------------------------------------------------------------

/// An HTTP response, fully read.
struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Fails unless this is a success status.
    fn ok(self, what: &str) -> Result<Resp> {
        ensure!(
            (200..300).contains(&self.status),
            "{what}: HTTP {} {}",
            self.status,
            self.text()
        );
        Ok(self)
    }
}

/// Asserts an RFC 7807 problem document of `kind` with `status`
/// (RFC 8555 §6.7: `urn:ietf:params:acme:error:` types).
#[track_caller]
fn assert_problem(r: &Resp, status: u16, kind: &str) {
    let body = r.json();
    assert_eq!(
        (r.status, body["type"].as_str()),
        (status, Some(format!("{URN}{kind}").as_str())),
        "expected HTTP {status} {kind}, got HTTP {} {}",
        r.status,
        r.text()
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json"),
        "RFC 8555 §6.7: problems are application/problem+json"
    );
    assert_eq!(
        body["status"],
        json!(status),
        "the body repeats the status: {body}"
    );
}

/// One account key, with or without an account URL (`kid`).
struct Acme {
    http: reqwest::Client,
    dir: Value,
    key: SigningKey,
    kid: Option<String>,
    nonce: Option<String>,
}

impl Acme {
    fn with_key(ca: &Ca, key: SigningKey) -> Acme {
        Acme {
            http: ca.http.clone(),
            dir: ca.dir.clone(),
            key,
            kid: None,
            nonce: None,
        }
    }

    fn url(&self, name: &str) -> String {
        self.dir[name].as_str().unwrap_or_default().to_string()
    }

    /// The nonce from the last response, or a new one (RFC 8555 §7.2).
    async fn nonce(&mut self) -> Result<String> {
        if let Some(n) = self.nonce.take() {
            return Ok(n);
        }
        self.new_nonce().await
    }

    /// HEAD newNonce.
    async fn new_nonce(&self) -> Result<String> {
        let r = self.http.head(self.url("newNonce")).send().await?;
        ensure!(r.status().is_success(), "HEAD newNonce: {}", r.status());
        r.headers()
            .get("replay-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .context("HEAD newNonce has no Replay-Nonce")
    }

    /// The protected header for `kid` if we have one, else `jwk`.
    fn header(&self, nonce: &str, url: &str) -> Value {
        match &self.kid {
            Some(kid) => json!({ "nonce": nonce, "url": url, "kid": kid }),
            None => json!({ "nonce": nonce, "url": url, "jwk": self.key.jwk().to_json() }),
        }
    }

    /// Signs `payload` (`None`: POST-as-GET) for `url` with a given nonce.
    fn jws(&self, nonce: &str, url: &str, payload: Option<&Value>) -> Result<Vec<u8>> {
        let payload = match payload {
            Some(p) => serde_json::to_vec(p)?,
            None => Vec::new(),
        };
        Ok(serde_json::to_vec(&sign(
            &self.key,
            self.header(nonce, url),
            &payload,
        )?)?)
    }

    /// POSTs raw bytes and keeps the response's Replay-Nonce.
    async fn send(&mut self, url: &str, body: Vec<u8>, content_type: &str) -> Result<Resp> {
        let r = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await?.to_vec();
        let resp = Resp {
            status,
            headers,
            body,
        };
        if let Some(n) = resp.header("replay-nonce") {
            self.nonce = Some(n);
        }
        Ok(resp)
    }

    /// A signed POST with a fresh nonce.
    async fn post(&mut self, url: &str, payload: Option<&Value>) -> Result<Resp> {
        let nonce = self.nonce().await?;
        let body = self.jws(&nonce, url, payload)?;
        self.send(url, body, JOSE).await
    }

    /// newAccount (RFC 8555 §7.3); the account URL becomes our `kid`.
    async fn register(&mut self) -> Result<()> {
        let url = self.url("newAccount");
        let r = self
            .post(&url, Some(&json!({ "termsOfServiceAgreed": true })))
            .await?
            .ok("newAccount")?;
        ensure!(
            r.status == 201,
            "newAccount: expected 201, got {}",
            r.status
        );
        self.kid = Some(r.header("location").context("newAccount has no Location")?);
        Ok(())
    }

    /// newOrder for DNS names (RFC 8555 §7.4), unchecked.
    async fn new_order_raw(&mut self, identifiers: Value) -> Result<Resp> {
        let url = self.url("newOrder");
        self.post(&url, Some(&json!({ "identifiers": identifiers })))
            .await
    }

    /// newOrder for DNS names; returns the order URL and object.
    async fn new_order(&mut self, names: &[&str]) -> Result<(String, Value)> {
        let idents: Vec<Value> = names
            .iter()
            .map(|n| json!({ "type": "dns", "value": n }))
            .collect();
        let r = self.new_order_raw(json!(idents)).await?.ok("newOrder")?;
        let url = r.header("location").context("newOrder has no Location")?;
        Ok((url, r.json()))
    }

    /// POST-as-GET (RFC 8555 §6.3) of a resource as JSON.
    async fn get(&mut self, url: &str) -> Result<Value> {
        Ok(self.post(url, None).await?.ok(url)?.json())
    }

    /// An order for `names` brought to `ready` through http-01 answered by
    /// the test's responder.
    async fn ready_order(&mut self, ca: &Ca, names: &[&str]) -> Result<(String, Value)> {
        let (order_url, order) = self.new_order(names).await?;
        let authzs: Vec<String> = order["authorizations"]
            .as_array()
            .context("order has no authorizations")?
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        for authz_url in authzs {
            let authz = self.get(&authz_url).await?;
            if authz["status"] == "valid" {
                continue;
            }
            let chall = authz["challenges"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "http-01"))
                .with_context(|| format!("no http-01 challenge in {authz}"))?
                .clone();
            let token = chall["token"].as_str().context("challenge has no token")?;
            let ka = key_authorization(token, &self.key.jwk());
            ca.answers
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .insert(token.to_string(), ka);
            let chall_url = chall["url"].as_str().context("challenge has no url")?;
            self.post(chall_url, Some(&json!({})))
                .await?
                .ok("challenge response")?;
        }
        self.wait_order(&order_url, "ready").await
    }

    /// Polls an order until it leaves pending/processing, expecting `want`.
    async fn wait_order(&mut self, url: &str, want: &str) -> Result<(String, Value)> {
        let deadline = Instant::now() + Duration::from_secs(25);
        loop {
            let order = self.get(url).await?;
            match order["status"].as_str() {
                Some(s) if s == want => return Ok((url.to_string(), order)),
                Some("pending" | "processing") if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => bail!("order {url} did not become {want}: {order}"),
            }
        }
    }

    /// finalize (RFC 8555 §7.4) with a DER CSR.
    async fn finalize(&mut self, order: &Value, csr_der: &[u8]) -> Result<Resp> {
        let url = order["finalize"]
            .as_str()
            .context("order has no finalize URL")?
            .to_string();
        self.post(&url, Some(&json!({ "csr": b64::encode(csr_der) })))
            .await
    }
}

// ---------------------------------------------------------------------------
// CSRs and certificates.
// ---------------------------------------------------------------------------

/// A CSR for `names` (CN = the first), signed by `key`.
fn csr(names: &[&str], key: &rcgen::KeyPair, ca_true: bool) -> Result<Vec<u8>> {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, names[0]);
    params.distinguished_name = dn;
    if ca_true {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    Ok(params.serialize_request(key)?.der().to_vec())
}

/// A CSR for `localhost` with a fresh RSA-1024 key, made by openssl
/// (aws-lc, behind rcgen, refuses to load keys under 2048 bits).
fn rsa1024_csr(dir: &Path) -> Result<Vec<u8>> {
    let out = dir.join("rsa1024.csr.der");
    let status = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "rsa:1024",
            "-nodes",
            "-sha256",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost", "-outform", "DER"])
        .arg("-keyout")
        .arg(dir.join("rsa1024.key.pem"))
        .arg("-out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run openssl")?;
    ensure!(status.success(), "openssl req failed: {status}");
    Ok(std::fs::read(&out)?)
}

/// The leaf's DER from a PEM chain.
fn leaf_der(chain_pem: &[u8]) -> Result<Vec<u8>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem)
        .map_err(|e| anyhow::anyhow!("chain PEM: {e}"))?;
    Ok(pem.contents)
}

/// Finalizes a ready order with `csr_der` and downloads the leaf (DER).
async fn issue(acme: &mut Acme, order: &Value, csr_der: &[u8]) -> Result<Vec<u8>> {
    let r = acme.finalize(order, csr_der).await?.ok("finalize")?;
    let url = r.header("location").context("finalize has no Location")?;
    let (_, order) = acme.wait_order(&url, "valid").await?;
    let cert_url = order["certificate"]
        .as_str()
        .context("valid order has no certificate")?
        .to_string();
    let chain = acme
        .post(&cert_url, None)
        .await?
        .ok("certificate download")?;
    leaf_der(&chain.body)
}

// ---------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------

/// RFC 8555 §6.5: a nonce is good once; a replay is `badNonce` (400), and
/// the error carries a fresh `Replay-Nonce` the client can retry with at once
/// (§6.5: "the server MUST include a Replay-Nonce header field in every
/// successful response to a POST request and SHOULD provide it in error
/// responses as well").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_6_5_nonce_replay_is_bad_nonce() -> Result<()> {
    let ca = Ca::start().await?;
    let mut acme = ca.account().await?;
    let kid = acme.kid.clone().context("kid")?;

    let nonce = acme.new_nonce().await?;
    let first = acme.jws(&nonce, &kid, None)?;
    acme.send(&kid, first, JOSE)
        .await?
        .ok("first use of the nonce")?;

    let replay = acme.jws(&nonce, &kid, None)?;
    let r = acme.send(&kid, replay, JOSE).await?;
    assert_problem(&r, 400, "badNonce");
    let fresh = r
        .header("replay-nonce")
        .expect("the badNonce response carries a fresh Replay-Nonce");
    assert_ne!(
        fresh, nonce,
        "the fresh nonce differs from the replayed one"
    );

    let retry = acme.jws(&fresh, &kid, None)?;
    acme.send(&kid, retry, JOSE)
        .await?
        .ok("retry with the nonce from the badNonce response")?;

    // A nonce the server never issued is refused the same way.
    let forged = acme.jws("bm90LWEtbm9uY2U", &kid, None)?;
    assert_problem(&acme.send(&kid, forged, JOSE).await?, 400, "badNonce");
    ca.assert_nothing_issued().await
}

/// RFC 8555 §6.4: the `url` header member must equal the request URL; a
/// mismatch is `unauthorized` (403). The request URL is the CA's
/// configured one, not whatever `Host` the client sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_6_4_wrong_url_is_unauthorized() -> Result<()> {
    let ca = Ca::start().await?;
    let mut acme = ca.account().await?;
    let new_order = ca.url("newOrder");
    let payload = json!({ "identifiers": [{ "type": "dns", "value": "localhost" }] });

    // Signed for newAccount, sent to newOrder.
    let nonce = acme.nonce().await?;
    let body = acme.jws(&nonce, &ca.url("newAccount"), Some(&payload))?;
    assert_problem(
        &acme.send(&new_order, body, JOSE).await?,
        403,
        "unauthorized",
    );

    // Same path, other origin.
    let nonce = acme.nonce().await?;
    let elsewhere = new_order.replacen("https://localhost", "https://127.0.0.2", 1);
    assert_ne!(elsewhere, new_order);
    let body = acme.jws(&nonce, &elsewhere, Some(&payload))?;
    assert_problem(
        &acme.send(&new_order, body, JOSE).await?,
        403,
        "unauthorized",
    );

    // Plain http:// for the same host and path.
    let nonce = acme.nonce().await?;
    let body = acme.jws(
        &nonce,
        &new_order.replacen("https://", "http://", 1),
        Some(&payload),
    )?;
    assert_problem(
        &acme.send(&new_order, body, JOSE).await?,
        403,
        "unauthorized",
    );

    // A forged Host header (HTTP/1.1, where Host is the only authority):
    // the URLs the CA hands out and checks come from its configuration, so
    // a JWS signed for the forged origin is still refused and the directory
    // still names the real one.
    let h1 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(
            ca.data.join("ca/root.pem"),
        )?)?])
        .http1_only()
        .no_proxy()
        .build()?;
    let forged = "evil.example:443";
    let dir: Value = h1
        .get(ca.url("newNonce").replace("/acme/new-nonce", "/directory"))
        .header(reqwest::header::HOST, forged)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(dir["newOrder"], json!(new_order), "directory followed Host");
    let nonce = acme.nonce().await?;
    let spoofed = new_order.replacen(new_order.split('/').nth(2).unwrap_or_default(), forged, 1);
    let body = acme.jws(&nonce, &spoofed, Some(&payload))?;
    let r = h1
        .post(&new_order)
        .header(reqwest::header::HOST, forged)
        .header(reqwest::header::CONTENT_TYPE, JOSE)
        .body(body)
        .send()
        .await?;
    assert_eq!(
        r.status().as_u16(),
        403,
        "a JWS for the forged Host was accepted"
    );
    ca.assert_nothing_issued().await
}

/// RFC 8555 §6.2: "The 'jwk' and 'kid' fields are mutually exclusive.
/// Servers MUST reject requests that contain both." (`malformed`, 400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_6_2_jwk_and_kid_together_are_malformed() -> Result<()> {
    let ca = Ca::start().await?;
    let mut acme = ca.account().await?;
    let kid = acme.kid.clone().context("kid")?;
    for url in [ca.url("newOrder"), ca.url("newAccount"), kid.clone()] {
        let nonce = acme.nonce().await?;
        let header =
            json!({ "nonce": nonce, "url": url, "jwk": acme.key.jwk().to_json(), "kid": kid });
        let payload = if url == kid {
            Vec::new()
        } else {
            b"{\"termsOfServiceAgreed\":true}".to_vec()
        };
        let body = serde_json::to_vec(&sign(&acme.key, header, &payload)?)?;
        assert_problem(&acme.send(&url, body, JOSE).await?, 400, "malformed");
    }
    ca.assert_nothing_issued().await
}

/// Builds a flattened JWS with an arbitrary protected header and signature.
fn forged_jws(header: &Value, payload: &[u8], signature: &[u8]) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&json!({
        "protected": b64::encode(&serde_json::to_vec(header)?),
        "payload": b64::encode(payload),
        "signature": b64::encode(signature),
    }))?)
}

/// RFC 8555 §6.2: `alg` MUST NOT be "none" or a MAC; RFC 8555 §6.7: an
/// algorithm the server does not support is `badSignatureAlgorithm` (400).
/// The CA checks `alg` while parsing, before any signature check, so the
/// signatures here need not be valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_6_2_unsupported_alg_is_bad_signature_algorithm() -> Result<()> {
    let ca = Ca::start().await?;
    let mut acme = ca.client()?;
    let url = ca.url("newAccount");
    let payload = br#"{"termsOfServiceAgreed":true}"#;
    let cases: [(&str, &[u8]); 5] = [
        ("HS256", &[0x42; 32]),
        ("none", b""),
        ("ES512", &[0x42; 132]),
        ("PS256", &[0x42; 256]),
        // A supported algorithm that does not fit the key (P-256) in `jwk`.
        ("ES384", &[0x42; 96]),
    ];
    for (alg, sig) in cases {
        let nonce = acme.nonce().await?;
        let header =
            json!({ "alg": alg, "nonce": nonce, "url": url, "jwk": acme.key.jwk().to_json() });
        let r = acme
            .send(&url, forged_jws(&header, payload, sig)?, JOSE)
            .await?;
        assert_problem(&r, 400, "badSignatureAlgorithm");
    }
    // The same forgeries with a kid (an existing account) are refused alike.
    let mut acme = ca.account().await?;
    let kid = acme.kid.clone().context("kid")?;
    for alg in ["HS256", "none"] {
        let nonce = acme.nonce().await?;
        let header = json!({ "alg": alg, "nonce": nonce, "url": kid, "kid": kid });
        let r = acme
            .send(&kid, forged_jws(&header, b"", &[0x42; 32])?, JOSE)
            .await?;
        assert_problem(&r, 400, "badSignatureAlgorithm");
    }
    ca.assert_nothing_issued().await
}

/// RFC 8555 §7.4: "The CSR MUST indicate the exact same set of requested
/// identifiers as the initial newOrder request"; otherwise `badCSR` (400)
/// and the order is not consumed: it stays `ready`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_7_4_csr_names_must_match_order_is_bad_csr() -> Result<()> {
    let ca = Ca::start().await?;
    let mut acme = ca.account().await?;
    let (order_url, order) = acme.ready_order(&ca, &["localhost"]).await?;
    let key = rcgen::KeyPair::generate()?;
    for names in [
        &["other.localhost"][..],
        &["localhost", "extra.localhost"],
        &["extra.localhost", "localhost"],
    ] {
        let r = acme.finalize(&order, &csr(names, &key, false)?).await?;
        assert_problem(&r, 400, "badCSR");
        assert_eq!(
            acme.get(&order_url).await?["status"],
            "ready",
            "after a bad CSR for {names:?}"
        );
    }
    // Not a CSR at all.
    let r = acme.finalize(&order, b"not a CSR").await?;
    assert_problem(&r, 400, "badCSR");
    assert_eq!(acme.get(&order_url).await?["status"], "ready");
    ca.assert_nothing_issued().await
}

/// RFC 8555 §7.4 leaves the certificate's content to the CA; RFC 5280
/// §4.2.1.9 and the Baseline Requirements §7.1.2.7.8: a subscriber
/// certificate is never a CA. A CSR asking for CA:TRUE is issued, but the
/// leaf says CA:FALSE (or carries no basicConstraints). The one positive
/// test here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_7_4_csr_requesting_ca_true_yields_leaf_with_ca_false() -> Result<()> {
    let ca = Ca::start().await?;
    let mut acme = ca.account().await?;
    let (_, order) = acme.ready_order(&ca, &["localhost"]).await?;
    let key = rcgen::KeyPair::generate()?;
    let csr_der = csr(&["localhost"], &key, true)?;

    // The request really asks for CA:TRUE.
    use x509_parser::prelude::FromDer;
    let (_, parsed_csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&csr_der)?;
    let asks_ca = parsed_csr.requested_extensions().into_iter().flatten().any(
        |e| matches!(e, x509_parser::extensions::ParsedExtension::BasicConstraints(bc) if bc.ca),
    );
    assert!(
        asks_ca,
        "the test CSR must request basicConstraints CA:TRUE"
    );

    let leaf = issue(&mut acme, &order, &csr_der).await?;
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf)?;
    assert!(!cert.is_ca(), "the leaf must not be a CA certificate");
    if let Some(bc) = cert.basic_constraints()? {
        assert!(!bc.value.ca, "basicConstraints must say CA:FALSE");
    }
    let certs = ca.list().await?;
    assert_eq!(certs.len(), 1, "exactly one certificate issued: {certs:#?}");
    assert_eq!(certs[0]["names"], json!(["localhost"]));
    Ok(())
}

/// RFC 8555 §7.4 / §6.7: a CSR whose key the CA refuses is `badPublicKey`
/// (400): RSA under 2048 bits (Baseline Requirements §6.1.5). The order
/// stays `ready`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_7_4_rsa_1024_csr_is_bad_public_key() -> Result<()> {
    let ca = Ca::start().await?;
    let mut acme = ca.account().await?;
    let (order_url, order) = acme.ready_order(&ca, &["localhost"]).await?;
    let tmp = tempfile::tempdir()?;
    let r = acme.finalize(&order, &rsa1024_csr(tmp.path())?).await?;
    assert_problem(&r, 400, "badPublicKey");
    assert_eq!(acme.get(&order_url).await?["status"], "ready");
    ca.assert_nothing_issued().await
}

/// RFC 8555 §7.4: "A request to finalize an order will result in error if
/// the order is not in the 'ready' state ... the server MUST return an error
/// with status code 403 (Forbidden) and type orderNotReady".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_7_4_finalize_before_ready_is_order_not_ready() -> Result<()> {
    let ca = Ca::start().await?;
    let mut acme = ca.account().await?;
    let (order_url, order) = acme.new_order(&["localhost"]).await?;
    assert_eq!(order["status"], "pending");
    let key = rcgen::KeyPair::generate()?;
    let r = acme
        .finalize(&order, &csr(&["localhost"], &key, false)?)
        .await?;
    assert_problem(&r, 403, "orderNotReady");
    assert_eq!(acme.get(&order_url).await?["status"], "pending");
    ca.assert_nothing_issued().await
}

/// RFC 8555 §6.2: POSTs MUST be `application/jose+json`, otherwise
/// `malformed` (400). An oversized body (over the CA's 64 KiB limit) is
/// refused (413 or a problem) without harming the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_6_2_wrong_content_type_is_malformed_and_huge_body_is_refused() -> Result<()> {
    let ca = Ca::start().await?;
    let mut acme = ca.client()?;
    let url = ca.url("newAccount");
    let payload = json!({ "termsOfServiceAgreed": true });
    for content_type in [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        // A prefix of the right type is another type.
        "application/jose+jsonXYZ",
    ] {
        let nonce = acme.nonce().await?;
        let body = acme.jws(&nonce, &url, Some(&payload))?;
        assert_problem(
            &acme.send(&url, body, content_type).await?,
            400,
            "malformed",
        );
    }

    let nonce = acme.nonce().await?;
    let big = json!({ "termsOfServiceAgreed": true, "pad": "x".repeat(MAX_BODY + 1024) });
    let body = acme.jws(&nonce, &url, Some(&big))?;
    assert!(body.len() > MAX_BODY);
    // The CA answers 413 from the Content-Length alone and closes the
    // connection without reading the body, so the client may instead see
    // the connection reset while it is still writing: a refusal too (the
    // checks below show the CA is alive).
    match acme.send(&url, body, JOSE).await {
        Ok(r) => {
            let refused = r.status == 413
                || (r.status == 400
                    && r.json()["type"]
                        .as_str()
                        .is_some_and(|t| t.starts_with(URN)));
            assert!(
                refused,
                "a {} KiB body must be refused, got HTTP {} {}",
                big.to_string().len() / 1024,
                r.status,
                r.text()
            );
        }
        Err(e) => eprintln!("huge body: connection closed while sending ({e:#})"),
    }

    // The server is still there and still works. It answered 413 without
    // reading the body and closed that connection, so the client's pool may
    // hand out the dead connection once: retry, as any client would.
    let mut dir = None;
    for _ in 0..3 {
        if let Ok(r) = ca.http.get(format!("{}/directory", ca.base)).send().await {
            dir = Some(r);
            break;
        }
    }
    assert_eq!(dir.context("directory after 413")?.status().as_u16(), 200);
    acme.nonce = None;
    acme.register().await?;
    ca.assert_nothing_issued().await
}

/// RFC 8555 §7.4 and §7.1.3: a malformed DNS name is `rejectedIdentifier`;
/// RFC 8738 §3: an "ip" identifier holds an address, never a wildcard;
/// RFC 8555 §7.1.3 / §8.4: a wildcard authorization offers dns-01 only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_7_4_bad_identifiers_are_rejected_and_wildcards_get_dns01_only() -> Result<()> {
    let ca = Ca::start().await?;
    let mut acme = ca.account().await?;
    for bad in [
        "a..b",
        "-a.localhost",
        "a_b.localhost",
        "a.*.localhost",
        "localhost.",
    ] {
        let r = acme
            .new_order_raw(json!([{ "type": "dns", "value": bad }]))
            .await?;
        assert_problem(&r, 400, "rejectedIdentifier");
    }

    // RFC 8738 §3: "The value field of the identifier MUST contain the
    // textual form of the address". A wildcard-looking value is no address;
    // RFC 8555 does not pin the type, so either `rejectedIdentifier` or
    // `malformed` is a correct refusal.
    for bad in ["*.0.0.1", "*.127.0.0.1", "*::1"] {
        let r = acme
            .new_order_raw(json!([{ "type": "ip", "value": bad }]))
            .await?;
        let kind = r.json()["type"].as_str().unwrap_or_default().to_string();
        assert!(
            r.status == 400
                && (kind == format!("{URN}rejectedIdentifier")
                    || kind == format!("{URN}malformed")),
            "ip identifier {bad:?} must be rejected, got HTTP {} {}",
            r.status,
            r.text()
        );
    }

    // RFC 8555 §7.1.3: wildcard authorizations carry the base name and
    // `wildcard: true`; §7.1.4 / Let's Encrypt practice: only dns-01 can
    // prove control of a whole namespace.
    let (_, order) = acme.new_order(&["*.localhost"]).await?;
    let authz_url = order["authorizations"][0]
        .as_str()
        .context("authz")?
        .to_string();
    let authz = acme.get(&authz_url).await?;
    assert_eq!(
        authz["identifier"],
        json!({ "type": "dns", "value": "localhost" })
    );
    assert_eq!(authz["wildcard"], json!(true));
    let kinds: Vec<&str> = authz["challenges"]
        .as_array()
        .context("challenges")?
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["dns-01"],
        "a wildcard authorization offers only dns-01"
    );
    ca.assert_nothing_issued().await
}

/// RFC 8555 §6.2 / §7.3: a `kid` that names no account of this server is
/// `accountDoesNotExist` (400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_7_3_unknown_kid_is_account_does_not_exist() -> Result<()> {
    let ca = Ca::start().await?;
    let mut acme = ca.account().await?;
    let real = acme.kid.clone().context("kid")?;
    let prefix = real
        .rsplit_once('/')
        .map(|(p, _)| p)
        .context("kid path")?
        .to_string();
    for kid in [
        format!("{prefix}/does-not-exist"),
        format!("{prefix}/0"),
        "https://example.com/acme/acct/1".to_string(),
    ] {
        acme.kid = Some(kid.clone());
        let r = acme
            .new_order_raw(json!([{ "type": "dns", "value": "localhost" }]))
            .await?;
        assert_problem(&r, 400, "accountDoesNotExist");
    }
    ca.assert_nothing_issued().await
}

// ---------------------------------------------------------------------------
// §7.6 revocation and the key-compromise rule (DESIGN.md story 2).
// ---------------------------------------------------------------------------

/// Serial (lowercase hex, as `ca list` prints it) and SPKI (base64url DER) of a leaf.
fn serial_and_spki(leaf: &[u8]) -> Result<(String, String)> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf)
        .map_err(|e| anyhow::anyhow!("leaf: {e}"))?;
    let serial = certkeeper_proto::serial::serial_hex(cert.raw_serial());
    Ok((serial, b64::encode(cert.public_key().raw)))
}

/// Issues one certificate for `localhost` with `key` (authorizations are
/// reused after the first order, so later orders are ready at once).
async fn issue_with(acme: &mut Acme, ca: &Ca, key: &rcgen::KeyPair) -> Result<Vec<u8>> {
    let (_, order) = acme.ready_order(ca, &["localhost"]).await?;
    issue(acme, &order, &csr(&["localhost"], key, false)?).await
}

/// The built-in policy with `revocation.max_cascade` replaced.
fn policy_with_cascade(cap: u32) -> String {
    let p = certkeeper_ca::policy::DEFAULT_POLICY;
    assert!(p.contains("max_cascade = 1000"), "default policy changed");
    p.replace("max_cascade = 1000", &format!("max_cascade = {cap}"))
}

/// RFC 8555 §7.6, Let's Encrypt's rule since Mozilla Root Store Policy 2.8:
/// keyCompromise from the subscriber's *account* key is honoured (revoked
/// with reason 1, on the record with the certificate's SPKI and
/// `subscriber-account`), but proves nothing: the key is not blocked, the
/// other certificate with the same key stays valid, and a new certificate
/// with that key is issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_7_6_subscriber_key_compromise_revokes_but_does_not_block() -> Result<()> {
    let ca = Ca::start().await?;
    let mut acme = ca.account().await?;
    let key = rcgen::KeyPair::generate()?;
    let first = issue_with(&mut acme, &ca, &key).await?;
    let second = issue_with(&mut acme, &ca, &key).await?;
    let (serial, spki) = serial_and_spki(&first)?;
    let (second_serial, _) = serial_and_spki(&second)?;

    let revocation = json!({ "certificate": b64::encode(&first), "reason": 1 });
    let r = acme.post(&ca.url("revokeCert"), Some(&revocation)).await?;
    assert_eq!(r.status, 200, "account-key keyCompromise: {}", r.text());
    let cert = ca.cert(&serial).await?;
    assert_eq!(
        (&cert["status"], &cert["revocation_reason"]),
        (&json!("revoked"), &json!(1)),
        "{cert:#?}"
    );
    assert_eq!(cert["key_proven_at_revocation"], json!(false));
    assert_eq!(
        ca.cert(&second_serial).await?["status"],
        "valid",
        "nothing else is revoked on the subscriber's word"
    );

    let records = ca.revocations().await?;
    assert_eq!(records.len(), 1, "{records:#?}");
    let rec = &records[0];
    assert_eq!(rec["serial"], json!(serial));
    assert_eq!(rec["method"], "subscriber-account");
    assert_eq!(rec["reason"], json!(1));
    assert_eq!(rec["requested_reason"], json!(1));
    assert_eq!(rec["key_blocked"], json!(false));
    assert_eq!(
        b64::decode(rec["spki_der"].as_str().unwrap_or_default()).ok(),
        b64::decode(&spki).ok(),
        "the record keeps the certificate's SPKI"
    );

    // Not blocked: the same key gets a new certificate.
    let third = issue_with(&mut acme, &ca, &key).await?;
    assert_eq!(serial_and_spki(&third)?.1, spki);
    // A second request for the same certificate is alreadyRevoked.
    let r = acme.post(&ca.url("revokeCert"), Some(&revocation)).await?;
    assert_problem(&r, 400, "alreadyRevoked");
    Ok(())
}

/// RFC 8555 §7.6 with the certificate's own key (`jwk`): compromise is
/// demonstrated, so the reason is keyCompromise whatever was asked (Boulder
/// `RevokeCertByKey`), the key is blocked (`badPublicKey` at finalize), and
/// the other unexpired certificates with the key are revoked oldest first up
/// to `revocation.max_cascade` (here 2 of 3): one already revoked as
/// superseded is raised to keyCompromise and keeps its revocation date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_7_6_certificate_key_blocks_and_cascades_up_to_the_cap() -> Result<()> {
    let ca = Ca::start_with(Some(policy_with_cascade(2))).await?;
    let mut acme = ca.account().await?;
    let key = rcgen::KeyPair::generate()?;
    let mut serials = Vec::new();
    let mut leaves = Vec::new();
    for _ in 0..4 {
        let leaf = issue_with(&mut acme, &ca, &key).await?;
        serials.push(serial_and_spki(&leaf)?.0);
        leaves.push(leaf);
        // "Oldest first" is by issuance time, which the CA keeps in seconds.
        tokio::time::sleep(Duration::from_millis(1050)).await;
    }
    let revoke_url = ca.url("revokeCert");
    // The oldest is revoked first as superseded, by the subscriber.
    let r = acme
        .post(
            &revoke_url,
            Some(&json!({ "certificate": b64::encode(&leaves[0]), "reason": 4 })),
        )
        .await?;
    assert_eq!(r.status, 200, "superseded: {}", r.text());
    let superseded_at = ca.cert(&serials[0]).await?["revoked_at"].clone();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // The newest, revoked with its own key; the reason asked for is
    // unspecified, the reason recorded is keyCompromise.
    let mut holder = Acme::with_key(&ca, SigningKey::from_pkcs8_der(&key.serialize_der())?);
    let revocation = json!({ "certificate": b64::encode(&leaves[3]), "reason": 0 });
    let r = holder.post(&revoke_url, Some(&revocation)).await?;
    assert_eq!(r.status, 200, "certificate-key revocation: {}", r.text());

    let list = ca.list().await?;
    let row = |s: &str| {
        list.iter()
            .find(|c| c["serial"] == s)
            .cloned()
            .unwrap_or_default()
    };
    for s in [&serials[3], &serials[0], &serials[1]] {
        let c = row(s);
        assert_eq!(
            (&c["status"], &c["revocation_reason"]),
            (&json!("revoked"), &json!(1)),
            "{s}: {c:#?}"
        );
        assert_eq!(c["key_proven_at_revocation"], json!(true), "{c:#?}");
    }
    assert_eq!(
        row(&serials[0])["revoked_at"],
        superseded_at,
        "raising the reason keeps the original revocation date"
    );
    assert_eq!(
        row(&serials[2])["status"],
        "valid",
        "the cap (2) stops the cascade before the third certificate"
    );

    let records = ca.revocations().await?;
    let methods: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["serial"].as_str().unwrap_or_default().to_string(),
                r["method"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        methods,
        vec![
            (serials[0].clone(), "subscriber-account".into()),
            (serials[3].clone(), "certificate-key".into()),
            (serials[0].clone(), "cascade".into()),
            (serials[1].clone(), "cascade".into()),
        ],
        "{records:#?}"
    );
    assert_eq!(records[1]["requested_reason"], json!(0));
    assert_eq!(records[1]["key_blocked"], json!(true));
    assert_eq!(records[2]["source_serial"], json!(serials[3]));
    assert!(
        records
            .iter()
            .all(|r| r["spki_der"] == records[0]["spki_der"]),
        "every record carries the same SPKI"
    );

    // Blocked: a ready order cannot be finalized with the key.
    let (order_url, order) = acme.ready_order(&ca, &["localhost"]).await?;
    let r = acme
        .finalize(&order, &csr(&["localhost"], &key, false)?)
        .await?;
    assert_problem(&r, 400, "badPublicKey");
    assert_eq!(acme.get(&order_url).await?["status"], "ready");
    // Asking again: alreadyRevoked, and nothing new is written.
    let r = holder.post(&revoke_url, Some(&revocation)).await?;
    assert_problem(&r, 400, "alreadyRevoked");
    assert_eq!(ca.revocations().await?.len(), 4);
    assert_eq!(ca.list().await?.len(), 4, "nothing new was issued");
    Ok(())
}

/// RFC 8555 §7.6: "the account ... holds authorizations for all of the
/// identifiers in the certificate" may revoke it. Without them another
/// account is `unauthorized`; with them the revocation succeeds, the reason
/// is forced to cessationOfOperation (5) as Boulder does, and nothing is
/// blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_7_6_authorized_account_revokes_as_cessation_of_operation() -> Result<()> {
    let ca = Ca::start().await?;
    let mut owner = ca.account().await?;
    let key = rcgen::KeyPair::generate()?;
    let leaf = issue_with(&mut owner, &ca, &key).await?;
    let (serial, _) = serial_and_spki(&leaf)?;
    let revocation = json!({ "certificate": b64::encode(&leaf), "reason": 1 });

    let mut other = ca.account().await?;
    let r = other.post(&ca.url("revokeCert"), Some(&revocation)).await?;
    assert_problem(&r, 403, "unauthorized");
    assert_eq!(ca.cert(&serial).await?["status"], "valid");

    // The other account validates localhost itself, then may revoke.
    other.ready_order(&ca, &["localhost"]).await?;
    let r = other.post(&ca.url("revokeCert"), Some(&revocation)).await?;
    assert_eq!(r.status, 200, "authorized account: {}", r.text());
    let cert = ca.cert(&serial).await?;
    assert_eq!(cert["status"], "revoked");
    assert_eq!(cert["revocation_reason"], json!(5), "{cert:#?}");
    let records = ca.revocations().await?;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["method"], "authorized-account");
    assert_eq!(records[0]["requested_reason"], json!(1));
    assert_eq!(records[0]["key_blocked"], json!(false));
    // Not blocked: the owner gets a new certificate with the same key.
    issue_with(&mut owner, &ca, &key).await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Hardening (issue 9, part 3): bounds on validation work, renewal
// exemptions, and a record of every signature.
// ---------------------------------------------------------------------------

/// The built-in policy with exact substitutions (each must apply).
fn policy_edited(edits: &[(&str, &str)]) -> String {
    let mut p = certkeeper_ca::policy::DEFAULT_POLICY.to_string();
    for (from, to) in edits {
        assert!(p.contains(from), "default policy has no {from:?}");
        p = p.replace(from, to);
    }
    p
}

/// The http-01 challenge of an authorization, with the token answered (or not).
async fn http01_challenge(
    acme: &mut Acme,
    ca: &Ca,
    authz_url: &str,
    answer: bool,
) -> Result<String> {
    let authz = acme.get(authz_url).await?;
    let chall = authz["challenges"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "http-01"))
        .with_context(|| format!("no http-01 challenge in {authz}"))?
        .clone();
    let token = chall["token"].as_str().context("token")?;
    if answer {
        let ka = key_authorization(token, &acme.key.jwk());
        ca.answers
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(token.to_string(), ka);
    }
    Ok(chall["url"].as_str().context("challenge url")?.to_string())
}

fn authz_urls(order: &Value) -> Vec<String> {
    order["authorizations"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `capacity.max_concurrent_validations` is global: with 1 slot and one
/// validation held open by a slow responder, the next challenge POST is
/// `rateLimited` (429) with `Retry-After` and leaves its authorization
/// pending; once the slot frees, the same POST validates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validations_beyond_the_global_cap_are_told_to_retry() -> Result<()> {
    let ca = Ca::start_with(Some(policy_edited(&[(
        "max_concurrent_validations = 64",
        "max_concurrent_validations = 1",
    )])))
    .await?;
    let mut acme = ca.account().await?;
    let r = acme
        .new_order_raw(json!([{ "type": "dns", "value": "localhost" }, { "type": "ip", "value": "127.0.0.1" }]))
        .await?
        .ok("newOrder")?;
    let order_url = r.header("location").context("Location")?;
    let authzs = authz_urls(&r.json());
    assert_eq!(authzs.len(), 2);
    let first = http01_challenge(&mut acme, &ca, &authzs[0], true).await?;
    let second = http01_challenge(&mut acme, &ca, &authzs[1], true).await?;
    // The responder holds each answer 5 s: longer than the CA's 3 s inline wait.
    ca.delay_ms.store(5000, std::sync::atomic::Ordering::SeqCst);
    acme.post(&first, Some(&json!({})))
        .await?
        .ok("first challenge")?;
    let r = acme.post(&second, Some(&json!({}))).await?;
    assert_problem(&r, 429, "rateLimited");
    assert!(r.header("retry-after").is_some(), "429 without Retry-After");
    assert!(
        r.text().contains("maximum of 1 validations"),
        "{}",
        r.text()
    );
    assert_eq!(acme.get(&authzs[1]).await?["status"], "pending");

    ca.delay_ms.store(0, std::sync::atomic::Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    while acme.get(&authzs[0]).await?["status"] != "valid" {
        ensure!(Instant::now() < deadline, "first validation never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    acme.post(&second, Some(&json!({})))
        .await?
        .ok("second challenge, slot free")?;
    acme.wait_order(&order_url, "ready").await?;
    Ok(())
}

/// `capacity.max_pending_authzs_per_account`: an account holding 2 pending
/// authorizations (the cap) cannot order a third (429); deactivating one
/// (RFC 8555 §7.5.2) makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_authorizations_per_account_are_capped() -> Result<()> {
    let ca = Ca::start_with(Some(policy_edited(&[(
        "max_pending_authzs_per_account = 10000",
        "max_pending_authzs_per_account = 2",
    )])))
    .await?;
    let mut acme = ca.account().await?;
    let r = acme
        .new_order_raw(json!([{ "type": "dns", "value": "localhost" }, { "type": "ip", "value": "127.0.0.1" }]))
        .await?
        .ok("newOrder")?;
    let authzs = authz_urls(&r.json());
    let r = acme
        .new_order_raw(json!([{ "type": "dns", "value": "localhost" }]))
        .await?;
    assert_problem(&r, 429, "rateLimited");
    assert!(
        r.text()
            .contains("too many currently pending authorizations (2 of 2)"),
        "{}",
        r.text()
    );
    acme.post(&authzs[0], Some(&json!({ "status": "deactivated" })))
        .await?
        .ok("deactivate")?;
    acme.new_order_raw(json!([{ "type": "dns", "value": "localhost" }]))
        .await?
        .ok("newOrder after deactivation")?;
    Ok(())
}

/// FailedAuthorizationsPerDomainPerAccount is checked when a challenge is
/// triggered, not only at newOrder: two authorizations obtained before any
/// failure; after the first fails (limit 1 per hour) the second's challenge
/// POST is `rateLimited` and no validation runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_validation_limit_is_checked_at_the_challenge() -> Result<()> {
    let ca = Ca::start_with(Some(policy_edited(&[(
        "[limits.FailedAuthorizationsPerDomainPerAccount]\ncount = 30",
        "[limits.FailedAuthorizationsPerDomainPerAccount]\ncount = 1",
    )])))
    .await?;
    let mut acme = ca.account().await?;
    let (_, a) = acme.new_order(&["localhost"]).await?;
    let (_, b) = acme.new_order(&["localhost"]).await?;
    let (a, b) = (authz_urls(&a), authz_urls(&b));
    assert_ne!(a, b, "two pending authorizations");
    // Unanswered: the responder says 404, the validation fails.
    let chall = http01_challenge(&mut acme, &ca, &a[0], false).await?;
    acme.post(&chall, Some(&json!({})))
        .await?
        .ok("challenge a")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while acme.get(&a[0]).await?["status"] != "invalid" {
        ensure!(Instant::now() < deadline, "validation a never failed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let chall = http01_challenge(&mut acme, &ca, &b[0], true).await?;
    let r = acme.post(&chall, Some(&json!({}))).await?;
    assert_problem(&r, 429, "rateLimited");
    assert!(
        r.text().contains("too many failed authorizations (1)"),
        "{}",
        r.text()
    );
    assert_eq!(acme.get(&b[0]).await?["status"], "pending");
    Ok(())
}

/// The 120-day renewal exemption from NewOrdersPerAccount belongs to the
/// account that was issued the set: another account naming the same set is
/// held to its limit (2 here); the owner's renewals stay exempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_exemption_is_for_the_account_that_was_issued_the_set() -> Result<()> {
    let ca = Ca::start_with(Some(policy_edited(&[(
        "[limits.NewOrdersPerAccount]\ncount = 20000",
        "[limits.NewOrdersPerAccount]\ncount = 2",
    )])))
    .await?;
    let mut owner = ca.account().await?;
    let key = rcgen::KeyPair::generate()?;
    issue_with(&mut owner, &ca, &key).await?;

    let mut other = ca.account().await?;
    for _ in 0..2 {
        other.new_order(&["localhost"]).await?;
    }
    let r = other
        .new_order_raw(json!([{ "type": "dns", "value": "localhost" }]))
        .await?;
    assert_problem(&r, 429, "rateLimited");
    assert!(r.text().contains("too many new orders (2)"), "{}", r.text());
    // The owner spent one order on the first issuance; its renewals are free.
    for _ in 0..3 {
        owner.new_order(&["localhost"]).await?;
    }
    Ok(())
}

/// Boulder's order of issuance: the serial is reserved and the intent
/// recorded before signing, so a certificate signed and then thrown away
/// (here CertificatesPerFQDNSet = 1 denies the second finalize after
/// signing) is still on the record with its DER, and is never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signature_is_on_the_record() -> Result<()> {
    let ca = Ca::start_with(Some(policy_edited(&[(
        "[limits.CertificatesPerFQDNSet]\ncount = 48",
        "[limits.CertificatesPerFQDNSet]\ncount = 1",
    )])))
    .await?;
    let mut acme = ca.account().await?;
    let key = rcgen::KeyPair::generate()?;
    // Both orders pass newOrder's check: nothing is spent until finalize.
    let (_, first) = acme.ready_order(&ca, &["localhost"]).await?;
    let (_, second) = acme.ready_order(&ca, &["localhost"]).await?;
    let leaf = issue(&mut acme, &first, &csr(&["localhost"], &key, false)?).await?;
    let r = acme
        .finalize(&second, &csr(&["localhost"], &key, false)?)
        .await?;
    assert_problem(&r, 429, "rateLimited");

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(["ca", "issuances", "--json", "--data"])
        .arg(&ca.data)
        .output()
        .await?;
    ensure!(out.status.success(), "ca issuances failed");
    let mut rows: Vec<Value> = serde_json::from_slice(&out.stdout)?;
    // Both were reserved within one second: order by state, issued first.
    rows.sort_by_key(|r| r["state"] != "issued");
    let states: Vec<&str> = rows.iter().filter_map(|r| r["state"].as_str()).collect();
    assert_eq!(states, ["issued", "discarded"], "{rows:#?}");
    assert_eq!(rows[0]["serial"], json!(serial_and_spki(&leaf)?.0));
    let der = b64::decode(rows[1]["cert_der"].as_str().unwrap_or_default())?;
    let (serial, spki) = serial_and_spki(&der)?;
    assert_eq!(serial, rows[1]["serial"].as_str().unwrap_or_default());
    assert_eq!(spki, serial_and_spki(&leaf)?.1, "same subscriber key");
    assert!(
        rows[1]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("too many certificates (1)"),
        "{rows:#?}"
    );
    assert_eq!(ca.list().await?.len(), 1, "the discarded one is not served");
    Ok(())
}

/// RFC 8555 §7.3 contacts, validated as Boulder does: a CR/LF header
/// injection, header fields, a second address, a 30,000-character local
/// part, duplicates and more than 10 contacts are `invalidContact`; the
/// refused account is not created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_7_3_hostile_contacts_are_invalid_contact() -> Result<()> {
    let ca = Ca::start().await?;
    let url = ca.url("newAccount");
    let many: Vec<String> = (0..11)
        .map(|i| format!("mailto:a{i}@example.com"))
        .collect();
    for contact in [
        json!(["mailto:a\r\nBcc: x@y@b.example"]),
        json!(["mailto:a@b.example?subject=hi"]),
        json!([format!("mailto:{}@example.com", "a".repeat(30_000))]),
        json!(["mailto:a@b.example", "mailto:a@b.example"]),
        json!(many),
    ] {
        let mut acme = ca.client()?;
        let r = acme
            .post(
                &url,
                Some(&json!({ "termsOfServiceAgreed": true, "contact": contact })),
            )
            .await?;
        assert_problem(&r, 400, "invalidContact");
        assert!(
            r.text().len() < 2000,
            "the problem echoes the input: {} bytes",
            r.text().len()
        );
    }
    let mut acme = ca.client()?;
    acme.post(
        &url,
        Some(&json!({ "termsOfServiceAgreed": true, "contact": ["mailto:ops@svc.example.internal"] })),
    )
    .await?
    .ok("a plain contact")?;
    Ok(())
}

/// RFC 8738 IP identifiers: unspecified, broadcast and multicast addresses
/// are `rejectedIdentifier`; an IPv4-mapped IPv6 address is the IPv4 address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8738_unusable_ips_are_rejected_and_mapped_ones_normalised() -> Result<()> {
    let ca = Ca::start().await?;
    let mut acme = ca.account().await?;
    for ip in ["0.0.0.0", "::", "255.255.255.255", "224.0.0.1", "ff02::1"] {
        let r = acme
            .new_order_raw(json!([{ "type": "ip", "value": ip }]))
            .await?;
        assert_problem(&r, 400, "rejectedIdentifier");
    }
    let r = acme
        .new_order_raw(json!([{ "type": "ip", "value": "::ffff:127.0.0.1" }]))
        .await?
        .ok("mapped address")?;
    assert_eq!(
        r.json()["identifiers"],
        json!([{ "type": "ip", "value": "127.0.0.1" }])
    );
    ca.assert_nothing_issued().await
}

/// RFC 8555 §7.3.6: after deactivation "the server MUST NOT accept further
/// requests authorized by that account's key": newAccount with it (even
/// onlyReturnExisting) is `unauthorized`, not a 200 with the dead account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_7_3_6_deactivated_key_cannot_register_again() -> Result<()> {
    let ca = Ca::start().await?;
    let mut acme = ca.account().await?;
    let kid = acme.kid.clone().context("kid")?;
    acme.post(&kid, Some(&json!({ "status": "deactivated" })))
        .await?
        .ok("deactivate")?;
    acme.kid = None;
    let url = ca.url("newAccount");
    for payload in [
        json!({ "termsOfServiceAgreed": true }),
        json!({ "onlyReturnExisting": true }),
    ] {
        let r = acme.post(&url, Some(&payload)).await?;
        assert_problem(&r, 403, "unauthorized");
    }
    Ok(())
}

/// ECDSA DER `SEQUENCE { r INTEGER, s INTEGER }` to JWS's fixed `r || s`
/// (RFC 7518 §3.4), 32 bytes each for P-256.
fn der_to_fixed_p256(der: &[u8]) -> Result<Vec<u8>> {
    let (_, obj) = x509_parser::der_parser::parse_der(der)
        .map_err(|e| anyhow::anyhow!("signature DER: {e}"))?;
    let seq = obj.as_sequence().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::with_capacity(64);
    for int in seq.iter().take(2) {
        let bytes = int.as_slice().map_err(|e| anyhow::anyhow!("{e}"))?;
        let bytes: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        ensure!(bytes.len() <= 32, "integer too long");
        out.extend(std::iter::repeat_n(0u8, 32 - bytes.len()));
        out.extend(bytes);
    }
    Ok(out)
}

/// RFC 7515 §4: a JOSE header with a duplicate member MUST be rejected.
/// Here the protected header says `"alg":"none"` and then `"alg":"ES256"`,
/// correctly signed with ES256: a parser where the last member wins would
/// accept it; the CA answers `malformed` and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_6_2_duplicate_header_members_are_malformed() -> Result<()> {
    use rcgen::SigningKey as _;
    let ca = Ca::start().await?;
    let kp = rcgen::KeyPair::generate()?;
    let mut acme = Acme::with_key(&ca, SigningKey::from_pkcs8_der(&kp.serialize_der())?);
    acme.register().await?;
    let kid = acme.kid.clone().context("kid")?;
    let url = ca.url("newOrder");
    let nonce = acme.nonce().await?;
    let protected =
        format!(r#"{{"alg":"none","nonce":"{nonce}","url":"{url}","kid":"{kid}","alg":"ES256"}}"#);
    let payload =
        serde_json::to_vec(&json!({ "identifiers": [{ "type": "dns", "value": "localhost" }] }))?;
    let signing_input = format!(
        "{}.{}",
        b64::encode(protected.as_bytes()),
        b64::encode(&payload)
    );
    let signature = der_to_fixed_p256(&kp.sign(signing_input.as_bytes())?)?;
    let body = serde_json::to_vec(&json!({
        "protected": b64::encode(protected.as_bytes()),
        "payload": b64::encode(&payload),
        "signature": b64::encode(&signature),
    }))?;
    let r = acme.send(&url, body, JOSE).await?;
    assert_problem(&r, 400, "malformed");
    assert!(r.text().contains("appears twice"), "{}", r.text());
    Ok(())
}

/// A declared body above the cap (`Content-Length: 10^12`, `Expect:
/// 100-continue`, no body sent) is refused at once with 413, not held open
/// until the request timeout. Raw TLS + HTTP/1.1, so nothing but the
/// headers ever leaves the client.
#[test]
fn a_declared_huge_body_is_refused_at_once_with_413() -> Result<()> {
    use std::io::{Read, Write};
    let rt = tokio::runtime::Runtime::new()?;
    let ca = rt.block_on(Ca::start())?;
    let root = std::fs::read(ca.data.join("ca/root.pem"))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&root).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from(pem.contents))?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let authority = ca.base.trim_start_matches("https://").to_string();
    let port: u16 = authority.rsplit(':').next().unwrap_or_default().parse()?;
    let conn = rustls::ClientConnection::new(Arc::new(config), "localhost".try_into()?)?;
    let sock = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let started = Instant::now();
    write!(
        tls,
        "POST /acme/new-order HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/jose+json\r\n\
         Content-Length: 1000000000000\r\nExpect: 100-continue\r\n\r\n"
    )?;
    tls.flush()?;
    let mut buf = [0u8; 64];
    let n = tls.read(&mut buf).context("no answer within 5 s")?;
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 413"), "{head:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(ca);
    Ok(())
}

/// A TLS client config trusting only the CA's root, with one ALPN protocol.
fn tls_client(ca: &Ca, alpn: &[u8]) -> Result<Arc<rustls::ClientConfig>> {
    let root = std::fs::read(ca.data.join("ca/root.pem"))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&root).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from(pem.contents))?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// Connects and completes the TLS handshake; sends nothing else.
fn silent_tls(
    ca: &Ca,
    alpn: &[u8],
) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    let port: u16 = ca.base.rsplit(':').next().unwrap_or_default().parse()?;
    let mut conn = rustls::ClientConnection::new(tls_client(ca, alpn)?, "localhost".try_into()?)?;
    let mut sock = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(rustls::StreamOwned::new(conn, sock))
}

/// Reads until the server closes; the time it took, or an error if it did not.
fn until_closed(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
) -> Result<Duration> {
    use std::io::Read;
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return Ok(started.elapsed()),
            // HTTP/2 servers speak first (SETTINGS): keep reading.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!("still open after {:?}", started.elapsed())
            }
            Err(_) => return Ok(started.elapsed()),
        }
    }
}

/// A client that completes the TLS handshake and then sends nothing, over
/// HTTP/1.1 and over HTTP/2 (idle after the server's preface), is
/// disconnected after `capacity.connection_idle_seconds` (2 here), not kept
/// forever.
#[test]
fn a_silent_connection_after_the_handshake_is_closed() -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let ca = rt.block_on(Ca::start_with(Some(policy_edited(&[(
        "connection_idle_seconds = 60",
        "connection_idle_seconds = 2",
    )]))))?;
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let mut tls = silent_tls(&ca, alpn)?;
        let took =
            until_closed(&mut tls).with_context(|| String::from_utf8_lossy(alpn).to_string())?;
        assert!(
            took < Duration::from_secs(6),
            "{}: closed after {took:?}",
            String::from_utf8_lossy(alpn)
        );
    }
    Ok(())
}

/// `capacity.max_connections` (3 here): connections beyond the cap are
/// dropped before their handshake completes (the readiness probe's pooled
/// connection may hold a slot too); once one closes, a new one is served.
#[test]
fn connections_beyond_the_cap_are_dropped() -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let ca = rt.block_on(Ca::start_with(Some(policy_edited(&[(
        "max_connections = 4096",
        "max_connections = 3",
    )]))))?;
    let mut open = Vec::new();
    let mut refused = false;
    for _ in 0..4 {
        match silent_tls(&ca, b"http/1.1") {
            Ok(c) => open.push(c),
            Err(_) => {
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "4 connections served with a cap of 3");
    assert!(!open.is_empty() && open.len() <= 3, "{} served", open.len());
    let first = open.remove(0);
    drop(first);
    // The server notices the close on its next read of that socket.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match silent_tls(&ca, b"http/1.1") {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => return Err(e.context("slot never freed")),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    Ok(())
}

/// A CSR for `localhost` whose RSA-2048 modulus has primes 2^100 apart,
/// built by Python's `cryptography` (certbot's own crypto library).
fn close_primes_csr(dir: &Path) -> Result<Vec<u8>> {
    let script = r#"
import secrets, sys
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

def probable_prime(n):
    if n % 2 == 0:
        return False
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2; r += 1
    for _ in range(40):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True

def next_prime(n):
    n |= 1
    while not (probable_prime(n) and (n - 1) % 65537 != 0):
        n += 2
    return n

p = next_prime(secrets.randbits(1024) | (3 << 1022))
q = next_prime(p + (1 << 100))
e = 65537
d = pow(e, -1, (p - 1) * (q - 1))
key = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                            rsa.RSAPublicNumbers(e, p * q)).private_key()
csr = (x509.CertificateSigningRequestBuilder()
       .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
       .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
       .sign(key, hashes.SHA256()))
open(sys.argv[1], "wb").write(csr.public_bytes(serialization.Encoding.DER))
"#;
    let out = dir.join("close.csr.der");
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&out)
        .status()
        .context("cannot run python3")?;
    ensure!(status.success(), "python3 key generation failed: {status}");
    Ok(std::fs::read(&out)?)
}

/// Boulder's goodkey: an RSA modulus that Fermat's method factors within
/// 100 rounds (primes too close, as broken generators make) is
/// `badPublicKey` at finalize, and nothing is issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn section_7_4_fermat_factorable_rsa_key_is_bad_public_key() -> Result<()> {
    let ca = Ca::start().await?;
    let mut acme = ca.account().await?;
    let (_, order) = acme.ready_order(&ca, &["localhost"]).await?;
    let dir = tempfile::tempdir()?;
    let r = acme
        .finalize(&order, &close_primes_csr(dir.path())?)
        .await?;
    assert_problem(&r, 400, "badPublicKey");
    assert!(r.text().contains("Fermat"), "{}", r.text());
    ca.assert_nothing_issued().await
}

/// Issue 13: the certificate response names the certificate's entry in the
/// CA's transparency log (`Link: <…/tlog/entry/N>;rel="tlog-entry"`), and
/// that entry's inclusion proof verifies against the signed checkpoint with
/// only the log's public key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_download_links_its_log_entry() -> Result<()> {
    use base64::Engine;
    use certkeeper_tlog::note::{Checkpoint, NoteVerifier};
    let ca = Ca::start().await?;
    let mut acme = ca.account().await?;
    let key = rcgen::KeyPair::generate()?;
    let (_, order) = acme.ready_order(&ca, &["localhost"]).await?;
    let r = acme
        .finalize(&order, &csr(&["localhost"], &key, false)?)
        .await?
        .ok("finalize")?;
    let url = r.header("location").context("no Location")?;
    let (_, order) = acme.wait_order(&url, "valid").await?;
    let cert_url = order["certificate"]
        .as_str()
        .context("no certificate")?
        .to_string();
    let resp = acme.post(&cert_url, None).await?.ok("download")?;
    let leaf = leaf_der(&resp.body)?;
    let link = resp
        .headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("rel=\"tlog-entry\""))
        .context("no Link rel=\"tlog-entry\" on the certificate response")?
        .to_string();
    let entry_url = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .context("Link target")?
        .to_string();
    ensure!(
        entry_url.starts_with(&format!("{}/tlog/entry/", ca.base)),
        "{link}"
    );
    let entry: Value = ca.http.get(&entry_url).send().await?.json().await?;
    let vkey = std::fs::read_to_string(ca.data.join("ca/tlog.pub"))?;
    let verifier = NoteVerifier::parse(vkey.trim())?;
    let cp = Checkpoint::open(
        entry["checkpoint"].as_str().context("checkpoint")?,
        &verifier,
    )?;
    let proof: Vec<[u8; 32]> = entry["inclusion_proof"]
        .as_array()
        .context("proof")?
        .iter()
        .filter_map(|h| {
            base64::engine::general_purpose::STANDARD
                .decode(h.as_str()?)
                .ok()
        })
        .filter_map(|h| h.try_into().ok())
        .collect();
    let index = entry["index"].as_u64().context("index")?;
    certkeeper_tlog::proof::verify_inclusion(
        index,
        cp.size,
        &certkeeper_tlog::leaf_hash(&leaf),
        &proof,
        &cp.root,
    )?;
    Ok(())
}
