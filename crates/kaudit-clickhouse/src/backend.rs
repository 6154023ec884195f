//! [`ClickHouseBackend`]: the [`SearchBackend`] over the shared table, so the
//! API, the console and the CLI answer from ClickHouse for every node.
//!
//! When the query compiles exactly to SQL ([`crate::sql`]), ClickHouse
//! answers: stats group, bucket and rank in SQL over a subquery that reads
//! only the typed columns the answer needs, deduplicated by `gseq` inside
//! the ranges shippers recorded as possibly sent twice and a plain scan
//! elsewhere ([`crate::resent`]: a row shipped twice counts once, and an
//! aggregate costs a plain scan when nothing was resent); time spans are `min`/`max`; field values are `GROUP
//! BY`; a search page (and so a needle or an object's history) first orders
//! and limits the `(gseq, time)` keys on the typed columns, then reads the
//! event bytes of those rows only. The event bytes are never read for rows
//! that are not returned.
//!
//! When a term needs kaudit's matcher to confirm it, searches page in SQL
//! (`ORDER BY time, gseq` with the cursor in the `WHERE`) narrowed by the
//! superset SQL, and stats, timelines, field scans and time spans run
//! kaudit-index's own algorithms over [`CandidateLog`], a [`LogReader`]
//! whose records are the rows the SQL selects (numbered by `gseq`), so
//! every answer is computed the way the embedded backend computes it.
//! Rows are read `LIMIT 1 BY gseq`, so a row shipped twice counts once.

use crate::client::Client;
use crate::resent::{dedup_source, Resent};
use crate::rowbin::Reader;
use crate::schema::{self, column, Kind, Tables};
use crate::sql::{self, quote, Compiled};
use crate::{ChResult, ClickHouseConfig, ClickHouseError};
use kaudit_event::{Event, MicroTime};
use kaudit_index::scan::{ScanField, ScanFn};
use kaudit_index::search::{Hit, Page, SearchRequest, MAX_LIMIT};
use kaudit_index::stats::{StatsReport, StatsRequest};
use kaudit_index::{FollowPosition, Index, IndexError, IndexResult, SearchBackend};
use kaudit_query::{Field, Query};
use kaudit_store::merkle::Hash;
use kaudit_store::{LeafRef, LogReader, StoreError, StoreResult, StoredCheckpoint};
use std::ops::Range;

/// Most rows one follow step reads (the position says where the next
/// step continues).
pub const FOLLOW_BATCH: usize = 20_000;

/// Rows whose bytes one statement of a two-step search reads (keeps the
/// `gseq IN (…)` list well under the server's `max_query_size`).
pub const ROWS_PER_READ: usize = 2_000;

/// Rows per page of a retro-hunt read ([`ClickHouseBackend::for_each_received`]).
pub const RETRO_BATCH: usize = 10_000;

/// The ClickHouse search backend. See the [module docs](self).
pub struct ClickHouseBackend {
    client: Client,
    tables: Tables,
}

fn ix_err(e: ClickHouseError) -> IndexError {
    IndexError::Input(format!("clickhouse: {e}"))
}

fn answer_err(what: &str, m: String) -> ClickHouseError {
    ClickHouseError::Answer {
        what: what.into(),
        message: m,
    }
}

/// Why reading a streamed answer stopped before its end.
enum Stop<E> {
    /// The answer could not be read ([`Reader::broken`] tells whether the
    /// stream broke or held something unreadable).
    Read(String),
    /// The consumer failed.
    Other(E),
}

impl<E> From<String> for Stop<E> {
    fn from(m: String) -> Self {
        Stop::Read(m)
    }
}

type Resp = reqwest::blocking::Response;

impl ClickHouseBackend {
    /// Reads a streamed answer so that a broken connection costs nothing:
    /// `stmt` builds the statement from the progress `st` made so far and
    /// `read` consumes rows into `st` (a row counts once read whole). When
    /// the stream breaks mid-way (a replica killed, a proxy cut), the rest
    /// is read from the next endpoint (`fallback_urls`) with a statement
    /// starting after the last row consumed, so no row is lost or repeated.
    /// At most one resume per endpoint; an answer that is unreadable in
    /// itself is an error at once.
    fn stream<S, E>(
        &self,
        what: &str,
        st: &mut S,
        stmt: impl Fn(&S) -> String,
        mut read: impl FnMut(&mut S, &mut Reader<Resp>) -> Result<(), Stop<E>>,
        err: impl Fn(ClickHouseError) -> E,
    ) -> Result<(), E> {
        let mut resumes = 0;
        loop {
            let (at, resp) = self.client.query_stream(&stmt(st)).map_err(&err)?;
            let mut r = Reader::new(resp);
            match read(st, &mut r) {
                Ok(()) => return Ok(()),
                Err(Stop::Other(e)) => return Err(e),
                Err(Stop::Read(m)) if r.broken() && resumes < self.client.endpoints() => {
                    resumes += 1;
                    tracing::warn!(what, error = %m, "clickhouse: answer broke mid-way, reading the rest from the next endpoint");
                    self.client.skip(at);
                }
                Err(Stop::Read(m)) => return Err(err(answer_err(what, m))),
            }
        }
    }

