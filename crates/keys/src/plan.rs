//! The sweep as a pure function: `(keys, suites, timing, now) → Plan`.
//!
//! The rules are Janus's key rotator (divviup/janus `key_rotator.rs`), in its
//! order, with its known weaknesses fixed:
//!
//! 1. No active key at all: each configured suite gets an active key at once
//!    (its newest pending key is promoted if it has one). Otherwise a
//!    configured suite with no active or pending key gets a pending key.
//! 2. Per configured suite: a pending key older than `pending` is promoted
//!    and the newest active key expires; else a suite whose newest active key
//!    is older than `active` and has no pending key gets one. Then every
//!    active key but the newest expires and every pending key but the newest
//!    is deleted.
//! 3. A suite no longer configured: its pending keys are deleted and its
//!    active keys expire — except that while no configured suite has an
//!    active key, the newest unconfigured active key stays active. (Janus
//!    expired it at once, so swapping the only suite A → B left B merely
//!    pending, the "no active key" check rolled back every sweep, and the
//!    rotator was jammed for good.)
//! 4. Expired keys older than `expired` are deleted.
//! 5. New ids follow the highest id in use (wrapping past 255), skipping ids
//!    still in use after this plan's deletions. When none is free the plan
//!    still carries its deletions (Janus rolled them back with the failed
//!    insert, so the ids that would have been freed never were).
//! 6. A plan that leaves no active key is refused.
//!
//! "Newest" is by (last state change, id), never by map order.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::model::{KeyMeta, Kind, State, Suite};

/// How long a key spends in each state, seconds (per kind; validated by [`crate::config`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Timing {
    /// Pending before it may become active.
    pub pending: i64,
    /// Active before a successor is made.
    pub active: i64,
    /// Expired before it is deleted.
    pub expired: i64,
}

/// Why the plan does something; printed by `keys sweep --dry-run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Reason {
    /// The kind had no active key, so one is made active at once.
    NoActiveKey,
    /// A configured suite had no active or pending key.
    NewSuite,
    /// The pending key has waited its `pending_duration`.
    PendingAged {
        /// Seconds since it became pending.
        age: i64,
    },
    /// The active key is older than `active_duration`: its successor starts pending.
    ActiveAged {
        /// Seconds since it became active.
        age: i64,
    },
    /// A newer key of the suite became active.
    Superseded,
    /// More than one active key in the suite: only the newest stays.
    ExtraActive,
    /// More than one pending key in the suite: only the newest stays.
    ExtraPending,
    /// The suite is no longer configured.
    Unconfigured,
    /// Expired for longer than `expired_duration`.
    ExpiredAged {
        /// Seconds since it expired.
        age: i64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoActiveKey => f.write_str("no key of this kind is active"),
            Reason::NewSuite => f.write_str("configured suite has no active or pending key"),
            Reason::PendingAged { age } => write!(f, "pending for {age} s, past pending_duration"),
            Reason::ActiveAged { age } => {
                write!(f, "active key is {age} s old, past active_duration")
            }
            Reason::Superseded => f.write_str("a newer key of the suite became active"),
            Reason::ExtraActive => {
                f.write_str("only the newest active key of a suite stays active")
            }
            Reason::ExtraPending => f.write_str("only the newest pending key of a suite is kept"),
            Reason::Unconfigured => f.write_str("suite is no longer configured"),
            Reason::ExpiredAged { age } => write!(f, "expired for {age} s, past expired_duration"),
        }
    }
}

/// One change the sweep makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Op {
    /// Make a new key.
    Create {
        /// Its id.
        id: u8,
        /// Its suite.
        suite: Suite,
        /// Pending, or active when nothing is.
        state: State,
        /// Why.
        #[serde(flatten)]
        reason: Reason,
    },
    /// Move a key to a later state.
    Change {
        /// The key.
        id: u8,
        /// Its suite.
        suite: Suite,
        /// State before.
        from: State,
        /// State after.
        to: State,
        /// Why.
        #[serde(flatten)]
        reason: Reason,
    },
    /// Delete a key.
    Delete {
        /// The key.
        id: u8,
        /// Its suite.
        suite: Suite,
        /// Its state.
        state: State,
        /// Why.
        #[serde(flatten)]
        reason: Reason,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Create {
                id,
                suite,
                state,
                reason,
            } => {
                write!(f, "create {state} key {id} ({suite}): {reason}")
            }
            Op::Change {
                id,
                suite,
                from,
                to,
                reason,
            } => {
                write!(f, "{from} → {to} key {id} ({suite}): {reason}")
            }
            Op::Delete {
                id,
                suite,
                state,
                reason,
            } => {
                write!(f, "delete {state} key {id} ({suite}): {reason}")
            }
        }
    }
}

