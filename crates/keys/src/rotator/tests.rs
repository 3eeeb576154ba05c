//! The sweep against a real SQLite store, driven by a fake clock.

use std::sync::Arc;

use certkeeper_proto::FakeClock;

use super::*;
use crate::config::Policy;
use crate::model::{HpkeAead, HpkeKdf, HpkeKem};
use crate::plan::Timing;
use crate::{Keyring, hpke::HpkeSuite};

const A: Suite = Suite::DEFAULT_HPKE;
const B: Suite = Suite::Hpke(HpkeKem::P384, HpkeKdf::Sha512, HpkeAead::ChaCha20Poly1305);
const T: Timing = Timing {
    pending: 3_600,
    active: 12 * 7 * 86_400,
    expired: 7 * 86_400,
};
const START: i64 = 1_800_000_000;

fn policy(suites: Vec<Suite>) -> Policy {
    Policy {
        kind: Kind::Hpke,
        suites,
        timing: T,
        max_age: 86_400,
    }
}

async fn store(dir: &std::path::Path) -> Store {
    Store::open_dir(dir).await.unwrap()
}

fn kek() -> Arc<Kek> {
    Arc::new(Kek::from_bytes(&[9; 32]).unwrap())
}

async fn keys(store: &Store) -> Vec<KeyMeta> {
    store
        .keys_all()
        .await
        .unwrap()
        .iter()
        .map(|r| meta(r).unwrap())
        .collect()
}

/// Sweeps one second before `boundary` (nothing may change), then one second
/// after it (something must), and returns the second sweep's operations.
async fn across(rotator: &Rotator, clock: &FakeClock, boundary: i64) -> Vec<Op> {
    clock.set(boundary - 1);
    let before = rotator.sweep().await.unwrap();
    assert_eq!(
        before.changes(),
        0,
        "one second before {boundary}: {:?}",
        before.plans
    );
    clock.set(boundary + 1);
    let after = rotator.sweep().await.unwrap();
    assert!(
        after.changes() > 0,
        "one second after {boundary}: nothing changed"
    );
    after.plans.into_iter().flat_map(|p| p.ops).collect()
}

fn count(ops: &[Op], f: impl Fn(&Op) -> bool) -> usize {
    ops.iter().filter(|o| f(o)).count()
}

#[tokio::test]
async fn four_rotation_cycles_of_two_suites_on_a_fake_clock() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let clock = Arc::new(FakeClock::new(START));
    let rotator = Rotator::new(
        store.clone(),
        kek(),
        vec![policy(vec![A, B])],
        clock.clone(),
    );

    let first = rotator.sweep().await.unwrap();
    assert_eq!(first.changes(), 2);
    let mut active_since = START;
    let mut seen_ids = std::collections::BTreeSet::new();
    for k in keys(&store).await {
        assert_eq!(k.state, State::Active);
        seen_ids.insert(k.id);
    }
    for cycle in 0..4 {
        // Active for active_duration: each suite's successor starts pending.
        let ops = across(&rotator, &clock, active_since + T.active).await;
        assert_eq!(
            count(&ops, |o| matches!(
                o,
                Op::Create {
                    state: State::Pending,
                    ..
                }
            )),
            2,
            "cycle {cycle}: {ops:?}"
        );
        assert_eq!(ops.len(), 2);
        let created = active_since + T.active + 1;
        // A replica can already open with the pending keys.
        let ring = Keyring::load(&store, &kek()).await.unwrap();
        assert_eq!(ring.hpke_ids().len(), 4);

        // Pending for pending_duration: promoted, the old keys expire.
        let ops = across(&rotator, &clock, created + T.pending).await;
        assert_eq!(
            count(&ops, |o| matches!(
                o,
                Op::Change {
                    from: State::Pending,
                    to: State::Active,
                    ..
                }
            )),
            2
        );
        assert_eq!(
            count(&ops, |o| matches!(
                o,
                Op::Change {
                    from: State::Active,
                    to: State::Expired,
                    ..
                }
            )),
            2
        );
        assert_eq!(ops.len(), 4, "cycle {cycle}: {ops:?}");
        let promoted = created + T.pending + 1;

        // Expired for expired_duration: deleted.
        let ops = across(&rotator, &clock, promoted + T.expired).await;
        assert_eq!(
            count(&ops, |o| matches!(
                o,
                Op::Delete {
                    state: State::Expired,
                    ..
                }
            )),
            2
        );
        assert_eq!(ops.len(), 2, "cycle {cycle}: {ops:?}");

        let now = keys(&store).await;
        assert_eq!(now.len(), 2);
        for s in [A, B] {
            let active: Vec<_> = now
                .iter()
                .filter(|k| k.suite == s && k.state == State::Active)
                .collect();
            assert_eq!(active.len(), 1, "cycle {cycle}, suite {s}");
            assert!(
                seen_ids.insert(active[0].id),
                "ids are not reused while others are free"
            );
        }
        active_since = promoted;
    }
}

