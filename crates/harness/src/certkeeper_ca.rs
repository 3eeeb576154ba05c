//! Our own CA, run as the real binary (`certkeeper ca serve`) exactly as a
//! user would, so tests exercise the CLI too.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::process::{self, Daemon};
use crate::tls::https_get;
use crate::{free_port, tempdir};

/// Options for [`CertkeeperCa::start`].
#[derive(Clone, Debug, Default)]
pub struct CaOptions {
    /// `--dns-resolver` (the harness BIND, usually).
    pub dns_resolver: Option<SocketAddr>,
    /// `--http01-port`; a free port when 0.
    pub http01_port: u16,
    /// `--tlsalpn01-port`; a free port when 0.
    pub tlsalpn01_port: u16,
    /// Policy file contents; written beside the data and passed as `--policy`.
    pub policy: Option<String>,
    /// Further arguments.
    pub extra_args: Vec<String>,
}

/// A running `certkeeper ca serve`; dropping it kills the process.
pub struct CertkeeperCa {
    daemon: Option<Daemon>,
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    options: CaOptions,
}

impl CertkeeperCa {
    /// Starts the CA from binary `bin` on free loopback ports in a temp data
    /// directory and waits for its directory to answer.
    pub fn start(bin: &Path, mut options: CaOptions) -> anyhow::Result<CertkeeperCa> {
        if options.http01_port == 0 {
            options.http01_port = free_port();
        }
        if options.tlsalpn01_port == 0 {
            options.tlsalpn01_port = free_port();
        }
        let dir = tempdir("ca")?;
        if let Some(policy) = options.policy.take() {
            let path = dir.path().join("policy.toml");
            std::fs::write(&path, policy).with_context(|| format!("writing {}", path.display()))?;
            options
                .extra_args
                .extend(["--policy".to_string(), path.display().to_string()]);
        }
        let mut ca = CertkeeperCa {
            daemon: None,
            bin: bin.to_path_buf(),
            dir,
            port: free_port(),
            options,
        };
        ca.launch()?;
        Ok(ca)
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["ca", "serve", "--data"])
            .arg(self.data_dir())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--http01-port")
            .arg(self.options.http01_port.to_string())
            .arg("--tlsalpn01-port")
            .arg(self.options.tlsalpn01_port.to_string())
            .args(&self.options.extra_args);
        if let Some(dns) = self.options.dns_resolver {
            cmd.arg("--dns-resolver").arg(dns.to_string());
        }
        process::no_proxy(&mut cmd);
        let log = self.dir.path().join("ca.log");
        // Append across restarts so one log tells the whole story.
        let mut daemon = Daemon::spawn_appending("certkeeper ca", &mut cmd, log)?;
        let root = self.root_pem_path();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        daemon.wait_ready(Duration::from_secs(20), || {
            if !root.exists() {
                return Ok(false);
            }
            let (status, _) = https_get(addr, "localhost", "/directory", &root_der(&root)?)?;
            Ok(status == 200)
        })?;
        self.daemon = Some(daemon);
        Ok(())
    }

    /// Kills the CA (SIGKILL: no graceful shutdown, like a crash).
    pub fn kill(&mut self) {
        self.daemon = None;
    }

    /// Kills the CA and starts it again on the same port and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.launch()
    }

    /// The CA's process id (benchmarks read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Daemon::pid)
    }

    /// The data directory (`--data`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The root certificate clients must trust.
    pub fn root_pem_path(&self) -> PathBuf {
        self.data_dir().join("ca/root.pem")
    }

    /// `https://localhost:PORT/directory`.
    pub fn directory_url(&self) -> String {
        format!("https://localhost:{}/directory", self.port)
    }

    /// `https://localhost:PORT/tlog/`: the transparency log's tiles.
    pub fn tlog_url(&self) -> String {
        format!("https://localhost:{}/tlog/", self.port)
    }

    /// The log's checkpoint verifier key (`DATA/ca/tlog.pub`, a signed-note
    /// verifier string).
    pub fn tlog_public_key(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("ca/tlog.pub"))
            .expect("DATA/ca/tlog.pub")
            .trim()
            .to_string()
    }

    /// The HTTPS port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port the CA validates http-01 on.
    pub fn http01_port(&self) -> u16 {
        self.options.http01_port
    }

    /// The port the CA validates tls-alpn-01 on.
    pub fn tlsalpn01_port(&self) -> u16 {
        self.options.tlsalpn01_port
    }

    /// `certkeeper ca list --json`, parsed.
    pub fn list(&self) -> anyhow::Result<serde_json::Value> {
        let out = process::run(
            Command::new(&self.bin)
                .args(["ca", "list", "--json", "--data"])
                .arg(self.data_dir()),
            "certkeeper ca list",
            self.dir.path(),
            Duration::from_secs(30),
        )?;
        serde_json::from_slice(&out.stdout).context("parsing `certkeeper ca list --json`")
    }

    /// How many certificates the CA has issued (`ca list`).
    pub fn issued_count(&self) -> anyhow::Result<usize> {
        let list = self.list()?;
        list.as_array()
            .map(Vec::len)
            .with_context(|| format!("`ca list --json` is not an array: {list}"))
    }

    /// The CRL the CA serves, DER.
    pub fn crl_der(&self) -> anyhow::Result<Vec<u8>> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let (status, body) = https_get(
            addr,
            "localhost",
            "/crl/intermediate.crl",
            &root_der(&self.root_pem_path())?,
        )?;
        anyhow::ensure!(status == 200, "CRL fetch answered HTTP {status}");
        Ok(body)
    }

    /// The CA's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ca.log")).unwrap_or_default()
    }
}

fn root_der(path: &Path) -> anyhow::Result<CertificateDer<'static>> {
    CertificateDer::from_pem_file(path).with_context(|| format!("reading {}", path.display()))
}
