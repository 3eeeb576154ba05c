//! What the CA benchmark examples share: their arguments, the release
//! binary, and a policy whose limits no bench reaches.

use std::path::PathBuf;

/// `CONCURRENCY ORDERS` from the command line (defaults 32 300).
pub fn load_args() -> [String; 2] {
    let mut args = std::env::args().skip(1);
    [
        args.next().unwrap_or_else(|| "32".into()),
        args.next().unwrap_or_else(|| "300".into()),
    ]
}

/// The release binary (`CERTKEEPER_BIN` overrides); `script` builds it.
pub fn release_bin(script: &str) -> anyhow::Result<PathBuf> {
    let bin = std::env::var_os("CERTKEEPER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/certkeeper"));
    anyhow::ensure!(
        bin.exists(),
        "{} missing: run {script} (it builds the release binary)",
        bin.display()
    );
    Ok(bin)
}

/// The default policy with the limits a bench would hit lifted out of
/// reach: pebble enforces none, and the issuance path is what is measured
/// (the GCRA bookkeeping itself still runs).
pub fn unreachable_limits_policy() -> String {
    let mut text = certkeeper_ca::policy::DEFAULT_POLICY.to_string();
    for limit in [
        "NewRegistrationsPerIPAddress",
        "NewOrdersPerAccount",
        "CertificatesPerDomain",
    ] {
        text = text.replace(
            &format!("[limits.{limit}]\ncount = "),
            &format!("[limits.{limit}]\ncount = 1000000000 # "),
        );
    }
    text
}

/// Context switches (voluntary and involuntary) of every live thread of a
/// process so far, from `/proc/PID/task/*/status`: what the CA profile
/// found its CPU going to (thread hand-offs), counted directly. Threads
/// that exited are missed, so compare runs of long-lived servers only.
pub fn context_switches(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue; // the thread exited meanwhile
        };
        for line in status.lines() {
            if let Some(n) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total = total.saturating_add(n.trim().parse().unwrap_or(0));
            }
        }
    }
    Ok(total)
}

/// The number after `label` in a bench report line, e.g. `rate` in
/// `  rate   239.2 orders/s`.
pub fn number_after(report: &str, label: &str) -> Option<f64> {
    report.lines().find_map(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        let i = words.iter().position(|w| *w == label)?;
        words.get(i + 1)?.parse().ok()
    })
}
