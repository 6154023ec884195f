//! Answering a query: index candidates in output order, confirmed against
//! the stored events, plus a direct scan of the records the index has not
//! reached yet.
//!
//! Order is newest first by (event time, sequence number); a cursor is that
//! pair for the last row shown, so the next page starts strictly after it and
//! records appended meanwhile (newer, higher seq) never shift a page.

use crate::index::{event_time, Index};
use crate::plan::{bounds_within, Bits};
use crate::{check_budget, IndexError, IndexResult};
use kaudit_event::{Event, MicroTime};
use kaudit_query::Query;
use kaudit_store::LogReader;
use std::collections::BinaryHeap;

/// Most hits one page returns.
pub const MAX_LIMIT: usize = 100_000;
/// Records closer than this are read in one range (one bundle decompression
/// serves them all).
/// Hits fetched between two budget checks.
const FETCH_BATCH: usize = 256;
/// Records read between two looks at the query's time budget.
const BUDGET_EVERY: u64 = 1024;

/// Where a page ends: the (time, seq) of its last row.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// Event time, microseconds.
    pub time: i64,
    /// Sequence number.
    pub seq: u64,
}

impl Cursor {
    /// The opaque text form used by the CLI and the API: `<time>.<seq>`.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.time, self.seq)
    }

    /// Parses [`Cursor::encode`]'s form.
    pub fn parse(s: &str) -> IndexResult<Cursor> {
        let bad = || {
            IndexError::Input(format!(
                "invalid cursor {s:?}: expected TIME.SEQ from a previous page"
            ))
        };
        let (t, q) = s.split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            time: t.parse().map_err(|_| bad())?,
            seq: q.parse().map_err(|_| bad())?,
        })
    }
}

/// A search.
#[derive(Clone, Debug)]
pub struct SearchRequest {
    /// The compiled query.
    pub query: Query,
    /// Earliest event time, inclusive (microseconds).
    pub since: Option<i64>,
    /// Latest event time, exclusive (microseconds).
    pub until: Option<i64>,
    /// Most hits to return (capped at [`MAX_LIMIT`]).
    pub limit: usize,
    /// Continue after this row.
    pub cursor: Option<Cursor>,
    /// Oldest first instead of newest first.
    pub reverse: bool,
}

impl SearchRequest {
    /// A newest-first request with no time bounds.
    pub fn new(query: Query, limit: usize) -> SearchRequest {
        SearchRequest {
            query,
            since: None,
            until: None,
            limit,
            cursor: None,
            reverse: false,
        }
    }

    fn in_range(&self, t: i64) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }

    /// Position in output order: smaller comes first.
    fn rank(&self, time: i64, seq: u64) -> i128 {
        let r = (i128::from(time) << 64) + i128::from(seq);
        if self.reverse {
            r
        } else {
            -r
        }
    }
}

/// One matching record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Sequence number in the store.
    pub seq: u64,
    /// Event time, microseconds.
    pub time: i64,
    /// When kaudit received the record.
    pub received: MicroTime,
    /// Cluster the record came from.
    pub cluster: String,
    /// The exact stored event bytes.
    pub event: Vec<u8>,
}

impl Hit {
    /// This row as a cursor.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            time: self.time,
            seq: self.seq,
        }
    }
}

/// What a scan of the unindexed tail covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailScan {
    /// Records read.
    pub scanned: u64,
    /// The sequence number after the last record read: where a follower of
    /// the matches continues.
    pub next: u64,
}

/// Reads the records of `store` from `from` (or its first record) to its
/// end, oldest first, and calls `f` with each one matching `query` within
/// the time bounds; `f` returns false to stop. The part of every search the
/// index has not reached yet, and what `query --follow` polls.
pub fn scan_tail(
    store: &dyn LogReader,
    from: u64,
    query: &Query,
    since: Option<i64>,
    until: Option<i64>,
    f: &mut dyn FnMut(Hit) -> bool,
) -> IndexResult<TailScan> {
    let start = from.max(store.first_seq());
    let end = store.size();
    let mut scan = TailScan {
        scanned: 0,
        next: start,
    };
    if start >= end {
        return Ok(scan);
    }
    let mut err = None;
    let budget = query.budget();
    check_budget(budget)?;
    store.read(start..end, &mut |seq, leaf| {
        scan.scanned += 1;
        scan.next = seq + 1;
        if scan.scanned.is_multiple_of(BUDGET_EVERY) {
            if let Err(e) = check_budget(budget) {
                err = Some(e);
                return false;
            }
        }
        let ev = match Event::from_json(leaf.event) {
            Ok(ev) => ev,
            Err(e) => {
                err = Some(IndexError::Record { seq, source: e });
                return false;
            }
        };
        let t = event_time(&ev, leaf.received);
        if since.is_some_and(|s| t < s) || until.is_some_and(|u| t >= u) {
            return true;
        }
        if !query.matches(&ev, leaf.cluster) {
            return true;
        }
        f(Hit {
            seq,
            time: t,
            received: leaf.received,
            cluster: leaf.cluster.to_string(),
            event: leaf.event.to_vec(),
        })
    })?;
    match err {
        Some(e) => Err(e),
        None => Ok(scan),
    }
}

