//! The monitor against logs on disk: it follows growth entry by entry,
//! survives a restart from its saved state, and alerts on a rewritten,
//! forked or shrunk log signed with the right key.

use certkeeper_tlog::client::DirFetch;
use certkeeper_tlog::monitor::{MonitorAlert, MonitorState, Polled};
use certkeeper_tlog::note::NoteSigner;
use certkeeper_tlog::storage::FileLog;

fn entry(i: u64) -> Vec<u8> {
    format!("certificate {i}").into_bytes()
}

fn grew(p: Polled) -> Vec<(u64, Vec<u8>)> {
    match p {
        Polled::Grew { entries } => entries,
        Polled::Alert { alert, .. } => panic!("unexpected alert: {alert}"),
    }
}

#[tokio::test]
async fn follows_growth_and_alerts_on_a_rewritten_log() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let dir = tmp.path().join("log");
    let signer = NoteSigner::load_or_create(&keys, "example.test/log").unwrap();
    let verifier = signer.verifier();
    let (mut log, _) = FileLog::open(&dir, signer).unwrap();
    let fetch = DirFetch(dir.clone());
    let mut state = MonitorState::empty("example.test/log");
    assert!(grew(state.poll(&fetch, &verifier).await.unwrap()).is_empty());

    log.append_batch(&(0..3).map(entry).collect::<Vec<_>>())
        .unwrap();
    let got = grew(state.poll(&fetch, &verifier).await.unwrap());
    assert_eq!(got, (0..3).map(|i| (i, entry(i))).collect::<Vec<_>>());
    log.append_batch(&(3..600).map(entry).collect::<Vec<_>>())
        .unwrap();
    let got = grew(state.poll(&fetch, &verifier).await.unwrap());
    assert_eq!(got.len(), 597);
    assert_eq!(got[0], (3, entry(3)));
    assert_eq!(got[596], (599, entry(599)));

    // Saved and restored (an agent restart), it carries on.
    let mut state = MonitorState::from_text(&state.to_text(), &verifier).unwrap();
    log.append_batch(&[entry(600)]).unwrap();
    assert_eq!(
        grew(state.poll(&fetch, &verifier).await.unwrap()),
        vec![(600, entry(600))]
    );
    drop(log);

    // The operator rebuilds the log with entry 5 swapped, same key, more
    // entries: a validly signed checkpoint that does not extend ours.
    let forked = tmp.path().join("forked");
    let signer = NoteSigner::load_or_create(&keys, "example.test/log").unwrap();
    let (mut f, _) = FileLog::open(&forked, signer).unwrap();
    let mut es: Vec<Vec<u8>> = (0..700).map(entry).collect();
    es[5] = b"a certificate nobody was meant to see".to_vec();
    f.append_batch(&es).unwrap();
    let before = state.checkpoint.clone();
    match state
        .poll(&DirFetch(forked.clone()), &verifier)
        .await
        .unwrap()
    {
        Polled::Alert {
            alert: MonitorAlert::Fork { old: 601, new: 700 },
            ..
        } => {}
        other => panic!("expected a fork alert, got {other:?}"),
    }
    assert_eq!(
        state.checkpoint, before,
        "an alert leaves the verified state alone"
    );

    // A smaller log is a rewrite too.
    let small = tmp.path().join("small");
    let signer = NoteSigner::load_or_create(&keys, "example.test/log").unwrap();
    let (mut s, _) = FileLog::open(&small, signer).unwrap();
    s.append_batch(&(0..10).map(entry).collect::<Vec<_>>())
        .unwrap();
    assert!(matches!(
        state.poll(&DirFetch(small), &verifier).await.unwrap(),
        Polled::Alert {
            alert: MonitorAlert::Shrunk { old: 601, new: 10 },
            ..
        }
    ));
    // And so is the same size with another root.
    let same = tmp.path().join("same");
    let signer = NoteSigner::load_or_create(&keys, "example.test/log").unwrap();
    let (mut s, _) = FileLog::open(&same, signer).unwrap();
    let mut es: Vec<Vec<u8>> = (0..601).map(entry).collect();
    es[0] = b"other".to_vec();
    s.append_batch(&es).unwrap();
    assert!(matches!(
        state.poll(&DirFetch(same), &verifier).await.unwrap(),
        Polled::Alert {
            alert: MonitorAlert::SplitView { size: 601 },
            ..
        }
    ));
}
