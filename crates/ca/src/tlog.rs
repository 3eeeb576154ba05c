//! The CA's transparency log: every certificate it signs is appended to a
//! C2SP tlog-tiles log (`certkeeper_tlog`) before a client can download it.
//!
//! Two callers append: the finalization that recorded the certificate, and
//! (after a crash between recording and logging, or a failed append) the
//! first download. Per serial both go through one [`OnceCell`], so a
//! certificate is appended once however many requests race for it; the
//! store's serial → index table is checked first, so restarts never append
//! twice either.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use certkeeper_store::Store;
use certkeeper_tlog::note::NoteSigner;
use certkeeper_tlog::proof::inclusion_proof;
use certkeeper_tlog::storage::FileLog;
use certkeeper_tlog::{Hash, Sequencer};
use tokio::sync::OnceCell;
use x509_parser::prelude::FromDer;

use crate::CaError;

/// The log directory under the CA's data directory.
pub fn log_dir(data: &Path) -> std::path::PathBuf {
    data.join("tlog")
}

/// The log and the bookkeeping that makes appends happen once per serial.
#[derive(Debug)]
pub struct CaLog {
    seq: Sequencer,
    store: Store,
    verifier: String,
    inflight: Inflight,
    /// Appended `(serial, index)` pairs on their way to the store's index,
    /// recorded in batches by one task (see [`record_indices`]).
    recorder: tokio::sync::mpsc::UnboundedSender<(String, i64, i64)>,
}

/// Serial → its append, until the index row is recorded.
type Inflight = Arc<Mutex<HashMap<String, Arc<OnceCell<u64>>>>>;

/// An inclusion proof for one certificate, against a signed checkpoint.
#[derive(Clone, Debug)]
pub struct EntryProof {
    /// Leaf index.
    pub index: u64,
    /// The signed checkpoint the proof is for.
    pub checkpoint: String,
    /// Tree size of that checkpoint.
    pub size: u64,
    /// PATH(index, D[size]), leaf side first.
    pub proof: Vec<Hash>,
}

fn tlog_err(e: certkeeper_tlog::TlogError) -> CaError {
    CaError::Internal(format!("transparency log: {e}"))
}

/// The lowercase hex serial of a leaf certificate, as the store keys it.
fn serial_of(der: &[u8]) -> Result<String, CaError> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| CaError::Internal(format!("logged entry is not a certificate: {e}")))?;
    Ok(certkeeper_proto::serial::serial_hex(cert.raw_serial()))
}

/// The leaf's DER from a stored chain (leaf first).
pub fn leaf_der(chain_pem: &str) -> Result<Vec<u8>, CaError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or_else(|| CaError::Internal("stored chain has no certificate".into()))?
        .map(|c| c.to_vec())
        .map_err(|e| CaError::Internal(format!("stored chain: {e}")))
}

impl CaLog {
    /// Opens (or creates, with its Ed25519 key in `DATA/ca/tlog.key`, 0600)
    /// the log, then repairs the store's index from it: entries the log has
    /// but the index lacks are recorded, and certificates the store has
    /// but the log lacks are appended.
    pub async fn open(
        data: &Path,
        store: Store,
        root_der: &[u8],
        now: i64,
    ) -> Result<Arc<CaLog>, CaError> {
        // The origin names this CA's log uniquely and stays the same across
        // restarts and listen addresses: derived from the root certificate.
        let origin = format!(
            "certkeeper.invalid/ca/{}",
            &crate::issuer::sha256_hex(root_der)[..16]
        );
        let signer = NoteSigner::load_or_create(&crate::issuer::pki::ca_dir(data), &origin)
            .map_err(tlog_err)?;
        let verifier = signer.verifier().to_string();
        let dir = log_dir(data);
        let (log, tail) = tokio::task::spawn_blocking(move || FileLog::open(&dir, signer))
            .await
            .map_err(|e| CaError::Internal(e.to_string()))?
            .map_err(tlog_err)?;
        if !tail.is_empty() {
            tracing::warn!(
                count = tail.len(),
                "transparency log: recovered entries written before a crash"
            );
        }
        let seq = Sequencer::start(log);
        let inflight: Inflight = Arc::default();
        let (recorder, queue) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(record_indices(store.clone(), Arc::clone(&inflight), queue));
        let ca_log = Arc::new(CaLog {
            seq,
            store,
            verifier,
            inflight,
            recorder,
        });
        ca_log.repair(now).await?;
        Ok(ca_log)
    }

