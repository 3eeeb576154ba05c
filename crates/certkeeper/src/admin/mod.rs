//! The admin listener: the dashboard (`/`), a JSON API (`/api/v1/…`) and
//! Prometheus metrics (`/metrics`).
//!
//! Reading is open to whoever reaches the listener (loopback by default;
//! anything else must be TLS). Actions (renew, swap) need
//! `Authorization: Bearer TOKEN` with the token from `[admin] token_file`;
//! without that file the API is read-only. Served over TLS with a managed
//! certificate through the hot-swapping resolver, so a browser or curl sees
//! the certificate working and renewals take effect without a restart.

mod api;
mod dashboard;
pub mod metrics;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::{get, post};
use axum_server::tls_rustls::RustlsConfig;
use certkeeper_agent::config::AdminConfig;
use certkeeper_agent::daemon::Agent;
use certkeeper_ca::ra::Ra;

/// What the handlers read and act on.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) agent: Arc<Agent>,
    /// The built-in CA, when this process runs it.
    pub(crate) ca: Option<Arc<Ra>>,
    /// Bearer token for actions; `None`: read-only.
    pub(crate) token: Option<Arc<str>>,
    pub(crate) metrics: metrics::Metrics,
}

/// A running admin listener.
pub struct AdminServer {
    addr: SocketAddr,
    tls: bool,
}

impl AdminServer {
    /// The URL of the dashboard.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://localhost:{}/", self.addr.port())
    }
}

/// Binds `config.listen` and serves in the background.
pub async fn serve(
    config: &AdminConfig,
    agent: Arc<Agent>,
    ca: Option<Arc<Ra>>,
    metrics: metrics::Metrics,
) -> anyhow::Result<AdminServer> {
    let token = match &config.token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {} ([admin] listen)", config.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let app = router(AdminState {
        agent: Arc::clone(&agent),
        ca,
        token,
        metrics,
    });
    let tls = config.certificate.is_some();
    match &config.certificate {
        Some(name) => {
            let resolver = agent.resolver(name).await?;
            let tls = RustlsConfig::from_config(Arc::new(resolver.server_config()?));
            let server = axum_server::from_tcp_rustls(listener, tls)?;
            tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::error!(error = %e, "admin listener stopped");
                }
            });
        }
        None => {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "admin listener stopped");
                }
            });
        }
    }
    Ok(AdminServer { addr, tls })
}

fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/metrics", get(metrics::render))
        .route("/api/v1/certificates", get(api::certificates))
        .route("/api/v1/events", get(api::events))
        .route("/api/v1/limits", get(api::limits))
        .route("/api/v1/ca", get(api::ca))
        .route("/api/v1/transparency", get(api::transparency))
        .route("/api/v1/certificates/{name}/renew", post(api::renew))
        .route("/api/v1/certificates/{name}/swap", post(api::swap))
        .with_state(state)
}

/// Unix seconds of an RFC 3339 time from a status report (the report
/// carries times as text, as `status --json` prints them).
pub(crate) fn unix(rfc3339: Option<&str>) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339?, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// The token file must be private: anyone who can read it can act.
fn read_token(path: &Path) -> anyhow::Result<Arc<str>> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("[admin] token_file {}: cannot read", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "[admin] token_file {} is readable by others (mode {mode:03o}): chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("[admin] token_file {}: cannot read", path.display()))?;
    let token = token.trim();
    if token.len() < 16 {
        anyhow::bail!(
            "[admin] token_file {}: the token is shorter than 16 characters; write a long random one (e.g. `openssl rand -hex 32`)",
            path.display()
        );
    }
    Ok(Arc::from(token))
}