    /// Connects to the tables `cfg` names (creating them when missing).
    pub fn open(cfg: &ClickHouseConfig) -> ChResult<ClickHouseBackend> {
        let client = Client::connect(cfg)?;
        let tables = Tables::new(cfg);
        schema::migrate(&client, &tables)?;
        Ok(ClickHouseBackend { client, tables })
    }

    /// The client (for verification and retention).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table names.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    fn events(&self) -> String {
        format!("{}.{}", self.tables.db, self.tables.events)
    }

    /// The ranges of rows that may be in the table twice (read per
    /// aggregate: a shipper may record one at any time).
    pub fn resent(&self) -> ChResult<Resent> {
        Resent::read(&self.client, &self.tables)
    }

    /// Rows in the table, each counted once.
    pub fn count(&self) -> ChResult<u64> {
        let src = dedup_source(&self.events(), "gseq", "1", &self.resent()?);
        let t = self
            .client
            .execute(&format!("SELECT count() FROM ({src})"))?;
        t.trim()
            .parse()
            .map_err(|_| answer_err("count", format!("not a number: {t:?}")))
    }

    fn candidates(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
    ) -> CandidateLog<'_> {
        let c = sql::compile(query.expr());
        CandidateLog {
            backend: self,
            filter: format!("({}) AND ({})", c.sql, sql::time_range(since, until)),
        }
    }

    /// The statement one search batch runs: up to `batch` rows in output
    /// order after the `(time, gseq)` position `after`, each row once.
    pub fn search_statement(
        &self,
        req: &SearchRequest,
        after: Option<(i64, u64)>,
        batch: usize,
    ) -> String {
        let Compiled { sql: w, .. } = sql::compile(req.query.expr());
        let (dir, cmp) = if req.reverse {
            ("ASC", ">")
        } else {
            ("DESC", "<")
        };
        let range = sql::time_range(req.since, req.until);
        let cur = after.map_or("1".to_string(), |(t, s)| {
            format!("(time {cmp} {t} OR (time = {t} AND gseq {cmp} {s}))")
        });
        format!(
            "SELECT gseq, time, received, cluster, raw FROM {} WHERE ({w}) AND ({range}) AND {cur} ORDER BY time {dir}, gseq {dir} LIMIT 1 BY gseq LIMIT {batch} FORMAT RowBinary",
            self.events()
        )
    }

    /// The statement reading the rows `query` may match within the time
    /// bounds whose `gseq` lies in `range`, in `gseq` order, each once.
    pub fn candidates_statement(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
        range: Range<u64>,
    ) -> String {
        self.candidates(query, since, until).statement(range)
    }

    /// The first step of an exactly compiled search: the `(gseq, time)` of
    /// up to `limit` rows in output order after the cursor, from the typed
    /// columns alone, each row once.
    pub fn search_keys_statement(&self, req: &SearchRequest, limit: usize) -> String {
        let Compiled { sql: w, .. } = sql::compile(req.query.expr());
        let (dir, cmp) = if req.reverse {
            ("ASC", ">")
        } else {
            ("DESC", "<")
        };
        let range = sql::time_range(req.since, req.until);
        let cur = req.cursor.map_or("1".to_string(), |c| {
            let (t, s) = (c.time, c.seq);
            format!("(time {cmp} {t} OR (time = {t} AND gseq {cmp} {s}))")
        });
        format!(
            "SELECT gseq, time FROM {} WHERE ({w}) AND ({range}) AND {cur} ORDER BY time {dir}, gseq {dir} LIMIT 1 BY gseq LIMIT {limit} FORMAT RowBinary",
            self.events()
        )
    }

    /// The second step: the stored bytes of the rows `keys` names (time,
    /// gseq), each once; the time bounds let the table's sort key skip
    /// everything else.
    pub fn rows_statement(&self, keys: &[(i64, u64)]) -> String {
        let lo = keys.iter().map(|k| k.0).min().unwrap_or(0);
        let hi = keys.iter().map(|k| k.0).max().unwrap_or(-1);
        let ids: Vec<String> = keys.iter().map(|k| k.1.to_string()).collect();
        format!(
            "SELECT gseq, received, cluster, raw FROM {} WHERE time >= {lo} AND time <= {hi} AND gseq IN ({}) ORDER BY gseq LIMIT 1 BY gseq FORMAT RowBinary",
            self.events(),
            if ids.is_empty() { "0".to_string() } else { ids.join(", ") }
        )
    }

    /// An exactly compiled search in two steps: the page's keys, ordered
    /// and limited on the typed columns, then the bytes of those rows only.
    fn search_exact(&self, req: &SearchRequest, limit: usize) -> IndexResult<Page> {
        let bad = |m: String| ix_err(answer_err("search", m));
        let mut keys: Vec<(i64, u64)> = Vec::new();
        self.stream(
            "search",
            &mut keys,
            |keys| match keys.last() {
                Some(&(time, seq)) => {
                    let mut rest = req.clone();
                    rest.cursor = Some(kaudit_index::search::Cursor { time, seq });
                    self.search_keys_statement(&rest, limit - keys.len())
                }
                None => self.search_keys_statement(req, limit),
            },
            |keys, r| {
                while !r.at_end()? {
                    let g = r.u64()?;
                    let t = r.i64()?;
                    keys.push((t, g));
                }
                Ok::<(), Stop<IndexError>>(())
            },
            ix_err,
        )?;
        let mut page = Page {
            candidates: keys.len() as u64,
            ..Page::default()
        };
        if keys.is_empty() {
            return Ok(page);
        }
        let mut rows = std::collections::HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(ROWS_PER_READ) {
            self.stream(
                "search",
                &mut rows,
                |rows| {
                    let rest: Vec<(i64, u64)> = chunk
                        .iter()
                        .filter(|k| !rows.contains_key(&k.1))
                        .copied()
                        .collect();
                    self.rows_statement(&rest)
                },
                |rows, r| {
                    while !r.at_end()? {
                        let g = r.u64()?;
                        let received = MicroTime(r.i64()?);
                        let cluster = r.string()?;
                        let raw = r.bytes()?;
                        rows.insert(g, (received, cluster, raw));
                    }
                    Ok::<(), Stop<IndexError>>(())
                },
                ix_err,
            )?;
        }
        for (time, g) in keys {
            let Some((received, cluster, event)) = rows.remove(&g) else {
                return Err(bad(format!("row gseq {g} vanished between the two reads")));
            };
            page.hits.push(Hit {
                seq: g,
                time,
                received,
                cluster,
                event,
            });
        }
        if page.hits.len() == limit {
            page.next = page.hits.last().map(Hit::cursor);
        }
        Ok(page)
    }

    fn search_sql(&self, req: &SearchRequest) -> IndexResult<Page> {
        let limit = req.limit.clamp(1, MAX_LIMIT);
        let exact = sql::compile(req.query.expr()).exact;
        if exact {
            return self.search_exact(req, limit);
        }
        let mut after = req.cursor.map(|c| (c.time, c.seq));
        let mut batch = if exact {
            limit
        } else {
            (limit + limit / 2).max(32)
        };
        let mut page = Page::default();
        loop {
            // (position, rows of this batch read so far)
            let mut st = (after, 0usize);
            self.stream(
                "search",
                &mut st,
                |(after, fetched)| self.search_statement(req, *after, batch - fetched),
                |(after, fetched), r| {
                    while !r.at_end()? {
                        let g = r.u64()?;
                        let time = r.i64()?;
                        let received = MicroTime(r.i64()?);
                        let cluster = r.string()?;
                        let raw = r.bytes()?;
                        *fetched += 1;
                        *after = Some((time, g));
                        if page.hits.len() >= limit {
                            continue;
                        }
                        if !exact {
                            let ev = Event::from_json(&raw).map_err(|source| {
                                Stop::Other(IndexError::Record { seq: g, source })
                            })?;
                            if !req.query.matches(&ev, &cluster) {
                                continue;
                            }
                        }
                        page.hits.push(Hit {
                            seq: g,
                            time,
                            received,
                            cluster,
                            event: raw,
                        });
                    }
                    Ok(())
                },
                ix_err,
            )?;
            let fetched = st.1;
            after = st.0;
            page.candidates += fetched as u64;
            if page.hits.len() >= limit || fetched < batch {
                break;
            }
            batch = batch.saturating_mul(4).min(1 << 20);
        }
        page.hits.truncate(limit);
        if page.hits.len() == limit {
            page.next = page.hits.last().map(Hit::cursor);
        }
        Ok(page)
    }

    /// The statement one follow step runs: every row after each node's
    /// position (nodes the position does not name: from their first row),
    /// in (node, seq) order, each once, with whether it may match `query`
    /// within the time bounds (`m`) and its bytes only when it may.
    pub fn follow_statement(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
        from: &FollowPosition,
    ) -> String {
        let Compiled { sql: w, .. } = sql::compile(query.expr());
        let range = sql::time_range(since, until);
        let after: Vec<String> = from
            .iter()
            .map(|(n, s)| format!("(node_id = {n} AND seq >= {s})"))
            .collect();
        let cond = if after.is_empty() {
            "1".to_string()
        } else {
            let ids: Vec<String> = from.iter().map(|(n, _)| n.to_string()).collect();
            format!(
                "({} OR node_id NOT IN ({}))",
                after.join(" OR "),
                ids.join(", ")
            )
        };
        format!(
            "SELECT node_id, seq, gseq, time, received, cluster, toUInt8(({w}) AND ({range})) AS k_m, if(k_m = 1, raw, '') FROM {} WHERE {cond} ORDER BY node_id, seq LIMIT 1 BY node_id, seq LIMIT {FOLLOW_BATCH} FORMAT RowBinary",
            self.events()
        )
    }

    /// [`SearchBackend::follow`]: per node, rows are read in sequence order
    /// and the node's position moves only over rows without a gap before
    /// them, so a row that reaches the table late (another node's, or this
    /// node's through a lagging replica) is still seen, once. A gap below a
    /// node's lowest row in the table (retention dropped those days) is
    /// skipped; any other gap waits for the missing row (`verify
    /// --clickhouse` names a row deleted from the table).
    fn follow_nodes(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
        from: &FollowPosition,
        f: &mut dyn FnMut(Hit) -> bool,
    ) -> IndexResult<FollowPosition> {
        let mut pos = from.clone();
        self.skip_dropped(&mut pos)?;
        let exact = sql::compile(query.expr()).exact;
        // A resumed read starts again from the position: a node blocked by
        // a gap is found blocked again.
        self.stream(
            "follow",
            &mut pos,
            |pos| self.follow_statement(query, since, until, pos),
            |pos, r| {
                // The node whose rows are being read, and whether a gap
                // stopped it.
                let mut blocked: Option<u16> = None;
                while !r.at_end()? {
                    let node = r.u16()?;
                    let seq = r.u64()?;
                    let g = r.u64()?;
                    let time = r.i64()?;
                    let received = MicroTime(r.i64()?);
                    let cluster = r.string()?;
                    let m = r.u8()?;
                    let raw = r.bytes()?;
                    if blocked == Some(node) {
                        continue;
                    }
                    match pos.next(node) {
                        Some(next) if seq != next => {
                            // A gap (seq > next): the rest of this node waits.
                            blocked = Some(node);
                            continue;
                        }
                        _ => {}
                    }
                    pos.set(node, seq + 1).map_err(Stop::Other)?;
                    if m == 0 {
                        continue;
                    }
                    if !exact {
                        let ev = Event::from_json(&raw)
                            .map_err(|source| Stop::Other(IndexError::Record { seq: g, source }))?;
                        if !query.matches(&ev, &cluster) {
                            continue;
                        }
                    }
                    let go = f(Hit {
                        seq: g,
                        time,
                        received,
                        cluster,
                        event: raw,
                    });
                    if !go {
                        break;
                    }
                }
                Ok(())
            },
            ix_err,
        )?;
        Ok(pos)
    }

    /// Moves each node whose position lies below its lowest row in the
    /// table up to that row: those rows were dropped and never come back.
    fn skip_dropped(&self, pos: &mut FollowPosition) -> IndexResult<()> {
        if pos.iter().next().is_none() {
            return Ok(());
        }
        let t = self
            .client
            .execute(&format!(
                "SELECT node_id, min(seq) FROM {} GROUP BY node_id FORMAT TabSeparated",
                self.events()
            ))
            .map_err(ix_err)?;
        for line in t.lines() {
            let mut it = line.split('\t');
            let (Some(n), Some(lo)) = (
                it.next().and_then(|n| n.parse::<u16>().ok()),
                it.next().and_then(|s| s.parse::<u64>().ok()),
            ) else {
                return Err(ix_err(answer_err(
                    "follow",
                    format!("not NODE<TAB>SEQ: {line:?}"),
                )));
            };
            if pos.next(n).is_some_and(|next| next < lo) {
                pos.set(n, lo)?;
            }
        }
        Ok(())
    }

    /// The statement reading one page of [`Self::for_each_received`]: up to
    /// `batch` rows received at or after `received_since`, after the
    /// `(time, gseq)` position `after`, oldest first, each row once.
    pub fn received_statement(
        &self,
        received_since: Option<i64>,
        after: Option<(i64, u64)>,
        batch: usize,
    ) -> String {
        let since = received_since.map_or("1".to_string(), |r| format!("received >= {r}"));
        let cur = after.map_or("1".to_string(), |(t, g)| {
            format!("(time > {t} OR (time = {t} AND gseq > {g}))")
        });
        format!(
            "SELECT gseq, time, cluster, raw FROM {} WHERE {since} AND {cur} ORDER BY time, gseq LIMIT 1 BY gseq LIMIT {batch} FORMAT RowBinary",
            self.events()
        )
    }

    /// Calls `f` with every row of every node received at or after
    /// `received_since` (microseconds), each once, oldest event first:
    /// what a retro-hunt (`kaudit detect --since`) reads. Pages of
    /// [`RETRO_BATCH`] rows in the table's sort order keep memory bounded
    /// on both sides; `f` returns false to stop. Returns the rows read.
    pub fn for_each_received(
        &self,
        received_since: Option<i64>,
        f: &mut dyn FnMut(u64, &str, &[u8]) -> bool,
    ) -> ChResult<u64> {
        let mut after = None;
        let mut total = 0u64;
        loop {
            // (position, rows of this page, whether `f` stopped)
            let mut st = (after, 0usize, false);
            self.stream(
                "retro-hunt read",
                &mut st,
                |(after, n, _)| self.received_statement(received_since, *after, RETRO_BATCH - n),
                |(after, n, stopped), r| {
                    while !r.at_end()? {
                        let g = r.u64()?;
                        let time = r.i64()?;
                        let cluster = r.string()?;
                        let raw = r.bytes()?;
                        *n += 1;
                        total += 1;
                        *after = Some((time, g));
                        if !f(g, &cluster, &raw) {
                            *stopped = true;
                            break;
                        }
                    }
                    Ok::<(), Stop<ClickHouseError>>(())
                },
                |e| e,
            )?;
            if st.2 || st.1 < RETRO_BATCH {
                return Ok(total);
            }
            after = st.0;
        }
    }

    /// The statement listing values of `field` starting with `prefix`,
    /// most frequent first (ties by value), each row counted once.
    pub fn field_values_statement(
        &self,
        field: &Field,
        prefix: &str,
        limit: usize,
        resent: &Resent,
    ) -> IndexResult<String> {
        let dict = &kaudit_index::index::DICT_FIELDS;
        let c = match column(field) {
            Some(c) if dict.contains(field) => c,
            _ => {
                return Err(IndexError::Input(format!(
                    "field {:?} has no value list; use one of: {}",
                    field.name(),
                    dict.iter().map(Field::name).collect::<Vec<_>>().join(", ")
                )))
            }
        };
        let (inner, expr, present) = match c.kind {
            Kind::Single => (
                c.name.to_string(),
                c.name.to_string(),
                format!("{} != ''", c.name),
            ),
            Kind::Always => (c.name.to_string(), c.name.to_string(), "1".into()),
            Kind::Array => (
                c.name.to_string(),
                format!("arrayJoin({})", c.name),
                "1".into(),
            ),
            Kind::Code => (
                "code, has_code".into(),
                "toString(code)".into(),
                "has_code = 1".into(),
            ),
        };
        let src = dedup_source(&self.events(), &format!("gseq, {inner}"), "1", resent);
        Ok(format!(
            "SELECT v, count() AS n FROM (SELECT {expr} AS v FROM ({src}) WHERE {present}) WHERE substring(v, 1, {}) = {} GROUP BY v ORDER BY n DESC, v ASC LIMIT {} FORMAT RowBinary",
            prefix.len(),
            quote(prefix),
            limit.clamp(1, kaudit_index::backend::MAX_FIELD_VALUES)
        ))
    }

    fn field_values_sql(
        &self,
        field: &Field,
        prefix: &str,
        limit: usize,
    ) -> IndexResult<Vec<(String, u64)>> {
        let resent = self.resent().map_err(ix_err)?;
        let q = self.field_values_statement(field, prefix, limit, &resent)?;
        let mut out = Vec::new();
        self.stream(
            "field values",
            &mut out,
            |_| q.clone(),
            |out, r| {
                // A resumed read starts over.
                out.clear();
                while !r.at_end()? {
                    let v = r.string()?;
                    let n = r.u64()?;
                    out.push((v, n));
                }
                Ok::<(), Stop<IndexError>>(())
            },
            ix_err,
        )?;
        Ok(out)
    }
}

