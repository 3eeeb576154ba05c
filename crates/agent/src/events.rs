//! Named lifecycle events (CertMagic's `cert_obtained`, `cert_failed`…):
//! recorded in the store and in the audit log (`DATA/audit.jsonl`, which
//! outlives the database), logged, broadcast to in-process subscribers, and
//! passed to the operator's `event_hook` command.
//!
//! Emitting never fails the job that emits: an event that cannot be stored
//! or delivered is logged, and the certificate work goes on.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use certkeeper_proto::clock::Clock;
use certkeeper_store::audit::{AuditLog, AuditRecord};
use certkeeper_store::{EventRow, Store};
use tokio::sync::broadcast;

use crate::model::Slot;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A key was added to the local blocked-key registry.
    KeyBlocked,
    /// A certificate was written to its deploy targets.
    Deployed,
    /// A step failed (the detail says which and what happens next).
    Failed,
    /// An order was placed at a CA.
    Ordered,
    /// A slot got its first certificate.
    Obtained,
    /// A slot's certificate was replaced.
    Renewed,
    /// A certificate is known to be revoked.
    Revoked,
    /// The served slot changed.
    Swapped,
    /// A new certificate's inclusion in its issuer's transparency log was
    /// verified against a checkpoint signed with the configured key.
    InclusionVerified,
    /// A transparency log is not an extension of what the monitor verified
    /// before (forked, rewritten, shrunk, or two views of one size).
    LogInconsistent,
    /// A certificate for a managed name that the agent did not order
    /// appeared in a log (someone else obtained it).
    UnknownCertificate,
}

impl EventKind {
    /// The name in the store, logs and the hook's `CERTKEEPER_EVENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::KeyBlocked => "key-blocked",
            EventKind::Deployed => "deployed",
            EventKind::Failed => "failed",
            EventKind::Ordered => "ordered",
            EventKind::Obtained => "obtained",
            EventKind::Renewed => "renewed",
            EventKind::Revoked => "revoked",
            EventKind::Swapped => "swapped",
            EventKind::InclusionVerified => "inclusion-verified",
            EventKind::LogInconsistent => "log-inconsistent",
            EventKind::UnknownCertificate => "unknown-certificate",
        }
    }
}

/// One event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The managed certificate.
    pub name: String,
    /// The slot it concerns.
    pub slot: Slot,
    /// Human-readable detail (serials, reasons); never a key.
    pub detail: String,
}

/// Where events go.
#[derive(Debug, Clone)]
pub struct Events {
    store: Store,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    hook: Option<String>,
    /// Hooks running at once: a mass swap emits 100k events, and 100k
    /// concurrent shells would take the machine down with it.
    hooks_running: Arc<tokio::sync::Semaphore>,
    /// Hooks started or queued and not finished, for [`Events::flush`].
    hooks_pending: Arc<std::sync::atomic::AtomicUsize>,
    tx: broadcast::Sender<Event>,
}

/// Batches up to this size are logged event by event; larger ones as a summary.
const LOG_EACH_UP_TO: usize = 16;

/// Event hooks running at once.
const HOOKS_AT_ONCE: usize = 4;

/// How long an event hook may run before it is killed.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

impl Events {
    /// Events recorded in `store` and `audit`, and run through `hook`
    /// (`sh -c`) when set.
    pub fn new(
        store: Store,
        audit: AuditLog,
        clock: Arc<dyn Clock>,
        hook: Option<String>,
    ) -> Events {
        let (tx, _) = broadcast::channel(1024);
        Events {
            store,
            audit,
            clock,
            hook,
            hooks_running: Arc::new(tokio::sync::Semaphore::new(HOOKS_AT_ONCE)),
            hooks_pending: Arc::default(),
            tx,
        }
    }

