//! The writer lock: one writable opener per data directory.

use super::files::io_err;
use super::paths;
use crate::{StoreError, StoreResult};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Takes `LOCK` with a non-blocking `flock`; the returned file holds it
/// until dropped (the kernel releases it if the process dies).
pub(super) fn take_lock(dir: &Path) -> StoreResult<File> {
    let p = paths::lock(dir);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .truncate(false)
        .open(&p)
        .map_err(io_err(p.display()))?;
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a valid, owned descriptor has no memory effects.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(StoreError::Locked(dir.display().to_string()));
    }
    Ok(f)
}
