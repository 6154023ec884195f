//! Translating a query into bounds over index rows: the one place that knows
//! how [`Expr`] maps onto the index, so a second backend (a planned
//! ClickHouse one) would mirror this module and nothing else.
//!
//! Each sub-expression becomes a pair of row sets: `lower` (rows that surely
//! match) and `upper` (rows that may match). Dictionary fields are decided
//! once per distinct value list with the matcher's own comparison
//! ([`CompareTest`]), so they are exact; hashed fields give candidates; full
//! text, JSON paths and other fields give "anything" and are left to the
//! confirming matcher. `not` swaps the bounds.

use crate::index::{value_hash, Index, LookupSource, Needs};
use crate::lookup::MAX_LOOKUP_KEYS;
use crate::{IndexError, IndexResult};
use kaudit_query::{Budget, CompareTest, Expr, Field, Op};

/// A set of rows as a bitmap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl Bits {
    /// No rows of `len`.
    pub fn empty(len: usize) -> Bits {
        Bits {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    /// All rows of `len`.
    pub fn full(len: usize) -> Bits {
        let mut b = Bits {
            words: vec![!0; len.div_ceil(64)],
            len,
        };
        b.trim();
        b
    }

    fn trim(&mut self) {
        let rem = self.len % 64;
        if rem != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << rem) - 1;
            }
        }
    }

    /// Widens the set to `len` rows (the new ones unset).
    pub fn grow(&mut self, len: usize) {
        if len > self.len {
            self.words.resize(len.div_ceil(64), 0);
            self.len = len;
        }
    }

    /// Marks `row`.
    #[inline]
    pub fn set(&mut self, row: usize) {
        if row < self.len {
            self.words[row / 64] |= 1 << (row % 64);
        }
    }

    /// Whether `row` is in the set.
    #[inline]
    pub fn get(&self, row: usize) -> bool {
        row < self.len && self.words[row / 64] & (1 << (row % 64)) != 0
    }

    /// Whether no row is set.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Rows in the set.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    fn and(&mut self, o: &Bits) {
        self.words
            .iter_mut()
            .zip(&o.words)
            .for_each(|(a, b)| *a &= b);
    }

    fn or(&mut self, o: &Bits) {
        self.words
            .iter_mut()
            .zip(&o.words)
            .for_each(|(a, b)| *a |= b);
    }

    fn not(&mut self) {
        self.words.iter_mut().for_each(|w| *w = !*w);
        self.trim();
    }

    /// Calls `f` for each row in the set, ascending.
    pub fn for_each(&self, mut f: impl FnMut(usize)) {
        for (i, &w) in self.words.iter().enumerate() {
            let mut w = w;
            while w != 0 {
                let b = w.trailing_zeros() as usize;
                f(i * 64 + b);
                w &= w - 1;
            }
        }
    }

    /// The bit words: row `64 * i + b` is bit `b` of word `i`.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Calls `f(start, words)` for each block of `64 * block_words` rows
    /// that has a set row: `words` are the block's bit words (row
    /// `start + 64 * i + b` is bit `b` of `words[i]`). Lets a caller
    /// prepare per-block data (column ids) once and skip empty blocks.
    pub fn for_each_block(&self, block_words: usize, mut f: impl FnMut(usize, &[u64])) {
        for (i, words) in self.words.chunks(block_words.max(1)).enumerate() {
            if words.iter().any(|&w| w != 0) {
                f(i * 64 * block_words.max(1), words);
            }
        }
    }

    /// Calls `f` with every set row, highest first (newest-first searches
    /// meet their best candidates first this way, so most rows cost one
    /// comparison).
    pub fn for_each_rev(&self, mut f: impl FnMut(usize)) {
        for (i, &w) in self.words.iter().enumerate().rev() {
            let mut w = w;
            while w != 0 {
                let b = 63 - w.leading_zeros() as usize;
                f(i * 64 + b);
                w &= !(1u64 << b);
            }
        }
    }
}