    async fn repair(self: &Arc<Self>, now: i64) -> Result<(), CaError> {
        let size = self.seq.published().size;
        let next = self.store.tlog_max_index().await?.map_or(0, |m| m + 1);
        // Concurrent appends record their indices in any order, so a crash
        // can leave a hole below the maximum: then rescan the whole log.
        let from = if self.store.tlog_count().await? == next {
            next as u64
        } else {
            0
        };
        if from < size {
            let reader = self.seq.reader();
            for index in from..size {
                let der = reader.entry(index).map_err(tlog_err)?;
                let serial = serial_of(&der)?;
                self.store
                    .insert_tlog_entry(&serial, index as i64, now)
                    .await?;
            }
            tracing::info!(
                from,
                to = size,
                "transparency log: index rebuilt from the entry bundles"
            );
        }
        let missing = self.store.certificates_not_logged().await?;
        for (serial, chain) in missing {
            let index = self.log_once(&serial, leaf_der(&chain)?, now).await?;
            // Recorded before serving starts (log_once records in the background).
            self.store
                .insert_tlog_entry(&serial, index as i64, now)
                .await?;
            tracing::info!(%serial, index, "transparency log: logged a certificate recorded before a crash");
        }
        Ok(())
    }

    /// Appends the certificate unless it is logged already; returns its
    /// index as soon as a checkpoint covering it is published.
    ///
    /// Recording the index in the store is not waited for (the index is
    /// rebuilt from the tiles at start): until it is recorded the serial's
    /// cell stays in `inflight`, so no caller can miss both and append twice.
    pub async fn log_once(
        self: &Arc<Self>,
        serial: &str,
        der: Vec<u8>,
        now: i64,
    ) -> Result<u64, CaError> {
        let cell = {
            let m = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            m.get(serial).cloned()
        };
        if cell.is_none()
            && let Some(i) = self.store.tlog_index(serial).await?
        {
            return Ok(i as u64);
        }
        let cell = match cell {
            Some(c) => c,
            None => {
                let mut m = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
                Arc::clone(m.entry(serial.to_string()).or_default())
            }
        };
        cell.get_or_try_init(|| async {
            // Re-check under the cell: an earlier cell may have finished.
            if let Some(i) = self.store.tlog_index(serial).await? {
                self.forget(serial);
                return Ok(i as u64);
            }
            let index = match self.seq.append(der).await {
                Ok(i) => i,
                Err(e) => {
                    self.forget(serial);
                    return Err(tlog_err(e));
                }
            };
            self.record(serial, index, now);
            Ok::<u64, CaError>(index)
        })
        .await
        .copied()
    }

    /// Starts appending a certificate that was just signed and recorded
    /// (finalize), without waiting: the download waits, through the same
    /// per-serial cell, which is in place when this returns, so a download
    /// racing ahead of the spawned append joins it instead of appending
    /// again. A fresh serial cannot be in the log yet, so the index is not
    /// read first (two statements saved per certificate).
    pub fn log_new(self: &Arc<Self>, serial: &str, der: Vec<u8>, now: i64) {
        let cell = {
            let mut m = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(m.entry(serial.to_string()).or_default())
        };
        let (me, serial) = (Arc::clone(self), serial.to_string());
        tokio::spawn(async move {
            let appended = cell
                .get_or_try_init(|| async {
                    match me.seq.append(der).await {
                        Ok(index) => {
                            me.record(&serial, index, now);
                            Ok(index)
                        }
                        Err(e) => {
                            me.forget(&serial);
                            Err(tlog_err(e))
                        }
                    }
                })
                .await;
            if let Err(e) = appended {
                tracing::error!(%serial, error = %e, "transparency log append failed; the download will retry it");
            }
        });
    }

