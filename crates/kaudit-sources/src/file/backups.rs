//! Finding the backups lumberjack (kube-apiserver's `--audit-log-path`
//! writer) leaves next to the active file.
//!
//! For an active file `dir/audit.log`, a rotation renames it to
//! `dir/audit-2026-01-02T15-04-05.000.log` (the rotation time, UTC by
//! default), and `--audit-log-compress` later replaces that with
//! `...log.gz`. The timestamp sorts as text in rotation order, so it is the
//! key that orders backups oldest to newest.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Bound on the backups considered in one directory: kube-apiserver keeps
/// `--audit-log-maxbackup` of them (default unlimited, usually tens).
pub(crate) const MAX_BACKUPS: usize = 100_000;

/// Length of lumberjack's `2006-01-02T15-04-05.000` timestamp.
const STAMP_LEN: usize = 23;

/// One backup of the active file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Backup {
    /// The rotation timestamp; orders backups oldest first.
    pub key: String,
    /// Where it is.
    pub path: PathBuf,
    /// Whether it is gzip-compressed (`.gz`).
    pub gz: bool,
}

/// How backups of one active file are named.
#[derive(Clone, Debug)]
pub(crate) struct Naming {
    dir: PathBuf,
    prefix: String,
    ext: String,
}

impl Naming {
    /// Derives the backup naming from the active file's path, as lumberjack
    /// does: the name is split at its last dot (Go's `filepath.Ext`).
    pub fn new(active: &Path) -> Result<Naming, String> {
        let name = active
            .file_name()
            .ok_or_else(|| format!("{}: not a file path", active.display()))?
            .to_str()
            .ok_or_else(|| format!("{}: file name is not UTF-8", active.display()))?;
        let (prefix, ext) = match name.rfind('.') {
            Some(i) => (&name[..i], &name[i..]),
            None => (name, ""),
        };
        let dir = match active.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Naming {
            dir,
            prefix: prefix.to_string(),
            ext: ext.to_string(),
        })
    }

    /// The directory holding the active file and its backups.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of a backup file name and whether it is compressed, or `None`
    /// when the name is not a backup of this active file.
    pub fn key_of(&self, file_name: &str) -> Option<(String, bool)> {
        let (rest, gz) = match file_name.strip_suffix(".gz") {
            Some(r) => (r, true),
            None => (file_name, false),
        };
        let rest = rest.strip_prefix(self.prefix.as_str())?.strip_prefix('-')?;
        let stamp = rest.strip_suffix(self.ext.as_str())?;
        is_stamp(stamp).then(|| (stamp.to_string(), gz))
    }

    /// Lists the backups oldest first. When both `x.log` and `x.log.gz`
    /// exist (compression in progress: the `.gz` is incomplete until the
    /// `.log` is removed), only the uncompressed one is listed. A missing
    /// directory lists as empty: the writer may not have created it yet.
    ///
    /// The directory is read twice and the two readings merged: reading a
    /// directory is not atomic, and one reading can miss a backup compressed
    /// meanwhile altogether (its `.gz` created where the reading had already
    /// passed, its `.log` removed before the reading got there). The `.log`
    /// is removed only once the `.gz` is complete, so the second reading,
    /// started after the first ended, sees the `.gz`. A `.log` seen only by
    /// the first reading may be gone when opened: callers list again then.
    pub fn list(&self) -> io::Result<Vec<Backup>> {
        let mut out = self.read_once()?;
        out.extend(self.read_once()?);
        // Uncompressed first among equal keys, so that dedup keeps it.
        out.sort_by(|a, b| a.key.cmp(&b.key).then(a.gz.cmp(&b.gz)));
        out.dedup_by(|later, earlier| later.key == earlier.key);
        Ok(out)
    }

    fn read_once(&self) -> io::Result<Vec<Backup>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out: Vec<Backup> = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((key, gz)) = self.key_of(name) else {
                continue;
            };
            if out.len() >= MAX_BACKUPS {
                return Err(io::Error::other(format!(
                    "{}: more than {MAX_BACKUPS} audit log backups; remove old ones (--audit-log-maxbackup)",
                    self.dir.display()
                )));
            }
            out.push(Backup {
                key,
                path: entry.path(),
                gz,
            });
        }
        Ok(out)
    }
}

/// Whether `s` has the shape `2006-01-02T15-04-05.000`.
fn is_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == STAMP_LEN
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 | 13 | 16 => c == b'-',
            10 => c == b'T',
            19 => c == b'.',
            _ => c.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_lumberjack() {
        let n = Naming::new(Path::new("/var/log/kube/audit.log")).unwrap();
        assert_eq!(
            n.key_of("audit-2026-01-02T15-04-05.000.log"),
            Some(("2026-01-02T15-04-05.000".into(), false))
        );
        assert_eq!(
            n.key_of("audit-2026-01-02T15-04-05.000.log.gz"),
            Some(("2026-01-02T15-04-05.000".into(), true))
        );
        assert_eq!(n.key_of("audit.log"), None);
        assert_eq!(n.key_of("audit.log.1"), None);
        assert_eq!(n.key_of("audit-2026-01-02T15-04-05.00.log"), None);
        assert_eq!(n.key_of("other-2026-01-02T15-04-05.000.log"), None);
        assert_eq!(n.key_of("audit-2026-01-02T15-04-05.000.txt"), None);
        let bare = Naming::new(Path::new("audit")).unwrap();
        assert_eq!(bare.dir(), Path::new("."));
        assert_eq!(
            bare.key_of("audit-2026-01-02T15-04-05.000"),
            Some(("2026-01-02T15-04-05.000".into(), false))
        );
    }

    #[test]
    fn listing_is_ordered_and_prefers_uncompressed() {
        let d = tempfile::tempdir().unwrap();
        let n = Naming::new(&d.path().join("audit.log")).unwrap();
        for name in [
            "audit-2026-01-02T15-04-07.000.log.gz",
            "audit-2026-01-02T15-04-05.000.log.gz",
            "audit-2026-01-02T15-04-06.000.log.gz",
            "audit-2026-01-02T15-04-06.000.log",
            "audit.log",
            "unrelated.txt",
        ] {
            fs::write(d.path().join(name), b"x").unwrap();
        }
        let got: Vec<(String, bool)> = n
            .list()
            .unwrap()
            .into_iter()
            .map(|b| (b.key, b.gz))
            .collect();
        assert_eq!(
            got,
            vec![
                ("2026-01-02T15-04-05.000".to_string(), true),
                ("2026-01-02T15-04-06.000".to_string(), false),
                ("2026-01-02T15-04-07.000".to_string(), true),
            ]
        );
        let missing = Naming::new(&d.path().join("nope/audit.log")).unwrap();
        assert!(missing.list().unwrap().is_empty());
    }
}
