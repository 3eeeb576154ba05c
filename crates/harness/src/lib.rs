//! Real peers for certkeeper's integration tests.
//!
//! DESIGN.md asks for "real peers, not mocks": this crate starts BIND 9,
//! pebble, certbot, lego and openssl on free loopback ports in temporary
//! directories and stops the long-running ones when their handle is dropped.
//!
//! Everything here is synchronous (`std::process`) and needs no async
//! runtime, so it can be called from `#[tokio::test]` functions as well as
//! plain `#[test]`s. Waits poll briefly and give up after a few seconds with
//! an error that names the peer, the command and the tail of its log.
//!
//! The calls block. When the server under test runs on the test's own tokio
//! runtime (certkeeper's CA answering lego or certbot), use
//! `#[tokio::test(flavor = "multi_thread")]` or wrap the call in
//! `tokio::task::spawn_blocking`; on a current-thread runtime the server
//! could not answer while the client blocks, and the client would time out.
//!
//! A missing peer binary is a test *failure* (see [`require_peer`]): run
//! `./scripts/test`, which installs them.
//!
//! Set `CERTKEEPER_HARNESS_KEEP=1` to keep the temporary directories (configs,
//! logs, certificates) after the test for inspection.

mod agent_dir;
mod bind;
mod certkeeper_ca;
mod clients;
mod pebble;
mod process;
mod tls;

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub use agent_dir::{AgentDir, Daemon, wait_for};
pub use bind::Bind;
pub use certkeeper_ca::{CaOptions, CertkeeperCa};
pub use clients::{Certbot, CertbotCert, Lego, LegoCert, LegoChallenge};
pub use pebble::Pebble;
pub use tls::TestCa;

/// Directories searched for peer binaries besides `$PATH`: Debian puts
/// `named` in /usr/sbin, which is not on a non-root user's PATH.
const EXTRA_BIN_DIRS: &[&str] = &[
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/local/sbin",
    "/usr/local/bin",
];

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
pub fn process_cpu_time(pid: u32) -> anyhow::Result<std::time::Duration> {
    // utime and stime: the 12th and 13th fields after the command name.
    stat_cpu_time(&format!("/proc/{pid}/stat"), 11)
}

/// CPU time (user + system) of this process's children that have exited
/// and been waited for (`cutime` + `cstime` in `/proc/self/stat`).
pub fn children_cpu_time() -> anyhow::Result<std::time::Duration> {
    stat_cpu_time("/proc/self/stat", 13)
}

/// The sum of two adjacent tick counts in a `/proc/…/stat` file, starting at
/// field `first` after the parenthesised command name.
fn stat_cpu_time(path: &str, first: usize) -> anyhow::Result<std::time::Duration> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("no CPU times in {path}"))
    };
    let ticks = field(first)? + field(first + 1)?;
    // Linux reports in USER_HZ, which is 100 on every architecture Debian ships.
    Ok(std::time::Duration::from_millis(ticks * 10))
}

/// The serial (lowercase hex) of the certificate a TLS server on
/// 127.0.0.1:`port` presents for `name`, after a full handshake verified
/// against the root(s) in `root_pem` (one file may hold several, e.g. two
/// CAs' roots); `None` when nothing answers or verification fails.
pub fn served_serial(root_pem: &Path, port: u16, name: &str) -> Option<String> {
    use rustls::pki_types::pem::PemObject;
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    for root in rustls::pki_types::CertificateDer::pem_file_iter(root_pem).ok()? {
        roots.add(root.ok()?).ok()?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).ok()?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server_name).ok()?;
    let mut sock = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).ok()?;
    }
    let leaf = conn.peer_certificates()?.first()?.clone();
    openssl_serial_of_der(&leaf)
}

