//! Exact latency percentiles, from samples or from sorted runs kept
//! between requests.
//!
//! The p50/p90/p99 of a group of millions of rows cost a pass over its rows
//! gathering every latency, then selections among them. The dashboard asks
//! the same thing (all-time percentiles by resource) on every load, so the
//! latencies of a column's values can be kept sorted ([`SortedRuns`],
//! extended as rows are indexed, see
//! [`crate::facets::Facets::latency`]); a percentile over sorted runs is a
//! binary search, and samples read from the store since are just one more
//! run. Without kept runs, [`SlotHist`] and [`resolve`] find the same
//! percentiles in two passes (bucket counts, then only the samples in each
//! rank's bucket) instead of gathering every sample. All ways give the
//! sample of the same nearest rank.

use crate::stats::Latency;
use std::sync::Arc;

/// The percentiles reported, as fractions.
const RANKS: [f64; 3] = [0.50, 0.90, 0.99];

/// The 0-based rank of percentile `q` of `n` samples (nearest rank).
fn rank(q: f64, n: usize) -> usize {
    ((q * n as f64).ceil() as usize).clamp(1, n) - 1
}

/// Exact percentiles of the samples held (selection).
pub fn percentiles(mut lat: Vec<u32>) -> Option<Latency> {
    if lat.is_empty() {
        return None;
    }
    let n = lat.len();
    // Ascending ranks: each selection leaves everything above its rank to
    // the right, so the next one only searches that part.
    let mut from = 0;
    let mut pick = |q: f64| {
        let i = rank(q, n).max(from);
        let v = *lat[from..].select_nth_unstable(i - from).1;
        from = i;
        v
    };
    Some(Latency {
        p50: pick(RANKS[0]),
        p90: pick(RANKS[1]),
        p99: pick(RANKS[2]),
        samples: n as u64,
    })
}

/// Exact percentiles of the union of sorted runs.
pub fn percentiles_of_runs(runs: &[&[u32]]) -> Option<Latency> {
    let n: usize = runs.iter().map(|r| r.len()).sum();
    if n == 0 {
        return None;
    }
    let pick = |q: f64| kth(runs, rank(q, n));
    Some(Latency {
        p50: pick(RANKS[0]),
        p90: pick(RANKS[1]),
        p99: pick(RANKS[2]),
        samples: n as u64,
    })
}

