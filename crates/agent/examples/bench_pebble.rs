//! Runs the ACME bench against a fresh pebble + BIND started by the test
//! harness: `cargo run -p certkeeper-agent --example bench_pebble -- [CONCURRENCY] [ORDERS]`.
//!
//! A measurement tool, not a test: timings depend on the machine.

use std::net::SocketAddr;

use certkeeper_agent::bench::{self, BenchOptions};
use certkeeper_harness::{Bind, Pebble};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let concurrency = args.next().map(|a| a.parse()).transpose()?.unwrap_or(32);
    let orders = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let bind = Bind::start()?;
    // Nonce rejection off: we measure the CA's issuance path, not retries.
    // Authorization reuse off: pebble 2.4's reuse lookup takes the store lock
    // then an order's lock while finalization takes them in the opposite
    // order, so under concurrency it deadlocks (every request then hangs).
    let env = [("PEBBLE_WFE_NONCEREJECT", "0"), ("PEBBLE_AUTHZREUSE", "0")];
    let pebble = Pebble::start(Some(&bind), &env)?;
    let report = bench::run(BenchOptions {
        directory: pebble.directory_url(),
        root_pem: Some(pebble.tls_ca_pem_path().to_owned()),
        concurrency,
        orders,
        http01_listen: SocketAddr::from(([127, 0, 0, 1], pebble.http01_port())),
        domain_suffix: "example.test".into(),
        ..BenchOptions::default()
    })
    .await?;
    print!("{report}");
    Ok(())
}
