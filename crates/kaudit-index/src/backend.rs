//! The backend-neutral search surface and the embedded (local index) backend.
//!
//! [`EmbeddedBackend`] answers from the local store and index; the trait is
//! the seam the ClickHouse backend (kaudit-clickhouse) plugs into, which
//! translates the same [`kaudit_query::Expr`] and confirms with the same
//! matcher so both answer alike.

use crate::facets::Facets;
use crate::index::{Index, IndexMode};
use crate::plan;
use crate::scan::{self, ScanField, ScanFn};
use crate::search::{self, Hit, Page, SearchRequest};
use crate::stats::{self, StatsReport, StatsRequest};
use crate::{IndexError, IndexResult};
use kaudit_query::{Field, Query};
use kaudit_store::crypt::Cipher;
use kaudit_store::{FollowError, Followed, Follower, LiveFeed, LogReader};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Most values `field_values` returns.
pub const MAX_FIELD_VALUES: usize = 1000;
/// Records indexed per write-lock hold, so queries never wait long.
const CATCH_UP_CHUNK: u64 = 20_000;

/// What every search backend answers.
pub trait SearchBackend: Send + Sync {
    /// A page of matching events, newest first unless `reverse`.
    fn search(&self, req: &SearchRequest) -> IndexResult<Page>;
    /// Counts, top-N, histograms and latency percentiles.
    fn stats(&self, req: &StatsRequest) -> IndexResult<StatsReport>;
    /// Values of a key field starting with `prefix`, most frequent first,
    /// with their event counts (for autocomplete).
    fn field_values(
        &self,
        field: &Field,
        prefix: &str,
        limit: usize,
    ) -> IndexResult<Vec<(String, u64)>>;
    /// The times of the oldest and newest match (microseconds), None when
    /// nothing matches: where an automatic histogram starts and ends.
    fn time_span(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
    ) -> IndexResult<Option<(i64, i64)>>;
    /// Calls `f` for every match (seq order), for history and rbac.
    fn for_each_match(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
        f: &mut dyn FnMut(u64, i64, &kaudit_event::Event, &str) -> bool,
    ) -> IndexResult<()>;
    /// Calls `f` for every match (seq order) with only the values of
    /// `fields` and the auditID hash, without handing out the events: the
    /// narrow question user activity and RBAC from usage ask, which a
    /// columnar store answers without reading events (a planned ClickHouse
    /// backend would select the columns with the translated query).
    fn scan_fields(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
        fields: &[ScanField],
        f: &mut ScanFn<'_>,
    ) -> IndexResult<()>;
    /// Whether the index decides `query` exactly, so that counting its
    /// matches reads no event: a caller that needs both the count and the
    /// rows of a query the index cannot decide (a compliance report's
    /// section) then makes one pass over the matches instead of a count
    /// and a search that each read every candidate. Backends that cannot
    /// tell say true, which keeps the count and the search apart.
    fn decides_exactly(&self, query: &Query) -> IndexResult<bool> {
        let _ = query;
        Ok(true)
    }
    /// Calls `f` with every match among the records not yet read at
    /// position `from`, oldest first (per origin), and returns the position
    /// to continue from: what `query --follow` polls for new matches. A
    /// follower that passes each returned position back sees every record
    /// of every origin exactly once, whatever order origins' records arrive
    /// in.
    fn follow(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
        from: &FollowPosition,
        f: &mut dyn FnMut(Hit) -> bool,
    ) -> IndexResult<FollowPosition>;
    /// The position after every record there is now: where a follower
    /// interested only in new records starts.
    fn follow_end(&self) -> IndexResult<FollowPosition>;
}

/// Most origins a [`FollowPosition`] holds (its text form is bounded too).
pub const MAX_FOLLOW_ORIGINS: usize = 4096;

/// Where a follower of the matches continues: for each origin, the next
/// sequence number to read. The embedded backend has one origin (0, its
/// store); a shared backend has one per node, because nodes' sequence
/// numbers are independent and their records arrive in no common order, so
/// no single number can say what was read. Opaque to callers, with a text
/// form for the CLI and the API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FollowPosition {
    next: std::collections::BTreeMap<u16, u64>,
}

impl FollowPosition {
    /// The position at sequence number `seq` of origin 0 (the embedded
    /// backend's only origin).
    pub fn at(seq: u64) -> FollowPosition {
        let mut p = FollowPosition::default();
        p.next.insert(0, seq);
        p
    }

    /// The next sequence number of `origin`, None when nothing of it was
    /// read yet.
    pub fn next(&self, origin: u16) -> Option<u64> {
        self.next.get(&origin).copied()
    }

