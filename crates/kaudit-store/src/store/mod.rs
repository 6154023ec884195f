//! The store: the [`Store`] handle with its append (group commit) and read
//! paths. Everything else lives in the submodules, one concern each:
//!
//! * [`options`]: what a caller chooses when opening;
//! * [`open`]: opening and crash recovery;
//! * [`paths`]: where each file lives inside a data directory;
//! * [`files`]: file helpers shared with retention and verify;
//! * [`keys`]: the checkpoint signing and verifier keys;
//! * [`lock`]: the writer lock;
//! * [`bundle`]: building bundles and reading them back;
//! * [`transaction`]: all-or-nothing appends;
//! * [`proofs`]: the tree view and RFC 6962 proofs;
//! * [`checkpoint`]: signed checkpoints;
//! * [`prune`]: retention pruning and the signed prune record;
//! * [`recover`]: getting the writer back after a failed write (ENOSPC);
//! * [`stat`]: counts and sizes.
//!
//! Submodules build on this module's types, [`options`], [`paths`] and
//! [`files`], and on the plain data types ([`BundleMeta`],
//! [`StoredCheckpoint`]). Beyond those, only [`open`] (which assembles a
//! store) reaches into several siblings, [`prune`] uses [`proofs`] for the
//! edge hashes, and [`transaction`] uses [`bundle`]; nothing depends on
//! [`open`].

mod bundle;
mod checkpoint;
mod dedupe;
mod files;
mod keys;
mod lock;
mod open;
mod options;
pub mod paths;
mod proofs;
mod prune;
mod recover;
mod stat;
mod transaction;

pub use bundle::BundleMeta;
pub use checkpoint::{read_checkpoints, StoredCheckpoint};
pub use dedupe::{check_key_filter, DedupeStats};
pub use keys::{load_signer, load_verifier};
pub use open::{list_segments, DamageReport, OpenReport};
pub use options::StoreOptions;
pub use prune::{read_edge, read_pruned, PruneRecord};
pub use stat::Stat;
pub use transaction::Transaction;

pub(crate) use files::{io_err, private_dir, read_small, undecodable, write_atomic};

use crate::crypt::Cipher;
use crate::dict::{DictId, Dicts};
use crate::merkle::Hash;
use crate::note::{Signer25519, Verifier25519};
use crate::record::{iter_leaves, validate_parts, LeafRef, Record, RecordRef};
use crate::segment::{self, SegmentHeader};
use crate::tree::Tree;
use crate::{StoreError, StoreResult};
use bundle::{read_bundle, read_bundle_part, BundleBuilder};
use std::collections::HashSet as StdHashSet;
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

/// Dedupe keys are already SHA-256 output: hashing them again is wasted work,
/// so the set uses their first 8 bytes as the hash.
#[derive(Clone, Copy, Default)]
pub(crate) struct KeyHash(u64);

impl std::hash::Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
}

type HashSet<T> = StdHashSet<T, std::hash::BuildHasherDefault<KeyHash>>;

/// One segment file.
#[derive(Debug)]
pub struct SegmentInfo {
    /// Its path.
    pub path: PathBuf,
    /// First sequence number.
    pub first_seq: u64,
    /// Open handle for reads.
    pub file: Arc<File>,
    /// Encryption key id of its bundles.
    pub key_id: Option<[u8; 8]>,
}

/// Reader-visible state.
pub struct Shared {
    /// Segments in order.
    pub segments: Vec<SegmentInfo>,
    /// Committed bundles in order.
    pub bundles: Vec<BundleMeta>,
    /// The tree over every written record.
    pub tree: Tree,
    /// Records durable and visible: the tree size checkpoints and proofs use.
    pub durable: u64,
    /// First record still stored (records below were pruned).
    pub first_seq: u64,
    /// Kept checkpoints, oldest first.
    pub checkpoints: Vec<StoredCheckpoint>,
    /// The store's zstd dictionaries (a bundle is published only after the
    /// dictionary it names is here).
    pub dicts: Dicts,
}

