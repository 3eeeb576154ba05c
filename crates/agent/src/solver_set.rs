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
use crate::error::AgentError;
use crate::solvers::{ExecDnsSolver, WebrootSolver};

/// Solvers by certificate.
#[derive(Debug)]
pub struct SolverSet {
    http01_listen: SocketAddr,
    tlsalpn01_listen: SocketAddr,
    http01: OnceCell<Arc<Http01Responder>>,
    tlsalpn01: OnceCell<Arc<TlsAlpn01Responder>>,
}

impl SolverSet {
    /// Solvers whose built-in responders listen on these addresses.
    pub fn new(http01_listen: SocketAddr, tlsalpn01_listen: SocketAddr) -> SolverSet {
        SolverSet {
            http01_listen,
            tlsalpn01_listen,
            http01: OnceCell::new(),
            tlsalpn01: OnceCell::new(),
        }
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
                let hook = cert.dns_hook.as_ref().ok_or_else(|| {
                    AgentError::Config(format!("{}: dns-01 needs dns_hook", cert.name))
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
