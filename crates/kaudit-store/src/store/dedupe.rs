//! The writer's duplicate filter, bounded in RAM whatever the store's size.
//!
//! Keeping every record's 16-byte key in one hash set costs ~2-3 GB at 100M
//! records and made every writable open read them all. Instead:
//!
//! * keys of the newest records (at most about `dedupe_recent_keys` of them)
//!   are in an in-RAM hash set;
//! * older keys are in immutable sorted *runs* under `<data>/index/`
//!   (`keyseq-<lo>-<hi>.keys`: the keys of records `lo..hi`, sorted, each
//!   with its record's sequence number less `lo` as a `u32`), each with
//!   a side file (`.filter`) holding a blocked Bloom filter (10 bits per key)
//!   and a sparse index (every 256th key). Only the filter and the sparse
//!   index are in RAM: ~1.3 B per key, i.e. ~131 MB per 100M records;
//! * a key the filter says may be in a run is looked up in that run on disk
//!   (one 4 KiB read), so a false positive of the filter never drops a
//!   record: the answer is exact.
//!
//! The positional keys file (`index/dedupe-<first>.keys`, one key per record
//! in sequence order) is the source of truth for the records past the runs:
//! runs are made from it, only over records already durable, after it is
//! fsynced up to the run's end, so an open may trust it up to the newest
//! run. Once a run is durable, its part of the positional file is freed
//! (a hole punched), so the keys are on disk once, not twice: the run's
//! sequence offsets let prune drop the keys of pruned records without the
//! positional file (nor a read of the records). Runs are merged (a smaller one
//! into its older neighbour of at most twice its size) so that their number
//! stays logarithmic in the store's size. A crash at any point leaves either
//! the inputs of a merge or its output plus inputs; open keeps the longest
//! runs that tile the kept records from the first one and deletes the rest.
//!
//! Seals and merges run on background threads (at most one of each), so the
//! writer never waits for a multi-gigabyte merge: a seal freezes the recent
//! keys it moves (still consulted) and a merge reads its inputs while they
//! keep answering lookups; the writer installs the output at its next
//! append once it is durable, and only then drops the inputs.

use super::files::io_err;
use super::HashSet;
use crate::{StoreError, StoreResult};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;

/// One record's duplicate-detection key.
pub(crate) type Key = [u8; 16];

/// A sparse-index entry every this many keys of a run (one 4 KiB read per lookup).
const FENCE_EVERY: usize = 256;
/// Bloom filter size per key of a run.
const BLOOM_BITS_PER_KEY: u64 = 10;
/// Words of one filter block (a 64-byte cache line).
const BLOCK_WORDS: usize = 8;
/// Bits set per key inside its block (7 x 9 bits come from the key's second half).
const PROBES: u32 = 7;
/// Side file magic.
const FILTER_MAGIC: &[u8; 8] = b"KDFILT01";
/// Keys read or written per I/O when sealing, merging or loading.
const IO_KEYS: usize = 1 << 16;

/// The directory of the runs.
pub(crate) fn runs_dir(data: &Path) -> PathBuf {
    data.join("index")
}

/// Bytes of one run entry: the key, then its record's sequence number less
/// the run's first (`u32`, little-endian), so the run alone says which
/// record a key belongs to and the positional file's sealed part can go.
const ENTRY: usize = 20;
/// Prefix of run files. Runs of earlier versions (`keyrun-`, keys only)
/// are deleted on load and made again from the positional file, which those
/// versions kept whole.
const RUN_PREFIX: &str = "keyseq-";
const OLD_RUN_PREFIX: &str = "keyrun-";

fn run_name(lo: u64, hi: u64) -> String {
    format!("{RUN_PREFIX}{lo:020}-{hi:020}.keys")
}

/// Bytes of a run of `n` keys.
fn run_bytes(n: u64) -> u64 {
    n * ENTRY as u64
}

/// The key and the sequence offset of entry `i` of a run's bytes.
fn entry_at(buf: &[u8], i: usize) -> (Key, u32) {
    let e = &buf[i * ENTRY..(i + 1) * ENTRY];
    let mut k = [0u8; 16];
    k.copy_from_slice(&e[..16]);
    (k, u32::from_le_bytes([e[16], e[17], e[18], e[19]]))
}

/// Frees the disk blocks of keys `lo..hi` of the positional file (which
/// holds keys from record `first_seq`) once a durable run holds them: reads
/// of that part give zeros from then on, and nothing reads it (an open
/// trusts the positional file only past the runs). Where the file system
/// cannot punch holes the bytes simply stay.
fn punch_keys(keys: &File, first_seq: u64, lo: u64, hi: u64) {
    use std::os::fd::AsRawFd;
    // From the file's start (runs tile from `first_seq`), so that blocks
    // only partly covered by one run's keys are freed once the next covers
    // the rest; punching a hole again costs nothing.
    let _ = lo;
    let off: libc::off_t = 0;
    let Ok(len) = libc::off_t::try_from((hi - first_seq) * 16) else {
        return;
    };
    // SAFETY: fallocate only reads its integer arguments; the descriptor is
    // owned by `keys`, open for writing, for the whole call.
    let _ = unsafe {
        libc::fallocate(
            keys.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off,
            len,
        )
    };
}

/// The temporary name a file is written under before it is renamed into place.
fn tmp_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn filter_path(run: &Path) -> PathBuf {
    run.with_extension("filter")
}

fn parse_run_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix(RUN_PREFIX)?.strip_suffix(".keys")?;
    let (lo, hi) = rest.split_once('-')?;
    if lo.len() != 20 || hi.len() != 20 {
        return None;
    }
    let (lo, hi) = (lo.parse().ok()?, hi.parse().ok()?);
    (lo < hi).then_some((lo, hi))
}

fn key_at(buf: &[u8], i: usize) -> Key {
    let mut k = [0u8; 16];
    k.copy_from_slice(&buf[i * 16..i * 16 + 16]);
    k
}

/// Blocked Bloom filter over keys that are already uniform hash output, so
/// the key's own bytes pick the block and the bits (no hashing).
struct Bloom {
    words: Vec<u64>,
}

