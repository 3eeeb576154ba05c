//! Agent commands on a configuration file: `status`, `renew`, `issue`,
//! `check-config`, and `up --config` (the daemon).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use certkeeper_agent::config::Config;
use certkeeper_agent::daemon::{Agent, Outcome};
use certkeeper_ca::policy::Policy;
use certkeeper_ca::{CaConfig, SystemClock};
use certkeeper_store::Store;
use clap::Args;

/// `--config FILE`, shared by the agent commands.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Configuration file (see docs/config.md).
    #[arg(long, default_value = "certkeeper.toml")]
    pub config: PathBuf,
}

async fn agent(path: &Path) -> anyhow::Result<Agent> {
    let config = Config::load(path)?;
    let store = Store::open_dir(&config.data)
        .await
        .with_context(|| format!("opening the store in {}", config.data.display()))?;
    Ok(Agent::new(config, store))
}

/// `certkeeper check-config FILE`.
pub fn check_config(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    println!(
        "{}: OK ({} issuer(s), {} certificate(s))",
        path.display(),
        config.issuers.len(),
        config.certificates.len()
    );
    Ok(())
}

/// `certkeeper status`.
pub async fn status(path: &Path, json: bool) -> anyhow::Result<()> {
    let rows = agent(path).await?.status().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<16} {:<10} {:<21} {:<21} NAMES",
        "NAME", "STATE", "ISSUER", "NOT AFTER", "NEXT RENEWAL"
    );
    for r in &rows {
        println!(
            "{:<16} {:<16} {:<10} {:<21} {:<21} {}",
            r.name,
            r.state,
            r.issuer,
            r.not_after.as_deref().unwrap_or("-"),
            r.next_renewal.as_deref().unwrap_or("-"),
            r.names.join(",")
        );
        if let Some(e) = &r.last_error {
            println!("  last error ({} failure(s)): {e}", r.failures);
        }
    }
    Ok(())
}

/// `certkeeper renew NAME [--force]` and `certkeeper issue NAME`: one pass
/// over one certificate, as cron would run it.
pub async fn once(path: &Path, name: &str, force: bool) -> anyhow::Result<()> {
    let mut agent = agent(path).await?;
    let _ca = start_builtin_ca(agent.config()).await?;
    match agent.run_once(name, force).await? {
        Outcome::Obtained(serial) => println!("{name}: obtained serial {serial}"),
        Outcome::Waiting(until) => println!(
            "{name}: nothing due; next action at {} (use --force to renew now)",
            certkeeper_ca::objects::rfc3339(until)
        ),
    }
    Ok(())
}

/// `certkeeper up --config FILE`: the daemon.
pub async fn daemon(path: &Path) -> anyhow::Result<()> {
    let mut agent = agent(path).await?;
    let ca = start_builtin_ca(agent.config()).await?;
    if let Some(ca) = &ca {
        println!("built-in CA: {}", ca.directory_url);
    }
    println!(
        "certkeeper agent: {} certificate(s) managed; Ctrl-C stops",
        agent.config().certificates.len()
    );
    tokio::select! {
        r = agent.run_forever() => r.map_err(Into::into),
        _ = tokio::signal::ctrl_c() => { println!("stopping"); Ok(()) }
    }
}

/// Starts the built-in CA when the configuration asks for it.
async fn start_builtin_ca(config: &Config) -> anyhow::Result<Option<certkeeper_ca::RunningCa>> {
    let Some(ca) = &config.builtin_ca else {
        return Ok(None);
    };
    let running = certkeeper_ca::start(
        CaConfig {
            data_dir: config.data.join("builtin-ca"),
            listen: ca.listen,
            dns_resolver: None,
            http01_port: ca.http01_port,
            tlsalpn01_port: 443,
            policy: Policy::builtin(),
            eab_required: false,
        },
        Arc::new(SystemClock),
    )
    .await
    .context("starting the built-in CA")?;
    Ok(Some(running))
}
