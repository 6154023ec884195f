//! The on-disk index: dictionary-encoded key-field columns, event time and
//! latency, rebuilt from the store at any time.
//!
//! Layout under `<data>/search/`: `meta.json` (rows committed, first seq,
//! column widths), per key field `<field>.col` (row -> id of the row's value
//! list, 1, 2 or 4 bytes wide) and `<field>.dict` (the value lists, each
//! `u32 length + bytes`, id = position + 1), the same pair for the
//! index-internal `nonresource_path` column, `h.<field>.u32` (32-bit hashes
//! of high-cardinality fields, candidates only), `time.i64`, `lat.u32`.
//! Id 0 means "not indexed" and always counts as a possible match, so a
//! bounded dictionary never costs correctness. A commit appends the new rows,
//! fsyncs, then replaces `meta.json`; bytes past the committed rows are
//! ignored on open, so a crash loses at most the uncommitted rows.

use crate::lookup::{Lookup, LOOKUP_BLOCK};
use crate::mapped::{Plain, Rows};
use crate::{io_err, Damage, IndexError, IndexResult};
use kaudit_event::{Event, MicroTime};
use kaudit_query::{Field, LazyJson};
use kaudit_store::crypt::Cipher;
use kaudit_store::{FollowedRecord, LiveFeed, LogReader};
// foldhash (randomly seeded per process, so values an attacker picks do
// not collide on purpose): SipHash was a fifth of the indexing thread's time.
use foldhash::{HashMap, HashMapExt};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Directory of the index inside the store's data directory.
pub const INDEX_DIR: &str = "search";
/// Key fields kept as dictionary columns (exact answers from the index).
pub const DICT_FIELDS: [Field; 18] = [
    Field::User,
    Field::Group,
    Field::Impersonated,
    Field::Verb,
    Field::Resource,
    Field::Subresource,
    Field::Namespace,
    Field::Name,
    Field::ApiGroup,
    Field::ApiVersion,
    Field::Code,
    Field::Ip,
    Field::UserAgent,
    Field::Stage,
    Field::Level,
    Field::Cluster,
    Field::Decision,
    Field::Reason,
];
/// Slot of the index-internal column holding a non-resource request's path
/// (`requestURI` up to `?`, see [`nonresource_path`]): user activity and
/// RBAC from usage need it and it is no query-language field. Empty for
/// resource requests, so it stays low-cardinality.
pub const NONRESOURCE_PATH_SLOT: usize = DICT_FIELDS.len();
/// Predicates the compliance templates ask of every event of a period, kept
/// as dictionary columns too so the planner answers them exactly from the
/// index instead of reading every candidate's body: `(file stem, field as
/// the query language writes it)`. A query names one of these fields by its
/// exact text (`.requestObject.roleRef.name`). Request-body paths must start
/// with `requestObject.` and their next key must be one of
/// [`REQUEST_OBJECT_KEYS`] (the index parses only request bodies that can
/// hold them). Adding one needs a [`VERSION`] bump.
pub const EXTRA_COLUMNS: [(&str, &str); 8] = [
    ("x.truncated", "annotation.audit.k8s.io/truncated"),
    (
        "x.privileged",
        ".requestObject.spec.containers[*].securityContext.privileged",
    ),
    (
        "x.init_privileged",
        ".requestObject.spec.initContainers[*].securityContext.privileged",
    ),
    (
        "x.host_path",
        ".requestObject.spec.volumes[*].hostPath.path",
    ),
    ("x.host_network", ".requestObject.spec.hostNetwork"),
    ("x.host_pid", ".requestObject.spec.hostPID"),
    ("x.host_ipc", ".requestObject.spec.hostIPC"),
    ("x.role_ref", ".requestObject.roleRef.name"),
];
/// The keys right under `requestObject` that [`EXTRA_COLUMNS`] paths go
/// through, as they appear quoted in JSON: a request body that contains
/// none of them (and no escape, which could spell one) yields no value for
/// any of those paths, so it is not parsed.
pub const REQUEST_OBJECT_KEYS: [&str; 2] = ["\"spec\"", "\"roleRef\""];
/// Slot of the first [`EXTRA_COLUMNS`] column.
pub const EXTRA_SLOT: usize = DICT_FIELDS.len() + 1;
/// Dictionary columns: one per [`DICT_FIELDS`] entry, then the non-resource
/// path, then one per [`EXTRA_COLUMNS`] entry.
pub const DICT_COLUMNS: usize = EXTRA_SLOT + EXTRA_COLUMNS.len();

/// The fields of [`EXTRA_COLUMNS`], parsed once (None for a text that does
/// not parse, which a test rules out; such a column stays all "unknown").
pub fn extra_fields() -> &'static [Option<Field>] {
    static FIELDS: std::sync::OnceLock<Vec<Option<Field>>> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| EXTRA_COLUMNS.iter().map(|(_, t)| Field::parse(t)).collect())
}

/// An event's request body as the extra columns see it: parsed (wrapped as
/// `{"requestObject": body}` so a path walks it from the event's root), or
/// known to hold none of their values, or unparseable (values unknown).
enum RequestBody {
    Absent,
    Parsed(serde_json::Value),
    Unknown,
}

impl RequestBody {
    fn of(ev: &Event) -> RequestBody {
        let Some(raw) = ev.doc().request_object.as_ref() else {
            return RequestBody::Absent;
        };
        let text = raw.get();
        if !text.contains('\\') && !REQUEST_OBJECT_KEYS.iter().any(|k| text.contains(k)) {
            return RequestBody::Absent;
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => {
                let mut m = serde_json::Map::new();
                m.insert("requestObject".to_string(), v);
                RequestBody::Parsed(serde_json::Value::Object(m))
            }
            Err(_) => RequestBody::Unknown,
        }
    }
}
/// High-cardinality fields kept as 32-bit hashes (candidates, confirmed
/// later). Only auditID: it is the needle people paste; objectRef.uid would
/// cost 4 more bytes per event for a rare question, answered by scanning.
pub const HASH_FIELDS: [Field; 1] = [Field::AuditId];

/// The column a sorted lookup ([`crate::lookup`]) is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupSource {
    /// A [`HASH_FIELDS`] slot: the key is the row's 32-bit hash.
    Hash(usize),
    /// A dictionary column slot: the key is the row's id.
    Dict(usize),
}

/// Columns with a sorted lookup, so that an equality on them costs the
/// hits rather than the store's size: the auditID hash (the needle people
/// paste) and the object's `name` (object history; the most selective of
/// resource, namespace and name). 2 bytes per event each on disk.
pub const LOOKUPS: [LookupSource; 2] = [LookupSource::Hash(0), LookupSource::Dict(7)];

/// A lookup's key column, borrowed: the row's hash or dictionary id.
#[derive(Clone, Copy)]
enum KeyColumn<'a> {
    Hash(&'a [u32]),
    Dict(&'a Column),
}

impl KeyColumn<'_> {
    #[inline]
    fn get(&self, row: usize) -> u32 {
        match self {
            KeyColumn::Hash(h) => h.get(row).copied().unwrap_or(0),
            KeyColumn::Dict(c) => c.get(row),
        }
    }
}
/// (generation, base, rows covered, (oldest, newest) per block): the
/// cache behind [`Index::time_blocks`].
type TimeBlocks = (u64, u64, usize, Vec<(i64, i64)>);

