//! The ingest pipeline every source shares: parse a batch item by item,
//! quarantine what is not an audit event, truncate what is too large the way
//! kube-apiserver's truncate backend does, apply the ingest-time transform
//! (policy, redaction), drop resends, append durably, then acknowledge.
//!
//! Transport-neutral: the HTTP handler, every [`crate::Source`] and tests call
//! [`Ingestor::ingest_batch`] / [`Ingestor::ingest_events`] and map the
//! outcome to their own protocol. The store and the policy are not named
//! here: the server hands in an [`EventLog`] and a [`Transform`], so sources
//! stand before both on the data's way.

use crate::dedupe::{self, DedupeWindow};
use crate::quarantine::{NewEntry, Quarantine};
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_event: 4 << 20 }
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
    /// Items kept in quarantine instead.
    pub quarantined: Vec<QuarantinedItem>,
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
    #[error("{} invalid item(s) in strict mode; nothing stored", .0.len())]
    Strict(Vec<QuarantinedItem>),
    /// The store or the quarantine could not take it now (503; retry).
    #[error("{0}")]
    Unavailable(String),
}

/// The shared ingest pipeline.
pub struct Ingestor {
    log: Arc<dyn EventLog>,
    quarantine: Arc<Quarantine>,
    dedupe: DedupeWindow,
    metrics: Arc<Metrics>,
    limits: Limits,
    transform: Option<Transform>,
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
        }
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
        let decoded = crate::webhook::decode(body)?;
        let (events, bad) = (decoded.events, decoded.bad);
        self.metrics.inc(
            &EVENTS_RECEIVED,
            [cluster, source],
            (events.len() + bad.len()) as u64,
        );
        if strict && !bad.is_empty() {
            let items: Vec<_> = bad.iter().map(BadItem::reported).collect();
            self.metrics
                .inc(&EVENTS_REJECTED, [cluster, "strict"], items.len() as u64);
            return Err(IngestError::Strict(items));
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
            [cluster, source],
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
            });
        }
        // Quarantine first: once the batch is acknowledged, every item of it
        // must be somewhere durable.
        if !bad.is_empty() {
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
            self.quarantine
                .append(&entries, &now)
                .map_err(|e| IngestError::Unavailable(e.to_string()))?;
            self.metrics
                .inc(&EVENTS_REJECTED, [cluster, "quarantined"], bad.len() as u64);
            out.quarantined = bad.iter().map(BadItem::reported).collect();
        }
        if out.dropped_by_policy > 0 {
            self.metrics.inc(
                &EVENTS_REJECTED,
                [cluster, "policy"],
                out.dropped_by_policy as u64,
            );
        }
        let keys: Vec<_> = records
            .iter()
            .map(|r| dedupe::key(&r.cluster, r.event.audit_id(), r.event.stage().as_str()))
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
        self.metrics.inc(&EVENTS_STORED, [cluster], stored as u64);
        if out.duplicates > 0 {
            self.metrics
                .inc(&DEDUPE_HITS, [cluster], out.duplicates as u64);
        }
        if out.truncated > 0 {
            self.metrics
                .inc(&EVENTS_TRUNCATED, [cluster], out.truncated as u64);
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
