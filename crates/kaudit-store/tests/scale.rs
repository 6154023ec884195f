//! The store at scale (#21 goal 4): the writer's duplicate filter is bounded
//! in RAM yet exact, read-only opens build none of it, and a streamed import
//! commits in chunks that survive a kill and equal one transaction.

mod common;
use common::*;
use kaudit_event::reader::{EventReader, ReaderOptions};
use kaudit_store::import::{import_input, ImportError, ImportOptions, InputOutcome};
use kaudit_store::verify::{verify, VerifyOptions};
use kaudit_store::{Store, StoreOptions};
use proptest::prelude::*;
use std::io::{Cursor, Read};
use std::path::Path;

/// Options whose recent-key set holds only `recent` keys, so a few thousand
/// records cross the RAM/disk boundary many times.
fn tiny(recent: usize) -> StoreOptions {
    StoreOptions {
        dedupe_recent_keys: recent,
        ..small_opts()
    }
}

/// `n` event lines with every 7th one repeating an earlier event.
fn lines(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let ev = if i % 7 == 6 { event(i / 3) } else { event(i) };
        out.extend_from_slice(&ev);
        out.push(b'\n');
    }
    out
}

fn reader(bytes: Vec<u8>) -> EventReader {
    EventReader::new(Cursor::new(bytes), "input.jsonl", ReaderOptions::default()).expect("reader")
}

/// Imports `bytes` as one input (the error is the library's own type).
#[allow(clippy::result_large_err)]
fn import(store: &Store, bytes: Vec<u8>, chunk: Option<u64>) -> Result<InputOutcome, ImportError> {
    let opts = ImportOptions {
        cluster: "c".into(),
        chunk_records: chunk,
        ..ImportOptions::default()
    };
    import_input(store, reader(bytes), &opts, None, &mut |_, _| {})
}

/// (cluster, event) of every stored record, in order.
fn contents(store: &Store) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    store
        .read(0..u64::MAX, &mut |_, leaf| {
            out.push((leaf.cluster.to_string(), leaf.event.to_vec()));
            true
        })
        .expect("read");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    /// Any interleaving of new and repeated events, appended in batches and
    /// across reopens, while old keys move out of RAM into sorted runs:
    /// exactly what a set keeps is stored, in order.
    #[test]
    fn dedupe_is_exact_across_the_ram_disk_boundary(
        batches in proptest::collection::vec(proptest::collection::vec(0u64..600, 1..80), 1..25),
        reopen_every in 2usize..6,
        recent in 1usize..64,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), tiny(recent)).unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut want = Vec::new();
        for (b, batch) in batches.iter().enumerate() {
            if b % reopen_every == reopen_every - 1 {
                drop(store);
                store = Store::open(dir.path(), tiny(recent)).unwrap();
            }
            let mut new = 0;
            for &i in batch {
                if seen.insert(i) {
                    want.push(event(i));
                    new += 1;
                }
            }
            let a = store.append_batch(batch.iter().map(|&i| record(i)).collect()).unwrap();
            prop_assert_eq!(a.seqs.end - a.seqs.start, new);
            prop_assert_eq!(a.duplicates, batch.len() as u64 - new);
        }
        let got: Vec<Vec<u8>> = contents(&store).into_iter().map(|(_, e)| e).collect();
        prop_assert_eq!(got, want);
        let st = store.dedupe_stats().unwrap();
        prop_assert_eq!(st.recent_keys + st.run_keys, seen.len() as u64);
    }
}

#[test]
fn old_keys_leave_ram_and_a_reopen_loads_filters_not_keys() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 3000, 100, tiny(500));
    let store = Store::open(dir.path(), tiny(500)).unwrap();
    let st = store.dedupe_stats().unwrap();
    assert_eq!(st.recent_keys + st.run_keys, 3000, "{st:?}");
    assert!(st.recent_keys <= 500, "the RAM set is bounded: {st:?}");
    assert!(st.runs >= 1 && st.runs <= 6, "{st:?}");
    // ~1.3 B of filter per key instead of a 16-byte key (plus table) in RAM.
    assert!(st.filter_bytes < st.run_keys * 2, "{st:?}");
    let a = store.append_batch((0..3100).map(record).collect()).unwrap();
    assert_eq!(a.duplicates, 3000);
    assert_eq!(a.seqs, 3000..3100);
    drop(store);
    assert!(verify(dir.path(), &VerifyOptions::default()).unwrap().ok());
}

