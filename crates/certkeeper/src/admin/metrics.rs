//! `/metrics` in the Prometheus text format.
//!
//! Counters and histograms are recorded where things happen, through the
//! `metrics` facade (the agent's events and ACME requests, the CA's orders,
//! signatures, revocations, validations and denials). Per-certificate and
//! per-limit gauges are computed from the store when scraped, so they are
//! never stale and cost nothing between scrapes. Names follow
//! cert-manager's where it has one, with a `certkeeper_` prefix.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use certkeeper_ca::ra::Ra;
use metrics::gauge;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::{AdminState, unix};

/// The process-wide recorder's render handle.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

/// Latency buckets (seconds): a local CA answers in milliseconds, a public
/// one under load in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

impl Metrics {
    /// Installs the recorder (once per process; later calls share it).
    pub fn install() -> anyhow::Result<Metrics> {
        if let Some(handle) = HANDLE.get() {
            return Ok(Metrics {
                handle: handle.clone(),
            });
        }
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), LATENCY_BUCKETS)?
            .install_recorder()?;
        let handle = HANDLE.get_or_init(|| handle).clone();
        Ok(Metrics { handle })
    }
}

/// `GET /metrics`.
pub(crate) async fn render(State(s): State<AdminState>) -> Response {
    if let Err(e) = refresh_gauges(&s).await {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.handle.render(),
    )
        .into_response()
}

async fn refresh_gauges(s: &AdminState) -> anyhow::Result<()> {
    let report = s.agent.status().await?;
    for cert in &report.certificates {
        for slot in &cert.slots {
            let labels = [
                ("name", cert.name.clone()),
                ("slot", slot.slot.as_str().to_string()),
                ("issuer", slot.issuer.clone()),
            ];
            if let Some(t) = unix(slot.not_after.as_deref()) {
                gauge!(
                    "certkeeper_certificate_expiration_timestamp_seconds",
                    &labels
                )
                .set(t as f64);
            }
            if let Some(t) = unix(slot.next_renewal.as_deref()) {
                gauge!("certkeeper_certificate_renewal_timestamp_seconds", &labels).set(t as f64);
            }
            let ready = slot.state == "valid";
            for (condition, value) in [("True", ready), ("False", !ready)] {
                gauge!(
                    "certkeeper_certificate_ready_status",
                    "name" => cert.name.clone(),
                    "slot" => slot.slot.as_str(),
                    "condition" => condition,
                )
                .set(if value { 1.0 } else { 0.0 });
            }
            gauge!(
                "certkeeper_certificate_served",
                "name" => cert.name.clone(),
                "slot" => slot.slot.as_str(),
            )
            .set(if cert.served == slot.slot { 1.0 } else { 0.0 });
        }
    }
    gauge!("certkeeper_blocked_keys").set(report.blocked_keys.len() as f64);
    for t in &report.transparency {
        gauge!("certkeeper_tlog_verified_size", "issuer" => t.issuer.clone())
            .set(t.verified_size as f64);
        for kind in ["unknown-certificate", "fork", "shrunk", "split-view"] {
            let n = t.alerts.iter().filter(|a| a.kind == kind).count();
            gauge!("certkeeper_tlog_alerts", "issuer" => t.issuer.clone(), "kind" => kind)
                .set(n as f64);
        }
    }

    for limit in s.agent.limits().await? {
        let labels = [
            ("issuer", limit.issuer.clone()),
            ("limit", limit.limit.clone()),
            ("subject", limit.subject.clone()),
        ];
        if limit.limit == "Retry-After" {
            if let Some(at) = limit.next_free_at {
                gauge!(
                    "certkeeper_retry_after_until_timestamp_seconds",
                    "issuer" => limit.issuer.clone(),
                    "subject" => limit.subject.clone(),
                )
                .set(at as f64);
            }
            continue;
        }
        gauge!("certkeeper_rate_limit_used", &labels).set(f64::from(limit.used));
        gauge!("certkeeper_rate_limit_max", &labels).set(f64::from(limit.max));
    }

    if let Some(ra) = &s.ca {
        refresh_ca_gauges(ra, s.agent.now());
    }
    if s.agent.config().keys.is_some() {
        refresh_key_gauges(s).await?;
    }
    Ok(())
}

/// The key rotator's keys by kind and state, and the age of each kind's
/// newest active key (one that outlives `active_duration` means the
/// rotator stopped promoting).
async fn refresh_key_gauges(s: &AdminState) -> anyhow::Result<()> {
    let rows = s.agent.store().keys_all().await?;
    let now = s.agent.now();
    let mut counts: std::collections::BTreeMap<(String, String), u64> = Default::default();
    let mut newest_active: std::collections::BTreeMap<String, i64> = Default::default();
    for row in &rows {
        *counts
            .entry((row.kind.clone(), row.state.clone()))
            .or_default() += 1;
        if row.state == "active" {
            let t = newest_active
                .entry(row.kind.clone())
                .or_insert(row.changed_at);
            *t = (*t).max(row.changed_at);
        }
    }
    for kind in ["hpke", "signing"] {
        for state in ["pending", "active", "expired"] {
            let n = counts
                .get(&(kind.to_string(), state.to_string()))
                .copied()
                .unwrap_or(0);
            gauge!("certkeeper_keys", "kind" => kind, "state" => state).set(n as f64);
        }
    }
    for (kind, at) in newest_active {
        gauge!("certkeeper_keys_newest_active_age_seconds", "kind" => kind)
            .set((now - at).max(0) as f64);
    }
    Ok(())
}

fn refresh_ca_gauges(ra: &Ra, now: i64) {
    let crl = ra.pki().current_crl();
    if let Ok((_, parsed)) = x509_parser::parse_x509_crl(&crl) {
        let age = now - parsed.last_update().timestamp();
        gauge!("certkeeper_ca_crl_age_seconds").set(age.max(0) as f64);
    }
}

/// `/metrics` alone, for `certkeeper ca serve --metrics-listen`: the CA's
/// series, on plain HTTP (they carry no secret).
pub async fn serve_ca_metrics(
    listen: std::net::SocketAddr,
    ra: Arc<Ra>,
    metrics: Metrics,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (--metrics-listen): {e}"))?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(
                |State((ra, metrics)): State<(Arc<Ra>, Metrics)>| async move {
                    refresh_ca_gauges(&ra, time::OffsetDateTime::now_utc().unix_timestamp());
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.handle.render(),
                    )
                },
            ),
        )
        .with_state((ra, metrics));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });
    Ok(addr)
}
