//! Segment files: a header, then frames. A frame is either a *bundle*
//! (zstd-compressed records, optionally sealed with ChaCha20-Poly1305) or a
//! *commit marker* that makes every bundle before it durable and visible.
//! Bundles after the last commit marker are an uncommitted (torn) tail.
//!
//! Layout (integers little-endian):
//!
//! * segment header, 32 bytes: `KAUDSEG1`, first seq u64, flags u32 (bit 0:
//!   encrypted), encryption key id (8 bytes), crc32c of the previous 28 bytes.
//! * bundle frame, 48-byte header then payload: `KBD1`, first seq u64, count
//!   u32, raw length u32, stored length u32, min receive time i64, max receive
//!   time i64, flags u32 (bit 0: encrypted), crc32c u32 over the header's first
//!   44 bytes and the payload.
//! * commit frame, 16 bytes: `KCM1`, end seq (exclusive) u64, crc32c u32.
//!
//! A bundle's payload (before sealing) is either one zstd frame of all its
//! records (stores written before framing, and `bundle_frame_bytes: 0`) or a
//! *framed* payload, so that a search hit decompresses a few KiB rather than
//! the whole bundle: `KBF1`, frame count u32, then per frame (records u32, raw
//! length u32, stored length u32), then the zstd frames back to back, each of
//! whole records. The two are told apart by the first four bytes (a zstd
//! frame starts with its own magic), so old segments read unchanged and the
//! header, checksum and decompressed bytes (hence the tree) are the same.
//!
//! A store with a trained dictionary ([`crate::dict`]) writes `KBF2`
//! payloads: `KBF2`, frame count u32, the dictionary's 16-byte id, then the
//! same table and frames, every frame compressed with that dictionary. The
//! id sits inside the payload, so the bundle checksum, the AEAD of a sealed
//! bundle and (through the decompressed bytes) the leaf hashes all cover it:
//! a bundle always names the one dictionary it needs, and a different
//! dictionary either fails to load (its bytes no longer hash to the id) or
//! decodes to bytes whose leaf hashes do not match the tree.

use crate::crypt::{Cipher, CryptError};
use crate::dict::{DictId, Dicts};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Segment header size.
pub const SEGMENT_HEADER: usize = 32;
/// Bundle frame header size.
pub const BUNDLE_HEADER: usize = 48;
/// Commit frame size.
pub const COMMIT_FRAME: usize = 16;
const SEG_MAGIC: &[u8; 8] = b"KAUDSEG1";
const BUNDLE_MAGIC: &[u8; 4] = b"KBD1";
const COMMIT_MAGIC: &[u8; 4] = b"KCM1";
const FRAMED_MAGIC: &[u8; 4] = b"KBF1";
const FRAMED_DICT_MAGIC: &[u8; 4] = b"KBF2";
/// Bytes of a `KBF1` payload's table before its entries.
const TABLE_HEAD: usize = 8;
/// Bytes of a `KBF2` payload's table before its entries (plus the dictionary id).
const TABLE_HEAD_DICT: usize = 24;
/// Bytes of one frame table entry.
const TABLE_ENTRY: usize = 12;
/// Bound on a bundle's decompressed size (a bundle holds at most one oversized event plus change).
pub const MAX_BUNDLE_RAW: u32 = 64 << 20;
/// Bound on records per bundle.
pub const MAX_BUNDLE_COUNT: u32 = 1 << 20;

/// Parsed segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number of its first record.
    pub first_seq: u64,
    /// Key id when its bundles are encrypted.
    pub key_id: Option<[u8; 8]>,
}

/// Why a segment header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer bytes than a header.
    #[error("segment is shorter than its 32-byte header")]
    Short,
    /// Not a kaudit segment at all.
    #[error("not a kaudit segment (bad magic)")]
    Magic,
    /// The header was altered or torn.
    #[error("segment header checksum mismatch")]
    Checksum,
}

