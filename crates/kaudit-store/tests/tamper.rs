//! The seven tamper cases, each detected by verify with its place named;
//! plus: an untouched store verifies, pruning is not tampering, encryption.

mod common;
use common::*;
use kaudit_store::note::Verifier25519;
use kaudit_store::record::iter_leaves;
use kaudit_store::segment::{self, Frame};
use kaudit_store::verify::{verify, Finding, VerifyOptions, VerifyReport};
use kaudit_store::{list_segments, Store, StoreOptions};
use std::path::{Path, PathBuf};

const N: u64 = 3000;

fn fresh() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), N, 100, small_opts());
    dir
}

fn run(dir: &Path) -> VerifyReport {
    verify(dir, &VerifyOptions::default()).unwrap()
}

fn first_problem(rep: &VerifyReport) -> &Finding {
    assert!(!rep.ok(), "verify should fail");
    &rep.problems[0]
}

/// (offset, header) of every bundle in a segment.
fn bundles(path: &Path) -> Vec<(u64, segment::BundleHeader)> {
    let buf = std::fs::read(path).unwrap();
    let mut off = segment::SEGMENT_HEADER as u64;
    let mut out = Vec::new();
    while (off as usize) < buf.len() {
        match segment::parse_frame_in(&buf, off, true).unwrap() {
            Frame::Bundle { header, .. } => {
                out.push((off, header));
                off += segment::BUNDLE_HEADER as u64 + u64::from(header.stored_len);
            }
            Frame::Commit { .. } => off += segment::COMMIT_FRAME as u64,
        }
    }
    out
}

/// Rewrites one bundle's records the way an attacker who knows the format
/// would: valid compression, valid checksum.
fn rewrite_bundle(path: &Path, which: usize, edit: impl FnOnce(&mut Vec<Vec<u8>>)) {
    let buf = std::fs::read(path).unwrap();
    let (off, h) = bundles(path)[which];
    let start = off as usize + segment::BUNDLE_HEADER;
    let raw = segment::open_payload(&h, &buf[start..start + h.stored_len as usize], None).unwrap();
    let mut leaves: Vec<Vec<u8>> = iter_leaves(&raw)
        .map(|l| l.unwrap().data.to_vec())
        .collect();
    edit(&mut leaves);
    let mut new_raw = Vec::new();
    for l in &leaves {
        new_raw.extend_from_slice(&(l.len() as u32).to_le_bytes());
        new_raw.extend_from_slice(l);
    }
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    let frame = segment::encode_bundle(
        h.first_seq,
        leaves.len() as u32,
        &new_raw,
        h.min_time,
        h.max_time,
        &mut c,
        None,
    )
    .unwrap();
    let mut out = buf[..off as usize].to_vec();
    out.extend_from_slice(&frame);
    out.extend_from_slice(&buf[start + h.stored_len as usize..]);
    std::fs::write(path, out).unwrap();
}

fn seg(dir: &Path, i: usize) -> PathBuf {
    list_segments(dir).unwrap()[i].1.clone()
}

fn assert_names(f: &Finding, seq: u64, path: &Path, offset: Option<u64>) {
    assert_eq!(f.seq, Some(seq), "{f}");
    assert_eq!(f.segment.as_deref(), Some(path), "{f}");
    if let Some(o) = offset {
        assert_eq!(f.offset, Some(o), "{f}");
    }
}

#[test]
fn untouched_store_verifies() {
    let dir = fresh();
    let rep = run(dir.path());
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!(rep.records, N);
    assert!(
        rep.checkpoints_checked > 10,
        "checked {}",
        rep.checkpoints_checked
    );
    let store = Store::open(dir.path(), small_opts()).unwrap();
    assert_eq!(rep.root, Some(store.root_at(N).unwrap()));
    assert!(list_segments(dir.path()).unwrap().len() > 3);
}

#[test]
fn flipped_byte_is_found() {
    let dir = fresh();
    let p = seg(dir.path(), 2);
    let (off, h) = bundles(&p)[1];
    let mut buf = std::fs::read(&p).unwrap();
    buf[off as usize + segment::BUNDLE_HEADER + 10] ^= 0x20;
    std::fs::write(&p, buf).unwrap();
    let rep = run(dir.path());
    let f = first_problem(&rep);
    assert_names(f, h.first_seq, &p, Some(off));
    assert!(f.what.contains("checksum"), "{f}");
}

#[test]
fn deleted_record_is_found() {
    let dir = fresh();
    let p = seg(dir.path(), 1);
    let (off, h) = bundles(&p)[0];
    rewrite_bundle(&p, 0, |l| {
        l.remove(3);
    });
    let f = first_problem(&run(dir.path())).clone();
    assert_names(&f, h.first_seq + 3, &p, Some(off));
    assert!(f.what.contains("deleted"), "{f}");
}