/// A page of hits.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// Hits in output order.
    pub hits: Vec<Hit>,
    /// Cursor for the next page, when this one is full.
    pub next: Option<Cursor>,
    /// Index rows that were candidates.
    pub candidates: u64,
    /// Records read past the index (not yet indexed).
    pub tail_scanned: u64,
}

/// Runs a search over the index and the unindexed tail of `store`.
pub fn search(
    ix: &Index,
    store: &(dyn LogReader + Sync),
    req: &SearchRequest,
) -> IndexResult<Page> {
    let limit = req.limit.clamp(1, MAX_LIMIT);
    let after0 = req.cursor.map(|c| req.rank(c.time, c.seq));
    let budget = req.query.budget();
    let b = bounds_within(ix, req.query.expr(), budget)?;
    let cand = b.upper;
    let times = ix.times();
    let blocks = ix.time_blocks();
    let base = ix.base();
    let mut hits: Vec<(i128, Hit)> = Vec::new();
    let mut after = after0;
    // Exact bounds: every candidate is a hit, so fetch exactly a page.
    let mut batch = if b.exact {
        limit
    } else {
        (limit + limit / 2).max(32)
    };
    loop {
        let mut heap: BinaryHeap<(i128, u64)> = BinaryHeap::new();
        // Rows are stored in about time order: visiting them in output order
        // fills the heap with the best ranks first. The answer is the same
        // either way; only the work differs.
        let visit = |row: usize, heap: &mut BinaryHeap<(i128, u64)>| {
            let t = times.get(row).copied().unwrap_or(i64::MIN);
            if !req.in_range(t) {
                return;
            }
            let seq = base + row as u64;
            let r = req.rank(t, seq);
            if after.is_some_and(|a| r <= a) {
                return;
            }
            if heap.len() < batch {
                heap.push((r, seq));
            } else if heap.peek().is_some_and(|&(top, _)| r < top) {
                heap.pop();
                heap.push((r, seq));
            }
        };
        // Blocks in output order; once the heap is full, a block whose
        // best possible row (its newest time, or oldest when reversed)
        // cannot beat the worst kept row is skipped whole.
        let words = cand.words();
        let block_words = crate::index::TIME_BLOCK / 64;
        let nblocks = words.len().div_ceil(block_words);
        for k in 0..nblocks {
            if k % 16 == 0 {
                check_budget(budget)?;
            }
            let bi = if req.reverse { k } else { nblocks - 1 - k };
            let w0 = bi * block_words;
            let ws = &words[w0..(w0 + block_words).min(words.len())];
            if ws.iter().all(|&w| w == 0) {
                continue;
            }
            if heap.len() == batch {
                if let (Some(&(top, _)), Some(&(lo, hi))) = (heap.peek(), blocks.get(bi)) {
                    let first = base + (w0 * 64) as u64;
                    let last = first + (ws.len() * 64) as u64;
                    let best = if req.reverse {
                        req.rank(lo, first)
                    } else {
                        req.rank(hi, last)
                    };
                    if best >= top {
                        continue;
                    }
                }
            }
            let order: Box<dyn Iterator<Item = (usize, &u64)>> = if req.reverse {
                Box::new(ws.iter().enumerate())
            } else {
                Box::new(ws.iter().enumerate().rev())
            };
            for (i, &w) in order {
                let mut w = w;
                while w != 0 {
                    let b = if req.reverse {
                        w.trailing_zeros() as usize
                    } else {
                        63 - w.leading_zeros() as usize
                    };
                    w &= !(1u64 << b);
                    visit((w0 + i) * 64 + b, &mut heap);
                }
            }
        }
        if heap.is_empty() {
            break;
        }
        let full = heap.len() == batch;
        let ordered = heap.into_sorted_vec();
        after = ordered.last().map(|&(r, _)| r);
        let seqs: Vec<u64> = ordered.iter().map(|&(_, s)| s).collect();
        let mut found = fetch(store, &seqs, budget, &|_, t, ev, (_, cluster)| {
            req.in_range(t) && req.query.matches(ev, cluster)
        })?;
        found.sort_by_key(|h| req.rank(h.time, h.seq));
        hits.extend(found.into_iter().map(|h| (req.rank(h.time, h.seq), h)));
        if hits.len() >= limit || !full {
            break;
        }
        batch = batch.saturating_mul(4).min(1 << 20);
    }
    hits.truncate(limit);
    let mut page = Page {
        candidates: cand.count() as u64,
        ..Page::default()
    };
    // The tail: records the index has not reached.
    let mut tail: Vec<(i128, Hit)> = Vec::new();
    let scan = scan_tail(
        store,
        ix.next_seq(),
        &req.query,
        req.since,
        req.until,
        &mut |hit| {
            let r = req.rank(hit.time, hit.seq);
            if after0.is_none_or(|a| r > a) {
                tail.push((r, hit));
                if tail.len() >= 2 * limit {
                    tail.sort_by_key(|h| h.0);
                    tail.truncate(limit);
                }
            }
            true
        },
    )?;
    page.tail_scanned = scan.scanned;
    if !tail.is_empty() {
        hits.extend(tail);
        hits.sort_by_key(|h| h.0);
        hits.truncate(limit);
    }
    page.hits = hits.into_iter().map(|(_, h)| h).collect();
    if page.hits.len() == limit {
        page.next = page.hits.last().map(Hit::cursor);
    }
    Ok(page)
}