/// Rows that surely match and rows that may match.
#[derive(Clone, Debug)]
pub struct Bounds {
    /// Surely matching rows.
    pub lower: Bits,
    /// Possibly matching rows (a superset of the true answer).
    pub upper: Bits,
    /// Whether `lower == upper` by construction (no confirmation needed to
    /// know the set, only to show the events).
    pub exact: bool,
}

/// The index parts a query reads, so a reader loads just those.
pub fn needs(expr: &Expr) -> Needs {
    let mut n = Needs::default();
    walk_needs(expr, &mut n);
    n
}

/// Visits every node of the tree with an explicit stack (no recursion,
/// whatever the tree's shape).
fn walk_needs(root: &Expr, n: &mut Needs) {
    let mut stack = vec![root];
    while let Some(e) = stack.pop() {
        match e {
            Expr::And(v) | Expr::Or(v) => stack.extend(v.iter()),
            Expr::Not(a) => stack.push(a),
            Expr::Compare { field, .. } => {
                if let Some(s) = Index::dict_slot(field) {
                    if !n.dict.contains(&s) {
                        n.dict.push(s);
                    }
                } else if let Some(s) = Index::hash_slot(field) {
                    if !n.hash.contains(&s) {
                        n.hash.push(s);
                    }
                }
            }
            Expr::All | Expr::Text(_) => {}
        }
    }
}

/// Computes the bounds of `expr` over the index's rows.
///
/// Bounds of recent queries are kept and, when rows were added since,
/// extended by evaluating the query on the new rows only: rows never
/// change once indexed (dropping rows bumps [`Index::generation`], which
/// empties the cache), so a repeated query (a dashboard refresh, the next
/// page, the histogram and the page of one search) costs the new rows.
pub fn bounds(ix: &Index, expr: &Expr) -> IndexResult<Bounds> {
    bounds_within(ix, expr, None)
}

/// [`bounds`], giving up with [`IndexError::TimedOut`] once `budget` is
/// spent (checked between the terms of every `and`/`or`).
pub fn bounds_within(ix: &Index, expr: &Expr, budget: Option<Budget>) -> IndexResult<Bounds> {
    let n = ix.rows();
    if n < MIN_CACHED_ROWS {
        return bounds_in(ix, expr, None, budget);
    }
    let key = format!("{expr:?}");
    let cached = ix
        .bounds_cache
        .lock()
        .ok()
        .and_then(|mut c| c.take(&key, ix.generation(), ix.base(), n));
    let b = match cached {
        Some((rows, b)) if rows == n => b,
        Some((rows, mut b)) => {
            let mut fresh = Bits::empty(n);
            (rows..n).for_each(|r| fresh.set(r));
            let new = bounds_in(ix, expr, Some(&fresh), budget)?;
            b.lower.grow(n);
            b.upper.grow(n);
            b.lower.or(&new.lower);
            b.upper.or(&new.upper);
            b.exact &= new.exact;
            b
        }
        None => bounds_in(ix, expr, None, budget)?,
    };
    if let Ok(mut c) = ix.bounds_cache.lock() {
        c.put(key, ix.generation(), ix.base(), n, b.clone());
    }
    Ok(b)
}

/// Indexes smaller than this are not worth caching bounds for.
const MIN_CACHED_ROWS: usize = 1 << 16;
/// Most queries whose bounds are kept.
const CACHED_QUERIES: usize = 16;
/// Most bytes of kept bounds.
const CACHED_BYTES: usize = 128 << 20;

/// Recently computed bounds, most recent last.
#[derive(Default)]
pub struct BoundsCache {
    entries: Vec<CachedBounds>,
}

impl std::fmt::Debug for BoundsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BoundsCache({} queries)", self.entries.len())
    }
}

struct CachedBounds {
    key: String,
    generation: u64,
    base: u64,
    rows: usize,
    bounds: Bounds,
}

