//! Property tests for the sweep: Janus's six properties, then ours.

use proptest::prelude::*;

use super::*;
use crate::model::{HpkeAead, HpkeKdf, HpkeKem};

const A: Suite = Suite::Hpke(HpkeKem::X25519, HpkeKdf::Sha256, HpkeAead::Aes128Gcm);
const B: Suite = Suite::Hpke(HpkeKem::P256, HpkeKdf::Sha256, HpkeAead::Aes256Gcm);
const C: Suite = Suite::Hpke(HpkeKem::P384, HpkeKdf::Sha384, HpkeAead::ChaCha20Poly1305);
const NOW: i64 = 1_000_000;
const T: Timing = Timing {
    pending: 3_600,
    active: 86_400,
    expired: 7_200,
};

fn sweep(keys: &[KeyMeta], suites: &[Suite], now: i64) -> (Plan, Vec<KeyMeta>) {
    let p = plan(Kind::Hpke, keys, suites, &T, now).expect("a sweep always leaves an active key");
    let after = apply(keys, &p, now);
    (p, after)
}

fn of(keys: &[KeyMeta], suite: Suite, state: State) -> Vec<KeyMeta> {
    keys.iter()
        .filter(|k| k.suite == suite && k.state == state)
        .copied()
        .collect()
}

fn key_strategy() -> impl Strategy<Value = Vec<KeyMeta>> {
    let one = (
        prop::sample::select(vec![A, B, C]),
        prop::sample::select(vec![State::Pending, State::Active, State::Expired]),
        0..(3 * T.active),
    );
    (prop::collection::vec(one, 0..12), any::<u8>()).prop_map(|(v, first)| {
        v.into_iter()
            .enumerate()
            .map(|(i, (suite, state, age))| KeyMeta {
                id: first.wrapping_add(u8::try_from(i).unwrap_or(0)),
                suite,
                state,
                changed_at: NOW - age,
            })
            .collect()
    })
}

fn suites_strategy() -> impl Strategy<Value = Vec<Suite>> {
    prop::sample::subsequence(vec![A, B, C], 1..=3)
}

