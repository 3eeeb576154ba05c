//! The audit log: append-only JSON lines, each carrying the SHA-256 of the
//! line before it, fsynced before the append returns.
//!
//! It is a file beside the database, not a table in it, because it must
//! outlive the database: after a lost or restored database it still says
//! what was signed, revoked and deployed, and with which key (Let's
//! Encrypt's incident 1886876: keys logged only at issuance left 2 % of the
//! compromised keys unblockable).
//!
//! The chain makes an edit, insertion or removal anywhere but at the very
//! end evident: [`verify`] names the first line whose `prev` does not match.
//! An edit of the last line leaves no successor to contradict it, so
//! [`verify`] reports the head hash, to compare with a copy kept elsewhere.
//!
//! Several processes (the daemon and CLI commands) append to one file: each
//! append holds an exclusive `flock` on it and re-reads the tail when the
//! file grew under it.
//!
//! Within a process appends are group-committed: records that arrive while
//! a batch is being written go together in the next one, so concurrent
//! signings share one open, lock and fsync instead of queueing one fsync
//! each behind the tail's lock (at a few hundred signings a second, that
//! queue was the CA's longest wait and a thread per waiter). Each `append`
//! still returns only once its own records are durable.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::StoreError;

/// The `prev` of the first record.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The file name in a data directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// One record to append: who wrote it (`ca`, `agent`), what happened, and
/// its facts (serials, names, SPKI hashes; never a private key).
#[derive(Clone, Debug)]
pub struct AuditRecord {
    /// Unix seconds, from the caller's clock.
    pub at: i64,
    /// `ca` or `agent`.
    pub by: &'static str,
    /// What happened: `signing`, `revoked`, `obtained`, `deployed`…
    pub event: String,
    /// The facts.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// An append handle on one audit file.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    tail: Arc<Mutex<Option<Tail>>>,
    queue: Arc<Mutex<Queue>>,
}

/// Records waiting for the next batch, and whether a writer is running.
#[derive(Debug, Default)]
struct Queue {
    records: Vec<AuditRecord>,
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
    writing: bool,
}

/// What the next append links to.
#[derive(Debug, Clone)]
struct Tail {
    file_len: u64,
    seq: u64,
    hash: String,
}

/// What [`verify`] found in a log whose chain is intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSummary {
    /// Records in the file.
    pub records: u64,
    /// SHA-256 of the last line (the genesis value for an empty log).
    pub head: String,
}

