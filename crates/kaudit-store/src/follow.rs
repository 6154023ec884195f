//! The contract every follower of the store meets, and the one loop that
//! drives them all.
//!
//! A follower is anything that must see every stored record once, in
//! sequence order, after ingest made it durable: the search indexer, live
//! detection, each forwarding sink, an alert notifier, later the ClickHouse
//! shipper. Each keeps its own durable position (the next sequence number it
//! needs), so none can slow ingest or another follower, and a restart
//! resumes where its output was last made durable.
//!
//! A [`Follower`] only says how to take one step from its position; the
//! shared [`run_follower`] loop does the rest the same way for all of them:
//! waiting while caught up, backing off (doubling, with jitter) after a
//! failure, draining or not on stop, and keeping a [`FollowerStatus`] that the
//! server turns into lag metrics. Records come from the [`LiveFeed`] while
//! the follower keeps up with it and from the segments otherwise
//! ([`Followed::read`]), so the feed saves work but is never the source of
//! truth.

use crate::feed::{self, FollowedRecord, LiveFeed};
use crate::{Store, StoreResult};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a follower reads: the store, the live feed in front of it, and the
/// stop flag (so a long step can end early and resume from its position).
pub struct Followed<'a> {
    /// The store, the source of truth.
    pub store: &'a Store,
    /// Recently appended records, already parsed, when the process has them.
    pub feed: Option<&'a LiveFeed>,
    /// Set when the process is shutting down.
    pub stop: &'a AtomicBool,
}

impl Followed<'_> {
    /// Records stored so far (the end of what can be followed).
    pub fn len(&self) -> u64 {
        self.store.len()
    }

    /// Whether nothing is stored yet.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// Whether a stop was asked for.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Calls `f(seq, record)` for each record of `range` in order, from the
    /// feed where it holds them and parsed from the store otherwise; `f`
    /// returns false to stop early.
    pub fn read(
        &self,
        range: Range<u64>,
        f: &mut dyn FnMut(u64, FollowedRecord<'_>) -> bool,
    ) -> StoreResult<()> {
        feed::follow(self.feed, self.store, range, f)
    }
}

/// Why a step did not complete.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// A stop was asked for while work was in flight; the position did not
    /// move past it, so it is done again after the restart.
    #[error("stopped with work in flight")]
    Stopped,
    /// Reading the store or writing the output failed; the step is retried
    /// from the same position after a backoff.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl FollowError {
    /// Wraps any error as a retryable failure.
    pub fn failed(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> FollowError {
        FollowError::Failed(e.into())
    }
}

/// One member of the family that follows the store. See the [module
/// docs](self).
pub trait Follower: Send {
    /// Its name in logs and metric labels (`indexer`, `detect`,
    /// `sink:<name>`).
    fn name(&self) -> &str;
    /// The next sequence number (or, for a follower of a derived log, the
    /// next item) it will process; durable as of its last completed step.
    fn position(&self) -> u64;
    /// Items it has yet to process when the store holds `log_len` records.
    /// Followers of a derived log (alerts) count their own backlog.
    fn backlog(&self, log_len: u64) -> u64 {
        log_len.saturating_sub(self.position())
    }
    /// Processes what is there from its position (a bounded amount), makes
    /// its output and then its position durable, and returns how many items
    /// it moved past (0 when caught up).
    fn step(&mut self, log: &Followed<'_>) -> Result<u64, FollowError>;
    /// Called once after the last step, on stop: flush and save.
    fn finish(&mut self, _log: &Followed<'_>) {}
}

/// How [`run_follower`] paces a follower.
#[derive(Clone, Debug)]
pub struct FollowOptions {
    /// Wait between steps while caught up.
    pub idle: Duration,
    /// First wait after a failed step; doubled on each further failure.
    pub backoff_start: Duration,
    /// Longest wait after failures.
    pub backoff_max: Duration,
    /// On stop, keep stepping until caught up (cheap local followers, so the
    /// index and alerts are complete when the process ends) rather than
    /// ending after the step in flight (remote sinks).
    pub drain_on_stop: bool,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            idle: Duration::from_millis(50),
            backoff_start: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            drain_on_stop: false,
        }
    }
}

