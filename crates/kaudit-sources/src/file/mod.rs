//! Rotation-safe following of kube-apiserver's audit log file
//! (`--audit-log-path`), so that every line is ingested exactly once across
//! rotations, truncations and kaudit's own restarts.
//!
//! # Model
//!
//! The followed log is a sequence of files: lumberjack's backups, oldest
//! first (`audit-<rotation time>.log`, possibly `.gz`), then the active file.
//! The tailer reads one file at a time, complete lines only, and hands out
//! [`Batch`]es whose [`Position`] the caller [commits](FileTailer::commit)
//! once the events are durable. A restart resumes at the committed position:
//! delivery to the caller is at-least-once (uncommitted batches come again)
//! and the caller deduplicates by audit ID and stage.
//!
//! A position names the file by device and inode, by its place in the
//! sequence ([`Rank`](state::Rank)), and by the SHA-256 of the line ending at
//! the offset, so that a restart can tell the file it was reading from one
//! that replaced it, and find it again after it was renamed or compressed.
//!
//! # What is followed
//!
//! * **Rename rotation (lumberjack).** The active file is checked on every
//!   poll; when the path names another inode (or nothing), the old file is
//!   read to its end through the descriptor still open, then the backups
//!   newer than it, then the new active file from offset 0.
//! * **Rotation while kaudit is down.** The committed file is found among the
//!   backups: uncompressed by inode, compressed by decompressing it and
//!   checking the committed last line at the committed offset; its remainder
//!   is read, then every newer backup oldest first, then the active file.
//! * **copytruncate (logrotate).** When the file shrinks below what was read,
//!   or the line before the offset no longer matches, the file is read again
//!   from offset 0. Lines the writer wrote between logrotate's copy and its
//!   truncate and that kaudit had not yet read exist only in the copy
//!   (`audit.log.1`); kaudit does not follow copies, import them with
//!   `kaudit import` if that window matters. Nothing else is lost.
//! * **Bad lines** (not JSON, not an event, longer than `max_line`, or a
//!   rotated file's unterminated last line) are returned as [`BadLine`]s with
//!   their location and raw bytes, for quarantine; tailing goes on.
//!
//! Following is by polling: the caller calls [`FileTailer::poll`] every
//! [`TailConfig::poll_interval`] from a blocking task (no inotify: one
//! `stat` and one `read` per poll cost nothing at audit-log rates, and
//! polling works on every filesystem, including network and overlay ones).
//!
//! Limits: a line is at most `max_line` bytes in memory (longer ones are
//! skipped and reported with their first `max_line` bytes); a batch holds at
//! most `max_batch` items; at most [`backups::MAX_BACKUPS`] backups are
//! considered.
//!
//! Backups are recognised by lumberjack's naming only. logrotate's
//! rename-and-create mode (`audit.log.1`) is followed while kaudit runs (the
//! renamed file is read to its end through the open descriptor), but its
//! unread remainder is not found again after a restart; prefer lumberjack or
//! copytruncate.
//!
//! Known limit: backups deleted (`--audit-log-maxbackup`, `--audit-log-maxage`)
//! before kaudit reads them are lost to it; so is a compressed backup that
//! is deleted before the next poll after its rotation.

mod backups;
mod lines;
mod source;
mod state;

pub use source::{FileSource, FileSourceConfig, SOURCE_LAG_BYTES};
pub use state::Position;

use backups::{Backup, Naming};
use kaudit_event::reader::Location;
use kaudit_event::{Event, EventError};
use lines::{Collected, Limits, Lines, Stream};
use state::{FileId, Rank, StateFile};
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest accepted `max_line`.
pub const MAX_LINE_LIMIT: usize = 1 << 30;
/// Largest accepted `max_batch`.
pub const MAX_BATCH_LIMIT: usize = 1 << 20;
/// File switches one poll may make before returning (a long run of empty
/// backups is worked through over several polls).
const MAX_SWITCHES_PER_POLL: usize = 64;
/// Lines up to this length are re-read on every poll to detect an in-place
/// truncation; longer ones only when the file's size or mtime changed.
const VERIFY_EVERY_POLL_MAX: u64 = 64 << 10;
/// Attempts at listing-opening-listing before accepting a racing rotation.
const OPEN_ATTEMPTS: usize = 8;

