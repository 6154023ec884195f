//! The server's own metrics (the store, the live feed, every follower and
//! sink), and the loop that refreshes them once a second. Ingest and source
//! metrics are declared where they are counted (`kaudit-sources`), alert
//! counts in `kaudit-detect`; all land in one [`Metrics`] registry.

use kaudit_metrics::{Counter, Gauge, Metrics};
use kaudit_sinks::SinkStats;
use kaudit_store::{FollowerStatus, LiveFeed, Store};
use std::sync::Arc;

/// Records in the store.
pub static STORE_TREE_SIZE: Gauge<0> = Gauge {
    name: "kaudit_store_tree_size",
    help: "Records in the store (Merkle tree size).",
    labels: [],
};
/// Age of the newest checkpoint.
pub static CHECKPOINT_AGE: Gauge<0> = Gauge {
    name: "kaudit_checkpoint_age_seconds",
    help: "Age of the latest signed checkpoint.",
    labels: [],
};
/// Records followers took from memory or read back.
pub static FEED_RECORDS: Counter<1> = Counter {
    name: "kaudit_feed_records_total",
    help: "Records followers (indexer, detection, sinks) took from the in-memory live feed (from=memory) or read back from the store (from=store).",
    labels: ["from"],
};
/// Each follower's backlog.
pub static FOLLOWER_LAG: Gauge<1> = Gauge {
    name: "kaudit_follower_lag_events",
    help: "Items a follower of the store (indexer, detect, sink:<name>, alerts:<output>) has yet to process.",
    labels: ["follower"],
};
/// Each follower's position.
pub static FOLLOWER_POSITION: Gauge<1> = Gauge {
    name: "kaudit_follower_position",
    help: "The next item a follower of the store will process.",
    labels: ["follower"],
};
/// Whether each follower's last step succeeded.
pub static FOLLOWER_UP: Gauge<1> = Gauge {
    name: "kaudit_follower_up",
    help: "1 when a follower's last step succeeded.",
    labels: ["follower"],
};
/// Failed steps of each follower.
pub static FOLLOWER_FAILURES: Counter<1> = Counter {
    name: "kaudit_follower_failures_total",
    help: "Failed steps of a follower of the store since start (each retried).",
    labels: ["follower"],
};
/// Detection's backlog (kept under its first name for existing dashboards).
pub static DETECT_LAG: Gauge<0> = Gauge {
    name: "kaudit_detect_lag_events",
    help: "Stored events not yet evaluated by live detection.",
    labels: [],
};
/// A sink's backlog in events.
pub static SINK_LAG_EVENTS: Gauge<1> = Gauge {
    name: "kaudit_sink_lag_events",
    help: "Stored events a sink has not sent yet.",
    labels: ["sink"],
};
/// A sink's backlog in time.
pub static SINK_LAG_SECONDS: Gauge<1> = Gauge {
    name: "kaudit_sink_lag_seconds",
    help: "Age of the oldest event a sink has not sent yet.",
    labels: ["sink"],
};
/// Events a sink delivered.
pub static SINK_SENT: Counter<1> = Counter {
    name: "kaudit_sink_sent_total",
    help: "Events a sink's destination acknowledged.",
    labels: ["sink"],
};
/// Events a sink dead-lettered.
pub static SINK_FAILED: Counter<1> = Counter {
    name: "kaudit_sink_failed_total",
    help: "Events a sink's destination refused for good (dead-lettered).",
    labels: ["sink"],
};
/// Delivery attempts a sink retried.
pub static SINK_RETRIES: Counter<1> = Counter {
    name: "kaudit_sink_retries_total",
    help: "Failed delivery attempts a sink retried.",
    labels: ["sink"],
};
/// Whether a sink's last attempt succeeded.
pub static SINK_UP: Gauge<1> = Gauge {
    name: "kaudit_sink_up",
    help: "1 when a sink's last delivery attempt succeeded.",
    labels: ["sink"],
};

/// What the metrics loop reads each second.
pub struct Watched {
    /// The store.
    pub store: Arc<Store>,
    /// The live feed.
    pub feed: Arc<LiveFeed>,
    /// Every follower's status.
    pub followers: Vec<Arc<FollowerStatus>>,
    /// Every sink's counters.
    pub sinks: Vec<Arc<SinkStats>>,
}

impl Watched {
    /// What to watch.
    pub fn new(
        store: Arc<Store>,
        feed: Arc<LiveFeed>,
        followers: Vec<Arc<FollowerStatus>>,
        sinks: Vec<Arc<SinkStats>>,
    ) -> Watched {
        Watched {
            store,
            feed,
            followers,
            sinks,
        }
    }

    /// Sets every gauge and adds to every counter once.
    pub fn report(&mut self, m: &Metrics) {
        m.set(&STORE_TREE_SIZE, [], self.store.len() as f64);
        let (memory, read_back) = self.feed.served();
        m.set_total(&FEED_RECORDS, ["memory"], memory);
        m.set_total(&FEED_RECORDS, ["store"], read_back);
        if let Some(t) = self
            .store
            .latest_checkpoint()
            .and_then(|cp| kaudit_event::MicroTime::parse(&cp.time).ok())
        {
            let age = kaudit_event::MicroTime::now().micros() - t.micros();
            m.set(&CHECKPOINT_AGE, [], age as f64 / 1e6);
        }
        for f in &self.followers {
            let st = f.snapshot();
            let l = [st.name.as_str()];
            m.set(&FOLLOWER_LAG, l, st.backlog as f64);
            m.set(&FOLLOWER_POSITION, l, st.position as f64);
            m.set(&FOLLOWER_UP, l, if st.up { 1.0 } else { 0.0 });
            m.set_total(&FOLLOWER_FAILURES, l, st.failures);
            if st.name == "detect" {
                m.set(&DETECT_LAG, [], st.backlog as f64);
            }
        }
        for s in &self.sinks {
            let st = s.snapshot();
            let l = [st.name.as_str()];
            m.set(&SINK_LAG_EVENTS, l, st.lag_events as f64);
            m.set(&SINK_LAG_SECONDS, l, st.lag_seconds);
            m.set(&SINK_UP, l, if st.up { 1.0 } else { 0.0 });
            m.set_total(&SINK_SENT, l, st.sent);
            m.set_total(&SINK_FAILED, l, st.failed);
            m.set_total(&SINK_RETRIES, l, st.retries);
        }
    }
}