    /// Sets the next sequence number of `origin`. Fails past
    /// [`MAX_FOLLOW_ORIGINS`] origins.
    pub fn set(&mut self, origin: u16, next: u64) -> IndexResult<()> {
        if self.next.len() >= MAX_FOLLOW_ORIGINS && !self.next.contains_key(&origin) {
            return Err(IndexError::Input(format!(
                "a follow position holds at most {MAX_FOLLOW_ORIGINS} origins"
            )));
        }
        self.next.insert(origin, next);
        Ok(())
    }

    /// Every origin with its next sequence number, by origin.
    pub fn iter(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.next.iter().map(|(o, s)| (*o, *s))
    }

    /// The text form: `<origin>:<next>` joined by commas (empty: nothing
    /// read yet).
    pub fn encode(&self) -> String {
        self.iter()
            .map(|(o, s)| format!("{o}:{s}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parses [`FollowPosition::encode`]'s form.
    pub fn parse(s: &str) -> IndexResult<FollowPosition> {
        let mut p = FollowPosition::default();
        if s.is_empty() {
            return Ok(p);
        }
        for (i, part) in s.split(',').enumerate() {
            let bad = || {
                IndexError::Input(format!(
                    "invalid follow position: item {} {part:?}: expected ORIGIN:SEQ",
                    i + 1
                ))
            };
            let (o, q) = part.split_once(':').ok_or_else(bad)?;
            let o: u16 = o.parse().map_err(|_| bad())?;
            let q: u64 = q.parse().map_err(|_| bad())?;
            if p.next.contains_key(&o) {
                return Err(IndexError::Input(format!(
                    "invalid follow position: origin {o} twice"
                )));
            }
            p.set(o, q)?;
        }
        Ok(p)
    }
}

/// What [`search_pages`] walked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Walked {
    /// Hits handed out.
    pub hits: u64,
    /// Where to continue when the walk stopped at its limit (or because the
    /// callback asked) on a full page, so more may match; None when the
    /// walk saw the end of the matches.
    pub next: Option<crate::search::Cursor>,
}

/// Walks every page of `req` with the cursor, in output order, handing each
/// page's hits to `f` (which returns false to stop), until `limit` hits
/// (`0`: all) have come out or nothing more matches. `req.limit` is ignored:
/// each page asks for at most `page_size` (within 1..=[`search::MAX_LIMIT`]),
/// so memory stays bounded however many hits there are. What `kaudit query
/// --limit N` streams.
pub fn search_pages(
    backend: &dyn SearchBackend,
    req: &SearchRequest,
    limit: u64,
    page_size: usize,
    f: &mut dyn FnMut(Vec<Hit>) -> bool,
) -> IndexResult<Walked> {
    let page_size = page_size.clamp(1, search::MAX_LIMIT);
    let mut req = req.clone();
    let mut walked = Walked::default();
    loop {
        let left = if limit == 0 {
            u64::MAX
        } else {
            limit - walked.hits
        };
        req.limit = usize::try_from(left).map_or(page_size, |l| l.min(page_size));
        let page = backend.search(&req)?;
        let full = page.next;
        walked.hits += page.hits.len() as u64;
        let go = f(page.hits);
        walked.next = full;
        match full {
            Some(c) if go && (limit == 0 || walked.hits < limit) => req.cursor = Some(c),
            _ => return Ok(walked),
        }
    }
}

/// The local index over a store, shareable between an indexer thread and
/// query handlers.
pub struct EmbeddedBackend {
    index: RwLock<Index>,
    store: Arc<dyn LogReader + Send + Sync>,
    writable: bool,
    facets: Facets,
}

impl EmbeddedBackend {
    /// Opens the index of the store in `data_dir`. Tries write mode (so this
    /// process keeps the index up to date) and falls back to read mode when
    /// another process holds it; either way answers stay complete because
    /// the unindexed tail is scanned.
    pub fn open(data_dir: &Path, store: Arc<dyn LogReader + Send + Sync>) -> IndexResult<Self> {
        let cipher = store.cipher();
        let (index, writable) = match open_writable(data_dir, cipher) {
            Ok(mut ix) => {
                // Lookups the committed rows complete but the files lack
                // (a store indexed before they existed): built once here.
                if ix.lookups_behind() {
                    ix.build_lookups()?;
                }
                (ix, true)
            }
            Err(IndexError::Locked(_)) => {
                let mut ix = Index::open_sealed(data_dir, IndexMode::Read, cipher)?;
                ix.load(&all_needs())?;
                (ix, false)
            }
            Err(e) => return Err(e),
        };
        let m = index.memory();
        tracing::info!(
            rows = index.rows(),
            anon_bytes = m.anon_bytes,
            mapped_bytes = m.mapped_bytes,
            dict_bytes = m.dict_bytes,
            "search index opened (committed columns memory-mapped)"
        );
        Ok(EmbeddedBackend {
            index: RwLock::new(index),
            store,
            writable,
            facets: Facets::new(),
        })
    }

    /// Wraps an index already opened (e.g. by [`open_for_query`]) for
    /// read-only use.
    pub fn from_index(index: Index, store: Arc<dyn LogReader + Send + Sync>) -> Self {
        EmbeddedBackend {
            index: RwLock::new(index),
            store,
            writable: false,
            facets: Facets::new(),
        }
    }

    /// The backend for one query from the CLI (see [`open_for_query`]):
    /// the index caught up when far behind, only the columns `query` and
    /// `extra` read loaded, read-only.
    pub fn for_query(
        data_dir: &Path,
        store: Arc<dyn LogReader + Send + Sync>,
        query: &Query,
        extra: &crate::index::Needs,
    ) -> IndexResult<Self> {
        let index = open_for_query(data_dir, store.as_ref(), query, extra)?;
        Ok(EmbeddedBackend::from_index(index, store))
    }

    /// A backend that answers from the store alone, with no index (every
    /// record is the tail): for following new records.
    pub fn unindexed(store: Arc<dyn LogReader + Send + Sync>) -> Self {
        let index = Index::empty_at(store.first_seq());
        EmbeddedBackend::from_index(index, store)
    }

    /// Whether this process maintains the index.
    pub fn writable(&self) -> bool {
        self.writable
    }

    fn read(&self) -> IndexResult<std::sync::RwLockReadGuard<'_, Index>> {
        self.index
            .read()
            .map_err(|_| IndexError::Internal("search index lock poisoned"))
    }

    /// Indexes what the store holds beyond the index, in chunks, and commits.
    /// Returns the rows added.
    pub fn catch_up(&self) -> IndexResult<u64> {
        let added = self.index_new(None)?;
        if added > 0 {
            self.commit()?;
        }
        Ok(added)
    }

    /// Indexes what the store holds beyond the index, in memory only
    /// (queries see it at once; [`EmbeddedBackend::commit`] persists it),
    /// taking records parsed from `feed` while it holds them.
    fn index_new(&self, feed: Option<&LiveFeed>) -> IndexResult<u64> {
        if !self.writable {
            return Ok(0);
        }
        let mut added = 0;
        loop {
            let n = {
                let mut ix = self
                    .index
                    .write()
                    .map_err(|_| IndexError::Internal("search index lock poisoned"))?;
                ix.catch_up(self.store.as_ref(), feed, CATCH_UP_CHUNK)?
            };
            added += n;
            if n < CATCH_UP_CHUNK {
                return Ok(added);
            }
        }
    }

    fn commit(&self) -> IndexResult<()> {
        self.index
            .write()
            .map_err(|_| IndexError::Internal("search index lock poisoned"))?
            .commit()
    }

    /// Rows indexed and the store size.
    pub fn progress(&self) -> IndexResult<(u64, u64)> {
        Ok((self.read()?.next_seq(), self.store.size()))
    }

    /// The store this backend reads.
    pub fn store(&self) -> &(dyn LogReader + Send + Sync) {
        self.store.as_ref()
    }
}

/// The search indexer as a follower of the store: indexes new records as
/// they arrive (so it stays within the live feed and queries see them at
/// once), keeps the per-value counts current, and commits the index (its
/// durable position) about every `period` and on stop.
pub struct Indexer {
    backend: Arc<EmbeddedBackend>,
    period: Duration,
    last_commit: Instant,
    dirty: bool,
    primed: bool,
}

impl Indexer {
    /// The indexer of `backend`, committing about every `period`.
    pub fn new(backend: Arc<EmbeddedBackend>, period: Duration) -> Indexer {
        Indexer {
            backend,
            period,
            last_commit: Instant::now(),
            dirty: false,
            primed: false,
        }
    }

