//! The publishing endpoint: `/ohttp-keys` (RFC 9458 §3.2, media type
//! `application/ohttp-keys`) and `/.well-known/jwks.json` (RFC 7517), each
//! with `Cache-Control: max-age` from its policy, served from a keyring
//! snapshot that a refresher reloads from the store every cache refresh.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use certkeeper_store::Store;

use crate::config::Policy;
use crate::model::Kind;
use crate::{Kek, Keyring, KeysError};

/// The keyring a server publishes from; swapped whole on refresh.
pub type Shared = Arc<ArcSwap<Keyring>>;

#[derive(Clone)]
struct Published {
    ring: Shared,
    hpke_max_age: Option<u64>,
    jwks_max_age: Option<u64>,
}

/// Requests in flight at once; past it, callers queue (the answers are
/// tiny and precomputed, so this is a guard, not a tuning knob).
const MAX_IN_FLIGHT: usize = 256;
/// A request that has not been answered in this long gets 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The router. A kind without a policy answers 404.
pub fn router(ring: Shared, policies: &[Policy]) -> Router {
    let age = |kind| policies.iter().find(|p| p.kind == kind).map(|p| p.max_age);
    let state = Published {
        ring,
        hpke_max_age: age(Kind::Hpke),
        jwks_max_age: age(Kind::Signing),
    };
    Router::new()
        .route("/ohttp-keys", get(ohttp_keys))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(state)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(tower::limit::ConcurrencyLimitLayer::new(MAX_IN_FLIGHT))
}

async fn ohttp_keys(State(p): State<Published>) -> Response {
    let Some(age) = p.hpke_max_age else {
        return (StatusCode::NOT_FOUND, "no [keys.hpke] configured\n").into_response();
    };
    let body = p.ring.load().ohttp_keys();
    (
        [
            (header::CONTENT_TYPE, "application/ohttp-keys".to_string()),
            (header::CACHE_CONTROL, format!("max-age={age}")),
        ],
        body,
    )
        .into_response()
}

async fn jwks(State(p): State<Published>) -> Response {
    let Some(age) = p.jwks_max_age else {
        return (StatusCode::NOT_FOUND, "no [keys.signing] configured\n").into_response();
    };
    let body = p.ring.load().jwks().to_string();
    (
        [
            (header::CONTENT_TYPE, "application/jwk-set+json".to_string()),
            (header::CACHE_CONTROL, format!("max-age={age}")),
        ],
        body,
    )
        .into_response()
}

/// Reloads `ring` from the store every `every`. A failed reload keeps the
/// previous keyring (serving stale keys beats serving none) and is logged.
pub async fn refresh_loop(store: Store, kek: Arc<Kek>, ring: Shared, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match Keyring::load(&store, &kek).await {
            Ok(r) => ring.store(Arc::new(r)),
            Err(e) => tracing::error!("reloading keys: {e}"),
        }
    }
}

/// Binds `addr` and serves the router until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> Result<(), KeysError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    axum::serve(listener, router)
        .await
        .map_err(|e| KeysError::Serve(addr, e))
}
