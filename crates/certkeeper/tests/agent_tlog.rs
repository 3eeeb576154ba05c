//! The agent against its issuer's transparency log (issue 13, agent side),
//! with `certkeeper ca serve` as the CA and log, the agent daemon, and
//! certbot as "someone else":
//! - the agent's own issuance and renewal are proven in the log before they
//!   are stored and deployed (an `inclusion-verified` event each), and the
//!   monitor stays silent about them;
//! - certbot obtains a certificate for a name the agent manages: an
//!   `unknown-certificate` alert (event, `status --json`, `/metrics`);
//! - a checkpoint key that is not the log's: nothing is stored or deployed,
//!   the error names the log, and the order stays to be resumed once fixed;
//! - a log rewritten behind the monitor's back (a small log served over
//!   real HTTP by this test, signed with the right key): a fork alert that
//!   survives a restart of the agent.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certkeeper_harness::{
    AgentDir, Bind, CaOptions, Certbot, CertkeeperCa, Daemon, free_port, openssl_serial_hex,
    wait_for,
};
use serde_json::Value;

const NAME: &str = "www.example.test";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certkeeper"))
}

fn start_ca() -> (Bind, CertkeeperCa) {
    let bind = Bind::start().expect("BIND");
    let ca = CertkeeperCa::start(
        bin(),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            ..Default::default()
        },
    )
    .expect("certkeeper ca serve");
    (bind, ca)
}

/// An agent managing `web` = [`NAME`] from our CA over tls-alpn-01 (so
/// certbot can use the CA's http-01 port beside the running daemon), with
/// the CA's log as `[issuer.tlog]`, polled every second, and the admin API.
fn agent_for(ca: &CertkeeperCa, checkpoint_key: &str, admin_port: u16) -> AgentDir {
    let agent = AgentDir::new(bin()).expect("agent dir");
    std::fs::write(agent.path("token"), "sekrit-token-0123456789\n").expect("token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(agent.path("token"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
    }
    write_config(&agent, ca, checkpoint_key, admin_port);
    agent
}

fn write_config(agent: &AgentDir, ca: &CertkeeperCa, checkpoint_key: &str, admin_port: u16) {
    agent
        .write_config(&format!(
            r#"data = "{data}"
[agent]
tlsalpn01_listen = "127.0.0.1:{alpn}"
shutdown_grace_seconds = 1
backoff_initial_seconds = 1
backoff_max_seconds = 2

[admin]
listen = "127.0.0.1:{admin_port}"
token_file = "{token}"

[[issuer]]
name = "ours"
directory = "{directory}"
root = "{root}"

[issuer.tlog]
log = "{log}"
checkpoint_key = "{checkpoint_key}"
poll_seconds = 1

[[certificate]]
name = "web"
names = ["{NAME}"]
issuer = "ours"
challenge = "tls-alpn-01"
"#,
            data = agent.path("data").display(),
            alpn = ca.tlsalpn01_port(),
            token = agent.path("token").display(),
            directory = ca.directory_url(),
            root = ca.root_pem_path().display(),
            log = ca.tlog_url(),
        ))
        .expect("config");
}

fn events(agent: &AgentDir, kind: &str) -> Vec<Value> {
    let out = agent.ok(&["events", "--json"]).unwrap_or_default();
    let start = out.find('[').unwrap_or(0);
    let all: Vec<Value> = serde_json::from_str(&out[start..]).unwrap_or_default();
    all.into_iter().filter(|e| e["kind"] == kind).collect()
}

fn transparency(agent: &AgentDir) -> Value {
    agent.status().expect("status --json")["transparency"][0].clone()
}

fn serial(agent: &AgentDir) -> Option<String> {
    agent.status().ok()?["certificates"][0]["serial"]
        .as_str()
        .map(str::to_string)
}

fn metrics(admin_port: u16) -> String {
    let (status, body) =
        certkeeper_harness::http_get(&format!("http://127.0.0.1:{admin_port}/metrics"))
            .expect("GET /metrics");
    assert_eq!(status, 200);
    String::from_utf8(body).expect("UTF-8")
}

