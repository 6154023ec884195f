//! Trained zstd dictionaries: bundles written with one read and verify,
//! the dictionary is sealed in an encrypted store, a replaced, damaged or
//! missing dictionary fails verify naming the file, stores written before
//! dictionaries (and before framing) still read and verify, and a crash
//! between writing a dictionary and its first use recovers.

mod common;

use common::{event, record, small_opts};
use kaudit_store::crypt::Cipher;
use kaudit_store::dict::{self, DictId};
use kaudit_store::segment::{self, Frame};
use kaudit_store::verify::{verify, VerifyOptions, VerifyReport};
use kaudit_store::{Store, StoreOptions};
use std::path::{Path, PathBuf};

/// Small frames, and a dictionary trained after ~64 KiB of records (~90).
fn dict_opts() -> StoreOptions {
    StoreOptions {
        bundle_frame_bytes: 2048,
        dictionary_sample_bytes: 64 << 10,
        ..small_opts()
    }
}

fn append(store: &Store, range: std::ops::Range<u64>) {
    let mut i = range.start;
    while i < range.end {
        let end = (i + 40).min(range.end);
        store.append_batch((i..end).map(record).collect()).unwrap();
        i = end;
    }
}

/// Fills `0..n` and waits for the dictionary, then `n..2n` (which use it).
fn fill_with_dict(dir: &Path, n: u64, opts: StoreOptions) -> DictId {
    let store = Store::open(dir, opts).unwrap();
    append(&store, 0..n);
    let id = store
        .settle_dictionary()
        .unwrap()
        .expect("a dictionary was trained");
    append(&store, n..2 * n);
    store.close().unwrap();
    id
}

/// Every bundle payload's first four bytes and, for `KBF2`, the id it names.
fn payload_kinds(dir: &Path) -> Vec<(Vec<u8>, Option<DictId>)> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let mut out = Vec::new();
    for s in segs {
        let buf = std::fs::read(&s).unwrap();
        let mut off = segment::SEGMENT_HEADER as u64;
        while let Ok(f) = segment::parse_frame_in(&buf, off, true) {
            match f {
                Frame::Bundle { offset, header } => {
                    let p = offset as usize + segment::BUNDLE_HEADER;
                    let payload = &buf[p..p + header.stored_len as usize];
                    let id = payload
                        .starts_with(b"KBF2")
                        .then(|| payload[8..24].try_into().unwrap());
                    out.push((payload[..4].to_vec(), id));
                    off = offset + (segment::BUNDLE_HEADER as u64) + u64::from(header.stored_len);
                }
                Frame::Commit { offset, .. } => off = offset + segment::COMMIT_FRAME as u64,
            }
        }
    }
    out
}

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

fn run_verify(dir: &Path, cipher: Option<Cipher>) -> VerifyReport {
    verify(
        dir,
        &VerifyOptions {
            cipher,
            ..Default::default()
        },
    )
    .unwrap()
}

fn dict_path(dir: &Path, id: &DictId) -> PathBuf {
    dir.join("dict").join(dict::file_name(id))
}

#[test]
fn bundles_written_with_a_dictionary_read_back_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let id = fill_with_dict(dir.path(), 300, dict_opts());
    assert!(dict_path(dir.path(), &id).exists());
    let kinds = payload_kinds(dir.path());
    let with: Vec<_> = kinds.iter().filter(|k| k.1.is_some()).collect();
    assert!(
        with.len() >= 6,
        "the second 300 records (6 bundles) name the dictionary: {kinds:?}"
    );
    assert!(with.iter().all(|k| k.1 == Some(id)));
    assert!(kinds[0].0 == b"KBF1", "records before training have none");

    for read_only in [true, false] {
        let store = Store::open(
            dir.path(),
            StoreOptions {
                read_only,
                ..dict_opts()
            },
        )
        .unwrap();
        let all = read_all(&store);
        assert_eq!(all.len(), 600);
        assert!(all.iter().all(|(s, e)| e == &event(*s)));
        let mut got = Vec::new();
        store
            .read_seqs(&[3, 299, 300, 451, 599], &mut |s, l| {
                got.push((s, l.event.to_vec()));
                true
            })
            .unwrap();
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|(s, e)| e == &event(*s)));
        if !read_only {
            // A reopened writer keeps the dictionary: no second one.
            append(&store, 600..700);
        }
        store.close().unwrap();
    }
    let files: Vec<_> = std::fs::read_dir(dir.path().join("dict"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1, "one dictionary, reused after reopening");
    assert_eq!(payload_kinds(dir.path()).last().unwrap().1, Some(id));
    let rep = run_verify(dir.path(), None);
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!(rep.records, 700);
}