#[test]
fn read_only_open_builds_no_dedupe_state() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 2000, 100, tiny(300));
    let ro = Store::open(
        dir.path(),
        StoreOptions {
            read_only: true,
            ..tiny(300)
        },
    )
    .unwrap();
    assert_eq!(ro.len(), 2000);
    assert_eq!(
        ro.dedupe_stats().unwrap(),
        kaudit_store::DedupeStats::default()
    );
    drop(ro);
    // The writable open does build it (the test above would pass on a
    // store that never builds anything otherwise).
    let rw = Store::open(dir.path(), tiny(300)).unwrap();
    let st = rw.dedupe_stats().unwrap();
    assert_eq!(st.recent_keys + st.run_keys, 2000, "{st:?}");
}

#[test]
fn import_in_chunks_equals_import_in_one_transaction() {
    let input = lines(4000);
    let one = tempfile::tempdir().unwrap();
    let chunked = tempfile::tempdir().unwrap();
    let a = Store::open(one.path(), small_opts()).unwrap();
    let oa = import(&a, input.clone(), None).unwrap();
    let b = Store::open(chunked.path(), tiny(200)).unwrap();
    let ob = import(&b, input.clone(), Some(333)).unwrap();
    assert_eq!(oa, ob);
    assert!(oa.duplicates > 300, "{oa:?}");
    assert_eq!(contents(&a), contents(&b));
    // Chunks are commits of their own: the checkpoints saw several sizes.
    assert!(b.checkpoints().len() >= 3, "{}", b.checkpoints().len());
    // A second import of the same input is all duplicates, both ways.
    let again = import(&b, input, Some(333)).unwrap();
    assert_eq!(again.seqs.end - again.seqs.start, 0);
    assert_eq!(again.duplicates, oa.events);
    drop((a, b));
    assert!(verify(chunked.path(), &VerifyOptions::default())
        .unwrap()
        .ok());
}

#[test]
fn a_bad_line_after_committed_chunks_keeps_them_and_says_so() {
    let mut input = lines(2000);
    input.extend_from_slice(b"{\"kind\":\"Event\", not json\n");
    input.extend_from_slice(&lines(10));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_opts()).unwrap();
    let err = import(&store, input, Some(500)).expect_err("a bad line");
    let ImportError::Partial { kept, cause } = &err else {
        panic!("want a partial import, got {err}");
    };
    assert!(cause.contains("input.jsonl:2001"), "{cause}");
    assert_eq!(kept.start, 0);
    assert_eq!(store.len(), kept.end, "what the error says is what is kept");
    assert!(kept.end >= 500, "{kept:?}");
    assert!(err.to_string().contains("re-running"), "{err}");
}

/// A reader that serves `bytes` and then blocks (an import stream that
/// stalls), so the process can be killed mid-chunk.
struct Stalls(Cursor<Vec<u8>>);

impl Read for Stalls {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        if n == 0 {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
        Ok(n)
    }
}

const KILL_ENV: &str = "KAUDIT_SCALE_TEST_CHILD";

/// Child side of the kill test: imports 5200 lines in chunks of 1000 from a
/// stream that then stalls (no end of input) inside its last chunk.
#[test]
fn child_import_that_stalls() {
    let Ok(dir) = std::env::var(KILL_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&dir), tiny(700)).unwrap();
    let input = lines(5200);
    let reader = EventReader::new(
        Stalls(Cursor::new(input)),
        "stdin",
        ReaderOptions::default(),
    )
    .unwrap();
    let opts = ImportOptions {
        cluster: "c".into(),
        chunk_records: Some(1000),
        ..ImportOptions::default()
    };
    let _ = import_input(&store, reader, &opts, None, &mut |_, _| {});
    unreachable!("the input stalls until the parent kills this process");
}

