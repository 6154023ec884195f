//! The loop every sink runs: read from the cursor, filter, reduce, batch,
//! deliver with retries, dead-letter refusals, then move the cursor.

use crate::config::{SinkConfig, SinkKind};
use crate::state::{CursorState, DeadLetter, SinkDir};
use crate::{Checkpoint, Delivery, Destination, Outgoing, SinkError};
use kaudit_event::{Event, MicroTime};
use kaudit_policy::{Outcome, PolicyApplier};
use kaudit_query::Query;
use kaudit_store::{
    run_follower, FollowError, FollowOptions, Followed, FollowedRecord, Follower, FollowerStatus,
    Store,
};
use serde::Serialize;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// After a stop is asked for, how long an in-flight batch keeps being retried
/// before the sink gives up on it (its cursor stays put, so it is sent again
/// after the restart: nothing is lost, it may arrive twice).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Live counters of one sink, shared with whoever reports them (the server's
/// metrics and `GET /api/v1/sinks`). Plain atomics so reading never blocks
/// the sink.
#[derive(Debug)]
pub struct SinkStats {
    name: String,
    kind: &'static str,
    cursor: AtomicU64,
    lag_events: AtomicU64,
    lag_millis: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    up: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// A snapshot of [`SinkStats`], as served by `GET /api/v1/sinks` and printed
/// by `kaudit sinks status -o json`.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct SinkStatus {
    /// Sink name.
    pub name: String,
    /// Sink type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Next sequence number to send.
    pub cursor: u64,
    /// Stored events not yet sent.
    pub lag_events: u64,
    /// Age of the oldest event not yet sent, in seconds (0 when caught up).
    pub lag_seconds: f64,
    /// Events delivered.
    pub sent: u64,
    /// Events dead-lettered.
    pub failed: u64,
    /// Failed attempts retried.
    pub retries: u64,
    /// Whether the last attempt succeeded.
    pub up: bool,
    /// The last error, while failing.
    pub last_error: Option<String>,
}

impl SinkStats {
    fn new(name: &str, kind: &'static str, st: &CursorState) -> SinkStats {
        SinkStats {
            name: name.to_string(),
            kind,
            cursor: AtomicU64::new(st.next),
            lag_events: AtomicU64::new(0),
            lag_millis: AtomicU64::new(0),
            sent: AtomicU64::new(st.sent),
            failed: AtomicU64::new(st.failed),
            retries: AtomicU64::new(st.retries),
            up: AtomicBool::new(true),
            last_error: Mutex::new(None),
        }
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A consistent-enough copy of the counters.
    pub fn snapshot(&self) -> SinkStatus {
        SinkStatus {
            name: self.name.clone(),
            kind: self.kind.to_string(),
            cursor: self.cursor.load(Ordering::Relaxed),
            lag_events: self.lag_events.load(Ordering::Relaxed),
            lag_seconds: self.lag_millis.load(Ordering::Relaxed) as f64 / 1000.0,
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            up: self.up.load(Ordering::Relaxed),
            last_error: self.last_error.lock().map(|e| e.clone()).unwrap_or(None),
        }
    }

    fn set_error(&self, e: Option<String>) {
        self.up.store(e.is_none(), Ordering::Relaxed);
        if let Ok(mut g) = self.last_error.lock() {
            *g = e;
        }
    }
}

impl SinkStatus {
    /// The status as of a saved cursor (offline: `kaudit sinks status`),
    /// measured against a store of `store_len` events whose oldest unsent
    /// event was received at `oldest_unsent` (if known).
    pub fn from_saved(
        name: &str,
        st: &CursorState,
        store_len: u64,
        oldest_unsent: Option<MicroTime>,
    ) -> SinkStatus {
        let lag = store_len.saturating_sub(st.next);
        SinkStatus {
            name: name.to_string(),
            kind: st.kind.clone(),
            cursor: st.next,
            lag_events: lag,
            lag_seconds: match oldest_unsent {
                Some(t) if lag > 0 => (MicroTime::now().micros() - t.micros()).max(0) as f64 / 1e6,
                _ => 0.0,
            },
            sent: st.sent,
            failed: st.failed,
            retries: st.retries,
            up: st.last_error.is_none(),
            last_error: st.last_error.clone(),
        }
    }
}

/// Builds the destination a config names.
pub fn open_destination(cfg: &SinkConfig) -> Result<Box<dyn Destination>, SinkError> {
    Ok(match &cfg.kind {
        SinkKind::Webhook(c) => Box::new(crate::webhook::Webhook::new(c, cfg.timeout)?),
        SinkKind::Elasticsearch(c) => {
            Box::new(crate::elasticsearch::Elasticsearch::new(c, cfg.timeout)?)
        }
        SinkKind::SplunkHec(c) => Box::new(crate::splunk::SplunkHec::new(c, cfg.timeout)?),
        SinkKind::Syslog(c) => Box::new(crate::syslog::Syslog::new(c, cfg.timeout)?),
        SinkKind::Ocsf(c) => Box::new(crate::ocsf::Ocsf::new(c, cfg.timeout)?),
        SinkKind::Nats(c) => Box::new(crate::nats::Nats::new(c, cfg.timeout)?),
    })
}

/// One running sink: its config, filter, policy, destination and cursor.
pub struct Sink {
    cfg: SinkConfig,
    filter: Option<Query>,
    applier: Option<PolicyApplier>,
    dest: Box<dyn Destination>,
    dir: SinkDir,
    state: CursorState,
    stats: Arc<SinkStats>,
    last_save: Instant,
    /// Events read past the cursor, not yet in a batch, in order.
    ahead: VecDeque<Ahead>,
    /// The sequence number after the last event read into `ahead`.
    examined: u64,
    /// `sink:<name>`, its name among the store's followers.
    follower_name: String,
}

/// Most events read from the store at once ahead of the cursor.
const READ_AHEAD: u64 = 4096;

/// An event read ahead of the cursor. Nearly every item is `Out`, so it is
/// kept inline rather than boxed (one allocation less per event).
#[allow(clippy::large_enum_variant)]
enum Ahead {
    /// To send.
    Out(Outgoing),
    /// Cannot be sent at all.
    Dead(DeadLetter),
}

/// Why a delivery ended without the destination taking the batch.
enum Undelivered {
    /// The stop flag was set and the grace period ran out.
    Stopped,
}

impl Sink {
    /// Opens the sink named by `cfg` for the data directory `data`.
    pub fn new(cfg: SinkConfig, data: &Path) -> Result<Sink, SinkError> {
        let dest = open_destination(&cfg)?;
        Sink::with_destination(cfg, data, dest)
    }