    /// Waits (at most `limit`) for the hooks of events emitted so far: a
    /// short-lived command calls this before it exits, or its hooks die
    /// with its runtime.
    pub async fn flush(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.hooks_pending.load(std::sync::atomic::Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A receiver of every event emitted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Records, logs, broadcasts and hands `event` to the hook.
    pub async fn emit(&self, kind: EventKind, name: &str, slot: Slot, detail: impl Into<String>) {
        self.emit_many(vec![Event {
            kind,
            name: name.to_string(),
            slot,
            detail: detail.into(),
        }])
        .await
    }

    /// [`Events::emit`] for many events, stored in one transaction (a mass
    /// swap emits 100k of them).
    pub async fn emit_many(&self, events: Vec<Event>) {
        let at = self.clock.now();
        let rows: Vec<EventRow> = events
            .iter()
            .map(|e| EventRow {
                at,
                name: e.name.clone(),
                slot: e.slot.as_str().to_string(),
                kind: e.kind.as_str().to_string(),
                detail: e.detail.clone(),
            })
            .collect();
        if let Err(e) = self.store.record_events(&rows).await {
            tracing::warn!(error = %e, "cannot record events");
        }
        // Failed steps are for the operator, not the audit trail.
        let audited: Vec<AuditRecord> = events
            .iter()
            .filter(|e| e.kind != EventKind::Failed)
            .map(|e| AuditRecord {
                at,
                by: "agent",
                event: e.kind.as_str().to_string(),
                fields: serde_json::Map::from_iter([
                    ("certificate".to_string(), e.name.clone().into()),
                    ("slot".to_string(), e.slot.as_str().into()),
                    ("detail".to_string(), e.detail.clone().into()),
                ]),
            })
            .collect();
        if let Err(e) = self.audit.append(audited).await {
            tracing::error!(error = %e, "cannot write the audit log");
        }
        // A mass swap is one log line, not 100k (each line is a write to
        // stderr); every event is still in the store and at debug level.
        let one_by_one = events.len() <= LOG_EACH_UP_TO;
        if !one_by_one {
            tracing::info!(
                events = events.len(),
                kind = events[0].kind.as_str(),
                "events (details: `certkeeper events`)"
            );
        }
        for event in events {
            metrics::counter!("certkeeper_events_total", "event" => event.kind.as_str())
                .increment(1);
            if one_by_one {
                tracing::info!(event = event.kind.as_str(), certificate = %event.name, slot = %event.slot, detail = %event.detail, "event");
            } else {
                tracing::debug!(event = event.kind.as_str(), certificate = %event.name, slot = %event.slot, detail = %event.detail, "event");
            }
            if let Some(hook) = &self.hook {
                self.hooks_pending
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let pending = Arc::clone(&self.hooks_pending);
                let running = Arc::clone(&self.hooks_running);
                let (hook, event) = (hook.clone(), event.clone());
                tokio::spawn(async move {
                    run_hook(hook, event, running).await;
                    pending.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
            // No subscriber is fine.
            let _ = self.tx.send(event);
        }
    }
}

/// Runs the hook (spawned by the caller: a slow hook must not delay a
/// swap). Events queue for a free slot, in order of emission.
async fn run_hook(hook: String, event: Event, running: Arc<tokio::sync::Semaphore>) {
    {
        let Ok(_permit) = running.acquire_owned().await else {
            return;
        };
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&hook)
            .env("CERTKEEPER_EVENT", event.kind.as_str())
            .env("CERTKEEPER_CERTIFICATE", &event.name)
            .env("CERTKEEPER_SLOT", event.slot.as_str())
            .env("CERTKEEPER_DETAIL", &event.detail)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .status();
        match tokio::time::timeout(HOOK_TIMEOUT, child).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => {
                tracing::warn!(hook = %hook, %status, event = event.kind.as_str(), "event hook failed")
            }
            Ok(Err(e)) => tracing::warn!(hook = %hook, error = %e, "event hook did not start"),
            Err(_) => tracing::warn!(hook = %hook, "event hook timed out after 30 s; killed"),
        }
    }
}
