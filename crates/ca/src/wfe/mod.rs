//! The web front end: HTTP routing, JWS authentication (RFC 8555 §6.2–6.5),
//! nonces, and rendering. It parses and authenticates; the RA decides.

mod dupes;
mod nonce;
pub mod problem;
mod tlog;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use certkeeper_proto::problem::ProblemType;
use certkeeper_proto::{Jwk, Jws, KeyRef, b64};
use serde::Deserialize;
use serde_json::{Value, json};

pub use nonce::Nonces;

use crate::CaError;
use crate::objects::{Urls, account_json, authz_json, challenge_json, order_json, rfc3339};
use crate::ra::{Account, NewAccount, Order, Ra, Revoker};

/// Largest request body accepted: ACME requests are small, a CSR is the
/// biggest part (a 4096-bit RSA CSR is under 2 KiB).
pub const MAX_BODY: usize = 64 * 1024;
/// The terms of service the directory advertises.
const TERMS: &str = "certkeeper private CA: certificates are issued for testing and private use, without warranty.\n";

/// The front end's state.
#[derive(Debug)]
pub struct Wfe {
    ra: Arc<Ra>,
    nonces: Nonces,
    /// `https://host:port` from the CA's configuration. Every URL the WFE
    /// hands out, and the one every JWS must name (RFC 8555 §6.4), is
    /// built from it, never from the request's `Host`: a client cannot
    /// choose the URLs the CA signs off on, and account URLs stay stable.
    base: String,
}

/// Which key a request must be signed with (RFC 8555 §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyMode {
    /// `jwk`: newAccount.
    Jwk,
    /// `kid`: every account request.
    Kid,
    /// Either: revokeCert.
    Either,
}

/// An authenticated request.
struct Authed {
    urls: Urls,
    jws: Jws,
    account: Option<Account>,
    jwk: Jwk,
}

impl Wfe {
    /// A front end for an RA, serving URLs under `base` (`https://host:port`),
    /// with nonces under `nonce_key` (kept across restarts).
    pub fn new(ra: Arc<Ra>, base: String, nonce_key: &[u8]) -> Wfe {
        Wfe {
            ra,
            nonces: Nonces::new(nonce_key),
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// The URL layout, from the configured base.
    fn urls(&self) -> Urls {
        Urls {
            base: self.base.clone(),
        }
    }

    /// The HTTP routes (RFC 8555 §7.1 resources, plus ARI and the CRL).
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/directory", get(directory))
            .route("/acme/new-nonce", get(new_nonce_get).head(new_nonce_head))
            .route("/acme/new-account", post(new_account))
            .route("/acme/new-order", post(new_order))
            .route("/acme/revoke-cert", post(revoke_cert))
            .route("/acme/key-change", post(key_change))
            .route("/acme/renewal-info/{cert_id}", get(renewal_info))
            .route("/acme/acct/{id}", post(account))
            .route("/acme/acct/{id}/orders", post(account_orders))
            .route("/acme/order/{id}", post(order))
            .route("/acme/order/{id}/finalize", post(finalize))
            .route("/acme/authz/{id}", post(authz))
            .route("/acme/chall/{authz}/{chall}", post(challenge))
            .route("/acme/cert/{serial}", post(certificate))
            .route("/crl/{name}", get(crl))
            .route("/tlog/checkpoint", get(tlog::checkpoint))
            .route("/tlog/key", get(tlog::key))
            .route("/tlog/tile/{*path}", get(tlog::tile))
            .route("/tlog/entry/{index}", get(tlog::entry))
            .route("/terms", get(|| async { TERMS }))
            .route_layer(axum::middleware::from_fn(request_metrics))
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
            .layer(DefaultBodyLimit::max(MAX_BODY))
            // A declared Content-Length above the cap is answered 413 at
            // once, before the body is read (so no `100 Continue` is sent
            // and the connection is not held for the request timeout).
            .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
            .with_state(self)
    }

    /// Verifies a POST: media type, JWS syntax, URL, nonce, key, signature.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        path: &str,
        body: &[u8],
        mode: KeyMode,
    ) -> Result<Authed, CaError> {
        let urls = self.urls();
        // RFC 8555 §6.2: requests MUST use application/jose+json.
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // The media type exactly (parameters aside), not a prefix:
        // `application/jose+jsonXYZ` is another type.
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if !media_type.eq_ignore_ascii_case("application/jose+json") {
            return Err(CaError::malformed(
                "Content-Type must be application/jose+json",
            ));
        }
        reject_duplicate_members(body)?;
        let jws = Jws::parse(body)?;
        // RFC 8555 §6.4: the url header MUST equal the request URL, else unauthorized.
        let expected = format!("{}{path}", urls.base);
        if jws.protected.url != expected {
            return Err(CaError::unauthorized(format!(
                "JWS url {:?} does not match the request URL {expected:?}",
                jws.protected.url
            )));
        }
        // RFC 8555 §6.5: every request carries a fresh nonce from us.
        let nonce =
            jws.protected.nonce.as_deref().ok_or_else(|| {
                CaError::acme(ProblemType::BadNonce, "JWS has no anti-replay nonce")
            })?;
        if !self.nonces.redeem(nonce, self.ra.now()) {
            return Err(CaError::acme(
                ProblemType::BadNonce,
                "JWS has an invalid or reused anti-replay nonce; retry with the fresh one in Replay-Nonce",
            ));
        }
        let (jwk, account) = match (&jws.protected.key, mode) {
            (KeyRef::Jwk(jwk), KeyMode::Jwk | KeyMode::Either) => (jwk.clone(), None),
            (KeyRef::Kid(kid), KeyMode::Kid | KeyMode::Either) => {
                let prefix = urls.account("");
                let id = kid
                    .strip_prefix(&prefix)
                    .filter(|id| !id.is_empty() && !id.contains('/'))
                    .ok_or_else(|| {
                        CaError::acme(
                            ProblemType::AccountDoesNotExist,
                            format!("kid {kid:?} is not an account URL of this CA"),
                        )
                    })?;
                let account = self.ra.account(id).await?;
                let jwk = Jwk::from_json(&account.doc.key)
                    .map_err(|e| CaError::Internal(format!("stored account key: {e}")))?;
                (jwk, Some(account))
            }
            (KeyRef::Kid(_), KeyMode::Jwk) => {
                return Err(CaError::malformed(
                    "this request must carry a jwk, not a kid",
                ));
            }
            (KeyRef::Jwk(_), KeyMode::Kid) => {
                return Err(CaError::malformed(
                    "this request must carry a kid (account URL), not a jwk",
                ));
            }
        };
        jws.verify(&jwk)?;
        Ok(Authed {
            urls,
            jws,
            account,
            jwk,
        })
    }

