//! Reading the watched zones: one SOA query per zone per look; a TSIG-signed
//! AXFR only when the serial changed; every `3 255 0` record checked
//! ([`super::csr::check`]) and the outcome, accepted or refused with the
//! reason, stored (one transaction per zone).

use std::collections::BTreeMap;
use std::sync::Arc;

use certkeeper_dns::tlsa::{PREFIX, TlsaRole};
use certkeeper_dns::{Name, Server, TsigKey, axfr, fqdn, soa_serial};
use certkeeper_proto::Clock;
use certkeeper_store::{SecondaryHostRow, Store};
use hickory_proto::rr::RData;

use super::config::SecondaryConfig;
use super::csr;
use crate::config::{Config, KeyType};
use crate::error::AgentError;

/// One zone, ready to read.
#[derive(Clone, Debug)]
struct WatchedZone {
    zone: String,
    name: Name,
    server: Server,
    key: TsigKey,
}

/// What one look at a zone did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZoneReport {
    /// The SOA serial was the one last transferred: nothing else was asked.
    Unchanged {
        /// The zone.
        zone: String,
        /// Its serial.
        serial: u32,
    },
    /// The zone was transferred.
    Transferred {
        /// The zone.
        zone: String,
        /// The serial transferred.
        serial: u32,
        /// Hosts whose CSR was accepted.
        accepted: usize,
        /// Hosts whose record was refused.
        refused: usize,
    },
    /// The zone could not be read; what was known of it stays.
    Failed {
        /// The zone.
        zone: String,
        /// Why.
        error: String,
    },
}

/// Reads the `[dns_secondary]` zones into the store.
#[derive(Debug)]
pub struct Secondary {
    zones: Vec<WatchedZone>,
    key_types: Vec<KeyType>,
    store: Store,
    clock: Arc<dyn Clock>,
}