impl SegmentHeader {
    /// Serialises the header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER] {
        let mut b = [0u8; SEGMENT_HEADER];
        b[..8].copy_from_slice(SEG_MAGIC);
        b[8..16].copy_from_slice(&self.first_seq.to_le_bytes());
        let flags: u32 = u32::from(self.key_id.is_some());
        b[16..20].copy_from_slice(&flags.to_le_bytes());
        b[20..28].copy_from_slice(&self.key_id.unwrap_or_default());
        let crc = crc32c::crc32c(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses a header.
    pub fn decode(b: &[u8]) -> Result<Self, HeaderError> {
        if b.len() < SEGMENT_HEADER {
            return Err(HeaderError::Short);
        }
        if &b[..8] != SEG_MAGIC {
            return Err(HeaderError::Magic);
        }
        if crc32c::crc32c(&b[..28]) != le32(&b[28..32]) {
            return Err(HeaderError::Checksum);
        }
        let flags = le32(&b[16..20]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[20..28]);
        Ok(SegmentHeader {
            first_seq: le64(&b[8..16]),
            key_id: (flags & 1 == 1).then_some(id),
        })
    }
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// A bundle frame's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BundleHeader {
    /// Sequence number of its first record.
    pub first_seq: u64,
    /// Number of records.
    pub count: u32,
    /// Decompressed size.
    pub raw_len: u32,
    /// Payload size on disk.
    pub stored_len: u32,
    /// Earliest receive time (µs).
    pub min_time: i64,
    /// Latest receive time (µs).
    pub max_time: i64,
    /// Bit 0: encrypted.
    pub flags: u32,
}

impl BundleHeader {
    fn encode_without_crc(&self) -> [u8; BUNDLE_HEADER] {
        let mut b = [0u8; BUNDLE_HEADER];
        b[..4].copy_from_slice(BUNDLE_MAGIC);
        b[4..12].copy_from_slice(&self.first_seq.to_le_bytes());
        b[12..16].copy_from_slice(&self.count.to_le_bytes());
        b[16..20].copy_from_slice(&self.raw_len.to_le_bytes());
        b[20..24].copy_from_slice(&self.stored_len.to_le_bytes());
        b[24..32].copy_from_slice(&self.min_time.to_le_bytes());
        b[32..40].copy_from_slice(&self.max_time.to_le_bytes());
        b[40..44].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    /// The bytes an AEAD binds with the payload (first seq, count, raw length).
    pub fn aad(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&self.first_seq.to_le_bytes());
        a[8..12].copy_from_slice(&self.count.to_le_bytes());
        a[12..16].copy_from_slice(&self.raw_len.to_le_bytes());
        a
    }

