//! Counts, top-N, time histograms and latency percentiles per group.
//!
//! When the query is decided exactly by the index and every `--by` field is
//! a dictionary column, counting runs over the columns alone (ids first,
//! values at the end, multi-valued fields counted once per value); otherwise
//! each candidate is confirmed against the stored event. Records past the
//! index are always read from the store.

use crate::facets::Facets;
use crate::index::Column;
use crate::index::{Index, NO_LATENCY};
use crate::latency::{GroupLatency, SlotHist, Wanted};
use crate::plan::{bounds_within, Bits};
use crate::search::{fetch, for_each_match};
use crate::{IndexError, IndexResult};
use kaudit_event::Event;
use kaudit_query::{Expr, Field, LazyJson, Query};
use kaudit_store::LogReader;
use std::collections::HashMap;

/// Most `--by` fields.
pub const MAX_BY: usize = 4;
/// Most groups kept before top-N (bounds memory on high-cardinality fields).
pub const MAX_GROUPS: usize = 5_000_000;
/// Most histogram buckets.
pub const MAX_BUCKETS: i64 = 1_000_000;
/// Most (bucket, value) slots counted in a flat array rather than a map.
const MAX_DENSE_SLOTS: usize = 1 << 20;
/// Rows counted per block on the index-only path (a multiple of 64).
const STATS_BLOCK_ROWS: usize = 4096;
/// Interleaved counter copies on the flat counting path.
const LANES: usize = 4;

/// What to count.
#[derive(Clone, Debug)]
pub struct StatsRequest {
    /// Which events.
    pub query: Query,
    /// Earliest event time, inclusive (microseconds).
    pub since: Option<i64>,
    /// Latest event time, exclusive (microseconds).
    pub until: Option<i64>,
    /// Group by these fields (empty: one group).
    pub by: Vec<Field>,
    /// Keep the N largest groups (0: all).
    pub top: usize,
    /// Bucket width in microseconds for a histogram.
    pub every: Option<i64>,
    /// Also compute latency percentiles.
    pub latency: bool,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u32,
    /// 90th percentile.
    pub p90: u32,
    /// 99th percentile.
    pub p99: u32,
    /// Events with a known latency.
    pub samples: u64,
}

/// One output row.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StatsRow {
    /// Bucket start (microseconds) for histograms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<i64>,
    /// One value per `by` field ("" when the event has none).
    pub key: Vec<String>,
    /// Events in the group (and bucket).
    pub count: u64,
    /// Latency percentiles when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
}

/// The answer.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StatsReport {
    /// Field names of `key`.
    pub by: Vec<String>,
    /// Matching events.
    pub total: u64,
    /// Rows: groups by count (largest first), or per bucket in time order.
    pub rows: Vec<StatsRow>,
    /// Whether counting ran on the index columns alone.
    pub from_index: bool,
}

#[derive(Default)]
struct Acc {
    count: u64,
    lat: GroupLatency,
}

impl Acc {
    fn add(&mut self, n: u64, lat: Option<u32>) {
        self.count += n;
        if let Some(l) = lat.filter(|&l| l != NO_LATENCY) {
            self.lat.samples.push(l);
        }
    }
}

type Groups = HashMap<(Option<i64>, Vec<String>), Acc>;
/// (bucket, dictionary ids of the `by` fields).
type IdKey = (Option<i64>, [u32; MAX_BY]);

/// Adds a run to the map; false when that would exceed [`MAX_GROUPS`].
fn merge_into(map: &mut HashMap<IdKey, Acc>, key: IdKey, acc: Acc) -> bool {
    if map.len() >= MAX_GROUPS && !map.contains_key(&key) {
        return false;
    }
    let e = map.entry(key).or_default();
    e.count += acc.count;
    e.lat.merge(acc.lat);
    true
}

/// Runs a stats request over the index and the tail of `store`.
pub fn stats(
    ix: &Index,
    store: &(dyn LogReader + Sync),
    req: &StatsRequest,
) -> IndexResult<StatsReport> {
    stats_using(ix, store, req, None)
}

