//! Agent commands on a configuration file: `status`, `renew`, `issue`,
//! `check-config`, and `up --config` (the daemon).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use certkeeper_agent::acme::RevocationReason;
use certkeeper_agent::config::Config;
use certkeeper_agent::daemon::{Agent, Outcome};
use certkeeper_agent::model::Slot;
use certkeeper_ca::policy::Policy;
use certkeeper_ca::{CaConfig, SystemClock};
use certkeeper_store::Store;
use clap::Args;

/// Where the agent commands find their configuration, one rule for all:
/// `--config FILE` when given; else `./certkeeper.toml` when it exists; else
/// the embedded defaults that `certkeeper up` recorded in `--data`
/// (default `certkeeper-data`), so every command works right after `up`.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Configuration file (see docs/config.md).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory of `certkeeper up` run without --config.
    #[arg(long, default_value = "certkeeper-data")]
    pub data: PathBuf,
}

impl ConfigArg {
    /// The configuration by the rule above.
    pub fn load(&self) -> anyhow::Result<Config> {
        if let Some(path) = &self.config {
            return Ok(Config::load(path)?);
        }
        let local = Path::new("certkeeper.toml");
        if local.exists() {
            return Ok(Config::load(local)?);
        }
        match crate::cmd::up::recorded_defaults(&self.data)? {
            Some(config) => Ok(config),
            None => anyhow::bail!(
                "no configuration: pass --config FILE, create ./certkeeper.toml, or run `certkeeper up` first \
                 (it records its defaults in {}; point elsewhere with --data DIR)",
                self.data.display()
            ),
        }
    }
}

/// How long a command waits for its event hooks before exiting.
const HOOK_FLUSH: std::time::Duration = std::time::Duration::from_secs(30);

async fn agent(arg: &ConfigArg) -> anyhow::Result<Arc<Agent>> {
    let config = arg.load()?;
    let store = Store::open_dir(&config.data)
        .await
        .with_context(|| format!("opening the store in {}", config.data.display()))?;
    let config = crate::cmd::secondary::with_discovered(config, &store).await?;
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

/// `certkeeper status`: both slots of every certificate, which is served,
/// and the blocked-key registry.
pub async fn status(path: &ConfigArg, json: bool) -> anyhow::Result<()> {
    let agent = agent(path).await?;
    let report = agent.status().await?;
    if json {
        let mut value = serde_json::to_value(&report)?;
        let hosts = crate::cmd::secondary::status_json(agent.config(), agent.store()).await?;
        if let (Some(map), false) = (value.as_object_mut(), hosts.is_null()) {
            map.insert("dns_secondary".into(), hosts);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<8} {:<10} {:<16} {:<21} {:<21} {:<22} SERIAL",
        "NAME", "SLOT", "ISSUER", "STATE", "NOT AFTER", "NEXT RENEWAL", "HEALTH"
    );
    for r in &report.certificates {
        for s in &r.slots {
            let served = if s.slot == r.served { "*" } else { " " };
            println!(
                "{:<16} {:<8} {:<10} {:<16} {:<21} {:<21} {:<22} {}",
                r.name,
                format!("{}{served}", s.slot),
                s.issuer,
                s.state,
                s.not_after.as_deref().unwrap_or("-"),
                s.next_renewal.as_deref().unwrap_or("-"),
                s.health.to_string(),
                s.serial.as_deref().unwrap_or("-"),
            );
            if let Some(e) = &s.last_error {
                println!("  last error ({} failure(s)): {e}", s.failures);
            }
        }
        println!("  names: {}", r.names.join(","));
    }
    println!("(* = served)");
    for t in &report.transparency {
        println!(
            "transparency log of {}: {} (verified size {}{}{})",
            t.issuer,
            t.log,
            t.verified_size,
            t.polled_at
                .as_deref()
                .map_or(String::new(), |p| format!(", polled {p}")),
            t.last_error
                .as_deref()
                .map_or(String::new(), |e| format!(", last poll failed: {e}")),
        );
        for a in &t.alerts {
            println!("  ALERT {} at {}: {}", a.kind, a.at, a.detail);
        }
    }
    for line in crate::cmd::secondary::status_lines(agent.config(), agent.store()).await? {
        println!("{line}");
    }
    if !report.blocked_keys.is_empty() {
        println!("blocked keys (never used again):");
        for k in &report.blocked_keys {
            println!(
                "  {} {} ({}, {})",
                k.spki_sha256,
                k.reason,
                k.source,
                certkeeper_ca::objects::rfc3339(k.blocked_at)
            );
        }
    }
    Ok(())
}

/// `certkeeper events`: the lifecycle events recorded in the store, oldest first.
pub async fn events(path: &ConfigArg, json: bool) -> anyhow::Result<()> {
    let config = path.load()?;
    let store = Store::open_dir(&config.data)
        .await
        .with_context(|| format!("opening the store in {}", config.data.display()))?;
    let events = store.events_since(0, 10_000).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(());
    }
    for e in &events {
        println!(
            "{} {:<12} {:<16} {:<8} {}",
            certkeeper_ca::objects::rfc3339(e.at),
            e.kind,
            e.name,
            e.slot,
            e.detail
        );
    }
    Ok(())
}

