//! The quarantine (dead-letter) area: items that arrived but are not valid
//! audit events are kept verbatim with the reason, durably, before the batch
//! is acknowledged. Nothing a sender gave us is silently dropped.
//!
//! Layout: `<data>/quarantine/quarantine.jsonl`, one JSON object per item:
//! `{"id","time","cluster","source","path","reason","raw"}` where `raw` holds
//! the item's bytes as a string when they are UTF-8 (`raw_base64` otherwise).
//! With encryption at rest on, each line is sealed instead (a
//! [`LineSealer`], the store's data key: see `kaudit_server::serve`). The
//! directory is made 0700 and the file 0600.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Seals and opens whole lines of a file kept at rest (the store's data key
/// in `kaudit serve`); this crate comes before the store, so it only knows
/// the trait.
pub trait LineSealer: Send + Sync {
    /// The sealed form of `plain` (one line, no newline in it).
    fn seal_line(&self, plain: &[u8]) -> Result<String, String>;
    /// The plain bytes of a sealed line.
    fn open_line(&self, line: &str) -> Result<Vec<u8>, String>;
}

/// One quarantined item.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QuarantineEntry {
    /// Position in the quarantine file, 1-based (what `quarantine show` takes).
    pub id: u64,
    /// When it was quarantined (RFC 3339, UTC).
    pub time: String,
    /// Cluster of the sender.
    pub cluster: String,
    /// Where it came from: `webhook`, `file:/path:LINE`, `import:/path:LINE`.
    pub source: String,
    /// JSON path of the item inside its batch (`.items[3]`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Why it was refused.
    pub reason: String,
    /// The bytes as they arrived, when valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// The bytes as they arrived, base64, when not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
}

