//! Our CA vs pebble, same machine, same run: starts BIND (wildcard
//! `*.example.test` → 127.0.0.1, the resolver of both CAs), pebble and
//! `certkeeper ca serve`, then runs `certkeeper bench ca` against each and
//! prints both reports and the ratio. Run through `scripts/bench-ca`, which
//! builds the release binary first.
//!
//! A measurement tool, not a test: figures depend on the machine.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use certkeeper_harness::{Bind, CaOptions, CertkeeperCa, Pebble};

fn bench(
    bin: &PathBuf,
    directory: &str,
    root: &std::path::Path,
    http01_port: u16,
    concurrency: &str,
    orders: &str,
) -> anyhow::Result<(String, f64)> {
    let out = Command::new(bin)
        .args([
            "bench",
            "ca",
            "--directory",
            directory,
            "--concurrency",
            concurrency,
            "--orders",
            orders,
        ])
        .arg("--root")
        .arg(root)
        .args([
            "--http01-port",
            &http01_port.to_string(),
            "--domain-suffix",
            "example.test",
        ])
        .output()
        .context("running certkeeper bench ca")?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let rate = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("rate"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse::<f64>().ok())
        .with_context(|| format!("no rate in bench output:\n{text}"))?;
    Ok((text, rate))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let concurrency = args.next().unwrap_or_else(|| "32".into());
    let orders = args.next().unwrap_or_else(|| "300".into());
    let bin = std::env::var_os("CERTKEEPER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/certkeeper"));
    anyhow::ensure!(
        bin.exists(),
        "{} missing: run scripts/bench-ca (it builds the release binary)",
        bin.display()
    );

    let bind = Bind::start()?;
    // Nonce rejection off: both CAs are measured on their issuance path.
    let pebble = Pebble::start(Some(&bind), &[("PEBBLE_WFE_NONCEREJECT", "0")])?;
    let ours = CertkeeperCa::start(
        &bin,
        CaOptions {
            dns_resolver: Some(bind.addr()),
            ..Default::default()
        },
    )?;

    let (pebble_report, pebble_rate) = bench(
        &bin,
        &pebble.directory_url(),
        pebble.tls_ca_pem_path(),
        pebble.http01_port(),
        &concurrency,
        &orders,
    )?;
    println!("== pebble ({})\n{pebble_report}", pebble.directory_url());
    let (our_report, our_rate) = bench(
        &bin,
        &ours.directory_url(),
        &ours.root_pem_path(),
        ours.http01_port(),
        &concurrency,
        &orders,
    )?;
    println!(
        "== certkeeper ca serve ({})\n{our_report}",
        ours.directory_url()
    );
    println!(
        "ratio (certkeeper / pebble): {:.2}x orders/s",
        our_rate / pebble_rate
    );
    Ok(())
}
