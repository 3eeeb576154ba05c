//! C2SP signed-note (Ed25519) and C2SP tlog-checkpoint.
//!
//! A note is UTF-8 text ending in a newline, a blank line, then signature
//! lines `— <name> <base64(key id ‖ signature)>`. The key id is the first four
//! bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key), 0x01 naming Ed25519. A
//! verifier key travels as `<name>+<hex key id>+<base64(0x01 ‖ public key)>`,
//! the one string a third party needs to check checkpoints.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::TlogError;
use crate::hash::Hash;

/// The signature algorithm byte of Ed25519 in signed-note.
const ALG_ED25519: u8 = 0x01;
/// A longer note is refused before parsing (checkpoints are ~200 bytes).
const MAX_NOTE: usize = 64 * 1024;
/// More signature lines than this is not a note we want to read.
const MAX_SIGNATURES: usize = 100;

fn key_id(name: &str, public: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn check_name(name: &str) -> Result<(), TlogError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(TlogError::Key(format!(
            "key name {name:?} must be non-empty, without spaces or '+'"
        )));
    }
    Ok(())
}

/// Signs notes with the log's Ed25519 key.
pub struct NoteSigner {
    name: String,
    id: [u8; 4],
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key is never printed.
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A new random key named `name` (the log's origin).
    pub fn generate(name: &str) -> Result<(NoteSigner, Vec<u8>), TlogError> {
        check_name(name)?;
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| TlogError::Key("cannot generate an Ed25519 key".into()))?;
        let pkcs8 = pkcs8.as_ref().to_vec();
        Ok((NoteSigner::from_pkcs8(name, &pkcs8)?, pkcs8))
    }

    /// A signer from a PKCS#8 Ed25519 key.
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<NoteSigner, TlogError> {
        check_name(name)?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| TlogError::Key(format!("not a PKCS#8 Ed25519 key: {e}")))?;
        let id = key_id(name, pair.public_key().as_ref());
        Ok(NoteSigner {
            name: name.to_string(),
            id,
            pair,
        })
    }

    /// Loads `DIR/tlog.key` (PKCS#8, 0600) and its name from `DIR/tlog.pub`
    /// (the verifier key), or creates both, with `name` as the key name.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<NoteSigner, TlogError> {
        let key_path = dir.join("tlog.key");
        let pub_path = dir.join("tlog.pub");
        match std::fs::read(&key_path) {
            Ok(pkcs8) => {
                let vkey =
                    std::fs::read_to_string(&pub_path).map_err(|e| TlogError::io(&pub_path, e))?;
                let verifier = NoteVerifier::parse(vkey.trim())?;
                let signer = NoteSigner::from_pkcs8(verifier.name(), &pkcs8)?;
                if signer.verifier().to_string() != verifier.to_string() {
                    return Err(TlogError::Key(format!(
                        "{} does not match {}; restore the pair from backup",
                        pub_path.display(),
                        key_path.display()
                    )));
                }
                Ok(signer)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (signer, pkcs8) = NoteSigner::generate(name)?;
                certkeeper_store::files::write_atomic(
                    &key_path,
                    &pkcs8,
                    certkeeper_store::files::PRIVATE,
                )
                .map_err(|e| TlogError::io(&key_path, e))?;
                let vkey = format!("{}\n", signer.verifier());
                certkeeper_store::files::write_atomic(
                    &pub_path,
                    vkey.as_bytes(),
                    certkeeper_store::files::PUBLIC,
                )
                .map_err(|e| TlogError::io(&pub_path, e))?;
                Ok(signer)
            }
            Err(e) => Err(TlogError::io(&key_path, e)),
        }
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        let mut public = [0u8; 32];
        public.copy_from_slice(self.pair.public_key().as_ref());
        NoteVerifier {
            name: self.name.clone(),
            id: self.id,
            public,
        }
    }

    /// Signs `text` (which must end in a newline) into a note.
    pub fn sign(&self, text: &str) -> Result<String, TlogError> {
        if !text.ends_with('\n') || text.contains("\n\n") {
            return Err(TlogError::MalformedNote(
                "note text must end in one newline and contain no blank line".into(),
            ));
        }
        let sig = self.pair.sign(text.as_bytes());
        let mut blob = self.id.to_vec();
        blob.extend_from_slice(sig.as_ref());
        Ok(format!(
            "{text}\n\u{2014} {} {}\n",
            self.name,
            STANDARD.encode(blob)
        ))
    }
}

/// Verifies notes: a name and an Ed25519 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    public: [u8; 32],
}

impl std::fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(&self.public);
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            STANDARD.encode(k)
        )
    }
}