/// [`stats`], answering all-time counts of one field from `facets` (kept
/// across requests by a long-lived backend) when given.
pub fn stats_using(
    ix: &Index,
    store: &(dyn LogReader + Sync),
    req: &StatsRequest,
    facets: Option<&Facets>,
) -> IndexResult<StatsReport> {
    if req.by.len() > MAX_BY {
        return Err(IndexError::Input(format!(
            "at most {MAX_BY} --by fields, got {}",
            req.by.len()
        )));
    }
    if let Some(e) = req.every {
        if e <= 0 {
            return Err(IndexError::Input("--every must be positive".into()));
        }
        if let (Some(s), Some(u)) = (req.since, req.until) {
            // In i128: the span of two i64 bounds cannot overflow there.
            if (i128::from(u) - i128::from(s)) / i128::from(e) > i128::from(MAX_BUCKETS) {
                return Err(IndexError::Input(format!(
                    "--every is too small for the time range: more than {MAX_BUCKETS} buckets"
                )));
            }
            if s.div_euclid(e).checked_mul(e).is_none() {
                return Err(IndexError::Input(format!(
                    "--since {s} is too far in the past for buckets of {e} µs: its bucket would start before the earliest representable time"
                )));
            }
        }
    }
    let bucket = |t: i64| req.every.map(|e| bucket_start(t, e));
    let budget = req.query.budget();
    let mut b = bounds_within(ix, req.query.expr(), budget)?;
    let slots: Option<Vec<usize>> = req
        .by
        .iter()
        .map(|f| Index::dict_slot(f).filter(|&s| ix.column(s).is_some()))
        .collect();
    let lat_col = ix.latencies();
    let fast = b.exact && slots.is_some() && (!req.latency || lat_col.is_some());
    let mut groups: Groups = HashMap::new();
    let mut total = 0u64;
    // Latencies only counted by bucket on the flat path, and the layout to
    // read them again with (pass 2 of `crate::latency::resolve`).
    let mut counted_lat: Option<(SlotHist, FlatLayout)> = None;
    if let (true, Some(slots)) = (fast, &slots) {
        let times = ix.times();
        let in_range = |t: i64| req.since.is_none_or(|s| t >= s) && req.until.is_none_or(|u| t < u);
        let cols: Vec<_> = slots.iter().filter_map(|&s| ix.column(s)).collect();
        let mut by_ids: HashMap<IdKey, Acc> = HashMap::new();
        let mut dense: Vec<Acc> = Vec::new();
        let dense_ok = req.every.is_none() && cols.len() == 1;
        let mut run: Option<(IdKey, Acc)> = None;
        let mut overflow = false;
        // Rows whose group value the index does not hold: read from the store.
        let mut unknown: Vec<u64> = Vec::new();
        if dense_ok {
            dense.resize_with(cols[0].1.len() + 1, Acc::default);
        }
        // A histogram by one field over a bounded range: one slot per
        // (bucket, value id), so rows whose values alternate (verbs, codes)
        // are counted without hashing.
        let buckets = match (req.every, req.since, req.until) {
            (Some(e), Some(s), Some(u)) if cols.len() <= 1 && u > s => {
                // Checked above: `first` is representable; the count is
                // computed in i128 so no bound can overflow it.
                let first = bucket_start(s, e);
                let (e128, first128) = (i128::from(e), i128::from(first));
                let n = ((i128::from(u) - 1).div_euclid(e128) * e128 - first128) / e128 + 1;
                let width = cols.first().map_or(1, |(_, d)| d.len() + 1);
                usize::try_from(n)
                    .ok()
                    .filter(|&n| n.saturating_mul(width) <= MAX_DENSE_SLOTS)
                    .map(|n| (first, e, width, n))
            }
            _ => None,
        };
        let mut bucketed: Vec<Acc> = Vec::new();
        if let (Some((_, _, width, n)), false) = (buckets, cols.is_empty()) {
            bucketed.resize_with(width * n, Acc::default);
        }
        // Blocks of rows: each column's ids are copied out once per block
        // (width dispatched once), then the block's rows are counted from
        // plain slices.
        let mut ids: Vec<Vec<u32>> = vec![Vec::with_capacity(STATS_BLOCK_ROWS); cols.len()];
        let flat = if cols.len() > 1 || (req.latency && lat_col.is_none()) {
            None
        } else if req.every.is_none() {
            Some(FlatLayout {
                first: 0,
                every: 0,
                width: cols.first().map_or(1, |(_, d)| d.len() + 1),
                buckets: 1,
            })
        } else {
            buckets.map(|(first, every, width, buckets)| FlatLayout {
                first,
                every,
                width,
                buckets,
            })
        };
        // Every row, no time bounds, one field: the running per-id counts.
        // With latencies, their sorted runs are kept there too.
        let whole_column = match (facets, slots.as_slice()) {
            (Some(f), [slot])
                if matches!(req.query.expr(), Expr::All)
                    && req.since.is_none()
                    && req.until.is_none()
                    && req.every.is_none() =>
            {
                let kept = if req.latency {
                    f.latency(ix, *slot)
                } else {
                    None
                };
                f.counts(ix, *slot)
                    .filter(|c| c.first().copied().unwrap_or(0) == 0)
                    .filter(|_| !req.latency || kept.is_some())
                    .map(|c| (c, kept.unwrap_or_default()))
            }
            _ => None,
        };
        if let (Some(layout), Some((counts, kept))) = (flat, whole_column) {
            let mut counts = counts;
            counts.resize(layout.width, 0);
            total += counts.iter().sum::<u64>();
            for (id, n) in counts.into_iter().enumerate() {
                if n > 0 {
                    let mut key = [0u32; MAX_BY];
                    key[0] = id as u32;
                    overflow |= !merge_into(
                        &mut by_ids,
                        (None, key),
                        Acc {
                            count: n,
                            lat: GroupLatency {
                                samples: Vec::new(),
                                runs: kept.get(id).map(|k| k.runs().to_vec()).unwrap_or_default(),
                                ..GroupLatency::default()
                            },
                        },
                    );
                }
            }
        } else if let Some(layout) = flat {
            // Every event over time (by one field or none): from the counts
            // kept per minute, when the buckets are whole minutes and no
            // row's value is unknown to the index.
            let kept = match (facets, slots.as_slice()) {
                (Some(f), [] | [_])
                    if matches!(req.query.expr(), Expr::All)
                        && !req.latency
                        && layout.every > 0
                        && slots.first().is_none_or(|&s| {
                            f.counts(ix, s)
                                .is_some_and(|c| c.first().copied().unwrap_or(0) == 0)
                        }) =>
                {
                    f.bucket_counts(
                        ix,
                        slots.first().copied(),
                        (layout.first, layout.every, layout.buckets, layout.width),
                        (req.since, req.until),
                    )
                }
                _ => None,
            };
            let counted = match kept {
                Some(counts) => FlatCounts {
                    total: counts.iter().sum(),
                    counts,
                    samples: Vec::new(),
                    hist: None,
                    unknown: Vec::new(),
                },
                None => count_flat(
                    &b.lower,
                    times,
                    cols.first().map(|(c, _)| *c),
                    (req.since, req.until),
                    &layout,
                    if req.latency { lat_col } else { None },
                ),
            };
            total += counted.total;
            unknown.extend(counted.unknown.iter().map(|&r| ix.base() + r as u64));
            let mut samples = counted.samples.into_iter();
            let by_hist = counted.hist.is_some();
            counted_lat = counted.hist.map(|h| (h, layout));
            for (slot, n) in counted.counts.into_iter().enumerate() {
                let lat = GroupLatency {
                    samples: samples.next().unwrap_or_default(),
                    slots: if by_hist {
                        // Below `MAX_HIST_CELLS`, so within u32.
                        vec![slot as u32]
                    } else {
                        Vec::new()
                    },
                    ..GroupLatency::default()
                };
                if n > 0 {
                    let mut key = [0u32; MAX_BY];
                    if !cols.is_empty() {
                        key[0] = (slot % layout.width) as u32;
                    }
                    let bk = req
                        .every
                        .map(|e| nth_bucket(layout.first, slot / layout.width, e));
                    overflow |= !merge_into(&mut by_ids, (bk, key), Acc { count: n, lat });
                }
            }
        }
        let general = if flat.is_some() {
            Bits::empty(0)
        } else {
            std::mem::replace(&mut b.lower, Bits::empty(0))
        };
        let mut timed_out = None;
        general.for_each_block(STATS_BLOCK_ROWS / 64, |start, words| {
            if timed_out.is_some() {
                return;
            }
            if let Err(e) = crate::check_budget(budget) {
                timed_out = Some(e);
                return;
            }
            let end = start + words.len() * 64;
            for (out, (c, _)) in ids.iter_mut().zip(&cols) {
                c.ids_into(start..end, out);
            }
            let block_times = &times[start.min(times.len())..end.min(times.len())];
            for (wi, &w) in words.iter().enumerate() {
                let mut w = w;
                while w != 0 {
                    let i = wi * 64 + w.trailing_zeros() as usize;
                    w &= w - 1;
                    let row = start + i;
                    let t = block_times.get(i).copied().unwrap_or(i64::MIN);
                    if !in_range(t) {
                        continue;
                    }
                    if ids.iter().any(|v| v.get(i).is_none_or(|&id| id == 0)) {
                        unknown.push(ix.base() + row as u64);
                        continue;
                    }
                    total += 1;
                    let lat = if req.latency {
                        lat_col.and_then(|l| l.get(row).copied())
                    } else {
                        None
                    };
                    let id0 = ids.first().map_or(0, |v| v[i]);
                    if dense_ok {
                        if let Some(a) = dense.get_mut(id0 as usize) {
                            a.add(1, lat);
                        }
                        continue;
                    }
                    if let Some((first, e, width, _)) = buckets {
                        let k = (i128::from(t) - i128::from(first)).div_euclid(i128::from(e));
                        let slot = usize::try_from(k)
                            .ok()
                            .and_then(|k| k.checked_mul(width))
                            .and_then(|k| k.checked_add(id0 as usize));
                        if let Some(a) = slot.and_then(|slot| bucketed.get_mut(slot)) {
                            a.add(1, lat);
                            continue;
                        }
                    }
                    let mut key = [0u32; MAX_BY];
                    for (k, v) in key.iter_mut().zip(&ids) {
                        *k = v[i];
                    }
                    let full = (bucket(t), key);
                    // Rows come in storage order, which is nearly time order:
                    // runs of one key (a histogram bucket) are counted
                    // without hashing.
                    if let Some((k, acc)) = run.as_mut() {
                        if *k == full {
                            acc.add(1, lat);
                            continue;
                        }
                    }
                    if let Some((k, acc)) = run.take() {
                        overflow |= !merge_into(&mut by_ids, k, acc);
                    }
                    let mut acc = Acc::default();
                    acc.add(1, lat);
                    run = Some((full, acc));
                }
            }
        });
        if let Some(e) = timed_out {
            return Err(e);
        }
        if let Some((k, acc)) = run.take() {
            overflow |= !merge_into(&mut by_ids, k, acc);
        }
        if let Some((first, e, width, _)) = buckets {
            for (slot, acc) in bucketed.into_iter().enumerate() {
                if acc.count > 0 {
                    let mut key = [0u32; MAX_BY];
                    key[0] = (slot % width) as u32;
                    let start = nth_bucket(first, slot / width, e);
                    overflow |= !merge_into(&mut by_ids, (Some(start), key), acc);
                }
            }
        }
        if overflow {
            return Err(IndexError::Input(format!(
                "more than {MAX_GROUPS} groups: narrow the query or use fewer --by fields"
            )));
        }
        let dense_iter = dense
            .into_iter()
            .enumerate()
            .filter(|(_, a)| a.count > 0)
            .map(|(id, a)| {
                let mut key = [0u32; MAX_BY];
                key[0] = id as u32;
                ((None, key), a)
            });
        for ((bk, ids), acc) in by_ids.into_iter().chain(dense_iter) {
            // Expand id lists into values: one group per value combination.
            let mut combos: Vec<Vec<String>> = vec![Vec::new()];
            for (i, (_, dict)) in cols.iter().enumerate() {
                let vals: Vec<String> = match dict.values(ids[i]) {
                    Some(v) if !v.is_empty() => v.into_iter().map(str::to_string).collect(),
                    _ => vec![String::new()],
                };
                combos = combos
                    .into_iter()
                    .flat_map(|c| {
                        vals.iter().map(move |v| {
                            let mut c = c.clone();
                            c.push(v.clone());
                            c
                        })
                    })
                    .collect();
            }
            let last = combos.len().saturating_sub(1);
            let mut lat = Some(acc.lat);
            for (i, key) in combos.into_iter().enumerate() {
                let e = groups.entry((bk, key)).or_default();
                e.count += acc.count;
                let l = if i == last {
                    lat.take().unwrap_or_default()
                } else {
                    lat.clone().unwrap_or_default()
                };
                e.lat.merge(l);
            }
        }
        for h in fetch(store, &unknown, budget, &|_, t, ev, (_, c)| {
            in_range(t) && req.query.matches(ev, c)
        })? {
            let Ok(ev) = Event::from_json(&h.event) else {
                continue;
            };
            total += 1;
            let lat = if req.latency {
                crate::index::event_latency(&ev)
            } else {
                None
            };
            for key in keys(&req.by, &ev, &h.cluster) {
                groups.entry((bucket(h.time), key)).or_default().add(1, lat);
            }
        }
        tail(ix, store, req, &mut groups, &mut total, true)?;
        if let Some((hist, layout)) = counted_lat {
            crate::latency::resolve(&hist, groups.values_mut().map(|a| &mut a.lat), |want| {
                gather_wanted(
                    &b.lower,
                    times,
                    cols.first().map(|(c, _)| *c),
                    (req.since, req.until),
                    &layout,
                    lat_col.unwrap_or(&[]),
                    (want, hist.slots()),
                )
            });
        }
    } else {
        tail(ix, store, req, &mut groups, &mut total, false)?;
    }
    Ok(finish(req, groups, total, fast))
}