impl BoundsCache {
    /// Removes and returns the entry for `key` if it is still valid for
    /// an index of this generation and base with at least its rows.
    fn take(
        &mut self,
        key: &str,
        generation: u64,
        base: u64,
        rows: usize,
    ) -> Option<(usize, Bounds)> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        let e = self.entries.remove(i);
        (e.generation == generation && e.base == base && e.rows <= rows)
            .then_some((e.rows, e.bounds))
    }

    fn put(&mut self, key: String, generation: u64, base: u64, rows: usize, bounds: Bounds) {
        self.entries
            .retain(|e| e.key != key && e.generation == generation && e.base == base);
        self.entries.push(CachedBounds {
            key,
            generation,
            base,
            rows,
            bounds,
        });
        let bytes =
            |e: &CachedBounds| (e.bounds.lower.words.len() + e.bounds.upper.words.len()) * 8;
        while self.entries.len() > CACHED_QUERIES
            || (self.entries.len() > 1
                && self.entries.iter().map(bytes).sum::<usize>() > CACHED_BYTES)
        {
            self.entries.remove(0);
        }
    }
}

/// Bounds of `expr`, exact only within `scope` (rows outside it come out
/// unset): the terms of an `And` after its first are only evaluated where
/// the earlier ones left candidates. Chains are flat lists walked in a
/// loop; only parentheses and `not` (at most [`kaudit_query::MAX_DEPTH`]
/// from the parser) recurse.
fn bounds_in(
    ix: &Index,
    expr: &Expr,
    scope: Option<&Bits>,
    budget: Option<Budget>,
) -> IndexResult<Bounds> {
    crate::check_budget(budget)?;
    let n = ix.rows();
    let mut b = match expr {
        Expr::All => Bounds {
            lower: Bits::full(n),
            upper: Bits::full(n),
            exact: true,
        },
        Expr::And(..) => {
            // The chain's terms, most selective first (by the share of the
            // dictionary a term accepts; terms without one go last).
            let mut terms = Vec::new();
            and_terms(expr, &mut terms);
            let mut keyed: Vec<(f64, &Expr, Option<Vec<u8>>)> = Vec::with_capacity(terms.len());
            for t in terms {
                let table = match t {
                    Expr::Compare { field, op, values } => dict_table(ix, field, *op, values)?,
                    _ => None,
                };
                keyed.push((selectivity(table.as_deref()), t, table));
            }
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut acc: Option<Bounds> = None;
            for (_, t, table) in keyed {
                crate::check_budget(budget)?;
                let within = match (&acc, scope) {
                    (Some(x), _) => Some(&x.upper),
                    (None, s) => s,
                };
                let y = match (t, table) {
                    (Expr::Compare { field, .. }, Some(table)) => {
                        dict_bounds(ix, field, &table, within)
                    }
                    _ => bounds_in(ix, t, within, budget)?,
                };
                acc = Some(match acc {
                    None => y,
                    Some(mut x) => {
                        x.lower.and(&y.lower);
                        x.upper.and(&y.upper);
                        x.exact &= y.exact;
                        x
                    }
                });
                if acc.as_ref().is_some_and(|x| x.upper.is_empty()) {
                    // Nothing left: the remaining terms cannot add rows.
                    break;
                }
            }
            // An empty `and` matches everything, exactly.
            acc.unwrap_or_else(|| Bounds {
                lower: Bits::full(n),
                upper: Bits::full(n),
                exact: true,
            })
        }
        Expr::Or(terms) => {
            // An empty `or` matches nothing, exactly.
            let mut x = Bounds {
                lower: Bits::empty(n),
                upper: Bits::empty(n),
                exact: true,
            };
            for t in terms {
                let y = bounds_in(ix, t, scope, budget)?;
                x.lower.or(&y.lower);
                x.upper.or(&y.upper);
                x.exact &= y.exact;
            }
            x
        }
        Expr::Not(a) => {
            let x = bounds_in(ix, a, scope, budget)?;
            let (mut lower, mut upper) = (x.upper, x.lower);
            lower.not();
            upper.not();
            Bounds {
                lower,
                upper,
                exact: x.exact,
            }
        }
        Expr::Text(_) => unknown(n),
        Expr::Compare { field, op, values } => compare(ix, field, *op, values, scope)?,
    };
    if let Some(s) = scope {
        b.lower.and(s);
        b.upper.and(s);
    }
    Ok(b)
}

