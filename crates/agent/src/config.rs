//! The agent's configuration file (TOML). Parsed into types at the edge:
//! unknown keys, dangling issuer references and impossible combinations are
//! errors that name the key and the fix. Every default is safe for production
//! and documented in docs/config.md.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::limits::{CaLimits, LimitsConfig};

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Data directory: the agent's database (certificates, keys, state).
    #[serde(default = "default_data")]
    pub data: PathBuf,
    /// Process-wide settings.
    #[serde(default)]
    pub agent: AgentSettings,
    /// Run the built-in CA in this process too.
    pub builtin_ca: Option<BuiltinCa>,
    /// ACME CAs certificates come from.
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
    /// Managed certificates.
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<CertificateConfig>,
    /// The admin listener: dashboard, JSON API, `/metrics`. (`[status]`
    /// is its old name, still accepted.)
    #[serde(alias = "status")]
    pub admin: Option<AdminConfig>,
    /// The key rotator (HPKE key configs, signing keys); see docs/config.md.
    pub keys: Option<certkeeper_keys::KeysConfig>,
    /// Shared RFC 2136 primaries for dns-01 (`[[dns_server]]`).
    #[serde(default, rename = "dns_server")]
    pub dns_servers: Vec<crate::dns_config::DnsServerConfig>,
    /// The certificate secondary: orders for CSRs published in DNS
    /// (`[dns_secondary]`, see `secondary`).
    pub dns_secondary: Option<crate::secondary::SecondaryConfig>,
}

/// The admin listener. Served over TLS with one of the managed
/// certificates (through the hot-swapping resolver, so a renewal is visible
/// to real TLS clients at once), or plain HTTP on loopback only.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// The `[[certificate]]` it serves TLS with.
    pub certificate: Option<String>,
    /// A file (mode 0600) holding the bearer token that actions (renew,
    /// swap) require; without it the API is read-only.
    pub token_file: Option<PathBuf>,
}

/// Process-wide settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    /// Built-in http-01 responder address (the CA connects to port 80 of the name).
    #[serde(default = "default_http01_listen")]
    pub http01_listen: SocketAddr,
    /// Built-in tls-alpn-01 responder address (the CA connects to port 443).
    #[serde(default = "default_tlsalpn01_listen")]
    pub tlsalpn01_listen: SocketAddr,
    /// How often the daemon re-plans when nothing is due sooner.
    #[serde(default = "default_check_interval")]
    pub check_interval_seconds: u64,
    /// First retry delay after a failure; doubles per consecutive failure.
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial_seconds: u64,
    /// Longest retry delay.
    #[serde(default = "default_backoff_max")]
    pub backoff_max_seconds: u64,
    /// New orders per issuer account per minute, across all certificates
    /// (and processes sharing the data directory).
    #[serde(default = "default_max_orders_per_minute")]
    pub max_orders_per_minute: u32,
    /// Jobs (orders, polls, deploys) running at once, across all issuers.
    #[serde(default = "default_max_concurrent_jobs")]
    pub max_concurrent_jobs: u32,
    /// Jobs talking to any one issuer at once.
    #[serde(default = "default_max_concurrent_per_issuer")]
    pub max_concurrent_per_issuer: u32,
    /// How often each served certificate's CRL is fetched (sooner when its
    /// nextUpdate says so, or when the CA's ARI window says "replace now").
    #[serde(default = "default_revocation_check")]
    pub revocation_check_seconds: u64,
    /// Command run by `sh -c` for every lifecycle event, with
    /// `CERTKEEPER_EVENT`, `CERTKEEPER_CERTIFICATE`, `CERTKEEPER_SLOT` and
    /// `CERTKEEPER_DETAIL` in its environment.
    pub event_hook: Option<String>,
    /// On SIGTERM or SIGINT, how long running jobs get to finish before
    /// they are cancelled (safe: each resumes at its next start).
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_seconds: u64,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            http01_listen: default_http01_listen(),
            tlsalpn01_listen: default_tlsalpn01_listen(),
            check_interval_seconds: default_check_interval(),
            backoff_initial_seconds: default_backoff_initial(),
            backoff_max_seconds: default_backoff_max(),
            max_orders_per_minute: default_max_orders_per_minute(),
            max_concurrent_jobs: default_max_concurrent_jobs(),
            max_concurrent_per_issuer: default_max_concurrent_per_issuer(),
            revocation_check_seconds: default_revocation_check(),
            event_hook: None,
            shutdown_grace_seconds: default_shutdown_grace(),
        }
    }
}

