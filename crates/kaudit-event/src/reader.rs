//! Reading audit events from what users have: the log backend's JSON lines,
//! lumberjack's `.gz` backups, saved webhook payloads (EventList documents,
//! possibly pretty-printed), JSON arrays, and stdin.
//!
//! Every error names where it happened (`file:line`, plus the item's JSON
//! path inside an EventList). Lines are bounded in size and JSON in depth
//! (serde_json's recursion limit), so no input can exhaust memory or stack.

use crate::{parse_batch, Event, EventError, ItemError};
use flate2::read::MultiGzDecoder;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// Default bound on one line (and one event), as kube-apiserver's default
/// webhook and truncate limits are of the same order.
pub const DEFAULT_MAX_LINE: usize = 4 << 20;
/// Bound on a whole pretty-printed document read at once.
pub const DEFAULT_MAX_DOCUMENT: usize = 1 << 30;

/// Where something was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// File path, or `<stdin>`.
    pub source: String,
    /// 1-based line the value starts on.
    pub line: u64,
    /// JSON path inside the line's document, for items of an EventList or array.
    pub path: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.line)?;
        if let Some(p) = &self.path {
            write!(f, ": {p}")?;
        }
        Ok(())
    }
}

/// What went wrong while reading, and where.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// One value is not a valid audit event; reading can go on after it.
    #[error("{location}: {error}")]
    Event {
        /// Where the value was.
        location: Location,
        /// Why it was refused.
        #[source]
        error: EventError,
        /// Its bytes, for quarantine.
        raw: Vec<u8>,
    },
    /// A line longer than the configured bound; reading goes on after it.
    #[error("{location}: line is longer than the limit of {limit} bytes")]
    LineTooLong {
        /// Where the line starts.
        location: Location,
        /// The bound in force.
        limit: usize,
    },
    /// The legacy text format; the whole input is refused.
    #[error("{location}: this is kube-apiserver's legacy text audit format (--audit-log-format=legacy); kaudit reads the JSON format: set --audit-log-format=json")]
    LegacyFormat {
        /// Where it was recognised.
        location: Location,
    },
    /// Reading failed (including a corrupt gzip stream); the input ends here.
    #[error("{source_name}: {error}")]
    Io {
        /// File path, or `<stdin>`.
        source_name: String,
        /// The underlying error.
        #[source]
        error: io::Error,
    },
}

impl ReadError {
    /// Whether reading can continue past this error (with `--skip-invalid`).
    pub fn is_recoverable(&self) -> bool {
        matches!(
            self,
            ReadError::Event { .. } | ReadError::LineTooLong { .. }
        )
    }
}

/// Limits a reader enforces.
#[derive(Clone, Copy, Debug)]
pub struct ReaderOptions {
    /// Longest accepted line in bytes.
    pub max_line: usize,
    /// Largest pretty-printed document read as a whole.
    pub max_document: usize,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            max_line: DEFAULT_MAX_LINE,
            max_document: DEFAULT_MAX_DOCUMENT,
        }
    }
}

/// One unit of an input as [`EventReader::next_raw`] gives it: lines
/// holding one event are handed over unparsed, so a caller can parse them
/// on other threads ([`parse_line`]); everything else is already decided.
#[derive(Debug)]
pub enum RawItem {
    /// An event or a located error, in input order.
    Ready(Box<Result<Event, ReadError>>),
    /// A line (trimmed) that holds one event, or an EventList.
    Line {
        /// Its 1-based line number.
        line: u64,
        /// Its bytes.
        bytes: Vec<u8>,
    },
}

/// An iterator of events (or located errors) from one input.
pub struct EventReader {
    input: Box<dyn BufRead + Send>,
    name: String,
    opts: ReaderOptions,
    line_no: u64,
    buf: Vec<u8>,
    pending: std::collections::VecDeque<RawItem>,
    /// Parsed items of a line that held several (an EventList).
    parsed: std::collections::VecDeque<Result<Event, ReadError>>,
    started: bool,
    done: bool,
}

impl EventReader {
    /// Opens a file (`-` for stdin); gzip is detected by its magic bytes.
    pub fn open(path: &Path, opts: ReaderOptions) -> io::Result<EventReader> {
        if path.as_os_str() == "-" {
            return EventReader::new(io::stdin(), "<stdin>", opts);
        }
        let f = File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        EventReader::new(f, &path.display().to_string(), opts)
    }