/// Widest histogram bucket the SQL path computes (wider ones run through
/// kaudit): keeps `(time % every) + every` far from overflowing Int64.
const MAX_SQL_EVERY: i64 = 1 << 60;

/// Most latency samples one group may carry back from ClickHouse (a bound
/// on the answer's size; the table holds far fewer rows per group).
const MAX_GROUP_SAMPLES: u64 = 1 << 32;

/// One key column of a pushed-down stats query: the SQL giving the value
/// (one row per value of a list, `''` when the event has none, exactly as
/// kaudit's grouping does) and the columns it reads.
fn key_expr(field: &Field) -> Option<(String, &'static str)> {
    let c = column(field)?;
    Some(match c.kind {
        Kind::Single | Kind::Always => (c.name.to_string(), c.name),
        Kind::Array => (
            format!("arrayJoin(if(empty({0}), [''], {0}))", c.name),
            c.name,
        ),
        Kind::Code => (
            "if(has_code = 1, toString(code), '')".to_string(),
            "code, has_code",
        ),
    })
}

/// A stats request ClickHouse answers by aggregating typed columns.
pub struct StatsStatements {
    /// Counts matching events (each `gseq` once).
    pub total: String,
    /// The groups: `[bucket Int64,] key Strings…, count UInt64[, latencies
    /// Array(UInt32)]`, largest first (ties by key), at most `top` when
    /// there is no histogram.
    pub groups: String,
}

