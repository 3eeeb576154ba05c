//! JSON Web Keys ([RFC 7517]) for the algorithms ACME accounts use.
//!
//! A [`Jwk`] is always a *public* key. It converts to and from the JWK JSON
//! form ([RFC 7518 §6], [RFC 8037 §2]) and the X.509 SubjectPublicKeyInfo
//! DER form, so the CA can compare a JWS key with a certificate or CSR key
//! byte-for-byte. It also computes the [RFC 7638] thumbprint used in key
//! authorizations, and verifies JWS signatures with aws-lc-rs.
//!
//! [RFC 7517]: https://www.rfc-editor.org/rfc/rfc7517
//! [RFC 7518 §6]: https://www.rfc-editor.org/rfc/rfc7518#section-6
//! [RFC 8037 §2]: https://www.rfc-editor.org/rfc/rfc8037#section-2
//! [RFC 7638]: https://www.rfc-editor.org/rfc/rfc7638

use core::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents, VerificationAlgorithm};
use serde_json::{Map, Value, json};

use crate::b64;
use crate::der::{self, Reader};
use crate::error::ProtoError;

/// The JWS signature algorithms ([RFC 7518 §3.1], [RFC 8037 §3.1]) this
/// crate accepts; everything else is `badSignatureAlgorithm`.
///
/// Each algorithm fits exactly one key type, so [`Jwk::alg`] is total.
///
/// [RFC 7518 §3.1]: https://www.rfc-editor.org/rfc/rfc7518#section-3.1
/// [RFC 8037 §3.1]: https://www.rfc-editor.org/rfc/rfc8037#section-3.1
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    /// ECDSA on P-256 with SHA-256, signature is fixed-length `r || s`.
    Es256,
    /// ECDSA on P-384 with SHA-384, signature is fixed-length `r || s`.
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// EdDSA; this crate supports only the Ed25519 curve.
    EdDsa,
}

impl Alg {
    /// Every accepted algorithm, for directory metadata and tests.
    pub const ALL: [Self; 4] = [Self::Es256, Self::Es384, Self::Rs256, Self::EdDsa];

    /// Looks up an `alg` header value; `None` means `badSignatureAlgorithm`.
    pub fn from_name(name: &str) -> Option<Self> {
        // RFC 7515 §4.1.1: the "alg" value is a case-sensitive string.
        match name {
            "ES256" => Some(Self::Es256),
            "ES384" => Some(Self::Es384),
            "RS256" => Some(Self::Rs256),
            "EdDSA" => Some(Self::EdDsa),
            _ => None,
        }
    }

    /// The `alg` header value, as registered with IANA.
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The NIST curves accepted for `kty: "EC"` keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EcCurve {
    /// NIST P-256 (secp256r1), used with ES256.
    P256,
    /// NIST P-384 (secp384r1), used with ES384.
    P384,
}

impl EcCurve {
    /// Looks up a JWK `crv` value ([RFC 7518 §6.2.1.1]).
    ///
    /// [RFC 7518 §6.2.1.1]: https://www.rfc-editor.org/rfc/rfc7518#section-6.2.1.1
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "P-256" => Some(Self::P256),
            "P-384" => Some(Self::P384),
            _ => None,
        }
    }

    /// The JWK `crv` value.
    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
        }
    }

    /// Length in bytes of one coordinate, and of `r` and `s` in a signature.
    ///
    /// [RFC 7518 §6.2.1.2]: "The length of this octet string MUST be the full
    /// size of a coordinate for the curve specified in the 'crv' parameter."
    ///
    /// [RFC 7518 §6.2.1.2]: https://www.rfc-editor.org/rfc/rfc7518#section-6.2.1.2
    pub fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }

    /// The one JWS algorithm that uses this curve.
    pub fn alg(self) -> Alg {
        match self {
            Self::P256 => Alg::Es256,
            Self::P384 => Alg::Es384,
        }
    }

    fn oid(self) -> &'static [u8] {
        match self {
            Self::P256 => der::OID_P256,
            Self::P384 => der::OID_P384,
        }
    }

    fn verification_alg(self) -> &'static dyn VerificationAlgorithm {
        // RFC 7518 §3.4: JWS ECDSA signatures are R || S, each the full
        // coordinate length, not ASN.1 DER; hence the FIXED variants.
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            Self::P384 => &signature::ECDSA_P384_SHA384_FIXED,
        }
    }
}