#[test]
fn swapped_records_are_found() {
    let dir = fresh();
    let p = seg(dir.path(), 1);
    let (off, h) = bundles(&p)[1];
    rewrite_bundle(&p, 1, |l| l.swap(2, 5));
    let f = first_problem(&run(dir.path())).clone();
    assert_names(&f, h.first_seq + 2, &p, Some(off));
    assert!(f.what.contains("reordered"), "{f}");
}

#[test]
fn duplicated_record_is_found() {
    let dir = fresh();
    let p = seg(dir.path(), 3);
    let (off, h) = bundles(&p)[0];
    rewrite_bundle(&p, 0, |l| {
        let c = l[4].clone();
        l.insert(5, c);
    });
    let f = first_problem(&run(dir.path())).clone();
    assert_names(&f, h.first_seq + 5, &p, Some(off));
    assert!(f.what.contains("duplicated"), "{f}");
}

#[test]
fn truncated_segment_is_found() {
    let dir = fresh();
    let p = seg(dir.path(), 1);
    let len = std::fs::metadata(&p).unwrap().len();
    let first = list_segments(dir.path()).unwrap()[1].0;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let f = first_problem(&run(dir.path())).clone();
    assert_eq!(f.segment.as_deref(), Some(p.as_path()), "{f}");
    assert!(f.seq.unwrap() >= first, "{f}");
    assert!(f.what.contains("truncated"), "{f}");
}

#[test]
fn truncated_last_segment_is_found_through_checkpoints() {
    let dir = fresh();
    let segs = list_segments(dir.path()).unwrap();
    let (first, p) = segs.last().unwrap().clone();
    // Cut exactly at a frame boundary: what remains parses cleanly.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(segment::SEGMENT_HEADER as u64)
        .unwrap();
    let rep = run(dir.path());
    let f = first_problem(&rep);
    assert_eq!(f.seq, Some(first), "{f}");
    assert!(f.what.contains("missing"), "{f}");
    // And a writer refuses to fork the log.
    assert!(Store::open(dir.path(), small_opts()).is_err());
}

#[test]
fn deleted_segment_is_found() {
    let dir = fresh();
    let segs = list_segments(dir.path()).unwrap();
    std::fs::remove_file(&segs[2].1).unwrap();
    let f = first_problem(&run(dir.path())).clone();
    assert_eq!(f.seq, Some(segs[2].0), "{f}");
    assert_eq!(f.segment.as_deref(), Some(segs[3].1.as_path()), "{f}");
    assert!(
        f.what.contains(&format!(
            "records [{}, {}) are missing",
            segs[2].0, segs[3].0
        )),
        "{f}"
    );
}

/// The attacker rewrites the log with one event altered, recomputing every
/// hash and signing fresh checkpoints with a key of their own.
fn forge(dir: &Path, copy_key: bool) {
    forge_with(dir, copy_key, false)
}

