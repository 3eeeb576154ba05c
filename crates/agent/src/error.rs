//! The agent's one error type. Variants are grouped by who is at fault (the
//! CA, the operator's configuration, this machine, the store) and keep the
//! typed cause, so callers can ask [`AgentError::is_retryable`],
//! [`AgentError::order_is_dead`] and [`AgentError::retry_after`] instead of
//! parsing messages.

use std::time::Duration;

use certkeeper_store::StoreError;

use crate::acme::AcmeError;
use crate::deploy::DeployError;

/// Why the agent could not do its job for a certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The CA refused or failed. `account_wide` when the account itself
    /// (registration, lookup) failed, so every certificate of the issuer
    /// waits, not just one set of names.
    #[error("{}", .error.report())]
    Acme {
        /// The ACME client's error: problem document, step, Retry-After.
        error: Box<AcmeError>,
        /// The failure concerns the account, not one order.
        account_wide: bool,
    },
    /// The configuration cannot be honoured; the message names the key and the fix.
    #[error("{0}")]
    Config(String),
    /// A key could not be generated, loaded or used.
    #[error("key for {name}: {reason}")]
    Key {
        /// Managed certificate name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The certificate the CA returned must not be served.
    #[error("certificate for {name} from {issuer} refused: {reason}")]
    BadCertificate {
        /// Managed certificate name.
        name: String,
        /// Issuer name.
        issuer: String,
        /// Why.
        reason: String,
    },
    /// The certificate's inclusion in the issuer's transparency log is not
    /// verified (`tlog.require_inclusion`): it is neither stored as
    /// deployable nor deployed, and the order stays for a retry.
    #[error(
        "certificate for {name} from {issuer} not deployed: its inclusion in the transparency log {log} is not verified: {reason}"
    )]
    NotLogged {
        /// Managed certificate name.
        name: String,
        /// Issuer name.
        issuer: String,
        /// The log prefix URL.
        log: String,
        /// Why, and what to do.
        reason: String,
    },
    /// Nothing was sent to the CA: a known limit is used up or the CA asked
    /// not to be contacted yet. No retry before `until` (unix seconds), and
    /// `--force` does not change that.
    #[error("{message}")]
    NotBefore {
        /// Which limit or answer, the count, the window, and the time.
        message: String,
        /// When an attempt can succeed.
        until: i64,
    },
    /// The CA did not revoke a certificate.
    #[error("{name}: {issuer} did not revoke serial {serial}: {error}")]
    Revoke {
        /// Managed certificate name.
        name: String,
        /// Issuer name.
        issuer: String,
        /// The serial.
        serial: String,
        /// What the CA (or the transport) said.
        error: Box<crate::acme::RevokeError>,
    },
    /// The operator asked for something unsafe; the message says how to
    /// make it safe or to insist with `--force`.
    #[error("{0}")]
    Refused(String),
    /// A deploy target failed.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// A local step failed (responder bind, task, parsing our own data).
    #[error("{0}")]
    Local(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AgentError {
    /// Wraps an ACME error about one order.
    pub fn acme(error: AcmeError) -> AgentError {
        AgentError::Acme {
            error: Box::new(error),
            account_wide: false,
        }
    }

    /// Wraps an ACME error about the account.
    pub fn account(error: AcmeError) -> AgentError {
        AgentError::Acme {
            error: Box::new(error),
            account_wide: true,
        }
    }

    /// Whether trying the same thing again later can succeed without anyone
    /// changing anything (after the backoff, or after `until`).
    pub fn is_retryable(&self) -> bool {
        match self {
            AgentError::Acme { .. }
            | AgentError::NotBefore { .. }
            | AgentError::Store(_)
            | AgentError::Local(_) => true,
            AgentError::Deploy(e) => e.is_retryable(),
            AgentError::Revoke { error, .. } => error.is_retryable(),
            AgentError::BadCertificate { .. } => true,
            // A lagging or unreachable log catches up; a bad proof is retried
            // at the backoff too (the CA may repair its log).
            AgentError::NotLogged { .. } => true,
            AgentError::Config(_) | AgentError::Key { .. } | AgentError::Refused(_) => false,
        }
    }

    /// Whether the order in flight is dead and must be dropped (a new one
    /// is needed): the CA said so, or what it issued is unusable.
    pub fn order_is_dead(&self) -> bool {
        match self {
            AgentError::Acme { error, .. } => error.needs_new_order(),
            AgentError::BadCertificate { .. } => true,
            _ => false,
        }
    }

    /// The CA's Retry-After, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AgentError::Acme { error, .. } => error.retry_after(),
            _ => None,
        }
    }
}