    fn commit(&mut self) -> Result<(), FollowError> {
        if self.dirty {
            self.last_commit = Instant::now();
            self.backend.commit().map_err(FollowError::failed)?;
            self.dirty = false;
        }
        Ok(())
    }
}

impl Follower for Indexer {
    fn name(&self) -> &str {
        "indexer"
    }

    fn position(&self) -> u64 {
        self.backend
            .read()
            .map(|ix| ix.next_seq())
            .unwrap_or_default()
    }

    fn step(&mut self, log: &Followed<'_>) -> Result<u64, FollowError> {
        let n = self
            .backend
            .index_new(log.feed)
            .map_err(FollowError::failed)?;
        self.dirty |= n > 0;
        if n > 0 || !self.primed {
            if let Ok(ix) = self.backend.read() {
                self.backend.facets.refresh(&ix);
            }
            self.primed = true;
        }
        if log.stopping() || self.last_commit.elapsed() >= self.period {
            self.commit()?;
        }
        Ok(n)
    }

    fn finish(&mut self, _log: &Followed<'_>) {
        if let Err(e) = self.commit() {
            tracing::error!(error = %e, "search index: final commit failed");
        }
    }
}

fn all_needs() -> crate::index::Needs {
    crate::index::Needs {
        dict: (0..crate::index::DICT_COLUMNS).collect(),
        hash: (0..crate::index::HASH_FIELDS.len()).collect(),
        latency: true,
    }
}

/// What [`rebuild`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rebuilt {
    /// Records indexed.
    pub records: u64,
    /// Bytes the index takes on disk.
    pub disk_bytes: u64,
}

