//! Many kaudit nodes on one ClickHouse cluster, same queries, same proofs.
//!
//! Each node keeps its own store (the local log is still appended and
//! fsynced before ingest acknowledges, and stays the source of proofs);
//! [`Shipper`] is a follower of that store that copies every record, from a
//! durable cursor and in large batches, into one shared ClickHouse table
//! whose typed columns hold every indexed field plus the exact event bytes
//! ([`schema`]). [`ClickHouseBackend`] answers the same query language from
//! that table ([`sql`] compiles a query into a `WHERE` clause that is a
//! superset of the answer; kaudit's own matcher then confirms every row), so
//! any node answers for all nodes. [`verify`] recomputes each node's Merkle
//! tree from its rows and checks it against that node's signed checkpoints,
//! which are shipped too.
//!
//! Rows are keyed by `(node_id, seq)`; the table is a `ReplacingMergeTree`
//! on that key, so a batch sent again after a crash never counts twice:
//! row reads are `LIMIT 1 BY gseq` (no `FINAL`), where `gseq` is
//! `node_id << 48 | seq`, the row's number across all nodes, and
//! aggregates deduplicate only inside the ranges a shipper recorded before
//! it resent them ([`resent`]).

#![warn(missing_docs)]

pub mod backend;
pub mod client;
pub mod resent;
pub mod retention;
pub mod rowbin;
pub mod schema;
pub mod ship;
pub mod sql;
pub mod verify;

pub use backend::ClickHouseBackend;
pub use client::Client;
pub use ship::{ShipStats, Shipper};

use std::path::PathBuf;
use std::time::Duration;

/// Bits of `gseq` that hold the per-node sequence number; the node id sits
/// above them, so one node may hold up to 2^48 records.
pub const SEQ_BITS: u32 = 48;

/// The number of a row across all nodes: the node id above the node's own
/// sequence number. Orders rows by node, then by sequence number.
pub fn gseq(node_id: u16, seq: u64) -> u64 {
    (u64::from(node_id) << SEQ_BITS) | (seq & ((1u64 << SEQ_BITS) - 1))
}

/// The node id and the node's sequence number of a `gseq`.
pub fn split_gseq(g: u64) -> (u16, u64) {
    ((g >> SEQ_BITS) as u16, g & ((1u64 << SEQ_BITS) - 1))
}

/// `store.clickhouse` in the server config: where the shared table lives and
/// who this node is among the nodes shipping into it.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// The HTTP interface, e.g. `http://clickhouse:8123` (https for TLS).
    pub url: String,
    /// More HTTP endpoints serving the same tables (the other replicas of a
    /// cluster), tried in order when the one in use does not answer: with
    /// them, shipping and queries carry on while a replica is down.
    #[serde(default)]
    pub fallback_urls: Vec<String>,
    /// Database holding kaudit's tables (created when missing).
    #[serde(default = "default_database")]
    pub database: String,
    /// Prefix of every table name, so several deployments share a database.
    #[serde(default = "default_prefix")]
    pub table_prefix: String,
    /// A cluster from the server's `remote_servers`: tables are created `ON
    /// CLUSTER` as `ReplicatedMergeTree` with a `Distributed` table in front.
    #[serde(default)]
    pub cluster: Option<String>,
    /// User name (HTTP basic authentication).
    #[serde(default)]
    pub user: Option<String>,
    /// File holding the password (first line), never the password itself.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM CA bundle trusted for an https url besides the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// This node's number among all nodes (distinct per node, 0..=65535):
    /// rows are keyed by it, so two nodes never collide.
    #[serde(default)]
    pub node_id: u16,
    /// This node's name in rows and in `verify` reports (defaults to
    /// `node-<node_id>`).
    #[serde(default)]
    pub node: Option<String>,
    /// Most records per INSERT.
    #[serde(default = "default_batch")]
    pub batch_events: usize,
    /// Timeout of one HTTP request, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Days of rows kept in ClickHouse (whole day partitions are dropped
    /// past it); none: kept forever.
    #[serde(default)]
    pub max_age_days: Option<u32>,
    /// Days (`YYYY-MM-DD`) never dropped by retention (legal holds).
    #[serde(default)]
    pub holds: Vec<String>,
    /// Local pruning of shipped records (`7d`; off when absent): the local
    /// store then drops whole sealed segments whose records are all both
    /// shipped and older than this, through the store's signed prune path
    /// (legal holds respected), so a node's disk holds only its recent
    /// days while ClickHouse keeps the history.
    #[serde(default)]
    pub prune_local_after: Option<String>,
}

fn default_database() -> String {
    "kaudit".into()
}
fn default_prefix() -> String {
    "kaudit_".into()
}
fn default_batch() -> usize {
    50_000
}
fn default_timeout() -> u64 {
    30
}

/// Most `fallback_urls` (every one may be tried by one statement).
const MAX_FALLBACK_URLS: usize = 16;

/// Longest accepted identifier (database, prefix, cluster).
const MAX_IDENT: usize = 64;

