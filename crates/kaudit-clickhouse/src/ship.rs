//! The shipper: a follower of the local store that copies every record and
//! every signed checkpoint into ClickHouse.
//!
//! Ingest never waits for it: records are durable in the local log before
//! they are acknowledged, and the shipper reads them from its own durable
//! cursor (`<data>/clickhouse/cursor.json`), up to
//! [`ClickHouseConfig::batch_events`] per INSERT. The cursor moves only after
//! ClickHouse accepted the INSERT, so a crash in between sends the batch
//! again; the resent rows have the same sort key `(time, gseq)` and the
//! `ReplacingMergeTree` folds them, while every query reads `LIMIT 1 BY gseq`
//! until it has (we chose this over replicated block deduplication alone
//! because a resent batch after a restart need not have the same
//! boundaries, and because it works on a single server too; on a cluster
//! block deduplication still applies on top). While ClickHouse is down,
//! steps fail and `run_follower` backs off; the backlog (the lag) shows in
//! the follower metrics and in `kaudit status`.

use crate::client::Client;
use crate::rowbin::put_str;
use crate::schema::{self, encode_row, Tables};
use crate::{ChResult, ClickHouseConfig, ClickHouseError};
use kaudit_store::retention::{PruneOutcome, Retention};
use kaudit_store::{FollowError, Followed, Follower, LogReader, Store};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The durable state of the shipper.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShipCursor {
    /// Next sequence number to ship.
    pub next: u64,
    /// Size of the newest checkpoint shipped.
    pub checkpoint: u64,
    /// Records shipped since the cursor was created.
    pub shipped: u64,
    /// Every record at or after this one was never handed to an INSERT
    /// (written durably before each INSERT). None: unknown (a cursor from
    /// before this field, or none at all while the node has rows).
    #[serde(default)]
    pub sent: Option<u64>,
}

/// Live counters of the shipper, for metrics and status pages.
#[derive(Debug, Default)]
pub struct ShipStats {
    /// Next sequence number to ship.
    pub next: AtomicU64,
    /// Records shipped.
    pub shipped: AtomicU64,
    /// INSERTs that failed.
    pub failures: AtomicU64,
    /// Records in the store when last looked.
    pub stored: AtomicU64,
}

impl ShipStats {
    /// Records stored but not shipped yet.
    pub fn lag(&self) -> u64 {
        self.stored
            .load(Ordering::Relaxed)
            .saturating_sub(self.next.load(Ordering::Relaxed))
    }
}

/// The cursor file of the shipper of the store in `data`.
pub fn cursor_path(data: &Path) -> PathBuf {
    data.join("clickhouse").join("cursor.json")
}

/// Reads the shipper's cursor (a missing file is the start).
pub fn read_cursor(data: &Path) -> ChResult<ShipCursor> {
    let p = cursor_path(data);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            ClickHouseError::Config(format!("{}: not a shipper cursor: {e}", p.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ShipCursor::default()),
        Err(source) => Err(ClickHouseError::Io { path: p, source }),
    }
}

fn write_cursor(data: &Path, c: &ShipCursor) -> std::io::Result<()> {
    use std::io::Write;
    let p = cursor_path(data);
    let dir = p.parent().unwrap_or(data);
    std::fs::create_dir_all(dir)?;
    let tmp = p.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(c).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &p)?;
    std::fs::File::open(dir)?.sync_all()
}

/// How often a caught-up shipper applies `prune_local_after`: pruning
/// takes the store's writer lock and signs a checkpoint, so not every step.
pub const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// What `stopped` says of the records local pruning keeps.
const NOT_SHIPPED: &str = "not shipped to ClickHouse yet";

/// What `stopped` says when another follower of the node still has to read
/// the records.
const NOT_FOLLOWED: &str = "not yet read by every follower of this node (sinks, detection)";

/// The lowest position among the node's other followers of the store (sinks,
/// live detection, the indexer): local pruning never deletes a record one of
/// them has yet to read, so a lagging sink is never robbed of events. The
/// server supplies it; a node without other followers needs none.
pub type PruneFloor = std::sync::Arc<dyn Fn() -> u64 + Send + Sync>;