    /// Seals this sink's dead letters with the store's data key (encryption
    /// at rest).
    pub fn sealed(mut self, cipher: Option<std::sync::Arc<kaudit_store::crypt::Cipher>>) -> Sink {
        self.dir = self.dir.sealed(cipher);
        self
    }

    /// Like [`Sink::new`] with a given destination (tests, embedding).
    pub fn with_destination(
        cfg: SinkConfig,
        data: &Path,
        dest: Box<dyn Destination>,
    ) -> Result<Sink, SinkError> {
        let problems = cfg.check();
        if !problems.is_empty() {
            return Err(SinkError::Config(problems.join("; ")));
        }
        let filter = match &cfg.filter {
            Some(f) => Some(
                Query::parse(f)
                    .map_err(|e| SinkError::Config(format!("sink {:?}: filter: {e}", cfg.name)))?,
            ),
            None => None,
        };
        let applier = match PolicyApplier::for_ingest(cfg.policy.as_deref(), cfg.redact)
            .map_err(|e| SinkError::Config(format!("sink {:?}: policy: {e}", cfg.name)))?
        {
            Some((a, warnings)) => {
                for w in warnings {
                    tracing::warn!(sink = %cfg.name, "policy: {w}");
                }
                Some(a)
            }
            None => None,
        };
        let dir = SinkDir::new(data);
        let mut state = dir.load(&cfg.name)?;
        let examined = state.next;
        state.last_error = None;
        let stats = Arc::new(SinkStats::new(&cfg.name, cfg.kind.name(), &state));
        let follower_name = format!("sink:{}", cfg.name);
        Ok(Sink {
            cfg,
            filter,
            applier,
            dest,
            dir,
            state,
            stats,
            last_save: Instant::now(),
            ahead: VecDeque::new(),
            examined,
            follower_name,
        })
    }

    /// The sink's counters, shared with whoever reports them.
    pub fn stats(&self) -> Arc<SinkStats> {
        self.stats.clone()
    }

    /// The next sequence number to send.
    pub fn cursor(&self) -> u64 {
        self.state.next
    }

