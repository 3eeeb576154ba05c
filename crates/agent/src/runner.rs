//! The runner: jobs run concurrently, bounded globally and per issuer, so
//! one slow CA or one slow order never stalls the others, and mass
//! re-issuance after a CA incident proceeds at the pace the CA allows.
//!
//! A job that panics is reported as a failed job; the daemon goes on (its
//! [`Claim`](crate::guard::Claim) is released by unwinding, and its state
//! in the store is whatever it last persisted, so the next pass resumes).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::guard::JobKey;

/// How a job ended.
#[derive(Debug)]
pub enum JobEnd<T> {
    /// It returned.
    Done(T),
    /// It panicked; the message, for the log.
    Panicked(String),
    /// The runner was closed before the job got its permits: it never ran.
    NotStarted,
}

/// Bounded concurrent execution of jobs.
#[derive(Debug)]
pub struct Runner<T> {
    global: Arc<Semaphore>,
    per_issuer: HashMap<String, Arc<Semaphore>>,
    per_issuer_limit: usize,
    tasks: JoinSet<(JobKey, JobEnd<T>)>,
    /// Jobs not yet returned by [`Runner::next`], per certificate.
    per_certificate: HashMap<String, usize>,
}

impl<T: Send + 'static> Runner<T> {
    /// At most `global` jobs at once, and `per_issuer` for any one issuer.
    pub fn new(global: usize, per_issuer: usize) -> Runner<T> {
        Runner {
            global: Arc::new(Semaphore::new(global.max(1))),
            per_issuer: HashMap::new(),
            per_issuer_limit: per_issuer.max(1),
            tasks: JoinSet::new(),
            per_certificate: HashMap::new(),
        }
    }

    /// Starts `job` once a global and an `issuer` permit are free. `issuer`
    /// `None`: the job talks to no CA (deploys), only the global bound applies.
    pub fn spawn<F>(&mut self, key: JobKey, issuer: Option<&str>, job: F)
    where
        F: Future<Output = T> + Send + 'static,
    {
        *self
            .per_certificate
            .entry(key.name().to_string())
            .or_default() += 1;
        let global = Arc::clone(&self.global);
        let local = issuer.map(|i| {
            Arc::clone(
                self.per_issuer
                    .entry(i.to_string())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_issuer_limit))),
            )
        });
        self.tasks.spawn(async move {
            // Issuer first: a job waiting for a slow CA must not hold one of
            // the global permits other issuers' jobs need.
            // A closed semaphore (shutdown) fails the acquire: the job
            // must not start then.
            let _local = match &local {
                Some(s) => match s.acquire().await {
                    Ok(permit) => Some(permit),
                    Err(_) => return (key, JobEnd::NotStarted),
                },
                None => None,
            };
            let Ok(_global) = global.acquire().await else {
                return (key, JobEnd::NotStarted);
            };
            let inner = tokio::spawn(job);
            let end = match inner.await {
                Ok(v) => JobEnd::Done(v),
                Err(e) if e.is_panic() => JobEnd::Panicked(panic_message(e.into_panic())),
                Err(e) => JobEnd::Panicked(e.to_string()),
            };
            (key, end)
        });
    }

    /// The next job to end; `None` when none is running.
    pub async fn next(&mut self) -> Option<(JobKey, JobEnd<T>)> {
        loop {
            match self.tasks.join_next().await? {
                Ok(done) => {
                    let name = done.0.name();
                    if let Some(n) = self.per_certificate.get_mut(name) {
                        *n -= 1;
                        if *n == 0 {
                            self.per_certificate.remove(name);
                        }
                    }
                    return Some(done);
                }
                // The wrapper itself only fails if aborted; keep going.
                Err(e) => tracing::error!(error = %e, "job wrapper failed"),
            }
        }
    }

    /// Starts nothing more: jobs waiting for a permit, and jobs spawned
    /// from now on, end as [`JobEnd::NotStarted`]; running jobs go on.
    pub fn close(&self) {
        self.global.close();
        for s in self.per_issuer.values() {
            s.close();
        }
    }

    /// Cancels every job still running, at its next await point, and
    /// returns how many there were. As safe as a `kill -9`: every job
    /// persists each step before the next, and resumes from the store.
    pub fn abort_all(&mut self) -> usize {
        let n = self.tasks.len();
        self.tasks.abort_all();
        n
    }

    /// Whether a job for certificate `name` is running or waiting.
    pub fn busy(&self, name: &str) -> bool {
        self.per_certificate.contains_key(name)
    }

    /// Jobs running or waiting for a permit.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no job is running.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Slot;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn key(i: usize) -> JobKey {
        JobKey::Slot(format!("c{i}"), Slot::Primary)
    }

    #[tokio::test]
    async fn a_panicking_job_is_reported_and_the_others_finish() {
        let mut r: Runner<u32> = Runner::new(4, 4);
        r.spawn(key(0), Some("ca"), async { panic!("boom") });
        r.spawn(key(1), Some("ca"), async { 7 });
        let mut done = 0;
        let mut panicked = 0;
        while let Some((_, end)) = r.next().await {
            match end {
                JobEnd::Done(7) => done += 1,
                JobEnd::Panicked(m) => {
                    assert!(m.contains("boom"), "{m}");
                    panicked += 1
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((done, panicked), (1, 1));
    }

    #[tokio::test]
    async fn a_closed_runner_starts_nothing_more_and_running_jobs_finish() {
        let mut r: Runner<u32> = Runner::new(1, 1);
        let (release, hold) = tokio::sync::oneshot::channel::<()>();
        r.spawn(key(0), Some("ca"), async move {
            let _ = hold.await;
            1
        });
        r.spawn(key(1), Some("ca"), async { 2 });
        tokio::task::yield_now().await;
        r.close();
        r.spawn(key(2), None, async { 3 });
        let _ = release.send(());
        let mut ends = Vec::new();
        while let Some((_, end)) = r.next().await {
            ends.push(match end {
                JobEnd::Done(v) => v,
                JobEnd::NotStarted => 0,
                JobEnd::Panicked(m) => panic!("{m}"),
            });
        }
        ends.sort();
        assert_eq!(
            ends,
            vec![0, 0, 1],
            "the running job finished, the others never ran"
        );
    }

    #[tokio::test]
    async fn a_certificate_is_busy_until_its_last_job_is_collected() {
        let mut r: Runner<()> = Runner::new(4, 4);
        r.spawn(JobKey::Slot("a".into(), Slot::Primary), Some("x"), async {});
        r.spawn(JobKey::Slot("a".into(), Slot::Backup), Some("y"), async {
            tokio::time::sleep(Duration::from_millis(50)).await
        });
        assert!(r.busy("a") && !r.busy("b"));
        r.next().await.expect("one ends");
        assert!(r.busy("a"), "the other slot's job still runs");
        r.next().await.expect("the other ends");
        assert!(!r.busy("a"));
    }

    #[tokio::test]
    async fn concurrency_is_bounded_per_issuer_and_globally() {
        let mut r: Runner<()> = Runner::new(3, 2);
        let running = Arc::new(AtomicUsize::new(0));
        let peak_a = Arc::new(AtomicUsize::new(0));
        let peak_all = Arc::new(AtomicUsize::new(0));
        let a_running = Arc::new(AtomicUsize::new(0));
        for i in 0..12 {
            let issuer = if i % 2 == 0 { "a" } else { "b" };
            let (running, peak_all) = (Arc::clone(&running), Arc::clone(&peak_all));
            let (a_running, peak_a) = (Arc::clone(&a_running), Arc::clone(&peak_a));
            let is_a = issuer == "a";
            r.spawn(key(i), Some(issuer), async move {
                let n = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak_all.fetch_max(n, Ordering::SeqCst);
                if is_a {
                    let n = a_running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak_a.fetch_max(n, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                if is_a {
                    a_running.fetch_sub(1, Ordering::SeqCst);
                }
                running.fetch_sub(1, Ordering::SeqCst);
            });
        }
        while r.next().await.is_some() {}
        assert!(peak_all.load(Ordering::SeqCst) <= 3);
        assert!(peak_a.load(Ordering::SeqCst) <= 2);
        assert!(
            peak_all.load(Ordering::SeqCst) >= 2,
            "jobs did run concurrently"
        );
    }
}