    /// One past the last sequence number.
    pub fn end_seq(&self) -> u64 {
        self.first_seq + u64::from(self.count)
    }
}

/// Builds a complete bundle frame (header and payload) from raw bundle bytes,
/// compressed as one zstd frame (the format before framed payloads).
pub fn encode_bundle(
    first_seq: u64,
    count: u32,
    raw: &[u8],
    min_time: i64,
    max_time: i64,
    compressor: &mut zstd::bulk::Compressor<'static>,
    cipher: Option<&Cipher>,
) -> Result<Vec<u8>, std::io::Error> {
    encode_bundle_framed(
        first_seq, count, raw, min_time, max_time, 0, compressor, cipher,
    )
}

/// Compresses `raw` (length-prefixed records) as a framed payload of zstd
/// frames of about `frame_bytes` raw bytes each, split at record boundaries.
fn compress_framed(
    raw: &[u8],
    count: u32,
    frame_bytes: usize,
    dict: Option<&DictId>,
    compressor: &mut zstd::bulk::Compressor<'static>,
) -> Result<Vec<u8>, std::io::Error> {
    // Without a size bound every record lands in one frame.
    let frame_bytes = if frame_bytes == 0 {
        usize::MAX
    } else {
        frame_bytes
    };
    let bad = || std::io::Error::other("bundle records are not length-prefixed");
    // (records, raw start, raw end) per frame.
    let mut frames: Vec<(u32, usize, usize)> = Vec::new();
    let (mut at, mut start, mut n, mut seen) = (0usize, 0usize, 0u32, 0u32);
    while at < raw.len() {
        let len = raw.get(at..at + 4).ok_or_else(bad)?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        at = at
            .checked_add(4 + len)
            .filter(|&e| e <= raw.len())
            .ok_or_else(bad)?;
        n += 1;
        seen += 1;
        if at - start >= frame_bytes {
            frames.push((n, start, at));
            (start, n) = (at, 0);
        }
    }
    if n > 0 {
        frames.push((n, start, at));
    }
    if seen != count {
        return Err(bad());
    }
    let head = if dict.is_some() {
        TABLE_HEAD_DICT
    } else {
        TABLE_HEAD
    };
    let mut out = Vec::with_capacity(head + TABLE_ENTRY * frames.len() + raw.len() / 4);
    out.extend_from_slice(if dict.is_some() {
        FRAMED_DICT_MAGIC
    } else {
        FRAMED_MAGIC
    });
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    if let Some(id) = dict {
        out.extend_from_slice(id);
    }
    out.resize(head + TABLE_ENTRY * frames.len(), 0);
    for (i, &(records, a, b)) in frames.iter().enumerate() {
        let before = out.len();
        let z = compressor.compress(&raw[a..b])?;
        out.extend_from_slice(&z);
        let e = head + TABLE_ENTRY * i;
        out[e..e + 4].copy_from_slice(&records.to_le_bytes());
        out[e + 4..e + 8].copy_from_slice(&((b - a) as u32).to_le_bytes());
        let stored = (out.len() - before) as u32;
        out[e + 8..e + 12].copy_from_slice(&stored.to_le_bytes());
    }
    Ok(out)
}

/// Builds a complete bundle frame (header and payload) from raw bundle bytes;
/// with `frame_bytes > 0` the payload is framed (see the module doc) in zstd
/// frames of about that many raw bytes, so a reader of one record
/// decompresses only its frame.
#[allow(clippy::too_many_arguments)]
pub fn encode_bundle_framed(
    first_seq: u64,
    count: u32,
    raw: &[u8],
    min_time: i64,
    max_time: i64,
    frame_bytes: usize,
    compressor: &mut zstd::bulk::Compressor<'static>,
    cipher: Option<&Cipher>,
) -> Result<Vec<u8>, std::io::Error> {
    encode_bundle_dict(
        first_seq,
        count,
        raw,
        min_time,
        max_time,
        frame_bytes,
        None,
        compressor,
        cipher,
    )
}

/// [`encode_bundle_framed`] for a `compressor` loaded with dictionary
/// `dict`: the payload is then always a `KBF2` framed payload naming it
/// (even for one frame), so a reader knows which dictionary to load.
#[allow(clippy::too_many_arguments)]
pub fn encode_bundle_dict(
    first_seq: u64,
    count: u32,
    raw: &[u8],
    min_time: i64,
    max_time: i64,
    frame_bytes: usize,
    dict: Option<&DictId>,
    compressor: &mut zstd::bulk::Compressor<'static>,
    cipher: Option<&Cipher>,
) -> Result<Vec<u8>, std::io::Error> {
    let compressed = if dict.is_some() || (frame_bytes > 0 && raw.len() > frame_bytes) {
        compress_framed(raw, count, frame_bytes, dict, compressor)?
    } else {
        compressor.compress(raw)?
    };
    let (payload, flags) = match cipher {
        Some(c) => {
            let aad = BundleHeader {
                first_seq,
                count,
                raw_len: raw.len() as u32,
                stored_len: 0,
                min_time,
                max_time,
                flags: 1,
            }
            .aad();
            let sealed = c
                .seal(&compressed, &aad)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            (sealed, 1)
        }
        None => (compressed, 0),
    };
    let h = BundleHeader {
        first_seq,
        count,
        raw_len: raw.len() as u32,
        stored_len: payload.len() as u32,
        min_time,
        max_time,
        flags,
    };
    let mut out = Vec::with_capacity(BUNDLE_HEADER + payload.len());
    out.extend_from_slice(&h.encode_without_crc()[..44]);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// A commit frame for everything before `end_seq`.
pub fn encode_commit(end_seq: u64) -> [u8; COMMIT_FRAME] {
    let mut b = [0u8; COMMIT_FRAME];
    b[..4].copy_from_slice(COMMIT_MAGIC);
    b[4..12].copy_from_slice(&end_seq.to_le_bytes());
    let crc = crc32c::crc32c(&b[..12]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    b
}

/// One frame found in a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A bundle; its payload is at `offset + BUNDLE_HEADER`.
    Bundle {
        /// Frame offset in the file.
        offset: u64,
        /// Its header.
        header: BundleHeader,
    },
    /// A commit marker.
    Commit {
        /// Frame offset in the file.
        offset: u64,
        /// Sequence numbers below this are committed.
        end_seq: u64,
    },
}

/// Why a frame could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameProblem {
    /// The frame runs past the end of the file: a torn write.
    Incomplete,
    /// Something complete but wrong: checksum, magic, bounds.
    Corrupt(String),
}

/// Reads the frame at `offset`; with `check_crc` the payload is read and checksummed.
pub fn read_frame(
    file: &File,
    offset: u64,
    file_len: u64,
    check_crc: bool,
) -> Result<Frame, FrameProblem> {
    let remaining = file_len.saturating_sub(offset);
    if remaining < 4 {
        return Err(FrameProblem::Incomplete);
    }
    let mut head = [0u8; BUNDLE_HEADER];
    let n = (remaining as usize).min(BUNDLE_HEADER);
    file.read_exact_at(&mut head[..n], offset)
        .map_err(|e| FrameProblem::Corrupt(format!("read error: {e}")))?;
    if &head[..4] == COMMIT_MAGIC {
        if remaining < COMMIT_FRAME as u64 {
            return Err(FrameProblem::Incomplete);
        }
        if crc32c::crc32c(&head[..12]) != le32(&head[12..16]) {
            return Err(FrameProblem::Corrupt(
                "commit marker checksum mismatch".into(),
            ));
        }
        return Ok(Frame::Commit {
            offset,
            end_seq: le64(&head[4..12]),
        });
    }
    if &head[..4] != BUNDLE_MAGIC {
        if head[..n].iter().all(|&b| b == 0) {
            return Err(FrameProblem::Incomplete);
        }
        return Err(FrameProblem::Corrupt(
            "no frame magic at this offset".into(),
        ));
    }
    if remaining < BUNDLE_HEADER as u64 {
        return Err(FrameProblem::Incomplete);
    }
    let header = BundleHeader {
        first_seq: le64(&head[4..12]),
        count: le32(&head[12..16]),
        raw_len: le32(&head[16..20]),
        stored_len: le32(&head[20..24]),
        min_time: le64(&head[24..32]) as i64,
        max_time: le64(&head[32..40]) as i64,
        flags: le32(&head[40..44]),
    };
    if header.raw_len > MAX_BUNDLE_RAW || header.count > MAX_BUNDLE_COUNT || header.count == 0 {
        return Err(FrameProblem::Corrupt(format!(
            "bundle header out of bounds (count {}, raw length {})",
            header.count, header.raw_len
        )));
    }
    if remaining < (BUNDLE_HEADER as u64) + u64::from(header.stored_len) {
        return Err(FrameProblem::Incomplete);
    }
    if check_crc {
        let payload = read_payload(file, offset, &header)
            .map_err(|e| FrameProblem::Corrupt(format!("read error: {e}")))?;
        let crc = crc32c::crc32c_append(crc32c::crc32c(&head[..44]), &payload);
        if crc != le32(&head[44..48]) {
            return Err(FrameProblem::Corrupt("bundle checksum mismatch".into()));
        }
    }
    Ok(Frame::Bundle { offset, header })
}

/// Checks a bundle's checksum against payload bytes already read.
pub fn bundle_crc_ok(file_head: &[u8; BUNDLE_HEADER], payload: &[u8]) -> bool {
    crc32c::crc32c_append(crc32c::crc32c(&file_head[..44]), payload) == le32(&file_head[44..48])
}

/// Reads a bundle's stored payload.
pub fn read_payload(file: &File, offset: u64, h: &BundleHeader) -> std::io::Result<Vec<u8>> {
    let mut payload = vec![0u8; h.stored_len as usize];
    file.read_exact_at(&mut payload, offset + BUNDLE_HEADER as u64)?;
    Ok(payload)
}

/// Why a bundle's payload could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Decryption failed or a key is missing.
    #[error(transparent)]
    Crypt(#[from] CryptError),
    /// zstd refused the data.
    #[error("decompression failed: {0}")]
    Decompress(String),
    /// The dictionary the bundle was compressed with is missing or damaged.
    #[error("{0}")]
    Dictionary(String),
    /// Decompressed size differs from the header.
    #[error("decompressed to {got} bytes, header says {want}")]
    Length {
        /// Actual.
        got: usize,
        /// Declared.
        want: u32,
    },
}

/// Decrypts (when needed) and decompresses a bundle payload into raw record
/// bytes; a payload compressed with a dictionary fails (see
/// [`open_payload_with`]).
pub fn open_payload(
    h: &BundleHeader,
    payload: &[u8],
    cipher: Option<&Cipher>,
) -> Result<Vec<u8>, PayloadError> {
    open_payload_with(h, payload, cipher, &Dicts::none())
}

/// [`open_payload`] with the store's dictionaries, for `KBF2` payloads.
pub fn open_payload_with(
    h: &BundleHeader,
    payload: &[u8],
    cipher: Option<&Cipher>,
    dicts: &Dicts,
) -> Result<Vec<u8>, PayloadError> {
    let compressed;
    let data: &[u8] = if h.flags & 1 == 1 {
        let c = cipher.ok_or(CryptError::KeyNeeded)?;
        compressed = c.open(payload, &h.aad())?;
        &compressed
    } else {
        payload
    };
    if is_framed(data) {
        let (dict, table) = parse_table(data, h, data.len())?;
        let dict = resolve(dict.as_ref(), dicts)?;
        let mut raw: Vec<u8> = Vec::with_capacity(h.raw_len as usize);
        let done = with_decompressor(dict, |d| {
            for e in &table {
                let mut at = std::io::Cursor::new(&mut raw);
                at.set_position(at.get_ref().len() as u64);
                unframe(d, &data[e.at..e.at + e.len], &mut at, e.raw_len)?;
            }
            Ok(())
        });
        return match done {
            Ok(()) => Ok(raw),
            Err(PartError::Payload(e)) => Err(e),
            Err(PartError::Io(e)) => Err(PayloadError::Decompress(e.to_string())),
        };
    }
    let raw = zstd::bulk::decompress(data, h.raw_len as usize)
        .map_err(|e| PayloadError::Decompress(e.to_string()))?;
    if raw.len() != h.raw_len as usize {
        return Err(PayloadError::Length {
            got: raw.len(),
            want: h.raw_len,
        });
    }
    Ok(raw)
}

/// Whether an (opened) payload is framed, with or without a dictionary.
fn is_framed(data: &[u8]) -> bool {
    data.starts_with(FRAMED_MAGIC) || data.starts_with(FRAMED_DICT_MAGIC)
}

/// The dictionary a payload names, looked up.
fn resolve<'a>(
    id: Option<&DictId>,
    dicts: &'a Dicts,
) -> Result<Option<(DictId, &'a [u8])>, PayloadError> {
    match id {
        None => Ok(None),
        Some(id) => match dicts.get(id) {
            Ok(b) => Ok(Some((*id, &b[..]))),
            Err(e) => Err(PayloadError::Dictionary(e.0)),
        },
    }
}