/// A DER certificate's serial as lowercase hex, via `openssl x509`.
fn openssl_serial_of_der(der: &[u8]) -> Option<String> {
    use std::io::Write;
    let mut child = Command::new(require_peer("openssl"))
        .args(["x509", "-inform", "DER", "-noout", "-serial"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(der).ok()?;
    let out = child.wait_with_output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.trim().strip_prefix("serial=")?.to_lowercase())
}

/// Ports tests listen on come from below the kernel's ephemeral range
/// (32768–60999 here, `net.ipv4.ip_local_port_range`), so no outgoing
/// connection of any process can take one between the moment it is chosen
/// and the moment a peer binds it — with `bind(0)` that happened (a daemon
/// restarted on its old http-01 port found it taken by a client socket).
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_768;

/// A TCP port on 127.0.0.1 that was free a moment ago, for a peer to listen on.
///
/// The port is released before returning; it lies outside the ephemeral
/// range, so only another test choosing the same one could take it.
pub fn free_port() -> u16 {
    unused_port(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok())
}

/// A port on 127.0.0.1 free for both UDP and TCP, for a DNS server.
pub fn free_port_tcp_udp() -> u16 {
    unused_port(|port| {
        UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
            && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
    })
}

/// A random port of [`TEST_PORTS`] for which `is_free` holds, reserved for
/// this process until it exits. Random rather than sequential so parallel
/// test processes rarely try the same one.
///
/// Free is not enough: a port a test chose but binds only later (the port
/// a CA validates http-01 on, which the test's responder takes at some
/// point) looks free to every other chooser meanwhile. So each port handed
/// out holds an exclusive lock on a file named after it for the rest of the
/// process, and a port whose file another process (or this one) has locked
/// is skipped. The kernel drops the locks when the process exits, however
/// it exits.
fn unused_port(is_free: impl Fn(u16) -> bool) -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let span = u64::from(TEST_PORTS.end - TEST_PORTS.start);
    let seed = RandomState::new();
    for attempt in 0u64..1000 {
        let offset = u16::try_from(seed.hash_one(attempt) % span).expect("below span");
        let port = TEST_PORTS.start + offset;
        if reserve(port) && is_free(port) {
            return port;
        }
    }
    panic!("no port of {TEST_PORTS:?} on 127.0.0.1 was free after 1000 attempts");
}