/// `POST /api/v1/certificates/web/renew` with the token; the raw response.
fn post_renew(admin_port: u16) -> String {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", admin_port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    write!(
        sock,
        "POST /api/v1/certificates/web/renew HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sekrit-token-0123456789\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    sock.read_to_string(&mut out).expect("read");
    out
}

fn wait<T>(daemon: &Daemon, what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_for(what, Duration::from_secs(90), f)
        .unwrap_or_else(|e| panic!("{e}; daemon log:\n{}", daemon.log()))
}

#[test]
fn own_certificates_are_proven_before_deploy_and_certbot_for_a_managed_name_is_an_alert() {
    let (_bind, ca) = start_ca();
    let admin_port = free_port();
    let agent = agent_for(&ca, &ca.tlog_public_key(), admin_port);
    let daemon = agent.spawn_daemon(&[]).expect("daemon");

    // First issuance: proven, then stored.
    let first = wait(&daemon, "first certificate", || serial(&agent));
    let proven = events(&agent, "inclusion-verified");
    assert_eq!(proven.len(), 1, "{proven:?}");
    let detail = proven[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&first) && detail.contains(&ca.tlog_url()),
        "{detail}"
    );
    let obtained = events(&agent, "obtained");
    assert_eq!(obtained.len(), 1);
    assert!(
        proven[0]["at"].as_i64() <= obtained[0]["at"].as_i64(),
        "proven before obtained"
    );

    // A renewal (the admin API's renew = `renew --force`): proven too.
    let rsp = post_renew(admin_port);
    assert!(rsp.starts_with("HTTP/1.1 200"), "{rsp}");
    let second = wait(&daemon, "renewed certificate", || {
        serial(&agent).filter(|s| *s != first)
    });
    assert_eq!(events(&agent, "inclusion-verified").len(), 2);

    // The monitor has verified the log through both and said nothing.
    let issued = ca.issued_count().expect("ca list") as i64;
    assert_eq!(issued, 2);
    wait(&daemon, "monitor verified both entries", || {
        (transparency(&agent)["verified_size"].as_i64() == Some(issued)).then_some(())
    });
    let t = transparency(&agent);
    assert_eq!(t["alerts"], serde_json::json!([]), "silent on our own: {t}");
    assert!(events(&agent, "unknown-certificate").is_empty());

    // Someone else obtains a certificate for our name from the same CA.
    let certbot = Certbot::new(&ca.directory_url(), &ca.root_pem_path()).expect("certbot");
    let theirs = certbot
        .certonly_standalone(&[NAME], ca.http01_port(), &[])
        .expect("certbot certonly");
    let their_serial = openssl_serial_hex(&theirs.cert).expect("serial");
    assert_ne!(their_serial, first);
    assert_ne!(their_serial, second);
    let alert = wait(&daemon, "unknown-certificate alert", || {
        transparency(&agent)["alerts"]
            .as_array()
            .and_then(|a| a.first().cloned())
    });
    assert_eq!(alert["kind"], "unknown-certificate");
    assert_eq!(alert["serial"].as_str(), Some(their_serial.as_str()));
    assert_eq!(alert["names"], serde_json::json!([NAME]));
    assert_eq!(alert["log_index"].as_i64(), Some(2));
    let t = transparency(&agent);
    assert_eq!(t["alerts"].as_array().map(Vec::len), Some(1), "{t}");
    assert_eq!(t["verified_size"].as_i64(), Some(3));
    let ev = events(&agent, "unknown-certificate");
    assert_eq!(ev.len(), 1);
    assert!(
        ev[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&their_serial)),
        "{ev:?}"
    );
    let m = metrics(admin_port);
    assert!(
        m.lines().any(|l| l.starts_with("certkeeper_tlog_alerts{")
            && l.contains("kind=\"unknown-certificate\"")
            && l.ends_with(" 1")),
        "{m}"
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("certkeeper_tlog_verified_size{") && l.ends_with(" 3")),
        "{m}"
    );
    // The admin API lists it too.
    let (status, body) = certkeeper_harness::http_get(&format!(
        "http://127.0.0.1:{admin_port}/api/v1/transparency"
    ))
    .expect("GET /api/v1/transparency");
    assert_eq!(status, 200);
    let api: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        api["transparency"][0]["alerts"][0]["serial"].as_str(),
        Some(their_serial.as_str())
    );
    drop(daemon);
}

