//! Confirming that a record is served by every authoritative server of its
//! zone before the CA is asked to look. A fixed sleep (certbot's 60 s) is
//! too long when the secondaries are quick and too short when they are not;
//! asking one resolver sees one server's (or a cache's) view. Propagation
//! and split-horizon failures are the most reported DNS-01 problems
//! (cert-manager#5515, #5917, #6334; lego#1777).

use std::collections::BTreeMap;
use std::time::Duration;

use hickory_proto::rr::{Name, RData, RecordType};

use crate::{DnsError, Server, ZoneInfo, query};

/// How long and how often to look.
#[derive(Clone, Copy, Debug)]
pub struct Propagation {
    /// Give up after this long.
    pub timeout: Duration,
    /// Ask each lagging server again after this long.
    pub interval: Duration,
    /// Per-query timeout.
    pub query_timeout: Duration,
}

impl Default for Propagation {
    /// Two minutes: NOTIFY reaches healthy secondaries in seconds, and a
    /// secondary that has not caught up in two minutes is broken, not slow.
    fn default() -> Self {
        Propagation {
            timeout: Duration::from_secs(120),
            interval: Duration::from_millis(500),
            query_timeout: Duration::from_secs(2),
        }
    }
}

/// Waits until every server of `zone` serves every `(name, value)` TXT
/// record in `wanted`. The error names each server that never did, and
/// what it last answered.
pub async fn wait_for_txt(
    how: &Propagation,
    zone: &ZoneInfo,
    wanted: &[(Name, String)],
) -> Result<(), DnsError> {
    let deadline = tokio::time::Instant::now() + how.timeout;
    // Server → its last answer, for those not yet serving everything.
    let mut lagging: BTreeMap<String, String> = zone
        .servers
        .iter()
        .map(|(ns, addr)| (format!("{ns} ({addr})"), "not asked yet".to_owned()))
        .collect();
    loop {
        for (ns, addr) in &zone.servers {
            let label = format!("{ns} ({addr})");
            if !lagging.contains_key(&label) {
                continue;
            }
            let server = Server {
                addr: *addr,
                timeout: how.query_timeout,
                ..Server::new(*addr)
            };
            match serves_all(&server, wanted).await {
                Ok(None) => {
                    lagging.remove(&label);
                }
                Ok(Some(missing)) => {
                    lagging.insert(label, missing);
                }
                Err(e) => {
                    lagging.insert(label, e.to_string());
                }
            }
        }
        if lagging.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() + how.interval > deadline {
            let (name, value) = wanted
                .first()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .unwrap_or_default();
            return Err(DnsError::NotPropagated {
                name,
                value,
                zone: zone.zone.to_string(),
                lagging: lagging
                    .iter()
                    .map(|(s, why)| format!("{s}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; "),
                after: how.timeout,
            });
        }
        tokio::time::sleep(how.interval).await;
    }
}

/// `None` when `server` serves every wanted value, else what is missing.
async fn serves_all(
    server: &Server,
    wanted: &[(Name, String)],
) -> Result<Option<String>, DnsError> {
    for (name, value) in wanted {
        let answer = query(server, name, RecordType::TXT).await?;
        let found = answer.answers.iter().any(|r| match &r.data {
            RData::TXT(t) if r.name == *name => {
                t.txt_data
                    .iter()
                    .map(|s| s.as_ref())
                    .collect::<Vec<_>>()
                    .concat()
                    == value.as_bytes()
            }
            _ => false,
        });
        if !found {
            return Ok(Some(format!(
                "{name} TXT {value:?} missing ({}, {} TXT records)",
                answer.rcode,
                answer
                    .answers
                    .iter()
                    .filter(|r| r.record_type() == RecordType::TXT)
                    .count()
            )));
        }
    }
    Ok(None)
}
