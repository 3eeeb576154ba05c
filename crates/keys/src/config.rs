//! The `[keys]` section of the agent configuration, parsed into a policy per
//! kind. Unknown keys are errors; so are timings that would let a client see
//! a key a replica cannot use yet, or use a key a replica has already
//! forgotten (docs/config.md has the table and the reasons).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::KeysError;
use crate::model::{Kind, Suite};
use crate::plan::Timing;

/// `[keys]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// The key-encryption key file (0600; `certkeeper keys new-kek FILE`).
    /// Relative paths are relative to the working directory.
    pub kek_file: PathBuf,
    /// How often the daemon sweeps.
    #[serde(default = "default_sweep_interval")]
    pub sweep_interval_seconds: u64,
    /// How often a replica reloads keys from the store (what it serves and
    /// what it can open lag the store by at most this).
    #[serde(default = "default_cache_refresh")]
    pub cache_refresh_seconds: u64,
    /// Serve `/ohttp-keys` and `/.well-known/jwks.json` here (plain HTTP:
    /// put it behind the TLS front end that serves the service).
    pub listen: Option<SocketAddr>,
    /// HPKE key configs.
    pub hpke: Option<HpkeConfig>,
    /// JWS signing keys.
    pub signing: Option<SigningConfig>,
}

/// `[keys.hpke]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HpkeConfig {
    /// Suites, `KEM/KDF/AEAD`.
    #[serde(default = "default_hpke_suites")]
    pub suites: Vec<Suite>,
    /// Pending (decrypts, not advertised) before it becomes active.
    #[serde(default = "default_pending")]
    pub pending_duration_seconds: u64,
    /// Active (advertised) before a successor is made.
    #[serde(default = "default_active")]
    pub active_duration_seconds: u64,
    /// Expired (still decrypts) before it is deleted.
    #[serde(default = "default_expired")]
    pub expired_duration_seconds: u64,
    /// `Cache-Control: max-age` of `/ohttp-keys`: how long a client may keep
    /// using a config after it stops being advertised.
    #[serde(default = "default_hpke_max_age")]
    pub max_age_seconds: u64,
}

/// `[keys.signing]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// Algorithms: `Ed25519`, `ES256`.
    #[serde(default = "default_signing_suites")]
    pub suites: Vec<Suite>,
    /// Published but not signing, before it signs.
    #[serde(default = "default_pending")]
    pub pending_duration_seconds: u64,
    /// Signs, before a successor is made.
    #[serde(default = "default_active")]
    pub active_duration_seconds: u64,
    /// Still published after it stops signing.
    #[serde(default = "default_expired")]
    pub expired_duration_seconds: u64,
    /// `Cache-Control: max-age` of the JWKS: how stale a verifier's copy may be.
    #[serde(default = "default_signing_max_age")]
    pub max_age_seconds: u64,
    /// The longest lifetime of a token signed with these keys.
    #[serde(default = "default_token_lifetime")]
    pub max_token_lifetime_seconds: u64,
}

/// One kind's validated rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The kind.
    pub kind: Kind,
    /// Configured suites, in order.
    pub suites: Vec<Suite>,
    /// State durations.
    pub timing: Timing,
    /// Published `max-age`, seconds.
    pub max_age: u64,
}

// Defaults (docs/config.md): pending is twice the cache refresh, as Janus
// sets it; 12 weeks active and 1 week expired are Janus's too.
fn default_sweep_interval() -> u64 {
    600
}
fn default_cache_refresh() -> u64 {
    1_800
}
fn default_pending() -> u64 {
    3_600
}
fn default_active() -> u64 {
    12 * 7 * 86_400
}
fn default_expired() -> u64 {
    7 * 86_400
}
fn default_hpke_max_age() -> u64 {
    86_400
}
fn default_signing_max_age() -> u64 {
    900
}
fn default_token_lifetime() -> u64 {
    3_600
}
fn default_hpke_suites() -> Vec<Suite> {
    vec![Suite::DEFAULT_HPKE]
}
fn default_signing_suites() -> Vec<Suite> {
    vec![Suite::Signing(crate::model::SigningAlg::Ed25519)]
}

fn secs(name: &str, v: u64) -> Result<i64, KeysError> {
    if v == 0 {
        return Err(KeysError::Config(format!("{name} must be > 0")));
    }
    // Ten years: anything longer is a typo, and it keeps `now + d` far from overflow.
    if v > 10 * 366 * 86_400 {
        return Err(KeysError::Config(format!(
            "{name} = {v} is more than ten years"
        )));
    }
    i64::try_from(v).map_err(|_| KeysError::Config(format!("{name} is too large")))
}

fn suites(table: &str, kind: Kind, suites: &[Suite]) -> Result<Vec<Suite>, KeysError> {
    if suites.is_empty() {
        return Err(KeysError::Config(format!(
            "{table}: suites is empty; list at least one (or remove the section)"
        )));
    }
    let mut out: Vec<Suite> = Vec::new();
    for &s in suites {
        if s.kind() != kind {
            return Err(KeysError::Config(format!(
                "{table}: suite {s} is not a {kind} suite"
            )));
        }
        if out.contains(&s) {
            return Err(KeysError::Config(format!(
                "{table}: suite {s} is listed twice"
            )));
        }
        out.push(s);
    }
    Ok(out)
}

impl KeysConfig {
    /// Parses a `[keys]` document on its own (tests, `keys` commands' checks).
    pub fn parse(text: &str) -> Result<KeysConfig, KeysError> {
        let c: KeysConfig = toml::from_str(text).map_err(|e| KeysError::Config(e.to_string()))?;
        c.policies()?;
        Ok(c)
    }

