//! What a caller can choose when opening a store.

use std::path::PathBuf;
use std::time::Duration;

/// Tunables and optional keys for opening a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Open without locking or writing anything (proofs, stat while a writer runs).
    pub read_only: bool,
    /// Checkpoint signing key file (`PRIVATE+KEY+...`); default `<data>/checkpoint.key`, generated on first open.
    pub signing_key: Option<PathBuf>,
    /// Key name (= checkpoint origin) for a key generated on first open.
    pub origin: Option<String>,
    /// Encryption key file; new segments are sealed with it, and it is needed to read sealed ones.
    pub encryption_key: Option<PathBuf>,
    /// Also write each new checkpoint to this file (atomically replaced).
    pub publish_checkpoint: Option<PathBuf>,
    /// Most records per bundle.
    pub bundle_max_records: usize,
    /// Most raw bytes per bundle.
    pub bundle_max_bytes: usize,
    /// Raw bytes per zstd frame inside a bundle (whole records; 0: one frame
    /// per bundle, the format before framing). Small frames let a search hit
    /// decompress a few KiB instead of the whole bundle, at some cost in
    /// compression ratio.
    pub bundle_frame_bytes: usize,
    /// Raw record bytes sampled before the store trains its zstd dictionary
    /// (0: never train; bundles are then written without one).
    pub dictionary_sample_bytes: usize,
    /// A new segment is started once the current one is this large.
    pub segment_target_bytes: u64,
    /// zstd level.
    pub zstd_level: i32,
    /// Least time between two checkpoints while data arrives.
    pub checkpoint_interval: Duration,
    /// Most duplicate-detection keys of recent records the writer keeps in a
    /// RAM set (~20-35 B each) before moving them into a sorted run on disk,
    /// whose filter costs ~1.3 B per key: bounds the writer's RAM whatever the
    /// store's size.
    pub dedupe_recent_keys: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            read_only: false,
            signing_key: None,
            origin: None,
            encryption_key: None,
            publish_checkpoint: None,
            bundle_max_records: 4096,
            bundle_max_bytes: 1 << 20,
            bundle_frame_bytes: 64 << 10,
            dictionary_sample_bytes: crate::dict::SAMPLE_BYTES,
            segment_target_bytes: 64 << 20,
            zstd_level: 1,
            checkpoint_interval: Duration::from_secs(1),
            dedupe_recent_keys: 2 << 20,
        }
    }
}
