//! The live feed is a cache: followers see exactly the store's records, in
//! order, whichever batches it holds, in whatever order they were published.

mod common;

use common::{record, small_opts};
use kaudit_event::Event;
use kaudit_store::merkle::Hash;
use kaudit_store::{
    FedRecord, LeafRef, LiveFeed, LogReader, Record, Store, StoreResult, StoredCheckpoint,
};
use proptest::prelude::*;
use std::cell::Cell;
use std::ops::Range;

/// Counts the records a follower had to read back from the store.
struct Counting<'a> {
    store: &'a Store,
    read: Cell<u64>,
}

impl LogReader for Counting<'_> {
    fn size(&self) -> u64 {
        self.store.size()
    }
    fn first_seq(&self) -> u64 {
        self.store.first_seq()
    }
    fn read(
        &self,
        range: Range<u64>,
        f: &mut dyn FnMut(u64, LeafRef<'_>) -> bool,
    ) -> StoreResult<()> {
        self.store.read(range, &mut |s, l| {
            self.read.set(self.read.get() + 1);
            f(s, l)
        })
    }
    fn root(&self, size: u64) -> StoreResult<Hash> {
        self.store.root(size)
    }
    fn inclusion_proof(&self, seq: u64, size: u64) -> StoreResult<Vec<Hash>> {
        LogReader::inclusion_proof(self.store, seq, size)
    }
    fn consistency_proof(&self, old: u64, new: u64) -> StoreResult<Vec<Hash>> {
        LogReader::consistency_proof(self.store, old, new)
    }
    fn checkpoints(&self) -> Vec<StoredCheckpoint> {
        LogReader::checkpoints(self.store)
    }
    fn find_audit_id(&self, id: &str) -> StoreResult<Option<u64>> {
        LogReader::find_audit_id(self.store, id)
    }
}

fn fed(r: &Record) -> FedRecord {
    FedRecord {
        cluster: r.cluster.clone(),
        received: r.received,
        event: Event::from_json(&r.event).unwrap(),
    }
}

/// (seq, cluster, received, bytes) of what a follower saw.
type Seen = Vec<(u64, String, i64, Vec<u8>)>;

fn follow(feed: &LiveFeed, reader: &dyn LogReader, range: Range<u64>, stop_after: usize) -> Seen {
    let mut seen = Vec::new();
    feed.follow(reader, range, &mut |seq, rec| {
        let ev = rec.event.expect("every stored event parses");
        seen.push((
            seq,
            rec.cluster.to_string(),
            rec.received.micros(),
            ev.bytes().to_vec(),
        ));
        seen.len() < stop_after
    })
    .unwrap();
    seen
}

fn truth(range: Range<u64>, stop_after: usize) -> Seen {
    range
        .map(|i| {
            let r = record(i);
            (i, r.cluster, r.received.micros(), r.event)
        })
        .take(stop_after)
        .collect()
}

#[test]
fn a_follower_that_keeps_up_reads_nothing_back() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path(), small_opts()).unwrap();
    let feed = LiveFeed::new(64 << 20);
    for b in 0..10u64 {
        let recs: Vec<Record> = (b * 100..b * 100 + 100).map(record).collect();
        let fedrecs = recs.iter().map(fed).collect();
        let a = store.append_batch(recs).unwrap();
        feed.publish(a.seqs.start, fedrecs);
    }
    let counting = Counting {
        store: &store,
        read: Cell::new(0),
    };
    assert_eq!(
        follow(&feed, &counting, 0..1000, usize::MAX),
        truth(0..1000, usize::MAX)
    );
    assert_eq!(
        counting.read.get(),
        0,
        "records were read back from the store"
    );
    assert_eq!(feed.held_records(), 1000);
}

#[test]
fn the_feed_stays_within_its_memory_bound() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path(), small_opts()).unwrap();
    // About 1.2 KB per record: a 64 KB bound keeps a few dozen of them.
    let feed = LiveFeed::new(64 << 10);
    for b in 0..20u64 {
        let recs: Vec<Record> = (b * 50..b * 50 + 50).map(record).collect();
        let fedrecs = recs.iter().map(fed).collect();
        let a = store.append_batch(recs).unwrap();
        feed.publish(a.seqs.start, fedrecs);
    }
    assert!(feed.held_records() <= 100, "{}", feed.held_records());
    let counting = Counting {
        store: &store,
        read: Cell::new(0),
    };
    assert_eq!(
        follow(&feed, &counting, 0..1000, usize::MAX),
        truth(0..1000, usize::MAX)
    );
    assert!(
        counting.read.get() >= 900,
        "old records come from the store"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn followers_see_exactly_the_store(
        sizes in proptest::collection::vec(1u64..60, 1..12),
        published in proptest::collection::vec(any::<bool>(), 12),
        order_seed in any::<u64>(),
        cap_kb in prop_oneof![Just(8usize), Just(40), Just(100_000)],
        ranges in proptest::collection::vec((0u64..400, 0u64..400, 1usize..500), 1..6),
    ) {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path(), small_opts()).unwrap();
        let feed = LiveFeed::new(cap_kb << 10);
        let mut batches = Vec::new();
        let mut next = 0u64;
        for (i, n) in sizes.iter().enumerate() {
            let recs: Vec<Record> = (next..next + n).map(record).collect();
            let fedrecs: Vec<FedRecord> = recs.iter().map(fed).collect();
            let a = store.append_batch(recs).unwrap();
            prop_assert_eq!(a.seqs.clone(), next..next + n);
            if published[i] {
                batches.push((a.seqs.start, fedrecs));
            }
            next += n;
        }
        // Concurrent writers publish in any order.
        let mut order: Vec<usize> = (0..batches.len()).collect();
        let mut s = order_seed;
        for i in (1..order.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut slots: Vec<Option<(u64, Vec<FedRecord>)>> = batches.into_iter().map(Some).collect();
        for i in order {
            if let Some((first, recs)) = slots[i].take() {
                feed.publish(first, recs);
            }
        }
        for (a, b, stop_after) in ranges {
            let (lo, hi) = (a.min(b).min(next), a.max(b).min(next));
            prop_assert_eq!(
                follow(&feed, &store, lo..hi, stop_after),
                truth(lo..hi, stop_after)
            );
        }
    }
}
