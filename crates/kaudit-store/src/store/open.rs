//! Opening a store and crash recovery: segments are scanned up to their last
//! commit marker, a torn tail is cut back (and reported), leftovers of an
//! interrupted prune are removed, and derived files (tree levels, dedupe
//! keys) are replayed from the records when they lag behind.

use super::bundle::BundleBuilder;
use super::checkpoint::read_checkpoints;
use super::files::{io_err, undecodable, write_atomic};
use super::keys::{load_signer, load_verifier};
use super::lock::take_lock;
use super::prune::{read_edge, read_pruned};
use super::{
    paths, Active, BundleMeta, SegmentInfo, Shared, Store, StoreOptions, SyncState, Writer,
};
use crate::crypt::Cipher;
use crate::merkle::Hash;
use crate::record::dedupe_key;
use crate::segment::{self, Frame, FrameProblem, HeaderError, SegmentHeader};
use crate::tree::Tree;
use crate::{StoreError, StoreResult};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

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

/// Damage a writable open found and would not repair, because repairing it
/// would cut committed or checkpointed records: where it is, what is wrong,
/// which kept checkpoints signed records in that file, and where the file
/// was moved (it is never deleted).
#[derive(Clone, Debug)]
pub struct DamageReport {
    /// The damaged file, where it was found.
    pub file: PathBuf,
    /// Byte offset of the first problem in it.
    pub offset: u64,
    /// What is wrong.
    pub what: String,
    /// Where the file now is (under `<data>/damaged/`), when it was moved.
    pub moved_to: Option<PathBuf>,
    /// Sizes of the kept checkpoints that signed records in this file.
    pub covering: Vec<u64>,
}

impl std::fmt::Display for DamageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {}: {}",
            self.file.display(),
            self.offset,
            self.what
        )?;
        if self.covering.is_empty() {
            f.write_str("; no kept checkpoint signed records in it")?;
        } else {
            let sizes: Vec<String> = self.covering.iter().map(u64::to_string).collect();
            write!(
                f,
                "; signed by the kept checkpoints of tree size {}",
                sizes.join(", ")
            )?;
        }
        if let Some(m) = &self.moved_to {
            write!(f, "; moved to {} (not deleted)", m.display())?;
        }
        f.write_str(
            "; writes are refused until the files under damaged/ are restored or removed by an operator; run `kaudit verify` for details",
        )
    }
}

/// Moves a damaged file into `<data>/damaged/` (made 0700), under its name
/// plus the time, and syncs both directories.
fn move_aside(dir: &Path, path: &Path) -> StoreResult<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let d = paths::damaged(dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&d)
        .map_err(io_err(d.display()))?;
    let name = path
        .file_name()
        .map_or_else(|| "segment".into(), |n| n.to_string_lossy().to_string());
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let to = d.join(format!("{name}.{stamp}"));
    std::fs::rename(path, &to).map_err(io_err(path.display()))?;
    for p in [d.as_path(), path.parent().unwrap_or(dir)] {
        if let Ok(f) = File::open(p) {
            let _ = f.sync_all();
        }
    }
    Ok(to)
}

