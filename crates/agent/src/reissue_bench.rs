//! `certkeeper bench reissue`: mass re-issuance after an incident, through
//! the real daemon against a real CA.
//!
//! The agent manages N certificates (http-01, answered by its own
//! responder). It runs exactly as `up` runs it — planner, guard, bounded
//! runner, `Issuer`, store — and the bench only watches its events:
//! 1. **obtain**: from an empty store until every certificate has its first
//!    certificate (what a fresh deployment waits for);
//! 2. **incident**: every certificate is recorded revoked in one batch (as
//!    one CRL download reports a mass revocation; the CRL path itself is
//!    tested in `tests/agent_backup.rs`) and the store generation bumped, as
//!    `certkeeper revoke` does; the daemon notices within a second, re-plans
//!    and re-keys every one: the clock runs until the last is replaced.
//!
//! The CA's own ceiling and a peer client are measured by the caller
//! (`scripts/bench-reissue`) in the same run.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certkeeper_proto::clock::{Clock, SystemClock};
use certkeeper_store::Store;
use tokio::sync::broadcast::error::RecvError;

use crate::config::{AgentSettings, CertificateConfig, Config, IssuerConfig};
use crate::daemon::Agent;
use crate::error::AgentError;
use crate::events::EventKind;
use crate::limits::LimitsConfig;
use crate::model::Slot;

/// What to run.
#[derive(Debug, Clone)]
pub struct ReissueOptions {
    /// The CA's ACME directory URL.
    pub directory: String,
    /// PEM roots for the CA's HTTPS endpoint.
    pub root_pem: Option<PathBuf>,
    /// Managed certificates.
    pub certs: usize,
    /// Where the agent's http-01 responder listens (the port the CA validates).
    pub http01_listen: SocketAddr,
    /// Names are `r<n>.<suffix>`; they must resolve to the responder for the CA.
    pub domain_suffix: String,
    /// Jobs talking to the CA at once (`agent.max_concurrent_per_issuer`).
    pub concurrency: u32,
    /// The agent's data directory (a fresh one).
    pub dir: PathBuf,
    /// Give up on a phase after this long.
    pub phase_timeout: Duration,
}

/// The figures.
#[derive(Debug, Clone)]
pub struct ReissueReport {
    /// Managed certificates.
    pub certs: usize,
    /// Jobs at the CA at once.
    pub concurrency: u32,
    /// Start of the daemon until every certificate has been obtained.
    pub obtain: Duration,
    /// Mass revocation recorded until every certificate is re-issued.
    pub reissue: Duration,
    /// Of which: recording the revocations (one transaction).
    pub mark_revoked: Duration,
    /// `failed` events seen (each retried by the daemon).
    pub failures: usize,
    /// Certificates whose current primary is new and unrevoked afterwards.
    pub replaced: usize,
}

impl ReissueReport {
    /// Certificates re-issued per second.
    pub fn reissue_rate(&self) -> f64 {
        self.certs as f64 / self.reissue.as_secs_f64().max(f64::EPSILON)
    }
}

impl fmt::Display for ReissueReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = |d: Duration| self.certs as f64 / d.as_secs_f64().max(f64::EPSILON);
        writeln!(
            f,
            "reissue: {} certificates, {} jobs at the CA at once",
            self.certs, self.concurrency
        )?;
        writeln!(
            f,
            "  obtain (empty store → all issued): {:>9.2?}  ({:.1} certificates/s)",
            self.obtain,
            rate(self.obtain)
        )?;
        writeln!(
            f,
            "  incident (all revoked → all re-issued): {:>9.2?}  (recording the revocations: {:.2?})",
            self.reissue, self.mark_revoked
        )?;
        writeln!(
            f,
            "  reissue_rate {:.1} certificates/s",
            self.reissue_rate()
        )?;
        writeln!(
            f,
            "  replaced {} of {}; {} failed steps (retried)",
            self.replaced, self.certs, self.failures
        )
    }
}

