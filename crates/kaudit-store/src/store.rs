//! The store: segments on disk, group commit, crash recovery, the persisted
//! tree, dedupe and signed checkpoints.

use crate::crypt::Cipher;
use crate::merkle::{self, Hash, TreeError};
use crate::note::{Signer25519, Verifier25519};
use crate::record::{dedupe_key, iter_leaves, validate_parts, LeafRef, Record, RecordRef};
use crate::segment::{self, Frame, FrameProblem, SegmentHeader};
use crate::tree::{GroupLeaves, Tree, GROUP};
use crate::{StoreError, StoreResult};
use std::collections::HashSet as StdHashSet;

/// Dedupe keys are already SHA-256 output: hashing them again is wasted work,
/// so the set uses their first 8 bytes as the hash.
#[derive(Clone, Copy, Default)]
pub(crate) struct KeyHash(u64);

impl std::hash::Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
}

type HashSet<T> = StdHashSet<T, std::hash::BuildHasherDefault<KeyHash>>;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// Tunables and optional keys for opening a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Open without locking or writing anything (proofs, stat while a writer runs).
    pub read_only: bool,
    /// Checkpoint signing key file (`PRIVATE+KEY+...`); default `<data>/checkpoint.key`, generated on first open.
    pub signing_key: Option<PathBuf>,
    /// Key name (= checkpoint origin) for a key generated on first open.
    pub origin: Option<String>,
    /// Encryption key file; new segments are sealed with it, and it is needed to read sealed ones.
    pub encryption_key: Option<PathBuf>,
    /// Also write each new checkpoint to this file (atomically replaced).
    pub publish_checkpoint: Option<PathBuf>,
    /// Most records per bundle.
    pub bundle_max_records: usize,
    /// Most raw bytes per bundle.
    pub bundle_max_bytes: usize,
    /// A new segment is started once the current one is this large.
    pub segment_target_bytes: u64,
    /// zstd level.
    pub zstd_level: i32,
    /// Least time between two checkpoints while data arrives.
    pub checkpoint_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            read_only: false,
            signing_key: None,
            origin: None,
            encryption_key: None,
            publish_checkpoint: None,
            bundle_max_records: 4096,
            bundle_max_bytes: 1 << 20,
            segment_target_bytes: 64 << 20,
            zstd_level: 1,
            checkpoint_interval: Duration::from_secs(1),
        }
    }
}

/// Where a bundle lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleMeta {
    /// First sequence number.
    pub first_seq: u64,
    /// Records in it.
    pub count: u32,
    /// Segment index in [`Shared::segments`].
    pub segment: usize,
    /// Frame offset.
    pub offset: u64,
    /// Decompressed size.
    pub raw_len: u32,
    /// Stored size (payload plus header).
    pub stored_len: u32,
    /// Earliest receive time.
    pub min_time: i64,
    /// Latest receive time.
    pub max_time: i64,
}

/// One segment file.
#[derive(Debug)]
pub struct SegmentInfo {
    /// Its path.
    pub path: PathBuf,
    /// First sequence number.
    pub first_seq: u64,
    /// Open handle for reads.
    pub file: Arc<File>,
    /// Encryption key id of its bundles.
    pub key_id: Option<[u8; 8]>,
}

/// A kept checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredCheckpoint {
    /// Tree size it signs.
    pub size: u64,
    /// When it was made (RFC 3339).
    pub time: String,
    /// The signed note.
    pub note: String,
}

/// What opening the store found and fixed.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    /// Torn tails cut back: (segment path, offset cut at, bytes removed).
    pub cut: Vec<(PathBuf, u64, u64)>,
    /// Leaves re-hashed from the segments to rebuild derived files.
    pub replayed: u64,
}

impl OpenReport {
    /// One line per repair, for logs.
    pub fn describe(&self) -> Vec<String> {
        self.cut
            .iter()
            .map(|(p, off, n)| {
                format!(
                    "recovered: cut {n} uncommitted bytes at {}:{off} (torn tail from an interrupted write)",
                    p.display()
                )
            })
            .collect()
    }
}

/// Reader-visible state.
pub struct Shared {
    /// Segments in order.
    pub segments: Vec<SegmentInfo>,
    /// Committed bundles in order.
    pub bundles: Vec<BundleMeta>,
    /// The tree over every written record.
    pub tree: Tree,
    /// Records durable and visible: the tree size checkpoints and proofs use.
    pub durable: u64,
    /// First record still stored (records below were pruned).
    pub first_seq: u64,
    /// Kept checkpoints, oldest first.
    pub checkpoints: Vec<StoredCheckpoint>,
}

struct Writer {
    active: Option<Active>,
    next_seq: u64,
    marker_seq: u64,
    dedupe: HashSet<[u8; 16]>,
    dedupe_file: Option<File>,
    dedupe_len: u64,
    compressor: zstd::bulk::Compressor<'static>,
    last_checkpoint: Instant,
    poisoned: Option<String>,
    /// Reused between appends so that each batch does not grow (and fault
    /// in) a fresh megabyte-sized buffer.
    builder: BundleBuilder,
}

struct Active {
    file: Arc<File>,
    len: u64,
    segment: usize,
}

struct SyncState {
    durable: u64,
    leader: bool,
    error: Option<String>,
}

/// The append-only store. Safe to share between threads (`Arc<Store>`).
pub struct Store {
    dir: PathBuf,
    opts: StoreOptions,
    signer: Option<Signer25519>,
    verifier: Verifier25519,
    cipher: Option<Cipher>,
    writer: Mutex<Writer>,
    shared: RwLock<Shared>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    group_cache: Mutex<Option<(u64, Vec<Hash>)>>,
    _lock: Option<File>,
    report: OpenReport,
}

/// Outcome of an append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Sequence numbers given to the new records.
    pub seqs: Range<u64>,
    /// Records dropped as exact duplicates.
    pub duplicates: u64,
}

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> StoreError {
    let what = what.to_string();
    move |e| StoreError::Io(format!("{what}: {e}"))
}

fn lock_poison<T>(_: T) -> StoreError {
    StoreError::Io("internal lock poisoned by an earlier panic".into())
}

/// Paths inside a data directory.
pub mod paths {
    use std::path::{Path, PathBuf};
    /// Segment files.
    pub fn segments(d: &Path) -> PathBuf {
        d.join("segments")
    }
    /// Tree level files.
    pub fn tree(d: &Path) -> PathBuf {
        d.join("tree")
    }
    /// Dedupe keys, 16 bytes per record from record `base` (the first kept one).
    pub fn dedupe(d: &Path, base: u64) -> PathBuf {
        d.join("index").join(format!("dedupe-{base:020}.keys"))
    }
    /// Kept checkpoints, one JSON object per line.
    pub fn checkpoints(d: &Path) -> PathBuf {
        d.join("checkpoints.jsonl")
    }
    /// Default signing key.
    pub fn signing_key(d: &Path) -> PathBuf {
        d.join("checkpoint.key")
    }
    /// Public verifier key, for readers and auditors.
    pub fn verifier_key(d: &Path) -> PathBuf {
        d.join("checkpoint.pub")
    }
    /// Signed record of the pruned prefix.
    pub fn pruned(d: &Path) -> PathBuf {
        d.join("pruned.json")
    }
    /// Leaf hashes of the group straddling the pruned boundary.
    pub fn pruned_edge(d: &Path) -> PathBuf {
        d.join("tree").join("pruned-edge.hash")
    }
    /// Legal holds.
    pub fn holds(d: &Path) -> PathBuf {
        d.join("holds.json")
    }
    /// Writer lock.
    pub fn lock(d: &Path) -> PathBuf {
        d.join("LOCK")
    }
}

