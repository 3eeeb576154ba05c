//! dns-01 by RFC 2136 UPDATE (TSIG-signed) to the operator's own primary.
//!
//! It adds exactly its TXT record and deletes exactly that record again
//! (RFC 2136 §2.5.4), so other TXT records at `_acme-challenge` — another
//! client's, another replica's, the wildcard's twin — are never touched. It
//! follows a CNAME at `_acme-challenge.NAME` into a delegated zone (the
//! acme-dns pattern), finds zones by SOA when none is configured, and waits
//! once per order until every authoritative server of every zone touched
//! (from the zone's NS records) serves every value. Each record is written
//! to the store before it is sent, so one left by a crash is removed at the
//! next start ([`remove_abandoned`]).

use std::sync::{Arc, Mutex};

use certkeeper_dns::{
    DnsError, Name, Update, discover_zone, follow_cname, fqdn, nameservers, wait_for_txt,
};
use certkeeper_proto::Clock;
use certkeeper_store::{DnsRecordRow, Store};
use hickory_proto::rr::RData;
use hickory_proto::rr::rdata::TXT;

use crate::acme::{ChallengeType, PendingChallenge, Solver, SolverError, SolverFuture};
use crate::dns_config::{DnsServerConfig, DnsTarget};

/// One record this solver added and has not removed yet.
#[derive(Clone, Debug)]
struct Presented {
    id: String,
    identifier: String,
    value: String,
    /// Index into `zoned`, or `None` for the certificate's own server.
    target: Option<usize>,
    zone: Name,
    name: Name,
}

/// The RFC 2136 solver for one certificate and one order.
#[derive(Debug)]
pub struct Rfc2136Solver {
    certificate: String,
    own: DnsTarget,
    /// `[[dns_server]]` blocks with a zone: names under it go there.
    zoned: Vec<DnsTarget>,
    store: Store,
    clock: Arc<dyn Clock>,
    presented: Mutex<Vec<Presented>>,
}

impl Rfc2136Solver {
    /// A solver publishing through `own`, or through the server of a
    /// `zoned` block whose zone holds the record's name.
    pub fn new(
        certificate: &str,
        own: DnsTarget,
        zoned: Vec<DnsTarget>,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Rfc2136Solver {
        Rfc2136Solver {
            certificate: certificate.to_owned(),
            own,
            zoned,
            store,
            clock,
            presented: Mutex::new(Vec::new()),
        }
    }

    fn target(&self, at: Option<usize>) -> &DnsTarget {
        at.and_then(|i| self.zoned.get(i)).unwrap_or(&self.own)
    }

    /// Where the record for `name` goes: the `[[dns_server]]` with the
    /// longest zone holding it, else the certificate's own server; and the
    /// zone (configured, or found by SOA).
    async fn place(&self, name: &Name) -> Result<(Option<usize>, Name), DnsError> {
        let best = self
            .zoned
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.zone.as_ref().filter(|z| z.zone_of(name)).map(|z| (i, z)))
            .max_by_key(|(_, z)| z.num_labels());
        if let Some((i, z)) = best {
            return Ok((Some(i), z.clone()));
        }
        match &self.own.zone {
            Some(z) if z.zone_of(name) => Ok((None, z.clone())),
            _ => Ok((None, discover_zone(self.own.client.server(), name).await?)),
        }
    }

    async fn present_one(&self, c: &PendingChallenge) -> Result<(), SolverError> {
        let start = fqdn(&format!("_acme-challenge.{}", c.identifier)).map_err(SolverError::new)?;
        let name = follow_cname(self.own.client.server(), &start)
            .await
            .map_err(SolverError::new)?;
        if name != start {
            tracing::info!(from = %start, to = %name, "dns-01: following the CNAME");
        }
        let (at, zone) = self.place(&name).await.map_err(SolverError::new)?;
        let target = self.target(at);
        let row = DnsRecordRow {
            id: format!("{:032x}", rand::random::<u128>()),
            certificate: self.certificate.clone(),
            server: target.client.server().addr.to_string(),
            tsig_key: target.client.key().name().to_string(),
            zone: zone.to_string(),
            name: name.to_string(),
            value: c.dns_value.clone(),
            created_at: self.clock.now(),
        };
        // Intent first: a crash after the UPDATE leaves a row to clean up by.
        self.store
            .dns_record_add(&row)
            .await
            .map_err(SolverError::new)?;
        let mut add = Update::new(zone.clone());
        add.add(name.clone(), target.ttl, txt(&c.dns_value));
        if let Err(e) = target.client.send(&add).await {
            // A timeout may still have applied it: take it back if we can.
            let mut undo = Update::new(zone.clone());
            undo.delete_rr(name.clone(), txt(&c.dns_value));
            if target.client.send(&undo).await.is_ok() {
                let _ = self.store.dns_record_remove(&row.id).await;
            }
            return Err(SolverError::new(e));
        }
        tracing::info!(name = %name, zone = %zone, server = %target.client.server().addr, "dns-01: TXT record added");
        self.lock().push(Presented {
            id: row.id,
            identifier: c.identifier.clone(),
            value: c.dns_value.clone(),
            target: at,
            zone,
            name,
        });
        Ok(())
    }

