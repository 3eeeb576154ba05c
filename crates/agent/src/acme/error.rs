//! Typed errors for the ACME client: each says which step failed, for which
//! names, and carries the CA's problem document when there is one.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use instant_acme::{AuthorizationStatus, Problem};

use super::solver::SolverError;

/// The step of an ACME flow that failed, so an operator knows where to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Fetching the directory and registering or loading the account.
    Account,
    /// Creating the order (`newOrder`).
    NewOrder,
    /// Fetching an authorization of the order.
    Authorization,
    /// Telling the CA a challenge is ready to be validated.
    ChallengeReady,
    /// Waiting for the order to become `ready`.
    PollReady,
    /// Sending the CSR to the order's `finalize` URL.
    Finalize,
    /// Waiting for the order to become `valid` and downloading the chain.
    PollCertificate,
    /// Loading a persisted order by its URL to resume it.
    LoadOrder,
    /// Fetching ACME renewal information (RFC 9773) for a certificate.
    RenewalInfo,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Account => "account",
            Self::NewOrder => "new order",
            Self::Authorization => "fetch authorization",
            Self::ChallengeReady => "challenge ready",
            Self::PollReady => "wait for order ready",
            Self::Finalize => "finalize",
            Self::PollCertificate => "wait for certificate",
            Self::LoadOrder => "load order",
            Self::RenewalInfo => "renewal info",
        })
    }
}

/// One failed authorization of an invalid order, with the CA's reason.
#[derive(Debug, Clone)]
pub struct FailedAuthorization {
    /// The identifier the authorization was for (`*.` prefix for wildcards).
    pub name: String,
    /// The authorization's final status.
    pub status: AuthorizationStatus,
    /// The error the CA recorded on the failed challenge, if any.
    pub problem: Option<Problem>,
}

impl fmt::Display for FailedAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {:?}", self.name, self.status)?;
        if let Some(problem) = &self.problem {
            write!(f, " ({})", problem_text(problem))?;
        }
        Ok(())
    }
}