fn config(opts: &ReissueOptions) -> Config {
    let issuer = IssuerConfig {
        name: "ca".into(),
        directory: opts.directory.clone(),
        contact: Vec::new(),
        eab: None,
        root: opts.root_pem.clone(),
        profile: None,
        limits: Some(LimitsConfig::Preset("none".into())),
        tlog: None,
        ct_search: None,
    };
    let agent = AgentSettings {
        http01_listen: opts.http01_listen,
        // The pace guards against a runaway loop; an incident against our
        // own CA is the case where the operator lifts it to the CA's capacity.
        max_orders_per_minute: u32::MAX,
        max_concurrent_jobs: opts.concurrency.max(1) * 2,
        max_concurrent_per_issuer: opts.concurrency.max(1),
        // Failures retry soon: the bench measures throughput, not backoff.
        backoff_initial_seconds: 1,
        backoff_max_seconds: 5,
        ..AgentSettings::default()
    };
    Config {
        data: opts.dir.clone(),
        agent,
        builtin_ca: None,
        issuers: vec![issuer],
        certificates: (0..opts.certs)
            .map(|i| {
                CertificateConfig::new(
                    format!("r{i:06}"),
                    vec![format!("r{i:06}.{}", opts.domain_suffix)],
                    "ca",
                )
            })
            .collect(),
        admin: None,
        keys: None,
        dns_servers: Vec::new(),
        dns_secondary: None,
    }
}

fn local(e: impl fmt::Display) -> AgentError {
    AgentError::Local(e.to_string())
}

/// Counts `kind` events for primary slots until every certificate had one
/// (or the timeout); counts `failed` events on the way. A lagging receiver
/// (events dropped) falls back to the store, which is the truth.
async fn wait_all(
    events: &mut tokio::sync::broadcast::Receiver<crate::events::Event>,
    kind: EventKind,
    certs: usize,
    timeout: Duration,
    failures: &mut usize,
) -> Result<(), AgentError> {
    let mut done = HashSet::with_capacity(certs);
    let deadline = tokio::time::Instant::now() + timeout;
    while done.len() < certs {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => {
                return Err(local(format!(
                    "only {} of {certs} certificates reached `{}` within {timeout:?}",
                    done.len(),
                    kind.as_str()
                )));
            }
            Ok(Ok(e)) if e.kind == kind && e.slot == Slot::Primary => {
                done.insert(e.name);
            }
            Ok(Ok(e)) if e.kind == EventKind::Failed => *failures += 1,
            Ok(Ok(_)) => {}
            Ok(Err(RecvError::Lagged(n))) => {
                return Err(local(format!(
                    "the bench fell {n} events behind the agent; run it with fewer certificates"
                )));
            }
            Ok(Err(RecvError::Closed)) => return Err(local("the agent stopped")),
        }
    }
    Ok(())
}

/// Runs both phases.
pub async fn run(opts: ReissueOptions) -> Result<ReissueReport, AgentError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Store::open_dir(&opts.dir).await?;
    let agent = Agent::with_clock(config(&opts), store.clone(), Arc::clone(&clock));
    let mut events = agent.events().subscribe();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let daemon = tokio::spawn(Arc::clone(&agent).run_until(async {
        let _ = stopped.await;
    }));
    let mut failures = 0;

    let phases = async {
        wait_all(
            &mut events,
            EventKind::Obtained,
            opts.certs,
            opts.phase_timeout,
            &mut failures,
        )
        .await?;
        let obtain = started.elapsed();

        let t = Instant::now();
        let before: Vec<(String, String)> = store
            .current_certs()
            .await?
            .into_iter()
            .filter(|c| c.slot == Slot::Primary.as_str())
            .map(|c| (c.issuer, c.serial))
            .collect();
        store
            .mark_revoked_many(&before, "keyCompromise", clock.now())
            .await?;
        store.bump_generation().await?;
        let mark_revoked = t.elapsed();
        wait_all(
            &mut events,
            EventKind::Renewed,
            opts.certs,
            opts.phase_timeout,
            &mut failures,
        )
        .await?;
        let reissue = t.elapsed();

        let old: HashSet<String> = before.into_iter().map(|(_, serial)| serial).collect();
        let replaced = store
            .current_certs()
            .await?
            .into_iter()
            .filter(|c| {
                c.slot == Slot::Primary.as_str()
                    && c.revoked_at.is_none()
                    && !old.contains(&c.serial)
            })
            .count();
        Ok::<_, AgentError>((obtain, mark_revoked, reissue, replaced))
    };
    let outcome = phases.await;
    let _ = stop.send(());
    match daemon.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => return Err(local(format!("the daemon task failed: {e}"))),
    }
    let (obtain, mark_revoked, reissue, replaced) = outcome?;
    Ok(ReissueReport {
        certs: opts.certs,
        concurrency: opts.concurrency,
        obtain,
        reissue,
        mark_revoked,
        failures,
        replaced,
    })
}
