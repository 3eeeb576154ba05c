//! The one place an internal error becomes an RFC 7807 problem document
//! (RFC 8555 §6.7). Internal detail is logged here and never sent.

use certkeeper_proto::ProtoError;
use certkeeper_proto::problem::{Problem, ProblemType};

use crate::CaError;

/// The problem a client sees for an error.
pub fn problem_for(e: &CaError) -> Problem {
    match e {
        CaError::Acme { kind, detail } => Problem::new(*kind, detail.clone()),
        CaError::RateLimited { detail, .. } => {
            Problem::new(ProblemType::RateLimited, detail.clone())
        }
        CaError::NotFound(what) => {
            Problem::new(ProblemType::Malformed, format!("{what} not found")).with_status(404)
        }
        CaError::Conflict { detail, .. } => {
            Problem::new(ProblemType::Malformed, detail.clone()).with_status(409)
        }
        CaError::Internal(detail) => {
            tracing::error!(error = %detail, "internal error");
            Problem::new(
                ProblemType::ServerInternal,
                "the CA hit an internal error; retry later",
            )
        }
    }
}

impl From<ProtoError> for CaError {
    fn from(e: ProtoError) -> CaError {
        CaError::acme(e.problem_type(), e.to_string())
    }
}
