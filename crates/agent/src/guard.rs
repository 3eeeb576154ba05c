//! The guard: decides whether an action may contact a CA *now*, and makes
//! sure one certificate slot is worked on by one job at a time.
//!
//! Everything it checks lives in the store, so every process sharing the
//! store sees the same answer (DESIGN.md story 1): the CA's persisted
//! Retry-After, the issuance ledger against the CA's known limits, and the
//! per-account order pace. A refusal is [`AgentError::NotBefore`] with the
//! time it becomes possible; nothing was sent.
//!
//! **Replicas.** Today [`Guard::claim`] deduplicates within one process.
//! When several replicas share one PostgreSQL store, this is where a lease
//! row with a fencing token is taken (and checked by every write of the
//! job): the claim's type is already the job's proof of ownership.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certkeeper_proto::clock::{Clock, rfc3339};
use certkeeper_store::Store;

use crate::config::IssuerConfig;
use crate::error::AgentError;
use crate::limits::{self, Limit, LimitKind, Usage};
use crate::model::Slot;

/// What a job is about: one slot of one certificate, or its deploy targets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKey {
    /// Orders, renewals and polls of one slot.
    Slot(String, Slot),
    /// Writing one certificate's deploy targets.
    Deploy(String),
}

impl JobKey {
    /// The managed certificate the job is for.
    pub fn name(&self) -> &str {
        match self {
            JobKey::Slot(name, _) | JobKey::Deploy(name) => name,
        }
    }
}

/// Proof that this job, and no other in the process, works on its key;
/// released on drop (also when the job panics).
#[derive(Debug)]
pub struct Claim {
    key: JobKey,
    held: Arc<Mutex<HashSet<JobKey>>>,
}

impl Claim {
    /// What is claimed.
    pub fn key(&self) -> &JobKey {
        &self.key
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(&self.key);
        }
    }
}

/// Rate-limit and Retry-After checks, the order pace, and job claims.
#[derive(Debug, Clone)]
pub struct Guard {
    store: Store,
    clock: Arc<dyn Clock>,
    held: Arc<Mutex<HashSet<JobKey>>>,
    max_orders_per_minute: u32,
}

impl Guard {
    /// A guard over the store.
    pub fn new(store: Store, clock: Arc<dyn Clock>, max_orders_per_minute: u32) -> Guard {
        Guard {
            store,
            clock,
            held: Arc::default(),
            max_orders_per_minute: max_orders_per_minute.max(1),
        }
    }

    /// Whether a job of this process holds a slot of certificate `name`.
    pub fn slot_job_running(&self, name: &str) -> bool {
        self.held.lock().is_ok_and(|held| {
            held.iter()
                .any(|k| matches!(k, JobKey::Slot(..)) && k.name() == name)
        })
    }

    /// Claims `key`, or `None` when another job holds it.
    pub fn claim(&self, key: JobKey) -> Option<Claim> {
        let mut held = self.held.lock().ok()?;
        held.insert(key.clone()).then(|| Claim {
            key,
            held: Arc::clone(&self.held),
        })
    }

    /// The CA's Retry-After for this set of names (or the whole account),
    /// when one is in force: no request at all for the set, ARI polls
    /// included, whatever the planner or the operator wants.
    pub async fn deferred(&self, issuer: &str, names: &[String]) -> Result<(), AgentError> {
        let set = limits::identifier_set(names);
        let now = self.clock.now();
        if let Some((until, reason)) = self.store.retry_after(issuer, &set, now).await? {
            return Err(AgentError::NotBefore {
                message: format!(
                    "certkeeper: {issuer} asked not to be contacted for [{set}] before {} (Retry-After); nothing sent. Its answer: {reason}",
                    rfc3339(until)
                ),
                until,
            });
        }
        Ok(())
    }

