//! Revocation from the subscriber's side: `certkeeper revoke` and
//! `certkeeper compromised`, in the order Cloudflare's runbook uses —
//! first a replacement is served (the healthy other slot, or a new
//! certificate on a new key), *then* the old certificate is revoked, so
//! revoking never takes a service down.
//!
//! keyCompromise is signed with the certificate's own key (RFC 8555 §7.6):
//! the only proof of compromise a CA can trust, and the one that makes it
//! block the key for everyone. Every key revoked for keyCompromise also
//! enters the local blocked-key registry, so no slot ever uses it again.

use std::sync::Arc;

use certkeeper_store::ManagedCertRow;

use crate::acme::{CertificateKey, CertificateKeyRevoker, RevocationReason, RevokeError};
use crate::daemon::Agent;
use crate::error::AgentError;
use crate::guard::JobKey;
use crate::model::Slot;
use crate::planner::Swap;
use crate::x509;

/// What `revoke` did, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Managed certificate.
    pub name: String,
    /// The slot whose certificate was revoked.
    pub slot: Slot,
    /// Serial revoked.
    pub serial: String,
    /// What serves now: the other slot's certificate, or the slot's
    /// replacement (serial), or nothing new (`--force`, not served).
    pub replacement: Option<String>,
    /// The CA already had it revoked.
    pub already_revoked: bool,
}

impl Agent {
    /// Revokes the current certificate of `name`'s `slot` for `reason`.
    ///
    /// When that certificate is the one served, a replacement is served
    /// first: the other slot when it is healthy, else a new certificate on a
    /// new key from the slot's issuer; without one the revocation is refused
    /// unless `force`.
    pub async fn revoke(
        self: &Arc<Self>,
        name: &str,
        slot: Slot,
        reason: RevocationReason,
        force: bool,
    ) -> Result<Revoked, AgentError> {
        let cert = self.certificate(name)?.clone();
        let old = self
            .store
            .slot_cert(name, slot.as_str())
            .await?
            .ok_or_else(|| {
                AgentError::Refused(format!("{name} has no {slot} certificate to revoke"))
            })?;
        let mut replacement = None;
        if self.served_slot(name).await? == slot {
            let other = slot.other();
            if self.slot_issuer(&cert, other).is_some()
                && self.slot_health(name, other).await?.is_healthy()
            {
                self.apply_swaps(vec![(
                    name.to_string(),
                    Swap {
                        to: other,
                        reason: format!("the {slot} certificate is being revoked ({reason})"),
                    },
                )])
                .await?;
                replacement = self
                    .store
                    .slot_cert(name, other.as_str())
                    .await?
                    .map(|c| c.serial);
            } else {
                match self.reissue_now(&cert.name, slot).await {
                    Ok(serial) => replacement = Some(serial),
                    Err(e) if !force => {
                        return Err(AgentError::Refused(format!(
                            "{name}: {serial} is the only valid certificate served and no replacement could be obtained ({e}); \
                             revoking it now would take the service down. Fix the cause and retry, or add --force",
                            serial = old.serial
                        )));
                    }
                    Err(e) => {
                        tracing::warn!(certificate = name, error = %e, "no replacement; revoking anyway (--force)")
                    }
                }
            }
            self.deploy_now(name).await;
        }
        // Decided: from here on the certificate is never served, and the
        // request is sent again after a crash until the CA has answered.
        self.store
            .begin_revocation(&old.issuer, &old.serial, reason.name(), self.now())
            .await?;
        crate::faults::crash_point("revoke-recorded");
        let already_revoked = self.revoke_at_ca(&old, reason).await?;
        self.store
            .finish_revocation(&old.issuer, &old.serial)
            .await?;
        self.record_revocation(&old, reason.name(), "revoked by certkeeper")
            .await?;
        Ok(Revoked {
            name: name.to_string(),
            slot,
            serial: old.serial,
            replacement,
            already_revoked,
        })
    }