#[test]
fn a_dictionary_makes_small_frames_smaller() {
    let plain = tempfile::tempdir().unwrap();
    let with = tempfile::tempdir().unwrap();
    let none = StoreOptions {
        dictionary_sample_bytes: 0,
        ..dict_opts()
    };
    let s = Store::open(plain.path(), none).unwrap();
    append(&s, 0..600);
    s.close().unwrap();
    let s = Store::open(with.path(), dict_opts()).unwrap();
    append(&s, 0..100);
    assert!(s.settle_dictionary().unwrap().is_some());
    append(&s, 100..600);
    s.close().unwrap();
    let seg_bytes = |d: &Path| -> u64 {
        std::fs::read_dir(d.join("segments"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let (a, b) = (seg_bytes(plain.path()), seg_bytes(with.path()));
    assert!(
        b * 10 < a * 9,
        "segments with a dictionary ({b} B) are not 10% smaller than without ({a} B)"
    );
}

#[test]
fn an_encrypted_store_keeps_no_plaintext_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let keyf = dir.path().join("key");
    std::fs::write(&keyf, Cipher::generate_hex().unwrap()).unwrap();
    let data = dir.path().join("data");
    let opts = StoreOptions {
        encryption_key: Some(keyf.clone()),
        ..dict_opts()
    };
    let id = fill_with_dict(&data, 300, opts.clone());
    let cipher = Cipher::load(&keyf).unwrap();
    let file = std::fs::read(dict_path(&data, &id)).unwrap();
    let decoded = dict::decode_file(&file, Some(&cipher)).unwrap();
    assert_eq!(decoded.key_id, Some(cipher.id()));
    assert!(decoded.dict.len() > 1024, "a real dictionary");
    // Neither the dictionary nor any piece of an event is on disk in clear.
    let probe = &decoded.dict[decoded.dict.len() - 64..];
    for needle in [probe, b"kube-controller-manager".as_slice()] {
        for e in walk(&data) {
            let bytes = std::fs::read(&e).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds plaintext",
                e.display()
            );
        }
    }
    assert!(matches!(
        dict::decode_file(&file, None),
        Err(dict::DictError::Crypt(_))
    ));
    let store = Store::open(&data, opts).unwrap();
    assert_eq!(read_all(&store).len(), 600);
    store.close().unwrap();
    let rep = run_verify(&data, Some(cipher));
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!(rep.records, 600);
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Verify's problems as text, asserting there is at least one.
fn problems(dir: &Path) -> String {
    let rep = run_verify(dir, None);
    assert!(!rep.ok(), "verify passed a changed dictionary");
    rep.problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_replaced_damaged_or_missing_dictionary_fails_verify_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let id = fill_with_dict(dir.path(), 300, dict_opts());
    let path = dict_path(dir.path(), &id);
    let good = std::fs::read(&path).unwrap();
    let name = dict::file_name(&id);

    // Another valid dictionary under this one's name.
    let other = dict::train(&{
        let mut raw = Vec::new();
        for i in 0..400u64 {
            let e = format!("{{\"other\":{i},\"k\":\"value-{}\"}}", i % 9).repeat(8);
            raw.extend_from_slice(&(e.len() as u32).to_le_bytes());
            raw.extend_from_slice(e.as_bytes());
        }
        raw
    })
    .unwrap();
    std::fs::write(&path, dict::encode_file(&other, 1, None).unwrap()).unwrap();
    let p = problems(dir.path());
    assert!(
        p.contains(&name) && p.contains("renamed or replaced"),
        "{p}"
    );
    // Opening (which replays the tail) or reading bundles that need it
    // fails with the file's problem.
    let ro = StoreOptions {
        read_only: true,
        ..dict_opts()
    };
    let err = match Store::open(dir.path(), ro) {
        Err(e) => e.to_string(),
        Ok(store) => store
            .read(0..600, &mut |_, _| true)
            .unwrap_err()
            .to_string(),
    };
    assert!(err.contains(&name), "{err}");

    // One flipped bit in the body.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    let p = problems(dir.path());
    assert!(p.contains(&name) && p.contains("checksum"), "{p}");

    // Gone.
    std::fs::remove_file(&path).unwrap();
    let p = problems(dir.path());
    assert!(p.contains(&name) && p.contains("missing"), "{p}");

    std::fs::write(&path, &good).unwrap();
    let rep = run_verify(dir.path(), None);
    assert!(rep.ok(), "{:?}", rep.problems);
}

#[test]
fn stores_written_before_dictionaries_and_framing_still_read_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    // The format before framing: one zstd frame per bundle.
    let s = Store::open(
        dir.path(),
        StoreOptions {
            bundle_frame_bytes: 0,
            dictionary_sample_bytes: 0,
            ..small_opts()
        },
    )
    .unwrap();
    append(&s, 0..200);
    s.close().unwrap();
    // Framed, no dictionary.
    let s = Store::open(
        dir.path(),
        StoreOptions {
            dictionary_sample_bytes: 0,
            ..dict_opts()
        },
    )
    .unwrap();
    append(&s, 200..400);
    s.close().unwrap();
    // Then a dictionary.
    let s = Store::open(dir.path(), dict_opts()).unwrap();
    append(&s, 400..600);
    assert!(s.settle_dictionary().unwrap().is_some());
    append(&s, 600..800);
    s.close().unwrap();
    let kinds = payload_kinds(dir.path());
    let has = |m: &[u8]| kinds.iter().any(|k| k.0 == m);
    assert!(
        has(&[0x28, 0xb5, 0x2f, 0xfd]) && has(b"KBF1") && has(b"KBF2"),
        "all three formats present: {kinds:?}"
    );
    let s = Store::open(dir.path(), dict_opts()).unwrap();
    let all = read_all(&s);
    assert_eq!(all.len(), 800);
    assert!(all.iter().all(|(i, e)| e == &event(*i)));
    s.close().unwrap();
    let rep = run_verify(dir.path(), None);
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!(rep.records, 800);
}

#[test]
fn a_crash_between_writing_a_dictionary_and_its_first_use_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let none = StoreOptions {
        dictionary_sample_bytes: 0,
        ..dict_opts()
    };
    let s = Store::open(dir.path(), none).unwrap();
    append(&s, 0..300);
    s.close().unwrap();
    // A trainer that wrote its file and died before any bundle used it,
    // and one that died mid-write (a temp file left behind).
    let mut raw = Vec::new();
    for i in 0..300 {
        let e = event(i);
        raw.extend_from_slice(&(e.len() as u32).to_le_bytes());
        raw.extend_from_slice(&e);
    }
    let d = dict::train(&raw).unwrap();
    let (id, path) = dict::write_file(dir.path(), &d, 300, None).unwrap();
    let torn = dir.path().join("dict").join("0123.tmp");
    std::fs::write(&torn, &std::fs::read(&path).unwrap()[..100]).unwrap();
    assert!(
        run_verify(dir.path(), None).ok(),
        "an unused dictionary is fine"
    );

    let s = Store::open(dir.path(), dict_opts()).unwrap();
    assert!(!torn.exists(), "the torn temp file was cleared");
    append(&s, 300..400);
    assert_eq!(s.settle_dictionary().unwrap(), Some(id));
    assert_eq!(read_all(&s).len(), 400);
    s.close().unwrap();
    assert_eq!(payload_kinds(dir.path()).last().unwrap().1, Some(id));

    // A dictionary file cut short (a disk that lied about fsync) that no
    // bundle names: the store opens and writes on; verify reports the file.
    let (id2, path2) = dict::write_file(dir.path(), &d[..d.len() / 2], 500, None).unwrap();
    let bytes = std::fs::read(&path2).unwrap();
    std::fs::write(&path2, &bytes[..bytes.len() - 10]).unwrap();
    let s = Store::open(dir.path(), dict_opts()).unwrap();
    append(&s, 400..450);
    assert_eq!(read_all(&s).len(), 450);
    s.close().unwrap();
    assert_eq!(payload_kinds(dir.path()).last().unwrap().1, Some(id));
    let p = problems(dir.path());
    assert!(
        p.contains(&dict::file_name(&id2)) && p.contains("cut short"),
        "{p}"
    );
}
