//! The crate's one error type. Every message names the server, zone or key
//! involved and says what to change.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What went wrong talking to a DNS server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// A name that is not a valid domain name.
    #[error("{name:?} is not a valid DNS name: {reason}")]
    BadName {
        /// The text given.
        name: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The TSIG algorithm is unknown or refused (MD5, SHA-1).
    #[error(
        "TSIG algorithm {name:?} is not supported: use hmac-sha256 (the default), hmac-sha384 or hmac-sha512{hint}"
    )]
    Algorithm {
        /// As configured.
        name: String,
        /// Extra advice (MD5).
        hint: &'static str,
    },
    /// The TSIG secret file is unreadable, too open, or not base64.
    #[error("TSIG secret file {}: {reason}", path.display())]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// RFC 8945 BADKEY: the server does not know the key (name or algorithm).
    #[error(
        "{server} does not know TSIG key {key} with algorithm {algorithm} (BADKEY): the key name and algorithm must match a key {{ }} block in the server's configuration"
    )]
    BadKey {
        /// The server.
        server: SocketAddr,
        /// Key name.
        key: String,
        /// Algorithm name.
        algorithm: String,
    },
    /// RFC 8945 BADSIG: the server knows the key but the MAC is wrong.
    #[error(
        "{server} rejected the signature made with TSIG key {key} (BADSIG): the secret does not match the server's secret for that key"
    )]
    BadSig {
        /// The server.
        server: SocketAddr,
        /// Key name.
        key: String,
    },
    /// RFC 8945 BADTIME: the clocks disagree by more than the fudge.
    #[error(
        "{server} rejected TSIG key {key} because of clock skew (BADTIME){}: synchronise this host's clock (NTP) with the server's",
        skew.map(|s| format!(", the server's clock is {s} s off ours")).unwrap_or_default()
    )]
    BadTime {
        /// The server.
        server: SocketAddr,
        /// Key name.
        key: String,
        /// Server time minus our time, when the server said.
        skew: Option<i64>,
    },
    /// REFUSED to an UPDATE: the zone's update policy does not allow this key.
    #[error(
        "the server {server} does not allow updates to {zone} with key {key} (REFUSED): add allow-update {{ key \"{key}\"; }} (or an update-policy grant) to the zone, or use the key the zone allows"
    )]
    Refused {
        /// The server.
        server: SocketAddr,
        /// The zone.
        zone: String,
        /// Key name.
        key: String,
    },
    /// NOTZONE / NOTAUTH: the server is not authoritative (primary) for the
    /// zone, or a name lies outside it.
    #[error(
        "{server} is not the primary for zone {zone} ({rcode}): point server at the zone's primary, or set zone to the zone that holds {name}"
    )]
    NotZone {
        /// The server.
        server: SocketAddr,
        /// The zone sent.
        zone: String,
        /// The name updated.
        name: String,
        /// NOTZONE or NOTAUTH.
        rcode: String,
    },
    /// A prerequisite of the update did not hold (YXDOMAIN, YXRRSET, NXDOMAIN, NXRRSET).
    #[error("{server}: a prerequisite of the update to {zone} failed ({rcode})")]
    Prerequisite {
        /// The server.
        server: SocketAddr,
        /// The zone.
        zone: String,
        /// Which one.
        rcode: String,
    },
    /// Any other error response code.
    #[error("{server} answered {rcode} to {what}")]
    Rcode {
        /// The server.
        server: SocketAddr,
        /// The response code.
        rcode: String,
        /// The request.
        what: String,
    },
    /// No answer in time.
    #[error(
        "{server} did not answer {what} within {} s: check the address, the port and any firewall",
        after.as_secs()
    )]
    Timeout {
        /// The server.
        server: SocketAddr,
        /// The request.
        what: String,
        /// How long we waited.
        after: Duration,
    },
    /// A socket error.
    #[error("{server}: {what}: {source}")]
    Io {
        /// The server.
        server: SocketAddr,
        /// The request.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A response that does not parse, does not match the request, or
    /// whose TSIG signature does not verify.
    #[error("{server}: bad response to {what}: {reason}")]
    Protocol {
        /// The server.
        server: SocketAddr,
        /// The request.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A message could not be encoded (too large, bad data).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// The request.
        what: String,
        /// Why.
        reason: String,
    },
    /// Walking up from a name found no zone on the server.
    #[error(
        "no zone holding {name} found on {server} (no SOA at or above it): set zone explicitly, or point server at the zone's primary"
    )]
    NoZone {
        /// The name.
        name: String,
        /// The server asked.
        server: SocketAddr,
    },
    /// The zone has no NS records, or none of them has an address.
    #[error("zone {zone}: {reason}")]
    NoNameservers {
        /// The zone.
        zone: String,
        /// What is missing.
        reason: String,
    },
    /// Some authoritative servers did not serve the record in time.
    #[error(
        "{name} TXT {value:?} was not served by {lagging} after {} s (checked every authoritative server of {zone}): check that the secondaries receive NOTIFY and can transfer the zone",
        after.as_secs()
    )]
    NotPropagated {
        /// The record's name.
        name: String,
        /// The value.
        value: String,
        /// The zone.
        zone: String,
        /// The servers that never served it, with their last answer.
        lagging: String,
        /// How long we waited.
        after: Duration,
    },
}

impl DnsError {
    /// Whether retrying the same request later may succeed (timeouts, I/O,
    /// propagation, clock skew) as opposed to configuration errors.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DnsError::Timeout { .. }
                | DnsError::Io { .. }
                | DnsError::NotPropagated { .. }
                | DnsError::BadTime { .. }
        )
    }
}
