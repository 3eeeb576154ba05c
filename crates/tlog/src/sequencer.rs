//! Group commit: concurrent appends wait while one batch is written, then go
//! together in the next, so the fsyncs of a batch are paid once for all of
//! its entries. Every batch ends with a checkpoint, so an entry is in a
//! signed checkpoint as soon as `append` returns — well within the second
//! a checkpoint may lag.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};

use crate::TlogError;
use crate::storage::{FileLog, Published, TileReader};

/// Largest batch: bounds the latency of the entries at the front.
const MAX_BATCH: usize = 8192;
/// Appends queued beyond this wait for room (backpressure).
const QUEUE: usize = 65_536;
/// How long a batch waits for company after its first entry. Each batch
/// rewrites the right edge of the tree (partial tiles, the bundle) and
/// signs a checkpoint: at issuance rates (a hundred or two a second, a few
/// arriving together) batches of one or two made that the log's main cost.
/// A few milliseconds, against the second a checkpoint may lag.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

struct Job {
    entry: Vec<u8>,
    done: oneshot::Sender<Result<u64, String>>,
}

/// The one writer of a [`FileLog`], shared by every task that appends.
#[derive(Clone, Debug)]
pub struct Sequencer {
    tx: mpsc::Sender<Job>,
    published: watch::Receiver<Arc<Published>>,
    dir: PathBuf,
    origin: String,
    stopped: Arc<Mutex<Option<String>>>,
    batches: Arc<AtomicU64>,
}

impl Sequencer {
    /// Starts sequencing into `log` on the current tokio runtime.
    pub fn start(log: FileLog) -> Sequencer {
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
        let (ptx, published) = watch::channel(Arc::new(log.published().clone()));
        let dir = log.dir().to_path_buf();
        let origin = log.origin().to_string();
        let stopped: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let stop = Arc::clone(&stopped);
        let batches = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&batches);
        tokio::spawn(async move {
            let mut log = Some(log);
            let mut failure: Option<String> = None;
            while let Some(first) = rx.recv().await {
                if rx.is_empty() {
                    tokio::time::sleep(LINGER).await;
                }
                let mut jobs = vec![first];
                while jobs.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                if let Some(f) = &failure {
                    for j in jobs {
                        let _ = j.done.send(Err(f.clone()));
                    }
                    continue;
                }
                let entries: Vec<Vec<u8>> = jobs
                    .iter_mut()
                    .map(|j| std::mem::take(&mut j.entry))
                    .collect();
                let Some(mut l) = log.take() else { break };
                let res = tokio::task::spawn_blocking(move || {
                    let r = l.append_batch(&entries);
                    (l, r)
                })
                .await;
                match res {
                    Ok((l, Ok(first_index))) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let _ = ptx.send(Arc::new(l.published().clone()));
                        log = Some(l);
                        for (i, j) in jobs.into_iter().enumerate() {
                            let _ = j.done.send(Ok(first_index + i as u64));
                        }
                    }
                    Ok((_, Err(e))) => {
                        tracing::error!(error = %e, "transparency log write failed; appends stop until restart");
                        let msg = e.to_string();
                        *stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg.clone());
                        failure = Some(msg.clone());
                        for j in jobs {
                            let _ = j.done.send(Err(msg.clone()));
                        }
                    }
                    Err(e) => {
                        let msg = format!("log writer panicked: {e}");
                        *stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg.clone());
                        failure = Some(msg.clone());
                        for j in jobs {
                            let _ = j.done.send(Err(msg.clone()));
                        }
                    }
                }
            }
        });
        Sequencer {
            tx,
            published,
            dir,
            origin,
            stopped,
            batches,
        }
    }

    /// Batches written (each ended with a checkpoint) since start.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Appends one entry; returns its index once a checkpoint covering it
    /// is durable and published.
    pub async fn append(&self, entry: Vec<u8>) -> Result<u64, TlogError> {
        if entry.len() > usize::from(u16::MAX) {
            return Err(TlogError::EntryTooLarge(entry.len()));
        }
        if let Some(f) = self
            .stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(TlogError::Stopped(f));
        }
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Job { entry, done })
            .await
            .map_err(|_| TlogError::Stopped("the sequencer has exited".into()))?;
        rx.await
            .map_err(|_| TlogError::Stopped("the sequencer has exited".into()))?
            .map_err(TlogError::Stopped)
    }

    /// The latest published checkpoint.
    pub fn published(&self) -> Arc<Published> {
        Arc::clone(&self.published.borrow())
    }

    /// A tile reader for the latest published tree.
    pub fn reader(&self) -> TileReader {
        TileReader::new(&self.dir, self.published().size)
    }

    /// The log directory (what `/tlog/` serves).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The log's origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}