impl NoteVerifier {
    /// Parses `<name>+<hex id>+<base64(0x01 ‖ key)>`.
    pub fn parse(vkey: &str) -> Result<NoteVerifier, TlogError> {
        let bad = |d: &str| {
            TlogError::Key(format!(
                "verifier key {:?}: {d} (expected NAME+KEYID+BASE64, as in DATA/ca/tlog.pub)",
                vkey.chars().take(120).collect::<String>()
            ))
        };
        // The name has no '+' and the id is hex; base64 may contain '+'.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("three '+'-separated parts needed"));
        };
        check_name(name)?;
        let key = STANDARD.decode(b64).map_err(|_| bad("key is not base64"))?;
        if key.len() != 33 || key[0] != ALG_ED25519 {
            return Err(bad("not an Ed25519 key"));
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&key[1..]);
        let id = key_id(name, &public);
        if hex::encode(id) != id_hex {
            return Err(bad("key id does not match the name and key"));
        }
        Ok(NoteVerifier {
            name: name.to_string(),
            id,
            public,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks that `note` carries a valid signature by this key and returns
    /// its text; other signers' lines are ignored, as signed-note says.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, TlogError> {
        if note.len() > MAX_NOTE {
            return Err(TlogError::MalformedNote(format!(
                "{} bytes is too long for a note",
                note.len()
            )));
        }
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| TlogError::MalformedNote("no blank line before signatures".into()))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        if !sigs.ends_with('\n') {
            return Err(TlogError::MalformedNote(
                "signatures must end in a newline".into(),
            ));
        }
        let lines: Vec<&str> = sigs.lines().collect();
        if lines.is_empty() || lines.len() > MAX_SIGNATURES {
            return Err(TlogError::MalformedNote(format!(
                "{} signature lines",
                lines.len()
            )));
        }
        for line in lines {
            let rest = line.strip_prefix("\u{2014} ").ok_or_else(|| {
                TlogError::MalformedNote("a signature line must start with '— '".into())
            })?;
            let (name, b64) = rest
                .rsplit_once(' ')
                .ok_or_else(|| TlogError::MalformedNote("signature line without a key".into()))?;
            if name != self.name {
                continue;
            }
            let Ok(blob) = STANDARD.decode(b64) else {
                continue;
            };
            if blob.len() != 4 + 64 || blob[..4] != self.id {
                continue;
            }
            if UnparsedPublicKey::new(&ED25519, &self.public)
                .verify(text.as_bytes(), &blob[4..])
                .is_ok()
            {
                return Ok(text);
            }
            return Err(TlogError::BadSignature(format!(
                "the signature by {} does not verify: the note was altered or signed by another key",
                self.name
            )));
        }
        Err(TlogError::BadSignature(format!(
            "no signature by {} (key id {})",
            self.name,
            hex::encode(self.id)
        )))
    }
}

/// A tlog-checkpoint: origin, tree size, root hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's unique name.
    pub origin: String,
    /// Entries in the tree.
    pub size: u64,
    /// MTH of the tree.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: three lines.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Parses note text (extension lines after the third are allowed and ignored).
    pub fn parse(text: &str) -> Result<Checkpoint, TlogError> {
        let bad = |d: &str| TlogError::MalformedNote(format!("checkpoint: {d}"));
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("no origin"))?;
        let size_s = lines.next().ok_or_else(|| bad("no tree size"))?;
        let size: u64 = size_s
            .parse()
            .map_err(|_| bad("tree size is not a number"))?;
        if size.to_string() != size_s {
            return Err(bad("tree size is not in canonical decimal"));
        }
        let root_b = STANDARD
            .decode(lines.next().ok_or_else(|| bad("no root hash"))?)
            .map_err(|_| bad("root hash is not base64"))?;
        let root: Hash = root_b
            .try_into()
            .map_err(|_| bad("root hash is not 32 bytes"))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }

    /// Verifies a signed checkpoint note with `verifier`; its origin must be
    /// the key's name, so a checkpoint of another log signed with a reused
    /// key is not taken for this one.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Result<Checkpoint, TlogError> {
        let text = verifier.open(note)?;
        let cp = Checkpoint::parse(text)?;
        if cp.origin != verifier.name() {
            return Err(TlogError::BadSignature(format!(
                "checkpoint is for log {:?}, the key is for {:?}",
                cp.origin,
                verifier.name()
            )));
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_open_round_trip_and_tampering_fails() {
        let (s, _) = NoteSigner::generate("example.com/log").unwrap();
        let v = NoteVerifier::parse(&s.verifier().to_string()).unwrap();
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 42,
            root: [7; 32],
        };
        let note = s.sign(&cp.text()).unwrap();
        assert!(note.starts_with("example.com/log\n42\n"));
        assert!(note.contains("\n\n\u{2014} example.com/log "));
        assert_eq!(Checkpoint::open(&note, &v).unwrap(), cp);
        let tampered = note.replacen("42", "43", 1);
        assert!(matches!(
            Checkpoint::open(&tampered, &v),
            Err(TlogError::BadSignature(_))
        ));
        let (other, _) = NoteSigner::generate("example.com/log").unwrap();
        assert!(Checkpoint::open(&note, &other.verifier()).is_err());
    }

    /// The Ed25519 verifier key from the C2SP signed-note spec's example
    /// (`PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW`):
    /// our key id computation must agree with it.
    #[test]
    fn key_id_matches_the_signed_note_example() {
        let v = NoteVerifier::parse(
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        )
        .expect("the spec's key parses and its id matches");
        assert_eq!(v.name(), "PeterNeumann");
        assert!(
            NoteVerifier::parse(
                "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            )
            .is_err()
        );
    }
}
