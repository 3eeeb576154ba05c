//! Signing keys against a real verifier: jwcrypto reads our JWKS over HTTP
//! and verifies tokens signed with the active key, before and after a
//! rotation, until the expired key leaves the set.

mod common;

use std::sync::Arc;

use certkeeper_keys::config::Policy;
use certkeeper_keys::model::{SigningAlg, Suite};
use certkeeper_keys::{Kek, Keyring, Kind, Rotator, Timing};
use certkeeper_proto::FakeClock;
use certkeeper_store::Store;
use serde_json::json;

const T: Timing = Timing {
    pending: 3_600,
    active: 12 * 7 * 86_400,
    expired: 7 * 86_400,
};

struct Verdict {
    kids: Vec<String>,
    verified: bool,
    line: String,
}

fn verify(url: &str, token: &str) -> Verdict {
    let out = common::peer(
        "jwks_verify.py",
        &[&format!("{url}/.well-known/jwks.json"), token],
    );
    let kids = out
        .lines()
        .find_map(|l| l.strip_prefix("kids: "))
        .map(|k| {
            k.split(' ')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let line = out.lines().last().unwrap_or_default().to_string();
    Verdict {
        kids,
        verified: line == "verified svc",
        line,
    }
}

fn token(ring: &Keyring, alg: SigningAlg) -> String {
    // jwcrypto checks `exp` against the real clock; the rotation runs on a fake one.
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3_600;
    ring.sign_jwt(Some(alg), &json!({"sub": "svc", "exp": exp}))
        .expect("an active key")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwcrypto_verifies_our_tokens_across_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).await.unwrap();
    let kek = Arc::new(Kek::from_bytes(&[6; 32]).unwrap());
    let clock = Arc::new(FakeClock::new(1_800_000_000));
    let policy = Policy {
        kind: Kind::Signing,
        suites: vec![
            Suite::Signing(SigningAlg::Ed25519),
            Suite::Signing(SigningAlg::Es256),
        ],
        timing: T,
        max_age: 900,
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
    let old_ed = token(&ring, SigningAlg::Ed25519);
    let old_es = token(&ring, SigningAlg::Es256);
    let v = verify(&url, &old_ed);
    assert!(v.verified, "{}", v.line);
    assert_eq!(v.kids.len(), 2);
    assert!(verify(&url, &old_es).verified);

    // Pending successors are published before they sign.
    clock.advance(T.active + 1);
    rotator.sweep().await.unwrap();
    let ring = common::reload(&shared, &store, &kek).await;
    let v = verify(&url, &token(&ring, SigningAlg::Ed25519));
    assert_eq!(v.kids.len(), 4, "pending keys are published");
    assert_eq!(
        token(&ring, SigningAlg::Ed25519).split('.').next(),
        old_ed.split('.').next(),
        "the old key still signs while its successor is pending"
    );

    // Promotion: new tokens carry the new kid; old tokens still verify.
    clock.advance(T.pending + 1);
    rotator.sweep().await.unwrap();
    let ring = common::reload(&shared, &store, &kek).await;
    let new_ed = token(&ring, SigningAlg::Ed25519);
    assert_ne!(new_ed.split('.').next(), old_ed.split('.').next());
    let v = verify(&url, &new_ed);
    assert!(v.verified, "{}", v.line);
    assert_eq!(v.kids.len(), 4);
    let v = verify(&url, &old_ed);
    assert!(
        v.verified,
        "an old token verifies while its key is expired but published: {}",
        v.line
    );

    // The expired keys leave the set: old tokens no longer verify, new ones do.
    clock.advance(T.expired + 1);
    rotator.sweep().await.unwrap();
    let ring = common::reload(&shared, &store, &kek).await;
    let v = verify(&url, &old_ed);
    assert!(!v.verified && v.line.starts_with("refused:"), "{}", v.line);
    assert_eq!(v.kids.len(), 2);
    assert!(!verify(&url, &old_es).verified);
    assert!(verify(&url, &token(&ring, SigningAlg::Es256)).verified);
}
