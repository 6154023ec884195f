//! Damage found at open: a writable open never deletes or cuts committed,
//! checkpointed data; it moves what it cannot repair to `<data>/damaged/`
//! and fails with a report, and `verify` keeps working.

mod common;
use common::*;
use kaudit_store::verify::{verify, VerifyOptions};
use kaudit_store::{list_segments, Store, StoreError};
use std::os::unix::fs::FileExt;
use std::path::Path;

fn flip_bit(path: &Path, offset: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x10;
    f.write_all_at(&b, offset).unwrap();
}

fn damaged_files(dir: &Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(dir.join("damaged")) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn corrupt_active_segment_header_is_moved_aside_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    // One segment only: the active one holds every record.
    let opts = kaudit_store::StoreOptions {
        checkpoint_interval: std::time::Duration::ZERO,
        ..Default::default()
    };
    fill(dir.path(), 3000, 500, opts.clone());
    let segs = list_segments(dir.path()).unwrap();
    assert_eq!(segs.len(), 1);
    let (_, active) = segs[0].clone();
    let before = std::fs::read(&active).unwrap();
    flip_bit(&active, 20);
    let flipped = std::fs::read(&active).unwrap();

    let err = match Store::open(dir.path(), opts.clone()) {
        Ok(_) => panic!("a writable open must fail on a damaged active segment"),
        Err(e) => e,
    };
    assert!(matches!(err, StoreError::Damaged(_)), "{err}");
    let msg = err.to_string();
    let name = active.file_name().unwrap().to_string_lossy().to_string();
    assert!(msg.contains(&name), "names the file: {msg}");
    assert!(msg.contains("offset 0"), "names the offset: {msg}");
    assert!(msg.contains("3000"), "names the covering checkpoint: {msg}");
    assert!(msg.contains("damaged"), "says where it went: {msg}");

    // Nothing was deleted: the bytes sit, unchanged, under damaged/.
    let moved = damaged_files(dir.path());
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(std::fs::read(&moved[0]).unwrap(), flipped);
    assert_eq!(flipped.len(), before.len());

    // A second writable open refuses too, while damaged/ is not dealt with.
    let again = Store::open(dir.path(), opts).err().expect("refused again");
    assert!(again.to_string().contains("damaged"), "{again}");

    // verify still works (read-only) and reports the damage.
    let rep = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(!rep.ok());
    let all = rep
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all.contains("damaged"), "{all}");
}

#[test]
fn corrupt_last_commit_marker_below_a_checkpoint_is_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1000, 100, small_opts());
    let (_, last) = list_segments(dir.path()).unwrap().pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    let before = std::fs::read(&last).unwrap();
    // The final 16 bytes are the last commit marker; damage its checksum.
    assert_eq!(&before[before.len() - 16..before.len() - 12], b"KCM1");
    flip_bit(&last, len - 2);
    let err = Store::open(dir.path(), small_opts())
        .err()
        .expect("open must fail");
    assert!(matches!(err, StoreError::Damaged(_)), "{err}");
    let moved = damaged_files(dir.path());
    assert_eq!(moved.len(), 1);
    assert_eq!(std::fs::metadata(&moved[0]).unwrap().len(), len);
    let rep = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(!rep.ok());
}

#[test]
fn torn_tail_after_the_newest_checkpoint_is_still_cut() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1000, 100, small_opts());
    let (_, last) = list_segments(dir.path()).unwrap().pop().unwrap();
    let good_len = std::fs::metadata(&last).unwrap().len();
    // Half a bundle header, as ENOSPC or a crash mid-write leaves.
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.write_all_at(b"KBD1\x01\x02\x03\x04\x05\x06\x07", good_len)
        .unwrap();
    drop(f);
    let store = Store::open(dir.path(), small_opts()).unwrap();
    assert_eq!(store.open_report().cut.len(), 1);
    assert_eq!(store.len(), 1000);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), good_len);
    assert!(damaged_files(dir.path()).is_empty());
    drop(store);
    assert!(verify(dir.path(), &VerifyOptions::default()).unwrap().ok());
}

#[test]
fn a_header_only_segment_with_a_torn_header_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1000, 100, small_opts());
    // A crash right after creating the next segment, mid header.
    let p = dir
        .path()
        .join("segments")
        .join(kaudit_store::segment::segment_name(1000));
    std::fs::write(&p, b"KAUDSEG1\x00\x01").unwrap();
    let store = Store::open(dir.path(), small_opts()).unwrap();
    assert_eq!(store.len(), 1000);
    assert!(!p.exists());
    assert!(damaged_files(dir.path()).is_empty());
}
