//! Just enough HTTP/1.1 to proxy the Engine API byte for byte: read a
//! message head (bounded), find the few headers that decide framing, and
//! copy a body (Content-Length, chunked, or until close) while keeping a
//! bounded copy of it for the audit record. Heads and bodies are forwarded
//! exactly as they arrived; nothing is re-encoded.

use std::io::{self, BufRead, Read, Write};

/// Largest message head accepted (request line or status line plus headers).
pub const MAX_HEAD: usize = 64 << 10;
/// Most headers in one head.
pub const MAX_HEADERS: usize = 256;

/// A parsed message head; `raw` is what was read, to forward unchanged.
#[derive(Clone, Debug, Default)]
pub struct Head {
    /// The bytes of the head, up to and including the blank line.
    pub raw: Vec<u8>,
    /// Request method, or empty for a response.
    pub method: String,
    /// Request target, or empty for a response.
    pub target: String,
    /// Response status code, or 0 for a request.
    pub status: u16,
    /// Headers in order (names as sent).
    pub headers: Vec<(String, String)>,
}

/// A head that is not HTTP/1.x.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The connection failed or closed mid-head.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The head exceeds [`MAX_HEAD`] or [`MAX_HEADERS`].
    #[error("message head larger than {MAX_HEAD} bytes or {MAX_HEADERS} headers")]
    TooLarge,
    /// The head does not parse.
    #[error("malformed HTTP head: {0}")]
    Malformed(String),
}

impl Head {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether header `name` holds `token` in its comma-separated list.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// The body's framing.
    pub fn framing(&self) -> Result<Framing, HeadError> {
        if self.has_token("Transfer-Encoding", "chunked") {
            return Ok(Framing::Chunked);
        }
        match self.header("Content-Length") {
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(Framing::Length)
                .map_err(|_| HeadError::Malformed(format!("Content-Length {v:?}"))),
            None => Ok(Framing::None),
        }
    }
}

/// How a body is delimited.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No framing header.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Reads one head; `Ok(None)` on a clean end of stream before any byte.
pub fn read_head<R: BufRead>(r: &mut R) -> Result<Option<Head>, HeadError> {
    let mut raw = Vec::with_capacity(512);
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            if raw.is_empty() {
                return Ok(None);
            }
            return Err(HeadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        // Look for the end of the head in what is buffered, counting the
        // bytes already taken (the terminator may straddle reads).
        let start = raw.len().saturating_sub(3);
        let take = buf.len().min(MAX_HEAD + 4 - raw.len().min(MAX_HEAD + 4));
        raw.extend_from_slice(&buf[..take]);
        if let Some(pos) = memchr::memmem::find(&raw[start..], b"\r\n\r\n") {
            let end = start + pos + 4;
            let used = take - (raw.len() - end);
            raw.truncate(end);
            r.consume(used);
            return parse_head(raw).map(Some);
        }
        r.consume(take);
        if raw.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

fn parse_head(raw: Vec<u8>) -> Result<Head, HeadError> {
    let text = std::str::from_utf8(&raw[..raw.len() - 4])
        .map_err(|_| HeadError::Malformed("head is not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut head = Head::default();
    let mut parts = first.splitn(3, ' ');
    let a = parts.next().unwrap_or("");
    let b = parts.next().unwrap_or("");
    if a.starts_with("HTTP/1.") {
        head.status = b
            .parse()
            .map_err(|_| HeadError::Malformed(format!("status line {first:?}")))?;
    } else {
        let version = parts.next().unwrap_or("");
        if a.is_empty() || b.is_empty() || !version.starts_with("HTTP/1.") {
            return Err(HeadError::Malformed(format!("request line {first:?}")));
        }
        head.method = a.to_string();
        head.target = b.to_string();
    }
    for l in lines {
        if head.headers.len() >= MAX_HEADERS {
            return Err(HeadError::TooLarge);
        }
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| HeadError::Malformed(format!("header line {l:?}")))?;
        head.headers
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    head.raw = raw;
    Ok(head)
}

/// A bounded copy of a body kept while it is forwarded.
#[derive(Debug, Default)]
pub struct Capture {
    /// The decoded bytes kept (at most `limit`).
    pub bytes: Vec<u8>,
    /// Whether the body was longer than the limit (then `bytes` is partial).
    pub overflow: bool,
    limit: usize,
}

impl Capture {
    /// Keeps at most `limit` bytes (0 keeps nothing).
    pub fn new(limit: usize) -> Capture {
        Capture {
            bytes: Vec::new(),
            overflow: false,
            limit,
        }
    }
    fn keep(&mut self, b: &[u8]) {
        if self.overflow || b.is_empty() {
            return;
        }
        if self.bytes.len() + b.len() > self.limit {
            self.overflow = true;
            self.bytes.clear();
            return;
        }
        self.bytes.extend_from_slice(b);
    }
}

/// Copies `n` bytes from `r` to `w`, writing each read at once (nothing is
/// held back). Returns the bytes copied.
pub fn copy_length<R: BufRead, W: Write>(
    r: &mut R,
    w: &mut W,
    n: u64,
    cap: &mut Capture,
) -> io::Result<u64> {
    let mut left = n;
    while left > 0 {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let k = buf.len().min(left as usize);
        w.write_all(&buf[..k])?;
        cap.keep(&buf[..k]);
        r.consume(k);
        left -= k as u64;
    }
    Ok(n)
}

/// Copies until end of stream (close-delimited bodies, raw streams).
pub fn copy_to_end<R: BufRead, W: Write>(
    r: &mut R,
    w: &mut W,
    cap: &mut Capture,
) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            break;
        }
        let k = buf.len();
        w.write_all(buf)?;
        cap.keep(buf);
        r.consume(k);
        total += k as u64;
    }
    Ok(total)
}

fn read_line_bounded<R: BufRead>(r: &mut R, out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    let n = r.take(4096).read_until(b'\n', out)?;
    if n == 0 || out.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "chunk size line missing or longer than 4096 bytes",
        ));
    }
    Ok(())
}