    /// Validates and returns the policy of every configured kind.
    pub fn policies(&self) -> Result<Vec<Policy>, KeysError> {
        let sweep = secs("sweep_interval_seconds", self.sweep_interval_seconds)?;
        let refresh = secs("cache_refresh_seconds", self.cache_refresh_seconds)?;
        let mut out = Vec::new();
        if let Some(h) = &self.hpke {
            let t = Timing {
                pending: secs("hpke.pending_duration_seconds", h.pending_duration_seconds)?,
                active: secs("hpke.active_duration_seconds", h.active_duration_seconds)?,
                expired: secs("hpke.expired_duration_seconds", h.expired_duration_seconds)?,
            };
            let max_age = secs("hpke.max_age_seconds", h.max_age_seconds)?;
            // A key may be advertised only once every replica can open with it:
            // the one that last reloaded just before the key was made learns it
            // a refresh later, and the sweep that promotes runs up to an interval late.
            if t.pending <= refresh + sweep {
                return Err(KeysError::Config(format!(
                    "hpke.pending_duration_seconds = {} must exceed cache_refresh_seconds + sweep_interval_seconds = {}, \
                     or a client may see a key some replica cannot open yet",
                    t.pending,
                    refresh + sweep
                )));
            }
            if max_age >= t.expired {
                return Err(KeysError::Config(format!(
                    "hpke.max_age_seconds = {max_age} must be below expired_duration_seconds = {}, \
                     or a client's cached config may outlive its key",
                    t.expired
                )));
            }
            out.push(Policy {
                kind: Kind::Hpke,
                suites: suites("[keys.hpke]", Kind::Hpke, &h.suites)?,
                timing: t,
                max_age: h.max_age_seconds,
            });
        }
        if let Some(s) = &self.signing {
            let t = Timing {
                pending: secs(
                    "signing.pending_duration_seconds",
                    s.pending_duration_seconds,
                )?,
                active: secs("signing.active_duration_seconds", s.active_duration_seconds)?,
                expired: secs(
                    "signing.expired_duration_seconds",
                    s.expired_duration_seconds,
                )?,
            };
            let max_age = secs("signing.max_age_seconds", s.max_age_seconds)?;
            let lifetime = secs(
                "signing.max_token_lifetime_seconds",
                s.max_token_lifetime_seconds,
            )?;
            // Verifiers must hold the new key before its first token: the
            // replica's copy lags a refresh, the verifier's cache a max-age.
            if t.pending <= refresh + sweep + max_age {
                return Err(KeysError::Config(format!(
                    "signing.pending_duration_seconds = {} must exceed cache_refresh_seconds + sweep_interval_seconds + \
                     max_age_seconds = {}, or a verifier may get a token before its cached JWKS has the key",
                    t.pending,
                    refresh + sweep + max_age
                )));
            }
            if t.expired < lifetime + max_age + refresh {
                return Err(KeysError::Config(format!(
                    "signing.expired_duration_seconds = {} must be at least max_token_lifetime_seconds + max_age_seconds + \
                     cache_refresh_seconds = {}, or a token may outlive the published key that verifies it",
                    t.expired,
                    lifetime + max_age + refresh
                )));
            }
            out.push(Policy {
                kind: Kind::Signing,
                suites: suites("[keys.signing]", Kind::Signing, &s.suites)?,
                timing: t,
                max_age: s.max_age_seconds,
            });
        }
        if out.is_empty() {
            return Err(KeysError::Config(
                "no kind configured: add [keys.hpke] and/or [keys.signing]".into(),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_issue() {
        let c = KeysConfig::parse("kek_file = \"k\"\n[hpke]\n[signing]\n").unwrap();
        let p = c.policies().unwrap();
        assert_eq!(p[0].suites, vec![Suite::DEFAULT_HPKE]);
        assert_eq!(
            p[0].timing,
            Timing {
                pending: 3_600,
                active: 7_257_600,
                expired: 604_800
            }
        );
        assert_eq!(p[1].kind, Kind::Signing);
    }

    #[test]
    fn bad_configs_name_the_key_and_the_fix() {
        let cases = [
            (
                "kek_file = \"k\"\nbogus = 1\n[hpke]\n",
                "unknown field `bogus`",
            ),
            (
                "kek_file = \"k\"\n[hpke]\nbogus = 1\n",
                "unknown field `bogus`",
            ),
            ("kek_file = \"k\"\n", "add [keys.hpke]"),
            (
                "kek_file = \"k\"\n[hpke]\nactive_duration_seconds = 0\n",
                "hpke.active_duration_seconds must be > 0",
            ),
            (
                "kek_file = \"k\"\n[hpke]\npending_duration_seconds = 2400\n",
                "must exceed cache_refresh_seconds + sweep_interval_seconds = 2400",
            ),
            (
                "kek_file = \"k\"\n[hpke]\nmax_age_seconds = 604800\n",
                "must be below expired_duration_seconds",
            ),
            (
                "kek_file = \"k\"\n[hpke]\nsuites = [\"Ed25519\"]\n",
                "is not a hpke suite",
            ),
            (
                "kek_file = \"k\"\n[hpke]\nsuites = [\"X25519/HKDF-SHA256/AES-512\"]\n",
                "unknown suite",
            ),
            ("kek_file = \"k\"\n[hpke]\nsuites = []\n", "suites is empty"),
            (
                "kek_file = \"k\"\n[signing]\nexpired_duration_seconds = 3600\n",
                "max_token_lifetime_seconds + max_age_seconds",
            ),
            (
                "kek_file = \"k\"\n[signing]\npending_duration_seconds = 3000\n",
                "before its cached JWKS has the key",
            ),
        ];
        for (text, want) in cases {
            let e = KeysConfig::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
