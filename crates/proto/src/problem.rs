//! ACME problem documents ([RFC 8555 §6.7], [RFC 7807]).
//!
//! [RFC 8555 §6.7]: https://www.rfc-editor.org/rfc/rfc8555#section-6.7
//! [RFC 7807]: https://www.rfc-editor.org/rfc/rfc7807

use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::identifier::Identifier;

/// The media type of a problem document ([RFC 7807 §3]).
///
/// [RFC 7807 §3]: https://www.rfc-editor.org/rfc/rfc7807#section-3
pub const CONTENT_TYPE: &str = "application/problem+json";

/// The namespace of every ACME error type ([RFC 8555 §6.7]).
///
/// [RFC 8555 §6.7]: https://www.rfc-editor.org/rfc/rfc8555#section-6.7
pub const URN_PREFIX: &str = "urn:ietf:params:acme:error:";

/// Declares [`ProblemType`] from one table so names, URNs and statuses can
/// never drift apart.
macro_rules! problem_types {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal, $status:literal; )*) => {
        /// The ACME error types of RFC 8555 §6.7, in RFC order.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ProblemType {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl ProblemType {
            /// Every problem type, in RFC 8555 §6.7 order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The short name, e.g. `badNonce`.
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $name,)* }
            }

            /// The full type URN, e.g. `urn:ietf:params:acme:error:badNonce`.
            pub fn urn(self) -> &'static str {
                match self {
                    $(Self::$variant => concat!("urn:ietf:params:acme:error:", $name),)*
                }
            }

            /// The HTTP status a server sends with this type unless the
            /// situation calls for another (Boulder's choices, see
            /// `probs/probs.go`; e.g. `malformed` is also sent as 404/405).
            pub fn default_status(self) -> u16 {
                match self { $(Self::$variant => $status,)* }
            }
        }
    };
}

problem_types! {
    /// The request specified an account that does not exist.
    AccountDoesNotExist = "accountDoesNotExist", 400;
    /// The request specified a certificate to be revoked that has already been revoked.
    AlreadyRevoked = "alreadyRevoked", 400;
    /// The CSR is unacceptable (e.g., due to a short key).
    BadCsr = "badCSR", 400;
    /// The client sent an unacceptable anti-replay nonce.
    BadNonce = "badNonce", 400;
    /// The JWS was signed by a public key the server does not support.
    BadPublicKey = "badPublicKey", 400;
    /// The revocation reason provided is not allowed by the server.
    BadRevocationReason = "badRevocationReason", 400;
    /// The JWS was signed with an algorithm the server does not support.
    BadSignatureAlgorithm = "badSignatureAlgorithm", 400;
    /// Certification Authority Authorization (CAA) records forbid the CA from issuing.
    Caa = "caa", 403;
    /// Specific error conditions are indicated in the "subproblems" array.
    Compound = "compound", 400;
    /// The server could not connect to validation target.
    Connection = "connection", 400;
    /// There was a problem with a DNS query during identifier validation.
    Dns = "dns", 400;
    /// The request must include a value for the "externalAccountBinding" field.
    ExternalAccountRequired = "externalAccountRequired", 403;
    /// Response received didn't match the challenge's requirements.
    IncorrectResponse = "incorrectResponse", 400;
    /// A contact URL for an account was invalid.
    InvalidContact = "invalidContact", 400;
    /// The request message was malformed.
    Malformed = "malformed", 400;
    /// The request attempted to finalize an order that is not ready to be finalized.
    OrderNotReady = "orderNotReady", 403;
    /// The request exceeds a rate limit.
    RateLimited = "rateLimited", 429;
    /// The server will not issue certificates for the identifier.
    RejectedIdentifier = "rejectedIdentifier", 400;
    /// The server experienced an internal error.
    ServerInternal = "serverInternal", 500;
    /// The server received a TLS error during validation.
    Tls = "tls", 400;
    /// The client lacks sufficient authorization.
    Unauthorized = "unauthorized", 403;
    /// A contact URL for an account used an unsupported protocol scheme.
    UnsupportedContact = "unsupportedContact", 400;
    /// An identifier is of an unsupported type.
    UnsupportedIdentifier = "unsupportedIdentifier", 400;
    /// Visit the "instance" URL and take actions specified there (RFC 8555 §7.3.3).
    UserActionRequired = "userActionRequired", 403;
}

impl ProblemType {
    /// Looks up a full type URN; `None` for anything outside RFC 8555 §6.7.
    pub fn from_urn(urn: &str) -> Option<Self> {
        let name = urn.strip_prefix(URN_PREFIX)?;
        Self::ALL.iter().copied().find(|t| t.name() == name)
    }
}

impl fmt::Display for ProblemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.urn())
    }
}

impl Serialize for ProblemType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.urn())
    }
}

impl<'de> Deserialize<'de> for ProblemType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let urn = String::deserialize(deserializer)?;
        Self::from_urn(&urn)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown ACME problem type {urn:?}")))
    }
}

