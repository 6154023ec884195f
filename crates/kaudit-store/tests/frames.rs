//! Framed bundles (several small zstd frames per bundle, so a search hit
//! decompresses one frame): reads of chosen records, stores written before
//! framing (one frame per bundle) opening, growing and verifying, sealed
//! framed bundles, and a damaged frame table refused with its place named.

mod common;

use common::{event, fill, small_opts};
use kaudit_store::segment::{self, BundleHeader, Frame};
use kaudit_store::verify::{verify, VerifyOptions};
use kaudit_store::{Store, StoreOptions};
use std::path::Path;

/// Small frames so that each 50-record bundle holds many.
fn framed_opts() -> StoreOptions {
    StoreOptions {
        bundle_frame_bytes: 2048,
        ..small_opts()
    }
}

/// Every event read back through `read_seqs` for `seqs`, in order.
fn read_seqs(store: &Store, seqs: &[u64]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    store
        .read_seqs(seqs, &mut |s, l| {
            out.push((s, l.event.to_vec()));
            true
        })
        .unwrap();
    out
}

/// Every stored event through range reads.
fn read_all(store: &Store) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    store
        .read(0..store.len(), &mut |s, l| {
            out.push((s, l.event.to_vec()));
            true
        })
        .unwrap();
    out
}

fn verified(dir: &Path, cipher: Option<kaudit_store::crypt::Cipher>) -> u64 {
    let rep = verify(
        dir,
        &VerifyOptions {
            cipher,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(rep.ok(), "{:?}", rep.problems);
    rep.records
}

/// The bundle frames of the first segment.
fn bundles(dir: &Path) -> Vec<(u64, BundleHeader, Vec<u8>)> {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let buf = std::fs::read(&segs[0]).unwrap();
    let mut off = segment::SEGMENT_HEADER as u64;
    let mut out = Vec::new();
    while let Ok(f) = segment::parse_frame_in(&buf, off, true) {
        match f {
            Frame::Bundle { offset, header } => {
                let p = offset as usize + segment::BUNDLE_HEADER;
                out.push((
                    offset,
                    header,
                    buf[p..p + header.stored_len as usize].to_vec(),
                ));
                off = offset + (segment::BUNDLE_HEADER as u64) + u64::from(header.stored_len);
            }
            Frame::Commit { offset, .. } => off = offset + segment::COMMIT_FRAME as u64,
        }
    }
    out
}

#[test]
fn read_seqs_returns_exactly_the_asked_records() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 600, 70, framed_opts());
    assert!(
        bundles(dir.path())[0].2.starts_with(b"KBF1"),
        "bundles are framed"
    );
    let store = Store::open(dir.path(), framed_opts()).unwrap();
    let want: Vec<u64> = vec![0, 1, 7, 49, 50, 51, 233, 234, 401, 599, 600, 10_000];
    let got = read_seqs(&store, &want);
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, vec![0, 1, 7, 49, 50, 51, 233, 234, 401, 599]);
    for (s, e) in &got {
        assert_eq!(e, &event(*s), "record {s}");
    }
    // Stops when asked.
    let mut n = 0;
    store
        .read_seqs(&want, &mut |_, _| {
            n += 1;
            n < 3
        })
        .unwrap();
    assert_eq!(n, 3);
    // Range reads across frame and bundle edges.
    let mut mid = Vec::new();
    store
        .read(45..57, &mut |s, l| {
            mid.push((s, l.event.to_vec()));
            true
        })
        .unwrap();
    assert_eq!(
        mid.iter().map(|m| m.0).collect::<Vec<_>>(),
        (45..57).collect::<Vec<_>>()
    );
    assert!(mid.iter().all(|(s, e)| e == &event(*s)));
    assert_eq!(read_all(&store).len(), 600);
    store.close().unwrap();
    assert_eq!(verified(dir.path(), None), 600);
}

#[test]
fn a_store_written_before_framing_opens_grows_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let old = StoreOptions {
        bundle_frame_bytes: 0,
        ..small_opts()
    };
    fill(dir.path(), 300, 60, old);
    let before = bundles(dir.path());
    assert!(!before.is_empty());
    assert!(
        before.iter().all(|b| !b.2.starts_with(b"KBF1")),
        "the old format: one zstd frame per bundle"
    );
    assert_eq!(verified(dir.path(), None), 300);
    // The same store, now written framed: old and new bundles side by side.
    let store = Store::open(dir.path(), framed_opts()).unwrap();
    store
        .append_batch((300..500).map(common::record).collect())
        .unwrap();
    let all = read_all(&store);
    assert_eq!(all.len(), 500);
    assert!(all.iter().all(|(s, e)| e == &event(*s)));
    let got = read_seqs(&store, &[3, 150, 299, 300, 420, 499]);
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![3, 150, 299, 300, 420, 499]
    );
    assert!(got.iter().all(|(s, e)| e == &event(*s)));
    store.close().unwrap();
    assert_eq!(verified(dir.path(), None), 500);
}

#[test]
fn sealed_framed_bundles_read_and_verify_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let keyf = dir.path().join("data.key");
    std::fs::write(&keyf, kaudit_store::crypt::Cipher::generate_hex().unwrap()).unwrap();
    let data = dir.path().join("store");
    let opts = StoreOptions {
        encryption_key: Some(keyf.clone()),
        ..framed_opts()
    };
    fill(&data, 400, 100, opts.clone());
    let store = Store::open(&data, opts).unwrap();
    let got = read_seqs(&store, &[0, 77, 222, 399]);
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![0, 77, 222, 399]
    );
    assert!(got.iter().all(|(s, e)| e == &event(*s)));
    store.close().unwrap();
    let cipher = kaudit_store::crypt::Cipher::load(&keyf).unwrap();
    assert_eq!(verified(&data, Some(cipher)), 400);
}

#[test]
fn a_damaged_frame_table_is_refused_naming_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 600, 100, framed_opts());
    let (offset, h, mut payload) = bundles(dir.path()).remove(0);
    assert_eq!(
        segment::open_payload(&h, &payload, None).unwrap().len(),
        h.raw_len as usize
    );
    // Claim one record fewer in the first frame: the table no longer adds up.
    payload[8] = payload[8].wrapping_sub(1);
    let err = segment::open_payload(&h, &payload, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("framed bundle"), "{err}");
    // A frame count beyond the records is refused before anything is read.
    payload[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = segment::open_payload(&h, &payload, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("frames for"), "{err}");
    // In place on disk: a read names the segment and offset; verify reports it.
    // (The first of several segments: open checksums only the last one.)
    let mut segs: Vec<_> = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    assert!(segs.len() > 1, "several segments");
    let seg = segs.remove(0);
    let mut buf = std::fs::read(&seg).unwrap();
    let at = offset as usize + segment::BUNDLE_HEADER;
    buf[at + 8] = buf[at + 8].wrapping_sub(1);
    std::fs::write(&seg, &buf).unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions {
            read_only: true,
            ..framed_opts()
        },
    )
    .unwrap();
    let err = store
        .read_seqs(&[1], &mut |_, _| true)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!(":{offset}")), "{err}");
    let rep = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(!rep.ok());
}
