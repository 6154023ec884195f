//! Bounds of recent queries are kept and extended over new rows: answers
//! after the index grew must equal those of an index opened afresh (no
//! cache), for queries of every shape.

mod common;

use kaudit_index::index::{Needs, DICT_FIELDS};
use kaudit_index::plan::bounds;
use kaudit_index::{EmbeddedBackend, Index, IndexMode, SearchBackend};
use kaudit_query::Query;
use kaudit_store::{Record, Store, StoreOptions};
use std::sync::Arc;

const QUERIES: [&str; 6] = [
    "verb=get",
    "verb=delete resource=pods",
    "not (verb=get or verb=list) ns=default",
    "user=*@example.com code>=400",
    "(resource=secrets or resource=configmaps) not verb=watch",
    "stage=ResponseComplete verb=create,update,patch,delete resource=deployments",
];

fn fresh_bounds(dir: &std::path::Path, q: &Query) -> (Vec<usize>, Vec<usize>, bool) {
    let mut ix = Index::open(dir, IndexMode::Read).expect("index");
    ix.load(&Needs {
        dict: (0..DICT_FIELDS.len()).collect(),
        hash: vec![0],
        latency: false,
    })
    .expect("load");
    rows_of(&ix, q)
}

fn rows_of(ix: &Index, q: &Query) -> (Vec<usize>, Vec<usize>, bool) {
    let b = bounds(ix, q.expr()).expect("bounds");
    let (mut lower, mut upper) = (Vec::new(), Vec::new());
    b.lower.for_each(|r| lower.push(r));
    b.upper.for_each(|r| upper.push(r));
    (lower, upper, b.exact)
}

#[test]
fn cached_bounds_extended_over_new_rows_equal_fresh_ones() {
    // Enough rows for the cache to be used (it skips small indexes).
    let fx = common::store_with(70_000, 5);
    let dir = fx.dir.path().to_path_buf();
    drop(fx.store);
    let store = Arc::new(Store::open(&dir, StoreOptions::default()).expect("store"));
    let backend = EmbeddedBackend::open(&dir, store.clone()).expect("backend");
    backend.catch_up().expect("catch up");
    let queries: Vec<Query> = QUERIES.iter().map(|q| Query::parse(q).expect(q)).collect();
    let mut first = Vec::new();
    for q in &queries {
        // Fills the cache with the bounds at 70,000 rows.
        let page = backend
            .search(&kaudit_index::SearchRequest::new(q.clone(), 10))
            .expect("search");
        first.push(page.candidates);
    }
    // More rows: a second generated batch appended to the same store.
    let more = common::store_with(4_000, 6);
    let mut tx = store.transaction().expect("tx");
    kaudit_store::LogReader::read(&more.store, 0..4_000, &mut |_, leaf| {
        tx.push(&Record {
            cluster: leaf.cluster.to_string(),
            received: leaf.received,
            event: leaf.event.to_vec(),
        })
        .expect("push");
        true
    })
    .expect("read");
    tx.commit().expect("commit");
    backend.catch_up().expect("catch up");
    for (q, before) in queries.iter().zip(first) {
        let page = backend
            .search(&kaudit_index::SearchRequest::new(q.clone(), 10))
            .expect("search");
        // The index has committed, so a fresh reader sees every row.
        let (lower, upper, _) = fresh_bounds(&dir, q);
        assert_eq!(page.candidates as usize, upper.len(), "{q:?}: candidates");
        assert!(page.candidates >= before, "{q:?}: rows were added");
        assert!(lower.iter().all(|r| upper.binary_search(r).is_ok()));
        let mut ix = Index::open(&dir, IndexMode::Read).expect("index");
        ix.load(&kaudit_index::plan::needs(q.expr())).expect("load");
        let req = kaudit_index::SearchRequest::new(q.clone(), 500);
        let fresh = kaudit_index::search::search(&ix, store.as_ref(), &req).expect("search");
        let cached = backend.search(&req).expect("search");
        let seqs = |p: &kaudit_index::Page| p.hits.iter().map(|h| h.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&cached), seqs(&fresh), "{q:?}: the same hits");
        // Against every match sorted by (time, seq): pages (which skip
        // blocks of rows that cannot hold a better one) in both orders.
        let mut all: Vec<(i64, u64)> = Vec::new();
        backend
            .for_each_match(q, None, None, &mut |seq, t, _, _| {
                all.push((t, seq));
                true
            })
            .expect("matches");
        all.sort_unstable();
        for reverse in [false, true] {
            let req = kaudit_index::SearchRequest {
                reverse,
                ..kaudit_index::SearchRequest::new(q.clone(), 300)
            };
            let page = backend.search(&req).expect("search");
            let want: Vec<u64> = if reverse {
                all.iter().take(300).map(|x| x.1).collect()
            } else {
                all.iter().rev().take(300).map(|x| x.1).collect()
            };
            assert_eq!(seqs(&page), want, "{q:?} reverse={reverse}");
        }
    }
    // And the bounds themselves, through a long-lived reader whose cache
    // is extended: equal to a fresh computation row for row.
    let mut reader = Index::open(&dir, IndexMode::Read).expect("index");
    reader
        .load(&Needs {
            dict: (0..DICT_FIELDS.len()).collect(),
            hash: vec![0],
            latency: false,
        })
        .expect("load");
    for q in &queries {
        assert_eq!(rows_of(&reader, q), fresh_bounds(&dir, q), "{q:?}");
        assert_eq!(
            rows_of(&reader, q),
            fresh_bounds(&dir, q),
            "{q:?} from the cache"
        );
    }
}
