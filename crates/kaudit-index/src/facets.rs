//! Per-value row counts of whole dictionary columns, extended as the index
//! grows: the all-time top values of a field (the dashboard's top users,
//! resources, namespaces and codes) and autocomplete's value counts are
//! read from here instead of a pass over every row per request. Columns
//! asked for latency percentiles also keep each value's latencies sorted
//! (see [`crate::latency`]), and histograms of every event (the search
//! page's, and the dashboard's by verb) come from per-minute counts: none
//! of those needs a pass either.

use crate::index::{Index, NO_LATENCY};
use crate::latency::SortedRuns;
use std::collections::HashMap;
use std::sync::Mutex;

/// Rows counted per read of a column chunk.
const CHUNK_ROWS: usize = 1 << 16;
/// Most latencies kept sorted, over all columns together, by default (4
/// bytes each: 128 MiB). Asking for a column that does not fit drops the
/// least recently asked other columns first; a column that alone has more
/// is answered by a pass over its rows instead. Either way the percentiles
/// are exact: the budget only decides what is kept between requests.
pub const MAX_KEPT_LATENCIES: usize = 1 << 25;
/// Rows whose latencies are sorted into the runs at a time.
const LATENCY_BATCH_ROWS: usize = 1 << 22;

/// The counts of one column over its first `rows` rows.
struct Facet {
    covered: Covered,
    counts: Vec<u64>,
}

/// The index a kept value was computed over, and how many of its rows.
#[derive(Clone, Copy)]
struct Covered {
    generation: u64,
    base: u64,
    rows: usize,
}

impl Covered {
    /// None of `ix`'s rows yet.
    fn start(ix: &Index) -> Covered {
        Covered {
            generation: ix.generation(),
            base: ix.base(),
            rows: 0,
        }
    }

    /// Whether the value can be extended to `ix`, which has `len` rows:
    /// rows never change once indexed, but dropping rows makes a new
    /// generation (or base).
    fn extends_to(&self, ix: &Index, len: usize) -> bool {
        self.generation == ix.generation() && self.base == ix.base() && self.rows <= len
    }
}

/// The kept value under `key`, started afresh unless it can be extended to
/// `ix`'s `len` rows.
fn kept_for<'a, K: std::hash::Hash + Eq, F>(
    map: &'a mut HashMap<K, F>,
    key: K,
    ix: &Index,
    len: usize,
    covered: impl Fn(&F) -> Covered,
    fresh: impl Fn() -> F,
) -> &'a mut F {
    let f = map.entry(key).or_insert_with(&fresh);
    if !covered(f).extends_to(ix, len) {
        *f = fresh();
    }
    f
}

/// Row counts per dictionary id, per column slot, kept for one index.
pub struct Facets {
    slots: Mutex<HashMap<usize, Facet>>,
    latency: Mutex<LatencyCache>,
    /// Most latencies kept over all columns (see [`MAX_KEPT_LATENCIES`]).
    latency_budget: usize,
    minutes: Mutex<HashMap<Option<usize>, MinuteFacet>>,
    times: Mutex<Option<Span>>,
}

/// The sorted latencies per id of one column over its first `rows` rows.
struct LatencyFacet {
    covered: Covered,
    kept: usize,
    by_id: Vec<SortedRuns>,
    /// More than the whole budget on its own: nothing kept (until the
    /// index is replaced).
    over: bool,
    /// When it was last asked for ([`LatencyCache::tick`]), for eviction.
    last_used: u64,
}

/// The kept latencies of every column asked for, within one budget.
#[derive(Default)]
struct LatencyCache {
    by_slot: HashMap<usize, LatencyFacet>,
    /// Counts requests, to find the least recently asked column.
    tick: u64,
}

impl LatencyCache {
    /// Latencies kept by columns other than `slot`.
    fn others(&self, slot: usize) -> usize {
        self.by_slot
            .iter()
            .filter(|(s, _)| **s != slot)
            .map(|(_, f)| f.kept)
            .sum()
    }