/// The start of the bucket of width `every` holding `t` (the earliest
/// representable time when that start would lie before it).
fn bucket_start(t: i64, every: i64) -> i64 {
    t.div_euclid(every).checked_mul(every).unwrap_or(i64::MIN)
}

/// The start of the `k`th bucket of width `every` from `first`, computed
/// without overflow (clamped to the representable times).
fn nth_bucket(first: i64, k: usize, every: i64) -> i64 {
    let t = i128::from(first) + (k as i128) * i128::from(every);
    i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX })
}

/// Slots of the flat counting path: `bucket * width + id`, bucket 0 when
/// there is no histogram, id 0 when there is no `by` field.
#[derive(Clone, Copy)]
struct FlatLayout {
    first: i64,
    every: i64,
    width: usize,
    buckets: usize,
}

struct FlatCounts {
    counts: Vec<u64>,
    /// Known latencies per slot, when asked for and too many slots to
    /// count them by bucket.
    samples: Vec<Vec<u32>>,
    /// Known latencies per slot counted by bucket, when asked for.
    hist: Option<SlotHist>,
    /// Rows (not seqs) whose id is 0: the index does not hold the value.
    unknown: Vec<usize>,
    total: u64,
}

/// The common dashboard and histogram case (at most one `by` field) counted
/// into a flat array straight from the typed column: no per-row hashing,
/// width dispatched once, whole 64-row words of an unbounded count without
/// the bit walk or the time test. Latencies, when asked for, are gathered
/// in the same pass.
fn count_flat(
    rows: &Bits,
    times: &[i64],
    col: Option<&Column>,
    range: (Option<i64>, Option<i64>),
    layout: &FlatLayout,
    lat: Option<&[u32]>,
) -> FlatCounts {
    match col {
        None => count_flat_typed::<u8>(rows, times, None, range, layout, lat),
        Some(Column::U8(v)) => count_flat_typed(rows, times, Some(v), range, layout, lat),
        Some(Column::U16(v)) => count_flat_typed(rows, times, Some(v), range, layout, lat),
        Some(Column::U32(v)) => count_flat_typed(rows, times, Some(v), range, layout, lat),
    }
}