/// Decompression contexts a thread keeps loaded with a dictionary.
const DICT_CONTEXTS: usize = 4;

thread_local! {
    /// One zstd context per thread, kept: creating one per bundle read showed
    /// as 5% of a needle's profile.
    static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    /// Contexts loaded with a dictionary, most recently used first, keyed by
    /// the dictionary's content address (so sharing one between stores that
    /// hold the same dictionary is sound): loading a dictionary costs far
    /// more than a frame.
    static DCTX_DICT: std::cell::RefCell<Vec<(DictId, zstd::bulk::Decompressor<'static>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's zstd decompression context for `dict`.
fn with_decompressor<T>(
    dict: Option<(DictId, &[u8])>,
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> Result<T, PartError>,
) -> Result<T, PartError> {
    let zerr = |e: std::io::Error| PayloadError::Decompress(e.to_string());
    if let Some((id, bytes)) = dict {
        return DCTX_DICT.with(|cell| {
            let mut v = cell.borrow_mut();
            match v.iter().position(|(i, _)| *i == id) {
                Some(0) => {}
                Some(p) => {
                    let e = v.remove(p);
                    v.insert(0, e);
                }
                None => {
                    let d = zstd::bulk::Decompressor::with_dictionary(bytes).map_err(zerr)?;
                    v.truncate(DICT_CONTEXTS - 1);
                    v.insert(0, (id, d));
                }
            }
            match v.first_mut() {
                Some((_, d)) => f(d),
                None => Err(PayloadError::Decompress("no decompression context".into()).into()),
            }
        });
    }
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match &mut *slot {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new().map_err(zerr)?),
        };
        f(d)
    })
}