proptest! {
    /// Janus property 1: a configured suite that had an active key keeps one.
    #[test]
    fn a_configured_suite_with_an_active_key_keeps_one(keys in key_strategy(), suites in suites_strategy()) {
        let (_, after) = sweep(&keys, &suites, NOW);
        for &s in &suites {
            if !of(&keys, s, State::Active).is_empty() {
                prop_assert_eq!(of(&after, s, State::Active).len(), 1);
            }
        }
    }

    /// Janus property 2: an unconfigured suite is phased out — its pending
    /// keys are gone and its active keys expired; ours keeps one active only
    /// while no configured suite has one.
    #[test]
    fn an_unconfigured_suite_is_phased_out(keys in key_strategy(), suites in suites_strategy()) {
        let (_, after) = sweep(&keys, &suites, NOW);
        let configured_active = after.iter().any(|k| k.state == State::Active && suites.contains(&k.suite));
        let stale_active = after.iter().filter(|k| k.state == State::Active && !suites.contains(&k.suite)).count();
        prop_assert!(!after.iter().any(|k| k.state == State::Pending && !suites.contains(&k.suite)));
        prop_assert_eq!(stale_active, usize::from(!configured_active));
    }

    /// Janus property 3: a new suite gets exactly one pending key (exactly one
    /// active key when nothing at all was active).
    #[test]
    fn a_new_suite_gets_exactly_one_key(keys in key_strategy(), suites in suites_strategy()) {
        let (_, after) = sweep(&keys, &suites, NOW);
        let bootstrap = !keys.iter().any(|k| k.state == State::Active);
        for &s in &suites {
            if keys.iter().any(|k| k.suite == s) {
                continue;
            }
            let (want_pending, want_active) = if bootstrap { (0, 1) } else { (1, 0) };
            prop_assert_eq!(of(&after, s, State::Pending).len(), want_pending);
            prop_assert_eq!(of(&after, s, State::Active).len(), want_active);
        }
    }

    /// Janus property 4: at most one active key per configured suite, and a
    /// stale active key implies its successor is pending.
    #[test]
    fn one_active_per_suite_and_a_stale_one_has_a_successor(keys in key_strategy(), suites in suites_strategy()) {
        let (_, after) = sweep(&keys, &suites, NOW);
        for &s in &suites {
            let active = of(&after, s, State::Active);
            prop_assert!(active.len() <= 1);
            if let Some(a) = active.first()
                && NOW - a.changed_at > T.active
            {
                prop_assert_eq!(of(&after, s, State::Pending).len(), 1);
            }
        }
    }

    /// Janus property 5: at most one pending key per suite, and it is the
    /// newest of the suite's pending keys (by time, then id).
    #[test]
    fn at_most_one_pending_and_it_is_the_newest(keys in key_strategy(), suites in suites_strategy()) {
        let (_, after) = sweep(&keys, &suites, NOW);
        for &s in &suites {
            let pending = of(&after, s, State::Pending);
            prop_assert!(pending.len() <= 1);
            let before = of(&keys, s, State::Pending);
            if let (Some(p), false) = (pending.first(), before.is_empty()) {
                let newest = before.iter().max_by_key(|k| k.age_key()).copied();
                prop_assert_eq!(Some(*p), newest);
            }
        }
    }

    /// Janus property 6: expired keys older than expired_duration are deleted.
    #[test]
    fn old_expired_keys_are_deleted(keys in key_strategy(), suites in suites_strategy()) {
        let (_, after) = sweep(&keys, &suites, NOW);
        prop_assert!(!after.iter().any(|k| k.state == State::Expired && NOW - k.changed_at > T.expired));
    }

    /// A second sweep at the same instant changes nothing.
    #[test]
    fn a_second_sweep_at_the_same_instant_changes_nothing(keys in key_strategy(), suites in suites_strategy()) {
        let (_, after) = sweep(&keys, &suites, NOW);
        let (again, _) = sweep(&after, &suites, NOW);
        prop_assert!(again.ops.is_empty(), "{:?}", again.ops);
    }

    /// Repeated sweeps settle: always an active key, at most one pending and
    /// one active per suite, and expired keys bounded by how often keys rotate.
    #[test]
    fn repeated_sweeps_reach_a_steady_state(
        keys in key_strategy(),
        suites in suites_strategy(),
        steps in prop::collection::vec(1..(2 * T.pending), 1..120),
    ) {
        let mut keys = keys;
        let mut now = NOW;
        for step in steps {
            now += step;
            keys = sweep(&keys, &suites, now).1;
            prop_assert!(keys.iter().any(|k| k.state == State::Active));
        }
        let (again, _) = sweep(&keys, &suites, now);
        prop_assert!(again.ops.is_empty());
        for &s in &suites {
            prop_assert!(of(&keys, s, State::Active).len() <= 1);
            prop_assert!(of(&keys, s, State::Pending).len() <= 1);
        }
    }

    /// Swapping the only suite A → B never jams: every sweep commits, B is
    /// active once its pending time is served, and A is expired then.
    #[test]
    fn the_suite_swap_does_not_jam(step in 1..(T.pending / 2)) {
        let (_, mut keys) = sweep(&[], &[A], NOW);
        let mut now = NOW;
        let deadline = NOW + T.pending + 2 * step;
        while now <= deadline {
            now += step;
            keys = sweep(&keys, &[B], now).1;
            prop_assert!(keys.iter().any(|k| k.state == State::Active));
        }
        prop_assert_eq!(of(&keys, B, State::Active).len(), 1);
        prop_assert!(of(&keys, A, State::Active).is_empty());
        prop_assert_eq!(of(&keys, A, State::Expired).len(), 1);
    }
}

#[test]
fn an_empty_table_gets_one_active_key_per_suite() {
    let (p, after) = sweep(&[], &[A, B], NOW);
    assert_eq!(p.ops.len(), 2);
    assert_eq!(of(&after, A, State::Active).len(), 1);
    assert_eq!(of(&after, B, State::Active).len(), 1);
}