impl Secondary {
    /// The secondary of a validated configuration; `None` without
    /// `[dns_secondary]`. Fails when a zone's TSIG key cannot be loaded.
    pub fn new(
        config: &Config,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Secondary>, AgentError> {
        let Some(s) = &config.dns_secondary else {
            return Ok(None);
        };
        let mut zones = Vec::new();
        for z in &s.zones {
            let at = format!("[[dns_secondary.zone]] dns_server {:?}", z.dns_server);
            let server = config
                .dns_servers
                .iter()
                .find(|d| d.name.as_deref() == Some(z.dns_server.as_str()))
                .ok_or_else(|| AgentError::Config(format!("{at}: no such [[dns_server]]")))?;
            let zone = SecondaryConfig::zone_name(config, z)
                .ok_or_else(|| AgentError::Config(format!("{at}: no zone")))?;
            let target = server
                .target(Arc::clone(&clock))
                .map_err(|e| AgentError::Config(format!("{at}: {e}")))?;
            let name = fqdn(&zone).map_err(|e| AgentError::Config(format!("{at}: {e}")))?;
            let mut dns = *target.client.server();
            // Transfers go over TCP anyway; a zone of thousands of
            // certificates takes longer than one query's timeout.
            dns.timeout = dns.timeout.max(std::time::Duration::from_secs(30));
            zones.push(WatchedZone {
                zone,
                name,
                server: dns,
                key: target.client.key().clone(),
            });
        }
        Ok(Some(Secondary {
            zones,
            key_types: s.key_types.clone(),
            store,
            clock,
        }))
    }

    /// The watched zones (for the NOTIFY listener).
    pub fn zone_names(&self) -> Vec<Name> {
        self.zones.iter().map(|z| z.name.clone()).collect()
    }

    /// Looks at every zone once. Store errors end the look; DNS errors are
    /// reported per zone (and stored), the other zones are still read.
    pub async fn poll(&self) -> Result<Vec<ZoneReport>, AgentError> {
        let known: BTreeMap<String, i64> = self
            .store
            .secondary_zones()
            .await?
            .into_iter()
            .filter(|z| z.last_error.is_empty() || z.serial != 0)
            .map(|z| (z.zone, z.serial))
            .collect();
        let mut reports = Vec::with_capacity(self.zones.len());
        for z in &self.zones {
            let report = self.poll_zone(z, known.get(&z.zone).copied()).await?;
            match &report {
                ZoneReport::Failed { zone, error } => {
                    tracing::warn!(%zone, %error, "DNS secondary: cannot read the zone")
                }
                ZoneReport::Transferred {
                    zone,
                    serial,
                    accepted,
                    refused,
                } => tracing::info!(%zone, serial, accepted, refused, "DNS secondary: zone read"),
                ZoneReport::Unchanged { .. } => {}
            }
            reports.push(report);
        }
        Ok(reports)
    }

    async fn poll_zone(
        &self,
        z: &WatchedZone,
        known_serial: Option<i64>,
    ) -> Result<ZoneReport, AgentError> {
        let now = self.clock.now();
        let failed = |error: String| ZoneReport::Failed {
            zone: z.zone.clone(),
            error,
        };
        let serial = match soa_serial(&z.server, &z.name).await {
            Ok(s) => s,
            Err(e) => {
                let error = e.to_string();
                self.store
                    .secondary_zone_checked(&z.zone, &error, now)
                    .await?;
                return Ok(failed(error));
            }
        };
        if known_serial == Some(i64::from(serial)) {
            self.store.secondary_zone_checked(&z.zone, "", now).await?;
            return Ok(ZoneReport::Unchanged {
                zone: z.zone.clone(),
                serial,
            });
        }
        let unix = u64::try_from(now).unwrap_or(0);
        let transfer = match axfr(&z.server, &z.name, &z.key, unix).await {
            Ok(t) => t,
            Err(e) => {
                let error = e.to_string();
                self.store
                    .secondary_zone_checked(&z.zone, &error, now)
                    .await?;
                return Ok(failed(error));
            }
        };
        // Every CSR record by host; other records (the certificates, other
        // layouts, other names) are not ours to judge.
        let mut csrs: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for record in &transfer.records {
            let RData::TLSA(tlsa) = &record.data else {
                continue;
            };
            if TlsaRole::of(tlsa) != Some(TlsaRole::Csr) {
                continue;
            }
            let owner = record.name.to_ascii().to_ascii_lowercase();
            let owner = owner.trim_end_matches('.');
            let Some(host) = owner.strip_prefix(&format!("{PREFIX}.")) else {
                continue;
            };
            csrs.entry(host.to_owned())
                .or_default()
                .push(tlsa.cert_data.clone());
        }
        let mut rows = Vec::with_capacity(csrs.len());
        for (host, ders) in csrs {
            let outcome = match ders.as_slice() {
                [der] => csr::check(&host, &z.zone, der, &self.key_types).map(|c| c.pem()),
                _ => Err(format!(
                    "{} CSR records at {PREFIX}.{host}; publish exactly one (certkeeper dns request replaces the old one)",
                    ders.len()
                )),
            };
            let row = match outcome {
                Ok(pem) => SecondaryHostRow {
                    host,
                    zone: z.zone.clone(),
                    csr_pem: pem,
                    accepted: true,
                    problem: String::new(),
                    seen_at: now,
                },
                Err(problem) => {
                    tracing::warn!(zone = %z.zone, %host, %problem, "DNS secondary: CSR refused; nothing is ordered for it");
                    SecondaryHostRow {
                        host,
                        zone: z.zone.clone(),
                        csr_pem: String::new(),
                        accepted: false,
                        problem,
                        seen_at: now,
                    }
                }
            };
            rows.push(row);
        }
        let accepted = rows.iter().filter(|r| r.accepted).count();
        let refused = rows.len() - accepted;
        self.store
            .secondary_replace_zone(&z.zone, i64::from(transfer.serial), &rows, now)
            .await?;
        Ok(ZoneReport::Transferred {
            zone: z.zone.clone(),
            serial: transfer.serial,
            accepted,
            refused,
        })
    }
}