/// Decompresses one frame into `dst` (a `Vec` written from its start, or a
/// cursor appending to one: no zeroing first), which must receive exactly
/// `want` bytes.
fn unframe<W: zstd::zstd_safe::WriteBuf + ?Sized>(
    d: &mut zstd::bulk::Decompressor<'static>,
    src: &[u8],
    dst: &mut W,
    want: u32,
) -> Result<(), PayloadError> {
    let got = d
        .decompress_to_buffer(src, dst)
        .map_err(|e| PayloadError::Decompress(e.to_string()))?;
    if got != want as usize {
        return Err(PayloadError::Length { got, want });
    }
    Ok(())
}

/// One zstd frame of a framed payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrameEntry {
    /// Index within the bundle of its first record.
    first: u32,
    /// Records in it.
    records: u32,
    /// Decompressed size.
    raw_len: u32,
    /// Offset in the (opened) payload.
    at: usize,
    /// Compressed size.
    len: usize,
}

/// Bytes of a framed payload's table before its entries, by its magic.
fn table_head(data: &[u8]) -> usize {
    if data.starts_with(FRAMED_DICT_MAGIC) {
        TABLE_HEAD_DICT
    } else {
        TABLE_HEAD
    }
}

/// Bytes a framed payload's table takes, from its first eight bytes.
fn table_len(head: &[u8], h: &BundleHeader) -> Result<usize, PayloadError> {
    let bad = |m: String| PayloadError::Decompress(format!("framed bundle: {m}"));
    let n = head
        .get(4..8)
        .map(le32)
        .ok_or_else(|| bad("table cut short".into()))?;
    if n == 0 || n > h.count {
        return Err(bad(format!("{n} frames for {} records", h.count)));
    }
    Ok(table_head(head) + TABLE_ENTRY * n as usize)
}

