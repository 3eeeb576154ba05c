//! The admin listener of a running daemon (built-in CA + pebble as the
//! backup CA): `/metrics` read by the Prometheus project's own Python
//! parser, the dashboard rendered by headless Chromium, and the actions
//! behind the bearer token.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use certkeeper_harness::{AgentDir, Bind, Pebble, free_port, require_peer, wait_for};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certkeeper"))
}

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

struct Setup {
    agent: AgentDir,
    admin_port: u16,
    _pebble: Pebble,
    _bind: Bind,
    /// Our CA's root and pebble's, for the HTTPS client.
    roots: Vec<PathBuf>,
}

/// Certificates `ip` (127.0.0.1, backup at pebble; the admin listener's
/// own) and `local` (localhost), from the built-in CA in the daemon.
fn setup() -> Setup {
    let bind = Bind::start().expect("BIND");
    let pebble = Pebble::start(Some(&bind), &[("PEBBLE_WFE_NONCEREJECT", "0")]).expect("pebble");
    let agent = AgentDir::new(bin()).expect("agent dir");
    let (ca_port, admin_port) = (free_port(), free_port());
    let token = agent.path("admin.token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let data = agent.path("data");
    agent
        .write_config(&format!(
            r#"data = "{data}"
[agent]
http01_listen = "127.0.0.1:{http01}"

[builtin_ca]
listen = "127.0.0.1:{ca_port}"
http01_port = {http01}

[[issuer]]
name = "builtin"
directory = "https://localhost:{ca_port}/directory"
root = "{data}/builtin-ca/ca/root.pem"
limits = "builtin"

[[issuer]]
name = "pebble"
directory = "{pebble_dir}"
root = "{pebble_root}"

[[certificate]]
name = "ip"
names = ["127.0.0.1"]
issuer = "builtin"
backup = "pebble"

[[certificate]]
name = "local"
names = ["localhost"]
issuer = "builtin"

[admin]
listen = "127.0.0.1:{admin_port}"
certificate = "ip"
token_file = "{token}"
"#,
            data = data.display(),
            http01 = pebble.http01_port(),
            pebble_dir = pebble.directory_url(),
            pebble_root = pebble.tls_ca_pem_path().display(),
            token = token.display(),
        ))
        .expect("config");
    let pebble_root = agent.path("pebble-root.pem");
    std::fs::write(
        &pebble_root,
        pebble.issuing_root_pem().expect("pebble root"),
    )
    .expect("root");
    Setup {
        roots: vec![data.join("builtin-ca/ca/root.pem"), pebble_root],
        agent,
        admin_port,
        _pebble: pebble,
        _bind: bind,
    }
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.admin_port)
    }

    fn http(&self) -> reqwest::Client {
        let roots = self.roots.iter().map(|p| {
            reqwest::Certificate::from_pem(&std::fs::read(p).expect("root")).expect("root PEM")
        });
        reqwest::Client::builder()
            .tls_certs_only(roots)
            .no_proxy()
            .build()
            .expect("client")
    }

    fn certificate(&self, name: &str) -> Value {
        let status = self.agent.status().expect("status");
        status["certificates"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name).cloned())
            .unwrap_or_default()
    }

    /// Waits until both slots of `ip` and the one of `local` are valid.
    fn wait_ready(&self, daemon: &certkeeper_harness::Daemon) {
        wait_for("every slot valid", Duration::from_secs(60), || {
            let ip = self.certificate("ip");
            let slots = ip["slots"].as_array()?;
            (slots.len() == 2
                && slots.iter().all(|s| s["state"] == "valid")
                && self.certificate("local")["state"] == "valid")
                .then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()));
    }
}

fn unix(rfc3339: &Value) -> i64 {
    let text = rfc3339.as_str().expect("a time");
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
        .unix_timestamp()
}

/// Every sample of a Prometheus text exposition, parsed by
/// `prometheus_client.parser` (Debian `python3-prometheus-client`).
fn parse_metrics(text: &str) -> Vec<(String, serde_json::Map<String, Value>, f64)> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (Debian python3-prometheus-client)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<(String, serde_json::Map<String, Value>, f64)> =
        serde_json::from_slice(&out.stdout).expect("parser output");
    samples
}

