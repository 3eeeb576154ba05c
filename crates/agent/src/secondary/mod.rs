//! The certificate secondary (`[dns_secondary]`): watches zones for CSRs
//! published as TLSA records at `_letsencrypt._tcp.HOST` (`3 255 0`, the
//! layout of dns-letsencrypt-secondary) and orders certificates for them.
//!
//! It adds no issuance path of its own. Each accepted CSR becomes a managed
//! certificate named `dns:HOST` ([`certificates`]) in the ordinary
//! pipeline: planner, guard (ledger, budgets, Retry-After), the persisted
//! order handle (a restart resumes, never re-orders), dns-01 through the
//! zone's own `[[dns_server]]`, and the `tlsa` deploy target, which
//! replaces the certificate records in one UPDATE and keeps the CSR. The
//! slot records the CSR where it would record a key: the service keeps its
//! key.
//!
//! A new key in the CSR, or other names, changes the certificate's
//! configuration fingerprint, which the planner renews on.

mod config;
pub mod csr;
mod discover;
pub mod notify;

use std::sync::Arc;

pub(crate) use config::validate;
pub use config::{NAME_PREFIX, SecondaryConfig, ZoneConfig};
pub use csr::{ForeignCsr, csr_der_from_pem};
pub use discover::{Secondary, ZoneReport};

use certkeeper_store::SecondaryHostRow;

use crate::config::{CertificateConfig, ChallengeType, Config};
use crate::dns_config::TlsaDeployConfig;

/// The managed certificates for the accepted CSRs in `hosts` (each checked
/// again: a policy changed since discovery applies at once).
pub fn certificates(config: &Config, hosts: &[SecondaryHostRow]) -> Vec<CertificateConfig> {
    let Some(s) = &config.dns_secondary else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for h in hosts.iter().filter(|h| h.accepted) {
        let Some(zone_config) = s
            .zones
            .iter()
            .find(|z| SecondaryConfig::zone_name(config, z).as_deref() == Some(h.zone.as_str()))
        else {
            // A zone no longer watched: its hosts are no longer managed.
            continue;
        };
        let Some(der) = csr_der_from_pem(&h.csr_pem) else {
            continue;
        };
        let csr = match csr::check(&h.host, &h.zone, &der, &s.key_types) {
            Ok(csr) => csr,
            Err(reason) => {
                tracing::warn!(host = %h.host, %reason, "DNS secondary: CSR no longer accepted");
                continue;
            }
        };
        let mut cert = CertificateConfig::new(
            format!("{NAME_PREFIX}{}", h.host),
            csr.names.clone(),
            s.issuer.clone(),
        );
        cert.key = csr.key_type;
        cert.challenge = ChallengeType::Dns01;
        cert.dns_server = Some(zone_config.dns_server.clone());
        cert.tlsa = Some(TlsaDeployConfig {
            host: Some(h.host.clone()),
            dns_server: None,
            ttl: s.tlsa_ttl,
        });
        cert.renew_before_days = s.renew_before_days;
        cert.csr = Some(Arc::new(csr));
        out.push(cert);
    }
    out
}

/// `config` plus the secondary's certificates for `hosts`: what the daemon
/// and one-shot commands run the agent on.
pub fn with_discovered(config: &Config, hosts: &[SecondaryHostRow]) -> Config {
    let mut c = config.clone();
    c.certificates.extend(certificates(config, hosts));
    c
}

/// What decides the secondary's certificates, to tell when a new zone read
/// changed them (then the daemon rebuilds the agent on the new set).
pub fn identity(certs: &[CertificateConfig]) -> Vec<(String, Vec<String>, String)> {
    let mut v: Vec<_> = certs
        .iter()
        .filter_map(|c| {
            let csr = c.csr.as_ref()?;
            Some((c.name.clone(), c.names.clone(), csr.spki_sha256.clone()))
        })
        .collect();
    v.sort();
    v
}
