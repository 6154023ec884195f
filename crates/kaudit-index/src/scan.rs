//! Columnar scans: the key-field values of every matching event, read from
//! the index's dictionary columns instead of the stored events.
//!
//! User activity and RBAC from usage need a handful of short fields of
//! every event a user caused, often hundreds of thousands of them. Reading
//! and parsing each scattered event from the zstd store costs tens of
//! microseconds; the same values sit in the dictionary columns, where a row
//! costs a few nanoseconds. A row is answered from the columns when the
//! query's lower bound says it surely matches and every requested column
//! knows its value; otherwise (id 0, a possible-but-unsure match, the
//! unindexed tail, a field without a column) the event is read, confirmed
//! with the query and its values extracted the way the indexer extracts
//! them, so both ways give the same answer.

use crate::index::{
    event_time, nonresource_path, value_hash, Column, Dict, Index, Needs, NONRESOURCE_PATH_SLOT,
};
use crate::plan::{needs, Bits};
use crate::{IndexError, IndexResult};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use kaudit_event::Event;
use kaudit_query::{Field, LazyJson, Query};
use kaudit_store::LogReader;

/// Candidate rows handled together: the events some of them need are read
/// in one pass, memory stays bounded whatever the match count, and the
/// column bytes of a chunk are still in cache when its rows are emitted.
const CHUNK_ROWS: usize = 1024;
/// Records closer than this are read in one range (one bundle decompression
/// serves them all).
const READ_GAP: u64 = 2048;
/// Dictionaries up to this many entries get a dense id lookup table.
const DENSE_IDS: usize = 1 << 20;

/// A value a columnar scan reports for each event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanField {
    /// A key field's values, exactly as [`Field::values`] gives them.
    Key(Field),
    /// The path of a non-resource request, see
    /// [`crate::index::nonresource_path`] (no value for resource requests).
    NonResourcePath,
}

impl ScanField {
    /// The index column answering this field, if there is one.
    fn slot(&self) -> Option<usize> {
        match self {
            ScanField::Key(f) => Index::dict_slot(f),
            ScanField::NonResourcePath => Some(NONRESOURCE_PATH_SLOT),
        }
    }

    /// Calls `f` with each value of this field in `ev` (the reference every
    /// backend's columns must agree with).
    pub fn values(&self, ev: &Event, cluster: &str, json: &mut LazyJson, f: &mut dyn FnMut(&str)) {
        match self {
            ScanField::Key(field) => field.values(ev, cluster, json, f),
            ScanField::NonResourcePath => {
                if let Some(p) = nonresource_path(ev) {
                    f(p)
                }
            }
        }
    }
}

/// One matching event as a columnar scan reports it.
#[derive(Clone, Copy, Debug)]
pub struct ScanRow<'a> {
    /// Sequence number in the store.
    pub seq: u64,
    /// Event time (microseconds, [`crate::event_time`]).
    pub time: i64,
    /// [`crate::index::value_hash`] of the auditID, 0 when the event has
    /// none. Equal auditIDs give equal hashes; different ones collide with
    /// probability 2^-32, so callers use it to recognise a request's stages,
    /// not to prove two events belong together.
    pub audit_hash: u32,
    /// The requested fields' values, in the order asked for (a field can
    /// have none or several: groups, sourceIPs).
    pub values: &'a [&'a [&'a str]],
    /// Per field, a number standing for the row's value list: within one
    /// scan, rows with the same nonzero number have the same values, so a
    /// caller can work on each distinct value once (dictionary encoding);
    /// 0 says nothing. The embedded backend gives dictionary ids for rows
    /// answered from the columns and 0 for rows read from the store.
    pub ids: &'a [u32],
}

/// The callback of a scan; returns false to stop.
pub type ScanFn<'f> = dyn FnMut(&ScanRow<'_>) -> bool + 'f;

/// The index parts a scan of `query` for `fields` reads.
pub fn scan_needs(query: &Query, fields: &[ScanField]) -> Needs {
    let mut n = needs(query.expr());
    for s in fields.iter().filter_map(ScanField::slot) {
        if !n.dict.contains(&s) {
            n.dict.push(s);
        }
    }
    if let Some(h) = Index::hash_slot(&Field::AuditId) {
        if !n.hash.contains(&h) {
            n.hash.push(h);
        }
    }
    n
}

/// Decoded value lists of one dictionary, filled as ids are met.
struct IdCache<'i> {
    dict: &'i Dict,
    dense: Vec<u32>,
    sparse: HashMap<u32, u32>,
    lists: Vec<Vec<&'i str>>,
}

