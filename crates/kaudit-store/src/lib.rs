#![warn(missing_docs)]

//! Append-only, tamper-evident audit log store: segments, Merkle tree, signed checkpoints.
//!
//! # On disk (`--data DIR`)
//!
//! * `segments/<first seq, 20 digits>.kseg`: [`segment`] files of
//!   zstd-compressed bundles (up to 4096 records or 1 MiB raw each by
//!   default), crc32c per bundle, and commit markers. A bundle counts only
//!   once a commit marker follows it; a torn tail is cut back to the last
//!   marker on open (and reported in [`OpenReport`]). With an encryption key
//!   each bundle payload is sealed with ChaCha20-Poly1305 ([`crypt`]).
//! * `dict/<id>.kdict`: zstd dictionaries trained on the store's first
//!   records, content-addressed, sealed when encrypted ([`dict`]); bundles
//!   written after training name the one they need.
//! * `tree/level-NN.hash`: the RFC 6962 tree's complete subtree hashes from
//!   level 8 up ([`tree`]); hashes below level 8 are recomputed from the
//!   records when a proof needs them.
//! * `checkpoints.jsonl`: every signed checkpoint; `checkpoint.key` (0600) /
//!   `checkpoint.pub`: the Ed25519 signed-note keys ([`note`]).
//! * `index/dedupe-<first kept seq>.keys`: 16-byte duplicate-detection keys,
//!   one per stored record (by position; the part older records' runs hold
//!   is a hole); `index/keyseq-<first>-<end>.keys` / `.filter`: the keys of
//!   older records sorted into runs with their sequence offsets, with a
//!   Bloom filter and sparse index each, so the writer keeps only recent
//!   keys in RAM and the keys are on disk once (see `store/dedupe.rs`).
//! * `pruned.json` (the signed prune record), `tree/pruned-edge.hash`, and
//!   `holds.json`: retention state ([`retention`]).
//! * `LOCK`: held (`flock`) by the one writable opener.
//!
//! [`paths`] names each of these.
//!
//! # What the Merkle leaf covers
//!
//! Leaf `i` is `SHA-256(0x00 || leaf_data)` where `leaf_data` is a version
//! byte, the cluster name, the event's stored bytes byte for byte, then the
//! sequence number `i` and the receive time (see [`record`] for the exact
//! layout). Proofs carry
//! `leaf_data` so an outside verifier needs nothing but SHA-256.
//!
//! # Writing, reading, checking
//!
//! [`Store`] appends with group commit (concurrent appends share one
//! fdatasync) or all-or-nothing through a [`Transaction`] (bulk [`import`]),
//! signs checkpoints, and prunes by retention. [`LogReader`] is the narrow
//! read interface queries, proofs and followers take, so they accept the
//! store or a wrapper around it; [`feed`] hands just-appended records to
//! followers without reading them back, and [`follow`] is the contract
//! every follower (indexer, detection, sinks, alert notifiers) implements
//! and the one loop that drives them. [`verify`] recomputes everything from
//! the stored bytes without writing.

pub mod crypt;
pub mod dict;
pub mod feed;
pub mod follow;
pub mod import;
pub mod merkle;
pub mod note;
pub mod record;
pub mod retention;
pub mod segment;
mod store;
pub mod tree;
pub mod verify;

pub use feed::{FedRecord, FollowedRecord, LiveFeed};
pub use follow::{
    run_follower, FollowError, FollowOptions, Followed, Follower, FollowerState, FollowerStatus,
};
pub use record::{LeafRef, Record, RecordRef};
pub use store::{
    check_key_filter, list_segments, load_signer, load_verifier, paths, read_checkpoints,
    read_pruned, Appended, BundleMeta, DamageReport, DedupeStats, OpenReport, PruneRecord, Shared,
    Stat, Store, StoreOptions, StoredCheckpoint, Transaction,
};

