//! Load generator: complete ACME orders against a CA, measured end to end.
//!
//! Each worker owns one account (registered before the clock starts) and
//! runs whole flows (order → http-01 through one shared responder →
//! finalize with a fresh P-256 CSR → download) until the total is reached.
//! Latency is measured per complete order, so it reflects the CA's work.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::acme::{
    AcmeAccount, AcmeDirectory, AcmeError, Http01Responder, NewAccountOptions, OrderRequest,
    PollPolicy, StepTimings,
};

/// What to run and against which CA.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// ACME directory URL.
    pub directory: String,
    /// PEM roots for the CA's HTTPS endpoint (pebble and our CA use private roots).
    pub root_pem: Option<PathBuf>,
    /// Number of workers, each with its own account, running orders in parallel.
    pub concurrency: usize,
    /// Total number of orders to run.
    pub orders: usize,
    /// Where the shared http-01 responder listens; the CA must validate on
    /// this port (pebble's `httpPort`, 5002 by default).
    pub http01_listen: SocketAddr,
    /// Zone the names live in; names are `w{worker}-o{n}-{random}.{suffix}`
    /// and must resolve to the responder for the CA.
    pub domain_suffix: String,
    /// Polling behaviour and per-wait timeout of each order.
    pub poll: PollPolicy,
    /// Keep every issued chain in the report, so a caller can inspect them.
    pub keep_chains: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            directory: "https://127.0.0.1:14000/dir".to_owned(),
            root_pem: None,
            concurrency: 4,
            orders: 100,
            http01_listen: SocketAddr::from(([127, 0, 0, 1], 5002)),
            domain_suffix: "example.test".to_owned(),
            poll: PollPolicy::default(),
            keep_chains: false,
        }
    }
}

/// One issued certificate, kept when [`BenchOptions::keep_chains`] is set.
#[derive(Debug, Clone)]
pub struct BenchIssued {
    /// The name that was requested.
    pub name: String,
    /// The chain as downloaded (PEM, leaf first).
    pub chain_pem: String,
}

