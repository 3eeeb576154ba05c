//! The sweep on PostgreSQL (a real server from `initdb`): the same SQL, and
//! the table lock that makes two rotators on one database make one set of
//! changes.

mod common;

use std::sync::Arc;

use certkeeper_keys::config::Policy;
use certkeeper_keys::model::{HpkeAead, HpkeKdf, HpkeKem, State, Suite};
use certkeeper_keys::rotator::meta;
use certkeeper_keys::{Kek, Keyring, Kind, Rotator, Timing};
use certkeeper_proto::FakeClock;
use certkeeper_store::Store;
use common::postgres::Postgres;

const T: Timing = Timing {
    pending: 3_600,
    active: 12 * 7 * 86_400,
    expired: 7 * 86_400,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_rotators_on_postgres_make_one_set_of_changes() {
    let pg = Postgres::start();
    let kek = Arc::new(Kek::from_bytes(&[3; 32]).unwrap());
    let clock = Arc::new(FakeClock::new(1_800_000_000));
    let policy = Policy {
        kind: Kind::Hpke,
        suites: vec![
            Suite::DEFAULT_HPKE,
            Suite::Hpke(HpkeKem::P256, HpkeKdf::Sha256, HpkeAead::Aes256Gcm),
        ],
        timing: T,
        max_age: 86_400,
    };
    let one = Store::open_url(&pg.url).await.unwrap();
    let two = Store::open_url(&pg.url).await.unwrap();
    let r1 = Rotator::new(
        one.clone(),
        kek.clone(),
        vec![policy.clone()],
        clock.clone(),
    );
    let r2 = Rotator::new(two, kek.clone(), vec![policy], clock.clone());
    // Each step crosses one boundary: create, pending, promote, delete, …
    let steps = [
        0,
        T.active + 1,
        T.pending + 1,
        T.expired + 1,
        T.active,
        T.pending + 1,
    ];
    let mut total = 0;
    for step in steps {
        clock.advance(step);
        let (a, b) = tokio::join!(r1.sweep(), r2.sweep());
        let (a, b) = (a.unwrap().changes(), b.unwrap().changes());
        assert!(a == 0 || b == 0, "both made changes: {a} and {b}");
        assert!(a + b > 0, "step {step}: nothing changed");
        total += a + b;
    }
    // 2 created, 2 pending, 4 promoted/expired, 2 deleted, 2 pending, 4 promoted/expired.
    assert_eq!(total, 16);
    let keys: Vec<_> = one
        .keys_all()
        .await
        .unwrap()
        .iter()
        .map(|r| meta(r).unwrap())
        .collect();
    assert_eq!(keys.iter().filter(|k| k.state == State::Active).count(), 2);
    assert_eq!(keys.iter().filter(|k| k.state == State::Expired).count(), 2);
    let ring = Keyring::load(&one, &kek).await.unwrap();
    assert_eq!(ring.hpke_ids().len(), 4);
}