/// Calls `f(row, slot)` for each row of `rows` in range whose slot is
/// known, and `unknown(row)` for each row in range the index cannot place.
#[inline(always)]
fn for_each_slot<T: Copy + Into<u32>>(
    rows: &Bits,
    times: &[i64],
    ids: Option<&[T]>,
    (since, until): (Option<i64>, Option<i64>),
    layout: &FlatLayout,
    mut f: impl FnMut(usize, usize),
    mut unknown: impl FnMut(usize),
) {
    // The bucket of the previous row: times are nearly sorted, so most rows
    // skip the division.
    let mut cur = (i64::MAX, i64::MIN, 0usize);
    let bucket_of = |t: i64, cur: &mut (i64, i64, usize)| -> usize {
        if layout.every <= 0 {
            return 0;
        }
        if t < cur.0 || t >= cur.1 {
            let k = t.saturating_sub(layout.first).div_euclid(layout.every);
            let start = layout.first.saturating_add(k.saturating_mul(layout.every));
            *cur = (
                start,
                start.saturating_add(layout.every),
                usize::try_from(k).unwrap_or(usize::MAX),
            );
        }
        cur.2
    };
    let unbounded = since.is_none() && until.is_none() && layout.every <= 0;
    for (wi, &w) in rows.words().iter().enumerate() {
        let base = wi * 64;
        // A whole word of rows inside the range and inside one bucket (the
        // usual case: rows are nearly in time order) shares its bucket, so
        // only the ids are looked at.
        if w == u64::MAX {
            if let Some(block_times) = times.get(base..base + 64) {
                // Without a range or buckets the times do not matter.
                let (mn, mx) = if unbounded {
                    (0, 0)
                } else {
                    block_times
                        .iter()
                        .fold((i64::MAX, i64::MIN), |(a, z), &t| (a.min(t), z.max(t)))
                };
                let inside = since.is_none_or(|s| mn >= s) && until.is_none_or(|u| mx < u);
                let bucket = bucket_of(mn, &mut cur);
                if inside && (layout.every <= 0 || mx < cur.1) {
                    let first = bucket.saturating_mul(layout.width);
                    match ids.and_then(|ids| ids.get(base..base + 64)) {
                        Some(block) => {
                            for (k, &id) in block.iter().enumerate() {
                                match id.into() {
                                    0 => unknown(base + k),
                                    id => f(base + k, first.saturating_add(id as usize)),
                                }
                            }
                            continue;
                        }
                        None if ids.is_none() => {
                            (base..base + 64).for_each(|row| f(row, first));
                            continue;
                        }
                        None => {}
                    }
                }
            }
        }
        let mut w = w;
        while w != 0 {
            let row = base + w.trailing_zeros() as usize;
            w &= w - 1;
            let Some(&t) = times.get(row) else { continue };
            if since.is_some_and(|s| t < s) || until.is_some_and(|u| t >= u) {
                continue;
            }
            let id = match ids {
                Some(ids) => match ids.get(row) {
                    Some(&id) if id.into() != 0 => id.into() as usize,
                    _ => {
                        unknown(row);
                        continue;
                    }
                },
                None => 0,
            };
            let bucket = bucket_of(t, &mut cur);
            f(row, bucket.saturating_mul(layout.width).saturating_add(id));
        }
    }
}