impl ClickHouseBackend {
    /// The statements answering `req` in ClickHouse, when they can give
    /// exactly kaudit's answer: the query compiles exactly to SQL and every
    /// `--by` field has a column. The subquery reads only the typed columns
    /// the answer needs (never the event bytes) and deduplicates by `gseq`
    /// only the rows inside the `resent` ranges ([`crate::resent`]), so a
    /// resent row counts once and the rest is a plain scan; the grouping,
    /// the bucket arithmetic and the ranking run in ClickHouse. None: kaudit
    /// must confirm rows itself (the candidate path).
    pub fn stats_statements(&self, req: &StatsRequest, resent: &Resent) -> Option<StatsStatements> {
        let c = sql::compile(req.query.expr());
        if !c.exact || req.every.is_some_and(|e| e <= 0 || e > MAX_SQL_EVERY) {
            return None;
        }
        let keys: Vec<(String, &'static str)> =
            req.by.iter().map(key_expr).collect::<Option<_>>()?;
        let mut cols = vec!["gseq", "time"];
        for (_, c) in &keys {
            if !cols.contains(c) {
                cols.push(c);
            }
        }
        if req.latency {
            cols.push("latency");
        }
        let inner = dedup_source(
            &self.events(),
            &cols.join(", "),
            &format!(
                "({}) AND ({})",
                c.sql,
                sql::time_range(req.since, req.until)
            ),
            resent,
        );
        let mut select = Vec::new();
        let mut group = Vec::new();
        if let Some(e) = req.every {
            select.push(format!(
                "toInt64(time - (((time % {e}) + {e}) % {e})) AS k_b"
            ));
            group.push("k_b".to_string());
        }
        let mut order = vec!["k_n DESC".to_string()];
        for (i, (x, _)) in keys.iter().enumerate() {
            select.push(format!("{x} AS k_{i}"));
            group.push(format!("k_{i}"));
            order.push(format!("k_{i} ASC"));
        }
        if req.every.is_some() {
            order.push("k_b ASC".into());
        }
        select.push("count() AS k_n".into());
        if req.latency {
            select.push("arraySort(groupArrayIf(toUInt32(latency), latency >= 0)) AS k_l".into());
        }
        let group_by = if group.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", group.join(", "))
        };
        let limit = if req.every.is_none() && req.top > 0 {
            req.top.min(kaudit_index::stats::MAX_GROUPS)
        } else {
            kaudit_index::stats::MAX_GROUPS + 1
        };
        Some(StatsStatements {
            total: format!("SELECT count() FROM ({inner}) FORMAT RowBinary"),
            groups: format!(
                "SELECT {} FROM ({inner}){group_by} ORDER BY {} LIMIT {limit} FORMAT RowBinary",
                select.join(", "),
                order.join(", ")
            ),
        })
    }

