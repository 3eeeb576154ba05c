//! Client-side rate-limit safety (DESIGN.md story 1): a CA's published
//! limits as data, the ledger keys CAs count certificates by, and the pure
//! arithmetic that says whether one more order fits and, if not, when it
//! will. The daemon feeds it counts from the store; nothing here does I/O.
//!
//! Windows are sliding: a certificate counts for `period_seconds` after it
//! was obtained. Let's Encrypt refills a token bucket instead (one
//! certificate per period/count), which never admits less than a sliding
//! window does, so this model errs on the side of not asking.

use serde::{Deserialize, Serialize};

/// Let's Encrypt's production directory; issuers with it default to the
/// `letsencrypt` preset.
pub const LETSENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`letsencrypt-staging` preset).
pub const LETSENCRYPT_STAGING_DIRECTORY: &str =
    "https://acme-staging-v02.api.letsencrypt.org/directory";

const HOUR: u64 = 3600;
const WEEK: u64 = 7 * 24 * HOUR;

/// At most `count` events per sliding `period_seconds`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Events allowed in one window.
    pub count: u32,
    /// Window length, seconds.
    pub period_seconds: u64,
}

/// The limits of one CA, as the agent enforces them before contacting it.
/// Written as `[issuer.limits]` for a CA without a preset.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CaLimits {
    /// Certificates for exactly the same set of names (Let's Encrypt's
    /// "New Certificates per Exact Set of Identifiers").
    pub certificates_per_fqdn_set: Option<Limit>,
    /// Certificates with a name under one registered domain (Public Suffix
    /// List), across all sets.
    pub certificates_per_domain: Option<Limit>,
    /// `newOrder` requests per account, successful or not.
    pub new_orders_per_account: Option<Limit>,
    /// An ARI renewal (`replaces`, inside the CA's window) does not count
    /// against the set limit.
    #[serde(default)]
    pub ari_renewals_exempt_from_fqdn_set: bool,
    /// A renewal (a set the CA issued before) does not count against the
    /// domain limit.
    #[serde(default)]
    pub renewals_exempt_from_domain: bool,
}

/// `limits = "preset"` or a `[issuer.limits]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum LimitsConfig {
    /// `letsencrypt`, `letsencrypt-staging`, `builtin` or `none`.
    Preset(String),
    /// Explicit limits.
    Custom(CaLimits),
}

/// The preset names `limits` accepts.
pub const PRESETS: &[&str] = &["letsencrypt", "letsencrypt-staging", "builtin", "none"];

impl CaLimits {
    /// Let's Encrypt production, from letsencrypt.org/docs/rate-limits
    /// (updated June 2025): 5 certificates per exact set of identifiers per
    /// 7 days, 50 per registered domain per 7 days (renewals exempt),
    /// 300 new orders per account per 3 hours; ARI renewals are exempt from
    /// the set limit.
    pub fn letsencrypt() -> CaLimits {
        CaLimits {
            certificates_per_fqdn_set: Some(Limit {
                count: 5,
                period_seconds: WEEK,
            }),
            certificates_per_domain: Some(Limit {
                count: 50,
                period_seconds: WEEK,
            }),
            new_orders_per_account: Some(Limit {
                count: 300,
                period_seconds: 3 * HOUR,
            }),
            ari_renewals_exempt_from_fqdn_set: true,
            renewals_exempt_from_domain: true,
        }
    }

    /// Let's Encrypt staging, from letsencrypt.org/docs/staging-environment:
    /// 30,000 per set and per registered domain per week, 1,500 new orders
    /// per account per 3 hours.
    pub fn letsencrypt_staging() -> CaLimits {
        CaLimits {
            certificates_per_fqdn_set: Some(Limit {
                count: 30_000,
                period_seconds: WEEK,
            }),
            certificates_per_domain: Some(Limit {
                count: 30_000,
                period_seconds: WEEK,
            }),
            new_orders_per_account: Some(Limit {
                count: 1_500,
                period_seconds: 3 * HOUR,
            }),
            ari_renewals_exempt_from_fqdn_set: true,
            renewals_exempt_from_domain: true,
        }
    }

    /// certkeeper's built-in CA: its defaults follow Boulder's, so the
    /// agent holds itself to the Let's Encrypt production numbers.
    pub fn builtin() -> CaLimits {
        CaLimits::letsencrypt()
    }

    /// A preset by name; `None` for an unknown name.
    pub fn preset(name: &str) -> Option<CaLimits> {
        match name {
            "letsencrypt" => Some(CaLimits::letsencrypt()),
            "letsencrypt-staging" => Some(CaLimits::letsencrypt_staging()),
            "builtin" => Some(CaLimits::builtin()),
            "none" => Some(CaLimits::default()),
            _ => None,
        }
    }