    /// Drops the least recently asked column other than `slot`; false when
    /// there is none left.
    fn evict_other(&mut self, slot: usize) -> bool {
        let victim = self
            .by_slot
            .iter()
            .filter(|(s, f)| **s != slot && f.kept > 0)
            .min_by_key(|(_, f)| f.last_used)
            .map(|(s, _)| *s);
        victim.is_some_and(|v| self.by_slot.remove(&v).is_some())
    }
}

impl Default for Facets {
    fn default() -> Facets {
        Facets::with_latency_budget(MAX_KEPT_LATENCIES)
    }
}

/// Rows per minute (and per id of one column) over the first `rows` rows:
/// `cells[(minute - first) * width + id]`.
struct MinuteFacet {
    covered: Covered,
    first: i64,
    minutes: usize,
    width: usize,
    cells: Vec<u64>,
    /// The newest minute holding a row (cells past it are spare room).
    newest: i64,
    /// Spans more than [`MAX_MINUTE_CELLS`]: nothing kept.
    over: bool,
}

/// A minute in microseconds: the resolution of the kept histograms.
pub const MINUTE_US: i64 = 60_000_000;
/// Most (minute, id) cells kept per column (8 bytes each).
pub const MAX_MINUTE_CELLS: usize = 1 << 21;

impl MinuteFacet {
    /// Makes room for `minute` and `id`; false when that passes the limit.
    ///
    /// Rows come in about time order, so the span mostly grows by one
    /// minute at its end: growing the cells to exactly that copied every
    /// cell kept so far once per new minute (quadratic, most of a month
    /// report's time). The cells grow to twice the minutes instead (within
    /// the limit); minutes past `newest` hold zeros, which is their count.
    /// The limit applies to the minutes that hold rows, as before.
    fn fit(&mut self, minute: i64, id: usize) -> bool {
        let empty = self.minutes == 0;
        let first = if empty {
            minute
        } else {
            self.first.min(minute)
        };
        let last = if empty {
            minute
        } else {
            self.newest.max(minute)
        };
        let width = if id < self.width {
            self.width
        } else {
            (id + 1).next_power_of_two()
        };
        if first == self.first && width == self.width && last < self.first + self.minutes as i64 {
            self.newest = last;
            return true;
        }
        let Ok(needed) = usize::try_from(last - first + 1) else {
            return false;
        };
        if needed.saturating_mul(width) > MAX_MINUTE_CELLS {
            return false;
        }
        let minutes = needed
            .max(self.minutes.saturating_mul(2))
            .min(MAX_MINUTE_CELLS / width)
            .max(needed);
        let mut cells = vec![0u64; minutes * width];
        // Only minutes up to the newest row hold counts.
        let held = if empty {
            0
        } else {
            usize::try_from(self.newest - self.first + 1).unwrap_or(0)
        };
        for m in 0..held.min(self.minutes) {
            let to = (self.first - first) as usize + m;
            cells[to * width..to * width + self.width]
                .copy_from_slice(&self.cells[m * self.width..(m + 1) * self.width]);
        }
        (self.first, self.minutes, self.width, self.cells) = (first, minutes, width, cells);
        self.newest = last;
        true
    }
}

/// The oldest and newest time over the first `rows` rows.
#[derive(Clone, Copy)]
struct Span {
    covered: Covered,
    oldest: i64,
    newest: i64,
}

impl Facets {
    /// An empty cache.
    pub fn new() -> Facets {
        Facets::default()
    }

    /// An empty cache that keeps at most `budget` latencies (4 bytes each)
    /// over all columns together, instead of [`MAX_KEPT_LATENCIES`]: what a
    /// memory-tight deployment (or a test) sets.
    pub fn with_latency_budget(budget: usize) -> Facets {
        Facets {
            slots: Mutex::default(),
            latency: Mutex::default(),
            latency_budget: budget,
            minutes: Mutex::default(),
            times: Mutex::default(),
        }
    }

    /// Latencies kept now over all columns (at most the budget, plus one
    /// batch of rows while a column is being extended).
    pub fn kept_latencies(&self) -> usize {
        self.latency
            .lock()
            .map(|c| c.by_slot.values().map(|f| f.kept).sum())
            .unwrap_or(0)
    }

