//! The real ACME clients certbot and lego, each confined to its own temp dir
//! and trusting only the given CA bundle.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::Context;
use tempfile::TempDir;

use crate::process;
use crate::{Bind, require_peer, tempdir};

/// Upper bound for one certbot or lego invocation.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

/// Variables through which the machine points TLS clients at the system
/// bundle; each is overridden so the client trusts only the test CA.
const CA_BUNDLE_VARS: &[&str] = &["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"];

/// Points every CA-bundle variable at `ca_pem` and drops proxies.
fn trust_only(cmd: &mut Command, ca_pem: &Path) {
    for v in CA_BUNDLE_VARS {
        cmd.env(v, ca_pem);
    }
    cmd.env_remove("SSL_CERT_DIR");
    process::no_proxy(cmd);
}

/// The real certbot (Python, `requests`), with its config, work and log
/// directories in a temp dir, talking to one ACME directory.
pub struct Certbot {
    dir: TempDir,
    directory_url: String,
    ca_pem: PathBuf,
}

/// Files certbot wrote for one certificate lineage (under `live/NAME/`).
pub struct CertbotCert {
    /// Leaf followed by the intermediates.
    pub fullchain: PathBuf,
    /// The leaf's private key.
    pub privkey: PathBuf,
    /// The leaf alone.
    pub cert: PathBuf,
    /// The intermediates alone.
    pub chain: PathBuf,
    /// certbot's stdout/stderr.
    pub output: Output,
}

impl Certbot {
    /// A certbot for the ACME directory at `directory_url`, trusting only
    /// `ca_pem` for the directory's HTTPS listener.
    pub fn new(directory_url: &str, ca_pem: &Path) -> anyhow::Result<Certbot> {
        require_peer("certbot");
        Ok(Certbot {
            dir: tempdir("certbot")?,
            directory_url: directory_url.to_string(),
            ca_pem: ca_pem.to_path_buf(),
        })
    }

    /// certbot's temp dir (`config/`, `work/`, `logs/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `certbot SUBCOMMAND` with the server, directories, trust and
    /// non-interactive flags set, for invocations the helpers do not cover.
    pub fn command(&self, subcommand: &str) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new(require_peer("certbot"));
        cmd.arg(subcommand)
            .arg("--non-interactive")
            .arg("--server")
            .arg(&self.directory_url)
            .arg("--config-dir")
            .arg(d.join("config"))
            .arg("--work-dir")
            .arg(d.join("work"))
            .arg("--logs-dir")
            .arg(d.join("logs"))
            .current_dir(d);
        trust_only(&mut cmd, &self.ca_pem);
        cmd
    }

    /// `certbot certonly --standalone` for `domains` (first one names the
    /// lineage), answering http-01 on 127.0.0.1:`http01_port`; `extra`
    /// flags are appended (e.g. `--force-renewal`, `--key-type rsa`).
    pub fn certonly_standalone(
        &self,
        domains: &[&str],
        http01_port: u16,
        extra: &[&str],
    ) -> anyhow::Result<CertbotCert> {
        let name = *domains.first().context("certbot: no domains given")?;
        let mut cmd = self.command("certonly");
        cmd.args([
            "--standalone",
            "--preferred-challenges",
            "http-01",
            "--agree-tos",
            "--register-unsafely-without-email",
        ])
        .args(["--http-01-address", "127.0.0.1", "--http-01-port"])
        .arg(http01_port.to_string())
        .args(["--cert-name", name]);
        for d in domains {
            cmd.arg("-d").arg(d);
        }
        cmd.args(extra);
        let output = process::run(
            &mut cmd,
            "certbot certonly",
            self.dir.path(),
            CLIENT_TIMEOUT,
        )
        .with_context(|| {
            format!(
                "certbot certonly for {domains:?} against {}",
                self.directory_url
            )
        })?;
        let live = self.dir.path().join("config").join("live").join(name);
        Ok(CertbotCert {
            fullchain: live.join("fullchain.pem"),
            privkey: live.join("privkey.pem"),
            cert: live.join("cert.pem"),
            chain: live.join("chain.pem"),
            output,
        })
    }

    /// `certbot revoke --cert-path CERT --reason REASON` (certbot's reason
    /// names: `unspecified`, `keycompromise`, `affiliationchanged`,
    /// `superseded`, `cessationofoperation`), keeping the files. Signed by
    /// the account key, or by the certificate's own key when `key_path` is given.
    pub fn revoke(
        &self,
        cert_path: &Path,
        key_path: Option<&Path>,
        reason: &str,
    ) -> anyhow::Result<Output> {
        let mut cmd = self.command("revoke");
        cmd.arg("--cert-path").arg(cert_path).args([
            "--reason",
            reason,
            "--no-delete-after-revoke",
        ]);
        if let Some(key) = key_path {
            cmd.arg("--key-path").arg(key);
        }
        process::run(&mut cmd, "certbot revoke", self.dir.path(), CLIENT_TIMEOUT).with_context(
            || {
                format!(
                    "certbot revoke {} against {}",
                    cert_path.display(),
                    self.directory_url
                )
            },
        )
    }
}

/// How lego proves control of the names.
pub enum LegoChallenge<'a> {
    /// http-01 with lego's own server on 127.0.0.1:port.
    Http01 {
        /// Port the CA's validator connects to.
        port: u16,
    },
    /// tls-alpn-01 with lego's own server on 127.0.0.1:port.
    TlsAlpn01 {
        /// Port the CA's validator connects to.
        port: u16,
    },
    /// dns-01 through RFC 2136 UPDATE + TSIG to this BIND, which also
    /// serves as lego's resolver.
    Dns01Rfc2136 {
        /// The authoritative server for the names.
        bind: &'a Bind,
    },
}

