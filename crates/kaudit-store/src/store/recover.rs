//! Getting the writer back after a failed write (a full disk, an I/O error):
//! the active segment is re-read up to its last valid commit marker, the
//! partial frames after it are cut, and the in-memory state (bundles, tree,
//! dedupe keys, counters) is brought back to exactly what is on disk. No
//! restart is needed once the cause (e.g. no space) is gone.

use super::files::{io_err, undecodable};
use super::open::{list_segments, scan_segment};
use super::{lock_poison, Store, Writer};
use crate::merkle::Hash;
use crate::record::dedupe_key;
use crate::segment;
use crate::{StoreError, StoreResult};
use std::collections::HashSet as StdHashSet;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Least time between two recovery attempts (each re-reads the active
/// segment), so a client retrying in a loop cannot turn a full disk into a
/// read storm.
pub const RECOVERY_SPACING: Duration = Duration::from_millis(500);

/// Bytes a health check writes (and removes) before it recovers a writer
/// that failed: room for a full bundle.
pub const PROBE_BYTES: u64 = 2 << 20;

impl Store {
    /// Whether appends can be made now; `Err` says why not. A writer that
    /// failed earlier is recovered here when it can be (spaced by
    /// [`RECOVERY_SPACING`]), so a health check alone brings it back once
    /// the disk has room again.
    pub fn writable(&self) -> Result<(), String> {
        if self.opts.read_only {
            return Err("store opened read-only".into());
        }
        let mut w = self.writer.lock().map_err(|_| "internal lock poisoned")?;
        let Some(why) = w.poisoned.clone() else {
            return Ok(());
        };
        if w.last_recovery
            .is_some_and(|t| t.elapsed() < RECOVERY_SPACING)
        {
            return Err(format!("store cannot write: {why}"));
        }
        // Only recover once a write of a bundle's size would pass: recovering
        // into a still-full disk would report ready for nothing.
        if let Err(e) = self.probe_space() {
            w.last_recovery = Some(Instant::now());
            return Err(format!("store cannot write: {why}; still: {e}"));
        }
        self.recover_if_poisoned(&mut w)
            .map_err(|e| format!("store cannot write: {e}"))
    }

    /// Writes, syncs and removes [`PROBE_BYTES`] in the segments directory.
    fn probe_space(&self) -> std::io::Result<()> {
        let p = super::paths::segments(&self.dir).join(".write-probe");
        let res = (|| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .mode(0o600)
                .truncate(true)
                .open(&p)?;
            let chunk = vec![0u8; 64 << 10];
            let mut off = 0u64;
            while off < PROBE_BYTES {
                f.write_all_at(&chunk, off)?;
                off += chunk.len() as u64;
            }
            f.sync_data()
        })();
        let _ = std::fs::remove_file(&p);
        res
    }

    /// Recovers a poisoned writer (at most once per [`RECOVERY_SPACING`]);
    /// `Err(Poisoned)` when it is still unusable.
    pub(super) fn recover_if_poisoned(&self, w: &mut Writer) -> StoreResult<()> {
        let Some(why) = w.poisoned.clone() else {
            return Ok(());
        };
        if w.last_recovery
            .is_some_and(|t| t.elapsed() < RECOVERY_SPACING)
        {
            return Err(StoreError::Poisoned(why));
        }
        w.last_recovery = Some(Instant::now());
        match self.recover(w) {
            Ok(size) => {
                w.poisoned = None;
                tracing::warn!(
                    target: "kaudit::store",
                    size,
                    "store writer recovered after a write error ({why}): the uncommitted tail was cut, writes resume"
                );
                Ok(())
            }
            Err(e) => Err(StoreError::Poisoned(format!("{why}; recovery failed: {e}"))),
        }
    }

    /// Brings memory back to the disk's committed state; returns the record count.
    fn recover(&self, w: &mut Writer) -> StoreResult<u64> {
        let durable = self.sync.lock().map_err(lock_poison)?.durable;
        let mut shared = self.shared.write().map_err(lock_poison)?;

        // A rollover that failed part-way leaves a new segment file that
        // never made it into the list: a header at most, no records.
        let known: StdHashSet<PathBuf> = shared.segments.iter().map(|s| s.path.clone()).collect();
        for (_, path) in list_segments(&self.dir)? {
            if known.contains(&path) {
                continue;
            }
            let len = std::fs::metadata(&path)
                .map_err(io_err(path.display()))?
                .len();
            if len > segment::SEGMENT_HEADER as u64 {
                return Err(StoreError::Corrupt(format!(
                    "{}: segment file unknown to the writer holds {len} bytes; not removing it",
                    path.display()
                )));
            }
            std::fs::remove_file(&path).map_err(io_err(path.display()))?;
        }

        let Some(a) = w.active.as_mut() else {
            drop(shared);
            return self.finish_recovery(w, durable);
        };
        let path = shared.segments[a.segment].path.clone();
        let scan = scan_segment(&a.file, true)
            .map_err(io_err(path.display()))?
            .map_err(|e| undecodable(path.display(), e))?;
        if let Some((off, why)) = &scan.corrupt {
            return Err(StoreError::Corrupt(format!(
                "{}:{off}: {why}; run `kaudit verify`",
                path.display()
            )));
        }
        let m = scan.committed_seq.unwrap_or(scan.header.first_seq);
        if m < durable {
            return Err(StoreError::Corrupt(format!(
                "{}: the last valid commit marker covers {m} records, but {durable} were made durable",
                path.display()
            )));
        }
        if scan.committed_end < scan.file_len {
            a.file
                .set_len(scan.committed_end)
                .map_err(io_err(path.display()))?;
        }
        // The commit markers up to `m` become durable here (again).
        a.file.sync_data().map_err(io_err(path.display()))?;
        a.len = scan.committed_end;

        shared.bundles.retain(|b| b.first_seq < m);
        let end = shared
            .bundles
            .last()
            .map_or(shared.first_seq, |b| b.first_seq + u64::from(b.count));
        if end != m && !(shared.bundles.is_empty() && m == scan.header.first_seq) {
            return Err(StoreError::Corrupt(format!(
                "{}: bundles end at record {end}, the last commit marker says {m}",
                path.display()
            )));
        }

        // The tree: back to what the level files hold, then replay to `m`.
        if shared.tree.size() != m {
            shared.tree.rollback(m).map_err(io_err("tree"))?;
            let from = shared.tree.size();
            let mut hashes: Vec<Hash> = Vec::new();
            Self::for_each_leaf(&shared, self.cipher.as_ref(), from..m, &mut |_, leaf| {
                hashes.push(leaf.hash());
                Ok(true)
            })?;
            for h in hashes {
                shared.tree.push(h).map_err(io_err("tree"))?;
            }
            if shared.tree.size() != m {
                return Err(StoreError::Corrupt(format!(
                    "tree holds {} leaves after recovery, the segments {m}",
                    shared.tree.size()
                )));
            }
        }

        // Dedupe keys: exactly one per record in `first_seq..m`.
        let keep = m - shared.first_seq;
        if let Some(f) = &w.dedupe_file {
            if w.dedupe_len > keep {
                let mut buf = vec![0u8; ((w.dedupe_len - keep) * 16) as usize];
                f.read_exact_at(&mut buf, keep * 16)
                    .map_err(io_err("dedupe index"))?;
                for k in buf.chunks_exact(16) {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(k);
                    w.dedupe.remove_recent(&a);
                }
            } else if w.dedupe_len < keep {
                let mut keys = Vec::new();
                let from = shared.first_seq + w.dedupe_len;
                Self::for_each_leaf(&shared, self.cipher.as_ref(), from..m, &mut |_, leaf| {
                    keys.push(dedupe_key(leaf.cluster, leaf.event));
                    Ok(true)
                })?;
                let flat: Vec<u8> = keys.iter().flatten().copied().collect();
                f.write_all_at(&flat, w.dedupe_len * 16)
                    .map_err(io_err("dedupe index"))?;
                for k in keys {
                    w.dedupe.insert_new(k);
                }
            }
            f.set_len(keep * 16).map_err(io_err("dedupe index"))?;
            w.dedupe_len = keep;
            if w.dedupe.sealed_upto() > m {
                // Runs only ever hold durable records, which recovery keeps;
                // should one reach past `m` anyway, rebuild from the file.
                w.dedupe = super::dedupe::Dedupe::load(
                    &self.dir,
                    f,
                    shared.first_seq,
                    keep,
                    self.opts.dedupe_recent_keys,
                )?;
            }
        }
        shared.durable = shared.durable.max(m);
        drop(shared);
        if let Ok(mut c) = self.group_cache.lock() {
            *c = None;
        }
        self.finish_recovery(w, m)
    }

    /// Resets the counters to `m` records, clears the group-commit error and
    /// starts a new epoch (writes still waiting from before are refused).
    fn finish_recovery(&self, w: &mut Writer, m: u64) -> StoreResult<u64> {
        w.next_seq = m;
        w.marker_seq = m;
        w.builder.clear();
        let mut s = self.sync.lock().map_err(lock_poison)?;
        s.durable = s.durable.max(m);
        s.error = None;
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.synced.notify_all();
        Ok(m)
    }
}
