//! The log monitor: for each issuer with a transparency log, poll it
//! (`tlog.poll_seconds`), prove every new checkpoint extends the last one
//! verified ([`MonitorState`]), persist that state (a restart continues, and
//! a log rewritten while the agent was down is caught at its first poll),
//! and look at every new certificate: one for a managed name that the
//! agent did not order is an alert.
//!
//! **Managed names.** A logged certificate concerns us when one of its
//! DNS names (case-insensitive, trailing dot ignored)
//! - equals a name of a `[[certificate]]`, or
//! - is covered by a configured wildcard (`*.example.com` covers
//!   `www.example.com`, one label, RFC 6125 §6.4.3), or
//! - is itself a wildcard covering a configured name (someone holding
//!   `*.example.com` can serve `www.example.com`).
//!
//! Registered-domain matching (alerting on any name under `example.com`) is
//! deliberately not done: most operators share their domains with other
//! teams and their certificates.
//!
//! **Ours or not.** A certificate is the agent's when its serial is in the
//! ledger (`agent_certificates`, any issuer) or its key is one the agent
//! holds: a ledger key, or the key of an order in flight. The key rule is
//! the grace for the agent's own renewals: the CA logs a certificate before
//! the agent has downloaded, checked and stored it, and the order's key was
//! stored before the order was placed. No one else can obtain a certificate
//! for our key: the CA requires the CSR to be signed with it.
//!
//! The monitor runs beside the renewal loop and never blocks it: every
//! request has a deadline, and a failed poll is recorded and retried at the
//! next interval.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use certkeeper_store::{TlogAlertRow, TlogStateRow};
use certkeeper_tlog::monitor::{MonitorAlert, MonitorState, Polled};

use super::tlog::IssuerLog;
use crate::daemon::Agent;
use crate::error::AgentError;
use crate::events::EventKind;
use crate::model::Slot;
use crate::x509;

/// A managed-name matcher over the configuration's names.
#[derive(Clone, Debug, Default)]
pub struct ManagedNames {
    exact: HashSet<String>,
    /// Suffixes of configured wildcards, `example.com` for `*.example.com`.
    wildcard: HashSet<String>,
}

fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The parent of a name (`example.com` for `www.example.com`).
fn parent(name: &str) -> Option<&str> {
    name.split_once('.')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty())
}

impl ManagedNames {
    /// From every configured certificate's names.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> ManagedNames {
        let mut m = ManagedNames::default();
        for n in names {
            let n = norm(n);
            match n.strip_prefix("*.") {
                Some(base) => {
                    m.wildcard.insert(base.to_string());
                }
                None => {
                    m.exact.insert(n);
                }
            }
        }
        m
    }

    /// Whether a name in a logged certificate is one of ours (see the
    /// module doc).
    pub fn matches(&self, name: &str) -> bool {
        let n = norm(name);
        if let Some(base) = n.strip_prefix("*.") {
            // `*.base` covers `x.base`; it is ours when we manage `*.base`
            // or any `x.base`.
            return self.wildcard.contains(base)
                || self.exact.iter().any(|e| parent(e) == Some(base));
        }
        self.exact.contains(&n) || parent(&n).is_some_and(|p| self.wildcard.contains(p))
    }
}

/// What a logged certificate says about itself.
#[derive(Clone, Debug)]
struct LoggedCert {
    serial: String,
    spki_sha256: String,
    names: Vec<String>,
    issuer_dn: String,
}

fn parse_logged(der: &[u8]) -> Option<LoggedCert> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let facts = crate::x509::leaf_facts(der).ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_string()),
                GeneralName::IPAddress(ip) => names.push(match ip.len() {
                    4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).ok()?).to_string(),
                    16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).ok()?).to_string(),
                    _ => continue,
                }),
                _ => {}
            }
        }
    }
    if names.is_empty() {
        // A certificate without SANs names its host in the subject CN.
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_string());
            }
        }
    }
    Some(LoggedCert {
        serial: facts.serial,
        spki_sha256: facts.spki_sha256,
        names,
        issuer_dn: cert.issuer().to_string(),
    })
}

/// A kind of log alert, as recorded and labelled.
fn alert_kind(alert: &MonitorAlert) -> &'static str {
    match alert {
        MonitorAlert::Shrunk { .. } => "shrunk",
        MonitorAlert::Fork { .. } => "fork",
        MonitorAlert::SplitView { .. } => "split-view",
        _ => "inconsistent",
    }
}