impl<'i> IdCache<'i> {
    fn new(dict: &'i Dict) -> IdCache<'i> {
        let dense = if dict.len() <= DENSE_IDS {
            vec![u32::MAX; dict.len() + 1]
        } else {
            Vec::new()
        };
        IdCache {
            dict,
            dense,
            sparse: HashMap::new(),
            lists: Vec::new(),
        }
    }

    fn lookup(&self, id: u32) -> Option<u32> {
        match self.dense.get(id as usize) {
            Some(&u32::MAX) => None,
            Some(&at) => Some(at),
            None => self.sparse.get(&id).copied(),
        }
    }

    /// Decodes `id` if not done yet; false when the dictionary cannot
    /// answer it (id 0, unknown id).
    fn ensure(&mut self, id: u32) -> bool {
        if id == 0 {
            return false;
        }
        if self.lookup(id).is_some() {
            return true;
        }
        let Some(vals) = self.dict.values(id) else {
            return false;
        };
        let at = self.lists.len() as u32;
        self.lists.push(vals);
        match self.dense.get_mut(id as usize) {
            Some(slot) => *slot = at,
            None => {
                self.sparse.insert(id, at);
            }
        }
        true
    }

    fn get(&self, id: u32) -> &[&'i str] {
        self.lookup(id)
            .and_then(|at| self.lists.get(at as usize))
            .map_or(&[], Vec::as_slice)
    }
}

/// A row answered by reading its event.
struct ReadRow {
    time: i64,
    audit_hash: u32,
    values: Vec<Vec<String>>,
}

/// The values of `fields` and the auditID hash of `ev`, as the indexer
/// derives them.
fn extract(ev: &Event, cluster: &str, fields: &[ScanField]) -> (u32, Vec<Vec<String>>) {
    let mut json = LazyJson::default();
    let values = fields
        .iter()
        .map(|fl| {
            let mut v = Vec::new();
            fl.values(ev, cluster, &mut json, &mut |s| v.push(s.to_string()));
            v
        })
        .collect();
    let mut hash = 0;
    Field::AuditId.values(ev, cluster, &mut json, &mut |v| {
        if hash == 0 {
            hash = value_hash(v)
        }
    });
    (hash, values)
}

fn emit_read(seq: u64, r: &ReadRow, f: &mut ScanFn<'_>) -> bool {
    let strs: Vec<Vec<&str>> = r
        .values
        .iter()
        .map(|l| l.iter().map(String::as_str).collect())
        .collect();
    let lists: Vec<&[&str]> = strs.iter().map(Vec::as_slice).collect();
    f(&ScanRow {
        seq,
        time: r.time,
        audit_hash: r.audit_hash,
        values: &lists,
        ids: &vec![0; lists.len()],
    })
}

fn parse(seq: u64, bytes: &[u8]) -> IndexResult<Event> {
    Event::from_json(bytes).map_err(|e| IndexError::Record { seq, source: e })
}

struct Scan<'i, 'q> {
    ix: &'i Index,
    store: &'q dyn LogReader,
    query: &'q Query,
    since: Option<i64>,
    until: Option<i64>,
    fields: &'q [ScanField],
    lower: Bits,
    cols: Option<Vec<&'i Column>>,
    caches: Vec<IdCache<'i>>,
    hashes: Option<&'i [u32]>,
}

impl Scan<'_, '_> {
    fn in_range(&self, t: i64) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }

    /// Reads the events of `seqs` (ascending), keeping those in range and
    /// matching (`confirm` rows only need the check).
    fn read(&self, seqs: &[(u64, bool)]) -> IndexResult<HashMap<u64, ReadRow>> {
        let mut out = HashMap::with_capacity(seqs.len());
        let mut i = 0;
        while i < seqs.len() {
            let mut j = i;
            while j + 1 < seqs.len() && seqs[j + 1].0 - seqs[j].0 < READ_GAP {
                j += 1;
            }
            let wanted = &seqs[i..=j];
            let mut err = None;
            self.store.read(
                wanted[0].0..wanted[wanted.len() - 1].0 + 1,
                &mut |seq, leaf| {
                    let Ok(k) = wanted.binary_search_by_key(&seq, |w| w.0) else {
                        return true;
                    };
                    let ev = match parse(seq, leaf.event) {
                        Ok(ev) => ev,
                        Err(e) => {
                            err = Some(e);
                            return false;
                        }
                    };
                    let time = event_time(&ev, leaf.received);
                    let confirm = wanted[k].1;
                    if self.in_range(time) && (!confirm || self.query.matches(&ev, leaf.cluster)) {
                        let (audit_hash, values) = extract(&ev, leaf.cluster, self.fields);
                        out.insert(
                            seq,
                            ReadRow {
                                time,
                                audit_hash,
                                values,
                            },
                        );
                    }
                    true
                },
            )?;
            if let Some(e) = err {
                return Err(e);
            }
            i = j + 1;
        }
        Ok(out)
    }

