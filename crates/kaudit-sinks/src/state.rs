//! A sink's files under `<data>/sinks/`: its cursor (with the counters as of
//! the last save, so `kaudit sinks status` can report without the server) and
//! its dead letters.

use crate::SinkError;
use kaudit_store::crypt::Cipher;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What `<name>.cursor` holds. Written (temp file, fsync, rename) only after
/// the destination acknowledged everything before `next`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CursorState {
    /// The sink's type (`webhook`, ...), for status reports.
    pub kind: String,
    /// The next sequence number to send; everything before it was delivered,
    /// dead-lettered or filtered out.
    pub next: u64,
    /// Size of the last checkpoint forwarded.
    pub checkpoint_size: u64,
    /// Events delivered (all time).
    pub sent: u64,
    /// Events dead-lettered (all time).
    pub failed: u64,
    /// Failed attempts that were retried (all time).
    pub retries: u64,
    /// The last error seen, if the last attempt failed.
    pub last_error: Option<String>,
    /// When this was saved (RFC 3339).
    pub updated: String,
}

/// One dead letter: an event the destination refused for good.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Sequence number of the event.
    pub seq: u64,
    /// Why it was refused (the destination's words).
    pub reason: String,
    /// The event bytes as the sink tried to send them.
    pub event: String,
}

/// Associated data dead letters are sealed with when encryption at rest is
/// on (see [`kaudit_store::crypt::Cipher::seal_line`]).
pub const DEAD_LETTER_PURPOSE: &str = "kaudit dead letter";

/// The sink area of a data directory.
#[derive(Clone, Debug)]
pub struct SinkDir {
    dir: PathBuf,
    cipher: Option<Arc<Cipher>>,
}

fn io(path: &Path, e: impl std::fmt::Display) -> SinkError {
    SinkError::Io(format!("{}: {e}", path.display()))
}

impl SinkDir {
    /// `<data>/sinks`.
    pub fn new(data: &Path) -> SinkDir {
        SinkDir {
            dir: data.join("sinks"),
            cipher: None,
        }
    }

    /// Seals dead letters with `cipher` (the store's data key): they hold
    /// whole events, so encryption at rest must cover them too.
    pub fn sealed(mut self, cipher: Option<Arc<Cipher>>) -> SinkDir {
        self.cipher = cipher;
        self
    }

    /// The cursor file of a sink.
    pub fn cursor_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.cursor"))
    }

    /// The dead-letter file of a sink.
    pub fn dead_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.dead"))
    }

    /// The saved state; a sink never saved starts at 0.
    pub fn load(&self, name: &str) -> Result<CursorState, SinkError> {
        let p = self.cursor_path(name);
        match std::fs::read(&p) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|e| io(&p, format!("bad cursor file: {e}")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CursorState::default()),
            Err(e) => Err(io(&p, e)),
        }
    }

    /// Saves the state durably (temp file, fsync, rename, fsync of the directory).
    pub fn save(&self, name: &str, st: &CursorState) -> Result<(), SinkError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let p = self.cursor_path(name);
        let tmp = self.dir.join(format!("{name}.cursor.tmp"));
        let body = serde_json::to_vec(st).map_err(|e| io(&p, e))?;
        let mut f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(&body).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| io(&p, e))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Appends dead letters durably (before the cursor passes them).
    pub fn dead_letter(&self, name: &str, letters: &[DeadLetter]) -> Result<(), SinkError> {
        if letters.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let p = self.dead_path(name);
        let mut buf = Vec::new();
        for l in letters {
            let plain = serde_json::to_vec(l).map_err(|e| io(&p, e))?;
            match &self.cipher {
                Some(c) => buf.extend_from_slice(
                    c.seal_line(&plain, DEAD_LETTER_PURPOSE)
                        .map_err(|e| io(&p, e))?
                        .as_bytes(),
                ),
                None => buf.extend_from_slice(&plain),
            }
            buf.push(b'\n');
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| io(&p, e))?;
        f.write_all(&buf).map_err(|e| io(&p, e))?;
        f.sync_data().map_err(|e| io(&p, e))
    }

    /// Names of the sinks that have a cursor file, sorted.
    pub fn names(&self) -> Result<Vec<String>, SinkError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir, e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| io(&self.dir, e))?;
            if let Some(n) = ent
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".cursor"))
            {
                out.push(n.to_string());
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_starts_at_zero() {
        let d = tempfile::tempdir().unwrap();
        let s = SinkDir::new(d.path());
        assert_eq!(s.load("a").unwrap().next, 0);
        let st = CursorState {
            next: 42,
            sent: 40,
            failed: 2,
            ..Default::default()
        };
        s.save("a", &st).unwrap();
        assert_eq!(s.load("a").unwrap(), st);
        assert_eq!(s.names().unwrap(), vec!["a".to_string()]);
        std::fs::write(s.cursor_path("b"), b"{not json").unwrap();
        let e = s.load("b").unwrap_err().to_string();
        assert!(
            e.contains("b.cursor") && e.contains("bad cursor file"),
            "{e}"
        );
    }
}