/// What to follow and how.
#[derive(Clone, Debug)]
pub struct TailConfig {
    /// The active log file (kube-apiserver's `--audit-log-path`).
    pub path: PathBuf,
    /// The cluster the file's events belong to (recorded in the state so a
    /// state file cannot be reused for another cluster by mistake).
    pub cluster: String,
    /// Where the committed position is kept.
    pub state_path: PathBuf,
    /// Longest line kept in memory; longer lines become [`BadLine`]s.
    pub max_line: usize,
    /// Most items (events plus bad lines) per [`Batch`].
    pub max_batch: usize,
    /// How often the caller should poll (kept here for the caller's loop).
    pub poll_interval: Duration,
}

impl TailConfig {
    /// A configuration with kaudit's defaults: 4 MiB lines, 1000-event
    /// batches, polling every 250 ms.
    pub fn new(path: PathBuf, cluster: String, state_path: PathBuf) -> TailConfig {
        TailConfig {
            path,
            cluster,
            state_path,
            max_line: kaudit_event::reader::DEFAULT_MAX_LINE,
            max_batch: 1000,
            poll_interval: Duration::from_millis(250),
        }
    }
}

/// Why a line is not an event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadLineError {
    /// Not JSON, or not an audit event.
    #[error(transparent)]
    Event(#[from] EventError),
    /// Longer than the limit; `raw` holds its first `limit` bytes.
    #[error("line of {len} bytes is longer than the limit of {limit} bytes")]
    TooLong {
        /// The line's full length.
        len: u64,
        /// The limit in force.
        limit: usize,
    },
    /// A compressed backup is corrupt from this line on; what follows in it
    /// is lost (`raw` is empty). The tailer goes on with the next file.
    #[error("corrupt compressed file: {reason}")]
    CorruptFile {
        /// The decompressor's error.
        reason: String,
    },
    /// The last line of a rotated-away file has no newline (the writer
    /// stopped mid-line); `raw` holds it (at most `max_line` bytes).
    #[error("rotated file ends with an unterminated line of {len} bytes")]
    Unterminated {
        /// The partial line's length.
        len: u64,
    },
}

/// A compressed backup that stopped decompressing.
struct Corrupt {
    reason: String,
    /// Whether the [`BadLineError::CorruptFile`] was handed out.
    reported: bool,
}

fn is_corrupt_gzip(stream: &Stream, e: &io::Error) -> bool {
    matches!(stream, Stream::Gz(_))
        && matches!(
            e.kind(),
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof
        )
}

/// A line that is not a usable event: where it is, why, and its bytes for
/// quarantine.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    /// File and 1-based line number.
    pub location: Location,
    /// What is wrong with it.
    pub error: BadLineError,
    /// The line's bytes (without newline), at most `max_line` of them.
    pub raw: Vec<u8>,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.error)
    }
}

/// What one poll read: consecutive lines of one file.
#[derive(Debug)]
pub struct Batch {
    /// The events, in file order.
    pub events: Vec<Event>,
    /// The lines that are not events, in file order.
    pub bad_lines: Vec<BadLine>,
    /// Where the file stands after this batch; commit it once the events
    /// (and the bad lines' quarantine) are durable.
    pub position: Position,
}

/// Why tailing could not proceed. Polling again later retries.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// A file-system operation failed.
    #[error("{}: cannot {op}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The state file is unusable or belongs to another log.
    #[error("tail state {}: {reason}", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration is invalid.
    #[error("tail configuration: {0}")]
    Config(String),
}

impl TailError {
    fn io(path: &Path, op: &'static str, source: io::Error) -> TailError {
        TailError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}

/// The file being read.
struct Source {
    /// Its name in locations: the path it had when found.
    name: String,
    stream: Stream,
    file: FileId,
    rank: Rank,
    lines: Lines,
    /// For an active file, set once it has been rotated away: the key after
    /// which the next file is looked for.
    rotated: Option<Option<String>>,
    /// Set when a compressed backup failed to decompress.
    corrupt: Option<Corrupt>,
    /// Size and mtime of the active file at the last truncation check.
    seen: Option<(u64, i64, i64)>,
}

impl Source {
    fn position(&self) -> Position {
        Position {
            file: self.file,
            rank: self.rank.clone(),
            offset: self.lines.boundary,
            line: self.lines.line_no,
            last: self.lines.last,
            source: self.name.clone(),
        }
    }