/// Takes `port` for this process (see [`unused_port`]); false when some
/// process, this one included, already holds it.
fn reserve(port: u16) -> bool {
    use std::sync::Mutex;
    static HELD: Mutex<Vec<(u16, std::fs::File)>> = Mutex::new(Vec::new());
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    if held.iter().any(|(p, _)| *p == port) {
        return false;
    }
    let dir = std::env::temp_dir().join("certkeeper-test-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return true; // no reservations possible: fall back to "free now"
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
    else {
        return true;
    };
    if file.try_lock().is_err() {
        return false;
    }
    held.push((port, file));
    true
}

/// Path of a peer binary; panics (so the test fails instead of skipping)
/// when the peer is not installed.
pub fn require_peer(bin: &str) -> PathBuf {
    find_peer(bin)
        .unwrap_or_else(|| panic!("peer {bin} missing: run ./scripts/test which installs it"))
}

/// Looks `bin` up in `$PATH` and the usual system directories.
fn find_peer(bin: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(EXTRA_BIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(bin))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Whether this process runs as root, which decides `named -u root`.
pub(crate) fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective uid; no libc (and no unsafe) needed.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Verifies a PEM chain (leaf first, then intermediates, as ACME servers
/// deliver it) against `root_pem` with `openssl verify`, as an independent
/// cross-check of what a CA issued.
pub fn openssl_verify(root_pem: &Path, chain_pem: &Path) -> anyhow::Result<()> {
    let openssl = require_peer("openssl");
    let chain = std::fs::read_to_string(chain_pem)
        .with_context(|| format!("reading chain {}", chain_pem.display()))?;
    let certs = split_pem_certificates(&chain);
    let Some((leaf, intermediates)) = certs.split_first() else {
        bail!("{} contains no PEM CERTIFICATE block", chain_pem.display());
    };
    let dir = tempdir("openssl-verify")?;
    let leaf_path = dir.path().join("leaf.pem");
    std::fs::write(&leaf_path, leaf)?;
    let mut cmd = Command::new(openssl);
    cmd.arg("verify").arg("-CAfile").arg(root_pem);
    if !intermediates.is_empty() {
        let inter_path = dir.path().join("intermediates.pem");
        std::fs::write(&inter_path, intermediates.concat())?;
        cmd.arg("-untrusted").arg(inter_path);
    }
    cmd.arg(&leaf_path);
    let out = process::run(
        &mut cmd,
        "openssl verify",
        dir.path(),
        std::time::Duration::from_secs(20),
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.contains(": OK") {
        bail!(
            "openssl verify of {} against {} did not say OK:\n{stdout}",
            chain_pem.display(),
            root_pem.display()
        );
    }
    Ok(())
}

/// A plain HTTP/1.1 GET of `http://ADDR/PATH` (no TLS, no redirects, read
/// to the end): the status code and the body.
pub fn http_get(url: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url} is not an http:// URL"))?;
    let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut sock =
        std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = Vec::new();
    sock.read_to_end(&mut out)
        .with_context(|| format!("reading {url}"))?;
    let at = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("{url}: no end of headers"))?;
    let status = std::str::from_utf8(&out[..at])
        .ok()
        .and_then(|head| head.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("{url}: no status line"))?;
    Ok((status, out.split_off(at + 4)))
}

/// Runs the real `openssl` with `args` and returns its stdout; panics (with
/// its output) when it fails: for tests that drive openssl step by step.
pub fn openssl(args: &[&str]) -> String {
    let out = Command::new(require_peer("openssl"))
        .args(args)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// TLSA records (as `dig +short` prints them) by their first three fields,
/// sorted, e.g. `["0 0 0", "3 0 0", "3 255 0"]`.
pub fn tlsa_kinds(records: &[String]) -> Vec<String> {
    let mut k: Vec<String> = records
        .iter()
        .map(|r| r.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect();
    k.sort();
    k
}

/// The first TLSA record of `kind` (e.g. `"3 0 0"`), or "" when none.
pub fn tlsa_record<'a>(records: &'a [String], kind: &str) -> &'a str {
    records
        .iter()
        .find(|r| r.starts_with(&format!("{kind} ")))
        .map(String::as_str)
        .unwrap_or("")
}

/// The serial number of the first certificate in `cert_pem`, in lowercase
/// hex as `openssl x509 -serial` reports it (no `0x`).
pub fn openssl_serial_hex(cert_pem: &Path) -> anyhow::Result<String> {
    let dir = tempdir("openssl-serial")?;
    let mut cmd = Command::new(require_peer("openssl"));
    cmd.args(["x509", "-noout", "-serial", "-in"]).arg(cert_pem);
    let out = process::run(
        &mut cmd,
        "openssl x509 -serial",
        dir.path(),
        std::time::Duration::from_secs(20),
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let serial = stdout.trim().strip_prefix("serial=").with_context(|| {
        format!(
            "openssl x509 -serial printed {stdout:?} for {}",
            cert_pem.display()
        )
    })?;
    Ok(serial.to_ascii_lowercase())
}

/// Splits PEM text into its CERTIFICATE blocks (each with a trailing newline).
pub fn split_pem_certificates(pem: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        let end = start + end + END.len();
        out.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    out
}

/// A temporary directory for one peer, kept when `CERTKEEPER_HARNESS_KEEP` is set.
pub(crate) fn tempdir(peer: &str) -> anyhow::Result<tempfile::TempDir> {
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("certkeeper-{peer}-"))
        .tempdir()
        .with_context(|| format!("creating a temporary directory for {peer}"))?;
    if std::env::var_os("CERTKEEPER_HARNESS_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!(
            "certkeeper-harness: keeping {peer} directory {}",
            dir.path().display()
        );
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_fullchain() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\n-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        let certs = split_pem_certificates(pem);
        assert_eq!(certs.len(), 2);
        assert!(certs[0].contains("AAA") && certs[1].contains("BBB"));
    }

    #[test]
    fn free_ports_are_bindable() {
        let p = free_port_tcp_udp();
        UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
        TcpListener::bind((Ipv4Addr::LOCALHOST, free_port())).unwrap();
    }

    /// A port handed out is never handed out again while its holder runs,
    /// even though nothing listens on it yet.
    #[test]
    fn a_chosen_port_is_reserved_until_the_process_exits() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
        assert!(!reserve(ports[0]), "a held port was reserved again");
    }

    #[test]
    #[should_panic(expected = "peer certkeeper-no-such-peer missing: run ./scripts/test")]
    fn missing_peer_fails_the_test() {
        require_peer("certkeeper-no-such-peer");
    }
}
