//! What a job does, under its claim: check the store again (another job or
//! process may have done the work since the pass planned it), then order,
//! resume, poll or deploy for one slot. CertMagic's "check storage, lock,
//! check again".

use std::sync::Arc;

use certkeeper_store::{ManagedCertRow, SlotRow};

use crate::acme::{CertificateKey, KeyAlgorithm};
use crate::config::{CertificateConfig, KeyType};
use crate::daemon::{Agent, JobResult};
use crate::error::AgentError;
use crate::events::EventKind;
use crate::faults::crash_point;
use crate::guard::{Claim, JobKey};
use crate::issuer::{CsrSource, IssueRequest, Issuer, OrderHandle};
use crate::limits;
use crate::model::{Health, Slot};
use crate::monitor::crl::CrlStatus;
use crate::planner::{self, Action};
use crate::targets::Role;
use crate::x509;

/// How far in the future a fresh certificate's notBefore may be (clock skew).
const NOT_BEFORE_SKEW_SECONDS: i64 = 300;

impl Agent {
    /// The job of one slot: re-plan from the store, then act.
    pub(crate) async fn run_slot_job(
        self: Arc<Self>,
        claim: Claim,
        slot: Slot,
        forced: bool,
    ) -> JobResult {
        let name = claim.key().name().to_string();
        let cert = self.certificate(&name)?.clone();
        // Check the store again, under the claim.
        let inv = self.load_inventory_of(&name).await?;
        let input = self.certificate_input(&cert, &inv, forced);
        let plan = planner::plan_certificate(&input, self.now())
            .map_err(|e| AgentError::Config(format!("{name}: {e}")))?;
        let Some((_, action)) = plan.actions.into_iter().find(|(s, _)| *s == slot) else {
            return Ok(None);
        };
        let result = match action {
            Action::Wait { .. } => return Ok(None),
            Action::Poll => return self.poll(&cert, slot).await.map(|_| None),
            Action::Resume => self.complete(&cert, slot).await,
            Action::Obtain => self.order(&cert, slot, false, false, false).await,
            Action::Renew { reason, replaces } => {
                tracing::info!(certificate = %name, %slot, %reason, "renewing");
                // A forced renewal is not the CA's ARI schedule: it gets no
                // exemption from the set limit, even when `replaces` is sent.
                self.order(&cert, slot, replaces, replaces && !forced, false)
                    .await
            }
            Action::Rekey { reason } => {
                tracing::info!(certificate = %name, %slot, %reason, "re-keying");
                self.order(&cert, slot, true, false, true).await
            }
        };
        match result {
            Ok(row) => Ok(Some(row.serial)),
            Err(e) => {
                self.record_failure(&name, slot, &e).await;
                Err(e)
            }
        }
    }

    /// The issuer of a slot that must have one (the planner only acts on
    /// configured slots).
    fn required_issuer(
        &self,
        cert: &CertificateConfig,
        slot: Slot,
    ) -> Result<
        (
            &crate::config::IssuerConfig,
            &Arc<crate::issuer::acme::AcmeIssuer>,
        ),
        AgentError,
    > {
        self.slot_issuer(cert, slot)
            .ok_or_else(|| AgentError::Config(format!("{}: no {slot} issuer", cert.name)))
    }

    /// A new certificate on a new key for `slot`, now (the caller holds the
    /// slot's claim): `certkeeper revoke`'s replacement.
    pub(crate) async fn rekey_order(
        &self,
        cert: &CertificateConfig,
        slot: Slot,
    ) -> Result<ManagedCertRow, AgentError> {
        let result = self.order(cert, slot, true, false, true).await;
        if let Err(e) = &result {
            self.record_failure(&cert.name, slot, e).await;
        }
        result
    }

