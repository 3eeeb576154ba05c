//! The transparency log over HTTP, as C2SP tlog-tiles under `/tlog/`:
//! `checkpoint` (never cached), `tile/…` and `tile/entries/…` (immutable),
//! plus two conveniences of our own: `entry/N` (an inclusion proof for entry
//! N against the current checkpoint, JSON) and `key` (the verifier key, for
//! discovery only: a verifier must get the key out of band to trust it).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::Wfe;

type W = State<Arc<Wfe>>;

fn no_log() -> Response {
    (
        StatusCode::NOT_FOUND,
        "this CA runs without a transparency log\n",
    )
        .into_response()
}

fn text(body: Vec<u8>, content_type: &'static str, cache: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

/// `GET /tlog/checkpoint`.
pub(super) async fn checkpoint(State(w): W) -> Response {
    let Some(log) = w.ra.tlog() else {
        return no_log();
    };
    text(
        log.checkpoint().into_bytes(),
        "text/plain; charset=utf-8",
        "no-store",
    )
}

/// `GET /tlog/key`.
pub(super) async fn key(State(w): W) -> Response {
    let Some(log) = w.ra.tlog() else {
        return no_log();
    };
    text(
        format!("{}\n", log.verifier_key()).into_bytes(),
        "text/plain; charset=utf-8",
        "no-cache",
    )
}

/// `GET /tlog/tile/{path}`: the path is parsed strictly by the tile
/// grammar before it touches the file system, so it cannot escape the log.
pub(super) async fn tile(State(w): W, Path(rest): Path<String>) -> Response {
    let Some(log) = w.ra.tlog() else {
        return no_log();
    };
    let path = format!("tile/{rest}");
    let Ok(id) = certkeeper_tlog::tile::TileId::parse(&path) else {
        return (StatusCode::NOT_FOUND, "not a tile path\n").into_response();
    };
    // Only tiles a published checkpoint covers: anything past it may be a
    // crash's leftover, rewritten at the next start.
    if !certkeeper_tlog::storage::covered(id, log.size()) {
        return (
            StatusCode::NOT_FOUND,
            "no such tile in the published tree\n",
        )
            .into_response();
    }
    match tokio::fs::read(log.dir().join(&path)).await {
        Ok(d) => text(
            d,
            "application/octet-stream",
            "public, max-age=604800, immutable",
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (StatusCode::NOT_FOUND, "no such tile\n").into_response()
        }
        Err(e) => {
            tracing::error!(%path, error = %e, "cannot read tile");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot read tile\n").into_response()
        }
    }
}

/// `GET /tlog/entry/{index}`: the entry's inclusion proof against the
/// checkpoint served with it.
pub(super) async fn entry(State(w): W, Path(index): Path<String>) -> Response {
    let Some(log) = w.ra.tlog() else {
        return no_log();
    };
    let Ok(index) = index.parse::<u64>() else {
        return (StatusCode::NOT_FOUND, "entry index must be a number\n").into_response();
    };
    match log.prove(index).await {
        Ok(p) => {
            let body = json!({
                "index": p.index,
                "tree_size": p.size,
                "checkpoint": p.checkpoint,
                "inclusion_proof": p.proof.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>(),
            });
            text(
                body.to_string().into_bytes(),
                "application/json",
                "no-store",
            )
        }
        Err(e) => w.fail(e),
    }
}