impl ClickHouseConfig {
    /// A config for `url` with every other key at its default.
    pub fn new(url: &str) -> ClickHouseConfig {
        ClickHouseConfig {
            url: url.to_string(),
            fallback_urls: Vec::new(),
            database: default_database(),
            table_prefix: default_prefix(),
            cluster: None,
            user: None,
            password_file: None,
            ca_file: None,
            node_id: 0,
            node: None,
            batch_events: default_batch(),
            timeout_secs: default_timeout(),
            max_age_days: None,
            holds: Vec::new(),
            prune_local_after: None,
        }
    }

    /// The node's name.
    pub fn node_name(&self) -> String {
        self.node
            .clone()
            .unwrap_or_else(|| format!("node-{}", self.node_id))
    }

    /// Checks what SQL will be built from: identifiers are spliced into
    /// DDL, so only `[A-Za-z0-9_]` is accepted.
    pub fn validate(&self) -> Result<(), ClickHouseError> {
        let ident = |what: &str, v: &str, empty_ok: bool| {
            let ok = (empty_ok || !v.is_empty())
                && v.len() <= MAX_IDENT
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if ok {
                Ok(())
            } else {
                Err(ClickHouseError::Config(format!(
                    "store.clickhouse.{what} {v:?}: use 1 to {MAX_IDENT} letters, digits or underscores"
                )))
            }
        };
        ident("database", &self.database, false)?;
        ident("table_prefix", &self.table_prefix, true)?;
        if let Some(c) = &self.cluster {
            ident("cluster", c, false)?;
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(ClickHouseError::Config(format!(
                "store.clickhouse.url {:?}: must start with http:// or https://",
                self.url
            )));
        }
        if self.fallback_urls.len() > MAX_FALLBACK_URLS {
            return Err(ClickHouseError::Config(format!(
                "store.clickhouse.fallback_urls: {} urls, at most {MAX_FALLBACK_URLS}",
                self.fallback_urls.len()
            )));
        }
        for (i, u) in self.fallback_urls.iter().enumerate() {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(ClickHouseError::Config(format!(
                    "store.clickhouse.fallback_urls[{i}] {u:?}: must start with http:// or https://"
                )));
            }
        }
        if self.batch_events == 0 || self.batch_events > 1_000_000 {
            return Err(ClickHouseError::Config(format!(
                "store.clickhouse.batch_events {}: must be within 1..=1000000",
                self.batch_events
            )));
        }
        self.prune_local_after_secs()?;
        for h in &self.holds {
            if schema::parse_day(h).is_none() {
                return Err(ClickHouseError::Config(format!(
                    "store.clickhouse.holds: {h:?} is not a YYYY-MM-DD day"
                )));
            }
        }
        Ok(())
    }

    /// `prune_local_after` in seconds (none: local pruning is off).
    pub fn prune_local_after_secs(&self) -> Result<Option<u64>, ClickHouseError> {
        let Some(s) = &self.prune_local_after else {
            return Ok(None);
        };
        match kaudit_store::retention::parse_duration(s) {
            Ok(0) => Err(ClickHouseError::Config(format!(
                "store.clickhouse.prune_local_after {s:?}: must be longer than zero"
            ))),
            Ok(secs) => Ok(Some(secs)),
            Err(e) => Err(ClickHouseError::Config(format!(
                "store.clickhouse.prune_local_after {s:?}: {e} (e.g. 7d, 12h)"
            ))),
        }
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }
}

/// Everything talking to ClickHouse can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    /// The configuration cannot be used.
    #[error("clickhouse config: {0}")]
    Config(String),
    /// The server could not be reached or the connection broke.
    #[error("clickhouse at {url}: {source}")]
    Http {
        /// The server's url.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error (its message, shortened).
    #[error("clickhouse refused {what}: HTTP {status}: {message}")]
    Server {
        /// The statement's first words.
        what: String,
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// An answer did not have the expected shape.
    #[error("clickhouse answer to {what}: {message}")]
    Answer {
        /// The statement's first words.
        what: String,
        /// What was wrong.
        message: String,
    },
    /// Reading a local file (password, CA, store) failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The local store failed.
    #[error("store: {0}")]
    Store(#[from] kaudit_store::StoreError),
}

/// Results of this crate.
pub type ChResult<T> = Result<T, ClickHouseError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_urls_are_checked_like_url() {
        let mut c = ClickHouseConfig::new("http://a:8123");
        c.fallback_urls = vec!["http://b:8123".into(), "https://c:8443".into()];
        assert!(c.validate().is_ok());
        c.fallback_urls.push("c:8123".into());
        let e = c.validate().expect_err("no scheme").to_string();
        assert!(e.contains("fallback_urls[2] \"c:8123\""), "{e}");
        c.fallback_urls = vec!["http://x".into(); MAX_FALLBACK_URLS + 1];
        let e = c.validate().expect_err("too many").to_string();
        assert!(e.contains("at most 16"), "{e}");
        let parsed: ClickHouseConfig =
            serde_json::from_str(r#"{"url":"http://a","fallback_urls":["http://b"]}"#)
                .expect("config");
        assert_eq!(parsed.fallback_urls, vec!["http://b".to_string()]);
    }
}
