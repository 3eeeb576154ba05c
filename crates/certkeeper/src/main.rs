//! certkeeper: certificate and key lifecycle manager. This file only parses
//! the command line and starts the runtime; the commands live in `cmd/`.

use clap::Parser;

mod admin;
mod cmd;

fn main() -> std::process::ExitCode {
    let cli = cmd::Cli::parse();
    if let Err(e) = init_logging() {
        eprintln!("error: {e}");
        return std::process::ExitCode::from(2);
    }
    // One crypto provider for every rustls user in the process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by `CERTKEEPER_LOG` (default `info`), as
/// text or, with `CERTKEEPER_LOG_FORMAT=json`, one JSON object per line for
/// log shippers.
fn init_logging() -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CERTKEEPER_LOG")
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("CERTKEEPER_LOG_FORMAT").as_deref() {
        Err(_) | Ok("text") => builder.init(),
        Ok("json") => builder.json().init(),
        Ok(other) => {
            return Err(format!(
                "CERTKEEPER_LOG_FORMAT={other:?} is not a log format: use text or json"
            ));
        }
    }
    Ok(())
}
