//! Trained zstd dictionaries: one per store (a store may hold several
//! versions), so that small frames (a search hit decompresses one) compress
//! nearly as well as whole bundles.
//!
//! Audit events repeat the same keys, user names, verbs and resource paths;
//! a 64 KiB zstd frame has to learn them again from scratch, a dictionary
//! trained once on the store's first records carries them into every frame.
//!
//! A dictionary lives in `<data>/dict/<id hex>.kdict`, where its id is the
//! first 16 bytes of SHA-256 over the dictionary bytes: content-addressed,
//! so a bundle that names an id (its `KBF2` frame table, see
//! [`crate::segment`]) names exactly one dictionary, a replaced file is
//! detected when loaded (its bytes no longer hash to its id), and two stores
//! that happen to hold the same dictionary may share a decoder.
//!
//! File layout (integers little-endian), 48-byte header then body:
//! `KDIC`, flags u32 (bit 0: body sealed with the store key), id (16 bytes),
//! key id (8 bytes, zero when plain), trained-at sequence number u64 (orders
//! versions: the writer uses the newest), body length u32, crc32c u32 over the
//! header's first 44 bytes and the body. The body is the dictionary, or when
//! the store is encrypted its ChaCha20-Poly1305 seal with `kaudit dictionary`
//! and the id as associated data (so the plaintext dictionary, which holds
//! fragments of events, never reaches the disk).
//!
//! Dictionaries are never deleted by retention: each is at most
//! [`MAX_DICT_BYTES`], a store trains one (a retrain adds a version), and any
//! bundle left after a prune may name any of them.

