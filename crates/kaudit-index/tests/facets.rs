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

type LatencyRows = Vec<(Vec<String>, u64, Option<kaudit_index::stats::Latency>)>;

fn latency_rows(r: kaudit_index::StatsReport) -> LatencyRows {
    let mut rows: Vec<_> = r
        .rows
        .into_iter()
        .map(|r| (r.key, r.count, r.latency))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
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

/// Latency percentiles of one field over every row come from latencies kept
/// sorted per value: they must equal a pass gathering every sample, with
/// records past the index (read from the store) and after the index grows.
#[test]
fn kept_latencies_give_the_percentiles_of_a_full_pass() {
    let fx = common::store_with(3000, 12);
    let dir = fx.dir.path().to_path_buf();
    let store = Arc::new(fx.store);
    let b = EmbeddedBackend::open(&dir, store.clone()).expect("backend");
    b.catch_up().expect("catch up");
    let fields = [Field::Resource, Field::Verb, Field::Code];
    let full = |f: &Field| {
        let mut ix = Index::open(&dir, IndexMode::Read).expect("index");
        ix.load(&kaudit_index::index::Needs {
            dict: (0..kaudit_index::index::DICT_FIELDS.len()).collect(),
            hash: Vec::new(),
            latency: true,
        })
        .expect("load");
        let req = StatsRequest {
            latency: true,
            ..request(f.clone(), Some(i64::MIN))
        };
        latency_rows(stats(&ix, &*store, &req).expect("stats"))
    };
    let kept = |f: &Field| {
        let req = StatsRequest {
            latency: true,
            ..request(f.clone(), None)
        };
        latency_rows(b.stats(&req).expect("stats"))
    };
    for f in &fields {
        let rows = kept(f);
        assert!(
            rows.iter().any(|r| r.2.is_some_and(|l| l.samples > 100)),
            "{f:?}"
        );
        assert_eq!(rows, full(f), "{f:?}");
    }
    // Slow deletes of one new value past the index: read from the store and
    // merged with the kept runs, then kept themselves once indexed.
    let mut tx = store.transaction().expect("tx");
    for i in 0..40 {
        let ev = format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"l-{i}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/lat/pods/p{i}","verb":"delete","user":{{"username":"latency-tester"}},"sourceIPs":["10.9.9.9"],"objectRef":{{"resource":"{res}","namespace":"lat","name":"p{i}"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"2026-03-01T00:00:00.000000Z","stageTimestamp":"2026-03-01T00:00:{s:02}.{us:06}Z"}}"#,
            res = if i % 2 == 0 { "pods" } else { "slowthings" },
            s = i % 60,
            us = i * 7919 % 1_000_000,
        );
        tx.push(&Record {
            cluster: "c1".into(),
            received: MicroTime(2_000_000_000_000_000 + i),
            event: ev.into_bytes(),
        })
        .expect("push");
    }
    tx.commit().expect("commit");
    let tail = kept(&Field::Resource);
    assert!(tail.iter().any(|r| r.0 == ["slowthings"] && r.1 == 20));
    assert_eq!(tail, full(&Field::Resource), "records past the index");
    b.catch_up().expect("catch up");
    for f in &fields {
        assert_eq!(kept(f), full(f), "{f:?} after growth");
    }
    assert_eq!(tail, kept(&Field::Resource), "tail read vs indexed");
}