    /// Wraps any byte stream; gzip is detected by its magic bytes.
    pub fn new<R: Read + Send + 'static>(
        input: R,
        name: &str,
        opts: ReaderOptions,
    ) -> io::Result<EventReader> {
        let mut buffered = BufReader::with_capacity(256 << 10, input);
        let head = buffered.fill_buf()?;
        let input: Box<dyn BufRead + Send> = if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(BufReader::with_capacity(
                256 << 10,
                MultiGzDecoder::new(buffered),
            ))
        } else {
            Box::new(buffered)
        };
        Ok(EventReader {
            input,
            name: name.to_string(),
            opts,
            line_no: 0,
            buf: Vec::with_capacity(8192),
            pending: Default::default(),
            parsed: Default::default(),
            started: false,
            done: false,
        })
    }

    /// Number of lines consumed so far.
    pub fn lines_read(&self) -> u64 {
        self.line_no
    }

    /// The input's name as errors give it (a path, or `<stdin>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next unit of the input, without parsing lines that hold one
    /// event: the iterator's items, in the same order, once each
    /// [`RawItem::Line`] is passed through [`parse_line`].
    pub fn next_raw(&mut self) -> Option<RawItem> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            if !self.started {
                match self.start() {
                    Ok(true) => {
                        self.done = true;
                        self.read_document();
                        continue;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        self.done = true;
                        return Some(RawItem::Ready(Box::new(Err(e))));
                    }
                }
            }
            match self.read_line() {
                Ok(Some(())) => self.handle_line(),
                Ok(None) => {
                    self.done = true;
                }
                Err(e) => {
                    if !e.is_recoverable() {
                        self.done = true;
                    }
                    return Some(RawItem::Ready(Box::new(Err(e))));
                }
            }
        }
    }

    fn loc(&self, line: u64, path: Option<String>) -> Location {
        Location {
            source: self.name.clone(),
            line,
            path,
        }
    }

    /// Decides between JSON lines and a whole (pretty-printed) document by
    /// looking at the first non-blank byte and whether the first line is a
    /// complete value.
    fn start(&mut self) -> Result<bool, ReadError> {
        self.started = true;
        // Skip leading blank space without losing line numbers.
        loop {
            let head = self.input.fill_buf().map_err(|e| io_err(&self.name, e))?;
            if head.is_empty() {
                return Ok(false);
            }
            match head.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(p) => {
                    let newlines = head[..p].iter().filter(|&&b| b == b'\n').count() as u64;
                    self.line_no += newlines;
                    self.input.consume(p);
                    break;
                }
                None => {
                    let n = head.len();
                    self.line_no += head.iter().filter(|&&b| b == b'\n').count() as u64;
                    self.input.consume(n);
                }
            }
        }
        let head = self.input.fill_buf().map_err(|e| io_err(&self.name, e))?;
        let first_line_end = memchr::memchr(b'\n', head).unwrap_or(head.len());
        let first = &head[..first_line_end];
        let document = head.first() == Some(&b'[') || {
            let t = first.trim_ascii();
            t == b"{" || (t.starts_with(b"{") && is_incomplete_json(t))
        };
        Ok(document)
    }

    fn read_document(&mut self) {
        let start_line = self.line_no + 1;
        let mut doc = Vec::new();
        let limit = self.opts.max_document as u64;
        let res = (&mut self.input).take(limit + 1).read_to_end(&mut doc);
        if let Err(e) = res {
            self.pending
                .push_back(RawItem::Ready(Box::new(Err(io_err(&self.name, e)))));
            return;
        }
        if doc.len() as u64 > limit {
            self.pending
                .push_back(RawItem::Ready(Box::new(Err(ReadError::LineTooLong {
                    location: self.loc(start_line, None),
                    limit: self.opts.max_document,
                }))));
            return;
        }
        self.line_no += doc.iter().filter(|&&b| b == b'\n').count() as u64;
        match parse_batch(&doc) {
            Ok(items) => {
                for item in items {
                    let r = item.map_err(
                        |ItemError {
                             path, error, raw, ..
                         }| {
                            let line = start_line + line_of(&doc, &raw);
                            ReadError::Event {
                                location: self.loc(line, Some(path)),
                                error,
                                raw,
                            }
                        },
                    );
                    self.pending.push_back(RawItem::Ready(Box::new(r)));
                }
            }
            Err(error) => self
                .pending
                .push_back(RawItem::Ready(Box::new(Err(ReadError::Event {
                    location: self.loc(start_line, None),
                    error,
                    raw: doc,
                })))),
        }
    }

    fn read_line(&mut self) -> Result<Option<()>, ReadError> {
        self.buf.clear();
        let max = self.opts.max_line;
        let mut too_long = false;
        loop {
            let chunk = self.input.fill_buf().map_err(|e| io_err(&self.name, e))?;
            if chunk.is_empty() {
                if self.buf.is_empty() && !too_long {
                    return Ok(None);
                }
                break;
            }
            let (take, found) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if !too_long {
                if self.buf.len() + take > max + 1 {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.input.consume(take);
            if found {
                break;
            }
        }
        self.line_no += 1;
        if too_long {
            return Err(ReadError::LineTooLong {
                location: self.loc(self.line_no, None),
                limit: max,
            });
        }
        Ok(Some(()))
    }

    fn handle_line(&mut self) {
        let line_no = self.line_no;
        let line = self.buf.trim_ascii();
        if line.is_empty() {
            return;
        }
        if is_legacy_line(line) {
            self.done = true;
            self.pending
                .push_back(RawItem::Ready(Box::new(Err(ReadError::LegacyFormat {
                    location: self.loc(line_no, None),
                }))));
            return;
        }
        if line[0] == b'{' && !line.starts_with(b"{\"kind\":\"EventList\"") {
            // The common case: one Event per line, parsed by `parse_line`.
            self.pending.push_back(RawItem::Line {
                line: line_no,
                bytes: line.to_vec(),
            });
            return;
        }
        for r in batch_line(&self.name, line_no, line) {
            self.pending.push_back(RawItem::Ready(Box::new(r)));
        }
    }
}

/// Parses a [`RawItem::Line`] of input `source`: its event, or, when the
/// line is an EventList after all, each of its items (errors located at
/// `source:line`).
pub fn parse_line(source: &str, line: u64, bytes: &[u8]) -> Vec<Result<Event, ReadError>> {
    match Event::from_json(bytes) {
        Ok(ev) => vec![Ok(ev)],
        Err(EventError::NotAnEvent(m)) if m.starts_with("this is an EventList") => {
            batch_line(source, line, bytes)
        }
        Err(error) => vec![Err(ReadError::Event {
            location: located(source, line, None),
            error,
            raw: bytes.to_vec(),
        })],
    }
}

/// [`parse_line`] of a line the caller owns (a [`RawItem::Line`]'s bytes):
/// a v1 event line becomes the event's bytes without a copy. Same results,
/// errors and locations as [`parse_line`].
pub fn parse_line_vec(source: &str, line: u64, bytes: Vec<u8>) -> Vec<Result<Event, ReadError>> {
    match Event::from_json_vec(bytes) {
        Ok(ev) => vec![Ok(ev)],
        Err((EventError::NotAnEvent(m), bytes)) if m.starts_with("this is an EventList") => {
            batch_line(source, line, &bytes)
        }
        Err((error, raw)) => vec![Err(ReadError::Event {
            location: located(source, line, None),
            error,
            raw,
        })],
    }
}

fn located(source: &str, line: u64, path: Option<String>) -> Location {
    Location {
        source: source.to_string(),
        line,
        path,
    }
}

/// The items of a line holding an EventList (or a JSON array).
fn batch_line(source: &str, line_no: u64, line: &[u8]) -> Vec<Result<Event, ReadError>> {
    match parse_batch(line) {
        Ok(items) => items
            .into_iter()
            .map(|item| {
                item.map_err(
                    |ItemError {
                         path, error, raw, ..
                     }| ReadError::Event {
                        location: located(source, line_no, Some(path)),
                        error,
                        raw,
                    },
                )
            })
            .collect(),
        Err(error) => vec![Err(ReadError::Event {
            location: located(source, line_no, None),
            error,
            raw: line.to_vec(),
        })],
    }
}

impl Iterator for EventReader {
    type Item = Result<Event, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.parsed.pop_front() {
                return Some(item);
            }
            match self.next_raw()? {
                RawItem::Ready(r) => return Some(*r),
                RawItem::Line { line, bytes } => {
                    let mut items = parse_line(&self.name, line, &bytes);
                    if items.len() == 1 {
                        return items.pop();
                    }
                    self.parsed.extend(items);
                }
            }
        }
    }
}

