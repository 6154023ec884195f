//! All-or-nothing appends: an import's input is stored whole or not at all.

use super::bundle::BundleBuilder;
use super::files::io_err;
use super::{lock_poison, Appended, BundleMeta, HashSet, Store, Writer};
use crate::merkle::Hash;
use crate::record::Record;
use crate::segment;
use crate::{StoreError, StoreResult};
use std::os::unix::fs::FileExt;
use std::sync::MutexGuard;

impl Store {
    /// Starts an all-or-nothing append (used by import: one input is one
    /// transaction). It holds the writer until commit or drop; dropping it
    /// without commit removes everything it wrote.
    pub fn transaction(&self) -> StoreResult<Transaction<'_>> {
        let mut w = self.writer.lock().map_err(lock_poison)?;
        self.recover_if_poisoned(&mut w)?;
        // Make earlier appends durable first so the transaction starts clean.
        if w.marker_seq < w.next_seq {
            let epoch = self.epoch.load(std::sync::atomic::Ordering::SeqCst);
            drop(w);
            let end = self.writer.lock().map_err(lock_poison)?.next_seq;
            self.wait_durable(end, epoch)?;
            w = self.writer.lock().map_err(lock_poison)?;
        }
        self.ensure_segment(&mut w)?;
        let (seg_len, start) = (w.active.as_ref().map_or(0, |a| a.len), w.next_seq);
        Ok(Transaction {
            store: self,
            w,
            start_seq: start,
            seg_len,
            builder: BundleBuilder::default(),
            leaves: Vec::new(),
            keys: HashSet::default(),
            key_list: Vec::new(),
            metas: Vec::new(),
            duplicates: 0,
            done: false,
        })
    }
}

/// An all-or-nothing append; see [`Store::transaction`].
pub struct Transaction<'a> {
    store: &'a Store,
    w: MutexGuard<'a, Writer>,
    start_seq: u64,
    seg_len: u64,
    builder: BundleBuilder,
    leaves: Vec<Hash>,
    keys: HashSet<[u8; 16]>,
    key_list: Vec<u8>,
    metas: Vec<BundleMeta>,
    duplicates: u64,
    done: bool,
}

impl Transaction<'_> {
    /// Stages one record; returns false when it is an exact duplicate (dropped).
    pub fn push(&mut self, r: &Record) -> StoreResult<bool> {
        self.push_parts(&r.cluster, &r.event, r.received)
    }

    /// Stages one record given by parts (no copy of the event first).
    pub fn push_parts(
        &mut self,
        cluster: &str,
        event: &[u8],
        received: kaudit_event::MicroTime,
    ) -> StoreResult<bool> {
        crate::record::validate_parts(cluster, event)?;
        // The key comes out of the same hash pass as the leaf; a duplicate is
        // taken back out of the bundle.
        let seq = self.w.next_seq;
        let mark = (
            self.builder.raw.len(),
            self.builder.count,
            self.builder.min_time,
            self.builder.max_time,
        );
        let key = self
            .builder
            .add_parts(cluster, event, received, seq, &mut self.leaves);
        if self.w.dedupe.contains(&key)? || !self.keys.insert(key) {
            self.builder.undo(mark);
            self.leaves.pop();
            self.duplicates += 1;
            return Ok(false);
        }
        self.key_list.extend_from_slice(&key);
        self.w.next_seq += 1;
        if self.builder.full(&self.store.opts) {
            let m = self.store.flush_bundle(&mut self.w, &mut self.builder)?;
            self.metas.push(m);
        }
        Ok(true)
    }

    /// The sequence number the next staged record gets (lets a caller pair
    /// what it pushes with its place in the log).
    pub fn next_seq(&self) -> u64 {
        self.w.next_seq
    }

    /// Records staged so far (duplicates excluded).
    pub fn staged(&self) -> u64 {
        self.w.next_seq - self.start_seq
    }

    /// Duplicates dropped so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Makes everything staged durable and visible.
    pub fn commit(mut self) -> StoreResult<Appended> {
        let res = self.commit_inner();
        if res.is_err() {
            self.w.poisoned = res.as_ref().err().map(|e| e.to_string());
        }
        res
    }

    fn commit_inner(&mut self) -> StoreResult<Appended> {
        if self.builder.count > 0 {
            let m = self.store.flush_bundle(&mut self.w, &mut self.builder)?;
            self.metas.push(m);
        }
        let end = self.w.next_seq;
        self.done = true;
        if end == self.start_seq {
            return Ok(Appended {
                seqs: end..end,
                duplicates: self.duplicates,
            });
        }
        let a = self.w.active.as_mut().ok_or(StoreError::NoActiveSegment)?;
        a.file
            .write_all_at(&segment::encode_commit(end), a.len)
            .map_err(io_err("segment"))?;
        a.len += segment::COMMIT_FRAME as u64;
        a.file.sync_data().map_err(io_err("fdatasync"))?;
        self.w.marker_seq = end;
        if let Some(f) = &self.w.dedupe_file {
            f.write_all_at(&self.key_list, self.w.dedupe_len * 16)
                .map_err(io_err("dedupe index"))?;
        }
        self.w.dedupe_len += self.key_list.len() as u64 / 16;
        let keys = std::mem::take(&mut self.keys);
        for k in keys {
            self.w.dedupe.insert_new(k);
        }
        {
            let mut shared = self.store.shared.write().map_err(lock_poison)?;
            shared.bundles.append(&mut self.metas);
            for h in self.leaves.drain(..) {
                shared.tree.push(h).map_err(io_err("tree"))?;
            }
            shared.durable = end;
        }
        {
            let mut s = self.store.sync.lock().map_err(lock_poison)?;
            s.durable = s.durable.max(end);
        }
        // Everything up to `end` is durable now: old keys may leave RAM (a
        // failure to write them out keeps them in RAM; the commit stands).
        let _ = self.store.seal_durable_keys(&mut self.w);
        Ok(Appended {
            seqs: self.start_seq..end,
            duplicates: self.duplicates,
        })
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Roll back: cut what this transaction wrote.
        if let Some(a) = self.w.active.as_mut() {
            if a.file.set_len(self.seg_len).is_ok() {
                a.len = self.seg_len;
            } else {
                self.w.poisoned = Some("could not roll back an aborted transaction".into());
            }
        }
        self.w.next_seq = self.start_seq;
    }
}