    /// Queues an appended entry's index for the store; its cell stays in
    /// `inflight` until the row is committed, so no caller misses both.
    fn record(&self, serial: &str, index: u64, now: i64) {
        let Ok(index) = i64::try_from(index) else {
            return tracing::error!(%serial, index, "log index beyond the store's range");
        };
        if self
            .recorder
            .send((serial.to_string(), index, now))
            .is_err()
        {
            // The recorder only stops with the runtime; the index is
            // rebuilt from the entry bundles at the next start.
            tracing::error!(%serial, index, "log index recorder has stopped");
        }
    }

    fn forget(&self, serial: &str) {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(serial);
    }
}

/// Records appended indices in the store, everything queued at once in one
/// statement and commit: under load a sequencer batch's entries arrive
/// together, so the index costs one commit per batch instead of one per
/// certificate on the CA's single writer. A serial leaves `inflight` only
/// once its row is committed; on a store error it stays there (the cell
/// keeps answering) and the index is rebuilt from the entry bundles at the
/// next start.
async fn record_indices(
    store: Store,
    inflight: Inflight,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<(String, i64, i64)>,
) {
    /// Rows per commit at most (bounds one statement's size).
    const MAX_ROWS: usize = 1024;
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, MAX_ROWS).await > 0 {
        let now = batch.iter().map(|(_, _, t)| *t).max().unwrap_or_default();
        let rows: Vec<(String, i64)> = batch.drain(..).map(|(s, i, _)| (s, i)).collect();
        match store.insert_tlog_entries(&rows, now).await {
            Ok(()) => {
                let mut m = inflight.lock().unwrap_or_else(|p| p.into_inner());
                for (serial, _) in &rows {
                    m.remove(serial);
                }
            }
            Err(e) => {
                tracing::error!(count = rows.len(), error = %e, "cannot record log indices; they are rebuilt at the next start")
            }
        }
    }
}

impl CaLog {
    /// The leaf index of a logged certificate.
    pub async fn index_of(&self, serial: &str) -> Result<Option<u64>, CaError> {
        Ok(self.store.tlog_index(serial).await?.map(|i| i as u64))
    }

    /// Tree size of the checkpoint being served.
    pub fn size(&self) -> u64 {
        self.seq.published().size
    }

    /// The signed checkpoint being served.
    pub fn checkpoint(&self) -> String {
        self.seq.published().note.clone()
    }

    /// The verifier key (`name+id+key`) third parties check checkpoints with.
    pub fn verifier_key(&self) -> &str {
        &self.verifier
    }

    /// The log directory, served under `/tlog/`.
    pub fn dir(&self) -> &Path {
        self.seq.dir()
    }

    /// The inclusion proof of entry `index` in the current checkpoint.
    pub async fn prove(&self, index: u64) -> Result<EntryProof, CaError> {
        let published = self.seq.published();
        let reader = certkeeper_tlog::storage::TileReader::new(self.dir(), published.size);
        let proof =
            tokio::task::spawn_blocking(move || inclusion_proof(&reader, index, reader.size()))
                .await
                .map_err(|e| CaError::Internal(e.to_string()))?
                .map_err(|e| match e {
                    certkeeper_tlog::TlogError::OutOfRange { .. } => {
                        CaError::NotFound(format!("log entry {index}"))
                    }
                    e => tlog_err(e),
                })?;
        Ok(EntryProof {
            index,
            checkpoint: published.note.clone(),
            size: published.size,
            proof,
        })
    }
}
