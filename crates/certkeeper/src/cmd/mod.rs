//! The command tree.

mod bench;
mod ca;
mod status_page;
mod up;

use clap::{Parser, Subcommand};

/// certkeeper keeps TLS certificates and keys alive, safely.
#[derive(Debug, Parser)]
#[command(name = "certkeeper", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The built-in private ACME certificate authority.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// The main job: built-in CA, a certificate for localhost, an HTTPS status page.
    Up(up::UpArgs),
    /// Load generators, to measure against a peer in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Ca(c) => ca::run(c).await,
        Command::Bench(c) => bench::run(c).await,
        Command::Up(a) => up::run(a).await,
    }
}