struct Writer {
    active: Option<Active>,
    next_seq: u64,
    marker_seq: u64,
    /// Bounded in RAM: recent keys in a set, older ones in sorted runs on disk.
    dedupe: dedupe::Dedupe,
    dedupe_file: Option<File>,
    dedupe_len: u64,
    compressor: zstd::bulk::Compressor<'static>,
    /// The dictionary `compressor` is loaded with.
    dict: Option<DictId>,
    /// Raw records kept to train the first dictionary on.
    samples: Vec<u8>,
    /// A dictionary being trained off the append path (the thread also
    /// writes and fsyncs its file before it returns).
    training: Option<std::thread::JoinHandle<Result<TrainedDict, String>>>,
    /// Why training failed, if it did (the store then keeps writing bundles
    /// without a dictionary until reopened).
    dict_error: Option<String>,
    last_checkpoint: Instant,
    poisoned: Option<String>,
    /// When recovery from `poisoned` was last tried (attempts are spaced).
    last_recovery: Option<Instant>,
    /// Reused between appends so that each batch does not grow (and fault
    /// in) a fresh megabyte-sized buffer.
    builder: BundleBuilder,
}

/// A dictionary trained and durable: (id, bytes, trained-at sequence).
type TrainedDict = (DictId, std::sync::Arc<[u8]>, u64);

struct Active {
    file: Arc<File>,
    len: u64,
    segment: usize,
}

struct SyncState {
    durable: u64,
    leader: bool,
    /// A failed group commit, handed to every waiter.
    error: Option<Arc<StoreError>>,
}

/// The append-only store. Safe to share between threads (`Arc<Store>`).
pub struct Store {
    dir: PathBuf,
    opts: StoreOptions,
    signer: Option<Signer25519>,
    verifier: Verifier25519,
    cipher: Option<Cipher>,
    writer: Mutex<Writer>,
    shared: RwLock<Shared>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    group_cache: Mutex<Option<(u64, Vec<Hash>)>>,
    /// Bumped by every recovery: a write made before it whose records were
    /// not yet durable was rolled back and must not be acknowledged.
    epoch: std::sync::atomic::AtomicU64,
    _lock: Option<File>,
    report: OpenReport,
}

/// Outcome of an append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Sequence numbers given to the new records.
    pub seqs: Range<u64>,
    /// Records dropped as exact duplicates.
    pub duplicates: u64,
}

/// For `map_err` on a poisoned internal lock (the guard cannot be kept).
fn lock_poison<T>(_: T) -> StoreError {
    StoreError::LockPoisoned
}

impl Store {
    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The checkpoint verifier key.
    pub fn verifier(&self) -> &Verifier25519 {
        &self.verifier
    }

    /// The loaded encryption key, if any.
    pub fn cipher(&self) -> Option<&Cipher> {
        self.cipher.as_ref()
    }

