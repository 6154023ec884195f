//! The ingest pipeline every source shares: parse a batch item by item,
//! quarantine what is not an audit event, truncate what is too large the way
//! kube-apiserver's truncate backend does, apply the ingest-time transform
//! (policy, redaction), drop resends (identical bytes), append durably, then
//! acknowledge.
//!
//! Transport-neutral: the HTTP handler, every [`crate::Source`] and tests call
//! [`Ingestor::ingest_batch`] / [`Ingestor::ingest_events`] and map the
//! outcome to their own protocol. The store and the policy are not named
//! here: the server hands in an [`EventLog`] and a [`Transform`], so sources
//! stand before both on the data's way.

use crate::dedupe::{self, DedupeWindow};
use crate::quarantine::{NewEntry, Quarantine, QuarantineError};
use kaudit_event::{Event, MicroTime};
use kaudit_metrics::{Counter, Histogram, Metrics, BATCH_BUCKETS, LATENCY_BUCKETS};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// Items received, by cluster and source.
pub static EVENTS_RECEIVED: Counter<2> = Counter {
    name: "kaudit_events_received_total",
    help: "Audit events received, by cluster and source.",
    labels: ["cluster", "source"],
};
/// Events made durable, by cluster.
pub static EVENTS_STORED: Counter<1> = Counter {
    name: "kaudit_events_stored_total",
    help: "Audit events stored durably, by cluster.",
    labels: ["cluster"],
};
/// Items not stored, by cluster and reason.
pub static EVENTS_REJECTED: Counter<2> = Counter {
    name: "kaudit_events_rejected_total",
    help: "Items not stored, by cluster and reason (quarantined, policy, strict).",
    labels: ["cluster", "reason"],
};
/// Resends recognised by the dedupe window.
pub static DEDUPE_HITS: Counter<1> = Counter {
    name: "kaudit_dedupe_hits_total",
    help: "Resent events recognised and not stored twice.",
    labels: ["cluster"],
};
/// Events stored truncated.
pub static EVENTS_TRUNCATED: Counter<1> = Counter {
    name: "kaudit_events_truncated_total",
    help: "Events stored truncated because they exceeded the per-event limit.",
    labels: ["cluster"],
};
/// Events per stored batch.
pub static BATCH_EVENTS: Histogram<0> = Histogram {
    name: "kaudit_batch_events",
    help: "Events per ingested batch.",
    labels: [],
    buckets: BATCH_BUCKETS,
};
/// Time the durable append of a batch took.
pub static COMMIT_SECONDS: Histogram<0> = Histogram {
    name: "kaudit_commit_seconds",
    help: "Time to make a batch durable.",
    labels: [],
    buckets: LATENCY_BUCKETS,
};

/// One event ready to be stored, with what the store binds to it.
#[derive(Clone, Debug)]
pub struct IngestRecord {
    /// Cluster it came from.
    pub cluster: String,
    /// When kaudit received it.
    pub received: MicroTime,
    /// The event (its bytes are what is stored).
    pub event: Event,
    /// The SHA-256 state over the store's leaf prefix of exactly this
    /// cluster and these bytes, computed once for the dedupe key; the store
    /// finishes the leaf hash from it instead of hashing the event again.
    /// `None` when there is none (the store then hashes the record itself).
    pub leaf_prefix: Option<dedupe::LeafPrefix>,
}

/// Where ingested events go: the store. `append` returns only once every
/// record is durable (fsync), so an acknowledgement never outruns the disk.
pub trait EventLog: Send + Sync + 'static {
    /// Appends durably, in order (taking the records, so their bytes move
    /// into the store without a copy).
    fn append(&self, records: Vec<IngestRecord>) -> Result<(), LogError>;
}

/// The store refused or failed an append.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Temporarily unable (saturated, disk nearly full): the sender should retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The append failed.
    #[error("store error: {0}")]
    Failed(String),
}

