//! `certkeeper ca …`: serve the built-in CA and inspect its state.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use certkeeper_ca::policy::Policy;
use certkeeper_ca::{CaConfig, SystemClock};
use certkeeper_proto::b64;
use certkeeper_store::Store;
use clap::Subcommand;

/// How long requests in flight get to finish when the CA is stopped.
pub const CA_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Serve the ACME directory at https://ADDR/directory.
    Serve {
        /// Data directory (database and CA keys); created if missing.
        #[arg(long, default_value = "certkeeper-data")]
        data: PathBuf,
        /// HTTPS listen address.
        #[arg(long, default_value = "127.0.0.1:14000")]
        listen: SocketAddr,
        /// Name server for every lookup the CA makes (dns-01 TXT, A/AAAA);
        /// default: the first nameserver in /etc/resolv.conf.
        #[arg(long)]
        dns_resolver: Option<SocketAddr>,
        /// Port the CA connects to for http-01 validation.
        #[arg(long, default_value_t = 80)]
        http01_port: u16,
        /// Port the CA connects to for tls-alpn-01 validation.
        #[arg(long, default_value_t = 443)]
        tlsalpn01_port: u16,
        /// Policy file (profiles, identifier and key rules); see `ca policy`.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Rate-limit preset replacing the policy's `[limits]`: `private`
        /// (the default), `letsencrypt` or `letsencrypt-staging` (to rehearse
        /// against those CAs' published limits).
        #[arg(long)]
        limits: Option<String>,
        /// Serve Prometheus metrics (plain HTTP) at http://ADDR/metrics.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// Refuse new accounts without external account binding (see `ca eab-add`).
        #[arg(long)]
        require_eab: bool,
    },
    /// Print the root certificate (PEM) that clients must trust.
    ExportRoot {
        /// Data directory of the CA.
        #[arg(long, default_value = "certkeeper-data")]
        data: PathBuf,
    },
    /// List issued certificates.
    List {
        /// Data directory of the CA.
        #[arg(long, default_value = "certkeeper-data")]
        data: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the revocation audit record: each revocation with the
    /// certificate's public key, the reason, and how the request was signed.
    Revocations {
        /// Data directory of the CA.
        #[arg(long, default_value = "certkeeper-data")]
        data: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show every reserved serial and what became of it: `issued`, or a
    /// signature `discarded` after a limit or race lost (DER kept), or
    /// signing `failed`; `intent` after a crash mid-signing.
    Issuances {
        /// Data directory of the CA.
        #[arg(long, default_value = "certkeeper-data")]
        data: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create an external account binding key (prints the key id and HMAC key).
    EabAdd {
        /// Data directory of the CA.
        #[arg(long, default_value = "certkeeper-data")]
        data: PathBuf,
    },
    /// Print the built-in default policy, to copy and edit.
    Policy,
    /// Lift the pause on an identifier for an account (after repeated failed validations).
    Unpause {
        /// Data directory of the CA.
        #[arg(long, default_value = "certkeeper-data")]
        data: PathBuf,
        /// Account id (the last segment of its account URL).
        #[arg(long)]
        account: String,
        /// The paused identifier.
        #[arg(long)]
        identifier: String,
    },
    /// Show rate limits (policy defaults plus per-key overrides), or add an
    /// override with `--set NAME:KEY=COUNT/PERIOD_SECONDS[/BURST]`.
    Limits {
        /// Data directory of the CA.
        #[arg(long, default_value = "certkeeper-data")]
        data: PathBuf,
        /// Policy file the CA serves with (default: the built-in policy).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Rate-limit preset the CA serves with (see `ca serve --limits`).
        #[arg(long)]
        limits: Option<String>,
        /// Add or replace an override, e.g.
        /// `CertificatesPerFQDNSet:a.example.com,b.example.com=20/604800`.
        #[arg(long)]
        set: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: CaCommand) -> anyhow::Result<()> {
    match cmd {
        CaCommand::Serve {
            data,
            listen,
            dns_resolver,
            http01_port,
            tlsalpn01_port,
            policy,
            limits,
            metrics_listen,
            require_eab,
        } => {
            let policy = load_policy(policy.as_deref(), limits.as_deref())?;
            // Before the CA starts, so no count is lost.
            let metrics = match metrics_listen {
                Some(_) => Some(crate::admin::metrics::Metrics::install()?),
                None => None,
            };
            let config = CaConfig {
                data_dir: data.clone(),
                listen,
                dns_resolver,
                http01_port,
                tlsalpn01_port,
                policy,
                eab_required: require_eab,
            };
            let shutdown = crate::cmd::Shutdown::listen()?;
            let ca = certkeeper_ca::start(config, Arc::new(SystemClock)).await?;
            println!("certkeeper CA serving");
            println!("  directory: {}", ca.directory_url);
            println!("  root:      {}", data.join("ca/root.pem").display());
            println!("  CRL:       {}", ca.ra.pki().crl_url());
            if let (Some(listen), Some(metrics)) = (metrics_listen, metrics) {
                let addr =
                    crate::admin::metrics::serve_ca_metrics(listen, Arc::clone(&ca.ra), metrics)
                        .await?;
                println!("  metrics:   http://{addr}/metrics");
            }
            ca.run_until(shutdown.requested(), CA_SHUTDOWN_GRACE)
                .await?;
            println!("stopped");
            Ok(())
        }
        CaCommand::ExportRoot { data } => {
            let path = data.join("ca/root.pem");
            let pem = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "cannot read {}: start the CA once with `certkeeper ca serve --data {}`",
                    path.display(),
                    data.display()
                )
            })?;
            print!("{pem}");
            Ok(())
        }
        CaCommand::List { data, json } => list(&data, json).await,
        CaCommand::Revocations { data, json } => revocations(&data, json).await,
        CaCommand::Issuances { data, json } => issuances(&data, json).await,
        CaCommand::EabAdd { data } => {
            let store = open_existing(&data).await?;
            let kid = format!("kid-{}", hex::encode(rand::random::<[u8; 6]>()));
            let key = b64::encode(&rand::random::<[u8; 32]>());
            store.insert_eab_key(&kid, &key, now()).await?;
            println!("kid:      {kid}");
            println!("hmac key: {key}");
            Ok(())
        }
        CaCommand::Limits {
            data,
            policy,
            limits: preset,
            set,
            json,
        } => {
            let policy = load_policy(policy.as_deref(), preset.as_deref())?;
            limits(&data, &policy, set.as_deref(), json).await
        }
        CaCommand::Unpause {
            data,
            account,
            identifier,
        } => {
            let store = open_existing(&data).await?;
            if store.unpause(&account, &identifier).await? {
                println!("unpaused {identifier} for account {account}");
                Ok(())
            } else {
                anyhow::bail!("{identifier} is not paused for account {account}")
            }
        }
        CaCommand::Policy => {
            print!("{}", certkeeper_ca::policy::DEFAULT_POLICY);
            Ok(())
        }
    }
}