    /// Whether no more bytes will ever be appended.
    fn is_final(&self) -> bool {
        matches!(self.rank, Rank::Backup { .. }) || self.rotated.is_some()
    }

    /// The key after which the next file is looked for, once this one is done.
    fn next_after(&self) -> Option<String> {
        match (&self.rank, &self.rotated) {
            (Rank::Backup { key }, _) => Some(key.clone()),
            (Rank::Active { .. }, Some(after)) => after.clone(),
            (Rank::Active { after }, None) => after.clone(),
        }
    }
}

/// Follows one audit log file and its rotations. See the [module
/// docs](self).
pub struct FileTailer {
    cfg: TailConfig,
    naming: Naming,
    source: Option<Source>,
    /// With no source open: the next file is the oldest backup newer than
    /// this key, or else the active file.
    after: Option<String>,
    lag: u64,
}

fn file_id(m: &fs::Metadata) -> FileId {
    FileId {
        dev: m.dev(),
        ino: m.ino(),
    }
}

fn newest(list: &[Backup]) -> Option<String> {
    list.last().map(|b| b.key.clone())
}

impl FileTailer {
    /// Opens the tailer: resumes from the state file when there is one,
    /// else starts at offset 0 of the active file (existing backups are
    /// not read: import them with `kaudit import`). A missing active file
    /// is waited for.
    pub fn open(cfg: TailConfig) -> Result<FileTailer, TailError> {
        if cfg.max_line == 0 || cfg.max_line > MAX_LINE_LIMIT {
            return Err(TailError::Config(format!(
                "max_line must be between 1 and {MAX_LINE_LIMIT}, got {}",
                cfg.max_line
            )));
        }
        if cfg.max_batch == 0 || cfg.max_batch > MAX_BATCH_LIMIT {
            return Err(TailError::Config(format!(
                "max_batch must be between 1 and {MAX_BATCH_LIMIT}, got {}",
                cfg.max_batch
            )));
        }
        let naming = Naming::new(&cfg.path).map_err(TailError::Config)?;
        let saved = state::load(&cfg.state_path)?;
        let mut tailer = FileTailer {
            cfg,
            naming,
            source: None,
            after: None,
            lag: 0,
        };
        match saved {
            Some(st) => {
                if st.path != tailer.cfg.path || st.cluster != tailer.cfg.cluster {
                    return Err(TailError::State {
                        path: tailer.cfg.state_path.clone(),
                        reason: format!(
                            "it belongs to {} of cluster {:?}, not {} of cluster {:?}",
                            st.path.display(),
                            st.cluster,
                            tailer.cfg.path.display(),
                            tailer.cfg.cluster
                        ),
                    });
                }
                tailer.resume(st.position)?;
            }
            None => tailer.start_fresh()?,
        }
        Ok(tailer)
    }

    /// First start: the active file from offset 0 (or, while it does not
    /// exist, whatever appears after the backups existing now). The start is
    /// committed at once, so that a restart before the first commit still
    /// reads what was rotated away meanwhile.
    fn start_fresh(&mut self) -> Result<(), TailError> {
        for _ in 0..OPEN_ATTEMPTS {
            let list = self.list()?;
            match self.open_active(&list)? {
                ActiveOpen::Raced => continue,
                ActiveOpen::Missing => {
                    self.after = newest(&list);
                    let pos = Position {
                        file: FileId { dev: 0, ino: 0 },
                        rank: Rank::Active {
                            after: self.after.clone(),
                        },
                        offset: 0,
                        line: 0,
                        last: None,
                        source: self.cfg.path.display().to_string(),
                    };
                    return self.commit(&pos);
                }
                ActiveOpen::Opened(file, id) => {
                    let src = self.active_source(file, id, 0, 0, None, newest(&list));
                    let pos = src.position();
                    self.source = Some(src);
                    return self.commit(&pos);
                }
            }
        }
        Err(TailError::Io {
            path: self.cfg.path.clone(),
            op: "open",
            source: io::Error::other("the file keeps being rotated while it is opened"),
        })
    }