/// [`forge`], and with `own_key` the attacker first copies the store's own
/// signing key (from the data dir) and re-signs with it.
fn forge_with(dir: &Path, copy_key: bool, own_key: bool) {
    let forged = tempfile::tempdir().unwrap();
    if own_key {
        for f in ["checkpoint.key", "checkpoint.pub"] {
            std::fs::copy(dir.join(f), forged.path().join(f)).unwrap();
        }
    }
    {
        let store = Store::open(forged.path(), small_opts()).unwrap();
        let mut recs: Vec<_> = (0..N).map(record).collect();
        recs[1234].event = String::from_utf8(recs[1234].event.clone())
            .unwrap()
            .replace("\"verb\":\"", "\"verb\":\"x")
            .into_bytes();
        for chunk in recs.chunks(100) {
            store.append_batch(chunk.to_vec()).unwrap();
            store.maybe_checkpoint().unwrap();
        }
        store.close().unwrap();
    }
    for part in ["segments", "tree", "index"] {
        std::fs::remove_dir_all(dir.join(part)).unwrap();
        copy_dir(&forged.path().join(part), &dir.join(part));
    }
    let mut files = vec!["checkpoints.jsonl"];
    if copy_key {
        files.extend(["checkpoint.key", "checkpoint.pub"]);
    }
    for f in files {
        std::fs::copy(forged.path().join(f), dir.join(f)).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn rewritten_log_without_the_signing_key_is_found() {
    let dir = fresh();
    let key = kaudit_store::load_verifier(dir.path(), &StoreOptions::default()).unwrap();
    let saved = Store::open(dir.path(), small_opts())
        .unwrap()
        .latest_checkpoint()
        .unwrap();

    // a) the store's own key left in place: forged checkpoints do not verify.
    forge(dir.path(), false);
    let rep = run(dir.path());
    let f = first_problem(&rep);
    assert!(f.what.contains("signature"), "{f}");

    // b) the attacker also swapped the key files: the key published earlier
    //    and a checkpoint saved earlier both expose it.
    forge(dir.path(), true);
    assert!(
        run(dir.path()).ok(),
        "self-consistent forgery passes without outside knowledge"
    );
    let rep = verify(
        dir.path(),
        &VerifyOptions {
            key: Some(Verifier25519::from_text(&key.text()).unwrap()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(first_problem(&rep).what.contains("key was replaced"));
    let rep = verify(
        dir.path(),
        &VerifyOptions {
            key: Some(key.clone()),
            external: vec![("saved.note".into(), saved.note.clone())],
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        rep.problems.iter().any(|p| p.what.contains("saved.note")),
        "{:?}",
        rep.problems
    );
}

#[test]
fn saved_checkpoint_proves_extension_and_catches_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1000, 100, small_opts());
    let key = kaudit_store::load_verifier(dir.path(), &StoreOptions::default()).unwrap();
    let saved = Store::open(dir.path(), small_opts())
        .unwrap()
        .latest_checkpoint()
        .unwrap();
    {
        let store = Store::open(dir.path(), small_opts()).unwrap();
        store
            .append_batch((1000..1500).map(record).collect())
            .unwrap();
        store.close().unwrap();
    }
    let opts = VerifyOptions {
        key: Some(key),
        external: vec![("saved".into(), saved.note)],
        ..Default::default()
    };
    let rep = verify(dir.path(), &opts).unwrap();
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!(rep.records, 1500);
    // Alter one of the first 1000 records (valid checksum): the saved checkpoint fails.
    let p = seg(dir.path(), 0);
    rewrite_bundle(&p, 0, |l| {
        let n = l[7].len();
        l[7][n - 3] ^= 1;
    });
    let rep = verify(dir.path(), &opts).unwrap();
    let f = first_problem(&rep);
    assert!(f.what.contains("differs from the signed one"), "{f}");
    assert_eq!(f.seq, Some(0), "first altered span named: {f}");
    assert!(f.what.contains("[0, 100)"), "{f}");
}

#[test]
fn pruned_range_is_reported_as_pruned_not_tampering() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), N, 100, small_opts());
    let before = {
        let store = Store::open(dir.path(), small_opts()).unwrap();
        let ret = kaudit_store::retention::Retention {
            max_age_secs: None,
            max_size: Some(40 << 10),
        };
        let out = store
            .prune(&ret, &[], kaudit_event::MicroTime::now(), false)
            .unwrap();
        assert!(!out.removed.is_empty());
        assert!(out.before > 0 && out.before < N);
        // Proofs for what remains still work against the full tree.
        let leaves = all_leaf_data(&store);
        let root = store.root_at(N).unwrap();
        let m = N - 5;
        let p = store.inclusion_proof(m, N).unwrap();
        assert!(check_inclusion(
            &leaves[leaves.len() - 5],
            m as usize,
            N as usize,
            &p,
            &root
        ));
        store.close().unwrap();
        out.before
    };
    let rep = run(dir.path());
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!(rep.pruned_before, before);
    assert!(rep.notes.iter().any(|n| n.contains("pruned")));
    assert_eq!(rep.records, N - before);
    // The store reopens and keeps appending.
    {
        let store = Store::open(dir.path(), small_opts()).unwrap();
        store
            .append_batch((N..N + 300).map(record).collect())
            .unwrap();
        store.close().unwrap();
    }
    assert!(run(dir.path()).ok());
    // Deleting the signed prune record turns it into missing data.
    std::fs::remove_file(kaudit_store::paths::pruned(dir.path())).unwrap();
    let rep = run(dir.path());
    assert!(first_problem(&rep).what.contains("missing"));
}

#[test]
fn legal_hold_blocks_pruning() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), N, 100, small_opts());
    let store = Store::open(dir.path(), small_opts()).unwrap();
    let hold = kaudit_store::retention::Hold {
        id: 1,
        reason: "case 42".into(),
        since: None,
        until: None,
        created: String::new(),
    };
    let ret = kaudit_store::retention::Retention {
        max_age_secs: Some(0),
        max_size: None,
    };
    let out = store
        .prune(&ret, &[hold], kaudit_event::MicroTime::now(), false)
        .unwrap();
    assert!(out.removed.is_empty());
    assert!(out.stopped.unwrap().contains("case 42"));
    let out = store
        .prune(&ret, &[], kaudit_event::MicroTime::now(), true)
        .unwrap();
    assert!(!out.removed.is_empty(), "dry run lists old segments");
    assert_eq!(
        list_segments(dir.path()).unwrap().len(),
        out.removed.len() + 1,
        "dry run deletes nothing"
    );
}

