//! Shared by the interop tests: the Python peers (pyhpke, jwcrypto) run from
//! the venv `scripts/test` creates, and a publishing server on loopback.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use arc_swap::ArcSwap;
use certkeeper_keys::config::Policy;
use certkeeper_keys::serve::{self, Shared};
use certkeeper_keys::{Kek, Keyring};
use certkeeper_store::Store;

pub mod postgres;

/// The venv's interpreter: `CERTKEEPER_TEST_PYTHON`, else `.venv-test/` at
/// the workspace root. Missing means the peers are missing: fail, not skip.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CERTKEEPER_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-test/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run ./scripts/test, which creates the venv with pyhpke and jwcrypto",
        p.display()
    );
    p
}

/// Runs a peer script from `tests/peers/` and returns its stdout.
pub fn peer(script: &str, args: &[&str]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(script);
    let out = Command::new(python())
        .arg(&path)
        .args(args)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A publishing server on a free loopback port; returns its base URL and
/// the keyring it serves, which tests reload by hand after each sweep (the
/// daemon's refresher does that on its interval).
pub async fn server(policies: &[Policy]) -> (String, Shared) {
    let shared: Shared = Arc::new(ArcSwap::from_pointee(Keyring::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = serve::router(shared.clone(), policies);
    tokio::spawn(async move { serve::serve(listener, router).await });
    (url, shared)
}

/// Reloads the served keyring from the store.
pub async fn reload(shared: &Shared, store: &Store, kek: &Kek) -> Keyring {
    let ring = Keyring::load(store, kek).await.unwrap();
    shared.store(Arc::new(ring.clone()));
    ring
}
