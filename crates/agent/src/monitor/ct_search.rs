//! The crt.sh-style source for public CAs (`[issuer.ct_search]`): their
//! certificates are in RFC 6962 CT logs, which the agent reads through a
//! search service rather than by following every log itself.
//!
//! Every `poll_seconds` (the cache lifetime: a name is never asked for more
//! often), each managed name is searched (`{name}` in the URL; a wildcard
//! `*.x` as crt.sh's `%.x`), each request with a deadline. Every result
//! whose names include a managed name (same rule as the log monitor,
//! [`super::log_watch::ManagedNames`]) and whose serial the ledger does not
//! have is an `unknown-certificate` alert. The search shows no keys, so the
//! grace for the agent's own orders is by time: while a certificate for
//! that name has an order in flight, unknown results for it wait for the
//! next search (a public CA logs the precertificate before the agent has
//! stored what it downloaded).
//!
//! A search service is trusted for what it shows, not for completeness: it
//! proves nothing, it only finds. Runs beside the renewal loop, never in it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;

use super::log_watch::ManagedNames;
use crate::bounded_http::BoundedHttp;
use crate::config::IssuerConfig;
use crate::daemon::Agent;
use crate::error::AgentError;
use crate::tlog_config::CtSearchConfig;

/// The most read of one search answer (crt.sh answers for a busy domain
/// run to megabytes).
const MAX_SEARCH_BYTES: usize = 32 * 1024 * 1024;

/// One result row, crt.sh `output=json` shape (other fields ignored).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct SearchEntry {
    /// The service's id of the entry.
    pub id: u64,
    /// Hex serial.
    pub serial_number: String,
    /// The certificate's names, newline-separated.
    pub name_value: String,
    /// The issuer's DN.
    #[serde(default)]
    pub issuer_name: String,
    /// Start of validity, as the service writes it.
    #[serde(default)]
    pub not_before: String,
}

/// The canonical serial (as the ledger stores it) of a search result's
/// hex serial; `None` when it is not hex.
pub fn canonical_serial(hex_serial: &str) -> Option<String> {
    let s = hex_serial.trim().replace(':', "");
    let s = if s.len() % 2 == 1 { format!("0{s}") } else { s };
    let bytes = hex::decode(s.to_ascii_lowercase()).ok()?;
    Some(certkeeper_proto::serial::serial_hex(&bytes))
}

/// The URL of a search for `name`.
fn search_url(config: &CtSearchConfig, name: &str) -> String {
    let q = match name.strip_prefix("*.") {
        Some(base) => format!("%25.{base}"),
        None => name.to_string(),
    };
    config.url.replace("{name}", &q)
}

struct Search {
    issuer: String,
    config: CtSearchConfig,
    http: BoundedHttp,
}

impl Search {
    async fn get(&self, url: &str) -> Result<Vec<SearchEntry>, String> {
        let req = super::tlog::get_request(url, "application/json")?;
        let rsp = self
            .http
            .send(req, MAX_SEARCH_BYTES)
            .await
            .map_err(|e| super::tlog::http_text(url, e))?;
        if rsp.status != StatusCode::OK {
            return Err(format!("{url}: HTTP {}", rsp.status));
        }
        serde_json::from_slice(&rsp.body)
            .map_err(|e| format!("{url}: not a crt.sh-style JSON array: {e}"))
    }
}

/// Spawns one search task per issuer with `[issuer.ct_search]`.
pub fn spawn_all(agent: &Arc<Agent>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for issuer in &agent.config.issuers {
        let Some(search) = build(issuer) else {
            continue;
        };
        let agent = Arc::clone(agent);
        tasks.push(tokio::spawn(async move {
            // Results already classified as ours, by id: not asked about again.
            let mut seen: HashSet<u64> = HashSet::new();
            let interval = Duration::from_secs(search.config.poll_seconds);
            loop {
                if let Err(e) = agent.search_once(&search, &mut seen).await {
                    tracing::warn!(issuer = %search.issuer, error = %e, "certificate search failed");
                }
                tokio::time::sleep(interval).await;
            }
        }));
    }
    tasks
}

fn build(issuer: &IssuerConfig) -> Option<Search> {
    let config = issuer.ct_search.clone()?;
    match BoundedHttp::new(
        issuer.root.as_deref(),
        config.url.starts_with("http://"),
        Duration::from_secs(config.timeout_seconds),
    ) {
        Ok(http) => Some(Search {
            issuer: issuer.name.clone(),
            config,
            http,
        }),
        Err(e) => {
            tracing::warn!(issuer = %issuer.name, error = ?e, "no certificate search for this issuer");
            None
        }
    }
}

impl Agent {
    /// One round of searches for every managed name.
    async fn search_once(
        &self,
        search: &Search,
        seen: &mut HashSet<u64>,
    ) -> Result<(), AgentError> {
        let managed = ManagedNames::new(
            self.config
                .certificates
                .iter()
                .flat_map(|c| c.names.iter().map(String::as_str)),
        );
        // Names with an order in flight: their unknown results wait.
        let in_flight: HashSet<String> = {
            let busy: HashSet<String> = self
                .store
                .slots_all()
                .await?
                .into_iter()
                .filter(|r| r.order_url.is_some())
                .map(|r| r.name)
                .collect();
            self.config
                .certificates
                .iter()
                .filter(|c| busy.contains(&c.name))
                .flat_map(|c| c.names.iter().map(|n| n.to_ascii_lowercase()))
                .collect()
        };
        let names: Vec<String> = {
            let mut v: Vec<String> = self
                .config
                .certificates
                .iter()
                .flat_map(|c| c.names.iter().map(|n| n.to_ascii_lowercase()))
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let mut errors = Vec::new();
        let mut results: HashMap<u64, SearchEntry> = HashMap::new();
        for name in &names {
            let url = search_url(&search.config, name);
            match search.get(&url).await {
                Ok(entries) => results.extend(entries.into_iter().map(|e| (e.id, e))),
                Err(e) => errors.push(e),
            }
        }
        let mut ids: Vec<u64> = results.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if seen.contains(&id) {
                continue;
            }
            let Some(e) = results.get(&id) else { continue };
            let cert_names: Vec<String> = e
                .name_value
                .lines()
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect();
            if !cert_names.iter().any(|n| managed.matches(n)) {
                seen.insert(id);
                continue;
            }
            let Some(serial) = canonical_serial(&e.serial_number) else {
                tracing::warn!(issuer = %search.issuer, id, serial = %e.serial_number, "a search result's serial is not hex; skipped");
                seen.insert(id);
                continue;
            };
            if self.store.agent_knows_certificate(&serial, "").await? {
                seen.insert(id);
                continue;
            }
            if cert_names.iter().any(|n| in_flight.contains(n)) {
                // Perhaps the order in flight; decided at the next search.
                continue;
            }
            self.unknown_certificate(
                &search.issuer,
                &format!(
                    "the certificate search {} (entry id {id})",
                    search.config.url
                ),
                None,
                &serial,
                &cert_names,
                &e.issuer_name,
            )
            .await?;
            seen.insert(id);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(AgentError::Local(errors.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_serial;

    #[test]
    fn search_serials_compare_like_the_ledgers() {
        assert_eq!(canonical_serial("00FC54").as_deref(), Some("fc54"));
        assert_eq!(canonical_serial("fc:54").as_deref(), Some("fc54"));
        assert_eq!(canonical_serial("abc").as_deref(), Some("0abc"));
        assert_eq!(canonical_serial("zz"), None);
    }
}