fn sample(
    samples: &[(String, serde_json::Map<String, Value>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k) == Some(&Value::from(*v)))
        })
        .map(|(_, _, v)| *v)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_match_the_certificates() {
    let s = setup();
    let daemon = s.agent.spawn_daemon(&[]).expect("daemon");
    s.wait_ready(&daemon);
    let text = s
        .http()
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    let samples = parse_metrics(&text);

    for name in ["ip", "local"] {
        let cert = s.certificate(name);
        let primary = cert["slots"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["slot"] == "primary").cloned())
            .expect("primary");
        let labels = [("name", name), ("slot", "primary")];
        assert_eq!(
            sample(
                &samples,
                "certkeeper_certificate_expiration_timestamp_seconds",
                &labels
            ),
            Some(unix(&primary["not_after"]) as f64),
            "{name}: expiration is the certificate's notAfter"
        );
        assert_eq!(
            sample(
                &samples,
                "certkeeper_certificate_renewal_timestamp_seconds",
                &labels
            ),
            Some(unix(&primary["next_renewal"]) as f64),
        );
        assert_eq!(
            sample(
                &samples,
                "certkeeper_certificate_ready_status",
                &[("name", name), ("slot", "primary"), ("condition", "True")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&samples, "certkeeper_certificate_served", &labels),
            Some(1.0)
        );
    }
    assert_eq!(
        sample(
            &samples,
            "certkeeper_certificate_served",
            &[("name", "ip"), ("slot", "backup")]
        ),
        Some(0.0)
    );
    // One certificate per primary slot from the built-in CA (the backup is pebble's).
    assert_eq!(
        sample(&samples, "certkeeper_ca_issued_total", &[]),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &samples,
            "certkeeper_events_total",
            &[("event", "obtained")]
        ),
        Some(3.0)
    );
    // The parser reads counters as `NAME_total`, as OpenMetrics has them.
    assert_eq!(
        sample(
            &samples,
            "certkeeper_acme_client_request_count_total",
            &[("endpoint", "/acme/new-order"), ("status", "201")]
        ),
        Some(2.0),
        "two orders at our CA: {text}"
    );
    assert_eq!(
        sample(
            &samples,
            "certkeeper_ca_validations_total",
            &[("type", "http-01"), ("outcome", "valid")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &samples,
            "certkeeper_rate_limit_used",
            &[
                ("issuer", "builtin"),
                ("limit", "CertificatesPerFQDNSet"),
                ("subject", "certificates for [localhost]")
            ]
        ),
        Some(1.0)
    );
    let buckets = samples
        .iter()
        .filter(|(n, _, _)| n == "certkeeper_ca_request_duration_seconds_bucket")
        .count();
    assert!(buckets > 0, "CA latency histogram: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_in_chromium_and_the_actions_behind_the_token() {
    let s = setup();
    let daemon = s.agent.spawn_daemon(&[]).expect("daemon");
    s.wait_ready(&daemon);

    // Headless Chromium renders the page: the DOM it built, and a screenshot.
    let chromium = require_peer("chromium");
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&artifacts).expect("artifacts");
    let screenshot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let profile = tempfile::tempdir().expect("profile");
    let browse = |extra: &str| {
        let out = Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                // Chromium keeps its own trust store; the HTTPS of this
                // listener is checked with our roots by reqwest below.
                "--ignore-certificate-errors",
                "--window-size=1100,1000",
                extra,
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(s.url("/"))
            .output()
            .expect("chromium");
        assert!(
            out.status.success(),
            "chromium: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = browse("--dump-dom");
    browse(&format!("--screenshot={}", screenshot.display()));
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    eprintln!("dashboard screenshot: {}", screenshot.display());

    for name in ["ip", "local"] {
        let cert = s.certificate(name);
        let days = (unix(&cert["not_after"]) - time::OffsetDateTime::now_utc().unix_timestamp())
            .div_euclid(86_400);
        let row = format!("<tr class=\"certificate\" data-name=\"{name}\">");
        let at = dom
            .find(&row)
            .unwrap_or_else(|| panic!("no row for {name}:\n{dom}"));
        let rest = &dom[at..];
        let row_html = &rest[..rest.find("</tr>").expect("row end")];
        assert!(
            row_html.contains(&format!("data-days=\"{days}\">{days}</td>")),
            "{name} shows {days} days left: {row_html}"
        );
    }
    assert!(dom.contains("<svg id=\"expiry-chart\""), "expiry chart");
    assert!(dom.matches("class=\"expiry-bar\"").count() >= 1);
    assert!(dom.contains("id=\"ca-issuance-chart\""));
    assert!(dom.contains("CertificatesPerFQDNSet"), "budgets");

    // Actions: refused without the token and with a wrong one.
    let http = s.http();
    let renew = s.url("/api/v1/certificates/local/renew");
    let rsp = http.post(&renew).send().await.expect("POST");
    assert_eq!(rsp.status(), 401);
    assert!(rsp.headers().contains_key("www-authenticate"));
    let rsp = http
        .post(&renew)
        .bearer_auth("not-the-token-at-all")
        .send()
        .await
        .expect("POST");
    assert_eq!(rsp.status(), 401);

    // With it: renew gives `local` a new certificate.
    let before = s.certificate("local")["serial"].clone();
    let rsp = http
        .post(&renew)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST");
    assert_eq!(rsp.status(), 200);
    let body: Value = rsp.json().await.expect("json");
    assert!(body["obtained"].is_string(), "{body}");
    assert_ne!(s.certificate("local")["serial"], before);

    // And swap serves `ip`'s backup, here on this very listener.
    let rsp = http
        .post(s.url("/api/v1/certificates/ip/swap?to=backup"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST");
    assert_eq!(rsp.status(), 200, "{:?}", rsp.text().await);
    assert_eq!(s.certificate("ip")["served"], "backup");

    // The read API answers without a token.
    let events: Value = http
        .get(s.url("/api/v1/events?limit=5"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(events["events"][0]["event"], "swapped", "{events}");
    drop(daemon);
}
