//! Mass re-issuance after an incident, in one run against our CA
//! (`certkeeper ca serve`, validating http-01 through BIND: wildcard
//! `*.example.test` → 127.0.0.1):
//! 1. the CA's ceiling: `certkeeper bench ca` (bare ACME flows, one account
//!    per worker) at the same concurrency;
//! 2. `certkeeper bench reissue`: the real daemon obtains CERTS
//!    certificates, then re-issues all of them after a mass revocation;
//! 3. the peer: lego obtaining LEGO certificates one after another, as an
//!    operator's script would (one lego at a time: its http-01 server needs
//!    the port the CA validates).
//!
//! Usage: `bench_reissue [CERTS [CONCURRENCY [LEGO]]]` (defaults 10000 32
//! 20), through `scripts/bench-reissue`. A measurement tool, not a test.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use certkeeper_harness::{
    Bind, CaOptions, CertkeeperCa, Lego, LegoChallenge, children_cpu_time, process_cpu_time,
};

#[allow(dead_code)] // not every example uses every shared helper
mod common;

/// A finished client run: its report, and the CPU the client and the CA
/// spent on it.
struct Run {
    report: String,
    client_cpu: Duration,
    ca_cpu: Duration,
}

fn run(cmd: &mut Command, what: &str, ca_pid: u32) -> anyhow::Result<Run> {
    let (client0, ca0) = (children_cpu_time()?, process_cpu_time(ca_pid)?);
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    let (client_cpu, ca_cpu) = (
        children_cpu_time()? - client0,
        process_cpu_time(ca_pid)? - ca0,
    );
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(out.status.success(), "{what} failed:\n{report}");
    Ok(Run {
        report,
        client_cpu,
        ca_cpu,
    })
}

impl Run {
    /// `client ms / certificate, CA ms / certificate` for `issued` certificates.
    fn cpu_line(&self, issued: usize) -> String {
        let per = |d: Duration| d.as_secs_f64() * 1000.0 / issued.max(1) as f64;
        format!(
            "  CPU per certificate: client {:.2} ms, CA {:.2} ms ({issued} issued)",
            per(self.client_cpu),
            per(self.ca_cpu)
        )
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let certs = args.next().unwrap_or_else(|| "10000".into());
    let concurrency = args.next().unwrap_or_else(|| "32".into());
    let lego_certs: usize = args.next().unwrap_or_else(|| "20".into()).parse()?;
    let bin = common::release_bin("scripts/bench-reissue")?;
    let bind = Bind::start()?;
    let ca = CertkeeperCa::start(
        &bin,
        CaOptions {
            dns_resolver: Some(bind.addr()),
            policy: Some(common::unreachable_limits_policy()),
            ..Default::default()
        },
    )?;
    let directory = ca.directory_url();
    let root = ca.root_pem_path();
    let port = ca.http01_port().to_string();
    let ca_pid = ca.pid().context("our CA is not running")?;
    let certs_n: usize = certs.parse().context("CERTS must be a number")?;
    let ceiling_orders = certs_n.clamp(100, 1000);

    let ceiling = run(
        Command::new(&bin)
            .args(["bench", "ca", "--directory", &directory, "--root"])
            .arg(&root)
            .args(["--concurrency", &concurrency, "--orders"])
            .arg(ceiling_orders.to_string())
            .args(["--http01-port", &port, "--domain-suffix", "example.test"]),
        "certkeeper bench ca",
        ca_pid,
    )?;
    println!(
        "== the CA's ceiling: bare ACME flows\n{}{}\n",
        ceiling.report,
        ceiling.cpu_line(ceiling_orders)
    );
    let ceiling_rate =
        common::number_after(&ceiling.report, "rate").context("no rate in bench ca's report")?;

    let reissue = run(
        Command::new(&bin)
            .args(["bench", "reissue", "--directory", &directory, "--root"])
            .arg(&root)
            .args(["--certs", &certs, "--concurrency", &concurrency])
            .args(["--http01-port", &port, "--domain-suffix", "example.test"])
            // One line per event would be the bench's largest cost.
            // `BENCH_REISSUE_LOG=warn,sqlx::query=debug` counts statements.
            .env(
                "CERTKEEPER_LOG",
                std::env::var("BENCH_REISSUE_LOG").unwrap_or_else(|_| "warn".into()),
            ),
        "certkeeper bench reissue",
        ca_pid,
    )?;
    // Both phases: each certificate obtained once and re-issued once.
    println!(
        "== certkeeper's daemon\n{}{}\n",
        reissue.report,
        reissue.cpu_line(2 * certs_n)
    );
    let agent_rate = common::number_after(&reissue.report, "reissue_rate")
        .context("no reissue_rate in the report")?;

    let lego = Lego::new(&directory, &root)?;
    let challenge = LegoChallenge::Http01 {
        port: ca.http01_port(),
    };
    let t = Instant::now();
    for i in 0..lego_certs {
        lego.run(&[&format!("lego{i}.example.test")], &challenge)?;
    }
    let lego_rate = lego_certs as f64 / t.elapsed().as_secs_f64();
    println!(
        "== lego, one after another\n  {lego_certs} certificates in {:.2?} ({lego_rate:.1} certificates/s)\n",
        t.elapsed()
    );

    println!(
        "re-issue rate, certkeeper daemon / lego: {:.1}x",
        agent_rate / lego_rate
    );
    println!(
        "re-issue rate, certkeeper daemon / the CA's ceiling (bench ca): {:.2}x",
        agent_rate / ceiling_rate
    );
    Ok(())
}
