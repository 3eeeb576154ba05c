//! `certkeeper dns`: the service side of certificates distributed as TLSA
//! records — publish a CSR, fetch and check the certificate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use certkeeper_agent::tlsa_fetch::{csr_der, verify_and_write};
use certkeeper_dns::tlsa::{fetch, publish_csr, tlsa_name};
use certkeeper_dns::{Server, TsigAlgorithm, TsigKey, UpdateClient, discover_zone, fqdn};
use certkeeper_proto::{Clock, SystemClock};
use clap::Subcommand;

/// DNS subcommands.
#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Publish a CSR for KEY as `3 255 0` at _letsencrypt._tcp.HOST (RFC 2136 + TSIG).
    Request {
        /// The host the certificate is for.
        #[arg(long)]
        host: String,
        /// The service's private key (PKCS#8 PEM); it never leaves this machine.
        #[arg(long)]
        key: PathBuf,
        /// Names in the CSR (default: the host).
        #[arg(long, value_delimiter = ',')]
        names: Vec<String>,
        /// The zone's primary, ADDRESS:PORT.
        #[arg(long)]
        server: SocketAddr,
        /// The zone (default: found by SOA).
        #[arg(long)]
        zone: Option<String>,
        /// TSIG key name.
        #[arg(long)]
        tsig_key: String,
        /// hmac-sha256 (default), hmac-sha384, hmac-sha512.
        #[arg(long, default_value = "hmac-sha256")]
        tsig_algorithm: String,
        /// File with the TSIG secret (mode 0600).
        #[arg(long)]
        tsig_secret_file: PathBuf,
        /// TTL of the record.
        #[arg(long, default_value_t = 300)]
        ttl: u32,
    },
    /// Fetch the certificate at _letsencrypt._tcp.HOST, check it, write PEM files.
    Fetch {
        /// The host.
        #[arg(long)]
        host: String,
        /// The service's private key: the certificate must be for it.
        #[arg(long)]
        key: PathBuf,
        /// Names the certificate must cover (default: the host).
        #[arg(long, value_delimiter = ',')]
        names: Vec<String>,
        /// Where to write cert.pem, chain.pem, fullchain.pem.
        #[arg(long)]
        out: PathBuf,
        /// An authoritative server of the zone, ADDRESS:PORT.
        #[arg(long)]
        server: SocketAddr,
        /// PEM file of the roots the chain must build to.
        #[arg(long)]
        roots: PathBuf,
        /// Keep running: fetch again before renewal is due, and whenever the records change.
        #[arg(long)]
        watch: bool,
        /// With --watch: how often to look.
        #[arg(long, default_value_t = 3600)]
        interval_seconds: u64,
    },
    /// The certificate secondary ([dns_secondary]): order and publish
    /// certificates for the CSRs found in the watched zones.
    Secondary {
        /// Read the zones once, do what is due for every host, and exit
        /// (without it: the daemon, as `certkeeper up --config`).
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        config: crate::cmd::agent::ConfigArg,
    },
}

/// Runs a dns subcommand.
pub async fn run(cmd: DnsCommand) -> anyhow::Result<()> {
    match cmd {
        DnsCommand::Secondary { once: true, config } => crate::cmd::secondary::once(&config).await,
        DnsCommand::Secondary {
            once: false,
            config,
        } => crate::cmd::agent::daemon(config.load()?).await,
        DnsCommand::Request {
            host,
            key,
            names,
            server,
            zone,
            tsig_key,
            tsig_algorithm,
            tsig_secret_file,
            ttl,
        } => {
            let key_pem = std::fs::read_to_string(&key)
                .with_context(|| format!("reading the key {}", key.display()))?;
            let names = if names.is_empty() {
                vec![host.clone()]
            } else {
                names
            };
            let csr = csr_der(&key_pem, &names).map_err(anyhow::Error::msg)?;
            let algorithm = TsigAlgorithm::parse(&tsig_algorithm)?;
            let tsig = TsigKey::from_file(&tsig_key, algorithm, &tsig_secret_file)?;
            let client = UpdateClient::new(Server::new(server), tsig, Arc::new(SystemClock));
            let zone = match zone {
                Some(z) => fqdn(&z)?,
                None => discover_zone(client.server(), &tlsa_name(&host)?).await?,
            };
            let changed = publish_csr(&client, &zone, &host, ttl, &csr).await?;
            println!(
                "{} CSR for {} at {} ({} bytes)",
                if changed {
                    "published"
                } else {
                    "already published:"
                },
                names.join(", "),
                tlsa_name(&host)?,
                csr.len()
            );
            Ok(())
        }
        DnsCommand::Fetch {
            host,
            key,
            names,
            out,
            server,
            roots,
            watch,
            interval_seconds,
        } => {
            let key_pem = std::fs::read_to_string(&key)
                .with_context(|| format!("reading the key {}", key.display()))?;
            let roots_pem = std::fs::read(&roots)
                .with_context(|| format!("reading the roots {}", roots.display()))?;
            let names = if names.is_empty() {
                vec![host.clone()]
            } else {
                names
            };
            let server = Server::new(server);
            if interval_seconds == 0 {
                bail!("--interval-seconds must be > 0");
            }
            loop {
                let result = async {
                    let set = fetch(&server, &host).await?;
                    verify_and_write(
                        &host,
                        &set,
                        &key_pem,
                        &names,
                        &roots_pem,
                        SystemClock.now(),
                        &out,
                    )
                    .map_err(anyhow::Error::msg)
                }
                .await;
                match (&result, watch) {
                    (Ok(f), _) => println!(
                        "{} serial {} (not after {}) in {}",
                        if f.written { "wrote" } else { "unchanged:" },
                        f.serial,
                        certkeeper_proto::clock::rfc3339(f.not_after),
                        out.display()
                    ),
                    (Err(e), true) => eprintln!("fetch failed, trying again later: {e:#}"),
                    (Err(_), false) => {}
                }
                if !watch {
                    return result.map(|_| ());
                }
                // Before renewal is due (a third of the lifetime left) and at
                // least every interval, so a renewal is picked up promptly.
                let mut sleep = interval_seconds;
                if let Ok(f) = &result {
                    let now = SystemClock.now();
                    let due = f.not_after - (f.not_after - f.not_before) / 3;
                    if due > now {
                        sleep = sleep.min(u64::try_from(due - now).unwrap_or(sleep).max(1));
                    }
                }
                tokio::time::sleep(Duration::from_secs(sleep)).await;
            }
        }
    }
}
