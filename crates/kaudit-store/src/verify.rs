//! `kaudit verify`: recompute everything from the stored bytes.
//!
//! Reads every segment, checks each frame's checksum, opens and decompresses
//! every bundle (in parallel), checks that record `i` sits at position `i`,
//! re-hashes every leaf, rebuilds the tree in one pass and compares it with
//! every kept checkpoint (whose signatures it checks) and with checkpoints
//! saved elsewhere. Every zstd dictionary file must load and hash to its id
//! ([`crate::dict`]), and a bundle naming a missing one is a problem. It never writes. The first problem names the record, the
//! segment and the offset.

use crate::crypt::Cipher;
use crate::dict::Dicts;
use crate::merkle::{CompactRange, Hash, NodeSource, TreeError};
use crate::note::{Checkpoint, Verifier25519};
use crate::record::iter_leaves;
use crate::segment::{self, Frame, FrameProblem, SegmentHeader};
use crate::store::{
    io_err, list_segments, paths, read_checkpoints, read_edge, read_pruned, PruneRecord,
};
use crate::tree::{Tree, GROUP, GROUP_LEVEL};
use crate::StoreResult;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What to check.
#[derive(Default)]
pub struct VerifyOptions {
    /// Trusted verifier key (else the store's own `checkpoint.key`/`.pub`).
    pub key: Option<Verifier25519>,
    /// The store's own verifier key as its writer holds it, used when `key`
    /// is not given (else `<data>/checkpoint.pub`/`.key` is read). Never
    /// counts as trusted.
    pub own_key: Option<Verifier25519>,
    /// Checkpoints saved elsewhere earlier: (name for messages, note text).
    pub external: Vec<(String, String)>,
    /// A folder outside the data dir where a witness keeps checkpoints of
    /// this log (`store.trusted_checkpoint_dir`): the one with the largest
    /// tree size signed by the verifier key is checked like `external`, and
    /// any checkpoint note there that the key does not verify is a problem.
    pub trusted_checkpoint_dir: Option<PathBuf>,
    /// Key for encrypted segments.
    pub cipher: Option<Cipher>,
    /// Worker threads (0: all cores).
    pub threads: usize,
}

/// One problem (or note), located as precisely as known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// First record concerned.
    pub seq: Option<u64>,
    /// Segment file.
    pub segment: Option<PathBuf>,
    /// Byte offset in the segment (of the frame).
    pub offset: Option<u64>,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = self.seq {
            write!(f, "record {s}")?;
        }
        match (&self.segment, self.offset) {
            (Some(p), Some(o)) => write!(f, " (segment {}, offset {o})", p.display())?,
            (Some(p), None) => write!(f, " (segment {})", p.display())?,
            _ => {}
        }
        if self.seq.is_some() || self.segment.is_some() {
            f.write_str(": ")?;
        }
        f.write_str(&self.what)
    }
}

/// The verdict.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Event bytes re-hashed.
    pub event_bytes: u64,
    /// Records below this were pruned on purpose (signed prune record).
    pub pruned_before: u64,
    /// Problems: tampering, damage, missing data. Empty means all is well.
    pub problems: Vec<Finding>,
    /// Informational notes (pruned range, uncommitted tail).
    pub notes: Vec<String>,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints_checked: usize,
    /// Tree size recomputed.
    pub size: u64,
    /// Root recomputed.
    pub root: Option<Hash>,
    /// Time taken.
    pub elapsed: Duration,
    /// The verifier key the checkpoints were checked with (`name+id+key`).
    pub key: Option<String>,
    /// True when that key came from outside the store (a trusted key);
    /// false when it is the store's own `checkpoint.pub`, which whoever can
    /// write the data dir can replace.
    pub key_trusted: bool,
    /// The trusted checkpoint the log was proven to extend (file and tree
    /// size), when a trusted checkpoint folder holds one.
    pub trusted_checkpoint: Option<String>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
    /// Event bytes per second.
    pub fn bytes_per_sec(&self) -> f64 {
        self.event_bytes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// Records per second.
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

struct PrunedSource<'a> {
    tree: &'a Tree,
    edge: &'a (u64, Vec<Hash>),
}

