//! The CA's one internal error type, after Boulder's `berrors`: a problem type
//! plus a detail written for the client, or an internal error that is logged
//! and never sent. Conversion to the wire happens only in `wfe::problem`.

use certkeeper_proto::problem::ProblemType;
use certkeeper_store::StoreError;

/// Why a CA operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The client's fault, reported to it as an RFC 8555 §6.7 problem.
    #[error("{kind:?}: {detail}")]
    Acme {
        /// The ACME problem type.
        kind: ProblemType,
        /// What happened and what to do, for the client.
        detail: String,
    },
    /// The resource does not exist (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request conflicts with another resource (409), e.g. a key already
    /// bound to another account; carries that resource's URL path.
    #[error("conflict: {detail}")]
    Conflict {
        /// What conflicts, for the client.
        detail: String,
        /// Path of the existing resource, sent as `Location`.
        location: String,
    },
    /// A rate limit denied the request (429 `rateLimited`); the WFE sends
    /// `retry_after_secs` as `Retry-After`, as Boulder does.
    #[error("rate limited: {detail}")]
    RateLimited {
        /// Names the limit, its count and window, and when to retry.
        detail: String,
        /// Seconds until the request would be allowed.
        retry_after_secs: u64,
    },
    /// Our fault. The detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CaError {
    /// A client-facing problem of the given type.
    pub fn acme(kind: ProblemType, detail: impl Into<String>) -> CaError {
        CaError::Acme {
            kind,
            detail: detail.into(),
        }
    }

    /// `malformed`: the request does not parse or breaks a protocol rule.
    pub fn malformed(detail: impl Into<String>) -> CaError {
        CaError::acme(ProblemType::Malformed, detail)
    }

    /// Seconds the client must wait before retrying, when the error says so.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            CaError::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// `unauthorized`: the requester may not do this.
    pub fn unauthorized(detail: impl Into<String>) -> CaError {
        CaError::acme(ProblemType::Unauthorized, detail)
    }
}

impl From<StoreError> for CaError {
    fn from(e: StoreError) -> CaError {
        CaError::Internal(e.to_string())
    }
}
