//! Let's Encrypt's pebble ACME test server, on free loopback ports.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::process::{self, Daemon};
use crate::tls::{TestCa, https_get};
use crate::{Bind, free_port, require_peer, tempdir};

/// A running `pebble` whose ACME and management listeners use a [`TestCa`]
/// certificate for `localhost`/127.0.0.1; the process is killed on drop.
///
/// Pebble validates http-01 on [`Pebble::http01_port`] and tls-alpn-01 on
/// [`Pebble::tlsalpn01_port`] of whatever address the identifier resolves
/// to, so start it with a [`Bind`] (`-dnsserver`) for `*.example.test`.
pub struct Pebble {
    daemon: Daemon,
    acme_port: u16,
    management_port: u16,
    http01_port: u16,
    tlsalpn01_port: u16,
    tls: TestCa,
    dir: TempDir,
}

impl Pebble {
    /// Writes pebble's config, starts it (with `-dnsserver` pointing at
    /// `dns` if given) with `PEBBLE_VA_NOSLEEP=1` plus `env`, and waits
    /// until the directory answers over HTTPS.
    ///
    /// Useful `env`: `PEBBLE_VA_ALWAYS_VALID=1`, `PEBBLE_WFE_NONCEREJECT=0`
    /// (pebble rejects 5% of nonces by default), `PEBBLE_AUTHZREUSE=0`,
    /// `PEBBLE_CHAIN_LENGTH`, `PEBBLE_ALTERNATE_ROOTS`.
    pub fn start(dns: Option<&Bind>, env: &[(&str, &str)]) -> anyhow::Result<Pebble> {
        let pebble = require_peer("pebble");
        let dir = tempdir("pebble")?;
        let tls = TestCa::new(dir.path()).context("pebble: generating its listener certificate")?;
        let acme_port = free_port();
        let management_port = distinct_free_port(&[acme_port]);
        let http01_port = distinct_free_port(&[acme_port, management_port]);
        let tlsalpn01_port = distinct_free_port(&[acme_port, management_port, http01_port]);

        let config = format!(
            r#"{{
  "pebble": {{
    "listenAddress": "127.0.0.1:{acme_port}",
    "managementListenAddress": "127.0.0.1:{management_port}",
    "certificate": {cert},
    "privateKey": {key},
    "httpPort": {http01_port},
    "tlsPort": {tlsalpn01_port},
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }}
}}
"#,
            cert = json_string(tls.cert_pem_path()),
            key = json_string(tls.key_pem_path()),
        );
        let config_path = dir.path().join("pebble-config.json");
        std::fs::write(&config_path, config).context("pebble: writing its config")?;

        let mut cmd = Command::new(pebble);
        cmd.arg("-config").arg(&config_path);
        if let Some(bind) = dns {
            cmd.arg("-dnsserver").arg(bind.addr().to_string());
        }
        cmd.env("PEBBLE_VA_NOSLEEP", "1").current_dir(dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        process::no_proxy(&mut cmd);
        let daemon = Daemon::spawn("pebble", &mut cmd, dir.path().join("pebble.log"))?;
        let mut pebble = Pebble {
            daemon,
            acme_port,
            management_port,
            http01_port,
            tlsalpn01_port,
            tls,
            dir,
        };

        let acme_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, acme_port));
        let ca = pebble.tls.ca_der().clone();
        pebble.daemon.wait_ready(Duration::from_secs(15), || {
            let (status, _) = https_get(acme_addr, "localhost", "/dir", &ca)?;
            Ok(status == 200)
        })?;
        Ok(pebble)
    }

    /// pebble's process id (benchmarks read its CPU time).
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The ACME directory URL, `https://localhost:PORT/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://localhost:{}/dir", self.acme_port)
    }

    /// The ACME listener's port on 127.0.0.1.
    pub fn acme_port(&self) -> u16 {
        self.acme_port
    }

    /// The management listener's port (roots, intermediates, cert status).
    pub fn management_port(&self) -> u16 {
        self.management_port
    }

    /// Port pebble's VA connects to for http-01: the client's solver must listen here.
    pub fn http01_port(&self) -> u16 {
        self.http01_port
    }

    /// Port pebble's VA connects to for tls-alpn-01.
    pub fn tlsalpn01_port(&self) -> u16 {
        self.tlsalpn01_port
    }

    /// PEM of the CA that signed pebble's HTTPS listener certificate: the
    /// trust anchor an ACME client needs to talk to pebble.
    pub fn tls_ca_pem_path(&self) -> &Path {
        self.tls.ca_pem_path()
    }

    /// The listener's [`TestCa`], for Rust clients' root stores.
    pub fn tls_ca(&self) -> &TestCa {
        &self.tls
    }

    /// The root that issued pebble's certificates (regenerated on every
    /// start), from the management port's `/roots/0`.
    pub fn issuing_root_pem(&self) -> anyhow::Result<String> {
        self.management_get("/roots/0")
    }

    /// The intermediate that issued pebble's certificates, from `/intermediates/0`.
    pub fn intermediate_pem(&self) -> anyhow::Result<String> {
        self.management_get("/intermediates/0")
    }

    /// Writes [`Pebble::issuing_root_pem`] into pebble's temp dir and returns the path.
    pub fn issuing_root_pem_path(&self) -> anyhow::Result<std::path::PathBuf> {
        let path = self.dir.path().join("issuing-root.pem");
        std::fs::write(&path, self.issuing_root_pem()?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Pebble's record of the certificate in `cert_pem` (the first PEM block),
    /// from `/cert-status-by-serial/SERIAL`: JSON with `Status` (`Valid` or
    /// `Revoked`), `Reason` and `RevokedAt`.
    pub fn cert_status(&self, cert_pem: &Path) -> anyhow::Result<String> {
        let serial = crate::openssl_serial_hex(cert_pem)?;
        self.management_get(&format!("/cert-status-by-serial/{serial}"))
    }

    /// The temp dir holding the config, TLS material and `pebble.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The tail of pebble's log, for diagnosing a failed test.
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }

    fn management_get(&self, path: &str) -> anyhow::Result<String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.management_port));
        let (status, body) =
            https_get(addr, "localhost", path, self.tls.ca_der()).with_context(|| {
                format!(
                    "pebble: GET https://localhost:{}{path}",
                    self.management_port
                )
            })?;
        let body = String::from_utf8(body).context("pebble: management response is not UTF-8")?;
        if status != 200 {
            bail!(
                "pebble: GET https://localhost:{}{path} answered {status}: {body}",
                self.management_port
            );
        }
        Ok(body)
    }
}

/// A free port not in `taken` (ports are released right after probing, so
/// back-to-back probes could otherwise repeat).
fn distinct_free_port(taken: &[u16]) -> u16 {
    loop {
        let p = free_port();
        if !taken.contains(&p) {
            return p;
        }
    }
}

/// A path as a JSON string literal.
fn json_string(path: &Path) -> String {
    let s = path.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
