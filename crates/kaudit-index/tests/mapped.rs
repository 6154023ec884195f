//! The committed index is memory-mapped from its column files: an index
//! reopened from them (and one grown by appends, committed and reopened
//! again) must hold exactly what the in-memory index built in one go held,
//! and a truncated column file must be detected and rebuilt, never read
//! past its end.

mod common;

use kaudit_event::Event;
use kaudit_index::index::{Needs, DICT_COLUMNS, HASH_FIELDS};
use kaudit_index::{EmbeddedBackend, Index, IndexMode, SearchRequest};
use kaudit_query::Query;
use kaudit_store::{Store, StoreOptions};
use std::sync::Arc;

/// Every row of every column as plain values: ids resolved to their value
/// lists (ids may differ between builds only if interning order did, which
/// it must not), hashes, times, latencies.
#[derive(Debug, PartialEq)]
struct Snapshot {
    cols: Vec<Vec<Option<Vec<String>>>>,
    hashes: Vec<Vec<u32>>,
    times: Vec<i64>,
    lat: Vec<u32>,
}

fn all_needs() -> Needs {
    Needs {
        dict: (0..DICT_COLUMNS).collect(),
        hash: (0..HASH_FIELDS.len()).collect(),
        latency: true,
    }
}

fn snapshot(ix: &Index, rows: usize) -> Snapshot {
    assert!(ix.rows() >= rows, "{} rows, want {rows}", ix.rows());
    let cols = (0..DICT_COLUMNS)
        .map(|slot| {
            let (col, dict) = ix.column(slot).expect("column loaded");
            assert_eq!(col.len(), ix.rows());
            (0..rows)
                .map(|r| {
                    dict.values(col.get(r))
                        .map(|v| v.iter().map(|s| s.to_string()).collect())
                })
                .collect()
        })
        .collect();
    Snapshot {
        cols,
        hashes: (0..HASH_FIELDS.len())
            .map(|s| ix.hash_column(s).expect("hashes")[..rows].to_vec())
            .collect(),
        times: ix.times()[..rows].to_vec(),
        lat: ix.latencies().expect("latencies")[..rows].to_vec(),
    }
}

fn hits(ix: &Index, store: &Store, q: &str) -> Vec<u64> {
    let q = Query::parse(q).expect("query");
    let mut v: Vec<u64> = kaudit_index::search::search(ix, store, &SearchRequest::new(q, 100_000))
        .expect("search")
        .hits
        .iter()
        .map(|h| h.seq)
        .collect();
    v.sort_unstable();
    v
}

fn brute(store: &Store, q: &str) -> Vec<u64> {
    let q = Query::parse(q).expect("query");
    let mut v = Vec::new();
    store
        .read(0..store.len(), &mut |s, l| {
            if q.matches(&Event::from_json(l.event).expect("event"), l.cluster) {
                v.push(s);
            }
            true
        })
        .expect("read");
    v
}

const QUERIES: [&str; 4] = [
    "verb=get",
    "verb=delete and namespace=kube-system",
    "user=system:admin or code>=400",
    "resource=secrets",
];