/// The value of 0-based rank `k` in the union of sorted runs: the least
/// value with more than `k` samples at or below it.
fn kth(runs: &[&[u32]], k: usize) -> u32 {
    let (mut lo, mut hi) = (0u32, u32::MAX);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at_or_below: usize = runs.iter().map(|r| r.partition_point(|&x| x <= mid)).sum();
        if at_or_below > k {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// Samples kept as a few sorted runs, merged as they grow (each run at
/// least twice the next), so adding is cheap and there are O(log n) runs.
#[derive(Clone, Debug, Default)]
pub struct SortedRuns {
    runs: Vec<Arc<[u32]>>,
    len: usize,
}

impl SortedRuns {
    /// Adds a batch of samples (any order).
    pub fn add(&mut self, mut batch: Vec<u32>) {
        if batch.is_empty() {
            return;
        }
        batch.sort_unstable();
        self.len += batch.len();
        let mut run = batch;
        while let Some(last) = self.runs.last() {
            if last.len() > 2 * run.len() {
                break;
            }
            run = merge(last, &run);
            self.runs.pop();
        }
        self.runs.push(run.into());
    }

    /// The runs (shared, so a request can use them without holding a lock).
    pub fn runs(&self) -> &[Arc<[u32]>] {
        &self.runs
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn merge(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// The latencies of one group: samples held, and sorted runs kept between
/// requests.
#[derive(Clone, Debug, Default)]
pub struct GroupLatency {
    /// Samples held (gathered by this request).
    pub samples: Vec<u32>,
    /// Kept sorted runs.
    pub runs: Vec<Arc<[u32]>>,
    /// Slots of a request's [`SlotHist`] whose samples belong to the group
    /// but were only counted, not gathered ([`resolve`] finds the
    /// percentiles from them).
    pub slots: Vec<u32>,
    /// The percentiles once [`resolve`] has found them.
    pub resolved: Option<Latency>,
}

impl GroupLatency {
    /// Adds another part of the same group.
    pub fn merge(&mut self, other: GroupLatency) {
        if self.samples.is_empty() {
            self.samples = other.samples;
        } else {
            self.samples.extend_from_slice(&other.samples);
        }
        self.runs.extend(other.runs);
        self.slots.extend(other.slots);
    }

    /// The group's exact percentiles.
    pub fn percentiles(self) -> Option<Latency> {
        if self.resolved.is_some() {
            return self.resolved;
        }
        if self.runs.is_empty() {
            return percentiles(self.samples);
        }
        let mut held = self.samples;
        held.sort_unstable();
        let mut runs: Vec<&[u32]> = self.runs.iter().map(|r| &r[..]).collect();
        runs.push(&held);
        percentiles_of_runs(&runs)
    }
}

/// Buckets of [`bucket`]: 64 exact ones below 64, then 64 per power of two.
pub const BUCKETS: usize = 64 + 26 * 64;
/// Most (slot, bucket) counters a [`SlotHist`] holds (16 MiB); more slots
/// than that gather every sample instead.
pub const MAX_HIST_CELLS: usize = 4 << 20;

/// A fixed, monotone bucket of a latency: the value itself below 64, else
/// its power of two and the 6 bits after the leading one (buckets are at
/// most 1/64 of their values wide, so a rank's bucket holds few samples
/// unless the values are nearly equal).
#[inline]
pub fn bucket(v: u32) -> usize {
    if v < 64 {
        v as usize
    } else {
        let e = 31 - v.leading_zeros() as usize;
        64 + (e - 6) * 64 + ((v >> (e - 6)) & 63) as usize
    }
}

/// Pass 1 of exact percentiles without gathering every sample: per slot,
/// how many samples fall in each [`bucket`]. The bucket holding each
/// wanted rank is then known, and pass 2 gathers only the samples in
/// those buckets ([`resolve`]).
#[derive(Debug)]
pub struct SlotHist {
    counts: Vec<u32>,
    slots: usize,
}

impl SlotHist {
    /// Counters for `slots` slots over at most `rows` samples; `None` when
    /// that would exceed [`MAX_HIST_CELLS`] or a count could overflow.
    pub fn new(slots: usize, rows: usize) -> Option<SlotHist> {
        let cells = slots.checked_mul(BUCKETS)?;
        if cells > MAX_HIST_CELLS || rows >= u32::MAX as usize {
            return None;
        }
        Some(SlotHist {
            counts: vec![0; cells],
            slots,
        })
    }

    /// Counts sample `v` of `slot`; false when there is no such slot.
    #[inline]
    pub fn add(&mut self, slot: usize, v: u32) -> bool {
        if slot >= self.slots {
            return false;
        }
        match self.counts.get_mut(slot * BUCKETS + bucket(v)) {
            Some(c) => {
                *c += 1;
                true
            }
            None => false,
        }
    }

    /// Slots counted.
    pub fn slots(&self) -> usize {
        self.slots
    }

    fn of(&self, slot: usize) -> &[u32] {
        self.counts
            .get(slot * BUCKETS..(slot + 1) * BUCKETS)
            .unwrap_or(&[])
    }
}

/// The (slot, bucket) pairs whose samples pass 2 gathers.
#[derive(Debug)]
pub struct Wanted {
    /// One flag per (slot, bucket), at most [`MAX_HIST_CELLS`] bytes: a
    /// byte load per sample measured twice as fast as a bit test here.
    marks: Vec<bool>,
}

impl Wanted {
    fn new(slots: usize) -> Wanted {
        Wanted {
            marks: vec![false; slots * BUCKETS],
        }
    }

    fn set(&mut self, slot: usize, b: usize) {
        if let Some(m) = self.marks.get_mut(slot * BUCKETS + b) {
            *m = true;
        }
    }

    /// Whether pass 2 keeps sample `v` of `slot`.
    #[inline]
    pub fn wants(&self, slot: usize, v: u32) -> bool {
        self.marks
            .get(slot * BUCKETS + bucket(v))
            .copied()
            .unwrap_or(false)
    }
}

/// The range of a sorted run whose values fall in bucket `b`.
fn run_range(run: &[u32], b: usize) -> std::ops::Range<usize> {
    run.partition_point(|&x| bucket(x) < b)..run.partition_point(|&x| bucket(x) <= b)
}

/// Exact percentiles of groups whose samples are partly only counted in
/// `hist` (their [`GroupLatency::slots`]): finds each rank's bucket from
/// the counts, calls `pass2` once to gather the samples of those buckets
/// per slot (`Vec` indexed by slot), and selects within them. Each group's
/// answer is what [`percentiles`] over all its samples gives; it is stored
/// in [`GroupLatency::resolved`]. Groups without slots are left alone.
pub fn resolve<'a>(
    hist: &SlotHist,
    groups: impl Iterator<Item = &'a mut GroupLatency>,
    pass2: impl FnOnce(&Wanted) -> Vec<Vec<u32>>,
) {
    let mut groups: Vec<&mut GroupLatency> = groups.filter(|g| !g.slots.is_empty()).collect();
    let mut want = Wanted::new(hist.slots());
    // Per group: the sample count and, per rank, (bucket, rank in bucket).
    let mut plans: Vec<(usize, [(usize, usize); 3])> = Vec::with_capacity(groups.len());
    let mut h = vec![0u64; BUCKETS];
    for g in &groups {
        h.iter_mut().for_each(|c| *c = 0);
        for &s in &g.slots {
            for (c, &n) in h.iter_mut().zip(hist.of(s as usize)) {
                *c += u64::from(n);
            }
        }
        for &v in &g.samples {
            h[bucket(v)] += 1;
        }
        for r in &g.runs {
            let mut from = 0;
            for (b, c) in h.iter_mut().enumerate() {
                let to = from + r[from..].partition_point(|&x| bucket(x) <= b);
                *c += (to - from) as u64;
                from = to;
            }
        }
        let n = h.iter().sum::<u64>() as usize;
        let mut plan = [(0, 0); 3];
        if n > 0 {
            for (p, q) in plan.iter_mut().zip(RANKS) {
                let mut k = rank(q, n);
                for (b, &c) in h.iter().enumerate() {
                    if (k as u64) < c {
                        *p = (b, k);
                        break;
                    }
                    k -= c as usize;
                }
                for &s in &g.slots {
                    want.set(s as usize, p.0);
                }
            }
        }
        plans.push((n, plan));
    }
    let gathered = pass2(&want);
    for (g, (n, plan)) in groups.iter_mut().zip(plans) {
        let mut found = [0u32; 3];
        let mut picked: Option<(usize, Vec<u32>)> = None;
        for (f, &(b, k)) in found.iter_mut().zip(&plan) {
            if n == 0 {
                break;
            }
            if picked.as_ref().is_none_or(|(pb, _)| *pb != b) {
                let mut vals: Vec<u32> = Vec::new();
                for &s in &g.slots {
                    if let Some(v) = gathered.get(s as usize) {
                        vals.extend(v.iter().filter(|&&x| bucket(x) == b));
                    }
                }
                vals.extend(g.samples.iter().filter(|&&x| bucket(x) == b));
                for r in &g.runs {
                    vals.extend_from_slice(&r[run_range(r, b)]);
                }
                picked = Some((b, vals));
            }
            if let Some((_, vals)) = picked.as_mut() {
                // Not expected (pass 2 saw the rows pass 1 counted): leave
                // the value 0 rather than panic.
                if k < vals.len() {
                    *f = *vals.select_nth_unstable(k).1;
                }
            }
        }
        g.samples = Vec::new();
        g.runs = Vec::new();
        g.slots = Vec::new();
        g.resolved = (n > 0).then_some(Latency {
            p50: found[0],
            p90: found[1],
            p99: found[2],
            samples: n as u64,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = u32> {
        prop_oneof![
            Just(u32::MAX),
            Just(7u32),
            0u32..64,
            // A few buckets holding nearly everything.
            100_000u32..100_300,
            any::<u32>(),
        ]
    }

    /// The bucket function is monotone and within [`BUCKETS`], at the
    /// edges of every power of two.
    #[test]
    fn buckets_are_monotone() {
        let mut edges = vec![0u32, 1, 63, 64, 65, u32::MAX - 1, u32::MAX];
        for e in 6..32 {
            let p = 1u32 << e;
            edges.extend([p - 1, p, p + 1, p | (p >> 1), p | (p - 1)]);
        }
        edges.sort_unstable();
        assert!(edges.windows(2).all(|w| bucket(w[0]) <= bucket(w[1])));
        assert_eq!(bucket(u32::MAX), BUCKETS - 1);
        assert_eq!(bucket(63), 63);
        assert_eq!(bucket(64), 64);
        // Values 1/64 apart in the same power of two land in different buckets.
        assert_ne!(bucket(1 << 20), bucket((1 << 20) + (1 << 14)));
        assert_eq!(bucket(1 << 20), bucket((1 << 20) + (1 << 14) - 1));
    }

    /// Too many slots: no histogram (the caller gathers instead).
    #[test]
    fn histogram_is_bounded() {
        assert!(SlotHist::new(MAX_HIST_CELLS / BUCKETS, 10).is_some());
        assert!(SlotHist::new(MAX_HIST_CELLS / BUCKETS + 1, 10).is_none());
        assert!(SlotHist::new(usize::MAX, 10).is_none());
        assert!(SlotHist::new(1, u32::MAX as usize).is_none());
        let mut h = SlotHist::new(2, 10).expect("small");
        assert!(h.add(1, 5));
        assert!(!h.add(2, 5));
    }

    proptest! {
        /// Counting by bucket then gathering only the ranks' buckets gives
        /// exactly what selecting over every sample gives, for groups made
        /// of several slots (repeated too), held samples and kept runs.
        #[test]
        fn two_passes_equal_selection(
            slots in prop::collection::vec(prop::collection::vec(value(), 0..200), 1..8),
            groups in prop::collection::vec(
                (
                    prop::collection::vec(0usize..8, 0..4),
                    prop::collection::vec(value(), 0..20),
                    prop::collection::vec(prop::collection::vec(value(), 0..60), 0..3),
                ),
                0..6,
            ),
        ) {
            let mut hist = SlotHist::new(slots.len(), 10_000).expect("small");
            for (s, vals) in slots.iter().enumerate() {
                for &v in vals {
                    prop_assert!(hist.add(s, v));
                }
            }
            let mut lats = Vec::new();
            let mut expected = Vec::new();
            for (members, held, runs) in &groups {
                let members: Vec<u32> = members
                    .iter()
                    .map(|&m| (m % slots.len()) as u32)
                    .collect();
                let mut every: Vec<u32> = held.clone();
                for &m in &members {
                    every.extend_from_slice(&slots[m as usize]);
                }
                let runs: Vec<Arc<[u32]>> = runs
                    .iter()
                    .map(|r| {
                        let mut r = r.clone();
                        r.sort_unstable();
                        every.extend_from_slice(&r);
                        r.into()
                    })
                    .collect();
                expected.push(if members.is_empty() {
                    // Left alone by `resolve`: the old path answers.
                    GroupLatency { samples: held.clone(), runs: runs.clone(), ..Default::default() }
                        .percentiles()
                } else {
                    percentiles(every)
                });
                lats.push(GroupLatency { samples: held.clone(), runs, slots: members, resolved: None });
            }
            let mut gathered_total = 0;
            resolve(&hist, lats.iter_mut(), |want| {
                let out: Vec<Vec<u32>> = slots
                    .iter()
                    .enumerate()
                    .map(|(s, vals)| vals.iter().copied().filter(|&v| want.wants(s, v)).collect())
                    .collect();
                gathered_total = out.iter().map(Vec::len).sum();
                out
            });
            prop_assert!(gathered_total <= slots.iter().map(Vec::len).sum::<usize>());
            for (g, e) in lats.into_iter().zip(expected) {
                prop_assert_eq!(g.percentiles(), e);
            }
        }

        /// Spread values: pass 2 gathers a small part of the samples.
        #[test]
        fn two_passes_gather_few(vals in prop::collection::vec(any::<u32>(), 2000..3000)) {
            let mut hist = SlotHist::new(1, vals.len()).expect("small");
            for &v in &vals {
                hist.add(0, v);
            }
            let mut g = vec![GroupLatency { slots: vec![0], ..Default::default() }];
            let mut gathered = 0;
            resolve(&hist, g.iter_mut(), |want| {
                let out: Vec<u32> = vals.iter().copied().filter(|&v| want.wants(0, v)).collect();
                gathered = out.len();
                vec![out]
            });
            prop_assert!(gathered < vals.len() / 4, "gathered {} of {}", gathered, vals.len());
            prop_assert_eq!(g.pop().and_then(GroupLatency::percentiles), percentiles(vals));
        }

        /// Kept runs plus held samples give what selecting over every
        /// sample gives, however the samples were batched.
        #[test]
        fn runs_equal_selection(
            batches in prop::collection::vec(
                prop::collection::vec(prop_oneof![0u32..50, 0u32..100_000, any::<u32>()], 0..300), 0..12),
            held in prop::collection::vec(prop_oneof![0u32..50, any::<u32>()], 0..50),
        ) {
            let mut kept = SortedRuns::default();
            for b in &batches {
                kept.add(b.clone());
            }
            let all: Vec<u32> = batches.iter().flatten().copied().collect();
            prop_assert_eq!(kept.len(), all.len());
            prop_assert!(kept.runs().len() <= 2 + (usize::BITS - all.len().leading_zeros()) as usize);
            for r in kept.runs() {
                prop_assert!(r.windows(2).all(|w| w[0] <= w[1]));
            }
            let group = GroupLatency { samples: held.clone(), runs: kept.runs().to_vec(), ..Default::default() };
            let mut every = all.clone();
            every.extend_from_slice(&held);
            prop_assert_eq!(group.percentiles(), percentiles(every));
        }
    }
}