    /// How many of `ix`'s rows hold each id of column `slot` (index = id;
    /// id 0 = value unknown to the index). Only rows added since the last
    /// call are counted; None when the column is not loaded or does not
    /// cover every row.
    pub fn counts(&self, ix: &Index, slot: usize) -> Option<Vec<u64>> {
        let mut slots = self.slots.lock().ok()?;
        Self::extend(&mut slots, ix, slot).map(|f| f.counts.clone())
    }

    /// The latencies (sorted runs) per id of column `slot` (index = id)
    /// over all of `ix`'s rows, extended like the counts and kept from the
    /// first call on. None when the column or the latencies are not loaded
    /// or do not cover every row, or the column alone has more than the
    /// budget ([`MAX_KEPT_LATENCIES`] unless set): then the caller makes a
    /// pass over the rows, so the answer is exact either way. Keeping this
    /// column may drop the least recently asked others (the budget is for
    /// all columns together).
    pub fn latency(&self, ix: &Index, slot: usize) -> Option<Vec<SortedRuns>> {
        let mut cache = self.latency.lock().ok()?;
        cache.tick += 1;
        let tick = cache.tick;
        Self::extend_latency(&mut cache, ix, slot, self.latency_budget, Some(tick))
    }

    /// Extends the kept latencies of `slot` to `ix`'s rows within `budget`
    /// (dropping other columns, least recently asked first, to make room);
    /// `asked` marks it used now.
    fn extend_latency(
        cache: &mut LatencyCache,
        ix: &Index,
        slot: usize,
        budget: usize,
        asked: Option<u64>,
    ) -> Option<Vec<SortedRuns>> {
        let (col, _) = ix.column(slot)?;
        let lat = ix.latencies()?;
        if col.len() != ix.rows() || lat.len() != ix.rows() {
            cache.by_slot.remove(&slot);
            return None;
        }
        let f = kept_for(
            &mut cache.by_slot,
            slot,
            ix,
            col.len(),
            |f| f.covered,
            || LatencyFacet {
                covered: Covered::start(ix),
                kept: 0,
                by_id: Vec::new(),
                over: false,
                last_used: 0,
            },
        );
        if let Some(t) = asked {
            f.last_used = t;
        }
        // Worked on outside the map, so other columns can be dropped meanwhile.
        let mut f = cache.by_slot.remove(&slot)?;
        let mut others = cache.others(slot);
        let mut ids = Vec::with_capacity(CHUNK_ROWS);
        while f.covered.rows < col.len() && !f.over {
            // A batch of rows gathered per id, then sorted into the runs.
            let end = (f.covered.rows + LATENCY_BATCH_ROWS).min(col.len());
            let mut batch: Vec<Vec<u32>> = Vec::new();
            let mut at = f.covered.rows;
            while at < end {
                let to = (at + CHUNK_ROWS).min(end);
                col.ids_into(at..to, &mut ids);
                for (&id, &l) in ids.iter().zip(lat.get(at..to).unwrap_or(&[])) {
                    if l != NO_LATENCY {
                        let id = id as usize;
                        if id >= batch.len() {
                            batch.resize_with(id + 1, Vec::new);
                        }
                        batch[id].push(l);
                    }
                }
                at = to;
            }
            if batch.len() > f.by_id.len() {
                f.by_id.resize_with(batch.len(), SortedRuns::default);
            }
            for (runs, b) in f.by_id.iter_mut().zip(batch) {
                f.kept += b.len();
                runs.add(b);
            }
            f.covered.rows = end;
            while others + f.kept > budget {
                if !cache.evict_other(slot) {
                    f.over = true;
                    f.by_id = Vec::new();
                    f.kept = 0;
                    break;
                }
                others = cache.others(slot);
            }
        }
        let out = (!f.over).then(|| f.by_id.clone());
        cache.by_slot.insert(slot, f);
        out
    }

