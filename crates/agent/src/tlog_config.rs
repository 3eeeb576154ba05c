//! `[issuer.tlog]`: the transparency log an issuer writes every certificate
//! to (certkeeper's built-in CA, or any C2SP tlog-tiles log), and an
//! optional crt.sh-style search endpoint for public CAs. Parsed here and
//! validated once at load, so the monitor and the inclusion check only see
//! usable values.

use std::path::PathBuf;
use std::time::Duration;

use certkeeper_tlog::NoteVerifier;
use serde::Deserialize;

use crate::config::Config;

/// An issuer's transparency log.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlogConfig {
    /// The log prefix (`https://ca.example:14000/tlog/`); `checkpoint` and
    /// `tile/…` are fetched under it.
    pub log: String,
    /// The log's verifier key (C2SP signed-note `name+hash+key`), e.g. the
    /// content of the CA's `DATA/ca/tlog.pub`. Exactly one of this and
    /// `checkpoint_key_file`.
    pub checkpoint_key: Option<String>,
    /// A file holding the verifier key.
    pub checkpoint_key_file: Option<PathBuf>,
    /// Refuse to store or deploy a certificate whose inclusion in the log
    /// cannot be verified (default true). When false the check still runs
    /// and a failure is only an event.
    #[serde(default = "yes")]
    pub require_inclusion: bool,
    /// Watch the log for certificates the agent did not order (default true).
    #[serde(default = "yes")]
    pub monitor: bool,
    /// Seconds between monitor polls (default 60).
    #[serde(default = "default_poll")]
    pub poll_seconds: u64,
    /// Deadline of one log request, seconds (default 10).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn yes() -> bool {
    true
}

/// Once a minute: an unknown certificate is reported within a minute of
/// being logged, and a poll that finds nothing new costs one small GET.
fn default_poll() -> u64 {
    60
}

/// Long enough for a full entry bundle (256 certificates) over a slow
/// link; short enough that a stalled log never holds a poll for long.
fn default_timeout() -> u64 {
    10
}

impl TlogConfig {
    /// The verifier, from the inline key or the key file.
    pub fn verifier(&self) -> Result<NoteVerifier, String> {
        let text = match (&self.checkpoint_key, &self.checkpoint_key_file) {
            (Some(k), None) => k.clone(),
            (None, Some(p)) => std::fs::read_to_string(p).map_err(|e| {
                format!(
                    "checkpoint_key_file {}: {e}; point it at the log's public key (the CA's DATA/ca/tlog.pub)",
                    p.display()
                )
            })?,
            _ => {
                return Err(
                    "set exactly one of checkpoint_key and checkpoint_key_file (the log's public key, e.g. the CA's DATA/ca/tlog.pub)"
                        .into(),
                );
            }
        };
        NoteVerifier::parse(text.trim()).map_err(|e| {
            format!("checkpoint key is not a signed-note verifier key ({e}); copy the CA's DATA/ca/tlog.pub")
        })
    }

    /// The log prefix with exactly one trailing slash.
    pub fn base(&self) -> String {
        format!("{}/", self.log.trim_end_matches('/'))
    }

    /// Per-request deadline.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }
}

/// An issuer's crt.sh-style search endpoint (`[issuer.ct_search]`): for
/// public CAs, whose logs are RFC 6962 CT logs read through a search
/// service rather than directly.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtSearchConfig {
    /// The endpoint; `{name}` is replaced by each managed name
    /// (`https://crt.sh/?q={name}&output=json`).
    pub url: String,
    /// Seconds between searches for one name; results are cached that long
    /// (default 3600: crt.sh asks clients to be gentle).
    #[serde(default = "default_search_interval")]
    pub poll_seconds: u64,
    /// Deadline of one search, seconds (default 30: crt.sh is often slow).
    #[serde(default = "default_search_timeout")]
    pub timeout_seconds: u64,
}

fn default_search_interval() -> u64 {
    3600
}

fn default_search_timeout() -> u64 {
    30
}

/// Checks every `[issuer.tlog]` and `[issuer.ct_search]`.
pub(crate) fn validate(config: &Config) -> Result<(), String> {
    for i in &config.issuers {
        let at = format!("[[issuer]] {:?}", i.name);
        if let Some(t) = &i.tlog {
            if !(t.log.starts_with("https://") || t.log.starts_with("http://")) {
                return Err(format!(
                    "{at}: tlog.log must be an http(s):// URL of the log prefix (the CA's https://HOST:PORT/tlog/)"
                ));
            }
            t.verifier().map_err(|e| format!("{at}: tlog: {e}"))?;
            if t.poll_seconds == 0 || t.timeout_seconds == 0 {
                return Err(format!(
                    "{at}: tlog.poll_seconds and tlog.timeout_seconds must be > 0"
                ));
            }
        }
        if let Some(s) = &i.ct_search {
            if !(s.url.starts_with("https://") || s.url.starts_with("http://"))
                || !s.url.contains("{name}")
            {
                return Err(format!(
                    "{at}: ct_search.url must be an http(s):// URL containing {{name}}, e.g. \"https://crt.sh/?q={{name}}&output=json\""
                ));
            }
            if s.poll_seconds == 0 || s.timeout_seconds == 0 {
                return Err(format!(
                    "{at}: ct_search.poll_seconds and ct_search.timeout_seconds must be > 0"
                ));
            }
        }
    }
    Ok(())
}