/// Local pruning of shipped records: deletes the sealed segments of `store`
/// whose records are all both shipped (below the durable cursor kept in
/// `data`, which moves only after ClickHouse accepted the rows) and older
/// than `max_age_secs` at `now`. It goes through the store's own prune path
/// ([`Store::prune_kept_from`]): whole segments, never the active one, never
/// one under a legal hold, with a signed prune record, so `kaudit verify`
/// reports the range as pruned and `kaudit verify --clickhouse` still proves
/// the pruned records from their rows.
pub fn prune_shipped(
    store: &Store,
    data: &Path,
    max_age_secs: u64,
    now: kaudit_event::MicroTime,
) -> ChResult<PruneOutcome> {
    let cursor = read_cursor(data)?;
    let retention = Retention {
        max_age_secs: Some(max_age_secs),
        max_size: None,
    };
    Ok(store.prune_kept_from(&retention, cursor.next, NOT_SHIPPED, now, false)?)
}

/// The shipper follower. See the [module docs](self).
pub struct Shipper {
    cfg: ClickHouseConfig,
    tables: Tables,
    client: Option<Client>,
    data: PathBuf,
    cursor: ShipCursor,
    stats: Arc<ShipStats>,
    node: String,
    last_retention: Option<std::time::Instant>,
    prune_after: Option<u64>,
    last_prune: Option<std::time::Instant>,
    floor: Option<PruneFloor>,
    /// Whether the cursor file existed at start (a missing one on a node
    /// with rows in the table is a lost cursor).
    had_cursor: bool,
    /// The resent range recorded last by this process (seq, half-open).
    recorded: Option<(u64, u64)>,
}

impl Shipper {
    /// The shipper of the store in `data` into the tables `cfg` names. Does
    /// not contact ClickHouse yet (its first step does, and creates the
    /// tables), so a node starts while ClickHouse is down.
    pub fn new(cfg: ClickHouseConfig, data: &Path) -> ChResult<Shipper> {
        cfg.validate()?;
        let prune_after = cfg.prune_local_after_secs()?;
        let cursor = read_cursor(data)?;
        let had_cursor = cursor_path(data).exists();
        let stats = Arc::new(ShipStats::default());
        stats.next.store(cursor.next, Ordering::Relaxed);
        stats.shipped.store(cursor.shipped, Ordering::Relaxed);
        Ok(Shipper {
            tables: Tables::new(&cfg),
            node: cfg.node_name(),
            cfg,
            client: None,
            data: data.to_path_buf(),
            cursor,
            stats,
            last_retention: None,
            prune_after,
            last_prune: None,
            floor: None,
            had_cursor,
            recorded: None,
        })
    }