    fn stats_sql(&self, req: &StatsRequest, st: &StatsStatements) -> IndexResult<StatsReport> {
        use kaudit_index::stats::{StatsRow, MAX_GROUPS};
        let mut total = 0u64;
        self.stream(
            "stats",
            &mut total,
            |_| st.total.clone(),
            |total, r| {
                *total = r.u64()?;
                Ok::<(), Stop<IndexError>>(())
            },
            ix_err,
        )?;
        // Rows come largest first (ties by key): the ranking of the groups
        // without a histogram, and of (bucket, key) with one.
        let mut rows: Vec<StatsRow> = Vec::new();
        self.stream(
            "stats",
            &mut rows,
            |_| st.groups.clone(),
            |rows, r| {
                // A resumed read starts over.
                rows.clear();
                while !r.at_end()? {
                    if rows.len() >= MAX_GROUPS {
                        return Err(Stop::Other(IndexError::Input(format!(
                            "more than {MAX_GROUPS} groups: narrow the query or use fewer --by fields"
                        ))));
                    }
                    let bucket = match req.every {
                        Some(_) => Some(r.i64()?),
                        None => None,
                    };
                    let mut key = Vec::with_capacity(req.by.len());
                    for _ in &req.by {
                        key.push(r.string()?);
                    }
                    let count = r.u64()?;
                    let latency = if req.latency {
                        let n = r.varint()?;
                        if n > MAX_GROUP_SAMPLES.min(count) {
                            return Err(Stop::Read(format!("{n} latencies in a group of {count}")));
                        }
                        let mut v = Vec::with_capacity(n as usize);
                        for _ in 0..n {
                            v.push(r.u32()?);
                        }
                        kaudit_index::latency::percentiles(v)
                    } else {
                        None
                    };
                    if count > 0 {
                        rows.push(StatsRow {
                            bucket,
                            key,
                            count,
                            latency,
                        });
                    }
                }
                Ok(())
            },
            ix_err,
        )?;
        if req.every.is_some() {
            // Rank keys by their count over all buckets, keep the top ones,
            // then order by bucket and rank (as kaudit's own stats do).
            let mut totals: std::collections::HashMap<&[String], u64> =
                std::collections::HashMap::new();
            for row in &rows {
                *totals.entry(&row.key).or_default() += row.count;
            }
            let mut ranked: Vec<(&[String], u64)> = totals.into_iter().collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            if req.top > 0 {
                ranked.truncate(req.top);
            }
            let rank: std::collections::HashMap<Vec<String>, usize> = ranked
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.to_vec(), i))
                .collect();
            let mut kept: Vec<(usize, StatsRow)> = rows
                .into_iter()
                .filter_map(|row| Some((*rank.get(&row.key)?, row)))
                .collect();
            kept.sort_by(|a, b| a.1.bucket.cmp(&b.1.bucket).then(a.0.cmp(&b.0)));
            rows = kept.into_iter().map(|(_, row)| row).collect();
        }
        Ok(StatsReport {
            by: req.by.iter().map(Field::name).collect(),
            total,
            rows,
            from_index: true,
        })
    }

    /// The statement giving the number, earliest and latest time of the
    /// rows an exactly compiled query selects (None when it is not exact).
    pub fn time_span_statement(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
    ) -> Option<String> {
        let c = sql::compile(query.expr());
        c.exact.then(|| {
            format!(
                "SELECT count(), min(time), max(time) FROM {} WHERE ({}) AND ({}) FORMAT RowBinary",
                self.events(),
                c.sql,
                sql::time_range(since, until)
            )
        })
    }

    fn time_span_sql(&self, q: &str) -> IndexResult<Option<(i64, i64)>> {
        let mut span = (0u64, 0i64, 0i64);
        self.stream(
            "time span",
            &mut span,
            |_| q.to_string(),
            |span, r| {
                *span = (r.u64()?, r.i64()?, r.i64()?);
                Ok::<(), Stop<IndexError>>(())
            },
            ix_err,
        )?;
        let (n, lo, hi) = span;
        Ok((n > 0).then_some((lo, hi)))
    }
}

