//! `[dns_secondary]`: which zones to watch (each through a `[[dns_server]]`,
//! whose address and TSIG key serve the zone transfer, the dns-01 records
//! and the TLSA publication alike), which `[[issuer]]` to order from, how
//! often to look, and what to accept.

use serde::Deserialize;

use crate::config::{Config, KeyType};

/// The certificate secondary.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondaryConfig {
    /// The `[[issuer]]` certificates are ordered from.
    pub issuer: String,
    /// How often each zone's SOA serial is asked (a changed serial means a
    /// transfer); an unchanged zone costs one query.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_seconds: u64,
    /// Renew this long before expiry (default: the CA's ARI window, else a
    /// third of the lifetime left, as for every certificate).
    pub renew_before_days: Option<f64>,
    /// Key types a published CSR may use.
    #[serde(default = "default_key_types")]
    pub key_types: Vec<KeyType>,
    /// TTL of the certificate records published.
    #[serde(default = "default_tlsa_ttl")]
    pub tlsa_ttl: u32,
    /// Listen for NOTIFY (RFC 1996) from the primaries on this UDP address
    /// (add it to the zone's `also-notify`): a changed zone is read at once.
    pub notify_listen: Option<std::net::SocketAddr>,
    /// The zones to watch (`[[dns_secondary.zone]]`).
    #[serde(rename = "zone")]
    pub zones: Vec<ZoneConfig>,
}

/// One watched zone.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The `[[dns_server]]` (primary + TSIG key) of the zone.
    pub dns_server: String,
    /// The zone (default: that `[[dns_server]]`'s `zone`).
    pub zone: Option<String>,
}

/// Five minutes: a new CSR is seen within minutes, and a look at an
/// unchanged zone is a single SOA query.
fn default_poll_interval() -> u64 {
    300
}

/// Every key type the agent itself can use.
fn default_key_types() -> Vec<KeyType> {
    vec![
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
    ]
}

/// As `[certificate.tlsa]`'s default: renewals reach fetchers quickly.
fn default_tlsa_ttl() -> u32 {
    300
}

impl SecondaryConfig {
    /// The zone `z` watches, lower case, without the trailing dot.
    pub fn zone_name(config: &Config, z: &ZoneConfig) -> Option<String> {
        let zone = match &z.zone {
            Some(zone) => zone.clone(),
            None => config
                .dns_servers
                .iter()
                .find(|s| s.name.as_deref() == Some(z.dns_server.as_str()))?
                .zone
                .clone()?,
        };
        Some(zone.trim_end_matches('.').to_ascii_lowercase())
    }
}

/// Names of the certificates the secondary manages: `dns:HOST`.
pub const NAME_PREFIX: &str = "dns:";