/// Reads a bounded small file.
pub(crate) fn read_small(path: &Path, limit: u64) -> StoreResult<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(io_err(path.display()))?;
    if meta.len() > limit {
        return Err(StoreError::Corrupt(format!(
            "{} is larger than {limit} bytes",
            path.display()
        )));
    }
    std::fs::read(path).map_err(io_err(path.display()))
}

/// Writes a file atomically (temp file, fsync, rename, dir fsync).
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> StoreResult<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err(tmp.display()))?;
        f.write_all(data).map_err(io_err(tmp.display()))?;
        f.sync_all().map_err(io_err(tmp.display()))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path.display()))?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Loads (or, when allowed, creates) the signing key of a store.
pub fn load_signer(
    dir: &Path,
    opts: &StoreOptions,
    create: bool,
) -> StoreResult<Option<Signer25519>> {
    let path = opts
        .signing_key
        .clone()
        .unwrap_or_else(|| paths::signing_key(dir));
    if path.exists() {
        let text = read_small(&path, 4096)?;
        let text = String::from_utf8(text)
            .map_err(|_| StoreError::Key(format!("{}: not UTF-8", path.display())))?;
        return Signer25519::from_private_text(&text)
            .map(Some)
            .map_err(|e| StoreError::Key(format!("{}: {e}", path.display())));
    }
    if !create {
        return Ok(None);
    }
    if opts.signing_key.is_some() {
        return Err(StoreError::Key(format!(
            "signing key {} does not exist (make one with `kaudit keygen`)",
            path.display()
        )));
    }
    let origin = match &opts.origin {
        Some(o) => o.clone(),
        None => {
            let mut id = [0u8; 8];
            getrandom::getrandom(&mut id).map_err(|e| StoreError::Key(e.to_string()))?;
            format!("kaudit.local/{}", hex::encode(id))
        }
    };
    let signer = Signer25519::generate(&origin).map_err(|e| StoreError::Key(e.to_string()))?;
    write_atomic(
        &path,
        format!("{}\n", signer.private_text()).as_bytes(),
        0o600,
    )?;
    Ok(Some(signer))
}

/// Loads the verifier key of a store: from its signing key, else `checkpoint.pub`.
pub fn load_verifier(dir: &Path, opts: &StoreOptions) -> StoreResult<Verifier25519> {
    if let Some(s) = load_signer(dir, opts, false)? {
        return Ok(s.verifier());
    }
    let p = paths::verifier_key(dir);
    let text = read_small(&p, 4096).map_err(|_| {
        StoreError::Key(format!(
            "no checkpoint key in {} (neither checkpoint.key nor checkpoint.pub)",
            dir.display()
        ))
    })?;
    Verifier25519::from_text(&String::from_utf8_lossy(&text))
        .map_err(|e| StoreError::Key(format!("{}: {e}", p.display())))
}