/// Histograms of every event (by one field or none) come from counts kept
/// per minute: they must equal a pass over the rows for whole-minute and
/// other buckets and bounds, with records past the index and after growth.
#[test]
fn minute_counts_give_the_histograms_of_a_full_pass() {
    let fx = common::store_with(3000, 13);
    let dir = fx.dir.path().to_path_buf();
    let store = Arc::new(fx.store);
    let b = EmbeddedBackend::open(&dir, store.clone()).expect("backend");
    b.catch_up().expect("catch up");
    let all = Query::parse("").expect("query");
    let span = b
        .time_span(&all, None, None)
        .expect("span")
        .expect("events");
    const MIN: i64 = 60_000_000;
    let lo = span.0.div_euclid(MIN) * MIN;
    let hi = (span.1.div_euclid(MIN) + 1) * MIN;
    let requests = |lo: i64, hi: i64| {
        let mut out = Vec::new();
        for by in [vec![], vec![Field::Verb], vec![Field::Code]] {
            for (every, since, until) in [
                (30 * MIN, lo, hi),
                (MIN, lo, hi),
                (7 * MIN, lo + 3 * MIN, hi - 2 * MIN),
                (7 * MIN, lo + 3 * MIN, lo + 25 * MIN),
                (10 * MIN, lo + MIN / 2, hi),
                (90_000_000, lo, hi),
            ] {
                out.push(StatsRequest {
                    query: all.clone(),
                    since: Some(since),
                    until: Some(until),
                    by: by.clone(),
                    top: 0,
                    every: Some(every),
                    latency: false,
                });
            }
        }
        out
    };
    let rows = |r: kaudit_index::StatsReport| {
        let mut rows: Vec<_> = r
            .rows
            .into_iter()
            .map(|r| (r.bucket, r.key, r.count))
            .collect();
        rows.sort();
        (rows, r.total)
    };
    let full = |req: &StatsRequest| {
        let mut ix = Index::open(&dir, IndexMode::Read).expect("index");
        ix.load(&kaudit_index::index::Needs {
            dict: (0..kaudit_index::index::DICT_FIELDS.len()).collect(),
            hash: Vec::new(),
            latency: false,
        })
        .expect("load");
        rows(stats(&ix, &*store, req).expect("stats"))
    };
    for req in requests(lo, hi) {
        let got = rows(b.stats(&req).expect("stats"));
        if req.since == Some(lo) {
            assert!(got.1 > 0, "{req:?}");
        }
        assert_eq!(got, full(&req), "{req:?}");
    }
    // Older and newer events past the index (new minutes at both ends),
    // then indexed.
    let mut tx = store.transaction().expect("tx");
    for i in 0..30i64 {
        let t = if i % 2 == 0 {
            lo - (i + 1) * MIN
        } else {
            hi + i * MIN
        };
        let stamp = kaudit_event::MicroTime(t).to_string();
        let ev = format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"m-{i}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/m/pods","verb":"watch","user":{{"username":"minute-tester"}},"sourceIPs":["10.9.9.9"],"objectRef":{{"resource":"pods","namespace":"m"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"{stamp}","stageTimestamp":"{stamp}"}}"#
        );
        tx.push(&Record {
            cluster: "c1".into(),
            received: MicroTime(t),
            event: ev.into_bytes(),
        })
        .expect("push");
    }
    tx.commit().expect("commit");
    let (lo, hi) = (lo - 40 * MIN, hi + 40 * MIN);
    for req in requests(lo, hi) {
        assert_eq!(
            rows(b.stats(&req).expect("stats")),
            full(&req),
            "tail {req:?}"
        );
    }
    b.catch_up().expect("catch up");
    for req in requests(lo, hi) {
        assert_eq!(
            rows(b.stats(&req).expect("stats")),
            full(&req),
            "grown {req:?}"
        );
    }
}

/// Kept latencies are bounded over all columns together: asking for a
/// column that does not fit drops the least recently asked other ones; one
/// that alone passes the budget is not kept (the stats pass answers it).
/// Whatever is kept equals what an unbounded cache keeps.
#[test]
fn kept_latencies_stay_within_one_budget_over_all_columns() {
    let fx = common::store_with(3000, 14);
    let dir = fx.dir.path().to_path_buf();
    let store = Arc::new(fx.store);
    let b = EmbeddedBackend::open(&dir, store.clone()).expect("backend");
    b.catch_up().expect("catch up");
    let mut ix = Index::open(&dir, IndexMode::Read).expect("index");
    ix.load(&kaudit_index::index::Needs {
        dict: (0..kaudit_index::index::DICT_FIELDS.len()).collect(),
        hash: Vec::new(),
        latency: true,
    })
    .expect("load");
    let slot = |f: Field| {
        kaudit_index::index::DICT_FIELDS
            .iter()
            .position(|d| *d == f)
            .expect("dictionary field")
    };
    let (verb, resource, code) = (slot(Field::Verb), slot(Field::Resource), slot(Field::Code));
    let flat = |runs: &[kaudit_index::latency::SortedRuns]| -> Vec<Vec<u32>> {
        runs.iter()
            .map(|r| {
                let mut v: Vec<u32> = r.runs().iter().flat_map(|x| x.iter().copied()).collect();
                v.sort_unstable();
                v
            })
            .collect()
    };
    let unbounded = kaudit_index::facets::Facets::new();
    let all_verb = flat(&unbounded.latency(&ix, verb).expect("verb"));
    let all_resource = flat(&unbounded.latency(&ix, resource).expect("resource"));
    let samples: usize = all_verb.iter().map(Vec::len).sum();
    assert!(samples > 1000, "{samples} latencies");
    assert_eq!(samples, all_resource.iter().map(Vec::len).sum::<usize>());
    assert_eq!(unbounded.kept_latencies(), 2 * samples);

    // Room for one column's latencies, not two.
    let f = kaudit_index::facets::Facets::with_latency_budget(samples + samples / 2);
    assert_eq!(flat(&f.latency(&ix, verb).expect("verb fits")), all_verb);
    assert_eq!(f.kept_latencies(), samples);
    assert_eq!(
        flat(&f.latency(&ix, resource).expect("resource fits")),
        all_resource
    );
    assert_eq!(f.kept_latencies(), samples, "verb was dropped for resource");
    // Asked again, verb comes back (recomputed, equal) and resource goes.
    assert_eq!(flat(&f.latency(&ix, verb).expect("verb again")), all_verb);
    assert_eq!(f.kept_latencies(), samples);
    f.refresh(&ix);
    assert_eq!(
        f.kept_latencies(),
        samples,
        "refresh brings no dropped column back"
    );

    // Less than one column: nothing kept, the caller makes its pass.
    let tiny = kaudit_index::facets::Facets::with_latency_budget(samples / 2);
    assert!(tiny.latency(&ix, code).is_none());
    assert_eq!(tiny.kept_latencies(), 0);
}