impl NodeSource for PrunedSource<'_> {
    fn node(&self, level: u32, index: u64) -> Result<Hash, TreeError> {
        if level >= GROUP_LEVEL {
            if index >= self.tree.stored_len(level) {
                return Err(TreeError::Storage(format!(
                    "tree/level-{level:02}.hash lacks entry {index}"
                )));
            }
            return self.tree.stored_node(level, index);
        }
        let lo = index << level;
        let width = 1usize << level;
        let (first, hashes) = self.edge;
        if lo >= *first && lo + width as u64 <= first + hashes.len() as u64 {
            let s = (lo - first) as usize;
            return Ok(crate::merkle::root_of_leaves(&hashes[s..s + width]));
        }
        Err(TreeError::Pruned {
            lo,
            hi: lo + width as u64,
        })
    }
}

/// A checkpoint to compare against: where it came from and what it says.
struct Target {
    label: String,
    cp: Checkpoint,
}

/// Result of opening one bundle in a worker.
type BundleOutcome = Result<(Vec<Hash>, u64), (u64, String)>;

fn open_bundle(
    buf: &[u8],
    off: u64,
    h: &segment::BundleHeader,
    cipher: Option<&Cipher>,
    dicts: &Dicts,
) -> BundleOutcome {
    let start = off as usize + segment::BUNDLE_HEADER;
    let payload = &buf[start..start + h.stored_len as usize];
    let raw = segment::open_payload_with(h, payload, cipher, dicts)
        .map_err(|e| (h.first_seq, e.to_string()))?;
    let mut hashes = Vec::with_capacity(h.count as usize);
    let mut bytes = 0u64;
    for (i, leaf) in iter_leaves(&raw).enumerate() {
        let pos = h.first_seq + i as u64;
        let leaf = leaf.map_err(|e| (pos, e.to_string()))?;
        if leaf.seq != pos {
            let what = if leaf.seq < pos {
                format!(
                    "record at position {pos} carries sequence number {}: a record was duplicated or moved here",
                    leaf.seq
                )
            } else {
                format!(
                    "record at position {pos} carries sequence number {}: records were deleted or reordered",
                    leaf.seq
                )
            };
            return Err((pos, what));
        }
        bytes += leaf.event.len() as u64;
        hashes.push(leaf.hash());
    }
    if hashes.len() as u64 != u64::from(h.count) {
        return Err((
            h.first_seq + hashes.len() as u64,
            format!(
                "bundle declares {} records but holds {}: records were deleted or added",
                h.count,
                hashes.len()
            ),
        ));
    }
    Ok((hashes, bytes))
}