#[test]
fn a_checkpoint_key_that_is_not_the_logs_refuses_to_deploy_names_the_log_and_keeps_the_order() {
    let (_bind, ca) = start_ca();
    // A key of the same name, not the log's.
    let origin = ca
        .tlog_public_key()
        .split('+')
        .next()
        .expect("key name")
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let other = certkeeper_tlog::NoteSigner::load_or_create(dir.path(), &origin)
        .expect("signer")
        .verifier()
        .to_string();
    assert_ne!(other, ca.tlog_public_key());
    let agent = agent_for(&ca, &other, free_port());
    let out = agent.run(&["issue", "web"], &[]).expect("issue");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must refuse: {stderr}");
    assert!(
        stderr.contains(&ca.tlog_url()) && stderr.contains("not signed by the configured key"),
        "{stderr}"
    );
    let status = agent.status().expect("status");
    let slot = &status["certificates"][0]["slots"][0];
    assert!(slot["serial"].is_null(), "nothing stored: {slot}");
    assert_eq!(slot["state"], "order in flight", "the order stays: {slot}");
    assert!(agent.path("data").exists());
    assert!(events(&agent, "obtained").is_empty());
    assert_eq!(ca.issued_count().expect("ca list"), 1);

    // With the log's key, the same order completes: no second certificate.
    write_config(&agent, &ca, &ca.tlog_public_key(), free_port());
    // (After the failure's backoff, 1 s here.)
    // (`issue` says "nothing due" until the failure's backoff, 1 s, ends.)
    wait_for("issue with the right key", Duration::from_secs(30), || {
        agent.ok(&["issue", "web"]).expect("issue");
        serial(&agent)
    })
    .expect("issue with the right key");
    assert_eq!(events(&agent, "inclusion-verified").len(), 1);
    assert_eq!(
        ca.issued_count().expect("ca list"),
        1,
        "the order was resumed"
    );
}

/// Serves `app` on a free loopback port from a runtime of its own (the
/// tests are synchronous); the server lives as long as the runtime.
fn serve_on_loopback(app: axum::Router) -> (tokio::runtime::Runtime, u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    rt.spawn(async move { axum::serve(listener, app).await });
    (rt, port)
}

/// A log this test serves over real HTTP from a directory it can swap:
/// the CA's log cannot be made to fork on demand, so this stands in for a
/// log operator who rewrites history (signed with the right key).
struct MockLog {
    dir: Arc<Mutex<PathBuf>>,
    port: u16,
    _rt: tokio::runtime::Runtime,
}

impl MockLog {
    fn serve(dir: PathBuf) -> MockLog {
        use axum::extract::{Path as UrlPath, State};
        use axum::http::StatusCode;
        let shared = Arc::new(Mutex::new(dir));
        let app = axum::Router::new()
            .route(
                "/tlog/{*path}",
                axum::routing::get(
                    |State(d): State<Arc<Mutex<PathBuf>>>, UrlPath(p): UrlPath<String>| async move {
                        let dir = d.lock().expect("lock").clone();
                        match std::fs::read(dir.join(&p)) {
                            Ok(b) if !p.contains("..") => (StatusCode::OK, b),
                            _ => (StatusCode::NOT_FOUND, Vec::new()),
                        }
                    },
                ),
            )
            .with_state(Arc::clone(&shared));
        let (rt, port) = serve_on_loopback(app);
        MockLog {
            dir: shared,
            port,
            _rt: rt,
        }
    }
}

