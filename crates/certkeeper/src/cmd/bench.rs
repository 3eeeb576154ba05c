//! `certkeeper bench …`: load generators, run against our CA and a peer in
//! the same session so figures are ratios, not absolute claims.

use std::net::SocketAddr;
use std::path::PathBuf;

use certkeeper_agent::bench::{self, BenchOptions};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Complete ACME flows against a CA: one account per worker; order →
    /// http-01 answered by the bench → finalize → download.
    Ca {
        /// The CA's directory URL.
        #[arg(long)]
        directory: String,
        /// Parallel workers (one account each).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Orders in total.
        #[arg(long, default_value_t = 500)]
        orders: usize,
        /// Root certificate (PEM) of the CA's HTTPS listener.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Port the bench answers http-01 on: the port the CA validates.
        #[arg(long, default_value_t = 5002)]
        http01_port: u16,
        /// Names are `w<worker>-o<n>-<random>.<suffix>`; they must resolve to
        /// 127.0.0.1 through the CA's resolver (e.g. a wildcard A record).
        #[arg(long, default_value = "example.test")]
        domain_suffix: String,
    },
    /// The agent at fleet scale, no CA: N certificates each with a backup;
    /// restart + plan, both slots loaded in resolvers (RSS), and failover
    /// of every certificate to its backup after a mass revocation.
    Fleet {
        /// Managed certificates.
        #[arg(long, default_value_t = 100_000)]
        certs: usize,
        /// Where to put the store (default: a temporary directory, removed after).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Measure a fleet built by a previous run in --data (the bench
        /// builds, then measures in a fresh process so memory figures are clean).
        #[arg(long, hide = true)]
        measure_built_in: Option<f64>,
    },
    /// Mass re-issuance after an incident, through the real daemon against
    /// a CA: N certificates obtained from an empty store, then every one
    /// recorded revoked at once and re-issued on a new key; time for each
    /// phase. `scripts/bench-reissue` runs it with the CA's ceiling and lego
    /// in the same run.
    Reissue {
        /// The CA's directory URL.
        #[arg(long)]
        directory: String,
        /// Root certificate (PEM) of the CA's HTTPS listener.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Managed certificates.
        #[arg(long, default_value_t = 10_000)]
        certs: usize,
        /// Jobs talking to the CA at once.
        #[arg(long, default_value_t = 32)]
        concurrency: u32,
        /// Port the agent answers http-01 on: the port the CA validates.
        #[arg(long, default_value_t = 5002)]
        http01_port: u16,
        /// Names are `r<n>.<suffix>`; they must resolve to 127.0.0.1 through
        /// the CA's resolver.
        #[arg(long, default_value = "example.test")]
        domain_suffix: String,
        /// Give up on a phase after this many seconds.
        #[arg(long, default_value_t = 900)]
        phase_timeout_seconds: u64,
    },
    /// The transparency log alone: concurrent appends of certificate-sized
    /// entries through the sequencer (every batch fsynced, then a signed
    /// checkpoint); appends/s, batches, latency. For issuance with the log
    /// on vs off, see `scripts/bench-tlog`.
    Tlog {
        /// Entries in total.
        #[arg(long, default_value_t = 200_000)]
        entries: usize,
        /// Concurrent appenders.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Bytes per entry (a P-256 leaf is ~700–1000 bytes).
        #[arg(long, default_value_t = 900)]
        entry_size: usize,
        /// Log directory (default: a temporary directory, removed after).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// RFC 2136 UPDATEs per second to a server: ours (serial and
    /// concurrent) against nsupdate, in one run.
    Dns {
        /// The zone's primary, ADDRESS:PORT.
        #[arg(long)]
        server: SocketAddr,
        /// The zone to add and delete bench-*.ZONE TXT records in.
        #[arg(long)]
        zone: String,
        /// TSIG key name.
        #[arg(long)]
        tsig_key: String,
        /// TSIG algorithm.
        #[arg(long, default_value = "hmac-sha256")]
        tsig_algorithm: String,
        /// File with the base64 TSIG secret (0600).
        #[arg(long)]
        tsig_secret_file: PathBuf,
        /// Updates per measurement.
        #[arg(long, default_value_t = 2000)]
        updates: usize,
        /// Concurrent updates in the concurrent measurement.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Tlog {
            entries,
            concurrency,
            entry_size,
            dir,
        } => super::tlog::bench(entries, concurrency, entry_size, dir).await,
        BenchCommand::Dns {
            server,
            zone,
            tsig_key,
            tsig_algorithm,
            tsig_secret_file,
            updates,
            concurrency,
        } => {
            super::dns_bench::run(super::dns_bench::DnsBenchOptions {
                server,
                zone: &zone,
                tsig_key: &tsig_key,
                tsig_algorithm: &tsig_algorithm,
                tsig_secret_file: &tsig_secret_file,
                updates,
                concurrency,
            })
            .await
        }
        BenchCommand::Reissue {
            directory,
            root,
            certs,
            concurrency,
            http01_port,
            domain_suffix,
            phase_timeout_seconds,
        } => {
            use certkeeper_agent::reissue_bench::{self, ReissueOptions};
            anyhow::ensure!(
                certs > 0 && concurrency > 0,
                "--certs and --concurrency must be at least 1"
            );
            let temp = tempfile::tempdir()?;
            let report = reissue_bench::run(ReissueOptions {
                directory,
                root_pem: root,
                certs,
                http01_listen: SocketAddr::from(([127, 0, 0, 1], http01_port)),
                domain_suffix,
                concurrency,
                dir: temp.path().join("agent"),
                phase_timeout: std::time::Duration::from_secs(phase_timeout_seconds),
            })
            .await?;
            print!("{report}");
            anyhow::ensure!(
                report.replaced == certs,
                "only {} of {certs} certificates were re-issued",
                report.replaced
            );
            Ok(())
        }
        BenchCommand::Fleet {
            certs,
            data,
            measure_built_in,
        } => {
            use certkeeper_agent::fleet_bench::{self, FleetOptions};
            anyhow::ensure!(certs > 0, "--certs must be at least 1");
            let temp = tempfile::tempdir()?;
            let dir = data.unwrap_or_else(|| temp.path().join("fleet"));
            let opts = FleetOptions { certs, dir };
            if let Some(secs) = measure_built_in {
                let report =
                    fleet_bench::measure(&opts, std::time::Duration::from_secs_f64(secs)).await?;
                print!("{report}");
                anyhow::ensure!(
                    report.serving_backup == certs,
                    "only {} of {certs} certificates serve their backup",
                    report.serving_backup
                );
                return Ok(());
            }
            anyhow::ensure!(
                !opts.dir.join("certkeeper.db").exists(),
                "{} already holds a store; the fleet bench needs an empty directory",
                opts.dir.display()
            );
            let setup = fleet_bench::build(&opts).await?;
            // Measure in a fresh process: building leaves hundreds of MiB in
            // the allocator that would hide the resolvers' real footprint.
            let status = std::process::Command::new(std::env::current_exe()?)
                .args(["bench", "fleet", "--certs", &certs.to_string(), "--data"])
                .arg(&opts.dir)
                .arg("--measure-built-in")
                .arg(setup.as_secs_f64().to_string())
                .status()?;
            anyhow::ensure!(status.success(), "the measuring process failed: {status}");
            Ok(())
        }
        BenchCommand::Ca {
            directory,
            concurrency,
            orders,
            root,
            http01_port,
            domain_suffix,
        } => {
            anyhow::ensure!(
                concurrency > 0 && orders > 0,
                "--concurrency and --orders must be at least 1"
            );
            let opts = BenchOptions {
                directory,
                root_pem: root,
                concurrency,
                orders,
                http01_listen: SocketAddr::from(([127, 0, 0, 1], http01_port)),
                domain_suffix,
                ..BenchOptions::default()
            };
            let report = bench::run(opts).await?;
            print!("{report}");
            anyhow::ensure!(
                report.orders_failed == 0,
                "{} orders failed",
                report.orders_failed
            );
            Ok(())
        }
    }
}