    /// Creates a new order on a key no other slot uses and no registry
    /// blocks, records it with its key, then drives it.
    async fn order(
        &self,
        cert: &CertificateConfig,
        slot: Slot,
        replaces: bool,
        ari_scheduled: bool,
        rekey: bool,
    ) -> Result<ManagedCertRow, AgentError> {
        let (issuer_config, issuer) = self.required_issuer(cert, slot)?;
        // Before anything reaches the CA: a certificate the CA would refuse
        // must not cost an order (nor its account lookup).
        self.guard
            .deferred(&issuer_config.name, &cert.names)
            .await?;
        self.guard
            .budget(issuer_config, &cert.names, ari_scheduled)
            .await?;
        let current = self.store.slot_cert(&cert.name, slot.as_str()).await?;
        // What the slot records for the order: the key's PEM, or (for a CSR
        // found by the DNS secondary, whose key stays with the service) the
        // CSR's PEM, which `complete` recognises by its label.
        let (source, key_pem) = match &cert.csr {
            Some(csr) => {
                if self.store.agent_key_blocked(&csr.spki_sha256).await? {
                    return Err(AgentError::Key {
                        name: cert.name.clone(),
                        reason: "the published CSR's key is in the blocked-key registry; the service must publish a CSR for a new key (certkeeper dns request with a new --key)".into(),
                    });
                }
                (CsrSource::Der(csr.der.clone()), csr.pem())
            }
            None => {
                let key = self.choose_key(cert, slot, current.as_ref(), rekey).await?;
                let key_pem = key.to_pem().map_err(|e| AgentError::Key {
                    name: cert.name.clone(),
                    reason: e.to_string(),
                })?;
                (CsrSource::Key(key), key_pem)
            }
        };
        let request = IssueRequest {
            names: cert.names.clone(),
            key: source,
            profile: issuer_config.profile.clone(),
            replaces: replaces
                .then(|| current.as_ref().and_then(|c| x509::leaf_der(&c.chain_pem)))
                .flatten()
                .map(|der| der.to_vec()),
        };
        self.guard
            .pace_and_record_order(&issuer_config.name, &cert.names)
            .await?;
        let handle = match issuer.begin(&request).await {
            Ok(h) => h,
            Err(e) => {
                return Err(self
                    .guard
                    .record_failure(&issuer_config.name, &cert.names, e)
                    .await);
            }
        };
        // Before driving the order: a crash from here on resumes this order.
        let mut row = self.store.slot(&cert.name, slot.as_str()).await?;
        row.order_url = Some(handle.order_url);
        row.order_key_pem = Some(key_pem);
        row.fingerprint = cert.fingerprint(issuer_config, &self.config.agent);
        self.store.put_slot(&row, self.now()).await?;
        self.events
            .emit(
                EventKind::Ordered,
                &cert.name,
                slot,
                format!(
                    "order {} at {}",
                    row.order_url.as_deref().unwrap_or("-"),
                    issuer_config.name
                ),
            )
            .await;
        crash_point("order-created");
        crate::faults::stall_point("order-created").await;
        // Just checked and just written: no need to read either again.
        self.drive(cert, slot, row).await
    }

    /// The key for a new order: the slot's current key when `reuse_key`
    /// allows it, else a fresh one. Never a blocked key, never the other
    /// slot's key.
    async fn choose_key(
        &self,
        cert: &CertificateConfig,
        slot: Slot,
        current: Option<&ManagedCertRow>,
        rekey: bool,
    ) -> Result<CertificateKey, AgentError> {
        let key_err = |reason: String| AgentError::Key {
            name: cert.name.clone(),
            reason,
        };
        let other_spki = self
            .store
            .slot_cert(&cert.name, slot.other().as_str())
            .await?
            .map(|c| c.spki_sha256);
        if cert.reuse_key
            && !rekey
            && let Some(c) = current
        {
            let usable = !self.store.agent_key_blocked(&c.spki_sha256).await?
                && other_spki.as_deref() != Some(c.spki_sha256.as_str());
            if usable {
                return CertificateKey::from_pem(&c.key_pem).map_err(|e| key_err(e.to_string()));
            }
            tracing::warn!(certificate = %cert.name, %slot, "reuse_key: the current key is blocked or shared with the other slot; generating a new one");
        }
        // A fresh key colliding with a blocked or the other slot's key is
        // astronomically unlikely; checking costs one query and makes the
        // rule unconditional.
        for _ in 0..3 {
            let key = generate_key(cert.key).await.map_err(key_err)?;
            let pem = key.to_pem().map_err(|e| key_err(e.to_string()))?;
            let spki = x509::key_spki_sha256(&pem).map_err(key_err)?;
            if !self.store.agent_key_blocked(&spki).await?
                && other_spki.as_deref() != Some(spki.as_str())
            {
                return Ok(key);
            }
        }
        Err(key_err(
            "every generated key was blocked or in use by the other slot".into(),
        ))
    }

