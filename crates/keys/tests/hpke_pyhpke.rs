//! RFC 9458 key configs and RFC 9180 HPKE against a real peer: pyhpke, as an
//! Oblivious HTTP client would use it. It fetches `/ohttp-keys` over HTTP,
//! parses the configs and seals to the active key; our keyring opens it
//! before and after a rotation, and refuses a deleted key by its id.

mod common;

use std::sync::Arc;

use certkeeper_keys::config::Policy;
use certkeeper_keys::model::{HpkeAead, HpkeKdf, HpkeKem, State, Suite};
use certkeeper_keys::{Kek, Keyring, Kind, Rotator, Timing};
use certkeeper_proto::FakeClock;
use certkeeper_store::Store;

const T: Timing = Timing {
    pending: 3_600,
    active: 12 * 7 * 86_400,
    expired: 7 * 86_400,
};

/// One advertised config as pyhpke parsed it: "id,kem,kdf,aead,pk_hex".
fn configs(url: &str) -> (Vec<String>, String, String) {
    let out = common::peer("ohttp_client.py", &["fetch", &format!("{url}/ohttp-keys")]);
    let mut configs = Vec::new();
    let (mut ctype, mut cache) = (String::new(), String::new());
    for line in out.lines() {
        if let Some(v) = line.strip_prefix("content-type: ") {
            ctype = v.to_string();
        } else if let Some(v) = line.strip_prefix("cache-control: ") {
            cache = v.to_string();
        } else {
            configs.push(line.split(' ').collect::<Vec<_>>().join(","));
        }
    }
    (configs, ctype, cache)
}

fn seal(config: &str, message: &str) -> Vec<u8> {
    let hex = common::peer("ohttp_client.py", &["seal", config, message]);
    (0..hex.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex.trim()[i..i + 2], 16).unwrap())
        .collect()
}

fn id_of(config: &str) -> u8 {
    config.split(',').next().unwrap().parse().unwrap()
}

fn active_ids(ring: &Keyring) -> Vec<u8> {
    ring.hpke_ids()
        .into_iter()
        .filter(|(_, s)| *s == State::Active)
        .map(|(id, _)| id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyhpke_seals_to_our_published_configs_across_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).await.unwrap();
    let kek = Arc::new(Kek::from_bytes(&[5; 32]).unwrap());
    let clock = Arc::new(FakeClock::new(1_800_000_000));
    let policy = Policy {
        kind: Kind::Hpke,
        suites: vec![
            Suite::DEFAULT_HPKE,
            Suite::Hpke(HpkeKem::P256, HpkeKdf::Sha512, HpkeAead::ChaCha20Poly1305),
        ],
        timing: T,
        max_age: 86_400,
    };
    let rotator = Rotator::new(
        store.clone(),
        kek.clone(),
        vec![policy.clone()],
        clock.clone(),
    );
    let (url, shared) = common::server(std::slice::from_ref(&policy)).await;

    rotator.sweep().await.unwrap();
    let ring = common::reload(&shared, &store, &kek).await;
    let (first, ctype, cache) = configs(&url);
    assert_eq!(ctype, "application/ohttp-keys");
    assert_eq!(cache, "max-age=86400");
    let mut ids: Vec<u8> = first.iter().map(|c| id_of(c)).collect();
    ids.sort();
    assert_eq!(ids, active_ids(&ring));
    for c in &first {
        let request = seal(c, "GET /secret");
        assert_eq!(
            ring.open_request(&request).unwrap(),
            b"GET /secret",
            "config {c}"
        );
    }

    // Successors are made pending: decryptable, not advertised.
    clock.advance(T.active + 1);
    rotator.sweep().await.unwrap();
    let ring = common::reload(&shared, &store, &kek).await;
    assert_eq!(ring.hpke_ids().len(), 4);
    assert_eq!(configs(&url).0, first, "pending keys are not advertised");

    // Promotion: new configs advertised; a client with a cached old config
    // (now expired) still gets through.
    clock.advance(T.pending + 1);
    rotator.sweep().await.unwrap();
    let ring = common::reload(&shared, &store, &kek).await;
    let (second, _, _) = configs(&url);
    assert_eq!(second.len(), 2);
    assert!(
        second.iter().all(|c| !first.contains(c)),
        "{second:?} vs {first:?}"
    );
    for c in &second {
        assert_eq!(ring.open_request(&seal(c, "new")).unwrap(), b"new");
    }
    let cached = &first[0];
    let late = seal(cached, "sealed to a cached config");
    assert_eq!(
        ring.open_request(&late).unwrap(),
        b"sealed to a cached config"
    );

    // Deleted after expired_duration: refused by id, with the clear error.
    clock.advance(T.expired + 1);
    rotator.sweep().await.unwrap();
    let ring = common::reload(&shared, &store, &kek).await;
    let e = ring
        .open_request(&seal(cached, "too late"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("unknown key config id {}", id_of(cached))),
        "{e}"
    );
    // A request naming the right id but another suite is refused too.
    let mut wrong = seal(&second[0], "x");
    wrong[6] ^= 0x01;
    let e = ring.open_request(&wrong).unwrap_err().to_string();
    assert!(e.contains("but the request names"), "{e}");
}