/// Length of an Ed25519 public key ([RFC 8032 §5.1.5]).
///
/// [RFC 8032 §5.1.5]: https://www.rfc-editor.org/rfc/rfc8032#section-5.1.5
const ED25519_KEY_LEN: usize = 32;

/// Smallest RSA modulus, in bits, accepted for signature verification.
///
/// aws-lc-rs `RSA_PKCS1_2048_8192_SHA256` refuses anything outside
/// 2048..=8192 bits; checking first lets us call it a bad key rather than a
/// bad signature.
const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus, in bits, accepted for signature verification.
const RSA_MAX_BITS: usize = 8192;

/// A public key as carried in a JWS `jwk` header or derived from an SPKI.
///
/// Values built by [`Jwk::from_json`], [`Jwk::from_spki_der`] or the
/// validating constructors are canonical: coordinates have full length, RSA
/// integers have no leading zero octets, and EC points are on the curve.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Jwk {
    /// An elliptic-curve key (`kty: "EC"`, [RFC 7518 §6.2]).
    ///
    /// [RFC 7518 §6.2]: https://www.rfc-editor.org/rfc/rfc7518#section-6.2
    Ec {
        /// The curve the point lies on.
        crv: EcCurve,
        /// Big-endian x coordinate, exactly `crv.coordinate_len()` bytes.
        x: Vec<u8>,
        /// Big-endian y coordinate, exactly `crv.coordinate_len()` bytes.
        y: Vec<u8>,
    },
    /// An RSA key (`kty: "RSA"`, [RFC 7518 §6.3]).
    ///
    /// [RFC 7518 §6.3]: https://www.rfc-editor.org/rfc/rfc7518#section-6.3
    Rsa {
        /// Big-endian modulus without leading zero octets.
        n: Vec<u8>,
        /// Big-endian public exponent without leading zero octets.
        e: Vec<u8>,
    },
    /// An Ed25519 key (`kty: "OKP"`, `crv: "Ed25519"`, [RFC 8037 §2]).
    ///
    /// [RFC 8037 §2]: https://www.rfc-editor.org/rfc/rfc8037#section-2
    Okp {
        /// The 32-byte public key.
        x: Vec<u8>,
    },
}

impl Jwk {
    /// Builds an EC key, checking coordinate lengths and that the point is
    /// on the curve.
    pub fn ec(crv: EcCurve, x: Vec<u8>, y: Vec<u8>) -> Result<Self, ProtoError> {
        let len = crv.coordinate_len();
        if x.len() != len || y.len() != len {
            // RFC 7518 §6.2.1.2 and §6.2.1.3: full-size coordinates only.
            return Err(ProtoError::BadPublicKey(format!(
                "{} coordinates must be {len} bytes",
                crv.name()
            )));
        }
        let jwk = Self::Ec { crv, x, y };
        // aws-lc-rs decodes the uncompressed point and rejects points that
        // are not on the curve (an invalid-curve attack defence).
        jwk.parsed_public_key()
            .map_err(|_| ProtoError::BadPublicKey(format!("point is not on {}", crv.name())))?;
        Ok(jwk)
    }

