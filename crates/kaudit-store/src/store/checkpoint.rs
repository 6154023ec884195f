//! Signed checkpoints: the `checkpoints.jsonl` log, and writing a new
//! checkpoint over the durable tree (derived files are synced first so an
//! open can trust them up to the signed size).

use super::files::{io_err, undecodable, write_atomic};
use super::{lock_poison, paths, Store};
use crate::{StoreError, StoreResult};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

/// A kept checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredCheckpoint {
    /// Tree size it signs.
    pub size: u64,
    /// When it was made (RFC 3339).
    pub time: String,
    /// The signed note.
    pub note: String,
}

/// Reads the kept checkpoints (an incomplete last line is ignored).
pub fn read_checkpoints(dir: &Path) -> StoreResult<(Vec<StoredCheckpoint>, u64)> {
    let p = paths::checkpoints(dir);
    let data = match std::fs::read(&p) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io_err(p.display())(e)),
    };
    let mut out = Vec::new();
    let mut good = 0u64;
    let mut pos = 0usize;
    let mut line_no = 0;
    while let Some(nl) = memchr::memchr(b'\n', &data[pos..]) {
        line_no += 1;
        let line = &data[pos..pos + nl];
        let cp: StoredCheckpoint = serde_json::from_slice(line).map_err(|e| {
            undecodable(
                format_args!("{}:{line_no}: not a checkpoint record", p.display()),
                e,
            )
        })?;
        out.push(cp);
        pos += nl + 1;
        good = pos as u64;
    }
    Ok((out, good))
}

impl Store {
    /// Kept checkpoints, oldest first.
    pub fn checkpoints(&self) -> Vec<StoredCheckpoint> {
        self.shared()
            .map(|s| s.checkpoints.clone())
            .unwrap_or_default()
    }

    /// The latest kept checkpoint.
    pub fn latest_checkpoint(&self) -> Option<StoredCheckpoint> {
        self.shared()
            .ok()
            .and_then(|s| s.checkpoints.last().cloned())
    }

    /// Writes a checkpoint if data arrived since the last one and the interval passed.
    pub fn maybe_checkpoint(&self) -> StoreResult<Option<StoredCheckpoint>> {
        {
            let w = self.writer.lock().map_err(lock_poison)?;
            if w.last_checkpoint.elapsed() < self.opts.checkpoint_interval {
                return Ok(None);
            }
        }
        self.checkpoint()
    }

    /// Writes a checkpoint for the durable tree now, unless it is already checkpointed.
    pub fn checkpoint(&self) -> StoreResult<Option<StoredCheckpoint>> {
        let Some(signer) = &self.signer else {
            return Err(StoreError::Key(
                "store opened without its signing key".into(),
            ));
        };
        let mut w = self.writer.lock().map_err(lock_poison)?;
        let size = self.sync.lock().map_err(lock_poison)?.durable;
        {
            let shared = self.shared()?;
            if shared.checkpoints.last().map_or(0, |c| c.size) >= size && size > 0 {
                return Ok(None);
            }
            if size == 0 {
                return Ok(None);
            }
        }
        let root = self.root_at(size)?;
        // Derived files first, so an open can trust them up to this size.
        self.shared()?.tree.sync().map_err(io_err("tree"))?;
        if let Some(f) = &w.dedupe_file {
            f.sync_data().map_err(io_err("dedupe index"))?;
        }
        let cp = StoredCheckpoint {
            size,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            note: signer.sign_checkpoint(size, &root),
        };
        let mut line = serde_json::to_vec(&cp).map_err(StoreError::Encode)?;
        line.push(b'\n');
        let p = paths::checkpoints(&self.dir);
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&p)
            .map_err(io_err(p.display()))?;
        f.write_all(&line).map_err(io_err(p.display()))?;
        f.sync_data().map_err(io_err(p.display()))?;
        if let Some(publish) = &self.opts.publish_checkpoint {
            write_atomic(publish, cp.note.as_bytes(), 0o644)?;
        }
        w.last_checkpoint = Instant::now();
        self.shared
            .write()
            .map_err(lock_poison)?
            .checkpoints
            .push(cp.clone());
        Ok(Some(cp))
    }

    /// Final checkpoint; call before dropping a writable store.
    pub fn close(self) -> StoreResult<Option<StoredCheckpoint>> {
        if self.opts.read_only {
            return Ok(None);
        }
        let (end, epoch) = {
            let w = self.writer.lock().map_err(lock_poison)?;
            (
                w.next_seq,
                self.epoch.load(std::sync::atomic::Ordering::SeqCst),
            )
        };
        self.wait_durable(end, epoch)?;
        self.checkpoint()
    }
}
