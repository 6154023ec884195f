//! Forwarding: every stored event, filtered and reduced per sink, to SIEMs and
//! other consumers, at least once.
//!
//! A sink follows the store by sequence number from its own persisted cursor
//! (`<data>/sinks/<name>.cursor`), like every follower: it reads a
//! batch, drops what its filter or policy does not want, hands the rest to a
//! [`Destination`], and only moves the cursor once the destination has
//! acknowledged the batch. A failing destination is retried forever with
//! exponential backoff and jitter; nothing is ever skipped, and a slow or dead
//! destination only holds back its own sink, never ingest or other sinks.
//! Items a destination rejects for good (an Elasticsearch mapping error) are
//! written to `<data>/sinks/<name>.dead` with the reason before the cursor
//! moves, so they are counted and kept, not lost.
//!
//! Every sink is a [`kaudit_store::Follower`] driven by the store's shared
//! follower loop ([`Sink`] implements it; [`runner`] holds the batching,
//! retry and dead-letter logic). Destinations (one module each, with its
//! config struct): [`webhook`] (kube-apiserver's webhook EventList),
//! [`elasticsearch`] (`_bulk` with an ECS document), [`splunk`] (HEC with
//! indexer acknowledgement), [`syslog`] (RFC 5424 over TCP, TLS or UDP),
//! [`ocsf`] (API Activity records to files or HTTP) and [`nats`] (JetStream
//! with de-duplication by message ID). [`alerts`] makes each of live
//! detection's notification outputs a sink of the alert log, with the same
//! retries, TLS and dead letters.

#![warn(missing_docs)]

pub mod alerts;
pub mod config;
pub mod elasticsearch;
mod http;
pub mod nats;
pub mod ocsf;
pub mod runner;
pub mod splunk;
pub mod state;
pub mod syslog;
pub mod webhook;

pub use alerts::AlertNotifier;
pub use config::{SinkConfig, SinkKind};
pub use runner::{open_destination, Sink, SinkStats, SinkStatus};
pub use state::{CursorState, SinkDir};

use kaudit_event::{Event, MicroTime};

/// One event on its way to a destination, after the sink's filter and policy.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// Sequence number in the store (what the cursor counts).
    pub seq: u64,
    /// Cluster the event was received from.
    pub cluster: String,
    /// When kaudit received it.
    pub received: MicroTime,
    /// The event as this sink sends it (policy and redaction applied).
    pub event: Event,
}

impl Outgoing {
    /// `auditID-Stage-<hash>`: the document or message ID where a
    /// destination de-duplicates retries (Elasticsearch's `_id`, NATS'
    /// `Nats-Msg-Id`). See [`dedupe_id`].
    pub fn dedupe_id(&self) -> String {
        dedupe_id(&self.event)
    }

    /// The event time a destination files it under: the stage timestamp, else
    /// the receive timestamp, else when kaudit received it.
    pub fn time(&self) -> MicroTime {
        self.event
            .stage_timestamp()
            .or_else(|| self.event.request_received_timestamp())
            .unwrap_or(self.received)
    }
}

/// Hex digits of the event's SHA-256 in [`dedupe_id`]: 64 bits, so two
/// distinct events under one `auditID-Stage` collide with odds of 2^-64.
pub const DEDUPE_HASH_HEX: usize = 16;

/// The ID a destination de-duplicates an event by:
/// `auditID-Stage-<first 16 hex digits of the SHA-256 of the event's bytes>`.
///
/// `auditID-Stage` alone is not unique: an aggregated API server logs the
/// same Audit-ID as kube-apiserver, clients may set the header, and
/// converted GKE entries can share an operation id. Two distinct events
/// under one ID meant the second one's `create` got a 409 ("already
/// there") and was silently dropped. The hash of the exact bytes (as this
/// sink sends them, after its policy) keeps a resend of the same event
/// idempotent (same bytes, same ID) while distinct events differ; the
/// readable prefix keeps the ID searchable by auditID.
pub fn dedupe_id(event: &Event) -> String {
    use sha2::Digest;
    let stage = event.doc().stage.map_or("Unknown", |s| s.as_str());
    let hash = sha2::Sha256::digest(event.bytes());
    format!(
        "{}-{stage}-{}",
        event.audit_id(),
        &hex::encode(hash)[..DEDUPE_HASH_HEX]
    )
}

/// What a destination did with a batch it answered for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Items (indexes into the batch) refused for good, with the reason; they
    /// are dead-lettered, never retried.
    pub rejected: Vec<(usize, String)>,
    /// Items (indexes into the batch) to send again (throttled or failed on
    /// the destination's side while the others were taken).
    pub retry: Vec<usize>,
}

impl Delivery {
    /// Every item was taken.
    pub fn all() -> Delivery {
        Delivery::default()
    }
}

/// Why a destination could not take a batch. Every error is retried (with
/// backoff); the message ends up in logs, metrics and `sinks status`.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Connecting, writing or reading failed (unreachable, reset, TLS).
    #[error("{0}")]
    Transport(String),
    /// The destination answered with an error for the whole batch.
    #[error("{0}")]
    Rejected(String),
    /// The sink is misconfigured (bad file, bad URL).
    #[error("{0}")]
    Config(String),
    /// Local files of the sink (cursor, dead letters) could not be written.
    #[error("{0}")]
    Io(String),
}

/// A place batches go to. Implementations are synchronous: each sink runs on
/// its own thread, so a blocking destination only blocks its own sink.
pub trait Destination: Send {
    /// The type name (`webhook`, `elasticsearch`, ...).
    fn kind(&self) -> &'static str;
    /// Delivers a batch; `Ok` means the destination acknowledged it (durably,
    /// as far as its protocol can say) except for the items listed.
    fn send(&mut self, batch: &[Outgoing]) -> Result<Delivery, SinkError>;
    /// Delivers a signed checkpoint (the C2SP note text) in the type's
    /// natural form, so proof of the log's state lives off the machine.
    fn send_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), SinkError>;
}

/// A signed checkpoint as forwarded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Checkpoint {
    /// Tree size it signs.
    pub size: u64,
    /// When it was made (RFC 3339).
    pub time: String,
    /// The signed note (C2SP tlog-checkpoint text).
    pub note: String,
}

/// Parses `200ms`, `30s`, `5m`, `1h` or a bare number of seconds (the one
/// parser every kaudit setting uses).
pub use kaudit_units::parse_duration;
