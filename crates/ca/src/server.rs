//! Wiring: store + PKI + VA + RA + WFE behind an HTTPS listener, plus the
//! background CRL refresher.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use certkeeper_store::Store;
use tower_http::timeout::TimeoutLayer;

use crate::issuer::Pki;
use crate::issuer::pki::listener_names;
use crate::policy::Policy;
use crate::ra::Ra;
use crate::va::{DnsResolver, Va};
use crate::wfe::Wfe;
use crate::{CaError, Clock};

/// Longest a request may take, end to end (a challenge POST waits up to a few
/// seconds for its validation; everything else is fast).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How to run the CA.
#[derive(Clone, Debug)]
pub struct CaConfig {
    /// Data directory: `certkeeper.db` and `ca/` keys live here.
    pub data_dir: PathBuf,
    /// HTTPS listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Name server for every lookup the CA makes; `/etc/resolv.conf` when unset.
    pub dns_resolver: Option<SocketAddr>,
    /// Port the VA connects to for http-01 (80 in production).
    pub http01_port: u16,
    /// Port the VA connects to for tls-alpn-01 (443 in production).
    pub tlsalpn01_port: u16,
    /// Issuance policy.
    pub policy: Policy,
    /// Refuse accounts without external account binding.
    pub eab_required: bool,
}

/// A CA that is serving.
pub struct RunningCa {
    /// The bound address.
    pub addr: SocketAddr,
    /// `https://HOST:PORT/directory`.
    pub directory_url: String,
    /// The RA, for in-process callers (tests, `certkeeper up`).
    pub ra: Arc<Ra>,
    handle: Handle<SocketAddr>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    refresher: tokio::task::JoinHandle<()>,
}

impl RunningCa {
    /// Waits until the server stops (it only stops on error or shutdown).
    pub async fn wait(self) -> Result<(), CaError> {
        self.run_until(std::future::pending(), Duration::ZERO).await
    }

    /// Serves until `shutdown` completes, then takes no new connection and
    /// gives requests in flight `grace` to finish. Cutting one short is
    /// safe: every RA step is a transaction, and a signature's intent is on
    /// the record before it is made.
    pub async fn run_until(
        mut self,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) -> Result<(), CaError> {
        let early = tokio::select! {
            r = &mut self.server => Some(r),
            () = shutdown => None,
        };
        let r = match early {
            Some(r) => r,
            None => {
                self.handle.graceful_shutdown(Some(grace));
                (&mut self.server).await
            }
        };
        self.refresher.abort();
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(CaError::Internal(format!("HTTPS server: {e}"))),
            Err(e) => Err(CaError::Internal(format!("HTTPS server task: {e}"))),
        }
    }

    /// Stops serving at once.
    pub fn shutdown(&self) {
        self.handle.shutdown();
        self.refresher.abort();
    }
}

/// Opens the store, loads or creates the PKI, resumes interrupted work and
/// starts serving.
pub async fn start(config: CaConfig, clock: Arc<dyn Clock>) -> Result<RunningCa, CaError> {
    let listener = std::net::TcpListener::bind(config.listen).map_err(|e| {
        CaError::Internal(format!(
            "cannot listen on {}: {e} (pick another --listen address)",
            config.listen
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| CaError::Internal(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CaError::Internal(e.to_string()))?;
    let host = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        "localhost".to_string()
    } else {
        addr.ip().to_string()
    };
    let base = format!("https://{host}:{}", addr.port());

    let store = Store::open_dir(&config.data_dir).await?;
    let pki = Arc::new(Pki::load_or_create(
        &config.data_dir,
        &format!("{base}/crl/intermediate.crl"),
    )?);
    let resolver = match config.dns_resolver {
        Some(server) => DnsResolver::new(server)?,
        None => DnsResolver::system()?,
    };
    let va = Va::new(
        resolver,
        config.http01_port,
        config.tlsalpn01_port,
        config.policy.capacity.max_concurrent_validations,
    );
    let policy = Arc::new(config.policy);
    let ra = Arc::new(Ra::new(
        store,
        Arc::clone(&pki),
        va,
        Arc::clone(&policy),
        Arc::clone(&clock),
        config.eab_required,
        certkeeper_store::audit::AuditLog::in_dir(&config.data_dir),
    ));
    ra.resume().await?;

    let mut names = listener_names(&host);
    if !addr.ip().is_unspecified() {
        names.push(addr.ip().to_string());
    }
    names.dedup();
    let (chain, key) = pki.server_certificate(&names, clock.now())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| CaError::Internal(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| CaError::Internal(format!("listener certificate: {e}")))?;
    let mut tls = tls;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let nonce_key = nonce_key(&config.data_dir)?;
    let wfe = Arc::new(Wfe::new(Arc::clone(&ra), base.clone(), &nonce_key));
    let app = wfe.router().layer(TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        REQUEST_TIMEOUT,
    ));
    let handle = Handle::new();
    let capacity = &policy.capacity;
    let acceptor =
        axum_server::tls_rustls::RustlsAcceptor::new(RustlsConfig::from_config(Arc::new(tls)))
            .acceptor(crate::conn::Guard::new(
                capacity.max_connections,
                Duration::from_secs(u64::from(capacity.connection_idle_seconds)),
            ));
    let mut server = axum_server::from_tcp(listener)
        .map_err(|e| CaError::Internal(e.to_string()))?
        .acceptor(acceptor)
        .handle(handle.clone());
    // Slowloris guard: a client must send its headers promptly.
    server
        .http_builder()
        .http1()
        .header_read_timeout(Some(Duration::from_secs(10)));
    let server =
        tokio::spawn(server.serve(app.into_make_service_with_connect_info::<SocketAddr>()));

    let refresh_every = Duration::from_secs(u64::from(policy.lifetimes.crl_refresh_minutes) * 60);
    let ra_bg = Arc::clone(&ra);
    let refresher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(refresh_every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = ra_bg.refresh_crl().await {
                tracing::error!(error = %e, "CRL refresh failed");
            }
        }
    });
    tracing::info!(%addr, directory = %format!("{base}/directory"), "CA serving");
    Ok(RunningCa {
        addr,
        directory_url: format!("{base}/directory"),
        ra,
        handle,
        server,
        refresher,
    })
}

/// The nonce HMAC key, `DATA/ca/nonce.key`: 32 random bytes made at first
/// start (0600, written atomically) and reused, so a restart does not cost
/// clients a `badNonce`.
fn nonce_key(data_dir: &std::path::Path) -> Result<Vec<u8>, CaError> {
    let path = data_dir.join("ca").join("nonce.key");
    match std::fs::read(&path) {
        Ok(key) if key.len() == 32 => return Ok(key),
        Ok(_) => {
            return Err(CaError::Internal(format!(
                "{} is not a 32-byte key; delete it to make a new one",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(CaError::Internal(format!("{}: {e}", path.display()))),
    }
    let key: [u8; 32] = rand::random();
    certkeeper_store::files::write_atomic(&path, &key, 0o600)
        .map_err(|e| CaError::Internal(format!("{}: {e}", path.display())))?;
    Ok(key.to_vec())
}