    /// Rows of `ix` per histogram bucket (and id of column `slot`), laid out
    /// `bucket * width + id` for `buckets` buckets of `every` µs from
    /// `first`, from counts kept per minute. None unless `every` and `first`
    /// are whole minutes, and so are the bounds of `range` (since, until),
    /// or when the column is not loaded or the counts would take more than
    /// [`MAX_MINUTE_CELLS`]. Rows outside the buckets or the range are not
    /// counted; ids at or past `width` are not either.
    pub fn bucket_counts(
        &self,
        ix: &Index,
        slot: Option<usize>,
        (first, every, buckets, width): (i64, i64, usize, usize),
        (since, until): (Option<i64>, Option<i64>),
    ) -> Option<Vec<u64>> {
        let whole = |t: Option<i64>| t.is_none_or(|t| t % MINUTE_US == 0);
        if every <= 0
            || every % MINUTE_US != 0
            || first % MINUTE_US != 0
            || !whole(since)
            || !whole(until)
        {
            return None;
        }
        let mut facets = self.minutes.lock().ok()?;
        let f = Self::extend_minutes(&mut facets, ix, slot)?;
        let mut out = vec![0u64; buckets.checked_mul(width)?];
        let per = every / MINUTE_US;
        let from = first.div_euclid(MINUTE_US);
        for m in 0..f.minutes {
            let minute = f.first + m as i64;
            let Ok(b) = usize::try_from((minute - from).div_euclid(per)) else {
                continue;
            };
            let at = minute.saturating_mul(MINUTE_US);
            if minute < from
                || b >= buckets
                || since.is_some_and(|s| at < s)
                || until.is_some_and(|u| at >= u)
            {
                continue;
            }
            let row = &f.cells[m * f.width..(m + 1) * f.width];
            for (o, &c) in out[b * width..(b + 1) * width].iter_mut().zip(row) {
                *o += c;
            }
        }
        Some(out)
    }

    fn extend_minutes<'a>(
        facets: &'a mut HashMap<Option<usize>, MinuteFacet>,
        ix: &Index,
        slot: Option<usize>,
    ) -> Option<&'a MinuteFacet> {
        let times = ix.times();
        let col = match slot {
            Some(s) => Some(ix.column(s)?.0),
            None => None,
        };
        if times.len() != ix.rows() || col.is_some_and(|c| c.len() != ix.rows()) {
            facets.remove(&slot);
            return None;
        }
        let f = kept_for(
            facets,
            slot,
            ix,
            times.len(),
            |f| f.covered,
            || MinuteFacet {
                covered: Covered::start(ix),
                first: 0,
                minutes: 0,
                width: 1,
                cells: Vec::new(),
                newest: 0,
                over: false,
            },
        );
        let mut ids = Vec::with_capacity(CHUNK_ROWS);
        while f.covered.rows < times.len() && !f.over {
            let end = (f.covered.rows + CHUNK_ROWS).min(times.len());
            match col {
                Some(c) => c.ids_into(f.covered.rows..end, &mut ids),
                None => {
                    ids.clear();
                    ids.resize(end - f.covered.rows, 0);
                }
            }
            // The cell of the previous row: times are nearly in order.
            let mut cur = (i64::MIN, usize::MAX);
            for (&t, &id) in times
                .get(f.covered.rows..end)
                .unwrap_or(&[])
                .iter()
                .zip(&ids)
            {
                let minute = t.div_euclid(MINUTE_US);
                let id = id as usize;
                if minute != cur.0 || id >= f.width {
                    if !f.fit(minute, id) {
                        f.over = true;
                        break;
                    }
                    cur = (minute, (minute - f.first) as usize * f.width);
                }
                f.cells[cur.1 + id] += 1;
            }
            f.covered.rows = end;
        }
        if f.over {
            f.cells = Vec::new();
            return None;
        }
        Some(&*f)
    }

    /// The oldest and newest event time over all of `ix`'s rows (None when
    /// it has none), extended like the counts.
    pub fn time_span(&self, ix: &Index) -> Option<(i64, i64)> {
        let times = ix.times();
        let mut cached = self.times.lock().ok()?;
        let (mut rows, mut lo, mut hi) = match *cached {
            Some(s) if s.covered.extends_to(ix, times.len()) => {
                (s.covered.rows, s.oldest, s.newest)
            }
            _ => (0, i64::MAX, i64::MIN),
        };
        if let Some(new) = times.get(rows..) {
            (lo, hi) = new.iter().fold((lo, hi), |(a, z), &t| (a.min(t), z.max(t)));
            rows = times.len();
        }
        *cached = Some(Span {
            covered: Covered {
                rows,
                ..Covered::start(ix)
            },
            oldest: lo,
            newest: hi,
        });
        (rows > 0).then_some((lo, hi))
    }

    /// Brings the counts of every loaded column up to `ix`'s rows, so the
    /// first request after new rows (or after start) finds them ready.
    /// The indexer calls this after each step.
    pub fn refresh(&self, ix: &Index) {
        if let Ok(mut slots) = self.slots.lock() {
            for slot in 0..crate::index::DICT_FIELDS.len() {
                Self::extend(&mut slots, ix, slot);
            }
        }
        if let Ok(mut cache) = self.latency.lock() {
            let kept: Vec<usize> = cache.by_slot.keys().copied().collect();
            for slot in kept {
                // One dropped to make room for another stays dropped.
                if cache.by_slot.contains_key(&slot) {
                    Self::extend_latency(&mut cache, ix, slot, self.latency_budget, None);
                }
            }
        }
        if let Ok(mut facets) = self.minutes.lock() {
            let kept: Vec<Option<usize>> = facets.keys().copied().collect();
            for slot in kept {
                Self::extend_minutes(&mut facets, ix, slot);
            }
        }
        self.time_span(ix);
    }

    fn extend<'a>(
        slots: &'a mut HashMap<usize, Facet>,
        ix: &Index,
        slot: usize,
    ) -> Option<&'a Facet> {
        let (col, _) = ix.column(slot)?;
        if col.len() != ix.rows() {
            return None;
        }
        let f = kept_for(
            slots,
            slot,
            ix,
            col.len(),
            |f| f.covered,
            || Facet {
                covered: Covered::start(ix),
                counts: Vec::new(),
            },
        );
        let mut ids = Vec::with_capacity(CHUNK_ROWS);
        while f.covered.rows < col.len() {
            let end = (f.covered.rows + CHUNK_ROWS).min(col.len());
            col.ids_into(f.covered.rows..end, &mut ids);
            for &id in &ids {
                let id = id as usize;
                if id >= f.counts.len() {
                    f.counts.resize(id + 1, 0);
                }
                f.counts[id] += 1;
            }
            f.covered.rows = end;
        }
        Some(f)
    }
}