/// The rows a compiled query selects, as a [`LogReader`] numbered by `gseq`:
/// kaudit-index's algorithms read it as an unindexed store and confirm
/// every record with the matcher.
pub struct CandidateLog<'a> {
    backend: &'a ClickHouseBackend,
    filter: String,
}

impl CandidateLog<'_> {
    fn statement(&self, range: Range<u64>) -> String {
        format!(
            "SELECT gseq, seq, received, cluster, raw FROM {} WHERE {} AND gseq >= {} AND gseq < {} ORDER BY gseq LIMIT 1 BY gseq FORMAT RowBinary",
            self.backend.events(),
            self.filter,
            range.start,
            range.end
        )
    }
}

impl LogReader for CandidateLog<'_> {
    fn size(&self) -> u64 {
        u64::MAX >> 1
    }
    fn first_seq(&self) -> u64 {
        0
    }
    fn read(
        &self,
        range: Range<u64>,
        f: &mut dyn FnMut(u64, LeafRef<'_>) -> bool,
    ) -> StoreResult<()> {
        let end = range.end;
        let mut leaf = Vec::new();
        // (next gseq to read, whether `f` stopped)
        let mut st = (range.start, false);
        self.backend.stream(
            "candidates",
            &mut st,
            |(start, _)| self.statement(*start..end),
            |(start, stopped), r| {
                while !r.at_end()? {
                    let g = r.u64()?;
                    let seq = r.u64()?;
                    let received = MicroTime(r.i64()?);
                    let cluster = r.string()?;
                    let raw = r.bytes()?;
                    leaf.clear();
                    kaudit_store::record::write_leaf(&cluster, &raw, received, seq, &mut leaf);
                    *start = g + 1;
                    let go = f(
                        g,
                        LeafRef {
                            data: &leaf,
                            seq,
                            received,
                            cluster: &cluster,
                            event: &raw,
                        },
                    );
                    if !go {
                        *stopped = true;
                        break;
                    }
                }
                Ok::<(), Stop<StoreError>>(())
            },
            |e| StoreError::Input(format!("clickhouse: {e}")),
        )
    }
    fn root(&self, _size: u64) -> StoreResult<Hash> {
        Err(StoreError::Input(
            "proofs come from each node's own store, not from ClickHouse".into(),
        ))
    }
    fn inclusion_proof(&self, _seq: u64, _size: u64) -> StoreResult<Vec<Hash>> {
        self.root(0).map(|_| Vec::new())
    }
    fn consistency_proof(&self, _old: u64, _new: u64) -> StoreResult<Vec<Hash>> {
        self.root(0).map(|_| Vec::new())
    }
    fn checkpoints(&self) -> Vec<StoredCheckpoint> {
        Vec::new()
    }
    fn find_audit_id(&self, audit_id: &str) -> StoreResult<Option<u64>> {
        let t = self
            .backend
            .client
            .execute(&format!(
                "SELECT min(gseq), count() FROM {} WHERE audit_id = {} FORMAT TabSeparated",
                self.backend.events(),
                quote(audit_id)
            ))
            .map_err(|e| StoreError::Input(format!("clickhouse: {e}")))?;
        let mut it = t.split_whitespace();
        let (g, n) = (it.next(), it.next());
        Ok(match (g.and_then(|g| g.parse().ok()), n) {
            (Some(g), Some(n)) if n != "0" => Some(g),
            _ => None,
        })
    }
}