/// Errors of the ACME client; each variant names the step and the names.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// The CA root file given to trust the CA's HTTPS endpoint is unusable.
    #[error("cannot use CA root certificates from {path}: {reason}")]
    RootPem {
        /// File that was read.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// A request to the CA failed (transport error or a problem document).
    #[error("ACME {step} failed for [{names}]: {source}")]
    Protocol {
        /// The step that failed.
        step: Step,
        /// Comma-separated names of the order (the directory URL for account steps).
        names: String,
        /// The underlying error; `Api` carries the CA's problem document.
        /// Boxed to keep `Result<_, AcmeError>` small on the happy path.
        #[source]
        source: Box<instant_acme::Error>,
    },
    /// An authorization was neither pending nor valid when we fetched it.
    #[error("authorization for {0} cannot be completed; create a new order")]
    Authorization(Box<FailedAuthorization>),
    /// The CA does not offer the challenge type our solver handles.
    #[error("the CA offers no {challenge} challenge for {name}; offered: {offered}")]
    ChallengeUnavailable {
        /// The identifier.
        name: String,
        /// The challenge type the solver wanted.
        challenge: String,
        /// The challenge types the CA offered.
        offered: String,
    },
    /// The solver could not publish the challenge response.
    #[error("could not present the {challenge} response for {name}: {source}")]
    Solver {
        /// The identifier.
        name: String,
        /// The challenge type.
        challenge: String,
        /// What the solver reported.
        #[source]
        source: SolverError,
    },
    /// Validation failed: the order became invalid.
    #[error("order {order_url} for [{names}] is invalid: {}", describe_invalid(.problem, .failed))]
    OrderInvalid {
        /// Names of the order.
        names: String,
        /// URL of the order, for the CA's logs.
        order_url: String,
        /// The order's own error, if the CA set one.
        problem: Option<Box<Problem>>,
        /// The authorizations that failed and why.
        failed: Vec<FailedAuthorization>,
    },
    /// The CA did not finish a step within the poll policy's timeout.
    #[error(
        "timed out after {waited:?} at step '{step}' for [{names}] (order {order_url}); the CA may still complete it"
    )]
    Timeout {
        /// The step being waited on.
        step: Step,
        /// Names of the order.
        names: String,
        /// URL of the order, which can be resumed later.
        order_url: String,
        /// How long we waited.
        waited: Duration,
    },
    /// Generating the private key or the CSR failed, or the given key is unusable.
    #[error("key or CSR for [{names}]: {reason}")]
    Csr {
        /// Names of the order.
        names: String,
        /// What went wrong.
        reason: String,
    },
    /// The CA put an authorization in the order for an identifier that was
    /// never requested; nothing was presented for any of the order's names.
    #[error(
        "order {order_url} for [{names}] holds an authorization for {identifier}, which was never \
         requested; nothing was presented: the order is discarded, and the CA should be told"
    )]
    UnrequestedIdentifier {
        /// The identifier nobody asked for (`*.` prefix for wildcards).
        identifier: String,
        /// The names that were requested.
        names: String,
        /// URL of the order.
        order_url: String,
    },
    /// A persisted order is for other names than the caller asked to complete.
    #[error(
        "order {order_url} is for [{order_names}], not [{names}]; discard it and create a new order"
    )]
    OrderMismatch {
        /// URL of the order.
        order_url: String,
        /// The identifiers the CA has on the order.
        order_names: String,
        /// The names the caller wanted.
        names: String,
    },
    /// The certificate carries no usable ARI identifier (RFC 9773 §4.1).
    #[error(
        "cannot identify the certificate for ACME renewal information: {reason}; renew it on its own schedule instead"
    )]
    CertificateId {
        /// Why (typically: no Authority Key Identifier extension).
        reason: String,
    },
    /// The CA's renewal information is unusable (RFC 9773 §4.2).
    #[error(
        "renewal information for certificate {cert_id} is unusable: {reason}; renew on the certificate's own schedule"
    )]
    BadRenewalInfo {
        /// The ARI certificate identifier (`AKI.serial`).
        cert_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA returned a chain we must not install (bad PEM, wrong key, missing names).
    #[error("the CA returned an unusable certificate for [{names}] (order {order_url}): {reason}")]
    BadCertificate {
        /// Names of the order.
        names: String,
        /// URL of the order.
        order_url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA's leaf is not valid at the caller's `now`: already expired, or
    /// valid only from more than [`CLOCK_SKEW_ALLOWANCE`](super::CLOCK_SKEW_ALLOWANCE)
    /// ahead. It is never returned, so it can never replace a working one.
    #[error(
        "the CA returned a certificate for [{names}] (order {order_url}) that {}",
        describe_validity(*.not_before, *.not_after, *.now)
    )]
    CertificateNotCurrent {
        /// Names of the order.
        names: String,
        /// URL of the order.
        order_url: String,
        /// The leaf's notBefore, unix seconds.
        not_before: i64,
        /// The leaf's notAfter, unix seconds.
        not_after: i64,
        /// The time it was judged at, unix seconds.
        now: i64,
    },
    /// The CA refused for now (429 or 503) and said when to come back.
    #[error("{source}; {}", describe_retry_after(*.retry_after, .capped_from.as_deref()))]
    RetryLater {
        /// How long from when the CA answered, at most
        /// [`MAX_RETRY_AFTER`](super::MAX_RETRY_AFTER).
        retry_after: Duration,
        /// The CA's `Retry-After` header as sent, when it asked for longer
        /// than the cap and was capped.
        capped_from: Option<String>,
        /// The refusal itself.
        #[source]
        source: Box<AcmeError>,
    },
}