/// Drops the index of the store in `data_dir` and builds it again from
/// every record (`kaudit reindex`). Fails with [`IndexError::Locked`] while
/// another process maintains it.
pub fn rebuild(data_dir: &Path, store: &dyn LogReader) -> IndexResult<Rebuilt> {
    let mut ix = open_writable(data_dir, store.cipher())?;
    ix.reset()?;
    let records = ix.catch_up(store, None, u64::MAX)?;
    ix.commit()?;
    Ok(Rebuilt {
        records,
        disk_bytes: ix.disk_bytes()?,
    })
}

impl SearchBackend for EmbeddedBackend {
    fn follow(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
        from: &FollowPosition,
        f: &mut dyn FnMut(Hit) -> bool,
    ) -> IndexResult<FollowPosition> {
        let from = from.next(0).unwrap_or(0);
        let scan = search::scan_tail(self.store.as_ref(), from, query, since, until, f)?;
        Ok(FollowPosition::at(scan.next.max(from)))
    }

    fn follow_end(&self) -> IndexResult<FollowPosition> {
        Ok(FollowPosition::at(self.store.size()))
    }

    fn search(&self, req: &SearchRequest) -> IndexResult<Page> {
        search::search(&*self.read()?, self.store.as_ref(), req)
    }

    fn decides_exactly(&self, query: &Query) -> IndexResult<bool> {
        Ok(plan::bounds_within(&*self.read()?, query.expr(), query.budget())?.exact)
    }

    fn stats(&self, req: &StatsRequest) -> IndexResult<StatsReport> {
        stats::stats_using(&*self.read()?, self.store.as_ref(), req, Some(&self.facets))
    }

    fn field_values(
        &self,
        field: &Field,
        prefix: &str,
        limit: usize,
    ) -> IndexResult<Vec<(String, u64)>> {
        field_values_using(&*self.read()?, field, prefix, limit, Some(&self.facets))
    }

    fn time_span(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
    ) -> IndexResult<Option<(i64, i64)>> {
        search::time_span(
            &*self.read()?,
            self.store.as_ref(),
            query,
            since,
            until,
            Some(&self.facets),
        )
    }

    fn for_each_match(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
        f: &mut dyn FnMut(u64, i64, &kaudit_event::Event, &str) -> bool,
    ) -> IndexResult<()> {
        search::for_each_match(&*self.read()?, self.store.as_ref(), query, since, until, f)
    }

    fn scan_fields(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
        fields: &[ScanField],
        f: &mut ScanFn<'_>,
    ) -> IndexResult<()> {
        let needs = scan::scan_needs(query, fields);
        if !self.read()?.has(&needs) {
            // An index opened for one query (the CLI) loads what it lacks.
            self.index
                .write()
                .map_err(|_| IndexError::Internal("search index lock poisoned"))?
                .load(&needs)?;
        }
        scan::scan_fields(
            &*self.read()?,
            self.store.as_ref(),
            query,
            since,
            until,
            fields,
            f,
        )
    }
}

/// Values of a dictionary field starting with `prefix`, with how many
/// indexed events carry each, most frequent first.
pub fn field_values(
    ix: &Index,
    field: &Field,
    prefix: &str,
    limit: usize,
) -> IndexResult<Vec<(String, u64)>> {
    field_values_using(ix, field, prefix, limit, None)
}