/// Two rotators, each with its own connections to one database, sweep at the
/// same instant: one makes the changes, the other then sees them and does nothing.
#[tokio::test]
async fn two_rotators_on_one_store_make_one_set_of_changes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(START));
    let one = Rotator::new(
        store(dir.path()).await,
        kek(),
        vec![policy(vec![A, B])],
        clock.clone(),
    );
    let two = Rotator::new(
        store(dir.path()).await,
        kek(),
        vec![policy(vec![A, B])],
        clock.clone(),
    );
    for _round in 0..5 {
        let (a, b) = tokio::join!(one.sweep(), two.sweep());
        let (a, b) = (a.unwrap().changes(), b.unwrap().changes());
        assert!(a == 0 || b == 0, "both sweeps changed keys: {a} and {b}");
        clock.advance(T.active + T.pending);
    }
    let s = store(dir.path()).await;
    let now = keys(&s).await;
    for suite in [A, B] {
        assert_eq!(
            now.iter()
                .filter(|k| k.suite == suite && k.state == State::Active)
                .count(),
            1
        );
        assert!(
            now.iter()
                .filter(|k| k.suite == suite && k.state == State::Pending)
                .count()
                <= 1
        );
    }
}

#[tokio::test]
async fn a_sweep_that_leaves_no_active_key_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let clock = Arc::new(FakeClock::new(START));
    // 256 keys, none active and none deletable: the sweep must create an
    // active key and has no id for it.
    let rows: Vec<KeyRow> = (0..=255u8)
        .map(|id| KeyRow {
            kind: "hpke".into(),
            id,
            suite: A.to_string(),
            state: "expired".into(),
            public_key: String::new(),
            private_sealed: String::new(),
            changed_at: START,
        })
        .collect();
    let wrote: Result<(), ()> = store
        .keys_sweep(|_| {
            Ok((
                KeyChanges {
                    insert: rows,
                    ..Default::default()
                },
                (),
            ))
        })
        .await
        .unwrap();
    assert!(wrote.is_ok());
    let rotator = Rotator::new(store.clone(), kek(), vec![policy(vec![A])], clock);
    let e = rotator.sweep().await.unwrap_err().to_string();
    assert!(e.contains("no key would be active afterwards"), "{e}");
    assert_eq!(keys(&store).await.len(), 256);
}

#[tokio::test]
async fn private_keys_are_sealed_at_rest_and_need_the_kek() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let rotator = Rotator::new(
        store.clone(),
        kek(),
        vec![policy(vec![A])],
        Arc::new(FakeClock::new(START)),
    );
    rotator.sweep().await.unwrap();
    let row = &store.keys_all().await.unwrap()[0];
    let public = B64.decode(&row.public_key).unwrap();
    let sealed = B64.decode(&row.private_sealed).unwrap();
    let private = kek().open("hpke", &row.suite, &public, &sealed).unwrap();
    let db = std::fs::read(dir.path().join("certkeeper.db")).unwrap();
    let wal = std::fs::read(dir.path().join("certkeeper.db-wal")).unwrap_or_default();
    let b64_private = B64.encode(&private);
    for file in [&db, &wal] {
        assert!(!file.windows(private.len()).any(|w| w == private.as_slice()));
        assert!(
            !file
                .windows(b64_private.len())
                .any(|w| w == b64_private.as_bytes())
        );
    }
    let wrong = Kek::from_bytes(&[1; 32]).unwrap();
    let e = Keyring::load(&store, &wrong).await.unwrap_err().to_string();
    assert!(e.contains("wrong key-encryption key"), "{e}");
    // The right KEK opens messages sealed to the published config.
    let ring = Keyring::load(&store, &kek()).await.unwrap();
    let s = HpkeSuite::from_suite(A).unwrap();
    let (enc, ct) = crate::hpke::seal(s, &public, b"i", b"", b"m").unwrap();
    assert_eq!(ring.open(row.id, &enc, b"i", b"", &ct).unwrap(), b"m");
    let e = ring
        .open(row.id.wrapping_add(1), &enc, b"i", b"", &ct)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("unknown key config id {}", row.id.wrapping_add(1))),
        "{e}"
    );
}