/// The policy file (or the built-in one), with `--limits PRESET` applied.
fn load_policy(path: Option<&Path>, preset: Option<&str>) -> anyhow::Result<Policy> {
    use certkeeper_ca::policy::LimitsPreset;
    let policy = match path {
        Some(path) => Policy::load(path)?,
        None => Policy::builtin(),
    };
    Ok(match preset {
        None => policy,
        Some(name) => {
            let preset = LimitsPreset::parse(name).with_context(|| {
                let known: Vec<&str> = LimitsPreset::ALL.iter().map(|(n, _)| *n).collect();
                format!("unknown --limits preset {name:?}; use one of {known:?}")
            })?;
            policy.with_limits_preset(preset)
        }
    })
}

async fn open_existing(data: &Path) -> anyhow::Result<Store> {
    if !data.join("certkeeper.db").exists() {
        anyhow::bail!(
            "{} holds no certkeeper database: pass the CA's --data directory",
            data.display()
        );
    }
    Ok(Store::open_dir(data).await?)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn list(data: &Path, json: bool) -> anyhow::Result<()> {
    let store = open_existing(data).await?;
    let certs = store.list_certificates().await?;
    let rfc3339 = certkeeper_ca::objects::rfc3339;
    if json {
        let rows: Vec<_> = certs
            .iter()
            .map(|c| {
                serde_json::json!({
                    "serial": c.serial,
                    "names": c.names.split(',').collect::<Vec<_>>(),
                    "not_before": rfc3339(c.not_before),
                    "not_after": rfc3339(c.not_after),
                    "profile": c.profile,
                    "status": c.status,
                    "revoked_at": c.revoked_at.map(rfc3339),
                    "revocation_reason": c.revocation_reason,
                    "key_proven_at_revocation": c.revoked_spki_sha256.is_some(),
                    "spki_sha256": c.spki_sha256,
                    "replaces": c.replaces,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<34} {:<8} {:<20} {:<7} NAMES",
        "SERIAL", "STATUS", "NOT AFTER", "REASON"
    );
    for c in &certs {
        let reason = c
            .revocation_reason
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<34} {:<8} {:<20} {:<7} {}",
            c.serial,
            c.status,
            rfc3339(c.not_after),
            reason,
            c.names
        );
    }
    println!("{} certificate(s)", certs.len());
    Ok(())
}

async fn issuances(data: &Path, json: bool) -> anyhow::Result<()> {
    let store = open_existing(data).await?;
    let rows = store.issuances().await?;
    let rfc3339 = certkeeper_ca::objects::rfc3339;
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "serial": r.serial,
                    "order": r.order_id,
                    "account": r.account_id,
                    "names": r.names.split(',').collect::<Vec<_>>(),
                    "spki_sha256": r.spki_sha256,
                    "profile": r.profile,
                    "state": r.state,
                    "detail": r.detail,
                    "cert_der": r.cert_der,
                    "created_at": rfc3339(r.created_at),
                    "updated_at": rfc3339(r.updated_at),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<34} {:<10} {:<20} NAMES",
        "SERIAL", "STATE", "RESERVED AT"
    );
    for r in &rows {
        println!(
            "{:<34} {:<10} {:<20} {}",
            r.serial,
            r.state,
            rfc3339(r.created_at),
            r.names
        );
    }
    println!("{} serial(s)", rows.len());
    Ok(())
}

