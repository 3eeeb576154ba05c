//! The DNS certificate secondary in the binary: `certkeeper dns secondary`
//! (one look at the zones and one pass over what they hold, or the
//! daemon), the daemon's loop that re-reads the zones and rebuilds the
//! agent when the CSRs changed, and the hosts section of `status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use certkeeper_agent::config::Config;
use certkeeper_agent::daemon::{Agent, Outcome};
use certkeeper_agent::secondary::{self, Secondary, ZoneReport, notify};
use certkeeper_proto::SystemClock;
use certkeeper_store::Store;

use crate::cmd::Shutdown;
use crate::cmd::agent::ConfigArg;

/// `config` with the certificates of the CSRs last found in DNS (from the
/// store: no DNS query), for every agent command.
pub async fn with_discovered(config: Config, store: &Store) -> anyhow::Result<Config> {
    if config.dns_secondary.is_none() {
        return Ok(config);
    }
    let hosts = store.secondary_hosts().await?;
    Ok(secondary::with_discovered(&config, &hosts))
}

/// Reads every watched zone once (SOA, AXFR when changed) into the store.
async fn poll(config: &Config, store: &Store) -> anyhow::Result<Vec<ZoneReport>> {
    match Secondary::new(config, store.clone(), Arc::new(SystemClock))? {
        Some(s) => Ok(s.poll().await?),
        None => Ok(Vec::new()),
    }
}

fn print_reports(reports: &[ZoneReport]) {
    for r in reports {
        match r {
            ZoneReport::Unchanged { zone, serial } => {
                println!("zone {zone}: serial {serial} unchanged")
            }
            ZoneReport::Transferred {
                zone,
                serial,
                accepted,
                refused,
            } => println!(
                "zone {zone}: serial {serial} transferred, {accepted} CSR(s) accepted, {refused} refused"
            ),
            ZoneReport::Failed { zone, error } => println!("zone {zone}: cannot read it: {error}"),
        }
    }
}

/// `certkeeper dns secondary --once`: read the zones, then one pass over
/// every host found (order, resume, renew, publish as due), waiting for it.
pub async fn once(arg: &ConfigArg) -> anyhow::Result<()> {
    let config = arg.load()?;
    if config.dns_secondary.is_none() {
        anyhow::bail!("the configuration has no [dns_secondary] section (see docs/config.md)");
    }
    let store = Store::open_dir(&config.data)
        .await
        .with_context(|| format!("opening the store in {}", config.data.display()))?;
    print_reports(&poll(&config, &store).await?);
    let hosts = store.secondary_hosts().await?;
    for h in hosts.iter().filter(|h| !h.accepted) {
        println!("refused {}: {}", h.host, h.problem);
    }
    let config = secondary::with_discovered(&config, &hosts);
    let names: Vec<String> = config
        .certificates
        .iter()
        .filter(|c| c.csr.is_some())
        .map(|c| c.name.clone())
        .collect();
    let agent = Agent::new(config, store);
    let mut failed = 0;
    for name in &names {
        match agent.run_once(name, false).await {
            Ok(Outcome::Obtained(serial)) => {
                println!("{name}: obtained serial {serial}, published")
            }
            Ok(Outcome::Waiting(until)) => println!(
                "{name}: nothing due; next action at {}",
                certkeeper_proto::clock::rfc3339(until)
            ),
            Err(e) => {
                failed += 1;
                println!("{name}: failed: {e}");
            }
        }
    }
    agent.events().flush(Duration::from_secs(30)).await;
    if failed > 0 {
        anyhow::bail!("{failed} of {} host(s) failed", names.len());
    }
    Ok(())
}

/// The agent the daemon starts with: the zones read once first (a zone
/// that cannot be read keeps the hosts last found in it).
pub async fn initial_agent(config: &Config, store: &Store) -> anyhow::Result<Arc<Agent>> {
    if config.dns_secondary.is_some() {
        print_reports(&poll(config, store).await?);
    }
    let full = with_discovered(config.clone(), store).await?;
    Ok(Agent::new(full, store.clone()))
}

