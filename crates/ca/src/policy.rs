//! Issuance policy as data: profiles, identifier rules, key policy, lifetimes.
//! Parsed from TOML into types at startup; unknown keys are an error.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The policy shipped with the binary (`policy.default.toml`).
pub const DEFAULT_POLICY: &str = include_str!("policy.default.toml");

/// The whole policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Profile used when an order names none.
    pub default_profile: String,
    /// Issuance profiles, by name.
    #[serde(rename = "profile")]
    pub profiles: Vec<Profile>,
    /// Which identifiers the CA issues for.
    pub identifiers: IdentifierPolicy,
    /// Which subscriber keys are accepted.
    pub keys: KeyPolicy,
    /// Revocation rules.
    pub revocation: RevocationPolicy,
    /// Object lifetimes.
    pub lifetimes: Lifetimes,
    /// Rate limits; a file without `[limits]` gets the private-CA defaults.
    #[serde(default)]
    pub limits: Limits,
    /// Pausing an identifier for an account after consecutive failed validations.
    #[serde(default)]
    pub pausing: Pausing,
    /// Bounds on work in flight (validations, pending authorizations).
    #[serde(default)]
    pub capacity: Capacity,
}

/// Bounds on work in flight, as opposed to rates: what one account, or all
/// of them together, may have the CA doing at once.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capacity {
    /// Validations running at once across all accounts; a challenge POST
    /// beyond it gets `rateLimited` with a short `Retry-After`.
    pub max_concurrent_validations: u32,
    /// Pending authorizations one account may hold; a newOrder that would
    /// exceed it gets `rateLimited`.
    pub max_pending_authzs_per_account: u32,
    /// Open HTTPS connections at once; beyond it new ones are dropped.
    pub max_connections: u32,
    /// Seconds a connection may stay silent (no byte from the client)
    /// before it is closed: after the TLS handshake, between requests, on
    /// an idle HTTP/2 connection.
    pub connection_idle_seconds: u32,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            // Each validation holds a socket and up to 20 s; 64 at once keeps
            // a 2-core CA responsive under a flood while a fleet's normal
            // renewals (spread over days by ARI) never queue.
            max_concurrent_validations: 64,
            // Before, 300 orders × 100 names left one account 30,000 pending
            // authorizations. 10,000 covers bootstrapping a private fleet's
            // names in one go; Let's Encrypt used 300 (Boulder's
            // PendingAuthorizationsPerAccount).
            max_pending_authzs_per_account: 10_000,
            // Each connection costs a file descriptor and TLS state (~50 KiB):
            // 4096 stays well under the usual 65,536 descriptor limit and is
            // far above what ACME clients keep open.
            max_connections: 4096,
            // Longer than the 30 s request timeout (a handler may not read
            // while it works), short enough that silent sockets do not pile up.
            connection_idle_seconds: 60,
        }
    }
}

/// A certificate profile (draft-aaron-acme-profiles): a named validity.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Name clients send in newOrder's `profile`.
    pub name: String,
    /// Shown in the directory's `meta.profiles`.
    pub description: String,
    /// Certificate lifetime, hours (fractions allowed: 0.05 is three
    /// minutes, for tests of renewal against real time).
    pub validity_hours: f64,
}

/// Identifier rules.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierPolicy {
    /// Most identifiers in one order.
    pub max_names: usize,
    /// Names (and their subdomains) never issued for.
    pub blocked_domains: Vec<String>,
    /// Whether IP address identifiers are accepted.
    pub allow_ip: bool,
}

/// Accepted subscriber key types.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPolicy {
    /// Any of `rsa2048`, `rsa3072`, `rsa4096`, `ecdsa-p256`, `ecdsa-p384`.
    pub allowed: Vec<String>,
}

/// Revocation rules.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationPolicy {
    /// Most *other* certificates revoked by one proven key compromise.
    /// Unsigned so that no value can mean "unlimited"; 0 revokes only the
    /// certificate named in the request (the key is still blocked).
    pub max_cascade: u32,
}

/// Upper bound of `revocation.max_cascade`: the cascade runs in one
/// transaction, and a key shared by more certificates than this deserves
/// an operator's review, not an automatic sweep.
pub const MAX_CASCADE_LIMIT: u32 = 100_000;

