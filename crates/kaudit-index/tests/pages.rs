//! `search_pages`: walking every page with the cursor hands out every match
//! exactly once, in output order, up to the limit, whatever the page size;
//! and a spent time budget stops a search with `TimedOut`.

mod common;

use kaudit_index::{search_pages, EmbeddedBackend, IndexError, SearchBackend, SearchRequest};
use kaudit_query::{Budget, Query};
use kaudit_store::{Store, StoreOptions};
use std::sync::Arc;
use std::time::Duration;

fn walk(
    b: &dyn SearchBackend,
    req: &SearchRequest,
    limit: u64,
    page: usize,
) -> (Vec<u64>, Option<kaudit_index::Cursor>, usize) {
    let mut seqs = Vec::new();
    let mut pages = 0;
    let walked = search_pages(b, req, limit, page, &mut |hits| {
        pages += 1;
        assert!(hits.len() <= page, "a page holds at most page_size hits");
        seqs.extend(hits.iter().map(|h| h.seq));
        true
    })
    .expect("walk");
    assert_eq!(walked.hits, seqs.len() as u64);
    (seqs, walked.next, pages)
}

#[test]
fn every_match_comes_out_once_in_order_up_to_the_limit() {
    let fx = common::store_with(400, 11);
    let dir = fx.dir.path().to_path_buf();
    drop(fx.store);
    let store = Arc::new(Store::open(&dir, StoreOptions::default()).expect("store"));
    let indexed = EmbeddedBackend::open(&dir, store.clone()).expect("backend");
    indexed.catch_up().expect("catch up");
    // The same answers from the unindexed tail alone.
    let tail = EmbeddedBackend::unindexed(store.clone());
    for backend in [&indexed as &dyn SearchBackend, &tail] {
        for text in ["", "verb=get", "verb=delete or verb=create", "no-such-word"] {
            let q = Query::parse(text).expect("query");
            for reverse in [false, true] {
                let req = SearchRequest {
                    reverse,
                    ..SearchRequest::new(q.clone(), 1)
                };
                // The whole answer in one page (under the page cap).
                let all: Vec<u64> = backend
                    .search(&SearchRequest {
                        limit: 100_000,
                        ..req.clone()
                    })
                    .expect("search")
                    .hits
                    .iter()
                    .map(|h| h.seq)
                    .collect();
                for page in [1, 16, 150] {
                    for limit in [0u64, 1, 13, all.len() as u64, all.len() as u64 + 5] {
                        if page == 1 && limit != 13 {
                            continue; // one-hit pages cost a search each
                        }
                        let (seqs, next, pages) = walk(backend, &req, limit, page);
                        let want = if limit == 0 {
                            all.len()
                        } else {
                            all.len().min(limit as usize)
                        };
                        assert_eq!(
                            seqs,
                            all[..want],
                            "{text:?} reverse={reverse} page={page} limit={limit}"
                        );
                        // A cursor to continue from whenever matches remain
                        // (also when the last page was full exactly at the end).
                        if want < all.len() {
                            assert!(next.is_some(), "{text:?} page={page} limit={limit}");
                        }
                        if limit == 0 || limit as usize > all.len() {
                            assert!(next.is_none(), "walked to the end");
                        }
                        if let Some(c) = next {
                            let rest = backend
                                .search(&SearchRequest {
                                    cursor: Some(c),
                                    limit: 100_000,
                                    ..req.clone()
                                })
                                .expect("rest");
                            let rest: Vec<u64> = rest.hits.iter().map(|h| h.seq).collect();
                            assert_eq!(rest, all[want..], "the cursor continues after the last");
                        }
                        assert!(pages >= want.div_ceil(page), "paged by {page}");
                    }
                }
            }
        }
    }
}

#[test]
fn a_spent_budget_stops_searches_and_stats() {
    let fx = common::store_with(500, 12);
    let dir = fx.dir.path().to_path_buf();
    drop(fx.store);
    let store = Arc::new(Store::open(&dir, StoreOptions::default()).expect("store"));
    let indexed = EmbeddedBackend::open(&dir, store.clone()).expect("backend");
    indexed.catch_up().expect("catch up");
    let tail = EmbeddedBackend::unindexed(store.clone());
    let spent = Query::parse("verb=get or user=alice")
        .expect("query")
        .with_budget(Budget::from_now(Duration::ZERO));
    let plenty = spent
        .clone()
        .with_budget(Budget::from_now(Duration::from_secs(600)));
    for backend in [&indexed as &dyn SearchBackend, &tail] {
        let err = backend
            .search(&SearchRequest::new(spent.clone(), 10))
            .expect_err("budget spent");
        assert!(
            matches!(err, IndexError::TimedOut(d) if d == Duration::ZERO),
            "{err}"
        );
        let stats = kaudit_index::StatsRequest {
            query: spent.clone(),
            since: None,
            until: None,
            by: vec![kaudit_query::Field::parse("verb").expect("field")],
            top: 0,
            every: None,
            latency: false,
        };
        assert!(matches!(
            backend.stats(&stats),
            Err(IndexError::TimedOut(_))
        ));
        // With time to spare the same query is answered.
        let page = backend
            .search(&SearchRequest::new(plenty.clone(), 10))
            .expect("answered");
        assert!(!page.hits.is_empty());
    }
}