/// The operands of an `and`, with those of `and`s nested in it (from
/// parentheses) taken in too, in order, without recursion.
fn and_terms<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        match e {
            Expr::And(v) => stack.extend(v.iter().rev()),
            other => out.push(other),
        }
    }
}

/// A dictionary comparison's verdict per id: 1 = matches, 0 = does not,
/// 2 = unknown (id 0 and ids the dictionary does not hold). None when the
/// field has no dictionary column loaded.
fn dict_table(
    ix: &Index,
    field: &Field,
    op: Op,
    values: &[String],
) -> IndexResult<Option<Vec<u8>>> {
    let Some((_, dict)) = Index::dict_slot(field).and_then(|s| ix.column(s)) else {
        return Ok(None);
    };
    let test = CompareTest::new(field, op, values).map_err(IndexError::Query)?;
    let mut table: Vec<u8> = vec![2; dict.len() + 1];
    for (id, vals) in dict.iter() {
        table[id as usize] = u8::from(test.matches_values(vals));
    }
    Ok(Some(table))
}

/// About what share of rows a term keeps, from its table: the share of the
/// dictionary's entries it accepts (a name is rarer than a verb); 1.0 when
/// unknown. Only orders the work, never changes the answer.
fn selectivity(table: Option<&[u8]>) -> f64 {
    match table {
        Some(t) if t.len() > 1 => {
            t.iter().filter(|&&v| v == 1).count() as f64 / (t.len() - 1) as f64
        }
        _ => 1.0,
    }
}

/// Bounds of a dictionary comparison given its per-id `table`, evaluated
/// only on the words of `scope` when one is given.
fn dict_bounds(ix: &Index, field: &Field, table: &[u8], scope: Option<&Bits>) -> Bounds {
    let n = ix.rows();
    let Some((col, _)) = Index::dict_slot(field).and_then(|s| ix.column(s)) else {
        return unknown(n);
    };
    let mut lower = Bits::empty(n);
    let mut unknown_rows = Bits::empty(n);
    match scope {
        Some(s) => col.classify_in(table, &s.words, &mut lower.words, &mut unknown_rows.words),
        None => match Index::dict_slot(field)
            .and_then(|s| dict_lookup(ix, s, table, &mut lower, &mut unknown_rows))
        {
            // The lookup answered its whole blocks; the rest is scanned.
            Some(covered) => {
                col.classify_from(covered, table, &mut lower.words, &mut unknown_rows.words)
            }
            None => col.classify(table, &mut lower.words, &mut unknown_rows.words),
        },
    }
    lower.trim();
    unknown_rows.trim();
    let unknown = unknown_rows.words.iter().any(|&w| w != 0);
    let mut upper = lower.clone();
    upper.or(&unknown_rows);
    let mut exact = !unknown;
    for row in col.len()..n {
        exact = false;
        upper.set(row);
    }
    Bounds {
        lower,
        upper,
        exact,
    }
}

