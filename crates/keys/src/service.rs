//! The rotator as a long-running service (inside `certkeeper up` or
//! `certkeeper keys serve`): a sweep every interval, a keyring reloaded
//! every cache refresh, and optionally the publishing endpoint.
//!
//! Every replica may run all three against one store: sweeps exclude each
//! other in the database, so replicas need no leader.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use certkeeper_proto::Clock;
use certkeeper_store::Store;

use crate::config::{KeysConfig, Policy};
use crate::serve::{self, Shared};
use crate::{Kek, Keyring, KeysError, Rotator};

/// A running service; dropping it stops its tasks.
#[derive(Debug)]
pub struct Running {
    /// The keyring it serves and opens with.
    pub ring: Shared,
    /// Where the endpoint listens, when it does.
    pub listen: Option<SocketAddr>,
    /// The configured kinds.
    pub policies: Vec<Policy>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the service: one sweep now (its failure is logged, not fatal: the
/// keys already stored still serve), then the loops. `listen` overrides the
/// configured address.
pub async fn start(
    config: &KeysConfig,
    store: Store,
    clock: Arc<dyn Clock>,
    listen: Option<SocketAddr>,
) -> Result<Running, KeysError> {
    let policies = config.policies()?;
    let kek = Arc::new(Kek::load(&config.kek_file)?);
    let rotator = Rotator::new(store.clone(), kek.clone(), policies.clone(), clock);
    if let Err(e) = rotator.sweep().await {
        tracing::error!("key sweep: {e}");
    }
    let ring: Shared = Arc::new(ArcSwap::from_pointee(Keyring::load(&store, &kek).await?));
    let mut tasks = Vec::new();
    let every = Duration::from_secs(config.sweep_interval_seconds);
    {
        let (store, kek, ring) = (store.clone(), kek.clone(), ring.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                match rotator.sweep().await {
                    // This replica learns its own changes at once; others
                    // within a cache refresh.
                    Ok(r) if r.changes() > 0 => match Keyring::load(&store, &kek).await {
                        Ok(k) => ring.store(Arc::new(k)),
                        Err(e) => tracing::error!("reloading keys: {e}"),
                    },
                    Ok(_) => {}
                    Err(e) => tracing::error!("key sweep: {e}"),
                }
            }
        }));
    }
    tasks.push(tokio::spawn(serve::refresh_loop(
        store,
        kek,
        ring.clone(),
        Duration::from_secs(config.cache_refresh_seconds),
    )));
    let listen = listen.or(config.listen);
    let mut bound = None;
    if let Some(addr) = listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| KeysError::Serve(addr.to_string(), e))?;
        bound = listener.local_addr().ok();
        let router = serve::router(ring.clone(), &policies);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = serve::serve(listener, router).await {
                tracing::error!("{e}");
            }
        }));
    }
    Ok(Running {
        ring,
        listen: bound,
        policies,
        tasks,
    })
}
