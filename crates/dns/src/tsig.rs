//! TSIG keys (RFC 8945): name, algorithm and secret, loaded from a file that
//! only its owner can read.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use hickory_proto::rr::TSigner;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm as WireAlgorithm;

use crate::{DnsError, Name, fqdn};

/// How far apart our clock and the server's may be (RFC 8945 §10
/// recommends 300 s): BIND's and nsupdate's default too.
const FUDGE_SECONDS: u16 = 300;

/// The HMAC algorithms we sign with. MD5 and SHA-1 are refused: RFC 8945
/// §6 marks HMAC-MD5 deprecated, and certbot's and cert-manager's MD5
/// defaults are a reason operators distrust DNS-01 plugins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TsigAlgorithm {
    /// hmac-sha256: mandatory to implement (RFC 8945 §6), the default.
    #[default]
    HmacSha256,
    /// hmac-sha384.
    HmacSha384,
    /// hmac-sha512.
    HmacSha512,
}

impl TsigAlgorithm {
    /// Parses the name BIND and nsupdate use (`hmac-sha256`, case-insensitive).
    pub fn parse(name: &str) -> Result<TsigAlgorithm, DnsError> {
        match name.trim_end_matches('.').to_ascii_lowercase().as_str() {
            "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
            "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
            "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
            "hmac-md5" | "hmac-md5.sig-alg.reg.int" => Err(DnsError::Algorithm {
                name: name.to_owned(),
                hint: " (HMAC-MD5 is deprecated by RFC 8945 and not implemented here; generate a new key with `tsig-keygen -a hmac-sha256 NAME`)",
            }),
            _ => Err(DnsError::Algorithm {
                name: name.to_owned(),
                hint: "",
            }),
        }
    }

    /// The name as BIND spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }

    fn wire(self) -> WireAlgorithm {
        match self {
            TsigAlgorithm::HmacSha256 => WireAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384 => WireAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512 => WireAlgorithm::HmacSha512,
        }
    }
}

/// A TSIG key. The secret never appears in `Debug` output or logs.
#[derive(Clone)]
pub struct TsigKey {
    name: Name,
    algorithm: TsigAlgorithm,
    signer: TSigner,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name.to_string())
            .field("algorithm", &self.algorithm.as_str())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl TsigKey {
    /// A key from its raw secret bytes.
    pub fn new(name: &str, algorithm: TsigAlgorithm, secret: Vec<u8>) -> Result<TsigKey, DnsError> {
        let name = fqdn(name)?;
        let signer =
            TSigner::new(secret, algorithm.wire(), name.clone(), FUDGE_SECONDS).map_err(|e| {
                DnsError::Algorithm {
                    name: format!("{} ({e})", algorithm.as_str()),
                    hint: "",
                }
            })?;
        Ok(TsigKey {
            name,
            algorithm,
            signer,
        })
    }

    /// A key from a base64 secret (as in `nsupdate -y` and named.conf).
    pub fn from_base64(
        name: &str,
        algorithm: TsigAlgorithm,
        secret_b64: &str,
    ) -> Result<TsigKey, DnsError> {
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret_b64.trim())
            .map_err(|e| DnsError::BadName {
                name: "TSIG secret".into(),
                reason: format!("not base64: {e}"),
            })?;
        TsigKey::new(name, algorithm, secret)
    }

    /// Loads the secret from `path`: either the bare base64 secret, or a
    /// BIND key file as `tsig-keygen` writes it (`secret "...";` is used).
    /// The file must not be readable by group or others (0600 or stricter):
    /// anyone with the secret can rewrite the zone.
    pub fn from_file(
        name: &str,
        algorithm: TsigAlgorithm,
        path: &Path,
    ) -> Result<TsigKey, DnsError> {
        let bad = |reason: String| DnsError::SecretFile {
            path: path.to_owned(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "is readable by group or others (mode {mode:04o}); anyone with the secret can change the zone: chmod 600 {}",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let secret_b64 = match text.find("secret") {
            Some(at) => {
                let rest = &text[at + "secret".len()..];
                let start = rest
                    .find('"')
                    .ok_or_else(|| bad("has `secret` without a quoted value".into()))?;
                let rest = &rest[start + 1..];
                let end = rest
                    .find('"')
                    .ok_or_else(|| bad("has an unterminated secret \"...\"".into()))?;
                rest[..end].to_owned()
            }
            None => text.trim().to_owned(),
        };
        if secret_b64.is_empty() {
            return Err(bad("is empty; put the base64 secret in it".into()));
        }
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret_b64.trim())
            .map_err(|e| bad(format!("the secret is not base64 ({e})")))?;
        TsigKey::new(name, algorithm, secret)
    }

    /// The key's name (absolute).
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The algorithm.
    pub fn algorithm(&self) -> TsigAlgorithm {
        self.algorithm
    }

    pub(crate) fn signer(&self) -> &TSigner {
        &self.signer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_is_refused_with_advice() {
        let e = TsigAlgorithm::parse("hmac-md5").expect_err("md5");
        assert!(e.to_string().contains("tsig-keygen"), "{e}");
        assert_eq!(
            TsigAlgorithm::parse("HMAC-SHA512").ok(),
            Some(TsigAlgorithm::HmacSha512)
        );
    }

    #[test]
    fn a_world_readable_secret_file_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("k");
        std::fs::write(&path, "c2VjcmV0\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = TsigKey::from_file("k.", TsigAlgorithm::HmacSha256, &path).expect_err("0644");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        TsigKey::from_file("k.", TsigAlgorithm::HmacSha256, &path).expect("0600");
    }

    #[test]
    fn a_bind_key_file_is_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("k");
        std::fs::write(
            &path,
            "key \"k\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n",
        )
        .expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let key = TsigKey::from_file("k", TsigAlgorithm::HmacSha256, &path).expect("key file");
        assert_eq!(key.signer().key(), b"secret");
        assert!(!format!("{key:?}").contains("c2VjcmV0"));
    }
}
