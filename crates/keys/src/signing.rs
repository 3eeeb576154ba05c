//! Signing keys (Ed25519, ES256) and their JWKS ([RFC 7517 §5]).
//!
//! Each published key carries `kid` = its [RFC 7638] thumbprint, so a kid
//! names exactly one key forever (ids 0–255 are reused; thumbprints are not).
//! Signing goes through the proto crate's JWS signer: one signer for the
//! whole project.
//!
//! [RFC 7517 §5]: https://www.rfc-editor.org/rfc/rfc7517#section-5
//! [RFC 7638]: https://www.rfc-editor.org/rfc/rfc7638

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use certkeeper_proto::{Jwk, SigningKey, jws};
use serde_json::{Value, json};

use crate::KeysError;
use crate::model::SigningAlg;

/// A new key: (PKCS#8 private key, public JWK as JSON bytes).
pub fn generate(alg: SigningAlg) -> Result<(Vec<u8>, Vec<u8>), KeysError> {
    let crypto = |e: certkeeper_proto::ProtoError| KeysError::Crypto(e.to_string());
    let key = match alg {
        SigningAlg::Es256 => SigningKey::generate_p256().map_err(crypto)?,
        SigningAlg::Ed25519 => {
            let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| KeysError::Crypto("Ed25519 key generation failed".into()))?;
            SigningKey::from_pkcs8_der(der.as_ref()).map_err(crypto)?
        }
    };
    let public =
        serde_json::to_vec(&key.jwk().to_json()).map_err(|e| KeysError::Crypto(e.to_string()))?;
    Ok((key.to_pkcs8_der().map_err(crypto)?, public))
}

/// The JWKS entry for a stored public JWK: the key plus `kid`, `alg`, `use`.
pub fn jwks_entry(public: &[u8], alg: SigningAlg) -> Result<Value, KeysError> {
    let bad = |m: String| KeysError::Corrupt("signing key".into(), m);
    let value: Value = serde_json::from_slice(public).map_err(|e| bad(e.to_string()))?;
    let jwk = Jwk::from_json(&value).map_err(|e| bad(e.to_string()))?;
    let mut entry = jwk.to_json();
    if let Value::Object(m) = &mut entry {
        m.insert("kid".into(), Value::String(jwk.thumbprint()));
        m.insert("alg".into(), Value::String(alg_name(alg).into()));
        m.insert("use".into(), Value::String("sig".into()));
    }
    Ok(entry)
}

/// The JWS `alg` a key signs with.
pub fn alg_name(alg: SigningAlg) -> &'static str {
    match alg {
        SigningAlg::Ed25519 => "EdDSA",
        SigningAlg::Es256 => "ES256",
    }
}

/// The RFC 7638 thumbprint of a stored public JWK.
pub fn kid(public: &[u8]) -> Result<String, KeysError> {
    let bad = |m: String| KeysError::Corrupt("signing key".into(), m);
    let value: Value = serde_json::from_slice(public).map_err(|e| bad(e.to_string()))?;
    Ok(Jwk::from_json(&value)
        .map_err(|e| bad(e.to_string()))?
        .thumbprint())
}

/// The `kid` of a stored signing key row; `None` for other kinds.
pub fn row_kid(row: &certkeeper_store::KeyRow) -> Result<Option<String>, KeysError> {
    if row.kind != crate::Kind::Signing.name() {
        return Ok(None);
    }
    use base64::Engine;
    let public = base64::engine::general_purpose::STANDARD
        .decode(&row.public_key)
        .map_err(|_| {
            KeysError::Corrupt(
                format!("signing/{}", row.id),
                "public key is not base64".into(),
            )
        })?;
    kid(&public).map(Some)
}

/// Signs `claims` as a compact JWT ([RFC 7519]) with `typ` JWT and `kid`.
///
/// [RFC 7519]: https://www.rfc-editor.org/rfc/rfc7519
pub fn sign_jwt(pkcs8: &[u8], kid: &str, claims: &Value) -> Result<String, KeysError> {
    let crypto = |e: certkeeper_proto::ProtoError| KeysError::Crypto(e.to_string());
    let key = SigningKey::from_pkcs8_der(pkcs8).map_err(crypto)?;
    let payload = serde_json::to_vec(claims).map_err(|e| KeysError::Crypto(e.to_string()))?;
    let flat = jws::sign(&key, json!({"typ": "JWT", "kid": kid}), &payload).map_err(crypto)?;
    let part = |name: &str| {
        flat.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(format!(
        "{}.{}.{}",
        part("protected"),
        part("payload"),
        part("signature")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_the_thumbprint_as_kid() {
        for alg in [SigningAlg::Ed25519, SigningAlg::Es256] {
            let (der, public) = generate(alg).unwrap();
            let entry = jwks_entry(&public, alg).unwrap();
            assert_eq!(entry["kid"], kid(&public).unwrap());
            assert_eq!(entry["alg"], alg_name(alg));
            let token = sign_jwt(&der, &kid(&public).unwrap(), &json!({"sub": "x"})).unwrap();
            assert_eq!(token.split('.').count(), 3);
        }
    }
}
