//! The live feed: the most recently appended records, already parsed, kept
//! in memory for the store's followers (search indexer, live detection,
//! sinks).
//!
//! Without it every follower reads each new record back from the segments
//! (zstd) and parses its JSON again, although ingest parsed it a moment
//! before: at webhook rates that is most of a core per follower. With it, a
//! follower that keeps up takes the ingest's parsed [`Event`]s; one that
//! falls behind the feed's memory bound reads the store as before. Either way
//! it sees every record exactly once, in sequence order: the feed is a cache,
//! never the source of truth.

use crate::{LogReader, StoreResult};
use kaudit_event::{Event, MicroTime};
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One appended record as its writer had it.
#[derive(Clone, Debug)]
pub struct FedRecord {
    /// Cluster it came from.
    pub cluster: String,
    /// When kaudit received it.
    pub received: MicroTime,
    /// The parsed event; its bytes are the stored bytes.
    pub event: Event,
}

/// What a follower sees of one record, from the feed or from the store.
#[derive(Clone, Copy, Debug)]
pub struct FollowedRecord<'a> {
    /// Cluster it came from.
    pub cluster: &'a str,
    /// When kaudit received it.
    pub received: MicroTime,
    /// The event, or `None` when its stored bytes do not parse (only
    /// possible for records written by something other than ingest).
    pub event: Option<&'a Event>,
    /// The stored bytes of the event.
    pub raw: &'a [u8],
}

struct Batch {
    first: u64,
    records: Arc<[FedRecord]>,
    bytes: usize,
}

/// A bounded window of recently appended, parsed records. See the [module
/// docs](self).
pub struct LiveFeed {
    batches: Mutex<VecDeque<Batch>>,
    max_bytes: usize,
    from_memory: AtomicU64,
    from_store: AtomicU64,
}

/// Default memory bound: about a second of webhook traffic at 100,000
/// events/s.
pub const DEFAULT_FEED_BYTES: usize = 128 << 20;

/// In-memory cost of a parsed event: its bytes, its document (which keeps
/// the request/response bodies as raw JSON copies, so about the bytes
/// again) and the fields' allocations. Measured: about 2.5 times the bytes.
fn cost(r: &FedRecord) -> usize {
    2 * r.event.bytes().len() + r.cluster.len() + 1024
}

impl LiveFeed {
    /// A feed holding at most about `max_bytes` of events.
    pub fn new(max_bytes: usize) -> LiveFeed {
        LiveFeed {
            batches: Mutex::new(VecDeque::new()),
            max_bytes,
            from_memory: AtomicU64::new(0),
            from_store: AtomicU64::new(0),
        }
    }

    /// Offers records appended at `first..first + records.len()`. Batches
    /// may arrive out of order (concurrent writers); the oldest are dropped
    /// past the memory bound.
    pub fn publish(&self, first: u64, records: Vec<FedRecord>) {
        if records.is_empty() || self.max_bytes == 0 {
            return;
        }
        let bytes = records.iter().map(cost).sum();
        let Ok(mut q) = self.batches.lock() else {
            return;
        };
        let at = q.partition_point(|b| b.first < first);
        q.insert(
            at,
            Batch {
                first,
                records: records.into(),
                bytes,
            },
        );
        let mut held: usize = q.iter().map(|b| b.bytes).sum();
        while held > self.max_bytes && q.len() > 1 {
            if let Some(b) = q.pop_front() {
                held -= b.bytes;
            }
        }
    }

    /// The batch holding `seq`, with its first sequence number.
    fn batch_at(&self, seq: u64) -> Option<(u64, Arc<[FedRecord]>)> {
        let q = self.batches.lock().ok()?;
        let i = q.partition_point(|b| b.first <= seq);
        let b = q.get(i.checked_sub(1)?)?;
        (seq < b.first + b.records.len() as u64).then(|| (b.first, b.records.clone()))
    }

    /// Calls `f(seq, record)` for every record of `range` in order, from
    /// memory where the feed still holds it and from `store` (parsing)
    /// otherwise. `f` returns false to stop.
    pub fn follow(
        &self,
        store: &dyn LogReader,
        range: Range<u64>,
        f: &mut dyn FnMut(u64, FollowedRecord<'_>) -> bool,
    ) -> StoreResult<()> {
        let mut next = range.start;
        while next < range.end {
            if let Some((first, recs)) = self.batch_at(next) {
                let end = range.end.min(first + recs.len() as u64);
                self.from_memory.fetch_add(end - next, Ordering::Relaxed);
                for seq in next..end {
                    let r = &recs[(seq - first) as usize];
                    let rec = FollowedRecord {
                        cluster: &r.cluster,
                        received: r.received,
                        event: Some(&r.event),
                        raw: r.event.bytes(),
                    };
                    if !f(seq, rec) {
                        return Ok(());
                    }
                }
                next = end;
                continue;
            }
            // Not in memory: read from the store up to the next held batch.
            let stop_at = self
                .next_held_after(next)
                .unwrap_or(range.end)
                .min(range.end);
            let mut stopped = false;
            let mut last = next;
            store.read(next..stop_at, &mut |seq, leaf| {
                last = seq + 1;
                self.from_store.fetch_add(1, Ordering::Relaxed);
                let ev = Event::from_json(leaf.event).ok();
                let rec = FollowedRecord {
                    cluster: leaf.cluster,
                    received: leaf.received,
                    event: ev.as_ref(),
                    raw: leaf.event,
                };
                stopped = !f(seq, rec);
                !stopped
            })?;
            if stopped {
                return Ok(());
            }
            // Records pruned away are skipped by the store; go on after them.
            next = stop_at.max(last);
        }
        Ok(())
    }

    fn next_held_after(&self, seq: u64) -> Option<u64> {
        let q = self.batches.lock().ok()?;
        q.iter().map(|b| b.first).find(|&f| f > seq)
    }

    /// Records followers took from memory and read back from the store so
    /// far (a growing second number means followers fall behind the feed).
    pub fn served(&self) -> (u64, u64) {
        (
            self.from_memory.load(Ordering::Relaxed),
            self.from_store.load(Ordering::Relaxed),
        )
    }

    /// Records held now (for tests and metrics).
    pub fn held_records(&self) -> usize {
        self.batches
            .lock()
            .map(|q| q.iter().map(|b| b.records.len()).sum())
            .unwrap_or(0)
    }
}

/// [`LiveFeed::follow`] when there may be no feed: without one, every
/// record is read from `store` and parsed.
pub fn follow(
    feed: Option<&LiveFeed>,
    store: &dyn LogReader,
    range: Range<u64>,
    f: &mut dyn FnMut(u64, FollowedRecord<'_>) -> bool,
) -> StoreResult<()> {
    match feed {
        Some(feed) => feed.follow(store, range, f),
        None => store.read(range, &mut |seq, leaf| {
            let ev = Event::from_json(leaf.event).ok();
            f(
                seq,
                FollowedRecord {
                    cluster: leaf.cluster,
                    received: leaf.received,
                    event: ev.as_ref(),
                    raw: leaf.event,
                },
            )
        }),
    }
}

impl Default for LiveFeed {
    fn default() -> Self {
        LiveFeed::new(DEFAULT_FEED_BYTES)
    }
}
