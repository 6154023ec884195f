//! `kaudit serve`'s transport and wiring: the one process a cluster operator
//! points kube-apiserver at.
//!
//! * [`serve`]: opens the store, builds the router, starts the followers
//!   and sources, listens, and stops gracefully;
//! * [`http`] and [`tls`]: the webhook endpoints (`POST /api/v1/ingest/k8s`,
//!   Falco's `POST /k8s-audit`), health, readiness and metrics, over HTTP
//!   and HTTPS; bodies are bounded and handed to `kaudit-sources`' ingest
//!   pipeline on blocking threads;
//! * [`listener`] and [`guard`]: connection caps and timeouts per listener
//!   and peer; the browser guard (foreign `Origin`, rebound `Host`);
//! * [`auth`] and [`authz`]: bearer tokens and client certificates mapped to
//!   clusters and roles, and the extractor every handler states its role
//!   with;
//! * [`api`], [`console`], [`alerts`], [`sinks`] and [`ui`]: the query API,
//!   the web console and the API routes it adds, alerts, sink status;
//! * [`config`]: `kaudit.yaml` with `KAUDIT_*` overrides; [`metrics`]: the
//!   server's own gauges.
//!
//! Nothing is acknowledged before it is durable: a 200 is sent only after the
//! store's append (fsync) and the quarantine's fsync have both returned.

pub mod alerts;
pub mod api;
pub mod auth;
pub mod authz;
pub mod config;
pub mod console;
pub mod guard;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod push;
pub mod reports;
pub mod retention;
pub mod serve;
pub mod sinks;
pub mod tls;
pub mod ui;
