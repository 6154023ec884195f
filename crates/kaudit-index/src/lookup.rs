//! Sorted lookups over high-cardinality columns: for every whole block of
//! [`LOOKUP_BLOCK`] committed rows, the block's row offsets sorted by (key,
//! offset), where the key is the row's value in the column the lookup
//! serves (the auditID's 32-bit hash, or the `name` column's id).
//!
//! Why: an equality on such a column (an auditID pasted into the search, an
//! object's history) would otherwise read the whole column, whose size
//! grows with the store; with the lookup it costs two binary searches per
//! block over the mapped offsets plus the hits, and only the rows past the
//! last whole block (fewer than [`LOOKUP_BLOCK`]) are scanned.
//!
//! Layout: `<stem>.perm`, the blocks' offsets (`u16` little-endian, block
//! `b` at bytes `2 * LOOKUP_BLOCK * b ..`), appended at commit for the
//! blocks completed since and renamed over when rebuilt. It is derived and
//! never trusted: a file shorter than the committed blocks counts only its
//! whole blocks (the rest are scanned until a writer rebuilds them), and
//! each block is checked on first use to be strictly ascending in (key,
//! offset) — which, over 65536 `u16` offsets, proves it is exactly the
//! sorted permutation of its rows. A block failing the check is scanned
//! instead and rebuilt by the next commit, so a damaged file costs time,
//! never a wrong answer. Cost on disk: 2 bytes per event per lookup.

use crate::mapped::Rows;
use std::sync::atomic::{AtomicU8, Ordering};

/// Rows per lookup block: offsets within a block fit a `u16`.
pub const LOOKUP_BLOCK: usize = 1 << 16;

/// Most keys one lookup query takes; an equality accepting more (a glob
/// over a dictionary) scans the column instead.
pub const MAX_LOOKUP_KEYS: usize = 64;

const UNCHECKED: u8 = 0;
const GOOD: u8 = 1;
const BAD: u8 = 2;

/// The sorted offsets of one column's whole blocks, see the module docs.
#[derive(Debug, Default)]
pub struct Lookup {
    /// Block `b`'s offsets at `b * LOOKUP_BLOCK ..`.
    pub(crate) perm: Rows<u16>,
    /// Per block: unchecked, good, or bad (failed the check).
    state: Vec<AtomicU8>,
}

