//! The agent: wiring and the loop. Each pass loads the inventory in bulk,
//! asks the planner what is due per certificate, applies swaps at once (no
//! CA involved), and hands CA work and deploys to the runner as jobs; each
//! job re-checks the store under its claim before acting ([`crate::jobs`]).
//!
//! Everything that must survive a crash is written before the step that
//! depends on it: the order URL and its key before the order is driven, the
//! certificate together with its slot's new state, the served slot before
//! the files that follow it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certkeeper_proto::clock::{Clock, SystemClock, rfc3339};
use certkeeper_store::{CertMeta, SlotRow, Store};

use crate::config::{CertificateConfig, Config, IssuerConfig};
use crate::error::AgentError;
use crate::events::{Event, EventKind, Events};
use crate::guard::{Guard, JobKey};
use crate::issuer::acme::AcmeIssuer;
use crate::limits;
use crate::model::{CertFacts, Health, Slot};
use crate::monitor::crl::{CrlChecker, CrlOptions};
use crate::planner::{self, Action, AriWindow, CertView, CertificateInput, SlotInput, Swap};
use crate::resolver::CertResolver;
use crate::runner::{JobEnd, Runner};
use crate::solver_set::SolverSet;
use crate::targets::Targets;

/// What one pass over a certificate did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing due before this time.
    Waiting(i64),
    /// A certificate was obtained (serial).
    Obtained(String),
}

/// The recorded reason of an operator's swap; it pins the served slot.
const OPERATOR_SWAP: &str = "requested by the operator";

/// What a job reports.
pub type JobResult = Result<Option<String>, AgentError>;

/// A planned full pass: swaps to apply, then actions to dispatch.
pub struct PlannedPass {
    pub(crate) next: i64,
    pub(crate) swaps: Vec<(String, Swap)>,
    /// By index into the configured certificates.
    pub(crate) actions: Vec<(usize, Vec<(Slot, Action)>)>,
}

/// The store's view of every certificate, loaded in bulk.
#[derive(Debug, Default)]
pub struct Inventory {
    pub(crate) slots: HashMap<(String, Slot), SlotRow>,
    pub(crate) certs: HashMap<(String, Slot), CertMeta>,
    /// The served slot, and whether the operator chose it.
    pub(crate) served: HashMap<String, (Slot, bool)>,
    pub(crate) blocked: HashSet<String>,
}

/// How long a forced run waits for this process's own jobs on the same
/// certificate to end (an order in flight can take this long).
const FORCED_WAIT_FOR_JOBS: Duration = Duration::from_secs(120);

/// The running agent; shared by its jobs (`Arc<Agent>`).
pub struct Agent {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) issuers: HashMap<String, Arc<AcmeIssuer>>,
    pub(crate) solvers: SolverSet,
    pub(crate) targets: Targets,
    pub(crate) events: Events,
    pub(crate) guard: Guard,
    resolvers: Mutex<HashMap<String, Arc<CertResolver>>>,
    /// CRL checkers per issuer (each trusts that issuer's private root).
    pub(crate) crl: HashMap<String, CrlChecker>,
    /// Transparency logs per issuer with `[issuer.tlog]` (an error when the
    /// configured one is unusable: certificates needing it are refused).
    pub(crate) logs: HashMap<String, Result<crate::monitor::tlog::IssuerLog, String>>,
    /// Position of each certificate in the configuration: lookups by name
    /// stay O(1) at 100k certificates.
    by_name: HashMap<String, usize>,
    /// Each certificate's configuration fingerprint per slot (primary,
    /// backup), computed once: planning compares them on every pass.
    fingerprints: Vec<[String; 2]>,
}

