//! The `(node, seq)` ranges a shipper may have sent twice, so aggregates
//! deduplicate only there.
//!
//! Rows are keyed by `gseq` in a `ReplacingMergeTree`, which folds a resent
//! row into the first one only when a merge happens to run (maybe never for
//! old parts). Deduplicating every row of an aggregate (`LIMIT 1 BY gseq`
//! over the whole table) is exact but made a top-N over 1M rows ~200x
//! slower than the embedded index. Yet a shipper knows exactly which rows it
//! may have sent more than once: only rows at or after its durable cursor
//! that an earlier attempt (before a crash, or an INSERT whose answer was
//! lost) may have carried. It writes that range into `<prefix>resent`
//! *before* it sends those rows again (see [`crate::ship`]), so at any moment
//! every duplicate row in the table lies inside a recorded range. Aggregates
//! then read the table as `plain rows outside the ranges UNION ALL rows
//! inside them LIMIT 1 BY gseq` ([`dedup_source`]): exact with duplicates
//! present, and as fast as a plain scan when no range covers the rows.
//!
//! Any superset of the recorded ranges is still exact (deduplicating a row
//! that has no copy changes nothing), so [`Resent`] merges and, past
//! [`MAX_RANGES`], coalesces ranges to keep the SQL small.

use crate::client::Client;
use crate::schema::Tables;
use crate::{gseq, ChResult, ClickHouseError};

/// Most ranges spliced into one statement; more are coalesced (over the
/// smallest gaps) into a covering superset.
pub const MAX_RANGES: usize = 64;

/// Most ranges read from the table (each is one row; a node records one
/// per restart or failed INSERT, so this is far above any real count).
pub const MAX_READ: usize = 1_000_000;

/// The `gseq` ranges (half-open, sorted, disjoint) whose rows may be in the
/// table more than once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resent {
    ranges: Vec<(u64, u64)>,
}

impl Resent {
    /// No range: every row is in the table once.
    pub fn none() -> Resent {
        Resent::default()
    }

    /// The ranges `(node_id, lo, hi)` (node sequence numbers, half-open)
    /// merged, and coalesced to at most [`MAX_RANGES`].
    pub fn from_ranges(it: impl IntoIterator<Item = (u16, u64, u64)>) -> Resent {
        let mut v: Vec<(u64, u64)> = it
            .into_iter()
            .filter(|(_, lo, hi)| lo < hi)
            .map(|(n, lo, hi)| {
                // `hi` may be one past the node's last possible seq.
                let g_hi = gseq(n, hi.saturating_sub(1)).saturating_add(1);
                (gseq(n, lo), g_hi)
            })
            .collect();
        v.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            match merged.last_mut() {
                Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        while merged.len() > MAX_RANGES {
            // Close the smallest gap (a superset stays exact).
            let i = (1..merged.len())
                .min_by_key(|&i| merged[i].0 - merged[i - 1].1)
                .unwrap_or(1);
            merged[i - 1].1 = merged[i].1;
            merged.remove(i);
        }
        Resent { ranges: merged }
    }

    /// The merged `gseq` ranges.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Whether no row may be in the table twice.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The SQL test "this row's gseq lies in a range" (None: no range).
    pub fn sql(&self) -> Option<String> {
        if self.ranges.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|(lo, hi)| format!("(gseq >= {lo} AND gseq < {hi})"))
            .collect();
        Some(format!("({})", parts.join(" OR ")))
    }

    /// Reads the recorded ranges of every node.
    pub fn read(client: &Client, tables: &Tables) -> ChResult<Resent> {
        let t = client.execute(&format!(
            "SELECT node_id, lo, hi FROM {}.{} LIMIT {} FORMAT TabSeparated",
            tables.db,
            tables.resent,
            MAX_READ + 1
        ))?;
        let mut v = Vec::new();
        for line in t.lines() {
            if v.len() >= MAX_READ {
                return Err(ClickHouseError::Answer {
                    what: "resent ranges".into(),
                    message: format!("more than {MAX_READ} rows in {}", tables.resent),
                });
            }
            let mut it = line.split('\t');
            match (
                it.next().and_then(|n| n.parse::<u16>().ok()),
                it.next().and_then(|s| s.parse::<u64>().ok()),
                it.next().and_then(|s| s.parse::<u64>().ok()),
            ) {
                (Some(n), Some(lo), Some(hi)) => v.push((n, lo, hi)),
                _ => {
                    return Err(ClickHouseError::Answer {
                        what: "resent ranges".into(),
                        message: format!("not NODE<TAB>LO<TAB>HI: {line:?}"),
                    })
                }
            }
        }
        Ok(Resent::from_ranges(v))
    }
}

/// A subquery source giving the columns `cols` (which must include `gseq`)
/// of the rows of `table` passing `filter`, each row once: rows outside the
/// resent ranges as they are, rows inside them `LIMIT 1 BY gseq`. Without
/// ranges it is a plain scan.
pub fn dedup_source(table: &str, cols: &str, filter: &str, resent: &Resent) -> String {
    match resent.sql() {
        None => format!("SELECT {cols} FROM {table} WHERE {filter}"),
        Some(r) => format!(
            "SELECT {cols} FROM {table} WHERE ({filter}) AND NOT {r} UNION ALL SELECT {cols} FROM {table} WHERE ({filter}) AND {r} LIMIT 1 BY gseq"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_per_node_and_never_shrink() {
        let r = Resent::from_ranges([(1, 10, 20), (1, 15, 30), (2, 0, 5), (1, 40, 40)]);
        assert_eq!(
            r.ranges(),
            &[(gseq(1, 10), gseq(1, 30)), (gseq(2, 0), gseq(2, 5))]
        );
        assert!(Resent::from_ranges([(3, 7, 7)]).is_empty());
        let sql = r.sql().expect("sql");
        assert!(sql.contains(&format!("gseq >= {}", gseq(2, 0))), "{sql}");
    }

    #[test]
    fn many_ranges_coalesce_into_a_cover() {
        let input: Vec<(u16, u64, u64)> = (0..200u64).map(|i| (1, i * 10, i * 10 + 2)).collect();
        let r = Resent::from_ranges(input.clone());
        assert!(r.ranges().len() <= MAX_RANGES);
        // Every input range is inside some output range.
        for (n, lo, hi) in input {
            let (glo, ghi) = (gseq(n, lo), gseq(n, hi));
            assert!(
                r.ranges().iter().any(|(a, b)| *a <= glo && ghi <= *b),
                "{lo}..{hi} not covered"
            );
        }
    }

    #[test]
    fn no_ranges_is_a_plain_scan() {
        let s = dedup_source("t", "gseq, user", "verb = 'get'", &Resent::none());
        assert_eq!(s, "SELECT gseq, user FROM t WHERE verb = 'get'");
        let s = dedup_source("t", "gseq", "1", &Resent::from_ranges([(0, 0, 3)]));
        assert!(s.contains("UNION ALL"), "{s}");
        assert!(s.ends_with("LIMIT 1 BY gseq"), "{s}");
    }
}