/// Checks `[dns_secondary]` against the rest of the file.
pub(crate) fn validate(config: &Config) -> Result<(), String> {
    let Some(s) = &config.dns_secondary else {
        return Ok(());
    };
    if config.issuer(&s.issuer).is_none() {
        return Err(format!(
            "[dns_secondary] issuer {:?} is not defined; add an [[issuer]] with that name",
            s.issuer
        ));
    }
    if s.zones.is_empty() {
        return Err(
            "[dns_secondary] watches no zone; add a [[dns_secondary.zone]] with dns_server = \"NAME\""
                .into(),
        );
    }
    if s.poll_interval_seconds == 0 {
        return Err("[dns_secondary] poll_interval_seconds must be > 0".into());
    }
    if s.key_types.is_empty() {
        return Err("[dns_secondary] key_types is empty; no CSR could be accepted".into());
    }
    if let Some(days) = s.renew_before_days
        && !(days > 0.0 && days < 398.0)
    {
        return Err(format!(
            "[dns_secondary] renew_before_days must be between 0 and 398, not {days}"
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for z in &s.zones {
        if !config
            .dns_servers
            .iter()
            .any(|d| d.name.as_deref() == Some(z.dns_server.as_str()))
        {
            return Err(format!(
                "[[dns_secondary.zone]] dns_server {:?} is not defined; add a [[dns_server]] with that name (address, TSIG key)",
                z.dns_server
            ));
        }
        let Some(zone) = SecondaryConfig::zone_name(config, z) else {
            return Err(format!(
                "[[dns_secondary.zone]] with dns_server {:?}: no zone; set zone here or in that [[dns_server]]",
                z.dns_server
            ));
        };
        certkeeper_dns::fqdn(&zone)
            .map_err(|e| format!("[[dns_secondary.zone]] zone {zone:?}: {e}"))?;
        if !seen.insert(zone.clone()) {
            return Err(format!(
                "[[dns_secondary.zone]] zone {zone:?} is listed twice"
            ));
        }
    }
    if let Some(c) = config
        .certificates
        .iter()
        .find(|c| c.name.starts_with(NAME_PREFIX))
    {
        return Err(format!(
            "[[certificate]] {:?}: names starting with {NAME_PREFIX:?} are the DNS secondary's; rename it",
            c.name
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use crate::config::Config;

    fn parse(secondary: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().expect("tmp");
        let secret = dir.path().join("tsig.key");
        std::fs::write(&secret, "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=").expect("secret");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let text = format!(
            r#"
[[issuer]]
name = "ca"
directory = "https://ca.example/directory"

[[dns_server]]
name = "primary"
server = "192.0.2.53:53"
zone = "example.com"
tsig_key = "k."
tsig_secret_file = "{}"
{secondary}"#,
            secret.display()
        );
        Config::parse(&text, "t").map_err(|e| e.to_string())
    }

    #[test]
    fn a_good_section_parses_with_its_defaults() {
        let c = parse(
            "[dns_secondary]\nissuer = \"ca\"\n[[dns_secondary.zone]]\ndns_server = \"primary\"\n",
        )
        .expect("valid");
        let s = c.dns_secondary.clone().expect("section");
        assert_eq!(s.poll_interval_seconds, 300);
        assert_eq!(s.key_types.len(), 5);
        assert_eq!(
            super::SecondaryConfig::zone_name(&c, &s.zones[0]).as_deref(),
            Some("example.com")
        );
    }

    #[test]
    fn mistakes_are_named_with_the_fix() {
        let cases = [
            (
                "[dns_secondary]\nissuer = \"nope\"\n[[dns_secondary.zone]]\ndns_server = \"primary\"\n",
                "issuer \"nope\" is not defined",
            ),
            (
                "[dns_secondary]\nissuer = \"ca\"\nzone = []\n",
                "watches no zone",
            ),
            (
                "[dns_secondary]\nissuer = \"ca\"\n[[dns_secondary.zone]]\ndns_server = \"other\"\n",
                "dns_server \"other\" is not defined",
            ),
            (
                "[dns_secondary]\nissuer = \"ca\"\npoll_interval_seconds = 0\n[[dns_secondary.zone]]\ndns_server = \"primary\"\n",
                "poll_interval_seconds must be > 0",
            ),
            (
                "[dns_secondary]\nissuer = \"ca\"\n[[dns_secondary.zone]]\ndns_server = \"primary\"\n[[dns_secondary.zone]]\ndns_server = \"primary\"\n",
                "listed twice",
            ),
            (
                "[dns_secondary]\nissuer = \"ca\"\nkey_types = [\"dsa\"]\n[[dns_secondary.zone]]\ndns_server = \"primary\"\n",
                "unknown variant",
            ),
            (
                "[dns_secondary]\nissuer = \"ca\"\ntypo = 1\n[[dns_secondary.zone]]\ndns_server = \"primary\"\n",
                "unknown field",
            ),
        ];
        for (section, want) in cases {
            let err = parse(section).expect_err(section);
            assert!(err.contains(want), "{section}: {err}");
        }
    }
}