    /// Authenticates a request that must be signed by an account key (`kid`).
    async fn authenticate_account(
        &self,
        headers: &HeaderMap,
        path: &str,
        body: &[u8],
    ) -> Result<(Authed, Account), CaError> {
        let mut a = self.authenticate(headers, path, body, KeyMode::Kid).await?;
        let account = a
            .account
            .take()
            .ok_or_else(|| CaError::Internal("kid without account".into()))?;
        Ok((a, account))
    }

    /// A JSON response with the headers every ACME response carries.
    fn reply(
        &self,
        status: StatusCode,
        urls: &Urls,
        body: Value,
        location: Option<String>,
    ) -> Response {
        let mut resp = (status, axum::Json(body)).into_response();
        self.common_headers(resp.headers_mut(), Some(urls));
        if let Some(loc) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            resp.headers_mut().insert(header::LOCATION, loc);
        }
        resp
    }

    fn common_headers(&self, h: &mut HeaderMap, urls: Option<&Urls>) {
        if let Ok(v) = HeaderValue::from_str(&self.nonces.issue(self.ra.now())) {
            h.insert("replay-nonce", v);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(link) = urls
            .and_then(|u| HeaderValue::from_str(&format!("<{}>;rel=\"index\"", u.directory())).ok())
        {
            h.append(header::LINK, link);
        }
    }

    /// An error response: problem document, fresh nonce (RFC 8555 §6.5: also
    /// on errors, so a client can retry a badNonce at once).
    fn fail(&self, e: CaError) -> Response {
        let urls = Some(self.urls());
        let problem = problem::problem_for(&e);
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        self.common_headers(resp.headers_mut(), urls.as_ref());
        // RFC 8555 §6.6: a rateLimited problem SHOULD come with Retry-After.
        if let Some(secs) = e.retry_after() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let (CaError::Conflict { location, .. }, Some(u)) = (&e, &urls)
            && let Ok(v) = HeaderValue::from_str(&format!("{}{location}", u.base))
        {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        resp
    }
}

/// RFC 8555 §7.1.3 order object of an order.
fn order_body(urls: &Urls, order: &Order) -> Value {
    order_json(
        urls,
        &order.row.id,
        &order.row.status,
        order.row.expires_at,
        &order.doc,
    )
}

/// RFC 7515 §4: a JOSE header with a member twice MUST be rejected; checked
/// on the flattened JWS and inside its protected header, before parsing.
fn reject_duplicate_members(body: &[u8]) -> Result<(), CaError> {
    let dup = |what: &str, e: String| CaError::malformed(format!("{what}: {e}"));
    dupes::check(body).map_err(|e| dup("JWS", e))?;
    let outer: Value =
        serde_json::from_slice(body).map_err(|e| CaError::malformed(format!("JWS: {e}")))?;
    if let Some(p) = outer.get("protected").and_then(Value::as_str) {
        let raw = b64::decode(p)
            .map_err(|_| CaError::malformed("JWS protected header is not base64url"))?;
        dupes::check(&raw).map_err(|e| dup("JWS protected header", e))?;
    }
    Ok(())
}

type W = State<Arc<Wfe>>;

/// Runs a handler body and turns its error into a problem response.
async fn respond<F>(w: &Wfe, f: F) -> Response
where
    F: std::future::Future<Output = Result<Response, CaError>>,
{
    match f.await {
        Ok(r) => r,
        Err(e) => w.fail(e),
    }
}

async fn directory(State(w): W) -> Response {
    respond(&w, async {
        let u = w.urls();
        let policy = w.ra.policy();
        let profiles: serde_json::Map<String, Value> = policy
            .profiles
            .iter()
            .map(|p| (p.name.clone(), json!(p.description)))
            .collect();
        let b = &u.base;
        let dir = json!({
            "newNonce": format!("{b}/acme/new-nonce"),
            "newAccount": format!("{b}/acme/new-account"),
            "newOrder": format!("{b}/acme/new-order"),
            "revokeCert": format!("{b}/acme/revoke-cert"),
            "keyChange": format!("{b}/acme/key-change"),
            "renewalInfo": format!("{b}/acme/renewal-info"),
            "meta": {
                "termsOfService": format!("{b}/terms"),
                "externalAccountRequired": w.ra.eab_required(),
                "profiles": profiles,
            }
        });
        let mut resp = axum::Json(dir).into_response();
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=0, no-cache"),
        );
        Ok(resp)
    })
    .await
}