    /// Reads what is available now: complete lines only (a partial last line
    /// waits for its newline), at most `max_batch` items, from one file.
    /// `None` when there is nothing new.
    pub fn poll(&mut self) -> Result<Option<Batch>, TailError> {
        let limits = Limits {
            max_line: self.cfg.max_line,
            max_items: self.cfg.max_batch,
        };
        for _ in 0..MAX_SWITCHES_PER_POLL {
            if self.source.is_none() && !self.open_next()? {
                self.lag = 0;
                return Ok(None);
            }
            self.check_active()?;
            let Some(src) = self.source.as_mut() else {
                continue;
            };
            let mut out = Collected::default();
            if src.corrupt.is_none() {
                if let Err(e) = src
                    .lines
                    .read_batch(&mut src.stream, limits, &src.name, &mut out)
                {
                    if is_corrupt_gzip(&src.stream, &e) {
                        tracing::error!(file = %src.name, error = %e, "corrupt compressed audit log backup: the rest of it cannot be read");
                        src.corrupt = Some(Corrupt {
                            reason: e.to_string(),
                            reported: false,
                        });
                    } else if out.is_empty() {
                        return Err(TailError::io(Path::new(&src.name), "read", e));
                    } else {
                        // Deliver what was read; the error comes again at the next poll.
                        return Ok(Some(Batch {
                            events: out.events,
                            bad_lines: out.bad_lines,
                            position: src.position(),
                        }));
                    }
                }
            }
            let done = src.is_final() && (src.lines.eof || src.corrupt.is_some());
            if done && out.len() < limits.max_items {
                src.lines.flush_partial(&src.name, &mut out);
            }
            if let Some(c) = src.corrupt.as_mut().filter(|c| !c.reported) {
                if out.len() < limits.max_items {
                    c.reported = true;
                    out.bad_lines.push(BadLine {
                        location: Location {
                            source: src.name.clone(),
                            line: src.lines.line_no + 1,
                            path: None,
                        },
                        error: BadLineError::CorruptFile {
                            reason: c.reason.clone(),
                        },
                        raw: Vec::new(),
                    });
                }
            }
            self.lag = lag_of(src);
            if !out.is_empty() {
                return Ok(Some(Batch {
                    events: out.events,
                    bad_lines: out.bad_lines,
                    position: src.position(),
                }));
            }
            if !done {
                return Ok(None);
            }
            self.after = src.next_after();
            tracing::info!(file = %src.name, "finished rotated audit log file");
            self.source = None;
        }
        Ok(None)
    }

    /// Persists `pos` atomically (temporary file, fsync, rename, directory
    /// fsync). Only after this may a restart skip the lines before it.
    pub fn commit(&mut self, pos: &Position) -> Result<(), TailError> {
        let st = StateFile::new(&self.cfg.path, &self.cfg.cluster, pos.clone());
        state::store(&self.cfg.state_path, &st)
    }

    /// Bytes of the current file not yet read as of the last poll (for the
    /// lag metric; for a compressed backup, compressed bytes).
    pub fn lag_bytes(&self) -> u64 {
        self.lag
    }

    /// The configuration in force.
    pub fn config(&self) -> &TailConfig {
        &self.cfg
    }

    fn list(&self) -> Result<Vec<Backup>, TailError> {
        self.naming
            .list()
            .map_err(|e| TailError::io(self.naming.dir(), "list backups", e))
    }

