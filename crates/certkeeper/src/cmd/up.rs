//! `certkeeper up`: the main job on embedded defaults. Starts the built-in CA
//! on loopback, keeps a certificate for `localhost` (reused from the store
//! across restarts; renewed at two thirds of its lifetime), and serves an
//! HTTPS status page with it, swapping in renewals without a restart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use certkeeper_agent::acme::{
    AcmeAccount, AcmeDirectory, Http01Responder, NewAccountOptions, OrderRequest,
};
use certkeeper_agent::resolver::CertResolver;
use certkeeper_ca::policy::Policy;
use certkeeper_ca::{CaConfig, SystemClock};
use certkeeper_store::{ManagedCertRow, Store};
use clap::Args;

/// The built-in default certificate.
const NAME: &str = "localhost";
/// The issuer name the built-in CA's account is stored under.
const ISSUER: &str = "builtin";

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Run the agent on this configuration instead of the embedded defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory: the agent's database, and the built-in CA under `builtin-ca/`.
    #[arg(long, default_value = "certkeeper-data")]
    data: PathBuf,
    /// Where the built-in CA listens (its account URL depends on it: keep it stable).
    #[arg(long, default_value = "127.0.0.1:14000")]
    ca_listen: SocketAddr,
    /// Where the built-in http-01 responder listens; the CA validates there.
    #[arg(long, default_value = "127.0.0.1:5002")]
    http01_listen: SocketAddr,
    /// Where the HTTPS status page listens.
    #[arg(long, default_value = "127.0.0.1:8443")]
    status_listen: SocketAddr,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// When a certificate should be renewed: at a third of its lifetime left
/// (half for certificates of ten days or less), as certbot and CertMagic do.
fn renew_at(c: &ManagedCertRow) -> i64 {
    let lifetime = c.not_after - c.not_before;
    let left = if lifetime <= 10 * 86400 {
        lifetime / 2
    } else {
        lifetime / 3
    };
    c.not_after - left
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    if let Some(config) = &args.config {
        return crate::cmd::agent::daemon(config).await;
    }
    let ca_dir = args.data.join("builtin-ca");
    let ca = certkeeper_ca::start(
        CaConfig {
            data_dir: ca_dir.clone(),
            listen: args.ca_listen,
            dns_resolver: None,
            http01_port: args.http01_listen.port(),
            tlsalpn01_port: 443,
            policy: Policy::builtin(),
            eab_required: false,
        },
        Arc::new(SystemClock),
    )
    .await
    .context("starting the built-in CA")?;
    let root = ca_dir.join("ca/root.pem");
    let store = Store::open_dir(&args.data)
        .await
        .context("opening the agent's store")?;
    let responder = Http01Responder::bind(args.http01_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for http-01: pass --http01-listen",
                args.http01_listen
            )
        })?;
    let directory = AcmeDirectory::new(ca.directory_url.clone()).with_root_pem(&root);
    let account = account(&store, &directory).await?;

    let (cert, fresh) = match store.latest_managed_cert(NAME).await? {
        Some(c) if now() < renew_at(&c) => (c, false),
        _ => (obtain(&store, &account, &responder).await?, true),
    };
    let resolver = Arc::new(CertResolver::new());
    resolver
        .set(&cert.chain_pem, &cert.key_pem)
        .context("loading the certificate into the TLS resolver")?;
    let status =
        crate::cmd::status_page::serve(args.status_listen, Arc::clone(&resolver), store.clone())
            .await
            .with_context(|| {
                format!(
                    "cannot serve the status page on {}: pass --status-listen",
                    args.status_listen
                )
            })?;

    println!("certkeeper is up");
    println!("  data:        {} (SQLite)", args.data.display());
    println!(
        "  built-in CA: {} (root: {})",
        ca.directory_url,
        root.display()
    );
    println!(
        "  certificate: {NAME}, serial {}, valid until {}, renews at {} ({})",
        cert.serial,
        rfc3339(cert.not_after),
        rfc3339(renew_at(&cert)),
        if fresh {
            "issued now"
        } else {
            "reused from the store"
        }
    );
    println!("  status page: https://localhost:{}/", status.port());
    println!(
        "  try:         curl --cacert {} https://localhost:{}/",
        root.display(),
        status.port()
    );
    println!("Ctrl-C stops.");

    let renewals = renewal_loop(store, account, responder, Arc::clone(&resolver), cert);
    tokio::select! {
        r = renewals => r,
        r = ca.wait() => r.context("built-in CA stopped"),
        _ = tokio::signal::ctrl_c() => { println!("stopping"); Ok(()) }
    }
}

