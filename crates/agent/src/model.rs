//! What the agent manages: certificates with two **slots**, and the typed
//! facts the planner decides on.
//!
//! A slot is one line of supply: the `primary` (ordered from the
//! certificate's issuer) and, when configured, the `backup` (from a
//! *different* CA with a *different* key, held hot and served the moment the
//! primary is revoked, expires unrenewed or its key is compromised —
//! DESIGN.md story 4). Each slot has its own order in flight, backoff, ARI
//! window and current certificate; exactly one slot is served.

use std::fmt;
use std::str::FromStr;

/// One line of supply of a managed certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Ordered from the certificate's `issuer`; served while healthy.
    Primary,
    /// Ordered from the certificate's `backup` issuer with its own key.
    Backup,
}

impl Slot {
    /// Both slots, primary first.
    pub const ALL: [Slot; 2] = [Slot::Primary, Slot::Backup];

    /// The name used in the store, the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Primary => "primary",
            Slot::Backup => "backup",
        }
    }

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::Primary => Slot::Backup,
            Slot::Backup => Slot::Primary,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Slot {
    type Err = String;

    fn from_str(s: &str) -> Result<Slot, String> {
        match s {
            "primary" => Ok(Slot::Primary),
            "backup" => Ok(Slot::Backup),
            other => Err(format!("unknown slot {other:?}: use primary or backup")),
        }
    }
}

/// What the planner knows about a slot's current certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts {
    /// Lowercase hex serial.
    pub serial: String,
    /// Issuer name.
    pub issuer: String,
    /// Hex SHA-256 of the SPKI.
    pub spki_sha256: String,
    /// Validity start, unix seconds.
    pub not_before: i64,
    /// Validity end, unix seconds.
    pub not_after: i64,
    /// The agent learned it is revoked.
    pub revoked: bool,
    /// Its key is in the local blocked-key registry.
    pub key_blocked: bool,
}

/// Whether a slot's certificate can be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Valid now, not revoked, key not blocked, and the CA has not asked
    /// for it to be replaced at once.
    Healthy,
    /// The slot has no certificate.
    Missing,
    /// notBefore is in the future.
    NotYetValid,
    /// notAfter has passed.
    Expired,
    /// Revoked (CRL, or our own revocation).
    Revoked,
    /// Its key was revoked or reported for keyCompromise.
    KeyBlocked,
    /// The CA's ARI window has already ended: the CA wants it replaced now
    /// (what CAs publish ahead of a mass revocation).
    ReplaceNow,
}

impl Health {
    /// Of a slot's certificate at `now`. `ari_end` is the end of the CA's
    /// suggested renewal window, when known.
    pub fn of(facts: Option<&CertFacts>, ari_end: Option<i64>, now: i64) -> Health {
        let Some(f) = facts else {
            return Health::Missing;
        };
        if f.revoked {
            Health::Revoked
        } else if f.key_blocked {
            Health::KeyBlocked
        } else if now >= f.not_after {
            Health::Expired
        } else if now < f.not_before {
            Health::NotYetValid
        } else if ari_end.is_some_and(|end| end <= now) {
            Health::ReplaceNow
        } else {
            Health::Healthy
        }
    }

    /// Whether it may be served.
    pub fn is_healthy(self) -> bool {
        self == Health::Healthy
    }

    /// Whether the certificate must never be deployed again (as opposed to
    /// "should be replaced soon").
    pub fn is_unservable(self) -> bool {
        matches!(
            self,
            Health::Missing
                | Health::NotYetValid
                | Health::Expired
                | Health::Revoked
                | Health::KeyBlocked
        )
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Healthy => "healthy",
            Health::Missing => "missing",
            Health::NotYetValid => "not yet valid",
            Health::Expired => "expired",
            Health::Revoked => "revoked",
            Health::KeyBlocked => "key blocked",
            Health::ReplaceNow => "CA asks to replace now",
        })
    }
}