/// A legacy-format line: `<RFC3339 time> AUDIT: id="..." ...`.
fn is_legacy_line(line: &[u8]) -> bool {
    let Some(sp) = memchr::memchr(b' ', line) else {
        return false;
    };
    line[..sp].first().is_some_and(u8::is_ascii_digit) && line[sp..].starts_with(b" AUDIT: ")
}

/// True when `t` is the start of a JSON value that continues on later lines.
fn is_incomplete_json(t: &[u8]) -> bool {
    match serde_json::from_slice::<serde::de::IgnoredAny>(t) {
        Ok(_) => false,
        Err(e) => e.classify() == serde_json::error::Category::Eof,
    }
}

/// 0-based line offset of `needle` (a sub-slice's bytes) inside `doc`.
fn line_of(doc: &[u8], needle: &[u8]) -> u64 {
    if needle.is_empty() {
        return 0;
    }
    memchr::memmem::find(doc, needle)
        .map(|pos| doc[..pos].iter().filter(|&&b| b == b'\n').count() as u64)
        .unwrap_or(0)
}

/// Whether `name` looks like a lumberjack backup of an audit log
/// (`audit-2026-01-02T15-04-05.000.log` or `.log.gz`).
pub fn is_rotated_backup(name: &str) -> bool {
    let base = name.strip_suffix(".gz").unwrap_or(name);
    let Some(stem) = base.strip_suffix(".log") else {
        return false;
    };
    // The timestamp is the last 23 characters: 2006-01-02T15-04-05.000
    stem.len() > 24 && stem.as_bytes()[stem.len() - 24] == b'-' && {
        let ts = &stem[stem.len() - 23..];
        ts.bytes().enumerate().all(|(i, c)| match i {
            4 | 7 | 13 | 16 => c == b'-',
            10 => c == b'T',
            19 => c == b'.',
            _ => c.is_ascii_digit(),
        })
    }
}

fn io_err(name: &str, error: io::Error) -> ReadError {
    ReadError::Io {
        source_name: name.to_string(),
        error,
    }
}
