//! Any bytes as an encoded index row (what import's parsing threads hand
//! the indexer): no panic; a row is taken whole or not at all, and only at
//! the index's next sequence number.
#![no_main]

use kaudit_index::{Index, IndexMode};
use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};

fn index() -> &'static Mutex<(tempfile::TempDir, Index)> {
    static IX: OnceLock<Mutex<(tempfile::TempDir, Index)>> = OnceLock::new();
    IX.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let ix = Index::open(dir.path(), IndexMode::Write).expect("index");
        Mutex::new((dir, ix))
    })
}

fuzz_target!(|data: &[u8]| {
    let mut guard = index().lock().expect("lock");
    let ix = &mut guard.1;
    let (rows, next) = (ix.rows(), ix.next_seq());
    assert!(!ix.push_row(next + 1, data), "a row past the next seq was taken");
    assert_eq!(ix.rows(), rows);
    let taken = ix.push_row(next, data);
    assert_eq!(ix.rows(), rows + usize::from(taken));
    assert_eq!(ix.next_seq(), next + u64::from(taken));
});