/// The built-in CA, when the agent should run it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinCa {
    /// HTTPS listen address of its ACME directory.
    #[serde(default = "default_ca_listen")]
    pub listen: SocketAddr,
    /// Port it validates http-01 on.
    #[serde(default = "default_http01_port")]
    pub http01_port: u16,
}

/// An ACME CA.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Name certificates refer to.
    pub name: String,
    /// ACME directory URL.
    pub directory: String,
    /// `mailto:` contacts for the account.
    #[serde(default)]
    pub contact: Vec<String>,
    /// External account binding, when the CA requires it.
    pub eab: Option<EabConfig>,
    /// PEM file of roots to trust for the CA's own HTTPS (private CAs, pebble).
    pub root: Option<PathBuf>,
    /// Preferred certificate profile (draft-ietf-acme-profiles).
    pub profile: Option<String>,
    /// The CA's rate limits, enforced before contacting it: a preset name
    /// or a table (default: by directory URL, see docs/config.md).
    pub limits: Option<LimitsConfig>,
    /// The issuer's transparency log: inclusion checked before deploy,
    /// watched for certificates the agent did not order.
    pub tlog: Option<crate::tlog_config::TlogConfig>,
    /// A crt.sh-style search endpoint watched for such certificates.
    pub ct_search: Option<crate::tlog_config::CtSearchConfig>,
}

impl IssuerConfig {
    /// The limits in force for this issuer (validated at parse time).
    pub fn ca_limits(&self) -> CaLimits {
        CaLimits::for_issuer(self.limits.as_ref(), &self.directory).unwrap_or_default()
    }
}

/// External account binding credentials (RFC 8555 §7.3.4).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EabConfig {
    /// Key id from the CA.
    pub kid: String,
    /// base64url HMAC key from the CA.
    pub hmac_key: String,
}

impl std::fmt::Debug for EabConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EabConfig")
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

/// Certificate key types.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// ECDSA P-256: small, fast, universally supported.
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// ECDSA P-384.
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    /// RSA 2048.
    Rsa2048,
    /// RSA 3072.
    Rsa3072,
    /// RSA 4096.
    Rsa4096,
}

/// Challenge types.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum ChallengeType {
    /// RFC 8555 §8.3.
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// RFC 8737.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// RFC 8555 §8.4, through `[certificate.dns]`, `dns_server` or `dns_hook`.
    #[serde(rename = "dns-01")]
    Dns01,
}

