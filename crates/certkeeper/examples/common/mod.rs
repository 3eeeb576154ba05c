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
