//! `certkeeper tlog …`: inclusion and consistency proofs from the CA's own
//! log, and `verify`, the audit a third party runs with only the public key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certkeeper_tlog::client::{DirFetch, Fetch, audit};
use certkeeper_tlog::note::{Checkpoint, NoteVerifier};
use certkeeper_tlog::proof::{
    consistency_proof, inclusion_proof, tree_root, verify_consistency, verify_inclusion,
};
use certkeeper_tlog::storage::TileReader;
use certkeeper_tlog::{TlogError, leaf_hash};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum TlogCommand {
    /// Print (and check) the inclusion proof of a certificate in the CA's log.
    Prove {
        /// Data directory of the CA.
        #[arg(long, default_value = "certkeeper-data")]
        data: PathBuf,
        /// The certificate's serial, lowercase hex as `ca list` shows it.
        #[arg(long, conflicts_with = "cert", required_unless_present = "cert")]
        serial: Option<String>,
        /// The certificate (PEM, leaf first, or DER) instead of a serial.
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Print (and check) the consistency proof between two tree sizes.
    Consistency {
        /// The older tree size.
        old: u64,
        /// The newer tree size (at most the current checkpoint's).
        new: u64,
        /// Data directory of the CA.
        #[arg(long, default_value = "certkeeper-data")]
        data: PathBuf,
    },
    /// Audit a served log with only its public key: check the checkpoint's
    /// signature, fetch every tile, recompute every hash and the root.
    Verify {
        /// The log: `https://HOST:PORT/tlog/` or a directory holding a copy.
        #[arg(long)]
        log: String,
        /// The verifier key, `NAME+ID+KEY` (the CA's `DATA/ca/tlog.pub`).
        #[arg(long)]
        checkpoint_key: String,
        /// Also prove that this certificate (PEM or DER) is in the log.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Trust this root (PEM) for the log's HTTPS, e.g. the CA's root.pem.
        #[arg(long)]
        root: Option<PathBuf>,
        /// A checkpoint seen before (a file with the signed note): the log
        /// must be consistent with it (not rewritten or forked).
        #[arg(long)]
        previous: Option<PathBuf>,
    },
}

pub async fn run(cmd: TlogCommand) -> anyhow::Result<()> {
    match cmd {
        TlogCommand::Prove { data, serial, cert } => prove(&data, serial, cert.as_deref()).await,
        TlogCommand::Consistency { old, new, data } => consistency(&data, old, new),
        TlogCommand::Verify {
            log,
            checkpoint_key,
            cert,
            root,
            previous,
        } => {
            verify(
                &log,
                &checkpoint_key,
                cert.as_deref(),
                root.as_deref(),
                previous.as_deref(),
            )
            .await
        }
    }
}

fn b64s(hashes: &[[u8; 32]]) -> Vec<String> {
    hashes.iter().map(|h| STANDARD.encode(h)).collect()
}

/// The CA's published checkpoint, verified with its own key file.
fn local_checkpoint(data: &Path) -> anyhow::Result<(PathBuf, Checkpoint, String)> {
    let dir = certkeeper_ca::tlog::log_dir(data);
    let vkey_path = data.join("ca/tlog.pub");
    let vkey = std::fs::read_to_string(&vkey_path).with_context(|| {
        format!(
            "{}: no transparency log key; pass the CA's --data directory (the CA creates the log at start)",
            vkey_path.display()
        )
    })?;
    let verifier = NoteVerifier::parse(vkey.trim())?;
    let note = std::fs::read_to_string(dir.join("checkpoint"))
        .with_context(|| format!("{}: no checkpoint", dir.display()))?;
    let cp = Checkpoint::open(&note, &verifier)?;
    Ok((dir, cp, note))
}

/// The leaf DER from a PEM chain or a DER file.
fn read_cert(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(b"-----BEGIN") {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let first = CertificateDer::pem_slice_iter(&bytes)
            .next()
            .with_context(|| format!("{}: no CERTIFICATE in the PEM", path.display()))?
            .with_context(|| format!("{}: bad PEM", path.display()))?;
        return Ok(first.to_vec());
    }
    Ok(bytes)
}

async fn prove(data: &Path, serial: Option<String>, cert: Option<&Path>) -> anyhow::Result<()> {
    let (dir, cp, note) = local_checkpoint(data)?;
    let serial = match (serial, cert) {
        (Some(s), _) => s.to_ascii_lowercase(),
        (None, Some(p)) => {
            let der = read_cert(p)?;
            use x509_parser::prelude::FromDer;
            let (_, c) = x509_parser::certificate::X509Certificate::from_der(&der)
                .map_err(|e| anyhow::anyhow!("{}: not a certificate: {e}", p.display()))?;
            certkeeper_proto::serial::serial_hex(c.raw_serial())
        }
        (None, None) => anyhow::bail!("pass --serial or --cert"),
    };
    let store = certkeeper_store::Store::open_dir(data).await?;
    let index = store.tlog_index(&serial).await?.with_context(|| {
        format!(
            "certificate {serial} is not in the log (is it a certificate of this CA? see `ca list`)"
        )
    })? as u64;
    let reader = TileReader::new(&dir, cp.size);
    let entry = reader.entry(index)?;
    let proof = inclusion_proof(&reader, index, cp.size)?;
    verify_inclusion(index, cp.size, &leaf_hash(&entry), &proof, &cp.root)?;
    let out = serde_json::json!({
        "serial": serial,
        "index": index,
        "tree_size": cp.size,
        "root": STANDARD.encode(cp.root),
        "leaf_hash": STANDARD.encode(leaf_hash(&entry)),
        "inclusion_proof": b64s(&proof),
        "checkpoint": note,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn consistency(data: &Path, old: u64, new: u64) -> anyhow::Result<()> {
    let (dir, cp, _) = local_checkpoint(data)?;
    if old > new || new > cp.size {
        anyhow::bail!(
            "need OLD <= NEW <= {} (the current checkpoint's tree size); got {old} and {new}",
            cp.size
        );
    }
    let reader = TileReader::new(&dir, cp.size);
    let (old_root, new_root) = (tree_root(&reader, old)?, tree_root(&reader, new)?);
    let proof = consistency_proof(&reader, old, new)?;
    verify_consistency(old, new, &old_root, &new_root, &proof)?;
    let out = serde_json::json!({
        "old_size": old,
        "new_size": new,
        "old_root": STANDARD.encode(old_root),
        "new_root": STANDARD.encode(new_root),
        "consistency_proof": b64s(&proof),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Fetches over HTTPS under a log prefix, each request with a deadline and
/// a size cap (a full entry bundle of 256 certificates is well under 4 MiB).
struct HttpFetch {
    base: String,
    client: reqwest::Client,
}

const MAX_TILE_BYTES: usize = 16 * 1024 * 1024;

impl Fetch for HttpFetch {
    async fn fetch(&self, path: &str) -> Result<Option<Vec<u8>>, TlogError> {
        let url = format!("{}{path}", self.base);
        let err = |d: String| TlogError::Fetch {
            what: url.clone(),
            detail: d,
        };
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        let body = resp.bytes().await.map_err(|e| err(e.to_string()))?;
        if body.len() > MAX_TILE_BYTES {
            return Err(err(format!(
                "{} bytes is more than a tile can hold",
                body.len()
            )));
        }
        Ok(Some(body.to_vec()))
    }
}

async fn verify(
    log: &str,
    key: &str,
    cert: Option<&Path>,
    root: Option<&Path>,
    previous: Option<&Path>,
) -> anyhow::Result<()> {
    let verifier = NoteVerifier::parse(key.trim())?;
    let result = if log.starts_with("https://") || log.starts_with("http://") {
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(r) = root {
            let pem = std::fs::read(r).with_context(|| format!("reading {}", r.display()))?;
            b = b.add_root_certificate(
                reqwest::Certificate::from_pem(&pem)
                    .with_context(|| format!("{}: not a PEM certificate", r.display()))?,
            );
        }
        let base = if log.ends_with('/') {
            log.to_string()
        } else {
            format!("{log}/")
        };
        audit(
            &HttpFetch {
                base,
                client: b.build()?,
            },
            &verifier,
        )
        .await
    } else {
        audit(&DirFetch(PathBuf::from(log)), &verifier).await
    };
    let a = result.with_context(|| format!("the log at {log} does not verify"))?;
    println!(
        "log {} verified: {} entries, root {}, checkpoint signed by {}",
        a.checkpoint.origin,
        a.checkpoint.size,
        STANDARD.encode(a.checkpoint.root),
        verifier.name()
    );
    if let Some(p) = previous {
        let note =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let old = Checkpoint::open(&note, &verifier)
            .with_context(|| format!("{}: not a checkpoint signed by this key", p.display()))?;
        if old.size > a.checkpoint.size {
            anyhow::bail!(
                "the log shrank: {} held {} entries, the log now {}: it was rewritten",
                p.display(),
                old.size,
                a.checkpoint.size
            );
        }
        let proof = consistency_proof(&a.tree, old.size, a.checkpoint.size)?;
        verify_consistency(old.size, a.checkpoint.size, &old.root, &a.checkpoint.root, &proof)
            .map_err(|_| {
                anyhow::anyhow!(
                    "the log is not consistent with {} (size {}): its first {} entries were rewritten (a fork)",
                    p.display(),
                    old.size,
                    old.size
                )
            })?;
        println!(
            "consistent with the checkpoint of size {} in {}",
            old.size,
            p.display()
        );
    }
    if let Some(c) = cert {
        let der = read_cert(c)?;
        let (index, proof) = a
            .prove(&der)
            .with_context(|| format!("{} is not in the log", c.display()))?;
        println!(
            "{}: entry {index}, inclusion proof ({} hashes) verified against the signed checkpoint",
            c.display(),
            proof.len()
        );
    }
    Ok(())
}

/// `certkeeper bench tlog`: appends/s through the sequencer, on disk.
pub async fn bench(
    entries: usize,
    concurrency: usize,
    entry_size: usize,
    dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::time::Instant;
    anyhow::ensure!(
        entries > 0 && concurrency > 0,
        "--entries and --concurrency must be at least 1"
    );
    anyhow::ensure!(
        entry_size <= 65535,
        "--entry-size must fit an entry bundle (65535 bytes)"
    );
    let temp = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| temp.path().join("log"));
    let (signer, _) = certkeeper_tlog::note::NoteSigner::generate("bench.invalid/log")?;
    let (log, _) = certkeeper_tlog::storage::FileLog::open(&dir, signer)?;
    let seq = certkeeper_tlog::Sequencer::start(log);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (seq, next) = (seq.clone(), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= entries {
                    return Ok::<_, TlogError>(lat);
                }
                let mut e = vec![0u8; entry_size];
                e[..8.min(entry_size)]
                    .copy_from_slice(&(i as u64).to_be_bytes()[..8.min(entry_size)]);
                let t = Instant::now();
                seq.append(e).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = started.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let batches = seq.batches();
    let published = seq.published();
    anyhow::ensure!(
        published.size == entries as u64,
        "log holds {} of {entries}",
        published.size
    );
    println!(
        "tlog bench: {entries} entries of {entry_size} bytes, {concurrency} concurrent appenders"
    );
    println!(
        "  rate     {:.0} appends/s",
        entries as f64 / elapsed.as_secs_f64()
    );
    println!("  elapsed  {:.2} s", elapsed.as_secs_f64());
    println!(
        "  batches  {batches} (each fsynced, then a signed checkpoint): {:.1} checkpoints/s, {:.0} entries per batch",
        batches as f64 / elapsed.as_secs_f64(),
        entries as f64 / batches.max(1) as f64
    );
    println!(
        "  latency  p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms (append → covered by a published checkpoint)",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
    Ok(())
}
