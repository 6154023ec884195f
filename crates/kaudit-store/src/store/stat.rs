//! Counts and sizes for `kaudit stat`.

use super::{paths, Store, StoredCheckpoint};
use crate::StoreResult;
use std::path::Path;

impl Store {
    /// Counts and sizes for `kaudit stat`.
    pub fn stat(&self) -> StoreResult<Stat> {
        let shared = self.shared()?;
        let size_of = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let dir_size = |p: &Path| -> u64 {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                        .sum()
                })
                .unwrap_or(0)
        };
        let durable = shared.durable;
        let visible = shared.bundles.iter().filter(|b| b.first_seq < durable);
        let (mut raw, mut first, mut last) = (0u64, i64::MAX, i64::MIN);
        for b in visible {
            raw += u64::from(b.raw_len);
            first = first.min(b.min_time);
            last = last.max(b.max_time);
        }
        Ok(Stat {
            records: durable - shared.first_seq,
            tree_size: durable,
            first_seq: shared.first_seq,
            segments: shared.segments.len(),
            bundles: shared.bundles.len(),
            data_bytes: shared
                .segments
                .iter()
                .map(|s| s.file.metadata().map(|m| m.len()).unwrap_or(0))
                .sum(),
            raw_bytes: raw,
            tree_bytes: dir_size(&paths::tree(&self.dir)),
            checkpoint_bytes: size_of(&paths::checkpoints(&self.dir)),
            index_bytes: dir_size(&self.dir.join("index")),
            dict_bytes: dir_size(&paths::dicts(&self.dir)),
            first_time: (first != i64::MAX).then_some(kaudit_event::MicroTime(first)),
            last_time: (last != i64::MIN).then_some(kaudit_event::MicroTime(last)),
            checkpoints: shared.checkpoints.len(),
            latest_checkpoint: shared.checkpoints.last().cloned(),
            encrypted: shared.segments.iter().any(|s| s.key_id.is_some()),
        })
    }
}

/// Store statistics.
#[derive(Clone, Debug)]
pub struct Stat {
    /// Records stored (excluding pruned ones).
    pub records: u64,
    /// Tree size (including pruned records).
    pub tree_size: u64,
    /// First stored record.
    pub first_seq: u64,
    /// Segment files.
    pub segments: usize,
    /// Bundles.
    pub bundles: usize,
    /// Segment bytes on disk.
    pub data_bytes: u64,
    /// Uncompressed record bytes (leaf_data plus 4-byte lengths).
    pub raw_bytes: u64,
    /// Tree level files.
    pub tree_bytes: u64,
    /// Checkpoint log.
    pub checkpoint_bytes: u64,
    /// Dedupe index.
    pub index_bytes: u64,
    /// zstd dictionary files (part of the data: bundles need them).
    pub dict_bytes: u64,
    /// Earliest receive time.
    pub first_time: Option<kaudit_event::MicroTime>,
    /// Latest receive time.
    pub last_time: Option<kaudit_event::MicroTime>,
    /// Checkpoints kept.
    pub checkpoints: usize,
    /// The newest one.
    pub latest_checkpoint: Option<StoredCheckpoint>,
    /// Whether any segment is encrypted.
    pub encrypted: bool,
}
