//! Per-value row counts of whole dictionary columns, extended as the index
//! grows: the all-time top values of a field (the dashboard's top users,
//! resources, namespaces and codes) and autocomplete's value counts are
//! read from here instead of a pass over every row per request.

use crate::index::Index;
use std::collections::HashMap;
use std::sync::Mutex;

/// Rows counted per read of a column chunk.
const CHUNK_ROWS: usize = 1 << 16;

/// The counts of one column over its first `rows` rows.
struct Facet {
    generation: u64,
    base: u64,
    rows: usize,
    counts: Vec<u64>,
}

/// Row counts per dictionary id, per column slot, kept for one index.
#[derive(Default)]
pub struct Facets {
    slots: Mutex<HashMap<usize, Facet>>,
    times: Mutex<Option<Span>>,
}

/// The oldest and newest time over the first `rows` rows.
#[derive(Clone, Copy)]
struct Span {
    generation: u64,
    base: u64,
    rows: usize,
    oldest: i64,
    newest: i64,
}

impl Facets {
    /// An empty cache.
    pub fn new() -> Facets {
        Facets::default()
    }

    /// How many of `ix`'s rows hold each id of column `slot` (index = id;
    /// id 0 = value unknown to the index). Only rows added since the last
    /// call are counted; None when the column is not loaded or does not
    /// cover every row.
    pub fn counts(&self, ix: &Index, slot: usize) -> Option<Vec<u64>> {
        let mut slots = self.slots.lock().ok()?;
        Self::extend(&mut slots, ix, slot).map(|f| f.counts.clone())
    }

    /// The oldest and newest event time over all of `ix`'s rows (None when
    /// it has none), extended like the counts.
    pub fn time_span(&self, ix: &Index) -> Option<(i64, i64)> {
        let times = ix.times();
        let mut cached = self.times.lock().ok()?;
        let (mut rows, mut lo, mut hi) = match *cached {
            Some(s)
                if s.generation == ix.generation()
                    && s.base == ix.base()
                    && s.rows <= times.len() =>
            {
                (s.rows, s.oldest, s.newest)
            }
            _ => (0, i64::MAX, i64::MIN),
        };
        if let Some(new) = times.get(rows..) {
            (lo, hi) = new.iter().fold((lo, hi), |(a, z), &t| (a.min(t), z.max(t)));
            rows = times.len();
        }
        *cached = Some(Span {
            generation: ix.generation(),
            base: ix.base(),
            rows,
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
        let f = slots.entry(slot).or_insert_with(|| Facet {
            generation: ix.generation(),
            base: ix.base(),
            rows: 0,
            counts: Vec::new(),
        });
        if f.generation != ix.generation() || f.base != ix.base() || f.rows > col.len() {
            *f = Facet {
                generation: ix.generation(),
                base: ix.base(),
                rows: 0,
                counts: Vec::new(),
            };
        }
        let mut ids = Vec::with_capacity(CHUNK_ROWS);
        while f.rows < col.len() {
            let end = (f.rows + CHUNK_ROWS).min(col.len());
            col.ids_into(f.rows..end, &mut ids);
            for &id in &ids {
                let id = id as usize;
                if id >= f.counts.len() {
                    f.counts.resize(id + 1, 0);
                }
                f.counts[id] += 1;
            }
            f.rows = end;
        }
        Some(f)
    }
}