/// What one sweep does to one kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The kind swept.
    pub kind: Kind,
    /// The changes, in decision order.
    pub ops: Vec<Op>,
    /// Facts worth printing that change nothing (e.g. an unconfigured suite's
    /// key kept active until a configured suite has one).
    pub notes: Vec<String>,
    /// A suite that needed a new key when every id was taken.
    pub exhausted: Option<Suite>,
}

/// The plan would leave no active key; nothing may be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoActiveKey;

struct Work {
    key: KeyMeta,
    original: State,
    deleted: bool,
    reason: Option<Reason>,
}

struct Sweep<'a> {
    keys: Vec<Work>,
    creates: Vec<(Suite, State, Reason)>,
    deletes: Vec<(usize, Reason)>,
    notes: Vec<String>,
    now: i64,
    timing: &'a Timing,
}

impl Sweep<'_> {
    fn live(&self, suite: Suite, state: State) -> impl Iterator<Item = usize> + '_ {
        self.keys
            .iter()
            .enumerate()
            .filter(move |(_, w)| !w.deleted && w.key.suite == suite && w.key.state == state)
            .map(|(i, _)| i)
    }

    fn newest(&self, suite: Suite, state: State) -> Option<usize> {
        self.live(suite, state)
            .max_by_key(|&i| self.keys[i].key.age_key())
    }

    fn set(&mut self, i: usize, to: State, reason: Reason) {
        let w = &mut self.keys[i];
        w.key.state = to;
        w.key.changed_at = self.now;
        w.reason = Some(reason);
    }

    fn delete(&mut self, i: usize, reason: Reason) {
        self.keys[i].deleted = true;
        self.deletes.push((i, reason));
    }

    fn age(&self, i: usize) -> i64 {
        self.now.saturating_sub(self.keys[i].key.changed_at)
    }

    /// Rules 1 and 2 for one configured suite.
    fn configured(&mut self, suite: Suite, bootstrap: bool) {
        let pending = self.newest(suite, State::Pending);
        let active = self.newest(suite, State::Active);
        let mut promoted = None;
        if bootstrap {
            match pending {
                Some(p) => {
                    self.set(p, State::Active, Reason::NoActiveKey);
                    promoted = Some(p);
                }
                None => self
                    .creates
                    .push((suite, State::Active, Reason::NoActiveKey)),
            }
        } else if let Some(p) = pending.filter(|&p| self.age(p) > self.timing.pending) {
            let age = self.age(p);
            self.set(p, State::Active, Reason::PendingAged { age });
            promoted = Some(p);
            if let Some(a) = active {
                self.set(a, State::Expired, Reason::Superseded);
            }
        } else if pending.is_none() {
            match active {
                None => self.creates.push((suite, State::Pending, Reason::NewSuite)),
                Some(a) if self.age(a) > self.timing.active => {
                    let age = self.age(a);
                    self.creates
                        .push((suite, State::Pending, Reason::ActiveAged { age }));
                }
                Some(_) => {}
            }
        }
        let keep_active = promoted.or_else(|| self.newest(suite, State::Active));
        let extra: Vec<usize> = self
            .live(suite, State::Active)
            .filter(|&i| Some(i) != keep_active)
            .collect();
        for i in extra {
            self.set(i, State::Expired, Reason::ExtraActive);
        }
        // After a promotion every remaining pending key is older than the key
        // just promoted: none can ever be the suite's successor.
        let keep_pending = if promoted.is_some() {
            None
        } else {
            self.newest(suite, State::Pending)
        };
        let extra: Vec<usize> = self
            .live(suite, State::Pending)
            .filter(|&i| Some(i) != keep_pending)
            .collect();
        for i in extra {
            self.delete(i, Reason::ExtraPending);
        }
    }

    /// Rule 3 for every suite present but not configured.
    fn unconfigured(&mut self, configured: &[Suite]) {
        let stale: BTreeSet<Suite> = self
            .keys
            .iter()
            .filter(|w| !w.deleted && !configured.contains(&w.key.suite))
            .map(|w| w.key.suite)
            .collect();
        if stale.is_empty() {
            return;
        }
        let configured_active = self.creates.iter().any(|c| c.1 == State::Active)
            || self.keys.iter().any(|w| {
                !w.deleted && w.key.state == State::Active && configured.contains(&w.key.suite)
            });
        let mut keep = None;
        if !configured_active {
            keep = stale
                .iter()
                .filter_map(|&s| self.newest(s, State::Active))
                .max_by_key(|&i| self.keys[i].key.age_key());
            if let Some(i) = keep {
                let k = self.keys[i].key;
                self.notes.push(format!(
                    "key {} ({}) stays active although its suite is no longer configured: no configured suite has an active key yet",
                    k.id, k.suite
                ));
            }
        }
        for suite in stale {
            let pending: Vec<usize> = self.live(suite, State::Pending).collect();
            for i in pending {
                self.delete(i, Reason::Unconfigured);
            }
            let active: Vec<usize> = self
                .live(suite, State::Active)
                .filter(|&i| Some(i) != keep)
                .collect();
            for i in active {
                self.set(i, State::Expired, Reason::Unconfigured);
            }
        }
    }

    /// Rule 4.
    fn expired(&mut self) {
        let old: Vec<usize> = self
            .keys
            .iter()
            .enumerate()
            .filter(|(_, w)| !w.deleted && w.key.state == State::Expired)
            .map(|(i, _)| i)
            .filter(|&i| self.age(i) > self.timing.expired)
            .collect();
        for i in old {
            let age = self.age(i);
            self.delete(i, Reason::ExpiredAged { age });
        }
    }
}