    /// Resumes the slot's recorded order (after a restart): unless the CA
    /// deferred us, drives it as [`Agent::drive`] does.
    async fn complete(
        &self,
        cert: &CertificateConfig,
        slot: Slot,
    ) -> Result<ManagedCertRow, AgentError> {
        let (issuer_config, _) = self.required_issuer(cert, slot)?;
        self.guard
            .deferred(&issuer_config.name, &cert.names)
            .await?;
        let row = self.store.slot(&cert.name, slot.as_str()).await?;
        self.drive(cert, slot, row).await
    }

    /// Drives the order recorded in `row` (the slot as stored) to a
    /// certificate, checks it, and stores it together with the slot's new
    /// state.
    async fn drive(
        &self,
        cert: &CertificateConfig,
        slot: Slot,
        mut row: SlotRow,
    ) -> Result<ManagedCertRow, AgentError> {
        let (issuer_config, issuer) = self.required_issuer(cert, slot)?;
        let (Some(url), Some(key_pem)) = (row.order_url.clone(), row.order_key_pem.clone()) else {
            return Err(AgentError::Local(format!(
                "{} {slot}: no order in flight",
                cert.name
            )));
        };
        let key =
            match crate::secondary::csr_der_from_pem(&key_pem) {
                Some(der) => CsrSource::Der(der),
                None => CsrSource::Key(CertificateKey::from_pem(&key_pem).map_err(|e| {
                    AgentError::Key {
                        name: cert.name.clone(),
                        reason: format!("the order's stored key is unusable: {e}"),
                    }
                })?),
            };
        let solver = self.solvers.for_certificate(cert).await?;
        let handle = OrderHandle { order_url: url };
        let issued = match issuer
            .complete(&handle, &cert.names, &key, solver.as_ref(), self.now())
            .await
        {
            Ok(issued) => issued,
            Err(e) => {
                return Err(self
                    .guard
                    .record_failure(&issuer_config.name, &cert.names, e)
                    .await);
            }
        };
        let bad = |reason: String| AgentError::BadCertificate {
            name: cert.name.clone(),
            issuer: issuer_config.name.clone(),
            reason,
        };
        let leaf = issued
            .chain
            .first()
            .ok_or_else(|| bad("the chain is empty".into()))?;
        let facts = x509::leaf_facts(leaf).map_err(bad)?;
        if let Some(problem) = x509::validity_problem(&facts, self.now(), NOT_BEFORE_SKEW_SECONDS) {
            return Err(bad(problem));
        }
        if self.store.agent_key_blocked(&facts.spki_sha256).await? {
            return Err(bad("its key is in the blocked-key registry".into()));
        }
        self.check_inclusion(
            cert,
            slot,
            issuer_config,
            issued.tlog_entry.as_deref(),
            leaf,
            &facts.serial,
        )
        .await?;
        let previous = row.current_serial.clone();
        let cert_row = ManagedCertRow {
            serial: facts.serial.clone(),
            name: cert.name.clone(),
            issuer: issuer_config.name.clone(),
            names: issued.names.join(","),
            chain_pem: issued.chain_pem.clone(),
            key_pem,
            spki_sha256: facts.spki_sha256.clone(),
            not_before: facts.not_before,
            not_after: facts.not_after,
            order_url: handle.order_url,
            obtained_at: self.now(),
            identifier_set: limits::identifier_set(&issued.names),
            registered_domains: limits::registered_domains(&issued.names).join(","),
            slot: slot.as_str().to_string(),
            revoked_at: None,
            revocation_reason: None,
        };
        let first_look = first_look(
            self.now(),
            &cert_row,
            self.config.agent.revocation_check_seconds,
            rand::random(),
        );
        clear_for_new_certificate(&mut row, &cert_row, first_look);
        self.store.store_issued(&row, &cert_row, self.now()).await?;
        crash_point("stored");
        if let Some(r) = self.loaded_resolver(&cert.name)
            && let Err(e) = r.load(slot, &cert_row.chain_pem, &cert_row.key_pem)
        {
            tracing::warn!(certificate = %cert.name, %slot, error = %e, "cannot load the new certificate for serving");
        }
        let kind = if previous.is_some() {
            EventKind::Renewed
        } else {
            EventKind::Obtained
        };
        self.events
            .emit(
                kind,
                &cert.name,
                slot,
                format!(
                    "serial {} from {}, valid until {}",
                    cert_row.serial,
                    issuer_config.name,
                    certkeeper_proto::clock::rfc3339(cert_row.not_after)
                ),
            )
            .await;
        Ok(cert_row)
    }