/// Parses and checks a framed payload's table (`data` holds at least the
/// table; the whole payload is `total` bytes): the frames must hold exactly
/// the header's records and raw bytes and tile the payload.
/// Returns the dictionary the payload names (`KBF2`) and the frames.
fn parse_table(
    data: &[u8],
    h: &BundleHeader,
    total: usize,
) -> Result<(Option<DictId>, Vec<FrameEntry>), PayloadError> {
    let bad = |m: String| PayloadError::Decompress(format!("framed bundle: {m}"));
    let tl = table_len(data, h)?;
    if tl > total || data.len() < tl {
        return Err(bad("table longer than the payload".into()));
    }
    let th = table_head(data);
    let dict = (th == TABLE_HEAD_DICT).then(|| {
        let mut id = [0u8; 16];
        id.copy_from_slice(&data[TABLE_HEAD..TABLE_HEAD_DICT]);
        id
    });
    let n = (tl - th) / TABLE_ENTRY;
    let mut out = Vec::with_capacity(n);
    let (mut first, mut raw, mut at) = (0u64, 0u64, tl);
    for i in 0..n {
        let e = &data[th + TABLE_ENTRY * i..th + TABLE_ENTRY * (i + 1)];
        let (records, raw_len, len) = (le32(&e[..4]), le32(&e[4..8]), le32(&e[8..12]) as usize);
        if records == 0 || at + len > total {
            return Err(bad(format!("frame {i} is empty or runs past the payload")));
        }
        out.push(FrameEntry {
            first: first as u32,
            records,
            raw_len,
            at,
            len,
        });
        first += u64::from(records);
        raw += u64::from(raw_len);
        at += len;
    }
    if first != u64::from(h.count) || raw != u64::from(h.raw_len) || at != total {
        return Err(bad(format!(
            "frames hold {first} records, {raw} bytes in {at} stored bytes; header says {}, {}, {total}",
            h.count, h.raw_len
        )));
    }
    Ok((dict, out))
}