/// Words of the filter of a run of `n` keys (`None` past what a file can hold).
fn bloom_words(n: u64) -> Option<usize> {
    let blocks = n
        .checked_mul(BLOOM_BITS_PER_KEY)?
        .div_ceil(64 * BLOCK_WORDS as u64)
        .max(1);
    usize::try_from(blocks).ok()?.checked_mul(BLOCK_WORDS)
}

impl Bloom {
    fn with_keys(n: u64) -> Bloom {
        Bloom {
            words: vec![0; bloom_words(n).unwrap_or(BLOCK_WORDS)],
        }
    }

    fn positions(&self, k: &Key) -> (usize, u64) {
        let blocks = (self.words.len() / BLOCK_WORDS) as u128;
        let h = u64::from_le_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]]);
        let block = ((u128::from(h) * blocks) >> 64) as usize;
        let bits = u64::from_le_bytes([k[8], k[9], k[10], k[11], k[12], k[13], k[14], k[15]]);
        (block * BLOCK_WORDS, bits)
    }

    fn insert(&mut self, k: &Key) {
        let (base, mut bits) = self.positions(k);
        for _ in 0..PROBES {
            let p = (bits & 511) as usize;
            self.words[base + (p >> 6)] |= 1 << (p & 63);
            bits >>= 9;
        }
    }

    fn may_contain(&self, k: &Key) -> bool {
        let (base, mut bits) = self.positions(k);
        for _ in 0..PROBES {
            let p = (bits & 511) as usize;
            if self.words[base + (p >> 6)] & (1 << (p & 63)) == 0 {
                return false;
            }
            bits >>= 9;
        }
        true
    }
}

/// Builds a run's filter and sparse index from its keys, in order.
struct RunBuilder {
    bloom: Bloom,
    fence: Vec<Key>,
    n: u64,
}

impl RunBuilder {
    fn new(n: u64) -> RunBuilder {
        RunBuilder {
            bloom: Bloom::with_keys(n),
            fence: Vec::with_capacity((n as usize).div_ceil(FENCE_EVERY)),
            n: 0,
        }
    }

    fn push(&mut self, k: &Key) {
        if (self.n as usize).is_multiple_of(FENCE_EVERY) {
            self.fence.push(*k);
        }
        self.bloom.insert(k);
        self.n += 1;
    }

    fn filter_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.fence.len() * 16 + self.bloom.words.len() * 8);
        out.extend_from_slice(FILTER_MAGIC);
        out.extend_from_slice(&self.n.to_le_bytes());
        out.extend_from_slice(&(self.bloom.words.len() as u64).to_le_bytes());
        for k in &self.fence {
            out.extend_from_slice(k);
        }
        for w in &self.bloom.words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }
}

/// Decodes a side file for a run of `n` keys; `None` when it does not fit.
fn decode_filter(bytes: &[u8], n: u64) -> Option<(Vec<Key>, Bloom)> {
    if bytes.len() < 24 || &bytes[..8] != FILTER_MAGIC {
        return None;
    }
    let have = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let words = u64::from_le_bytes(bytes[16..24].try_into().ok()?) as usize;
    let fences = usize::try_from(n).ok()?.div_ceil(FENCE_EVERY);
    if have != n || Some(words) != bloom_words(n) {
        return None;
    }
    let want = fences
        .checked_mul(16)?
        .checked_add(words.checked_mul(8)?)?
        .checked_add(24)?;
    if bytes.len() != want {
        return None;
    }
    let fence_bytes = &bytes[24..24 + fences * 16];
    let fence = (0..fences).map(|i| key_at(fence_bytes, i)).collect();
    let words = bytes[24 + fences * 16..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    Some((fence, Bloom { words }))
}

/// Whether `bytes` is a well-formed filter side file for a run of `n` keys,
/// and the name a run file's `(first, end)` records: what a writable open
/// decides from files on disk before trusting them (a side file that does
/// not fit is rebuilt from its run). Public for the fuzz target.
pub fn check_key_filter(bytes: &[u8], n: u64, run_file_name: &str) -> (bool, Option<(u64, u64)>) {
    let fits = decode_filter(bytes, n).is_some_and(|(fence, bloom)| {
        // What decodes answers lookups without going out of bounds.
        let k = [0x5au8; 16];
        let _ = bloom.may_contain(&k);
        fence.len() == usize::try_from(n).unwrap_or(0).div_ceil(FENCE_EVERY)
    });
    (fits, parse_run_name(run_file_name))
}

/// One sorted run of keys on disk.
struct Run {
    lo: u64,
    hi: u64,
    path: PathBuf,
    file: File,
    fence: Vec<Key>,
    bloom: Bloom,
}

impl Run {
    fn len(&self) -> u64 {
        self.hi - self.lo
    }

    fn contains(&self, k: &Key) -> StoreResult<bool> {
        if !self.bloom.may_contain(k) {
            return Ok(false);
        }
        let i = self.fence.partition_point(|f| f <= k);
        if i == 0 {
            return Ok(false);
        }
        let from = (i - 1) * FENCE_EVERY;
        let to = (from + FENCE_EVERY).min(self.len() as usize);
        let mut buf = vec![0u8; (to - from) * ENTRY];
        self.file
            .read_exact_at(&mut buf, run_bytes(from as u64))
            .map_err(io_err(self.path.display()))?;
        let (mut a, mut b) = (0usize, to - from);
        while a < b {
            let m = (a + b) / 2;
            match entry_at(&buf, m).0.cmp(k) {
                std::cmp::Ordering::Less => a = m + 1,
                std::cmp::Ordering::Greater => b = m,
                std::cmp::Ordering::Equal => return Ok(true),
            }
        }
        Ok(false)
    }

    /// Opens a run, loading (or, when missing or unfit, rebuilding) its side file.
    fn open(path: PathBuf, lo: u64, hi: u64) -> StoreResult<Option<Run>> {
        let file = File::open(&path).map_err(io_err(path.display()))?;
        let n = hi - lo;
        if file.metadata().map_err(io_err(path.display()))?.len() != run_bytes(n) {
            return Ok(None);
        }
        let fpath = filter_path(&path);
        let side = std::fs::read(&fpath).ok();
        let (fence, bloom) = match side.as_deref().and_then(|b| decode_filter(b, n)) {
            Some(fb) => fb,
            None => {
                let mut rb = RunBuilder::new(n);
                let mut r = BufReader::with_capacity(1 << 20, &file);
                let mut e = [0u8; ENTRY];
                let mut prev: Option<Key> = None;
                for _ in 0..n {
                    r.read_exact(&mut e).map_err(io_err(path.display()))?;
                    let (k, off) = entry_at(&e, 0);
                    if prev.is_some_and(|p| p > k) || u64::from(off) >= n {
                        // Not sorted, or a record outside it: not a run this code wrote.
                        return Ok(None);
                    }
                    prev = Some(k);
                    rb.push(&k);
                }
                write_durable(&fpath, &rb.filter_bytes())?;
                (rb.fence, rb.bloom)
            }
        };
        Ok(Some(Run {
            lo,
            hi,
            path,
            file,
            fence,
            bloom,
        }))
    }
}

/// Creates (or empties) the private temporary file that becomes `path` once
/// it is complete and renamed into place.
pub(super) fn create_tmp(path: &Path) -> StoreResult<(PathBuf, File)> {
    let tmp = tmp_of(path);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(tmp.display()))?;
    Ok((tmp, f))
}