/// Files left under `<data>/damaged/` by an earlier open.
fn damaged_entries(dir: &Path) -> StoreResult<Vec<PathBuf>> {
    let d = paths::damaged(dir);
    match std::fs::read_dir(&d) {
        Ok(rd) => {
            let mut out = Vec::new();
            for e in rd {
                out.push(e.map_err(io_err(d.display()))?.path());
            }
            out.sort();
            Ok(out)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(d.display())(e)),
    }
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

/// Result of scanning one segment's frames.
pub(super) struct SegmentScan {
    pub(super) header: SegmentHeader,
    pub(super) bundles: Vec<segment::BundleHeader>,
    pub(super) offsets: Vec<u64>,
    /// End of the last commit marker (or of the header when there is none).
    pub(super) committed_end: u64,
    pub(super) committed_seq: Option<u64>,
    pub(super) file_len: u64,
    /// A problem that is not a torn tail.
    pub(super) corrupt: Option<(u64, String)>,
}

/// Scans a segment's frames up to the last commit marker. The outer error is
/// a failed read; the inner one a file that is not a segment (yet).
pub(super) fn scan_segment(
    file: &File,
    check_crc: bool,
) -> std::io::Result<Result<SegmentScan, HeaderError>> {
    let file_len = file.metadata()?.len();
    let mut hb = [0u8; segment::SEGMENT_HEADER];
    if file_len < segment::SEGMENT_HEADER as u64 {
        return Ok(Err(HeaderError::Short));
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
                // no valid commit marker follows it. A complete commit marker
                // with a bad checksum is damage, never a torn write: cutting
                // there would drop records that were acknowledged.
                let mut magic = [0u8; 4];
                file.read_exact_at(&mut magic, off)?;
                if &magic == b"KCM1" || commit_marker_after(file, off, file_len)? {
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
            super::files::private_dir(dir)?;
            load_signer(dir, &opts, true)?;
            for d in [paths::segments(dir), paths::tree(dir), dir.join("index")] {
                super::files::private_dir(&d)?;
            }
        } else if !dir.is_dir() {
            return Err(StoreError::NoStore(dir.to_path_buf()));
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
        if writable {
            if let Some(first) = damaged_entries(dir)?.into_iter().next() {
                return Err(StoreError::Damaged(Box::new(DamageReport {
                    file: first,
                    offset: 0,
                    what: "moved aside by an earlier open that found it damaged".into(),
                    moved_to: None,
                    covering: Vec::new(),
                })));
            }
        }
        let pruned = read_pruned(dir, &verifier)?;
        let first_seq = pruned.as_ref().map_or(0, |p| p.before);
        let mut report = OpenReport::default();
        let (checkpoints, good_len) = read_checkpoints(dir)?;
        let newest_cp = checkpoints.last().map_or(0, |c| c.size);
        let covering = |from: u64| -> Vec<u64> {
            checkpoints
                .iter()
                .map(|c| c.size)
                .filter(|&n| n > from)
                .collect()
        };
        let damaged = |path: &Path, offset: u64, what: String, from: u64| -> StoreError {
            let moved_to = match move_aside(dir, path) {
                Ok(p) => Some(p),
                Err(e) => return e,
            };
            StoreError::Damaged(Box::new(DamageReport {
                file: path.to_path_buf(),
                offset,
                what,
                moved_to,
                covering: covering(from),
            }))
        };

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
                    let len = file.metadata().map_err(io_err(path.display()))?.len();
                    if len <= segment::SEGMENT_HEADER as u64 && name_seq >= newest_cp {
                        // A segment created just before a crash: a torn
                        // header and nothing after it.
                        std::fs::remove_file(&path).map_err(io_err(path.display()))?;
                        report.cut.push((path.clone(), 0, len));
                        continue;
                    }
                    drop(file);
                    return Err(damaged(
                        &path,
                        0,
                        format!("{why}, with {len} bytes in the file"),
                        name_seq,
                    ));
                }
                Err(why) if last => {
                    let _ = why;
                    continue;
                }
                Err(why) => return Err(undecodable(path.display(), why)),
            };
            if let Some((off, why)) = &scan.corrupt {
                if last && writable {
                    drop(file);
                    return Err(damaged(&path, *off, why.clone(), scan.header.first_seq));
                }
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
                let keeps = scan.committed_seq.unwrap_or(scan.header.first_seq);
                if writable && keeps < newest_cp {
                    drop(file);
                    return Err(damaged(
                        &path,
                        scan.committed_end,
                        format!(
                            "unreadable data after the last commit marker; cutting it would leave {keeps} records, below the newest checkpoint's {newest_cp}"
                        ),
                        scan.header.first_seq,
                    ));
                }
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
        // Dictionaries: loaded before any bundle is read. A leftover temp
        // file is a dictionary write a crash interrupted: no bundle names it.
        if writable {
            if let Ok(rd) = std::fs::read_dir(paths::dicts(dir)) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().ends_with(".tmp") {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        let dicts = crate::dict::Dicts::load(dir, cipher.as_ref())?;
        let mut shared = Shared {
            segments,
            bundles,
            tree,
            durable: size,
            first_seq,
            checkpoints,
            dicts,
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
        // The positional file is trusted up to the newest checkpoint, and up to
        // the newest sorted run (a run is written only after it is fsynced).
        let runs_upto = if writable {
            super::dedupe::Dedupe::covered_upto(dir, first_seq).min(size)
        } else {
            first_seq
        };
        let (dedupe_file, mut have) = if writable {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600)
                .truncate(false)
                .open(&dpath)
                .map_err(io_err(dpath.display()))?;
            let len = f.metadata().map_err(io_err(dpath.display()))?.len() / 16;
            let keep = len.min(trusted.max(runs_upto).saturating_sub(first_seq));
            // Keys a durable run held were freed from the positional file
            // (read back as zeros); past the runs that still tile, the file
            // is trusted only up to its first freed key, and the rest is
            // replayed from the segments.
            let keep = first_unfreed_gap(&f, runs_upto.saturating_sub(first_seq), keep)
                .map_err(io_err(dpath.display()))?;
            f.set_len(keep * 16).map_err(io_err(dpath.display()))?;
            (Some(f), keep)
        } else {
            (None, 0)
        };
        // Read-only openers never append, so they need no dedupe keys: replaying
        // every record to rebuild them made each `query`/`stat` open cost a full read.
        let keys_from = if writable { first_seq + have } else { size };

        // Replay what derived files lack: leaves after the restored tree,
        // dedupe keys after the trusted ones (written out a chunk at a time,
        // so a lost keys file costs a read of the store, not its keys in RAM).
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
            let flush = |new_keys: &mut Vec<u8>, have: &mut u64| -> StoreResult<()> {
                if let Some(f) = &dedupe_file {
                    f.write_all_at(new_keys, *have * 16)
                        .map_err(io_err(dpath.display()))?;
                }
                *have += new_keys.len() as u64 / 16;
                new_keys.clear();
                Ok(())
            };
            Self::for_each_leaf(&shared, cipher.as_ref(), start..size, &mut |seq, leaf| {
                if seq >= tree_size {
                    pending_tree.push(leaf.hash());
                }
                if seq >= keys_from {
                    new_keys.extend_from_slice(&dedupe_key(leaf.cluster, leaf.event));
                    if new_keys.len() >= 16 << 20 {
                        flush(&mut new_keys, &mut have)?;
                    }
                }
                Ok(true)
            })?;
            flush(&mut new_keys, &mut have)?;
            report.replayed = pending_tree.len() as u64;
            for h in pending_tree {
                shared.tree.push(h).map_err(io_err("tree"))?;
            }
        }
        if shared.tree.size() != size {
            return Err(StoreError::Corrupt(format!(
                "tree holds {} leaves but the segments {size} records",
                shared.tree.size()
            )));
        }
        let dedupe = match &dedupe_file {
            Some(f) => {
                super::dedupe::Dedupe::load(dir, f, first_seq, have, opts.dedupe_recent_keys)?
            }
            None => super::dedupe::Dedupe::empty(dir),
        };
        let dedupe_len = have;
        let active = if writable {
            shared.segments.last().map(|s| Active {
                file: s.file.clone(),
                len: s.file.metadata().map(|m| m.len()).unwrap_or(0),
                segment: shared.segments.len() - 1,
            })
        } else {
            None
        };
        // A reopened writer keeps compressing with the newest dictionary.
        let newest = if writable {
            shared.dicts.newest()
        } else {
            None
        };
        let compressor = match &newest {
            Some((_, d)) => zstd::bulk::Compressor::with_dictionary(opts.zstd_level, d),
            None => zstd::bulk::Compressor::new(opts.zstd_level),
        }
        .map_err(io_err("zstd"))?;
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
                dict: newest.map(|(id, _)| id),
                samples: Vec::new(),
                training: None,
                dict_error: None,
                last_checkpoint: Instant::now(),
                poisoned: None,
                last_recovery: None,
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
            epoch: std::sync::atomic::AtomicU64::new(0),
            _lock: lock,
            report,
            opts,
        })
    }

    /// What open found and repaired.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }
}

/// The position of the first all-zero key (a freed one: a real key is a
/// SHA-256 prefix, zero with probability 2^-128) among keys `from..to` of
/// the positional file, or `to` when there is none.
fn first_unfreed_gap(f: &File, from: u64, to: u64) -> std::io::Result<u64> {
    const CHUNK: u64 = 1 << 16;
    let mut buf = vec![0u8; (CHUNK * 16) as usize];
    let mut at = from;
    while at < to {
        let n = (to - at).min(CHUNK);
        let part = &mut buf[..(n * 16) as usize];
        f.read_exact_at(part, at * 16)?;
        if let Some(i) = part
            .chunks_exact(16)
            .position(|k| k.iter().all(|&b| b == 0))
        {
            return Ok(at + i as u64);
        }
        at += n;
    }
    Ok(to)
}