/// Rows per block of [`Index::time_blocks`] (a multiple of 64).
pub const TIME_BLOCK: usize = 4096;
/// Largest encoded value list a dictionary stores; longer ones get id 0.
pub const MAX_DICT_KEY: usize = 16 << 10;
/// Most entries one dictionary holds; later new values get id 0.
pub const MAX_DICT_ENTRIES: usize = 50_000_000;
/// Latency value meaning "unknown" (no timestamps, negative, or too long).
pub const NO_LATENCY: u32 = u32::MAX;
const META: &str = "meta.json";
/// Layout version; an index of another version is dropped and rebuilt
/// (version 2 added the non-resource path column, version 3 the
/// [`EXTRA_COLUMNS`]).
pub const VERSION: u32 = 3;

/// Whether the index is opened to be written (all columns in memory, lock
/// held) or read (columns loaded on demand).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum IndexMode {
    /// Query only.
    Read,
    /// Catch up with the store and commit; takes `search/LOCK`.
    Write,
}

/// A column of ids whose width grows with the largest id. The committed
/// rows are mapped from the column file ([`Rows`]), so an index over a
/// large store costs page cache rather than anonymous memory.
#[derive(Clone, Debug)]
pub enum Column {
    /// Up to 255 ids.
    U8(Rows<u8>),
    /// Up to 65535 ids.
    U16(Rows<u16>),
    /// Anything larger.
    U32(Rows<u32>),
}

/// The (hit, unknown) bit words of up to 64 rows: the verdicts are looked
/// up into a byte array first (one load per row), then packed eight rows
/// at a time with one multiplication, instead of shifting per row.
#[inline(always)]
fn classify_word<T: Copy + Into<u32>>(chunk: &[T], state: &[u8]) -> (u64, u64) {
    // Verdicts are 0, 1 or 2: bit 0 of a byte says "hit", bit 1 "unknown".
    let mut verdicts = [0u8; 64];
    for (v, &x) in verdicts.iter_mut().zip(chunk) {
        *v = state.get(x.into() as usize).copied().unwrap_or(2);
    }
    const LOW_BITS: u64 = 0x0101_0101_0101_0101;
    // Gathers bit 0 of each byte into one byte (byte i -> bit i).
    const PACK: u64 = 0x0102_0408_1020_4080;
    let (mut hit, mut unknown) = (0u64, 0u64);
    for (k, bytes) in verdicts.chunks_exact(8).enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        let w = u64::from_le_bytes(b);
        hit |= ((w & LOW_BITS).wrapping_mul(PACK) >> 56) << (8 * k);
        unknown |= (((w >> 1) & LOW_BITS).wrapping_mul(PACK) >> 56) << (8 * k);
    }
    // Rows past the chunk's end are neither.
    let mask = match chunk.len() {
        64.. => u64::MAX,
        n => (1u64 << n) - 1,
    };
    (hit & mask, unknown & mask)
}

impl Column {
    fn new() -> Column {
        Column::U8(Rows::new())
    }