/// An ingest-time transform: the policy and redaction. `None` drops the event
/// (below its rule's level, or an omitted stage).
pub type Transform = Arc<dyn Fn(Event) -> Option<Event> + Send + Sync>;

/// Limits of one ingest.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Events larger than this are truncated (bodies dropped), never rejected.
    pub max_event: usize,
    /// Most items one webhook batch may hold (kube-apiserver sends at most
    /// 400 by default); beyond it the batch is refused while it is decoded.
    pub max_batch_items: usize,
    /// Most bytes the invalid items of one batch may add to the quarantine;
    /// beyond it the batch is refused (nothing stored) with the reason.
    pub max_quarantine_per_batch: u64,
}

/// Default of [`Limits::max_batch_items`].
pub const DEFAULT_MAX_BATCH_ITEMS: usize = 10_000;
/// Default of [`Limits::max_quarantine_per_batch`].
pub const DEFAULT_MAX_QUARANTINE_PER_BATCH: u64 = 16 << 20;
/// How many refused items an answer lists (the rest are counted).
pub const MAX_REPORTED_ITEMS: usize = 100;
/// Distinct cluster names the ingest metrics label separately; later ones
/// are counted under [`kaudit_metrics::OVERFLOW_LABEL`].
pub const MAX_CLUSTER_LABELS: usize = 256;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event: 4 << 20,
            max_batch_items: DEFAULT_MAX_BATCH_ITEMS,
            max_quarantine_per_batch: DEFAULT_MAX_QUARANTINE_PER_BATCH,
        }
    }
}

/// The cluster label of the ingest metrics: the cluster's name for the first
/// [`MAX_CLUSTER_LABELS`] clusters seen, [`kaudit_metrics::OVERFLOW_LABEL`]
/// after that, so `?cluster=` values cannot grow the metrics without bound.
#[derive(Default)]
struct ClusterLabels {
    seen: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl ClusterLabels {
    fn label<'a>(&self, cluster: &'a str) -> &'a str {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(cluster) {
            return cluster;
        }
        if seen.len() < MAX_CLUSTER_LABELS {
            seen.insert(cluster.to_string());
            return cluster;
        }
        kaudit_metrics::OVERFLOW_LABEL
    }
}

/// Beyond this even a truncated event is not stored (the store's own bound);
/// it goes to quarantine with its bytes instead.
pub const HARD_MAX_EVENT: usize = 16 << 20;

/// One refused item of a batch, as reported to the sender.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct QuarantinedItem {
    /// Index of the item in the batch (document order).
    pub index: usize,
    /// Why it was refused.
    pub reason: String,
}

/// What happened to a batch.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct IngestOutcome {
    /// Events stored (or already stored earlier: resends count as accepted).
    pub accepted: usize,
    /// Items kept in quarantine instead: the first [`MAX_REPORTED_ITEMS`].
    pub quarantined: Vec<QuarantinedItem>,
    /// How many items were kept in quarantine (all of them, listed or not).
    pub quarantined_count: usize,
    /// Of the accepted, how many were resends already stored.
    pub duplicates: usize,
    /// Of the accepted, how many were truncated for size.
    pub truncated: usize,
    /// Events the ingest policy chose not to keep.
    pub dropped_by_policy: usize,
}

