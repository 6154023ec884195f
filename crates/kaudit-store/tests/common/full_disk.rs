//! What a test that must fill a disk needs: a small tmpfs, unmounted on
//! drop, and incompressible padding. Shared by the store's and the server's full-disk tests (included
//! with `#[path]`). Needs root: CI runs as root; elsewhere the test fails
//! loudly unless `KAUDIT_SKIP_ROOT_TESTS` is set.

use std::path::PathBuf;

/// A mounted tmpfs, unmounted on drop.
pub struct Tmpfs {
    /// The mount point.
    pub dir: PathBuf,
    _holder: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `16m`), or explains loudly why not.
    pub fn mount(size: &str) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let msg =
                "THIS TEST NEEDS ROOT: it mounts a small tmpfs to fill the disk (CI runs as root)";
            if std::env::var_os("KAUDIT_SKIP_ROOT_TESTS").is_some() {
                eprintln!("!!!!! SKIPPED: {msg} (KAUDIT_SKIP_ROOT_TESTS is set) !!!!!");
                return None;
            }
            panic!("{msg}; set KAUDIT_SKIP_ROOT_TESTS=1 to skip it knowingly");
        }
        let holder = tempfile::tempdir().unwrap();
        let dir = holder.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("running mount");
        assert!(st.success(), "mount -t tmpfs failed: {st}");
        Some(Tmpfs {
            dir,
            _holder: holder,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// `len` hex digits of xorshift noise seeded by `i`: padding that
/// compression cannot shrink away, so a few MiB of events fill a disk.
pub fn noise(i: u64, len: usize) -> String {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut pad = String::with_capacity(len + 16);
    while pad.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pad.push_str(&format!("{x:016x}"));
    }
    pad.truncate(len);
    pad
}