/// A managed certificate.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// Unique name (used by `status`, `renew`, `issue` and in the store).
    pub name: String,
    /// DNS names and IP addresses.
    pub names: Vec<String>,
    /// Which `[[issuer]]` to order from.
    pub issuer: String,
    /// A second `[[issuer]]` (another CA) for a backup certificate with its
    /// own key, held ready and served when the primary is revoked, expires
    /// unrenewed or its key is compromised.
    pub backup: Option<String>,
    /// After a swap to the backup, serve the primary again once it is
    /// re-issued and healthy (default), or stay on the backup.
    #[serde(default = "default_true")]
    pub return_to_primary: bool,
    /// Key type for new keys.
    #[serde(default)]
    pub key: KeyType,
    /// Keep the same key across renewals (default: a fresh key each time).
    #[serde(default)]
    pub reuse_key: bool,
    /// Challenge type.
    #[serde(default)]
    pub challenge: ChallengeType,
    /// http-01 by writing token files under this directory's
    /// `.well-known/acme-challenge/` instead of the built-in responder.
    pub webroot: Option<PathBuf>,
    /// dns-01 through commands.
    pub dns_hook: Option<DnsHook>,
    /// dns-01 by RFC 2136 UPDATE to this server (`[certificate.dns]`).
    pub dns: Option<crate::dns_config::DnsServerConfig>,
    /// dns-01 by RFC 2136 UPDATE through the `[[dns_server]]` of this name.
    pub dns_server: Option<String>,
    /// Also publish the served certificate as TLSA records (`[certificate.tlsa]`).
    pub tlsa: Option<crate::dns_config::TlsaDeployConfig>,
    /// Renew this long before expiry instead of at a third of the lifetime
    /// left (ignored when the CA offers an ARI window).
    pub renew_before_days: Option<f64>,
    /// Where to deploy.
    #[serde(default)]
    pub deploy: Vec<DeployConfig>,
    /// Set only for certificates the DNS secondary found: the CSR the
    /// service published, used instead of a key the agent would hold.
    #[serde(skip)]
    pub csr: Option<std::sync::Arc<crate::secondary::ForeignCsr>>,
}

/// dns-01 hook commands, run by `sh -c` with `CERTKEEPER_DOMAIN`,
/// `CERTKEEPER_TXT_NAME` and `CERTKEEPER_TXT_VALUE` in the environment.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsHook {
    /// Publishes the TXT record.
    pub present: String,
    /// Removes it.
    pub cleanup: String,
    /// Waits this long after `present` for the record to propagate.
    #[serde(default)]
    pub propagation_seconds: u64,
}

/// A deploy target: a directory of PEM files and an optional reload command.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// Directory for cert.pem, chain.pem, fullchain.pem, key.pem (0600).
    pub dir: PathBuf,
    /// Also write combined.pem (key + full chain, 0600).
    #[serde(default)]
    pub combined: bool,
    /// Command run by `sh -c` after the files are in place.
    pub reload: Option<String>,
    /// Kill the reload command after this long.
    #[serde(default = "default_reload_timeout")]
    pub reload_timeout_seconds: u64,
    /// Retries of a failing reload command.
    #[serde(default = "default_reload_retries")]
    pub reload_retries: u32,
}

fn default_data() -> PathBuf {
    PathBuf::from("certkeeper-data")
}
fn default_http01_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 80))
}
fn default_tlsalpn01_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 443))
}
/// Five minutes: short enough to pick up ARI changes and retries promptly,
/// long enough to cost nothing.
fn default_check_interval() -> u64 {
    300
}
/// cert-manager and CertMagic start retrying after minutes, not seconds:
/// a failure that repeats at once only spends the CA's failure budget.
fn default_backoff_initial() -> u64 {
    300
}
/// A day: a certificate with a third of its lifetime left survives many retries.
fn default_backoff_max() -> u64 {
    86400
}
/// Twenty a minute: far below any public CA's per-account order limit
/// (Let's Encrypt: 300 per 3 hours, refilled one per 36 s), yet no wait for
/// a handful of certificates.
fn default_max_orders_per_minute() -> u32 {
    20
}
fn default_true() -> bool {
    true
}
/// Enough to re-issue thousands of certificates quickly after a CA incident
/// while the per-issuer bound keeps any one CA from being flooded.
fn default_max_concurrent_jobs() -> u32 {
    64
}
/// Eight orders in flight per CA: well inside public CAs' concurrency
/// tolerance, and the per-account order pace still applies on top.
fn default_max_concurrent_per_issuer() -> u32 {
    8
}
/// An hour: CAs must publish a revocation on their CRLs within hours, and a
/// swap to the backup an hour later is still within any CA's 24-hour
/// revocation deadline; ARI "replace now" windows trigger an earlier look.
fn default_revocation_check() -> u64 {
    3600
}
fn default_shutdown_grace() -> u64 {
    10
}
fn default_ca_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 14000))
}
fn default_http01_port() -> u16 {
    80
}
fn default_reload_timeout() -> u64 {
    30
}
fn default_reload_retries() -> u32 {
    3
}