/// Why part of a bundle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    /// Reading the segment failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The payload would not open.
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

/// First bytes read of a plain payload: the whole table of any framed
/// bundle of up to 1 MiB raw in 4 KiB frames, so usually one read.
const PREFIX: usize = 4096;

/// Reads and opens only the frames of the bundle at `offset` that hold a
/// record `want(first, records)` asks for (indexes within the bundle), so a
/// search hit costs one small frame rather than the whole bundle. Returns
/// (index of the piece's first record, its raw records) per frame read; a
/// bundle of one zstd frame (the format before framing) comes back whole.
/// Sealed bundles are read and opened whole (the AEAD covers the payload),
/// then only the wanted frames decompressed.
pub fn read_records(
    file: &File,
    offset: u64,
    h: &BundleHeader,
    cipher: Option<&Cipher>,
    dicts: &Dicts,
    want: &mut dyn FnMut(u32, u32) -> bool,
) -> Result<Vec<(u32, Vec<u8>)>, PartError> {
    let total = h.stored_len as usize;
    let at = offset + BUNDLE_HEADER as u64;
    let whole = |file: &File| -> Result<Vec<(u32, Vec<u8>)>, PartError> {
        let payload = read_payload(file, offset, h)?;
        Ok(vec![(0, open_payload_with(h, &payload, cipher, dicts)?)])
    };
    if h.flags & 1 == 1 {
        let payload = read_payload(file, offset, h)?;
        let c = cipher.ok_or(PayloadError::Crypt(CryptError::KeyNeeded))?;
        let data = c.open(&payload, &h.aad()).map_err(PayloadError::Crypt)?;
        if !is_framed(&data) {
            let plain = BundleHeader { flags: 0, ..*h };
            return Ok(vec![(0, open_payload(&plain, &data, None)?)]);
        }
        let (dict, table) = parse_table(&data, h, data.len())?;
        let dict = resolve(dict.as_ref(), dicts)?;
        return unframe_wanted(&table, dict, want, |e, buf| {
            buf.extend_from_slice(&data[e.at..e.at + e.len]);
            Ok(())
        });
    }
    let mut head = vec![0u8; total.min(PREFIX)];
    file.read_exact_at(&mut head, at)?;
    if !is_framed(&head) {
        return whole(file);
    }
    let tl = table_len(&head, h)?;
    if tl > total {
        return Err(PayloadError::Decompress(
            "framed bundle: table longer than the payload".into(),
        )
        .into());
    }
    if tl > head.len() {
        head.resize(tl, 0);
        file.read_exact_at(&mut head, at)?;
    }
    let (dict, table) = parse_table(&head, h, total)?;
    let dict = resolve(dict.as_ref(), dicts)?;
    unframe_wanted(&table, dict, want, |e, buf| {
        buf.resize(e.len, 0);
        file.read_exact_at(buf, at + e.at as u64)?;
        Ok(())
    })
}

