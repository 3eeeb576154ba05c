//! `certkeeper status`: every managed certificate with both slots, which
//! one is served and whether each could be; and the blocked-key registry.
//! Reads the store only.

use certkeeper_proto::clock::rfc3339;
use certkeeper_store::BlockedKeyRow;

use crate::daemon::Agent;
use crate::error::AgentError;
use crate::model::{Health, Slot};
use crate::planner;

/// One slot of a certificate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotStatus {
    /// `primary` or `backup`.
    pub slot: Slot,
    /// Issuer name.
    pub issuer: String,
    /// Serial of the slot's current certificate.
    pub serial: Option<String>,
    /// Its notAfter, RFC 3339.
    pub not_after: Option<String>,
    /// When it is next due for renewal, RFC 3339.
    pub next_renewal: Option<String>,
    /// Whether it could be served now.
    pub health: Health,
    /// Hex SHA-256 of its key.
    pub spki_sha256: Option<String>,
    /// `valid`, `expired`, `revoked`, `none`, `order in flight` or `failing`.
    pub state: String,
    /// Consecutive failures.
    pub failures: i64,
    /// The last error.
    pub last_error: Option<String>,
}

/// One line of `certkeeper status`. The top-level fields describe the
/// served slot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertStatus {
    /// Managed certificate name.
    pub name: String,
    /// Names it covers.
    pub names: Vec<String>,
    /// The slot served.
    pub served: Slot,
    /// Issuer of the served slot.
    pub issuer: String,
    /// Serial of the served certificate.
    pub serial: Option<String>,
    /// Its notAfter, RFC 3339.
    pub not_after: Option<String>,
    /// When it is next due, RFC 3339.
    pub next_renewal: Option<String>,
    /// State of the served slot.
    pub state: String,
    /// Consecutive failures of the served slot.
    pub failures: i64,
    /// Its last error.
    pub last_error: Option<String>,
    /// Every configured slot.
    pub slots: Vec<SlotStatus>,
}

/// The whole report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusReport {
    /// Managed certificates.
    pub certificates: Vec<CertStatus>,
    /// Keys that no slot will ever use again.
    pub blocked_keys: Vec<BlockedKeyRow>,
    /// Each issuer's transparency log as the monitor sees it, with what
    /// it found.
    pub transparency: Vec<TransparencyStatus>,
}

/// One issuer's log (or search endpoint) in `certkeeper status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TransparencyStatus {
    /// The issuer.
    pub issuer: String,
    /// The log prefix URL (or the search endpoint).
    pub log: String,
    /// Whether new certificates must be proven in it before deploy.
    pub require_inclusion: bool,
    /// The tree size the monitor has verified.
    pub verified_size: i64,
    /// When it was last asked, RFC 3339.
    pub polled_at: Option<String>,
    /// Why the last poll failed.
    pub last_error: Option<String>,
    /// Everything it found, oldest first.
    pub alerts: Vec<TransparencyAlert>,
}

/// One finding of the monitor.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TransparencyAlert {
    /// `unknown-certificate`, `fork`, `shrunk` or `split-view`.
    pub kind: String,
    /// Leaf index, for a certificate.
    pub log_index: Option<i64>,
    /// Serial, for a certificate.
    pub serial: Option<String>,
    /// Its names.
    pub names: Vec<String>,
    /// What it means and what to do.
    pub detail: String,
    /// When it was found, RFC 3339.
    pub at: String,
}

