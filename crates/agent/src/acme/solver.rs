//! The `Solver` interface: publish and withdraw one challenge response.
//!
//! Kept deliberately small (CertMagic's shape) so that http-01, tls-alpn-01
//! and, later, dns-01 over RFC 2136 are interchangeable.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use instant_acme::ChallengeType;

/// Boxed future returned by [`Solver`] methods; boxed so that solvers can be
/// chosen at run time behind `&dyn Solver`.
pub type SolverFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SolverError>> + Send + 'a>>;

/// What a solver needs to publish one challenge response.
///
/// The key authorization is not secret (it is served to anyone who asks),
/// so this type may be logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingChallenge {
    /// The identifier being validated: a DNS name without any `*.` prefix,
    /// or an IP address in text form.
    pub identifier: String,
    /// Whether the authorization is for the wildcard `*.{identifier}`.
    pub wildcard: bool,
    /// Whether `identifier` is an IP address (RFC 8738).
    pub is_ip: bool,
    /// The challenge token (the http-01 path segment).
    pub token: String,
    /// `token.thumbprint`: the http-01 response body.
    pub key_authorization: String,
    /// SHA-256 of the key authorization: the tls-alpn-01 acmeIdentifier value.
    pub digest: [u8; 32],
    /// base64url(SHA-256(key authorization)): the dns-01 TXT value.
    pub dns_value: String,
}

/// Publishes challenge responses for one challenge type.
///
/// For one order the client calls `present` for every pending
/// authorization, then `wait_until_visible` once, then tells the CA to
/// validate them all, then `cleanup` for every presented response (whether
/// validation succeeded or not). So after `wait_until_visible` returns,
/// every response presented must be reachable by the CA (e.g. the DNS
/// record is on every authoritative server). A solver whose `present` is
/// enough on its own keeps the default no-op wait.
pub trait Solver: Send + Sync {
    /// The challenge type this solver answers.
    fn challenge_type(&self) -> ChallengeType;
    /// Make the response for `challenge` reachable by the CA.
    fn present<'a>(&'a self, challenge: &'a PendingChallenge) -> SolverFuture<'a>;
    /// Withdraw the response; called whether validation succeeded or not.
    fn cleanup<'a>(&'a self, challenge: &'a PendingChallenge) -> SolverFuture<'a>;
    /// Wait until every response presented so far is visible to the CA.
    ///
    /// Called once per order, after all its challenges are presented and
    /// before any is triggered, so a propagation delay (DNS secondaries)
    /// is paid once per order, not once per name. Default: returns at once.
    fn wait_until_visible(&self) -> SolverFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

/// Why a solver could not present or clean up a challenge response.
#[derive(Debug)]
pub struct SolverError(Box<dyn StdError + Send + Sync + 'static>);

impl SolverError {
    /// Wraps any error (or a message) so solvers can use their own error types.
    pub fn new(err: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Self(err.into())
    }
}

impl fmt::Display for SolverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for SolverError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

/// The wire name of a challenge type, for messages.
pub(crate) fn challenge_name(kind: &ChallengeType) -> String {
    match kind {
        ChallengeType::Http01 => "http-01".to_owned(),
        ChallengeType::Dns01 => "dns-01".to_owned(),
        ChallengeType::TlsAlpn01 => "tls-alpn-01".to_owned(),
        ChallengeType::DeviceAttest01 => "device-attest-01".to_owned(),
        ChallengeType::Unknown(other) => other.clone(),
        // `ChallengeType` is non-exhaustive; Debug is the best we can do.
        other => format!("{other:?}"),
    }
}
