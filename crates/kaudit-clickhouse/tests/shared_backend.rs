//! Integration test (1): one clickhouse-server, two kaudit nodes (two
//! stores, each its own cluster, origin and key) shipping into it; every
//! search, stats, field-values, time-span, timeline and scan answer from
//! ClickHouse equals the embedded backend's over a store holding the same
//! events. Node 2 ships its rows twice (a lost cursor) and node 1 its last
//! 1,000 again (a crash between the INSERT and the cursor's save) with
//! merges stopped, so the duplicates are in the table while every answer is
//! read; each shipper recorded exactly the range it resent, and stats of
//! exactly compiled queries (top-N, histograms, percentiles, bounded and
//! not) are aggregated in ClickHouse, deduplicating only inside those
//! ranges, and must still equal kaudit's.

mod common;

use kaudit_clickhouse::{ClickHouseBackend, Shipper};
use kaudit_index::history::{object_history, user_sessions, HistoryRequest, Target};
use kaudit_index::{
    search_pages, EmbeddedBackend, ScanField, SearchBackend, SearchRequest, StatsRequest,
};
use kaudit_query::{Field, Query};
use kaudit_store::{LogReader, Record, Store, StoreOptions};
use std::sync::Arc;

const N1: u64 = 3_000;
const N2: u64 = 2_000;

/// Queries of every shape the language has; each must compile to SQL that
/// selects the same events as the embedded backend.
const QUERIES: &[&str] = &[
    "",
    "verb=get",
    "verb=get,list resource=pods",
    "user=system:* not verb=watch",
    "group=system:authenticated",
    "ip=10.0.0.0/8",
    "ip=192.168.*",
    "code>=400",
    "code=403 or code=401",
    "user=~'system:serviceaccount:kube-system:.*'",
    "secret",
    "\"kube-system\"",
    "not (verb=get or verb=list) namespace=default",
    "namespace!=kube-system resource=secrets,configmaps",
    "cluster=beta verb=delete",
    "stage=ResponseComplete level=RequestResponse",
    "apigroup=core resource=pods",
    "useragent=kubectl*",
    "decision=allow",
    "name<m",
    ".requestObject.spec.replicas>=2",
    "annotation.authorization.k8s.io/reason=*RBAC*",
];

fn key(h: &kaudit_index::Hit) -> (i64, String, Vec<u8>) {
    (h.time, h.cluster.clone(), h.event.clone())
}