/// Spawns one monitor task per issuer with a log (and `tlog.monitor`).
/// The tasks run until aborted.
pub fn spawn_all(agent: &Arc<Agent>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for issuer in &agent.config.issuers {
        let log = match IssuerLog::of(issuer) {
            Ok(Some(log)) if log.config.monitor => log,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(issuer = %issuer.name, error = %e, "no transparency log monitor for this issuer");
                continue;
            }
        };
        let agent = Arc::clone(agent);
        tasks.push(tokio::spawn(async move {
            let interval = Duration::from_secs(log.config.poll_seconds);
            loop {
                if let Err(e) = agent.poll_log(&log).await {
                    tracing::warn!(issuer = %log.issuer, error = %e, "transparency log poll failed");
                }
                tokio::time::sleep(interval).await;
            }
        }));
    }
    tasks
}

impl Agent {
    /// The managed certificate (and slot) an event about `issuer` and
    /// `names` is filed under: the first whose names match, preferring one
    /// that orders from this issuer.
    fn event_subject(&self, issuer: &str, names: &[String]) -> (String, Slot) {
        let mut first = None;
        for c in &self.config.certificates {
            let m = ManagedNames::new(c.names.iter().map(String::as_str));
            if names.is_empty() || names.iter().any(|n| m.matches(n)) {
                if c.issuer == issuer {
                    return (c.name.clone(), Slot::Primary);
                }
                if c.backup.as_deref() == Some(issuer) {
                    return (c.name.clone(), Slot::Backup);
                }
                first.get_or_insert_with(|| c.name.clone());
            }
        }
        (
            first.unwrap_or_else(|| format!("issuer {issuer}")),
            Slot::Primary,
        )
    }

    /// The SPKI hashes of the keys of orders in flight.
    async fn in_flight_keys(&self) -> Result<HashSet<String>, AgentError> {
        Ok(self
            .store
            .slots_all()
            .await?
            .into_iter()
            .filter_map(|r| r.order_key_pem)
            .filter_map(|pem| x509::key_spki_sha256(&pem).ok())
            .collect())
    }