/// Writes a new file durably under a temporary name and renames it into place.
fn write_durable(path: &Path, bytes: &[u8]) -> StoreResult<()> {
    let (tmp, mut f) = create_tmp(path)?;
    f.write_all(bytes).map_err(io_err(tmp.display()))?;
    f.sync_all().map_err(io_err(tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(io_err(path.display()))
}

fn sync_dir(dir: &Path) -> StoreResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir.display()))
}

/// What the duplicate filter holds (for tests, `stat` and the benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DedupeStats {
    /// Keys in the in-RAM set of recent records (including those a
    /// background seal is writing out, which stay in RAM until their run is
    /// in place).
    pub recent_keys: u64,
    /// Sorted runs on disk.
    pub runs: u64,
    /// Keys in the runs.
    pub run_keys: u64,
    /// Bytes of RAM the runs' filters and sparse indexes take.
    pub filter_bytes: u64,
    /// Background seals and merges in flight (at most one of each): the writer never
    /// waits for one, so tests and benchmarks can tell whether lookups were
    /// answered while one ran.
    pub jobs: u64,
}

/// What a background job is building.
enum JobKind {
    /// A run of the keys of records `lo..hi`, read from the positional file.
    Seal,
    /// The merge of the adjacent runs `lo..mid` and `mid..hi`.
    Merge { mid: u64 },
}

/// A seal or merge running on its own thread. Until it is installed the
/// inputs (the frozen keys, or the two runs) keep answering lookups, so a
/// key being moved is always found.
struct Job {
    kind: JobKind,
    lo: u64,
    hi: u64,
    handle: std::thread::JoinHandle<StoreResult<Run>>,
}

/// The writer's duplicate filter; see the module docs.
pub(crate) struct Dedupe {
    dir: PathBuf,
    recent: HashSet<Key>,
    /// Keys a background seal is writing into a run (durable records
    /// `sealed_upto..job.hi`): consulted until the run is installed.
    frozen: HashSet<Key>,
    runs: Vec<Arc<Run>>,
    /// Records below this (and from the first kept one) are in `runs`.
    sealed_upto: u64,
    seal_keys: usize,
    /// The seal in flight: at most one, so the keys in RAM are at most the
    /// recent set plus one frozen set.
    seal_job: Option<Job>,
    /// The merge in flight: at most one, independent of seals (a merge of
    /// gigabytes must not keep recent keys from moving to disk).
    merge_job: Option<Job>,
    /// Tests hold seals (`.0`) or merges (`.1`) back before they put their
    /// output in place, to look things up while they are in flight (never
    /// set outside tests).
    hold: (Option<Arc<AtomicBool>>, Option<Arc<AtomicBool>>),
}

impl Drop for Dedupe {
    fn drop(&mut self) {
        // A job left running could rename its output into a directory a
        // later load already cleaned: wait for it, and install it so that a
        // finished merge's inputs do not stay on disk until the next open.
        let _ = self.wait();
    }
}

impl Dedupe {
    /// A filter that holds nothing (read-only opens never append).
    pub(crate) fn empty(data: &Path) -> Dedupe {
        Dedupe {
            dir: runs_dir(data),
            recent: HashSet::default(),
            frozen: HashSet::default(),
            runs: Vec::new(),
            sealed_upto: 0,
            seal_keys: usize::MAX,
            seal_job: None,
            merge_job: None,
            hold: (None, None),
        }
    }

    /// The end of the chain of usable runs that tiles records from
    /// `first_seq`: the positional keys file is needed (and trustworthy)
    /// only past there, because a run is only written after it is fsynced
    /// that far, and its part of the file is freed once the run is durable.
    /// Each run is checked as [`Dedupe::load`] will (so a run load drops is
    /// never counted: its keys come back from the segments).
    pub(crate) fn covered_upto(data: &Path, first_seq: u64) -> u64 {
        let mut cur = first_seq;
        let runs = list_runs(&runs_dir(data));
        loop {
            let next = runs
                .iter()
                .filter(|(lo, hi, p)| {
                    *lo == cur
                        && std::fs::metadata(p).is_ok_and(|m| m.len() == run_bytes(hi - lo))
                        && matches!(Run::open(p.clone(), *lo, *hi), Ok(Some(_)))
                })
                .map(|r| r.1)
                .max();
            match next {
                Some(hi) => cur = hi,
                None => return cur,
            }
        }
    }