impl Clone for Lookup {
    fn clone(&self) -> Self {
        Lookup {
            perm: self.perm.clone(),
            state: self
                .state
                .iter()
                .map(|s| AtomicU8::new(s.load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

/// The sorted offsets of the block of rows starting at `start`.
pub fn sort_block(start: usize, key: &impl Fn(usize) -> u32) -> Vec<u16> {
    let mut pairs: Vec<(u32, u16)> = (0..LOOKUP_BLOCK)
        .map(|o| (key(start + o), o as u16))
        .collect();
    pairs.sort_unstable();
    pairs.into_iter().map(|(_, o)| o).collect()
}

impl Lookup {
    /// A lookup over the given offsets (whole blocks only; a partial block
    /// at the end is dropped), each block to be checked on first use.
    pub(crate) fn from_rows(mut perm: Rows<u16>) -> Lookup {
        let blocks = perm.len() / LOOKUP_BLOCK;
        perm.truncate(blocks * LOOKUP_BLOCK);
        Lookup {
            perm,
            state: (0..blocks).map(|_| AtomicU8::new(UNCHECKED)).collect(),
        }
    }

    /// Whole blocks covered: rows `0 .. blocks() * LOOKUP_BLOCK`.
    pub fn blocks(&self) -> usize {
        self.perm.len() / LOOKUP_BLOCK
    }

    /// Rows covered (a multiple of [`LOOKUP_BLOCK`], so of 64 too).
    pub fn covered(&self) -> usize {
        self.blocks() * LOOKUP_BLOCK
    }

    /// Whether some block failed its check (a writer rebuilds the file).
    pub fn damaged(&self) -> bool {
        self.state.iter().any(|s| s.load(Ordering::Relaxed) == BAD)
    }

    /// Appends the sorted offsets of the next whole block, which starts at
    /// row `covered()`.
    pub(crate) fn push_block(&mut self, key: &impl Fn(usize) -> u32) {
        let start = self.covered();
        for o in sort_block(start, key) {
            self.perm.push(o);
        }
        // Built here from the rows themselves: known good.
        self.state.push(AtomicU8::new(GOOD));
    }

    /// Keeps the blocks wholly within the first `rows` rows.
    pub(crate) fn truncate_rows(&mut self, rows: usize) {
        let blocks = (rows / LOOKUP_BLOCK).min(self.blocks());
        self.perm.truncate(blocks * LOOKUP_BLOCK);
        self.state.truncate(blocks);
    }

    /// The offsets of block `b`, checked (on first use) to be the block's
    /// sorted permutation under `key`; None when the check failed.
    fn block(&self, b: usize, key: &impl Fn(usize) -> u32) -> Option<&[u16]> {
        let offs = self.perm.get(b * LOOKUP_BLOCK..(b + 1) * LOOKUP_BLOCK)?;
        let st = self.state.get(b)?;
        match st.load(Ordering::Acquire) {
            GOOD => Some(offs),
            BAD => None,
            _ => {
                let start = b * LOOKUP_BLOCK;
                // Strictly ascending (key, offset): the offsets are then
                // distinct, so all 65536 of them, in sorted order.
                let ok = offs.windows(2).all(|w| {
                    let (a, z) = (w[0], w[1]);
                    (key(start + usize::from(a)), a) < (key(start + usize::from(z)), z)
                });
                st.store(if ok { GOOD } else { BAD }, Ordering::Release);
                ok.then_some(offs)
            }
        }
    }

    /// Calls `f(row)` for every covered row whose key lies in one of
    /// `ranges` (half-open, over `u64` so a range can reach past
    /// `u32::MAX`), block by block (ascending blocks; within a block
    /// ascending by key then row). Blocks failing their check are scanned
    /// row by row, so the rows reported are exactly the covered rows with
    /// such a key. Returns [`Lookup::covered`]: the caller scans the rows
    /// after it.
    pub fn find(
        &self,
        key: &impl Fn(usize) -> u32,
        ranges: &[std::ops::Range<u64>],
        mut f: impl FnMut(usize),
    ) -> usize {
        for b in 0..self.blocks() {
            let start = b * LOOKUP_BLOCK;
            let at = |o: u16| u64::from(key(start + usize::from(o)));
            match self.block(b, key) {
                Some(offs) => {
                    for r in ranges {
                        let from = offs.partition_point(|&o| at(o) < r.start);
                        for &o in &offs[from..] {
                            if at(o) >= r.end {
                                break;
                            }
                            f(start + usize::from(o));
                        }
                    }
                }
                None => {
                    for row in start..start + LOOKUP_BLOCK {
                        let k = u64::from(key(row));
                        if ranges.iter().any(|r| r.contains(&k)) {
                            f(row);
                        }
                    }
                }
            }
        }
        self.covered()
    }

    /// Bytes held in anonymous memory and mapped from the file.
    pub fn memory(&self) -> (usize, usize) {
        (self.perm.anon_bytes(), self.perm.mapped_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rows of `keys` whose key lies in `ranges`, by a full scan.
    fn scan(keys: &[u32], upto: usize, ranges: &[std::ops::Range<u64>]) -> Vec<usize> {
        (0..upto)
            .filter(|&r| ranges.iter().any(|g| g.contains(&u64::from(keys[r]))))
            .collect()
    }

    fn found(lk: &Lookup, keys: &[u32], ranges: &[std::ops::Range<u64>]) -> (Vec<usize>, usize) {
        let mut v = Vec::new();
        let covered = lk.find(&|r| keys[r], ranges, |r| v.push(r));
        v.sort_unstable();
        v.dedup();
        (v, covered)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        /// Over random keys from a small space (so many rows share a key,
        /// as colliding hashes do), blocks appended one at a time: the
        /// lookup finds exactly the covered rows a scan finds, and a block
        /// whose offsets were damaged is caught by its check and scanned.
        #[test]
        fn lookups_equal_a_full_scan(
            space in 1u32..5000,
            seed in any::<u64>(),
            wanted in prop::collection::vec(0u32..5000, 1..4),
            extra in 0usize..LOOKUP_BLOCK,
            damage in any::<u16>(),
        ) {
            let rows = 2 * LOOKUP_BLOCK + extra;
            let mut x = seed | 1;
            let keys: Vec<u32> = (0..rows)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % u64::from(space)) as u32
                })
                .collect();
            let ranges: Vec<std::ops::Range<u64>> =
                wanted.iter().map(|&k| u64::from(k)..u64::from(k) + 1).collect();
            let mut lk = Lookup::default();
            let (v, covered) = found(&lk, &keys, &ranges);
            prop_assert_eq!((v.len(), covered), (0, 0));
            for b in 1..=2 {
                lk.push_block(&|r| keys[r]);
                let (v, covered) = found(&lk, &keys, &ranges);
                prop_assert_eq!(covered, b * LOOKUP_BLOCK);
                prop_assert_eq!(v, scan(&keys, covered, &ranges));
            }
            // A range reaching past u32::MAX (the "ids past the dictionary"
            // of a dictionary comparison).
            let past = u64::from(space / 2)..u64::from(u32::MAX) + 1;
            let tail = [past];
            prop_assert_eq!(found(&lk, &keys, &tail).0, scan(&keys, 2 * LOOKUP_BLOCK, &tail));
            // Reloaded from its bytes with one offset of block 1 damaged
            // (nothing checked yet): still exact, and the damage is seen.
            let mut copy: Rows<u16> = Rows::new();
            for (i, &o) in lk.perm.iter().enumerate() {
                copy.push(if i == LOOKUP_BLOCK + usize::from(damage) { o ^ 1 } else { o });
            }
            let re = Lookup::from_rows(copy);
            prop_assert!(!re.damaged());
            let (v, covered) = found(&re, &keys, &ranges);
            prop_assert_eq!(v, scan(&keys, covered, &ranges));
            prop_assert!(re.damaged(), "the swapped offset breaks the order");
            // Truncated to the rows before the second block.
            lk.truncate_rows(2 * LOOKUP_BLOCK - 1);
            let (v, covered) = found(&lk, &keys, &ranges);
            prop_assert_eq!(covered, LOOKUP_BLOCK);
            prop_assert_eq!(v, scan(&keys, covered, &ranges));
        }
    }

    #[test]
    fn a_partial_block_is_not_mapped_as_one() {
        let mut r: Rows<u16> = Rows::new();
        for i in 0..(LOOKUP_BLOCK + 10) {
            r.push(i as u16);
        }
        let lk = Lookup::from_rows(r);
        assert_eq!((lk.blocks(), lk.covered()), (1, LOOKUP_BLOCK));
    }
}
