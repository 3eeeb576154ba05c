//! `certkeeper bench …`: load generators.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {}
}