    /// An operator reports a leaked key: it is blocked at once (no slot
    /// uses it again), and every current certificate with it is replaced
    /// and revoked for keyCompromise, signed with that key; several at a
    /// time, bounded like any other job.
    pub async fn compromised(
        self: &Arc<Self>,
        spki_sha256: &str,
    ) -> Result<Vec<Result<Revoked, AgentError>>, AgentError> {
        let spki = spki_sha256.to_ascii_lowercase();
        let affected: Vec<(String, Slot)> = self
            .store
            .current_certs()
            .await?
            .into_iter()
            .filter(|c| c.spki_sha256 == spki && c.revoked_at.is_none())
            .filter_map(|c| Some((c.name, c.slot.parse().ok()?)))
            .collect();
        let (name, slot) = affected
            .first()
            .cloned()
            .unwrap_or_else(|| (String::new(), Slot::Primary));
        self.block_key(&spki, "reported by the operator", &name, slot)
            .await?;
        let limit = Arc::new(tokio::sync::Semaphore::new(
            self.config.agent.max_concurrent_per_issuer as usize,
        ));
        let mut jobs = tokio::task::JoinSet::new();
        for (name, slot) in affected {
            let (agent, limit) = (Arc::clone(self), Arc::clone(&limit));
            jobs.spawn(async move {
                let _permit = limit.acquire().await;
                agent
                    .revoke(&name, slot, RevocationReason::KeyCompromise, false)
                    .await
            });
        }
        let mut out = Vec::new();
        while let Some(done) = jobs.join_next().await {
            out.push(done.map_err(|e| AgentError::Local(format!("revocation task: {e}")))?);
        }
        Ok(out)
    }

    /// Sends the revocations a killed process recorded but never got the
    /// CA's answer for. Returns how many were confirmed.
    pub async fn resend_pending_revocations(&self) -> Result<usize, AgentError> {
        let mut done = 0;
        for (issuer, serial, reason) in self.store.pending_revocations().await? {
            let Some(cert) = self.store.managed_cert(&issuer, &serial).await? else {
                self.store.finish_revocation(&issuer, &serial).await?;
                continue;
            };
            let Ok(parsed) = reason.parse::<RevocationReason>() else {
                tracing::warn!(%issuer, %serial, %reason, "pending revocation with an unknown reason; dropped");
                self.store.finish_revocation(&issuer, &serial).await?;
                continue;
            };
            match self.revoke_at_ca(&cert, parsed).await {
                Ok(_) => {
                    self.store.finish_revocation(&issuer, &serial).await?;
                    self.record_revocation(&cert, parsed.name(), "revoked by certkeeper (resumed)")
                        .await?;
                    done += 1;
                }
                Err(e) => {
                    tracing::warn!(certificate = %cert.name, %serial, error = %e, "pending revocation not confirmed yet; retried at the next start")
                }
            }
        }
        Ok(done)
    }

    /// Orders a new certificate on a new key for `slot` now, past its
    /// schedule (never past the CA's Retry-After or budgets).
    async fn reissue_now(self: &Arc<Self>, name: &str, slot: Slot) -> Result<String, AgentError> {
        let claim = self
            .guard
            .claim(JobKey::Slot(name.to_string(), slot))
            .ok_or_else(|| AgentError::Refused(format!("{name} {slot}: a job is running")))?;
        let cert = self.certificate(name)?.clone();
        let row = self.rekey_order(&cert, slot).await;
        drop(claim);
        row.map(|r| r.serial)
    }

    /// Writes the served certificate to the deploy targets now.
    async fn deploy_now(self: &Arc<Self>, name: &str) {
        let Some(claim) = self.guard.claim(JobKey::Deploy(name.to_string())) else {
            return;
        };
        if let Err(e) = Arc::clone(self).run_deploy_job(claim).await {
            tracing::warn!(certificate = name, error = %e, "deploy after swap failed; the daemon retries");
        }
    }

    /// Sends the revocation: signed with the certificate's own key for
    /// keyCompromise, with the account key otherwise. Returns whether the CA
    /// had already revoked it.
    async fn revoke_at_ca(
        &self,
        cert: &ManagedCertRow,
        reason: RevocationReason,
    ) -> Result<bool, AgentError> {
        let issuer = self.issuers.get(&cert.issuer).ok_or_else(|| {
            AgentError::Config(format!("issuer {:?} is not configured", cert.issuer))
        })?;
        let der = x509::leaf_der(&cert.chain_pem).ok_or_else(|| {
            AgentError::Local(format!("{}: stored chain has no certificate", cert.name))
        })?;
        let result = if reason == RevocationReason::KeyCompromise {
            let key = CertificateKey::from_pem(&cert.key_pem).map_err(|e| AgentError::Key {
                name: cert.name.clone(),
                reason: e.to_string(),
            })?;
            CertificateKeyRevoker::new(&issuer.directory())
                .map_err(|e| revoke_error(cert, e))?
                .revoke(&der, &key, reason)
                .await
        } else {
            issuer.account().await?.revoke(&der, reason).await
        };
        match result {
            Ok(()) => Ok(false),
            Err(e) if e.is_already_revoked() => Ok(true),
            Err(e) => Err(revoke_error(cert, e)),
        }
    }
}

fn revoke_error(cert: &ManagedCertRow, e: RevokeError) -> AgentError {
    AgentError::Revoke {
        name: cert.name.clone(),
        issuer: cert.issuer.clone(),
        serial: cert.serial.clone(),
        error: Box::new(e),
    }
}