/// Results of a run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Orders that ended with a downloaded, checked chain.
    pub orders_ok: usize,
    /// Orders that failed at any step.
    pub orders_failed: usize,
    /// Wall time from the first order to the last (account setup excluded).
    pub elapsed: Duration,
    /// Successful orders per second of `elapsed`.
    pub orders_per_sec: f64,
    /// Median latency of a successful complete order.
    pub p50: Duration,
    /// 99th-percentile latency of a successful complete order.
    pub p99: Duration,
    /// Slowest successful order.
    pub max: Duration,
    /// Mean time per step of a successful order: shows whether time goes to
    /// the CA's validation, its issuance, or round trips.
    pub mean_steps: StepTimings,
    /// Workers that ran.
    pub concurrency: usize,
    /// Time spent registering the accounts (before the clock).
    pub setup: Duration,
    /// The first failure, to tell the operator what went wrong.
    pub first_error: Option<String>,
    /// Issued chains, when requested.
    pub issued: Vec<BenchIssued>,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.orders_ok + self.orders_failed;
        writeln!(
            f,
            "ACME bench: {total} orders, {} workers",
            self.concurrency
        )?;
        writeln!(
            f,
            "  ok        {:>8}   failed {}",
            self.orders_ok, self.orders_failed
        )?;
        writeln!(f, "  elapsed   {:>8.2} s", self.elapsed.as_secs_f64())?;
        writeln!(f, "  rate      {:>8.1} orders/s", self.orders_per_sec)?;
        writeln!(
            f,
            "  latency   p50 {:.1} ms   p99 {:.1} ms   max {:.1} ms",
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )?;
        let s = &self.mean_steps;
        writeln!(
            f,
            "  mean step new-order {:.1} ms  challenges {:.1} ms  validation {:.1} ms  finalize {:.1} ms  download {:.1} ms",
            ms(s.new_order),
            ms(s.challenges),
            ms(s.validation),
            ms(s.finalize),
            ms(s.download)
        )?;
        writeln!(
            f,
            "  setup     {:>8.2} s ({} accounts, not timed)",
            self.setup.as_secs_f64(),
            self.concurrency
        )?;
        if let Some(error) = &self.first_error {
            writeln!(f, "  first error: {error}")?;
        }
        Ok(())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Why a bench could not run at all (individual order failures are counted
/// in the report instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The options cannot work.
    #[error("invalid bench options: {0}")]
    Options(&'static str),
    /// The http-01 responder could not bind its address.
    #[error("cannot listen for http-01 on {addr}: {source}")]
    Responder {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// Registering a worker's account failed.
    #[error("cannot register bench account: {0}")]
    Account(#[source] AcmeError),
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    steps: Vec<StepTimings>,
    failed: usize,
    first_error: Option<String>,
    issued: Vec<BenchIssued>,
}

/// Runs the bench and reports throughput and latency.
pub async fn run(opts: BenchOptions) -> Result<BenchReport, BenchError> {
    if opts.concurrency == 0 {
        return Err(BenchError::Options("concurrency must be at least 1"));
    }
    let workers = opts.concurrency.min(opts.orders.max(1));
    let directory = AcmeDirectory {
        root_pem: opts.root_pem.clone(),
        ..AcmeDirectory::new(opts.directory.clone())
    };
    let responder = Arc::new(Http01Responder::bind(opts.http01_listen).await.map_err(
        |source| BenchError::Responder {
            addr: opts.http01_listen,
            source,
        },
    )?);

    // Accounts are set up concurrently and before the clock: registering
    // is not what we measure.
    let setup_started = Instant::now();
    let mut registrations = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let directory = directory.clone();
        registrations.spawn(async move {
            AcmeAccount::create(&directory, &NewAccountOptions::default())
                .await
                .map(|(account, _credentials)| account)
        });
    }
    let mut accounts = Vec::with_capacity(workers);
    while let Some(joined) = registrations.join_next().await {
        match joined {
            Ok(Ok(account)) => accounts.push(account),
            Ok(Err(e)) => return Err(BenchError::Account(e)),
            Err(_) => return Err(BenchError::Options("account task panicked")),
        }
    }
    let setup = setup_started.elapsed();

    // One random label per run keeps names unique across runs, so the CA
    // never reuses an authorization and every order does full validation.
    let run_id = format!("{:08x}", rand::random::<u32>());
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, account) in accounts.into_iter().enumerate() {
        let next = next.clone();
        let tally = tally.clone();
        let responder = responder.clone();
        let opts = opts.clone();
        let run_id = run_id.clone();
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= opts.orders {
                    break;
                }
                let name = format!("w{worker}-o{n}-{run_id}.{}", opts.domain_suffix);
                let request = OrderRequest {
                    poll: opts.poll,
                    ..OrderRequest::new([name.clone()])
                };
                let t0 = Instant::now();
                let result = account.issue(&request, responder.as_ref()).await;
                let latency = t0.elapsed();
                let Ok(mut tally) = tally.lock() else { break };
                match result {
                    Ok(issued) => {
                        tally.latencies.push(latency);
                        tally.steps.push(issued.timings);
                        if opts.keep_chains {
                            tally.issued.push(BenchIssued {
                                name,
                                chain_pem: issued.chain_pem,
                            });
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%name, error = %e.report(), "bench order failed");
                        tally.failed += 1;
                        tally.first_error.get_or_insert_with(|| e.report());
                        // A failing CA is not being measured any more (a hung
                        // one would make every later order wait out its
                        // timeout): hand out no further orders.
                        next.store(opts.orders, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();

    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    let mut latencies = tally.latencies;
    latencies.sort_unstable();
    let orders_ok = latencies.len();
    Ok(BenchReport {
        orders_ok,
        orders_failed: tally.failed,
        elapsed,
        orders_per_sec: if elapsed.is_zero() {
            0.0
        } else {
            orders_ok as f64 / elapsed.as_secs_f64()
        },
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
        mean_steps: mean_steps(&tally.steps),
        concurrency: workers,
        setup,
        first_error: tally.first_error,
        issued: tally.issued,
    })
}

fn mean_steps(samples: &[StepTimings]) -> StepTimings {
    let n = u32::try_from(samples.len()).unwrap_or(u32::MAX);
    if n == 0 {
        return StepTimings::default();
    }
    let mean = |f: fn(&StepTimings) -> Duration| samples.iter().map(f).sum::<Duration>() / n;
    StepTimings {
        new_order: mean(|s| s.new_order),
        challenges: mean(|s| s.challenges),
        validation: mean(|s| s.validation),
        finalize: mean(|s| s.finalize),
        download: mean(|s| s.download),
    }
}

/// Nearest-rank percentile of sorted samples (zero when there are none).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0.50), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&samples[..1], 0.99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
