//! `certkeeper bench fleet`: the agent at fleet scale, without any CA.
//!
//! Builds N managed certificates, each with a primary (from CA "a") and a
//! backup (from CA "b", its own key), imports them into a fresh store, then
//! measures what an operator waits for:
//! - **restart + plan**: open the store, build the agent, load the
//!   inventory in bulk and plan every certificate (what `up` does before
//!   its first job);
//! - **load resolvers**: both slots of every certificate parsed and held in
//!   rustls resolvers, and the memory that costs per certificate;
//! - **failover**: every primary reported revoked (one CRL-sized batch),
//!   re-plan, and swap every certificate to its backup — until every
//!   resolver serves the backup.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certkeeper_proto::clock::{Clock, SystemClock};
use certkeeper_store::{ManagedCertRow, SlotRow, Store};

use crate::config::{AgentSettings, CertificateConfig, Config, IssuerConfig};
use crate::daemon::Agent;
use crate::error::AgentError;
use crate::model::Slot;
use crate::x509;

/// What to build.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Managed certificates (each with a primary and a backup).
    pub certs: usize,
    /// Where the store goes (a fresh directory).
    pub dir: PathBuf,
}

/// The figures.
#[derive(Debug, Clone)]
pub struct FleetReport {
    /// Managed certificates.
    pub certs: usize,
    /// Generating and importing 2 × certs certificates (setup, not a target;
    /// done by another process).
    pub setup: Duration,
    /// Open store + agent + bulk inventory + plan of every certificate.
    pub restart_plan: Duration,
    /// Loading both slots of every certificate into resolvers.
    pub load_resolvers: Duration,
    /// Resident memory growth while loading the resolvers, bytes.
    pub resolver_rss_bytes: u64,
    /// Recording every primary revoked (one batch).
    pub mark_revoked: Duration,
    /// Re-plan after the revocation and point every resolver at its
    /// backup: until every certificate serves the backup.
    pub failover: Duration,
    /// Then recording every swap and its event (one transaction each).
    pub persist_swaps: Duration,
    /// Certificates serving their backup afterwards.
    pub serving_backup: usize,
}

impl fmt::Display for FleetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = |d: Duration| d.as_secs_f64() * 1e6 / self.certs.max(1) as f64;
        writeln!(f, "fleet: {} certificates, each with a backup", self.certs)?;
        writeln!(f, "  setup (generate + import):  {:>9.2?}", self.setup)?;
        writeln!(
            f,
            "  restart + plan:             {:>9.2?}  ({:.1} µs/certificate)",
            self.restart_plan,
            per(self.restart_plan)
        )?;
        writeln!(
            f,
            "  load both slots in resolvers: {:>7.2?}  ({:.1} KiB RSS/certificate)",
            self.load_resolvers,
            self.resolver_rss_bytes as f64 / 1024.0 / self.certs.max(1) as f64
        )?;
        writeln!(
            f,
            "  record all primaries revoked: {:>7.2?}",
            self.mark_revoked
        )?;
        writeln!(
            f,
            "  failover (inventory + plan + every resolver on the backup): {:.2?} ({:.1} µs/certificate); {} of {} serve the backup",
            self.failover,
            per(self.failover),
            self.serving_backup,
            self.certs
        )?;
        writeln!(
            f,
            "  then swaps + events recorded: {:>7.2?}",
            self.persist_swaps
        )
    }
}

/// Resident set size of this process, bytes (Linux).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn local(e: impl fmt::Display) -> AgentError {
    AgentError::Local(e.to_string())
}

/// A bench CA: a self-signed P-256 CA certificate and its key.
struct BenchCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

fn bench_ca(name: &str) -> Result<BenchCa, AgentError> {
    let key = rcgen::KeyPair::generate().map_err(local)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(local)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).map_err(local)?;
    Ok(BenchCa {
        pem: cert.pem(),
        issuer: rcgen::Issuer::new(params, key),
    })
}

fn leaf(
    ca: &BenchCa,
    issuer_name: &str,
    name: &str,
    slot: Slot,
    now: i64,
) -> Result<(SlotRow, ManagedCertRow), AgentError> {
    let key = rcgen::KeyPair::generate().map_err(local)?;
    let dns = format!("{name}.bench.test");
    let mut params = rcgen::CertificateParams::new(vec![dns.clone()]).map_err(local)?;
    let start = time::OffsetDateTime::from_unix_timestamp(now - 3600).map_err(local)?;
    params.not_before = start;
    params.not_after = start + time::Duration::days(90);
    let cert = params.signed_by(&key, &ca.issuer).map_err(local)?;
    let facts = x509::leaf_facts(cert.der()).map_err(local)?;
    let row = ManagedCertRow {
        serial: facts.serial.clone(),
        name: name.to_string(),
        issuer: issuer_name.to_string(),
        names: dns.clone(),
        chain_pem: format!("{}{}", cert.pem(), ca.pem),
        key_pem: key.serialize_pem(),
        spki_sha256: facts.spki_sha256,
        not_before: facts.not_before,
        not_after: facts.not_after,
        order_url: String::new(),
        obtained_at: now,
        identifier_set: dns.clone(),
        registered_domains: "bench.test".into(),
        slot: slot.as_str().to_string(),
        revoked_at: None,
        revocation_reason: None,
    };
    let mut slot_row = SlotRow::new(name, slot.as_str());
    slot_row.current_issuer = Some(issuer_name.to_string());
    slot_row.current_serial = Some(facts.serial);
    // Polled recently: the plan is about renewals and swaps, not first polls.
    slot_row.ari_next_poll = Some(now + 86_400);
    slot_row.crl_next_check = Some(now + 86_400);
    Ok((slot_row, row))
}

