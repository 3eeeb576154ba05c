//! DNS as the control plane: RFC 2136 dynamic UPDATE signed with TSIG
//! (RFC 8945), zone discovery, and propagation checks against every
//! authoritative server of a zone.
//!
//! Messages are built with `hickory-proto`; the transport (UDP, TCP on
//! truncation or for large messages) is ours, so that TSIG error responses
//! (which are unsigned by design, RFC 8945 §5.3.2) are read and named before
//! any signature check — hickory's client reports them as a misleading
//! "truncated HMAC".

mod axfr;
mod error;
mod propagation;
mod query;
pub mod tlsa;
mod transport;
mod tsig;
mod update;
mod zone;

pub use axfr::{ZoneTransfer, axfr, soa_serial};
pub use error::DnsError;
pub use propagation::{Propagation, wait_for_txt};
pub use query::{Answer, query};
pub use transport::{Server, Transport};
pub use tsig::{TsigAlgorithm, TsigKey};
pub use update::{Update, UpdateClient};
pub use zone::{ZoneInfo, discover_zone, follow_cname, nameservers};

pub use hickory_proto::rr::Name;
/// Record data, as zone transfers return it.
pub use hickory_proto::rr::RData as RecordData;

/// Parses a domain name as absolute (a trailing dot is optional).
pub fn fqdn(name: &str) -> Result<Name, DnsError> {
    let mut n = Name::from_ascii(name).map_err(|e| DnsError::BadName {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    n.set_fqdn(true);
    Ok(n)
}
