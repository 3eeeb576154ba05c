//! The command tree.

mod agent;
mod audit;
mod bench;
mod ca;
mod dns;
mod dns_bench;
mod keys;
mod secondary;
mod tlog;
mod up;

use clap::{Parser, Subcommand};

/// certkeeper keeps TLS certificates and keys alive, safely.
#[derive(Debug, Parser)]
#[command(name = "certkeeper", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The built-in private ACME certificate authority.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// The main job: built-in CA, a certificate for localhost, the HTTPS dashboard, API and metrics.
    Up(up::UpArgs),
    /// Show every managed certificate: names, issuer, expiry, next renewal, state, last error.
    Status {
        #[command(flatten)]
        config: agent::ConfigArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Renew one certificate now if due (or at once with --force, skipping backoff).
    Renew {
        /// The [[certificate]] name.
        name: String,
        #[command(flatten)]
        config: agent::ConfigArg,
        /// Renew even if not due, ignoring failure backoff.
        #[arg(long)]
        force: bool,
    },
    /// One pass for one certificate: obtain it if missing, renew it if due (for cron).
    Issue {
        /// The [[certificate]] name.
        name: String,
        #[command(flatten)]
        config: agent::ConfigArg,
    },
    /// Show each issuer's rate limits as the agent counts them: used / limit / window / next free slot.
    Limits {
        #[command(flatten)]
        config: agent::ConfigArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a certificate: a replacement is served first (the other slot, or a new
    /// certificate on a new key); keyCompromise is signed with the certificate's own key.
    Revoke {
        /// The [[certificate]] name.
        name: String,
        /// Which slot's certificate.
        #[arg(long, value_parser = parse_slot, default_value = "primary")]
        slot: certkeeper_agent::model::Slot,
        /// keyCompromise, superseded, cessationOfOperation, affiliationChanged or unspecified.
        #[arg(long, value_parser = parse_reason)]
        reason: certkeeper_agent::acme::RevocationReason,
        /// Revoke even when no replacement can be served (the service may go down).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        config: agent::ConfigArg,
    },
    /// Report a leaked key: block it, then replace and revoke (keyCompromise) every
    /// certificate that uses it.
    Compromised {
        /// The private key (PEM).
        #[arg(long, conflicts_with = "spki")]
        key: Option<std::path::PathBuf>,
        /// Or its SubjectPublicKeyInfo SHA-256, hex (as `status` shows it).
        #[arg(long)]
        spki: Option<String>,
        #[command(flatten)]
        config: agent::ConfigArg,
    },
    /// Show the lifecycle events (obtained, renewed, swapped, revoked, deployed, failed).
    Events {
        #[command(flatten)]
        config: agent::ConfigArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve the other slot of a certificate now (primary or backup).
    Swap {
        /// The [[certificate]] name.
        name: String,
        /// The slot to serve.
        #[arg(long, value_parser = parse_slot, default_value = "backup")]
        to: certkeeper_agent::model::Slot,
        #[command(flatten)]
        config: agent::ConfigArg,
    },
    /// Validate a configuration file without touching anything.
    CheckConfig {
        /// The file.
        file: std::path::PathBuf,
    },
    /// Load generators, to measure against a peer in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Print the shell completion script, e.g.
    /// `certkeeper completions bash > /etc/bash_completion.d/certkeeper`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// The key rotator: HPKE key configs and signing keys (pending → active → expired → deleted).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The built-in CA's transparency log: proofs, and audits by third parties.
    #[command(subcommand)]
    Tlog(tlog::TlogCommand),
    /// Certificates through DNS: publish a CSR, fetch the certificate (TLSA records).
    #[command(subcommand)]
    Dns(dns::DnsCommand),
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Ca(c) => ca::run(c).await,
        Command::Bench(c) => bench::run(c).await,
        Command::Tlog(c) => tlog::run(c).await,
        Command::Up(a) => up::run(a).await,
        Command::Status { config, json } => agent::status(&config, json).await,
        Command::Renew {
            name,
            config,
            force,
        } => agent::once(&config, &name, force).await,
        Command::Issue { name, config } => agent::once(&config, &name, false).await,
        Command::Limits { config, json } => agent::limits(&config, json).await,
        Command::CheckConfig { file } => agent::check_config(&file),
        Command::Revoke {
            name,
            slot,
            reason,
            force,
            config,
        } => agent::revoke(&config, &name, slot, reason, force).await,
        Command::Compromised { key, spki, config } => {
            agent::compromised(&config, key.as_deref(), spki.as_deref()).await
        }
        Command::Events { config, json } => agent::events(&config, json).await,
        Command::Swap { name, to, config } => agent::swap(&config, &name, to).await,
        Command::Keys(c) => keys::run(c).await,
        Command::Dns(c) => dns::run(c).await,
        Command::Audit(c) => audit::run(c),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "certkeeper",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

/// A request to stop (SIGTERM, what systemd and `docker stop` send, or
/// SIGINT, Ctrl-C) that any number of tasks can wait for: long-running
/// commands stop cleanly and exit 0.
#[derive(Clone, Debug)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    /// Installs the signal handlers now (until then SIGTERM kills the
    /// process) and starts waiting for one.
    pub fn listen() -> anyhow::Result<Shutdown> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| anyhow::anyhow!("cannot listen for SIGTERM: {e}"))?;
        let mut int = signal(SignalKind::interrupt())
            .map_err(|e| anyhow::anyhow!("cannot listen for SIGINT: {e}"))?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = int.recv() => tracing::info!("SIGINT: stopping"),
            }
            let _ = tx.send(true);
        });
        Ok(Shutdown(rx))
    }

    /// Completes once a stop was requested.
    pub async fn requested(mut self) {
        // An error means the listener is gone, which only happens after it
        // sent: either way, stop.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

fn parse_slot(s: &str) -> Result<certkeeper_agent::model::Slot, String> {
    s.parse()
}

fn parse_reason(s: &str) -> Result<certkeeper_agent::acme::RevocationReason, String> {
    s.parse()
        .map_err(|e: certkeeper_agent::acme::UnknownReason| e.to_string())
}
