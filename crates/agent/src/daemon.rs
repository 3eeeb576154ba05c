//! The agent: for each managed certificate, read state from the store, ask
//! the planner what is due, and act: resume the order in flight, obtain,
//! renew, deploy. Everything that must survive a crash is written before the
//! step that depends on it: the order URL and its key before the order is
//! driven, the certificate (with its key) before it is deployed.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use certkeeper_store::{AgentStateRow, ManagedCertRow, Store, StoreError};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::acme::{
    self, AcmeAccount, AcmeDirectory, AcmeError, CertificateKey, ExternalAccountBinding,
    Http01Responder, KeyAlgorithm, KeyChoice, NewAccountOptions, OrderRequest, PollPolicy, Solver,
    TlsAlpn01Responder,
};
use crate::config::{CertificateConfig, ChallengeType, Config, IssuerConfig, KeyType};
use crate::deploy::{DeployError, FileTarget, ReloadCommand};
use crate::limits::{self, Limit, LimitKind, Usage};
use crate::planner::{self, Action, AriWindow, CertView};
use crate::resolver::CertResolver;
use crate::solvers::{ExecDnsSolver, WebrootSolver};

/// Why the agent could not do its job for a certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ACME exchange failed.
    #[error("{0}")]
    Acme(String),
    /// The configuration cannot be honoured.
    #[error("{0}")]
    Config(String),
    /// A local step failed (key, responder, parsing).
    #[error("{0}")]
    Local(String),
    /// Nothing was sent to the CA: a known limit is used up or the CA asked
    /// not to be contacted yet. No retry before `until` (unix seconds), and
    /// `--force` does not change that.
    #[error("{message}")]
    NotBefore {
        /// Which limit or answer, the count, the window, and the time.
        message: String,
        /// When an attempt can succeed.
        until: i64,
    },
}

/// What one pass over a certificate did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing due before this time.
    Waiting(i64),
    /// A certificate was obtained (serial).
    Obtained(String),
}

/// How a new order relates to the CA's renewal rules.
#[derive(Debug, Clone, Copy, Default)]
struct OrderPlan {
    /// Send ARI `replaces` for the current certificate.
    replaces: bool,
    /// The renewal follows the CA's ARI window (not forced): CAs exempt it
    /// from some limits.
    ari_scheduled: bool,
}

/// One line of `certkeeper limits`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
}

/// One line of `certkeeper status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertStatus {
    /// Managed certificate name.
    pub name: String,
    /// Names it covers.
    pub names: Vec<String>,
    /// Issuer name.
    pub issuer: String,
    /// Serial of the current certificate.
    pub serial: Option<String>,
    /// Its notAfter, RFC 3339.
    pub not_after: Option<String>,
    /// When it is next due, RFC 3339.
    pub next_renewal: Option<String>,
    /// `valid`, `expired`, `none`, `order in flight` or `failing`.
    pub state: String,
    /// Consecutive failures.
    pub failures: i64,
    /// The last error.
    pub last_error: Option<String>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The running agent.
pub struct Agent {
    config: Config,
    store: Store,
    accounts: HashMap<String, AcmeAccount>,
    http01: Option<Arc<Http01Responder>>,
    tlsalpn01: Option<Arc<TlsAlpn01Responder>>,
    resolvers: HashMap<String, Arc<CertResolver>>,
    /// Deploy targets whose files are current but whose reload failed.
    reload_pending: HashSet<(String, PathBuf)>,
    /// Certificates from before the ledger keys existed have been keyed.
    ledger_keyed: bool,
}

impl Agent {
    /// An agent over a validated configuration and its store.
    pub fn new(config: Config, store: Store) -> Agent {
        Agent {
            config,
            store,
            accounts: HashMap::new(),
            http01: None,
            tlsalpn01: None,
            resolvers: HashMap::new(),
            reload_pending: HashSet::new(),
            ledger_keyed: false,
        }
    }

