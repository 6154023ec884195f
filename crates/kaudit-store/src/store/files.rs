//! File helpers shared by the store, retention and verify: errors that name
//! the file, bounded reads of small files, atomic replacement.

use crate::{StoreError, StoreResult};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Turns an io error into [`StoreError::Io`] naming `what` (a path or a part
/// of the store), for `map_err`.
pub(crate) fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> StoreError {
    // Formatted only on failure: hot loops (a merge writes two fields per
    // key) pass `path.display()` on every call.
    move |source| StoreError::Io {
        context: what.to_string(),
        source,
    }
}

/// [`StoreError::Undecodable`]: `source` did not decode at `context` (file,
/// line or offset, record). Call it inside `map_err` closures so the context
/// is only formatted on failure (reads go through here per record).
pub(crate) fn undecodable<E>(context: impl std::fmt::Display, source: E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::Undecodable {
        context: context.to_string(),
        source: Box::new(source),
    }
}

/// Creates a directory (and its parents) readable by the owner only (0700).
pub(crate) fn private_dir(dir: &Path) -> StoreResult<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir.display()))
}

/// Reads a bounded small file.
pub(crate) fn read_small(path: &Path, limit: u64) -> StoreResult<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(io_err(path.display()))?;
    if meta.len() > limit {
        return Err(StoreError::Corrupt(format!(
            "{} is larger than {limit} bytes",
            path.display()
        )));
    }
    std::fs::read(path).map_err(io_err(path.display()))
}

/// Writes a file atomically (temp file, fsync, rename, dir fsync).
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> StoreResult<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err(tmp.display()))?;
        f.write_all(data).map_err(io_err(tmp.display()))?;
        f.sync_all().map_err(io_err(tmp.display()))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path.display()))?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