#[test]
fn two_nodes_one_clickhouse_answer_like_the_embedded_backend() {
    let ch = common::ClickHouse::start();
    let d1 = tempfile::tempdir().expect("tmp");
    let d2 = tempfile::tempdir().expect("tmp");
    let s1 = common::store_of(d1.path(), "alpha", N1, 11);
    let s2 = common::store_of(d2.path(), "beta", N2, 12);
    s1.checkpoint().expect("checkpoint");
    s2.checkpoint().expect("checkpoint");
    let mut sh1 = Shipper::new(ch.config(1), d1.path()).expect("shipper 1");
    let mut sh2 = Shipper::new(ch.config(2), d2.path()).expect("shipper 2");
    assert_eq!(common::ship_all(&mut sh1, &s1), N1);
    assert_eq!(common::ship_all(&mut sh2, &s2), N2);
    // Shipping again from scratch (a lost cursor): rows arrive twice, are
    // counted once.
    // Merges stopped, so node 2's resend stays in the table as duplicate
    // rows: every answer below must count each row once regardless.
    let admin = ClickHouseBackend::open(&ch.config(9)).expect("admin");
    let events = format!("{}.{}", admin.tables().db, admin.tables().events);
    admin
        .client()
        .execute(&format!("SYSTEM STOP MERGES {events}"))
        .expect("stop merges");
    std::fs::remove_file(kaudit_clickhouse::ship::cursor_path(d2.path())).expect("rm cursor");
    let mut again = Shipper::new(ch.config(2), d2.path()).expect("shipper 2 again");
    assert_eq!(common::ship_all(&mut again, &s2), N2);
    // A crash after node 1's last INSERT went in, before its cursor moved:
    // the cursor says next = N1 - 1000 and that rows up to N1 were sent.
    let c1 = kaudit_clickhouse::ship::read_cursor(d1.path()).expect("cursor 1");
    assert_eq!(c1.sent, Some(N1), "the cursor does not say what was sent");
    let crashed = kaudit_clickhouse::ship::ShipCursor {
        next: N1 - 1_000,
        ..c1
    };
    std::fs::write(
        kaudit_clickhouse::ship::cursor_path(d1.path()),
        serde_json::to_vec(&crashed).expect("json"),
    )
    .expect("write cursor");
    let mut restarted = Shipper::new(ch.config(1), d1.path()).expect("shipper 1 again");
    assert_eq!(common::ship_all(&mut restarted, &s1), 1_000);
    // Exactly the resent ranges were recorded: nothing for the first
    // shipments (a new node's backlog is not a resend), all of node 2, the
    // last 1,000 of node 1.
    let resent = admin.resent().expect("resent ranges");
    use kaudit_clickhouse::gseq;
    assert_eq!(
        resent.ranges(),
        &[
            (gseq(1, N1 - 1_000), gseq(1, N1)),
            (gseq(2, 0), gseq(2, N2))
        ],
        "recorded ranges"
    );
    let rows: u64 = admin
        .client()
        .execute(&format!("SELECT count() FROM {events}"))
        .expect("raw count")
        .trim()
        .parse()
        .expect("a number");
    assert_eq!(
        rows,
        N1 + 1_000 + 2 * N2,
        "the resends did not leave duplicate rows"
    );

    // The reference: one store with the same events, its embedded index.
    let dr = tempfile::tempdir().expect("tmp");
    let reference = Arc::new(Store::open(dr.path(), StoreOptions::default()).expect("ref store"));
    for s in [&s1, &s2] {
        let mut tx = reference.transaction().expect("tx");
        LogReader::read(s, 0..s.len(), &mut |_, leaf| {
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
    }
    let embedded = EmbeddedBackend::open(dr.path(), reference.clone()).expect("embedded");
    embedded.catch_up().expect("index");
    let chb = ClickHouseBackend::open(&ch.config(9)).expect("clickhouse backend");
    assert_eq!(chb.count().expect("count"), N1 + N2);

    let (mut t0, mut t1) = (i64::MAX, i64::MIN);
    let mut nonempty = 0;
    let (mut pushed, mut pushed_nonempty) = (0, 0);
    for q in QUERIES {
        let query = Query::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        // Every hit, paged with cursors of 97 (so pages cut across ties).
        let all = |b: &dyn SearchBackend, reverse: bool| {
            let mut req = SearchRequest::new(query.clone(), 97);
            req.reverse = reverse;
            let mut hits = Vec::new();
            search_pages(b, &req, 0, 97, &mut |page| {
                hits.extend(page);
                true
            })
            .unwrap_or_else(|e| panic!("{q}: {e}"));
            hits
        };
        let (a, b) = (all(&embedded, false), all(&chb, false));
        assert!(
            b.windows(2)
                .all(|w| (w[0].time, w[0].seq) > (w[1].time, w[1].seq)),
            "{q}: clickhouse pages are not newest first"
        );
        let mut ka: Vec<_> = a.iter().map(key).collect();
        let mut kb: Vec<_> = b.iter().map(key).collect();
        ka.sort();
        kb.sort();
        assert_eq!(ka.len(), kb.len(), "{q}: hit counts differ");
        assert!(ka == kb, "{q}: hits differ");
        let rb = all(&chb, true);
        assert_eq!(rb.len(), b.len(), "{q}: oldest-first paging lost rows");
        if !a.is_empty() {
            nonempty += 1;
            t0 = t0.min(a.last().map_or(i64::MAX, |h| h.time));
            t1 = t1.max(a[0].time);
        }
        // Time span, and a time-bounded search in its middle.
        let sa = embedded.time_span(&query, None, None).expect("span");
        let sb = chb.time_span(&query, None, None).expect("span");
        assert_eq!(sa, sb, "{q}: time spans differ");
        if let Some((lo, hi)) = sa {
            let mid = lo + (hi - lo) / 2;
            let mut req = SearchRequest::new(query.clone(), 50);
            req.since = Some(lo + (hi - lo) / 4);
            req.until = Some(mid);
            let pa: Vec<_> = embedded
                .search(&req)
                .expect("page")
                .hits
                .iter()
                .map(key)
                .collect();
            let pb: Vec<_> = chb
                .search(&req)
                .expect("page")
                .hits
                .iter()
                .map(key)
                .collect();
            assert_eq!(pa.len(), pb.len(), "{q}: time-bounded page sizes differ");
        }
        // Stats: top-N, histogram, latency percentiles.
        let exact = kaudit_clickhouse::sql::compile(query.expr()).exact;
        let span = sa.map(|(lo, hi)| (lo + (hi - lo) / 3, hi - (hi - lo) / 5));
        for (by, every, latency, top, bounded) in [
            (vec![Field::Verb], None, false, 10, false),
            (vec![Field::User, Field::Cluster], None, true, 10, false),
            (vec![Field::Group], Some(3_600_000_000), false, 10, false),
            (vec![], Some(600_000_000), true, 10, false),
            (vec![Field::User], None, false, 0, true),
            (vec![Field::Code, Field::Ip], None, true, 7, true),
            (vec![Field::Resource], Some(60_000_000), true, 3, true),
            (
                vec![Field::Namespace, Field::Verb],
                Some(900_000_000),
                false,
                0,
                false,
            ),
        ] {
            let req = StatsRequest {
                query: query.clone(),
                since: span.filter(|_| bounded).map(|s| s.0),
                until: span.filter(|_| bounded).map(|s| s.1),
                by,
                top,
                every,
                latency,
            };
            // Exactly compiled queries aggregate in ClickHouse; the others
            // confirm rows in kaudit.
            assert_eq!(
                chb.stats_statements(&req, &resent).is_some(),
                exact,
                "{q}: wrong stats path"
            );
            let ra = embedded.stats(&req).expect("stats");
            let rb = chb.stats(&req).expect("stats");
            assert_eq!(ra.total, rb.total, "{q}: stats totals differ ({req:?})");
            assert_eq!(ra.rows, rb.rows, "{q}: stats rows differ ({req:?})");
            if exact {
                pushed += 1;
                if ra.total > 0 {
                    pushed_nonempty += 1;
                }
            }
            if let Some((lo, hi)) = span {
                let a = embedded
                    .time_span(&query, Some(lo), Some(hi))
                    .expect("span");
                let b = chb.time_span(&query, Some(lo), Some(hi)).expect("span");
                assert_eq!(a, b, "{q}: bounded time spans differ");
            }
        }
        // for_each_match: the same events.
        let each = |b: &dyn SearchBackend| {
            let mut v = Vec::new();
            b.for_each_match(&query, None, None, &mut |_, t, ev, c| {
                v.push((t, c.to_string(), ev.bytes().to_vec()));
                true
            })
            .expect("for_each_match");
            v.sort();
            v
        };
        assert!(each(&embedded) == each(&chb), "{q}: for_each_match differs");
        // scan_fields: the same values.
        let scan = |b: &dyn SearchBackend| {
            let mut v = Vec::new();
            let fields = [ScanField::Key(Field::User), ScanField::Key(Field::Ip)];
            b.scan_fields(&query, None, None, &fields, &mut |row| {
                v.push((row.time, row.audit_hash, format!("{:?}", row.values)));
                true
            })
            .expect("scan_fields");
            v.sort();
            v
        };
        assert_eq!(scan(&embedded), scan(&chb), "{q}: scan_fields differs");
    }
    assert!(
        nonempty >= 12,
        "too few queries matched anything: {nonempty}"
    );
    assert!(
        pushed_nonempty >= 80,
        "too few stats answered in SQL with rows: {pushed_nonempty} of {pushed}"
    );
    assert!(t0 < t1);
    // Autocomplete.
    for (f, p) in [
        (Field::User, ""),
        (Field::User, "system:"),
        (Field::Verb, ""),
        (Field::Group, ""),
        (Field::Code, "4"),
        (Field::Cluster, ""),
    ] {
        let a = embedded.field_values(&f, p, 20).expect("values");
        let b = chb.field_values(&f, p, 20).expect("values");
        assert!(!a.is_empty(), "{f:?} {p:?}: no values");
        assert_eq!(a, b, "{f:?} {p:?}: field values differ");
    }
    // Timelines: an object's history and a user's sessions.
    let mut obj = None;
    embedded
        .for_each_match(
            &Query::parse("verb=update,patch namespace=*").expect("q"),
            None,
            None,
            &mut |_, _, ev, _| {
                let o = ev.doc().object_ref.as_ref();
                obj = o.map(|o| format!("{}/{}/{}", o.resource, o.namespace, o.name));
                obj.is_none()
            },
        )
        .expect("find object");
    let target = Target::parse(&obj.expect("an updated object")).expect("target");
    let ha = object_history(&embedded, &target, &HistoryRequest::default()).expect("history");
    let hb = object_history(&chb, &target, &HistoryRequest::default()).expect("history");
    assert!(!ha.entries.is_empty());
    let strip = |h: &kaudit_index::history::HistoryPage| {
        let mut v: Vec<String> = h
            .entries
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.seq = 0;
                serde_json::to_string(&e).expect("json")
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(strip(&ha), strip(&hb), "object history differs");
    let user = embedded.field_values(&Field::User, "", 1).expect("users")[0]
        .0
        .clone();
    let ua = serde_json::to_string(
        &user_sessions(&embedded, &user, None, None, None).expect("sessions"),
    )
    .expect("json");
    let ub =
        serde_json::to_string(&user_sessions(&chb, &user, None, None, None).expect("sessions"))
            .expect("json");
    assert_eq!(ua, ub, "user sessions differ");
}