/// Why a batch was not taken.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body is not JSON, or not an EventList/Event/array (400; nothing stored).
    #[error("{0}")]
    BadBody(String),
    /// Strict mode and some items are invalid (400; nothing stored).
    #[error("{count} invalid item(s) in strict mode; nothing stored")]
    Strict {
        /// The first [`MAX_REPORTED_ITEMS`] invalid items.
        items: Vec<QuarantinedItem>,
        /// How many items are invalid.
        count: usize,
    },
    /// The batch holds more items than allowed (413; nothing stored).
    #[error(
        "the batch holds more than {limit} items (ingest.max_batch_items); send smaller batches"
    )]
    TooManyItems {
        /// The most items a batch may hold.
        limit: usize,
    },
    /// The invalid items of the batch are too large to quarantine (413;
    /// nothing stored).
    #[error("the batch's {count} invalid item(s) hold {bytes} bytes, more than the {limit} bytes one batch may add to the quarantine (ingest.max_quarantine_per_batch); nothing stored")]
    QuarantineTooLarge {
        /// Invalid items in the batch.
        count: usize,
        /// Their bytes.
        bytes: u64,
        /// The per-batch limit.
        limit: u64,
    },
    /// The quarantine is full: the batch's invalid items cannot be kept, so
    /// nothing of the batch is stored (507; retry once the quarantine is
    /// emptied or the limit raised).
    #[error("{0}")]
    QuarantineFull(String),
    /// The store or the quarantine could not take it now (503; retry).
    #[error("{0}")]
    Unavailable(String),
}

fn reported(bad: &[BadItem]) -> Vec<QuarantinedItem> {
    bad.iter()
        .take(MAX_REPORTED_ITEMS)
        .map(BadItem::reported)
        .collect()
}

/// The shared ingest pipeline.
pub struct Ingestor {
    log: Arc<dyn EventLog>,
    quarantine: Arc<Quarantine>,
    dedupe: DedupeWindow,
    metrics: Arc<Metrics>,
    limits: Limits,
    transform: Option<Transform>,
    clusters: ClusterLabels,
}

