//! Configuration of the RFC 2136 dns-01 solver: a `[certificate.dns]`
//! block, or a shared `[[dns_server]]` a certificate names with
//! `dns_server = "NAME"`. `[[dns_server]]` blocks with a `zone` are also
//! used for names (or CNAME targets) in that zone, so one certificate can
//! span zones on different primaries.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use certkeeper_dns::{Propagation, Server, TsigAlgorithm, TsigKey, UpdateClient};
use certkeeper_proto::Clock;
use serde::Deserialize;

use crate::config::{CertificateConfig, ChallengeType, Config};

/// A primary name server that accepts TSIG-signed RFC 2136 updates.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsServerConfig {
    /// Name certificates refer to (`dns_server = "NAME"`); only in `[[dns_server]]`.
    pub name: Option<String>,
    /// The primary's address and port, e.g. `"192.0.2.53:53"`.
    pub server: SocketAddr,
    /// The zone to update; found by walking SOA records when absent.
    pub zone: Option<String>,
    /// TSIG key name, as in the server's `key "NAME" { }` block.
    pub tsig_key: String,
    /// `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    #[serde(default = "default_algorithm")]
    pub tsig_algorithm: String,
    /// File holding the base64 secret (or a `tsig-keygen` key file); must be 0600.
    pub tsig_secret_file: PathBuf,
    /// TTL of the TXT records added.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// How long to wait for every authoritative server to serve the records.
    #[serde(default = "default_propagation_timeout")]
    pub propagation_timeout_seconds: u64,
    /// Port the zone's authoritative servers (from its NS records) answer on.
    #[serde(default = "default_nameserver_port")]
    pub nameserver_port: u16,
    /// Addresses to ask particular name servers at instead of their A/AAAA
    /// records (split horizon, NAT): `{ "ns2.example.com." = "10.0.0.2:53" }`.
    #[serde(default)]
    pub nameservers: BTreeMap<String, SocketAddr>,
}

/// The TLSA deploy target (`[certificate.tlsa]`): publishes the served
/// certificate (leaf `3 0 0`, intermediates `0 0 0`) at
/// `_letsencrypt._tcp.HOST`, replacing the previous ones in one UPDATE.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsaDeployConfig {
    /// The host whose TLSA records these are (default: the first name).
    pub host: Option<String>,
    /// The `[[dns_server]]` to update (default: the certificate's own
    /// `[certificate.dns]` / `dns_server`).
    pub dns_server: Option<String>,
    /// TTL of the records.
    #[serde(default = "default_tlsa_ttl")]
    pub ttl: u32,
}

/// Five minutes: a renewed certificate reaches fetchers quickly, and the
/// old one stays valid for weeks anyway.
fn default_tlsa_ttl() -> u32 {
    300
}

/// The server block the TLSA target of `cert` updates.
pub fn tlsa_server_for<'a>(
    config: &'a Config,
    cert: &'a CertificateConfig,
) -> Option<&'a DnsServerConfig> {
    let t = cert.tlsa.as_ref()?;
    match &t.dns_server {
        Some(name) => config
            .dns_servers
            .iter()
            .find(|s| s.name.as_deref() == Some(name.as_str())),
        None => server_for(config, cert),
    }
}

fn default_algorithm() -> String {
    "hmac-sha256".into()
}
/// A minute: long enough that the CA's resolvers see it, short enough that
/// a stale negative cache of the name expires quickly.
fn default_ttl() -> u32 {
    60
}
/// Two minutes: NOTIFY reaches healthy secondaries in seconds.
fn default_propagation_timeout() -> u64 {
    120
}
fn default_nameserver_port() -> u16 {
    53
}

/// A ready-to-use server: the update client and how to check propagation.
#[derive(Clone, Debug)]
pub struct DnsTarget {
    /// Sends the updates.
    pub client: UpdateClient,
    /// The configured zone, if any.
    pub zone: Option<certkeeper_dns::Name>,
    /// TXT TTL.
    pub ttl: u32,
    /// Propagation timing.
    pub propagation: Propagation,
    /// Port of the authoritative servers.
    pub nameserver_port: u16,
    /// Per-name-server address overrides.
    pub nameservers: BTreeMap<certkeeper_dns::Name, SocketAddr>,
}