#[test]
fn a_mapped_index_answers_as_the_in_memory_one_through_appends_commits_and_reopens() {
    const N: u64 = 6000;
    let fx = common::store_with(N, 21);
    let dir = fx.dir.path();
    let n = N as usize;
    // The reference: the whole index built in memory, never committed.
    let want = {
        let mut ix = Index::open(dir, IndexMode::Write).expect("index");
        ix.catch_up(&fx.store, None, u64::MAX).expect("catch up");
        assert_eq!(ix.rows(), n);
        let m = ix.memory();
        assert_eq!(m.mapped_bytes, 0, "nothing committed, nothing mapped");
        snapshot(&ix, n)
    };
    let answers: Vec<Vec<u64>> = QUERIES.iter().map(|q| brute(&fx.store, q)).collect();
    assert!(
        answers.iter().all(|a| !a.is_empty()),
        "queries match something"
    );
    // Committed in steps (200 rows first, so id columns widen after a
    // commit and their files get rewritten), reopened after each.
    let mut done = 0usize;
    for step in [200u64, 2800, 3000] {
        let mut ix = Index::open(dir, IndexMode::Write).expect("reopen writer");
        assert_eq!(ix.rows(), done);
        if done > 0 {
            // Reopened: the committed rows' whole pages are mapped, not
            // copied (the time column has some from 512 rows on).
            assert_eq!(
                ix.memory().mapped_bytes > 0,
                done >= 512,
                "{:?}",
                ix.memory()
            );
            assert_eq!(snapshot(&ix, done), cut(&want, done));
        }
        ix.catch_up(&fx.store, None, step).expect("append");
        done += step as usize;
        // The appended tail (in anonymous memory) behind the mapped part.
        assert_eq!(snapshot(&ix, done), cut(&want, done));
        let before = ix.memory();
        ix.commit().expect("commit");
        // After the commit the tail's whole pages are mapped too.
        let after = ix.memory();
        if done >= 512 {
            assert!(
                after.mapped_bytes > before.mapped_bytes,
                "{before:?} -> {after:?}"
            );
        }
        assert_eq!(snapshot(&ix, done), cut(&want, done));
    }
    assert_eq!(done, n);
    let mut r = Index::open(dir, IndexMode::Read).expect("reader");
    r.load(&all_needs()).expect("load");
    assert_eq!(snapshot(&r, n), want);
    // Everything is mapped but each column's last partial page.
    let m = r.memory();
    assert!(m.anon_bytes <= (DICT_COLUMNS + 3) * 4096, "{m:?}");
    for (q, a) in QUERIES.iter().zip(&answers) {
        assert_eq!(&hits(&r, &fx.store, q), a, "{q}");
    }
}

fn cut(s: &Snapshot, rows: usize) -> Snapshot {
    Snapshot {
        cols: s.cols.iter().map(|c| c[..rows].to_vec()).collect(),
        hashes: s.hashes.iter().map(|h| h[..rows].to_vec()).collect(),
        times: s.times[..rows].to_vec(),
        lat: s.lat[..rows].to_vec(),
    }
}

#[test]
fn a_truncated_column_file_is_detected_and_rebuilt() {
    const N: u64 = 5000;
    let fx = common::store_with(N, 5);
    let dir = fx.dir.path();
    let want = {
        let mut ix = Index::open(dir, IndexMode::Write).expect("index");
        ix.catch_up(&fx.store, None, u64::MAX).expect("catch up");
        ix.commit().expect("commit");
        snapshot(&ix, N as usize)
    };
    let answers: Vec<Vec<u64>> = QUERIES.iter().map(|q| brute(&fx.store, q)).collect();
    let hash_file = format!("h.{}.u32", kaudit_query::Field::AuditId.name());
    for file in ["time.i64", "verb.col", "lat.u32", hash_file.as_str()] {
        let path = dir.join("search").join(file);
        let len = std::fs::metadata(&path).expect(file).len();
        assert!(len > 4096, "{file}: {len} bytes, want more than a page");
        // Cut into the middle of the mapped pages.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open")
            .set_len(len / 2)
            .expect("truncate");
        // A reader refuses it, naming the file, instead of mapping past
        // its end.
        let err = Index::open(dir, IndexMode::Read)
            .and_then(|mut r| r.load(&all_needs()).map(|_| r))
            .expect_err(file);
        let msg = err.to_string();
        assert!(msg.contains(file) && msg.contains("committed"), "{msg}");
        // The backend drops and rebuilds it, and answers as before. The
        // rebuilt files are new files renamed into place, never the old
        // ones rewritten, which a reader elsewhere may still have mapped.
        use std::os::unix::fs::MetadataExt;
        let old_ino = std::fs::metadata(&path).expect(file).ino();
        let store = Store::open(
            dir,
            StoreOptions {
                read_only: true,
                ..StoreOptions::default()
            },
        )
        .expect("store");
        let b = EmbeddedBackend::open(dir, Arc::new(store)).expect("backend");
        b.catch_up().expect("rebuild");
        drop(b);
        assert_ne!(
            std::fs::metadata(&path).expect(file).ino(),
            old_ino,
            "{file}"
        );
        let mut r = Index::open(dir, IndexMode::Read).expect("reader");
        r.load(&all_needs()).expect("load rebuilt");
        assert_eq!(snapshot(&r, N as usize), want, "{file}");
        for (q, a) in QUERIES.iter().zip(&answers) {
            assert_eq!(&hits(&r, &fx.store, q), a, "{file}: {q}");
        }
    }
}