/// `certkeeper revoke NAME`: replacement first, then revocation.
pub async fn revoke(
    path: &ConfigArg,
    name: &str,
    slot: Slot,
    reason: RevocationReason,
    force: bool,
) -> anyhow::Result<()> {
    let agent = agent(path).await?;
    let _ca = start_builtin_ca(agent.config()).await?;
    let done = agent.revoke(name, slot, reason, force).await;
    agent.events().flush(HOOK_FLUSH).await;
    let done = done?;
    print_revoked(&done, reason);
    println!(
        "  the running daemon (or the next `certkeeper issue {name}`) re-keys and re-issues the {} slot",
        done.slot
    );
    Ok(())
}

fn print_revoked(done: &certkeeper_agent::revocation::Revoked, reason: RevocationReason) {
    let already = if done.already_revoked {
        " (the CA had already revoked it)"
    } else {
        ""
    };
    println!(
        "{}: {} serial {} revoked ({reason}){already}",
        done.name, done.slot, done.serial
    );
    match &done.replacement {
        Some(serial) => println!("  now serving serial {serial}"),
        None => println!("  it was not served; nothing else changed"),
    }
}

/// `certkeeper compromised --key FILE | --spki HEX`.
pub async fn compromised(
    path: &ConfigArg,
    key: Option<&Path>,
    spki: Option<&str>,
) -> anyhow::Result<()> {
    let spki = match (key, spki) {
        (Some(file), None) => {
            let pem = std::fs::read_to_string(file)
                .with_context(|| format!("reading the key {}", file.display()))?;
            certkeeper_agent::x509::key_spki_sha256(&pem)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
        }
        (None, Some(hex)) => {
            anyhow::ensure!(
                hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
                "--spki must be the 64-hex-digit SHA-256 of the key's SubjectPublicKeyInfo (as `certkeeper status` shows it)"
            );
            hex.to_ascii_lowercase()
        }
        _ => anyhow::bail!("give exactly one of --key FILE or --spki SHA256"),
    };
    let agent = agent(path).await?;
    let _ca = start_builtin_ca(agent.config()).await?;
    let results = agent.compromised(&spki).await;
    agent.events().flush(HOOK_FLUSH).await;
    let results = results?;
    println!("key {spki} blocked: no certificate will use it again");
    let mut failed = 0;
    for r in &results {
        match r {
            Ok(done) => print_revoked(done, RevocationReason::KeyCompromise),
            Err(e) => {
                failed += 1;
                println!("  failed: {e}");
            }
        }
    }
    if results.is_empty() {
        println!("no managed certificate uses it");
    }
    if !results.is_empty() {
        println!(
            "  the running daemon (or `certkeeper issue NAME`) re-keys and re-issues every revoked slot"
        );
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} revocation(s) failed; run the command again"
    );
    Ok(())
}

/// `certkeeper swap NAME --to SLOT`: serve the other slot now. A running
/// daemon notices within a second (the store's generation changes) and
/// swaps its resolver and files; without one, `issue` deploys it.
pub async fn swap(path: &ConfigArg, name: &str, to: Slot) -> anyhow::Result<()> {
    let agent = agent(path).await?;
    agent.swap(name, to).await?;
    println!("{name}: now serving the {to} certificate");
    // Without a daemon, write the files now.
    let done = agent.run_once(name, false).await;
    agent.events().flush(HOOK_FLUSH).await;
    done?;
    Ok(())
}

/// `certkeeper limits`: per issuer, each limit the agent enforces for the
/// configured certificates, how much is used, and when the next slot frees.
/// Reads the store only: nothing is sent to any CA.
pub async fn limits(path: &ConfigArg, json: bool) -> anyhow::Result<()> {
    let rows = agent(path).await?.limits().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<10} {:<24} {:>11} {:>7} {:<21} SUBJECT",
        "ISSUER", "LIMIT", "USED/LIMIT", "WINDOW", "NEXT FREE"
    );
    for r in &rows {
        let used = if r.limit == "Retry-After" {
            "-".to_string()
        } else {
            format!("{}/{}", r.used, r.max)
        };
        println!(
            "{:<10} {:<24} {:>11} {:>7} {:<21} {}",
            r.issuer,
            r.limit,
            used,
            r.window,
            r.next_free.as_deref().unwrap_or("now"),
            r.subject
        );
    }
    if rows.is_empty() {
        println!("no limits configured (see `limits` under [[issuer]] in docs/config.md)");
    }
    Ok(())
}