/// Object lifetimes. Unsigned, and range-checked in [`Policy::parse`], so
/// a negative or zero lifetime cannot create objects born expired.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifetimes {
    /// Pending authorization lifetime.
    pub pending_authz_hours: u32,
    /// Valid authorization lifetime (reuse window).
    pub valid_authz_hours: u32,
    /// Order lifetime.
    pub order_hours: u32,
    /// CRL re-signing interval.
    pub crl_refresh_minutes: u32,
    /// CRL nextUpdate distance.
    pub crl_validity_hours: u32,
    /// ARI `Retry-After`: how long clients wait before asking again.
    pub ari_retry_after_seconds: u32,
}

impl Lifetimes {
    /// Pending authorization lifetime, seconds.
    pub fn pending_authz_secs(&self) -> i64 {
        i64::from(self.pending_authz_hours) * 3600
    }

    /// Valid authorization lifetime, seconds.
    pub fn valid_authz_secs(&self) -> i64 {
        i64::from(self.valid_authz_hours) * 3600
    }

    /// Order lifetime, seconds.
    pub fn order_secs(&self) -> i64 {
        i64::from(self.order_hours) * 3600
    }

    /// CRL nextUpdate distance, seconds.
    pub fn crl_validity_secs(&self) -> i64 {
        i64::from(self.crl_validity_hours) * 3600
    }

    /// Checks each lifetime against its range; the message names the key.
    fn check(&self) -> Result<(), String> {
        // Baseline Requirements §4.2.1: validation data is reused at most
        // 398 days; a pending authorization or an order needs far less.
        const DAY: u32 = 24;
        for (name, value, min, max) in [
            ("pending_authz_hours", self.pending_authz_hours, 1, 30 * DAY),
            ("valid_authz_hours", self.valid_authz_hours, 1, 398 * DAY),
            ("order_hours", self.order_hours, 1, 30 * DAY),
            (
                "crl_refresh_minutes",
                self.crl_refresh_minutes,
                1,
                7 * DAY * 60,
            ),
            // BR §4.9.7: a CRL's nextUpdate is at most 10 days out.
            ("crl_validity_hours", self.crl_validity_hours, 1, 10 * DAY),
            (
                "ari_retry_after_seconds",
                self.ari_retry_after_seconds,
                1,
                7 * 86400,
            ),
        ] {
            if !(min..=max).contains(&value) {
                return Err(format!(
                    "lifetimes.{name} = {value} is outside {min}..={max}"
                ));
            }
        }
        if u64::from(self.crl_refresh_minutes) >= u64::from(self.crl_validity_hours) * 60 {
            return Err(format!(
                "lifetimes.crl_refresh_minutes ({}) must be shorter than crl_validity_hours ({} h): \
                 the CRL would expire before it is re-signed",
                self.crl_refresh_minutes, self.crl_validity_hours
            ));
        }
        Ok(())
    }
}

/// The rate limits, one GCRA bucket family each. Names are Boulder's
/// Let's Encrypt pauses an identifier for an account that keeps failing to
/// validate it (a client stuck in a loop spends CA resources for nothing);
/// only the operator's unpause, or a success before the threshold, clears it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pausing {
    /// Consecutive failed validations that pause; 0 disables pausing.
    pub consecutive_failures: i64,
}

impl Default for Pausing {
    fn default() -> Self {
        // Let's Encrypt's threshold (about 1152 failures: a client retrying
        // every hour would take 48 days to reach it).
        Pausing {
            consecutive_failures: 1152,
        }
    }
}

/// (`ratelimits/names.go`) so operators can read Let's Encrypt's docs.
/// The defaults are sized for a private CA (see [`LimitsPreset::Private`]);
/// `--limits letsencrypt` and `--limits letsencrypt-staging` reproduce those CAs.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// New accounts per client IP address.
    #[serde(rename = "NewRegistrationsPerIPAddress")]
    pub new_registrations_per_ip_address: LimitConfig,
    /// New orders per account.
    #[serde(rename = "NewOrdersPerAccount")]
    pub new_orders_per_account: LimitConfig,
    /// Certificates per registered domain (or IPv4 address, or IPv6 /64).
    #[serde(rename = "CertificatesPerDomain")]
    pub certificates_per_domain: LimitConfig,
    /// Certificates per exact identifier set.
    #[serde(rename = "CertificatesPerFQDNSet")]
    pub certificates_per_fqdn_set: LimitConfig,
    /// Failed validations per identifier per account.
    #[serde(rename = "FailedAuthorizationsPerDomainPerAccount")]
    pub failed_authorizations_per_domain_per_account: LimitConfig,
}