/// Verifies the store in `dir`.
pub fn verify(dir: &Path, opts: &VerifyOptions) -> StoreResult<VerifyReport> {
    let started = Instant::now();
    let mut rep = VerifyReport::default();
    let store_key = match &opts.own_key {
        Some(k) => Ok(k.clone()),
        None => crate::store::load_verifier(dir, &crate::StoreOptions::default()),
    };
    let verifier = match (&opts.key, store_key) {
        (Some(k), Ok(sk)) => {
            if sk.text() != k.text() {
                rep.problems.push(Finding {
                    seq: None,
                    segment: None,
                    offset: None,
                    what: format!(
                        "the store's checkpoint key {} is not the trusted key {}: the key was replaced",
                        sk.text(),
                        k.text()
                    ),
                });
            }
            k.clone()
        }
        (Some(k), Err(_)) => k.clone(),
        (None, Ok(sk)) => {
            rep.notes.push(
                "checked against the store's own key; pass --key with the key published earlier (store.trusted_key) to rule out a replaced key"
                    .into(),
            );
            sk
        }
        (None, Err(e)) => {
            // A store interrupted before its first write has nothing to check.
            if list_segments(dir)?.is_empty() && read_checkpoints(dir)?.0.is_empty() {
                rep.notes
                    .push("empty store: no key, no segments, no checkpoints".into());
                rep.elapsed = started.elapsed();
                return Ok(rep);
            }
            return Err(e);
        }
    };
    rep.key = Some(verifier.text());
    rep.key_trusted = opts.key.is_some();
    if opts.trusted_checkpoint_dir.is_none() && opts.external.is_empty() {
        rep.notes.push(
            "no checkpoint saved outside the store was checked: a history rewritten and re-signed with the store's own key would pass (store.trusted_checkpoint_dir, --checkpoint)"
                .into(),
        );
    }
    // Files a writable open moved aside as damaged are part of the evidence.
    if let Ok(rd) = std::fs::read_dir(paths::damaged(dir)) {
        let mut found: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        found.sort();
        for p in found {
            rep.problems.push(Finding {
                seq: None,
                segment: Some(p),
                offset: None,
                what: "moved to damaged/ by an open that found it damaged; its records are missing from the log until an operator restores it".into(),
            });
        }
    }
    // Dictionaries: every file must load and hash to its id, referenced or
    // not (a replaced one is tampering even before a bundle needs it); a
    // bundle naming one that is missing fails where it is opened.
    let dicts = Dicts::load(dir, opts.cipher.as_ref())?;
    for (p, why) in dicts.problems() {
        rep.problems.push(Finding {
            seq: None,
            segment: None,
            offset: None,
            what: format!("dictionary file {}: {why}", p.display()),
        });
    }
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    };

    // Checkpoints: signatures first.
    let (kept, _) = read_checkpoints(dir)?;
    let mut targets: Vec<Target> = Vec::new();
    for (i, c) in kept.iter().enumerate() {
        let label = format!(
            "kept checkpoint #{} ({} records, {})",
            i + 1,
            c.size,
            c.time
        );
        match verifier.verify_note(&c.note).and_then(Checkpoint::parse) {
            Ok(cp) if cp.size == c.size && cp.origin == verifier.name() => {
                targets.push(Target { label, cp })
            }
            Ok(cp) => rep.problems.push(Finding {
                seq: None,
                segment: None,
                offset: None,
                what: format!(
                    "{label}: signed body (origin {}, size {}) does not match its record",
                    cp.origin, cp.size
                ),
            }),
            Err(e) => rep.problems.push(Finding {
                seq: None,
                segment: None,
                offset: None,
                what: format!("{label}: {e}"),
            }),
        }
    }
    for (name, note) in &opts.external {
        let label = format!("checkpoint {name}");
        match verifier.verify_note(note).and_then(Checkpoint::parse) {
            Ok(cp) => targets.push(Target { label, cp }),
            Err(e) => rep.problems.push(Finding {
                seq: None,
                segment: None,
                offset: None,
                what: format!("{label}: {e}"),
            }),
        }
    }
    if let Some(tdir) = &opts.trusted_checkpoint_dir {
        match last_trusted_checkpoint(tdir, &verifier) {
            Ok(found) => {
                for (path, what) in found.rejected {
                    rep.problems.push(Finding {
                        seq: None,
                        segment: None,
                        offset: None,
                        what: format!(
                            "trusted checkpoint {}: {what}: the key was replaced or the checkpoint is not this log's",
                            path.display()
                        ),
                    });
                }
                match found.last {
                    Some((path, cp)) => {
                        let label = format!("trusted checkpoint {}", path.display());
                        rep.trusted_checkpoint =
                            Some(format!("{} (tree size {})", path.display(), cp.size));
                        targets.push(Target { label, cp });
                    }
                    None => rep.notes.push(format!(
                        "the trusted checkpoint folder {} holds no checkpoint yet: nothing proves the history before now was not rewritten",
                        tdir.display()
                    )),
                }
            }
            Err(what) => rep.problems.push(Finding {
                seq: None,
                segment: None,
                offset: None,
                what,
            }),
        }
    }
    targets.sort_by_key(|t| t.cp.size);

    // Pruned prefix.
    let pruned: Option<PruneRecord> = match read_pruned(dir, &verifier) {
        Ok(p) => p,
        Err(e) => {
            rep.problems.push(Finding {
                seq: None,
                segment: None,
                offset: None,
                what: e.to_string(),
            });
            None
        }
    };
    let first = pruned.as_ref().map_or(0, |p| p.before);
    rep.pruned_before = first;
    let tree = Tree::open(&paths::tree(dir), false, u64::MAX).map_err(io_err("tree"))?;
    let mut frontier = CompactRange::new();
    let mut edge = (0u64, Vec::new());
    if let Some(rec) = &pruned {
        rep.notes.push(format!(
            "records [0, {first}) were pruned by retention on {} (signed prune record); the tree hashes kept for them are checked through the checkpoints",
            rec.time
        ));
        match read_edge(dir, rec) {
            Ok(e) => edge = e,
            Err(e) => rep.problems.push(Finding {
                seq: Some(first),
                segment: None,
                offset: None,
                what: e.to_string(),
            }),
        }
        let src = PrunedSource {
            tree: &tree,
            edge: &edge,
        };
        match CompactRange::at(&src, first) {
            Ok(f) => frontier = f,
            Err(e) => rep.problems.push(Finding {
                seq: Some(first),
                segment: None,
                offset: None,
                what: format!("cannot resume after the pruned range: {e}"),
            }),
        }
        // Checkpoints entirely inside the pruned range: check from kept hashes.
        for t in targets.iter().filter(|t| t.cp.size <= first) {
            match CompactRange::at(&src, t.cp.size) {
                Ok(f) if f.root() == t.cp.root => rep.checkpoints_checked += 1,
                Ok(_) => rep.problems.push(Finding {
                    seq: None,
                    segment: None,
                    offset: None,
                    what: format!(
                        "{}: root differs from the tree hashes kept for the pruned range",
                        t.label
                    ),
                }),
                Err(_) => rep.notes.push(format!(
                    "{}: covers only pruned records; not checkable",
                    t.label
                )),
            }
        }
    }
    let mut next_target = targets.partition_point(|t| t.cp.size <= first);
    let mut tree_mismatch_reported = false;
    let mut first_divergence: Option<(u64, PathBuf, u64)> = None;
    // Where each bundle was, to name the place of a divergence: (first seq, segment, offset).
    let mut located: Vec<(u64, usize, u64)> = Vec::new();
    let mut last_ok_size = first;

    // Segments.
    let segs = list_segments(dir)?;
    let mut expect = first;
    let mut broken = frontier.size() != first;
    let n_segs = segs.len();
    'segments: for (si, (name_seq, path)) in segs.iter().enumerate() {
        if broken {
            break;
        }
        let last = si + 1 == n_segs;
        if segs.get(si + 1).is_some_and(|(next, _)| *next <= first) {
            rep.notes.push(format!(
                "{}: wholly pruned, left by an interrupted prune",
                path.display()
            ));
            continue;
        }
        let buf = std::fs::read(path).map_err(io_err(path.display()))?;
        let problem = |seq: u64, offset: Option<u64>, what: String| Finding {
            seq: Some(seq),
            segment: Some(path.clone()),
            offset,
            what,
        };
        let header = match SegmentHeader::decode(&buf) {
            Ok(h) => h,
            Err(e) => {
                rep.problems.push(problem(expect, Some(0), e.to_string()));
                broken = true;
                break;
            }
        };
        if header.first_seq != *name_seq {
            rep.problems.push(problem(
                expect,
                Some(0),
                format!(
                    "segment header says it starts at record {}, its name says {name_seq}: renamed",
                    header.first_seq
                ),
            ));
            broken = true;
            break;
        }
        if header.first_seq != expect {
            let what = if header.first_seq > expect {
                format!(
                    "records [{expect}, {}) are missing: no segment holds them (a segment was deleted)",
                    header.first_seq
                )
            } else {
                format!("segment starts at record {} but records up to {expect} were already read: duplicated segment", header.first_seq)
            };
            rep.problems.push(problem(expect, Some(0), what));
            broken = true;
            break;
        }
        if let (Some(kid), Some(c)) = (&header.key_id, &opts.cipher) {
            if let Err(e) = c.check_id(kid) {
                return Err(e.into());
            }
        }
        if header.key_id.is_some() && opts.cipher.is_none() {
            return Err(crate::crypt::CryptError::KeyNeeded.into());
        }
        let mut off = segment::SEGMENT_HEADER as u64;
        let mut pending: Vec<(u64, segment::BundleHeader)> = Vec::new();
        let mut pending_end = expect;
        loop {
            if off as usize >= buf.len() {
                break;
            }
            match segment::parse_frame_in(&buf, off, true) {
                Ok(Frame::Bundle { header: h, .. }) => {
                    if h.first_seq != pending_end {
                        // A bundle before this one may hold the precise cause.
                        if let Some(f) = first_bad_bundle(
                            &buf,
                            &pending,
                            opts.cipher.as_ref(),
                            &dicts,
                            threads,
                            path,
                        ) {
                            rep.problems.push(f);
                            broken = true;
                            break 'segments;
                        }
                        let what = if h.first_seq > pending_end {
                            format!("bundle holds records from {}; records [{pending_end}, {}) are missing (deleted)", h.first_seq, h.first_seq)
                        } else {
                            format!("bundle holds records from {}, already read up to {pending_end}: duplicated or reordered", h.first_seq)
                        };
                        rep.problems.push(problem(pending_end, Some(off), what));
                        broken = true;
                        break 'segments;
                    }
                    pending_end = h.end_seq();
                    pending.push((off, h));
                    off += (segment::BUNDLE_HEADER as u64) + u64::from(h.stored_len);
                }
                Ok(Frame::Commit { end_seq, .. }) => {
                    if end_seq != pending_end {
                        if let Some(f) = first_bad_bundle(
                            &buf,
                            &pending,
                            opts.cipher.as_ref(),
                            &dicts,
                            threads,
                            path,
                        ) {
                            rep.problems.push(f);
                            broken = true;
                            break 'segments;
                        }
                        rep.problems.push(problem(
                            expect,
                            Some(off),
                            format!("commit marker says {end_seq} records, the bundles before it end at {pending_end}"),
                        ));
                        broken = true;
                        break 'segments;
                    }
                    // Open the committed bundles in parallel.
                    let results =
                        open_parallel(&buf, &pending, opts.cipher.as_ref(), &dicts, threads);
                    for ((boff, h), res) in pending.iter().zip(results) {
                        located.push((h.first_seq, si, *boff));
                        match res {
                            Ok((hashes, bytes)) => {
                                for leaf in hashes {
                                    let mut mismatch = None;
                                    frontier.push_with(leaf, |level, index, hash| {
                                        if level == GROUP_LEVEL && index < tree.stored_len(level) {
                                            if let Ok(stored) = tree.stored_node(level, index) {
                                                if &stored != hash {
                                                    mismatch = Some(index);
                                                }
                                            }
                                        }
                                    });
                                    if let Some(g) = mismatch {
                                        if first_divergence.is_none() {
                                            first_divergence = Some((g, path.clone(), *boff));
                                        }
                                        if !tree_mismatch_reported {
                                            tree_mismatch_reported = true;
                                            rep.notes.push(format!(
                                                "records [{}, {}) hash differently from the tree hashes stored when they were appended (tree/level-08.hash entry {g})",
                                                g * GROUP,
                                                (g + 1) * GROUP
                                            ));
                                        }
                                    }
                                    while let Some(t) = targets.get(next_target) {
                                        if t.cp.size != frontier.size() {
                                            break;
                                        }
                                        if frontier.root() == t.cp.root {
                                            rep.checkpoints_checked += 1;
                                            last_ok_size = t.cp.size;
                                        } else {
                                            // Narrow down: the first group that no longer matches the
                                            // stored tree, else the span since the last good checkpoint.
                                            let lo = match &first_divergence {
                                                Some((g, ..)) if g * GROUP >= last_ok_size => {
                                                    g * GROUP
                                                }
                                                _ => last_ok_size,
                                            };
                                            let hi = match &first_divergence {
                                                Some((g, ..)) if g * GROUP >= last_ok_size => {
                                                    ((g + 1) * GROUP).min(t.cp.size)
                                                }
                                                _ => t.cp.size,
                                            };
                                            let at = located
                                                .partition_point(|(f, ..)| *f <= lo)
                                                .saturating_sub(1);
                                            let (seg_path, o) = located
                                                .get(at)
                                                .map(|(_, s, o)| (segs[*s].1.clone(), *o))
                                                .unwrap_or_else(|| (path.clone(), *boff));
                                            rep.problems.push(Finding {
                                                seq: Some(lo),
                                                segment: Some(seg_path),
                                                offset: Some(o),
                                                what: format!(
                                                    "{}: recomputed root of the first {} records differs from the signed one: stored records were altered; the first altered record is in [{lo}, {hi})",
                                                    t.label, t.cp.size
                                                ),
                                            });
                                        }
                                        next_target += 1;
                                    }
                                }
                                rep.records += u64::from(h.count);
                                rep.event_bytes += bytes;
                            }
                            Err((seq, what)) => {
                                rep.problems.push(problem(seq, Some(*boff), what));
                                broken = true;
                                break 'segments;
                            }
                        }
                    }
                    expect = pending_end;
                    pending.clear();
                    off += segment::COMMIT_FRAME as u64;
                }
                Err(FrameProblem::Incomplete) if last => {
                    rep.notes.push(format!(
                        "{}:{off}: {} bytes of uncommitted tail (an interrupted write; never acknowledged; cut on next open)",
                        path.display(),
                        buf.len() as u64 - off
                    ));
                    pending.clear();
                    break;
                }
                Err(FrameProblem::Incomplete) => {
                    rep.problems.push(problem(
                        expect,
                        Some(off),
                        format!(
                            "segment ends inside a frame at offset {off} of {}: truncated",
                            buf.len()
                        ),
                    ));
                    broken = true;
                    break 'segments;
                }
                Err(FrameProblem::Corrupt(why)) => {
                    let seq = pending.last().map_or(expect, |(_, h)| h.end_seq());
                    rep.problems.push(problem(seq, Some(off), why));
                    broken = true;
                    break 'segments;
                }
            }
        }
        if !pending.is_empty() {
            if last {
                rep.notes.push(format!(
                    "{}: {} bundle(s) after the last commit marker were never committed (cut on next open)",
                    path.display(),
                    pending.len()
                ));
            } else {
                rep.problems.push(problem(
                    expect,
                    Some(pending[0].0),
                    "sealed segment has bundles after its last commit marker".into(),
                ));
                broken = true;
            }
        }
    }
    rep.size = expect;
    if !broken {
        rep.root = Some(frontier.root());
        if frontier.size() != expect {
            rep.problems.push(Finding {
                seq: Some(frontier.size()),
                segment: None,
                offset: None,
                what: "tree size and record count disagree".into(),
            });
        }
    }
    // Checkpoints beyond what the log holds.
    for t in &targets[next_target.min(targets.len())..] {
        if broken {
            rep.notes.push(format!(
                "{}: not checked because of the problem above",
                t.label
            ));
            continue;
        }
        if t.cp.size > expect {
            let last_seg = segs.last().map(|(_, p)| p.clone());
            rep.problems.push(Finding {
                seq: Some(expect),
                segment: last_seg,
                offset: None,
                what: format!(
                    "{} signs {} records but the log holds only {expect}: records [{expect}, {}) are missing (truncated or deleted)",
                    t.label, t.cp.size, t.cp.size
                ),
            });
        }
    }
    if !broken && tree_mismatch_reported && rep.problems.is_empty() {
        rep.problems.push(Finding {
            seq: None,
            segment: None,
            offset: None,
            what: "tree hash files differ from the records although every checkpoint verifies: tree files were altered".into(),
        });
    }
    rep.elapsed = started.elapsed();
    Ok(rep)
}

