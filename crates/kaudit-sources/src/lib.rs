//! Every way audit events come into kaudit, as uniform components.
//!
//! * [`webhook`]: kube-apiserver's webhook backend (and Falco's `k8s_audit`
//!   endpoint): one request body decoded item by item. Its HTTP transport,
//!   limits and authentication are `kaudit-server`'s.
//! * [`file`]: the log backend's file (`--audit-log-path`), followed through
//!   rotation, truncation and restarts from a durable position.
//! * [`generated`]: `kaudit-gen`'s realistic traffic, live, for demos and soak
//!   tests.
//! * [`docker`]: Docker hosts: the daemon's `/events`, an auditing socket
//!   proxy, an authorization plugin, all mapped onto v1 Events.
//! * [`pipeline`]: what every source feeds: the [`Ingestor`] quarantines
//!   what is not an event ([`quarantine`]), truncates what is too large,
//!   runs the ingest transform (policy and redaction, handed in), drops
//!   resends ([`dedupe`]) and appends durably through an [`EventLog`]
//!   before anything is acknowledged.
//!
//! A new source (Docker events, a cloud provider's log export, admission
//! capture) is a module here with a config struct, a variant of
//! [`SourceConfig`] and an implementation of [`Source`]; see
//! `CONTRIBUTING.md`. Sources stand before the policy and the store on the
//! data's way: they name neither, the server wires them.

pub mod dedupe;
pub mod docker;
pub mod file;
pub mod generated;
pub mod managed;
pub mod pipeline;
pub mod quarantine;
pub mod source;
pub mod webhook;

pub use pipeline::{
    BadItem, EventLog, IngestError, IngestOutcome, IngestRecord, Ingestor, Limits, LogError,
    QuarantinedItem, Transform,
};
pub use source::{Source, SourceConfig, SourceContext, SourceError};
