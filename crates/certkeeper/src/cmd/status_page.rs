//! The HTTPS status page: served with a managed certificate itself (through
//! the hot-swapping resolver), so a browser or curl sees the certificate
//! working and renewals take effect without a restart.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;
use axum_server::tls_rustls::RustlsConfig;
use certkeeper_agent::resolver::CertResolver;
use certkeeper_store::Store;

/// A running status page.
pub struct StatusPage {
    addr: SocketAddr,
}

impl StatusPage {
    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

#[derive(Clone)]
struct Page {
    store: Store,
    name: String,
}

/// Binds `listen` and serves the page for certificate `name` in the background.
pub async fn serve(
    listen: SocketAddr,
    resolver: Arc<CertResolver>,
    store: Store,
    name: &str,
) -> anyhow::Result<StatusPage> {
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let tls = RustlsConfig::from_config(Arc::new(resolver.server_config()?));
    let app = axum::Router::new()
        .route("/", axum::routing::get(page))
        .with_state(Page {
            store,
            name: name.to_string(),
        });
    let server = axum_server::from_tcp_rustls(listener, tls)?;
    tokio::spawn(async move {
        if let Err(e) = server.serve(app.into_make_service()).await {
            tracing::error!(error = %e, "status page stopped");
        }
    });
    Ok(StatusPage { addr })
}

async fn page(State(p): State<Page>) -> Html<String> {
    let body = match p.store.served_cert(&p.name).await {
        Ok(Some(c)) => format!(
            "<h1>certkeeper is up</h1><table>\
             <tr><th>certificate</th><td>{}</td></tr>\
             <tr><th>names</th><td>{}</td></tr>\
             <tr><th>serial</th><td><code>{}</code></td></tr>\
             <tr><th>issuer</th><td>{}</td></tr>\
             <tr><th>slot</th><td>{}</td></tr>\
             <tr><th>valid until</th><td>{}</td></tr></table>",
            html(&c.name),
            html(&c.names),
            html(&c.serial),
            html(&c.issuer),
            html(&c.slot),
            certkeeper_ca::objects::rfc3339(c.not_after)
        ),
        Ok(None) => "<h1>certkeeper is up</h1><p>no certificate yet</p>".to_string(),
        Err(e) => format!(
            "<h1>certkeeper</h1><p>store error: {}</p>",
            html(&e.to_string())
        ),
    };
    Html(format!(
        "<!doctype html><html><head><title>certkeeper</title></head><body>{body}</body></html>\n"
    ))
}

fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