/// Janus's jam, reproduced by its own rule: with the unconfigured active key
/// expired at once, the only key left is B's pending key and the plan is refused.
#[test]
fn janus_rule_would_jam_but_ours_keeps_the_old_active_key() {
    let (_, keys) = sweep(&[], &[A], NOW);
    let p = plan(Kind::Hpke, &keys, &[B], &T, NOW + 1).unwrap();
    assert!(
        p.notes.iter().any(|n| n.contains("stays active")),
        "{:?}",
        p.notes
    );
    let after = apply(&keys, &p, NOW + 1);
    assert_eq!(of(&after, A, State::Active).len(), 1);
    assert_eq!(of(&after, B, State::Pending).len(), 1);
}

/// Ties at one-second resolution go to the higher id, whatever order the
/// keys arrive in.
#[test]
fn ties_are_broken_by_id_not_by_input_order() {
    let active = KeyMeta {
        id: 1,
        suite: A,
        state: State::Active,
        changed_at: NOW - 10,
    };
    let p1 = KeyMeta {
        id: 7,
        suite: A,
        state: State::Pending,
        changed_at: NOW - 5,
    };
    let p2 = KeyMeta {
        id: 3,
        suite: A,
        state: State::Pending,
        changed_at: NOW - 5,
    };
    for keys in [
        vec![active, p1, p2],
        vec![p2, active, p1],
        vec![p1, p2, active],
    ] {
        let (p, after) = sweep(&keys, &[A], NOW);
        assert_eq!(of(&after, A, State::Pending), vec![p1], "{:?}", p.ops);
    }
}

/// Running out of ids: the deletions that free ids are still made (Janus
/// rolled them back with the insert that failed).
#[test]
fn id_exhaustion_still_commits_the_deletions() {
    let mut keys = vec![
        KeyMeta {
            id: 0,
            suite: A,
            state: State::Active,
            changed_at: NOW - 2 * T.active,
        },
        KeyMeta {
            id: 1,
            suite: B,
            state: State::Active,
            changed_at: NOW - 2 * T.active,
        },
        // The one key old enough to delete.
        KeyMeta {
            id: 2,
            suite: A,
            state: State::Expired,
            changed_at: NOW - 2 * T.expired,
        },
    ];
    for id in 3..=255u8 {
        keys.push(KeyMeta {
            id,
            suite: A,
            state: State::Expired,
            changed_at: NOW - 1,
        });
    }
    let p = plan(Kind::Hpke, &keys, &[A, B], &T, NOW).unwrap();
    assert_eq!(p.exhausted, Some(B));
    assert!(
        p.ops.iter().any(|o| matches!(o, Op::Delete { id: 2, .. })),
        "{:?}",
        p.ops
    );
    // The freed id went to A's successor; B waits for the next free id.
    assert!(p.ops.iter().any(|o| matches!(
        o,
        Op::Create {
            id: 2,
            suite: A,
            state: State::Pending,
            ..
        }
    )));
}

#[test]
fn ids_follow_the_highest_in_use_and_wrap() {
    let keys = vec![KeyMeta {
        id: 255,
        suite: A,
        state: State::Active,
        changed_at: NOW - 2 * T.active,
    }];
    let p = plan(Kind::Hpke, &keys, &[A, B], &T, NOW).unwrap();
    let ids: Vec<u8> = p
        .ops
        .iter()
        .filter_map(|o| match o {
            Op::Create { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec![0, 1]);
}

#[test]
fn reasons_read_well() {
    let old = KeyMeta {
        id: 4,
        suite: A,
        state: State::Expired,
        changed_at: NOW - T.expired - 1,
    };
    let active = KeyMeta {
        id: 5,
        suite: A,
        state: State::Active,
        changed_at: NOW,
    };
    let p = plan(Kind::Hpke, &[old, active], &[A], &T, NOW).unwrap();
    assert_eq!(
        p.ops[0].to_string(),
        "delete expired key 4 (X25519/HKDF-SHA256/AES-128-GCM): expired for 7201 s, past expired_duration"
    );
}