impl AcmeError {
    /// The CA's `Retry-After` on a 429/503, so the caller can persist it and
    /// send nothing before it passes.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RetryLater { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The CA's problem document, so callers can react to `rateLimited`,
    /// `badNonce` and friends without parsing messages.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::RetryLater { source, .. } => source.problem(),
            Self::Protocol { source, .. } => match source.as_ref() {
                instant_acme::Error::Api(problem) => Some(problem),
                _ => None,
            },
            Self::Authorization(failed) => failed.problem.as_ref(),
            Self::OrderInvalid {
                problem, failed, ..
            } => problem
                .as_deref()
                .or_else(|| failed.iter().find_map(|f| f.problem.as_ref())),
            _ => None,
        }
    }

    /// The message plus every underlying cause not already in it, for logs
    /// and reports: transport errors hide the useful part ("connection
    /// refused", "certificate unknown") a few levels down.
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(err) = cause {
            let text = err.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            cause = err.source();
        }
        out
    }

    /// The step that failed, for metrics and ledger records.
    pub fn step(&self) -> Option<Step> {
        match self {
            Self::RetryLater { source, .. } => source.step(),
            Self::Protocol { step, .. } | Self::Timeout { step, .. } => Some(*step),
            Self::Authorization(_)
            | Self::ChallengeUnavailable { .. }
            | Self::Solver { .. }
            | Self::UnrequestedIdentifier { .. } => Some(Step::Authorization),
            Self::OrderInvalid { .. } => Some(Step::PollReady),
            Self::Csr { .. } => Some(Step::Finalize),
            Self::BadCertificate { .. } | Self::CertificateNotCurrent { .. } => {
                Some(Step::PollCertificate)
            }
            Self::RootPem { .. } => Some(Step::Account),
            Self::OrderMismatch { .. } => Some(Step::LoadOrder),
            Self::BadRenewalInfo { .. } => Some(Step::RenewalInfo),
            Self::CertificateId { .. } => None,
        }
    }

    /// Whether the order this error came from can never be completed, so a
    /// resuming caller must discard the persisted order URL (and key, unless
    /// reused on purpose) and create a new order, through the rate-limit
    /// guard like any other. Timeouts, transport and solver errors are not
    /// terminal: the same order can be resumed later.
    pub fn needs_new_order(&self) -> bool {
        match self {
            Self::RetryLater { source, .. } => source.needs_new_order(),
            Self::OrderInvalid { .. }
            | Self::Authorization(_)
            | Self::OrderMismatch { .. }
            | Self::UnrequestedIdentifier { .. }
            | Self::BadCertificate { .. } => true,
            // An expired certificate stays expired; one valid too far
            // ahead becomes valid as time passes (or the clock is fixed),
            // and resuming the same order costs nothing against the limits.
            Self::CertificateNotCurrent { not_after, now, .. } => not_after <= now,
            // The CA does not know the order (expired and purged, or
            // another account's): 404 or 403 on loading it.
            Self::Protocol {
                step: Step::LoadOrder,
                source,
                ..
            } => matches!(
                source.as_ref(),
                instant_acme::Error::Api(problem) if matches!(problem.status, Some(403 | 404))
            ),
            // A CA that validates inline (ours does) answers the challenge
            // POST with the failed validation: the authorization is invalid,
            // and with it the order (RFC 8555 §7.1.6).
            Self::Protocol {
                step: Step::ChallengeReady,
                source,
                ..
            } => matches!(
                source.as_ref(),
                instant_acme::Error::Api(problem) if problem.r#type.as_deref().is_some_and(is_validation_problem)
            ),
            _ => false,
        }
    }
}

/// RFC 8555 §6.7 problem types a failed validation reports.
fn is_validation_problem(urn: &str) -> bool {
    matches!(
        urn.trim_start_matches("urn:ietf:params:acme:error:"),
        "caa" | "connection" | "dns" | "incorrectResponse" | "tls" | "unauthorized"
    )
}

/// Renders a problem document as "type: detail" without instant-acme's
/// "API error" prefix, which reads oddly inside our own messages.
pub(crate) fn problem_text(problem: &Problem) -> String {
    let mut out = String::new();
    if let Some(kind) = &problem.r#type {
        out.push_str(kind.trim_start_matches("urn:ietf:params:acme:error:"));
    }
    if let Some(detail) = &problem.detail {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(detail);
    }
    for sub in &problem.subproblems {
        out.push_str("; ");
        out.push_str(&sub.to_string());
    }
    if out.is_empty() {
        out.push_str("no details");
    }
    out
}