impl Agent {
    /// The transparency part of `certkeeper status`, from the store.
    pub async fn transparency_status(&self) -> Result<Vec<TransparencyStatus>, AgentError> {
        let states = self.store.tlog_states().await?;
        let alerts = self.store.tlog_alerts().await?;
        let mut out = Vec::new();
        for i in &self.config.issuers {
            let (log, require_inclusion) = match (&i.tlog, &i.ct_search) {
                (Some(t), _) => (t.log.clone(), t.require_inclusion),
                (None, Some(s)) => (s.url.clone(), false),
                (None, None) => continue,
            };
            let state = states.iter().find(|r| r.issuer == i.name);
            out.push(TransparencyStatus {
                issuer: i.name.clone(),
                log,
                require_inclusion,
                verified_size: state.map_or(0, |s| s.size),
                polled_at: state.and_then(|s| s.polled_at).map(rfc3339),
                last_error: state.and_then(|s| s.last_error.clone()),
                alerts: alerts
                    .iter()
                    .filter(|a| a.issuer == i.name)
                    .map(|a| TransparencyAlert {
                        kind: a.kind.clone(),
                        log_index: a.log_index,
                        serial: a.serial.clone(),
                        names: a
                            .names
                            .split(',')
                            .filter(|n| !n.is_empty())
                            .map(str::to_string)
                            .collect(),
                        detail: a.detail.clone(),
                        at: rfc3339(a.at),
                    })
                    .collect(),
            });
        }
        Ok(out)
    }
}

impl Agent {
    /// The status of every managed certificate, from the store.
    pub async fn status(&self) -> Result<StatusReport, AgentError> {
        let inv = self.load_inventory().await?;
        // Failure texts are not part of the planning inventory.
        let errors: std::collections::HashMap<(String, String), (i64, Option<String>)> = self
            .store
            .slots_all()
            .await?
            .into_iter()
            .map(|r| ((r.name, r.slot), (r.failures, r.last_error)))
            .collect();
        let now = self.now();
        let mut certificates = Vec::new();
        for cert in &self.config.certificates {
            let input = self.certificate_input(cert, &inv, false);
            let served = input.served.unwrap_or(Slot::Primary);
            let mut slots = Vec::new();
            for (slot, s) in [
                (Slot::Primary, Some(&input.primary)),
                (Slot::Backup, input.backup.as_ref()),
            ] {
                let (Some(s), Some((issuer, _))) = (s, self.slot_issuer(cert, slot)) else {
                    continue;
                };
                let row = errors.get(&(cert.name.clone(), slot.as_str().to_string()));
                let health = Health::of(s.facts.as_ref(), s.view.ari.map(|a| a.end), now);
                let next_renewal = s
                    .facts
                    .as_ref()
                    .and_then(|f| planner::renewal_due(&s.view, f.not_before, f.not_after).ok());
                let state = if s.view.in_flight {
                    "order in flight"
                } else if s.view.failures > 0 {
                    "failing"
                } else {
                    match health {
                        Health::Missing => "none",
                        Health::Expired => "expired",
                        Health::Revoked => "revoked",
                        Health::KeyBlocked => "key blocked",
                        _ => "valid",
                    }
                };
                slots.push(SlotStatus {
                    slot,
                    issuer: issuer.name.clone(),
                    serial: s.facts.as_ref().map(|f| f.serial.clone()),
                    not_after: s.facts.as_ref().map(|f| rfc3339(f.not_after)),
                    next_renewal: next_renewal.map(rfc3339),
                    health,
                    spki_sha256: s.facts.as_ref().map(|f| f.spki_sha256.clone()),
                    state: state.into(),
                    failures: row.map_or(0, |r| r.0),
                    last_error: row.and_then(|r| r.1.clone()),
                });
            }
            let top = slots
                .iter()
                .find(|s| s.slot == served)
                .or(slots.first())
                .cloned();
            let top = top.ok_or_else(|| AgentError::Config(format!("{}: no issuer", cert.name)))?;
            certificates.push(CertStatus {
                name: cert.name.clone(),
                names: cert.names.clone(),
                served,
                issuer: top.issuer,
                serial: top.serial,
                not_after: top.not_after,
                next_renewal: top.next_renewal,
                state: top.state,
                failures: top.failures,
                last_error: top.last_error,
                slots,
            });
        }
        Ok(StatusReport {
            certificates,
            blocked_keys: self.store.agent_blocked_keys().await?,
            transparency: self.transparency_status().await?,
        })
    }
}