    /// The inclusion check before a certificate is stored as deployable:
    /// with `[issuer.tlog]`, the leaf must be proven in the log against a
    /// checkpoint signed with the configured key. Refused (when
    /// `require_inclusion`) with an error naming the log; the order handle
    /// stays, so the next attempt downloads and checks again.
    async fn check_inclusion(
        &self,
        cert: &CertificateConfig,
        slot: Slot,
        issuer_config: &crate::config::IssuerConfig,
        entry_url: Option<&str>,
        leaf: &[u8],
        serial: &str,
    ) -> Result<(), AgentError> {
        let Some(log) = self.logs.get(&issuer_config.name) else {
            return Ok(());
        };
        let (log_url, require) = issuer_config
            .tlog
            .as_ref()
            .map_or((String::new(), true), |t| {
                (t.log.clone(), t.require_inclusion)
            });
        let result = match log {
            Ok(log) => log
                .verify_inclusion(entry_url, leaf)
                .await
                .map_err(|e| e.reason),
            Err(e) => Err(e.clone()),
        };
        match result {
            Ok(included) => {
                self.events
                    .emit(
                        EventKind::InclusionVerified,
                        &cert.name,
                        slot,
                        format!(
                            "serial {serial} is entry {} of {log_url} (proven against its signed checkpoint of size {})",
                            included.index, included.size
                        ),
                    )
                    .await;
                Ok(())
            }
            Err(reason) if require => Err(AgentError::NotLogged {
                name: cert.name.clone(),
                issuer: issuer_config.name.clone(),
                log: log_url,
                reason,
            }),
            Err(reason) => {
                tracing::warn!(certificate = %cert.name, %slot, log = %log_url, %reason, "inclusion not verified (require_inclusion = false: deploying anyway)");
                self.events
                    .emit(
                        EventKind::Failed,
                        &cert.name,
                        slot,
                        format!("inclusion of serial {serial} in {log_url} not verified (deploying anyway: require_inclusion = false): {reason}"),
                    )
                    .await;
                Ok(())
            }
        }
    }

    /// Asks the CA's ARI endpoint and the CRL about the slot's certificate;
    /// a revocation found is recorded (the next plan swaps and re-keys).
    async fn poll(&self, cert: &CertificateConfig, slot: Slot) -> Result<(), AgentError> {
        let (issuer_config, issuer) = self.required_issuer(cert, slot)?;
        let now = self.now();
        let mut row = self.store.slot(&cert.name, slot.as_str()).await?;
        let Some(current) = self.store.slot_cert(&cert.name, slot.as_str()).await? else {
            return Ok(());
        };
        let Some(leaf) = x509::leaf_der(&current.chain_pem) else {
            return Ok(());
        };
        // The CA's Retry-After covers ARI polls too: look again after it.
        if let Err(AgentError::NotBefore { until, .. }) =
            self.guard.deferred(&issuer_config.name, &cert.names).await
        {
            row.ari_next_poll = Some(until);
            row.crl_next_check = Some(row.crl_next_check.unwrap_or(until).max(until));
            self.store.put_slot(&row, now).await?;
            return Ok(());
        }
        let mut urgent = false;
        if row.ari_next_poll.is_none_or(|t| t <= now) {
            urgent = crate::monitor::ari::poll(issuer, &leaf, &mut row, now, rand::random()).await;
        }
        if urgent || row.crl_next_check.is_none_or(|t| t <= now) {
            let (next, revoked) = self.check_crl(&current, urgent).await;
            row.crl_next_check = Some(next);
            if let Some(reason) = revoked {
                self.record_revocation(&current, &reason, "the CA's CRL")
                    .await?;
            }
        }
        self.store.put_slot(&row, now).await?;
        Ok(())
    }

