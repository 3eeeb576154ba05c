//! Issuance with the transparency log on vs off, same machine, same run:
//! starts BIND (wildcard `*.example.test` → 127.0.0.1) and two
//! `certkeeper ca serve` (one with `--no-tlog`), then runs `certkeeper bench
//! ca` against them in turn, off/on twice, and prints orders/s of each and
//! the ratio. Then `certkeeper bench tlog`. Run through `scripts/bench-tlog`.
//!
//! A measurement tool, not a test: figures depend on the machine.

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use certkeeper_harness::{Bind, CaOptions, CertkeeperCa};

mod common;

fn rate(bin: &Path, ca: &CertkeeperCa, load: &[String; 2]) -> anyhow::Result<(f64, String)> {
    let pid = ca.pid().context("the CA is not running")?;
    let (cpu_before, switches_before) = (
        certkeeper_harness::process_cpu_time(pid)?,
        common::context_switches(pid)?,
    );
    let out = Command::new(bin)
        .args(["bench", "ca", "--directory", &ca.directory_url()])
        .args(["--concurrency", &load[0], "--orders", &load[1], "--root"])
        .arg(ca.root_pem_path())
        .args(["--http01-port", &ca.http01_port().to_string()])
        .args(["--domain-suffix", "example.test"])
        .output()
        .context("running certkeeper bench ca")?;
    let cpu = certkeeper_harness::process_cpu_time(pid)? - cpu_before;
    let switches = common::context_switches(pid)?.saturating_sub(switches_before);
    let mut report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let issued: f64 = load[1].parse().unwrap_or(1.0);
    report.push_str(&format!(
        "  CA CPU {:.2} ms, {:.0} context switches per certificate\n",
        cpu.as_secs_f64() * 1000.0 / issued,
        switches as f64 / issued
    ));
    let rate =
        common::number_after(&report, "rate").with_context(|| format!("no rate in:\n{report}"))?;
    Ok((rate, report))
}

fn main() -> anyhow::Result<()> {
    let load = common::load_args();
    let bin = common::release_bin("scripts/bench-tlog")?;
    let bind = Bind::start()?;
    let text = common::unreachable_limits_policy();
    let start = |extra: &[&str]| {
        CertkeeperCa::start(
            &bin,
            CaOptions {
                dns_resolver: Some(bind.addr()),
                policy: Some(text.clone()),
                extra_args: extra.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        )
    };
    let off = start(&["--no-tlog"])?;
    let on = start(&[])?;
    let (mut sum_off, mut sum_on) = (0.0, 0.0);
    for round in 1..=2 {
        let (r_off, rep_off) = rate(&bin, &off, &load)?;
        println!("== log off, round {round}\n{rep_off}");
        let (r_on, rep_on) = rate(&bin, &on, &load)?;
        println!("== log on, round {round}\n{rep_on}");
        sum_off += r_off;
        sum_on += r_on;
    }
    let list = on.list()?;
    let logged = list
        .as_array()
        .map(|a| a.iter().filter(|c| c["tlog_index"].is_u64()).count())
        .unwrap_or(0);
    println!(
        "issuance, {} workers x {} orders, mean of 2 rounds: log off {:.1} orders/s, log on {:.1} orders/s: on/off = {:.2} ({logged} certificates logged)",
        load[0],
        load[1],
        sum_off / 2.0,
        sum_on / 2.0,
        sum_on / sum_off
    );
    let out = Command::new(&bin).args(["bench", "tlog"]).output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}