impl Ingestor {
    /// Builds the pipeline.
    pub fn new(
        log: Arc<dyn EventLog>,
        quarantine: Arc<Quarantine>,
        dedupe: DedupeWindow,
        metrics: Arc<Metrics>,
        limits: Limits,
        transform: Option<Transform>,
    ) -> Self {
        Ingestor {
            log,
            quarantine,
            dedupe,
            metrics,
            limits,
            transform,
            clusters: ClusterLabels::default(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The quarantine area.
    pub fn quarantine(&self) -> &Arc<Quarantine> {
        &self.quarantine
    }

    /// Ingests a webhook-style body (EventList, Event, or array of either).
    pub fn ingest_batch(
        &self,
        body: &[u8],
        cluster: &str,
        strict: bool,
        source: &str,
    ) -> Result<IngestOutcome, IngestError> {
        let decoded = crate::webhook::decode(body, self.limits.max_batch_items)?;
        let (events, bad) = (decoded.events, decoded.bad);
        let label = self.clusters.label(cluster);
        self.metrics.inc(
            &EVENTS_RECEIVED,
            [label, source],
            (events.len() + bad.len()) as u64,
        );
        if strict && !bad.is_empty() {
            self.metrics
                .inc(&EVENTS_REJECTED, [label, "strict"], bad.len() as u64);
            return Err(IngestError::Strict {
                items: reported(&bad),
                count: bad.len(),
            });
        }
        self.store(events, bad, cluster, source)
    }

    /// Ingests events already parsed (file sources, imports), plus located
    /// bad items to quarantine.
    pub fn ingest_events(
        &self,
        events: Vec<Event>,
        bad: Vec<BadItem>,
        cluster: &str,
        source: &str,
    ) -> Result<IngestOutcome, IngestError> {
        self.metrics.inc(
            &EVENTS_RECEIVED,
            [self.clusters.label(cluster), source],
            (events.len() + bad.len()) as u64,
        );
        let events = events.into_iter().enumerate().collect();
        self.store(events, bad, cluster, source)
    }

    fn store(
        &self,
        events: Vec<(usize, Event)>,
        bad: Vec<BadItem>,
        cluster: &str,
        source: &str,
    ) -> Result<IngestOutcome, IngestError> {
        let mut out = IngestOutcome::default();
        let label = self.clusters.label(cluster);
        let received = MicroTime::now();
        let mut records = Vec::with_capacity(events.len());
        let mut bad = bad;
        for (index, ev) in events {
            let ev = match &self.transform {
                Some(t) => match t(ev) {
                    Some(ev) => ev,
                    None => {
                        out.dropped_by_policy += 1;
                        continue;
                    }
                },
                None => ev,
            };
            let ev = if ev.bytes().len() > self.limits.max_event {
                let t = truncate(ev);
                if t.bytes().len() > HARD_MAX_EVENT {
                    bad.push(BadItem {
                        index,
                        path: None,
                        reason: format!(
                            "event is {} bytes even without request/response objects (limit {})",
                            t.bytes().len(),
                            self.limits.max_event
                        ),
                        raw: t.bytes().to_vec(),
                    });
                    continue;
                }
                out.truncated += 1;
                t
            } else {
                ev
            };
            records.push(IngestRecord {
                cluster: cluster.to_string(),
                received,
                event: ev,
                leaf_prefix: None,
            });
        }
        // Quarantine first: once the batch is acknowledged, every item of it
        // must be somewhere durable.
        if !bad.is_empty() {
            let bytes: u64 = bad.iter().map(|b| b.raw.len() as u64).sum();
            if bytes > self.limits.max_quarantine_per_batch {
                self.metrics.inc(
                    &EVENTS_REJECTED,
                    [label, "quarantine_limit"],
                    bad.len() as u64,
                );
                return Err(IngestError::QuarantineTooLarge {
                    count: bad.len(),
                    bytes,
                    limit: self.limits.max_quarantine_per_batch,
                });
            }
            let now = received.to_string();
            let entries: Vec<NewEntry<'_>> = bad
                .iter()
                .map(|b| NewEntry {
                    cluster,
                    source,
                    path: b.path.as_deref(),
                    reason: &b.reason,
                    raw: &b.raw,
                })
                .collect();
            self.quarantine.append(&entries, &now).map_err(|e| match e {
                QuarantineError::Full { .. } => {
                    self.metrics
                        .inc(&EVENTS_REJECTED, [label, "quarantine_full"], bad.len() as u64);
                    IngestError::QuarantineFull(format!(
                        "{e}; the batch's {} invalid item(s) cannot be kept, so nothing of it is stored",
                        bad.len()
                    ))
                }
                e => IngestError::Unavailable(e.to_string()),
            })?;
            self.metrics
                .inc(&EVENTS_REJECTED, [label, "quarantined"], bad.len() as u64);
            out.quarantined = reported(&bad);
            out.quarantined_count = bad.len();
        }
        if out.dropped_by_policy > 0 {
            self.metrics.inc(
                &EVENTS_REJECTED,
                [label, "policy"],
                out.dropped_by_policy as u64,
            );
        }
        let keys: Vec<_> = records
            .iter_mut()
            .map(|r| {
                let (key, prefix) = dedupe::key_and_prefix(&r.cluster, r.event.bytes());
                r.leaf_prefix = prefix;
                key
            })
            .collect();
        let fresh = self
            .dedupe
            .claim(&keys)
            .map_err(|e| IngestError::Unavailable(e.to_string()))?;
        let mut to_store = Vec::with_capacity(records.len());
        let mut claimed = Vec::with_capacity(records.len());
        for ((rec, key), new) in records.into_iter().zip(keys).zip(fresh) {
            if new {
                to_store.push(rec);
                claimed.push(key);
            } else {
                out.duplicates += 1;
            }
        }
        let stored = to_store.len();
        if !to_store.is_empty() {
            let t = Instant::now();
            if let Err(e) = self.log.append(to_store) {
                self.dedupe.release(claimed);
                return Err(IngestError::Unavailable(e.to_string()));
            }
            self.metrics
                .observe(&COMMIT_SECONDS, [], t.elapsed().as_secs_f64());
            self.dedupe.commit(claimed);
        }
        self.metrics.observe(&BATCH_EVENTS, [], stored as f64);
        self.metrics.inc(&EVENTS_STORED, [label], stored as u64);
        if out.duplicates > 0 {
            self.metrics
                .inc(&DEDUPE_HITS, [label], out.duplicates as u64);
        }
        if out.truncated > 0 {
            self.metrics
                .inc(&EVENTS_TRUNCATED, [label], out.truncated as u64);
        }
        out.accepted = stored + out.duplicates;
        Ok(out)
    }
}

/// An item that could not be ingested, to quarantine.
#[derive(Clone, Debug)]
pub struct BadItem {
    /// Index in its batch or input.
    pub index: usize,
    /// JSON path, or `file:line` for file sources.
    pub path: Option<String>,
    /// Why.
    pub reason: String,
    /// Its bytes.
    pub raw: Vec<u8>,
}

impl BadItem {
    /// The item as the sender is told about it: its index and the reason,
    /// prefixed by where in the item it went wrong.
    pub fn reported(&self) -> QuarantinedItem {
        QuarantinedItem {
            index: self.index,
            reason: match &self.path {
                Some(p) if !p.is_empty() => format!("{p}: {}", self.reason),
                _ => self.reason.clone(),
            },
        }
    }
}

/// What kube-apiserver's truncate backend does to an event over the limit:
/// drop the request and response objects and say so in an annotation.
pub fn truncate(ev: Event) -> Event {
    let mut doc = ev.into_doc();
    doc.request_object = None;
    doc.response_object = None;
    doc.annotations
        .insert("audit.k8s.io/truncated".to_string(), "true".to_string());
    Event::from_doc(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    struct VecLog(Mutex<Vec<IngestRecord>>);

    impl EventLog for VecLog {
        fn append(&self, records: Vec<IngestRecord>) -> Result<(), LogError> {
            self.0.lock().unwrap().extend(records);
            Ok(())
        }
    }

    fn ingestor(
        dir: &std::path::Path,
        limits: Limits,
        max_quarantine: u64,
    ) -> (Ingestor, Arc<VecLog>) {
        let log = Arc::new(VecLog::default());
        let q = Quarantine::open(dir)
            .unwrap()
            .with_max_bytes(max_quarantine);
        let ing = Ingestor::new(
            log.clone(),
            Arc::new(q),
            DedupeWindow::new(Duration::from_secs(60), 10_000),
            Arc::new(Metrics::default()),
            limits,
            None,
        );
        (ing, log)
    }

    fn good(id: &str) -> String {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{{"username":"u"}},"requestReceivedTimestamp":"2026-01-01T00:00:00.000000Z","stageTimestamp":"2026-01-01T00:00:00.000001Z"}}"#
        )
    }

    fn list(items: &[String]) -> Vec<u8> {
        format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
            items.join(",")
        )
        .into_bytes()
    }

