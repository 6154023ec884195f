//! Indexing while importing ([`ImportIndexer`]) builds exactly the index
//! `kaudit reindex` builds from the stored records, file for file, across
//! several inputs, duplicates, a transform, bad lines skipped and an input
//! rolled back; and an import that dies mid-way leaves an index no further
//! than the log, whose answers (index plus scanned tail) equal the matcher.

use kaudit_event::reader::{EventReader, ReaderOptions};
use kaudit_event::Event;
use kaudit_index::search::{search, SearchRequest};
use kaudit_index::{ImportIndexer, Index, IndexMode, INDEX_DIR};
use kaudit_query::Query;
use kaudit_store::import::{import_observed, ImportObserver, ImportOptions};
use kaudit_store::{LogReader, Store, StoreOptions};
use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

/// `n` generated JSON lines (one cluster).
fn lines(n: u64, seed: u64) -> Vec<Vec<u8>> {
    let mut cfg = kaudit_gen::GenConfig::new(seed);
    cfg.events = Some(n);
    cfg.spread_incidents();
    let mut g = kaudit_gen::Generator::new(cfg).expect("generator");
    let mut out = Vec::new();
    let mut line = Vec::new();
    while g.next_into(&mut line).is_some() {
        out.push(std::mem::take(&mut line));
    }
    assert_eq!(out.len() as u64, n, "the generator gave fewer events");
    out
}

fn reader(lines: &[Vec<u8>], name: &str) -> EventReader {
    let mut bytes = Vec::new();
    for l in lines {
        bytes.extend_from_slice(l);
        bytes.push(b'\n');
    }
    EventReader::new(Cursor::new(bytes), name, ReaderOptions::default()).expect("reader")
}

