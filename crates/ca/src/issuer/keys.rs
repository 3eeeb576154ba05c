//! Subscriber key classification for the key policy (BR §6.1.5, §6.1.6).

use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// A key type the policy can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// RSA with this many modulus bits.
    Rsa(usize),
}

impl KeyType {
    /// The policy name (`ecdsa-p256`, `rsa2048`, …).
    pub fn policy_name(&self) -> String {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256".into(),
            KeyType::EcdsaP384 => "ecdsa-p384".into(),
            KeyType::Rsa(bits) => format!("rsa{bits}"),
        }
    }

    /// RSA keys also get keyEncipherment.
    pub fn is_rsa(&self) -> bool {
        matches!(self, KeyType::Rsa(_))
    }
}

/// Boulder's goodkey tries 100 rounds: it catches keys whose primes share
/// their top half (broken generators, CVE-2022-26320) for well under a
/// millisecond per CSR.
const FERMAT_ROUNDS: u32 = 100;

/// Fermat's factorisation of `n = a² − b²`, starting at `a = ⌈√n⌉`: the
/// round in which it succeeds, or `None` after `rounds`.
fn fermat_factors(modulus: &[u8], rounds: u32) -> Option<u32> {
    use num_bigint::BigUint;
    let n = BigUint::from_bytes_be(modulus);
    if n.bits() < 2 {
        return None;
    }
    let mut a = n.sqrt();
    if &a * &a < n {
        a += 1u32;
    }
    let mut b2 = &a * &a - &n;
    for round in 0..rounds {
        let b = b2.sqrt();
        if &b * &b == b2 {
            return Some(round + 1);
        }
        // (a+1)² − n = b² + 2a + 1
        b2 += &a * 2u32 + 1u32;
        a += 1u32;
    }
    None
}

const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// Classifies a SubjectPublicKeyInfo, or says in words why it is unusable.
pub fn classify_spki(spki_der: &[u8]) -> Result<KeyType, String> {
    let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| format!("unparsable public key: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the public key".into());
    }
    match spki
        .parsed()
        .map_err(|e| format!("unparsable public key: {e}"))?
    {
        PublicKey::RSA(rsa) => {
            let exponent = rsa
                .try_exponent()
                .map_err(|_| "RSA exponent too large".to_string())?;
            // BR §6.1.6: odd, at least 65537.
            if exponent < 65537 || exponent % 2 == 0 {
                return Err(format!(
                    "RSA public exponent {exponent} is not allowed (use 65537)"
                ));
            }
            if let Some(round) = fermat_factors(rsa.modulus, FERMAT_ROUNDS) {
                return Err(format!(
                    "RSA modulus factors by Fermat's method in {round} round(s): its primes are too close together; generate a new key"
                ));
            }
            Ok(KeyType::Rsa(rsa.key_size()))
        }
        PublicKey::EC(_) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                OID_P256 => Ok(KeyType::EcdsaP256),
                OID_P384 => Ok(KeyType::EcdsaP384),
                other => Err(format!(
                    "elliptic curve {other} is not allowed (use P-256 or P-384)"
                )),
            }
        }
        _ => {
            let oid = spki.algorithm.algorithm.to_id_string();
            let name = match oid.as_str() {
                "1.3.101.112" => "Ed25519",
                "1.3.101.113" => "Ed448",
                "1.2.840.10040.4.1" => "DSA",
                other => other,
            };
            Err(format!(
                "key algorithm {name} is not allowed (use ECDSA P-256/P-384 or RSA 2048-4096)"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4294967291 and 4294967279 are the two largest primes below 2³²:
    /// adjacent primes fall in the first round; a product of far-apart
    /// primes (3 × a large prime) does not fall within the rounds.
    #[test]
    fn fermat_finds_close_primes_only() {
        let close = 4294967291u64 as u128 * 4294967279u64 as u128;
        assert_eq!(fermat_factors(&close.to_be_bytes(), 100), Some(1));
        let far = 3u128 * 4294967291u128;
        assert_eq!(fermat_factors(&far.to_be_bytes(), 100), None);
    }
}