async fn new_nonce_head(State(w): W) -> Response {
    let mut resp = StatusCode::OK.into_response();
    w.common_headers(resp.headers_mut(), None);
    resp
}

async fn new_nonce_get(State(w): W) -> Response {
    // RFC 8555 §7.2: GET answers 204 No Content.
    let mut resp = StatusCode::NO_CONTENT.into_response();
    w.common_headers(resp.headers_mut(), None);
    resp
}

async fn new_account(
    State(w): W,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The peer address, for NewRegistrationsPerIPAddress; absent when the
    // router is served without connect info (in-process tests).
    let client_ip = ext
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    respond(&w, async {
        let a = w
            .authenticate(&headers, "/acme/new-account", &body, KeyMode::Jwk)
            .await?;
        let req: NewAccount = a.jws.payload_json()?;
        let (account, created) =
            w.ra.new_account(&a.jwk, req, &a.jws.protected.url, client_ip)
                .await?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let body = account_json(&a.urls, &account.row.id, &account.row.status, &account.doc);
        Ok(w.reply(status, &a.urls, body, Some(a.urls.account(&account.row.id))))
    })
    .await
}

async fn account(State(w): W, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    respond(&w, async {
        let (a, account) = w
            .authenticate_account(&headers, &format!("/acme/acct/{id}"), &body)
            .await?;
        if account.row.id != id {
            return Err(CaError::unauthorized(
                "an account may only read or change itself",
            ));
        }
        let account = if a.jws.payload.is_empty() {
            account
        } else {
            w.ra.update_account(account, &a.jws.payload).await?
        };
        let body = account_json(&a.urls, &account.row.id, &account.row.status, &account.doc);
        Ok(w.reply(StatusCode::OK, &a.urls, body, None))
    })
    .await
}