impl Default for Limits {
    /// The private-CA defaults ([`LimitsPreset::Private`]).
    fn default() -> Limits {
        LimitsPreset::Private.limits()
    }
}

/// Named sets of rate limits, chosen with `certkeeper ca serve --limits NAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitsPreset {
    /// Let's Encrypt production, as published at
    /// <https://letsencrypt.org/docs/rate-limits/>: for rehearsing a
    /// deployment against our CA before pointing it at Let's Encrypt.
    LetsEncrypt,
    /// Let's Encrypt staging, as published at
    /// <https://letsencrypt.org/docs/staging-environment/>.
    LetsEncryptStaging,
    /// The default: a private CA where one registered domain holds every
    /// name of an organisation. Never in the way of normal use (tens of
    /// thousands of names, fleets behind one NAT address, per-replica
    /// certificates), still a ceiling on a runaway client.
    Private,
}

impl LimitsPreset {
    /// Every preset with its `--limits` spelling.
    pub const ALL: [(&'static str, LimitsPreset); 3] = [
        ("letsencrypt", LimitsPreset::LetsEncrypt),
        ("letsencrypt-staging", LimitsPreset::LetsEncryptStaging),
        ("private", LimitsPreset::Private),
    ];

    /// Parses a `--limits` value.
    pub fn parse(s: &str) -> Option<LimitsPreset> {
        LimitsPreset::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, p)| *p)
    }

    /// The preset's limits. Reasons for the private numbers are next to
    /// each; the Let's Encrypt numbers are theirs, not ours to justify.
    pub fn limits(self) -> Limits {
        const H: u64 = 3600;
        const DAY: u64 = 24 * H;
        const WEEK: u64 = 7 * DAY;
        match self {
            LimitsPreset::LetsEncrypt => Limits {
                new_registrations_per_ip_address: LimitConfig::new(10, 3 * H),
                new_orders_per_account: LimitConfig::new(300, 3 * H),
                certificates_per_domain: LimitConfig::new(50, WEEK),
                certificates_per_fqdn_set: LimitConfig::new(5, WEEK),
                failed_authorizations_per_domain_per_account: LimitConfig::new(5, H),
            },
            LimitsPreset::LetsEncryptStaging => Limits {
                new_registrations_per_ip_address: LimitConfig::new(50, 3 * H),
                new_orders_per_account: LimitConfig::new(1500, 3 * H),
                certificates_per_domain: LimitConfig::new(30_000, WEEK),
                certificates_per_fqdn_set: LimitConfig::new(30_000, WEEK),
                failed_authorizations_per_domain_per_account: LimitConfig::new(200, H),
            },
            LimitsPreset::Private => Limits {
                // Fleets sit behind one NAT or node address and each client
                // registers once: 300 absorbs a fleet's first start; a pod
                // that registers on every restart is slowed to one account
                // per 36 s once the burst is gone.
                new_registrations_per_ip_address: LimitConfig::new(300, 3 * H),
                // One automation account (cert-manager, our agent) may drive
                // every name; renewals are exempt. 20,000 per 3 h bootstraps
                // tens of thousands of names in hours; a script in a tight
                // loop is held to one order per 0.54 s after the burst.
                new_orders_per_account: LimitConfig::new(20_000, 3 * H),
                // In a private PKI one registered domain holds everything
                // (svc.example.internal, db.example.internal ...): Let's
                // Encrypt's 50 per week is the lock-out this project exists
                // to prevent. 100,000 per week covers first issuance of tens
                // of thousands of names plus re-keys; a script minting
                // random names stops at 100,000.
                certificates_per_domain: LimitConfig::new(100_000, WEEK),
                // The restart-loop limit (DESIGN.md story 1). Per-replica
                // certificates for one name and re-keys are normal, so 48;
                // a loop that exhausts them still gets one certificate every
                // 30 minutes: bounded, never a day-long lock-out.
                certificates_per_fqdn_set: LimitConfig::new(48, DAY),
                // Failures cost validation work; an operator fixing DNS or a
                // firewall retries in bursts. 30 per hour lets them; a client
                // retrying in a loop gets one attempt per 2 minutes.
                failed_authorizations_per_domain_per_account: LimitConfig::new(30, H),
            },
        }
    }
}