    /// Bounds local pruning by the other followers' positions (see
    /// [`PruneFloor`]).
    pub fn with_prune_floor(mut self, floor: PruneFloor) -> Shipper {
        self.floor = Some(floor);
        self
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<ShipStats> {
        self.stats.clone()
    }

    fn client(&mut self) -> ChResult<&Client> {
        if self.client.is_none() {
            let c = Client::connect(&self.cfg)?;
            schema::migrate(&c, &self.tables)?;
            self.client = Some(c);
        }
        self.client
            .as_ref()
            .ok_or_else(|| ClickHouseError::Config("no client".into()))
    }

    fn insert_sql(&self, table: &str, cols: &str) -> String {
        format!(
            "INSERT INTO {}.{table} ({cols}) FORMAT RowBinary",
            self.tables.db
        )
    }

    fn send(&mut self, sql: String, body: Vec<u8>) -> ChResult<()> {
        let sync = self.cfg.cluster.is_some();
        let c = self.client()?;
        let r = if sync {
            // Through the Distributed table: wait for the shard to take
            // the rows, so the cursor never moves past rows only queued.
            // (The setting rides in the URL: after `FORMAT RowBinary` the
            // statement's text would be read as row data.)
            c.insert_with(&sql, body, &[("insert_distributed_sync", "1")])
        } else {
            c.insert(&sql, body)
        };
        if r.is_err() {
            // Reconnect next time (the server may have restarted).
            self.client = None;
        }
        r
    }

    fn ship_checkpoints(&mut self, log: &Followed<'_>) -> ChResult<()> {
        let cps: Vec<_> = log
            .store
            .checkpoints()
            .into_iter()
            .filter(|c| c.size > self.cursor.checkpoint && c.size <= self.cursor.next)
            .collect();
        let Some(last) = cps.last().map(|c| c.size) else {
            return Ok(());
        };
        let verifier = log.store.verifier().text();
        let mut body = Vec::new();
        for c in &cps {
            body.extend_from_slice(&self.cfg.node_id.to_le_bytes());
            put_str(&mut body, self.node.as_bytes());
            body.extend_from_slice(&c.size.to_le_bytes());
            put_str(&mut body, c.time.as_bytes());
            put_str(&mut body, c.note.as_bytes());
            put_str(&mut body, verifier.as_bytes());
        }
        let sql = self.insert_sql(
            &self.tables.checkpoints.clone(),
            "node_id, node, size, time, note, verifier",
        );
        self.send(sql, body)?;
        self.cursor.checkpoint = last;
        Ok(())
    }

    /// Applies `max_age_days` about once an hour (failures are logged; the
    /// next hour tries again).
    fn retention(&mut self) {
        let Some(age) = self.cfg.max_age_days else {
            return;
        };
        if self
            .last_retention
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(3600))
        {
            return;
        }
        self.last_retention = Some(std::time::Instant::now());
        let today = schema::day_of(kaudit_event::MicroTime::now().micros());
        let (tables, holds) = (self.tables.clone(), self.cfg.holds.clone());
        let r = self
            .client()
            .and_then(|c| crate::retention::drop_expired(c, &tables, age, &holds, today));
        match r {
            Ok(d) if !d.is_empty() => {
                tracing::info!(days = ?d, "clickhouse: dropped expired day partitions")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "clickhouse: retention failed"),
        }
    }

    /// Applies `prune_local_after` at most every [`PRUNE_EVERY`] (failures
    /// are logged; the next turn tries again).
    fn prune_local(&mut self, store: &Store) {
        let Some(age) = self.prune_after else {
            return;
        };
        if self.last_prune.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
            return;
        }
        self.last_prune = Some(std::time::Instant::now());
        let now = kaudit_event::MicroTime::now();
        let floor = self.floor.as_ref().map(|f| f());
        let outcome = match floor {
            Some(floor) if floor < self.cursor.next => {
                let retention = Retention {
                    max_age_secs: Some(age),
                    max_size: None,
                };
                store
                    .prune_kept_from(&retention, floor, NOT_FOLLOWED, now, false)
                    .map_err(ClickHouseError::from)
            }
            _ => prune_shipped(store, &self.data, age, now),
        };
        match outcome {
            Ok(o) if !o.removed.is_empty() => tracing::info!(
                segments = o.removed.len(),
                before = o.before,
                "clickhouse: pruned shipped segments from the local store"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "clickhouse: local pruning failed"),
        }
    }

    /// The end of the rows at or after `from` that an earlier attempt may
    /// have sent (`from` or less: none), `end` being the store's length.
    fn maybe_sent(&mut self, from: u64, end: u64) -> ChResult<u64> {
        if let Some(s) = self.cursor.sent {
            return Ok(s);
        }
        if !self.had_cursor {
            // No cursor: a new node, or a lost cursor. The table tells.
            let q = format!(
                "SELECT count() FROM {}.{} WHERE node_id = {}",
                self.tables.db, self.tables.events, self.cfg.node_id
            );
            let n = self.client()?.execute(&q)?;
            if n.trim() == "0" {
                return Ok(from);
            }
        }
        // Unknown: anything stored so far may have been sent (nothing
        // stored later was).
        Ok(end)
    }

    /// Records `[lo, hi)` as possibly sent twice (before it is resent).
    fn record_resent(&mut self, lo: u64, hi: u64) -> ChResult<()> {
        let mut body = Vec::with_capacity(34);
        body.extend_from_slice(&self.cfg.node_id.to_le_bytes());
        body.extend_from_slice(&lo.to_le_bytes());
        body.extend_from_slice(&hi.to_le_bytes());
        body.extend_from_slice(&kaudit_event::MicroTime::now().micros().to_le_bytes());
        let sql = self.insert_sql(&self.tables.resent.clone(), "node_id, lo, hi, recorded");
        self.send(sql, body)?;
        tracing::info!(
            node = self.cfg.node_id,
            lo,
            hi,
            "clickhouse: resending records that may be in the table already"
        );
        Ok(())
    }

    fn save(&self) -> Result<(), FollowError> {
        write_cursor(&self.data, &self.cursor).map_err(FollowError::failed)
    }
}

