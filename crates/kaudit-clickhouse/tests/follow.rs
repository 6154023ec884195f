//! `follow` across nodes: a follower of the ClickHouse backend sees every
//! record of every node exactly once, whatever order nodes ship in. (The
//! first version followed one number, `node_id << 48 | seq`, so records of a
//! lower node id shipped after a higher one's were never seen: the second
//! step below.)

mod common;

use kaudit_clickhouse::{ClickHouseBackend, Shipper};
use kaudit_event::Event;
use kaudit_index::{FollowPosition, Hit, SearchBackend};
use kaudit_query::Query;
use kaudit_store::{LogReader, Store};
use std::collections::BTreeMap;

/// Hits of one follow step, and the position after it.
fn step(b: &ClickHouseBackend, q: &Query, from: &FollowPosition) -> (Vec<Hit>, FollowPosition) {
    let mut hits = Vec::new();
    let next = b
        .follow(q, None, None, from, &mut |h| {
            hits.push(h);
            true
        })
        .expect("follow");
    (hits, next)
}

/// (node, seq) of every hit, checking none repeats.
fn keys(hits: &[Hit]) -> BTreeMap<(u16, u64), ()> {
    let mut out = BTreeMap::new();
    for h in hits {
        let k = kaudit_clickhouse::split_gseq(h.seq);
        assert!(out.insert(k, ()).is_none(), "{k:?} handed out twice");
    }
    out
}

/// The (node, seq) of every record of `store` in `range` matching `q`.
fn expected(
    store: &Store,
    node: u16,
    range: std::ops::Range<u64>,
    q: &Query,
) -> BTreeMap<(u16, u64), ()> {
    let mut out = BTreeMap::new();
    LogReader::read(store, range, &mut |seq, leaf| {
        let ev = Event::from_json(leaf.event).expect("event");
        if q.matches(&ev, leaf.cluster) {
            out.insert((node, seq), ());
        }
        true
    })
    .expect("read");
    out
}

#[test]
fn follow_sees_every_node_exactly_once_in_any_shipping_order() {
    let ch = common::ClickHouse::start();
    let (d1, d2) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let s1 = common::store_of(d1.path(), "alpha", 300, 61);
    let s2 = common::store_of(d2.path(), "beta", 400, 62);
    let mut sh1 = Shipper::new(ch.config(1), d1.path()).expect("shipper 1");
    let mut sh2 = Shipper::new(ch.config(2), d2.path()).expect("shipper 2");
    let b = ClickHouseBackend::open(&ch.config(0)).expect("backend");
    let all = Query::parse("").expect("q");
    let some = Query::parse("verb=get,list not namespace=kube-system").expect("q");

    // Node 2 ships first.
    common::ship_all(&mut sh2, &s2);
    let start = FollowPosition::default();
    let (h, p_all) = step(&b, &all, &start);
    assert_eq!(keys(&h), expected(&s2, 2, 0..400, &all));
    let (h, p_some) = step(&b, &some, &start);
    let want = expected(&s2, 2, 0..400, &some);
    assert!(!want.is_empty() && want.len() < 400, "{}", want.len());
    assert_eq!(keys(&h), want);

    // Then node 1 (a lower id) ships what it had, and both ship more.
    common::ship_all(&mut sh1, &s1);
    common::append_generated(&s1, "alpha", 150, 63, 300);
    common::append_generated(&s2, "beta", 50, 64, 400);
    common::ship_all(&mut sh2, &s2);
    common::ship_all(&mut sh1, &s1);
    // A resend (a lost cursor) adds copies, never hits.
    std::fs::remove_file(kaudit_clickhouse::ship::cursor_path(d2.path())).expect("rm");
    let mut again = Shipper::new(ch.config(2), d2.path()).expect("shipper 2 again");
    common::ship_all(&mut again, &s2);

    for (name, q, p) in [("all", &all, &p_all), ("some", &some, &p_some)] {
        let (h, next) = step(&b, q, p);
        let mut want = expected(&s1, 1, 0..450, q);
        want.extend(expected(&s2, 2, 400..450, q));
        assert_eq!(keys(&h), want, "query {name}");
        assert_eq!((next.next(1), next.next(2)), (Some(450), Some(450)));
        // Nothing new: nothing again.
        let (h, same) = step(&b, q, &next);
        assert!(h.is_empty(), "{} hits handed out again", h.len());
        assert_eq!(same, next);
        // The text form round-trips.
        assert_eq!(FollowPosition::parse(&next.encode()).expect("parse"), next);
    }

    // Starting at the end sees only what arrives after.
    let end = b.follow_end().expect("end");
    assert_eq!((end.next(1), end.next(2)), (Some(450), Some(450)));
    common::append_generated(&s1, "alpha", 20, 65, 450);
    common::ship_all(&mut sh1, &s1);
    let (h, _) = step(&b, &all, &end);
    assert_eq!(keys(&h), expected(&s1, 1, 450..470, &all));

    // A stop from the callback keeps the rest for the next step.
    let mut first = Vec::new();
    let p = b
        .follow(&all, None, None, &end, &mut |h| {
            first.push(h);
            first.len() < 5
        })
        .expect("follow");
    assert_eq!(first.len(), 5);
    let (rest, _) = step(&b, &all, &p);
    let mut both = first;
    both.extend(rest);
    assert_eq!(keys(&both), expected(&s1, 1, 450..470, &all));
}
