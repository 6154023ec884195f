//! Group commit, transactions, torn-tail recovery, dedupe, checkpoints.

mod common;
use common::*;
use kaudit_store::note::Checkpoint;
use kaudit_store::verify::{verify, VerifyOptions};
use kaudit_store::{list_segments, Store};
use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;

#[test]
fn concurrent_appenders_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), small_opts()).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for b in 0..50u64 {
                    let base = t * 100_000 + b * 10;
                    let a = s
                        .append_batch((base..base + 10).map(record).collect())
                        .unwrap();
                    assert_eq!(a.seqs.end - a.seqs.start, 10);
                    // Returned only once durable: visible to readers.
                    assert!(s.len() >= a.seqs.end);
                    seqs.extend(a.seqs);
                }
                seqs
            })
        })
        .collect();
    let mut all = HashSet::new();
    for t in threads {
        for s in t.join().unwrap() {
            assert!(all.insert(s));
        }
    }
    assert_eq!(all.len(), 2000);
    assert_eq!(store.len(), 2000);
    let leaves = all_leaf_data(&store);
    assert_eq!(store.root_at(2000).unwrap(), mth(&leaves));
    drop(store);
    assert!(verify(dir.path(), &VerifyOptions::default()).unwrap().ok());
}

#[test]
fn exact_duplicates_are_dropped_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 500, 100, small_opts());
    let store = Store::open(dir.path(), small_opts()).unwrap();
    let a = store
        .append_batch((400..600).map(record).collect())
        .unwrap();
    assert_eq!(a.duplicates, 100);
    assert_eq!(a.seqs, 500..600);
    // Same bytes from another cluster are not duplicates.
    let mut r = record(1);
    r.cluster = "other".into();
    assert_eq!(store.append_batch(vec![r]).unwrap().duplicates, 0);
}

#[test]
fn aborted_transaction_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 300, 100, small_opts());
    let store = Store::open(dir.path(), small_opts()).unwrap();
    {
        let mut tx = store.transaction().unwrap();
        for i in 300..700 {
            assert!(tx.push(&record(i)).unwrap());
        }
        assert_eq!(tx.staged(), 400);
        // dropped without commit
    }
    assert_eq!(store.len(), 300);
    let mut tx = store.transaction().unwrap();
    assert!(tx.push(&record(300)).unwrap());
    assert!(
        !tx.push(&record(300)).unwrap(),
        "duplicate inside one transaction"
    );
    assert_eq!(tx.commit().unwrap().seqs, 300..301);
    drop(store);
    let rep = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!(rep.records, 301);
}

#[test]
fn torn_tail_is_cut_back_with_a_report() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1000, 100, small_opts());
    let (_, last) = list_segments(dir.path()).unwrap().pop().unwrap();
    let good_len = std::fs::metadata(&last).unwrap().len();
    // An uncommitted bundle plus half of another, as a crash mid-write leaves.
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    let mut raw = Vec::new();
    let mut ld = Vec::new();
    record(5000).leaf_data(1000, &mut ld);
    raw.extend_from_slice(&(ld.len() as u32).to_le_bytes());
    raw.extend_from_slice(&ld);
    let frame = kaudit_store::segment::encode_bundle(1000, 1, &raw, 0, 0, &mut c, None).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    f.write_all(&frame).unwrap();
    f.write_all(&frame[..frame.len() / 2]).unwrap();
    drop(f);
    let rep = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(
        rep.ok(),
        "an uncommitted tail is not tampering: {:?}",
        rep.problems
    );
    assert!(rep
        .notes
        .iter()
        .any(|n| n.contains("uncommitted") || n.contains("never committed")));
    let store = Store::open(dir.path(), small_opts()).unwrap();
    let r = store.open_report();
    assert_eq!(r.cut.len(), 1);
    assert_eq!(r.cut[0].1, good_len);
    assert!(r.describe()[0].contains("torn tail"));
    assert_eq!(store.len(), 1000);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), good_len);
    store
        .append_batch((1000..1100).map(record).collect())
        .unwrap();
    drop(store);
    assert!(verify(dir.path(), &VerifyOptions::default()).unwrap().ok());
}

#[test]
fn derived_files_are_rebuilt_when_lost() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1500, 100, small_opts());
    let root = Store::open(dir.path(), small_opts())
        .unwrap()
        .root_at(1500)
        .unwrap();
    std::fs::remove_dir_all(dir.path().join("tree")).unwrap();
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = Store::open(dir.path(), small_opts()).unwrap();
    assert_eq!(store.root_at(1500).unwrap(), root);
    assert_eq!(store.open_report().replayed, 1500);
    assert_eq!(
        store
            .append_batch((0..10).map(record).collect())
            .unwrap()
            .duplicates,
        10
    );
}

#[test]
fn checkpoints_are_signed_notes_over_the_current_tree() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 700, 100, small_opts());
    let store = Store::open(dir.path(), small_opts()).unwrap();
    let cps = store.checkpoints();
    assert!(cps.len() >= 7);
    let v = store.verifier().clone();
    for c in &cps {
        let text = v.verify_note(&c.note).unwrap();
        let cp = Checkpoint::parse(text).unwrap();
        assert_eq!(cp.size, c.size);
        assert_eq!(cp.root, store.root_at(c.size).unwrap());
        assert_eq!(cp.origin, v.name());
        assert!(c.note.contains("\n\n\u{2014} "));
    }
    // Key file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(kaudit_store::paths::signing_key(dir.path()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _a = Store::open(dir.path(), small_opts()).unwrap();
    let err = Store::open(dir.path(), small_opts())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("in use"), "{err}");
}
