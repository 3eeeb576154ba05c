//! Flattened JSON JWS, the envelope of every ACME POST ([RFC 8555 §6.2]).
//!
//! [`Jws::parse`] turns a request body into typed values and enforces the
//! RFC 8555 restrictions on [RFC 7515]; it does not check the nonce, the
//! URL or the account, which need server state. [`sign`] is the client
//! half, used for key-compromise revocation and by tests.
//!
//! [RFC 8555 §6.2]: https://www.rfc-editor.org/rfc/rfc8555#section-6.2
//! [RFC 7515]: https://www.rfc-editor.org/rfc/rfc7515

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::b64;
use crate::error::ProtoError;
use crate::jwk::{Alg, EcCurve, Jwk, sha256};

/// A parsed flattened JWS whose signature has not been checked yet.
///
/// Call [`Jws::verify`] with the key named by [`Protected::key`] (the
/// embedded JWK, or the account key looked up by `kid`) before trusting
/// [`Jws::payload`].
#[derive(Clone, Debug)]
pub struct Jws {
    /// The decoded protected header.
    pub protected: Protected,
    /// The decoded payload; empty for POST-as-GET ([RFC 8555 §6.3]).
    ///
    /// [RFC 8555 §6.3]: https://www.rfc-editor.org/rfc/rfc8555#section-6.3
    pub payload: Vec<u8>,
    /// `BASE64URL(protected) || '.' || BASE64URL(payload)` exactly as received
    /// ([RFC 7515 §5.2] step 8).
    ///
    /// [RFC 7515 §5.2]: https://www.rfc-editor.org/rfc/rfc7515#section-5.2
    signing_input: Vec<u8>,
    /// The decoded signature bytes.
    signature: Vec<u8>,
}

/// The protected header members ACME defines ([RFC 8555 §6.2]).
///
/// `nonce` is optional here because the inner JWS of a key change
/// ([RFC 8555 §7.3.5]) has none; the CA requires it on outer requests.
///
/// [RFC 8555 §6.2]: https://www.rfc-editor.org/rfc/rfc8555#section-6.2
/// [RFC 8555 §7.3.5]: https://www.rfc-editor.org/rfc/rfc8555#section-7.3.5
#[derive(Clone, Debug, PartialEq)]
pub struct Protected {
    /// The signature algorithm, already restricted to the accepted set.
    pub alg: Alg,
    /// The anti-replay nonce ([RFC 8555 §6.5]), not yet checked.
    ///
    /// [RFC 8555 §6.5]: https://www.rfc-editor.org/rfc/rfc8555#section-6.5
    pub nonce: Option<String>,
    /// The URL the client meant to POST to ([RFC 8555 §6.4]), not yet checked.
    ///
    /// [RFC 8555 §6.4]: https://www.rfc-editor.org/rfc/rfc8555#section-6.4
    pub url: String,
    /// Which key signed the request.
    pub key: KeyRef,
    /// The whole decoded header, for checks on members not modelled here.
    pub raw: Value,
}

/// How the protected header names the signing key: exactly one of `jwk`
/// and `kid` ([RFC 8555 §6.2]).
///
/// [RFC 8555 §6.2]: https://www.rfc-editor.org/rfc/rfc8555#section-6.2
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRef {
    /// The key itself, for newAccount and certificate-key revocation.
    Jwk(Jwk),
    /// The account URL, for every request from an existing account.
    Kid(String),
}

impl KeyRef {
    /// The embedded key, if the header carried `jwk`.
    pub fn jwk(&self) -> Option<&Jwk> {
        match self {
            Self::Jwk(jwk) => Some(jwk),
            Self::Kid(_) => None,
        }
    }

    /// The account URL, if the header carried `kid`.
    pub fn kid(&self) -> Option<&str> {
        match self {
            Self::Jwk(_) => None,
            Self::Kid(kid) => Some(kid),
        }
    }
}