/// Runs the agent until `shutdown`. With `[dns_secondary]`, the zones are
/// read every `poll_interval_seconds`; when the CSRs found change (a new
/// host, a new key, other names, a host gone), the agent stops its jobs
/// (they resume from the store, as after any restart) and starts again on
/// the new set of certificates.
pub async fn run(
    mut agent: Arc<Agent>,
    config: &Config,
    store: &Store,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let Some(s) = &config.dns_secondary else {
        Arc::clone(&agent).run_until(shutdown.requested()).await?;
        return Ok(());
    };
    let interval = Duration::from_secs(s.poll_interval_seconds);
    let changed = Arc::new(tokio::sync::Notify::new());
    let wake = Arc::new(tokio::sync::Notify::new());
    let _notify = match s.notify_listen {
        Some(addr) => {
            let zones = Secondary::new(config, store.clone(), Arc::new(SystemClock))?
                .map(|s| s.zone_names())
                .unwrap_or_default();
            let task = notify::listen(addr, zones, Arc::clone(&wake))
                .await
                .with_context(|| format!("[dns_secondary] notify_listen {addr}: cannot listen"))?;
            println!("  NOTIFY:      listening on {addr} (udp)");
            Some(AbortOnDrop(task))
        }
        None => None,
    };
    let watcher = {
        let (config, store, changed) = (config.clone(), store.clone(), Arc::clone(&changed));
        let wake = Arc::clone(&wake);
        let mut current = secondary::identity(&agent.config().certificates);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = wake.notified() => {}
                }
                if let Err(e) = poll(&config, &store).await {
                    tracing::warn!(error = %e, "DNS secondary: zone look failed");
                    continue;
                }
                let Ok(hosts) = store.secondary_hosts().await else {
                    continue;
                };
                let next = secondary::identity(&secondary::certificates(&config, &hosts));
                if next != current {
                    tracing::info!(
                        hosts = next.len(),
                        "DNS secondary: CSRs changed; restarting the agent on them"
                    );
                    current = next;
                    changed.notify_one();
                }
                // However many NOTIFYs arrive, one look per gap.
                tokio::time::sleep(notify::MIN_GAP).await;
            }
        })
    };
    let stopped = Arc::new(AtomicBool::new(false));
    let result = loop {
        let stop = {
            let (shutdown, changed, stopped) =
                (shutdown.clone(), Arc::clone(&changed), Arc::clone(&stopped));
            async move {
                tokio::select! {
                    () = shutdown.requested() => stopped.store(true, Ordering::SeqCst),
                    () = changed.notified() => {}
                }
            }
        };
        if let Err(e) = Arc::clone(&agent).run_until(stop).await {
            break Err(e.into());
        }
        if stopped.load(Ordering::SeqCst) {
            break Ok(());
        }
        let full = with_discovered(config.clone(), store).await?;
        agent = Agent::new(full, store.clone());
    };
    watcher.abort();
    result
}

/// The hosts section of `status`: what the zones hold, accepted or refused.
pub async fn status_lines(config: &Config, store: &Store) -> anyhow::Result<Vec<String>> {
    if config.dns_secondary.is_none() {
        return Ok(Vec::new());
    }
    let mut lines = vec!["DNS secondary:".to_string()];
    for z in store.secondary_zones().await? {
        let error = if z.last_error.is_empty() {
            String::new()
        } else {
            format!(", last look failed: {}", z.last_error)
        };
        lines.push(format!(
            "  zone {} serial {} (looked {}{error})",
            z.zone,
            z.serial,
            certkeeper_proto::clock::rfc3339(z.checked_at)
        ));
    }
    for h in store.secondary_hosts().await? {
        if h.accepted {
            lines.push(format!(
                "  {} accepted: certificate {}{}",
                h.host,
                secondary::NAME_PREFIX,
                h.host
            ));
        } else {
            lines.push(format!("  {} refused: {}", h.host, h.problem));
        }
    }
    Ok(lines)
}

/// The hosts section of `status --json`.
pub async fn status_json(config: &Config, store: &Store) -> anyhow::Result<serde_json::Value> {
    if config.dns_secondary.is_none() {
        return Ok(serde_json::Value::Null);
    }
    let hosts: Vec<serde_json::Value> = store
        .secondary_hosts()
        .await?
        .into_iter()
        .map(|h| {
            serde_json::json!({
                "host": h.host,
                "zone": h.zone,
                "accepted": h.accepted,
                "problem": h.problem,
                "certificate": h.accepted.then(|| format!("{}{}", secondary::NAME_PREFIX, h.host)),
                "seen_at": h.seen_at,
            })
        })
        .collect();
    Ok(serde_json::json!({ "hosts": hosts }))
}

/// Stops a task when dropped (the NOTIFY listener ends with the daemon).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