/// Lists segment files in sequence order.
pub fn list_segments(dir: &Path) -> StoreResult<Vec<(u64, PathBuf)>> {
    let sdir = paths::segments(dir);
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&sdir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(sdir.display())(e)),
    };
    for ent in rd {
        let ent = ent.map_err(io_err(sdir.display()))?;
        let name = ent.file_name();
        if let Some(seq) = segment::parse_segment_name(&name.to_string_lossy()) {
            out.push((seq, ent.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads the kept checkpoints (an incomplete last line is ignored).
pub fn read_checkpoints(dir: &Path) -> StoreResult<(Vec<StoredCheckpoint>, u64)> {
    let p = paths::checkpoints(dir);
    let data = match std::fs::read(&p) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io_err(p.display())(e)),
    };
    let mut out = Vec::new();
    let mut good = 0u64;
    let mut pos = 0usize;
    let mut line_no = 0;
    while let Some(nl) = memchr::memchr(b'\n', &data[pos..]) {
        line_no += 1;
        let line = &data[pos..pos + nl];
        let cp: StoredCheckpoint = serde_json::from_slice(line).map_err(|e| {
            StoreError::Corrupt(format!(
                "{}:{line_no}: not a checkpoint record: {e}",
                p.display()
            ))
        })?;
        out.push(cp);
        pos += nl + 1;
        good = pos as u64;
    }
    Ok((out, good))
}

/// The signed prune record: everything below `before` was deleted on purpose.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PruneRecord {
    /// First record still stored.
    pub before: u64,
    /// When.
    pub time: String,
    /// Signed note over `kaudit prune\n<origin>\n<before>\n<base64 edge hash>\n`.
    pub note: String,
}

/// Reads and checks the prune record.
pub fn read_pruned(dir: &Path, verifier: &Verifier25519) -> StoreResult<Option<PruneRecord>> {
    let p = paths::pruned(dir);
    if !p.exists() {
        return Ok(None);
    }
    let data = read_small(&p, 1 << 16)?;
    let rec: PruneRecord = serde_json::from_slice(&data)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", p.display())))?;
    let text = verifier.verify_note(&rec.note).map_err(|e| {
        StoreError::Corrupt(format!(
            "{}: prune record is not authentic: {e}",
            p.display()
        ))
    })?;
    let want_prefix = format!("kaudit prune\n{}\n{}\n", verifier.name(), rec.before);
    if !text.starts_with(&want_prefix) {
        return Err(StoreError::Corrupt(format!(
            "{}: prune record's signed text does not match its fields",
            p.display()
        )));
    }
    Ok(Some(rec))
}

/// Reads the edge hashes kept at prune time and checks them against the signed prune record.
pub fn read_edge(dir: &Path, rec: &PruneRecord) -> StoreResult<(u64, Vec<Hash>)> {
    let first = rec.before / GROUP * GROUP;
    let n = (rec.before - first) as usize;
    if n == 0 {
        return Ok((first, Vec::new()));
    }
    let p = paths::pruned_edge(dir);
    let data = read_small(&p, 256 * 32)?;
    if data.len() != n * 32 {
        return Err(StoreError::Corrupt(format!(
            "{}: want {n} hashes, found {} bytes",
            p.display(),
            data.len()
        )));
    }
    let hashes: Vec<Hash> = data
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect();
    use base64::Engine;
    let digest = base64::engine::general_purpose::STANDARD.encode(sha2_digest(&data));
    if !rec.note.contains(&format!("\n{digest}\n")) {
        return Err(StoreError::Corrupt(format!(
            "{}: kept edge hashes do not match the signed prune record",
            p.display()
        )));
    }
    Ok((first, hashes))
}

pub(crate) fn sha2_digest(data: &[u8]) -> Hash {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// Result of scanning one segment's frames.
pub(crate) struct SegmentScan {
    pub header: SegmentHeader,
    pub bundles: Vec<segment::BundleHeader>,
    pub offsets: Vec<u64>,
    /// End of the last commit marker (or of the header when there is none).
    pub committed_end: u64,
    pub committed_seq: Option<u64>,
    pub file_len: u64,
    /// A problem that is not a torn tail.
    pub corrupt: Option<(u64, String)>,
}

pub(crate) fn scan_segment(
    file: &File,
    check_crc: bool,
) -> std::io::Result<Result<SegmentScan, String>> {
    let file_len = file.metadata()?.len();
    let mut hb = [0u8; segment::SEGMENT_HEADER];
    if file_len < segment::SEGMENT_HEADER as u64 {
        return Ok(Err("segment shorter than its header".into()));
    }
    file.read_exact_at(&mut hb, 0)?;
    let header = match SegmentHeader::decode(&hb) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    let mut scan = SegmentScan {
        header,
        bundles: Vec::new(),
        offsets: Vec::new(),
        committed_end: segment::SEGMENT_HEADER as u64,
        committed_seq: None,
        file_len,
        corrupt: None,
    };
    let mut committed_bundles = 0usize;
    let mut off = segment::SEGMENT_HEADER as u64;
    while off < file_len {
        match segment::read_frame(file, off, file_len, check_crc) {
            Ok(Frame::Bundle { header, .. }) => {
                scan.bundles.push(header);
                scan.offsets.push(off);
                off += (segment::BUNDLE_HEADER as u64) + u64::from(header.stored_len);
            }
            Ok(Frame::Commit { end_seq, .. }) => {
                off += segment::COMMIT_FRAME as u64;
                scan.committed_end = off;
                scan.committed_seq = Some(end_seq);
                committed_bundles = scan.bundles.len();
            }
            Err(FrameProblem::Incomplete) => break,
            Err(FrameProblem::Corrupt(why)) => {
                // Complete garbage after the last commit is a torn tail only if
                // no valid commit marker follows it.
                if commit_marker_after(file, off, file_len)? {
                    scan.corrupt = Some((off, why));
                }
                break;
            }
        }
    }
    scan.bundles.truncate(committed_bundles);
    scan.offsets.truncate(committed_bundles);
    Ok(Ok(scan))
}

fn commit_marker_after(file: &File, from: u64, file_len: u64) -> std::io::Result<bool> {
    let mut buf = vec![0u8; (file_len - from) as usize];
    file.read_exact_at(&mut buf, from)?;
    let finder = memchr::memmem::Finder::new(b"KCM1");
    for pos in finder.find_iter(&buf) {
        if pos + segment::COMMIT_FRAME <= buf.len() {
            let f = &buf[pos..pos + segment::COMMIT_FRAME];
            if crc32c::crc32c(&f[..12]) == u32::from_le_bytes([f[12], f[13], f[14], f[15]]) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

impl Store {
    /// Opens (creating if needed and writable) the store in `dir`.
    pub fn open(dir: &Path, opts: StoreOptions) -> StoreResult<Store> {
        let writable = !opts.read_only;
        if writable {
            // The signing key comes first: a crash before it exists then
            // leaves an empty directory, never data without a key.
            std::fs::create_dir_all(dir).map_err(io_err(dir.display()))?;
            load_signer(dir, &opts, true)?;
            for d in [paths::segments(dir), paths::tree(dir), dir.join("index")] {
                std::fs::create_dir_all(&d).map_err(io_err(d.display()))?;
            }
        } else if !dir.is_dir() {
            return Err(StoreError::Io(format!(
                "{}: no such store directory",
                dir.display()
            )));
        }
        let lock = if writable {
            Some(take_lock(dir)?)
        } else {
            None
        };
        let signer = load_signer(dir, &opts, writable)?;
        let verifier = match &signer {
            Some(s) => s.verifier(),
            None => load_verifier(dir, &opts)?,
        };
        if writable {
            let pubp = paths::verifier_key(dir);
            let text = format!("{}\n", verifier.text());
            if std::fs::read_to_string(&pubp).ok().as_deref() != Some(text.as_str()) {
                write_atomic(&pubp, text.as_bytes(), 0o644)?;
            }
        }
        let cipher = match &opts.encryption_key {
            Some(p) => Some(Cipher::load(p)?),
            None => None,
        };
        let pruned = read_pruned(dir, &verifier)?;
        let first_seq = pruned.as_ref().map_or(0, |p| p.before);
        let mut report = OpenReport::default();

        // Segments.
        let mut seg_list = list_segments(dir)?;
        // Segments wholly below the pruned boundary are leftovers of an interrupted prune.
        while seg_list.len() >= 2 && seg_list[1].0 <= first_seq {
            let (_, p) = seg_list.remove(0);
            if writable {
                std::fs::remove_file(&p).map_err(io_err(p.display()))?;
            }
        }
        let mut segments = Vec::new();
        let mut bundles = Vec::new();
        let mut expect = first_seq;
        let n_segs = seg_list.len();
        for (i, (name_seq, path)) in seg_list.into_iter().enumerate() {
            let last = i + 1 == n_segs;
            let file = OpenOptions::new()
                .read(true)
                .write(writable && last)
                .open(&path)
                .map_err(io_err(path.display()))?;
            let scan = scan_segment(&file, last).map_err(io_err(path.display()))?;
            let scan = match scan {
                Ok(s) => s,
                Err(why) if last && writable => {
                    // A segment created just before a crash, with no committed data.
                    let len = file.metadata().map_err(io_err(path.display()))?.len();
                    std::fs::remove_file(&path).map_err(io_err(path.display()))?;
                    report.cut.push((path.clone(), 0, len));
                    let _ = why;
                    continue;
                }
                Err(why) if last => {
                    let _ = why;
                    continue;
                }
                Err(why) => {
                    return Err(StoreError::Corrupt(format!("{}: {why}", path.display())));
                }
            };
            if let Some((off, why)) = &scan.corrupt {
                return Err(StoreError::Corrupt(format!(
                    "{}:{off}: {why}; run `kaudit verify` for details",
                    path.display()
                )));
            }
            if scan.header.first_seq != name_seq || scan.header.first_seq != expect {
                if scan.bundles.is_empty() && last && scan.committed_seq.is_none() {
                    // An empty trailing segment that never committed.
                } else {
                    return Err(StoreError::Corrupt(format!(
                        "{}: segment starts at record {}, expected {expect}; run `kaudit verify`",
                        path.display(),
                        scan.header.first_seq
                    )));
                }
            }
            if !last && scan.committed_end != scan.file_len {
                return Err(StoreError::Corrupt(format!(
                    "{}:{}: data after the last commit marker in a sealed segment; run `kaudit verify`",
                    path.display(),
                    scan.committed_end
                )));
            }
            if last && scan.committed_end < scan.file_len {
                let cut = scan.file_len - scan.committed_end;
                if writable {
                    file.set_len(scan.committed_end)
                        .map_err(io_err(path.display()))?;
                    file.sync_all().map_err(io_err(path.display()))?;
                }
                report.cut.push((path.clone(), scan.committed_end, cut));
            }
            let seg_index = segments.len();
            for (h, off) in scan.bundles.iter().zip(&scan.offsets) {
                if h.first_seq != expect {
                    return Err(StoreError::Corrupt(format!(
                        "{}:{off}: bundle starts at record {}, expected {expect}; run `kaudit verify`",
                        path.display(),
                        h.first_seq
                    )));
                }
                expect = h.end_seq();
                bundles.push(BundleMeta {
                    first_seq: h.first_seq,
                    count: h.count,
                    segment: seg_index,
                    offset: *off,
                    raw_len: h.raw_len,
                    stored_len: h.stored_len.saturating_add(segment::BUNDLE_HEADER as u32),
                    min_time: h.min_time,
                    max_time: h.max_time,
                });
            }
            if let Some(c) = scan.committed_seq {
                if c != expect {
                    return Err(StoreError::Corrupt(format!(
                        "{}: commit marker says {c} records, bundles hold {expect}; run `kaudit verify`",
                        path.display()
                    )));
                }
            }
            if let (Some(kid), Some(c)) = (&scan.header.key_id, &cipher) {
                c.check_id(kid)?;
            }
            segments.push(SegmentInfo {
                path,
                first_seq: scan.header.first_seq,
                file: Arc::new(file),
                key_id: scan.header.key_id,
            });
        }
        let size = expect;

        // Checkpoints.
        let (checkpoints, good_len) = read_checkpoints(dir)?;
        if writable {
            let p = paths::checkpoints(dir);
            if let Ok(m) = std::fs::metadata(&p) {
                if m.len() > good_len {
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&p)
                        .map_err(io_err(p.display()))?;
                    f.set_len(good_len).map_err(io_err(p.display()))?;
                }
            }
        }
        let trusted = checkpoints.last().map_or(0, |c| c.size);
        if trusted > size {
            let msg = format!(
                "the log holds {size} records but checkpoint signed {trusted}: records are missing; run `kaudit verify`"
            );
            if writable {
                return Err(StoreError::Corrupt(msg));
            }
        }
        let trusted = trusted.min(size);

        // Tree.
        let mut tree = Tree::open(&paths::tree(dir), writable, trusted).map_err(io_err("tree"))?;
        if let Some(rec) = &pruned {
            let (first, hashes) = read_edge(dir, rec)?;
            tree.set_edge(first, hashes);
        }
        let mut shared = Shared {
            segments,
            bundles,
            tree,
            durable: size,
            first_seq,
            checkpoints,
        };

        // Dedupe keys.
        let dpath = paths::dedupe(dir, first_seq);
        if writable {
            if let Ok(rd) = std::fs::read_dir(dir.join("index")) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if name.starts_with("dedupe-") && e.path() != dpath {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        let (dedupe_file, mut keys) = if writable {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&dpath)
                .map_err(io_err(dpath.display()))?;
            let have = f.metadata().map_err(io_err(dpath.display()))?.len() / 16;
            let keep = have.min(trusted.saturating_sub(first_seq));
            f.set_len(keep * 16).map_err(io_err(dpath.display()))?;
            let mut buf = vec![0u8; (keep * 16) as usize];
            f.read_exact_at(&mut buf, 0)
                .map_err(io_err(dpath.display()))?;
            (Some(f), buf)
        } else {
            (None, Vec::new())
        };
        // Read-only openers never append, so they need no dedupe keys: replaying
        // every record to rebuild them made each `query`/`stat` open cost a full read.
        let keys_from = if writable {
            first_seq + keys.len() as u64 / 16
        } else {
            size
        };

        // Replay what derived files lack: leaves after the restored tree,
        // dedupe keys after the trusted ones.
        let tree_size = shared.tree.size();
        if tree_size < size || keys_from < size {
            let mut pending_tree: Vec<Hash> = Vec::new();
            let mut new_keys: Vec<u8> = Vec::new();
            if tree_size < first_seq {
                if let Some(rec) = &pruned {
                    let (efirst, hashes) = read_edge(dir, rec)?;
                    for (i, h) in hashes.iter().enumerate() {
                        if efirst + i as u64 >= tree_size {
                            pending_tree.push(*h);
                        }
                    }
                }
            }
            let start = tree_size.min(keys_from).max(first_seq);
            Self::for_each_leaf(&shared, cipher.as_ref(), start..size, &mut |seq, leaf| {
                if seq >= tree_size {
                    pending_tree.push(leaf.hash());
                }
                if seq >= keys_from {
                    new_keys.extend_from_slice(&dedupe_key(leaf.cluster, leaf.event));
                }
                Ok(true)
            })?;
            report.replayed = pending_tree.len() as u64;
            for h in pending_tree {
                shared.tree.push(h).map_err(io_err("tree"))?;
            }
            if let Some(f) = &dedupe_file {
                f.write_all_at(&new_keys, keys.len() as u64)
                    .map_err(io_err(dpath.display()))?;
            }
            keys.extend_from_slice(&new_keys);
        }
        if shared.tree.size() != size {
            return Err(StoreError::Corrupt(format!(
                "tree holds {} leaves but the segments {size} records",
                shared.tree.size()
            )));
        }
        let mut dedupe = HashSet::with_capacity_and_hasher(keys.len() / 16, Default::default());
        for k in keys.chunks_exact(16) {
            let mut a = [0u8; 16];
            a.copy_from_slice(k);
            dedupe.insert(a);
        }
        let dedupe_len = keys.len() as u64 / 16;
        let active = if writable {
            shared.segments.last().map(|s| Active {
                file: s.file.clone(),
                len: s.file.metadata().map(|m| m.len()).unwrap_or(0),
                segment: shared.segments.len() - 1,
            })
        } else {
            None
        };
        let compressor = zstd::bulk::Compressor::new(opts.zstd_level).map_err(io_err("zstd"))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            signer,
            verifier,
            cipher,
            writer: Mutex::new(Writer {
                active,
                next_seq: size,
                marker_seq: size,
                dedupe,
                dedupe_file,
                dedupe_len,
                compressor,
                last_checkpoint: Instant::now(),
                poisoned: None,
                builder: BundleBuilder::default(),
            }),
            shared: RwLock::new(shared),
            sync: Mutex::new(SyncState {
                durable: size,
                leader: false,
                error: None,
            }),
            synced: Condvar::new(),
            group_cache: Mutex::new(None),
            _lock: lock,
            report,
            opts,
        })
    }

    /// What open found and repaired.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The checkpoint verifier key.
    pub fn verifier(&self) -> &Verifier25519 {
        &self.verifier
    }

    /// The loaded encryption key, if any.
    pub fn cipher(&self) -> Option<&Cipher> {
        self.cipher.as_ref()
    }

    /// Reader-side state (hold briefly).
    pub fn shared(&self) -> StoreResult<std::sync::RwLockReadGuard<'_, Shared>> {
        self.shared.read().map_err(lock_poison)
    }

    /// Calls `f(seq, leaf)` for each record in `range` (stops when `f` returns false).
    pub(crate) fn for_each_leaf(
        shared: &Shared,
        cipher: Option<&Cipher>,
        range: Range<u64>,
        f: &mut dyn FnMut(u64, LeafRef<'_>) -> StoreResult<bool>,
    ) -> StoreResult<()> {
        if range.start >= range.end {
            return Ok(());
        }
        let start_idx = shared
            .bundles
            .partition_point(|b| b.first_seq + u64::from(b.count) <= range.start);
        for b in &shared.bundles[start_idx..] {
            if b.first_seq >= range.end {
                break;
            }
            let raw = read_bundle(shared, b, cipher)?;
            for (i, leaf) in iter_leaves(&raw).enumerate() {
                let seq = b.first_seq + i as u64;
                let seg = &shared.segments[b.segment];
                let leaf = leaf.map_err(|e| {
                    StoreError::Corrupt(format!(
                        "{}:{}: record {seq}: {e}",
                        seg.path.display(),
                        b.offset
                    ))
                })?;
                if seq < range.start {
                    continue;
                }
                if seq >= range.end {
                    return Ok(());
                }
                if leaf.seq != seq {
                    return Err(StoreError::Corrupt(format!(
                        "{}:{}: record at position {seq} carries sequence number {}",
                        seg.path.display(),
                        b.offset,
                        leaf.seq
                    )));
                }
                if !f(seq, leaf)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Reads records `range` (clamped to what is stored and durable).
    pub fn read(
        &self,
        range: Range<u64>,
        f: &mut dyn FnMut(u64, LeafRef<'_>) -> bool,
    ) -> StoreResult<()> {
        let shared = self.shared()?;
        let range = range.start.max(shared.first_seq)..range.end.min(shared.durable);
        Self::for_each_leaf(&shared, self.cipher.as_ref(), range, &mut |s, l| {
            Ok(f(s, l))
        })
    }

    /// Appends records durably: returns once they are fsynced (group commit:
    /// concurrent callers share one fdatasync). Exact duplicates are dropped.
    pub fn append_batch(&self, records: Vec<Record>) -> StoreResult<Appended> {
        let refs: Vec<RecordRef<'_>> = records.iter().map(Record::as_ref).collect();
        self.append_refs(&refs)
    }

    /// [`Store::append_batch`] for records whose bytes live elsewhere (the
    /// ingest path keeps its parsed events for the live feed and lends their
    /// bytes here, so nothing is copied twice).
    pub fn append_refs(&self, records: &[RecordRef<'_>]) -> StoreResult<Appended> {
        for r in records {
            validate_parts(r.cluster, r.event).map_err(|e| StoreError::Input(e.to_string()))?;
        }
        let (range, dups) = {
            let mut w = self.writer.lock().map_err(lock_poison)?;
            if let Some(p) = &w.poisoned {
                return Err(StoreError::Io(format!(
                    "store is unusable after an earlier write error: {p}"
                )));
            }
            let res = self.write_records(&mut w, records);
            if let Err(e) = &res {
                w.poisoned = Some(e.to_string());
            }
            res?
        };
        self.wait_durable(range.end)?;
        Ok(Appended {
            seqs: range,
            duplicates: dups,
        })
    }

    fn ensure_segment(&self, w: &mut Writer) -> StoreResult<()> {
        let need_new = match &w.active {
            None => true,
            Some(a) => a.len >= self.opts.segment_target_bytes,
        };
        if !need_new {
            return Ok(());
        }
        if let Some(a) = &w.active {
            // Seal the old segment: commit everything in it and make it durable.
            if w.marker_seq < w.next_seq {
                a.file
                    .write_all_at(&segment::encode_commit(w.next_seq), a.len)
                    .map_err(io_err("segment"))?;
                w.marker_seq = w.next_seq;
            }
            a.file.sync_data().map_err(io_err("segment"))?;
        }
        let first_seq = w.next_seq;
        let path = paths::segments(&self.dir).join(segment::segment_name(first_seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(path.display()))?;
        let header = SegmentHeader {
            first_seq,
            key_id: self.cipher.as_ref().map(Cipher::id),
        };
        file.write_all_at(&header.encode(), 0)
            .map_err(io_err(path.display()))?;
        file.sync_all().map_err(io_err(path.display()))?;
        if let Ok(d) = File::open(paths::segments(&self.dir)) {
            d.sync_all().map_err(io_err("segments directory"))?;
        }
        let file = Arc::new(file);
        let mut shared = self.shared.write().map_err(lock_poison)?;
        shared.segments.push(SegmentInfo {
            path,
            first_seq,
            file: file.clone(),
            key_id: header.key_id,
        });
        w.active = Some(Active {
            file,
            len: segment::SEGMENT_HEADER as u64,
            segment: shared.segments.len() - 1,
        });
        Ok(())
    }

    /// Compresses and writes bundles for `records`, publishing them to readers
    /// only up to the durable size.
    fn write_records(
        &self,
        w: &mut Writer,
        records: &[RecordRef<'_>],
    ) -> StoreResult<(Range<u64>, u64)> {
        let start = w.next_seq;
        let mut dups = 0u64;
        let mut builder = std::mem::take(&mut w.builder);
        builder.clear();
        let mut new_keys = Vec::new();
        let mut metas = Vec::new();
        let mut leaves = Vec::new();
        self.ensure_segment(w)?;
        for r in records {
            let seq = w.next_seq;
            let mark = (
                builder.raw.len(),
                builder.count,
                builder.min_time,
                builder.max_time,
            );
            let key = builder.add_parts(r.cluster, r.event, r.received, seq, &mut leaves);
            if !w.dedupe.insert(key) {
                builder.undo(mark);
                leaves.pop();
                dups += 1;
                continue;
            }
            new_keys.extend_from_slice(&key);
            w.next_seq += 1;
            if builder.full(&self.opts) {
                metas.push(self.flush_bundle(w, &mut builder)?);
            }
        }
        if builder.count > 0 {
            metas.push(self.flush_bundle(w, &mut builder)?);
        }
        w.builder = builder;
        if let Some(f) = &w.dedupe_file {
            f.write_all_at(&new_keys, w.dedupe_len * 16)
                .map_err(io_err("dedupe index"))?;
        }
        w.dedupe_len += new_keys.len() as u64 / 16;
        let mut shared = self.shared.write().map_err(lock_poison)?;
        shared.bundles.extend(metas);
        for h in leaves {
            shared.tree.push(h).map_err(io_err("tree"))?;
        }
        Ok((start..w.next_seq, dups))
    }

    fn flush_bundle(&self, w: &mut Writer, b: &mut BundleBuilder) -> StoreResult<BundleMeta> {
        let frame = segment::encode_bundle(
            b.first_seq,
            b.count,
            &b.raw,
            b.min_time,
            b.max_time,
            &mut w.compressor,
            self.cipher.as_ref(),
        )
        .map_err(io_err("compressing a bundle"))?;
        let a = w
            .active
            .as_mut()
            .ok_or_else(|| StoreError::Io("no active segment".into()))?;
        a.file
            .write_all_at(&frame, a.len)
            .map_err(io_err("segment"))?;
        let meta = BundleMeta {
            first_seq: b.first_seq,
            count: b.count,
            segment: a.segment,
            offset: a.len,
            raw_len: b.raw.len() as u32,
            stored_len: frame.len() as u32,
            min_time: b.min_time,
            max_time: b.max_time,
        };
        a.len += frame.len() as u64;
        b.clear();
        Ok(meta)
    }

    /// Blocks until records below `end` are durable, leading a group commit if no one else is.
    fn wait_durable(&self, end: u64) -> StoreResult<()> {
        let mut s = self.sync.lock().map_err(lock_poison)?;
        loop {
            if s.durable >= end {
                return Ok(());
            }
            if let Some(e) = &s.error {
                return Err(StoreError::Io(format!("group commit failed: {e}")));
            }
            if s.leader {
                s = self.synced.wait(s).map_err(lock_poison)?;
                continue;
            }
            s.leader = true;
            drop(s);
            let res = self.commit_written();
            s = self.sync.lock().map_err(lock_poison)?;
            s.leader = false;
            match res {
                Ok(t) => {
                    s.durable = s.durable.max(t);
                    if let Ok(mut sh) = self.shared.write() {
                        sh.durable = sh.durable.max(t);
                    }
                }
                Err(e) => s.error = Some(e.to_string()),
            }
            self.synced.notify_all();
        }
    }

    /// Writes a commit marker for everything written so far and fdatasyncs.
    fn commit_written(&self) -> StoreResult<u64> {
        let (file, target) = {
            let mut w = self.writer.lock().map_err(lock_poison)?;
            let target = w.next_seq;
            let Some(a) = w.active.as_mut() else {
                return Ok(target);
            };
            let file = a.file.clone();
            if w.marker_seq < target {
                let a = w
                    .active
                    .as_mut()
                    .ok_or_else(|| StoreError::Io("no active segment".into()))?;
                a.file
                    .write_all_at(&segment::encode_commit(target), a.len)
                    .map_err(io_err("segment"))?;
                a.len += segment::COMMIT_FRAME as u64;
                w.marker_seq = target;
            }
            (file, target)
        };
        file.sync_data().map_err(io_err("fdatasync"))?;
        Ok(target)
    }

    /// Starts an all-or-nothing append (used by import: one input is one
    /// transaction). It holds the writer until commit or drop; dropping it
    /// without commit removes everything it wrote.
    pub fn transaction(&self) -> StoreResult<Transaction<'_>> {
        let mut w = self.writer.lock().map_err(lock_poison)?;
        if let Some(p) = &w.poisoned {
            return Err(StoreError::Io(format!(
                "store is unusable after an earlier write error: {p}"
            )));
        }
        // Make earlier appends durable first so the transaction starts clean.
        if w.marker_seq < w.next_seq {
            drop(w);
            let end = self.writer.lock().map_err(lock_poison)?.next_seq;
            self.wait_durable(end)?;
            w = self.writer.lock().map_err(lock_poison)?;
        }
        self.ensure_segment(&mut w)?;
        let (seg_len, start) = (w.active.as_ref().map_or(0, |a| a.len), w.next_seq);
        Ok(Transaction {
            store: self,
            w,
            start_seq: start,
            seg_len,
            builder: BundleBuilder::default(),
            leaves: Vec::new(),
            keys: HashSet::default(),
            key_list: Vec::new(),
            metas: Vec::new(),
            duplicates: 0,
            done: false,
        })
    }

    /// Runs `f` over the tree view once `size` is known to be durable.
    fn with_tree<T>(
        &self,
        size: u64,
        f: impl FnOnce(&dyn merkle::NodeSource) -> Result<T, merkle::TreeError>,
    ) -> StoreResult<T> {
        let shared = self.shared()?;
        if size > shared.durable {
            return Err(StoreError::Input(format!(
                "tree size {size} is beyond the log's {} records",
                shared.durable
            )));
        }
        let src = DataGroups {
            store: self,
            shared: &shared,
        };
        let view = shared.tree.view(&src);
        f(&view).map_err(StoreError::Tree)
    }

    /// Root of the tree at `size` (<= durable size).
    pub fn root_at(&self, size: u64) -> StoreResult<Hash> {
        self.with_tree(size, |view| merkle::root(view, size))
    }

    /// RFC 6962 inclusion proof of `seq` in the tree of `size`.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> StoreResult<Vec<Hash>> {
        self.with_tree(size, |view| merkle::inclusion_proof(view, seq, size))
    }

    /// RFC 6962 consistency proof between two sizes.
    pub fn consistency_proof(&self, old: u64, new: u64) -> StoreResult<Vec<Hash>> {
        self.with_tree(new, |view| merkle::consistency_proof(view, old, new))
    }

    /// Durable record count (= tree size).
    pub fn len(&self) -> u64 {
        self.shared().map_or(0, |s| s.durable)
    }

    /// Whether the log holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Kept checkpoints, oldest first.
    pub fn checkpoints(&self) -> Vec<StoredCheckpoint> {
        self.shared()
            .map(|s| s.checkpoints.clone())
            .unwrap_or_default()
    }

    /// The latest kept checkpoint.
    pub fn latest_checkpoint(&self) -> Option<StoredCheckpoint> {
        self.shared()
            .ok()
            .and_then(|s| s.checkpoints.last().cloned())
    }

    /// Writes a checkpoint if data arrived since the last one and the interval passed.
    pub fn maybe_checkpoint(&self) -> StoreResult<Option<StoredCheckpoint>> {
        {
            let w = self.writer.lock().map_err(lock_poison)?;
            if w.last_checkpoint.elapsed() < self.opts.checkpoint_interval {
                return Ok(None);
            }
        }
        self.checkpoint()
    }

    /// Writes a checkpoint for the durable tree now, unless it is already checkpointed.
    pub fn checkpoint(&self) -> StoreResult<Option<StoredCheckpoint>> {
        let Some(signer) = &self.signer else {
            return Err(StoreError::Key(
                "store opened without its signing key".into(),
            ));
        };
        let mut w = self.writer.lock().map_err(lock_poison)?;
        let size = self.sync.lock().map_err(lock_poison)?.durable;
        {
            let shared = self.shared()?;
            if shared.checkpoints.last().map_or(0, |c| c.size) >= size && size > 0 {
                return Ok(None);
            }
            if size == 0 {
                return Ok(None);
            }
        }
        let root = self.root_at(size)?;
        // Derived files first, so an open can trust them up to this size.
        self.shared()?.tree.sync().map_err(io_err("tree"))?;
        if let Some(f) = &w.dedupe_file {
            f.sync_data().map_err(io_err("dedupe index"))?;
        }
        let cp = StoredCheckpoint {
            size,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            note: signer.sign_checkpoint(size, &root),
        };
        let mut line = serde_json::to_vec(&cp).map_err(|e| StoreError::Io(e.to_string()))?;
        line.push(b'\n');
        let p = paths::checkpoints(&self.dir);
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&p)
            .map_err(io_err(p.display()))?;
        f.write_all(&line).map_err(io_err(p.display()))?;
        f.sync_data().map_err(io_err(p.display()))?;
        if let Some(publish) = &self.opts.publish_checkpoint {
            write_atomic(publish, cp.note.as_bytes(), 0o644)?;
        }
        w.last_checkpoint = Instant::now();
        self.shared
            .write()
            .map_err(lock_poison)?
            .checkpoints
            .push(cp.clone());
        Ok(Some(cp))
    }

    /// Final checkpoint; call before dropping a writable store.
    pub fn close(self) -> StoreResult<Option<StoredCheckpoint>> {
        if self.opts.read_only {
            return Ok(None);
        }
        let end = self.writer.lock().map_err(lock_poison)?.next_seq;
        self.wait_durable(end)?;
        self.checkpoint()
    }

    /// Leaf hashes of a whole group, from the records (cached).
    fn group_leaves_from(&self, shared: &Shared, group: u64) -> Result<Vec<Hash>, TreeError> {
        if let Ok(c) = self.group_cache.lock() {
            if let Some((g, v)) = &*c {
                if *g == group {
                    return Ok(v.clone());
                }
            }
        }
        let lo = group * GROUP;
        if lo < shared.first_seq {
            return Err(TreeError::Pruned { lo, hi: lo + GROUP });
        }
        let mut out = Vec::with_capacity(GROUP as usize);
        Self::for_each_leaf(shared, self.cipher.as_ref(), lo..lo + GROUP, &mut |_, l| {
            out.push(l.hash());
            Ok(true)
        })
        .map_err(|e| TreeError::Storage(e.to_string()))?;
        if out.len() as u64 != GROUP {
            return Err(TreeError::Storage(format!("group {group} is incomplete")));
        }
        if let Ok(mut c) = self.group_cache.lock() {
            *c = Some((group, out.clone()));
        }
        Ok(out)
    }

    /// Finds the first record whose event has this auditID (scans from the newest bundle).
    pub fn find_audit_id(&self, audit_id: &str) -> StoreResult<Option<u64>> {
        let shared = self.shared()?;
        let mut needle = b"\"auditID\":".to_vec();
        kaudit_event::json::write_str(&mut needle, audit_id);
        let finder = memchr::memmem::Finder::new(&needle);
        for b in shared.bundles.iter().rev() {
            if b.first_seq >= shared.durable {
                continue;
            }
            let raw = read_bundle(&shared, b, self.cipher.as_ref())?;
            if finder.find(&raw).is_none() {
                continue;
            }
            for (i, leaf) in iter_leaves(&raw).enumerate() {
                let Ok(leaf) = leaf else { continue };
                if finder.find(leaf.event).is_some() {
                    if let Ok(ev) = kaudit_event::Event::from_json(leaf.event) {
                        if ev.audit_id() == audit_id {
                            return Ok(Some(b.first_seq + i as u64));
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// Applies retention: deletes whole old segments (never the active one,
    /// never one overlapping a legal hold), keeping the tree verifiable.
    pub fn prune(
        &self,
        retention: &crate::retention::Retention,
        holds: &[crate::retention::Hold],
        now: kaudit_event::MicroTime,
        dry_run: bool,
    ) -> StoreResult<crate::retention::PruneOutcome> {
        use base64::Engine;
        let mut out = crate::retention::PruneOutcome::default();
        let Some(signer) = &self.signer else {
            return Err(StoreError::Key(
                "prune needs the store's signing key".into(),
            ));
        };
        if self.opts.read_only {
            return Err(StoreError::Input("store opened read-only".into()));
        }
        // A checkpoint must cover what is pruned.
        self.checkpoint()?;
        let mut w = self.writer.lock().map_err(lock_poison)?;
        let (k, before, old_first) = {
            let shared = self.shared()?;
            out.before = shared.first_seq;
            let n = shared.segments.len();
            let mut stats = Vec::new();
            for i in 0..n.saturating_sub(1) {
                let end = shared.segments[i + 1].first_seq;
                let bytes = shared.segments[i]
                    .file
                    .metadata()
                    .map(|m| m.len())
                    .unwrap_or(0);
                let (mut lo, mut hi) = (i64::MAX, i64::MIN);
                for b in shared.bundles.iter().filter(|b| b.segment == i) {
                    lo = lo.min(b.min_time);
                    hi = hi.max(b.max_time);
                }
                stats.push((end, bytes, lo, hi));
            }
            let mut total: u64 = shared
                .segments
                .iter()
                .map(|s| s.file.metadata().map(|m| m.len()).unwrap_or(0))
                .sum();
            let mut k = 0;
            for (i, (end, bytes, lo, hi)) in stats.iter().enumerate() {
                let name = shared.segments[i].path.display().to_string();
                let too_old = retention.max_age_secs.is_some_and(|a| {
                    *hi < now
                        .micros()
                        .saturating_sub((a as i64).saturating_mul(1_000_000))
                });
                let too_big = retention.max_size.is_some_and(|m| total > m);
                if !too_old && !too_big {
                    out.stopped = Some(format!("{name} is within retention"));
                    break;
                }
                if let Some(h) = holds.iter().find(|h| h.overlaps(*lo, *hi)) {
                    out.stopped = Some(format!(
                        "{name} is under legal hold #{} ({})",
                        h.id, h.reason
                    ));
                    break;
                }
                out.removed.push((
                    shared.segments[i].path.clone(),
                    shared.segments[i].first_seq,
                    *end,
                    *bytes,
                ));
                total -= bytes;
                k = i + 1;
            }
            let before = out.removed.last().map_or(shared.first_seq, |r| r.2);
            (k, before, shared.first_seq)
        };
        if k == 0 || dry_run {
            out.before = before;
            return Ok(out);
        }
        // Keep the leaf hashes of the group straddling the boundary.
        let efirst = before / GROUP * GROUP;
        let mut edge_bytes = Vec::new();
        {
            let shared = self.shared()?;
            let src = DataGroups {
                store: self,
                shared: &shared,
            };
            let view = shared.tree.view(&src);
            for i in efirst..before {
                let h = merkle::NodeSource::node(&view, 0, i)?;
                edge_bytes.extend_from_slice(&h);
            }
        }
        write_atomic(&paths::pruned_edge(&self.dir), &edge_bytes, 0o644)?;
        let text = format!(
            "kaudit prune\n{}\n{before}\n{}\n",
            signer.name(),
            base64::engine::general_purpose::STANDARD.encode(sha2_digest(&edge_bytes))
        );
        let rec = PruneRecord {
            before,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            note: signer.sign_note(&text),
        };
        let data = serde_json::to_vec_pretty(&rec).map_err(|e| StoreError::Io(e.to_string()))?;
        write_atomic(&paths::pruned(&self.dir), &data, 0o644)?;
        // Dedupe keys of pruned records go.
        let drop_n = before - old_first;
        let new_path = paths::dedupe(&self.dir, before);
        if let Some(f) = w.dedupe_file.take() {
            let mut keys = vec![0u8; (w.dedupe_len * 16) as usize];
            f.read_exact_at(&mut keys, 0)
                .map_err(io_err("dedupe index"))?;
            let cut = ((drop_n.min(w.dedupe_len)) * 16) as usize;
            for key in keys[..cut].chunks_exact(16) {
                let mut a = [0u8; 16];
                a.copy_from_slice(key);
                w.dedupe.remove(&a);
            }
            write_atomic(&new_path, &keys[cut..], 0o644)?;
            let nf = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&new_path)
                .map_err(io_err(new_path.display()))?;
            w.dedupe_len -= cut as u64 / 16;
            w.dedupe_file = Some(nf);
            let _ = std::fs::remove_file(paths::dedupe(&self.dir, old_first));
        }
        {
            let mut shared = self.shared.write().map_err(lock_poison)?;
            shared.segments.drain(..k);
            shared.bundles.retain(|b| b.segment >= k);
            for b in &mut shared.bundles {
                b.segment -= k;
            }
            shared.first_seq = before;
            shared.tree.set_edge(
                efirst,
                edge_bytes
                    .chunks_exact(32)
                    .map(|c| {
                        let mut h = [0u8; 32];
                        h.copy_from_slice(c);
                        h
                    })
                    .collect(),
            );
        }
        if let Some(a) = w.active.as_mut() {
            a.segment -= k;
        }
        if let Ok(mut c) = self.group_cache.lock() {
            *c = None;
        }
        for (p, ..) in &out.removed {
            std::fs::remove_file(p).map_err(io_err(p.display()))?;
        }
        if let Ok(d) = File::open(paths::segments(&self.dir)) {
            let _ = d.sync_all();
        }
        out.before = before;
        Ok(out)
    }

    /// Counts and sizes for `kaudit stat`.
    pub fn stat(&self) -> StoreResult<Stat> {
        let shared = self.shared()?;
        let size_of = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let dir_size = |p: &Path| -> u64 {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                        .sum()
                })
                .unwrap_or(0)
        };
        let durable = shared.durable;
        let visible = shared.bundles.iter().filter(|b| b.first_seq < durable);
        let (mut raw, mut first, mut last) = (0u64, i64::MAX, i64::MIN);
        for b in visible {
            raw += u64::from(b.raw_len);
            first = first.min(b.min_time);
            last = last.max(b.max_time);
        }
        Ok(Stat {
            records: durable - shared.first_seq,
            tree_size: durable,
            first_seq: shared.first_seq,
            segments: shared.segments.len(),
            bundles: shared.bundles.len(),
            data_bytes: shared
                .segments
                .iter()
                .map(|s| s.file.metadata().map(|m| m.len()).unwrap_or(0))
                .sum(),
            raw_bytes: raw,
            tree_bytes: dir_size(&paths::tree(&self.dir)),
            checkpoint_bytes: size_of(&paths::checkpoints(&self.dir)),
            index_bytes: dir_size(&self.dir.join("index")),
            first_time: (first != i64::MAX).then_some(kaudit_event::MicroTime(first)),
            last_time: (last != i64::MIN).then_some(kaudit_event::MicroTime(last)),
            checkpoints: shared.checkpoints.len(),
            latest_checkpoint: shared.checkpoints.last().cloned(),
            encrypted: shared.segments.iter().any(|s| s.key_id.is_some()),
        })
    }
}

/// Store statistics.
#[derive(Clone, Debug)]
pub struct Stat {
    /// Records stored (excluding pruned ones).
    pub records: u64,
    /// Tree size (including pruned records).
    pub tree_size: u64,
    /// First stored record.
    pub first_seq: u64,
    /// Segment files.
    pub segments: usize,
    /// Bundles.
    pub bundles: usize,
    /// Segment bytes on disk.
    pub data_bytes: u64,
    /// Uncompressed record bytes (leaf_data plus 4-byte lengths).
    pub raw_bytes: u64,
    /// Tree level files.
    pub tree_bytes: u64,
    /// Checkpoint log.
    pub checkpoint_bytes: u64,
    /// Dedupe index.
    pub index_bytes: u64,
    /// Earliest receive time.
    pub first_time: Option<kaudit_event::MicroTime>,
    /// Latest receive time.
    pub last_time: Option<kaudit_event::MicroTime>,
    /// Checkpoints kept.
    pub checkpoints: usize,
    /// The newest one.
    pub latest_checkpoint: Option<StoredCheckpoint>,
    /// Whether any segment is encrypted.
    pub encrypted: bool,
}

impl Drop for Store {
    fn drop(&mut self) {
        if !self.opts.read_only {
            let _ = self.checkpoint();
        }
    }
}

/// Reads and opens one bundle's records.
pub(crate) fn read_bundle(
    shared: &Shared,
    b: &BundleMeta,
    cipher: Option<&Cipher>,
) -> StoreResult<Vec<u8>> {
    let seg = shared
        .segments
        .get(b.segment)
        .ok_or_else(|| StoreError::Corrupt("bundle names a missing segment".into()))?;
    let h = segment::BundleHeader {
        first_seq: b.first_seq,
        count: b.count,
        raw_len: b.raw_len,
        stored_len: b.stored_len - segment::BUNDLE_HEADER as u32,
        min_time: b.min_time,
        max_time: b.max_time,
        flags: u32::from(seg.key_id.is_some()),
    };
    let payload =
        segment::read_payload(&seg.file, b.offset, &h).map_err(io_err(seg.path.display()))?;
    if let (Some(kid), Some(c)) = (&seg.key_id, cipher) {
        c.check_id(kid)?;
    }
    segment::open_payload(&h, &payload, cipher)
        .map_err(|e| StoreError::Corrupt(format!("{}:{}: {e}", seg.path.display(), b.offset)))
}

struct DataGroups<'a> {
    store: &'a Store,
    shared: &'a Shared,
}

impl GroupLeaves for DataGroups<'_> {
    fn group_leaves(&self, group: u64) -> Result<Vec<Hash>, TreeError> {
        self.store.group_leaves_from(self.shared, group)
    }
}

/// Records accumulating into one bundle.
#[derive(Default)]
struct BundleBuilder {
    raw: Vec<u8>,
    count: u32,
    first_seq: u64,
    min_time: i64,
    max_time: i64,
}

impl BundleBuilder {
    /// Adds a record; returns its dedupe key (computed in the same hash pass).
    fn add_parts(
        &mut self,
        cluster: &str,
        event: &[u8],
        received: kaudit_event::MicroTime,
        seq: u64,
        leaves: &mut Vec<Hash>,
    ) -> [u8; 16] {
        let t = received.micros();
        if self.count == 0 {
            self.first_seq = seq;
            self.min_time = t;
            self.max_time = t;
        }
        let len_at = self.raw.len();
        self.raw.extend_from_slice(&[0u8; 4]);
        crate::record::write_leaf(cluster, event, received, seq, &mut self.raw);
        let n = (self.raw.len() - len_at - 4) as u32;
        self.raw[len_at..len_at + 4].copy_from_slice(&n.to_le_bytes());
        let (leaf, key) = crate::record::hash_leaf_and_key(&self.raw[len_at + 4..]);
        leaves.push(leaf);
        self.count += 1;
        self.min_time = self.min_time.min(t);
        self.max_time = self.max_time.max(t);
        key
    }
    /// Takes back the last record (a duplicate): state saved before adding it.
    fn undo(&mut self, mark: (usize, u32, i64, i64)) {
        self.raw.truncate(mark.0);
        self.count = mark.1;
        self.min_time = mark.2;
        self.max_time = mark.3;
    }

    fn full(&self, o: &StoreOptions) -> bool {
        self.count as usize >= o.bundle_max_records || self.raw.len() >= o.bundle_max_bytes
    }
    fn clear(&mut self) {
        self.raw.clear();
        self.count = 0;
    }
}

/// An all-or-nothing append; see [`Store::transaction`].
pub struct Transaction<'a> {
    store: &'a Store,
    w: MutexGuard<'a, Writer>,
    start_seq: u64,
    seg_len: u64,
    builder: BundleBuilder,
    leaves: Vec<Hash>,
    keys: HashSet<[u8; 16]>,
    key_list: Vec<u8>,
    metas: Vec<BundleMeta>,
    duplicates: u64,
    done: bool,
}

impl Transaction<'_> {
    /// Stages one record; returns false when it is an exact duplicate (dropped).
    pub fn push(&mut self, r: &Record) -> StoreResult<bool> {
        self.push_parts(&r.cluster, &r.event, r.received)
    }

    /// Stages one record given by parts (no copy of the event first).
    pub fn push_parts(
        &mut self,
        cluster: &str,
        event: &[u8],
        received: kaudit_event::MicroTime,
    ) -> StoreResult<bool> {
        crate::record::validate_parts(cluster, event)
            .map_err(|e| StoreError::Input(e.to_string()))?;
        // The key comes out of the same hash pass as the leaf; a duplicate is
        // taken back out of the bundle.
        let seq = self.w.next_seq;
        let mark = (
            self.builder.raw.len(),
            self.builder.count,
            self.builder.min_time,
            self.builder.max_time,
        );
        let key = self
            .builder
            .add_parts(cluster, event, received, seq, &mut self.leaves);
        if self.w.dedupe.contains(&key) || !self.keys.insert(key) {
            self.builder.undo(mark);
            self.leaves.pop();
            self.duplicates += 1;
            return Ok(false);
        }
        self.key_list.extend_from_slice(&key);
        self.w.next_seq += 1;
        if self.builder.full(&self.store.opts) {
            let m = self.store.flush_bundle(&mut self.w, &mut self.builder)?;
            self.metas.push(m);
        }
        Ok(true)
    }

    /// Records staged so far (duplicates excluded).
    pub fn staged(&self) -> u64 {
        self.w.next_seq - self.start_seq
    }

    /// Duplicates dropped so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Makes everything staged durable and visible.
    pub fn commit(mut self) -> StoreResult<Appended> {
        let res = self.commit_inner();
        if res.is_err() {
            self.w.poisoned = res.as_ref().err().map(|e| e.to_string());
        }
        res
    }

    fn commit_inner(&mut self) -> StoreResult<Appended> {
        if self.builder.count > 0 {
            let m = self.store.flush_bundle(&mut self.w, &mut self.builder)?;
            self.metas.push(m);
        }
        let end = self.w.next_seq;
        self.done = true;
        if end == self.start_seq {
            return Ok(Appended {
                seqs: end..end,
                duplicates: self.duplicates,
            });
        }
        let a = self
            .w
            .active
            .as_mut()
            .ok_or_else(|| StoreError::Io("no active segment".into()))?;
        a.file
            .write_all_at(&segment::encode_commit(end), a.len)
            .map_err(io_err("segment"))?;
        a.len += segment::COMMIT_FRAME as u64;
        a.file.sync_data().map_err(io_err("fdatasync"))?;
        self.w.marker_seq = end;
        if let Some(f) = &self.w.dedupe_file {
            f.write_all_at(&self.key_list, self.w.dedupe_len * 16)
                .map_err(io_err("dedupe index"))?;
        }
        self.w.dedupe_len += self.key_list.len() as u64 / 16;
        let keys = std::mem::take(&mut self.keys);
        self.w.dedupe.extend(keys);
        {
            let mut shared = self.store.shared.write().map_err(lock_poison)?;
            shared.bundles.append(&mut self.metas);
            for h in self.leaves.drain(..) {
                shared.tree.push(h).map_err(io_err("tree"))?;
            }
            shared.durable = end;
        }
        {
            let mut s = self.store.sync.lock().map_err(lock_poison)?;
            s.durable = s.durable.max(end);
        }
        Ok(Appended {
            seqs: self.start_seq..end,
            duplicates: self.duplicates,
        })
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Roll back: cut what this transaction wrote.
        if let Some(a) = self.w.active.as_mut() {
            if a.file.set_len(self.seg_len).is_ok() {
                a.len = self.seg_len;
            } else {
                self.w.poisoned = Some("could not roll back an aborted transaction".into());
            }
        }
        self.w.next_seq = self.start_seq;
    }
}

fn take_lock(dir: &Path) -> StoreResult<File> {
    let p = paths::lock(dir);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)
        .map_err(io_err(p.display()))?;
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a valid, owned descriptor has no memory effects.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(StoreError::Locked(dir.display().to_string()));
    }
    Ok(f)
}