fn count_flat_typed<T: Copy + Into<u32>>(
    rows: &Bits,
    times: &[i64],
    ids: Option<&[T]>,
    range: (Option<i64>, Option<i64>),
    layout: &FlatLayout,
    lat: Option<&[u32]>,
) -> FlatCounts {
    let slots = layout.width.saturating_mul(layout.buckets);
    let mut unknown = Vec::new();
    let mut misplaced = Vec::new();
    if let Some(lat) = lat {
        // With latencies: one pass counting and gathering the samples
        // (all-time percentiles by one field come from the sorted runs
        // `crate::facets::Facets::latency` keeps instead).
        let mut counts = vec![0u64; slots];
        if let Some(mut hist) = SlotHist::new(slots, lat.len()) {
            // Pass 1 of exact percentiles: samples counted per bucket, the
            // few needed gathered later (`gather_wanted`).
            for_each_slot(
                rows,
                times,
                ids,
                range,
                layout,
                |row, slot| match counts.get_mut(slot) {
                    Some(n) if slot < hist.slots() => {
                        *n += 1;
                        if let Some(&l) = lat.get(row).filter(|&&l| l != NO_LATENCY) {
                            hist.add(slot, l);
                        }
                    }
                    _ => misplaced.push(row),
                },
                |row| unknown.push(row),
            );
            unknown.extend(misplaced);
            return FlatCounts {
                total: counts.iter().sum(),
                counts,
                samples: Vec::new(),
                hist: Some(hist),
                unknown,
            };
        }
        let mut samples: Vec<Vec<u32>> = vec![Vec::new(); slots];
        for_each_slot(
            rows,
            times,
            ids,
            range,
            layout,
            |row, slot| match (counts.get_mut(slot), samples.get_mut(slot)) {
                (Some(n), Some(v)) => {
                    *n += 1;
                    if let Some(&l) = lat.get(row).filter(|&&l| l != NO_LATENCY) {
                        v.push(l);
                    }
                }
                // Not expected (ids are below the width, times within the
                // buckets): read from the store rather than miscount.
                _ => misplaced.push(row),
            },
            |row| unknown.push(row),
        );
        unknown.extend(misplaced);
        return FlatCounts {
            total: counts.iter().sum(),
            counts,
            samples,
            hist: None,
            unknown,
        };
    }
    // Four interleaved copies of the counters: consecutive rows usually
    // share a slot (most codes are 200), and one counter would make every
    // increment wait for the previous one.
    let mut lanes = vec![0u64; slots.saturating_mul(LANES)];
    for_each_slot(
        rows,
        times,
        ids,
        range,
        layout,
        |row, slot| match lanes.get_mut(slot.saturating_mul(LANES) + row % LANES) {
            Some(n) => *n += 1,
            None => misplaced.push(row),
        },
        |row| unknown.push(row),
    );
    let counts: Vec<u64> = lanes.chunks(LANES).map(|c| c.iter().sum()).collect();
    let samples = Vec::new();
    unknown.extend(misplaced);
    FlatCounts {
        total: counts.iter().sum(),
        counts,
        samples,
        hist: None,
        unknown,
    }
}