fn config(opts: &FleetOptions) -> Config {
    let issuer = |name: &str| IssuerConfig {
        name: name.into(),
        directory: format!("https://{name}.bench.invalid/directory"),
        contact: Vec::new(),
        eab: None,
        root: None,
        profile: None,
        limits: None,
        tlog: None,
        ct_search: None,
    };
    Config {
        data: opts.dir.clone(),
        agent: AgentSettings::default(),
        builtin_ca: None,
        issuers: vec![issuer("a"), issuer("b")],
        certificates: (0..opts.certs)
            .map(|i| CertificateConfig {
                backup: Some("b".into()),
                ..CertificateConfig::new(
                    format!("c{i:06}"),
                    vec![format!("c{i:06}.bench.test")],
                    "a",
                )
            })
            .collect(),
        admin: None,
        keys: None,
        dns_servers: Vec::new(),
        dns_secondary: None,
    }
}

/// Builds the fleet's store in `opts.dir`: 2 × certs certificates. Run
/// [`measure`] in a fresh process afterwards, so the memory figures do not
/// include what building left in the allocator.
pub async fn build(opts: &FleetOptions) -> Result<Duration, AgentError> {
    let started = Instant::now();
    let now = SystemClock.now();
    {
        let store = Store::open_dir(&opts.dir).await?;
        let (a, b) = (
            Arc::new(bench_ca("bench CA a")?),
            Arc::new(bench_ca("bench CA b")?),
        );
        const CHUNK: usize = 5000;
        for start in (0..opts.certs).step_by(CHUNK) {
            let end = (start + CHUNK).min(opts.certs);
            // Signing dominates: two threads, one per core.
            let halves: Vec<_> = [
                (start, start + (end - start) / 2),
                (start + (end - start) / 2, end),
            ]
            .into_iter()
            .map(|(lo, hi)| {
                let (a, b) = (Arc::clone(&a), Arc::clone(&b));
                std::thread::spawn(move || {
                    (lo..hi)
                        .flat_map(|i| {
                            let name = format!("c{i:06}");
                            [
                                leaf(&a, "a", &name, Slot::Primary, now),
                                leaf(&b, "b", &name, Slot::Backup, now),
                            ]
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
            let mut rows = Vec::with_capacity(2 * (end - start));
            for h in halves {
                rows.extend(h.join().map_err(|_| local("generator thread panicked"))??);
            }
            store.import_issued(&rows, now).await?;
        }
    }
    Ok(started.elapsed())
}

/// Measures the fleet [`build`] left in `opts.dir`.
pub async fn measure(opts: &FleetOptions, setup: Duration) -> Result<FleetReport, AgentError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now();

    // Restart + plan.
    let t = Instant::now();
    let store = Store::open_dir(&opts.dir).await?;
    let agent = Agent::with_clock(config(opts), store.clone(), Arc::clone(&clock));
    let inv = agent.load_inventory().await?;
    let pass = agent.plan_all(&inv);
    let restart_plan = t.elapsed();
    if !pass.swaps.is_empty() {
        return Err(local("a healthy fleet planned swaps"));
    }
    drop(inv);

    let rss0 = rss_bytes();
    let t = Instant::now();
    let loaded = agent.load_all_resolvers().await?;
    let load_resolvers = t.elapsed();
    let resolver_rss_bytes = rss_bytes().saturating_sub(rss0);
    if loaded != 2 * opts.certs {
        return Err(local(format!(
            "loaded {loaded} slots, expected {}",
            2 * opts.certs
        )));
    }

    // Every primary revoked, as one CRL download would report them.
    let t = Instant::now();
    let primaries: Vec<(String, String)> = store
        .current_certs()
        .await?
        .into_iter()
        .filter(|c| c.slot == "primary")
        .map(|c| (c.issuer, c.serial))
        .collect();
    store
        .mark_revoked_many(&primaries, "keyCompromise", now)
        .await?;
    let mark_revoked = t.elapsed();

    let t = Instant::now();
    let inv = agent.load_inventory().await?;
    let pass = agent.plan_all(&inv);
    agent.serve_swaps(&pass.swaps);
    let failover = t.elapsed();
    let t = Instant::now();
    agent.record_swaps(pass.swaps).await?;
    let persist_swaps = t.elapsed();
    let serving_backup = agent
        .config()
        .certificates
        .iter()
        .filter(|c| {
            agent
                .loaded_resolver(&c.name)
                .is_some_and(|r| r.served() == Slot::Backup && r.has(Slot::Backup))
        })
        .count();
    Ok(FleetReport {
        certs: opts.certs,
        setup,
        restart_plan,
        load_resolvers,
        resolver_rss_bytes,
        mark_revoked,
        failover,
        persist_swaps,
        serving_backup,
    })
}
