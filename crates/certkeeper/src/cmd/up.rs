//! `certkeeper up`: the main job. Without `--config` it runs on embedded
//! defaults: the built-in CA on loopback, one managed certificate for
//! `localhost` (kept in the store, reused across restarts, renewed by the
//! agent), served on the HTTPS admin listener (dashboard, API, metrics).
//! The defaults are an ordinary agent configuration, so both paths run the
//! same daemon.

use std::net::SocketAddr;
use std::path::PathBuf;

use certkeeper_agent::config::{
    AdminConfig, AgentSettings, BuiltinCa, CertificateConfig, Config, IssuerConfig,
};
use certkeeper_agent::limits::LimitsConfig;
use clap::Args;

#[derive(Debug, Args, serde::Serialize, serde::Deserialize)]
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
    /// Where the admin listener (dashboard, JSON API, /metrics) serves
    /// HTTPS with the localhost certificate.
    #[arg(long, alias = "status-listen", default_value = "127.0.0.1:8443")]
    #[serde(alias = "status_listen")]
    admin_listen: SocketAddr,
}

/// The embedded defaults as a configuration.
fn defaults(args: &UpArgs) -> Config {
    let host = if args.ca_listen.ip().is_loopback() || args.ca_listen.ip().is_unspecified() {
        "localhost".to_string()
    } else {
        args.ca_listen.ip().to_string()
    };
    Config {
        data: args.data.clone(),
        agent: AgentSettings {
            http01_listen: args.http01_listen,
            ..AgentSettings::default()
        },
        builtin_ca: Some(BuiltinCa {
            listen: args.ca_listen,
            http01_port: args.http01_listen.port(),
        }),
        issuers: vec![IssuerConfig {
            name: "builtin".into(),
            directory: format!("https://{host}:{}/directory", args.ca_listen.port()),
            contact: Vec::new(),
            eab: None,
            root: Some(args.data.join("builtin-ca/ca/root.pem")),
            profile: None,
            // Our own CA: hold the agent to the limits it enforces.
            limits: Some(LimitsConfig::Preset("builtin".into())),
            tlog: None,
            ct_search: None,
        }],
        certificates: vec![CertificateConfig::new(
            "localhost",
            vec!["localhost".into()],
            "builtin",
        )],
        admin: Some(AdminConfig {
            listen: args.admin_listen,
            certificate: Some("localhost".into()),
            token_file: Some(args.data.join(ADMIN_TOKEN)),
        }),
        keys: None,
        dns_servers: Vec::new(),
        dns_secondary: None,
    }
}

/// The admin API's bearer token, created by `up` on first start (0600).
const ADMIN_TOKEN: &str = "admin.token";

/// Where `up` records the arguments its embedded defaults came from.
const RECORDED: &str = "up-defaults.json";

/// The embedded defaults `certkeeper up` ran with on `data`, if it did.
pub fn recorded_defaults(data: &std::path::Path) -> anyhow::Result<Option<Config>> {
    let path = data.join(RECORDED);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    };
    let mut args: UpArgs = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is corrupt ({e}); run `certkeeper up` again",
            path.display()
        )
    })?;
    // The data directory is where it was found, even if moved since.
    args.data = data.to_path_buf();
    Ok(Some(defaults(&args)))
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => {
            std::fs::create_dir_all(&args.data)?;
            certkeeper_store::files::write_atomic(
                &args.data.join(RECORDED),
                serde_json::to_string_pretty(&args)?.as_bytes(),
                certkeeper_store::files::PUBLIC,
            )?;
            let token = args.data.join(ADMIN_TOKEN);
            if !token.exists() {
                let secret: [u8; 32] = rand::random();
                certkeeper_store::files::write_atomic(
                    &token,
                    format!("{}\n", hex::encode(secret)).as_bytes(),
                    certkeeper_store::files::PRIVATE,
                )?;
            }
            defaults(&args)
        }
    };
    crate::cmd::agent::daemon(config).await
}
