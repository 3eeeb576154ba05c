//! The `Issuer` seam: anything that turns a certificate request into a
//! chain. The agent talks to CAs only through it (and only after the guard
//! said yes). [`acme::AcmeIssuer`] is the RFC 8555 implementation.

pub mod acme;

use std::future::Future;
use std::pin::Pin;

use crate::acme::{CertificateKey, IssuedChain, Solver};
use crate::error::AgentError;

/// Boxed future of the [`Issuer`] methods, so issuers are chosen at run time.
pub type IssuerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AgentError>> + Send + 'a>>;

/// What the finalize CSR comes from: a key the agent holds (it builds and
/// signs the CSR), or a CSR made by a service that keeps its key to itself
/// (the DNS certificate secondary orders for CSRs published in DNS).
#[derive(Debug, Clone)]
pub enum CsrSource {
    /// Build the CSR for the request's names from this key.
    Key(CertificateKey),
    /// Send this CSR (DER) as it is; its self-signature and names were
    /// checked by whoever accepted it (`secondary::csr`).
    Der(Vec<u8>),
}

/// One certificate to order.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// DNS names and IP addresses.
    pub names: Vec<String>,
    /// The key the CSR will be signed with, or the CSR itself.
    pub key: CsrSource,
    /// ACME profile, when the issuer prefers one.
    pub profile: Option<String>,
    /// The certificate this one replaces (DER leaf), for ARI `replaces`.
    pub replaces: Option<Vec<u8>>,
}

/// What must be persisted between [`Issuer::begin`] and
/// [`Issuer::complete`] for a restarted process to finish the same order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderHandle {
    /// The ACME order URL.
    pub order_url: String,
}

/// Turns a request into a certificate, in two steps around a persisted handle.
///
/// Contract:
/// - `begin` creates the order and returns at once; the caller persists the
///   handle (with the key) *before* calling `complete`, so a crash between
///   them resumes the same order instead of spending another.
/// - `complete` is idempotent and resumable: called again with the same
///   handle (after a crash, a timeout, a transport error), it continues from
///   wherever the CA has the order and never finalizes twice. Its error says
///   whether the order is dead ([`AgentError::order_is_dead`]).
/// - Both may be cancelled (dropped) at any await point; the persisted
///   handle stays valid.
/// - Implementations are shared across concurrent jobs (`&self`).
pub trait Issuer: Send + Sync {
    /// Places the order.
    fn begin<'a>(&'a self, request: &'a IssueRequest) -> IssuerFuture<'a, OrderHandle>;
    /// Drives the order to a chain: challenges through `solver`, finalize
    /// with a CSR for `names` from `csr` (signed by its key, or sent as
    /// given), download, check that the leaf is for that key. `now` is for
    /// checking the validity of what the CA returned.
    fn complete<'a>(
        &'a self,
        handle: &'a OrderHandle,
        names: &'a [String],
        csr: &'a CsrSource,
        solver: &'a dyn Solver,
        now: i64,
    ) -> IssuerFuture<'a, IssuedChain>;
}