async fn revocations(data: &Path, json: bool) -> anyhow::Result<()> {
    let store = open_existing(data).await?;
    let records = store.revocations().await?;
    let rfc3339 = certkeeper_ca::objects::rfc3339;
    if json {
        let rows: Vec<_> = records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "serial": r.serial,
                    "spki_sha256": r.spki_sha256,
                    "spki_der": r.spki_der,
                    "reason": r.reason,
                    "requested_reason": r.requested_reason,
                    "method": r.method,
                    "requester": r.requester,
                    "source_serial": r.source_serial,
                    "key_blocked": r.key_blocked,
                    "revoked_at": rfc3339(r.revoked_at),
                    "recorded_at": rfc3339(r.recorded_at),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<34} {:<6} {:<19} {:<8} {:<20} KEY (SHA-256 OF SPKI)",
        "SERIAL", "REASON", "METHOD", "BLOCKED", "REVOKED AT"
    );
    for r in &records {
        println!(
            "{:<34} {:<6} {:<19} {:<8} {:<20} {}",
            r.serial,
            r.reason,
            r.method,
            if r.key_blocked { "yes" } else { "no" },
            rfc3339(r.revoked_at),
            r.spki_sha256
        );
    }
    println!("{} revocation(s)", records.len());
    Ok(())
}

/// Parses `NAME:KEY=COUNT/PERIOD_SECONDS[/BURST]`. The name never holds a
/// `:` and the numbers never a `=`, so keys may hold both (IPv6, account:name).
fn parse_override(spec: &str) -> anyhow::Result<certkeeper_store::LimitOverrideRow> {
    use certkeeper_ca::ra::limits::LimitName;
    let usage = "expected NAME:KEY=COUNT/PERIOD_SECONDS[/BURST]";
    let (name, rest) = spec.split_once(':').with_context(|| usage)?;
    let (key, numbers) = rest.rsplit_once('=').with_context(|| usage)?;
    let name = LimitName::parse(name).with_context(|| {
        let known: Vec<&str> = LimitName::ALL.iter().map(|n| n.as_str()).collect();
        format!("unknown limit {name:?}; use one of {known:?}")
    })?;
    anyhow::ensure!(!key.is_empty(), "empty bucket key: {usage}");
    let numbers: Vec<i64> = numbers
        .split('/')
        .map(|n| n.trim().parse::<i64>())
        .collect::<Result<_, _>>()
        .with_context(|| usage)?;
    let (count, period, burst) = match numbers[..] {
        [c, p] => (c, p, c),
        [c, p, b] => (c, p, b),
        _ => anyhow::bail!("{usage}"),
    };
    anyhow::ensure!(
        count >= 1 && period >= 1 && burst >= 1,
        "count, period and burst must be at least 1"
    );
    Ok(certkeeper_store::LimitOverrideRow {
        limit_name: name.as_str().to_string(),
        bucket_key: key.to_string(),
        count,
        period_seconds: period,
        burst,
    })
}

async fn limits(data: &Path, policy: &Policy, set: Option<&str>, json: bool) -> anyhow::Result<()> {
    use certkeeper_ca::ra::limits::LimitName;
    let store = open_existing(data).await?;
    if let Some(spec) = set {
        let row = parse_override(spec)?;
        store.set_limit_override(&row).await?;
        if !json {
            println!(
                "override set: {}:{} = {} per {}s (burst {})",
                row.limit_name, row.bucket_key, row.count, row.period_seconds, row.burst
            );
            return Ok(());
        }
    }
    let overrides = store.limit_overrides().await?;
    if json {
        let defaults: Vec<_> = LimitName::ALL
            .iter()
            .map(|n| {
                let c = n.default_in(&policy.limits);
                serde_json::json!({
                    "name": n.as_str(),
                    "count": c.count,
                    "period_seconds": c.period_seconds,
                    "burst": c.burst(),
                })
            })
            .collect();
        let overrides: Vec<_> = overrides
            .iter()
            .map(|o| {
                serde_json::json!({
                    "name": o.limit_name,
                    "key": o.bucket_key,
                    "count": o.count,
                    "period_seconds": o.period_seconds,
                    "burst": o.burst,
                })
            })
            .collect();
        let out = serde_json::json!({ "defaults": defaults, "overrides": overrides });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{:<42} {:>7} {:>14} {:>7}  KEY",
        "LIMIT", "COUNT", "PERIOD (s)", "BURST"
    );
    for n in LimitName::ALL {
        let c = n.default_in(&policy.limits);
        println!(
            "{:<42} {:>7} {:>14} {:>7}  (default)",
            n.as_str(),
            c.count,
            c.period_seconds,
            c.burst()
        );
    }
    for o in &overrides {
        println!(
            "{:<42} {:>7} {:>14} {:>7}  {}",
            o.limit_name, o.count, o.period_seconds, o.burst, o.bucket_key
        );
    }
    Ok(())
}