    /// A resolver that always serves `name`'s current certificate; renewals
    /// swap it in place.
    pub async fn resolver(&mut self, name: &str) -> Result<Arc<CertResolver>, AgentError> {
        let resolver = self
            .resolvers
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(CertResolver::new()))
            .clone();
        if let Some(cert) = self.store.latest_managed_cert(name).await? {
            resolver
                .set(&cert.chain_pem, &cert.key_pem)
                .map_err(|e| AgentError::Local(e.to_string()))?;
        }
        Ok(resolver)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs passes over every certificate until the process stops, sleeping
    /// until the earliest thing due (at most `check_interval_seconds`).
    pub async fn run_forever(&mut self) -> Result<(), AgentError> {
        loop {
            let mut next = now() + self.config.agent.check_interval_seconds as i64;
            let names: Vec<String> = self
                .config
                .certificates
                .iter()
                .map(|c| c.name.clone())
                .collect();
            for name in names {
                match self.run_once(&name, false).await {
                    Ok(Outcome::Waiting(until)) => next = next.min(until),
                    Ok(Outcome::Obtained(_)) => next = now(),
                    Err(e) => {
                        tracing::warn!(certificate = %name, error = %e, "certificate pass failed")
                    }
                }
            }
            let wait =
                (next - now()).clamp(1, self.config.agent.check_interval_seconds as i64) as u64;
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
    }

    /// One pass over one certificate: plan, then act. Failures are recorded
    /// (count, backoff, message) before they are returned.
    pub async fn run_once(&mut self, name: &str, forced: bool) -> Result<Outcome, AgentError> {
        let cert = self.config.certificate(name).cloned().ok_or_else(|| {
            AgentError::Config(format!(
                "no [[certificate]] named {name:?} in the configuration"
            ))
        })?;
        let issuer = self
            .config
            .issuer(&cert.issuer)
            .cloned()
            .ok_or_else(|| AgentError::Config(format!("issuer {:?} missing", cert.issuer)))?;
        let mut state = self.store.agent_state(name).await?;
        let latest = self.store.latest_managed_cert(name).await?;
        let fingerprint = cert.fingerprint(&issuer, &self.config.agent);
        let set = limits::identifier_set(&cert.names);
        // The CA said "not before": no request for this set at all, ARI
        // polls included, whatever the planner or the operator wants.
        let deferred = self.store.retry_after(&issuer.name, &set, now()).await?;
        if latest.is_some() && deferred.is_none() {
            self.poll_ari(&issuer, latest.as_ref(), &mut state).await;
        }
        let view = CertView {
            current: latest.as_ref().map(|c| (c.not_before, c.not_after)),
            ari: match (state.ari_start, state.ari_end, state.ari_chosen) {
                (Some(start), Some(end), Some(chosen)) => Some(AriWindow { start, end, chosen }),
                _ => None,
            },
            in_flight: state.order_url.is_some(),
            failures: state.failures.max(0) as u32,
            next_attempt: state.next_attempt,
            // Recorded when an order starts or a certificate lands; a
            // difference means the operator changed what to issue.
            config_changed: !state.fingerprint.is_empty() && state.fingerprint != fingerprint,
            renew_before_secs: cert.renew_before_days.map(|d| (d * 86400.0) as i64),
            forced,
        };
        let action =
            planner::plan(&view, now()).map_err(|e| AgentError::Config(format!("{name}: {e}")))?;
        let result = match (action, deferred) {
            (Action::Wait { until }, _) => {
                if let Some(c) = &latest {
                    self.ensure_deployed(&cert, c).await;
                }
                // Wake for the next ARI poll too: the CA may move the window.
                let wake = state.ari_next_poll.map_or(until, |poll| until.min(poll));
                return Ok(Outcome::Waiting(wake));
            }
            (_, Some((until, reason))) => Err((
                AgentError::NotBefore {
                    message: format!(
                        "certkeeper: {} asked not to be contacted for [{set}] before {} (Retry-After); nothing sent. Its answer: {reason}",
                        issuer.name,
                        rfc3339(until)
                    ),
                    until,
                },
                false,
            )),
            (Action::Resume, None) => self.resume(&cert, &issuer, &mut state).await,
            (Action::Obtain, None) => {
                self.obtain(
                    &cert,
                    &issuer,
                    &mut state,
                    latest.as_ref(),
                    OrderPlan::default(),
                    &fingerprint,
                )
                .await
            }
            (Action::Renew { reason, replaces }, None) => {
                tracing::info!(certificate = %name, %reason, "renewing");
                // A forced renewal is not the CA's ARI schedule: it gets no
                // exemption from the set limit, even when `replaces` is sent.
                let order = OrderPlan {
                    replaces,
                    ari_scheduled: replaces && !forced,
                };
                self.obtain(
                    &cert,
                    &issuer,
                    &mut state,
                    latest.as_ref(),
                    order,
                    &fingerprint,
                )
                .await
            }
        };
        match result {
            Ok(row) => {
                state.order_url = None;
                state.order_key_pem = None;
                state.failures = 0;
                state.next_attempt = 0;
                state.last_error = None;
                state.fingerprint = fingerprint;
                // The window belonged to the replaced certificate.
                state.ari_start = None;
                state.ari_end = None;
                state.ari_chosen = None;
                state.ari_next_poll = None;
                self.store.put_agent_state(&state, now()).await?;
                self.ensure_deployed(&cert, &row).await;
                if let Some(r) = self.resolvers.get(name) {
                    r.set(&row.chain_pem, &row.key_pem)
                        .map_err(|e| AgentError::Local(e.to_string()))?;
                }
                Ok(Outcome::Obtained(row.serial))
            }
            Err((e, order_is_dead)) => {
                state.failures += 1;
                let delay = match &e {
                    // The time it can work, not a guess that grows.
                    AgentError::NotBefore { until, .. } => (until - now()).max(1),
                    _ => planner::backoff(
                        state.failures as u32,
                        self.config.agent.backoff_initial_seconds as i64,
                        self.config.agent.backoff_max_seconds as i64,
                    ),
                };
                state.next_attempt = now() + delay;
                state.last_error = Some(e.to_string());
                if order_is_dead {
                    state.order_url = None;
                    state.order_key_pem = None;
                }
                self.store.put_agent_state(&state, now()).await?;
                tracing::warn!(certificate = %name, error = %e, retry_in_secs = delay, "certificate pass failed");
                Err(e)
            }
        }
    }

    /// Asks the CA for its ARI window when the last answer's Retry-After has passed.
    async fn poll_ari(
        &mut self,
        issuer: &IssuerConfig,
        latest: Option<&ManagedCertRow>,
        state: &mut AgentStateRow,
    ) {
        let Some(latest) = latest else { return };
        if state.ari_next_poll.is_some_and(|t| t > now()) {
            return;
        }
        let Some(leaf) = leaf_der(&latest.chain_pem) else {
            return;
        };
        let account = match self.account(issuer).await {
            Ok(a) => a,
            Err(e) => {
                return tracing::warn!(issuer = %issuer.name, error = %e, "no account for ARI");
            }
        };
        match account.renewal_window(&leaf).await {
            Ok(Some((start, end, retry_after))) => {
                let (start, end) = (start.unix_timestamp(), end.unix_timestamp());
                if state.ari_start != Some(start) || state.ari_end != Some(end) {
                    state.ari_chosen = Some(planner::choose_in_window(
                        start,
                        end,
                        rand::random::<f64>(),
                        now(),
                    ));
                }
                state.ari_start = Some(start);
                state.ari_end = Some(end);
                // RFC 9773 §4.3: honour Retry-After, within sane bounds.
                state.ari_next_poll = Some(now() + (retry_after.as_secs() as i64).clamp(1, 86400));
            }
            // The CA offers no ARI: ask again in a day, in case it starts to.
            Ok(None) => state.ari_next_poll = Some(now() + 86400),
            Err(e) => {
                tracing::warn!(certificate = %latest.name, error = %e, "ARI poll failed");
                state.ari_next_poll = Some(now() + 3600);
            }
        }
        if let Err(e) = self.store.put_agent_state(state, now()).await {
            tracing::warn!(error = %e, "cannot record the ARI window");
        }
    }

    /// Creates a new order, records it with its key, then drives it.
    async fn obtain(
        &mut self,
        cert: &CertificateConfig,
        issuer: &IssuerConfig,
        state: &mut AgentStateRow,
        latest: Option<&ManagedCertRow>,
        plan: OrderPlan,
        fingerprint: &str,
    ) -> Result<ManagedCertRow, (AgentError, bool)> {
        // Before anything reaches the CA: a certificate the CA would refuse
        // must not cost an order (nor its account lookup).
        self.check_limits(cert, issuer, plan.ari_scheduled)
            .await
            .map_err(|e| (e, false))?;
        let replaces = plan.replaces;
        let key = match (cert.reuse_key, latest) {
            (true, Some(c)) => CertificateKey::from_pem(&c.key_pem)
                .map_err(|e| (AgentError::Local(e.to_string()), false))?,
            _ => generate_key(cert.key).await.map_err(|e| (e, false))?,
        };
        let key_pem = key
            .to_pem()
            .map_err(|e| (AgentError::Local(e.to_string()), false))?;
        let mut request = OrderRequest::new(cert.names.clone());
        request.profile = issuer.profile.clone();
        request.key = KeyChoice::Reuse(key.clone());
        if replaces && let Some(leaf) = latest.and_then(|c| leaf_der(&c.chain_pem)) {
            request.replaces = acme::cert_id(&leaf).ok();
        }
        let account = self.account(issuer).await.map_err(|e| (e, false))?;
        let set = limits::identifier_set(&cert.names);
        self.throttle_orders(issuer).await.map_err(|e| (e, false))?;
        // Recorded before it is sent: a refused or lost order still counts
        // against the CA's per-account limit.
        self.store
            .record_agent_order(&issuer.name, &set, now())
            .await
            .map_err(|e| (e.into(), false))?;
        let order_url = match retry_bad_nonce(|| account.create_order(&request)).await {
            Ok(url) => url,
            Err(e) => return Err((self.acme_failure(issuer, &set, &e).await, false)),
        };
        // Before driving the order: a crash from here on resumes this order.
        state.order_url = Some(order_url);
        state.order_key_pem = Some(key_pem);
        state.fingerprint = fingerprint.to_string();
        self.store
            .put_agent_state(state, now())
            .await
            .map_err(|e| (e.into(), false))?;
        crash_point("order-created");
        self.resume(cert, issuer, state).await
    }

    /// Drives the recorded order to a certificate and stores it.
    async fn resume(
        &mut self,
        cert: &CertificateConfig,
        issuer: &IssuerConfig,
        state: &mut AgentStateRow,
    ) -> Result<ManagedCertRow, (AgentError, bool)> {
        let (Some(url), Some(key_pem)) = (state.order_url.clone(), state.order_key_pem.clone())
        else {
            return Err((AgentError::Local("no order in flight".into()), true));
        };
        let key = CertificateKey::from_pem(&key_pem)
            .map_err(|e| (AgentError::Local(e.to_string()), true))?;
        let account = self.account(issuer).await.map_err(|e| (e, false))?;
        let solver = self.solver(cert).await.map_err(|e| (e, false))?;
        let poll = PollPolicy::default();
        let issued = retry_bad_nonce(|| {
            account.complete_order(&url, &cert.names, &key, solver.as_ref(), &poll)
        })
        .await;
        let issued = match issued {
            Ok(issued) => issued,
            Err(e) => {
                let set = limits::identifier_set(&cert.names);
                let dead = e.needs_new_order();
                return Err((self.acme_failure(issuer, &set, &e).await, dead));
            }
        };
        let leaf = issued
            .chain
            .first()
            .ok_or_else(|| (AgentError::Acme("empty chain".into()), true))?;
        let (serial, spki) = leaf_facts(leaf).map_err(|e| (e, true))?;
        let row = ManagedCertRow {
            serial,
            name: cert.name.clone(),
            issuer: issuer.name.clone(),
            names: issued.names.join(","),
            chain_pem: issued.chain_pem.clone(),
            key_pem,
            spki_sha256: spki,
            not_before: issued.not_before.unix_timestamp(),
            not_after: issued.not_after.unix_timestamp(),
            order_url: url,
            obtained_at: now(),
            identifier_set: limits::identifier_set(&issued.names),
            registered_domains: limits::registered_domains(&issued.names).join(","),
        };
        self.store
            .insert_managed_cert(&row)
            .await
            .map_err(|e| (e.into(), false))?;
        tracing::info!(certificate = %cert.name, serial = %row.serial, not_after = %rfc3339(row.not_after), "certificate obtained");
        Ok(row)
    }

    /// Writes the certificate to every deploy target whose files differ, and
    /// re-runs reloads that failed; failures are logged and retried on the
    /// next pass (the certificate is safe in the store meanwhile).
    async fn ensure_deployed(&mut self, cert: &CertificateConfig, row: &ManagedCertRow) {
        for target in &cert.deploy {
            let file_target = FileTarget {
                dir: target.dir.clone(),
                combined: target.combined,
                reload: target.reload.as_ref().map(|command| ReloadCommand {
                    command: command.clone(),
                    timeout: Duration::from_secs(target.reload_timeout_seconds),
                    retries: target.reload_retries,
                }),
            };
            let pending_key = (cert.name.clone(), target.dir.clone());
            let current = file_target
                .is_current(&row.chain_pem, &row.key_pem)
                .await
                .unwrap_or(false);
            if current && !self.reload_pending.contains(&pending_key) {
                continue;
            }
            match file_target.deploy(&row.chain_pem, &row.key_pem).await {
                Ok(_) => {
                    self.reload_pending.remove(&pending_key);
                    tracing::info!(certificate = %cert.name, dir = %target.dir.display(), "deployed");
                }
                Err(e) => {
                    if matches!(e, DeployError::Reload { .. }) {
                        // The files are in place; only the reload must run again.
                        self.reload_pending.insert(pending_key);
                    }
                    tracing::warn!(certificate = %cert.name, dir = %target.dir.display(), error = %e, "deploy failed; retrying next pass");
                }
            }
        }
    }

    /// The issuer's account: loaded from the store, or registered and stored.
    async fn account(&mut self, issuer: &IssuerConfig) -> Result<AcmeAccount, AgentError> {
        if let Some(a) = self.accounts.get(&issuer.name) {
            return Ok(a.clone());
        }
        let mut directory = AcmeDirectory::new(issuer.directory.clone());
        if let Some(root) = &issuer.root {
            directory = directory.with_root_pem(root);
        }
        let stored = self.store.agent_account(&issuer.name).await?;
        let account = match stored {
            Some((url, credentials)) if url == issuer.directory => {
                let credentials = serde_json::from_str(&credentials).map_err(|e| {
                    AgentError::Local(format!(
                        "stored account for {} is corrupt: {e}",
                        issuer.name
                    ))
                })?;
                match AcmeAccount::load(&directory, credentials).await {
                    Ok(account) => account,
                    Err(e) => return Err(self.acme_failure(issuer, "", &e).await),
                }
            }
            _ => {
                let eab = match &issuer.eab {
                    Some(eab) => Some(ExternalAccountBinding {
                        key_id: eab.kid.clone(),
                        hmac_key: certkeeper_proto::b64::decode(&eab.hmac_key).map_err(|e| {
                            AgentError::Config(format!("issuer {}: eab.hmac_key: {e}", issuer.name))
                        })?,
                    }),
                    None => None,
                };
                let options = NewAccountOptions {
                    contact: issuer.contact.clone(),
                    eab,
                };
                let (account, credentials) =
                    match retry_bad_nonce(|| AcmeAccount::create(&directory, &options)).await {
                        Ok(created) => created,
                        // Account-wide: every set waits.
                        Err(e) => return Err(self.acme_failure(issuer, "", &e).await),
                    };
                let json = serde_json::to_string(&credentials)
                    .map_err(|e| AgentError::Local(e.to_string()))?;
                self.store
                    .put_agent_account(&issuer.name, &issuer.directory, &json, now())
                    .await?;
                account
            }
        };
        self.accounts.insert(issuer.name.clone(), account.clone());
        Ok(account)
    }

    /// Turns a CA error into the agent's, persisting its Retry-After (if
    /// any) for `set` (`""`: the whole account) so no process sends another
    /// request for it before then.
    async fn acme_failure(&self, issuer: &IssuerConfig, set: &str, e: &AcmeError) -> AgentError {
        let Some(wait) = e.retry_after() else {
            return acme_error(e);
        };
        let until = now() + wait.as_secs().max(1) as i64;
        let report = e.report();
        if let Err(store) = self
            .store
            .put_retry_after(&issuer.name, set, until, &report)
            .await
        {
            tracing::warn!(issuer = %issuer.name, error = %store, "cannot record the CA's Retry-After");
        }
        AgentError::NotBefore {
            message: format!(
                "{report}; certkeeper sends nothing for [{set}] to {} before {}",
                issuer.name,
                rfc3339(until)
            ),
            until,
        }
    }

    /// Gives ledger keys to certificates recorded before the ledger existed
    /// (once per process), so they count against the limits too.
    async fn key_ledger(&mut self) -> Result<(), AgentError> {
        if self.ledger_keyed {
            return Ok(());
        }
        for row in self.store.ledger_unkeyed().await? {
            let names: Vec<String> = row.names.split(',').map(str::to_string).collect();
            self.store
                .set_ledger_keys(
                    &row.issuer,
                    &row.serial,
                    &limits::identifier_set(&names),
                    &limits::registered_domains(&names).join(","),
                )
                .await?;
        }
        self.ledger_keyed = true;
        Ok(())
    }

    /// How much of each of the issuer's limits one more certificate for
    /// `names` would draw on, per the ledger. `ari_scheduled` and whether
    /// the set was issued before decide the CA's published exemptions.
    async fn limit_usage(
        &mut self,
        names: &[String],
        issuer: &IssuerConfig,
        ari_scheduled: bool,
    ) -> Result<Vec<(Usage, String)>, AgentError> {
        self.key_ledger().await?;
        let limits = issuer.ca_limits();
        let set = limits::identifier_set(names);
        let t = now();
        let since = |l: Limit| t - l.period_seconds as i64;
        let mut out = Vec::new();
        if let Some(l) = limits.certificates_per_fqdn_set
            && !(ari_scheduled && limits.ari_renewals_exempt_from_fqdn_set)
        {
            let times = self
                .store
                .ledger_set_times(&issuer.name, &set, since(l))
                .await?;
            out.push((
                Usage::from_times(LimitKind::CertificatesPerFQDNSet, l, &times, t),
                format!("certificates for [{set}]"),
            ));
        }
        let renewal = self.store.ledger_has_set(&issuer.name, &set).await?;
        if let Some(l) = limits.certificates_per_domain
            && !(renewal && limits.renewals_exempt_from_domain)
        {
            for domain in limits::registered_domains(names) {
                let times = self
                    .store
                    .ledger_domain_times(&issuer.name, &domain, since(l))
                    .await?;
                out.push((
                    Usage::from_times(LimitKind::CertificatesPerDomain, l, &times, t),
                    format!("certificates under {domain}"),
                ));
            }
        }
        if let Some(l) = limits.new_orders_per_account {
            let times = self.store.agent_order_times(&issuer.name, since(l)).await?;
            out.push((
                Usage::from_times(LimitKind::NewOrdersPerAccount, l, &times, t),
                "new orders by this account".to_string(),
            ));
        }
        Ok(out)
    }

    /// Refuses, without contacting the CA, a certificate that would exceed
    /// one of its known limits; the error says which, and when it fits.
    async fn check_limits(
        &mut self,
        cert: &CertificateConfig,
        issuer: &IssuerConfig,
        ari_scheduled: bool,
    ) -> Result<(), AgentError> {
        let usage = self.limit_usage(&cert.names, issuer, ari_scheduled).await?;
        let full = usage
            .iter()
            .filter_map(|(u, what)| u.next_free.map(|until| (u, what, until)))
            .max_by_key(|(_, _, until)| *until);
        if let Some((u, what, until)) = full {
            return Err(AgentError::NotBefore {
                message: format!(
                    "certkeeper: {}: {} {what} in the last {} at {}; next possible at {} (refused locally, nothing sent to the CA)",
                    u.kind,
                    u.used,
                    limits::window_text(u.limit.period_seconds),
                    issuer.name,
                    rfc3339(until)
                ),
                until,
            });
        }
        Ok(())
    }

    /// Waits until the issuer's account has sent fewer than
    /// `max_orders_per_minute` orders in the last minute (counted in the
    /// store, so every certificate and process sharing it is included).
    async fn throttle_orders(&self, issuer: &IssuerConfig) -> Result<(), AgentError> {
        let max = self.config.agent.max_orders_per_minute.max(1) as usize;
        loop {
            let t = now();
            let times = self.store.agent_order_times(&issuer.name, t - 60).await?;
            if times.len() < max {
                return Ok(());
            }
            let wait = (times[times.len() - max] + 60 - t).clamp(1, 60) as u64;
            tracing::info!(issuer = %issuer.name, wait_secs = wait, max, "order throttle: waiting for a slot");
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
    }

    /// Every limit of every issuer for the configured certificates, and the
    /// CA's Retry-After deadlines in force: `certkeeper limits`.
    pub async fn limits(&mut self) -> Result<Vec<LimitStatus>, AgentError> {
        let mut out: Vec<LimitStatus> = Vec::new();
        let t = now();
        for cert in self.config.certificates.clone() {
            let Some(issuer) = self.config.issuer(&cert.issuer).cloned() else {
                continue;
            };
            let set = limits::identifier_set(&cert.names);
            for (u, what) in self.limit_usage(&cert.names, &issuer, false).await? {
                let row = LimitStatus {
                    issuer: issuer.name.clone(),
                    limit: u.kind.to_string(),
                    subject: what,
                    used: u.used,
                    max: u.limit.count,
                    window: limits::window_text(u.limit.period_seconds),
                    window_seconds: u.limit.period_seconds,
                    next_free: u.next_free.map(rfc3339),
                };
                if !out.contains(&row) {
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
                };
                if !out.contains(&row) {
                    out.push(row);
                }
            }
        }
        Ok(out)
    }

    /// The solver for a certificate's challenge; built-in responders are
    /// bound on first use (port 80/443 need privileges only when used).
    async fn solver(&mut self, cert: &CertificateConfig) -> Result<Arc<dyn Solver>, AgentError> {
        match cert.challenge {
            ChallengeType::Http01 => {
                if let Some(root) = &cert.webroot {
                    return Ok(Arc::new(WebrootSolver { root: root.clone() }));
                }
                if self.http01.is_none() {
                    let listen = self.config.agent.http01_listen;
                    let r = Http01Responder::bind(listen).await.map_err(|e| {
                        AgentError::Local(format!("cannot listen on {listen} for http-01 ({e}); set agent.http01_listen or use webroot"))
                    })?;
                    self.http01 = Some(Arc::new(r));
                }
                self.http01
                    .clone()
                    .map(|r| r as Arc<dyn Solver>)
                    .ok_or_else(|| AgentError::Local("http-01 responder".into()))
            }
            ChallengeType::TlsAlpn01 => {
                if self.tlsalpn01.is_none() {
                    let listen = self.config.agent.tlsalpn01_listen;
                    let r = TlsAlpn01Responder::bind(listen).await.map_err(|e| {
                        AgentError::Local(format!("cannot listen on {listen} for tls-alpn-01 ({e}); set agent.tlsalpn01_listen"))
                    })?;
                    self.tlsalpn01 = Some(Arc::new(r));
                }
                self.tlsalpn01
                    .clone()
                    .map(|r| r as Arc<dyn Solver>)
                    .ok_or_else(|| AgentError::Local("tls-alpn-01 responder".into()))
            }
            ChallengeType::Dns01 => {
                let hook = cert.dns_hook.as_ref().ok_or_else(|| {
                    AgentError::Config(format!("{}: dns-01 needs dns_hook", cert.name))
                })?;
                Ok(Arc::new(ExecDnsSolver {
                    present: hook.present.clone(),
                    cleanup: hook.cleanup.clone(),
                    propagation: Duration::from_secs(hook.propagation_seconds),
                }))
            }
        }
    }

    /// The status of every managed certificate.
    pub async fn status(&self) -> Result<Vec<CertStatus>, AgentError> {
        let mut out = Vec::new();
        for cert in &self.config.certificates {
            let state = self.store.agent_state(&cert.name).await?;
            let latest = self.store.latest_managed_cert(&cert.name).await?;
            let t = now();
            let next_renewal = latest.as_ref().and_then(|c| {
                let view = CertView {
                    ari: state
                        .ari_chosen
                        .zip(state.ari_start.zip(state.ari_end))
                        .map(|(chosen, (start, end))| AriWindow { start, end, chosen }),
                    renew_before_secs: cert.renew_before_days.map(|d| (d * 86400.0) as i64),
                    ..Default::default()
                };
                planner::renewal_due(&view, c.not_before, c.not_after).ok()
            });
            let state_word = if state.order_url.is_some() {
                "order in flight"
            } else if state.failures > 0 {
                "failing"
            } else {
                match &latest {
                    None => "none",
                    Some(c) if c.not_after <= t => "expired",
                    Some(_) => "valid",
                }
            };
            out.push(CertStatus {
                name: cert.name.clone(),
                names: cert.names.clone(),
                issuer: cert.issuer.clone(),
                serial: latest.as_ref().map(|c| c.serial.clone()),
                not_after: latest.as_ref().map(|c| rfc3339(c.not_after)),
                next_renewal: next_renewal.map(rfc3339),
                state: state_word.into(),
                failures: state.failures,
                last_error: state.last_error.clone(),
            });
        }
        Ok(out)
    }
}

async fn generate_key(kind: KeyType) -> Result<CertificateKey, AgentError> {
    let alg = match kind {
        KeyType::EcdsaP256 => KeyAlgorithm::EcdsaP256,
        KeyType::EcdsaP384 => KeyAlgorithm::EcdsaP384,
        KeyType::Rsa2048 => KeyAlgorithm::Rsa2048,
        KeyType::Rsa3072 => KeyAlgorithm::Rsa3072,
        KeyType::Rsa4096 => KeyAlgorithm::Rsa4096,
    };
    // RSA generation takes tens of milliseconds: off the reactor.
    tokio::task::spawn_blocking(move || CertificateKey::generate(alg))
        .await
        .map_err(|e| AgentError::Local(e.to_string()))?
        .map_err(|e| AgentError::Local(e.to_string()))
}

/// How often a step that failed only on `badNonce` is run again at once.
/// instant-acme retries a request 3 times; a CA rejecting half of all nonces
/// (pebble's PEBBLE_WFE_NONCEREJECT=50) still beats that now and then, and
/// every step here is resumable, so retrying costs nothing but a request.
const BAD_NONCE_RETRIES: usize = 8;

async fn retry_bad_nonce<T, F, Fut>(mut step: F) -> Result<T, AcmeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AcmeError>>,
{
    let mut attempt = 0;
    loop {
        match step().await {
            Err(e) if attempt < BAD_NONCE_RETRIES && is_bad_nonce(&e) => attempt += 1,
            other => return other,
        }
    }
}

fn is_bad_nonce(e: &AcmeError) -> bool {
    e.problem().and_then(|p| p.r#type.as_deref()) == Some("urn:ietf:params:acme:error:badNonce")
}

/// Fault injection for crash tests: when `CERTKEEPER_CRASH_AT` names this
/// point, the process aborts here, as `kill -9` would. Real crashes cannot
/// be scheduled at an exact step; this is the mock DESIGN.md allows for a
/// fault a real peer cannot produce.
pub fn crash_point(point: &str) {
    if std::env::var("CERTKEEPER_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("CERTKEEPER_CRASH_AT={point}: aborting");
        std::process::abort();
    }
}

fn acme_error(e: &AcmeError) -> AgentError {
    AgentError::Acme(e.report())
}

fn leaf_der(chain_pem: &str) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()?
        .ok()
}

fn leaf_facts(der: &CertificateDer<'_>) -> Result<(String, String), AgentError> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| AgentError::Acme(format!("the CA returned an unparsable certificate: {e}")))?;
    let spki = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.public_key().raw);
    Ok((hex::encode(cert.raw_serial()), hex::encode(spki.as_ref())))
}