/// Every file of the index directory but its lock, by name.
fn index_files(data: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(data.join(INDEX_DIR)).expect("index dir") {
        let p = e.expect("entry").path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name != "LOCK" && !name.ends_with(".tmp") {
            out.insert(name, std::fs::read(&p).expect("read index file"));
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().expect("type").is_dir() {
            copy_dir(&src, &dst);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

/// The index a fresh `reindex` builds over a copy of the store in `data`.
fn reindexed_copy(data: &Path) -> (tempfile::TempDir, BTreeMap<String, Vec<u8>>) {
    let copy = tempfile::tempdir().expect("tempdir");
    copy_dir(data, copy.path());
    let store = Store::open(copy.path(), StoreOptions::default()).expect("open copy");
    let built = kaudit_index::backend::rebuild(copy.path(), &store).expect("rebuild");
    assert_eq!(built.records, store.len() - store.first_seq());
    let files = index_files(copy.path());
    (copy, files)
}

#[test]
fn import_with_indexing_builds_what_reindex_builds() {
    let all = lines(12_000, 7);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("store");
    let mut ix = ImportIndexer::open(dir.path(), &store).expect("indexer");
    // Rewrites (drops the user agent of every get) and drops watches: what
    // the index sees must be what is stored, not what was read.
    let transform = |ev: Event| {
        if ev.doc().verb == "watch" {
            return None;
        }
        if ev.doc().verb == "get" {
            let mut doc = ev.doc().clone();
            doc.user_agent = "rewritten".into();
            return Some(Event::from_doc(doc));
        }
        Some(ev)
    };
    let opts = |cluster: &str| ImportOptions {
        cluster: cluster.into(),
        skip_invalid: true,
        ..ImportOptions::default()
    };
    // 1: the first 5000, with a bad line skipped.
    let mut first: Vec<Vec<u8>> = all[..5000].to_vec();
    first.insert(1234, b"{\"kind\":\"Event\", not json".to_vec());
    let o1 = import_observed(
        &store,
        reader(&first, "one.jsonl"),
        &opts("east"),
        Some(&transform),
        &mut |_, _| {},
        Some(&mut ix as &mut dyn ImportObserver),
    )
    .expect("first input");
    assert_eq!(o1.invalid, 1);
    assert!(o1.filtered > 0, "the transform dropped nothing");
    assert_eq!(ix.committed(), o1.seqs.end);
    // 2: a bad line with skipping off: rolled back whole.
    let mut second: Vec<Vec<u8>> = all[5000..8000].to_vec();
    second.push(b"not json at all".to_vec());
    let strict = ImportOptions {
        skip_invalid: false,
        ..opts("west")
    };
    import_observed(
        &store,
        reader(&second, "two.jsonl"),
        &strict,
        Some(&transform),
        &mut |_, _| {},
        Some(&mut ix as &mut dyn ImportObserver),
    )
    .expect_err("the second input has a bad line");
    assert_eq!(store.len(), o1.seqs.end, "the failed input left records");
    assert!(ix.failure().is_none(), "{:?}", ix.failure());
    // 3: the rest, plus 500 duplicates of the first input, another cluster.
    let mut third: Vec<Vec<u8>> = all[5000..].to_vec();
    third.extend(all[..500].iter().cloned());
    let o3 = import_observed(
        &store,
        reader(&third, "three.jsonl"),
        &opts("east"),
        Some(&transform),
        &mut |_, _| {},
        Some(&mut ix as &mut dyn ImportObserver),
    )
    .expect("third input");
    assert!(o3.duplicates >= 400, "{} duplicates", o3.duplicates);
    assert_eq!(ix.committed(), store.len());
    assert!(ix.failure().is_none(), "{:?}", ix.failure());
    drop(ix);

    let imported = index_files(dir.path());
    let (_copy, rebuilt) = reindexed_copy(dir.path());
    assert_eq!(
        imported.keys().collect::<Vec<_>>(),
        rebuilt.keys().collect::<Vec<_>>()
    );
    assert!(imported.contains_key("meta.json") && imported.contains_key("time.i64"));
    for (name, bytes) in &imported {
        assert!(
            bytes == &rebuilt[name],
            "index file {name} differs from the reindexed one ({} vs {} bytes)",
            bytes.len(),
            rebuilt[name].len()
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&imported["meta.json"]).expect("meta.json");
    assert_eq!(meta["rows"].as_u64(), Some(store.len()));
}

#[test]
fn an_index_already_behind_the_store_is_caught_up_before_importing() {
    let all = lines(3000, 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("store");
    // Imported without an index first.
    kaudit_store::import::import_input(
        &store,
        reader(&all[..1000], "old.jsonl"),
        &ImportOptions::default(),
        None,
        &mut |_, _| {},
    )
    .expect("import without index");
    let mut ix = ImportIndexer::open(dir.path(), &store).expect("indexer");
    assert_eq!(ix.committed(), 1000);
    import_observed(
        &store,
        reader(&all[1000..], "new.jsonl"),
        &ImportOptions::default(),
        None,
        &mut |_, _| {},
        Some(&mut ix as &mut dyn ImportObserver),
    )
    .expect("import");
    drop(ix);
    let (_copy, rebuilt) = reindexed_copy(dir.path());
    assert_eq!(index_files(dir.path()), rebuilt);
}

/// Forwards to the indexer and, at one staged record, copies the store
/// directory: what a crash at that moment leaves on disk.
struct Snapshot<'a> {
    inner: ImportIndexer,
    at: u64,
    data: &'a Path,
    to: &'a Path,
}

impl ImportObserver for Snapshot<'_> {
    fn encoder(&self) -> kaudit_store::import::RowEncoder {
        self.inner.encoder()
    }
    fn staged(&mut self, seq: u64, row: &[u8]) {
        self.inner.staged(seq, row);
        if seq == self.at {
            copy_dir(self.data, self.to);
        }
    }
    fn durable(&mut self, end: u64) {
        self.inner.durable(end)
    }
    fn rolled_back(&mut self) {
        self.inner.rolled_back()
    }
}

#[test]
fn a_crash_mid_import_leaves_an_index_no_further_than_the_log() {
    // The writer runs at most a few parse batches (1024 lines each) ahead
    // of the observer, so at record 4100 the second input (16000 records)
    // is surely not committed yet.
    let all = lines(20_000, 5);
    let dir = tempfile::tempdir().expect("tempdir");
    let crashed = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("store");
    let mut obs = Snapshot {
        inner: ImportIndexer::open(dir.path(), &store).expect("indexer"),
        at: 4100,
        data: dir.path(),
        to: crashed.path(),
    };
    for (k, part) in [&all[..4000], &all[4000..]].into_iter().enumerate() {
        import_observed(
            &store,
            reader(part, &format!("part{k}.jsonl")),
            &ImportOptions::default(),
            None,
            &mut |_, _| {},
            Some(&mut obs as &mut dyn ImportObserver),
        )
        .expect("import");
    }
    assert!(std::fs::read_dir(crashed.path()).is_ok_and(|mut d| d.next().is_some()));
    // The copy: the first input durable and indexed, the second in flight.
    let store = Store::open(crashed.path(), StoreOptions::default()).expect("reopen crashed");
    assert_eq!(
        store.len(),
        4000,
        "the uncommitted input survived the crash"
    );
    let mut ix = Index::open(crashed.path(), IndexMode::Read).expect("index");
    assert_eq!(
        ix.next_seq(),
        4000,
        "the index is not where the log was durable"
    );
    let mut stored = Vec::new();
    store
        .read(0..store.len(), &mut |seq, leaf| {
            stored.push((seq, Event::from_json(leaf.event).expect("event")));
            true
        })
        .expect("read");
    // Answers over the index (4000 rows then nothing to scan) and with the
    // index cut to 2500 rows (a tail of 1500 scanned) equal the matcher.
    for rows in [4000usize, 2500] {
        ix.truncate_rows(rows);
        for text in [
            "verb=delete",
            "resource=secrets and verb!=get",
            "user=system:*",
            "code>=400",
        ] {
            let q = Query::parse(text).expect("query");
            ix.load(&kaudit_index::plan::needs(q.expr())).expect("load");
            let want: std::collections::BTreeSet<u64> = stored
                .iter()
                .filter(|(_, ev)| q.matches(ev, "default"))
                .map(|(s, _)| *s)
                .collect();
            let page = search(&ix, &store, &SearchRequest::new(q, 10_000)).expect("search");
            let got: std::collections::BTreeSet<u64> = page.hits.iter().map(|h| h.seq).collect();
            assert_eq!(got, want, "{text} with {rows} rows indexed");
            assert!(
                !want.is_empty() || text == "code>=400",
                "{text} matches nothing"
            );
        }
    }
    // A later catch-up over the crashed store gives reindex's index.
    drop(ix);
    let crashed_ix = ImportIndexer::open(crashed.path(), &store).expect("catch up");
    assert_eq!(crashed_ix.committed(), 4000);
    drop(crashed_ix);
    let (_copy, rebuilt) = reindexed_copy(crashed.path());
    assert_eq!(index_files(crashed.path()), rebuilt);
}

#[test]
fn a_row_that_is_not_whole_or_not_next_adds_nothing() {
    let all = lines(1, 9);
    let ev = Event::from_json(&all[0]).expect("event");
    let mut row = Vec::new();
    Index::encode_row(&ev, "c", kaudit_event::MicroTime(1), &mut row);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ix = Index::open(dir.path(), IndexMode::Write).expect("index");
    for cut in [0, 3, row.len() / 2, row.len() - 1] {
        assert!(!ix.push_row(0, &row[..cut]), "a row cut at {cut} was taken");
    }
    let mut long = row.clone();
    long.push(0);
    assert!(
        !ix.push_row(0, &long),
        "a row with trailing bytes was taken"
    );
    assert!(!ix.push_row(1, &row), "a row past the next seq was taken");
    assert_eq!(ix.rows(), 0);
    assert!(ix.push_row(0, &row));
    assert!(!ix.push_row(0, &row), "the same seq was taken twice");
    assert_eq!((ix.rows(), ix.next_seq()), (1, 1));
}
