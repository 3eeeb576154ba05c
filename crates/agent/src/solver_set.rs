//! The solvers of every managed certificate, built from the configuration.
//! The built-in http-01 and tls-alpn-01 responders are shared by all
//! certificates and bound on first use (ports 80/443 need privileges only
//! when used).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::acme::{Http01Responder, Solver, TlsAlpn01Responder};
use crate::config::{CertificateConfig, ChallengeType};
use crate::dns_config::DnsServerConfig;
use crate::dns01::Rfc2136Solver;
use crate::error::AgentError;
use crate::solvers::{ExecDnsSolver, WebrootSolver};
use certkeeper_proto::Clock;
use certkeeper_store::Store;

/// Solvers by certificate.
#[derive(Debug)]
pub struct SolverSet {
    http01_listen: SocketAddr,
    tlsalpn01_listen: SocketAddr,
    http01: OnceCell<Arc<Http01Responder>>,
    tlsalpn01: OnceCell<Arc<TlsAlpn01Responder>>,
    dns: Option<DnsContext>,
}

/// What the RFC 2136 solver needs besides a certificate's own block.
#[derive(Debug)]
struct DnsContext {
    shared: Vec<DnsServerConfig>,
    store: Store,
    clock: Arc<dyn Clock>,
}

impl SolverSet {
    /// Solvers whose built-in responders listen on these addresses.
    pub fn new(http01_listen: SocketAddr, tlsalpn01_listen: SocketAddr) -> SolverSet {
        SolverSet {
            http01_listen,
            tlsalpn01_listen,
            http01: OnceCell::new(),
            tlsalpn01: OnceCell::new(),
            dns: None,
        }
    }

    /// Enables dns-01 by RFC 2136: the shared `[[dns_server]]` blocks, the
    /// store (records presented survive a crash) and the clock (TSIG time).
    pub fn with_dns(
        mut self,
        shared: Vec<DnsServerConfig>,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> SolverSet {
        self.dns = Some(DnsContext {
            shared,
            store,
            clock,
        });
        self
    }

    fn rfc2136(&self, cert: &CertificateConfig) -> Result<Option<Arc<dyn Solver>>, AgentError> {
        let Some(ctx) = &self.dns else {
            return Ok(None);
        };
        let own = match (&cert.dns, &cert.dns_server) {
            (Some(d), _) => d,
            (None, Some(name)) => ctx
                .shared
                .iter()
                .find(|s| s.name.as_deref() == Some(name.as_str()))
                .ok_or_else(|| {
                    AgentError::Config(format!("{}: dns_server {name:?} is not defined", cert.name))
                })?,
            (None, None) => return Ok(None),
        };
        let bad = |e: String| AgentError::Config(format!("{}: {e}", cert.name));
        let own = own.target(Arc::clone(&ctx.clock)).map_err(bad)?;
        let mut zoned = Vec::new();
        for s in ctx.shared.iter().filter(|s| s.zone.is_some()) {
            zoned.push(s.target(Arc::clone(&ctx.clock)).map_err(bad)?);
        }
        Ok(Some(Arc::new(Rfc2136Solver::new(
            &cert.name,
            own,
            zoned,
            ctx.store.clone(),
            Arc::clone(&ctx.clock),
        ))))
    }

    /// The solver for a certificate's challenge.
    pub async fn for_certificate(
        &self,
        cert: &CertificateConfig,
    ) -> Result<Arc<dyn Solver>, AgentError> {
        match cert.challenge {
            ChallengeType::Http01 => {
                if let Some(root) = &cert.webroot {
                    return Ok(Arc::new(WebrootSolver { root: root.clone() }));
                }
                let listen = self.http01_listen;
                let r = self
                    .http01
                    .get_or_try_init(|| async {
                        Http01Responder::bind(listen).await.map(Arc::new).map_err(|e| {
                            AgentError::Local(format!(
                                "cannot listen on {listen} for http-01 ({e}); set agent.http01_listen or use webroot"
                            ))
                        })
                    })
                    .await?;
                Ok(Arc::clone(r) as Arc<dyn Solver>)
            }
            ChallengeType::TlsAlpn01 => {
                let listen = self.tlsalpn01_listen;
                let r = self
                    .tlsalpn01
                    .get_or_try_init(|| async {
                        TlsAlpn01Responder::bind(listen)
                            .await
                            .map(Arc::new)
                            .map_err(|e| {
                                AgentError::Local(format!(
                                    "cannot listen on {listen} for tls-alpn-01 ({e}); set agent.tlsalpn01_listen"
                                ))
                            })
                    })
                    .await?;
                Ok(Arc::clone(r) as Arc<dyn Solver>)
            }
            ChallengeType::Dns01 => {
                if let Some(solver) = self.rfc2136(cert)? {
                    return Ok(solver);
                }
                let hook = cert.dns_hook.as_ref().ok_or_else(|| {
                    AgentError::Config(format!(
                        "{}: dns-01 needs [certificate.dns], dns_server or [certificate.dns_hook]",
                        cert.name
                    ))
                })?;
                Ok(Arc::new(ExecDnsSolver {
                    present: hook.present.clone(),
                    cleanup: hook.cleanup.clone(),
                    propagation: Duration::from_secs(hook.propagation_seconds),
                }))
            }
        }
    }
}