    /// Loads the filter of a writable store whose positional keys file
    /// `keys` holds `have` keys from record `first_seq`: the runs that tile
    /// them from the start (others are deleted), and the keys after the
    /// last run, sealing them into new runs when there are many (on this
    /// thread: an open may take its time, an append may not).
    pub(crate) fn load(
        data: &Path,
        keys: &File,
        first_seq: u64,
        have: u64,
        seal_keys: usize,
    ) -> StoreResult<Dedupe> {
        let dir = runs_dir(data);
        super::files::private_dir(&dir)?;
        let mut all = list_runs(&dir);
        // Leftover temporary files of an interrupted seal or merge.
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with(OLD_RUN_PREFIX) {
                    let _ = std::fs::remove_file(&p);
                    continue;
                }
                if !name.starts_with(RUN_PREFIX) {
                    continue;
                }
                let is_run = parse_run_name(&name).is_some();
                let is_filter = name.ends_with(".filter")
                    && parse_run_name(&name.replace(".filter", ".keys")).is_some();
                // Neither a run nor the side file of one that exists.
                let kept = is_run || (is_filter && p.with_extension("keys").exists());
                if !kept {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let end = first_seq + have;
        let mut runs: Vec<Arc<Run>> = Vec::new();
        let mut cur = first_seq;
        let mut unused = Vec::new();
        for (lo, hi, path) in all {
            if lo == cur && hi <= end {
                match Run::open(path.clone(), lo, hi)? {
                    Some(r) => {
                        cur = hi;
                        runs.push(Arc::new(r));
                    }
                    None => unused.push(path),
                }
            } else {
                unused.push(path);
            }
        }
        for p in unused {
            remove_run_files(&p);
        }
        let mut d = Dedupe {
            dir,
            recent: HashSet::default(),
            frozen: HashSet::default(),
            runs,
            sealed_upto: cur,
            seal_keys: seal_keys.max(1),
            seal_job: None,
            merge_job: None,
            hold: (None, None),
        };
        while end - d.sealed_upto > d.seal_keys as u64 {
            let lo = d.sealed_upto;
            let to = lo + d.seal_keys as u64;
            let run = build_seal_run(&d.dir, keys, first_seq, lo, to, None)?;
            d.runs.push(Arc::new(run));
            d.sealed_upto = to;
            while let Some(i) = d.merge_candidate() {
                let merged = merge_runs(&d.dir, &d.runs[i], &d.runs[i + 1], None)?;
                d.install_merge(i, merged)?;
            }
        }
        let mut buf = vec![0u8; IO_KEYS * 16];
        let mut at = d.sealed_upto;
        while at < end {
            let n = ((end - at) as usize).min(IO_KEYS);
            keys.read_exact_at(&mut buf[..n * 16], (at - first_seq) * 16)
                .map_err(io_err("dedupe index"))?;
            for i in 0..n {
                d.recent.insert(key_at(&buf, i));
            }
            at += n as u64;
        }
        Ok(d)
    }

    /// Whether `k` was stored (exact: a filter's false positive is checked on disk).
    pub(crate) fn contains(&self, k: &Key) -> StoreResult<bool> {
        if self.recent.contains(k) || self.frozen.contains(k) {
            return Ok(true);
        }
        for r in self.runs.iter().rev() {
            if r.contains(k)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Adds `k` unless present; returns whether it was added.
    pub(crate) fn insert(&mut self, k: Key) -> StoreResult<bool> {
        if self.contains(&k)? {
            return Ok(false);
        }
        self.recent.insert(k);
        Ok(true)
    }

    /// Adds a key already checked absent.
    pub(crate) fn insert_new(&mut self, k: Key) {
        self.recent.insert(k);
    }

    /// Takes back a key of a record that was not kept (only recent keys
    /// can be: frozen ones belong to durable records).
    pub(crate) fn remove_recent(&mut self, k: &Key) {
        self.recent.remove(k);
    }

    /// Records below this are in runs (not only in RAM). Waits for a job in
    /// flight first, so that the answer does not change under the caller
    /// (a failed job changes nothing, so its error does not matter here).
    pub(crate) fn sealed_upto(&mut self) -> u64 {
        let _ = self.wait();
        self.sealed_upto
    }

    /// What it holds.
    pub(crate) fn stats(&self) -> DedupeStats {
        DedupeStats {
            recent_keys: (self.recent.len() + self.frozen.len()) as u64,
            runs: self.runs.len() as u64,
            run_keys: self.runs.iter().map(|r| r.len()).sum(),
            filter_bytes: self
                .runs
                .iter()
                .map(|r| (r.fence.len() * 16 + r.bloom.words.len() * 8) as u64)
                .sum(),
            jobs: u64::from(self.seal_job.is_some()) + u64::from(self.merge_job.is_some()),
        }
    }

    /// Installs finished background jobs, then starts the next ones: a
    /// seal of records `sealed_upto..durable_end` once the recent set is
    /// full, and a merge the runs need. Waits for a seal only when the keys
    /// in RAM (recent and frozen) have grown to twice the recent set's
    /// bound meanwhile (so RAM stays bounded by that plus one batch); never
    /// for a merge. `durable_end` must not exceed the
    /// records that are durable and whose keys are in `keys`;
    /// `appended_end` is the end of the keys written to `keys` (durable or
    /// not).
    pub(crate) fn maybe_seal(
        &mut self,
        keys: &File,
        first_seq: u64,
        durable_end: u64,
        appended_end: u64,
    ) -> StoreResult<()> {
        let mut res = Ok(());
        let in_ram = self.recent.len() + self.frozen.len();
        let seal_done = self
            .seal_job
            .as_ref()
            .is_some_and(|j| j.handle.is_finished());
        if seal_done || in_ram >= 2 * self.seal_keys {
            res = self.wait_seal();
        }
        if self
            .merge_job
            .as_ref()
            .is_some_and(|j| j.handle.is_finished())
        {
            res = res.and(self.wait_merge());
        }
        if self.seal_job.is_none()
            && self.recent.len() >= self.seal_keys
            && durable_end > self.sealed_upto
        {
            res = res.and(self.start_seal(keys, first_seq, durable_end, appended_end));
        }
        if self.merge_job.is_none() {
            self.start_merge();
        }
        res
    }

    /// Waits for the jobs in flight, if any, and installs their output. On
    /// an error the inputs stay in use (nothing is lost, only not moved).
    pub(crate) fn wait(&mut self) -> StoreResult<()> {
        let a = self.wait_seal();
        let b = self.wait_merge();
        a.and(b)
    }

    fn wait_seal(&mut self) -> StoreResult<()> {
        let Some(job) = self.seal_job.take() else {
            return Ok(());
        };
        match join(job.handle) {
            Ok(run) => {
                self.runs.push(Arc::new(run));
                self.sealed_upto = job.hi;
                self.frozen = HashSet::default();
                if self.recent.capacity() > 2 * self.seal_keys.max(self.recent.len()) {
                    self.recent.shrink_to_fit();
                }
                Ok(())
            }
            Err(e) => {
                // The keys go back to the recent set; a later seal retries.
                let frozen = std::mem::take(&mut self.frozen);
                self.recent.extend(frozen);
                Err(e)
            }
        }
    }

    fn wait_merge(&mut self) -> StoreResult<()> {
        let Some(job) = self.merge_job.take() else {
            return Ok(());
        };
        let run = join(job.handle)?;
        let JobKind::Merge { mid } = job.kind else {
            return Ok(());
        };
        let Some(i) = self
            .runs
            .iter()
            .position(|r| r.lo == job.lo && r.hi == mid)
            .filter(|&i| self.runs.get(i + 1).is_some_and(|r| r.hi == job.hi))
        else {
            // The inputs are gone (cannot happen: seals only add runs at
            // the end); keep what is in use.
            remove_run_files(&run.path);
            return Ok(());
        };
        self.install_merge(i, run)
    }

    /// Freezes the recent keys of records `sealed_upto..hi` and writes their
    /// run on a background thread.
    fn start_seal(
        &mut self,
        keys: &File,
        first_seq: u64,
        hi: u64,
        appended_end: u64,
    ) -> StoreResult<()> {
        let lo = self.sealed_upto.max(first_seq);
        if hi <= lo {
            return Ok(());
        }
        let file = keys.try_clone().map_err(io_err("dedupe index"))?;
        // Keys of records after `hi` (appended, maybe not durable yet) stay
        // in the recent set; all the others are exactly `lo..hi`'s.
        let mut tail = Vec::new();
        let mut at = hi;
        let mut buf = vec![0u8; IO_KEYS * 16];
        while at < appended_end {
            let n = ((appended_end - at) as usize).min(IO_KEYS);
            keys.read_exact_at(&mut buf[..n * 16], (at - first_seq) * 16)
                .map_err(io_err("dedupe index"))?;
            tail.extend((0..n).map(|i| key_at(&buf, i)));
            at += n as u64;
        }
        let mut frozen = std::mem::take(&mut self.recent);
        for k in tail {
            frozen.remove(&k);
            self.recent.insert(k);
        }
        self.frozen = frozen;
        let dir = self.dir.clone();
        let hold = self.hold.0.clone();
        let handle = std::thread::Builder::new()
            .name("kaudit-keyseal".into())
            .spawn(move || build_seal_run(&dir, &file, first_seq, lo, hi, hold));
        match handle {
            Ok(handle) => {
                self.seal_job = Some(Job {
                    kind: JobKind::Seal,
                    lo,
                    hi,
                    handle,
                });
                Ok(())
            }
            Err(e) => {
                let frozen = std::mem::take(&mut self.frozen);
                self.recent.extend(frozen);
                Err(io_err("dedupe seal thread")(e))
            }
        }
    }

    /// The newest adjacent pair of runs whose older one is at most twice
    /// the newer's size (merging those keeps the number of runs
    /// logarithmic in the store's size).
    fn merge_candidate(&self) -> Option<usize> {
        (0..self.runs.len().saturating_sub(1)).rev().find(|&i| {
            let (a, b) = (self.runs[i].len(), self.runs[i + 1].len());
            a <= 2 * b && a + b <= u64::from(u32::MAX)
        })
    }

    /// Starts merging the pair [`Dedupe::merge_candidate`] picks, if any.
    fn start_merge(&mut self) {
        let Some(i) = self.merge_candidate() else {
            return;
        };
        let (a, b) = (self.runs[i].clone(), self.runs[i + 1].clone());
        let (lo, mid, hi) = (a.lo, a.hi, b.hi);
        let dir = self.dir.clone();
        let hold = self.hold.1.clone();
        let spawned = std::thread::Builder::new()
            .name("kaudit-keymerge".into())
            .spawn(move || merge_runs(&dir, &a, &b, hold));
        // Failing to start a thread leaves more runs than needed, nothing worse.
        if let Ok(handle) = spawned {
            self.merge_job = Some(Job {
                kind: JobKind::Merge { mid },
                lo,
                hi,
                handle,
            });
        }
    }

    /// Swaps the merged run in for its two inputs at `i`, `i + 1`, whose
    /// files go only now (they answered lookups until this point).
    fn install_merge(&mut self, i: usize, merged: Run) -> StoreResult<()> {
        let old: Vec<Arc<Run>> = self.runs.splice(i..i + 2, [Arc::new(merged)]).collect();
        for r in old {
            remove_run_files(&r.path);
        }
        sync_dir(&self.dir)
    }

    /// Prune: drops the keys of records below `before` from the runs. Runs
    /// wholly below go; the run straddling `before` is rewritten (streamed,
    /// one buffer of entries at a time) with only its entries of records
    /// `before..`, which its sequence offsets tell apart, so no record is
    /// read again. Returns where the runs end (the positional file is
    /// needed from there on). Call [`Dedupe::load`] afterwards for the new
    /// first record; until then this filter must not be used.
    pub(crate) fn drop_below(&mut self, before: u64) -> StoreResult<u64> {
        let _ = self.wait();
        for r in &self.runs {
            if r.lo < before && before < r.hi {
                let path = self.dir.join(run_name(before, r.hi));
                let (tmp, out) = create_tmp(&path)?;
                let mut w = BufWriter::with_capacity(1 << 20, &out);
                let mut builder = RunBuilder::new(r.hi - before);
                let mut stream = KeyStream::new(r)?;
                let mut n = 0u64;
                while stream.peek().is_some() {
                    let (key, seq) = stream.take()?;
                    if seq < before {
                        continue;
                    }
                    builder.push(&key);
                    n += 1;
                    w.write_all(&key).map_err(io_err(tmp.display()))?;
                    w.write_all(&((seq - before) as u32).to_le_bytes())
                        .map_err(io_err(tmp.display()))?;
                }
                w.flush().map_err(io_err(tmp.display()))?;
                drop(w);
                if n != r.hi - before {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(StoreError::Corrupt(format!(
                        "{}: holds {n} keys of records {before}..{}, want {}",
                        r.path.display(),
                        r.hi,
                        r.hi - before
                    )));
                }
                out.sync_all().map_err(io_err(tmp.display()))?;
                write_durable(&filter_path(&path), &builder.filter_bytes())?;
                std::fs::rename(&tmp, &path).map_err(io_err(path.display()))?;
            }
        }
        sync_dir(&self.dir)?;
        for r in std::mem::take(&mut self.runs) {
            if r.lo < before {
                remove_run_files(&r.path);
            }
        }
        sync_dir(&self.dir)?;
        Ok(self.sealed_upto.max(before))
    }

    /// Tests: holds seals (`merges == false`) or merges back before they
    /// put their output in place, until the returned flag is cleared.
    #[cfg(test)]
    fn hold_jobs(&mut self, merges: bool) -> Arc<AtomicBool> {
        let h = Arc::new(AtomicBool::new(true));
        if merges {
            self.hold.1 = Some(h.clone());
        } else {
            self.hold.0 = Some(h.clone());
        }
        h
    }
}

/// A job's output (a panicked job is an error, never the writer's panic).
fn join(handle: std::thread::JoinHandle<StoreResult<Run>>) -> StoreResult<Run> {
    handle
        .join()
        .unwrap_or_else(|_| Err(StoreError::Corrupt("the dedupe key job panicked".into())))
}

/// Waits while a test holds jobs back.
fn held(hold: &Option<Arc<AtomicBool>>) {
    while hold
        .as_ref()
        .is_some_and(|h| h.load(AtomicOrdering::SeqCst))
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Deletes a run and its side file (an open file stays readable until closed).
fn remove_run_files(run: &Path) {
    let _ = std::fs::remove_file(filter_path(run));
    let _ = std::fs::remove_file(run);
}

/// Writes the run of the keys of records `lo..hi` from the positional file
/// `keys` (which holds keys from record `first_seq`), durably.
fn build_seal_run(
    dir: &Path,
    keys: &File,
    first_seq: u64,
    lo: u64,
    hi: u64,
    hold: Option<Arc<AtomicBool>>,
) -> StoreResult<Run> {
    // The positional file is trusted up to the newest run: make it so.
    keys.sync_data().map_err(io_err("dedupe index"))?;
    let n = (hi - lo) as usize;
    if u32::try_from(n).is_err() {
        return Err(StoreError::Input(format!(
            "dedupe: a run of {n} keys is past its {} limit",
            u32::MAX
        )));
    }
    let mut raw = vec![0u8; n * 16];
    keys.read_exact_at(&mut raw, (lo - first_seq) * 16)
        .map_err(io_err("dedupe index"))?;
    let mut sorted: Vec<(Key, u32)> = (0..n).map(|i| (key_at(&raw, i), i as u32)).collect();
    drop(raw);
    sorted.sort_unstable();
    let mut rb = RunBuilder::new(n as u64);
    let mut bytes = Vec::with_capacity(n * ENTRY);
    for (k, off) in &sorted {
        rb.push(k);
        bytes.extend_from_slice(k);
        bytes.extend_from_slice(&off.to_le_bytes());
    }
    drop(sorted);
    let path = dir.join(run_name(lo, hi));
    write_durable(&filter_path(&path), &rb.filter_bytes())?;
    held(&hold);
    write_durable(&path, &bytes)?;
    sync_dir(dir)?;
    punch_keys(keys, first_seq, lo, hi);
    let file = File::open(&path).map_err(io_err(path.display()))?;
    Ok(Run {
        lo,
        hi,
        path,
        file,
        fence: rb.fence,
        bloom: rb.bloom,
    })
}

/// Merges two adjacent runs into a new durable one; the inputs stay.
fn merge_runs(dir: &Path, a: &Run, b: &Run, hold: Option<Arc<AtomicBool>>) -> StoreResult<Run> {
    let (lo, hi) = (a.lo, b.hi);
    let path = dir.join(run_name(lo, hi));
    let (tmp, out) = create_tmp(&path)?;
    let mut w = BufWriter::with_capacity(1 << 20, &out);
    let mut ra = KeyStream::new(a)?;
    let mut rb = KeyStream::new(b)?;
    let mut builder = RunBuilder::new(a.len() + b.len());
    loop {
        let (key, seq) = match (ra.peek(), rb.peek()) {
            (Some(x), Some(y)) if x <= y => ra.take()?,
            (Some(_), Some(_)) => rb.take()?,
            (Some(_), None) => ra.take()?,
            (None, Some(_)) => rb.take()?,
            (None, None) => break,
        };
        builder.push(&key);
        let off = u32::try_from(seq - lo)
            .map_err(|_| StoreError::Corrupt(format!("{}: merged run too long", path.display())))?;
        w.write_all(&key).map_err(io_err(tmp.display()))?;
        w.write_all(&off.to_le_bytes())
            .map_err(io_err(tmp.display()))?;
    }
    w.flush().map_err(io_err(tmp.display()))?;
    drop(w);
    out.sync_all().map_err(io_err(tmp.display()))?;
    write_durable(&filter_path(&path), &builder.filter_bytes())?;
    held(&hold);
    std::fs::rename(&tmp, &path).map_err(io_err(path.display()))?;
    sync_dir(dir)?;
    let file = File::open(&path).map_err(io_err(path.display()))?;
    Ok(Run {
        lo,
        hi,
        path,
        file,
        fence: builder.fence,
        bloom: builder.bloom,
    })
}

/// Reads a run's keys (with their records' sequence numbers) in order, a
/// buffer at a time (positioned reads: the writer looks keys up in the
/// same file meanwhile).
struct KeyStream<'a> {
    run: &'a Run,
    buf: Vec<u8>,
    at: usize,
    /// Keys of the run not read into `buf` yet.
    next: u64,
    head: Option<(Key, u64)>,
}

impl<'a> KeyStream<'a> {
    fn new(run: &'a Run) -> StoreResult<KeyStream<'a>> {
        let mut s = KeyStream {
            run,
            buf: Vec::new(),
            at: 0,
            next: 0,
            head: None,
        };
        s.advance()?;
        Ok(s)
    }

    fn advance(&mut self) -> StoreResult<()> {
        self.head = None;
        if self.at >= self.buf.len() {
            let left = self.run.len() - self.next;
            if left == 0 {
                return Ok(());
            }
            let n = (left as usize).min(IO_KEYS);
            self.buf.resize(n * ENTRY, 0);
            self.run
                .file
                .read_exact_at(&mut self.buf, run_bytes(self.next))
                .map_err(io_err(self.run.path.display()))?;
            self.next += n as u64;
            self.at = 0;
        }
        let (k, off) = entry_at(&self.buf, self.at / ENTRY);
        self.head = Some((k, self.run.lo + u64::from(off)));
        self.at += ENTRY;
        Ok(())
    }

    fn peek(&self) -> Option<&Key> {
        self.head.as_ref().map(|h| &h.0)
    }

    fn take(&mut self) -> StoreResult<(Key, u64)> {
        let k = self.head.ok_or_else(|| {
            StoreError::Corrupt(format!("{}: ended early", self.run.path.display()))
        })?;
        self.advance()?;
        Ok(k)
    }
}

/// The run files in `dir`: (lo, hi, path).
fn list_runs(dir: &Path) -> Vec<(u64, u64, PathBuf)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Some((lo, hi)) = parse_run_name(&e.file_name().to_string_lossy()) {
                out.push((lo, hi, e.path()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(i: u64) -> Key {
        // Uniform like the real keys (SHA-256 output), distinct per i.
        let h = crate::merkle::leaf_hash(&i.to_le_bytes());
        let mut k = [0u8; 16];
        k.copy_from_slice(&h[..16]);
        k
    }

    /// A tiny writer: a positional keys file plus the filter, sealing after
    /// every append (everything appended counts as durable).
    struct Model {
        _dir: tempfile::TempDir,
        data: PathBuf,
        keys: File,
        have: u64,
        /// Every key stored, in order: the records the store's segments
        /// hold, from which an open rewrites the positional keys past the
        /// usable runs (their part of the file is freed).
        all: Vec<Key>,
        d: Dedupe,
    }

    impl Model {
        fn new(seal: usize) -> Model {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().to_path_buf();
            std::fs::create_dir_all(data.join("index")).unwrap();
            let keys = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(data.join("index").join("keys"))
                .unwrap();
            let d = Dedupe::load(&data, &keys, 0, 0, seal).unwrap();
            Model {
                _dir: dir,
                data,
                keys,
                have: 0,
                all: Vec::new(),
                d,
            }
        }

        fn add(&mut self, k: Key) -> bool {
            if !self.d.insert(k).unwrap() {
                return false;
            }
            self.keys.write_all_at(&k, self.have * 16).unwrap();
            self.have += 1;
            self.all.push(k);
            self.d
                .maybe_seal(&self.keys, 0, self.have, self.have)
                .unwrap();
            true
        }

        /// Runs jobs to completion until there is nothing left to seal or merge.
        fn settle(&mut self) {
            loop {
                self.d.wait().unwrap();
                self.d
                    .maybe_seal(&self.keys, 0, self.have, self.have)
                    .unwrap();
                if self.d.seal_job.is_none() && self.d.merge_job.is_none() {
                    break;
                }
            }
        }

        fn reopen(&mut self, seal: usize) {
            self.d.wait().unwrap();
            // As the store's open does: keys past the usable runs come back
            // from the records.
            let cov = Dedupe::covered_upto(&self.data, 0) as usize;
            self.keys
                .write_all_at(&self.all[cov..].concat(), cov as u64 * 16)
                .unwrap();
            self.d = Dedupe::load(&self.data, &self.keys, 0, self.have, seal).unwrap();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any interleaving of new and repeated keys, across the RAM/run
        /// boundary, merges and reopens, answers exactly as a set does.
        #[test]
        fn exactly_set_semantics(
            ops in proptest::collection::vec((0u64..400, 0u8..20), 1..1500),
            seal in 1usize..40,
        ) {
            let mut m = Model::new(seal);
            let mut set = std::collections::HashSet::new();
            for (i, (k, op)) in ops.into_iter().enumerate() {
                if op == 0 {
                    m.reopen(seal);
                }
                let added = m.add(key(k));
                prop_assert_eq!(added, set.insert(k), "op {} key {}", i, k);
            }
            let st = m.d.stats();
            prop_assert_eq!(st.recent_keys + st.run_keys, set.len() as u64);
            for k in 0..450u64 {
                prop_assert_eq!(m.d.contains(&key(k)).unwrap(), set.contains(&k));
            }
        }
    }

    #[test]
    fn old_keys_leave_ram_and_runs_stay_few() {
        let mut m = Model::new(100);
        for i in 0..10_000 {
            assert!(m.add(key(i)));
            // Never more than the recent set's bound twice over in RAM,
            // whatever the jobs' progress.
            let st = m.d.stats();
            assert!(st.recent_keys <= 2 * 100, "{st:?}");
        }
        m.settle();
        let st = m.d.stats();
        assert!(st.recent_keys <= 100, "{st:?}");
        assert_eq!(st.recent_keys + st.run_keys, 10_000);
        // Logarithmic: 100 seals of 100 keys make at most ~log2(100)+1 runs.
        assert!(st.runs <= 8, "{st:?}");
        for i in 0..10_000 {
            assert!(!m.add(key(i)), "key {i} was taken again");
        }
        // The filter's false positives are checked on disk, never dropped.
        for i in 10_000..20_000 {
            assert!(m.add(key(i)), "new key {i} taken for a duplicate");
        }
    }

    #[test]
    fn a_side_file_is_checked_against_its_run() {
        let mut rb = RunBuilder::new(1000);
        let mut keys: Vec<Key> = (0..1000).map(key).collect();
        keys.sort_unstable();
        for k in &keys {
            rb.push(k);
        }
        let bytes = rb.filter_bytes();
        let name = run_name(5, 1005);
        assert_eq!(
            check_key_filter(&bytes, 1000, &name),
            (true, Some((5, 1005)))
        );
        assert!(!check_key_filter(&bytes, 999, &name).0);
        assert!(!check_key_filter(&bytes[..bytes.len() - 1], 1000, &name).0);
        assert!(!check_key_filter(&bytes, u64::MAX, "keyseq-x.keys").0);
        assert_eq!(check_key_filter(&[], 0, "keyseq-1-2.keys").1, None);
    }

    #[test]
    fn a_crash_mid_merge_leaves_runs_that_still_tile() {
        let mut m = Model::new(10);
        for i in 0..35 {
            m.add(key(i));
        }
        m.settle();
        // A merged run written but its inputs not yet deleted, plus a stray
        // temporary file: open keeps the longest tiling and cleans up.
        let runs = list_runs(&runs_dir(&m.data));
        let lo = runs.iter().map(|r| r.0).min().unwrap();
        let hi = runs.iter().map(|r| r.1).max().unwrap();
        let mut all: Vec<(Key, u32)> = (lo..hi)
            .map(|s| (m.all[s as usize], (s - lo) as u32))
            .collect();
        all.sort_unstable();
        let bytes: Vec<u8> = all
            .iter()
            .flat_map(|(k, o)| k.iter().copied().chain(o.to_le_bytes()))
            .collect();
        let dir = runs_dir(&m.data);
        std::fs::write(dir.join(run_name(lo, hi)), bytes).unwrap();
        std::fs::write(dir.join("keyseq-x.keys.tmp"), b"junk").unwrap();
        m.reopen(10);
        assert_eq!(m.d.stats().runs, 1);
        assert_eq!(list_runs(&dir).len(), 1);
        assert!(!dir.join("keyseq-x.keys.tmp").exists());
        for i in 0..35 {
            assert!(!m.add(key(i)));
        }
        assert!(m.add(key(99)));
    }

    #[test]
    fn a_damaged_filter_is_rebuilt_and_a_short_run_dropped() {
        let mut m = Model::new(10);
        for i in 0..30 {
            m.add(key(i));
        }
        m.settle();
        let dir = runs_dir(&m.data);
        let runs = list_runs(&dir);
        assert!(!runs.is_empty());
        std::fs::write(filter_path(&runs[0].2), b"KDFILT01short").unwrap();
        m.reopen(10);
        for i in 0..30 {
            assert!(!m.add(key(i)), "key {i}");
        }
        // A run cut short is not trusted: its keys come back from the positional file.
        let runs = list_runs(&dir);
        let f = OpenOptions::new().write(true).open(&runs[0].2).unwrap();
        f.set_len(16).unwrap();
        m.reopen(10);
        for i in 0..30 {
            assert!(!m.add(key(i)), "key {i}");
        }
    }

    /// Every key, stored or not, answers as the set of `0..stored` does.
    fn check_exact(m: &Model, stored: u64, upto: u64) {
        for i in 0..upto {
            assert_eq!(m.d.contains(&key(i)).unwrap(), i < stored, "key {i}");
        }
    }

    #[test]
    fn lookups_are_exact_while_a_seal_runs() {
        let mut m = Model::new(100);
        let hold = m.d.hold_jobs(false);
        for i in 0..150 {
            assert!(m.add(key(i)));
        }
        // The seal of the first 100 keys is in flight: appends went on
        // without it and its keys are still found.
        assert_eq!(m.d.stats().jobs, 1);
        assert!(m.d.seal_job.is_some());
        assert_eq!(m.d.stats().runs, 0);
        check_exact(&m, 150, 300);
        for i in 0..150 {
            assert!(!m.add(key(i)), "key {i} taken again mid-seal");
        }
        hold.store(false, AtomicOrdering::SeqCst);
        m.settle();
        assert_eq!(m.d.stats().run_keys, 100);
        assert_eq!(m.d.stats().recent_keys, 50);
        check_exact(&m, 150, 300);
    }

    #[test]
    fn lookups_are_exact_while_a_merge_runs_and_appends_go_on() {
        let mut m = Model::new(100);
        let hold = m.d.hold_jobs(true);
        let mut stored = 0;
        // Seal until two runs wait for their (held) merge.
        while m.d.runs.len() < 2 {
            assert!(m.add(key(stored)));
            stored += 1;
            m.d.wait_seal().unwrap();
        }
        m.d.maybe_seal(&m.keys, 0, m.have, m.have).unwrap();
        assert!(m.d.merge_job.is_some(), "{:?}", m.d.stats());
        // Appends, seals and lookups go on; the merge's inputs answer.
        for _ in 0..350 {
            assert!(m.add(key(stored)));
            stored += 1;
            m.d.wait_seal().unwrap();
        }
        assert!(m.d.merge_job.is_some());
        check_exact(&m, stored, stored + 500);
        for i in 0..stored {
            assert!(!m.add(key(i)), "key {i} taken again mid-merge");
        }
        let before = m.d.stats().runs;
        hold.store(false, AtomicOrdering::SeqCst);
        m.settle();
        let st = m.d.stats();
        assert!(st.runs < before, "{st:?}");
        assert_eq!(st.recent_keys + st.run_keys, stored);
        check_exact(&m, stored, stored + 500);
        // On disk only the runs in use (the merged inputs were deleted).
        assert_eq!(list_runs(&runs_dir(&m.data)).len() as u64, st.runs);
    }

    #[test]
    fn a_crash_while_a_merge_is_in_flight_leaves_the_old_runs_valid() {
        let mut m = Model::new(50);
        let hold = m.d.hold_jobs(true);
        let mut stored = 0;
        while m.d.runs.len() < 2 {
            assert!(m.add(key(stored)));
            stored += 1;
            m.d.wait_seal().unwrap();
        }
        m.d.maybe_seal(&m.keys, 0, m.have, m.have).unwrap();
        assert!(m.d.merge_job.is_some());
        let dir = runs_dir(&m.data);
        // The merge wrote its output under a temporary name (and its
        // filter) but did not rename it: what a crash now leaves on disk.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".keys.tmp"))
        {
            assert!(std::time::Instant::now() < deadline, "merge never wrote");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // A new process opens the same files while the old one is "dead".
        let crashed = std::mem::replace(
            &mut m.d,
            Dedupe::load(&m.data, &m.keys, 0, m.have, 50).unwrap(),
        );
        assert_eq!(m.d.stats().runs, 2);
        assert_eq!(list_runs(&dir).len(), 2);
        let leftovers: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| {
                n.ends_with(".tmp")
                    || (n.ends_with(".filter") && !dir.join(n.replace(".filter", ".keys")).exists())
            })
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        check_exact(&m, stored, stored + 200);
        for i in 0..stored {
            assert!(!m.add(key(i)));
        }
        // The dead process's merge finding its temporary file gone fails
        // without harming what the new one uses.
        hold.store(false, AtomicOrdering::SeqCst);
        drop(crashed);
        m.settle();
        check_exact(&m, stored, stored + 200);
    }
}