async fn account_orders(
    State(w): W,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    respond(&w, async {
        let (a, account) = w
            .authenticate_account(&headers, &format!("/acme/acct/{id}/orders"), &body)
            .await?;
        if account.row.id != id {
            return Err(CaError::unauthorized(
                "an account may only list its own orders",
            ));
        }
        let ids = w.ra.order_ids(&account).await?;
        let orders: Vec<String> = ids.iter().map(|o| a.urls.order(o)).collect();
        Ok(w.reply(StatusCode::OK, &a.urls, json!({ "orders": orders }), None))
    })
    .await
}

async fn key_change(State(w): W, headers: HeaderMap, body: Bytes) -> Response {
    respond(&w, async {
        let (a, account) = w
            .authenticate_account(&headers, "/acme/key-change", &body)
            .await?;
        let inner = Jws::parse(&a.jws.payload)?;
        let account_url = a.urls.account(&account.row.id);
        let account =
            w.ra.key_change(account, &account_url, &a.jws.protected.url, &inner)
                .await?;
        let body = account_json(&a.urls, &account.row.id, &account.row.status, &account.doc);
        Ok(w.reply(StatusCode::OK, &a.urls, body, None))
    })
    .await
}

async fn new_order(State(w): W, headers: HeaderMap, body: Bytes) -> Response {
    respond(&w, async {
        let (a, account) = w
            .authenticate_account(&headers, "/acme/new-order", &body)
            .await?;
        let order = w.ra.new_order(&account, a.jws.payload_json()?).await?;
        let body = order_body(&a.urls, &order);
        Ok(w.reply(
            StatusCode::CREATED,
            &a.urls,
            body,
            Some(a.urls.order(&order.row.id)),
        ))
    })
    .await
}

async fn order(State(w): W, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    respond(&w, async {
        let (a, account) = w
            .authenticate_account(&headers, &format!("/acme/order/{id}"), &body)
            .await?;
        let order = w.ra.order(&account, &id).await?;
        // Finalization is synchronous, so an order is never left `processing`
        // and needs no Retry-After here.
        Ok(w.reply(StatusCode::OK, &a.urls, order_body(&a.urls, &order), None))
    })
    .await
}

#[derive(Deserialize)]
struct Finalize {
    csr: String,
}

async fn finalize(
    State(w): W,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    respond(&w, async {
        let (a, account) = w
            .authenticate_account(&headers, &format!("/acme/order/{id}/finalize"), &body)
            .await?;
        let req: Finalize = a.jws.payload_json()?;
        let csr = b64::decode(&req.csr)
            .map_err(|_| CaError::acme(ProblemType::BadCsr, "csr is not base64url DER"))?;
        let order = w.ra.finalize(&account, &id, &csr).await?;
        let body = order_body(&a.urls, &order);
        Ok(w.reply(
            StatusCode::OK,
            &a.urls,
            body,
            Some(a.urls.order(&order.row.id)),
        ))
    })
    .await
}

async fn authz(State(w): W, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    respond(&w, async {
        let (a, account) = w
            .authenticate_account(&headers, &format!("/acme/authz/{id}"), &body)
            .await?;
        let authz = if a.jws.payload.is_empty() {
            w.ra.authz(&account, &id).await?
        } else {
            #[derive(Deserialize)]
            struct Update {
                status: String,
            }
            let u: Update = a.jws.payload_json()?;
            if u.status != "deactivated" {
                return Err(CaError::malformed(
                    "an authorization may only be updated to \"deactivated\"",
                ));
            }
            w.ra.deactivate_authz(&account, &id).await?
        };
        let body = authz_json(
            &a.urls,
            &authz.row.id,
            &authz.row.status,
            authz.row.expires_at,
            &authz.doc,
        );
        Ok(w.reply(StatusCode::OK, &a.urls, body, None))
    })
    .await
}