    /// Bytes per row.
    pub fn width(&self) -> u8 {
        match self {
            Column::U8(_) => 1,
            Column::U16(_) => 2,
            Column::U32(_) => 4,
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        match self {
            Column::U8(v) => v.len(),
            Column::U16(v) => v.len(),
            Column::U32(v) => v.len(),
        }
    }

    /// Whether no rows are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds, 64 rows per word, the rows whose id `state` maps to 1 (`hit`)
    /// and to 2 (`unknown`); `state` must have an entry for every id
    /// (missing ones count as unknown). Branch-free, width dispatched once,
    /// eight rows packed per multiplication ([`classify_word`]).
    pub fn classify(&self, state: &[u8], hit: &mut [u64], unknown: &mut [u64]) {
        fn run<T: Copy + Into<u32>>(v: &[T], state: &[u8], hit: &mut [u64], unknown: &mut [u64]) {
            for ((chunk, h), u) in v.chunks(64).zip(hit.iter_mut()).zip(unknown.iter_mut()) {
                (*h, *u) = classify_word(chunk, state);
            }
        }
        match self {
            Column::U8(v) => run(v, state, hit, unknown),
            Column::U16(v) => run(v, state, hit, unknown),
            Column::U32(v) => run(v, state, hit, unknown),
        }
    }

    /// [`Column::classify`] of the rows from `from` (a multiple of 64) on:
    /// words before it are left as they are. What a sorted lookup leaves
    /// to scan (the rows past its last whole block).
    pub fn classify_from(&self, from: usize, state: &[u8], hit: &mut [u64], unknown: &mut [u64]) {
        let w = from / 64;
        let (Some(hit), Some(unknown)) = (hit.get_mut(w..), unknown.get_mut(w..)) else {
            return;
        };
        fn run<T: Copy + Into<u32>>(v: &[T], state: &[u8], hit: &mut [u64], unknown: &mut [u64]) {
            for ((chunk, h), u) in v.chunks(64).zip(hit.iter_mut()).zip(unknown.iter_mut()) {
                (*h, *u) = classify_word(chunk, state);
            }
        }
        match self {
            Column::U8(v) => run(v.get(w * 64..).unwrap_or(&[]), state, hit, unknown),
            Column::U16(v) => run(v.get(w * 64..).unwrap_or(&[]), state, hit, unknown),
            Column::U32(v) => run(v.get(w * 64..).unwrap_or(&[]), state, hit, unknown),
        }
    }

    /// [`Column::classify`] restricted to the words where `scope` has a
    /// row: other words of `hit` and `unknown` are left as they are. An
    /// `And` whose first term is selective reads only its candidates' ids.
    pub fn classify_in(&self, state: &[u8], scope: &[u64], hit: &mut [u64], unknown: &mut [u64]) {
        fn run<T: Copy + Into<u32>>(
            v: &[T],
            state: &[u8],
            scope: &[u64],
            hit: &mut [u64],
            unknown: &mut [u64],
        ) {
            for (wi, &m) in scope.iter().enumerate() {
                if m == 0 {
                    continue;
                }
                let Some(chunk) = v.get(wi * 64..(wi * 64 + 64).min(v.len())) else {
                    continue;
                };
                let (mut hw, mut uw) = (0u64, 0u64);
                if m.count_ones() < 16 {
                    // Few candidates in the word: look at just those.
                    let mut bits = m;
                    while bits != 0 {
                        let i = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        let st = chunk
                            .get(i)
                            .and_then(|&x| state.get(x.into() as usize).copied())
                            .unwrap_or(2);
                        hw |= u64::from(st == 1) << i;
                        uw |= u64::from(st == 2) << i;
                    }
                } else {
                    (hw, uw) = classify_word(chunk, state);
                }
                if let (Some(h), Some(u)) = (hit.get_mut(wi), unknown.get_mut(wi)) {
                    *h = hw;
                    *u = uw;
                }
            }
        }
        match self {
            Column::U8(v) => run(v, state, scope, hit, unknown),
            Column::U16(v) => run(v, state, scope, hit, unknown),
            Column::U32(v) => run(v, state, scope, hit, unknown),
        }
    }

    /// Calls `f(row, id)` for every row, with the width dispatched once.
    #[inline]
    pub fn for_each_id(&self, mut f: impl FnMut(usize, u32)) {
        match self {
            Column::U8(v) => v.iter().enumerate().for_each(|(i, &x)| f(i, u32::from(x))),
            Column::U16(v) => v.iter().enumerate().for_each(|(i, &x)| f(i, u32::from(x))),
            Column::U32(v) => v.iter().enumerate().for_each(|(i, &x)| f(i, x)),
        }
    }

    /// Writes the ids of `rows` into `out` (cleared first; rows past the
    /// end are left out), with the width dispatched once for the range.
    pub fn ids_into(&self, rows: std::ops::Range<usize>, out: &mut Vec<u32>) {
        fn copy<T: Copy + Into<u32>>(v: &[T], rows: std::ops::Range<usize>, out: &mut Vec<u32>) {
            let end = rows.end.min(v.len());
            let start = rows.start.min(end);
            out.extend(v[start..end].iter().map(|&x| x.into()));
        }
        out.clear();
        match self {
            Column::U8(v) => copy(v, rows, out),
            Column::U16(v) => copy(v, rows, out),
            Column::U32(v) => copy(v, rows, out),
        }
    }

    /// Calls `f(i, id)` with the id of each of `rows` (0 when out of range),
    /// one column at a time with the width dispatched once: reading a
    /// column as one stream is what keeps scattered rows cheap.
    #[inline]
    pub fn gather(&self, rows: &[usize], mut f: impl FnMut(usize, u32)) {
        fn run<T: Copy + Into<u32>>(v: &[T], rows: &[usize], f: &mut impl FnMut(usize, u32)) {
            for (i, &r) in rows.iter().enumerate() {
                f(i, v.get(r).map_or(0, |&x| x.into()));
            }
        }
        match self {
            Column::U8(v) => run(v, rows, &mut f),
            Column::U16(v) => run(v, rows, &mut f),
            Column::U32(v) => run(v, rows, &mut f),
        }
    }

    /// The id at `row` (0 when out of range).
    #[inline]
    pub fn get(&self, row: usize) -> u32 {
        match self {
            Column::U8(v) => v.get(row).map_or(0, |&x| u32::from(x)),
            Column::U16(v) => v.get(row).map_or(0, |&x| u32::from(x)),
            Column::U32(v) => v.get(row).copied().unwrap_or(0),
        }
    }

    fn push(&mut self, id: u32) {
        // Widening copies the column into anonymous memory; the next commit
        // rewrites its file (renamed over the old one) and maps it again.
        fn widen<A: Plain + Into<B>, B: Plain>(v: &[A]) -> Rows<B> {
            let mut r = Rows::new();
            v.iter().for_each(|&x| r.push(x.into()));
            r
        }
        if id > 0xFFFF {
            if let Column::U8(v) = self {
                *self = Column::U32(widen(v));
            } else if let Column::U16(v) = self {
                *self = Column::U32(widen(v));
            }
        } else if id > 0xFF {
            if let Column::U8(v) = self {
                *self = Column::U16(widen(v));
            }
        }
        match self {
            Column::U8(v) => v.push(id as u8),
            Column::U16(v) => v.push(id as u16),
            Column::U32(v) => v.push(id),
        }
    }

    fn truncate(&mut self, n: usize) {
        match self {
            Column::U8(v) => v.truncate(n),
            Column::U16(v) => v.truncate(n),
            Column::U32(v) => v.truncate(n),
        }
    }

    fn bytes(&self, from: usize, out: &mut Vec<u8>) {
        match self {
            Column::U8(v) => out.extend_from_slice(&v[from.min(v.len())..]),
            Column::U16(v) => v[from.min(v.len())..]
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Column::U32(v) => v[from.min(v.len())..]
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        }
    }

    /// The first `rows` ids of a column file of `width` bytes per id (the
    /// caller checked the file holds them), mapped; None for a bad width.
    fn map(width: u8, file: File, rows: usize, spare: usize) -> Option<std::io::Result<Column>> {
        Some(match width {
            1 => Rows::map(file, rows, spare).map(Column::U8),
            2 => Rows::map(file, rows, spare).map(Column::U16),
            4 => Rows::map(file, rows, spare).map(Column::U32),
            _ => return None,
        })
    }

    /// See [`Rows::remap`].
    fn remap(&mut self, file: File, rows: usize, replaced: bool) {
        match self {
            Column::U8(v) => v.remap(file, rows, replaced),
            Column::U16(v) => v.remap(file, rows, replaced),
            Column::U32(v) => v.remap(file, rows, replaced),
        }
    }

    /// Bytes of the column held in anonymous memory and mapped from its
    /// file.
    pub fn memory(&self) -> (usize, usize) {
        match self {
            Column::U8(v) => (v.anon_bytes(), v.mapped_bytes()),
            Column::U16(v) => (v.anon_bytes(), v.mapped_bytes()),
            Column::U32(v) => (v.anon_bytes(), v.mapped_bytes()),
        }
    }
}

/// The distinct value lists of one field; id = position + 1.
#[derive(Clone, Debug, Default)]
pub struct Dict {
    keys: Vec<Box<[u8]>>,
    map: Option<HashMap<Box<[u8]>, u32>>,
    persisted: usize,
    persisted_bytes: usize,
}

impl Dict {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the dictionary is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The values of entry `id` (None for id 0 or an unknown id).
    pub fn values(&self, id: u32) -> Option<Vec<&str>> {
        let key = self.keys.get((id as usize).checked_sub(1)?)?;
        decode_list(key)
    }

    /// Every entry with its id.
    pub fn iter(&self) -> impl Iterator<Item = (u32, Vec<&str>)> {
        self.keys
            .iter()
            .enumerate()
            .filter_map(|(i, k)| decode_list(k).map(|v| (i as u32 + 1, v)))
    }

    /// Heap bytes the entries take (keys, their boxes, and the lookup map
    /// when writing), estimated from the lengths.
    fn heap_bytes(&self) -> usize {
        let keys: usize = self.keys.iter().map(|k| k.len()).sum();
        let per = std::mem::size_of::<Box<[u8]>>();
        let mut b = keys + self.keys.capacity() * per;
        if let Some(m) = &self.map {
            // Each entry: a second copy of the key, its box and id, plus a
            // control byte.
            b += keys + m.capacity() * (per + 4 + 1);
        }
        b
    }

    fn intern(&mut self, key: &[u8]) -> u32 {
        if key.len() > MAX_DICT_KEY {
            return 0;
        }
        let map = self.map.get_or_insert_with(HashMap::new);
        if let Some(&id) = map.get(key) {
            return id;
        }
        if self.keys.len() >= MAX_DICT_ENTRIES {
            return 0;
        }
        let boxed: Box<[u8]> = key.into();
        self.keys.push(boxed.clone());
        let id = self.keys.len() as u32;
        map.insert(boxed, id);
        id
    }