/// [`field_values`] with the per-id counts taken from `facets` when given.
fn field_values_using(
    ix: &Index,
    field: &Field,
    prefix: &str,
    limit: usize,
    facets: Option<&Facets>,
) -> IndexResult<Vec<(String, u64)>> {
    let slot = Index::dict_slot(field).ok_or_else(|| {
        IndexError::Input(format!(
            "field {:?} has no value list; use one of: {}",
            field.name(),
            crate::index::DICT_FIELDS
                .iter()
                .map(Field::name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let Some((col, dict)) = ix.column(slot) else {
        return Ok(Vec::new());
    };
    let per_id = match facets.and_then(|f| f.counts(ix, slot)) {
        Some(mut counts) => {
            counts.resize(dict.len() + 1, 0);
            counts
        }
        None => {
            let mut per_id = vec![0u64; dict.len() + 1];
            col.for_each_id(|_, id| {
                if let Some(c) = per_id.get_mut(id as usize) {
                    *c += 1;
                }
            });
            per_id
        }
    };
    let mut counts: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (id, vals) in dict.iter() {
        let n = per_id[id as usize];
        if n == 0 {
            continue;
        }
        for v in vals {
            if v.starts_with(prefix) {
                *counts.entry(v).or_default() += n;
            }
        }
    }
    let mut out: Vec<(String, u64)> = counts
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out.truncate(limit.clamp(1, MAX_FIELD_VALUES));
    Ok(out)
}

/// Opens the index of the store in `data_dir` for writing. The index is
/// derived: a damaged one, or one of another layout version, is dropped
/// (its `meta.json` removed, so it reads as empty) and rebuilt by the next
/// catch-up.
pub fn open_writable(data_dir: &Path, cipher: Option<&Cipher>) -> IndexResult<Index> {
    match Index::open_sealed(data_dir, IndexMode::Write, cipher) {
        Err(IndexError::Corrupt(..)) => {
            let meta = data_dir.join(crate::INDEX_DIR).join("meta.json");
            std::fs::remove_file(&meta).map_err(crate::io_err(&meta))?;
            Index::open_sealed(data_dir, IndexMode::Write, cipher)
        }
        other => other,
    }
}

/// Opens the index for one query from the CLI: catches it up first when the
/// tail is large and no other process maintains it (rebuilding a damaged or
/// outdated index), then loads only what `query` reads. When the index
/// cannot be used and another process holds it, the answer comes from
/// scanning the store.
pub fn open_for_query(
    data_dir: &Path,
    store: &dyn LogReader,
    query: &Query,
    extra: &crate::index::Needs,
) -> IndexResult<Index> {
    let cipher = store.cipher();
    let behind = match Index::open_sealed(data_dir, IndexMode::Read, cipher) {
        Ok(probe) => store.size().saturating_sub(probe.next_seq()),
        Err(IndexError::Corrupt(..)) => u64::MAX,
        Err(e) => return Err(e),
    };
    if behind > 50_000 {
        match open_writable(data_dir, cipher) {
            Ok(mut w) => {
                w.catch_up(store, None, u64::MAX)?;
                w.commit()?;
            }
            Err(IndexError::Locked(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let mut ix = match Index::open_sealed(data_dir, IndexMode::Read, cipher) {
        Err(IndexError::Corrupt(..)) => return Ok(Index::empty_at(store.first_seq())),
        other => other?,
    };
    let mut needs = plan::needs(query.expr());
    needs.dict.extend(&extra.dict);
    needs.hash.extend(&extra.hash);
    needs.latency |= extra.latency;
    ix.load(&needs)?;
    Ok(ix)
}

#[cfg(test)]
mod follow_position_tests {
    use super::*;

    #[test]
    fn follow_positions_round_trip_and_bad_text_is_named() {
        let mut p = FollowPosition::default();
        assert_eq!(p.encode(), "");
        assert_eq!(FollowPosition::parse("").expect("empty"), p);
        p.set(7, 100).expect("set");
        p.set(2, 5).expect("set");
        assert_eq!(p.encode(), "2:5,7:100");
        assert_eq!(FollowPosition::parse("7:100,2:5").expect("parse"), p);
        assert_eq!(
            (p.next(2), p.next(7), p.next(3)),
            (Some(5), Some(100), None)
        );
        assert_eq!(FollowPosition::at(9).encode(), "0:9");
        for (bad, says) in [
            ("1:2,x", "item 2 \"x\""),
            ("70000:1", "item 1"),
            ("1:-3", "item 1"),
            ("1:2,1:3", "origin 1 twice"),
        ] {
            let e = FollowPosition::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let many: Vec<String> = (0..=MAX_FOLLOW_ORIGINS).map(|i| format!("{i}:1")).collect();
        let e = FollowPosition::parse(&many.join(",")).expect_err("too many");
        assert!(e.to_string().contains("at most"), "{e}");
    }
}