/// `certkeeper renew NAME [--force]` and `certkeeper issue NAME`: one pass
/// over one certificate, as cron would run it.
pub async fn once(path: &ConfigArg, name: &str, force: bool) -> anyhow::Result<()> {
    let agent = agent(path).await?;
    let _ca = start_builtin_ca(agent.config()).await?;
    let outcome = agent.run_once(name, force).await;
    agent.events().flush(HOOK_FLUSH).await;
    match outcome? {
        Outcome::Obtained(serial) => println!("{name}: obtained serial {serial}"),
        Outcome::Waiting(until) => println!(
            "{name}: nothing due; next action at {} (use --force to renew now)",
            certkeeper_ca::objects::rfc3339(until)
        ),
    }
    Ok(())
}

/// The daemon (`certkeeper up`): the built-in CA if configured, the status
/// page, then the agent's passes until SIGTERM or SIGINT. The first pass
/// runs every certificate concurrently (bounded by the runner), so a large
/// inventory does not wait in line before the daemon is up.
pub async fn daemon(config: Config) -> anyhow::Result<()> {
    // From here on SIGTERM stops cleanly, even during start-up.
    let shutdown = crate::cmd::Shutdown::listen()?;
    let store = Store::open_dir(&config.data)
        .await
        .with_context(|| format!("opening the store in {}", config.data.display()))?;
    // Before anything is counted.
    let metrics = match &config.admin {
        Some(_) => Some(crate::admin::metrics::Metrics::install()?),
        None => None,
    };
    let ca = start_builtin_ca(&config).await?;
    let agent = crate::cmd::secondary::initial_agent(&config, &store).await?;
    println!("certkeeper is up");
    println!("  data:        {} (SQLite)", config.data.display());
    if let Some(ca) = &ca {
        println!(
            "  built-in CA: {} (root: {})",
            ca.directory_url,
            config.data.join("builtin-ca/ca/root.pem").display()
        );
    }
    println!(
        "  managing:    {} certificate(s); `certkeeper status` shows each",
        agent.config().certificates.len()
    );
    if let Some(s) = &config.dns_secondary {
        println!(
            "  DNS secondary: {} zone(s), read every {} s; `certkeeper status` lists the hosts",
            s.zones.len(),
            s.poll_interval_seconds
        );
    }
    if let (Some(admin), Some(metrics)) = (&config.admin, metrics) {
        let server = crate::admin::serve(
            admin,
            Arc::clone(&agent),
            ca.as_ref().map(|ca| Arc::clone(&ca.ra)),
            metrics,
        )
        .await?;
        println!(
            "  dashboard:   {} (JSON: /api/v1/…, Prometheus: /metrics)",
            server.url()
        );
        if let Some(token) = &admin.token_file {
            println!(
                "  admin token: {} (actions: Authorization: Bearer …)",
                token.display()
            );
        }
        if config.builtin_ca.is_some() && admin.certificate.is_some() {
            println!(
                "  try:         curl --cacert {} {}",
                config.data.join("builtin-ca/ca/root.pem").display(),
                server.url()
            );
        }
    }
    // The key rotator, when configured: sweeps, reloads and serves until exit.
    let _keys = match &config.keys {
        Some(keys) => {
            let running =
                certkeeper_keys::service::start(keys, store.clone(), Arc::new(SystemClock), None)
                    .await
                    .context("starting the key rotator")?;
            let kinds: Vec<String> = running
                .policies
                .iter()
                .map(|p| p.kind.to_string())
                .collect();
            println!(
                "  keys:        {} rotated every {} s",
                kinds.join(", "),
                keys.sweep_interval_seconds
            );
            if let Some(addr) = running.listen {
                println!(
                    "  keys served: http://{addr}/ohttp-keys, http://{addr}/.well-known/jwks.json"
                );
            }
            Some(running)
        }
        None => None,
    };
    println!("Ctrl-C or SIGTERM stops.");
    crate::cmd::secondary::run(Arc::clone(&agent), &config, &store, shutdown).await?;
    if let Some(ca) = ca {
        ca.run_until(std::future::ready(()), crate::cmd::ca::CA_SHUTDOWN_GRACE)
            .await?;
    }
    println!("stopped");
    Ok(())
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
            tlog: true,
        },
        Arc::new(SystemClock),
    )
    .await
    .context("starting the built-in CA")?;
    Ok(Some(running))
}