/// The times of the oldest and newest match. Exact index bounds are read
/// off the time column in one pass; otherwise the newest and the oldest
/// match are searched for (one-hit pages, confirmed against the events).
pub fn time_span(
    ix: &Index,
    store: &(dyn LogReader + Sync),
    query: &Query,
    since: Option<i64>,
    until: Option<i64>,
    facets: Option<&crate::facets::Facets>,
) -> IndexResult<Option<(i64, i64)>> {
    let (lo, hi) = (since.unwrap_or(i64::MIN), until.unwrap_or(i64::MAX));
    let mut span: Option<(i64, i64)> = None;
    let mut widen = |t: i64| {
        if t >= lo && t < hi {
            span = Some(span.map_or((t, t), |(a, z)| (a.min(t), z.max(t))));
        }
    };
    // Every event, no bounds: the running span of the time column.
    let all = matches!(query.expr(), kaudit_query::Expr::All) && since.is_none() && until.is_none();
    if let (true, Some(f)) = (all, facets) {
        if let Some((a, z)) = f.time_span(ix) {
            widen(a);
            widen(z);
        }
        let tail = Index::empty_at(ix.next_seq());
        for_each_match(&tail, store, query, since, until, &mut |_, t, _, _| {
            widen(t);
            true
        })?;
        return Ok(span);
    }
    let b = bounds_within(ix, query.expr(), query.budget())?;
    if !b.exact {
        let one = |reverse| -> IndexResult<Option<i64>> {
            let req = SearchRequest {
                since,
                until,
                reverse,
                ..SearchRequest::new(query.clone(), 1)
            };
            Ok(search(ix, store, &req)?.hits.first().map(|h| h.time))
        };
        return Ok(one(true)?.zip(one(false)?));
    }
    let times = ix.times();
    for (wi, &w) in b.lower.words().iter().enumerate() {
        let base = wi * 64;
        // Whole words inside the range need only their min and max.
        if let (u64::MAX, Some(block)) = (w, times.get(base..base + 64)) {
            let (mn, mx) = block
                .iter()
                .fold((i64::MAX, i64::MIN), |(a, z), &t| (a.min(t), z.max(t)));
            if mn >= lo && mx < hi {
                widen(mn);
                widen(mx);
                continue;
            }
        }
        let mut w = w;
        while w != 0 {
            let row = base + w.trailing_zeros() as usize;
            w &= w - 1;
            if let Some(&t) = times.get(row) {
                widen(t);
            }
        }
    }
    // The tail the index has not reached.
    let tail = Index::empty_at(ix.next_seq());
    for_each_match(&tail, store, query, since, until, &mut |_, t, _, _| {
        widen(t);
        true
    })?;
    Ok(span)
}

/// Decides whether a fetched record is kept: (seq, time, event, (seq, cluster)).
pub(crate) type KeepFn<'a> = dyn Fn(u64, i64, &Event, (u64, &str)) -> bool + Sync + 'a;