impl SearchBackend for ClickHouseBackend {
    fn search(&self, req: &SearchRequest) -> IndexResult<Page> {
        self.search_sql(req)
    }

    fn stats(&self, req: &StatsRequest) -> IndexResult<StatsReport> {
        // The request's own checks (field count, bucket width and range)
        // come from kaudit's stats over no rows, so both paths refuse alike.
        kaudit_index::stats::stats(&Index::empty_at(0), &NoRows, req)?;
        if sql::compile(req.query.expr()).exact {
            let resent = self.resent().map_err(ix_err)?;
            if let Some(st) = self.stats_statements(req, &resent) {
                return self.stats_sql(req, &st);
            }
        }
        let log = self.candidates(&req.query, req.since, req.until);
        kaudit_index::stats::stats(&Index::empty_at(0), &log, req)
    }

    fn field_values(
        &self,
        field: &Field,
        prefix: &str,
        limit: usize,
    ) -> IndexResult<Vec<(String, u64)>> {
        self.field_values_sql(field, prefix, limit)
    }

    fn time_span(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
    ) -> IndexResult<Option<(i64, i64)>> {
        if let Some(q) = self.time_span_statement(query, since, until) {
            return self.time_span_sql(&q);
        }
        let log = self.candidates(query, since, until);
        kaudit_index::search::time_span(&Index::empty_at(0), &log, query, since, until, None)
    }