    /// Reads `count` entries; with `sealed`, each entry on disk is sealed
    /// with the store's key and bound to its column and id, so entries can
    /// be neither read nor swapped without it.
    fn load(
        bytes: &[u8],
        count: usize,
        with_map: bool,
        sealed: Option<(&Cipher, &str)>,
    ) -> Result<Dict, String> {
        let mut keys: Vec<Box<[u8]>> = Vec::with_capacity(count);
        let mut at = 0;
        while keys.len() < count && at + 4 <= bytes.len() {
            let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
                as usize;
            let Some(key) = bytes.get(at + 4..at + 4 + len) else {
                break;
            };
            match sealed {
                Some((cipher, column)) => {
                    let aad = dict_aad(column, keys.len() as u32 + 1);
                    let plain = cipher
                        .open(key, aad.as_bytes())
                        .map_err(|e| format!("entry {}: {e}", keys.len() + 1))?;
                    keys.push(plain.into_boxed_slice());
                }
                None => keys.push(Box::from(key)),
            }
            at += 4 + len;
        }
        let map = with_map.then(|| {
            keys.iter()
                .enumerate()
                .map(|(i, k)| (k.clone(), i as u32 + 1))
                .collect()
        });
        let persisted = keys.len();
        Ok(Dict {
            keys,
            map,
            persisted,
            persisted_bytes: at,
        })
    }
}

fn hex_id(id: &[u8; 8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Associated data a sealed dictionary entry is bound to: its column and id.
fn dict_aad(column: &str, id: u32) -> String {
    format!("kaudit-index\n{column}\n{id}")
}

/// Appends one value to an encoded value list (`u32 length + bytes` each).
fn push_value(out: &mut Vec<u8>, v: &str) {
    push_value_bytes(out, v.as_bytes());
}

/// The length an encoded row gives a column whose values are unknown (a
/// request body that does not parse): the column gets id 0, so the record is
/// always a candidate and the matcher decides.
const UNKNOWN_LIST: u32 = u32::MAX;

fn push_value_bytes(out: &mut Vec<u8>, v: &[u8]) {
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(v);
}

fn decode_list(mut b: &[u8]) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let v = b.get(4..4 + len)?;
        out.push(std::str::from_utf8(v).ok()?);
        b = &b[4 + len..];
    }
    Some(out)
}

/// 32-bit FNV-1a hash of a value; 0 is kept for "no value".
pub fn value_hash(v: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in v.as_bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.max(1)
}

/// The path of a non-resource request (`/version`, `/healthz`): its
/// `requestURI` up to `?`, for an event without an objectRef resource. None
/// for resource requests and for an empty path.
pub fn nonresource_path(ev: &Event) -> Option<&str> {
    let d = ev.doc();
    if d.object_ref
        .as_ref()
        .is_some_and(|o| !o.resource.is_empty())
    {
        return None;
    }
    d.request_uri.split('?').next().filter(|p| !p.is_empty())
}

/// File stem of dictionary column `slot` (`<stem>.col`, `<stem>.dict`).
fn column_name(slot: usize) -> String {
    if let Some(f) = DICT_FIELDS.get(slot) {
        return f.name();
    }
    match slot
        .checked_sub(EXTRA_SLOT)
        .and_then(|i| EXTRA_COLUMNS.get(i))
    {
        Some((stem, _)) => (*stem).to_string(),
        None => "nonresource_path".to_string(),
    }
}

/// The time an event is ordered and bucketed by: its stage timestamp, else
/// when the request was received, else when kaudit received the record.
pub fn event_time(ev: &Event, received: MicroTime) -> i64 {
    let d = ev.doc();
    d.stage_timestamp
        .or(d.request_received_timestamp)
        .unwrap_or(received)
        .micros()
}

/// stageTimestamp - requestReceivedTimestamp in microseconds, when both are
/// present and the difference fits.
pub fn event_latency(ev: &Event) -> Option<u32> {
    let d = ev.doc();
    let l = d.stage_timestamp?.micros() - d.request_received_timestamp?.micros();
    u32::try_from(l).ok().filter(|&l| l != NO_LATENCY)
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Meta {
    version: u32,
    base: u64,
    rows: u64,
    widths: Vec<u8>,
    dict_counts: Vec<u64>,
    /// Id of the key the dictionaries are sealed with (hex), when the store
    /// is encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<String>,
}

/// The search index of one store.
#[derive(Debug)]
pub struct Index {
    dir: PathBuf,
    mode: IndexMode,
    base: u64,
    rows: usize,
    persisted_rows: usize,
    time: Option<Rows<i64>>,
    lat: Option<Rows<u32>>,
    cols: Vec<Option<Column>>,
    dicts: Vec<Option<Dict>>,
    hashes: Vec<Option<Rows<u32>>>,
    /// One per [`LOOKUPS`] entry, loaded with its key column.
    lookups: Vec<Option<Lookup>>,
    persisted_widths: Vec<u8>,
    meta_widths: Vec<u8>,
    meta_dict_counts: Vec<u64>,
    /// Bumped whenever rows are dropped, so caches derived from the rows
    /// (see [`crate::facets`]) know to start over.
    generation: u64,
    /// Bounds of recent queries, extended as rows are added (see
    /// [`crate::plan::bounds`]).
    pub(crate) bounds_cache: std::sync::Mutex<crate::plan::BoundsCache>,
    time_blocks: std::sync::Mutex<TimeBlocks>,
    /// The store's data key: dictionaries hold user and object names, so
    /// they are sealed whenever the segments are.
    cipher: Option<Cipher>,
    _lock: Option<File>,
}

/// Memory the loaded index holds, by kind (see [`Index::memory`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexMemory {
    /// Column rows in anonymous memory.
    pub anon_bytes: usize,
    /// Column rows mapped from their files.
    pub mapped_bytes: usize,
    /// Dictionaries' keys (and, when writing, their lookup maps), an
    /// estimate from their lengths.
    pub dict_bytes: usize,
}

/// Which parts of the index a request reads (readers load only those).
#[derive(Clone, Debug, Default)]
pub struct Needs {
    /// Dictionary field slots.
    pub dict: Vec<usize>,
    /// Hash field slots.
    pub hash: Vec<usize>,
    /// The latency column.
    pub latency: bool,
}

impl Index {
    /// Opens the index of the store in `data_dir` (creating it in write
    /// mode). Read mode loads only the time column until [`Index::load`]
    /// asks for more; a missing index reads as empty.
    pub fn open(data_dir: &Path, mode: IndexMode) -> IndexResult<Index> {
        Self::open_sealed(data_dir, mode, None)
    }

    /// [`Index::open`] for a store encrypted with `cipher` (see
    /// [`LogReader::cipher`]): dictionaries are read and written sealed.
    /// An index sealed with another key, or built before encryption was
    /// turned on, reads as damaged (and is rebuilt by a writer); a sealed
    /// index opened without a key is refused.
    pub fn open_sealed(
        data_dir: &Path,
        mode: IndexMode,
        cipher: Option<&Cipher>,
    ) -> IndexResult<Index> {
        let dir = data_dir.join(INDEX_DIR);
        let lock = if mode == IndexMode::Write {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            Some(take_lock(&dir)?)
        } else {
            None
        };
        let meta_path = dir.join(META);
        let meta: Meta = match fs::read(&meta_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                IndexError::Corrupt(meta_path.display().to_string(), Damage::Meta(e))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Meta {
                version: VERSION,
                ..Meta::default()
            },
            Err(e) => return Err(io_err(&meta_path)(e)),
        };
        let n = DICT_COLUMNS;
        let bad = |m: &str| IndexError::Corrupt(dir.display().to_string(), m.into());
        if meta.version != VERSION {
            return Err(bad("unknown index version"));
        }
        if meta.rows > 0 && (meta.widths.len() != n || meta.dict_counts.len() != n) {
            return Err(bad("meta.json lists the wrong number of columns"));
        }
        let want = cipher.map(|c| hex_id(&c.id()));
        match (&meta.sealed, &want) {
            (Some(_), None) => return Err(IndexError::KeyNeeded(dir.display().to_string())),
            (Some(have), Some(want)) if have != want => {
                return Err(bad("dictionaries are sealed with another key"))
            }
            (None, Some(_)) if meta.rows > 0 => {
                return Err(bad(
                    "dictionaries are not sealed but the store is encrypted",
                ))
            }
            _ => {}
        }
        let rows = usize::try_from(meta.rows).map_err(|_| bad("row count out of range"))?;
        let mut ix = Index {
            dir,
            mode,
            base: meta.base,
            rows,
            persisted_rows: rows,
            time: None,
            lat: None,
            cols: vec![None; n],
            dicts: vec![None; n],
            hashes: vec![None; HASH_FIELDS.len()],
            lookups: vec![None; LOOKUPS.len()],
            persisted_widths: if meta.widths.len() == n {
                meta.widths.clone()
            } else {
                vec![0; n]
            },
            meta_widths: meta.widths,
            meta_dict_counts: meta.dict_counts,
            generation: 0,
            bounds_cache: Default::default(),
            time_blocks: Default::default(),
            cipher: cipher.cloned(),
            _lock: lock,
        };
        ix.time = Some(ix.load_fixed::<i64>("time.i64")?);
        if mode == IndexMode::Write {
            let all = Needs {
                dict: (0..n).collect(),
                hash: (0..HASH_FIELDS.len()).collect(),
                latency: true,
            };
            ix.load(&all)?;
        }
        Ok(ix)
    }