/// Live state of one follower, shared with whoever reports it (metrics,
/// status pages). Plain atomics, so reading never blocks the follower.
#[derive(Debug)]
pub struct FollowerStatus {
    name: String,
    position: AtomicU64,
    backlog: AtomicU64,
    failures: AtomicU64,
    up: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// A copy of a [`FollowerStatus`] at one moment.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FollowerState {
    /// The follower's name.
    pub name: String,
    /// Its position.
    pub position: u64,
    /// Items it has yet to process.
    pub backlog: u64,
    /// Failed steps since start.
    pub failures: u64,
    /// Whether its last step succeeded.
    pub up: bool,
    /// The last failure, while failing.
    pub last_error: Option<String>,
}

impl FollowerStatus {
    /// A status for the follower `name`, up, at position 0.
    pub fn new(name: &str) -> FollowerStatus {
        FollowerStatus {
            name: name.to_string(),
            position: AtomicU64::new(0),
            backlog: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            up: AtomicBool::new(true),
            last_error: Mutex::new(None),
        }
    }

    /// The follower's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn progressed(&self, position: u64, backlog: u64) {
        self.position.store(position, Ordering::Relaxed);
        self.backlog.store(backlog, Ordering::Relaxed);
        if !self.up.swap(true, Ordering::Relaxed) {
            if let Ok(mut e) = self.last_error.lock() {
                *e = None;
            }
        }
    }

    fn failed(&self, e: &FollowError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.up.store(false, Ordering::Relaxed);
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(e.to_string());
        }
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> FollowerState {
        FollowerState {
            name: self.name.clone(),
            position: self.position.load(Ordering::Relaxed),
            backlog: self.backlog.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            up: self.up.load(Ordering::Relaxed),
            last_error: self.last_error.lock().map(|e| e.clone()).unwrap_or(None),
        }
    }
}

/// Drives `follower` until `log.stop` is set (and, with
/// [`FollowOptions::drain_on_stop`], until it is caught up), then calls its
/// [`Follower::finish`]. Failed steps are retried from the same position
/// after a jittered, doubling backoff; nothing is skipped.
pub fn run_follower(
    follower: &mut dyn Follower,
    log: &Followed<'_>,
    opts: &FollowOptions,
    status: &FollowerStatus,
) {
    let name = follower.name().to_string();
    tracing::info!(follower = %name, position = follower.position(), "follower started");
    let mut backoff = opts.backoff_start;
    let mut failing_since_stop: Option<Instant> = None;
    loop {
        let stopping = log.stopping();
        match follower.step(log) {
            Ok(moved) => {
                backoff = opts.backoff_start;
                status.progressed(follower.position(), follower.backlog(log.len()));
                if stopping && !(opts.drain_on_stop && moved > 0) {
                    break;
                }
                if moved == 0 {
                    std::thread::sleep(opts.idle);
                }
            }
            Err(FollowError::Stopped) => break,
            Err(e) => {
                // The backlog keeps growing while a follower fails (its
                // destination is down): keep the lag metric current.
                status
                    .backlog
                    .store(follower.backlog(log.len()), Ordering::Relaxed);
                status.failed(&e);
                tracing::warn!(follower = %name, error = %e, retry_in = ?backoff, "follower step failed; retrying");
                if stopping {
                    // Give a failing follower a short grace on stop, not forever.
                    let since = *failing_since_stop.get_or_insert_with(Instant::now);
                    if since.elapsed() >= opts.backoff_max {
                        break;
                    }
                }
                std::thread::sleep(jittered(backoff));
                backoff = (backoff * 2).min(opts.backoff_max);
            }
        }
    }
    follower.finish(log);
    status.progressed(follower.position(), follower.backlog(log.len()));
    tracing::info!(follower = %name, position = follower.position(), "follower stopped");
}

