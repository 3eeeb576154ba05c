//! The validation authority: proves control of an identifier, and nothing else.
//! It never touches the store; the RA records what it reports.

mod dns01;
mod http01;
mod resolver;
mod tlsalpn01;

pub use resolver::DnsResolver;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use certkeeper_proto::problem::ProblemType;

use crate::CaError;

/// How long one validation may take end to end (Boulder: 20 s per attempt).
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(20);

/// Ports and resolver the VA uses.
#[derive(Clone, Debug)]
pub struct Va {
    resolver: DnsResolver,
    http01_port: u16,
    tlsalpn01_port: u16,
    /// One permit per validation in flight (`capacity.max_concurrent_validations`).
    slots: Arc<Semaphore>,
}

/// A reserved validation slot; the slot frees when this is dropped.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// One validation job.
#[derive(Clone, Debug)]
pub struct Validation {
    /// `dns` or `ip`.
    pub identifier_type: String,
    /// The identifier value (a wildcard's base name).
    pub value: String,
    /// `http-01`, `dns-01` or `tls-alpn-01`.
    pub challenge: String,
    /// The challenge token.
    pub token: String,
    /// RFC 8555 §8.1 key authorization.
    pub key_authorization: String,
}

impl Va {
    /// A VA that validates on the given ports through `resolver`, at most
    /// `max_concurrent` at once.
    pub fn new(
        resolver: DnsResolver,
        http01_port: u16,
        tlsalpn01_port: u16,
        max_concurrent: u32,
    ) -> Va {
        Va {
            resolver,
            http01_port,
            tlsalpn01_port,
            slots: Arc::new(Semaphore::new(max_concurrent as usize)),
        }
    }

    /// A validation slot if one is free now: a challenge POST never queues
    /// unboundedly behind a flood; it is told to come back.
    pub fn try_reserve(&self) -> Option<Slot> {
        Arc::clone(&self.slots).try_acquire_owned().ok().map(Slot)
    }

    /// A validation slot, waiting for one (validations resumed after a
    /// restart, which were admitted before it).
    pub async fn reserve(&self) -> Option<Slot> {
        Arc::clone(&self.slots).acquire_owned().await.ok().map(Slot)
    }

    /// Validates one challenge; `Err` carries the problem to record on it.
    pub async fn validate(&self, v: &Validation) -> Result<(), CaError> {
        let work = async {
            match v.challenge.as_str() {
                "http-01" => {
                    let addrs = self.addresses(v).await?;
                    http01::validate(
                        &addrs,
                        self.http01_port,
                        &v.value,
                        &v.token,
                        &v.key_authorization,
                    )
                    .await
                }
                "tls-alpn-01" => {
                    let addrs = self.addresses(v).await?;
                    tlsalpn01::validate(&addrs, self.tlsalpn01_port, v, &v.key_authorization).await
                }
                "dns-01" => dns01::validate(&self.resolver, &v.value, &v.key_authorization).await,
                other => Err(CaError::malformed(format!(
                    "unsupported challenge type {other}"
                ))),
            }
        };
        let result = match tokio::time::timeout(VALIDATION_TIMEOUT, work).await {
            Ok(r) => r,
            Err(_) => Err(CaError::acme(
                ProblemType::Connection,
                format!(
                    "{}: validation timed out after {} s",
                    v.value,
                    VALIDATION_TIMEOUT.as_secs()
                ),
            )),
        };
        metrics::counter!(
            "certkeeper_ca_validations_total",
            "type" => v.challenge.clone(),
            "outcome" => if result.is_ok() { "valid" } else { "invalid" },
        )
        .increment(1);
        result
    }

    /// The addresses to contact for an identifier: the IP itself, or the
    /// name's A/AAAA records, IPv6 first as Boulder does.
    async fn addresses(&self, v: &Validation) -> Result<Vec<IpAddr>, CaError> {
        if v.identifier_type == "ip" {
            return v
                .value
                .parse()
                .map(|ip| vec![ip])
                .map_err(|_| CaError::malformed(format!("{} is not an IP address", v.value)));
        }
        let mut addrs = self.resolver.lookup_ip(&v.value).await?;
        addrs.sort_by_key(|a| a.is_ipv4());
        Ok(addrs)
    }
}

/// `ip:port` with IPv6 brackets.
fn socket(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

/// A problem for a peer that could not be reached.
fn connection_problem(name: &str, addr: SocketAddr, what: impl std::fmt::Display) -> CaError {
    CaError::acme(ProblemType::Connection, format!("{name} ({addr}): {what}"))
}