/// One limit: `count` per `period_seconds`, at most `burst` at once.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Requests allowed per period.
    pub count: u64,
    /// The period, seconds.
    pub period_seconds: u64,
    /// Capacity of a full bucket; `count` when unset (Boulder's default too).
    pub burst: Option<u64>,
}

impl LimitConfig {
    /// `count` per `period_seconds` with burst = count.
    pub const fn new(count: u64, period_seconds: u64) -> LimitConfig {
        LimitConfig {
            count,
            period_seconds,
            burst: None,
        }
    }

    /// The burst in force.
    pub fn burst(&self) -> u64 {
        self.burst.unwrap_or(self.count)
    }
}

/// A policy file that does not make sense.
#[derive(Debug, thiserror::Error)]
#[error("policy {source_name}: {message}")]
pub struct PolicyError {
    source_name: String,
    message: String,
}

const KEY_TYPES: &[&str] = &["rsa2048", "rsa3072", "rsa4096", "ecdsa-p256", "ecdsa-p384"];

impl Profile {
    /// The lifetime in seconds.
    pub fn validity_secs(&self) -> i64 {
        (self.validity_hours * 3600.0) as i64
    }
}

impl Policy {
    /// The built-in default policy.
    pub fn builtin() -> Policy {
        // The default file is part of the binary and checked by a unit test.
        Policy::parse(DEFAULT_POLICY, "built-in").expect("built-in policy is valid")
    }