async fn challenge(
    State(w): W,
    headers: HeaderMap,
    Path((authz_id, chall_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    respond(&w, async {
        let path = format!("/acme/chall/{authz_id}/{chall_id}");
        let (a, account) = w.authenticate_account(&headers, &path, &body).await?;
        let authz = if a.jws.payload.is_empty() {
            w.ra.authz(&account, &authz_id).await?
        } else {
            // RFC 8555 §7.5.1: the client says it is ready with an empty object.
            let _: serde_json::Map<String, Value> = a.jws.payload_json()?;
            w.ra.respond_challenge(&account, &authz_id, &chall_id)
                .await?
                .0
        };
        let chall = authz
            .doc
            .challenges
            .iter()
            .find(|c| c.id == chall_id)
            .ok_or_else(|| CaError::NotFound(format!("challenge {chall_id}")))?;
        let mut resp = w.reply(
            StatusCode::OK,
            &a.urls,
            challenge_json(&a.urls, &authz_id, chall),
            None,
        );
        if let Ok(v) = HeaderValue::from_str(&format!("<{}>;rel=\"up\"", a.urls.authz(&authz_id))) {
            resp.headers_mut().append(header::LINK, v);
        }
        if chall.status == "processing" {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        Ok(resp)
    })
    .await
}

async fn certificate(
    State(w): W,
    headers: HeaderMap,
    Path(serial): Path<String>,
    body: Bytes,
) -> Response {
    respond(&w, async {
        let a = w
            .authenticate(
                &headers,
                &format!("/acme/cert/{serial}"),
                &body,
                KeyMode::Kid,
            )
            .await?;
        if !a.jws.payload.is_empty() {
            return Err(CaError::malformed(
                "certificate download is POST-as-GET: send an empty payload",
            ));
        }
        let chain_pem = w.ra.chain(&serial).await?;
        // Never serve a certificate the log lacks (the finalization logs
        // it; this covers a crash or failure in between).
        let logged = match w.ra.tlog() {
            Some(log) => Some(
                log.log_once(&serial, crate::tlog::leaf_der(&chain_pem)?, w.ra.now())
                    .await?,
            ),
            None => None,
        };
        let mut resp = (StatusCode::OK, chain_pem.to_string()).into_response();
        w.common_headers(resp.headers_mut(), Some(&a.urls));
        if let Some(index) = logged {
            let link = format!("<{}/tlog/entry/{index}>;rel=\"tlog-entry\"", a.urls.base);
            if let Ok(v) = HeaderValue::from_str(&link) {
                resp.headers_mut().append(header::LINK, v);
            }
        }
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/pem-certificate-chain"),
        );
        Ok(resp)
    })
    .await
}

#[derive(Deserialize)]
struct Revocation {
    certificate: String,
    reason: Option<i64>,
}

async fn revoke_cert(State(w): W, headers: HeaderMap, body: Bytes) -> Response {
    respond(&w, async {
        let a = w
            .authenticate(&headers, "/acme/revoke-cert", &body, KeyMode::Either)
            .await?;
        let req: Revocation = a.jws.payload_json()?;
        let der = b64::decode(&req.certificate)
            .map_err(|_| CaError::malformed("certificate is not base64url DER"))?;
        let revoker = match &a.account {
            Some(account) => Revoker::Account(account),
            None => Revoker::CertificateKey(&a.jwk),
        };
        w.ra.revoke(revoker, &der, req.reason).await?;
        let mut resp = StatusCode::OK.into_response();
        w.common_headers(resp.headers_mut(), Some(&a.urls));
        Ok(resp)
    })
    .await
}

async fn renewal_info(State(w): W, Path(cert_id): Path<String>) -> Response {
    respond(&w, async {
        let window = w.ra.renewal_info(&cert_id).await?;
        let body = json!({ "suggestedWindow": { "start": rfc3339(window.start), "end": rfc3339(window.end) } });
        let mut resp = axum::Json(body).into_response();
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(w.ra.policy().lifetimes.ari_retry_after_seconds));
        Ok(resp)
    })
    .await
}

async fn crl(State(w): W, Path(name): Path<String>) -> Response {
    if name != "intermediate.crl" {
        return (StatusCode::NOT_FOUND, "no such CRL\n").into_response();
    }
    let der = w.ra.pki().current_crl();
    let mut resp = (StatusCode::OK, der.as_ref().clone()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pkix-crl"),
    );
    resp
}

/// Request latency by route (the route's pattern, so ids do not make new
/// series) and status.
async fn request_metrics(
    path: axum::extract::MatchedPath,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let endpoint = path.as_str().to_string();
    let started = std::time::Instant::now();
    let rsp = next.run(req).await;
    metrics::histogram!(
        "certkeeper_ca_request_duration_seconds",
        "endpoint" => endpoint,
        "status" => rsp.status().as_u16().to_string(),
    )
    .record(started.elapsed().as_secs_f64());
    rsp
}