fn rfc3339(t: i64) -> String {
    certkeeper_ca::objects::rfc3339(t)
}

/// Loads the stored account for the built-in CA, or registers one.
async fn account(store: &Store, directory: &AcmeDirectory) -> anyhow::Result<AcmeAccount> {
    if let Some((url, credentials)) = store.agent_account(ISSUER).await?
        && url == directory.url
    {
        let credentials =
            serde_json::from_str(&credentials).context("stored account credentials are corrupt")?;
        return AcmeAccount::load(directory, credentials)
            .await
            .context("loading the stored ACME account");
    }
    let (account, credentials) = AcmeAccount::create(directory, &NewAccountOptions::default())
        .await
        .context("registering an ACME account with the built-in CA")?;
    store
        .put_agent_account(
            ISSUER,
            &directory.url,
            &serde_json::to_string(&credentials)?,
            now(),
        )
        .await?;
    Ok(account)
}

/// Orders a certificate and records it (with its key) before anything uses it.
async fn obtain(
    store: &Store,
    account: &AcmeAccount,
    responder: &Http01Responder,
) -> anyhow::Result<ManagedCertRow> {
    let issued = account
        .issue(&OrderRequest::new([NAME]), responder)
        .await
        .with_context(|| format!("obtaining a certificate for {NAME}"))?;
    let leaf = issued
        .chain
        .first()
        .context("the CA returned an empty chain")?;
    let (serial, spki_sha256) = leaf_facts(leaf.as_ref())?;
    let row = ManagedCertRow {
        serial,
        name: NAME.into(),
        issuer: ISSUER.into(),
        names: issued.names.join(","),
        chain_pem: issued.chain_pem.clone(),
        key_pem: issued
            .key
            .to_pem()
            .context("encoding the certificate key")?,
        spki_sha256,
        not_before: issued.not_before.unix_timestamp(),
        not_after: issued.not_after.unix_timestamp(),
        order_url: issued.order_url.clone(),
        obtained_at: now(),
    };
    store.insert_managed_cert(&row).await?;
    tracing::info!(name = NAME, serial = %row.serial, "certificate obtained");
    Ok(row)
}

fn leaf_facts(der: &[u8]) -> anyhow::Result<(String, String)> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .context("parsing the issued certificate")?;
    let serial = hex::encode(cert.raw_serial());
    let spki = certkeeper_ca::issuer::sha256_hex(cert.public_key().raw);
    Ok((serial, spki))
}

/// Sleeps until the renewal time, renews, swaps the served certificate. A
/// failure is retried with a growing delay, and the old certificate keeps
/// being served meanwhile.
async fn renewal_loop(
    store: Store,
    account: AcmeAccount,
    responder: Http01Responder,
    resolver: Arc<CertResolver>,
    mut cert: ManagedCertRow,
) -> anyhow::Result<()> {
    let mut backoff = Duration::from_secs(300);
    loop {
        let wait = (renew_at(&cert) - now()).clamp(0, 3600) as u64;
        tokio::time::sleep(Duration::from_secs(wait)).await;
        if now() < renew_at(&cert) {
            continue;
        }
        match obtain(&store, &account, &responder).await {
            Ok(new) => {
                resolver.set(&new.chain_pem, &new.key_pem)?;
                println!(
                    "renewed {NAME}: serial {}, valid until {}",
                    new.serial,
                    rfc3339(new.not_after)
                );
                cert = new;
                backoff = Duration::from_secs(300);
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "renewal failed; still serving the current certificate");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(86400));
            }
        }
    }
}
