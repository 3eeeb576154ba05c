//! Finding where a name lives: its zone (by SOA), a CNAME it is delegated
//! through, and the zone's authoritative servers (by NS).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType};

use crate::{DnsError, Server, query};

/// Longest CNAME chain followed; more is a loop or a misconfiguration.
const MAX_CNAME_HOPS: usize = 8;

/// A zone and its authoritative servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneInfo {
    /// The zone's apex.
    pub zone: Name,
    /// Each NS name with the addresses found for it.
    pub servers: Vec<(Name, SocketAddr)>,
}

/// The zone holding `name`, found by asking `server` for its SOA: an
/// authoritative server answers with the SOA itself at an apex, or in the
/// authority section (RFC 2308 §2.2 negative answers) below one. A server
/// that refuses or is not authoritative for a name is asked again one label
/// up, until the root.
pub async fn discover_zone(server: &Server, name: &Name) -> Result<Name, DnsError> {
    let mut candidate = name.clone();
    loop {
        let answer = query(server, &candidate, RecordType::SOA).await?;
        if matches!(answer.rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
            let soa = answer
                .answers
                .iter()
                .chain(answer.authorities.iter())
                .find(|r| r.record_type() == RecordType::SOA && r.name.zone_of(name));
            if let Some(soa) = soa {
                return Ok(soa.name.clone());
            }
        }
        if candidate.is_root() {
            return Err(DnsError::NoZone {
                name: name.to_string(),
                server: server.addr,
            });
        }
        candidate = candidate.base_name();
    }
}

/// Where a TXT record for `name` must really go: the end of the CNAME chain
/// at `name` (the acme-dns pattern: `_acme-challenge.example.com CNAME
/// x.acme.example.net`, and the CA follows it), or `name` itself.
pub async fn follow_cname(server: &Server, name: &Name) -> Result<Name, DnsError> {
    let mut at = name.clone();
    for _ in 0..MAX_CNAME_HOPS {
        let answer = query(server, &at, RecordType::CNAME).await?;
        let target = answer.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if r.name == at => Some(c.0.clone()),
            _ => None,
        });
        match target {
            Some(t) => at = t,
            None => return Ok(at),
        }
    }
    Err(DnsError::Protocol {
        server: server.addr,
        what: format!("following CNAMEs from {name}"),
        reason: format!("more than {MAX_CNAME_HOPS} CNAMEs: a loop?"),
    })
}

/// The authoritative servers of `zone` from its NS records. Each is asked
/// at the address `overrides` gives for its name (split horizon, NAT, a
/// server on another port), else at the addresses from the answer's glue,
/// then from `server` itself (in-zone names), then from the system
/// resolver, on `port`.
pub async fn nameservers(
    server: &Server,
    zone: &Name,
    port: u16,
    overrides: &BTreeMap<Name, SocketAddr>,
) -> Result<ZoneInfo, DnsError> {
    let answer = query(server, zone, RecordType::NS).await?;
    let ns_names: Vec<Name> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(ns) if &r.name == zone => Some(ns.0.clone()),
            _ => None,
        })
        .collect();
    if ns_names.is_empty() {
        return Err(DnsError::NoNameservers {
            zone: zone.to_string(),
            reason: format!("{} returned no NS records for it", server.addr),
        });
    }
    let mut servers = Vec::new();
    for ns in ns_names {
        if let Some(addr) = overrides.get(&ns) {
            servers.push((ns, *addr));
            continue;
        }
        let mut addrs: Vec<IpAddr> = glue(&answer.additionals, &ns);
        if addrs.is_empty() {
            for rtype in [RecordType::A, RecordType::AAAA] {
                if let Ok(a) = query(server, &ns, rtype).await {
                    addrs.extend(glue(&a.answers, &ns));
                }
            }
        }
        if addrs.is_empty() {
            let host = ns.to_string();
            if let Ok(found) = tokio::net::lookup_host((host.trim_end_matches('.'), port)).await {
                addrs.extend(found.map(|a| a.ip()));
            }
        }
        if addrs.is_empty() {
            return Err(DnsError::NoNameservers {
                zone: zone.to_string(),
                reason: format!("its name server {ns} has no address (no A/AAAA record found)"),
            });
        }
        addrs.sort();
        addrs.dedup();
        servers.extend(
            addrs
                .into_iter()
                .map(|ip| (ns.clone(), SocketAddr::new(ip, port))),
        );
    }
    Ok(ZoneInfo {
        zone: zone.clone(),
        servers,
    })
}

fn glue(records: &[hickory_proto::rr::Record], name: &Name) -> Vec<IpAddr> {
    records
        .iter()
        .filter(|r| &r.name == name)
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}