impl DnsServerConfig {
    /// Loads the key (checking the secret file's mode) and builds the client.
    pub fn target(&self, clock: Arc<dyn Clock>) -> Result<DnsTarget, String> {
        let algorithm = TsigAlgorithm::parse(&self.tsig_algorithm).map_err(|e| e.to_string())?;
        let key = TsigKey::from_file(&self.tsig_key, algorithm, &self.tsig_secret_file)
            .map_err(|e| e.to_string())?;
        let zone = match &self.zone {
            Some(z) => Some(certkeeper_dns::fqdn(z).map_err(|e| e.to_string())?),
            None => None,
        };
        let mut nameservers = BTreeMap::new();
        for (ns, addr) in &self.nameservers {
            nameservers.insert(certkeeper_dns::fqdn(ns).map_err(|e| e.to_string())?, *addr);
        }
        if self.propagation_timeout_seconds == 0 {
            return Err("propagation_timeout_seconds must be > 0".into());
        }
        Ok(DnsTarget {
            client: UpdateClient::new(Server::new(self.server), key, clock),
            zone,
            ttl: self.ttl,
            propagation: Propagation {
                timeout: Duration::from_secs(self.propagation_timeout_seconds),
                ..Propagation::default()
            },
            nameserver_port: self.nameserver_port,
            nameservers,
        })
    }

    /// What decides where records go, for the configuration fingerprint.
    pub fn fingerprint(&self) -> String {
        format!(
            "rfc2136 {} {:?} {} {}",
            self.server, self.zone, self.tsig_key, self.tsig_algorithm
        )
    }
}

/// The server block a certificate uses: its own `[certificate.dns]`, or
/// the `[[dns_server]]` it names.
pub fn server_for<'a>(
    config: &'a Config,
    cert: &'a CertificateConfig,
) -> Option<&'a DnsServerConfig> {
    cert.dns.as_ref().or_else(|| {
        let name = cert.dns_server.as_ref()?;
        config
            .dns_servers
            .iter()
            .find(|s| s.name.as_deref() == Some(name.as_str()))
    })
}

/// Checks the dns-01 settings of the whole file: names unique, references
/// resolve, one way to publish per certificate, keys loadable (the secret
/// file exists and is 0600).
pub(crate) fn validate(config: &Config) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    let check = |at: &str, s: &DnsServerConfig| -> Result<(), String> {
        s.target(Arc::new(certkeeper_proto::SystemClock))
            .map(|_| ())
            .map_err(|e| format!("{at}: {e}"))
    };
    for s in &config.dns_servers {
        let Some(name) = &s.name else {
            return Err(format!(
                "[[dns_server]] for {}: name is missing; certificates refer to it with dns_server = \"NAME\"",
                s.server
            ));
        };
        if !seen.insert(name.as_str()) {
            return Err(format!("[[dns_server]] name {name:?} is used twice"));
        }
        check(&format!("[[dns_server]] {name:?}"), s)?;
    }
    for c in &config.certificates {
        let at = format!("[[certificate]] {:?}", c.name);
        let ways = usize::from(c.dns_hook.is_some())
            + usize::from(c.dns.is_some())
            + usize::from(c.dns_server.is_some());
        if c.tlsa.is_some() && tlsa_server_for(config, c).is_none() {
            return Err(format!(
                "{at}: [certificate.tlsa] needs a server: set its dns_server to a [[dns_server]] name, or give the certificate [certificate.dns] / dns_server"
            ));
        }
        if c.challenge != ChallengeType::Dns01 {
            if ways > 0 {
                return Err(format!(
                    "{at}: dns_hook, dns and dns_server only apply to challenge = \"dns-01\""
                ));
            }
            continue;
        }
        if ways != 1 {
            return Err(format!(
                "{at}: challenge dns-01 needs exactly one of [certificate.dns] (RFC 2136), dns_server = \"NAME\" (a [[dns_server]]) or [certificate.dns_hook]"
            ));
        }
        if let Some(name) = &c.dns_server
            && !seen.contains(name.as_str())
        {
            return Err(format!(
                "{at}: dns_server {name:?} is not defined; add a [[dns_server]] with that name"
            ));
        }
        if let Some(d) = &c.dns {
            if d.name.is_some() {
                return Err(format!(
                    "{at}: [certificate.dns] takes no name (that is for [[dns_server]])"
                ));
            }
            check(&format!("{at} [certificate.dns]"), d)?;
        }
    }
    Ok(())
}