#[test]
fn a_killed_chunked_import_keeps_its_chunks_and_a_rerun_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_import_that_stalls", "--nocapture"])
        .env(KILL_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Chunks end on the import's read batches once 1000 records are staged;
    // the records the first `k` lines hold, for any `k`:
    let distinct = |k: usize| {
        let text = lines(5200);
        let mut set = std::collections::HashSet::new();
        for l in text.split(|&b| b == b'\n').take(k) {
            set.insert(l.to_vec());
        }
        set.len() as u64
    };
    let total = distinct(5200);
    // Wait until the child has committed all but its last chunk and stalls
    // inside that one (its records are written, not committed).
    let ro = StoreOptions {
        read_only: true,
        ..small_opts()
    };
    let started = std::time::Instant::now();
    loop {
        let n = Store::open(dir.path(), ro.clone()).map_or(0, |s| s.len());
        if n > total - 1000 {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 120,
            "the child committed only {n} records"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();

    let store = Store::open(dir.path(), tiny(700)).unwrap();
    let kept = store.len();
    assert!(kept < total, "the stalled chunk was not committed: {kept}");
    assert!(
        (1..=6).any(|m| distinct(m * 1024) == kept),
        "only whole chunks (of whole read batches) survive: {kept}"
    );
    drop(store);
    let rep = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(rep.ok(), "{:?}", rep.problems);

    // Re-running the whole input drops what was committed, stores the rest,
    // and the store then holds what one transaction would have made of it.
    let store = Store::open(dir.path(), tiny(700)).unwrap();
    let input = lines(5200);
    let out = import(&store, input.clone(), Some(1000)).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let one = Store::open(fresh.path(), small_opts()).unwrap();
    let want = import(&one, input, None).unwrap();
    assert_eq!(out.duplicates, want.duplicates + kept);
    let strip = |v: Vec<(String, Vec<u8>)>| v.into_iter().map(|(_, e)| e).collect::<Vec<_>>();
    assert_eq!(strip(contents(&store)), strip(contents(&one)));
}

/// Keys of `index/`: (run files, allocated bytes, apparent bytes) of the
/// positional keys file.
fn positional_file(dir: &Path) -> (usize, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut runs = 0;
    let (mut alloc, mut len) = (0, 0);
    for e in std::fs::read_dir(dir.join("index")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("keyseq-") && name.ends_with(".keys") {
            runs += 1;
        }
        if name.starts_with("dedupe-") {
            let m = e.metadata().unwrap();
            (alloc, len) = (m.blocks() * 512, m.len());
        }
    }
    (runs, alloc, len)
}

/// Prune with the keys moved into runs: the pruned records' keys go from
/// the runs (a straddling run is cut by its sequence offsets, no record
/// read again), the kept ones stay exact, across a reopen; and the keys
/// sit on disk once: the positional file's part the runs hold is freed.
#[test]
fn prune_drops_exactly_the_pruned_keys_from_the_runs() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3000u64;
    let opts = || tiny(100);
    let store = Store::open(dir.path(), opts()).unwrap();
    for b in (0..n).step_by(100) {
        let got = store
            .append_batch((b..b + 100).map(record).collect())
            .unwrap();
        assert_eq!(got.duplicates, 0);
        store.maybe_checkpoint().unwrap();
    }
    let st = store.dedupe_stats().unwrap();
    assert!(st.run_keys >= 2000, "{st:?}");
    let (runs, alloc, len) = positional_file(dir.path());
    assert!(runs >= 1);
    assert_eq!(len, n * 16);
    // The file system here punches holes (tmpfs, ext4, xfs all do): the
    // runs' part of the positional file takes no blocks.
    assert!(
        alloc < len / 2,
        "positional keys file keeps {alloc} of {len} bytes on disk"
    );
    let ranges: Vec<(u64, u64)> = std::fs::read_dir(dir.path().join("index"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let (lo, hi) = name
                .strip_prefix("keyseq-")?
                .strip_suffix(".keys")?
                .split_once('-')?;
            Some((lo.parse().ok()?, hi.parse().ok()?))
        })
        .collect();
    let ret = kaudit_store::retention::Retention {
        max_age_secs: None,
        max_size: Some(60 << 10),
    };
    let out = store
        .prune(&ret, &[], kaudit_event::MicroTime::now(), false)
        .unwrap();
    let before = out.before;
    assert!(before > 0 && before < n, "{out:?}");
    assert!(
        ranges.iter().any(|&(lo, hi)| lo < before && before < hi),
        "no run straddles {before}: {ranges:?}"
    );
    let check = |store: &Store| {
        let st = store.dedupe_stats().unwrap();
        assert_eq!(st.recent_keys + st.run_keys, n - before, "{st:?}");
        // Kept records are duplicates; a pruned one is new again.
        let got = store
            .append_batch((before..n).step_by(7).map(record).collect())
            .unwrap();
        assert!(got.seqs.is_empty());
    };
    check(&store);
    drop(store);
    let store = Store::open(dir.path(), opts()).unwrap();
    check(&store);
    let got = store
        .append_batch((0..before).step_by(5).map(record).collect())
        .unwrap();
    assert_eq!(got.duplicates, 0, "a pruned record's key was kept");
    assert_eq!(got.seqs.end - got.seqs.start, before.div_ceil(5));
    assert_eq!(
        contents(&store).len() as u64,
        n - before + before.div_ceil(5)
    );
}

/// A store written before runs carried sequence offsets (`keyrun-` files
/// of bare sorted keys, the positional file whole) opens: the old runs are
/// dropped, the keys sealed again from the positional file, and dedupe
/// stays exact.
#[test]
fn a_store_with_old_key_runs_opens_and_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1000, 100, tiny(1 << 20));
    let index = dir.path().join("index");
    let positional = std::fs::read(index.join(format!("dedupe-{:020}.keys", 0))).unwrap();
    assert_eq!(positional.len(), 1000 * 16);
    let mut keys: Vec<&[u8]> = positional[..600 * 16].chunks_exact(16).collect();
    keys.sort_unstable();
    let old = index.join(format!("keyrun-{:020}-{:020}.keys", 0, 600));
    std::fs::write(&old, keys.concat()).unwrap();
    let store = Store::open(dir.path(), tiny(100)).unwrap();
    assert!(!old.exists(), "the old-format run was kept");
    let st = store.dedupe_stats().unwrap();
    assert_eq!(st.recent_keys + st.run_keys, 1000, "{st:?}");
    assert!(st.run_keys >= 800, "not sealed again: {st:?}");
    let got = store
        .append_batch((0..1100).step_by(3).map(record).collect())
        .unwrap();
    assert_eq!(got.duplicates, 1000u64.div_ceil(3));
    assert_eq!(got.seqs.end - got.seqs.start, 100 / 3);
}

/// A run whose keys were already freed from the positional file is lost
/// (deleted, as a disk error or an operator might): the reopen must not
/// take the freed part of the positional file (zeros) for keys, so every
/// stored event is still a duplicate.
#[test]
fn a_lost_run_after_its_keys_were_freed_keeps_dedupe_exact() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 3000, 100, tiny(200));
    let index = dir.path().join("index");
    let runs: Vec<_> = std::fs::read_dir(&index)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("keyseq-") && n.ends_with(".keys")
        })
        .collect();
    assert!(!runs.is_empty(), "no key runs were written");
    for r in &runs {
        std::fs::remove_file(r).unwrap();
    }
    let store = Store::open(dir.path(), tiny(200)).unwrap();
    let got = store.append_batch((0..3100).map(record).collect()).unwrap();
    assert_eq!(got.duplicates, 3000, "stored events were taken as new");
    assert_eq!(got.seqs, 3000..3100);
}
