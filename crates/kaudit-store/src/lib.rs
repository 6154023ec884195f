//! Append-only, tamper-evident audit log store: segments, Merkle tree, signed checkpoints.
//!
//! # On disk (`--data DIR`)
//!
//! * `segments/<first seq>.kseg`: [`segment`] files of zstd-compressed bundles
//!   (up to 4096 records or 1 MiB raw each), crc32c per bundle, and commit
//!   markers. A bundle counts only once a commit marker follows it; a torn tail
//!   is cut back to the last marker on open (and reported).
//! * `tree/level-NN.hash`: the RFC 6962 tree's complete subtree hashes from
//!   level 8 up ([`tree`]); `checkpoints.jsonl`: every signed checkpoint;
//!   `checkpoint.key` (0600) / `checkpoint.pub`: the Ed25519 signed-note keys;
//!   `index/dedupe.keys`: duplicate-detection keys; `pruned.json`,
//!   `holds.json`: retention state.
//!
//! # What the Merkle leaf covers
//!
//! Leaf `i` is `SHA-256(0x00 || leaf_data)` where `leaf_data` is a version
//! byte, the cluster name, the event's stored bytes byte for byte, then the
//! sequence number `i` and the receive time (see [`record`] for the exact
//! layout). Proofs carry
//! `leaf_data` so an outside verifier needs nothing but SHA-256.
//!
//! # Reading
//!
//! [`LogReader`] is the narrow read interface queries and proofs use, so a
//! second backend (ClickHouse) can serve the same calls.

pub mod crypt;
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
    list_segments, load_signer, load_verifier, paths, read_checkpoints, read_pruned, Appended,
    BundleMeta, OpenReport, PruneRecord, Shared, Stat, Store, StoreOptions, StoredCheckpoint,
    Transaction,
};

use merkle::Hash;
use std::ops::Range;

/// Everything the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed (the message names the file).
    #[error("{0}")]
    Io(String),
    /// Stored data is damaged or inconsistent.
    #[error("store is damaged: {0}")]
    Corrupt(String),
    /// A key is missing or unusable.
    #[error("key: {0}")]
    Key(String),
    /// Encryption problems (wrong key, missing key).
    #[error(transparent)]
    Crypt(#[from] crypt::CryptError),
    /// Bad caller input.
    #[error("{0}")]
    Input(String),
    /// Tree or proof problems.
    #[error(transparent)]
    Tree(#[from] merkle::TreeError),
    /// Another process holds the store.
    #[error("store {0} is in use by another kaudit process (LOCK is held)")]
    Locked(String),
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
}

/// Standard base64 (with padding), the encoding proofs and checkpoints use.
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}