/// Pass 2 of exact percentiles on the flat path: the same rows as
/// [`count_flat`] counted, keeping per slot only the latencies `want`s.
fn gather_wanted(
    rows: &Bits,
    times: &[i64],
    col: Option<&Column>,
    range: (Option<i64>, Option<i64>),
    layout: &FlatLayout,
    lat: &[u32],
    want: (&Wanted, usize),
) -> Vec<Vec<u32>> {
    match col {
        None => gather_wanted_typed::<u8>(rows, times, None, range, layout, lat, want),
        Some(Column::U8(v)) => gather_wanted_typed(rows, times, Some(v), range, layout, lat, want),
        Some(Column::U16(v)) => gather_wanted_typed(rows, times, Some(v), range, layout, lat, want),
        Some(Column::U32(v)) => gather_wanted_typed(rows, times, Some(v), range, layout, lat, want),
    }
}

fn gather_wanted_typed<T: Copy + Into<u32>>(
    rows: &Bits,
    times: &[i64],
    ids: Option<&[T]>,
    range: (Option<i64>, Option<i64>),
    layout: &FlatLayout,
    lat: &[u32],
    (want, slots): (&Wanted, usize),
) -> Vec<Vec<u32>> {
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); slots];
    for_each_slot(
        rows,
        times,
        ids,
        range,
        layout,
        |row, slot| {
            if let (Some(&l), Some(v)) = (lat.get(row), out.get_mut(slot)) {
                if l != NO_LATENCY && want.wants(slot, l) {
                    v.push(l);
                }
            }
        },
        |_| {},
    );
    out
}