    #[test]
    fn answers_list_the_first_reasons_and_count_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let (ing, log) = ingestor(dir.path(), Limits::default(), 1 << 30);
        let mut items: Vec<String> = (0..250).map(|_| "{}".to_string()).collect();
        items.push(good("g1"));
        let out = ing
            .ingest_batch(&list(&items), "prod", false, "webhook")
            .unwrap();
        assert_eq!(out.accepted, 1);
        assert_eq!(out.quarantined_count, 250);
        assert_eq!(out.quarantined.len(), MAX_REPORTED_ITEMS);
        assert_eq!(out.quarantined[99].index, 99);
        assert_eq!(ing.quarantine().count(), 250, "every item is kept");
        assert_eq!(log.0.lock().unwrap().len(), 1);
        match ing.ingest_batch(&list(&items), "prod", true, "webhook") {
            Err(IngestError::Strict { items, count }) => {
                assert_eq!((items.len(), count), (MAX_REPORTED_ITEMS, 250))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn item_and_quarantine_limits_refuse_the_batch_and_store_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_batch_items: 10,
            max_quarantine_per_batch: 1000,
            ..Limits::default()
        };
        let (ing, log) = ingestor(dir.path(), limits, 2000);
        let items: Vec<String> = (0..11).map(|i| good(&format!("a{i}"))).collect();
        assert!(matches!(
            ing.ingest_batch(&list(&items), "prod", false, "webhook"),
            Err(IngestError::TooManyItems { limit: 10 })
        ));
        // Invalid items larger than the per-batch quarantine allowance.
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(600));
        let items = vec![good("b1"), big.clone(), big.clone()];
        let e = ing
            .ingest_batch(&list(&items), "prod", false, "webhook")
            .unwrap_err();
        assert!(
            matches!(e, IngestError::QuarantineTooLarge { count: 2, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("max_quarantine_per_batch"), "{e}");
        assert_eq!(log.0.lock().unwrap().len(), 0);
        // Fill the quarantine up to its total limit: then a batch with an
        // invalid item is refused whole, with the reason, not dropped.
        let items = vec![good("c1"), big.clone()];
        ing.ingest_batch(&list(&items), "prod", false, "webhook")
            .unwrap();
        let items = vec![good("d1"), big.clone()];
        ing.ingest_batch(&list(&items), "prod", false, "webhook")
            .unwrap();
        let items = vec![good("e1"), big];
        let e = ing
            .ingest_batch(&list(&items), "prod", false, "webhook")
            .unwrap_err();
        assert!(matches!(e, IngestError::QuarantineFull(_)), "{e}");
        assert!(e.to_string().contains("is full"), "{e}");
        let stored: Vec<String> = log
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.event.audit_id().to_string())
            .collect();
        assert_eq!(stored, ["c1", "d1"]);
        // Valid batches still go through.
        ing.ingest_batch(&list(&[good("f1")]), "prod", false, "webhook")
            .unwrap();
    }