/// Plans one sweep of one kind. `keys` may hold other kinds' keys; they are
/// ignored. `suites` are the configured suites of this kind, in order of
/// preference (validated non-empty by the configuration).
pub fn plan(
    kind: Kind,
    keys: &[KeyMeta],
    suites: &[Suite],
    timing: &Timing,
    now: i64,
) -> Result<Plan, NoActiveKey> {
    let mut keys: Vec<KeyMeta> = keys
        .iter()
        .filter(|k| k.suite.kind() == kind)
        .copied()
        .collect();
    // Decisions in a fixed order, whatever order the store returned.
    keys.sort_by_key(|k| (k.suite, k.age_key()));
    let bootstrap = !keys.iter().any(|k| k.state == State::Active);
    let highest = keys.iter().map(|k| k.id).max();
    let mut sweep = Sweep {
        keys: keys
            .into_iter()
            .map(|key| Work {
                key,
                original: key.state,
                deleted: false,
                reason: None,
            })
            .collect(),
        creates: Vec::new(),
        deletes: Vec::new(),
        notes: Vec::new(),
        now,
        timing,
    };
    let mut configured: Vec<Suite> = Vec::new();
    for &s in suites {
        if s.kind() == kind && !configured.contains(&s) {
            configured.push(s);
        }
    }
    for &suite in &configured {
        sweep.configured(suite, bootstrap);
    }
    sweep.unconfigured(&configured);
    sweep.expired();

    let mut ops = Vec::new();
    for (i, reason) in &sweep.deletes {
        let w = &sweep.keys[*i];
        ops.push(Op::Delete {
            id: w.key.id,
            suite: w.key.suite,
            state: w.original,
            reason: *reason,
        });
    }
    for w in sweep.keys.iter().filter(|w| !w.deleted) {
        if let Some(reason) = w.reason
            && w.key.state != w.original
        {
            ops.push(Op::Change {
                id: w.key.id,
                suite: w.key.suite,
                from: w.original,
                to: w.key.state,
                reason,
            });
        }
    }
    let mut used: BTreeSet<u8> = sweep
        .keys
        .iter()
        .filter(|w| !w.deleted)
        .map(|w| w.key.id)
        .collect();
    let mut next = highest.map_or(0, |h| h.wrapping_add(1));
    let mut exhausted = None;
    let mut any_active = sweep
        .keys
        .iter()
        .any(|w| !w.deleted && w.key.state == State::Active);
    for (suite, state, reason) in sweep.creates {
        let Some(id) = (0..=255u8)
            .map(|o| next.wrapping_add(o))
            .find(|id| !used.contains(id))
        else {
            exhausted.get_or_insert(suite);
            continue;
        };
        used.insert(id);
        next = id.wrapping_add(1);
        any_active |= state == State::Active;
        ops.push(Op::Create {
            id,
            suite,
            state,
            reason,
        });
    }
    if !any_active {
        return Err(NoActiveKey);
    }
    Ok(Plan {
        kind,
        ops,
        notes: sweep.notes,
        exhausted,
    })
}

/// The keys after a plan runs at `now` (what the writer makes of it), for
/// tests and dry runs.
pub fn apply(keys: &[KeyMeta], plan: &Plan, now: i64) -> Vec<KeyMeta> {
    let mut out: Vec<KeyMeta> = keys.to_vec();
    for op in &plan.ops {
        match *op {
            Op::Delete { id, suite, .. } => {
                out.retain(|k| !(k.id == id && k.suite.kind() == suite.kind()));
            }
            Op::Change { id, suite, to, .. } => {
                for k in out
                    .iter_mut()
                    .filter(|k| k.id == id && k.suite.kind() == suite.kind())
                {
                    k.state = to;
                    k.changed_at = now;
                }
            }
            Op::Create {
                id, suite, state, ..
            } => out.push(KeyMeta {
                id,
                suite,
                state,
                changed_at: now,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests;