fn open_parallel(
    buf: &[u8],
    bundles: &[(u64, segment::BundleHeader)],
    cipher: Option<&Cipher>,
    dicts: &Dicts,
    threads: usize,
) -> Vec<BundleOutcome> {
    if threads <= 1 || bundles.len() <= 1 {
        return bundles
            .iter()
            .map(|(o, h)| open_bundle(buf, *o, h, cipher, dicts))
            .collect();
    }
    let chunk = bundles.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = bundles
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(o, h)| open_bundle(buf, *o, h, cipher, dicts))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(bundles.len());
        for h in handles {
            match h.join() {
                Ok(v) => out.extend(v),
                Err(_) => out.push(Err((0, "verification worker panicked".into()))),
            }
        }
        out
    })
}

fn first_bad_bundle(
    buf: &[u8],
    pending: &[(u64, segment::BundleHeader)],
    cipher: Option<&Cipher>,
    dicts: &Dicts,
    threads: usize,
    path: &Path,
) -> Option<Finding> {
    let results = open_parallel(buf, pending, cipher, dicts, threads);
    pending.iter().zip(results).find_map(|((off, _), r)| {
        r.err().map(|(seq, what)| Finding {
            seq: Some(seq),
            segment: Some(path.to_path_buf()),
            offset: Some(*off),
            what,
        })
    })
}

