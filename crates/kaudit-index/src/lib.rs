//! Search over the kaudit store: an index derived from the log, never its
//! source of truth.
//!
//! The index ([`Index`]) keeps one dictionary-encoded column per key field
//! (each row holds the id of the field's value list, so multi-valued fields
//! like groups and source IPs stay exact), the event time and the request
//! latency. A query ([`kaudit_query::Expr`]) is translated once ([`plan`])
//! into lower and upper bounds over the rows; every hit is then confirmed
//! with [`kaudit_query::Query::matches`] against the stored event before it
//! is returned, and records the index has not reached yet (the tail) are
//! scanned directly, so answers are always complete. Because the index is
//! derived, a damaged one is dropped and rebuilt from the store
//! ([`backend::open_writable`]).
//!
//! There is one backend today, the embedded index ([`EmbeddedBackend`]);
//! [`Indexer`] is the follower of the store that keeps it caught up.
//! [`SearchBackend`] is the trait it implements: the seam where a second
//! backend (a planned ClickHouse one) plugs in. The HTTP API, the console,
//! the timelines and RBAC reports ([`history`], [`rbac`]) and the CLI's
//! `query` (including `--follow`, through [`SearchBackend::follow`]) and
//! `stats` ask only the trait; `kaudit reindex` calls [`backend::rebuild`],
//! which belongs to the embedded index alone.

#![warn(missing_docs)]

pub mod backend;
pub mod diff;
pub mod facets;
pub mod history;
pub mod import;
pub mod index;
pub mod latency;
pub mod lookup;
pub mod mapped;
pub mod plan;
pub mod rbac;
pub mod scan;
pub mod search;
pub mod stats;

use std::path::{Path, PathBuf};

pub use backend::{search_pages, EmbeddedBackend, FollowPosition, Indexer, SearchBackend, Walked};
pub use import::ImportIndexer;
pub use index::{event_time, Index, IndexMemory, IndexMode, INDEX_DIR};
pub use scan::{ScanField, ScanRow};
pub use search::{Cursor, Hit, Page, SearchRequest};
pub use stats::{StatsReport, StatsRequest};

/// Everything searching can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A file operation on the index failed; the path says which file, so
    /// the message is actionable without a debugger.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// `meta.json` could not be encoded (never expected: it is plain data).
    #[error("encoding index meta: {0}")]
    EncodeMeta(#[source] serde_json::Error),
    /// The index files are inconsistent; `kaudit reindex` rebuilds them.
    /// The first field names the damaged file or directory.
    #[error("search index {0} is damaged: {1}; run `kaudit reindex` to rebuild it")]
    Corrupt(String, #[source] Damage),
    /// The store failed while the index read from it.
    #[error("store: {0}")]
    Store(#[from] kaudit_store::StoreError),
    /// A stored record could not be parsed as an audit event.
    #[error("record {seq}: {source}")]
    Record {
        /// Sequence number of the record.
        seq: u64,
        /// Why the record is not a valid event.
        #[source]
        source: kaudit_event::EventError,
    },
    /// Bad caller input (cursor, field, limits, options).
    #[error("{0}")]
    Input(String),
    /// A query that does not parse or compile: bad caller input too, kept
    /// whole so callers can point at its column.
    #[error(transparent)]
    Query(#[from] kaudit_query::QueryError),
    /// The index is sealed with the store's data key and was opened
    /// without it.
    #[error("search index {0} is encrypted: open the store with its encryption key")]
    KeyNeeded(String),
    /// Another process is writing the index.
    #[error("search index {0} is being updated by another kaudit process")]
    Locked(String),
    /// The query spent its time budget ([`kaudit_query::Budget`]) before
    /// its answer was complete: servers answer 503 with this message.
    #[error(
        "the query took longer than its time budget of {0:?}: narrow the time range or the query"
    )]
    TimedOut(std::time::Duration),
    /// A worker thread panicked or poisoned a lock it held, so its partial
    /// work cannot be trusted; the message says which.
    #[error("{0}")]
    Internal(&'static str),
}

impl IndexError {
    /// Whether the caller's request is at fault (a bad query, cursor or
    /// option), as opposed to the index or the store: servers answer these
    /// with 400 instead of 500.
    pub fn is_input(&self) -> bool {
        matches!(self, IndexError::Input(_) | IndexError::Query(_))
    }
}

/// What is wrong with a damaged index file.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    /// `meta.json` is not the JSON this version of the index writes.
    #[error("{0}")]
    Meta(#[source] serde_json::Error),
    /// The files disagree with each other or with `meta.json` (sizes,
    /// counts, widths, version).
    #[error("{0}")]
    Inconsistent(String),
}

impl From<&str> for Damage {
    fn from(m: &str) -> Damage {
        Damage::Inconsistent(m.to_string())
    }
}

impl From<String> for Damage {
    fn from(m: String) -> Damage {
        Damage::Inconsistent(m)
    }
}

/// Result alias.
pub type IndexResult<T> = Result<T, IndexError>;

/// Fails with [`IndexError::TimedOut`] once `budget` is spent; loops over
/// rows, blocks and records call it every so often.
pub(crate) fn check_budget(budget: Option<kaudit_query::Budget>) -> IndexResult<()> {
    match budget {
        Some(b) if b.expired() => Err(IndexError::TimedOut(b.allowed)),
        _ => Ok(()),
    }
}

pub(crate) fn io_err(what: &Path) -> impl Fn(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: what.to_path_buf(),
        source,
    }
}
