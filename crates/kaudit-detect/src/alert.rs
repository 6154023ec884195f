//! Alerts as kept: each with the sequence number of the event that raised it
//! (which the Merkle tree covers, so an alert can always be proven against
//! the log), in `<data>/alerts/alerts.jsonl`, fsync'd before the detector's
//! position moves. With encryption at rest on, each line is sealed with the
//! store's data key ([`AlertLog::sealed`]); the directory is 0700, its files
//! 0600.

use crate::DetectError;
use kaudit_rules::Alert;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Associated data alert lines are sealed with.
const ALERTS_PURPOSE: &str = "kaudit alerts";

/// An alert as kept in the alerts file and served by `GET /api/v1/alerts`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StoredAlert {
    /// Sequence number (leaf index) of the event that fired it.
    pub seq: u64,
    /// Cluster of the event.
    pub cluster: String,
    /// auditID of the event.
    pub audit_id: String,
    /// Rule name.
    pub rule: String,
    /// Priority (Falco's names).
    pub priority: String,
    /// Event time, RFC 3339 (as the event claims it: the sender chooses it).
    pub time: String,
    /// When kaudit received the event, RFC 3339 (kaudit's own clock, which
    /// throttling uses). Lines written before it existed lack it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<String>,
    /// The rendered output.
    pub output: String,
    /// Output fields (`null` for fields the event lacks).
    pub output_fields: serde_json::Map<String, serde_json::Value>,
    /// Rule tags.
    pub tags: Vec<String>,
}

impl StoredAlert {
    /// The alert `a` raised by record `seq` of `cluster`, received at `received`.
    pub fn new(
        seq: u64,
        cluster: &str,
        received: kaudit_event::MicroTime,
        a: &Alert,
    ) -> StoredAlert {
        StoredAlert {
            seq,
            cluster: cluster.to_string(),
            audit_id: a.audit_id.clone(),
            rule: a.rule.clone(),
            priority: a.priority.as_str().to_string(),
            time: a.time.to_string(),
            received: Some(received.to_string()),
            output: a.output.clone(),
            output_fields: a
                .output_fields
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_ref().map_or(serde_json::Value::Null, |s| {
                            serde_json::Value::String(s.clone())
                        }),
                    )
                })
                .collect(),
            tags: a.tags.clone(),
        }
    }

    /// The time throttling goes by: when kaudit received the event (which
    /// a sender cannot forge), or, for lines written before that was kept,
    /// the event's own time; `None` when neither parses.
    pub fn throttle_time(&self) -> Option<kaudit_event::MicroTime> {
        self.received
            .as_deref()
            .and_then(|r| kaudit_event::MicroTime::parse(r).ok())
            .or_else(|| kaudit_event::MicroTime::parse(&self.time).ok())
    }
}

/// Which kept alerts to list (the API's and `kaudit alerts`' filters).
#[derive(Clone, Debug, Default)]
pub struct AlertQuery {
    /// Only alerts for events at or after this time.
    pub since: Option<kaudit_event::MicroTime>,
    /// Only this rule.
    pub rule: Option<String>,
    /// Only this priority (any case).
    pub priority: Option<String>,
    /// At most this many.
    pub limit: usize,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> DetectError {
    DetectError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The alerts area: `alerts.jsonl` and the detector's cursor.
pub struct AlertLog {
    dir: PathBuf,
    cipher: Option<Arc<kaudit_store::crypt::Cipher>>,
}

fn make_dir(dir: &Path) -> Result<(), DetectError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err(dir, e))
}

fn private_file(p: &Path, append: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.create(true).mode(0o600);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    o.open(p)
}

impl AlertLog {
    /// `<data>/alerts`.
    pub fn new(data: &Path) -> AlertLog {
        AlertLog {
            dir: data.join("alerts"),
            cipher: None,
        }
    }

    /// Seals new alert lines with `cipher` (the store's data key), and opens
    /// sealed ones with it, when given.
    pub fn sealed(mut self, cipher: Option<Arc<kaudit_store::crypt::Cipher>>) -> AlertLog {
        self.cipher = cipher;
        self
    }

