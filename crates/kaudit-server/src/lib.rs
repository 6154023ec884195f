//! `kaudit serve`: the receiver kube-apiserver deserves.
//!
//! * [`http`]: the webhook endpoints (`POST /api/v1/ingest/k8s`, Falco's
//!   `POST /k8s-audit`), health, readiness and metrics, over HTTP and HTTPS;
//! * [`ingest`]: the transport-neutral pipeline: per-item parsing,
//!   quarantine, truncation, ingest policy, retry dedupe, durable append;
//! * [`auth`] and [`tls`]: bearer tokens and client certificates mapped to
//!   clusters and roles;
//! * [`tail`]: rotation-safe following of the log backend's files;
//! * [`sinks`]: forwarding to SIEMs (`kaudit-sinks`), with metrics and status;
//! * [`quarantine`], [`dedupe`], [`metrics`]: the parts they share;
//! * [`ui`] and [`console`]: the embedded web console and the API routes it adds.
//!
//! Nothing is acknowledged before it is durable: a 200 is sent only after the
//! store's append (fsync) and the quarantine's fsync have both returned.

pub mod api;
pub mod auth;
pub mod config;
pub mod console;
pub mod dedupe;
pub mod detect;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod quarantine;
pub mod serve;
pub mod sinks;
pub mod tail;
pub mod tls;
pub mod ui;
