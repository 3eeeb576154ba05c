//! A built-in http-01 responder (RFC 8555 §8.3).
//!
//! One listener serves every concurrent order: responses live in a shared
//! token → key authorization map, so orders never fight over the port.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::debug;

use super::solver::{ChallengeType, PendingChallenge, Solver, SolverError, SolverFuture};

type TokenMap = Arc<RwLock<HashMap<String, String>>>;

/// Serves `/.well-known/acme-challenge/{token}` from memory.
///
/// Dropping it stops the listener.
#[derive(Debug)]
pub struct Http01Responder {
    tokens: TokenMap,
    local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Http01Responder {
    /// Binds `listen` (port 80 in production, the CA's `httpPort` in tests)
    /// and starts serving in the background.
    pub async fn bind(listen: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let tokens: TokenMap = Arc::default();
        let app = Router::new()
            .route("/.well-known/acme-challenge/{token}", get(answer))
            .with_state(tokens.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // Either an explicit shutdown or the sender being dropped.
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "http-01 responder stopped");
            }
        });
        debug!(%local_addr, "http-01 responder listening");
        Ok(Self {
            tokens,
            local_addr,
            shutdown: Some(tx),
            task,
        })
    }

    /// The bound address (useful when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Number of challenge responses currently served.
    pub fn pending(&self) -> usize {
        self.tokens.read().map(|map| map.len()).unwrap_or(0)
    }

    /// Stops accepting and waits for in-flight requests to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    fn insert(&self, token: &str, key_authorization: &str) -> Result<(), SolverError> {
        let mut map = self
            .tokens
            .write()
            .map_err(|_| SolverError::new("http-01 token map poisoned"))?;
        map.insert(token.to_owned(), key_authorization.to_owned());
        Ok(())
    }

    fn remove(&self, token: &str) -> Result<(), SolverError> {
        let mut map = self
            .tokens
            .write()
            .map_err(|_| SolverError::new("http-01 token map poisoned"))?;
        map.remove(token);
        Ok(())
    }
}

impl Drop for Http01Responder {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

async fn answer(State(tokens): State<TokenMap>, Path(token): Path<String>) -> Response {
    let found = tokens.read().ok().and_then(|map| map.get(&token).cloned());
    match found {
        Some(key_authorization) => {
            debug!(%token, "http-01 challenge answered");
            (
                [(header::CONTENT_TYPE, "application/octet-stream")],
                key_authorization,
            )
                .into_response()
        }
        None => {
            debug!(%token, "http-01 challenge for unknown token");
            StatusCode::NOT_FOUND.into_response()
        }
    }
}

impl Solver for Http01Responder {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Http01
    }

    fn present<'a>(&'a self, challenge: &'a PendingChallenge) -> SolverFuture<'a> {
        let result = self.insert(&challenge.token, &challenge.key_authorization);
        Box::pin(async move { result })
    }

    fn cleanup<'a>(&'a self, challenge: &'a PendingChallenge) -> SolverFuture<'a> {
        let result = self.remove(&challenge.token);
        Box::pin(async move { result })
    }
}