/// Decompresses the frames `want` asks for, fetching each (compressed) into
/// a buffer reused between frames with `fetch`; each frame decompresses
/// straight into a new vector's spare capacity, without zeroing it first
/// (zeroing showed as ~8% of an object-history query's CPU).
fn unframe_wanted(
    table: &[FrameEntry],
    dict: Option<(DictId, &[u8])>,
    want: &mut dyn FnMut(u32, u32) -> bool,
    mut fetch: impl FnMut(&FrameEntry, &mut Vec<u8>) -> Result<(), PartError>,
) -> Result<Vec<(u32, Vec<u8>)>, PartError> {
    let mut out = Vec::new();
    let mut src = Vec::new();
    for e in table {
        if !want(e.first, e.records) {
            continue;
        }
        src.clear();
        fetch(e, &mut src)?;
        let mut raw: Vec<u8> = Vec::with_capacity(e.raw_len as usize);
        with_decompressor(dict, |d| Ok(unframe(d, &src, &mut raw, e.raw_len)?))?;
        out.push((e.first, raw));
    }
    Ok(out)
}

/// File name of the segment whose first record is `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.kseg")
}

/// Parses a segment file name back to its first sequence number.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".kseg")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Parses the frame at `offset` of a whole segment held in memory; with
/// `check_crc` the bundle checksum is checked too.
pub fn parse_frame_in(buf: &[u8], offset: u64, check_crc: bool) -> Result<Frame, FrameProblem> {
    let off = offset as usize;
    let rest = buf.get(off..).unwrap_or_default();
    if rest.len() < 4 {
        return Err(FrameProblem::Incomplete);
    }
    if &rest[..4] == COMMIT_MAGIC {
        if rest.len() < COMMIT_FRAME {
            return Err(FrameProblem::Incomplete);
        }
        if crc32c::crc32c(&rest[..12]) != le32(&rest[12..16]) {
            return Err(FrameProblem::Corrupt(
                "commit marker checksum mismatch".into(),
            ));
        }
        return Ok(Frame::Commit {
            offset,
            end_seq: le64(&rest[4..12]),
        });
    }
    if &rest[..4] != BUNDLE_MAGIC {
        if rest.iter().take(BUNDLE_HEADER).all(|&b| b == 0) {
            return Err(FrameProblem::Incomplete);
        }
        return Err(FrameProblem::Corrupt(
            "no frame magic at this offset".into(),
        ));
    }
    if rest.len() < BUNDLE_HEADER {
        return Err(FrameProblem::Incomplete);
    }
    let header = BundleHeader {
        first_seq: le64(&rest[4..12]),
        count: le32(&rest[12..16]),
        raw_len: le32(&rest[16..20]),
        stored_len: le32(&rest[20..24]),
        min_time: le64(&rest[24..32]) as i64,
        max_time: le64(&rest[32..40]) as i64,
        flags: le32(&rest[40..44]),
    };
    if header.raw_len > MAX_BUNDLE_RAW || header.count > MAX_BUNDLE_COUNT || header.count == 0 {
        return Err(FrameProblem::Corrupt(format!(
            "bundle header out of bounds (count {}, raw length {})",
            header.count, header.raw_len
        )));
    }
    let end = BUNDLE_HEADER + header.stored_len as usize;
    if rest.len() < end {
        return Err(FrameProblem::Incomplete);
    }
    if check_crc {
        let crc = crc32c::crc32c_append(crc32c::crc32c(&rest[..44]), &rest[BUNDLE_HEADER..end]);
        if crc != le32(&rest[44..48]) {
            return Err(FrameProblem::Corrupt("bundle checksum mismatch".into()));
        }
    }
    Ok(Frame::Bundle { offset, header })
}