/// The real lego (Go), keeping its account and certificates in a temp dir,
/// talking to one ACME directory.
pub struct Lego {
    dir: TempDir,
    directory_url: String,
    ca_pem: PathBuf,
}

/// Files lego wrote for one certificate (under `certificates/`).
pub struct LegoCert {
    /// Leaf followed by the issuer chain (lego bundles by default).
    pub cert: PathBuf,
    /// The leaf's private key.
    pub key: PathBuf,
    /// The issuer chain alone.
    pub issuer: PathBuf,
    /// lego's stdout/stderr.
    pub output: Output,
}

impl Lego {
    /// A lego for the ACME directory at `directory_url`, trusting only
    /// `ca_pem` (via `LEGO_CA_CERTIFICATES`).
    pub fn new(directory_url: &str, ca_pem: &Path) -> anyhow::Result<Lego> {
        require_peer("lego");
        Ok(Lego {
            dir: tempdir("lego")?,
            directory_url: directory_url.to_string(),
            ca_pem: ca_pem.to_path_buf(),
        })
    }

    /// lego's `--path` (`accounts/`, `certificates/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `lego` with server, path, account, trust and the challenge's global
    /// flags set, before the subcommand, for invocations the helpers do not cover.
    pub fn command(&self, domains: &[&str], challenge: Option<&LegoChallenge<'_>>) -> Command {
        let mut cmd = Command::new(require_peer("lego"));
        cmd.arg("--server")
            .arg(&self.directory_url)
            .args(["--email", "test@example.test", "--accept-tos"])
            .arg("--path")
            .arg(self.dir.path())
            .current_dir(self.dir.path())
            .env("LEGO_CA_CERTIFICATES", &self.ca_pem)
            .env_remove("LEGO_PATH");
        trust_only(&mut cmd, &self.ca_pem);
        for d in domains {
            cmd.arg("--domains").arg(d);
        }
        match challenge {
            None => {}
            Some(LegoChallenge::Http01 { port }) => {
                cmd.arg("--http")
                    .arg("--http.port")
                    .arg(format!("127.0.0.1:{port}"));
            }
            Some(LegoChallenge::TlsAlpn01 { port }) => {
                cmd.arg("--tls")
                    .arg("--tls.port")
                    .arg(format!("127.0.0.1:{port}"));
            }
            Some(LegoChallenge::Dns01Rfc2136 { bind }) => {
                // The zone's NS (ns.example.test) points at port 53, where
                // nothing listens: ask only our BIND (--dns.resolvers) and skip
                // the authoritative-servers propagation check (--dns.disable-cp).
                cmd.args([
                    "--dns",
                    "rfc2136",
                    "--dns.disable-cp",
                    "--dns-timeout",
                    "5",
                    "--dns.resolvers",
                ])
                .arg(bind.addr().to_string())
                .env("RFC2136_NAMESERVER", bind.addr().to_string())
                .env("RFC2136_TSIG_KEY", bind.tsig_key_name())
                .env("RFC2136_TSIG_SECRET", bind.tsig_secret_b64())
                // lego (miekg/dns) names algorithms as FQDNs.
                .env(
                    "RFC2136_TSIG_ALGORITHM",
                    format!("{}.", bind.tsig_algorithm()),
                )
                .env("RFC2136_TTL", "60")
                .env("RFC2136_POLLING_INTERVAL", "1")
                .env("RFC2136_PROPAGATION_TIMEOUT", "30")
                // Two names sharing one TXT owner (a name and its wildcard) are
                // solved one after the other; the default pause is 60 s.
                .env("RFC2136_SEQUENCE_INTERVAL", "1");
            }
        }
        cmd
    }

    /// `lego ... run`: registers (once) and obtains a certificate for
    /// `domains`; the files are named after the first domain (`*` → `_`).
    pub fn run(&self, domains: &[&str], challenge: &LegoChallenge<'_>) -> anyhow::Result<LegoCert> {
        let name = domains
            .first()
            .context("lego: no domains given")?
            .replace('*', "_");
        let mut cmd = self.command(domains, Some(challenge));
        cmd.arg("run");
        let output = process::run(&mut cmd, "lego run", self.dir.path(), CLIENT_TIMEOUT)
            .with_context(|| format!("lego run for {domains:?} against {}", self.directory_url))?;
        let certs = self.dir.path().join("certificates");
        Ok(LegoCert {
            cert: certs.join(format!("{name}.crt")),
            key: certs.join(format!("{name}.key")),
            issuer: certs.join(format!("{name}.issuer.crt")),
            output,
        })
    }

    /// `lego ... revoke --reason N --keep` for the certificate obtained for
    /// `domains` (RFC 5280 reason code, 1 = keyCompromise), signed by the account key.
    pub fn revoke(&self, domains: &[&str], reason: u8) -> anyhow::Result<Output> {
        let mut cmd = self.command(domains, None);
        cmd.args(["revoke", "--keep", "--reason"])
            .arg(reason.to_string());
        process::run(&mut cmd, "lego revoke", self.dir.path(), CLIENT_TIMEOUT)
            .with_context(|| format!("lego revoke for {domains:?} against {}", self.directory_url))
    }
}