/// A unix time as RFC 3339, or the bare number if it is out of range.
fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("unix time {unix}"))
}

fn describe_validity(not_before: i64, not_after: i64, now: i64) -> String {
    if not_after <= now {
        format!(
            "expired at {} (now is {}); it was not installed and the certificate in service \
             stays: report this to the CA, and check this host's clock",
            rfc3339(not_after),
            rfc3339(now)
        )
    } else {
        format!(
            "is not valid before {}, more than {} minutes after now ({}); it was not installed: \
             check this host's clock (NTP); the order is kept and its certificate fetched again \
             on a later run",
            rfc3339(not_before),
            super::CLOCK_SKEW_ALLOWANCE / 60,
            rfc3339(now)
        )
    }
}

fn describe_retry_after(wait: Duration, capped_from: Option<&str>) -> String {
    match capped_from {
        None => format!("the CA asks not to retry for {}s", wait.as_secs()),
        Some(sent) => format!(
            "the CA sent Retry-After: {sent:?}, capped to {} days (the longest certkeeper \
             obeys, so a bogus value cannot silence renewals); certkeeper asks again after that",
            super::MAX_RETRY_AFTER.as_secs() / 86_400
        ),
    }
}

fn describe_invalid(problem: &Option<Box<Problem>>, failed: &[FailedAuthorization]) -> String {
    let mut parts: Vec<String> = failed.iter().map(ToString::to_string).collect();
    // CAs usually copy the failing challenge's error into the order's; say it once.
    if let Some(problem) = problem {
        let repeated = failed
            .iter()
            .filter_map(|f| f.problem.as_ref())
            .any(|p| p.detail == problem.detail);
        if !repeated {
            parts.insert(0, problem_text(problem));
        }
    }
    if parts.is_empty() {
        "the CA gave no reason".to_owned()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate_limited() -> Problem {
        serde_json::from_str(
            r#"{"type":"urn:ietf:params:acme:error:rateLimited",
                "detail":"too many certificates for this exact set of names","status":429}"#,
        )
        .expect("problem document parses")
    }

    /// RFC 8555 §6.7: callers must see the problem type to obey rateLimited.
    #[test]
    fn protocol_error_exposes_problem_and_step() {
        let err = AcmeError::Protocol {
            step: Step::NewOrder,
            names: "a.example.test".into(),
            source: Box::new(instant_acme::Error::Api(rate_limited())),
        };
        assert_eq!(
            err.problem().and_then(|p| p.r#type.as_deref()),
            Some("urn:ietf:params:acme:error:rateLimited")
        );
        assert_eq!(err.step(), Some(Step::NewOrder));
        let text = err.report();
        assert!(
            text.contains("new order failed for [a.example.test]"),
            "{text}"
        );
        assert!(text.contains("too many certificates"), "{text}");
    }

    #[test]
    fn report_adds_hidden_causes_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let err = AcmeError::Protocol {
            step: Step::Account,
            names: "https://ca.test/dir".into(),
            source: Box::new(instant_acme::Error::Other(Box::new(Wrapper(io)))),
        };
        let text = err.report();
        assert_eq!(text.matches("connection refused").count(), 1, "{text}");
        assert!(text.contains("client error"), "{text}");
    }

    /// Mimics hyper's errors: a vague message whose cause holds the detail.
    #[derive(Debug)]
    struct Wrapper(std::io::Error);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("client error")
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn invalid_order_names_the_failed_identifier_once() {
        let failed = FailedAuthorization {
            name: "b.example.test".into(),
            status: AuthorizationStatus::Invalid,
            problem: Some(rate_limited()),
        };
        let err = AcmeError::OrderInvalid {
            names: "b.example.test".into(),
            order_url: "https://ca.test/order/1".into(),
            problem: Some(Box::new(rate_limited())),
            failed: vec![failed],
        };
        let text = err.to_string();
        assert!(text.contains("b.example.test is Invalid"), "{text}");
        assert_eq!(text.matches("too many certificates").count(), 1, "{text}");
    }
}