/// Between half and all of `d`, at random, so many followers (or kaudit
/// instances) do not retry in lockstep.
pub fn jittered(d: Duration) -> Duration {
    let ms = d.as_millis().clamp(2, u128::from(u64::MAX)) as u64;
    let mut b = [0u8; 8];
    let r = match getrandom::getrandom(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => u64::from(std::process::id()) ^ Instant::now().elapsed().as_nanos() as u64,
    };
    let half = ms / 2;
    Duration::from_millis(half + r % (ms - half + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Record, StoreOptions};
    use kaudit_event::MicroTime;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn jitter_stays_within_half_and_whole(ms in 2u64..100_000) {
            let d = jittered(Duration::from_millis(ms));
            prop_assert!(d >= Duration::from_millis(ms / 2) && d <= Duration::from_millis(ms));
        }
    }

    /// Collects every record's sequence number, failing on chosen steps.
    struct Collect {
        next: u64,
        seen: Vec<u64>,
        fail_on: Vec<usize>,
        steps: usize,
        finished: bool,
    }

    impl Follower for Collect {
        fn name(&self) -> &str {
            "collect"
        }
        fn position(&self) -> u64 {
            self.next
        }
        fn step(&mut self, log: &Followed<'_>) -> Result<u64, FollowError> {
            self.steps += 1;
            if self.fail_on.contains(&self.steps) {
                return Err(FollowError::failed("injected"));
            }
            let end = log.len().min(self.next + 3);
            let start = self.next;
            let mut got = Vec::new();
            log.read(start..end, &mut |seq, _| {
                got.push(seq);
                true
            })
            .map_err(FollowError::failed)?;
            self.seen.extend(got);
            self.next = end;
            Ok(end - start)
        }
        fn finish(&mut self, _log: &Followed<'_>) {
            self.finished = true;
        }
    }

    fn event(i: u64) -> Vec<u8> {
        format!(r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-{i}","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{{"username":"u"}},"requestReceivedTimestamp":"2026-01-01T00:00:00.000000Z","stageTimestamp":"2026-01-01T00:00:00.000001Z"}}"#).into_bytes()
    }

    #[test]
    fn every_record_once_in_order_through_failures_and_drained_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let records: Vec<Record> = (0..10)
            .map(|i| Record {
                cluster: "c".into(),
                received: MicroTime(1_000 + i as i64),
                event: event(i),
            })
            .collect();
        store.append_batch(records).unwrap();
        let stop = AtomicBool::new(true);
        let log = Followed {
            store: &store,
            feed: None,
            stop: &stop,
        };
        let mut f = Collect {
            next: 0,
            seen: Vec::new(),
            fail_on: vec![2, 3],
            steps: 0,
            finished: false,
        };
        let opts = FollowOptions {
            idle: Duration::from_millis(1),
            backoff_start: Duration::from_millis(2),
            backoff_max: Duration::from_secs(5),
            drain_on_stop: true,
        };
        let status = FollowerStatus::new("collect");
        run_follower(&mut f, &log, &opts, &status);
        assert_eq!(f.seen, (0..10).collect::<Vec<_>>());
        assert!(f.finished);
        let st = status.snapshot();
        assert_eq!(
            (st.position, st.backlog, st.failures, st.up),
            (10, 0, 2, true)
        );

        // Without draining, a stopped follower ends after the step in flight.
        let mut g = Collect {
            next: 0,
            seen: Vec::new(),
            fail_on: vec![],
            steps: 0,
            finished: false,
        };
        let opts = FollowOptions {
            drain_on_stop: false,
            ..opts
        };
        run_follower(&mut g, &log, &opts, &FollowerStatus::new("g"));
        assert_eq!(g.seen, [0, 1, 2]);
        assert_eq!(g.backlog(store.len()), 7);
    }
}