/// Adds store-read events to `groups`: only the unindexed tail when
/// `tail_only`, else every match.
fn tail(
    ix: &Index,
    store: &dyn LogReader,
    req: &StatsRequest,
    groups: &mut Groups,
    total: &mut u64,
    tail_only: bool,
) -> IndexResult<()> {
    let empty;
    let ix = if tail_only {
        empty = Index::empty_at(ix.next_seq());
        &empty
    } else {
        ix
    };
    let mut err = None;
    for_each_match(
        ix,
        store,
        &req.query,
        req.since,
        req.until,
        &mut |_, t, ev, cluster| {
            *total += 1;
            let bk = req.every.map(|e| bucket_start(t, e));
            let lat = if req.latency {
                crate::index::event_latency(ev)
            } else {
                None
            };
            for key in keys(&req.by, ev, cluster) {
                if groups.len() >= MAX_GROUPS && !groups.contains_key(&(bk, key.clone())) {
                    err = Some(IndexError::Input(format!(
                        "more than {MAX_GROUPS} groups: narrow the query or use fewer --by fields"
                    )));
                    return false;
                }
                groups.entry((bk, key)).or_default().add(1, lat);
            }
            true
        },
    )?;
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn keys(by: &[Field], ev: &Event, cluster: &str) -> Vec<Vec<String>> {
    let mut combos: Vec<Vec<String>> = vec![Vec::new()];
    let mut json = LazyJson::default();
    for f in by {
        let mut vals = Vec::new();
        f.values(ev, cluster, &mut json, &mut |v| vals.push(v.to_string()));
        if vals.is_empty() {
            vals.push(String::new());
        }
        combos = combos
            .into_iter()
            .flat_map(|c| {
                vals.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push(v.clone());
                    c
                })
            })
            .collect();
    }
    combos
}

fn finish(req: &StatsRequest, groups: Groups, total: u64, from_index: bool) -> StatsReport {
    let mut totals: HashMap<Vec<String>, u64> = HashMap::new();
    for ((_, k), a) in &groups {
        *totals.entry(k.clone()).or_default() += a.count;
    }
    let mut ranked: Vec<(Vec<String>, u64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if req.top > 0 {
        ranked.truncate(req.top);
    }
    let rank: HashMap<Vec<String>, usize> = ranked
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (k.clone(), i))
        .collect();
    let mut rows: Vec<(Option<i64>, usize, StatsRow)> = groups
        .into_iter()
        .filter_map(|((bk, key), acc)| {
            let r = *rank.get(&key)?;
            Some((
                bk,
                r,
                StatsRow {
                    bucket: bk,
                    key,
                    count: acc.count,
                    latency: if req.latency {
                        acc.lat.percentiles()
                    } else {
                        None
                    },
                },
            ))
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    StatsReport {
        by: req.by.iter().map(Field::name).collect(),
        total,
        rows: rows.into_iter().map(|r| r.2).collect(),
        from_index,
    }
}