    fn for_each_match(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
        f: &mut dyn FnMut(u64, i64, &Event, &str) -> bool,
    ) -> IndexResult<()> {
        let log = self.candidates(query, since, until);
        kaudit_index::search::for_each_match(&Index::empty_at(0), &log, query, since, until, f)
    }

    fn scan_fields(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
        fields: &[ScanField],
        f: &mut ScanFn<'_>,
    ) -> IndexResult<()> {
        let log = self.candidates(query, since, until);
        kaudit_index::scan::scan_fields(&Index::empty_at(0), &log, query, since, until, fields, f)
    }

    fn follow(
        &self,
        query: &Query,
        since: Option<i64>,
        until: Option<i64>,
        from: &FollowPosition,
        f: &mut dyn FnMut(Hit) -> bool,
    ) -> IndexResult<FollowPosition> {
        self.follow_nodes(query, since, until, from, f)
    }

    fn follow_end(&self) -> IndexResult<FollowPosition> {
        let t = self
            .client
            .execute(&format!(
                "SELECT node_id, max(seq) + 1 FROM {} GROUP BY node_id ORDER BY node_id FORMAT TabSeparated",
                self.events()
            ))
            .map_err(ix_err)?;
        let mut p = FollowPosition::default();
        for line in t.lines() {
            let mut it = line.split('\t');
            match (
                it.next().and_then(|n| n.parse::<u16>().ok()),
                it.next().and_then(|s| s.parse::<u64>().ok()),
            ) {
                (Some(n), Some(s)) => p.set(n, s)?,
                _ => {
                    return Err(ix_err(answer_err(
                        "follow end",
                        format!("not NODE<TAB>SEQ: {line:?}"),
                    )))
                }
            }
        }
        Ok(p)
    }
}

/// A log without records: kaudit's stats run over it only to check a
/// request the way the embedded backend does before SQL answers it.
struct NoRows;

impl LogReader for NoRows {
    fn size(&self) -> u64 {
        0
    }
    fn first_seq(&self) -> u64 {
        0
    }
    fn read(
        &self,
        _range: Range<u64>,
        _f: &mut dyn FnMut(u64, LeafRef<'_>) -> bool,
    ) -> StoreResult<()> {
        Ok(())
    }
    fn root(&self, _size: u64) -> StoreResult<Hash> {
        Err(StoreError::Input("no records".into()))
    }
    fn inclusion_proof(&self, _seq: u64, _size: u64) -> StoreResult<Vec<Hash>> {
        Err(StoreError::Input("no records".into()))
    }
    fn consistency_proof(&self, _old: u64, _new: u64) -> StoreResult<Vec<Hash>> {
        Err(StoreError::Input("no records".into()))
    }
    fn checkpoints(&self) -> Vec<StoredCheckpoint> {
        Vec::new()
    }
    fn find_audit_id(&self, _audit_id: &str) -> StoreResult<Option<u64>> {
        Ok(None)
    }
}
