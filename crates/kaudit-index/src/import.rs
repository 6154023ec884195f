//! Indexing while importing: `kaudit import`'s parsing threads encode each
//! event's index row ([`Index::encode_row`]) right after parsing it, and an
//! [`ImportIndexer`] interns the rows of the records stored, so the store is
//! searchable when the import returns without a second pass that reads,
//! decompresses and parses the log again.
//!
//! The index is committed only at the log's durability points (after the
//! transaction's fdatasync), so it is never ahead of the log; if the import
//! dies before that, the committed index is what it was and the records it
//! has not reached are scanned (and indexed by the next catch-up), never
//! answered wrongly. Rows are those [`crate::Index::catch_up`] builds from
//! the stored records, byte for byte (the tests compare with `reindex`).

use crate::backend::open_writable;
use crate::{Index, IndexError, IndexResult};
use kaudit_store::crypt::Cipher;
use kaudit_store::import::{ImportObserver, RowEncoder};
use kaudit_store::LogReader;
use std::path::{Path, PathBuf};

/// The search index written by an import as it stores records (an
/// [`ImportObserver`]). Once something goes wrong (a gap, a failed commit)
/// it stops indexing and keeps the last committed state, which a later
/// catch-up extends: indexing never fails the import itself.
pub struct ImportIndexer {
    data_dir: PathBuf,
    cipher: Option<Cipher>,
    index: Option<Index>,
    failure: Option<IndexError>,
    committed: u64,
}

impl ImportIndexer {
    /// Opens the index of the store in `data_dir` for writing (rebuilding a
    /// damaged or outdated one) and catches it up with what the store holds
    /// already, so the import's first record is its next row. Fails with
    /// [`IndexError::Locked`] while another process maintains the index.
    pub fn open(data_dir: &Path, store: &dyn LogReader) -> IndexResult<ImportIndexer> {
        let mut index = open_writable(data_dir, store.cipher())?;
        let before = index.next_seq();
        let added = index.catch_up(store, None, u64::MAX)?;
        if added > 0 || index.next_seq() != before {
            index.commit()?;
        }
        Ok(ImportIndexer {
            data_dir: data_dir.to_path_buf(),
            cipher: store.cipher().cloned(),
            committed: index.next_seq(),
            index: Some(index),
            failure: None,
        })
    }

    /// Why indexing stopped, if it did (the store is then indexed up to
    /// [`ImportIndexer::committed`] and the rest by the next catch-up).
    pub fn failure(&self) -> Option<&IndexError> {
        self.failure.as_ref()
    }

    /// First sequence number the committed index does not cover.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Bytes the committed index takes on disk.
    pub fn disk_bytes(&self) -> IndexResult<u64> {
        match &self.index {
            Some(ix) => ix.disk_bytes(),
            None => Ok(0),
        }
    }

    fn fail(&mut self, e: IndexError) {
        // Dropping the in-memory rows (and the lock) keeps only what was
        // committed, which the log covers.
        self.index = None;
        if self.failure.is_none() {
            self.failure = Some(e);
        }
    }
}

impl ImportObserver for ImportIndexer {
    fn encoder(&self) -> RowEncoder {
        Index::encode_row
    }

    fn staged(&mut self, seq: u64, row: &[u8]) {
        let Some(ix) = self.index.as_mut() else {
            return;
        };
        if !ix.push_row(seq, row) {
            let want = ix.next_seq();
            self.fail(IndexError::Input(format!(
                "import staged record {seq} ({} bytes of row) where the index expected {want}; the rest is indexed by the next catch-up",
                row.len()
            )));
        }
    }

    fn durable(&mut self, end: u64) {
        let Some(ix) = self.index.as_mut() else {
            return;
        };
        if ix.next_seq() != end {
            let have = ix.next_seq();
            self.fail(IndexError::Input(format!(
                "the log is durable up to {end} but the index holds rows up to {have}"
            )));
            return;
        }
        match ix.commit() {
            Ok(()) => self.committed = end,
            Err(e) => self.fail(e),
        }
    }

    fn rolled_back(&mut self) {
        // Release the lock first: the index is reopened by this process.
        if self.index.take().is_none() {
            return;
        }
        match open_writable(&self.data_dir, self.cipher.as_ref()) {
            Ok(ix) if ix.next_seq() == self.committed => self.index = Some(ix),
            Ok(ix) => {
                let have = ix.next_seq();
                self.fail(IndexError::Input(format!(
                    "after a rolled-back input the index reopened at {have}, not {}",
                    self.committed
                )))
            }
            Err(e) => self.fail(e),
        }
    }
}
