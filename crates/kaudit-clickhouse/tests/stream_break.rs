//! A streamed answer that breaks mid-way (a replica dying while it sends,
//! here a proxy cutting the connection after 256 KiB) is read on from the
//! next endpoint in `fallback_urls`, from where it broke: every read kaudit
//! streams (both steps of an exact search, paged confirmed searches,
//! candidate reads, follow, the retro-hunt read) gives exactly the answer a
//! direct connection gives, no row lost or repeated.

mod common;

use kaudit_clickhouse::{ClickHouseBackend, Shipper};
use kaudit_index::{search_pages, FollowPosition, SearchBackend, SearchRequest};
use kaudit_query::Query;
use std::sync::atomic::Ordering;

const N: u64 = 3_000;

/// What one read gives: (gseq, time, event bytes) of every row, in order.
type Rows = Vec<(u64, i64, Vec<u8>)>;

fn hits(h: &[kaudit_index::Hit]) -> Rows {
    h.iter().map(|h| (h.seq, h.time, h.event.clone())).collect()
}

/// One read, giving its rows.
type Read = Box<dyn Fn(&ClickHouseBackend) -> Rows>;

/// Each read kaudit streams, by name.
fn reads() -> Vec<(&'static str, Read)> {
    vec![
        (
            "exact search, 1000 rows in one page",
            Box::new(|b| {
                let req = SearchRequest::new(Query::parse("").expect("q"), 1_000);
                hits(&b.search(&req).expect("search").hits)
            }),
        ),
        (
            "confirmed search, every page",
            Box::new(|b| {
                let q = Query::parse("user=~'.*' level=*").expect("q");
                let req = SearchRequest::new(q, 700);
                let mut out = Vec::new();
                search_pages(b, &req, 0, 700, &mut |page| {
                    out.extend(hits(&page));
                    true
                })
                .expect("pages");
                out
            }),
        ),
        (
            "candidate read (for_each_match)",
            Box::new(|b| {
                let q = Query::parse("user=~'.*'").expect("q");
                let mut out = Vec::new();
                b.for_each_match(&q, None, None, &mut |g, t, ev, _| {
                    out.push((g, t, ev.bytes().to_vec()));
                    true
                })
                .expect("for_each_match");
                out
            }),
        ),
        (
            "follow from the start",
            Box::new(|b| {
                let mut out = Vec::new();
                let mut pos = FollowPosition::default();
                loop {
                    let before = out.len();
                    pos = b
                        .follow(&Query::parse("").expect("q"), None, None, &pos, &mut |h| {
                            out.push((h.seq, h.time, h.event));
                            true
                        })
                        .expect("follow");
                    if out.len() == before {
                        return out;
                    }
                }
            }),
        ),
        (
            "retro-hunt read",
            Box::new(|b| {
                let mut out = Vec::new();
                b.for_each_received(None, &mut |g, _, raw| {
                    out.push((g, 0, raw.to_vec()));
                    true
                })
                .expect("received");
                out
            }),
        ),
    ]
}

#[test]
fn a_broken_stream_is_read_on_from_the_fallback_without_loss_or_repeats() {
    let ch = common::ClickHouse::start();
    let dir = tempfile::tempdir().expect("tmp");
    let store = common::store_of(dir.path(), "alpha", N, 77);
    let mut sh = Shipper::new(ch.config(5), dir.path()).expect("shipper");
    assert_eq!(common::ship_all(&mut sh, &store), N);
    let direct = ClickHouseBackend::open(&ch.config(0)).expect("direct");
    let proxy = common::CuttingProxy::start(ch.http_port, 256 << 10);
    for (what, read) in reads() {
        let want = read(&direct);
        assert!(
            want.len() >= 1_000,
            "{what}: only {} rows, too few to cut",
            want.len()
        );
        // Through the proxy first, the server itself as the fallback.
        let mut cfg = ch.config(0);
        cfg.url = proxy.url.clone();
        cfg.fallback_urls = vec![ch.url()];
        let via = ClickHouseBackend::open(&cfg).expect("via proxy");
        let cuts = proxy.cuts.load(Ordering::Relaxed);
        let got = read(&via);
        assert!(
            proxy.cuts.load(Ordering::Relaxed) > cuts,
            "{what}: the proxy never cut the answer"
        );
        assert!(
            via.client().resumes() >= 1,
            "{what}: no stream was read on after a break"
        );
        assert_eq!(got.len(), want.len(), "{what}: rows lost or repeated");
        assert!(got == want, "{what}: different rows");
        // Without a fallback the break is an error naming the read, not a
        // short answer.
        let mut alone = ch.config(0);
        alone.url = proxy.url.clone();
        let only = ClickHouseBackend::open(&alone).expect("proxy only");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(&only)));
        assert!(r.is_err(), "{what}: a cut answer was taken as whole");
    }
}
