//! `certkeeper bench dns` against a BIND 9 started here (the harness's
//! primary with TSIG): updates per second, ours vs nsupdate, in one run.
//! Run with `./scripts/bench-dns [UPDATES] [CONCURRENCY]`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let updates = args.first().map(String::as_str).unwrap_or("2000");
    let concurrency = args.get(1).map(String::as_str).unwrap_or("8");
    let bind = certkeeper_harness::Bind::start()?;
    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("tsig.secret");
    std::fs::write(&secret, bind.tsig_secret_b64())?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    let bin = std::env::var_os("CERTKEEPER_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/certkeeper")
        });
    let status = Command::new(bin)
        .args(["bench", "dns", "--server"])
        .arg(bind.addr().to_string())
        .args(["--zone", bind.zone(), "--tsig-key", bind.tsig_key_name()])
        .arg("--tsig-secret-file")
        .arg(&secret)
        .args(["--updates", updates, "--concurrency", concurrency])
        .status()?;
    anyhow::ensure!(status.success(), "bench dns failed");
    Ok(())
}
