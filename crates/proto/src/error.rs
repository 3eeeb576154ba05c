//! The one error type of `certkeeper-proto`.

use crate::problem::ProblemType;

/// Everything that can go wrong while parsing, verifying or signing ACME
/// messages; each variant knows which ACME problem it becomes on the wire.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The peer sent bytes that are not well-formed: bad base64url, JSON, DER,
    /// or a required member that is missing or has the wrong type.
    #[error("malformed: {0}")]
    Malformed(String),

    /// The JWS names an algorithm this crate does not accept, or one that
    /// does not fit the key ([RFC 8555 §6.2]).
    ///
    /// [RFC 8555 §6.2]: https://www.rfc-editor.org/rfc/rfc8555#section-6.2
    #[error("bad signature algorithm: {0}")]
    BadSignatureAlgorithm(String),

    /// The public key is of an unsupported type or is invalid (wrong
    /// coordinate length, point not on the curve, private material present).
    #[error("bad public key: {0}")]
    BadPublicKey(String),

    /// The signature did not verify under the given key and algorithm.
    #[error("JWS verification error")]
    BadSignature,

    /// A local private key could not be loaded; this is never the peer's fault.
    #[error("bad private key: {0}")]
    BadPrivateKey(String),

    /// A local cryptographic operation (signing, key generation) failed.
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
}

impl ProtoError {
    /// The ACME problem type this error becomes when a server reports it.
    ///
    /// `BadSignature` maps to `malformed`, as Boulder does ("JWS verification
    /// error"); RFC 8555 has no dedicated type for a failed signature.
    /// Local failures map to `serverInternal`.
    pub fn problem_type(&self) -> ProblemType {
        match self {
            Self::Malformed(_) => ProblemType::Malformed,
            Self::BadSignatureAlgorithm(_) => ProblemType::BadSignatureAlgorithm,
            Self::BadPublicKey(_) => ProblemType::BadPublicKey,
            Self::BadSignature => ProblemType::Malformed,
            Self::BadPrivateKey(_) | Self::Crypto(_) => ProblemType::ServerInternal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_problem_types() {
        let cases = [
            (ProtoError::Malformed("x".into()), ProblemType::Malformed),
            (
                ProtoError::BadSignatureAlgorithm("x".into()),
                ProblemType::BadSignatureAlgorithm,
            ),
            (
                ProtoError::BadPublicKey("x".into()),
                ProblemType::BadPublicKey,
            ),
            (ProtoError::BadSignature, ProblemType::Malformed),
            (
                ProtoError::BadPrivateKey("x".into()),
                ProblemType::ServerInternal,
            ),
            (ProtoError::Crypto("x"), ProblemType::ServerInternal),
        ];
        for (err, ty) in cases {
            assert_eq!(err.problem_type(), ty, "{err}");
        }
        assert_eq!(
            ProtoError::BadSignature.to_string(),
            "JWS verification error"
        );
    }
}