#[test]
fn a_rewritten_log_is_a_fork_alert_that_survives_a_restart() {
    use certkeeper_tlog::note::NoteSigner;
    use certkeeper_tlog::storage::FileLog;
    let tmp = tempfile::tempdir().expect("tempdir");
    let keys = tmp.path().join("keys");
    let origin = "mock.example.test/log";
    let entry = |i: u64| format!("not a certificate {i}").into_bytes();
    let honest = tmp.path().join("honest");
    let signer = NoteSigner::load_or_create(&keys, origin).expect("signer");
    let vkey = signer.verifier().to_string();
    let (mut log, _) = FileLog::open(&honest, signer).expect("log");
    log.append_batch(&(0..3).map(entry).collect::<Vec<_>>())
        .expect("append");
    drop(log);
    let mock = MockLog::serve(honest);

    let agent = AgentDir::new(bin()).expect("agent dir");
    agent
        .write_config(&format!(
            r#"data = "{data}"
[agent]
shutdown_grace_seconds = 1

[[issuer]]
name = "watched"
directory = "https://127.0.0.1:9/directory"

[issuer.tlog]
log = "http://127.0.0.1:{port}/tlog/"
checkpoint_key = "{vkey}"
poll_seconds = 1
"#,
            data = agent.path("data").display(),
            port = mock.port,
        ))
        .expect("config");
    let mut daemon = agent.spawn_daemon(&[]).expect("daemon");
    wait(&daemon, "monitor verified the honest log", || {
        (transparency(&agent)["verified_size"].as_i64() == Some(3)).then_some(())
    });

    // The operator rebuilds the log with entry 1 swapped and more entries,
    // signed with the same key.
    let forked = tmp.path().join("forked");
    let signer = NoteSigner::load_or_create(&keys, origin).expect("signer");
    let (mut f, _) = FileLog::open(&forked, signer).expect("forked log");
    let mut es: Vec<Vec<u8>> = (0..5).map(entry).collect();
    es[1] = b"history, rewritten".to_vec();
    f.append_batch(&es).expect("append");
    drop(f);
    *mock.dir.lock().expect("lock") = forked;
    let alert = wait(&daemon, "fork alert", || {
        transparency(&agent)["alerts"]
            .as_array()
            .and_then(|a| a.first().cloned())
    });
    assert_eq!(alert["kind"], "fork", "{alert}");
    assert!(
        alert["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("http://127.0.0.1:{}/tlog/", mock.port))),
        "{alert}"
    );
    assert_eq!(events(&agent, "log-inconsistent").len(), 1);
    // The verified state is not advanced to the forked tree.
    assert_eq!(transparency(&agent)["verified_size"].as_i64(), Some(3));

    // Restarted, the agent continues from what it verified: the alert is
    // still there, the forked log is still refused, nothing is recorded twice.
    daemon
        .signal_and_wait("TERM", Duration::from_secs(10))
        .expect("stop");
    let before = transparency(&agent)["polled_at"].clone();
    let daemon = agent.spawn_daemon(&[]).expect("daemon again");
    wait(&daemon, "a poll after the restart", || {
        std::thread::sleep(Duration::from_millis(1100));
        (transparency(&agent)["polled_at"] != before).then_some(())
    });
    let t = transparency(&agent);
    assert_eq!(t["verified_size"].as_i64(), Some(3), "{t}");
    assert_eq!(t["alerts"].as_array().map(Vec::len), Some(1), "{t}");
    assert_eq!(t["alerts"][0]["kind"], "fork");
    assert_eq!(events(&agent, "log-inconsistent").len(), 1);
}

/// A crt.sh-shaped search endpoint over real HTTP. crt.sh itself is not
/// reachable from the test machine, so this serves its `output=json` shape
/// (id, serial_number, name_value, not_before, issuer_name…) built from
/// the real certificates our CA issued, as listed by `ca list --json`.
type SearchState = (Arc<Mutex<Vec<Value>>>, Arc<std::sync::atomic::AtomicUsize>);

struct MockSearch {
    rows: Arc<Mutex<Vec<Value>>>,
    /// Searches answered so far.
    served: Arc<std::sync::atomic::AtomicUsize>,
    port: u16,
    _rt: tokio::runtime::Runtime,
}

impl MockSearch {
    fn serve() -> MockSearch {
        use axum::extract::{Query, State};
        let rows: Arc<Mutex<Vec<Value>>> = Arc::default();
        let served: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let app = axum::Router::new()
            .route(
                "/",
                axum::routing::get(
                    |State((rows, served)): State<SearchState>,
                     Query(q): Query<std::collections::HashMap<String, String>>| async move {
                        // Counted after the answer is built: a count seen
                        // by the test means a search that saw the rows.
                        let name = q.get("q").cloned().unwrap_or_default();
                        let hits: Vec<Value> = rows
                            .lock()
                            .expect("lock")
                            .iter()
                            .filter(|r| {
                                r["name_value"]
                                    .as_str()
                                    .is_some_and(|v| v.lines().any(|l| l == name))
                            })
                            .cloned()
                            .collect();
                        served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        axum::Json(Value::Array(hits))
                    },
                ),
            )
            .with_state((Arc::clone(&rows), Arc::clone(&served)));
        let (rt, port) = serve_on_loopback(app);
        MockSearch {
            rows,
            served,
            port,
            _rt: rt,
        }
    }

    /// Publishes every certificate the CA issued, crt.sh style.
    fn publish(&self, ca: &CertkeeperCa) {
        let list = ca.list().expect("ca list");
        let rows = list
            .as_array()
            .expect("array")
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let names: Vec<&str> = c["names"]
                    .as_array()
                    .expect("names")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                serde_json::json!({
                    "issuer_ca_id": 1,
                    "issuer_name": "CN=certkeeper test CA",
                    "common_name": names[0],
                    "name_value": names.join("\n"),
                    "id": 1000 + i,
                    "entry_timestamp": c["not_before"],
                    "not_before": c["not_before"],
                    "not_after": c["not_after"],
                    // crt.sh pads to whole octets and may keep a sign octet.
                    "serial_number": format!("00{}", c["serial"].as_str().expect("serial")),
                    "result_count": 1,
                })
            })
            .collect();
        *self.rows.lock().expect("lock") = rows;
    }
}