/// Tasks aborted when dropped (the log monitors of a running daemon).
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("certificates", &self.config.certificates.len())
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// An agent over a validated configuration and its store, on the system clock.
    pub fn new(config: Config, store: Store) -> Arc<Agent> {
        Agent::with_clock(config, store, Arc::new(SystemClock))
    }

    /// An agent deciding on `clock` (tests use a fake one).
    pub fn with_clock(config: Config, store: Store, clock: Arc<dyn Clock>) -> Arc<Agent> {
        let issuers = config
            .issuers
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    Arc::new(AcmeIssuer::new(
                        i.clone(),
                        store.clone(),
                        Arc::clone(&clock),
                    )),
                )
            })
            .collect();
        Arc::new(Agent {
            solvers: SolverSet::new(config.agent.http01_listen, config.agent.tlsalpn01_listen)
                .with_dns(config.dns_servers.clone(), store.clone(), Arc::clone(&clock)),
            targets: {
                let mut t = Targets::from_config(&config);
                crate::tlsa_target::add_tlsa_targets(&mut t, &config, &clock);
                t
            },
            events: Events::new(
                store.clone(),
                certkeeper_store::audit::AuditLog::in_dir(&config.data),
                Arc::clone(&clock),
                config.agent.event_hook.clone(),
            ),
            guard: Guard::new(
                store.clone(),
                Arc::clone(&clock),
                config.agent.max_orders_per_minute,
            ),
            crl: config
                .issuers
                .iter()
                .filter_map(|i| {
                    let options = CrlOptions {
                        root_pem: i.root.clone(),
                        // The CRL is fetched at least this often anyway.
                        max_cache_age_secs: config.agent.revocation_check_seconds as i64,
                        ..CrlOptions::default()
                    };
                    match CrlChecker::with_options(&options) {
                        Ok(c) => Some((i.name.clone(), c)),
                        Err(e) => {
                            tracing::warn!(issuer = %i.name, error = %e, "no CRL checks for this issuer");
                            None
                        }
                    }
                })
                .collect(),
            logs: config
                .issuers
                .iter()
                .filter_map(|i| {
                    crate::monitor::tlog::IssuerLog::of(i)
                        .transpose()
                        .map(|l| (i.name.clone(), l))
                })
                .collect(),
            issuers,
            resolvers: Mutex::new(HashMap::new()),
            by_name: config
                .certificates
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name.clone(), i))
                .collect(),
            fingerprints: config
                .certificates
                .iter()
                .map(|c| {
                    let of = |issuer: Option<&String>| {
                        issuer
                            .and_then(|i| config.issuer(i))
                            .map(|i| c.fingerprint(i, &config.agent))
                            .unwrap_or_default()
                    };
                    [of(Some(&c.issuer)), of(c.backup.as_ref())]
                })
                .collect(),
            config,
            store,
            clock,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The lifecycle events.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The injected clock's now, unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The store it runs on.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn certificate(&self, name: &str) -> Result<&CertificateConfig, AgentError> {
        let found = self
            .by_name
            .get(name)
            .and_then(|i| self.config.certificates.get(*i));
        found.ok_or_else(|| {
            AgentError::Config(format!(
                "no [[certificate]] named {name:?} in the configuration"
            ))
        })
    }

    /// The configuration fingerprint of `cert` ordered from `issuer`.
    pub(crate) fn fingerprint<'a>(
        &'a self,
        cert: &CertificateConfig,
        issuer: &IssuerConfig,
    ) -> std::borrow::Cow<'a, str> {
        let slot = usize::from(cert.issuer != issuer.name);
        match self
            .by_name
            .get(&cert.name)
            .and_then(|i| self.fingerprints.get(*i))
        {
            Some(f) => std::borrow::Cow::Borrowed(f[slot].as_str()),
            None => std::borrow::Cow::Owned(cert.fingerprint(issuer, &self.config.agent)),
        }
    }

    /// The issuer of a slot (`None`: the slot is not configured).
    pub(crate) fn slot_issuer(
        &self,
        cert: &CertificateConfig,
        slot: Slot,
    ) -> Option<(&IssuerConfig, &Arc<AcmeIssuer>)> {
        let name = match slot {
            Slot::Primary => &cert.issuer,
            Slot::Backup => cert.backup.as_ref()?,
        };
        let issuer = self.issuers.get(name)?;
        Some((issuer.config(), issuer))
    }

    /// A resolver that always serves `name`'s served slot, with both slots
    /// loaded; swaps and renewals update it in place.
    pub async fn resolver(&self, name: &str) -> Result<Arc<CertResolver>, AgentError> {
        let resolver = {
            let mut all = self
                .resolvers
                .lock()
                .map_err(|_| AgentError::Local("resolver registry poisoned".into()))?;
            Arc::clone(all.entry(name.to_string()).or_default())
        };
        for slot in Slot::ALL {
            if let Some(c) = self.store.slot_cert(name, slot.as_str()).await? {
                resolver
                    .load(slot, &c.chain_pem, &c.key_pem)
                    .map_err(|e| AgentError::Local(format!("{name} {slot}: {e}")))?;
            }
        }
        let served = self.served_slot(name).await?;
        resolver.serve(served);
        Ok(resolver)
    }

    /// The resolver of `name`, if one was loaded (`resolver`, `load_all_resolvers`).
    pub fn loaded_resolver(&self, name: &str) -> Option<Arc<CertResolver>> {
        self.resolvers.lock().ok()?.get(name).cloned()
    }

    pub(crate) async fn served_slot(&self, name: &str) -> Result<Slot, AgentError> {
        Ok(self
            .store
            .served(name)
            .await?
            .parse()
            .unwrap_or(Slot::Primary))
    }

    /// Everything the planner needs, in three bulk queries.
    pub async fn load_inventory(&self) -> Result<Inventory, AgentError> {
        let mut inv = Inventory::default();
        for (row, meta) in self.store.planning_rows().await? {
            let Ok(slot) = row.slot.parse::<Slot>() else {
                continue;
            };
            if let Some(meta) = meta {
                inv.certs.insert((row.name.clone(), slot), meta);
            }
            inv.slots.insert((row.name.clone(), slot), row);
        }
        for (name, slot, reason) in self.store.served_all().await? {
            if let Ok(slot) = slot.parse() {
                inv.served.insert(name, (slot, reason == OPERATOR_SWAP));
            }
        }
        inv.blocked = self
            .store
            .agent_blocked_keys()
            .await?
            .into_iter()
            .map(|b| b.spki_sha256)
            .collect();
        Ok(inv)
    }

    /// The inventory of one certificate only: what a job and the re-plan
    /// after it need, in a handful of indexed queries whatever the fleet size.
    pub async fn load_inventory_of(&self, name: &str) -> Result<Inventory, AgentError> {
        let mut inv = Inventory::default();
        for row in self.store.slots_of(name).await? {
            if let Ok(slot) = row.slot.parse::<Slot>() {
                inv.slots.insert((row.name.clone(), slot), row);
            }
        }
        for (meta, blocked) in self.store.current_certs_of(name).await? {
            if blocked {
                inv.blocked.insert(meta.spki_sha256.clone());
            }
            if let Ok(slot) = meta.slot.parse::<Slot>() {
                inv.certs.insert((meta.name.clone(), slot), meta);
            }
        }
        if let Some((slot, reason)) = self.store.served_with_reason(name).await?
            && let Ok(slot) = slot.parse()
        {
            inv.served
                .insert(name.to_string(), (slot, reason == OPERATOR_SWAP));
        }
        Ok(inv)
    }

    /// The planner's input for one certificate.
    pub(crate) fn certificate_input(
        &self,
        cert: &CertificateConfig,
        inv: &Inventory,
        forced: bool,
    ) -> CertificateInput {
        let slot = |slot: Slot| {
            let (issuer, _) = self.slot_issuer(cert, slot)?;
            let key = (cert.name.clone(), slot);
            let fresh;
            let row = match inv.slots.get(&key) {
                Some(row) => row,
                None => {
                    fresh = SlotRow::new(&cert.name, slot.as_str());
                    &fresh
                }
            };
            Some(self.slot_input(cert, issuer, row, inv.certs.get(&key), &inv.blocked, forced))
        };
        CertificateInput {
            primary: slot(Slot::Primary).unwrap_or_default(),
            backup: slot(Slot::Backup),
            served: inv.served.get(&cert.name).map(|(slot, _)| *slot),
            return_to_primary: cert.return_to_primary,
            pinned: inv
                .served
                .get(&cert.name)
                .is_some_and(|(_, pinned)| *pinned),
        }
    }

    fn slot_input(
        &self,
        cert: &CertificateConfig,
        issuer: &IssuerConfig,
        row: &SlotRow,
        meta: Option<&CertMeta>,
        blocked: &HashSet<String>,
        forced: bool,
    ) -> SlotInput {
        let now = self.now();
        let fingerprint = self.fingerprint(cert, issuer);
        // A slot whose certificate was never looked at is polled at once.
        let next_poll = meta.map(|_| {
            row.ari_next_poll
                .unwrap_or(now)
                .min(row.crl_next_check.unwrap_or(now))
        });
        SlotInput {
            facts: meta.map(|m| CertFacts {
                serial: m.serial.clone(),
                issuer: m.issuer.clone(),
                spki_sha256: m.spki_sha256.clone(),
                not_before: m.not_before,
                not_after: m.not_after,
                revoked: m.revoked_at.is_some(),
                key_blocked: blocked.contains(&m.spki_sha256),
            }),
            view: CertView {
                current: meta.map(|m| (m.not_before, m.not_after)),
                rekey: None,
                next_poll,
                ari: match (row.ari_start, row.ari_end, row.ari_chosen) {
                    (Some(start), Some(end), Some(chosen)) => {
                        Some(AriWindow { start, end, chosen })
                    }
                    _ => None,
                },
                in_flight: row.order_url.is_some(),
                failures: row.failures.max(0) as u32,
                next_attempt: row.next_attempt,
                // Recorded when an order starts or a certificate lands; a
                // difference means the operator changed what to issue.
                config_changed: !row.fingerprint.is_empty() && row.fingerprint != *fingerprint,
                renew_before_secs: cert.renew_before_days.map(|d| (d * 86400.0) as i64),
                forced,
            },
        }
    }

    /// Plans one certificate and acts: a swap at once, CA work and deploys
    /// as jobs. Returns when it next needs a look.
    pub(crate) async fn pass_certificate(
        self: &Arc<Self>,
        cert: &CertificateConfig,
        inv: &Inventory,
        forced: bool,
        runner: &mut Runner<JobResult>,
    ) -> Result<Option<i64>, AgentError> {
        let plan = self.plan(cert, inv, forced)?;
        if let Some(swap) = &plan.swap {
            self.apply_swaps(vec![(cert.name.clone(), swap.clone())])
                .await?;
        }
        self.dispatch(cert, plan.actions, forced, runner);
        Ok(plan.wake)
    }

    fn plan(
        &self,
        cert: &CertificateConfig,
        inv: &Inventory,
        forced: bool,
    ) -> Result<planner::Plan, AgentError> {
        let input = self.certificate_input(cert, inv, forced);
        planner::plan_certificate(&input, self.now())
            .map_err(|e| AgentError::Config(format!("{}: {e}", cert.name)))
    }

    /// Starts a job for every slot action that is not a wait, and the
    /// certificate's deploy job.
    fn dispatch(
        self: &Arc<Self>,
        cert: &CertificateConfig,
        actions: Vec<(Slot, Action)>,
        forced: bool,
        runner: &mut Runner<JobResult>,
    ) {
        for (slot, action) in actions {
            if matches!(action, Action::Wait { .. }) {
                continue;
            }
            let key = JobKey::Slot(cert.name.clone(), slot);
            let Some(claim) = self.guard.claim(key.clone()) else {
                continue;
            };
            let issuer = self.slot_issuer(cert, slot).map(|(i, _)| i.name.clone());
            let agent = Arc::clone(self);
            runner.spawn(key, issuer.as_deref(), async move {
                agent.run_slot_job(claim, slot, forced).await
            });
        }
        self.spawn_deploy(&cert.name, runner);
    }

    /// Starts the deploy job of `name` if it has targets and none runs.
    pub(crate) fn spawn_deploy(self: &Arc<Self>, name: &str, runner: &mut Runner<JobResult>) {
        use crate::targets::Role;
        if !self.targets.has(name, Role::Served) && !self.targets.has(name, Role::Backup) {
            return;
        }
        let key = JobKey::Deploy(name.to_string());
        let Some(claim) = self.guard.claim(key.clone()) else {
            return;
        };
        let agent = Arc::clone(self);
        runner.spawn(key, None, async move { agent.run_deploy_job(claim).await });
    }

    /// Serves the new slots: the resolvers first (every handshake from now
    /// on), then the store and the events. A crash between the two loses
    /// nothing: the swap follows from facts already stored (a revocation,
    /// an expiry), so the next start decides it again.
    pub async fn apply_swaps(&self, swaps: Vec<(String, Swap)>) -> Result<(), AgentError> {
        self.serve_swaps(&swaps);
        self.record_swaps(swaps).await
    }

    /// Points each swapped certificate's resolver at its new slot: one
    /// atomic store each, no parsing.
    pub fn serve_swaps(&self, swaps: &[(String, Swap)]) {
        if let Ok(resolvers) = self.resolvers.lock() {
            for (name, s) in swaps {
                if let Some(r) = resolvers.get(name) {
                    r.serve(s.to);
                }
            }
        }
    }

    /// Records the swaps in one transaction (deploy jobs then move the
    /// files) and emits their events.
    pub async fn record_swaps(&self, swaps: Vec<(String, Swap)>) -> Result<(), AgentError> {
        if swaps.is_empty() {
            return Ok(());
        }
        let rows: Vec<(String, String, String)> = swaps
            .iter()
            .map(|(name, s)| (name.clone(), s.to.as_str().to_string(), s.reason.clone()))
            .collect();
        self.store.set_served_many(&rows, self.now()).await?;
        crate::faults::crash_point("swap-recorded");
        let events = swaps
            .into_iter()
            .map(|(name, s)| Event {
                kind: EventKind::Swapped,
                name,
                slot: s.to,
                detail: format!("now serving the {} certificate: {}", s.to, s.reason),
            })
            .collect();
        self.events.emit_many(events).await;
        Ok(())
    }

    /// An operator's swap (`certkeeper swap`): refused when the target slot
    /// has nothing servable.
    pub async fn swap(&self, name: &str, to: Slot) -> Result<(), AgentError> {
        let cert = self.certificate(name)?;
        if self.slot_issuer(cert, to).is_none() {
            return Err(AgentError::Refused(format!(
                "{name} has no {to} slot; add `backup = \"ISSUER\"` to its [[certificate]]"
            )));
        }
        let health = self.slot_health(name, to).await?;
        if health.is_unservable() {
            return Err(AgentError::Refused(format!(
                "{name}: the {to} certificate is {health}; nothing to swap to (run `certkeeper issue {name}` first)"
            )));
        }
        self.apply_swaps(vec![(
            name.to_string(),
            Swap {
                to,
                reason: OPERATOR_SWAP.into(),
            },
        )])
        .await
    }

    pub(crate) async fn slot_health(&self, name: &str, slot: Slot) -> Result<Health, AgentError> {
        let row = self.store.slot(name, slot.as_str()).await?;
        let Some(c) = self.store.slot_cert(name, slot.as_str()).await? else {
            return Ok(Health::Missing);
        };
        let facts = CertFacts {
            serial: c.serial.clone(),
            issuer: c.issuer.clone(),
            key_blocked: self.store.agent_key_blocked(&c.spki_sha256).await?,
            spki_sha256: c.spki_sha256,
            not_before: c.not_before,
            not_after: c.not_after,
            revoked: c.revoked_at.is_some(),
        };
        Ok(Health::of(Some(&facts), row.ari_end, self.now()))
    }

    /// Runs until `shutdown` completes: a full pass when something is due
    /// (or a command changed the store), jobs in between, a re-plan of a
    /// certificate whenever one of its jobs ends. Then it stops cleanly
    /// (see [`Agent::drain`]).
    pub async fn run_until(
        self: Arc<Self>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AgentError> {
        let mut shutdown = std::pin::pin!(shutdown);
        self.guard.key_ledger().await?;
        self.resend_pending_revocations().await?;
        self.remove_abandoned_dns_records().await?;
        let global = self.config.agent.max_concurrent_jobs as usize;
        let per_issuer = self.config.agent.max_concurrent_per_issuer as usize;
        let mut runner: Runner<JobResult> = Runner::new(global, per_issuer);
        let mut generation = self.store.generation().await?;
        let mut next_full = self.now();
        // Beside the renewal loop, never in it: aborted when this returns.
        let _monitors = AbortOnDrop(
            crate::monitor::log_watch::spawn_all(&self)
                .into_iter()
                .chain(crate::monitor::ct_search::spawn_all(&self))
                .collect(),
        );
        loop {
            if self.now() >= next_full {
                next_full = match self.full_pass(&mut runner).await {
                    Ok(wake) => wake,
                    Err(e) => {
                        tracing::warn!(error = %e, "pass failed");
                        self.now() + 5
                    }
                };
            }
            tokio::select! {
                () = &mut shutdown => {
                    self.drain(&mut runner).await;
                    return Ok(());
                }
                Some((key, end)) = runner.next(), if !runner.is_empty() => {
                    self.job_ended(&key, end).await;
                    // A slot job changed this certificate: plan it again
                    // (a swap, the deploy of what it obtained) once none of
                    // its jobs runs, so the swap is decided on both slots'
                    // outcomes: a backup obtained a moment before the
                    // primary at first start is not served for that moment
                    // (two swaps, two reloads). A deploy job changes nothing
                    // the planner reads. Swaps on revocation or expiry do not
                    // wait for this: passes decide them.
                    if let (JobKey::Slot(..), false, Ok(cert)) =
                        (&key, runner.busy(key.name()), self.certificate(key.name()).cloned())
                    {
                        match self.load_inventory_of(&cert.name).await {
                            Ok(inv) => match self.pass_certificate(&cert, &inv, false, &mut runner).await {
                                Ok(Some(wake)) => next_full = next_full.min(wake),
                                Ok(None) => {}
                                Err(e) => tracing::warn!(certificate = %cert.name, error = %e, "pass failed"),
                            },
                            Err(e) => tracing::warn!(error = %e, "cannot load the inventory"),
                        }
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    match self.store.generation().await {
                        Ok(g) if g != generation => {
                            generation = g;
                            next_full = self.now();
                            // Another process (swap, revoke, compromised)
                            // changed what is served: reload what we serve.
                            self.reload_resolvers().await;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot read the store generation"),
                    }
                }
            }
        }
    }

    /// Stops: no new job starts; running jobs get
    /// `agent.shutdown_grace_seconds` to finish (most reach their end, an
    /// order mid-validation its next persisted step); whatever still runs
    /// then is cancelled, which every job survives as it survives `kill -9`
    /// (the next start resumes from the store). Event hooks get the same
    /// bound to finish.
    async fn drain(&self, runner: &mut Runner<JobResult>) {
        runner.close();
        let grace = Duration::from_secs(self.config.agent.shutdown_grace_seconds);
        let running = runner.len();
        tracing::info!(running, grace_seconds = grace.as_secs(), "stopping");
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        while !runner.is_empty() {
            tokio::select! {
                Some((key, end)) = runner.next() => self.job_ended(&key, end).await,
                () = &mut deadline => break,
            }
        }
        let cancelled = runner.abort_all();
        if cancelled > 0 {
            tracing::warn!(
                cancelled,
                "jobs still running after the grace period were cancelled; the next start resumes them"
            );
        }
        self.events.flush(grace).await;
    }

    /// One pass over every certificate: plan all, apply every swap in one
    /// batch, then start the jobs. Returns the next time one is due.
    pub(crate) async fn full_pass(
        self: &Arc<Self>,
        runner: &mut Runner<JobResult>,
    ) -> Result<i64, AgentError> {
        let inv = self.load_inventory().await?;
        let pass = self.plan_all(&inv);
        self.apply_swaps(pass.swaps).await?;
        for (i, actions) in pass.actions {
            if let Some(cert) = self.config.certificates.get(i) {
                self.dispatch(cert, actions, false, runner);
            }
        }
        Ok(pass.next.max(self.now() + 1))
    }

    /// Plans every certificate (pure, no I/O).
    pub fn plan_all(&self, inv: &Inventory) -> PlannedPass {
        let mut pass = PlannedPass {
            next: self.now() + self.config.agent.check_interval_seconds as i64,
            swaps: Vec::new(),
            actions: Vec::with_capacity(self.config.certificates.len()),
        };
        for (i, cert) in self.config.certificates.iter().enumerate() {
            match self.plan(cert, inv, false) {
                Ok(plan) => {
                    if let Some(wake) = plan.wake {
                        pass.next = pass.next.min(wake);
                    }
                    if let Some(swap) = plan.swap {
                        pass.swaps.push((cert.name.clone(), swap));
                    }
                    pass.actions.push((i, plan.actions));
                }
                Err(e) => tracing::warn!(certificate = %cert.name, error = %e, "cannot plan"),
            }
        }
        pass
    }

    /// Reloads every loaded resolver from the store (both slots, served slot).
    async fn reload_resolvers(&self) {
        let names: Vec<String> = match self.resolvers.lock() {
            Ok(r) => r.keys().cloned().collect(),
            Err(_) => return,
        };
        for name in names {
            if let Err(e) = self.resolver(&name).await {
                tracing::warn!(certificate = %name, error = %e, "cannot reload the resolver");
            }
        }
    }

    /// Loads every certificate's slots into its resolver, in pages of one
    /// query each (the bulk path for serving many certificates in process).
    pub async fn load_all_resolvers(&self) -> Result<usize, AgentError> {
        let served: HashMap<String, Slot> = self
            .store
            .served_all()
            .await?
            .into_iter()
            .filter_map(|(n, s, _)| Some((n, s.parse().ok()?)))
            .collect();
        let mut after = String::new();
        let mut loaded = 0;
        loop {
            let page = self.store.current_certs_page(&after, 2000).await?;
            let Some(last) = page.last() else { break };
            after = last.name.clone();
            let mut resolvers = self
                .resolvers
                .lock()
                .map_err(|_| AgentError::Local("resolver registry poisoned".into()))?;
            for c in &page {
                let Ok(slot) = c.slot.parse::<Slot>() else {
                    continue;
                };
                let r = resolvers.entry(c.name.clone()).or_default();
                r.load(slot, &c.chain_pem, &c.key_pem)
                    .map_err(|e| AgentError::Local(format!("{} {slot}: {e}", c.name)))?;
                r.serve(served.get(&c.name).copied().unwrap_or(Slot::Primary));
                loaded += 1;
            }
        }
        Ok(loaded)
    }

    /// Records how a job ended; a panic counts as a failure of its slot.
    async fn job_ended(&self, key: &JobKey, end: JobEnd<JobResult>) {
        match end {
            JobEnd::Done(Ok(_)) | JobEnd::NotStarted => {}
            JobEnd::Done(Err(e)) => {
                tracing::warn!(job = ?key, error = %e, "job failed")
            }
            JobEnd::Panicked(message) => {
                tracing::error!(job = ?key, %message, "job panicked");
                if let JobKey::Slot(name, slot) = key {
                    let e = AgentError::Local(format!("internal error (job panicked: {message})"));
                    self.record_failure(name, *slot, &e).await;
                }
            }
        }
    }

    /// Persists a slot's failure: count, backoff (or the time a refusal
    /// ends), message; drops the order when it is dead.
    pub(crate) async fn record_failure(&self, name: &str, slot: Slot, e: &AgentError) {
        let now = self.now();
        let result = async {
            let mut row = self.store.slot(name, slot.as_str()).await?;
            row.failures += 1;
            let delay = match e {
                // The time it can work, not a guess that grows.
                AgentError::NotBefore { until, .. } => (until - now).max(1),
                _ => planner::backoff(
                    row.failures as u32,
                    self.config.agent.backoff_initial_seconds as i64,
                    self.config.agent.backoff_max_seconds as i64,
                ),
            };
            row.next_attempt = now + delay;
            row.last_error = Some(e.to_string());
            if e.order_is_dead() {
                row.order_url = None;
                row.order_key_pem = None;
            }
            self.store.put_slot(&row, now).await?;
            Ok::<i64, AgentError>(delay)
        }
        .await;
        match result {
            Ok(delay) => {
                self.events
                    .emit(
                        EventKind::Failed,
                        name,
                        slot,
                        format!("{e}; next attempt in {delay} s"),
                    )
                    .await
            }
            Err(store) => {
                tracing::error!(certificate = name, %slot, error = %store, "cannot record a failure")
            }
        }
    }

    /// One pass over one certificate, waiting for its jobs: `certkeeper
    /// issue` / `renew` (cron). Returns the first failure, if any.
    pub async fn run_once(
        self: &Arc<Self>,
        name: &str,
        forced: bool,
    ) -> Result<Outcome, AgentError> {
        let cert = self.certificate(name)?.clone();
        if forced {
            // Inside the daemon (the admin API's renew), one of its own jobs
            // may hold a slot (an ARI poll right after an issuance): the
            // forced pass would find the claim taken and do nothing. Wait
            // for it to end; the pass then sees what it left.
            let deadline = tokio::time::Instant::now() + FORCED_WAIT_FOR_JOBS;
            while self.guard.slot_job_running(name) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.guard.key_ledger().await?;
        self.resend_pending_revocations().await?;
        self.remove_abandoned_dns_records().await?;
        let mut runner: Runner<JobResult> = Runner::new(
            self.config.agent.max_concurrent_jobs as usize,
            self.config.agent.max_concurrent_per_issuer as usize,
        );
        let mut obtained = None;
        let mut failure = None;
        let mut wake = None;
        // The forced pass orders; the second swaps to, and deploys, what
        // the first obtained.
        for forced in [forced, false] {
            let inv = self.load_inventory_of(&cert.name).await?;
            wake = self
                .pass_certificate(&cert, &inv, forced, &mut runner)
                .await?;
            while let Some((key, end)) = runner.next().await {
                match end {
                    JobEnd::Done(Ok(Some(serial))) => obtained = obtained.or(Some(serial)),
                    JobEnd::Done(Ok(None)) => {}
                    JobEnd::Done(Err(e)) => {
                        failure.get_or_insert(e);
                    }
                    end @ (JobEnd::Panicked(_) | JobEnd::NotStarted) => {
                        self.job_ended(&key, end).await
                    }
                }
            }
            if failure.is_some() {
                break;
            }
        }
        match (obtained, failure) {
            (Some(serial), _) => Ok(Outcome::Obtained(serial)),
            (None, Some(e)) => Err(e),
            (None, None) => Ok(Outcome::Waiting(wake.unwrap_or(self.now()))),
        }
    }

    /// Every limit of every issuer for the configured certificates, and the
    /// CA's Retry-After deadlines in force: `certkeeper limits`.
    pub async fn limits(&self) -> Result<Vec<LimitStatus>, AgentError> {
        let mut out: Vec<LimitStatus> = Vec::new();
        // Many certificates share a limit (a domain, an account): list it once.
        let mut seen: HashSet<LimitStatus> = HashSet::new();
        let t = self.now();
        for cert in &self.config.certificates {
            for slot in Slot::ALL {
                let Some((issuer, _)) = self.slot_issuer(cert, slot) else {
                    continue;
                };
                let set = limits::identifier_set(&cert.names);
                for (u, what) in self.guard.usage(issuer, &cert.names, false).await? {
                    let row = LimitStatus {
                        issuer: issuer.name.clone(),
                        limit: u.kind.to_string(),
                        subject: what,
                        used: u.used,
                        max: u.limit.count,
                        window: limits::window_text(u.limit.period_seconds),
                        window_seconds: u.limit.period_seconds,
                        next_free: u.next_free.map(rfc3339),
                        next_free_at: u.next_free,
                    };
                    if seen.insert(row.clone()) {
                        out.push(row);
                    }
                }
                if let Some((until, _)) = self.store.retry_after(&issuer.name, &set, t).await? {
                    let row = LimitStatus {
                        issuer: issuer.name.clone(),
                        limit: "Retry-After".into(),
                        subject: format!("requests for [{set}]"),
                        used: 0,
                        max: 0,
                        window: "-".into(),
                        window_seconds: 0,
                        next_free: Some(rfc3339(until)),
                        next_free_at: Some(until),
                    };
                    if seen.insert(row.clone()) {
                        out.push(row);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// One line of `certkeeper limits`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct LimitStatus {
    /// Issuer name.
    pub issuer: String,
    /// `CertificatesPerFQDNSet`, `CertificatesPerDomain`,
    /// `NewOrdersPerAccount` or `Retry-After`.
    pub limit: String,
    /// What is counted: the set, the registered domain, the account.
    pub subject: String,
    /// Used in the window now.
    pub used: u32,
    /// Allowed in the window.
    pub max: u32,
    /// The window, e.g. `168h`.
    pub window: String,
    /// The window, seconds.
    pub window_seconds: u64,
    /// When one more fits (or the CA's Retry-After ends), RFC 3339; `None`
    /// when one fits now.
    pub next_free: Option<String>,
    /// The same, unix seconds.
    pub next_free_at: Option<i64>,
}
