//! A small ACME (RFC 8555) client on instant-acme, shared by the agent and
//! the `bench` command.
//!
//! The flow is always: new order → present challenges through a [`Solver`]
//! → wait for `ready` → finalize with our own CSR (the key never leaves the
//! agent) → wait for `valid` → download and check the chain.
//!
//! [`AcmeAccount::create_order`] and [`AcmeAccount::complete_order`] split
//! that flow after `newOrder`, so the agent can persist the order URL and
//! key first and, after a crash, resume the same order from whatever state
//! the CA has it in.

mod client;
mod error;
mod http;
mod http01;
mod key;
mod revoke;
mod solver;
mod tlsalpn01;

pub use client::{
    AcmeAccount, AcmeDirectory, CLOCK_SKEW_ALLOWANCE, ExternalAccountBinding, IssuedCertificate,
    IssuedChain, KeyChoice, NewAccountOptions, OrderRequest, PollPolicy, StepTimings, cert_id,
};
pub use error::{AcmeError, FailedAuthorization, Step};
pub use http::{MAX_BODY_BYTES, MAX_RETRY_AFTER};
pub use http01::Http01Responder;
pub use instant_acme::{AccountCredentials, CertificateIdentifier, Problem};
pub use key::{CertificateKey, KeyAlgorithm};
pub use revoke::{CertificateKeyRevoker, RevocationReason, RevokeError, UnknownReason};
pub use solver::{ChallengeType, PendingChallenge, Solver, SolverError, SolverFuture};
pub use tlsalpn01::TlsAlpn01Responder;
