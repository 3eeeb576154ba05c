//! The JSON API: what `status`, `events` and `limits` print, the CA's
//! issuance, and the actions `renew` and `swap` behind the bearer token.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use certkeeper_agent::daemon::Outcome;
use certkeeper_agent::model::Slot;
use serde_json::{Value, json};

use super::AdminState;

/// A JSON error body with a status, the way every handler fails.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut rsp = (self.0, Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            rsp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"certkeeper\""),
            );
        }
        rsp
    }
}

impl From<certkeeper_agent::AgentError> for ApiError {
    fn from(e: certkeeper_agent::AgentError) -> Self {
        let status = match &e {
            certkeeper_agent::AgentError::Refused(_) => StatusCode::CONFLICT,
            certkeeper_agent::AgentError::Config(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<certkeeper_store::StoreError> for ApiError {
    fn from(e: certkeeper_store::StoreError) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

/// `GET /api/v1/certificates`: `certkeeper status --json`.
pub(crate) async fn certificates(State(s): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let report = s.agent.status().await?;
    Ok(Json(serde_json::to_value(report).unwrap_or_default()))
}

/// `GET /api/v1/transparency`: each issuer's log as the monitor sees it
/// and every alert (unknown certificates, forked or rewritten logs).
pub(crate) async fn transparency(State(s): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let t = s.agent.transparency_status().await?;
    Ok(Json(json!({ "transparency": t })))
}

#[derive(serde::Deserialize)]
pub(crate) struct EventsQuery {
    limit: Option<u32>,
}

/// `GET /api/v1/events?limit=N`: the most recent events, newest first.
pub(crate) async fn events(
    State(s): State<AdminState>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let rows = s.agent.store().recent_events(i64::from(limit)).await?;
    let events: Vec<Value> = rows
        .into_iter()
        .map(|e| {
            json!({
                "at": certkeeper_proto::clock::rfc3339(e.at),
                "certificate": e.name,
                "slot": e.slot,
                "event": e.kind,
                "detail": e.detail,
            })
        })
        .collect();
    Ok(Json(json!({ "events": events })))
}

/// `GET /api/v1/limits`: `certkeeper limits --json`.
pub(crate) async fn limits(State(s): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let rows = s.agent.limits().await?;
    Ok(Json(json!({ "limits": rows })))
}

/// `GET /api/v1/ca`: the built-in CA's issuance per hour (48 h) and totals.
pub(crate) async fn ca(State(s): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let Some(ra) = &s.ca else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "this process runs no built-in CA ([builtin_ca] is not configured)".into(),
        ));
    };
    Ok(Json(ca_summary(ra, s.agent.now()).await?))
}

/// Issuance per hour over the last 48 hours, and the CA's totals.
pub(crate) async fn ca_summary(
    ra: &certkeeper_ca::ra::Ra,
    now: i64,
) -> Result<Value, certkeeper_store::StoreError> {
    let since = (now / 3600 - 47) * 3600;
    let per_hour = ra.store().issued_per_hour(since).await?;
    let (issued, revoked) = ra.store().certificate_counts().await?;
    Ok(json!({
        "issued_per_hour": per_hour
            .iter()
            .map(|(hour, n)| json!({"hour": certkeeper_proto::clock::rfc3339(*hour), "issued": n}))
            .collect::<Vec<_>>(),
        "issued_total": issued,
        "revoked_total": revoked,
    }))
}

/// Refuses an action unless the request carries the configured token.
fn authorize(s: &AdminState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &s.token else {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "the admin API is read-only: set [admin] token_file to allow actions".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "wrong bearer token".into(),
        )),
        None => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "actions need `Authorization: Bearer TOKEN` (the token is in [admin] token_file)"
                .into(),
        )),
    }
}

/// Compares without an early exit, so timing does not leak a prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /api/v1/certificates/{name}/renew`: `certkeeper renew NAME --force`.
pub(crate) async fn renew(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&s, &headers)?;
    let outcome = s.agent.run_once(&name, true).await?;
    Ok(Json(match outcome {
        Outcome::Obtained(serial) => json!({"certificate": name, "obtained": serial}),
        Outcome::Waiting(at) => {
            json!({"certificate": name, "next": certkeeper_proto::clock::rfc3339(at)})
        }
    }))
}

#[derive(serde::Deserialize)]
pub(crate) struct SwapQuery {
    to: Option<String>,
}

/// `POST /api/v1/certificates/{name}/swap?to=backup|primary`.
pub(crate) async fn swap(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Query(q): Query<SwapQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&s, &headers)?;
    let to: Slot =
        q.to.as_deref()
            .unwrap_or("backup")
            .parse()
            .map_err(|e: String| ApiError(StatusCode::BAD_REQUEST, e))?;
    s.agent.swap(&name, to).await?;
    Ok(Json(json!({"certificate": name, "served": to.as_str()})))
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abcdef", b"abcdef"));
        assert!(!constant_time_eq(b"abcdef", b"abcdeg"));
        assert!(!constant_time_eq(b"abc", b"abcdef"));
    }
}