impl QuarantineEntry {
    /// The original bytes.
    pub fn bytes(&self) -> Vec<u8> {
        match (&self.raw, &self.raw_base64) {
            (Some(s), _) => s.as_bytes().to_vec(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// An item to quarantine.
pub struct NewEntry<'a> {
    /// Cluster of the sender.
    pub cluster: &'a str,
    /// Where it came from.
    pub source: &'a str,
    /// JSON path inside the batch.
    pub path: Option<&'a str>,
    /// Why it was refused.
    pub reason: &'a str,
    /// Its bytes.
    pub raw: &'a [u8],
}

/// Errors of the quarantine area.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    /// Reading or writing the quarantine file failed.
    #[error("quarantine {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An entry could not be sealed with the encryption key.
    #[error("quarantine {path}: sealing an entry: {reason}")]
    Seal {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Keeping the entries would take the quarantine past its size limit.
    #[error("quarantine {path} is full: it holds {used} bytes and these entries need {need} more, over the {limit}-byte limit (ingest.max_quarantine); export and clear it, or raise the limit")]
    Full {
        /// The file.
        path: PathBuf,
        /// Bytes it holds.
        used: u64,
        /// Bytes the refused entries need.
        need: u64,
        /// The limit.
        limit: u64,
    },
    /// A line of the quarantine file is not an entry.
    #[error("quarantine {path}:{line}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// The parse error.
        reason: String,
    },
}

/// The quarantine file, appended durably, up to a size limit.
pub struct Quarantine {
    path: PathBuf,
    file: Mutex<Appender>,
    max_bytes: u64,
    sealer: Option<Arc<dyn LineSealer>>,
}

/// The open file, the entries it holds and its size.
struct Appender {
    file: Option<File>,
    count: u64,
    bytes: u64,
}

/// Default size limit of the quarantine file.
pub const DEFAULT_MAX_QUARANTINE: u64 = 1 << 30;

impl Quarantine {
    /// Opens (creating the directory lazily on first write) `<data>/quarantine`.
    pub fn open(data_dir: &Path) -> Result<Quarantine, QuarantineError> {
        Self::open_sealed(data_dir, None)
    }

    /// [`Quarantine::open`], sealing every new entry with `sealer` (and
    /// opening sealed ones with it) when given.
    pub fn open_sealed(
        data_dir: &Path,
        sealer: Option<Arc<dyn LineSealer>>,
    ) -> Result<Quarantine, QuarantineError> {
        let mut q = Self::open_plain(data_dir)?;
        q.sealer = sealer;
        Ok(q)
    }

    fn open_plain(data_dir: &Path) -> Result<Quarantine, QuarantineError> {
        let path = data_dir.join("quarantine").join("quarantine.jsonl");
        let (count, bytes) = if path.exists() {
            let f = File::open(&path).map_err(|source| QuarantineError::Io {
                path: path.clone(),
                source,
            })?;
            let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
            (BufReader::new(f).lines().count() as u64, bytes)
        } else {
            (0, 0)
        };
        Ok(Quarantine {
            path,
            file: Mutex::new(Appender {
                file: None,
                count,
                bytes,
            }),
            max_bytes: DEFAULT_MAX_QUARANTINE,
            sealer: None,
        })
    }

    /// Sets the size limit: an append that would take the file past it is
    /// refused with [`QuarantineError::Full`] (nothing written).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Bytes the quarantine file holds.
    pub fn bytes(&self) -> u64 {
        self.file.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    /// Appends entries and fsyncs before returning.
    pub fn append(
        &self,
        entries: &[NewEntry<'_>],
        now_rfc3339: &str,
    ) -> Result<(), QuarantineError> {
        if entries.is_empty() {
            return Ok(());
        }
        let io = |source| QuarantineError::Io {
            path: self.path.clone(),
            source,
        };
        let mut g = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if g.file.is_none() {
            use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
            if let Some(dir) = self.path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)
                .map_err(io)?;
            g.file = Some(f);
        }
        let mut buf = Vec::new();
        let mut id = g.count;
        for e in entries {
            id += 1;
            let (raw, raw_base64) = match std::str::from_utf8(e.raw) {
                Ok(s) => (Some(s.to_string()), None),
                Err(_) => (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(e.raw)),
                ),
            };
            let entry = QuarantineEntry {
                id,
                time: now_rfc3339.to_string(),
                cluster: e.cluster.to_string(),
                source: e.source.to_string(),
                path: e.path.map(str::to_string),
                reason: e.reason.to_string(),
                raw,
                raw_base64,
            };
            match &self.sealer {
                None => serde_json::to_writer(&mut buf, &entry).map_err(|e| io(e.into()))?,
                Some(s) => {
                    let plain = serde_json::to_vec(&entry).map_err(|e| io(e.into()))?;
                    let line = s
                        .seal_line(&plain)
                        .map_err(|reason| QuarantineError::Seal {
                            path: self.path.clone(),
                            reason,
                        })?;
                    buf.extend_from_slice(line.as_bytes());
                }
            }
            buf.push(b'\n');
        }
        let need = buf.len() as u64;
        if g.bytes.saturating_add(need) > self.max_bytes {
            return Err(QuarantineError::Full {
                path: self.path.clone(),
                used: g.bytes,
                need,
                limit: self.max_bytes,
            });
        }
        let f = g
            .file
            .as_mut()
            .ok_or_else(|| io(std::io::Error::other("not open")))?;
        f.write_all(&buf).map_err(io)?;
        f.sync_data().map_err(io)?;
        g.count = id;
        g.bytes += need;
        Ok(())
    }

    /// Number of quarantined items.
    pub fn count(&self) -> u64 {
        self.file.lock().unwrap_or_else(|p| p.into_inner()).count
    }

    /// Reads every entry.
    pub fn list(&self) -> Result<Vec<QuarantineEntry>, QuarantineError> {
        if !self.path.exists() {
            return Ok(Vec::new());
        }
        let f = File::open(&self.path).map_err(|source| QuarantineError::Io {
            path: self.path.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|source| QuarantineError::Io {
                path: self.path.clone(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let corrupt = |reason: String| QuarantineError::Corrupt {
                path: self.path.clone(),
                line: i as u64 + 1,
                reason,
            };
            let entry = if line.starts_with('{') {
                serde_json::from_str(&line).map_err(|e| corrupt(e.to_string()))?
            } else {
                let s = self.sealer.as_ref().ok_or_else(|| {
                    corrupt("the entry is encrypted: give the store's encryption key".into())
                })?;
                let plain = s.open_line(&line).map_err(corrupt)?;
                serde_json::from_slice(&plain).map_err(|e| corrupt(e.to_string()))?
            };
            out.push(entry);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_bytes_and_reasons_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::open(dir.path()).unwrap();
        q.append(
            &[
                NewEntry {
                    cluster: "prod",
                    source: "webhook",
                    path: Some(".items[1]"),
                    reason: "not a Kubernetes audit event: no stage",
                    raw: br#"{"auditID":"x"}"#,
                },
                NewEntry {
                    cluster: "prod",
                    source: "webhook",
                    path: None,
                    reason: "bad",
                    raw: &[0xff, 0x00, b'{'],
                },
            ],
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        let q = Quarantine::open(dir.path()).unwrap();
        assert_eq!(q.count(), 2);
        let all = q.list().unwrap();
        assert_eq!(all[0].bytes(), br#"{"auditID":"x"}"#);
        assert_eq!(all[0].path.as_deref(), Some(".items[1]"));
        assert_eq!(all[1].bytes(), [0xff, 0x00, b'{']);
        assert_eq!(all[1].id, 2);
    }

    #[test]
    fn a_full_quarantine_refuses_and_keeps_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let entry = |raw: &'static [u8]| NewEntry {
            cluster: "prod",
            source: "webhook",
            path: None,
            reason: "bad",
            raw,
        };
        let q = Quarantine::open(dir.path()).unwrap().with_max_bytes(300);
        q.append(&[entry(b"{}")], "2026-01-01T00:00:00Z").unwrap();
        let used = q.bytes();
        assert!(used > 0 && used < 300);
        let big = [b'x'; 400];
        let big: &'static [u8] = Box::leak(Box::new(big));
        let e = q.append(&[entry(big)], "2026-01-01T00:00:00Z").unwrap_err();
        assert!(matches!(e, QuarantineError::Full { limit: 300, .. }), "{e}");
        assert!(e.to_string().contains("ingest.max_quarantine"), "{e}");
        // The size survives a reopen; what was kept stays.
        let q = Quarantine::open(dir.path()).unwrap().with_max_bytes(300);
        assert_eq!((q.bytes(), q.count()), (used, 1));
        assert!(q.append(&[entry(big)], "t").is_err());
        assert_eq!(q.list().unwrap().len(), 1);
    }
}
