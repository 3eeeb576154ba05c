//! The certificate secondary's latency: from a CSR published in DNS
//! (`certkeeper dns request`) to a certificate fetched from DNS and checked
//! (`certkeeper dns fetch`), p50/p99 over N hosts, against a BIND 9 and our
//! CA started here, with `certkeeper up` running the secondary (zones read
//! every second). The baseline, measured in the same run on the same BIND
//! and CA: the agent issuing one dns-01 certificate with the key it holds
//! and publishing it as TLSA records (`certkeeper issue`).
//! Run with `./scripts/bench-dns-secondary [HOSTS]` (default 20).
//!
//! A measurement tool, not a test: figures depend on the machine.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use certkeeper_harness::{Bind, CaOptions, CertkeeperCa, require_peer};

#[allow(dead_code)]
mod common;

fn ok(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| what.to_owned())?;
    anyhow::ensure!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let hosts: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20);
    anyhow::ensure!(hosts > 0, "HOSTS must be > 0");
    let bin = common::release_bin("./scripts/bench-dns-secondary")?;
    let bind = Bind::start()?;
    let ca = CertkeeperCa::start(
        &bin,
        CaOptions {
            dns_resolver: Some(bind.addr()),
            ..Default::default()
        },
    )?;
    let dir = tempfile::tempdir()?;
    let p = |s: &str| -> PathBuf { dir.path().join(s) };
    std::fs::write(p("tsig.secret"), bind.tsig_secret_b64())?;
    std::fs::set_permissions(p("tsig.secret"), std::fs::Permissions::from_mode(0o600))?;
    let zone = bind.zone().to_owned();
    let config = format!(
        r#"data = "{data}"
[agent]
check_interval_seconds = 1
# The guard's order pace (20/min by default) would set the figure for
# more than 20 hosts; measured here is the secondary, not the pace.
max_orders_per_minute = 600

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

[[certificate]]
name = "direct"
names = ["direct.{zone}"]
issuer = "ca"
challenge = "dns-01"
dns_server = "primary"
[certificate.tlsa]

[dns_secondary]
issuer = "ca"
poll_interval_seconds = 1

[[dns_secondary.zone]]
dns_server = "primary"
"#,
        data = p("data").display(),
        directory = ca.directory_url(),
        root = ca.root_pem_path().display(),
        server = bind.addr(),
        key = bind.tsig_key_name(),
        secret = p("tsig.secret").display(),
        port = bind.port(),
    );
    std::fs::write(p("certkeeper.toml"), config)?;
    let conf = p("certkeeper.toml");

    // Baseline: the agent holds the key; order, dns-01, TLSA publish.
    let started = Instant::now();
    ok(
        Command::new(&bin)
            .args(["issue", "direct", "--config"])
            .arg(&conf),
        "certkeeper issue direct",
    )?;
    let direct = started.elapsed();

    let openssl = require_peer("openssl");
    for i in 0..hosts {
        ok(
            Command::new(&openssl)
                .args([
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                ])
                .arg(p(&format!("h{i}.key"))),
            "openssl genpkey",
        )?;
    }
    let log = std::fs::File::create(p("daemon.log"))?;
    let mut daemon = Command::new(&bin)
        .args(["up", "--config"])
        .arg(&conf)
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()?;
    let up_deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(p("daemon.log"))?.contains("Ctrl-C or SIGTERM stops") {
        anyhow::ensure!(Instant::now() < up_deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    let server = bind.addr().to_string();
    let host = |i: usize| format!("h{i}.{zone}");
    let fetch = |i: usize| -> bool {
        Command::new(&bin)
            .args(["dns", "fetch", "--host", &host(i), "--key"])
            .arg(p(&format!("h{i}.key")))
            .arg("--out")
            .arg(p(&format!("out{i}")))
            .args(["--server", &server, "--roots"])
            .arg(ca.root_pem_path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut published = Vec::with_capacity(hosts);
    for i in 0..hosts {
        published.push(Instant::now());
        ok(
            Command::new(&bin)
                .args(["dns", "request", "--host", &host(i), "--key"])
                .arg(p(&format!("h{i}.key")))
                .args(["--server", &server, "--tsig-key", bind.tsig_key_name()])
                .arg("--tsig-secret-file")
                .arg(p("tsig.secret")),
            "certkeeper dns request",
        )?;
    }
    let mut latency: Vec<Option<Duration>> = vec![None; hosts];
    let deadline = Instant::now() + Duration::from_secs(600);
    while latency.iter().any(Option::is_none) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "not every certificate arrived within 10 minutes; daemon log in {}",
            p("daemon.log").display()
        );
        for i in 0..hosts {
            if latency[i].is_none() && fetch(i) {
                latency[i] = Some(published[i].elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();

    let mut all: Vec<Duration> = latency.into_iter().flatten().collect();
    all.sort();
    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "certificate secondary, {hosts} hosts published at once (BIND 9 + certkeeper ca, zones read every 1 s):"
    );
    println!(
        "  CSR published → certificate fetched: p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        secs(percentile(&all, 0.5)),
        secs(percentile(&all, 0.99)),
        secs(all[all.len() - 1])
    );
    println!(
        "  baseline, the agent with its own key (certkeeper issue, dns-01 + TLSA): {:.2} s",
        secs(direct)
    );
    println!(
        "  ratio p50 / baseline: {:.2}x",
        secs(percentile(&all, 0.5)) / secs(direct)
    );
    println!("  CA issued {} certificates", ca.issued_count()?);
    Ok(())
}