    /// Opens the file after `self.after`. `false` when there is none yet.
    fn open_next(&mut self) -> Result<bool, TailError> {
        for _ in 0..OPEN_ATTEMPTS {
            let list = self.list()?;
            if let Some(b) = list.iter().find(|b| Some(&b.key) > self.after.as_ref()) {
                match open_backup(b) {
                    Ok((stream, file)) => {
                        tracing::info!(file = %b.path.display(), "reading audit log backup");
                        self.source = Some(Source {
                            name: b.path.display().to_string(),
                            stream,
                            file,
                            rank: Rank::Backup { key: b.key.clone() },
                            lines: Lines::at(0, 0, None),
                            rotated: None,
                            corrupt: None,
                            seen: None,
                        });
                        return Ok(true);
                    }
                    // Removed after compression between listing and opening.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(TailError::io(&b.path, "open backup", e)),
                }
            }
            match self.open_active(&list)? {
                ActiveOpen::Missing => return Ok(false),
                ActiveOpen::Raced => continue,
                ActiveOpen::Opened(file, id) => {
                    self.source = Some(self.active_source(file, id, 0, 0, None, newest(&list)));
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Opens the active file and checks that no rotation happened since
    /// `before` was listed, so that the newest backup of `before` is older
    /// than the file opened.
    fn open_active(&self, before: &[Backup]) -> Result<ActiveOpen, TailError> {
        let path = &self.cfg.path;
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ActiveOpen::Missing),
            Err(e) => return Err(TailError::io(path, "open", e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| TailError::io(path, "stat", e))?;
        let after = self.list()?;
        if newest(&after) != newest(before) {
            return Ok(ActiveOpen::Raced);
        }
        Ok(ActiveOpen::Opened(file, file_id(&meta)))
    }

    fn active_source(
        &self,
        file: File,
        id: FileId,
        offset: u64,
        line: u64,
        last: Option<state::LineMark>,
        after: Option<String>,
    ) -> Source {
        Source {
            name: self.cfg.path.display().to_string(),
            stream: Stream::Plain(file),
            file: id,
            rank: Rank::Active { after },
            lines: Lines::at(offset, line, last),
            rotated: None,
            corrupt: None,
            seen: None,
        }
    }

    /// For an active source: notices rotation (the path now names another
    /// file or none) and truncation (copytruncate), restarting at 0 then.
    fn check_active(&mut self) -> Result<(), TailError> {
        let Some(src) = self.source.as_mut() else {
            return Ok(());
        };
        let Rank::Active { after } = &src.rank else {
            return Ok(());
        };
        if src.rotated.is_some() {
            return Ok(());
        }
        let path = &self.cfg.path;
        let moved = match fs::metadata(path) {
            Ok(m) => file_id(&m) != src.file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(TailError::io(path, "stat", e)),
        };
        // Truncation is checked even when the file was just renamed: it may
        // have been truncated before the rename.
        let meta = src
            .stream
            .file()
            .metadata()
            .map_err(|e| TailError::io(path, "stat", e))?;
        let len = meta.len();
        let stamp = (len, meta.mtime(), meta.mtime_nsec());
        let truncated = len < src.lines.read_pos
            || match src.lines.last {
                // One positional read of the last line per poll. A long line
                // is re-read only when size or mtime changed (a truncation
                // and regrowth within one mtime tick would go unnoticed).
                Some(m)
                    if src.lines.boundary > 0
                        && (m.len <= VERIFY_EVERY_POLL_MAX || src.seen != Some(stamp)) =>
                {
                    !lines::verify_plain(src.stream.file(), src.lines.boundary, Some(&m))
                        .map_err(|e| TailError::io(path, "read", e))?
                }
                _ => false,
            };
        src.seen = Some(stamp);
        if truncated {
            tracing::warn!(
                file = %path.display(),
                offset = src.lines.boundary,
                size = len,
                "audit log truncated in place (copytruncate): reading it again from offset 0"
            );
            if let Stream::Plain(f) = &mut src.stream {
                f.seek(SeekFrom::Start(0))
                    .map_err(|e| TailError::io(path, "seek", e))?;
                src.lines = Lines::at(0, 0, None);
            }
        }
        if moved {
            let (name, next_after) = locate_rotated(&self.naming, after, src.file)
                .map_err(|e| TailError::io(self.naming.dir(), "list backups", e))?;
            tracing::info!(file = %path.display(), renamed_to = ?name, "audit log rotated");
            if let Some(name) = name {
                src.name = name;
            }
            src.rotated = Some(next_after);
        }
        Ok(())
    }

    /// Finds the committed file again and positions the tailer in it.
    fn resume(&mut self, pos: Position) -> Result<(), TailError> {
        match &pos.rank {
            Rank::Backup { key } => {
                for _ in 0..OPEN_ATTEMPTS {
                    let list = self.list()?;
                    let Some(b) = list.iter().find(|b| &b.key == key) else {
                        break;
                    };
                    // Vanished: compressed between listing and opening; list again.
                    if !matches!(self.resume_in_backup(b, &pos, true)?, Found::Vanished) {
                        return Ok(());
                    }
                }
                tracing::warn!(backup = %key, "committed audit log backup is gone; continuing with newer files");
                self.after = Some(key.clone());
                Ok(())
            }
            Rank::Active { after } => {
                for _ in 0..OPEN_ATTEMPTS {
                    let list = self.list()?;
                    if list.iter().any(|b| Some(&b.key) > after.as_ref()) {
                        return self.resume_rotated(&list, after, &pos);
                    }
                    match self.open_active(&list)? {
                        ActiveOpen::Raced => continue,
                        ActiveOpen::Missing => {
                            tracing::warn!(file = %self.cfg.path.display(), "committed audit log file is gone; waiting for it to reappear");
                            self.after = after.clone();
                            return Ok(());
                        }
                        ActiveOpen::Opened(mut file, id) => {
                            let same = id == pos.file
                                && lines::verify_plain(&file, pos.offset, pos.last.as_ref())
                                    .map_err(|e| TailError::io(&self.cfg.path, "read", e))?;
                            let (offset, line, last) = if same {
                                (pos.offset, pos.line, pos.last)
                            } else {
                                if pos.offset > 0 {
                                    tracing::warn!(
                                        file = %self.cfg.path.display(),
                                        offset = pos.offset,
                                        "audit log was truncated or replaced since the last commit: reading it from offset 0"
                                    );
                                }
                                (0, 0, None)
                            };
                            file.seek(SeekFrom::Start(offset))
                                .map_err(|e| TailError::io(&self.cfg.path, "seek", e))?;
                            let rank_after = if same { after.clone() } else { newest(&list) };
                            self.source =
                                Some(self.active_source(file, id, offset, line, last, rank_after));
                            return Ok(());
                        }
                    }
                }
                // Rotating faster than we can look: start with the backups.
                self.after = after.clone();
                Ok(())
            }
        }
    }

    /// The committed active file was rotated while kaudit was down: its
    /// backup is the oldest one newer than `after` unless backups were deleted or the
    /// writer's clock went back, so that one is tried first, then all
    /// backups newest first. A backup that vanishes while it is tried (the
    /// writer compressing it: `x.log` removed once `x.log.gz` is complete)
    /// makes the search start again from a fresh listing, so a race with
    /// compression never sends the tailer back to the start of the file.
    fn resume_rotated(
        &mut self,
        list: &[Backup],
        after: &Option<String>,
        pos: &Position,
    ) -> Result<(), TailError> {
        let mut list = list.to_vec();
        for _ in 0..OPEN_ATTEMPTS {
            let newer = list.iter().filter(|b| Some(&b.key) > after.as_ref());
            let Some(first) = newer.clone().next() else {
                return Ok(());
            };
            if pos.offset == 0 {
                // Nothing read from it means it is read whole, like the
                // newer ones: no need to find which backup it is.
                break;
            }
            let rest = list.iter().rev().filter(|b| b.key != first.key);
            let mut vanished = false;
            for b in std::iter::once(first).chain(rest) {
                match self.try_resume_in(b, pos)? {
                    Found::Yes => return Ok(()),
                    Found::No => {}
                    Found::Vanished => vanished = true,
                }
            }
            if !vanished {
                tracing::warn!(
                    file = %pos.source,
                    "the committed audit log file is no longer among the backups (deleted?): continuing with the newer ones"
                );
                break;
            }
            list = self.list()?;
        }
        self.after = after.clone();
        Ok(())
    }

    /// Resumes in `b` if it is the committed file.
    fn try_resume_in(&mut self, b: &Backup, pos: &Position) -> Result<Found, TailError> {
        if !b.gz {
            match fs::metadata(&b.path) {
                Ok(m) if file_id(&m) == pos.file => {}
                Ok(_) => return Ok(Found::No),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Vanished),
                Err(e) => return Err(TailError::io(&b.path, "stat", e)),
            }
        }
        self.resume_in_backup(b, pos, false)
    }

    /// Opens backup `b` at the committed offset if its content matches.
    /// With `fallback`, a mismatch reads it from 0 instead of declining.
    fn resume_in_backup(
        &mut self,
        b: &Backup,
        pos: &Position,
        fallback: bool,
    ) -> Result<Found, TailError> {
        let (mut stream, id) = match open_backup(b) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Vanished),
            Err(e) => return Err(TailError::io(&b.path, "open backup", e)),
        };
        let matches = match &mut stream {
            Stream::Plain(f) => {
                let ok = lines::verify_plain(f, pos.offset, pos.last.as_ref())
                    .map_err(|e| TailError::io(&b.path, "read", e))?;
                if ok {
                    f.seek(SeekFrom::Start(pos.offset))
                        .map_err(|e| TailError::io(&b.path, "seek", e))?;
                }
                ok
            }
            Stream::Gz(_) => match lines::verify_stream(&mut stream, pos.offset, pos.last.as_ref())
            {
                Ok(ok) => ok,
                // A corrupt or foreign gzip is simply not the committed file.
                Err(e)
                    if e.kind() == io::ErrorKind::InvalidInput
                        || e.kind() == io::ErrorKind::InvalidData
                        || e.kind() == io::ErrorKind::UnexpectedEof =>
                {
                    false
                }
                Err(e) => return Err(TailError::io(&b.path, "decompress", e)),
            },
        };
        let (stream, lines) = if matches {
            (stream, Lines::at(pos.offset, pos.line, pos.last))
        } else if fallback {
            tracing::warn!(file = %b.path.display(), offset = pos.offset, "committed backup does not match the committed position: reading it from offset 0");
            match open_backup(b) {
                Ok((s, _)) => (s, Lines::at(0, 0, None)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Vanished),
                Err(e) => return Err(TailError::io(&b.path, "open backup", e)),
            }
        } else {
            return Ok(Found::No);
        };
        self.source = Some(Source {
            name: b.path.display().to_string(),
            stream,
            file: id,
            rank: Rank::Backup { key: b.key.clone() },
            lines,
            rotated: None,
            corrupt: None,
            seen: None,
        });
        Ok(Found::Yes)
    }
}

/// Whether a backup is the committed file.
enum Found {
    Yes,
    No,
    /// It disappeared while being looked at (compressed meanwhile).
    Vanished,
}

enum ActiveOpen {
    Missing,
    Raced,
    Opened(File, FileId),
}

/// After the active file `id` (opened when `after` was the newest backup)
/// was rotated: its backup's name if found, and the key after which the
/// next file is. The backup is the oldest one newer than `after`; an
/// uncompressed one is confirmed by inode, a compressed one is taken on
/// the ordering (its content is being read through the open descriptor).
/// An uncompressed backup that vanishes while it is looked at was just
/// compressed: the directory is listed again to find the `.gz`.
fn locate_rotated(
    naming: &Naming,
    after: &Option<String>,
    id: FileId,
) -> io::Result<(Option<String>, Option<String>)> {
    for _ in 0..OPEN_ATTEMPTS {
        let list = naming.list()?;
        let newer: Vec<&Backup> = list
            .iter()
            .filter(|b| Some(&b.key) > after.as_ref())
            .collect();
        let mut vanished = false;
        for b in newer.iter().filter(|b| !b.gz) {
            match fs::metadata(&b.path) {
                Ok(m) if file_id(&m) == id => {
                    return Ok((Some(b.path.display().to_string()), Some(b.key.clone())))
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => vanished = true,
                Err(e) => return Err(e),
            }
        }
        match newer.first() {
            Some(b) if b.gz => {
                return Ok((Some(b.path.display().to_string()), Some(b.key.clone())))
            }
            _ if vanished => continue,
            // Renamed to a name lumberjack does not use, or its backup is gone:
            // every newer backup is read next.
            _ => break,
        }
    }
    Ok((None, after.clone()))
}

fn open_backup(b: &Backup) -> io::Result<(Stream, FileId)> {
    let f = File::open(&b.path)?;
    let id = file_id(&f.metadata()?);
    Ok((
        if b.gz {
            Stream::gz(f)
        } else {
            Stream::Plain(f)
        },
        id,
    ))
}

fn lag_of(src: &Source) -> u64 {
    let f = src.stream.file();
    let Ok(meta) = f.metadata() else { return 0 };
    match &src.stream {
        Stream::Plain(_) => meta.len().saturating_sub(src.lines.boundary),
        Stream::Gz(_) => {
            let mut r = f;
            let at = r.stream_position().unwrap_or(0);
            meta.len().saturating_sub(at)
        }
    }
}