/// The rows a dictionary comparison's `table` accepts (into `lower`) and
/// cannot decide (into `unknown`), among those the column's sorted lookup
/// covers; returns the rows covered. None when the column has no lookup or
/// the table accepts too many ids for one to pay.
fn dict_lookup(
    ix: &Index,
    slot: usize,
    table: &[u8],
    lower: &mut Bits,
    unknown: &mut Bits,
) -> Option<usize> {
    let ids = |verdict: u8| -> Vec<std::ops::Range<u64>> {
        let mut out: Vec<std::ops::Range<u64>> = Vec::new();
        for (id, _) in table.iter().enumerate().filter(|(_, &v)| v == verdict) {
            let id = id as u64;
            match out.last_mut() {
                Some(r) if r.end == id => r.end = id + 1,
                _ => out.push(id..id + 1),
            }
        }
        out
    };
    let hit = ids(1);
    // Unknown: id 0, ids the dictionary could not decode, and ids past it
    // (which `classify` treats as unknown too).
    let mut unsure = ids(2);
    unsure.push(table.len() as u64..u64::from(u32::MAX) + 1);
    if hit.len() + unsure.len() > MAX_LOOKUP_KEYS {
        return None;
    }
    let src = LookupSource::Dict(slot);
    let covered = ix.lookup(src, &hit, |r| lower.set(r))?;
    ix.lookup(src, &unsure, |r| unknown.set(r))?;
    Some(covered)
}

fn unknown(n: usize) -> Bounds {
    Bounds {
        lower: Bits::empty(n),
        upper: Bits::full(n),
        exact: false,
    }
}

fn compare(
    ix: &Index,
    field: &Field,
    op: Op,
    values: &[String],
    scope: Option<&Bits>,
) -> IndexResult<Bounds> {
    let n = ix.rows();
    if Index::dict_slot(field).is_some() {
        return Ok(match dict_table(ix, field, op, values)? {
            Some(table) => dict_bounds(ix, field, &table, scope),
            None => unknown(n),
        });
    }
    if let Some(slot) = Index::hash_slot(field) {
        let plain = values.iter().all(|v| !v.contains('*'));
        if let (Some(col), true, Op::Eq | Op::Ne) = (ix.hash_column(slot), plain, op) {
            let wanted: Vec<u32> = values.iter().map(|v| value_hash(v)).collect();
            // Candidates for `=`: rows whose hash is one of the wanted ones,
            // from the sorted lookup where it covers the rows, else scanned.
            let mut cand = Bits::empty(n);
            let ranges: Vec<std::ops::Range<u64>> = wanted
                .iter()
                .map(|&h| u64::from(h)..u64::from(h) + 1)
                .collect();
            let covered = if ranges.len() <= MAX_LOOKUP_KEYS {
                ix.lookup(LookupSource::Hash(slot), &ranges, |r| cand.set(r))
                    .unwrap_or(0)
            } else {
                0
            };
            let from = (covered / 64).min(cand.words.len());
            let rest = col.get(from * 64..).unwrap_or(&[]);
            for (chunk, w) in rest.chunks(64).zip(cand.words[from..].iter_mut()) {
                let mut word = 0u64;
                for (i, h) in chunk.iter().enumerate() {
                    word |= u64::from(wanted.contains(h)) << i;
                }
                *w = word;
            }
            cand.trim();
            for row in col.len()..n {
                cand.set(row);
            }
            let eq = Bounds {
                lower: Bits::empty(n),
                upper: cand,
                exact: false,
            };
            return Ok(if op == Op::Eq {
                eq
            } else {
                let (mut lower, mut upper) = (eq.upper, eq.lower);
                lower.not();
                upper.not();
                Bounds {
                    lower,
                    upper,
                    exact: false,
                }
            });
        }
    }
    Ok(unknown(n))
}

#[cfg(test)]
mod bits_tests {
    use super::Bits;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn for_each_rev_visits_the_same_rows_highest_first(len in 0usize..400, rows in prop::collection::vec(0usize..400, 0..120)) {
            let mut b = Bits::empty(len);
            for r in &rows {
                b.set(*r);
            }
            let mut fwd = Vec::new();
            b.for_each(|r| fwd.push(r));
            let mut rev = Vec::new();
            b.for_each_rev(|r| rev.push(r));
            fwd.reverse();
            prop_assert_eq!(rev, fwd);
        }
    }
}