    /// How the shared follower loop paces this sink: the configured backoff,
    /// and on stop it ends after the batch in flight rather than draining.
    pub fn follow_options(&self) -> FollowOptions {
        FollowOptions {
            backoff_start: self.cfg.backoff_start,
            backoff_max: self.cfg.backoff_max,
            drain_on_stop: false,
            ..FollowOptions::default()
        }
    }

    /// Follows `store` until `stop` (without a live feed), through the shared
    /// follower loop; on stop, the batch in flight is finished (retried for up
    /// to [`SHUTDOWN_GRACE`]) and then it returns.
    pub fn run(&mut self, store: &Store, stop: &AtomicBool) {
        let log = Followed {
            store,
            feed: None,
            stop,
        };
        let opts = self.follow_options();
        let status = FollowerStatus::new(&self.follower_name.clone());
        run_follower(self, &log, &opts, &status);
    }

    /// Sends what is there (one batch at most, waiting up to `batch_timeout`
    /// for it to fill); returns how many stored events it moved past, or
    /// [`FollowError::Stopped`] when stopped before the destination took
    /// the batch.
    fn send_next(&mut self, log: &Followed<'_>) -> Result<u64, FollowError> {
        let (store, stop) = (log.store, log.stop);
        if self.cfg.checkpoints {
            if let Some(cp) = store.latest_checkpoint() {
                if cp.size > self.state.checkpoint_size {
                    let cp = Checkpoint {
                        size: cp.size,
                        time: cp.time,
                        note: cp.note,
                    };
                    self.deliver_checkpoint(&cp, stop)
                        .map_err(|_| FollowError::Stopped)?;
                    self.state.checkpoint_size = cp.size;
                    self.save();
                }
            }
        }
        let start = self.state.next;
        let (batch, scanned, dead, next_received) = self.collect(log);
        if scanned == start {
            self.update_lag(store, None);
            return Ok(0);
        }
        self.update_lag(store, batch.first().map(|o| o.received));
        let mut dead = dead;
        let mut sent = batch.len() as u64;
        if !batch.is_empty() {
            match self.deliver(&batch, stop) {
                Ok(mut refused) => {
                    sent -= refused.len() as u64;
                    dead.append(&mut refused);
                }
                Err(Undelivered::Stopped) => {
                    self.forget_read_ahead();
                    return Err(FollowError::Stopped);
                }
            }
        }
        let failed = dead.len() as u64;
        loop {
            match self.dir.dead_letter(&self.cfg.name, &dead) {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(sink = %self.cfg.name, error = %e, "cannot keep dead letters; retrying");
                    self.stats.set_error(Some(e.to_string()));
                    if stop.load(Ordering::Relaxed) {
                        self.forget_read_ahead();
                        return Err(FollowError::Stopped);
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        self.state.next = scanned;
        self.state.sent += sent;
        self.state.failed += failed;
        self.stats.sent.store(self.state.sent, Ordering::Relaxed);
        self.stats
            .failed
            .store(self.state.failed, Ordering::Relaxed);
        self.update_lag(store, next_received);
        self.stats.cursor.store(scanned, Ordering::Relaxed);
        // Moving past filtered-out events only needs saving now and then
        // (after a crash they are merely examined again).
        if sent > 0 || failed > 0 || self.last_save.elapsed() >= Duration::from_secs(1) {
            self.save();
        }
        Ok(scanned - start)
    }

    /// Drops what was read past the cursor (after an undelivered batch), so
    /// the next step reads it again from the cursor.
    fn forget_read_ahead(&mut self) {
        self.ahead.clear();
        self.examined = self.state.next;
    }

    fn save(&mut self) {
        self.last_save = Instant::now();
        self.state.retries = self.stats.retries.load(Ordering::Relaxed);
        self.state.last_error = self.stats.snapshot().last_error;
        self.state.updated = MicroTime::now().to_string();
        self.state.kind = self.dest.kind().to_string();
        if let Err(e) = self.dir.save(&self.cfg.name, &self.state) {
            // The destination has the events; the worst case is sending them
            // again after a restart.
            tracing::error!(sink = %self.cfg.name, error = %e, "cannot save the sink cursor");
        }
    }

    fn update_lag(&self, store: &Store, next_received: Option<MicroTime>) {
        let len = store.len();
        let lag = len.saturating_sub(self.state.next);
        self.stats.lag_events.store(lag, Ordering::Relaxed);
        let millis = if lag == 0 {
            0
        } else {
            let received = next_received.or_else(|| {
                let mut t = None;
                let _ = store.read(self.state.next..self.state.next + 1, &mut |_, leaf| {
                    t = Some(leaf.received);
                    false
                });
                t
            });
            received.map_or(0, |t| {
                (MicroTime::now().micros() - t.micros()).max(0) as u64 / 1000
            })
        };
        self.stats.lag_millis.store(millis, Ordering::Relaxed);
    }

    /// Reads ahead of the cursor into `ahead` (one store read per up to
    /// [`READ_AHEAD`] events, so a compressed bundle is decoded once rather
    /// than once per batch): events parsed, filtered and reduced, unreadable
    /// ones turned into dead letters.
    fn read_ahead(&mut self, log: &Followed<'_>) -> kaudit_store::StoreResult<()> {
        let len = log.len();
        if self.examined >= len {
            return Ok(());
        }
        let start = self.examined;
        let end = len.min(start + READ_AHEAD);
        let (filter, applier) = (&self.filter, &self.applier);
        let (ahead, examined) = (&mut self.ahead, &mut self.examined);
        let mut take = |seq: u64, rec: FollowedRecord<'_>| {
            *examined = seq + 1;
            let Some(ev) = rec.event else {
                let reason = match Event::from_json(rec.raw) {
                    Err(e) => format!("the stored event does not parse: {e}"),
                    Ok(_) => "the stored event does not parse".to_string(),
                };
                ahead.push_back(Ahead::Dead(DeadLetter {
                    seq,
                    reason,
                    event: String::from_utf8_lossy(rec.raw).into_owned(),
                }));
                return true;
            };
            if let Some(q) = filter {
                if !q.matches(ev, rec.cluster) {
                    return true;
                }
            }
            let ev = match applier {
                Some(a) => match a.apply(ev.clone()) {
                    Outcome::Keep(ev) => ev,
                    Outcome::Drop(_) => return true,
                },
                None => ev.clone(),
            };
            ahead.push_back(Ahead::Out(Outgoing {
                seq,
                cluster: rec.cluster.to_string(),
                received: rec.received,
                event: ev,
            }));
            true
        };
        log.read(start..end, &mut take)
    }

    /// Takes the next batch from the cursor: until it is full, the store
    /// has no more and `batch_timeout` passed, or stop. Returns the batch,
    /// the sequence number the cursor moves to once it is delivered, events
    /// that cannot be sent at all (unreadable), and the receive time of the
    /// first event left for later.
    fn collect(
        &mut self,
        log: &Followed<'_>,
    ) -> (Vec<Outgoing>, u64, Vec<DeadLetter>, Option<MicroTime>) {
        let stop = log.stop;
        let mut batch: Vec<Outgoing> = Vec::new();
        let mut dead = Vec::new();
        let mut bytes = 0usize;
        let mut next_received = None;
        let started = Instant::now();
        let max_events = self.cfg.batch_max_events;
        let max_bytes = self.cfg.batch_max_bytes;
        loop {
            let mut full = false;
            while let Some(item) = self.ahead.front() {
                if let Ahead::Out(o) = item {
                    let n = o.event.bytes().len();
                    if batch.len() >= max_events || (!batch.is_empty() && bytes + n > max_bytes) {
                        full = true;
                        next_received = Some(o.received);
                        break;
                    }
                    bytes += n;
                }
                match self.ahead.pop_front() {
                    Some(Ahead::Out(o)) => batch.push(o),
                    Some(Ahead::Dead(d)) => dead.push(d),
                    None => {}
                }
            }
            if full || batch.len() >= max_events || stop.load(Ordering::Relaxed) {
                break;
            }
            let before = self.examined;
            if let Err(e) = self.read_ahead(log) {
                tracing::warn!(sink = %self.cfg.name, error = %e, "cannot read the store; retrying");
                self.stats
                    .set_error(Some(format!("reading the store: {e}")));
                std::thread::sleep(Duration::from_millis(500));
                break;
            }
            if !self.ahead.is_empty() {
                continue;
            }
            if self.examined > before {
                // Everything read was filtered out; read on (a while).
                if started.elapsed() >= self.cfg.batch_timeout {
                    break;
                }
                continue;
            }
            // Caught up with the store.
            if batch.is_empty() && dead.is_empty() {
                break;
            }
            if started.elapsed() >= self.cfg.batch_timeout {
                break;
            }
            std::thread::sleep(Duration::from_millis(20).min(self.cfg.batch_timeout));
        }
        let moved_to = match self.ahead.front() {
            Some(Ahead::Out(o)) => o.seq,
            Some(Ahead::Dead(d)) => d.seq,
            None => self.examined,
        };
        (batch, moved_to, dead, next_received)
    }

    /// Sends a batch until the destination takes it; returns the items it
    /// refused for good.
    fn deliver(
        &mut self,
        batch: &[Outgoing],
        stop: &AtomicBool,
    ) -> Result<Vec<DeadLetter>, Undelivered> {
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut dead = Vec::new();
        let mut backoff = self.cfg.backoff_start;
        let mut stop_seen: Option<Instant> = None;
        while !pending.is_empty() {
            let res = if pending.len() == batch.len() {
                self.dest.send(batch)
            } else {
                let sub: Vec<Outgoing> = pending.iter().map(|&i| batch[i].clone()).collect();
                self.dest.send(&sub)
            };
            match res {
                Ok(Delivery { rejected, retry }) => {
                    self.stats.set_error(None);
                    for (i, reason) in rejected {
                        if let Some(&orig) = pending.get(i) {
                            let o = &batch[orig];
                            tracing::warn!(sink = %self.cfg.name, seq = o.seq, %reason, "event refused by the destination; dead-lettered");
                            dead.push(DeadLetter {
                                seq: o.seq,
                                reason,
                                event: String::from_utf8_lossy(o.event.bytes()).into_owned(),
                            });
                        }
                    }
                    let next: Vec<usize> = retry
                        .iter()
                        .filter_map(|&i| pending.get(i).copied())
                        .collect();
                    pending = next;
                    if !pending.is_empty() {
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(sink = %self.cfg.name, items = pending.len(), "destination asked to retry some items");
                        if !self.wait(&mut backoff, &mut stop_seen, stop) {
                            return Err(Undelivered::Stopped);
                        }
                    } else {
                        backoff = self.cfg.backoff_start;
                    }
                }
                Err(e) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    self.stats.set_error(Some(e.to_string()));
                    tracing::warn!(sink = %self.cfg.name, error = %e, retry_in = ?backoff, "delivery failed; will retry");
                    if !self.wait(&mut backoff, &mut stop_seen, stop) {
                        return Err(Undelivered::Stopped);
                    }
                }
            }
        }
        Ok(dead)
    }

    fn deliver_checkpoint(
        &mut self,
        cp: &Checkpoint,
        stop: &AtomicBool,
    ) -> Result<(), Undelivered> {
        let mut backoff = self.cfg.backoff_start;
        let mut stop_seen = None;
        loop {
            match self.dest.send_checkpoint(cp) {
                Ok(()) => {
                    self.stats.set_error(None);
                    return Ok(());
                }
                Err(e) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    self.stats.set_error(Some(format!("checkpoint: {e}")));
                    tracing::warn!(sink = %self.cfg.name, error = %e, "forwarding a checkpoint failed; will retry");
                    if !self.wait(&mut backoff, &mut stop_seen, stop) {
                        return Err(Undelivered::Stopped);
                    }
                }
            }
        }
    }