/// Most entries read from a trusted checkpoint folder.
pub const MAX_TRUSTED_FILES: usize = 100_000;
/// Largest file read as a checkpoint note from a trusted checkpoint folder.
pub const MAX_TRUSTED_NOTE_BYTES: u64 = 64 << 10;

/// What a trusted checkpoint folder holds for one verifier key.
#[derive(Debug, Default)]
pub struct TrustedCheckpoints {
    /// The checkpoint with the largest tree size the key verifies, and its file.
    pub last: Option<(PathBuf, Checkpoint)>,
    /// Files that look like checkpoint notes but do not verify, with why.
    pub rejected: Vec<(PathBuf, String)>,
}

/// Reads the checkpoint notes in `dir` (files with a signature line; others
/// are ignored) and keeps the one with the largest tree size `key` verifies.
/// Fails (with a message naming the folder) when the folder cannot be read
/// or holds more than [`MAX_TRUSTED_FILES`] entries.
pub fn last_trusted_checkpoint(
    dir: &Path,
    key: &Verifier25519,
) -> Result<TrustedCheckpoints, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("trusted checkpoint folder {}: {e}", dir.display()))?;
    let mut out = TrustedCheckpoints::default();
    for (n, entry) in entries.enumerate() {
        if n >= MAX_TRUSTED_FILES {
            return Err(format!(
                "trusted checkpoint folder {}: more than {MAX_TRUSTED_FILES} entries; keep only recent checkpoints there",
                dir.display()
            ));
        }
        let entry =
            entry.map_err(|e| format!("trusted checkpoint folder {}: {e}", dir.display()))?;
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() || meta.len() > MAX_TRUSTED_NOTE_BYTES {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if !text.contains("\n\n\u{2014} ") {
            continue; // not a signed note (a README, a key file)
        }
        match key.verify_note(&text).and_then(Checkpoint::parse) {
            Ok(cp) if cp.origin != key.name() => out.rejected.push((
                path,
                format!(
                    "origin {:?} is not the key's name {:?}",
                    cp.origin,
                    key.name()
                ),
            )),
            Ok(cp) => {
                if out.last.as_ref().is_none_or(|(_, l)| cp.size > l.size) {
                    out.last = Some((path, cp));
                }
            }
            Err(e) => out.rejected.push((path, e.to_string())),
        }
    }
    Ok(out)
}