impl Jws {
    /// Parses a flattened JSON JWS request body, or the inner JWS of a key
    /// change, enforcing the RFC 8555 §6.2 restrictions.
    pub fn parse(body: &[u8]) -> Result<Self, ProtoError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ProtoError::Malformed(format!("JWS is not valid JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(ProtoError::Malformed("JWS must be a JSON object".into()));
        };
        // RFC 8555 §6.2: "The JWS MUST NOT have multiple signatures", so the
        // general serialization (RFC 7515 §7.2.1) is refused outright.
        if obj.contains_key("signatures") {
            return Err(ProtoError::Malformed(
                "JWS must use the flattened JSON serialization".into(),
            ));
        }
        // RFC 8555 §6.2: "The JWS Unprotected Header [RFC7515] MUST NOT be used."
        if obj.contains_key("header") {
            return Err(ProtoError::Malformed(
                "JWS unprotected header is not allowed".into(),
            ));
        }
        // RFC 7515 §7.2: any other unknown members are ignored.
        let protected_b64 = jws_member(&obj, "protected")?;
        // RFC 8555 §6.2: "The JWS Payload MUST NOT be detached."
        let payload_b64 = jws_member(&obj, "payload")?;
        let signature_b64 = jws_member(&obj, "signature")?;

        let protected = Protected::parse(protected_b64)?;
        let payload = b64::decode(payload_b64)
            .map_err(|_| ProtoError::Malformed("JWS payload is not base64url".into()))?;
        let signature = b64::decode(signature_b64)
            .map_err(|_| ProtoError::Malformed("JWS signature is not base64url".into()))?;

        let mut signing_input = Vec::with_capacity(protected_b64.len() + 1 + payload_b64.len());
        signing_input.extend_from_slice(protected_b64.as_bytes());
        signing_input.push(b'.');
        signing_input.extend_from_slice(payload_b64.as_bytes());

        Ok(Self {
            protected,
            payload,
            signing_input,
            signature,
        })
    }

    /// Verifies the signature with `key`, which must fit the header's `alg`.
    pub fn verify(&self, key: &Jwk) -> Result<(), ProtoError> {
        key.verify(self.protected.alg, &self.signing_input, &self.signature)
    }

    /// Deserializes the payload as JSON into a request type.
    ///
    /// A POST-as-GET (empty payload) is `Malformed` here: callers that expect
    /// a resource body must not accept one.
    pub fn payload_json<T: DeserializeOwned>(&self) -> Result<T, ProtoError> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| ProtoError::Malformed(format!("invalid JWS payload: {e}")))
    }

    /// Whether this is a POST-as-GET request: payload `""` ([RFC 8555 §6.3]).
    ///
    /// [RFC 8555 §6.3]: https://www.rfc-editor.org/rfc/rfc8555#section-6.3
    pub fn is_post_as_get(&self) -> bool {
        self.payload.is_empty()
    }

    /// The exact bytes the signature covers.
    pub fn signing_input(&self) -> &[u8] {
        &self.signing_input
    }

    /// The decoded signature.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}

impl Protected {
    /// Decodes and checks a base64url protected header.
    fn parse(encoded: &str) -> Result<Self, ProtoError> {
        let bytes = b64::decode(encoded)
            .map_err(|_| ProtoError::Malformed("JWS protected header is not base64url".into()))?;
        let raw: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ProtoError::Malformed(format!("JWS protected header is not valid JSON: {e}"))
        })?;
        let Value::Object(header) = &raw else {
            return Err(ProtoError::Malformed(
                "JWS protected header must be a JSON object".into(),
            ));
        };

        // RFC 7515 §4.1.11: a recipient that does not understand a "crit"
        // extension MUST reject the JWS; we understand none.
        if header.contains_key("crit") {
            return Err(ProtoError::Malformed(
                "JWS critical header extensions are not supported".into(),
            ));
        }
        // RFC 8555 §6.2: "The JWS Unencoded Payload Option [RFC7797] MUST NOT
        // be used."
        if header.contains_key("b64") {
            return Err(ProtoError::Malformed(
                "JWS unencoded payload option is not allowed".into(),
            ));
        }

        // RFC 8555 §6.2: "alg" MUST NOT be "none" or a MAC algorithm; an
        // unsupported value is badSignatureAlgorithm (RFC 8555 §6.7).
        let alg = match header.get("alg") {
            Some(Value::String(name)) => Alg::from_name(name).ok_or_else(|| {
                ProtoError::BadSignatureAlgorithm(format!(
                    "unsupported JWS algorithm {name:?}; accepted: ES256, ES384, RS256, EdDSA"
                ))
            })?,
            Some(_) => return Err(header_type_error("alg")),
            None => return Err(header_missing("alg")),
        };

        // RFC 8555 §6.2: "The 'jwk' and 'kid' fields are mutually exclusive.
        // Servers MUST reject requests that contain both."
        let key = match (header.get("jwk"), header.get("kid")) {
            (Some(_), Some(_)) => {
                return Err(ProtoError::Malformed(
                    "JWS protected header must not contain both jwk and kid".into(),
                ));
            }
            (None, None) => {
                return Err(ProtoError::Malformed(
                    "JWS protected header must contain jwk or kid".into(),
                ));
            }
            (Some(jwk), None) => {
                let jwk = Jwk::from_json(jwk)?;
                if jwk.alg() != alg {
                    return Err(ProtoError::BadSignatureAlgorithm(format!(
                        "algorithm {alg} does not match the embedded JWK (expected {})",
                        jwk.alg()
                    )));
                }
                KeyRef::Jwk(jwk)
            }
            (None, Some(Value::String(kid))) => KeyRef::Kid(kid.clone()),
            (None, Some(_)) => return Err(header_type_error("kid")),
        };

        let nonce = match header.get("nonce") {
            Some(Value::String(nonce)) => Some(nonce.clone()),
            Some(_) => return Err(header_type_error("nonce")),
            None => None,
        };
        let url = match header.get("url") {
            Some(Value::String(url)) => url.clone(),
            Some(_) => return Err(header_type_error("url")),
            None => return Err(header_missing("url")),
        };

        Ok(Self {
            alg,
            nonce,
            url,
            key,
            raw,
        })
    }
}