/// A configuration file that is unreadable or does not make sense.
#[derive(Debug, thiserror::Error)]
#[error("config {file}: {message}")]
pub struct ConfigError {
    file: String,
    message: String,
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, &file)
    }

    /// Parses and validates a document.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError {
            file: file.to_string(),
            message,
        };
        let config: Config = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let mut issuers = BTreeSet::new();
        for i in &config.issuers {
            if !issuers.insert(i.name.as_str()) {
                return Err(err(format!("[[issuer]] name {:?} is used twice", i.name)));
            }
            if !i.directory.starts_with("https://") {
                return Err(err(format!(
                    "[[issuer]] {:?}: directory must be an https:// URL",
                    i.name
                )));
            }
            if let Err(e) = CaLimits::for_issuer(i.limits.as_ref(), &i.directory) {
                return Err(err(format!("[[issuer]] {:?}: {e}", i.name)));
            }
        }
        let mut names = BTreeSet::new();
        for c in &config.certificates {
            let at = format!("[[certificate]] {:?}", c.name);
            if !names.insert(c.name.as_str()) {
                return Err(err(format!("{at}: name is used twice")));
            }
            if c.names.is_empty() {
                return Err(err(format!(
                    "{at}: names is empty; list the DNS names or IPs to cover"
                )));
            }
            if !issuers.contains(c.issuer.as_str()) {
                return Err(err(format!(
                    "{at}: issuer {:?} is not defined; add an [[issuer]] with that name",
                    c.issuer
                )));
            }
            if let Some(backup) = &c.backup {
                let Some(b) = config.issuers.iter().find(|i| &i.name == backup) else {
                    return Err(err(format!(
                        "{at}: backup issuer {backup:?} is not defined; add an [[issuer]] with that name"
                    )));
                };
                let primary = config.issuers.iter().find(|i| i.name == c.issuer);
                if backup == &c.issuer || primary.is_some_and(|p| p.directory == b.directory) {
                    return Err(err(format!(
                        "{at}: backup issuer {backup:?} is the same CA as issuer {:?}; a backup must come from a different CA (another directory URL)",
                        c.issuer
                    )));
                }
            }
            if c.names.iter().any(|n| n.starts_with("*.")) && c.challenge != ChallengeType::Dns01 {
                return Err(err(format!(
                    "{at}: wildcard names need challenge = \"dns-01\""
                )));
            }
            if c.webroot.is_some() && c.challenge != ChallengeType::Http01 {
                return Err(err(format!("{at}: webroot only applies to http-01")));
            }
            if let Some(days) = c.renew_before_days
                && !(days > 0.0 && days < 398.0)
            {
                return Err(err(format!(
                    "{at}: renew_before_days must be between 0 and 398, not {days}"
                )));
            }
        }
        crate::dns_config::validate(&config).map_err(err)?;
        crate::tlog_config::validate(&config).map_err(err)?;
        crate::secondary::validate(&config).map_err(err)?;
        if let Some(admin) = &config.admin {
            match &admin.certificate {
                Some(name) if !names.contains(name.as_str()) => {
                    return Err(err(format!(
                        "[admin] certificate {name:?} is not a [[certificate]] name"
                    )));
                }
                None if !admin.listen.ip().is_loopback() => {
                    return Err(err(format!(
                        "[admin] listen {} is not loopback: set [admin] certificate so the dashboard and API are served over TLS",
                        admin.listen
                    )));
                }
                _ => {}
            }
        }
        if config.agent.backoff_initial_seconds == 0
            || config.agent.backoff_max_seconds < config.agent.backoff_initial_seconds
        {
            return Err(err(
                "agent: backoff_initial_seconds must be > 0 and <= backoff_max_seconds".into(),
            ));
        }
        if config.agent.max_concurrent_jobs == 0 || config.agent.max_concurrent_per_issuer == 0 {
            return Err(err(
                "agent: max_concurrent_jobs and max_concurrent_per_issuer must be > 0".into(),
            ));
        }
        if config.agent.revocation_check_seconds == 0 {
            return Err(err("agent: revocation_check_seconds must be > 0".into()));
        }
        if let Some(keys) = &config.keys {
            keys.policies().map_err(|e| err(e.to_string()))?;
        }
        if config.agent.max_orders_per_minute == 0 {
            return Err(err(
                "agent: max_orders_per_minute must be > 0 (it caps new orders per issuer account)"
                    .into(),
            ));
        }
        Ok(config)
    }

    /// The issuer a certificate refers to (validated at parse time).
    pub fn issuer(&self, name: &str) -> Option<&IssuerConfig> {
        self.issuers.iter().find(|i| i.name == name)
    }

    /// A certificate by name.
    pub fn certificate(&self, name: &str) -> Option<&CertificateConfig> {
        self.certificates.iter().find(|c| c.name == name)
    }
}