#[test]
fn a_crt_sh_style_search_alerts_on_certbots_certificate_and_not_on_ours() {
    let (_bind, ca) = start_ca();
    let search = MockSearch::serve();
    let agent = AgentDir::new(bin()).expect("agent dir");
    agent
        .write_config(&format!(
            r#"data = "{data}"
[agent]
tlsalpn01_listen = "127.0.0.1:{alpn}"
shutdown_grace_seconds = 1

[[issuer]]
name = "public"
directory = "{directory}"
root = "{root}"

[issuer.ct_search]
url = "http://127.0.0.1:{port}/?q={{name}}&output=json"
poll_seconds = 1

[[certificate]]
name = "web"
names = ["{NAME}"]
issuer = "public"
challenge = "tls-alpn-01"
"#,
            data = agent.path("data").display(),
            alpn = ca.tlsalpn01_port(),
            directory = ca.directory_url(),
            root = ca.root_pem_path().display(),
            port = search.port,
        ))
        .expect("config");
    let daemon = agent.spawn_daemon(&[]).expect("daemon");
    let ours = wait(&daemon, "our certificate", || serial(&agent));
    search.publish(&ca);
    // Our own certificate in the search results: two searches later (one
    // whole round after the rows were up), still no alert.
    let at = search.served.load(std::sync::atomic::Ordering::SeqCst);
    wait(&daemon, "searches after ours was published", || {
        (search.served.load(std::sync::atomic::Ordering::SeqCst) >= at + 2).then_some(())
    });
    let t = transparency(&agent);
    assert_eq!(t["alerts"], serde_json::json!([]), "{t}");

    let certbot = Certbot::new(&ca.directory_url(), &ca.root_pem_path()).expect("certbot");
    let theirs = certbot
        .certonly_standalone(&[NAME], ca.http01_port(), &[])
        .expect("certbot certonly");
    let their_serial = openssl_serial_hex(&theirs.cert).expect("serial");
    assert_ne!(their_serial, ours);
    search.publish(&ca);
    let alert = wait(&daemon, "unknown-certificate alert from the search", || {
        transparency(&agent)["alerts"]
            .as_array()
            .and_then(|a| a.first().cloned())
    });
    assert_eq!(alert["kind"], "unknown-certificate");
    assert_eq!(alert["serial"].as_str(), Some(their_serial.as_str()));
    assert!(alert["log_index"].is_null());
    let t = transparency(&agent);
    assert_eq!(t["alerts"].as_array().map(Vec::len), Some(1), "{t}");
    assert_eq!(events(&agent, "unknown-certificate").len(), 1);
}
