//! Our CA vs pebble, same machine, same run: starts BIND (wildcard
//! `*.example.test` → 127.0.0.1, the resolver of both CAs), pebble and
//! `certkeeper ca serve`, then runs `certkeeper bench ca` against each and
//! prints both reports, the CA process's CPU time per issued certificate, and
//! the ratios; with a third argument, that many rounds alternating the two,
//! then the median ratios. Run through `scripts/bench-ca`, which builds the
//! release binary.
//!
//! A measurement tool, not a test: figures depend on the machine.

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use certkeeper_harness::{Bind, CaOptions, CertkeeperCa, Pebble, process_cpu_time};

mod common;

/// One bench run against one CA.
struct Run {
    report: String,
    rate: f64,
    ok: u64,
    failed: u64,
    /// CPU time of the CA process per issued certificate, milliseconds.
    cpu_ms_per_cert: f64,
    /// Context switches of the CA's threads per issued certificate.
    switches_per_cert: f64,
}

impl Run {
    /// The client's report under `title`, with the CA's cost per certificate.
    fn print(&self, title: &str) {
        println!(
            "== {title}\n{}  CA CPU {:.2} ms, {:.0} context switches per certificate ({} issued)\n",
            self.report, self.cpu_ms_per_cert, self.switches_per_cert, self.ok
        );
    }
}

fn bench(
    bin: &Path,
    ca_pid: u32,
    directory: &str,
    root: &Path,
    http01_port: u16,
    load: &[String; 2],
) -> anyhow::Result<Run> {
    let cpu_before = process_cpu_time(ca_pid)?;
    let switches_before = common::context_switches(ca_pid)?;
    let out = Command::new(bin)
        .args([
            "bench",
            "ca",
            "--directory",
            directory,
            "--concurrency",
            &load[0],
            "--orders",
            &load[1],
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
    let cpu = process_cpu_time(ca_pid)? - cpu_before;
    let switches = common::context_switches(ca_pid)?.saturating_sub(switches_before);
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // The report's lines look like `  rate   239.2 orders/s` and `  ok   300   failed 0`.
    let rate =
        common::number_after(&report, "rate").with_context(|| format!("no rate in:\n{report}"))?;
    let ok = common::number_after(&report, "ok").unwrap_or(0.0) as u64;
    let failed = common::number_after(&report, "failed").unwrap_or(0.0) as u64;
    let cpu_ms_per_cert = cpu.as_secs_f64() * 1000.0 / ok.max(1) as f64;
    let switches_per_cert = switches as f64 / ok.max(1) as f64;
    Ok(Run {
        report,
        rate,
        ok,
        failed,
        cpu_ms_per_cert,
        switches_per_cert,
    })
}

/// One pebble measurement: a fresh pebble, up to three attempts.
///
/// pebble 2.4 can deadlock under concurrent load (a lock cycle between an
/// authorization fetch, a new order and a store write). The bench stops at
/// the first failed order; such a run is shown and its rate discarded, and
/// a fresh pebble gets another go. Its CPU per certificate still counts: a
/// hung pebble burns no CPU. Returns the rate of the completed run and the
/// lowest CPU per certificate of all runs that issued anything.
fn pebble_round(
    bin: &Path,
    bind: &Bind,
    load: &[String; 2],
) -> anyhow::Result<(Option<f64>, Option<f64>)> {
    let mut cpu: Option<f64> = None;
    for attempt in 1..=3 {
        // Nonce rejection off: both CAs are measured on their issuance path.
        let pebble = Pebble::start(Some(bind), &[("PEBBLE_WFE_NONCEREJECT", "0")])?;
        let run = bench(
            bin,
            pebble.pid(),
            &pebble.directory_url(),
            pebble.tls_ca_pem_path(),
            pebble.http01_port(),
            load,
        )?;
        run.print(&format!("pebble, run {attempt}"));
        if run.ok > 0 {
            cpu = Some(cpu.map_or(run.cpu_ms_per_cert, |c: f64| c.min(run.cpu_ms_per_cert)));
        }
        if run.failed == 0 {
            return Ok((Some(run.rate), cpu));
        }
        println!(
            "pebble run {attempt}: {} orders failed (pebble deadlock); rate discarded\n",
            run.failed
        );
    }
    Ok((None, cpu))
}

/// The median, as `0.00x`, or `-` for none.
fn median(values: &mut [f64]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    let m = if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    };
    format!("{m:.2}x")
}

fn main() -> anyhow::Result<()> {
    let load = common::load_args();
    let bin = common::release_bin("scripts/bench-ca")?;
    let bind = Bind::start()?;
    let text = common::unreachable_limits_policy();
    let ours = CertkeeperCa::start(
        &bin,
        CaOptions {
            dns_resolver: Some(bind.addr()),
            policy: Some(text),
            ..Default::default()
        },
    )?;

    // Rounds alternate pebble and ours, so a machine that slows down or
    // speeds up during the bench moves both; the medians are the figures.
    let rounds: usize = std::env::args()
        .nth(3)
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .max(1);
    let pid = ours.pid().context("our CA is not running")?;
    let mut cpu_ratios = Vec::new();
    let mut rate_ratios = Vec::new();
    for round in 1..=rounds {
        if rounds > 1 {
            println!("=== round {round} of {rounds}\n");
        }
        let (pebble_rate, pebble_cpu) = pebble_round(&bin, &bind, &load)?;
        let run = bench(
            &bin,
            pid,
            &ours.directory_url(),
            &ours.root_pem_path(),
            ours.http01_port(),
            &load,
        )?;
        run.print("certkeeper ca serve");
        anyhow::ensure!(run.failed == 0, "certkeeper: {} orders failed", run.failed);
        if let Some(cpu) = pebble_cpu {
            let ratio = cpu / run.cpu_ms_per_cert;
            println!("CA CPU per certificate, pebble / certkeeper: {ratio:.2}x");
            cpu_ratios.push(ratio);
        }
        match pebble_rate {
            Some(rate) => {
                let ratio = run.rate / rate;
                println!("orders/s, certkeeper / pebble: {ratio:.2}x");
                rate_ratios.push(ratio);
            }
            None => {
                println!("orders/s: no pebble run completed in three attempts; no throughput ratio")
            }
        }
        println!();
    }
    if rounds > 1 {
        println!(
            "median of {rounds} rounds: CA CPU per certificate, pebble / certkeeper: {}; orders/s, certkeeper / pebble: {}",
            median(&mut cpu_ratios),
            median(&mut rate_ratios)
        );
    }
    Ok(())
}