fn jws_member<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, ProtoError> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ProtoError::Malformed(format!(
            "JWS member {name:?} must be a string"
        ))),
        None => Err(ProtoError::Malformed(format!(
            "JWS member {name:?} is missing"
        ))),
    }
}

fn header_type_error(name: &str) -> ProtoError {
    ProtoError::Malformed(format!("JWS header member {name:?} must be a string"))
}

fn header_missing(name: &str) -> ProtoError {
    ProtoError::Malformed(format!("JWS header member {name:?} is missing"))
}

/// A private key that can sign ACME requests: an account key, or a
/// certificate key proving possession for revocation ([RFC 8555 §7.6]).
///
/// The variant must match the key pair's curve; [`SigningKey::from_pkcs8_der`]
/// and the generators guarantee that.
///
/// [RFC 8555 §7.6]: https://www.rfc-editor.org/rfc/rfc8555#section-7.6
#[derive(Debug)]
pub enum SigningKey {
    /// ECDSA P-256, signs ES256.
    P256(EcdsaKeyPair),
    /// ECDSA P-384, signs ES384.
    P384(EcdsaKeyPair),
    /// RSA (2048 to 8192 bits), signs RS256.
    Rsa(RsaKeyPair),
    /// Ed25519, signs EdDSA.
    Ed25519(Ed25519KeyPair),
}

impl SigningKey {
    /// Loads an unencrypted PKCS#8 private key, detecting its type.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, ProtoError> {
        if let Ok(kp) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            return Ok(Self::P256(kp));
        }
        if let Ok(kp) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, der) {
            return Ok(Self::P384(kp));
        }
        if let Ok(kp) = Ed25519KeyPair::from_pkcs8(der) {
            return Ok(Self::Ed25519(kp));
        }
        if let Ok(kp) = RsaKeyPair::from_pkcs8(der) {
            return Ok(Self::Rsa(kp));
        }
        Err(ProtoError::BadPrivateKey(
            "not a PKCS#8 P-256, P-384, Ed25519 or RSA (2048-8192 bit) key".into(),
        ))
    }

    /// Generates a fresh P-256 key, the default ACME account key type.
    pub fn generate_p256() -> Result<Self, ProtoError> {
        EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .map(Self::P256)
            .map_err(|_| ProtoError::Crypto("P-256 key generation failed"))
    }

    /// Serializes the key as unencrypted PKCS#8 v1 DER, for storage.
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>, ProtoError> {
        let der = match self {
            Self::P256(kp) | Self::P384(kp) => kp.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
            Self::Rsa(kp) => {
                AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(kp).map(|d| d.as_ref().to_vec())
            }
            Self::Ed25519(kp) => kp.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
        };
        der.map_err(|_| ProtoError::Crypto("PKCS#8 serialization failed"))
    }

    /// The public half as a JWK, for the `jwk` header and thumbprints.
    pub fn jwk(&self) -> Jwk {
        match self {
            Self::P256(kp) => ec_jwk(EcCurve::P256, kp),
            Self::P384(kp) => ec_jwk(EcCurve::P384, kp),
            Self::Rsa(kp) => {
                let public = kp.public_key();
                Jwk::Rsa {
                    n: public.modulus().big_endian_without_leading_zero().to_vec(),
                    e: public.exponent().big_endian_without_leading_zero().to_vec(),
                }
            }
            Self::Ed25519(kp) => Jwk::Okp {
                x: kp.public_key().as_ref().to_vec(),
            },
        }
    }

    /// The JWS algorithm this key signs with.
    pub fn alg(&self) -> Alg {
        match self {
            Self::P256(_) => Alg::Es256,
            Self::P384(_) => Alg::Es384,
            Self::Rsa(_) => Alg::Rs256,
            Self::Ed25519(_) => Alg::EdDsa,
        }
    }

    /// Signs `message` in the JWS encoding for [`SigningKey::alg`].
    fn sign_raw(&self, message: &[u8]) -> Result<Vec<u8>, ProtoError> {
        let rng = SystemRandom::new();
        match self {
            // The *_FIXED_SIGNING algorithms already produce RFC 7518 §3.4
            // fixed-length R || S.
            Self::P256(kp) | Self::P384(kp) => kp
                .sign(&rng, message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| ProtoError::Crypto("ECDSA signing failed")),
            Self::Rsa(kp) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| ProtoError::Crypto("RSA signing failed"))?;
                Ok(sig)
            }
            Self::Ed25519(kp) => kp
                .try_sign(message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| ProtoError::Crypto("Ed25519 signing failed")),
        }
    }
}

