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
//! scanned directly, so answers are always complete.
//!
//! [`SearchBackend`] is the backend-neutral surface: a ClickHouse backend
//! answers the same requests.

pub mod backend;
pub mod diff;
pub mod facets;
pub mod history;
pub mod index;
pub mod latency;
pub mod plan;
pub mod rbac;
pub mod scan;
pub mod search;
pub mod stats;

pub use backend::{EmbeddedBackend, Indexer, SearchBackend};
pub use index::{event_time, Index, IndexMode, INDEX_DIR};
pub use scan::{ScanField, ScanRow};
pub use search::{Cursor, Hit, Page, SearchRequest};
pub use stats::{StatsReport, StatsRequest};

/// Everything searching can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A file operation failed (the message names the file).
    #[error("{0}")]
    Io(String),
    /// The index files are inconsistent; `kaudit reindex` rebuilds them.
    #[error("search index {0} is damaged: {1}; run `kaudit reindex` to rebuild it")]
    Corrupt(String, String),
    /// The store failed while the index read from it.
    #[error("store: {0}")]
    Store(#[from] kaudit_store::StoreError),
    /// A stored record could not be parsed as an audit event.
    #[error("record {seq}: {message}")]
    Record {
        /// Sequence number of the record.
        seq: u64,
        /// What is wrong with it.
        message: String,
    },
    /// Bad caller input (query, cursor, field, limits).
    #[error("{0}")]
    Input(String),
    /// Another process is writing the index.
    #[error("search index {0} is being updated by another kaudit process")]
    Locked(String),
}

/// Result alias.
pub type IndexResult<T> = Result<T, IndexError>;

pub(crate) fn io_err(what: &std::path::Path) -> impl Fn(std::io::Error) -> IndexError + '_ {
    move |e| IndexError::Io(format!("{}: {e}", what.display()))
}
