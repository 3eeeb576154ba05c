//! `certkeeper bench dns`: RFC 2136 updates per second to a real server,
//! ours against `nsupdate` (BIND's own client) in the same run, so the
//! figure is a ratio on the same machine and server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use certkeeper_dns::{Server, TsigAlgorithm, TsigKey, Update, UpdateClient, fqdn};
use certkeeper_proto::SystemClock;
use hickory_proto::rr::RData;
use hickory_proto::rr::rdata::TXT;

/// What to measure.
pub struct DnsBenchOptions<'a> {
    pub server: SocketAddr,
    pub zone: &'a str,
    pub tsig_key: &'a str,
    pub tsig_algorithm: &'a str,
    pub tsig_secret_file: &'a Path,
    pub updates: usize,
    pub concurrency: usize,
}

/// Runs the three measurements and prints them.
pub async fn run(o: DnsBenchOptions<'_>) -> anyhow::Result<()> {
    anyhow::ensure!(
        o.updates > 0 && o.concurrency > 0,
        "--updates and --concurrency must be > 0"
    );
    let algorithm = TsigAlgorithm::parse(o.tsig_algorithm)?;
    let key = TsigKey::from_file(o.tsig_key, algorithm, o.tsig_secret_file)?;
    let client = Arc::new(UpdateClient::new(
        Server::new(o.server),
        key,
        Arc::new(SystemClock),
    ));
    let zone = fqdn(o.zone)?;

    let ours_1 = ours(&client, &zone, o.updates, 1, "s").await?;
    let ours_n = ours(&client, &zone, o.updates, o.concurrency, "c").await?;
    let peer = nsupdate(&o, o.updates).await?;
    println!(
        "RFC 2136 updates/s to {} (each TXT add and its delete count as one update each):",
        o.server
    );
    println!("  certkeeper, 1 at a time:       {ours_1:>8.0}/s");
    println!(
        "  certkeeper, {:>3} concurrent:    {ours_n:>8.0}/s",
        o.concurrency
    );
    println!("  nsupdate (one process, serial):{peer:>8.0}/s");
    println!(
        "  ratio certkeeper/nsupdate: {:.2}x serial, {:.2}x concurrent",
        ours_1 / peer,
        ours_n / peer
    );
    Ok(())
}

fn txt(v: &str) -> RData {
    RData::TXT(TXT::new(vec![v.to_owned()]))
}

async fn ours(
    client: &Arc<UpdateClient>,
    zone: &certkeeper_dns::Name,
    updates: usize,
    concurrency: usize,
    tag: &str,
) -> anyhow::Result<f64> {
    let pairs = updates.div_ceil(2);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let client = Arc::clone(client);
        let zone = zone.clone();
        let tag = tag.to_owned();
        tasks.spawn(async move {
            let mut i = w;
            while i < pairs {
                let name = fqdn(&format!("bench-{tag}{i}.{zone}"))?;
                let mut add = Update::new(zone.clone());
                add.add(name.clone(), 60, txt("bench"));
                client.send(&add).await?;
                let mut del = Update::new(zone.clone());
                del.delete_rr(name, txt("bench"));
                client.send(&del).await?;
                i += concurrency;
            }
            Ok::<(), certkeeper_dns::DnsError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("bench task")??;
    }
    Ok((pairs * 2) as f64 / start.elapsed().as_secs_f64())
}

async fn nsupdate(o: &DnsBenchOptions<'_>, updates: usize) -> anyhow::Result<f64> {
    let pairs = updates.div_ceil(2);
    let secret = std::fs::read_to_string(o.tsig_secret_file)?;
    let mut script = format!(
        "server {} {}\nzone {}\n",
        o.server.ip(),
        o.server.port(),
        o.zone
    );
    for i in 0..pairs {
        let name = format!("bench-n{i}.{}.", o.zone.trim_end_matches('.'));
        script.push_str(&format!("update add {name} 60 TXT \"bench\"\nsend\n"));
        script.push_str(&format!("update delete {name} TXT \"bench\"\nsend\n"));
    }
    let start = Instant::now();
    let mut child = tokio::process::Command::new("nsupdate")
        .arg("-y")
        .arg(format!(
            "{}:{}:{}",
            o.tsig_algorithm,
            o.tsig_key,
            secret.trim()
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running nsupdate (bind9-dnsutils)")?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().context("nsupdate stdin")?;
        stdin.write_all(script.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    anyhow::ensure!(
        out.status.success(),
        "nsupdate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((pairs * 2) as f64 / start.elapsed().as_secs_f64())
}
