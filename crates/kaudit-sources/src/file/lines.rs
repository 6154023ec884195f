//! Splitting a growing byte stream into complete lines, with bounded memory.

use super::state::LineMark;
use super::{BadLine, BadLineError};
use flate2::read::MultiGzDecoder;
use kaudit_event::reader::Location;
use kaudit_event::Event;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;

/// Bytes read from the file per read call.
const CHUNK: usize = 64 << 10;

/// What a source's bytes come from.
pub(crate) enum Stream {
    /// A plain file, read at its own cursor.
    Plain(File),
    /// A gzip-compressed backup, decompressed as it is read.
    Gz(Box<MultiGzDecoder<BufReader<File>>>),
}

impl Stream {
    pub fn gz(file: File) -> Stream {
        Stream::Gz(Box::new(MultiGzDecoder::new(BufReader::new(file))))
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        match self {
            Stream::Plain(f) => f,
            Stream::Gz(d) => d.get_ref().get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(f) => f.read(buf),
            Stream::Gz(d) => d.read(buf),
        }
    }
}

/// The limits a batch is read under.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub max_line: usize,
    pub max_items: usize,
}

/// Events and bad lines read by one poll.
#[derive(Default)]
pub(crate) struct Collected {
    pub events: Vec<Event>,
    pub bad_lines: Vec<BadLine>,
}