    /// Sleeps the backoff (with jitter) and doubles it; `false` once a stop
    /// has been asked for longer than the grace period.
    fn wait(
        &self,
        backoff: &mut Duration,
        stop_seen: &mut Option<Instant>,
        stop: &AtomicBool,
    ) -> bool {
        let d = jittered(*backoff);
        *backoff = (*backoff * 2).min(self.cfg.backoff_max);
        let until = Instant::now() + d;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                let seen = *stop_seen.get_or_insert_with(Instant::now);
                if seen.elapsed() >= SHUTDOWN_GRACE {
                    tracing::warn!(sink = %self.cfg.name, cursor = self.state.next, "stopping with a batch undelivered; it is sent again after the restart");
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
        }
        true
    }
}

/// Full jitter between half and all of `d`, so many sinks (or kaudit
/// instances) do not retry in lockstep; the followers' shared helper.
pub use kaudit_store::follow::jittered;

impl Follower for Sink {
    fn name(&self) -> &str {
        &self.follower_name
    }

    fn position(&self) -> u64 {
        self.state.next
    }

    fn step(&mut self, log: &Followed<'_>) -> Result<u64, FollowError> {
        self.send_next(log)
    }

    fn finish(&mut self, _log: &Followed<'_>) {
        self.save();
        tracing::info!(sink = %self.cfg.name, cursor = self.state.next, "sink stopped");
    }
}