    /// Decodes one line of the alerts file, sealed or plain.
    pub fn decode_line(&self, line: &[u8]) -> Result<StoredAlert, String> {
        if line.first() == Some(&b'{') {
            return serde_json::from_slice(line).map_err(|e| e.to_string());
        }
        let text = std::str::from_utf8(line).map_err(|e| e.to_string())?;
        let c = self
            .cipher
            .as_ref()
            .ok_or("the alert is encrypted: give the store's encryption key")?;
        let plain = c
            .open_line(text, ALERTS_PURPOSE)
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&plain).map_err(|e| e.to_string())
    }

    /// The alerts file (`alerts.jsonl`), which notifiers follow.
    pub fn alerts_path(&self) -> PathBuf {
        self.dir.join("alerts.jsonl")
    }

    /// The directory (`<data>/alerts`), where notifiers keep their positions.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn cursor_path(&self) -> PathBuf {
        self.dir.join("cursor")
    }

    /// The next sequence number to evaluate.
    pub fn cursor(&self) -> Result<u64, DetectError> {
        let p = self.cursor_path();
        match std::fs::read_to_string(&p) {
            Ok(s) => s
                .trim()
                .parse()
                .map_err(|e| io_err(&p, format!("bad cursor: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    /// Makes `next` the detector's position (written, fsync'd, renamed).
    pub fn save_cursor(&self, next: u64) -> Result<(), DetectError> {
        let p = self.cursor_path();
        make_dir(&self.dir)?;
        let tmp = self.dir.join("cursor.tmp");
        let mut f = private_file(&tmp, false).map_err(|e| io_err(&tmp, e))?;
        f.write_all(next.to_string().as_bytes())
            .map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| io_err(&p, e))
    }

    /// Appends alerts durably. Alerts of events past a crash's cursor may be
    /// appended again on restart; readers drop repeats by (seq, rule).
    pub fn append(&self, alerts: &[StoredAlert]) -> Result<(), DetectError> {
        if alerts.is_empty() {
            return Ok(());
        }
        make_dir(&self.dir)?;
        let p = self.alerts_path();
        let mut f = private_file(&p, true).map_err(|e| io_err(&p, e))?;
        let mut buf = Vec::new();
        for a in alerts {
            match &self.cipher {
                None => serde_json::to_writer(&mut buf, a).map_err(|e| io_err(&p, e))?,
                Some(c) => {
                    let plain = serde_json::to_vec(a).map_err(|e| io_err(&p, e))?;
                    let line = c
                        .seal_line(&plain, ALERTS_PURPOSE)
                        .map_err(|e| io_err(&p, e))?;
                    buf.extend_from_slice(line.as_bytes());
                }
            }
            buf.push(b'\n');
        }
        f.write_all(&buf).map_err(|e| io_err(&p, e))?;
        f.sync_data().map_err(|e| io_err(&p, e))
    }

    /// The kept alerts `q` asks for, newest first.
    pub fn query(&self, q: &AlertQuery) -> Result<Vec<StoredAlert>, DetectError> {
        Ok(self
            .list()?
            .into_iter()
            .rev()
            .filter(|a| q.rule.as_ref().is_none_or(|r| &a.rule == r))
            .filter(|a| {
                q.priority
                    .as_ref()
                    .is_none_or(|p| a.priority.eq_ignore_ascii_case(p))
            })
            .filter(|a| {
                q.since.is_none_or(|s| {
                    kaudit_event::MicroTime::parse(&a.time)
                        .map(|t| t >= s)
                        .unwrap_or(true)
                })
            })
            .take(q.limit)
            .collect())
    }

    /// Every kept alert, oldest first, each (seq, rule) once.
    pub fn list(&self) -> Result<Vec<StoredAlert>, DetectError> {
        let p = self.alerts_path();
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&p, e)),
        };
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| io_err(&p, e))?;
            if line.trim().is_empty() {
                continue;
            }
            if self.cipher.is_none() && line.starts_with(kaudit_store::crypt::SEALED_LINE_PREFIX) {
                return Err(io_err(
                    &p,
                    format!(
                        "line {}: alerts are encrypted at rest; give the store's encryption key",
                        i + 1
                    ),
                ));
            }
            // A torn last line after a crash is skipped, not fatal.
            let Ok(a) = self.decode_line(line.as_bytes()) else {
                tracing::warn!(file = %p.display(), line = i + 1, "skipping an unreadable alert line");
                continue;
            };
            if seen.insert((a.seq, a.rule.clone())) {
                out.push(a);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::throttle::tests::alert;

    #[test]
    fn alert_log_keeps_alerts_and_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let log = AlertLog::new(dir.path());
        assert_eq!(log.cursor().unwrap(), 0);
        // The cursor can move before any alert exists (quiet traffic).
        log.save_cursor(1).unwrap();
        assert_eq!(log.cursor().unwrap(), 1);
        log.append(&[alert("R", "a", 1), alert("R", "a", 2)])
            .unwrap();
        // A replay after a crash appends the same alert again: listed once.
        log.append(&[alert("R", "a", 2)]).unwrap();
        log.save_cursor(3).unwrap();
        assert_eq!(log.cursor().unwrap(), 3);
        let all = log.list().unwrap();
        assert_eq!(all.iter().map(|a| a.seq).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn sealed_alert_log_keeps_no_names_in_plain_text_and_private_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = [7u8; 32];
        let cipher = Arc::new(kaudit_store::crypt::Cipher::new(&key));
        let log = AlertLog::new(dir.path()).sealed(Some(cipher));
        log.append(&[alert("R", "zed-secret-user", 1)]).unwrap();
        log.save_cursor(2).unwrap();
        let raw = std::fs::read(log.alerts_path()).unwrap();
        assert!(memchr::memmem::find(&raw, b"zed-secret-user").is_none());
        assert_eq!(
            log.list().unwrap()[0].output_fields["ka.user.name"],
            "zed-secret-user"
        );
        // Without the key, the sealed line is not readable, and the reader
        // says so instead of answering "no alerts".
        let err = AlertLog::new(dir.path()).list().unwrap_err().to_string();
        assert!(err.contains("encryption key"), "{err}");
        let other = Arc::new(kaudit_store::crypt::Cipher::new(&[8u8; 32]));
        let wrong = AlertLog::new(dir.path()).sealed(Some(other));
        assert!(wrong.decode_line(raw.trim_ascii_end()).is_err());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(log.dir()), 0o700);
        assert_eq!(mode(&log.alerts_path()), 0o600);
        assert_eq!(mode(&log.dir().join("cursor")), 0o600);
    }
}