    /// The revocation status from the CRL named in the certificate;
    /// returns when to look again and the reason when revoked. `force`
    /// skips the cache (the CA's ARI window said "replace now").
    async fn check_crl(&self, current: &ManagedCertRow, force: bool) -> (i64, Option<String>) {
        let now = self.now();
        let interval = self.config.agent.revocation_check_seconds as i64;
        let next = now + interval;
        let Some(checker) = self.crl.get(&current.issuer) else {
            return (next, None);
        };
        let chain = match x509::chain_der(&current.chain_pem) {
            Ok(chain) if chain.len() >= 2 => chain,
            // No issuer certificate in the chain: the CRL cannot be verified.
            _ => return (next, None),
        };
        let (leaf, issuer) = (chain[0].as_ref(), chain[1].as_ref());
        let status = if force {
            checker.check_forced(leaf, issuer, now).await
        } else {
            checker.check(leaf, issuer, now).await
        };
        match status {
            Ok(CrlStatus::Good { next_update }) => (next.min(next_update).max(now + 1), None),
            Ok(CrlStatus::NoDistributionPoint) => (next, None),
            Ok(CrlStatus::Revoked { reason, .. }) => (
                next,
                Some(reason.map_or_else(|| "unspecified".to_string(), |r| r.to_string())),
            ),
            Err(e) => {
                tracing::warn!(certificate = %current.name, slot = %current.slot, error = %e, "CRL check failed");
                // A passing outage is asked again soon; a broken CRL at the interval.
                let retry = if e.is_retryable() {
                    interval.min(300)
                } else {
                    interval
                };
                (now + retry, None)
            }
        }
    }

    /// Records that `cert` is revoked, blocks its key when the reason is
    /// keyCompromise, and tells everyone.
    pub(crate) async fn record_revocation(
        &self,
        cert: &ManagedCertRow,
        reason: &str,
        source: &str,
    ) -> Result<(), AgentError> {
        let now = self.now();
        self.store
            .mark_revoked(&cert.issuer, &cert.serial, reason, now)
            .await?;
        let slot: Slot = cert.slot.parse().unwrap_or(Slot::Primary);
        self.events
            .emit(
                EventKind::Revoked,
                &cert.name,
                slot,
                format!(
                    "serial {} from {} ({reason}; from {source})",
                    cert.serial, cert.issuer
                ),
            )
            .await;
        if reason == "keyCompromise" {
            self.block_key(&cert.spki_sha256, source, &cert.name, slot)
                .await?;
        }
        Ok(())
    }

    /// Adds a key to the local blocked-key registry.
    pub(crate) async fn block_key(
        &self,
        spki_sha256: &str,
        source: &str,
        name: &str,
        slot: Slot,
    ) -> Result<(), AgentError> {
        self.store
            .agent_block_key(spki_sha256, "keyCompromise", source, self.now())
            .await?;
        self.events
            .emit(
                EventKind::KeyBlocked,
                name,
                slot,
                format!(
                    "key {spki_sha256} blocked ({source}); every certificate using it is re-keyed"
                ),
            )
            .await;
        Ok(())
    }

    /// Writes the served slot's certificate (and the backup's, under
    /// `backup/`) to the deploy targets. A certificate that must not be
    /// served (revoked, expired, blocked key) is never written.
    pub(crate) async fn run_deploy_job(self: Arc<Self>, claim: Claim) -> JobResult {
        let JobKey::Deploy(name) = claim.key().clone() else {
            return Ok(None);
        };
        let cert = self.certificate(&name)?.clone();
        let served = self.served_slot(&name).await?;
        let mut roles = vec![(Role::Served, served)];
        if cert.backup.is_some() {
            roles.push((Role::Backup, Slot::Backup));
        }
        for (role, slot) in roles {
            if !self.targets.has(&name, role) {
                continue;
            }
            let health = self.slot_health(&name, slot).await?;
            if health.is_unservable() {
                if health != Health::Missing {
                    tracing::warn!(certificate = %name, %slot, %health, "not deploying a certificate that must not be served");
                }
                continue;
            }
            let Some(c) = self.store.slot_cert(&name, slot.as_str()).await? else {
                continue;
            };
            match self
                .targets
                .ensure(&name, role, &c.chain_pem, &c.key_pem)
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    let what = if role == Role::Served {
                        ""
                    } else {
                        " (backup/)"
                    };
                    self.events
                        .emit(
                            EventKind::Deployed,
                            &name,
                            slot,
                            format!("serial {} written to {n} target(s){what}", c.serial),
                        )
                        .await
                }
                Err(e) => {
                    self.events
                        .emit(EventKind::Failed, &name, slot, format!("deploy: {e}"))
                        .await;
                    return Err(e.into());
                }
            }
        }
        Ok(None)
    }
}