    async fn wait_all(&self) -> Result<(), SolverError> {
        crate::faults::crash_point("dns-presented");
        let presented = self.lock().clone();
        // (server, zone) → the records to look for there.
        type Group = ((Option<usize>, Name), Vec<(Name, String)>);
        let mut groups: Vec<Group> = Vec::new();
        for p in presented {
            let key = (p.target, p.zone.clone());
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push((p.name, p.value)),
                None => groups.push((key, vec![(p.name, p.value)])),
            }
        }
        for ((at, zone), wanted) in groups {
            let target = self.target(at);
            let info = nameservers(
                target.client.server(),
                &zone,
                target.nameserver_port,
                &target.nameservers,
            )
            .await
            .map_err(SolverError::new)?;
            wait_for_txt(&target.propagation, &info, &wanted)
                .await
                .map_err(SolverError::new)?;
        }
        Ok(())
    }

    async fn cleanup_one(&self, c: &PendingChallenge) -> Result<(), SolverError> {
        let found = {
            let mut list = self.lock();
            let at = list
                .iter()
                .position(|p| p.identifier == c.identifier && p.value == c.dns_value);
            at.map(|i| list.remove(i))
        };
        let Some(p) = found else {
            return Ok(());
        };
        let target = self.target(p.target);
        let mut del = Update::new(p.zone.clone());
        del.delete_rr(p.name.clone(), txt(&p.value));
        if let Err(e) = target.client.send(&del).await {
            // The row stays: the next start removes the record.
            return Err(SolverError::new(e));
        }
        self.store
            .dns_record_remove(&p.id)
            .await
            .map_err(SolverError::new)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Presented>> {
        // A panic while holding the lock cannot leave the list half-changed
        // (push/remove are atomic), so a poisoned lock is still usable.
        self.presented.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn txt(value: &str) -> RData {
    RData::TXT(TXT::new(vec![value.to_owned()]))
}

impl Solver for Rfc2136Solver {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Dns01
    }

    fn present<'a>(&'a self, c: &'a PendingChallenge) -> SolverFuture<'a> {
        Box::pin(self.present_one(c))
    }

    fn cleanup<'a>(&'a self, c: &'a PendingChallenge) -> SolverFuture<'a> {
        Box::pin(self.cleanup_one(c))
    }

    fn wait_until_visible(&self) -> SolverFuture<'_> {
        Box::pin(self.wait_all())
    }
}

/// Removes every TXT record a previous process added and did not remove
/// (it crashed, or its cleanup failed), each exactly by its value. Records
/// whose server is no longer configured are kept and reported.
pub async fn remove_abandoned(
    servers: &[&DnsServerConfig],
    store: &Store,
    clock: Arc<dyn Clock>,
) -> Result<usize, certkeeper_store::StoreError> {
    let mut removed = 0;
    for row in store.dns_records().await? {
        let config = servers.iter().find(|s| {
            s.server.to_string() == row.server
                && fqdn(&s.tsig_key).map(|k| k.to_string()).ok().as_deref()
                    == Some(row.tsig_key.as_str())
        });
        let Some(config) = config else {
            tracing::warn!(name = %row.name, server = %row.server, "dns-01: a TXT record left by an earlier run has no configured server any more; remove it by hand");
            continue;
        };
        let target = match config.target(Arc::clone(&clock)) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(name = %row.name, error = %e, "dns-01: cannot remove a TXT record left by an earlier run");
                continue;
            }
        };
        let (Ok(zone), Ok(name)) = (fqdn(&row.zone), fqdn(&row.name)) else {
            store.dns_record_remove(&row.id).await?;
            continue;
        };
        let mut del = Update::new(zone);
        del.delete_rr(name, txt(&row.value));
        match target.client.send(&del).await {
            Ok(()) => {
                store.dns_record_remove(&row.id).await?;
                tracing::info!(name = %row.name, certificate = %row.certificate, "dns-01: removed a TXT record left by an earlier run");
                removed += 1;
            }
            Err(e) => {
                tracing::warn!(name = %row.name, error = %e, "dns-01: cannot remove a TXT record left by an earlier run; will try at the next start");
            }
        }
    }
    Ok(removed)
}

impl crate::daemon::Agent {
    /// At start: removes the dns-01 TXT records an earlier run left behind
    /// (see [`remove_abandoned`]). No order is in flight in this process
    /// yet, so every recorded record is abandoned; an order resumed later
    /// presents its challenges again.
    pub async fn remove_abandoned_dns_records(&self) -> Result<usize, crate::AgentError> {
        let mut servers: Vec<&DnsServerConfig> = self.config.dns_servers.iter().collect();
        servers.extend(
            self.config
                .certificates
                .iter()
                .filter_map(|c| c.dns.as_ref()),
        );
        Ok(remove_abandoned(&servers, &self.store, std::sync::Arc::clone(&self.clock)).await?)
    }
}