    /// Reads a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            source_name: name.clone(),
            message: format!("cannot read: {e}"),
        })?;
        Policy::parse(&text, &name)
    }

    /// Parses and validates a policy document.
    pub fn parse(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
        let err = |message: String| PolicyError {
            source_name: source_name.to_string(),
            message,
        };
        let policy: Policy = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let mut seen = BTreeMap::new();
        for p in &policy.profiles {
            if !(p.validity_hours * 3600.0 >= 60.0 && p.validity_hours <= 398.0 * 24.0) {
                return Err(err(format!(
                    "profile {:?}: validity_hours must be between one minute and 9552 (398 days)",
                    p.name
                )));
            }
            if seen.insert(p.name.clone(), ()).is_some() {
                return Err(err(format!("profile {:?} is defined twice", p.name)));
            }
        }
        if !seen.contains_key(&policy.default_profile) {
            return Err(err(format!(
                "default_profile {:?} is not one of the [[profile]] names",
                policy.default_profile
            )));
        }
        for k in &policy.keys.allowed {
            if !KEY_TYPES.contains(&k.as_str()) {
                return Err(err(format!(
                    "keys.allowed: unknown key type {k:?}; use one of {KEY_TYPES:?}"
                )));
            }
        }
        policy.lifetimes.check().map_err(err)?;
        let c = &policy.capacity;
        if c.max_concurrent_validations == 0
            || c.max_pending_authzs_per_account == 0
            || c.max_connections == 0
            || c.connection_idle_seconds == 0
        {
            return Err(err("capacity: every value must be at least 1".into()));
        }
        if policy.revocation.max_cascade > MAX_CASCADE_LIMIT {
            return Err(err(format!(
                "revocation.max_cascade = {} exceeds {MAX_CASCADE_LIMIT}",
                policy.revocation.max_cascade
            )));
        }
        for (name, l) in [
            (
                "NewRegistrationsPerIPAddress",
                &policy.limits.new_registrations_per_ip_address,
            ),
            ("NewOrdersPerAccount", &policy.limits.new_orders_per_account),
            (
                "CertificatesPerDomain",
                &policy.limits.certificates_per_domain,
            ),
            (
                "CertificatesPerFQDNSet",
                &policy.limits.certificates_per_fqdn_set,
            ),
            (
                "FailedAuthorizationsPerDomainPerAccount",
                &policy.limits.failed_authorizations_per_domain_per_account,
            ),
        ] {
            if l.count == 0 || l.period_seconds == 0 || l.burst() == 0 {
                return Err(err(format!(
                    "limits.{name}: count, period_seconds and burst must be at least 1"
                )));
            }
        }
        Ok(policy)
    }

    /// Replaces the rate limits with a preset (`ca serve --limits NAME`).
    pub fn with_limits_preset(mut self, preset: LimitsPreset) -> Policy {
        self.limits = preset.limits();
        self
    }

    /// The named profile, or the default when `name` is `None`.
    pub fn profile(&self, name: Option<&str>) -> Option<&Profile> {
        let name = name.unwrap_or(&self.default_profile);
        self.profiles.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_policy_parses() {
        let p = Policy::builtin();
        assert_eq!(p.profile(None).map(|p| p.validity_hours), Some(2160.0));
        assert_eq!(
            p.profile(Some("shortlived")).map(|p| p.validity_hours),
            Some(160.0)
        );
    }

    /// The file and `Limits::default()` must agree: a policy file without
    /// `[limits]` gets the same numbers as the built-in one.
    #[test]
    fn builtin_limits_are_the_private_preset() {
        let p = Policy::builtin();
        assert_eq!(p.limits, Limits::default());
        assert_eq!(p.limits, LimitsPreset::Private.limits());
        assert_eq!(
            p.limits.certificates_per_domain,
            LimitConfig::new(100_000, 604800)
        );
        let bad = format!("{DEFAULT_POLICY}\n[limits.Nope]\ncount = 1\nperiod_seconds = 1\n");
        assert!(Policy::parse(&bad, "t").is_err());
    }

    #[test]
    fn presets_parse_and_reproduce_lets_encrypt() {
        let le = LimitsPreset::parse("letsencrypt").map(LimitsPreset::limits);
        let le = le.expect("letsencrypt preset");
        assert_eq!(le.certificates_per_domain, LimitConfig::new(50, 604800));
        assert_eq!(le.certificates_per_fqdn_set, LimitConfig::new(5, 604800));
        assert_eq!(le.new_orders_per_account, LimitConfig::new(300, 10800));
        let staging = LimitsPreset::parse("letsencrypt-staging").map(LimitsPreset::limits);
        assert_eq!(
            staging.map(|l| l.certificates_per_domain),
            Some(LimitConfig::new(30_000, 604800))
        );
        assert_eq!(LimitsPreset::parse("lets-encrypt"), None);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = format!("{DEFAULT_POLICY}\nsurprise = 1\n");
        let e = Policy::parse(&text, "t").expect_err("unknown key");
        assert!(e.to_string().contains("surprise"), "{e}");
    }

    /// A negative cap used to wrap to "revoke everything" (`cap as usize`);
    /// it must not even parse now, and no lifetime may be zero or negative.
    #[test]
    fn cascade_cap_and_lifetimes_are_validated() {
        for (from, to) in [
            ("max_cascade = 1000", "max_cascade = -1"),
            ("max_cascade = 1000", "max_cascade = 100001"),
            ("pending_authz_hours = 168", "pending_authz_hours = 0"),
            ("valid_authz_hours = 720", "valid_authz_hours = -5"),
            ("order_hours = 168", "order_hours = 100000"),
            ("crl_validity_hours = 24", "crl_validity_hours = 1"),
            (
                "ari_retry_after_seconds = 21600",
                "ari_retry_after_seconds = 0",
            ),
        ] {
            assert!(DEFAULT_POLICY.contains(from), "{from}");
            let text = DEFAULT_POLICY.replace(from, to);
            let e = Policy::parse(&text, "t").expect_err(to);
            let key = to.split(' ').next().unwrap_or_default();
            assert!(e.to_string().contains(key), "{to}: {e}");
        }
    }

    #[test]
    fn default_profile_must_exist() {
        let text = DEFAULT_POLICY.replace(
            "default_profile = \"classic\"",
            "default_profile = \"nope\"",
        );
        let e = Policy::parse(&text, "t").expect_err("bad default");
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