/// An RFC 7807 problem document as ACME uses it ([RFC 8555 §6.7]).
///
/// [RFC 8555 §6.7]: https://www.rfc-editor.org/rfc/rfc8555#section-6.7
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The error type, serialized as its URN in the `type` member.
    #[serde(rename = "type")]
    pub problem_type: ProblemType,
    /// Human-readable explanation; never internal detail.
    #[serde(default)]
    pub detail: String,
    /// The HTTP status code, repeated in the body as RFC 7807 §3.1 suggests.
    pub status: u16,
    /// Per-identifier problems ([RFC 8555 §6.7.1]); omitted when empty.
    ///
    /// [RFC 8555 §6.7.1]: https://www.rfc-editor.org/rfc/rfc8555#section-6.7.1
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subproblems: Vec<Subproblem>,
}

impl Problem {
    /// A problem with the type's default status and no subproblems.
    pub fn new(problem_type: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            problem_type,
            detail: detail.into(),
            status: problem_type.default_status(),
            subproblems: Vec::new(),
        }
    }

    /// Replaces the status, e.g. 404 or 405 for `malformed`.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Appends per-identifier subproblems.
    pub fn with_subproblems(mut self, subproblems: impl IntoIterator<Item = Subproblem>) -> Self {
        self.subproblems.extend(subproblems);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} :: {}", self.problem_type.urn(), self.detail)
    }
}

impl std::error::Error for Problem {}

/// One entry of a problem's `subproblems` array ([RFC 8555 §6.7.1]).
///
/// [RFC 8555 §6.7.1]: https://www.rfc-editor.org/rfc/rfc8555#section-6.7.1
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subproblem {
    /// The error type for this identifier.
    #[serde(rename = "type")]
    pub problem_type: ProblemType,
    /// Human-readable explanation for this identifier.
    #[serde(default)]
    pub detail: String,
    /// The identifier this subproblem is about; RFC 8555 §6.7.1 says
    /// subproblems "MAY contain" it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc_order_and_count() {
        let names: Vec<_> = ProblemType::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(
            names,
            [
                "accountDoesNotExist",
                "alreadyRevoked",
                "badCSR",
                "badNonce",
                "badPublicKey",
                "badRevocationReason",
                "badSignatureAlgorithm",
                "caa",
                "compound",
                "connection",
                "dns",
                "externalAccountRequired",
                "incorrectResponse",
                "invalidContact",
                "malformed",
                "orderNotReady",
                "rateLimited",
                "rejectedIdentifier",
                "serverInternal",
                "tls",
                "unauthorized",
                "unsupportedContact",
                "unsupportedIdentifier",
                "userActionRequired",
            ]
        );
    }

    #[test]
    fn urns_round_trip() {
        for &t in ProblemType::ALL {
            assert_eq!(t.urn(), format!("{URN_PREFIX}{}", t.name()));
            assert_eq!(ProblemType::from_urn(t.urn()), Some(t));
        }
        assert_eq!(
            ProblemType::BadNonce.urn(),
            "urn:ietf:params:acme:error:badNonce"
        );
        assert_eq!(ProblemType::from_urn("urn:acme:error:badNonce"), None);
        assert_eq!(
            ProblemType::from_urn("urn:ietf:params:acme:error:nope"),
            None
        );
    }

    #[test]
    fn boulder_statuses() {
        assert_eq!(ProblemType::BadNonce.default_status(), 400);
        assert_eq!(ProblemType::Malformed.default_status(), 400);
        assert_eq!(ProblemType::AccountDoesNotExist.default_status(), 400);
        assert_eq!(ProblemType::Unauthorized.default_status(), 403);
        assert_eq!(ProblemType::OrderNotReady.default_status(), 403);
        assert_eq!(ProblemType::Caa.default_status(), 403);
        assert_eq!(ProblemType::RateLimited.default_status(), 429);
        assert_eq!(ProblemType::ServerInternal.default_status(), 500);
    }

    #[test]
    fn json_shape() {
        let p = Problem::new(ProblemType::BadNonce, "stale nonce");
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({
                "type": "urn:ietf:params:acme:error:badNonce",
                "detail": "stale nonce",
                "status": 400,
            })
        );

        // RFC 8555 §6.7.1 example, shape only.
        let p = Problem::new(
            ProblemType::Malformed,
            "Some of the identifiers requested were rejected",
        )
        .with_subproblems([
            Subproblem {
                problem_type: ProblemType::Malformed,
                detail: "Invalid underscore in DNS name \"_example.org\"".into(),
                identifier: Some(Identifier::dns("_example.org")),
            },
            Subproblem {
                problem_type: ProblemType::RejectedIdentifier,
                detail: "This CA will not issue for \"example.net\"".into(),
                identifier: Some(Identifier::dns("example.net")),
            },
        ]);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v["subproblems"][0]["identifier"],
            json!({"type": "dns", "value": "_example.org"})
        );
        assert_eq!(
            v["subproblems"][1]["type"],
            json!("urn:ietf:params:acme:error:rejectedIdentifier")
        );
        assert_eq!(serde_json::from_value::<Problem>(v).unwrap(), p);
        assert_eq!(p.with_status(404).status, 404);
    }
}