    /// The limits for an issuer: the configured ones, else the preset its
    /// directory URL implies (Let's Encrypt's own URLs), else none: an
    /// unknown CA's limits are unknown, and its 429s are still obeyed.
    pub fn for_issuer(config: Option<&LimitsConfig>, directory: &str) -> Result<CaLimits, String> {
        match config {
            Some(LimitsConfig::Custom(limits)) => {
                for l in [
                    limits.certificates_per_fqdn_set,
                    limits.certificates_per_domain,
                    limits.new_orders_per_account,
                ]
                .into_iter()
                .flatten()
                {
                    if l.count == 0 || l.period_seconds == 0 {
                        return Err("limits: count and period_seconds must be > 0".into());
                    }
                }
                Ok(limits.clone())
            }
            Some(LimitsConfig::Preset(name)) => CaLimits::preset(name).ok_or_else(|| {
                format!(
                    "limits = {name:?} is not a preset; use one of {} or a [issuer.limits] table",
                    PRESETS.join(", ")
                )
            }),
            None => Ok(match directory.trim_end_matches('/') {
                LETSENCRYPT_DIRECTORY => CaLimits::letsencrypt(),
                LETSENCRYPT_STAGING_DIRECTORY => CaLimits::letsencrypt_staging(),
                _ => CaLimits::default(),
            }),
        }
    }
}

pub use certkeeper_proto::identifier::{identifier_set, registered_domain};

/// The distinct registered domains of a set of names, sorted.
pub fn registered_domains(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = names.iter().map(|n| registered_domain(n)).collect();
    out.sort();
    out.dedup();
    out
}

/// Which limit, named as Let's Encrypt's error messages name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum LimitKind {
    /// Certificates per exact set of names.
    CertificatesPerFQDNSet,
    /// Certificates per registered domain.
    CertificatesPerDomain,
    /// New orders per account.
    NewOrdersPerAccount,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// How much of one limit is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    /// The limit.
    pub kind: LimitKind,
    /// Events in the window now.
    pub used: u32,
    /// Its size.
    pub limit: Limit,
    /// When one more event fits, if it does not now (unix seconds).
    pub next_free: Option<i64>,
}

impl Usage {
    /// Usage from the times (unix seconds, oldest first) of the events in
    /// the window ending `now`: full when `count` are in it; the next slot
    /// frees when enough of the oldest leave it.
    pub fn from_times(kind: LimitKind, limit: Limit, times: &[i64], now: i64) -> Usage {
        let start = now - limit.period_seconds as i64;
        let times: Vec<i64> = times.iter().copied().filter(|t| *t > start).collect();
        let count = limit.count as usize;
        let next_free = (times.len() >= count)
            .then(|| times[times.len() - count] + limit.period_seconds as i64);
        Usage {
            kind,
            used: times.len() as u32,
            limit,
            next_free,
        }
    }

    /// Whether one more event fits now.
    pub fn is_full(&self) -> bool {
        self.next_free.is_some()
    }
}

/// A window as people say it: "168h", "3h", "90s".
pub fn window_text(seconds: u64) -> String {
    if seconds.is_multiple_of(HOUR) {
        format!("{}h", seconds / HOUR)
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn identifier_sets_ignore_case_order_and_duplicates() {
        assert_eq!(
            identifier_set(&names(&[
                "WWW.example.com",
                "example.com.",
                "www.example.com"
            ])),
            "example.com,www.example.com"
        );
    }

    #[test]
    fn registered_domains_follow_the_public_suffix_list() {
        assert_eq!(registered_domain("new.blog.example.co.uk"), "example.co.uk");
        assert_eq!(registered_domain("www.example.com"), "example.com");
        assert_eq!(registered_domain("*.a.example.test"), "example.test");
        assert_eq!(registered_domain("192.0.2.1"), "192.0.2.1");
        assert_eq!(
            registered_domains(&names(&["a.example.com", "b.example.com", "x.org"])),
            vec!["example.com".to_string(), "x.org".to_string()]
        );
    }

    #[test]
    fn a_full_window_frees_when_its_oldest_event_leaves() {
        let limit = Limit {
            count: 5,
            period_seconds: WEEK,
        };
        let now = 10 * WEEK as i64;
        let times: Vec<i64> = (0..5).map(|i| now - 1000 + i).collect();
        let u = Usage::from_times(LimitKind::CertificatesPerFQDNSet, limit, &times, now);
        assert_eq!(u.used, 5);
        assert_eq!(u.next_free, Some(now - 1000 + WEEK as i64));
        let u = Usage::from_times(LimitKind::CertificatesPerFQDNSet, limit, &times[1..], now);
        assert!(!u.is_full());
        // Events older than the window do not count.
        let old = [now - WEEK as i64 - 1];
        assert_eq!(
            Usage::from_times(LimitKind::CertificatesPerFQDNSet, limit, &old, now).used,
            0
        );
    }

    #[test]
    fn lets_encrypt_urls_default_to_its_preset_and_others_to_none() {
        assert_eq!(
            CaLimits::for_issuer(None, LETSENCRYPT_DIRECTORY),
            Ok(CaLimits::letsencrypt())
        );
        assert_eq!(
            CaLimits::for_issuer(None, "https://ca.internal/dir"),
            Ok(CaLimits::default())
        );
        let e = CaLimits::for_issuer(Some(&LimitsConfig::Preset("lets".into())), "x")
            .expect_err("unknown preset");
        assert!(e.contains("letsencrypt-staging"), "{e}");
    }
}