impl CertificateConfig {
    /// A certificate `name` for `names` from `issuer`, every other setting
    /// at its configuration-file default (http-01, a fresh P-256 key per
    /// issuance, no backup, no deploy target). For configurations built in
    /// code (`up`'s defaults, `bench fleet`), so a new setting is defaulted
    /// once.
    pub fn new(name: impl Into<String>, names: Vec<String>, issuer: impl Into<String>) -> Self {
        CertificateConfig {
            name: name.into(),
            names,
            issuer: issuer.into(),
            backup: None,
            return_to_primary: default_true(),
            key: KeyType::default(),
            reuse_key: false,
            challenge: ChallengeType::default(),
            webroot: None,
            dns_hook: None,
            dns: None,
            dns_server: None,
            tlsa: None,
            renew_before_days: None,
            deploy: Vec::new(),
            csr: None,
        }
    }

    /// A fingerprint of everything that decides what is issued and how it
    /// is validated: a change skips the failure backoff (the operator fixed
    /// something, so retrying at once is the point).
    pub fn fingerprint(&self, issuer: &IssuerConfig, agent: &AgentSettings) -> String {
        let mut names = self.names.clone();
        names.sort();
        let solver = match self.challenge {
            ChallengeType::Http01 => match &self.webroot {
                Some(root) => format!("webroot {}", root.display()),
                None => format!("listen {}", agent.http01_listen),
            },
            ChallengeType::TlsAlpn01 => format!("listen {}", agent.tlsalpn01_listen),
            ChallengeType::Dns01 => match (&self.dns_hook, &self.dns, &self.dns_server) {
                (Some(h), _, _) => format!("{} | {}", h.present, h.cleanup),
                (_, Some(d), _) => d.fingerprint(),
                (_, _, Some(name)) => format!("dns_server {name}"),
                _ => String::new(),
            },
        };
        // A new CSR (another key) at the same host is a new certificate.
        let csr = self
            .csr
            .as_ref()
            .map(|c| format!("|csr {}", c.spki_sha256))
            .unwrap_or_default();
        format!(
            "{}|{}|{:?}|{:?}|{}|{:?}|{:?}|{solver}{csr}",
            names.join(","),
            issuer.directory,
            self.key,
            self.challenge,
            self.reuse_key,
            issuer.profile,
            self.renew_before_days
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
data = "/var/lib/certkeeper"
[[issuer]]
name = "le"
directory = "https://acme.example/directory"
contact = ["mailto:ops@example.com"]

[[certificate]]
name = "web"
names = ["example.com", "www.example.com"]
issuer = "le"

[[certificate.deploy]]
dir = "/etc/ssl/web"
reload = "systemctl reload nginx"
"#;

    #[test]
    fn a_certificate_built_in_code_has_the_file_defaults() {
        let c = Config::parse(GOOD, "t").expect("valid");
        let parsed = c.certificate("web").expect("web");
        let built = CertificateConfig {
            deploy: parsed.deploy.clone(),
            ..CertificateConfig::new("web", parsed.names.clone(), "le")
        };
        let issuer = &c.issuers[0];
        assert_eq!(
            built.fingerprint(issuer, &c.agent),
            parsed.fingerprint(issuer, &c.agent)
        );
        assert_eq!(
            (
                built.return_to_primary,
                built.reuse_key,
                built.backup.is_none()
            ),
            (
                parsed.return_to_primary,
                parsed.reuse_key,
                parsed.backup.is_none()
            )
        );
    }

    #[test]
    fn a_good_config_parses_with_defaults() {
        let c = Config::parse(GOOD, "t").expect("valid");
        let web = c.certificate("web").expect("web");
        assert_eq!(web.key, KeyType::EcdsaP256);
        assert_eq!(web.challenge, ChallengeType::Http01);
        assert_eq!(web.deploy[0].reload_timeout_seconds, 30);
        assert_eq!(c.agent.backoff_initial_seconds, 300);
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let e = Config::parse(&GOOD.replace("reload =", "relaod ="), "t").expect_err("typo");
        assert!(e.to_string().contains("relaod"), "{e}");
    }

    #[test]
    fn dangling_issuer_is_rejected() {
        let e = Config::parse(&GOOD.replace("issuer = \"le\"", "issuer = \"nope\""), "t")
            .expect_err("dangling");
        assert!(e.to_string().contains("\"nope\" is not defined"), "{e}");
    }

    #[test]
    fn wildcards_need_dns01() {
        let e = Config::parse(
            &GOOD.replace("\"www.example.com\"", "\"*.example.com\""),
            "t",
        )
        .expect_err("wildcard");
        assert!(e.to_string().contains("dns-01"), "{e}");
    }

    #[test]
    fn limits_take_a_preset_or_a_table_and_default_safely() {
        let c = Config::parse(GOOD, "t").expect("valid");
        assert_eq!(c.agent.max_orders_per_minute, 20);
        assert_eq!(c.issuers[0].ca_limits(), CaLimits::default());

        let le = GOOD.replace(
            "https://acme.example/directory",
            crate::limits::LETSENCRYPT_DIRECTORY,
        );
        let c = Config::parse(&le, "t").expect("valid");
        assert_eq!(c.issuers[0].ca_limits(), CaLimits::letsencrypt());

        let table = GOOD.replace(
            "contact = [",
            "limits = { certificates_per_fqdn_set = { count = 2, period_seconds = 3600 } }\ncontact = [",
        );
        let c = Config::parse(&table, "t").expect("valid");
        let limits = c.issuers[0].ca_limits();
        assert_eq!(
            limits.certificates_per_fqdn_set,
            Some(crate::limits::Limit {
                count: 2,
                period_seconds: 3600
            })
        );
        assert_eq!(limits.certificates_per_domain, None);

        let bad = GOOD.replace("contact = [", "limits = \"letsencrypt-prod\"\ncontact = [");
        let e = Config::parse(&bad, "t").expect_err("unknown preset");
        assert!(e.to_string().contains("not a preset"), "{e}");
        let zero = GOOD.replace(
            "[[certificate]]",
            "[agent]\nmax_orders_per_minute = 0\n\n[[certificate]]",
        );
        let e = Config::parse(&zero, "t").expect_err("zero");
        assert!(e.to_string().contains("max_orders_per_minute"), "{e}");
    }
}
