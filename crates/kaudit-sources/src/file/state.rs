//! The tailer's persisted position, written atomically so that a crash at
//! any instant leaves either the old or the new position on disk.

use super::TailError;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Version of the state file layout.
const STATE_VERSION: u32 = 1;
/// Bound on the state file: it holds a few hundred bytes.
const MAX_STATE_BYTES: u64 = 64 << 10;

/// Identity of a file while it exists: device and inode numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// Length and SHA-256 of one line (without its newline): enough to check
/// that the bytes before an offset are still the ones that were read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LineMark {
    pub len: u64,
    #[serde(with = "hex_digest")]
    pub sha256: [u8; 32],
}

/// Where a file stands in the sequence backups-then-active-file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Rank {
    /// The file was the active one when opened; `after` is the newest backup
    /// key that existed then, so its own backup (once rotated) is the oldest
    /// backup newer than `after`.
    Active { after: Option<String> },
    /// A backup, identified by its rotation key.
    Backup { key: String },
}

/// A point in the followed log, just after a complete line: what
/// [`FileTailer::commit`](super::FileTailer::commit) persists. Opaque to
/// callers except for the accessors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub(crate) file: FileId,
    pub(crate) rank: Rank,
    pub(crate) offset: u64,
    pub(crate) line: u64,
    pub(crate) last: Option<LineMark>,
    pub(crate) source: String,
}

impl Position {
    /// Byte offset in the file, just after the last line of the batch.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// Number of complete lines of the file before [`Position::offset`].
    pub fn line(&self) -> u64 {
        self.line
    }
    /// The file the position is in, as it was named when read.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// The state file's content.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StateFile {
    pub version: u32,
    pub path: PathBuf,
    pub cluster: String,
    pub position: Position,
}

impl StateFile {
    pub fn new(path: &Path, cluster: &str, position: Position) -> StateFile {
        StateFile {
            version: STATE_VERSION,
            path: path.to_path_buf(),
            cluster: cluster.to_string(),
            position,
        }
    }
}

/// Reads the state file; `None` when there is none (first start).
pub(crate) fn load(path: &Path) -> Result<Option<StateFile>, TailError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TailError::io(path, "open state file", e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| TailError::io(path, "read state file", e))?;
    if bytes.len() as u64 > MAX_STATE_BYTES {
        return Err(TailError::State {
            path: path.to_path_buf(),
            reason: format!("larger than {MAX_STATE_BYTES} bytes: not a kaudit tail state"),
        });
    }
    let state: StateFile = serde_json::from_slice(&bytes).map_err(|e| TailError::State {
        path: path.to_path_buf(),
        reason: format!("unreadable ({e}); delete it to start again from the active file (events may be read twice)"),
    })?;
    if state.version != STATE_VERSION {
        return Err(TailError::State {
            path: path.to_path_buf(),
            reason: format!(
                "version {} is not supported (want {STATE_VERSION})",
                state.version
            ),
        });
    }
    Ok(Some(state))
}

/// Writes the state file atomically: a temporary file in the same
/// directory, fsync, rename over the old one, fsync of the directory.
pub(crate) fn store(path: &Path, state: &StateFile) -> Result<(), TailError> {
    let bytes = serde_json::to_vec(state).map_err(|e| TailError::State {
        path: path.to_path_buf(),
        reason: format!("cannot encode: {e}"),
    })?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| TailError::io(&tmp, "create temporary state file", e))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| TailError::io(&tmp, "write temporary state file", e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| TailError::io(path, "rename state file into place", e))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| TailError::io(dir, "fsync state directory", e))
}

mod hex_digest {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}