use merkle::Hash;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything the store can fail with.
///
/// Variants that wrap a lower-level failure keep it as their
/// [`source`](std::error::Error::source) and also print it, so a message read
/// on its own still says what went wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// The file, or the part of the store (`tree`, `segment`, `dedupe
        /// index`), the operation was on.
        context: String,
        /// The failure.
        source: std::io::Error,
    },
    /// A read-only open was pointed at a directory that does not exist
    /// (read-only opens never create one).
    #[error("{}: no such store directory", .0.display())]
    NoStore(PathBuf),
    /// Stored data is damaged or inconsistent.
    #[error("store is damaged: {0}")]
    Corrupt(String),
    /// A writable open found damage it may not repair (it would cut
    /// committed or checkpointed records): the file was moved to
    /// `<data>/damaged/`, never deleted, and the store refuses writes until
    /// an operator has dealt with it.
    #[error("store is damaged: {0}")]
    Damaged(Box<store::DamageReport>),
    /// Stored data did not decode (JSON, record layout, bundle payload,
    /// segment header, signed note).
    #[error("store is damaged: {context}: {source}")]
    Undecodable {
        /// Where: the file, with line or offset and record when known.
        context: String,
        /// Why it did not decode.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A key is missing, or the store was opened without the key an
    /// operation needs.
    #[error("key: {0}")]
    Key(String),
    /// A key file does not hold a usable key.
    #[error("key: {}: {source}", path.display())]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with its text.
        source: note::NoteError,
    },
    /// Making a new signing key (or its random origin name) failed.
    #[error("key: {0}")]
    KeyGen(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Encryption problems (wrong key, missing key).
    #[error(transparent)]
    Crypt(#[from] crypt::CryptError),
    /// Bad caller input.
    #[error("{0}")]
    Input(String),
    /// A record handed to an append breaks the record limits.
    #[error(transparent)]
    Record(#[from] record::RecordError),
    /// A time given by the caller (e.g. a legal hold's range) is not RFC 3339.
    #[error(transparent)]
    Time(#[from] kaudit_event::time::TimeError),
    /// Tree or proof problems.
    #[error(transparent)]
    Tree(#[from] merkle::TreeError),
    /// Another process holds the store.
    #[error("store {0} is in use by another kaudit process (LOCK is held)")]
    Locked(String),
    /// A JSON record (checkpoint, prune record, holds) could not be encoded.
    #[error("{0}")]
    Encode(#[source] serde_json::Error),
    /// An earlier write failed part-way, so the on-disk tail no longer
    /// matches memory; the store refuses writes until it is reopened (which
    /// cuts the tail back). Holds that earlier error's message: the error
    /// itself went to the caller that hit it.
    #[error("store is unusable after an earlier write error: {0}")]
    Poisoned(String),
    /// The shared commit (commit marker and fdatasync) failed; every append
    /// waiting on it gets the same failure.
    #[error("group commit failed: {0}")]
    GroupCommit(#[source] Arc<StoreError>),
    /// A thread panicked while holding one of the store's internal locks.
    #[error("internal lock poisoned by an earlier panic")]
    LockPoisoned,
    /// A write found no segment open for appending (an internal invariant
    /// was broken).
    #[error("no active segment")]
    NoActiveSegment,
}

/// Result alias.
pub type StoreResult<T> = Result<T, StoreError>;

/// The read side of a log backend: records by sequence number, the tree's
/// roots and proofs, and the signed checkpoints.
pub trait LogReader {
    /// Records durable and visible (the tree size).
    fn size(&self) -> u64;
    /// First record still stored (earlier ones were pruned).
    fn first_seq(&self) -> u64;
    /// Calls `f(seq, record)` for each stored record in `range`, in order;
    /// `f` returns false to stop.
    fn read(
        &self,
        range: Range<u64>,
        f: &mut dyn FnMut(u64, LeafRef<'_>) -> bool,
    ) -> StoreResult<()>;
    /// Calls `f(seq, record)` for each of `seqs` (ascending) that is stored,
    /// in order; `f` returns false to stop. How search hits are fetched: a
    /// store reads only the parts of its bundles that hold them. The default
    /// reads runs of nearby sequence numbers (gaps under 2048) as one range
    /// each, so a reader with a cost per call (a remote query) makes few.
    fn read_seqs(
        &self,
        seqs: &[u64],
        f: &mut dyn FnMut(u64, LeafRef<'_>) -> bool,
    ) -> StoreResult<()> {
        const GAP: u64 = 2048;
        let mut i = 0;
        let mut go = true;
        while i < seqs.len() && go {
            let mut j = i;
            while j + 1 < seqs.len() && seqs[j + 1].saturating_sub(seqs[j]) < GAP {
                j += 1;
            }
            let run = &seqs[i..=j];
            self.read(seqs[i]..seqs[j].saturating_add(1), &mut |s, l| {
                if run.binary_search(&s).is_err() {
                    return true;
                }
                go = f(s, l);
                go
            })?;
            i = j + 1;
        }
        Ok(())
    }
    /// The tree root at `size`.
    fn root(&self, size: u64) -> StoreResult<Hash>;
    /// Audit path of `seq` in the tree of `size`.
    fn inclusion_proof(&self, seq: u64, size: u64) -> StoreResult<Vec<Hash>>;
    /// Consistency proof from `old` to `new`.
    fn consistency_proof(&self, old: u64, new: u64) -> StoreResult<Vec<Hash>>;
    /// Kept signed checkpoints, oldest first.
    fn checkpoints(&self) -> Vec<StoredCheckpoint>;
    /// Sequence number of the record with this auditID, if any.
    fn find_audit_id(&self, audit_id: &str) -> StoreResult<Option<u64>>;
    /// The data key the store is encrypted with, if any: whatever derives
    /// from its records (the search index's dictionaries) is sealed with the
    /// same key, so encryption at rest does not stop at the segments.
    fn cipher(&self) -> Option<&crypt::Cipher> {
        None
    }
}

impl LogReader for Store {
    fn size(&self) -> u64 {
        self.len()
    }
    fn first_seq(&self) -> u64 {
        self.shared().map_or(0, |s| s.first_seq)
    }
    fn read(
        &self,
        range: Range<u64>,
        f: &mut dyn FnMut(u64, LeafRef<'_>) -> bool,
    ) -> StoreResult<()> {
        Store::read(self, range, f)
    }
    fn read_seqs(
        &self,
        seqs: &[u64],
        f: &mut dyn FnMut(u64, LeafRef<'_>) -> bool,
    ) -> StoreResult<()> {
        Store::read_seqs(self, seqs, f)
    }
    fn root(&self, size: u64) -> StoreResult<Hash> {
        self.root_at(size)
    }
    fn inclusion_proof(&self, seq: u64, size: u64) -> StoreResult<Vec<Hash>> {
        Store::inclusion_proof(self, seq, size)
    }
    fn consistency_proof(&self, old: u64, new: u64) -> StoreResult<Vec<Hash>> {
        Store::consistency_proof(self, old, new)
    }
    fn checkpoints(&self) -> Vec<StoredCheckpoint> {
        Store::checkpoints(self)
    }
    fn find_audit_id(&self, audit_id: &str) -> StoreResult<Option<u64>> {
        Store::find_audit_id(self, audit_id)
    }
    fn cipher(&self) -> Option<&crypt::Cipher> {
        Store::cipher(self)
    }
}

/// Standard base64 (with padding), the encoding proofs and checkpoints use.
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}