    /// An empty in-memory index whose first unindexed record is `seq`, for
    /// scanning only the part of the store past a real index.
    pub fn empty_at(seq: u64) -> Index {
        let n = DICT_COLUMNS;
        Index {
            dir: PathBuf::new(),
            mode: IndexMode::Read,
            base: seq,
            rows: 0,
            persisted_rows: 0,
            time: Some(Rows::new()),
            lat: None,
            cols: vec![None; n],
            dicts: vec![None; n],
            hashes: vec![None; HASH_FIELDS.len()],
            lookups: vec![None; LOOKUPS.len()],
            persisted_widths: vec![0; n],
            meta_widths: Vec::new(),
            meta_dict_counts: Vec::new(),
            generation: 0,
            bounds_cache: Default::default(),
            time_blocks: Default::default(),
            cipher: None,
            _lock: None,
        }
    }

    /// Loads the columns `needs` names that are not loaded yet.
    pub fn load(&mut self, needs: &Needs) -> IndexResult<()> {
        let with_map = self.mode == IndexMode::Write;
        for &slot in &needs.dict {
            if self.cols.get(slot).is_none_or(|c| c.is_some()) {
                continue;
            }
            let name = column_name(slot);
            let width = self.meta_widths.get(slot).copied().unwrap_or(1);
            let path = self.dir.join(format!("{name}.col"));
            let file = self.open_prefix(&path, self.rows * usize::from(width))?;
            let col = match file {
                None => Some(Ok(Column::new())),
                Some(f) => Column::map(width, f, self.rows, self.spare_rows()),
            }
            .ok_or_else(|| {
                IndexError::Corrupt(path.display().to_string(), "bad column width".into())
            })?
            .map_err(io_err(&path))?;
            let dpath = self.dir.join(format!("{name}.dict"));
            let count = self.meta_dict_counts.get(slot).copied().unwrap_or(0) as usize;
            let dbytes = match fs::read(&dpath) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && count == 0 => Vec::new(),
                Err(e) => return Err(io_err(&dpath)(e)),
            };
            let sealed = self.cipher.as_ref().map(|c| (c, name.as_str()));
            let dict = Dict::load(&dbytes, count, with_map, sealed)
                .map_err(|m| IndexError::Corrupt(dpath.display().to_string(), m.into()))?;
            if dict.len() < count {
                return Err(IndexError::Corrupt(
                    dpath.display().to_string(),
                    format!("{} entries where meta.json says {count}", dict.len()).into(),
                ));
            }
            self.cols[slot] = Some(col);
            self.dicts[slot] = Some(dict);
        }
        for &slot in &needs.hash {
            if self.hashes.get(slot).is_none_or(|c| c.is_some()) {
                continue;
            }
            let file = format!("h.{}.u32", HASH_FIELDS[slot].name());
            self.hashes[slot] = Some(self.load_fixed::<u32>(&file)?);
        }
        if needs.latency && self.lat.is_none() {
            self.lat = Some(self.load_fixed::<u32>("lat.u32")?);
        }
        for (i, src) in LOOKUPS.iter().enumerate() {
            if self.lookups[i].is_none() && self.key_column(*src).is_some() {
                self.lookups[i] = Some(self.load_lookup(i)?);
            }
        }
        Ok(())
    }

    /// File of lookup `i` ([`LOOKUPS`]).
    fn lookup_path(&self, i: usize) -> PathBuf {
        let stem = match LOOKUPS[i] {
            LookupSource::Hash(s) => format!("h.{}", HASH_FIELDS[s].name()),
            LookupSource::Dict(s) => column_name(s),
        };
        self.dir.join(format!("{stem}.perm"))
    }

    /// Maps lookup `i`'s whole blocks within the committed rows; a missing
    /// or short file maps what it has (the rest is scanned, and a writer
    /// builds it at the next commit). Never fails on the file's content:
    /// blocks are checked on use ([`crate::lookup`]).
    fn load_lookup(&self, i: usize) -> IndexResult<Lookup> {
        let path = self.lookup_path(i);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lookup::default()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let have = f.metadata().map_err(io_err(&path))?.len();
        let in_file = usize::try_from(have / (2 * LOOKUP_BLOCK as u64)).unwrap_or(usize::MAX);
        let blocks = in_file.min(self.persisted_rows / LOOKUP_BLOCK);
        let rows = Rows::map(f, blocks * LOOKUP_BLOCK, self.spare_rows()).map_err(io_err(&path))?;
        Ok(Lookup::from_rows(rows))
    }