    /// Refuses, without contacting the CA, a certificate that would exceed
    /// one of its known limits; the error says which, and when it fits.
    pub async fn budget(
        &self,
        issuer: &IssuerConfig,
        names: &[String],
        ari_scheduled: bool,
    ) -> Result<(), AgentError> {
        let usage = self.usage(issuer, names, ari_scheduled).await?;
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
    /// store, so every certificate and process sharing it is included),
    /// then records the order about to be sent: a refused or lost order
    /// still counts against the CA's per-account limit.
    pub async fn pace_and_record_order(
        &self,
        issuer: &str,
        names: &[String],
    ) -> Result<(), AgentError> {
        let max = self.max_orders_per_minute as usize;
        loop {
            let t = self.clock.now();
            let times = self.store.agent_order_times(issuer, t - 60).await?;
            if times.len() < max {
                break;
            }
            let wait = (times[times.len() - max] + 60 - t).clamp(1, 60) as u64;
            tracing::info!(
                issuer,
                wait_secs = wait,
                max,
                "order pace: waiting for a slot"
            );
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
        self.store
            .record_agent_order(issuer, &limits::identifier_set(names), self.clock.now())
            .await?;
        Ok(())
    }

    /// Persists a CA's Retry-After carried by `error` for the set (or the
    /// whole account), so no process sends another request before it
    /// passes; returns the error to report (a [`AgentError::NotBefore`]
    /// when there was a Retry-After).
    pub async fn record_failure(
        &self,
        issuer: &str,
        names: &[String],
        error: AgentError,
    ) -> AgentError {
        let Some(wait) = error.retry_after() else {
            return error;
        };
        let set = match &error {
            AgentError::Acme {
                account_wide: true, ..
            } => String::new(),
            _ => limits::identifier_set(names),
        };
        let secs = i64::try_from(wait.as_secs()).unwrap_or(i64::MAX).max(1);
        let until = self.clock.now().saturating_add(secs);
        let report = error.to_string();
        if let Err(store) = self
            .store
            .put_retry_after(issuer, &set, until, &report)
            .await
        {
            tracing::warn!(issuer, error = %store, "cannot record the CA's Retry-After");
        }
        AgentError::NotBefore {
            message: format!(
                "{report}; certkeeper sends nothing for [{set}] to {issuer} before {}",
                rfc3339(until)
            ),
            until,
        }
    }

    /// How much of each of the issuer's limits one more certificate for
    /// `names` would draw on, per the ledger. `ari_scheduled` and whether
    /// the set was issued before decide the CA's published exemptions.
    pub async fn usage(
        &self,
        issuer: &IssuerConfig,
        names: &[String],
        ari_scheduled: bool,
    ) -> Result<Vec<(Usage, String)>, AgentError> {
        let limits = issuer.ca_limits();
        let set = limits::identifier_set(names);
        let t = self.clock.now();
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
        if let Some(l) = limits.certificates_per_domain {
            let renewal = self.store.ledger_has_set(&issuer.name, &set).await?;
            if !(renewal && limits.renewals_exempt_from_domain) {
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

    /// Gives ledger keys to certificates recorded before the ledger existed,
    /// so they count against the limits too. Run once at start.
    pub async fn key_ledger(&self) -> Result<(), AgentError> {
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn guard() -> (tempfile::TempDir, Guard) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_dir(dir.path()).await.expect("store");
        let clock = Arc::new(certkeeper_proto::FakeClock::new(1_000_000));
        (dir, Guard::new(store, clock, 20))
    }

    #[tokio::test]
    async fn one_job_per_slot_and_claims_release_on_drop() {
        let (_d, g) = guard().await;
        let key = JobKey::Slot("web".into(), Slot::Primary);
        let claim = g.claim(key.clone()).expect("first claim");
        assert!(g.claim(key.clone()).is_none(), "second claim must fail");
        assert!(
            g.claim(JobKey::Slot("web".into(), Slot::Backup)).is_some(),
            "the other slot is independent"
        );
        drop(claim);
        assert!(g.claim(key).is_some(), "released on drop");
    }

    #[tokio::test]
    async fn a_persisted_retry_after_refuses_until_it_passes() {
        let (_d, g) = guard().await;
        let names = vec!["a.test".to_string()];
        g.store
            .put_retry_after("ca", "a.test", 1_000_100, "429 rateLimited")
            .await
            .expect("put");
        let e = g.deferred("ca", &names).await.expect_err("deferred");
        assert!(
            matches!(
                e,
                AgentError::NotBefore {
                    until: 1_000_100,
                    ..
                }
            ),
            "{e}"
        );
        assert!(g.deferred("ca", &["b.test".to_string()]).await.is_ok());
    }

    mod properties {
        use super::*;
        use crate::limits::{CaLimits, LimitsConfig};
        use certkeeper_store::ManagedCertRow;
        use proptest::prelude::*;

        fn issuer(limit: u32) -> IssuerConfig {
            IssuerConfig {
                name: "ca".into(),
                directory: "https://ca.test/directory".into(),
                contact: Vec::new(),
                eab: None,
                root: None,
                profile: None,
                limits: Some(LimitsConfig::Custom(CaLimits {
                    certificates_per_fqdn_set: Some(Limit {
                        count: limit,
                        period_seconds: 7 * 86400,
                    }),
                    ..CaLimits::default()
                })),
                tlog: None,
                ct_search: None,
            }
        }

        fn ledger_row(i: usize, at: i64) -> (certkeeper_store::SlotRow, ManagedCertRow) {
            let row = ManagedCertRow {
                serial: format!("{i:02x}"),
                name: "web".into(),
                issuer: "ca".into(),
                names: "a.test".into(),
                chain_pem: String::new(),
                key_pem: String::new(),
                spki_sha256: format!("k{i}"),
                not_before: at,
                not_after: at + 90 * 86400,
                order_url: format!("https://ca.test/order/{i}"),
                obtained_at: at,
                identifier_set: "a.test".into(),
                registered_domains: "a.test".into(),
                slot: "primary".into(),
                revoked_at: None,
                revocation_reason: None,
            };
            let mut slot = certkeeper_store::SlotRow::new("web", "primary");
            slot.current_issuer = Some("ca".into());
            slot.current_serial = Some(row.serial.clone());
            (slot, row)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]
            /// The guard never lets an order through while the CA's
            /// Retry-After is in force or the ledger says the set's budget
            /// is spent — and always does otherwise.
            #[test]
            fn no_order_while_retry_after_or_budget_forbids(
                retry_in in proptest::option::of(-100..100i64),
                ages_days in proptest::collection::vec(0..10i64, 0..7),
                limit in 1..6u32,
            ) {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
                rt.block_on(async {
                    let (_d, g) = guard().await;
                    let now = g.clock.now();
                    let names = vec!["a.test".to_string()];
                    if let Some(r) = retry_in {
                        g.store.put_retry_after("ca", "a.test", now + r, "429").await.expect("put");
                    }
                    for (i, age) in ages_days.iter().enumerate() {
                        let (slot, row) = ledger_row(i, now - age * 86400 - 1);
                        g.store.store_issued(&slot, &row, now).await.expect("ledger");
                    }
                    let in_window = ages_days.iter().filter(|d| **d < 7).count() as u32;
                    let deferred = g.deferred("ca", &names).await;
                    let budget = g.budget(&issuer(limit), &names, false).await;
                    let allowed = deferred.is_ok() && budget.is_ok();
                    let should = retry_in.is_none_or(|r| r <= 0) && in_window < limit;
                    assert_eq!(allowed, should, "retry {retry_in:?}, {in_window} in window, limit {limit}: {deferred:?} {budget:?}");
                    for refusal in [deferred.err(), budget.err()].into_iter().flatten() {
                        assert!(matches!(refusal, AgentError::NotBefore { until, .. } if until > now));
                    }
                });
            }
        }
    }
}