/// Splits an uncompressed SEC 1 point `0x04 || x || y` into a JWK.
fn ec_jwk(crv: EcCurve, kp: &EcdsaKeyPair) -> Jwk {
    let point = kp.public_key().as_ref();
    let xy = point.get(1..).unwrap_or_default();
    let (x, y) = xy.split_at(xy.len() / 2);
    Jwk::Ec {
        crv,
        x: x.to_vec(),
        y: y.to_vec(),
    }
}

/// Produces a flattened JSON JWS ([RFC 8555 §6.2]) over `payload`.
///
/// `header` must be a JSON object with the other protected members (`nonce`,
/// `url`, and `jwk` or `kid`); `alg` is set from the key, replacing any value
/// given. An empty payload encodes as `""`, i.e. POST-as-GET.
///
/// [RFC 8555 §6.2]: https://www.rfc-editor.org/rfc/rfc8555#section-6.2
pub fn sign(key: &SigningKey, header: Value, payload: &[u8]) -> Result<Value, ProtoError> {
    let Value::Object(mut header) = header else {
        return Err(ProtoError::Malformed(
            "JWS protected header must be a JSON object".into(),
        ));
    };
    header.insert("alg".into(), Value::String(key.alg().name().into()));
    let header = serde_json::to_vec(&Value::Object(header))
        .map_err(|_| ProtoError::Malformed("JWS protected header is not serializable".into()))?;
    let protected = b64::encode(&header);
    let payload = b64::encode(payload);
    let signing_input = format!("{protected}.{payload}");
    let signature = key.sign_raw(signing_input.as_bytes())?;
    Ok(json!({
        "protected": protected,
        "payload": payload,
        "signature": b64::encode(&signature),
    }))
}

/// The key authorization for a challenge token ([RFC 8555 §8.1]):
/// `token || '.' || base64url(Thumbprint(accountKey))`.
///
/// [RFC 8555 §8.1]: https://www.rfc-editor.org/rfc/rfc8555#section-8.1
pub fn key_authorization(token: &str, jwk: &Jwk) -> String {
    format!("{token}.{}", jwk.thumbprint())
}

/// The TXT record value for dns-01 ([RFC 8555 §8.4]): base64url of the
/// SHA-256 digest of the key authorization.
///
/// [RFC 8555 §8.4]: https://www.rfc-editor.org/rfc/rfc8555#section-8.4
pub fn dns01_txt_value(key_authorization: &str) -> String {
    b64::encode(&sha256(key_authorization.as_bytes()))
}

/// The acmeIdentifier extension value for tls-alpn-01 ([RFC 8737 §3]): the
/// SHA-256 digest of the key authorization.
///
/// [RFC 8737 §3]: https://www.rfc-editor.org/rfc/rfc8737#section-3
pub fn tlsalpn01_digest(key_authorization: &str) -> [u8; 32] {
    sha256(key_authorization.as_bytes())
}

#[cfg(test)]
mod tests;
