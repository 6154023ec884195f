//! All-time counts of one field come from running per-value counts kept by
//! the backend: they must equal a full count of the rows, and stay equal
//! as the store grows and the index catches up.

mod common;

use kaudit_event::MicroTime;
use kaudit_index::stats::{stats, StatsRequest};
use kaudit_index::{EmbeddedBackend, Index, IndexMode, SearchBackend};
use kaudit_query::{Field, Query};
use kaudit_store::{LogReader, Record, Store};
use std::sync::Arc;

fn request(by: Field, since: Option<i64>) -> StatsRequest {
    StatsRequest {
        query: Query::parse("").expect("query"),
        since,
        until: None,
        by: vec![by],
        top: 0,
        every: None,
        latency: false,
    }
}

/// The same counts computed over the rows, without the backend's cache:
/// a time bound that keeps every row turns the cached path off.
fn uncached(dir: &std::path::Path, store: &Store, by: &Field) -> Vec<(Vec<String>, u64)> {
    let mut ix = Index::open(dir, IndexMode::Read).expect("index");
    ix.load(&kaudit_index::index::Needs {
        dict: (0..kaudit_index::index::DICT_FIELDS.len()).collect(),
        hash: Vec::new(),
        latency: false,
    })
    .expect("load");
    let r = stats(&ix, store, &request(by.clone(), Some(i64::MIN))).expect("stats");
    let mut rows: Vec<_> = r.rows.into_iter().map(|r| (r.key, r.count)).collect();
    rows.sort();
    rows
}

fn cached(b: &EmbeddedBackend, by: &Field) -> (Vec<(Vec<String>, u64)>, u64) {
    let r = b.stats(&request(by.clone(), None)).expect("stats");
    let mut rows: Vec<_> = r.rows.into_iter().map(|r| (r.key, r.count)).collect();
    rows.sort();
    (rows, r.total)
}

#[test]
fn running_counts_equal_a_full_count_as_the_index_grows() {
    // Generated events are dated after 2026-01-01; the extra ones below are not.
    let fx = common::store_with(3000, 11);
    let dir = fx.dir.path().to_path_buf();
    let store = Arc::new(fx.store);
    let b = EmbeddedBackend::open(&dir, store.clone()).expect("backend");
    b.catch_up().expect("catch up");
    let fields = [Field::Verb, Field::User, Field::Code, Field::Namespace];
    for f in &fields {
        let (rows, total) = cached(&b, f);
        assert_eq!(rows, uncached(&dir, &store, f), "{f:?}");
        assert_eq!(total, 3000);
    }
    let before = b
        .time_span(&Query::parse("").expect("query"), None, None)
        .expect("span")
        .expect("events");
    assert!(before.0 > 1_767_225_600_000_000);
    // More records: the counts are extended, not recounted from stale state.
    let mut tx = store.transaction().expect("tx");
    let extra = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"f-NUM","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/facets/pods","verb":"deletecollection","user":{"username":"facet-tester"},"sourceIPs":["10.9.9.9"],"objectRef":{"resource":"pods","namespace":"facets"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-01-01T00:00:00.000000Z","stageTimestamp":"2026-01-01T00:00:00.000000Z"}"#;
    for i in 0..25 {
        tx.push(&Record {
            cluster: "c1".into(),
            received: MicroTime(2_000_000_000_000_000 + i),
            event: extra.replace("NUM", &i.to_string()).into_bytes(),
        })
        .expect("push");
    }
    tx.commit().expect("commit");
    b.catch_up().expect("catch up");
    assert_eq!(store.size(), 3025);
    for f in &fields {
        let (rows, total) = cached(&b, f);
        assert_eq!(rows, uncached(&dir, &store, f), "{f:?} after growth");
        assert_eq!(total, 3025);
    }
    // The running time span equals the oldest and newest match, which the
    // extra records (dated 2026-01-01, before the generated ones) moved.
    let all = Query::parse("").expect("query");
    let edge = |reverse| {
        let req = kaudit_index::SearchRequest {
            reverse,
            ..kaudit_index::SearchRequest::new(all.clone(), 1)
        };
        b.search(&req).expect("search").hits[0].time
    };
    let span = b.time_span(&all, None, None).expect("span");
    assert_eq!(span, Some((edge(true), edge(false))));
    assert_eq!(span.map(|s| s.0), Some(1_767_225_600_000_000));
    let (verbs, _) = cached(&b, &Field::Verb);
    assert!(verbs.contains(&(vec!["deletecollection".to_string()], 25)));
    let values = b.field_values(&Field::User, "facet-", 10).expect("values");
    assert_eq!(values, vec![("facet-tester".to_string(), 25)]);
}