    #[test]
    fn distinct_events_sharing_an_audit_id_are_kept_and_resends_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (ing, log) = ingestor(dir.path(), Limits::default(), 1 << 30);
        // Three different events, one auditID and stage (an aggregated API
        // server's event, a client-set Audit-ID, Elastic's test events).
        let items: Vec<String> = ["get", "list", "watch"]
            .iter()
            .map(|verb| good("shared").replace("\"verb\":\"get\"", &format!("\"verb\":\"{verb}\"")))
            .collect();
        let out = ing
            .ingest_batch(&list(&items), "prod", false, "webhook")
            .unwrap();
        assert_eq!((out.accepted, out.duplicates), (3, 0));
        // The apiserver resends the batch: every event is recognised.
        let out = ing
            .ingest_batch(&list(&items), "prod", false, "webhook")
            .unwrap();
        assert_eq!((out.accepted, out.duplicates), (3, 3));
        // The same bytes from another cluster are another event.
        let out = ing
            .ingest_batch(&list(&items[..1]), "staging", false, "webhook")
            .unwrap();
        assert_eq!(out.duplicates, 0);
        let verbs: Vec<String> = log
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.event.verb().to_string())
            .collect();
        assert_eq!(verbs, ["get", "list", "watch", "get"]);
    }

    #[test]
    fn cluster_labels_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (ing, _) = ingestor(dir.path(), Limits::default(), 1 << 30);
        for i in 0..MAX_CLUSTER_LABELS + 50 {
            let body = list(&[good(&format!("x{i}"))]);
            ing.ingest_batch(&body, &format!("c{i}"), false, "webhook")
                .unwrap();
        }
        let text = ing.metrics().render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("kaudit_events_stored_total{"))
            .count();
        assert_eq!(series, MAX_CLUSTER_LABELS + 1, "{text}");
        assert!(text.contains(&format!(
            "kaudit_events_stored_total{{cluster=\"{}\"}} 50",
            kaudit_metrics::OVERFLOW_LABEL
        )));
    }
}
