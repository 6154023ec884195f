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
//! run. Both ways give the sample of the same nearest rank.

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
    }

    /// The group's exact percentiles.
    pub fn percentiles(self) -> Option<Latency> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
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
            let group = GroupLatency { samples: held.clone(), runs: kept.runs().to_vec() };
            let mut every = all.clone();
            every.extend_from_slice(&held);
            prop_assert_eq!(group.percentiles(), percentiles(every));
        }
    }
}