#[test]
fn encrypted_store_verifies_only_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let keyf = dir.path().join("data.key");
    std::fs::write(&keyf, kaudit_store::crypt::Cipher::generate_hex().unwrap()).unwrap();
    let data = dir.path().join("store");
    let opts = StoreOptions {
        encryption_key: Some(keyf.clone()),
        ..small_opts()
    };
    fill(&data, 800, 100, opts.clone());
    // Event text is not visible on disk.
    let raw = std::fs::read(seg(&data, 0)).unwrap();
    assert!(memchr::memmem::find(&raw, b"pods").is_none());
    let cipher = kaudit_store::crypt::Cipher::load(&keyf).unwrap();
    let rep = verify(
        &data,
        &VerifyOptions {
            cipher: Some(cipher),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!(rep.records, 800);
    let err = verify(&data, &VerifyOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("encrypted"), "{err}");
    let other = dir.path().join("other.key");
    std::fs::write(&other, kaudit_store::crypt::Cipher::generate_hex().unwrap()).unwrap();
    let err = verify(
        &data,
        &VerifyOptions {
            cipher: Some(kaudit_store::crypt::Cipher::load(&other).unwrap()),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("wrong encryption key"), "{err}");
    let err = Store::open(
        &data,
        StoreOptions {
            encryption_key: Some(other),
            ..small_opts()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("wrong encryption key"), "{err}");
    let store = Store::open(&data, opts).unwrap();
    assert_eq!(all_leaf_data(&store).len(), 800);
}

#[test]
fn a_history_resigned_with_the_stores_own_key_fails_against_a_trusted_checkpoint() {
    let dir = fresh();
    let key = kaudit_store::load_verifier(dir.path(), &StoreOptions::default()).unwrap();
    // A witness kept checkpoints outside the data dir (as a sink with
    // `checkpoints: true` or `publish_checkpoint` would), next to other files.
    let witness = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_opts()).unwrap();
    let latest = store.latest_checkpoint().unwrap();
    drop(store);
    std::fs::write(witness.path().join("README"), "checkpoints of prod\n").unwrap();
    std::fs::write(
        witness
            .path()
            .join(format!("checkpoint-{}.txt", latest.size)),
        &latest.note,
    )
    .unwrap();
    let trusted = |key: Option<Verifier25519>| VerifyOptions {
        key,
        trusted_checkpoint_dir: Some(witness.path().to_path_buf()),
        ..Default::default()
    };
    let rep = verify(dir.path(), &trusted(Some(key.clone()))).unwrap();
    assert!(rep.ok(), "{:?}", rep.problems);
    assert!(rep.key_trusted);
    assert_eq!(rep.key.as_deref(), Some(key.text().as_str()));
    let used = rep
        .trusted_checkpoint
        .clone()
        .expect("trusted checkpoint used");
    assert!(
        used.contains(&format!("tree size {}", latest.size)),
        "{used}"
    );

    // One event altered, every hash recomputed, every checkpoint re-signed
    // with the key copied from the data dir.
    forge_with(dir.path(), true, true);
    let rep = run(dir.path());
    assert!(rep.ok(), "without trust config the forgery passes");
    assert!(!rep.key_trusted && rep.trusted_checkpoint.is_none());
    assert!(
        rep.notes.iter().any(|n| n.contains("store's own key")),
        "{:?}",
        rep.notes
    );
    // The trusted key alone cannot tell: it is the same key.
    assert!(verify(
        dir.path(),
        &VerifyOptions {
            key: Some(key.clone()),
            ..Default::default()
        }
    )
    .unwrap()
    .ok());
    // The trusted checkpoint does, with the trusted key or the store's own.
    for k in [Some(key.clone()), None] {
        let rep = verify(dir.path(), &trusted(k)).unwrap();
        assert!(
            rep.problems
                .iter()
                .any(|p| p.what.contains("trusted checkpoint") && p.what.contains("checkpoint-")),
            "{:?}",
            rep.problems
        );
    }

    // An attacker with a key of their own: the trusted key and the trusted
    // checkpoint folder both expose it, even without the trusted key.
    forge_with(dir.path(), true, false);
    assert!(run(dir.path()).ok());
    let rep = verify(dir.path(), &trusted(Some(key.clone()))).unwrap();
    assert!(
        rep.problems
            .iter()
            .any(|p| p.what.contains("key was replaced")),
        "{:?}",
        rep.problems
    );
    let rep = verify(dir.path(), &trusted(None)).unwrap();
    assert!(
        rep.problems
            .iter()
            .any(|p| p.what.contains("trusted checkpoint") && p.what.contains("key was replaced")),
        "{:?}",
        rep.problems
    );
}