#[cfg(test)]
mod minute_tests {
    use super::{Covered, MinuteFacet, MAX_MINUTE_CELLS};
    use proptest::prelude::*;

    fn empty() -> MinuteFacet {
        MinuteFacet {
            covered: Covered {
                generation: 0,
                base: 0,
                rows: 0,
            },
            first: 0,
            minutes: 0,
            width: 1,
            cells: Vec::new(),
            newest: 0,
            over: false,
        }
    }

    proptest! {
        /// Whatever order minutes and ids come in (mostly ascending, with
        /// steps back and new ids), the grown cells hold exactly each
        /// (minute, id)'s count and zeros elsewhere.
        #[test]
        fn grown_cells_hold_exactly_the_counts(
            start in -50i64..50,
            steps in prop::collection::vec((-3i64..6, 0usize..9), 1..300),
        ) {
            let mut f = empty();
            let mut want = std::collections::BTreeMap::new();
            let mut minute = start;
            for (step, id) in steps {
                minute += step;
                prop_assert!(f.fit(minute, id));
                let at = (minute - f.first) as usize * f.width + id;
                f.cells[at] += 1;
                *want.entry((minute, id)).or_insert(0u64) += 1;
            }
            prop_assert!(f.cells.len() == f.minutes * f.width);
            for m in 0..f.minutes {
                for id in 0..f.width {
                    let got = f.cells[m * f.width + id];
                    let w = want.get(&(f.first + m as i64, id)).copied().unwrap_or(0);
                    prop_assert_eq!(got, w, "minute {} id {}", f.first + m as i64, id);
                }
            }
        }
    }

    #[test]
    fn a_span_past_the_limit_is_refused_but_spare_room_never_is() {
        let mut f = empty();
        let limit = (MAX_MINUTE_CELLS / 2) as i64;
        // Width 2: `limit` minutes fit exactly, the spare room included.
        for m in 0..limit {
            assert!(f.fit(m, 1), "minute {m}");
        }
        assert!(f.minutes * f.width <= MAX_MINUTE_CELLS);
        assert!(!f.fit(limit, 1), "one more minute passes the limit");
    }
}