impl Follower for Shipper {
    fn name(&self) -> &str {
        "clickhouse"
    }

    fn position(&self) -> u64 {
        self.cursor.next
    }

    fn step(&mut self, log: &Followed<'_>) -> Result<u64, FollowError> {
        let end = log.len();
        self.stats.stored.store(end, Ordering::Relaxed);
        let from = self.cursor.next.max(LogReader::first_seq(log.store));
        let to = end.min(from + self.cfg.batch_events as u64);
        if from >= to {
            self.retention();
            // Caught up: ship any checkpoint made since.
            let r = self.ship_checkpoints(log);
            if let Err(e) = r {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                return Err(FollowError::failed(e));
            }
            self.save()?;
            self.prune_local(log.store);
            return Ok(0);
        }
        let mut body = Vec::with_capacity(((to - from) as usize).saturating_mul(1024));
        let mut leaf = Vec::new();
        let (node_id, node) = (self.cfg.node_id, self.node.clone());
        let mut n = 0u64;
        log.read(from..to, &mut |seq, rec| {
            encode_row(
                &mut body,
                node_id,
                &node,
                seq,
                rec.cluster,
                rec.received,
                rec.raw,
                rec.event,
                &mut leaf,
            );
            n += 1;
            !log.stopping() || n < 1
        })
        .map_err(FollowError::failed)?;
        if n == 0 {
            return Ok(0);
        }
        let to = from + n;
        // Rows an earlier attempt may have sent are recorded as such
        // before they go again, and `sent` moves before the INSERT: at
        // every moment each duplicate row lies in a recorded range.
        let fail = |s: &Self, e: ClickHouseError| {
            s.stats.failures.fetch_add(1, Ordering::Relaxed);
            FollowError::failed(e)
        };
        let hi = match self.maybe_sent(from, end) {
            Ok(hi) => hi,
            Err(e) => return Err(fail(self, e)),
        };
        if from < hi && !self.recorded.is_some_and(|(a, b)| a <= from && hi <= b) {
            if let Err(e) = self.record_resent(from, hi) {
                return Err(fail(self, e));
            }
            self.recorded = Some((from, hi));
        }
        if self.cursor.sent != Some(hi.max(to)) {
            self.cursor.sent = Some(hi.max(to));
            self.save()?;
        }
        let sql = self.insert_sql(&self.tables.events.clone(), &Tables::insert_columns());
        if let Err(e) = self.send(sql, body) {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            return Err(FollowError::failed(e));
        }
        self.cursor.next = to;
        self.cursor.shipped += n;
        if let Err(e) = self.ship_checkpoints(log) {
            // Rows are in; the checkpoints go with the next step.
            tracing::warn!(error = %e, "clickhouse: shipping checkpoints failed");
        }
        self.save()?;
        self.stats.next.store(self.cursor.next, Ordering::Relaxed);
        self.stats
            .shipped
            .store(self.cursor.shipped, Ordering::Relaxed);
        Ok(n)
    }
}