    /// Reader-side state (hold briefly).
    pub fn shared(&self) -> StoreResult<std::sync::RwLockReadGuard<'_, Shared>> {
        self.shared.read().map_err(lock_poison)
    }

    /// Calls `f(seq, leaf)` for each record in `range` (stops when `f` returns false).
    /// Only the frames of a bundle that overlap the range are decompressed.
    pub(crate) fn for_each_leaf(
        shared: &Shared,
        cipher: Option<&Cipher>,
        range: Range<u64>,
        f: &mut dyn FnMut(u64, LeafRef<'_>) -> StoreResult<bool>,
    ) -> StoreResult<()> {
        if range.start >= range.end {
            return Ok(());
        }
        let start_idx = shared
            .bundles
            .partition_point(|b| b.first_seq + u64::from(b.count) <= range.start);
        for b in &shared.bundles[start_idx..] {
            if b.first_seq >= range.end {
                break;
            }
            let lo = range.start.saturating_sub(b.first_seq);
            let hi = range.end - b.first_seq;
            let mut want =
                |first: u32, n: u32| u64::from(first) < hi && u64::from(first) + u64::from(n) > lo;
            let mut keep = |seq: u64| seq >= range.start && seq < range.end;
            if !Self::visit_bundle(shared, cipher, b, &mut want, &mut keep, f)? {
                return Ok(());
            }
            if b.first_seq + u64::from(b.count) >= range.end {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Reads the frames of bundle `b` that `want` asks for and calls `f` on
    /// each record in them that `keep` accepts; false when `f` asked to stop.
    fn visit_bundle(
        shared: &Shared,
        cipher: Option<&Cipher>,
        b: &BundleMeta,
        want: &mut dyn FnMut(u32, u32) -> bool,
        keep: &mut dyn FnMut(u64) -> bool,
        f: &mut dyn FnMut(u64, LeafRef<'_>) -> StoreResult<bool>,
    ) -> StoreResult<bool> {
        let seg = shared
            .segments
            .get(b.segment)
            .ok_or_else(|| StoreError::Corrupt("bundle names a missing segment".into()))?;
        for (first, raw) in read_bundle_part(shared, b, cipher, want)? {
            for (i, leaf) in iter_leaves(&raw).enumerate() {
                let seq = b.first_seq + u64::from(first) + i as u64;
                let leaf = leaf.map_err(|e| {
                    undecodable(
                        format_args!("{}:{}: record {seq}", seg.path.display(), b.offset),
                        e,
                    )
                })?;
                if !keep(seq) {
                    continue;
                }
                if leaf.seq != seq {
                    return Err(StoreError::Corrupt(format!(
                        "{}:{}: record at position {seq} carries sequence number {}",
                        seg.path.display(),
                        b.offset,
                        leaf.seq
                    )));
                }
                if !f(seq, leaf)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Calls `f(seq, leaf)` for each of `seqs` (ascending; those not stored
    /// and durable are skipped), decompressing only the frames that hold them:
    /// how search hits are fetched. Stops when `f` returns false.
    pub fn read_seqs(
        &self,
        seqs: &[u64],
        f: &mut dyn FnMut(u64, LeafRef<'_>) -> bool,
    ) -> StoreResult<()> {
        let shared = self.shared()?;
        let (first, durable) = (shared.first_seq, shared.durable);
        let lo = seqs.partition_point(|&s| s < first);
        let hi = seqs.partition_point(|&s| s < durable);
        let mut seqs = seqs.get(lo..hi).unwrap_or_default();
        while let Some(&s) = seqs.first() {
            let idx = shared
                .bundles
                .partition_point(|b| b.first_seq + u64::from(b.count) <= s);
            let Some(b) = shared.bundles.get(idx) else {
                break;
            };
            let end = b.first_seq + u64::from(b.count);
            let n = seqs.partition_point(|&x| x < end);
            let (mine, rest) = seqs.split_at(n);
            seqs = rest;
            let mine: Vec<u64> = mine.iter().copied().filter(|&x| x >= b.first_seq).collect();
            if mine.is_empty() {
                continue;
            }
            let base = b.first_seq;
            let mut want = |first: u32, n: u32| {
                let a = base + u64::from(first);
                let i = mine.partition_point(|&x| x < a);
                mine.get(i).is_some_and(|&x| x < a + u64::from(n))
            };
            let mut keep = |seq: u64| mine.binary_search(&seq).is_ok();
            let go = Self::visit_bundle(
                &shared,
                self.cipher.as_ref(),
                b,
                &mut want,
                &mut keep,
                &mut |s, l| Ok(f(s, l)),
            )?;
            if !go {
                break;
            }
        }
        Ok(())
    }

    /// Reads records `range` (clamped to what is stored and durable).
    pub fn read(
        &self,
        range: Range<u64>,
        f: &mut dyn FnMut(u64, LeafRef<'_>) -> bool,
    ) -> StoreResult<()> {
        let shared = self.shared()?;
        let range = range.start.max(shared.first_seq)..range.end.min(shared.durable);
        Self::for_each_leaf(&shared, self.cipher.as_ref(), range, &mut |s, l| {
            Ok(f(s, l))
        })
    }

    /// Appends records durably: returns once they are fsynced (group commit:
    /// concurrent callers share one fdatasync). Exact duplicates are dropped.
    pub fn append_batch(&self, records: Vec<Record>) -> StoreResult<Appended> {
        let refs: Vec<RecordRef<'_>> = records.iter().map(Record::as_ref).collect();
        self.append_refs(&refs)
    }

    /// [`Store::append_batch`] for records whose bytes live elsewhere (the
    /// ingest path keeps its parsed events for the live feed and lends their
    /// bytes here, so nothing is copied twice).
    pub fn append_refs(&self, records: &[RecordRef<'_>]) -> StoreResult<Appended> {
        self.append_prehashed(records, &[])
    }

    /// [`Store::append_refs`] with, for record `i`, `prefixes[i]`: the
    /// SHA-256 state after `0x00 || leaf_data` up to the end of its event
    /// (layout in [`crate::record`]), which a caller that already hashed the
    /// event (the ingest dedupe key) hands in so the event is not hashed a
    /// second time. A `None` or missing entry is hashed here. The state must
    /// cover exactly that record's cluster and event, or its leaf hash is
    /// wrong: debug builds check every one against a full hash.
    pub fn append_prehashed(
        &self,
        records: &[RecordRef<'_>],
        prefixes: &[Option<&sha2::Sha256>],
    ) -> StoreResult<Appended> {
        for r in records {
            validate_parts(r.cluster, r.event)?;
        }
        let (range, dups, epoch) = {
            let mut w = self.writer.lock().map_err(lock_poison)?;
            self.recover_if_poisoned(&mut w)?;
            let res = self.write_records(&mut w, records, prefixes);
            if let Err(e) = &res {
                w.poisoned = Some(e.to_string());
            }
            let (range, dups) = res?;
            (range, dups, self.epoch.load(AtomicOrdering::SeqCst))
        };
        self.wait_durable(range.end, epoch)?;
        Ok(Appended {
            seqs: range,
            duplicates: dups,
        })
    }

    fn ensure_segment(&self, w: &mut Writer) -> StoreResult<()> {
        let need_new = match &w.active {
            None => true,
            Some(a) => a.len >= self.opts.segment_target_bytes,
        };
        if !need_new {
            return Ok(());
        }
        if let Some(a) = &w.active {
            // Seal the old segment: commit everything in it and make it durable.
            if w.marker_seq < w.next_seq {
                a.file
                    .write_all_at(&segment::encode_commit(w.next_seq), a.len)
                    .map_err(io_err("segment"))?;
                w.marker_seq = w.next_seq;
            }
            a.file.sync_data().map_err(io_err("segment"))?;
        }
        let first_seq = w.next_seq;
        let path = paths::segments(&self.dir).join(segment::segment_name(first_seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(path.display()))?;
        let header = SegmentHeader {
            first_seq,
            key_id: self.cipher.as_ref().map(Cipher::id),
        };
        file.write_all_at(&header.encode(), 0)
            .map_err(io_err(path.display()))?;
        file.sync_all().map_err(io_err(path.display()))?;
        if let Ok(d) = File::open(paths::segments(&self.dir)) {
            d.sync_all().map_err(io_err("segments directory"))?;
        }
        let file = Arc::new(file);
        let mut shared = self.shared.write().map_err(lock_poison)?;
        shared.segments.push(SegmentInfo {
            path,
            first_seq,
            file: file.clone(),
            key_id: header.key_id,
        });
        w.active = Some(Active {
            file,
            len: segment::SEGMENT_HEADER as u64,
            segment: shared.segments.len() - 1,
        });
        Ok(())
    }

    /// Compresses and writes bundles for `records`, publishing them to readers
    /// only up to the durable size.
    fn write_records(
        &self,
        w: &mut Writer,
        records: &[RecordRef<'_>],
        prefixes: &[Option<&sha2::Sha256>],
    ) -> StoreResult<(Range<u64>, u64)> {
        let mut inserted: Vec<[u8; 16]> = Vec::new();
        let dedupe_len = w.dedupe_len;
        let res = self.write_records_inner(w, records, prefixes, &mut inserted);
        if res.is_err() {
            // Nothing of this batch is acknowledged: its keys must not make
            // a resend look like a duplicate once the writer recovers.
            for k in &inserted {
                w.dedupe.remove_recent(k);
            }
            w.dedupe_len = dedupe_len;
        }
        res
    }

    fn write_records_inner(
        &self,
        w: &mut Writer,
        records: &[RecordRef<'_>],
        prefixes: &[Option<&sha2::Sha256>],
        inserted: &mut Vec<[u8; 16]>,
    ) -> StoreResult<(Range<u64>, u64)> {
        // Failing to move old keys to disk (a full disk) costs RAM, not
        // the write: they stay in the recent set and the next write retries.
        let _ = self.seal_durable_keys(w);
        let start = w.next_seq;
        let mut dups = 0u64;
        let mut builder = std::mem::take(&mut w.builder);
        builder.clear();
        let mut new_keys = Vec::new();
        let mut metas = Vec::new();
        let mut leaves = Vec::new();
        self.ensure_segment(w)?;
        for (i, r) in records.iter().enumerate() {
            let seq = w.next_seq;
            let mark = (
                builder.raw.len(),
                builder.count,
                builder.min_time,
                builder.max_time,
            );
            let prefix = prefixes.get(i).copied().flatten();
            let key = builder.add_parts_prefixed(
                r.cluster,
                r.event,
                r.received,
                seq,
                &mut leaves,
                prefix,
            );
            if !w.dedupe.insert(key)? {
                builder.undo(mark);
                leaves.pop();
                dups += 1;
                continue;
            }
            inserted.push(key);
            new_keys.extend_from_slice(&key);
            w.next_seq += 1;
            if builder.full(&self.opts) {
                metas.push(self.flush_bundle(w, &mut builder)?);
            }
        }
        if builder.count > 0 {
            metas.push(self.flush_bundle(w, &mut builder)?);
        }
        w.builder = builder;
        if let Some(f) = &w.dedupe_file {
            f.write_all_at(&new_keys, w.dedupe_len * 16)
                .map_err(io_err("dedupe index"))?;
        }
        w.dedupe_len += new_keys.len() as u64 / 16;
        let mut shared = self.shared.write().map_err(lock_poison)?;
        shared.bundles.extend(metas);
        for h in leaves {
            shared.tree.push(h).map_err(io_err("tree"))?;
        }
        Ok((start..w.next_seq, dups))
    }

    /// Moves the keys of durable records out of RAM into a sorted run once
    /// the recent set is full (see [`dedupe`]).
    fn seal_durable_keys(&self, w: &mut Writer) -> StoreResult<()> {
        let durable = self.sync.lock().map_err(lock_poison)?.durable;
        let first_seq = self.shared()?.first_seq;
        let Writer {
            dedupe,
            dedupe_file,
            dedupe_len,
            ..
        } = w;
        if let Some(f) = dedupe_file {
            let appended = first_seq + *dedupe_len;
            dedupe.maybe_seal(f, first_seq, durable.min(appended), appended)?;
        }
        Ok(())
    }

    /// What the writer's duplicate filter holds (all zero for a read-only
    /// open, which never builds it).
    pub fn dedupe_stats(&self) -> StoreResult<DedupeStats> {
        Ok(self.writer.lock().map_err(lock_poison)?.dedupe.stats())
    }

    /// Starts training the store's first dictionary once enough records
    /// were sampled, and switches the compressor to a trained dictionary
    /// once its file is durable (so no bundle names a dictionary a crash
    /// could lose). Training runs on its own thread: it takes ~0.1-1 s,
    /// which appends must not wait for.
    fn dictionary_step(&self, w: &mut Writer, raw: &[u8]) -> StoreResult<()> {
        if w.training.as_ref().is_some_and(|t| t.is_finished()) {
            let res = match w.training.take().map(std::thread::JoinHandle::join) {
                Some(Ok(r)) => r,
                Some(Err(_)) => Err("the training thread panicked".into()),
                None => return Ok(()),
            };
            match res {
                Ok((id, bytes, at)) => {
                    let c = zstd::bulk::Compressor::with_dictionary(self.opts.zstd_level, &bytes)
                        .map_err(io_err("zstd dictionary"))?;
                    self.shared
                        .write()
                        .map_err(lock_poison)?
                        .dicts
                        .insert(id, bytes, at);
                    w.compressor = c;
                    w.dict = Some(id);
                }
                Err(e) => w.dict_error = Some(e),
            }
        }
        let want = self.opts.dictionary_sample_bytes;
        if w.dict.is_some() || w.training.is_some() || w.dict_error.is_some() || want == 0 {
            return Ok(());
        }
        if w.samples.len() < want {
            w.samples.extend_from_slice(raw);
        }
        if w.samples.len() >= want {
            let samples = std::mem::take(&mut w.samples);
            let (dir, cipher, at) = (self.dir.clone(), self.cipher.clone(), w.next_seq);
            let t = std::thread::Builder::new()
                .name("kaudit-dict-train".into())
                .spawn(move || {
                    let dict = crate::dict::train(&samples).map_err(|e| e.to_string())?;
                    let (id, _) = crate::dict::write_file(&dir, &dict, at, cipher.as_ref())
                        .map_err(|e| e.to_string())?;
                    Ok((id, dict.into(), at))
                })
                .map_err(io_err("dictionary training thread"))?;
            w.training = Some(t);
        }
        Ok(())
    }

    /// Waits for a dictionary being trained and switches to it (tests and
    /// benchmarks that want every following bundle to use it; appends never
    /// wait). Returns the id in use, if any.
    pub fn settle_dictionary(&self) -> StoreResult<Option<DictId>> {
        let mut w = self.writer.lock().map_err(lock_poison)?;
        if let Some(t) = &w.training {
            while !t.is_finished() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        self.dictionary_step(&mut w, &[])?;
        if let Some(e) = &w.dict_error {
            return Err(StoreError::Corrupt(format!(
                "dictionary training failed: {e}"
            )));
        }
        Ok(w.dict)
    }

    fn flush_bundle(&self, w: &mut Writer, b: &mut BundleBuilder) -> StoreResult<BundleMeta> {
        self.dictionary_step(w, &b.raw)?;
        let frame = segment::encode_bundle_dict(
            b.first_seq,
            b.count,
            &b.raw,
            b.min_time,
            b.max_time,
            self.opts.bundle_frame_bytes,
            w.dict.as_ref(),
            &mut w.compressor,
            self.cipher.as_ref(),
        )
        .map_err(io_err("compressing a bundle"))?;
        let a = w.active.as_mut().ok_or(StoreError::NoActiveSegment)?;
        a.file
            .write_all_at(&frame, a.len)
            .map_err(io_err("segment"))?;
        let meta = BundleMeta {
            first_seq: b.first_seq,
            count: b.count,
            segment: a.segment,
            offset: a.len,
            raw_len: b.raw.len() as u32,
            stored_len: frame.len() as u32,
            min_time: b.min_time,
            max_time: b.max_time,
        };
        a.len += frame.len() as u64;
        b.clear();
        Ok(meta)
    }

    /// Blocks until records below `end` are durable, leading a group commit if no one else is.
    fn wait_durable(&self, end: u64, epoch: u64) -> StoreResult<()> {
        let mut s = self.sync.lock().map_err(lock_poison)?;
        loop {
            if self.epoch.load(AtomicOrdering::SeqCst) != epoch {
                // A recovery ran since this write: it may have been rolled
                // back, so it is not acknowledged (a resend is deduplicated
                // if it did survive).
                return Err(StoreError::Poisoned(
                    "the write was rolled back while the store recovered from a write error; send it again".into(),
                ));
            }
            if s.durable >= end {
                return Ok(());
            }
            if let Some(e) = &s.error {
                return Err(StoreError::GroupCommit(Arc::clone(e)));
            }
            if s.leader {
                s = self.synced.wait(s).map_err(lock_poison)?;
                continue;
            }
            s.leader = true;
            drop(s);
            let res = self.commit_written();
            s = self.sync.lock().map_err(lock_poison)?;
            s.leader = false;
            match res {
                Ok(t) => {
                    s.durable = s.durable.max(t);
                    if let Ok(mut sh) = self.shared.write() {
                        sh.durable = sh.durable.max(t);
                    }
                }
                Err(e) => s.error = Some(Arc::new(e)),
            }
            self.synced.notify_all();
        }
    }

    /// Writes a commit marker for everything written so far and fdatasyncs;
    /// a failure poisons the writer (the next write or health check
    /// recovers it).
    fn commit_written(&self) -> StoreResult<u64> {
        let res = self.commit_written_inner();
        if let Err(e) = &res {
            if let Ok(mut w) = self.writer.lock() {
                if w.poisoned.is_none() {
                    w.poisoned = Some(e.to_string());
                }
            }
        }
        res
    }

    fn commit_written_inner(&self) -> StoreResult<u64> {
        let (file, target) = {
            let mut w = self.writer.lock().map_err(lock_poison)?;
            let target = w.next_seq;
            let Some(a) = w.active.as_mut() else {
                return Ok(target);
            };
            let file = a.file.clone();
            if w.marker_seq < target {
                let a = w.active.as_mut().ok_or(StoreError::NoActiveSegment)?;
                a.file
                    .write_all_at(&segment::encode_commit(target), a.len)
                    .map_err(io_err("segment"))?;
                a.len += segment::COMMIT_FRAME as u64;
                w.marker_seq = target;
            }
            (file, target)
        };
        file.sync_data().map_err(io_err("fdatasync"))?;
        Ok(target)
    }

    /// Durable record count (= tree size).
    pub fn len(&self) -> u64 {
        self.shared().map_or(0, |s| s.durable)
    }

    /// Whether the log holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Finds the first record whose event has this auditID (scans from the newest bundle).
    pub fn find_audit_id(&self, audit_id: &str) -> StoreResult<Option<u64>> {
        let shared = self.shared()?;
        let mut needle = b"\"auditID\":".to_vec();
        kaudit_event::json::write_str(&mut needle, audit_id);
        let finder = memchr::memmem::Finder::new(&needle);
        for b in shared.bundles.iter().rev() {
            if b.first_seq >= shared.durable {
                continue;
            }
            let raw = read_bundle(&shared, b, self.cipher.as_ref())?;
            if finder.find(&raw).is_none() {
                continue;
            }
            for (i, leaf) in iter_leaves(&raw).enumerate() {
                let Ok(leaf) = leaf else { continue };
                if finder.find(leaf.event).is_some() {
                    if let Ok(ev) = kaudit_event::Event::from_json(leaf.event) {
                        if ev.audit_id() == audit_id {
                            return Ok(Some(b.first_seq + i as u64));
                        }
                    }
                }
            }
        }
        Ok(None)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if !self.opts.read_only {
            let _ = self.checkpoint();
        }
        // A training thread writes into the data dir: finish it while this
        // handle still holds the writer lock.
        if let Ok(mut w) = self.writer.lock() {
            if let Some(t) = w.training.take() {
                let _ = t.join();
            }
        }
    }
}
