//! A real BIND 9 authoritative server with a TSIG key and a dynamic zone.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use tempfile::TempDir;

use crate::process::{self, Daemon};
use crate::{free_port_tcp_udp, require_peer, running_as_root, tempdir};

/// Zone served by [`Bind`]; every name in it resolves to 127.0.0.1.
const ZONE: &str = "example.test";
/// TSIG key name allowed to update [`ZONE`].
const TSIG_KEY_NAME: &str = "certkeeper-test.";
/// TSIG algorithm of the key, as BIND and nsupdate spell it.
const TSIG_ALGORITHM: &str = "hmac-sha256";

/// A running `named` on 127.0.0.1 (UDP and TCP), authoritative for the
/// dynamic zone `example.test`, updatable with the TSIG key
/// `certkeeper-test.`; the process is killed on drop.
///
/// The zone holds SOA, `NS ns.example.test.`, `A 127.0.0.1` for the apex,
/// `ns` and a wildcard, so any name under it resolves to loopback (for
/// http-01/tls-alpn-01 validation) and `_acme-challenge` TXT records can be
/// added by RFC 2136 UPDATE (dns-01).
pub struct Bind {
    daemon: Daemon,
    port: u16,
    secret_b64: String,
    dir: TempDir,
}

impl Bind {
    /// Writes the config and zone into a temp dir, starts `named -g` and
    /// waits until it answers the zone's SOA.
    pub fn start() -> anyhow::Result<Bind> {
        let named = require_peer("named");
        require_peer("dig");
        let dir = tempdir("bind")?;
        let port = free_port_tcp_udp();
        let secret_b64 = random_secret_b64()?;
        let d = dir.path().display().to_string();

        let conf = format!(
            r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ any; }};
    allow-transfer {{ any; }};
    dnssec-validation no;
    notify no;
}};
controls {{ }};
key "{TSIG_KEY_NAME}" {{
    algorithm {TSIG_ALGORITHM};
    secret "{secret_b64}";
}};
zone "{ZONE}" {{
    type primary;
    file "{d}/{ZONE}.zone";
    allow-update {{ key "{TSIG_KEY_NAME}"; }};
}};
"#
        );
        let zone = format!(
            "$ORIGIN {ZONE}.\n$TTL 60\n\
             @ IN SOA ns.{ZONE}. hostmaster.{ZONE}. ( 1 60 60 600 60 )\n\
             @ IN NS ns.{ZONE}.\n\
             @ IN A 127.0.0.1\n\
             ns IN A 127.0.0.1\n\
             * IN A 127.0.0.1\n"
        );
        let conf_path = dir.path().join("named.conf");
        std::fs::write(&conf_path, conf).context("BIND: writing named.conf")?;
        std::fs::write(dir.path().join(format!("{ZONE}.zone")), zone)
            .context("BIND: writing the zone file")?;

        let mut cmd = Command::new(named);
        // -g: foreground, log to stderr; -4: no IPv6 sockets at all.
        cmd.arg("-g").arg("-4");
        if running_as_root() {
            cmd.args(["-u", "root"]);
        }
        cmd.arg("-c").arg(&conf_path).current_dir(dir.path());
        let daemon = Daemon::spawn("BIND (named)", &mut cmd, dir.path().join("named.log"))?;
        let mut bind = Bind {
            daemon,
            port,
            secret_b64,
            dir,
        };

        let probe_dir = bind.dir.path().to_path_buf();
        let soa_ready = || -> anyhow::Result<bool> {
            let answers = dig(&probe_dir, port, ZONE, "SOA", Duration::from_secs(1))?;
            Ok(!answers.is_empty())
        };
        bind.daemon.wait_ready(Duration::from_secs(15), soa_ready)?;
        Ok(bind)
    }

    /// The UDP and TCP port named listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`, for resolvers and `pebble -dnsserver`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The dynamic zone this server is authoritative for (`example.test`).
    pub fn zone(&self) -> &str {
        ZONE
    }

    /// Name of the TSIG key allowed to update the zone (`certkeeper-test.`).
    pub fn tsig_key_name(&self) -> &str {
        TSIG_KEY_NAME
    }

    /// The TSIG secret in standard base64 (32 random bytes per server).
    pub fn tsig_secret_b64(&self) -> &str {
        &self.secret_b64
    }

    /// The TSIG algorithm (`hmac-sha256`).
    pub fn tsig_algorithm(&self) -> &str {
        TSIG_ALGORITHM
    }

    /// The temp dir holding `named.conf`, the zone, its journal and `named.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The tail of named's log, for diagnosing a failed test.
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }

    /// Sends an RFC 2136 UPDATE with the real `nsupdate`, signed with the
    /// zone's TSIG key. `commands` are nsupdate lines without `server` or
    /// `send`, e.g. `"update add x.example.test. 60 TXT \"v\""`; a `zone`
    /// line is added unless present.
    pub fn nsupdate(&self, commands: &str) -> anyhow::Result<()> {
        let nsupdate = require_peer("nsupdate");
        let mut script = format!("server 127.0.0.1 {}\n", self.port);
        if !commands
            .lines()
            .any(|l| l.trim_start().starts_with("zone "))
        {
            script.push_str(&format!("zone {ZONE}.\n"));
        }
        script.push_str(commands.trim_end());
        script.push_str("\nsend\n");
        let mut cmd = Command::new(nsupdate);
        cmd.arg("-t").arg("5").arg("-y").arg(format!(
            "{TSIG_ALGORITHM}:{TSIG_KEY_NAME}:{}",
            self.secret_b64
        ));
        process::run_with_stdin(
            &mut cmd,
            "nsupdate",
            self.dir.path(),
            Some(&script),
            Duration::from_secs(15),
        )
        .with_context(|| {
            format!(
                "BIND: nsupdate script:\n{script}\n--- named log (tail) ---\n{}",
                self.log_tail()
            )
        })?;
        Ok(())
    }

    /// Queries this server with the real `dig +short`; returns the answer
    /// lines (TXT data comes back quoted, as dig prints it).
    pub fn dig(&self, name: &str, rtype: &str) -> anyhow::Result<Vec<String>> {
        dig(
            self.dir.path(),
            self.port,
            name,
            rtype,
            Duration::from_secs(2),
        )
    }
}

/// `dig @127.0.0.1 -p PORT NAME TYPE +short`, failing on timeouts.
fn dig(
    dir: &Path,
    port: u16,
    name: &str,
    rtype: &str,
    per_try: Duration,
) -> anyhow::Result<Vec<String>> {
    let mut cmd = Command::new(require_peer("dig"));
    cmd.arg("@127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .arg(name)
        .arg(rtype)
        .arg("+short")
        .arg("+norecurse")
        .arg(format!("+time={}", per_try.as_secs().max(1)))
        .arg("+tries=2");
    let out = process::run(&mut cmd, "dig", dir, per_try * 3 + Duration::from_secs(2))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Some(err) = stdout.lines().find(|l| l.starts_with(";;")) {
        bail!("dig {name} {rtype} @127.0.0.1:{port}: {err}");
    }
    Ok(stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// 32 random bytes from the kernel, base64-encoded, as a TSIG secret.
fn random_secret_b64() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("BIND: reading /dev/urandom for the TSIG secret")?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}
