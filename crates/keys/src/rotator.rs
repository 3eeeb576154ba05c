//! The sweep against the store: plan every configured kind from the rows
//! read under the write lock, make and seal the new keys, write it all in
//! one transaction. A second rotator on the same store waits for the lock,
//! then reads the first one's result, so it plans nothing.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use certkeeper_proto::Clock;
use certkeeper_store::{KeyChanges, KeyRow, Store};
use serde::Serialize;

use crate::config::Policy;
use crate::model::{KeyMeta, Kind, State, Suite};
use crate::plan::{self, Op, Plan};
use crate::{Kek, KeysError, hpke, signing};

/// Runs sweeps for a set of policies.
#[derive(Debug, Clone)]
pub struct Rotator {
    store: Store,
    kek: Arc<Kek>,
    policies: Vec<Policy>,
    clock: Arc<dyn Clock>,
}

/// What a sweep did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// The sweep's time, unix seconds.
    pub at: i64,
    /// One plan per configured kind.
    pub plans: Vec<Plan>,
    /// Problems that did not stop the sweep (ids exhausted).
    pub problems: Vec<String>,
}

impl SweepReport {
    /// Number of changes across kinds.
    pub fn changes(&self) -> usize {
        self.plans.iter().map(|p| p.ops.len()).sum()
    }
}

/// A stored row as the planner sees it.
pub fn meta(row: &KeyRow) -> Result<KeyMeta, KeysError> {
    let corrupt = |m: String| KeysError::Corrupt(format!("{}/{}", row.kind, row.id), m);
    let kind: Kind = row.kind.parse().map_err(corrupt)?;
    let suite: Suite = row.suite.parse().map_err(corrupt)?;
    if suite.kind() != kind {
        return Err(corrupt(format!("suite {suite} is not a {kind} suite")));
    }
    Ok(KeyMeta {
        id: row.id,
        suite,
        state: row.state.parse().map_err(corrupt)?,
        changed_at: row.changed_at,
    })
}

impl Rotator {
    /// A rotator on `store`, sealing new keys under `kek`.
    pub fn new(
        store: Store,
        kek: Arc<Kek>,
        policies: Vec<Policy>,
        clock: Arc<dyn Clock>,
    ) -> Rotator {
        Rotator {
            store,
            kek,
            policies,
            clock,
        }
    }

    /// Plans without writing (`keys sweep --dry-run`). Ids of new keys are
    /// what a sweep now would pick; a concurrent sweep may change them.
    pub async fn dry_run(&self) -> Result<SweepReport, KeysError> {
        let rows = self.store.keys_all().await?;
        let now = self.clock.now();
        let metas = rows.iter().map(meta).collect::<Result<Vec<_>, _>>()?;
        self.plan_all(&metas, now)
    }

    fn plan_all(&self, metas: &[KeyMeta], now: i64) -> Result<SweepReport, KeysError> {
        let mut plans = Vec::new();
        let mut problems = Vec::new();
        for p in &self.policies {
            let planned = plan::plan(p.kind, metas, &p.suites, &p.timing, now)
                .map_err(|_| KeysError::NoActiveKey(p.kind.to_string()))?;
            if let Some(suite) = planned.exhausted {
                problems.push(
                    KeysError::IdsExhausted {
                        kind: p.kind.to_string(),
                        suite: suite.to_string(),
                    }
                    .to_string(),
                );
            }
            plans.push(planned);
        }
        Ok(SweepReport {
            at: now,
            plans,
            problems,
        })
    }

    /// One sweep, in one transaction that excludes other writers. A plan
    /// that would leave a kind without an active key rolls everything back.
    pub async fn sweep(&self) -> Result<SweepReport, KeysError> {
        let now = self.clock.now();
        let report = self
            .store
            .keys_sweep(|rows| {
                let metas = rows.iter().map(meta).collect::<Result<Vec<_>, _>>()?;
                let report = self.plan_all(&metas, now)?;
                let mut changes = KeyChanges::default();
                for p in &report.plans {
                    for op in &p.ops {
                        self.write(p.kind, op, now, &mut changes)?;
                    }
                }
                Ok::<_, KeysError>((changes, report))
            })
            .await??;
        for p in &report.plans {
            for op in &p.ops {
                tracing::info!(kind = %p.kind, "key sweep: {op}");
            }
        }
        for problem in &report.problems {
            tracing::error!("key sweep: {problem}");
        }
        // A committed sweep, problems or not: the admin listener's
        // `/metrics` shows how long ago (a stuck rotator is an alert).
        metrics::gauge!("certkeeper_keys_last_sweep_timestamp_seconds").set(now as f64);
        Ok(report)
    }

    fn write(
        &self,
        kind: Kind,
        op: &Op,
        now: i64,
        changes: &mut KeyChanges,
    ) -> Result<(), KeysError> {
        let k = kind.name().to_string();
        match *op {
            Op::Delete { id, .. } => changes.delete.push((k, id)),
            Op::Change { id, to, .. } => changes.set_state.push((k, id, to.name().into(), now)),
            Op::Create {
                id, suite, state, ..
            } => {
                let (private, public) = match suite {
                    Suite::Hpke(kem, ..) => hpke::generate(kem),
                    Suite::Signing(alg) => signing::generate(alg)?,
                };
                let name = suite.to_string();
                let sealed = self.kek.seal(kind.name(), &name, &public, &private)?;
                changes.insert.push(KeyRow {
                    kind: k,
                    id,
                    suite: name,
                    state: state.name().into(),
                    public_key: B64.encode(&public),
                    private_sealed: B64.encode(&sealed),
                    changed_at: now,
                });
            }
        }
        Ok(())
    }
}

/// Counts of a kind's keys per state, for `keys list` and tests.
pub fn census(metas: &[KeyMeta], kind: Kind, state: State) -> usize {
    metas
        .iter()
        .filter(|k| k.suite.kind() == kind && k.state == state)
        .count()
}

#[cfg(test)]
mod tests;
