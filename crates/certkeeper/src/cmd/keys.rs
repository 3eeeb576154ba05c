//! `certkeeper keys …`: the key rotator from the command line. The logic is
//! in `certkeeper-keys`; this file finds the configuration and prints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use certkeeper_keys::config::KeysConfig;
use certkeeper_keys::rotator::{SweepReport, meta};
use certkeeper_keys::{Kek, Rotator, signing};
use certkeeper_proto::{SystemClock, clock::rfc3339};
use certkeeper_store::Store;
use clap::Subcommand;

use crate::cmd::agent::ConfigArg;

/// The key rotator's commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new random key-encryption key file (0600); refuses to overwrite one.
    NewKek {
        /// The file, as `[keys] kek_file` names it.
        file: PathBuf,
    },
    /// Run one sweep now (in one transaction; safe beside a running daemon).
    Sweep {
        #[command(flatten)]
        config: ConfigArg,
        /// Print what a sweep would do, and why, without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the stored keys: kind, id, suite, state, since when (never key material).
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve /ohttp-keys and /.well-known/jwks.json, sweeping on the interval.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Listen address (default: `[keys] listen`).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
}

/// Runs one keys command.
pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::NewKek { file } => {
            Kek::generate_file(&file)?;
            println!(
                "{}: new key-encryption key (0600). Back it up: without it no stored private key opens.",
                file.display()
            );
            Ok(())
        }
        KeysCommand::Sweep {
            config,
            dry_run,
            json,
        } => sweep(&config, dry_run, json).await,
        KeysCommand::List { config, json } => list(&config, json).await,
        KeysCommand::Serve { config, listen } => serve(&config, listen).await,
    }
}

async fn open(arg: &ConfigArg) -> anyhow::Result<(KeysConfig, Store)> {
    let config = arg.load()?;
    let Some(keys) = config.keys.clone() else {
        anyhow::bail!(
            "the configuration has no [keys] section; add one (docs/config.md, \"Key rotation\")"
        );
    };
    let store = Store::open_dir(&config.data)
        .await
        .with_context(|| format!("opening the store in {}", config.data.display()))?;
    Ok((keys, store))
}

async fn sweep(arg: &ConfigArg, dry_run: bool, json: bool) -> anyhow::Result<()> {
    let (keys, store) = open(arg).await?;
    let kek = Arc::new(Kek::load(&keys.kek_file)?);
    let rotator = Rotator::new(store, kek, keys.policies()?, Arc::new(SystemClock));
    let report = if dry_run {
        rotator.dry_run().await?
    } else {
        rotator.sweep().await?
    };
    print_report(&report, dry_run, json)?;
    if !report.problems.is_empty() {
        anyhow::bail!("{}", report.problems.join("; "));
    }
    Ok(())
}

fn print_report(report: &SweepReport, dry_run: bool, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let verb = if dry_run { "would make" } else { "made" };
    for plan in &report.plans {
        println!("{}: {verb} {} change(s)", plan.kind, plan.ops.len());
        for op in &plan.ops {
            println!("  {op}");
        }
        for note in &plan.notes {
            println!("  note: {note}");
        }
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct Listed {
    kind: String,
    id: u8,
    suite: String,
    state: String,
    since: String,
    changed_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

async fn list(arg: &ConfigArg, json: bool) -> anyhow::Result<()> {
    let (_, store) = open(arg).await?;
    let mut out = Vec::new();
    for row in store.keys_all().await? {
        let m = meta(&row)?;
        let kid = signing::row_kid(&row)?;
        out.push(Listed {
            kind: row.kind.clone(),
            id: m.id,
            suite: m.suite.to_string(),
            state: m.state.to_string(),
            since: rfc3339(m.changed_at),
            changed_at: m.changed_at,
            kid,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{:<8} {:>3} {:<40} {:<8} {:<21} KID",
        "KIND", "ID", "SUITE", "STATE", "SINCE"
    );
    for k in &out {
        println!(
            "{:<8} {:>3} {:<40} {:<8} {:<21} {}",
            k.kind,
            k.id,
            k.suite,
            k.state,
            k.since,
            k.kid.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

async fn serve(arg: &ConfigArg, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    // SIGTERM (systemd, docker stop) stops cleanly, like the daemon.
    let shutdown = crate::cmd::Shutdown::listen()?;
    let (keys, store) = open(arg).await?;
    if listen.is_none() && keys.listen.is_none() {
        anyhow::bail!("nowhere to listen: pass --listen ADDR or set [keys] listen");
    }
    let running =
        certkeeper_keys::service::start(&keys, store, Arc::new(SystemClock), listen).await?;
    if let Some(addr) = running.listen {
        println!("serving http://{addr}/ohttp-keys and http://{addr}/.well-known/jwks.json");
    }
    println!("Ctrl-C or SIGTERM stops.");
    shutdown.requested().await;
    drop(running);
    Ok(())
}
