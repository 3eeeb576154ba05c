//! The `tlsa` deploy target: the served certificate as TLSA records at
//! `_letsencrypt._tcp.HOST` (leaf `3 0 0`, intermediates `0 0 0`), for
//! services that fetch their certificate from DNS (`certkeeper dns fetch`).
//! The previous certificate records are replaced in one UPDATE, so no query
//! sees none; the CSR record (`3 255 0`) stays. The key is never published.

use std::path::PathBuf;
use std::sync::Arc;

use certkeeper_dns::tlsa::{fetch, publish_certificate, tlsa_name};
use certkeeper_dns::{Name, UpdateClient, discover_zone};
use certkeeper_proto::Clock;

use crate::config::Config;
use crate::deploy::{DeployError, DeployFuture, DeployReport, Deployer};
use crate::dns_config::tlsa_server_for;
use crate::targets::{Role, Targets};

/// Publishes a certificate's chain as TLSA records.
#[derive(Debug)]
pub struct TlsaTarget {
    host: String,
    zone: Option<Name>,
    client: UpdateClient,
    ttl: u32,
}

impl TlsaTarget {
    fn error(&self, reason: impl std::fmt::Display) -> DeployError {
        DeployError::Dns {
            target: self.describe(),
            reason: reason.to_string(),
        }
    }

    fn ders(&self, chain_pem: &str) -> Result<Vec<Vec<u8>>, DeployError> {
        let ders: Vec<Vec<u8>> = x509_parser::pem::Pem::iter_from_buffer(chain_pem.as_bytes())
            .filter_map(|p| p.ok())
            .filter(|p| p.label == "CERTIFICATE")
            .map(|p| p.contents)
            .collect();
        if ders.is_empty() {
            return Err(DeployError::Input {
                dir: PathBuf::from(self.describe()),
                reason: "the chain holds no certificate".into(),
            });
        }
        Ok(ders)
    }
}

impl Deployer for TlsaTarget {
    fn describe(&self) -> String {
        format!("tlsa:_letsencrypt._tcp.{}", self.host)
    }

    fn is_current<'a>(&'a self, chain_pem: &'a str, _key_pem: &'a str) -> DeployFuture<'a, bool> {
        Box::pin(async move {
            let ders = self.ders(chain_pem)?;
            let set = fetch(self.client.server(), &self.host)
                .await
                .map_err(|e| self.error(e))?;
            let mut want = ders[1..].to_vec();
            let mut have = set.intermediates.clone();
            want.sort();
            have.sort();
            Ok(set.leaves == ders[..1] && want == have)
        })
    }

    fn deploy<'a>(
        &'a self,
        chain_pem: &'a str,
        _key_pem: &'a str,
    ) -> DeployFuture<'a, DeployReport> {
        Box::pin(async move {
            let ders = self.ders(chain_pem)?;
            let zone = match &self.zone {
                Some(z) => z.clone(),
                None => {
                    let name = tlsa_name(&self.host).map_err(|e| self.error(e))?;
                    discover_zone(self.client.server(), &name)
                        .await
                        .map_err(|e| self.error(e))?
                }
            };
            publish_certificate(
                &self.client,
                &zone,
                &self.host,
                self.ttl,
                &ders[0],
                &ders[1..],
            )
            .await
            .map_err(|e| self.error(e))?;
            tracing::info!(target = %self.describe(), "TLSA records published");
            Ok(DeployReport {
                dir: PathBuf::from(self.describe()),
                written: Vec::new(),
                unchanged: Vec::new(),
                reload: None,
            })
        })
    }
}

/// Adds a TLSA target for every certificate with `[certificate.tlsa]`. A
/// target whose key cannot be loaded is skipped with a warning
/// (`check-config` reports the same problem as an error).
pub fn add_tlsa_targets(targets: &mut Targets, config: &Config, clock: &Arc<dyn Clock>) {
    for cert in &config.certificates {
        let (Some(t), Some(server)) = (&cert.tlsa, tlsa_server_for(config, cert)) else {
            continue;
        };
        match server.target(Arc::clone(clock)) {
            Ok(target) => {
                let host = t
                    .host
                    .clone()
                    .or_else(|| cert.names.first().cloned())
                    .unwrap_or_default();
                targets.push(
                    &cert.name,
                    Role::Served,
                    Box::new(TlsaTarget {
                        host,
                        zone: target.zone,
                        client: target.client,
                        ttl: t.ttl,
                    }),
                );
            }
            Err(e) => {
                tracing::warn!(certificate = %cert.name, error = %e, "no TLSA target");
            }
        }
    }
}