impl AuditLog {
    /// The log at `DIR/audit.jsonl` (created, 0600, at the first append).
    pub fn in_dir(dir: &Path) -> AuditLog {
        AuditLog {
            path: dir.join(AUDIT_FILE),
            tail: Arc::default(),
            queue: Arc::default(),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `records` in order, returning once they are durable. They go
    /// in the next batch a blocking thread writes (see the module docs).
    pub async fn append(&self, records: Vec<AuditRecord>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let (done, written) = oneshot::channel();
        let start_writer = {
            let mut queue = lock(&self.queue);
            queue.records.extend(records);
            queue.waiters.push(done);
            !std::mem::replace(&mut queue.writing, true)
        };
        if start_writer {
            let log = self.clone();
            tokio::task::spawn_blocking(move || log.write_batches());
        }
        let failed =
            |reason: String| StoreError::Io(log_name(&self.path), std::io::Error::other(reason));
        match written.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(failed(reason)),
            Err(_) => Err(failed("the audit writer stopped".into())),
        }
    }

    /// The writer: appends what is queued, one batch at a time, until the
    /// queue is empty.
    fn write_batches(&self) {
        loop {
            let (records, waiters) = {
                let mut queue = lock(&self.queue);
                if queue.records.is_empty() {
                    queue.writing = false;
                    return;
                }
                (
                    std::mem::take(&mut queue.records),
                    std::mem::take(&mut queue.waiters),
                )
            };
            let result = self.append_blocking(&records).map_err(|e| e.to_string());
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        }
    }

    /// [`AuditLog::append`] on the calling thread.
    pub fn append_blocking(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        let io = |e: std::io::Error| StoreError::Io(log_name(&self.path), e);
        let mut cached = lock(&self.tail);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(io)?;
        // Other processes append too: hold the file while linking to its end.
        file.lock().map_err(io)?;
        let result = (|| {
            let len = file.metadata().map_err(io)?.len();
            let mut tail = match cached.as_ref() {
                Some(t) if t.file_len == len => t.clone(),
                _ => read_tail(&mut file, len, &self.path)?,
            };
            let mut out = String::new();
            for record in records {
                let line = render(record, tail.seq + 1, &tail.hash)?;
                tail.seq += 1;
                tail.hash = sha256_hex(line.as_bytes());
                out.push_str(&line);
                out.push('\n');
            }
            file.write_all(out.as_bytes()).map_err(io)?;
            file.sync_data().map_err(io)?;
            tail.file_len = tail.file_len.saturating_add(out.len() as u64);
            *cached = Some(tail);
            Ok(())
        })();
        if result.is_err() {
            // The file may hold part of a batch: read it again next time.
            *cached = None;
        }
        let _ = file.unlock();
        result
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn log_name(path: &Path) -> String {
    format!("audit log {}", path.display())
}

fn render(record: &AuditRecord, seq: u64, prev: &str) -> Result<String, StoreError> {
    let mut object = serde_json::Map::new();
    object.insert("seq".into(), seq.into());
    object.insert("at".into(), record.at.into());
    object.insert("by".into(), record.by.into());
    object.insert("event".into(), record.event.clone().into());
    for (k, v) in &record.fields {
        object.insert(k.clone(), v.clone());
    }
    object.insert("prev".into(), prev.into());
    serde_json::to_string(&object)
        .map_err(|e| StoreError::Corrupt("audit record".into(), e.to_string()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The last complete line's sequence number and hash. A torn last line (a
/// crash mid-write, before the fsync that would have made it count) is cut
/// off: its append never returned success.
fn read_tail(file: &mut File, len: u64, path: &Path) -> Result<Tail, StoreError> {
    let io = |e: std::io::Error| StoreError::Io(log_name(path), e);
    if len == 0 {
        return Ok(Tail {
            file_len: 0,
            seq: 0,
            hash: GENESIS.into(),
        });
    }
    // Records are small; 1 MiB from the end holds the last one whole.
    let window = len.min(1 << 20);
    file.seek(SeekFrom::Start(len - window)).map_err(io)?;
    let mut buf = Vec::with_capacity(window as usize);
    file.read_to_end(&mut buf).map_err(io)?;
    let complete_end = match buf.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None if window == len => 0,
        None => {
            return Err(StoreError::Corrupt(
                log_name(path),
                "its last line is over 1 MiB: not an audit log; move it aside".into(),
            ));
        }
    };
    let good_len = len - window + complete_end as u64;
    if good_len < len {
        file.set_len(good_len).map_err(io)?;
    }
    let complete = &buf[..complete_end];
    let Some(body) = complete.strip_suffix(b"\n") else {
        return Ok(Tail {
            file_len: 0,
            seq: 0,
            hash: GENESIS.into(),
        });
    };
    let last = match body.iter().rposition(|&b| b == b'\n') {
        Some(i) => &body[i + 1..],
        None => body,
    };
    let seq = serde_json::from_slice::<serde_json::Value>(last)
        .ok()
        .and_then(|v| v["seq"].as_u64())
        .ok_or_else(|| {
            StoreError::Corrupt(
                log_name(path),
                "its last line is not an audit record: run `certkeeper audit verify`".into(),
            )
        })?;
    Ok(Tail {
        file_len: good_len,
        seq,
        hash: sha256_hex(last),
    })
}

/// Checks the whole chain of the log at `path`.
///
/// Errors with [`StoreError::AuditBroken`] naming the first line that is
/// not a record, is out of sequence, or whose `prev` does not match the
/// line before it.
pub fn verify(path: &Path) -> Result<AuditSummary, StoreError> {
    let io = |e: std::io::Error| StoreError::Io(log_name(path), e);
    let file = File::open(path).map_err(io)?;
    let mut reader = BufReader::new(file);
    let mut prev = GENESIS.to_string();
    let mut line_no: u64 = 0;
    let mut line = Vec::new();
    let broken = |line: u64, reason: String| StoreError::AuditBroken {
        path: path.display().to_string(),
        line,
        reason,
    };
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
            break;
        }
        line_no += 1;
        let Some(body) = line.strip_suffix(b"\n") else {
            return Err(broken(
                line_no,
                "incomplete (a write torn by a crash; the next append cuts it off)".into(),
            ));
        };
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| broken(line_no, format!("not JSON ({e})")))?;
        if value["seq"].as_u64() != Some(line_no) {
            return Err(broken(
                line_no,
                format!(
                    "seq is {}, expected {line_no}: a record was removed or inserted before it",
                    value["seq"]
                ),
            ));
        }
        if value["prev"].as_str() != Some(prev.as_str()) {
            let reason = if line_no == 1 {
                "prev is not the genesis value: the log was cut at its start".to_string()
            } else {
                format!(
                    "prev does not match the SHA-256 of line {}: line {} was edited",
                    line_no - 1,
                    line_no - 1
                )
            };
            return Err(broken(line_no, reason));
        }
        prev = sha256_hex(body);
    }
    Ok(AuditSummary {
        records: line_no,
        head: prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: &str, n: u64) -> AuditRecord {
        let mut fields = serde_json::Map::new();
        fields.insert("serial".into(), format!("{n:04x}").into());
        AuditRecord {
            at: 1_700_000_000 + n as i64,
            by: "ca",
            event: event.into(),
            fields,
        }
    }

    #[test]
    fn appends_chain_across_handles_and_verify_names_an_edited_line() {
        let dir = tempfile::tempdir().unwrap();
        let a = AuditLog::in_dir(dir.path());
        let b = AuditLog::in_dir(dir.path());
        a.append_blocking(&[record("signing", 1), record("signing", 2)])
            .unwrap();
        // Another process's handle: its cached tail is stale and re-read.
        b.append_blocking(&[record("revoked", 3)]).unwrap();
        a.append_blocking(&[record("signing", 4)]).unwrap();
        let summary = verify(a.path()).unwrap();
        assert_eq!(summary.records, 4);

        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let text = std::fs::read_to_string(a.path()).unwrap();
        let edited = text.replacen("\"serial\":\"0002\"", "\"serial\":\"0bad\"", 1);
        std::fs::write(a.path(), edited).unwrap();
        match verify(a.path()) {
            Err(StoreError::AuditBroken { line, reason, .. }) => {
                assert_eq!(line, 3, "{reason}");
                assert!(reason.contains("line 2 was edited"), "{reason}");
            }
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    /// Concurrent appends are batched, yet each record is in the chain once,
    /// in one order, before its append returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_batches_and_all_land_in_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::in_dir(dir.path());
        let mut appends = tokio::task::JoinSet::new();
        for n in 0..64 {
            let log = log.clone();
            appends.spawn(async move {
                log.append(vec![record("signing", n)]).await.unwrap();
                // Durable on return: the record is in the file now.
                let text = std::fs::read_to_string(log.path()).unwrap();
                assert!(text.contains(&format!("\"serial\":\"{n:04x}\"")));
            });
        }
        while let Some(joined) = appends.join_next().await {
            joined.unwrap();
        }
        assert_eq!(verify(log.path()).unwrap().records, 64);
        let text = std::fs::read_to_string(log.path()).unwrap();
        for n in 0..64 {
            assert_eq!(text.matches(&format!("\"serial\":\"{n:04x}\"")).count(), 1);
        }
    }

    #[test]
    fn a_torn_last_line_is_cut_off_at_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::in_dir(dir.path());
        log.append_blocking(&[record("signing", 1)]).unwrap();
        let mut f = OpenOptions::new().append(true).open(log.path()).unwrap();
        f.write_all(b"{\"seq\":2,\"at\":").unwrap();
        assert!(matches!(
            verify(log.path()),
            Err(StoreError::AuditBroken { line: 2, .. })
        ));
        AuditLog::in_dir(dir.path())
            .append_blocking(&[record("signing", 2)])
            .unwrap();
        assert_eq!(verify(log.path()).unwrap().records, 2);
    }
}