/// Copies a chunked body verbatim (sizes, extensions, trailers), chunk by
/// chunk, flushing each as it arrives so streams (`logs -f`, `events`) are
/// not held back. The capture holds the decoded data.
pub fn copy_chunked<R: BufRead, W: Write>(
    r: &mut R,
    w: &mut W,
    cap: &mut Capture,
) -> io::Result<u64> {
    let mut line = Vec::with_capacity(32);
    let mut total = 0u64;
    loop {
        read_line_bounded(r, &mut line)?;
        w.write_all(&line)?;
        total += line.len() as u64;
        let text = std::str::from_utf8(&line)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "chunk size not UTF-8"))?;
        let size_text = text.trim_end().split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_text, 16).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("chunk size {size_text:?}"),
            )
        })?;
        if size == 0 {
            // Trailers up to the blank line.
            loop {
                read_line_bounded(r, &mut line)?;
                w.write_all(&line)?;
                total += line.len() as u64;
                if line == b"\r\n" || line == b"\n" {
                    w.flush()?;
                    return Ok(total);
                }
            }
        }
        total += copy_length(r, w, size, cap)?;
        // The CRLF after the data.
        let mut crlf = Vec::with_capacity(2);
        read_line_bounded(r, &mut crlf)?;
        w.write_all(&crlf)?;
        total += crlf.len() as u64;
        w.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn reads_heads_across_small_reads() {
        let msg = b"POST /v1.41/containers/create?name=x HTTP/1.1\r\nHost: docker\r\nContent-Length: 2\r\n\r\n{}GET";
        let mut r = BufReader::with_capacity(3, &msg[..]);
        let h = read_head(&mut r).unwrap().unwrap();
        assert_eq!(h.method, "POST");
        assert_eq!(h.target, "/v1.41/containers/create?name=x");
        assert_eq!(h.framing().unwrap(), Framing::Length(2));
        assert_eq!(h.raw, &msg[..msg.len() - 5]);
        let mut out = Vec::new();
        let mut cap = Capture::new(10);
        copy_length(&mut r, &mut out, 2, &mut cap).unwrap();
        assert_eq!(out, b"{}");
        assert_eq!(cap.bytes, b"{}");
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "GET");
    }

    #[test]
    fn chunked_is_copied_verbatim_and_decoded() {
        let body = b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let mut r = BufReader::with_capacity(4, &body[..]);
        let mut out = Vec::new();
        let mut cap = Capture::new(100);
        copy_chunked(&mut r, &mut out, &mut cap).unwrap();
        assert_eq!(out, &body[..body.len() - 4]);
        assert_eq!(cap.bytes, b"abcde");
    }

    #[test]
    fn bad_heads_are_errors_not_panics() {
        for bad in [
            &b"\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"HTTP/1.1 abc\r\n\r\n",
            b"GET / HTTP/1.1\r\nnocolon\r\n\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            let mut r = BufReader::new(bad);
            assert!(
                read_head(&mut r).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let big = vec![b'a'; MAX_HEAD * 2];
        assert!(matches!(
            read_head(&mut BufReader::new(&big[..])),
            Err(HeadError::TooLarge)
        ));
        assert!(read_head(&mut BufReader::new(&b""[..])).unwrap().is_none());
        let mut r = BufReader::new(&b"5\r\nab"[..]);
        assert!(copy_chunked(&mut r, &mut Vec::new(), &mut Capture::new(0)).is_err());
    }

    #[test]
    fn capture_overflows_cleanly() {
        let mut cap = Capture::new(4);
        let mut r = BufReader::new(&b"abcdef"[..]);
        copy_to_end(&mut r, &mut Vec::new(), &mut cap).unwrap();
        assert!(cap.overflow);
        assert!(cap.bytes.is_empty());
    }
}