/// The slot's state once `cert` is its current certificate: no order in
/// flight, no failures, and the ARI/CRL schedule of the old one replaced by
/// `first_look` (see [`first_look`]).
fn clear_for_new_certificate(row: &mut SlotRow, cert: &ManagedCertRow, first_look: i64) {
    row.current_issuer = Some(cert.issuer.clone());
    row.current_serial = Some(cert.serial.clone());
    row.order_url = None;
    row.order_key_pem = None;
    row.failures = 0;
    row.next_attempt = 0;
    row.last_error = None;
    row.ari_start = None;
    row.ari_end = None;
    row.ari_chosen = None;
    row.ari_next_poll = Some(first_look);
    row.crl_next_check = Some(first_look);
}

/// When a certificate just obtained is first asked about (its ARI window,
/// the CRL): not at once, since the CA issued it a moment ago, but after the
/// revocation-check cadence, or 1 % of its lifetime when that is sooner (a
/// 90-second certificate still learns its window within a second). Spread
/// over a further tenth of that by `jitter` in [0, 1), so the ten thousand
/// certificates of a mass re-issuance do not come back as one burst of
/// polls. Before, that first look was an extra job per certificate at once
/// (two inventory loads, an ARI request, a CRL check): a third of the
/// daemon's work in a re-issuance.
fn first_look(now: i64, cert: &ManagedCertRow, cadence_secs: u64, jitter: f64) -> i64 {
    let lifetime = cert.not_after.saturating_sub(cert.not_before);
    let cadence = i64::try_from(cadence_secs).unwrap_or(i64::MAX);
    let delay = cadence.min(lifetime / 100).max(1);
    let spread = (delay as f64 * 0.1 * jitter.clamp(0.0, 1.0)) as i64;
    now.saturating_add(delay).saturating_add(spread)
}

/// A fresh key; RSA generation takes tens of milliseconds, so off the reactor.
async fn generate_key(kind: KeyType) -> Result<CertificateKey, String> {
    let alg = match kind {
        KeyType::EcdsaP256 => KeyAlgorithm::EcdsaP256,
        KeyType::EcdsaP384 => KeyAlgorithm::EcdsaP384,
        KeyType::Rsa2048 => KeyAlgorithm::Rsa2048,
        KeyType::Rsa3072 => KeyAlgorithm::Rsa3072,
        KeyType::Rsa4096 => KeyAlgorithm::Rsa4096,
    };
    tokio::task::spawn_blocking(move || CertificateKey::generate(alg))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(lifetime: i64) -> ManagedCertRow {
        ManagedCertRow {
            serial: "01".into(),
            name: "web".into(),
            issuer: "ca".into(),
            names: "a.test".into(),
            chain_pem: String::new(),
            key_pem: String::new(),
            spki_sha256: String::new(),
            not_before: 1_000,
            not_after: 1_000 + lifetime,
            order_url: String::new(),
            obtained_at: 1_000,
            identifier_set: "a.test".into(),
            registered_domains: "a.test".into(),
            slot: "primary".into(),
            revoked_at: None,
            revocation_reason: None,
        }
    }

    #[test]
    fn a_new_certificate_is_first_looked_at_after_the_cadence_or_a_hundredth_of_its_life() {
        let ninety_days = 90 * 86_400;
        assert_eq!(first_look(5_000, &cert(ninety_days), 3_600, 0.0), 8_600);
        // Spread by up to a tenth of the delay.
        assert_eq!(first_look(5_000, &cert(ninety_days), 3_600, 0.5), 8_780);
        // A 90-second certificate: a hundredth of its life, at least a second.
        assert_eq!(first_look(5_000, &cert(90), 3_600, 0.0), 5_001);
        assert_eq!(first_look(5_000, &cert(10_000), 3_600, 0.0), 5_100);
        // A cadence shorter than that wins.
        assert_eq!(first_look(5_000, &cert(ninety_days), 1, 0.9), 5_001);
        // Values from a broken certificate do not overflow.
        assert_eq!(
            first_look(i64::MAX - 1, &cert(ninety_days), u64::MAX, 0.9),
            i64::MAX
        );
    }
}