impl Collected {
    pub fn len(&self) -> usize {
        self.events.len() + self.bad_lines.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A line longer than the limit, being skipped: only its first `max_line`
/// bytes are kept (for quarantine), its hash is computed as it streams by.
struct Overlong {
    len: u64,
    hasher: Sha256,
    prefix: Vec<u8>,
}

/// Line-splitting state of one file.
pub(crate) struct Lines {
    /// Offset just after the last complete line consumed.
    pub boundary: u64,
    /// Complete lines consumed.
    pub line_no: u64,
    /// The last complete line consumed.
    pub last: Option<LineMark>,
    /// Bytes read from the stream so far.
    pub read_pos: u64,
    /// Whether the last read found the end of the stream.
    pub eof: bool,
    buf: Vec<u8>,
    start: usize,
    scanned: usize,
    overlong: Option<Overlong>,
    /// Span in `buf` of the last complete line, whose mark is computed only
    /// when the buffer is about to move (once per read, not once per line).
    unhashed_last: Option<(usize, usize)>,
}

impl Lines {
    /// Starts at `offset`, just after line `line_no` whose mark is `last`.
    pub fn at(offset: u64, line_no: u64, last: Option<LineMark>) -> Lines {
        Lines {
            boundary: offset,
            line_no,
            last,
            read_pos: offset,
            eof: false,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            overlong: None,
            unhashed_last: None,
        }
    }

    /// Reads complete lines until `limits.max_items` items are collected or
    /// the stream has nothing more for now.
    pub fn read_batch(
        &mut self,
        stream: &mut Stream,
        limits: Limits,
        source: &str,
        out: &mut Collected,
    ) -> io::Result<()> {
        loop {
            while out.len() < limits.max_items {
                let Some(i) = memchr::memchr(b'\n', &self.buf[self.scanned..]) else {
                    self.scanned = self.buf.len();
                    break;
                };
                let end = self.scanned + i;
                self.finish_line(self.start, end, limits.max_line, source, out);
                self.start = end + 1;
                self.scanned = self.start;
            }
            self.compact();
            if out.len() >= limits.max_items {
                return Ok(());
            }
            if let Some(o) = &mut self.overlong {
                o.hasher.update(&self.buf);
                o.len += self.buf.len() as u64;
                self.buf.clear();
                self.scanned = 0;
            } else if self.buf.len() > limits.max_line {
                let mut hasher = Sha256::new();
                hasher.update(&self.buf);
                self.overlong = Some(Overlong {
                    len: self.buf.len() as u64,
                    hasher,
                    prefix: self.buf[..limits.max_line].to_vec(),
                });
                self.buf.clear();
                self.scanned = 0;
            }
            let old = self.buf.len();
            self.buf.resize(old + CHUNK, 0);
            let n = loop {
                match stream.read(&mut self.buf[old..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.buf.truncate(old);
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(old + n);
            self.read_pos += n as u64;
            self.eof = n == 0;
            if n == 0 {
                return Ok(());
            }
        }
    }

    /// Whether bytes after the last complete line have been read.
    pub fn has_partial(&self) -> bool {
        self.read_pos > self.boundary
    }

    /// Emits the bytes after the last complete line as an unterminated
    /// line: used when the file is known to be finished (rotated away).
    pub fn flush_partial(&mut self, source: &str, out: &mut Collected) {
        if !self.has_partial() {
            return;
        }
        let (len, sha256, raw) = match self.overlong.take() {
            Some(mut o) => {
                o.hasher.update(&self.buf[self.start..]);
                let len = o.len + (self.buf.len() - self.start) as u64;
                (len, o.hasher.finalize().into(), o.prefix)
            }
            None => {
                let bytes = &self.buf[self.start..];
                (
                    bytes.len() as u64,
                    Sha256::digest(bytes).into(),
                    bytes.to_vec(),
                )
            }
        };
        self.line_no += 1;
        out.bad_lines.push(BadLine {
            location: location(source, self.line_no),
            error: BadLineError::Unterminated { len },
            raw,
        });
        self.boundary = self.read_pos;
        self.last = Some(LineMark { len, sha256 });
        self.unhashed_last = None;
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
    }

    fn compact(&mut self) {
        if let Some((start, end)) = self.unhashed_last.take() {
            let bytes = &self.buf[start..end];
            self.last = Some(LineMark {
                len: bytes.len() as u64,
                sha256: Sha256::digest(bytes).into(),
            });
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
    }

    fn finish_line(
        &mut self,
        start: usize,
        end: usize,
        max_line: usize,
        source: &str,
        out: &mut Collected,
    ) {
        let bytes = &self.buf[start..end];
        self.line_no += 1;
        let loc = || location(source, self.line_no);
        self.unhashed_last = None;
        match self.overlong.take() {
            Some(mut o) => {
                o.hasher.update(bytes);
                let len = o.len + bytes.len() as u64;
                out.bad_lines.push(BadLine {
                    location: loc(),
                    error: BadLineError::TooLong {
                        len,
                        limit: max_line,
                    },
                    raw: o.prefix,
                });
                self.boundary += len + 1;
                self.last = Some(LineMark {
                    len,
                    sha256: o.hasher.finalize().into(),
                });
            }
            None => {
                let len = bytes.len() as u64;
                if bytes.len() > max_line {
                    out.bad_lines.push(BadLine {
                        location: loc(),
                        error: BadLineError::TooLong {
                            len,
                            limit: max_line,
                        },
                        raw: bytes[..max_line].to_vec(),
                    });
                } else if !bytes.iter().all(u8::is_ascii_whitespace) {
                    match Event::from_json(bytes) {
                        Ok(ev) => out.events.push(ev),
                        Err(error) => out.bad_lines.push(BadLine {
                            location: loc(),
                            error: BadLineError::Event(error),
                            raw: bytes.to_vec(),
                        }),
                    }
                }
                self.boundary += len + 1;
                self.unhashed_last = Some((start, end));
            }
        }
    }
}

fn location(source: &str, line: u64) -> Location {
    Location {
        source: source.to_string(),
        line,
        path: None,
    }
}

/// Whether `file` still holds, just before `offset`, the line `last`
/// followed by a newline (positional reads; the file cursor is untouched).
pub(crate) fn verify_plain(file: &File, offset: u64, last: Option<&LineMark>) -> io::Result<bool> {
    let size = file.metadata()?.len();
    if size < offset {
        return Ok(false);
    }
    let Some(mark) = last else {
        return Ok(offset == 0);
    };
    let Some(start) = offset.checked_sub(mark.len + 1) else {
        return Ok(false);
    };
    let mut hasher = Sha256::new();
    let mut pos = start;
    let mut chunk = vec![0u8; CHUNK];
    while pos < offset - 1 {
        let want = ((offset - 1 - pos) as usize).min(CHUNK);
        let n = file.read_at(&mut chunk[..want], pos)?;
        if n == 0 {
            return Ok(false);
        }
        hasher.update(&chunk[..n]);
        pos += n as u64;
    }
    let mut nl = [0u8; 1];
    if file.read_at(&mut nl, offset - 1)? != 1 || nl[0] != b'\n' {
        return Ok(false);
    }
    Ok(<[u8; 32]>::from(hasher.finalize()) == mark.sha256)
}

/// Reads `stream` from its start up to `offset` and says whether the line
/// `last` (and its newline) ends exactly there. On `true`, the stream is
/// positioned at `offset`.
pub(crate) fn verify_stream(
    stream: &mut impl Read,
    offset: u64,
    last: Option<&LineMark>,
) -> io::Result<bool> {
    let Some(mark) = last else {
        return Ok(offset == 0);
    };
    let Some(start) = offset.checked_sub(mark.len + 1) else {
        return Ok(false);
    };
    let skipped = io::copy(&mut stream.by_ref().take(start), &mut io::sink())?;
    if skipped != start {
        return Ok(false);
    }
    let mut hasher = Sha256::new();
    let hashed = io::copy(&mut stream.by_ref().take(mark.len), &mut hasher)?;
    let mut nl = [0u8; 1];
    if hashed != mark.len || stream.read(&mut nl)? != 1 || nl[0] != b'\n' {
        return Ok(false);
    }
    Ok(<[u8; 32]>::from(hasher.finalize()) == mark.sha256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    fn collect(content: &[u8], max_line: usize, max_items: usize) -> (Lines, Collected) {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        f.rewind().unwrap();
        let mut s = Stream::Plain(f);
        let mut lines = Lines::at(0, 0, None);
        let mut out = Collected::default();
        lines
            .read_batch(
                &mut s,
                Limits {
                    max_line,
                    max_items,
                },
                "t",
                &mut out,
            )
            .unwrap();
        (lines, out)
    }

    #[test]
    fn splits_and_bounds_lines() {
        let long = vec![b'x'; 200_000];
        let mut content = b"not json\n\n".to_vec();
        content.extend_from_slice(&long);
        content.extend_from_slice(b"\n{\"a\":1}\npartial");
        let (lines, out) = collect(&content, 1000, 100);
        assert!(out.events.is_empty());
        assert_eq!(out.bad_lines.len(), 3);
        assert_eq!(out.bad_lines[0].location.line, 1);
        assert_eq!(out.bad_lines[0].raw, b"not json");
        assert_eq!(out.bad_lines[1].location.line, 3);
        assert!(matches!(
            out.bad_lines[1].error,
            BadLineError::TooLong {
                len: 200_000,
                limit: 1000
            }
        ));
        assert_eq!(out.bad_lines[1].raw, &long[..1000]);
        assert_eq!(out.bad_lines[2].location.line, 4);
        assert_eq!(lines.line_no, 4);
        assert_eq!(
            lines.boundary,
            content.len() as u64 - b"partial".len() as u64
        );
        assert!(lines.has_partial() && lines.eof);
        let mark = lines.last.unwrap();
        assert_eq!(mark.len, 7);
        assert_eq!(mark.sha256, <[u8; 32]>::from(Sha256::digest(b"{\"a\":1}")));
    }

    #[test]
    fn stops_at_max_items_and_resumes() {
        let content = b"a\nb\nc\nd\n";
        let (lines, out) = collect(content, 100, 3);
        assert_eq!(out.len(), 3);
        assert_eq!(lines.boundary, 6);
        assert_eq!(lines.line_no, 3);
        let mark = lines.last.unwrap();
        assert_eq!((mark.len, mark.sha256), (1, Sha256::digest(b"c").into()));
    }

    #[test]
    fn verification_detects_changes() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"first\nsecond\nthird").unwrap();
        let mark = LineMark {
            len: 6,
            sha256: Sha256::digest(b"second").into(),
        };
        assert!(verify_plain(&f, 13, Some(&mark)).unwrap());
        assert!(!verify_plain(&f, 12, Some(&mark)).unwrap());
        assert!(!verify_plain(&f, 6, Some(&mark)).unwrap());
        assert!(!verify_plain(&f, 100, Some(&mark)).unwrap());
        assert!(verify_plain(&f, 0, None).unwrap());
        let mut r: &[u8] = b"first\nsecond\nthird";
        assert!(verify_stream(&mut r, 13, Some(&mark)).unwrap());
        assert_eq!(r, b"third");
        let mut r: &[u8] = b"first\nsecond";
        assert!(!verify_stream(&mut r, 13, Some(&mark)).unwrap());
    }
}
