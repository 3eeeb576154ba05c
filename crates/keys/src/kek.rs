//! Private keys at rest: sealed with AES-256-GCM under a key-encryption key
//! (KEK) that lives in a file of its own, mode 0600, as Janus encrypts its
//! datastore keys. A copy of the database alone (a backup, a replica's
//! disk) then yields no private key.
//!
//! The file holds the 32-byte key in base64 (`certkeeper keys new-kek FILE`
//! writes one). Every sealed key is bound to its kind, suite and public key
//! through the AEAD's associated data, so a row's sealed key cannot be moved
//! onto another row. The KEK is never printed: its `Debug` is redacted.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;

use crate::KeysError;

/// Prefix of the associated data; a version, should the format ever change.
const AAD_PREFIX: &[u8] = b"certkeeper rotated key v1\0";

/// The key-encryption key.
pub struct Kek {
    key: LessSafeKey,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(redacted)")
    }
}

impl Kek {
    /// Reads the KEK from `path`, refusing a file that group or others can
    /// read or write (the fix: `chmod 600 FILE`).
    pub fn load(path: &Path) -> Result<Kek, KeysError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |message: String| KeysError::Kek {
            path: path.display().to_string(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| {
            err(format!(
                "cannot read it ({e}); create one with `certkeeper keys new-kek {}`",
                path.display()
            ))
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "mode is {mode:04o}, but a key file must be readable by its owner only: run `chmod 600 {}`",
                path.display()
            )));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| err("is not base64 (it must hold 32 random bytes in base64)".into()))?;
        Kek::from_bytes(&bytes).map_err(|_| {
            err(format!(
                "holds {} bytes; an AES-256 key is 32 bytes",
                bytes.len()
            ))
        })
    }

    /// A KEK from raw key bytes (32).
    pub fn from_bytes(bytes: &[u8]) -> Result<Kek, KeysError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| KeysError::Crypto("a key-encryption key is 32 bytes".into()))?;
        Ok(Kek {
            key: LessSafeKey::new(key),
        })
    }

    /// Creates a new random KEK file (0600, written atomically); refuses to
    /// overwrite one, since every key sealed under it would be lost.
    pub fn generate_file(path: &Path) -> Result<(), KeysError> {
        let err = |message: String| KeysError::Kek {
            path: path.display().to_string(),
            message,
        };
        if path.exists() {
            return Err(err(
                "already exists; a new key-encryption key would make every stored private key unreadable".into(),
            ));
        }
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| err("the system random source failed".into()))?;
        let text = base64::engine::general_purpose::STANDARD.encode(bytes) + "\n";
        certkeeper_store::files::write_atomic(path, text.as_bytes(), 0o600)
            .map_err(|e| err(format!("cannot write it: {e}")))
    }

    /// Seals a private key for the row `(kind, suite, public)`: nonce || ciphertext || tag.
    pub fn seal(
        &self,
        kind: &str,
        suite: &str,
        public: &[u8],
        private: &[u8],
    ) -> Result<Vec<u8>, KeysError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeysError::Crypto("the system random source failed".into()))?;
        let mut buf = private.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(kind, suite, public)),
                &mut buf,
            )
            .map_err(|_| KeysError::Crypto("AES-256-GCM seal failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens what [`Kek::seal`] made for the same row; `None` if the KEK is
    /// wrong or anything was altered.
    pub fn open(&self, kind: &str, suite: &str, public: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ct) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(kind, suite, public)), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

fn aad(kind: &str, suite: &str, public: &[u8]) -> Vec<u8> {
    let mut aad = AAD_PREFIX.to_vec();
    for part in [kind.as_bytes(), suite.as_bytes(), public] {
        // Length-prefixed, so no two different rows share an encoding.
        aad.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_sealed_key_opens_only_for_its_row_and_kek() {
        let kek = Kek::from_bytes(&[7; 32]).unwrap();
        let sealed = kek.seal("hpke", "s", b"pub", b"secret").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            kek.open("hpke", "s", b"pub", &sealed).as_deref(),
            Some(&b"secret"[..])
        );
        assert_eq!(kek.open("hpke", "s", b"other", &sealed), None);
        assert_eq!(kek.open("signing", "s", b"pub", &sealed), None);
        let other = Kek::from_bytes(&[8; 32]).unwrap();
        assert_eq!(other.open("hpke", "s", b"pub", &sealed), None);
        assert_eq!(kek.open("hpke", "s", b"pub", &sealed[..5]), None);
        assert_eq!(format!("{kek:?}"), "Kek(redacted)");
    }

    #[test]
    fn the_kek_file_must_be_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        Kek::generate_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        Kek::load(&path).unwrap();
        let e = Kek::generate_file(&path).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Kek::load(&path).unwrap_err().to_string();
        assert!(e.contains("mode is 0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "c2hvcnQ=\n").unwrap();
        let e = Kek::load(&path).unwrap_err().to_string();
        assert!(e.contains("holds 5 bytes"), "{e}");
        let e = Kek::load(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("keys new-kek"), "{e}");
    }
}