use crate::crypt::{Cipher, CryptError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Content address of a dictionary.
pub type DictId = [u8; 16];

/// Dictionary file header size.
pub const DICT_HEADER: usize = 48;
/// Largest dictionary trained or loaded: zstd's gain flattens above ~100 KiB
/// for audit events, and every decoding thread keeps a copy per dictionary.
pub const MAX_DICT_BYTES: usize = 112 << 10;
/// Largest dictionary file (dictionary plus an AEAD nonce and tag).
pub const MAX_DICT_FILE: usize = DICT_HEADER + MAX_DICT_BYTES + 64;
/// Raw record bytes sampled before training: zstd wants about 100 times the
/// dictionary size in samples; 8 MiB (~70x) trains in well under a second
/// off the append path.
pub const SAMPLE_BYTES: usize = 8 << 20;
/// Most samples (records) given to the trainer.
pub const MAX_SAMPLES: usize = 1 << 16;
/// Most dictionary files a store loads (bounds open time and memory).
pub const MAX_DICTS: usize = 64;
const MAGIC: &[u8; 4] = b"KDIC";
const AAD: &[u8] = b"kaudit dictionary\n";

/// The id of dictionary bytes.
pub fn dict_id(dict: &[u8]) -> DictId {
    let d = Sha256::digest([b"kaudit-zstd-dict\n".as_slice(), dict].concat());
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

/// File name of dictionary `id`.
pub fn file_name(id: &DictId) -> String {
    format!("{}.kdict", hex::encode(id))
}

/// Parses a dictionary file name back to its id.
pub fn parse_file_name(name: &str) -> Option<DictId> {
    let stem = name.strip_suffix(".kdict")?;
    if stem.len() != 32 {
        return None;
    }
    hex::decode(stem).ok()?.try_into().ok()
}

/// Why a dictionary file was refused.
#[derive(Debug, thiserror::Error)]
pub enum DictError {
    /// Fewer bytes than the header or than it declares: a torn write.
    #[error("dictionary file is cut short (a torn write)")]
    Short,
    /// Not a dictionary file.
    #[error("not a kaudit dictionary file (bad magic)")]
    Magic,
    /// The declared body is larger than any dictionary the store writes.
    #[error("dictionary body of {0} bytes is larger than the {MAX_DICT_FILE}-byte bound")]
    TooLarge(u32),
    /// Bytes after the body.
    #[error("{0} bytes after the dictionary body")]
    Trailing(usize),
    /// Header or body altered or damaged.
    #[error("dictionary file checksum mismatch")]
    Checksum,
    /// Sealed body that will not open, or no key.
    #[error(transparent)]
    Crypt(#[from] CryptError),
    /// The bytes do not hash to the id the file claims: a replaced dictionary.
    #[error(
        "dictionary bytes hash to {got}, the file claims id {want}: the dictionary was replaced"
    )]
    IdMismatch {
        /// Id in the header (or file name).
        want: String,
        /// Hash of the bytes found.
        got: String,
    },
}

/// A decoded dictionary file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DictFile {
    /// Content address.
    pub id: DictId,
    /// Sequence number the writer had reached when it trained it.
    pub trained_at: u64,
    /// Key id of the sealed body, when sealed.
    pub key_id: Option<[u8; 8]>,
    /// The zstd dictionary.
    pub dict: Vec<u8>,
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Serialises a dictionary file, sealing the body when `cipher` is given.
pub fn encode_file(
    dict: &[u8],
    trained_at: u64,
    cipher: Option<&Cipher>,
) -> Result<Vec<u8>, CryptError> {
    let id = dict_id(dict);
    let (body, flags, key_id) = match cipher {
        Some(c) => (c.seal(dict, &[AAD, &id].concat())?, 1u32, c.id()),
        None => (dict.to_vec(), 0, [0u8; 8]),
    };
    let mut out = Vec::with_capacity(DICT_HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&id);
    out.extend_from_slice(&key_id);
    out.extend_from_slice(&trained_at.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &body);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Parses and checks a dictionary file: bounds, checksum, seal (a sealed
/// body needs `cipher`), and that the bytes hash to the id.
pub fn decode_file(b: &[u8], cipher: Option<&Cipher>) -> Result<DictFile, DictError> {
    if b.len() < DICT_HEADER {
        return Err(DictError::Short);
    }
    if &b[..4] != MAGIC {
        return Err(DictError::Magic);
    }
    let flags = le32(&b[4..8]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&b[8..24]);
    let mut key_id = [0u8; 8];
    key_id.copy_from_slice(&b[24..32]);
    let mut t = [0u8; 8];
    t.copy_from_slice(&b[32..40]);
    let trained_at = u64::from_le_bytes(t);
    let body_len = le32(&b[40..44]);
    if body_len as usize > MAX_DICT_FILE - DICT_HEADER {
        return Err(DictError::TooLarge(body_len));
    }
    let end = DICT_HEADER + body_len as usize;
    if b.len() < end {
        return Err(DictError::Short);
    }
    if b.len() > end {
        return Err(DictError::Trailing(b.len() - end));
    }
    let body = &b[DICT_HEADER..end];
    if crc32c::crc32c_append(crc32c::crc32c(&b[..44]), body) != le32(&b[44..48]) {
        return Err(DictError::Checksum);
    }
    let sealed = flags & 1 == 1;
    let dict = if sealed {
        let c = cipher.ok_or(CryptError::KeyNeeded)?;
        c.check_id(&key_id)?;
        c.open(body, &[AAD, &id].concat())?
    } else {
        body.to_vec()
    };
    let got = dict_id(&dict);
    if got != id {
        return Err(DictError::IdMismatch {
            want: hex::encode(id),
            got: hex::encode(got),
        });
    }
    Ok(DictFile {
        id,
        trained_at,
        key_id: sealed.then_some(key_id),
        dict,
    })
}

/// Trains a dictionary from length-prefixed records (a bundle's raw bytes),
/// each record one sample, of a tenth of the samples' size (zstd's trainer
/// wants many times the dictionary in samples) between 4 KiB and
/// [`MAX_DICT_BYTES`].
pub fn train(records: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut sizes = Vec::new();
    let mut at = 0usize;
    let mut data = Vec::with_capacity(records.len().min(SAMPLE_BYTES));
    while let Some(len) = records.get(at..at + 4) {
        let len = le32(len) as usize;
        let Some(rec) = records.get(at + 4..at + 4 + len) else {
            break;
        };
        at += 4 + len;
        if sizes.len() >= MAX_SAMPLES || data.len() + rec.len() > SAMPLE_BYTES {
            break;
        }
        data.extend_from_slice(rec);
        sizes.push(rec.len());
    }
    let size = (data.len() / 10).clamp(4 << 10, MAX_DICT_BYTES);
    zstd::dict::from_continuous(&data, &sizes, size)
}

/// Writes a dictionary file under `<data>/dict`, durably: temp file, fsync,
/// rename, directory fsync. Only after this returns may a bundle name it, so
/// a crash leaves either no file (and no bundle naming it) or a whole one.
pub fn write_file(
    data_dir: &Path,
    dict: &[u8],
    trained_at: u64,
    cipher: Option<&Cipher>,
) -> crate::StoreResult<(DictId, PathBuf)> {
    let dir = crate::store::paths::dicts(data_dir);
    crate::store::private_dir(&dir)?;
    let bytes = encode_file(dict, trained_at, cipher)?;
    let id = dict_id(dict);
    let path = dir.join(file_name(&id));
    crate::store::write_atomic(&path, &bytes, 0o600)?;
    Ok((id, path))
}

/// One loaded dictionary.
#[derive(Debug)]
struct Loaded {
    bytes: Arc<[u8]>,
    trained_at: u64,
}

/// The dictionaries of one store, loaded and checked, and the files that
/// would not load (reported by verify; a bundle naming one fails to read
/// with the file's problem).
#[derive(Clone, Debug, Default)]
pub struct Dicts {
    ok: HashMap<DictId, Arc<Loaded>>,
    bad: Vec<(PathBuf, String)>,
}

/// Why a bundle's dictionary is not available.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MissingDict(pub String);

impl Dicts {
    /// No dictionaries (bundles written without one read as before).
    pub fn none() -> Self {
        Dicts::default()
    }

    /// Loads every `*.kdict` file under `<data_dir>/dict` (a missing folder
    /// is a store that never trained one). A file that fails its checks is
    /// kept in [`Dicts::problems`], never silently used; leftover `.tmp`
    /// files of an interrupted write are ignored.
    pub fn load(data_dir: &Path, cipher: Option<&Cipher>) -> crate::StoreResult<Dicts> {
        let dir = crate::store::paths::dicts(data_dir);
        let mut out = Dicts::default();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(crate::store::io_err(dir.display())(e)),
        };
        let mut names: Vec<(PathBuf, String)> = Vec::new();
        for e in rd {
            let e = e.map_err(crate::store::io_err(dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".kdict") {
                names.push((e.path(), name));
            }
        }
        names.sort();
        for (path, name) in names {
            if out.ok.len() >= MAX_DICTS {
                out.bad.push((
                    path,
                    format!("more than {MAX_DICTS} dictionaries: not loaded"),
                ));
                continue;
            }
            match load_one(&path, &name, cipher) {
                Ok(f) => {
                    out.ok.insert(
                        f.id,
                        Arc::new(Loaded {
                            bytes: f.dict.into(),
                            trained_at: f.trained_at,
                        }),
                    );
                }
                Err(e) => out.bad.push((path, e)),
            }
        }
        Ok(out)
    }

    /// Adds a dictionary the writer just made durable.
    pub fn insert(&mut self, id: DictId, bytes: Arc<[u8]>, trained_at: u64) {
        self.ok.insert(id, Arc::new(Loaded { bytes, trained_at }));
    }

    /// The dictionary `id`, or why it is not available.
    pub fn get(&self, id: &DictId) -> Result<&Arc<[u8]>, MissingDict> {
        if let Some(d) = self.ok.get(id) {
            return Ok(&d.bytes);
        }
        let name = file_name(id);
        if let Some((p, why)) = self.bad.iter().find(|(p, _)| p.ends_with(&name)) {
            return Err(MissingDict(format!("dictionary {}: {why}", p.display())));
        }
        Err(MissingDict(format!(
            "dictionary dict/{name} is missing (the bundle was compressed with it)"
        )))
    }

    /// The newest dictionary (highest trained-at, then id), which a writer
    /// reopening the store keeps using.
    pub fn newest(&self) -> Option<(DictId, Arc<[u8]>)> {
        self.ok
            .iter()
            .max_by_key(|(id, d)| (d.trained_at, **id))
            .map(|(id, d)| (*id, d.bytes.clone()))
    }

    /// Ids of the loaded dictionaries.
    pub fn ids(&self) -> Vec<DictId> {
        let mut v: Vec<DictId> = self.ok.keys().copied().collect();
        v.sort();
        v
    }

    /// Files that would not load: (path, why).
    pub fn problems(&self) -> &[(PathBuf, String)] {
        &self.bad
    }
}

fn load_one(path: &Path, name: &str, cipher: Option<&Cipher>) -> Result<DictFile, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_DICT_FILE as u64 {
        return Err(format!(
            "{} bytes, larger than any dictionary file ({MAX_DICT_FILE})",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let f = decode_file(&bytes, cipher).map_err(|e| e.to_string())?;
    if parse_file_name(name) != Some(f.id) {
        return Err(format!(
            "holds dictionary {} under another name: the file was renamed or replaced",
            hex::encode(f.id)
        ));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_plain_and_sealed() {
        let dict = b"some dictionary bytes".to_vec();
        let f = decode_file(&encode_file(&dict, 7, None).unwrap(), None).unwrap();
        assert_eq!((f.dict, f.trained_at, f.key_id), (dict.clone(), 7, None));
        let c = Cipher::new(&[3u8; 32]);
        let sealed = encode_file(&dict, 9, Some(&c)).unwrap();
        assert!(!sealed.windows(dict.len()).any(|w| w == dict));
        assert!(matches!(
            decode_file(&sealed, None),
            Err(DictError::Crypt(CryptError::KeyNeeded))
        ));
        let f = decode_file(&sealed, Some(&c)).unwrap();
        assert_eq!((f.dict, f.key_id), (dict, Some(c.id())));
    }

    #[test]
    fn damage_and_replacement_are_refused() {
        let bytes = encode_file(b"abcdef", 1, None).unwrap();
        assert!(matches!(
            decode_file(&bytes[..bytes.len() - 1], None),
            Err(DictError::Short)
        ));
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            decode_file(&flipped, None),
            Err(DictError::Checksum)
        ));
        // A replaced body with a recomputed checksum keeps the old id.
        let mut swapped = encode_file(b"ghijkl", 1, None).unwrap();
        swapped[8..24].copy_from_slice(&bytes[8..24]);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&swapped[..44]), &swapped[48..]);
        swapped[44..48].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode_file(&swapped, None),
            Err(DictError::IdMismatch { .. })
        ));
    }

    #[test]
    fn names_round_trip() {
        let id = dict_id(b"x");
        assert_eq!(parse_file_name(&file_name(&id)), Some(id));
        assert_eq!(parse_file_name("abc.kdict"), None);
    }
}