    /// The key column of a lookup source, if loaded.
    fn key_column(&self, src: LookupSource) -> Option<KeyColumn<'_>> {
        match src {
            LookupSource::Hash(s) => self.hash_column(s).map(KeyColumn::Hash),
            LookupSource::Dict(s) => self.cols.get(s)?.as_ref().map(KeyColumn::Dict),
        }
    }

    /// Calls `f(row)` for each row, among those lookup `src` covers, whose
    /// key lies in one of `ranges`; returns the rows covered (the caller
    /// scans the rest). None when `src` has no lookup loaded.
    pub fn lookup(
        &self,
        src: LookupSource,
        ranges: &[std::ops::Range<u64>],
        f: impl FnMut(usize),
    ) -> Option<usize> {
        let i = LOOKUPS.iter().position(|l| *l == src)?;
        let lk = self.lookups.get(i)?.as_ref()?;
        let col = self.key_column(src)?;
        // Never past the rows the key column holds.
        if lk.covered() > col_len(col) {
            return None;
        }
        Some(lk.find(&|r| col.get(r), ranges, f))
    }

    /// Whether a loaded lookup lacks blocks the committed rows complete, or
    /// has a damaged block: a writer's [`Index::commit`] builds them.
    pub fn lookups_behind(&self) -> bool {
        self.lookups
            .iter()
            .flatten()
            .any(|lk| lk.damaged() || lk.covered() + LOOKUP_BLOCK <= self.persisted_rows)
    }

    /// Builds the lookup blocks the committed rows complete but the files
    /// lack (an index committed by a version without lookups, a cut or
    /// damaged file), without committing rows: what a writer does on open.
    pub fn build_lookups(&mut self) -> IndexResult<()> {
        if self.mode != IndexMode::Write {
            return Err(IndexError::Input("index opened read-only".into()));
        }
        self.persist_lookups()
    }

    /// Appends the lookup blocks the committed rows complete (rebuilding a
    /// lookup with a damaged block into a new file renamed over the old).
    fn persist_lookups(&mut self) -> IndexResult<()> {
        for i in 0..LOOKUPS.len() {
            let Some(mut lk) = self.lookups[i].take() else {
                continue;
            };
            let r = self.extend_lookup(i, &mut lk);
            self.lookups[i] = Some(lk);
            r?;
        }
        Ok(())
    }

    fn extend_lookup(&self, i: usize, lk: &mut Lookup) -> IndexResult<()> {
        let Some(col) = self.key_column(LOOKUPS[i]) else {
            return Ok(());
        };
        let rows = self.persisted_rows.min(col_len(col));
        let fresh = lk.damaged() || lk.covered() > rows;
        if fresh {
            *lk = Lookup::default();
        }
        let old = lk.perm.len();
        while lk.covered() + LOOKUP_BLOCK <= rows {
            lk.push_block(&|r| col.get(r));
        }
        if lk.perm.len() == old && !fresh {
            return Ok(());
        }
        let path = self.lookup_path(i);
        let mut buf = Vec::with_capacity((lk.perm.len() - old) * 2);
        lk.perm[old..]
            .iter()
            .for_each(|o| buf.extend_from_slice(&o.to_le_bytes()));
        let len = lk.perm.len();
        if old > 0 {
            match append_at(&path, &buf, old * 2) {
                Ok(f) => {
                    lk.perm.remap(f, len, false);
                    return Ok(());
                }
                // Cut under us (it is derived): written anew below.
                Err(IndexError::Corrupt(..)) => {}
                Err(e) => return Err(e),
            }
            buf.clear();
            lk.perm
                .iter()
                .for_each(|o| buf.extend_from_slice(&o.to_le_bytes()));
        }
        replace(&path, &buf)?;
        let f = File::open(&path).map_err(io_err(&path))?;
        lk.perm.remap(f, len, true);
        Ok(())
    }

    /// Whether everything `needs` names is loaded.
    pub fn has(&self, needs: &Needs) -> bool {
        needs
            .dict
            .iter()
            .all(|&s| self.cols.get(s).is_none_or(Option::is_some))
            && needs
                .hash
                .iter()
                .all(|&s| self.hashes.get(s).is_none_or(Option::is_some))
            && (!needs.latency || self.lat.is_some())
    }

    /// Rows a column loaded for writing has room for before it re-reserves
    /// (address space only).
    fn spare_rows(&self) -> usize {
        if self.mode == IndexMode::Write {
            self.rows.max(1 << 20)
        } else {
            0
        }
    }

    /// The file at `path`, checked to hold at least the `len` committed
    /// bytes (only those are ever mapped, so a short file is an error here
    /// and never a `SIGBUS` later); None when nothing is committed.
    fn open_prefix(&self, path: &Path, len: usize) -> IndexResult<Option<File>> {
        if len == 0 {
            return Ok(None);
        }
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IndexError::Corrupt(
                    path.display().to_string(),
                    "file missing".into(),
                ))
            }
            Err(e) => return Err(io_err(path)(e)),
        };
        let have = f.metadata().map_err(io_err(path))?.len();
        if have < len as u64 {
            return Err(IndexError::Corrupt(
                path.display().to_string(),
                format!("{have} bytes where {len} are committed").into(),
            ));
        }
        Ok(Some(f))
    }

    fn load_fixed<T: Plain>(&self, file: &str) -> IndexResult<Rows<T>> {
        let path = self.dir.join(file);
        match self.open_prefix(&path, self.rows * std::mem::size_of::<T>())? {
            None => Ok(Rows::new()),
            Some(f) => Rows::map(f, self.rows, self.spare_rows()).map_err(io_err(&path)),
        }
    }

    /// Where the loaded rows live: bytes in anonymous memory (rows not
    /// committed yet, the part of each column's last page past its whole
    /// pages, and dictionaries) and bytes mapped from the column files
    /// (page cache, which the kernel can evict). What `kaudit serve`'s
    /// resident memory is made of, and what the tests check stays mapped.
    pub fn memory(&self) -> IndexMemory {
        let mut m = IndexMemory::default();
        let mut add = |(anon, mapped): (usize, usize)| {
            m.anon_bytes += anon;
            m.mapped_bytes += mapped;
        };
        for c in self.cols.iter().flatten() {
            add(c.memory());
        }
        for h in self.hashes.iter().flatten() {
            add((h.anon_bytes(), h.mapped_bytes()));
        }
        for lk in self.lookups.iter().flatten() {
            add(lk.memory());
        }
        if let Some(t) = &self.time {
            add((t.anon_bytes(), t.mapped_bytes()));
        }
        if let Some(l) = &self.lat {
            add((l.anon_bytes(), l.mapped_bytes()));
        }
        for d in self.dicts.iter().flatten() {
            m.dict_bytes += d.heap_bytes();
        }
        m
    }

    /// Sequence number of row 0.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The oldest and newest event time of each block of [`TIME_BLOCK`]
    /// rows, computed on first use and extended as rows are added: lets a
    /// newest-first search skip blocks that cannot hold a better row.
    pub fn time_blocks(&self) -> Vec<(i64, i64)> {
        let times = self.times();
        let Ok(mut c) = self.time_blocks.lock() else {
            return Vec::new();
        };
        if c.0 != self.generation || c.1 != self.base || c.2 > times.len() {
            *c = (self.generation, self.base, 0, Vec::new());
        }
        // Redo the last, partial block, then the new ones.
        let from = (c.2 / TIME_BLOCK) * TIME_BLOCK;
        c.3.truncate(from / TIME_BLOCK);
        for block in times.get(from..).unwrap_or(&[]).chunks(TIME_BLOCK) {
            let span = block
                .iter()
                .fold((i64::MAX, i64::MIN), |(a, z), &t| (a.min(t), z.max(t)));
            c.3.push(span);
        }
        c.2 = times.len();
        c.3.clone()
    }

    /// Changes whenever rows are dropped (reset, truncation): a cache over
    /// rows `0..n` stays valid while this and [`Index::base`] are unchanged.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Rows indexed (committed or pending).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// First sequence number not indexed yet.
    pub fn next_seq(&self) -> u64 {
        self.base + self.rows as u64
    }

    /// Event time of each row (microseconds).
    pub fn times(&self) -> &[i64] {
        self.time.as_deref().unwrap_or(&[])
    }

    /// Latency of each row, if loaded ([`NO_LATENCY`] when unknown).
    pub fn latencies(&self) -> Option<&[u32]> {
        self.lat.as_deref()
    }

    /// The column and dictionary of a dictionary column slot (a
    /// [`DICT_FIELDS`] position or [`NONRESOURCE_PATH_SLOT`]), if loaded.
    pub fn column(&self, slot: usize) -> Option<(&Column, &Dict)> {
        Some((
            self.cols.get(slot)?.as_ref()?,
            self.dicts.get(slot)?.as_ref()?,
        ))
    }

    /// The hash column of a hash field slot, if loaded.
    pub fn hash_column(&self, slot: usize) -> Option<&[u32]> {
        self.hashes.get(slot)?.as_deref()
    }

    /// The dictionary slot of a field, if it has one: a [`DICT_FIELDS`]
    /// position, or an [`EXTRA_COLUMNS`] slot.
    pub fn dict_slot(field: &Field) -> Option<usize> {
        DICT_FIELDS.iter().position(|f| f == field).or_else(|| {
            extra_fields()
                .iter()
                .position(|f| f.as_ref() == Some(field))
                .map(|i| EXTRA_SLOT + i)
        })
    }

    /// The hash slot of a field, if it has one.
    pub fn hash_slot(field: &Field) -> Option<usize> {
        HASH_FIELDS.iter().position(|f| f == field)
    }

    /// Indexes the store's records from [`Index::next_seq`] on, at most
    /// `max` of them; returns how many rows were added. An index ahead of the
    /// store (a different or rolled-back store) is emptied and rebuilt.
    /// Records still in `feed` are taken parsed from it instead of being
    /// read back and parsed again.
    pub fn catch_up(
        &mut self,
        store: &dyn LogReader,
        feed: Option<&LiveFeed>,
        max: u64,
    ) -> IndexResult<u64> {
        if self.mode != IndexMode::Write {
            return Err(IndexError::Input("index opened read-only".into()));
        }
        let size = store.size();
        if self.next_seq() > size {
            self.reset()?;
        }
        if self.rows == 0 {
            self.base = store.first_seq().min(size);
        }
        let start = self.next_seq();
        let end = size.min(start.saturating_add(max));
        let mut expect = start;
        let mut scratch = Vec::new();
        let mut push = |seq: u64, rec: FollowedRecord<'_>| {
            while expect < seq {
                self.push_placeholder();
                expect += 1;
            }
            self.push_record(rec, &mut scratch);
            expect += 1;
            true
        };
        kaudit_store::feed::follow(feed, store, start..end, &mut push)?;
        while expect < end {
            self.push_placeholder();
            expect += 1;
        }
        Ok(end - start)
    }

    /// Encodes the row `event` makes (what [`Index::push_row`] interns):
    /// each dictionary column's value list (`u32` length + bytes), each
    /// hash, the time and the latency. Needs no index, so an import runs it
    /// on its parsing threads; [`Index::catch_up`] goes through it too, so
    /// both build the same rows.
    pub fn encode_row(event: &Event, cluster: &str, received: MicroTime, out: &mut Vec<u8>) {
        let mut json = LazyJson::default();
        let mut list = Vec::new();
        let mut body: Option<RequestBody> = None;
        for slot in 0..DICT_COLUMNS {
            list.clear();
            let mut known = true;
            match DICT_FIELDS.get(slot) {
                Some(field) => {
                    field.values(event, cluster, &mut json, &mut |v| push_value(&mut list, v))
                }
                None if slot == NONRESOURCE_PATH_SLOT => {
                    if let Some(p) = nonresource_path(event) {
                        push_value(&mut list, p)
                    }
                }
                None => match extra_fields().get(slot - EXTRA_SLOT) {
                    // A request-body path: walked in the body parsed once
                    // per event, never in the whole event.
                    Some(Some(Field::Path(p))) => {
                        match body.get_or_insert_with(|| RequestBody::of(event)) {
                            RequestBody::Absent => {}
                            RequestBody::Parsed(root) => {
                                p.values_in(root, &mut |v| push_value(&mut list, v))
                            }
                            RequestBody::Unknown => known = false,
                        }
                    }
                    Some(Some(field)) => {
                        field.values(event, cluster, &mut json, &mut |v| push_value(&mut list, v))
                    }
                    _ => known = false,
                },
            }
            if known {
                push_value_bytes(out, &list);
            } else {
                out.extend_from_slice(&UNKNOWN_LIST.to_le_bytes());
            }
        }
        for field in HASH_FIELDS.iter() {
            let mut h = 0u32;
            field.values(event, cluster, &mut json, &mut |v| {
                if h == 0 {
                    h = value_hash(v)
                }
            });
            out.extend_from_slice(&h.to_le_bytes());
        }
        out.extend_from_slice(&event_time(event, received).to_le_bytes());
        out.extend_from_slice(&event_latency(event).unwrap_or(NO_LATENCY).to_le_bytes());
    }

    /// Adds the row [`Index::encode_row`] made for the record at `seq`;
    /// returns false, adding nothing, unless `seq` is [`Index::next_seq`]
    /// (rows never skip or repeat a record) and `row` is a whole row.
    pub fn push_row(&mut self, seq: u64, row: &[u8]) -> bool {
        if self.mode != IndexMode::Write || seq != self.next_seq() {
            return false;
        }
        self.push_encoded(row)
    }

    fn push_encoded(&mut self, row: &[u8]) -> bool {
        // Decoded whole before anything is pushed: a short row adds nothing.
        let mut lists: [Option<&[u8]>; DICT_COLUMNS] = [None; DICT_COLUMNS];
        let mut rest = row;
        for list in lists.iter_mut() {
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                return false;
            };
            let len = u32::from_le_bytes(*len);
            if len == UNKNOWN_LIST {
                rest = tail;
                continue;
            }
            let len = len as usize;
            let Some((l, tail)) = (len <= tail.len()).then(|| tail.split_at(len)) else {
                return false;
            };
            *list = Some(l);
            rest = tail;
        }
        let mut hashes = [0u32; HASH_FIELDS.len()];
        for h in hashes.iter_mut() {
            let Some((b, tail)) = rest.split_first_chunk::<4>() else {
                return false;
            };
            *h = u32::from_le_bytes(*b);
            rest = tail;
        }
        let Some((time, rest)) = rest.split_first_chunk::<8>() else {
            return false;
        };
        let Some((lat, rest)) = rest.split_first_chunk::<4>() else {
            return false;
        };
        if !rest.is_empty() {
            return false;
        }
        for (slot, list) in lists.iter().enumerate() {
            let id = match (&mut self.dicts[slot], list) {
                (Some(d), Some(list)) => d.intern(list),
                _ => 0,
            };
            if let Some(c) = &mut self.cols[slot] {
                c.push(id);
            }
        }
        for (slot, h) in hashes.iter().enumerate() {
            if let Some(c) = &mut self.hashes[slot] {
                c.push(*h);
            }
        }
        if let Some(t) = &mut self.time {
            t.push(i64::from_le_bytes(*time));
        }
        if let Some(l) = &mut self.lat {
            l.push(u32::from_le_bytes(*lat));
        }
        self.rows += 1;
        true
    }

    fn push_placeholder(&mut self) {
        for c in self.cols.iter_mut().flatten() {
            c.push(0);
        }
        for h in self.hashes.iter_mut().flatten() {
            h.push(0);
        }
        if let Some(t) = &mut self.time {
            t.push(i64::MIN);
        }
        if let Some(l) = &mut self.lat {
            l.push(NO_LATENCY);
        }
        self.rows += 1;
    }

    fn push_record(&mut self, rec: FollowedRecord<'_>, scratch: &mut Vec<u8>) {
        let Some(ev) = rec.event else {
            // Not parseable: every column says "unknown", so the record is
            // always a candidate and the confirming matcher decides.
            self.push_placeholder();
            if let Some(t) = &mut self.time {
                if let Some(last) = t.last_mut() {
                    *last = rec.received.micros();
                }
            }
            return;
        };
        scratch.clear();
        Self::encode_row(ev, rec.cluster, rec.received, scratch);
        if !self.push_encoded(scratch) {
            // Never expected (the row was just encoded); a placeholder keeps
            // the rows aligned with the records and is always confirmed.
            self.push_placeholder();
        }
    }

    /// Drops every row (memory and disk), keeping the lock.
    pub fn reset(&mut self) -> IndexResult<()> {
        if self.mode != IndexMode::Write {
            return Err(IndexError::Input("index opened read-only".into()));
        }
        let n = DICT_COLUMNS;
        self.generation += 1;
        self.rows = 0;
        self.persisted_rows = 0;
        self.base = 0;
        self.time = Some(Rows::new());
        self.lat = Some(Rows::new());
        self.cols = (0..n).map(|_| Some(Column::new())).collect();
        self.dicts = (0..n)
            .map(|_| {
                Some(Dict {
                    map: Some(HashMap::new()),
                    ..Dict::default()
                })
            })
            .collect();
        self.hashes = (0..HASH_FIELDS.len()).map(|_| Some(Rows::new())).collect();
        self.lookups = (0..LOOKUPS.len())
            .map(|_| Some(Lookup::default()))
            .collect();
        self.persisted_widths = vec![0; n];
        let meta = self.dir.join(META);
        match fs::remove_file(&meta) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&meta)(e)),
        }
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let path = entry.map_err(io_err(&self.dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name != "LOCK" && path.is_file() {
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
        }
        Ok(())
    }

    /// Makes the pending rows durable: appends them to the column files,
    /// fsyncs, then replaces `meta.json`.
    pub fn commit(&mut self) -> IndexResult<()> {
        if self.mode != IndexMode::Write {
            return Err(IndexError::Input("index opened read-only".into()));
        }
        let from = self.persisted_rows;
        let mut buf = Vec::new();
        let mut widths = Vec::new();
        let mut counts = Vec::new();
        for slot in 0..DICT_COLUMNS {
            let name = column_name(slot);
            let (Some(col), Some(dict)) = (&mut self.cols[slot], &mut self.dicts[slot]) else {
                return Err(IndexError::Input("index columns not loaded".into()));
            };
            buf.clear();
            for (i, k) in dict.keys.iter().enumerate().skip(dict.persisted) {
                let sealed;
                let stored: &[u8] = match &self.cipher {
                    Some(c) => {
                        let aad = dict_aad(&name, i as u32 + 1);
                        sealed = c
                            .seal(k, aad.as_bytes())
                            .map_err(|e| IndexError::Input(format!("sealing {name}.dict: {e}")))?;
                        &sealed
                    }
                    None => k,
                };
                buf.extend_from_slice(&(stored.len() as u32).to_le_bytes());
                buf.extend_from_slice(stored);
            }
            append_at(
                &self.dir.join(format!("{name}.dict")),
                &buf,
                dict.persisted_bytes,
            )?;
            dict.persisted = dict.keys.len();
            dict.persisted_bytes += buf.len();
            counts.push(dict.keys.len() as u64);
            buf.clear();
            let path = self.dir.join(format!("{name}.col"));
            // A fresh index (rebuilt after damage: `from` is 0 while old
            // files may remain) writes new files and renames them, never
            // rewriting bytes a reader in another process has mapped.
            if col.width() != self.persisted_widths[slot] || from == 0 {
                col.bytes(0, &mut buf);
                replace(&path, &buf)?;
                self.persisted_widths[slot] = col.width();
                let f = File::open(&path).map_err(io_err(&path))?;
                col.remap(f, self.rows, true);
            } else {
                col.bytes(from, &mut buf);
                let f = append_at(&path, &buf, from * usize::from(col.width()))?;
                col.remap(f, self.rows, false);
            }
            widths.push(col.width());
        }
        let rows = self.rows;
        for (slot, field) in HASH_FIELDS.iter().enumerate() {
            let path = self.dir.join(format!("h.{}.u32", field.name()));
            if let Some(h) = &mut self.hashes[slot] {
                persist_fixed(h, &path, from, rows, &mut buf)?;
            }
        }
        if let Some(t) = &mut self.time {
            persist_fixed(t, &self.dir.join("time.i64"), from, rows, &mut buf)?;
        }
        if let Some(l) = &mut self.lat {
            persist_fixed(l, &self.dir.join("lat.u32"), from, rows, &mut buf)?;
        }
        let meta = Meta {
            version: VERSION,
            base: self.base,
            rows: self.rows as u64,
            widths: widths.clone(),
            dict_counts: counts.clone(),
            sealed: self.cipher.as_ref().map(|c| hex_id(&c.id())),
        };
        let bytes = serde_json::to_vec(&meta).map_err(IndexError::EncodeMeta)?;
        replace(&self.dir.join(META), &bytes)?;
        self.meta_widths = widths;
        self.meta_dict_counts = counts;
        self.persisted_rows = self.rows;
        // Derived from the committed rows, after them: a crash before this
        // leaves fewer blocks, built by the next commit.
        self.persist_lookups()
    }

    /// Bytes the committed index occupies on disk.
    pub fn disk_bytes(&self) -> IndexResult<u64> {
        let mut total = 0;
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            total += entry.metadata().map_err(io_err(&self.dir))?.len();
        }
        Ok(total)
    }

    /// Keeps only the first `rows` rows in memory (used by tests to model a
    /// lagging index).
    pub fn truncate_rows(&mut self, rows: usize) {
        if rows >= self.rows {
            return;
        }
        self.generation += 1;
        for c in self.cols.iter_mut().flatten() {
            c.truncate(rows);
        }
        for h in self.hashes.iter_mut().flatten() {
            h.truncate(rows);
        }
        for lk in self.lookups.iter_mut().flatten() {
            lk.truncate_rows(rows);
        }
        if let Some(t) = &mut self.time {
            t.truncate(rows);
        }
        if let Some(l) = &mut self.lat {
            l.truncate(rows);
        }
        self.rows = rows;
        self.persisted_rows = self.persisted_rows.min(rows);
    }
}