    /// Answers a chunk of candidate rows in order; false once `f` stopped.
    fn chunk(&mut self, rows: &[usize], f: &mut ScanFn<'_>) -> IndexResult<bool> {
        let base = self.ix.base();
        let width = self.fields.len();
        // ids[i * width + k]: the id of rows[i] in the column of field k.
        let mut ids = vec![0u32; rows.len() * width];
        let mut columnar = vec![false; rows.len()];
        if let (Some(cols), Some(_)) = (&self.cols, self.hashes) {
            for (i, &r) in rows.iter().enumerate() {
                columnar[i] = self.lower.get(r);
            }
            for (k, (col, cache)) in cols.iter().zip(self.caches.iter_mut()).enumerate() {
                col.gather(rows, |i, id| {
                    ids[i * width + k] = id;
                    if columnar[i] && !cache.ensure(id) {
                        columnar[i] = false;
                    }
                });
            }
        }
        let to_read: Vec<(u64, bool)> = rows
            .iter()
            .zip(&columnar)
            .filter(|(_, &c)| !c)
            .map(|(&r, _)| (base + r as u64, !self.lower.get(r)))
            .collect();
        let read = if to_read.is_empty() {
            HashMap::new()
        } else {
            self.read(&to_read)?
        };
        // Gathered in tight loops of their own, so the scattered loads of
        // these wide columns overlap instead of stalling the emit loop.
        let times = self.ix.times();
        let row_times: Vec<i64> = rows
            .iter()
            .map(|&r| times.get(r).copied().unwrap_or(i64::MIN))
            .collect();
        let hashes = self.hashes.unwrap_or(&[]);
        let row_hashes: Vec<u32> = rows
            .iter()
            .map(|&r| hashes.get(r).copied().unwrap_or(0))
            .collect();
        let mut vals: Vec<&[&str]> = Vec::with_capacity(width);
        for (i, (&row, &col)) in rows.iter().zip(&columnar).enumerate() {
            let seq = base + row as u64;
            let go = if col {
                vals.clear();
                let row_ids = ids.get(i * width..(i + 1) * width).unwrap_or(&[]);
                for (cache, &id) in self.caches.iter().zip(row_ids) {
                    vals.push(cache.get(id));
                }
                f(&ScanRow {
                    seq,
                    time: row_times.get(i).copied().unwrap_or(i64::MIN),
                    audit_hash: row_hashes.get(i).copied().unwrap_or(0),
                    values: &vals,
                    ids: row_ids,
                })
            } else {
                match read.get(&seq) {
                    Some(r) => emit_read(seq, r, f),
                    None => true,
                }
            };
            if !go {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Calls `f` for every event matching `query` within [since, until), in
/// sequence order (index rows, then the unindexed tail), with the values of
/// `fields`. The index must hold [`scan_needs`] (missing columns only cost
/// speed: those rows are read from the store).
pub fn scan_fields(
    ix: &Index,
    store: &dyn LogReader,
    query: &Query,
    since: Option<i64>,
    until: Option<i64>,
    fields: &[ScanField],
    f: &mut ScanFn<'_>,
) -> IndexResult<()> {
    let b = crate::plan::bounds_within(ix, query.expr(), query.budget())?;
    let mut cols = Some(Vec::with_capacity(fields.len()));
    let mut caches = Vec::with_capacity(fields.len());
    for fl in fields {
        match fl.slot().and_then(|s| ix.column(s)) {
            Some((col, dict)) => {
                if let Some(c) = &mut cols {
                    c.push(col);
                }
                caches.push(IdCache::new(dict));
            }
            None => cols = None,
        }
    }
    let mut scan = Scan {
        ix,
        store,
        query,
        since,
        until,
        fields,
        lower: b.lower,
        cols,
        caches,
        hashes: Index::hash_slot(&Field::AuditId).and_then(|s| ix.hash_column(s)),
    };
    let times = ix.times();
    // Without bounds the time column is only read for the rows emitted.
    let bounded = since.is_some() || until.is_some();
    let mut chunk = Vec::with_capacity(CHUNK_ROWS);
    let mut outcome: IndexResult<bool> = Ok(true);
    b.upper.for_each(|row| {
        if !matches!(outcome, Ok(true)) {
            return;
        }
        if bounded && !scan.in_range(times.get(row).copied().unwrap_or(i64::MIN)) {
            return;
        }
        chunk.push(row);
        if chunk.len() == CHUNK_ROWS {
            outcome = crate::check_budget(query.budget()).and_then(|()| scan.chunk(&chunk, f));
            chunk.clear();
        }
    });
    if outcome? && (chunk.is_empty() || scan.chunk(&chunk, f)?) {
        scan_tail(&scan, f)?;
    }
    Ok(())
}

/// The records past the index: read, confirmed and extracted one by one.
fn scan_tail(scan: &Scan<'_, '_>, f: &mut ScanFn<'_>) -> IndexResult<()> {
    let start = scan.ix.next_seq().max(scan.store.first_seq());
    let end = scan.store.size();
    if start >= end {
        return Ok(());
    }
    let mut err = None;
    let budget = scan.query.budget();
    crate::check_budget(budget)?;
    let mut read = 0u64;
    scan.store.read(start..end, &mut |seq, leaf| {
        read += 1;
        if read.is_multiple_of(1024) {
            if let Err(e) = crate::check_budget(budget) {
                err = Some(e);
                return false;
            }
        }
        let ev = match parse(seq, leaf.event) {
            Ok(ev) => ev,
            Err(e) => {
                err = Some(e);
                return false;
            }
        };
        let time = event_time(&ev, leaf.received);
        if !scan.in_range(time) || !scan.query.matches(&ev, leaf.cluster) {
            return true;
        }
        let (audit_hash, values) = extract(&ev, leaf.cluster, scan.fields);
        emit_read(
            seq,
            &ReadRow {
                time,
                audit_hash,
                values,
            },
            f,
        )
    })?;
    err.map_or(Ok(()), Err)
}

/// One event of a request, as request counting sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StageKey {
    /// [`ScanRow::audit_hash`].
    pub audit_hash: u32,
    /// Event time.
    pub time: i64,
    /// Whether the stage is ResponseComplete or Panic.
    pub is_final: bool,
}

/// Whether the stage name is one a request ends with.
pub(crate) fn is_final_stage(stage: &str) -> bool {
    matches!(stage, "ResponseComplete" | "Panic")
}

/// Marks the event each request is counted at, given a request's events in
/// the caller's order: its final stage (one count per distinct final-stage
/// time, so a record stored twice counts once), or, when none of its final
/// stages is among `keys`, its first event. An event without an auditID is a
/// request of its own. Requests are recognised by the auditID hash: the only
/// way this differs from grouping by the full auditID is a 32-bit collision
/// that involves an unfinished request (it is then not counted), or two
/// finished ones with the same final-stage microsecond (counted once).
pub(crate) fn counted_events(keys: &[StageKey]) -> Vec<bool> {
    let finished: HashSet<u32> = keys
        .iter()
        .filter(|k| k.is_final && k.audit_hash != 0)
        .map(|k| k.audit_hash)
        .collect();
    let mut finals = HashSet::with_capacity(keys.len());
    let mut open = HashSet::new();
    keys.iter()
        .map(|k| {
            if k.audit_hash == 0 {
                true
            } else if k.is_final {
                finals.insert((k.audit_hash, k.time))
            } else {
                !finished.contains(&k.audit_hash) && open.insert(k.audit_hash)
            }
        })
        .collect()
}

/// Gives each distinct string a small number, so per-event records stay
/// small and strings are allocated once (foldhash: SipHash would be most
/// of the work for rows without [`ScanRow::ids`]).
#[derive(Default)]
pub(crate) struct Interner {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    /// The number of `s`.
    pub fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    /// The string numbered `id` ("" for an unknown number).
    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |s| s)
    }
}

/// Remembers a caller's result per (field, [`ScanRow::ids`] number), so
/// work on a value list is done once per distinct list, not per event.
#[derive(Default)]
pub(crate) struct IdMemo {
    fields: Vec<Vec<Option<u32>>>,
}

/// Largest id remembered in a dense table (larger ones are recomputed).
const MEMO_IDS: u32 = 1 << 20;

impl IdMemo {
    /// The result for field `k` with value-list number `id`, computed by
    /// `compute` the first time (always when `id` is 0).
    pub fn get(&mut self, k: usize, id: u32, compute: impl FnOnce() -> u32) -> u32 {
        if id == 0 || id >= MEMO_IDS {
            return compute();
        }
        if self.fields.len() <= k {
            self.fields.resize_with(k + 1, Vec::new);
        }
        let slots = &mut self.fields[k];
        if slots.len() <= id as usize {
            slots.resize(id as usize + 1, None);
        }
        if let Some(v) = slots[id as usize] {
            return v;
        }
        let v = compute();
        slots[id as usize] = Some(v);
        v
    }
}