    /// Builds an RSA key, stripping leading zero octets from `n` and `e`.
    ///
    /// RFC 7518 §6.3.1.1 forbids the leading zero some libraries emit; we
    /// accept it and normalize so thumbprints and SPKIs stay canonical.
    pub fn rsa(n: &[u8], e: &[u8]) -> Result<Self, ProtoError> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        if n.is_empty() || e.is_empty() {
            return Err(ProtoError::BadPublicKey(
                "RSA modulus and exponent must be non-zero".into(),
            ));
        }
        Ok(Self::Rsa {
            n: n.to_vec(),
            e: e.to_vec(),
        })
    }

    /// Builds an Ed25519 key, checking its length and encoding.
    pub fn ed25519(x: Vec<u8>) -> Result<Self, ProtoError> {
        if x.len() != ED25519_KEY_LEN {
            return Err(ProtoError::BadPublicKey(format!(
                "Ed25519 keys must be {ED25519_KEY_LEN} bytes"
            )));
        }
        let jwk = Self::Okp { x };
        jwk.parsed_public_key()
            .map_err(|_| ProtoError::BadPublicKey("invalid Ed25519 key".into()))?;
        Ok(jwk)
    }

    /// Parses a JWK JSON object such as a JWS `jwk` header member.
    ///
    /// Members this crate does not use (`kid`, `alg`, `use`, ...) are
    /// ignored, as [RFC 7517 §4] requires. Structural problems are
    /// [`ProtoError::Malformed`]; unsupported or invalid keys, and JWKs that
    /// carry private material, are [`ProtoError::BadPublicKey`].
    ///
    /// [RFC 7517 §4]: https://www.rfc-editor.org/rfc/rfc7517#section-4
    pub fn from_json(value: &Value) -> Result<Self, ProtoError> {
        let Value::Object(obj) = value else {
            return Err(ProtoError::Malformed("JWK must be a JSON object".into()));
        };
        // RFC 7518 §6.2.2.1, §6.3.2.1 and RFC 8037 §2: "d" holds the private
        // key. A client that sends it has leaked its account key.
        if obj.contains_key("d") {
            return Err(ProtoError::BadPublicKey(
                "JWK contains private key material".into(),
            ));
        }
        match str_member(obj, "kty")? {
            "EC" => {
                let name = str_member(obj, "crv")?;
                let crv = EcCurve::from_name(name).ok_or_else(|| {
                    ProtoError::BadPublicKey(format!("unsupported EC curve {name:?}"))
                })?;
                Self::ec(crv, b64_member(obj, "x")?, b64_member(obj, "y")?)
            }
            "RSA" => Self::rsa(&b64_member(obj, "n")?, &b64_member(obj, "e")?),
            "OKP" => match str_member(obj, "crv")? {
                "Ed25519" => Self::ed25519(b64_member(obj, "x")?),
                other => Err(ProtoError::BadPublicKey(format!(
                    "unsupported OKP curve {other:?}"
                ))),
            },
            other => Err(ProtoError::BadPublicKey(format!(
                "unsupported key type {other:?}"
            ))),
        }
    }

    /// Serializes the key as a JWK JSON object with only the required members.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Ec { crv, x, y } => json!({
                "kty": "EC",
                "crv": crv.name(),
                "x": b64::encode(x),
                "y": b64::encode(y),
            }),
            Self::Rsa { n, e } => json!({
                "kty": "RSA",
                "n": b64::encode(n),
                "e": b64::encode(e),
            }),
            Self::Okp { x } => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": b64::encode(x),
            }),
        }
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url: the account key's half of
    /// every key authorization (RFC 8555 §8.1).
    pub fn thumbprint(&self) -> String {
        b64::encode(&sha256(self.thumbprint_input().as_bytes()))
    }

    /// RFC 7638 §3.2: the required members only, in lexicographic order,
    /// with no whitespace. The values are base64url or fixed names, so no
    /// JSON escaping is ever needed.
    fn thumbprint_input(&self) -> String {
        match self {
            // RFC 7638 §3.2: "crv", "kty", "x", "y" for EC keys.
            Self::Ec { crv, x, y } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                crv.name(),
                b64::encode(x),
                b64::encode(y)
            ),
            // RFC 7638 §3.2: "e", "kty", "n" for RSA keys.
            Self::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                b64::encode(e),
                b64::encode(n)
            ),
            // RFC 8037 §2: "crv", "kty", "x" for OKP keys.
            Self::Okp { x } => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                b64::encode(x)
            ),
        }
    }

    /// The DER SubjectPublicKeyInfo ([RFC 5280 §4.1.2.7]), so a JWS key can be
    /// compared with a certificate or CSR key and hashed for blocklists.
    ///
    /// [RFC 5280 §4.1.2.7]: https://www.rfc-editor.org/rfc/rfc5280#section-4.1.2.7
    pub fn spki_der(&self) -> Vec<u8> {
        let (algorithm, key) = match self {
            // RFC 5480 §2: id-ecPublicKey with a namedCurve parameter, and the
            // uncompressed point (SEC 1 §2.3.3) as the key.
            Self::Ec { crv, x, y } => {
                let mut alg = der::tlv(der::OID, der::OID_EC_PUBLIC_KEY);
                der::write_tlv(&mut alg, der::OID, crv.oid());
                (alg, ec_point(x, y))
            }
            // RFC 3279 §2.3.1: rsaEncryption with NULL parameters; the key is
            // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }.
            Self::Rsa { n, e } => {
                let mut alg = der::tlv(der::OID, der::OID_RSA_ENCRYPTION);
                der::write_tlv(&mut alg, der::NULL, &[]);
                let mut ints = der::unsigned_integer(n);
                ints.extend_from_slice(&der::unsigned_integer(e));
                (alg, der::tlv(der::SEQUENCE, &ints))
            }
            // RFC 8410 §3: id-Ed25519 with parameters absent; the key is the
            // raw 32 bytes.
            Self::Okp { x } => (der::tlv(der::OID, der::OID_ED25519), x.clone()),
        };
        let mut spki = der::tlv(der::SEQUENCE, &algorithm);
        spki.extend_from_slice(&der::bit_string(&key));
        der::tlv(der::SEQUENCE, &spki)
    }

    /// SHA-256 of [`Jwk::spki_der`], the key identity used by blocked-key
    /// lists (as Boulder's `blockedKeys` table does).
    pub fn spki_sha256(&self) -> [u8; 32] {
        sha256(&self.spki_der())
    }

    /// Parses a DER SubjectPublicKeyInfo (P-256, P-384, RSA or Ed25519), to
    /// get the JWK of a certificate or CSR key.
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, ProtoError> {
        let mut outer = Reader::new(spki);
        let mut inner = Reader::new(outer.expect(der::SEQUENCE)?);
        outer.finish()?;
        let mut algorithm = Reader::new(inner.expect(der::SEQUENCE)?);
        let key = inner.bit_string()?;
        inner.finish()?;

        let oid = algorithm.expect(der::OID)?;
        if oid == der::OID_EC_PUBLIC_KEY {
            let curve = algorithm.expect(der::OID)?;
            algorithm.finish()?;
            let crv = match curve {
                c if c == der::OID_P256 => EcCurve::P256,
                c if c == der::OID_P384 => EcCurve::P384,
                _ => return Err(ProtoError::BadPublicKey("unsupported EC curve".into())),
            };
            // SEC 1 §2.3.3: only the uncompressed form 0x04 || x || y.
            let len = crv.coordinate_len();
            match key.split_first() {
                Some((0x04, xy)) if xy.len() == 2 * len => {
                    let (x, y) = xy.split_at(len);
                    Self::ec(crv, x.to_vec(), y.to_vec())
                }
                _ => Err(ProtoError::BadPublicKey(
                    "EC key is not an uncompressed point".into(),
                )),
            }
        } else if oid == der::OID_RSA_ENCRYPTION {
            // RFC 3279 §2.3.1: "the parameters field MUST have ASN.1 type NULL".
            if !algorithm.expect(der::NULL)?.is_empty() {
                return Err(ProtoError::Malformed(
                    "invalid DER: NULL with contents".into(),
                ));
            }
            algorithm.finish()?;
            let mut outer = Reader::new(key);
            let mut ints = Reader::new(outer.expect(der::SEQUENCE)?);
            outer.finish()?;
            let n = ints.positive_integer()?;
            let e = ints.positive_integer()?;
            ints.finish()?;
            Self::rsa(n, e)
        } else if oid == der::OID_ED25519 {
            // RFC 8410 §3: "the parameters MUST be absent".
            algorithm.finish()?;
            Self::ed25519(key.to_vec())
        } else {
            Err(ProtoError::BadPublicKey(
                "unsupported public key algorithm".into(),
            ))
        }
    }

    /// The one JWS algorithm this crate accepts with this key.
    pub fn alg(&self) -> Alg {
        match self {
            Self::Ec { crv, .. } => crv.alg(),
            Self::Rsa { .. } => Alg::Rs256,
            Self::Okp { .. } => Alg::EdDsa,
        }
    }

    /// Verifies a JWS signature over `signing_input` with this key.
    ///
    /// `alg` must be the algorithm that fits this key type (ES256 for P-256,
    /// ES384 for P-384, RS256 for RSA, EdDSA for Ed25519), otherwise
    /// [`ProtoError::BadSignatureAlgorithm`]. RSA moduli outside 2048..=8192
    /// bits are [`ProtoError::BadPublicKey`].
    pub fn verify(
        &self,
        alg: Alg,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), ProtoError> {
        let expected = self.alg();
        if alg != expected {
            return Err(ProtoError::BadSignatureAlgorithm(format!(
                "algorithm {alg} does not match {} key (expected {expected})",
                self.describe()
            )));
        }
        if let Self::Rsa { n, .. } = self {
            let bits = bit_len(strip_leading_zeros(n));
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return Err(ProtoError::BadPublicKey(format!(
                    "RSA modulus is {bits} bits, want {RSA_MIN_BITS} to {RSA_MAX_BITS}"
                )));
            }
        }
        let key = self
            .parsed_public_key()
            .map_err(|_| ProtoError::BadPublicKey(format!("invalid {} key", self.describe())))?;
        key.verify_sig(signing_input, signature)
            .map_err(|_| ProtoError::BadSignature)
    }

    /// A short human name for the key type, for error details.
    fn describe(&self) -> &'static str {
        match self {
            Self::Ec { crv, .. } => crv.name(),
            Self::Rsa { .. } => "RSA",
            Self::Okp { .. } => "Ed25519",
        }
    }

    fn parsed_public_key(&self) -> Result<ParsedPublicKey, aws_lc_rs::error::KeyRejected> {
        match self {
            Self::Ec { crv, x, y } => ParsedPublicKey::new(crv.verification_alg(), ec_point(x, y)),
            Self::Rsa { n, e } => RsaPublicKeyComponents {
                n: strip_leading_zeros(n),
                e: strip_leading_zeros(e),
            }
            .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256),
            Self::Okp { x } => ParsedPublicKey::new(&signature::ED25519, x),
        }
    }
}

/// SEC 1 §2.3.3 uncompressed point: `0x04 || x || y`.
fn ec_point(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    point
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    // `skip` counts a prefix of `bytes`, so the slice is in bounds.
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    &bytes[skip..]
}

/// Bit length of a big-endian magnitude without leading zero octets.
fn bit_len(magnitude: &[u8]) -> usize {
    match magnitude.first() {
        None => 0,
        Some(first) => magnitude.len() * 8 - first.leading_zeros() as usize,
    }
}

/// SHA-256 as a fixed-size array, for thumbprints and key identities.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    // SHA-256 output is always 32 bytes; zip avoids any panic path anyway.
    for (o, i) in out.iter_mut().zip(digest.as_ref()) {
        *o = *i;
    }
    out
}

fn str_member<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, ProtoError> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ProtoError::Malformed(format!(
            "JWK member {name:?} must be a string"
        ))),
        None => Err(ProtoError::Malformed(format!(
            "JWK member {name:?} is missing"
        ))),
    }
}

fn b64_member(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, ProtoError> {
    b64::decode(str_member(obj, name)?)
        .map_err(|_| ProtoError::Malformed(format!("JWK member {name:?} is not base64url")))
}

#[cfg(test)]
mod tests;