fn col_len(c: KeyColumn<'_>) -> usize {
    match c {
        KeyColumn::Hash(h) => h.len(),
        KeyColumn::Dict(c) => c.len(),
    }
}

fn take_lock(dir: &Path) -> IndexResult<File> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    // SAFETY: flock on a descriptor we own; no memory is shared.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(IndexError::Locked(dir.display().to_string()));
    }
    Ok(f)
}

/// Appends the rows of a fixed-width column from row `from` to its file
/// and maps them (see [`Rows::remap`]).
fn persist_fixed<T: Plain + LeBytes>(
    rows: &mut Rows<T>,
    path: &Path,
    from: usize,
    count: usize,
    buf: &mut Vec<u8>,
) -> IndexResult<()> {
    buf.clear();
    rows[from.min(rows.len())..]
        .iter()
        .for_each(|x| x.put_le(buf));
    if from == 0 {
        // A fresh index: a new file renamed over any old one (see commit).
        replace(path, buf)?;
        let f = File::open(path).map_err(io_err(path))?;
        rows.remap(f, count, true);
    } else {
        let f = append_at(path, buf, from * std::mem::size_of::<T>())?;
        rows.remap(f, count, false);
    }
    Ok(())
}

/// Little-endian encoding of a fixed-width column's values.
trait LeBytes {
    fn put_le(&self, out: &mut Vec<u8>);
}
impl LeBytes for i64 {
    fn put_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}
impl LeBytes for u32 {
    fn put_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}

/// Writes `bytes` at `offset` and syncs; returns the file (to map what was
/// written). Bytes already past `offset` (uncommitted rows a crash left
/// behind) are overwritten, never cut off first: a file is never shortened
/// in place, because another reader may have mapped it and reading a page
/// past a file's end raises `SIGBUS`. Such stale bytes past the committed
/// rows are ignored on open.
fn append_at(path: &Path, bytes: &[u8], offset: usize) -> IndexResult<File> {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    if len < offset as u64 {
        // Shorter than the rows committed to it: damaged under us. Refused
        // (the index is derived; it is rebuilt on the next open).
        return Err(IndexError::Corrupt(
            path.display().to_string(),
            format!("{len} bytes where {offset} are committed").into(),
        ));
    }
    f.write_all_at(bytes, offset as u64).map_err(io_err(path))?;
    f.sync_data().map_err(io_err(path))?;
    Ok(f)
}

fn replace(path: &Path, bytes: &[u8]) -> IndexResult<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_data().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))
}
