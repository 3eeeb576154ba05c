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
/// A zone no key may update.
const LOCKED_ZONE: &str = "locked.test";
/// A second updatable zone, the target of CNAME delegations.
const DELEGATED_ZONE: &str = "delegated.test";
/// Every zone a [`Bind`] serves.
const ZONES: [&str; 3] = [ZONE, LOCKED_ZONE, DELEGATED_ZONE];
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
///
/// It also serves `locked.test` (no `allow-update`: every UPDATE is
/// REFUSED) and `delegated.test` (updatable, the target of CNAME
/// delegations). [`Bind::start_with_secondary`] and
/// [`Bind::start_secondary`] make a primary/secondary pair (NOTIFY, then
/// IXFR/AXFR) whose zones list both as NS.
pub struct Bind {
    daemon: Daemon,
    ip: Ipv4Addr,
    port: u16,
    secondary_port: Option<u16>,
    secret_b64: String,
    dir: TempDir,
}

impl Bind {
    /// Writes the config and zone into a temp dir, starts `named -g` and
    /// waits until it answers the zone's SOA.
    pub fn start() -> anyhow::Result<Bind> {
        Bind::launch(Role::Primary { secondary: None })
    }

    /// A primary whose zones also name a secondary as `ns2.example.test`
    /// (A 127.0.0.1, on its own port: [`Bind::secondary_port`]), and which
    /// NOTIFYs it of every change. Start the secondary with
    /// [`Bind::start_secondary`]. (BIND listens only on interface
    /// addresses, so both share 127.0.0.1; clients map `ns2` to its port.)
    pub fn start_with_secondary() -> anyhow::Result<Bind> {
        Bind::launch(Role::Primary {
            secondary: Some(free_port_tcp_udp()),
        })
    }

    /// A secondary of every zone of `primary` (started with
    /// [`Bind::start_with_secondary`]), transferring on NOTIFY.
    pub fn start_secondary(primary: &Bind) -> anyhow::Result<Bind> {
        let port = primary
            .secondary_port
            .context("BIND: the primary was not started with start_with_secondary")?;
        Bind::launch(Role::Secondary {
            port,
            primary: primary.addr(),
            secret_b64: primary.secret_b64.clone(),
        })
    }

    /// The port the secondary of this primary listens on, if it has one.
    pub fn secondary_port(&self) -> Option<u16> {
        self.secondary_port
    }

    fn launch(role: Role) -> anyhow::Result<Bind> {
        let named = require_peer("named");
        require_peer("dig");
        let dir = tempdir("bind")?;
        let ip = Ipv4Addr::LOCALHOST;
        let (port, secret_b64, secondary_port) = match &role {
            Role::Primary { secondary } => (free_port_tcp_udp(), random_secret_b64()?, *secondary),
            Role::Secondary {
                port, secret_b64, ..
            } => (*port, secret_b64.clone(), None),
        };
        let d = dir.path().display().to_string();

        let notify = match &role {
            Role::Primary {
                secondary: Some(port2),
            } => format!("notify explicit;\n    also-notify {{ 127.0.0.1 port {port2}; }};"),
            _ => "notify no;".to_owned(),
        };
        let mut conf = format!(
            r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {port} {{ {ip}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ any; }};
    allow-transfer {{ any; }};
    dnssec-validation no;
    {notify}
}};
controls {{ }};
key "{TSIG_KEY_NAME}" {{
    algorithm {TSIG_ALGORITHM};
    secret "{secret_b64}";
}};
"#
        );
        for zone in ZONES {
            match &role {
                Role::Primary { secondary } => {
                    let update = if zone == LOCKED_ZONE {
                        String::new()
                    } else {
                        format!("\n    allow-update {{ key \"{TSIG_KEY_NAME}\"; }};")
                    };
                    conf.push_str(&format!(
                        "zone \"{zone}\" {{\n    type primary;\n    file \"{d}/{zone}.zone\";{update}\n}};\n"
                    ));
                    std::fs::write(
                        dir.path().join(format!("{zone}.zone")),
                        zone_file(zone, secondary.is_some()),
                    )
                    .context("BIND: writing a zone file")?;
                }
                Role::Secondary { primary, .. } => {
                    conf.push_str(&format!(
                        "zone \"{zone}\" {{\n    type secondary;\n    file \"{d}/{zone}.zone\";\n    primaries {{ {} port {}; }};\n}};\n",
                        primary.ip(),
                        primary.port()
                    ));
                }
            }
        }
        let conf_path = dir.path().join("named.conf");
        std::fs::write(&conf_path, conf).context("BIND: writing named.conf")?;

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
            ip,
            port,
            secondary_port,
            secret_b64,
            dir,
        };

        let probe_dir = bind.dir.path().to_path_buf();
        let soa_ready = || -> anyhow::Result<bool> {
            for zone in ZONES {
                let answers = dig(&probe_dir, ip, port, zone, "SOA", Duration::from_secs(1))?;
                if answers.is_empty() {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        bind.daemon.wait_ready(Duration::from_secs(15), soa_ready)?;
        Ok(bind)
    }

    /// The address named listens on (127.0.0.1 for a primary).
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// A zone the TSIG key may NOT update (no `allow-update`): `locked.test`.
    pub fn locked_zone(&self) -> &str {
        LOCKED_ZONE
    }

    /// A second updatable zone, for CNAME delegation: `delegated.test`.
    pub fn delegated_zone(&self) -> &str {
        DELEGATED_ZONE
    }

    /// The UDP and TCP port named listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`, for resolvers and `pebble -dnsserver`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.port))
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
        let mut script = format!("server {} {}\n", self.ip, self.port);
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
            self.ip,
            self.port,
            name,
            rtype,
            Duration::from_secs(2),
        )
    }
}

/// `dig @IP -p PORT NAME TYPE +short`, failing on timeouts.
fn dig(
    dir: &Path,
    ip: Ipv4Addr,
    port: u16,
    name: &str,
    rtype: &str,
    per_try: Duration,
) -> anyhow::Result<Vec<String>> {
    let mut cmd = Command::new(require_peer("dig"));
    cmd.arg(format!("@{ip}"))
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
        bail!("dig {name} {rtype} @{ip}:{port}: {err}");
    }
    Ok(stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// What a [`Bind`] is.
enum Role {
    /// The zones' primary; optionally with a secondary to NOTIFY and list as `ns2`.
    Primary { secondary: Option<u16> },
    /// A secondary of `primary`'s zones, on `port`.
    Secondary {
        port: u16,
        primary: SocketAddr,
        secret_b64: String,
    },
}

/// A zone file: every name resolves to 127.0.0.1; `ns` (and `ns2`, the
/// secondary) in `example.test` are the name servers of every zone.
fn zone_file(zone: &str, secondary: bool) -> String {
    let mut z = format!(
        "$ORIGIN {zone}.\n$TTL 60\n\
         @ IN SOA ns.{ZONE}. hostmaster.{ZONE}. ( 1 60 60 600 60 )\n\
         @ IN NS ns.{ZONE}.\n\
         @ IN A 127.0.0.1\n\
         * IN A 127.0.0.1\n"
    );
    if secondary {
        z.push_str(&format!("@ IN NS ns2.{ZONE}.\n"));
    }
    if zone == ZONE {
        z.push_str("ns IN A 127.0.0.1\n");
        if secondary {
            z.push_str("ns2 IN A 127.0.0.1\n");
        }
    }
    z
}

/// 32 random bytes from the kernel, base64-encoded, as a TSIG secret.
fn random_secret_b64() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("BIND: reading /dev/urandom for the TSIG secret")?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}