    /// One poll of one issuer's log: verify the new checkpoint extends the
    /// stored state, classify the new certificates, record alerts, persist.
    pub async fn poll_log(&self, log: &IssuerLog) -> Result<(), AgentError> {
        let now = self.now();
        let stored = self
            .store
            .tlog_states()
            .await?
            .into_iter()
            .find(|r| r.issuer == log.issuer);
        let mut row = stored.clone().unwrap_or(TlogStateRow {
            issuer: log.issuer.clone(),
            log: log.config.log.clone(),
            state: String::new(),
            size: 0,
            verified_at: now,
            polled_at: None,
            last_error: None,
        });
        let mut state = match stored.as_ref().filter(|r| r.log == log.config.log) {
            Some(r) => MonitorState::from_text(&r.state, &log.verifier).map_err(|e| {
                AgentError::Local(format!(
                    "issuer {}: the stored monitor state of {} does not verify with the configured checkpoint key ({e}); \
                     if the log's key was changed on purpose, delete the issuer's row from agent_tlog_state to start over",
                    log.issuer, log.config.log
                ))
            })?,
            // A new log (or the URL changed): start from the empty tree.
            None => MonitorState::empty(log.verifier.name()),
        };
        row.log = log.config.log.clone();
        row.polled_at = Some(now);
        let polled = match state.poll(log, &log.verifier).await {
            Ok(p) => p,
            Err(e) => {
                row.last_error = Some(e.to_string());
                self.store.put_tlog_state(&row).await?;
                return Err(AgentError::Local(format!(
                    "issuer {}: log {}: {e}",
                    log.issuer, log.config.log
                )));
            }
        };
        row.last_error = None;
        match polled {
            Polled::Alert { alert, note } => {
                let kind = alert_kind(&alert);
                let digest = x509::spki_sha256(note.as_bytes());
                let detail = format!(
                    "the transparency log {} of issuer {} is not consistent with what this agent verified: {alert}. \
                     Someone may be showing different logs to different clients; keep the evidence (agent_tlog_state and this note) \
                     and ask the log's operator. Offending checkpoint:\n{note}",
                    log.config.log, log.issuer
                );
                let alert_row = TlogAlertRow {
                    alert_key: format!("{}|{kind}|{}|{digest}", log.issuer, state.checkpoint.size),
                    issuer: log.issuer.clone(),
                    kind: kind.to_string(),
                    log_index: None,
                    serial: None,
                    names: String::new(),
                    detail: detail.clone(),
                    at: now,
                };
                if self.store.add_tlog_alert(&alert_row).await? {
                    let (name, slot) = self.event_subject(&log.issuer, &[]);
                    self.events
                        .emit(EventKind::LogInconsistent, &name, slot, detail)
                        .await;
                }
                // The verified state stays; written with the row so a
                // changed log URL does not leave the old log's state in it.
                row.state = state.to_text();
                row.size = i64::try_from(state.checkpoint.size).unwrap_or(i64::MAX);
                self.store.put_tlog_state(&row).await?;
                return Ok(());
            }
            Polled::Grew { entries } => {
                let managed = ManagedNames::new(
                    self.config
                        .certificates
                        .iter()
                        .flat_map(|c| c.names.iter().map(String::as_str)),
                );
                let mut keys: Option<HashSet<String>> = None;
                for (index, der) in entries {
                    let Some(cert) = parse_logged(&der) else {
                        tracing::warn!(issuer = %log.issuer, index, "a log entry is not a certificate; skipped");
                        continue;
                    };
                    if !cert.names.iter().any(|n| managed.matches(n)) {
                        continue;
                    }
                    if self
                        .store
                        .agent_knows_certificate(&cert.serial, &cert.spki_sha256)
                        .await?
                    {
                        continue;
                    }
                    if keys.is_none() {
                        keys = Some(self.in_flight_keys().await?);
                    }
                    if keys.as_ref().is_some_and(|k| k.contains(&cert.spki_sha256)) {
                        continue;
                    }
                    self.unknown_certificate(
                        &log.issuer,
                        &log.config.log,
                        Some(index),
                        &cert.serial,
                        &cert.names,
                        &cert.issuer_dn,
                    )
                    .await?;
                }
            }
        }
        row.state = state.to_text();
        let size = i64::try_from(state.checkpoint.size).unwrap_or(i64::MAX);
        if size != row.size {
            row.verified_at = now;
        }
        row.size = size;
        self.store.put_tlog_state(&row).await?;
        Ok(())
    }

    /// Records (once) and announces a certificate for a managed name that
    /// the agent did not order.
    pub(crate) async fn unknown_certificate(
        &self,
        issuer: &str,
        source: &str,
        index: Option<u64>,
        serial: &str,
        names: &[String],
        issuer_dn: &str,
    ) -> Result<(), AgentError> {
        let at = match index {
            Some(i) => format!("entry {i} of {source}"),
            None => source.to_string(),
        };
        let detail = format!(
            "serial {serial} for {} issued by {issuer_dn} ({at}) was not ordered by this agent. \
             If nobody in your organisation obtained it, revoke it at the CA and find out who could validate these names",
            names.join(",")
        );
        let row = TlogAlertRow {
            alert_key: format!("{issuer}|unknown-certificate|{serial}"),
            issuer: issuer.to_string(),
            kind: "unknown-certificate".into(),
            log_index: index.and_then(|i| i64::try_from(i).ok()),
            serial: Some(serial.to_string()),
            names: names.join(","),
            detail: detail.clone(),
            at: self.now(),
        };
        if self.store.add_tlog_alert(&row).await? {
            let (name, slot) = self.event_subject(issuer, names);
            self.events
                .emit(EventKind::UnknownCertificate, &name, slot, detail)
                .await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ManagedNames;

    #[test]
    fn managed_names_cover_exact_names_and_wildcards_both_ways() {
        let m = ManagedNames::new(["www.example.test", "*.apps.example.test"]);
        assert!(m.matches("www.example.test"));
        assert!(m.matches("WWW.Example.Test."));
        assert!(m.matches("a.apps.example.test"), "under our wildcard");
        assert!(m.matches("*.apps.example.test"), "our wildcard itself");
        assert!(m.matches("*.example.test"), "a wildcard covering www");
        assert!(!m.matches("a.b.apps.example.test"), "one label only");
        assert!(!m.matches("apps.example.test"));
        assert!(!m.matches("example.test"));
        assert!(!m.matches("mail.example.test"));
        assert!(!m.matches("*.other.test"));
    }
}