/// Reads the records `seqs` (any order) and keeps those `keep` accepts;
/// `keep` gets (seq, cluster), the event time and the parsed event. Gives
/// up once `budget` is spent (checked between reads).
pub(crate) fn fetch(
    store: &(dyn LogReader + Sync),
    seqs: &[u64],
    budget: Option<kaudit_query::Budget>,
    keep: &KeepFn<'_>,
) -> IndexResult<Vec<Hit>> {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    // The store reads only the frames that hold them, a budget check per batch.
    let read = |seqs: &[u64]| -> IndexResult<Vec<Hit>> {
        let mut out = Vec::new();
        for batch in seqs.chunks(FETCH_BATCH) {
            check_budget(budget)?;
            let mut err = None;
            store.read_seqs(batch, &mut |seq, leaf| match Event::from_json(leaf.event) {
                Ok(ev) => {
                    let t = event_time(&ev, leaf.received);
                    if keep(seq, t, &ev, (seq, leaf.cluster)) {
                        out.push(Hit {
                            seq,
                            time: t,
                            received: leaf.received,
                            cluster: leaf.cluster.to_string(),
                            event: leaf.event.to_vec(),
                        });
                    }
                    true
                }
                Err(e) => {
                    err = Some(IndexError::Record { seq, source: e });
                    false
                }
            })?;
            if let Some(e) = err {
                return Err(e);
            }
        }
        Ok(out)
    };
    if sorted.len() < 16 {
        return read(&sorted);
    }
    // Many scattered reads: decompress on two threads.
    let (a, b) = sorted.split_at(sorted.len() / 2);
    let (ra, rb) = std::thread::scope(|s| {
        let h = s.spawn(|| read(a));
        let rb = read(b);
        (h.join(), rb)
    });
    let mut out = ra.map_err(|_| IndexError::Internal("record reader thread panicked"))??;
    out.extend(rb?);
    Ok(out)
}

/// Calls `f(seq, time, event, cluster)` for every record matching the query
/// within the time bounds, index part first (in seq order), then the tail;
/// `f` returns false to stop. Used by stats, history and rbac, which need
/// every match rather than a page.
pub fn for_each_match(
    ix: &Index,
    store: &dyn LogReader,
    query: &Query,
    since: Option<i64>,
    until: Option<i64>,
    f: &mut dyn FnMut(u64, i64, &Event, &str) -> bool,
) -> IndexResult<()> {
    let req = SearchRequest {
        since,
        until,
        ..SearchRequest::new(query.clone(), 1)
    };
    let budget = query.budget();
    let b = bounds_within(ix, query.expr(), budget)?;
    let times = ix.times();
    let mut cand = Bits::empty(ix.rows());
    b.upper.for_each(|row| {
        if req.in_range(times.get(row).copied().unwrap_or(i64::MIN)) {
            cand.set(row)
        }
    });
    let base = ix.base();
    let mut rows = Vec::new();
    cand.for_each(|r| rows.push(base + r as u64));
    let mut stopped = false;
    for chunk in rows.chunks(4096) {
        let mut err = None;
        for batch in chunk.chunks(FETCH_BATCH) {
            check_budget(budget)?;
            store.read_seqs(batch, &mut |seq, leaf| match Event::from_json(leaf.event) {
                Ok(ev) => {
                    let t = event_time(&ev, leaf.received);
                    if req.in_range(t)
                        && query.matches(&ev, leaf.cluster)
                        && !f(seq, t, &ev, leaf.cluster)
                    {
                        stopped = true;
                        return false;
                    }
                    true
                }
                Err(e) => {
                    err = Some(IndexError::Record { seq, source: e });
                    false
                }
            })?;
            if let Some(e) = err.take() {
                return Err(e);
            }
            if stopped {
                return Ok(());
            }
        }
    }
    let start = ix.next_seq().max(store.first_seq());
    let mut err = None;
    check_budget(budget)?;
    let mut read = 0u64;
    store.read(start..store.size(), &mut |seq, leaf| {
        read += 1;
        if read.is_multiple_of(BUDGET_EVERY) {
            if let Err(e) = check_budget(budget) {
                err = Some(e);
                return false;
            }
        }
        match Event::from_json(leaf.event) {
            Ok(ev) => {
                let t = event_time(&ev, leaf.received);
                !(req.in_range(t)
                    && query.matches(&ev, leaf.cluster)
                    && !f(seq, t, &ev, leaf.cluster))
            }
            Err(e) => {
                err = Some(IndexError::Record { seq, source: e });
                false
            }
        }
    })?;
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
