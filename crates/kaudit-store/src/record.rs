//! One stored record and its `leaf_data`: the exact bytes the Merkle leaf hash covers.
//!
//! `leaf_data` layout (version 1, all integers big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | layout version, `0x01` |
//! | 1 | 2 | cluster name length `c`, u16 |
//! | 3 | c | cluster name, UTF-8 |
//! | 3 + c | e | the event's stored bytes: its v1 JSON line exactly as `kaudit query -o jsonl` prints it, no newline |
//! | 3 + c + e | 8 | sequence number (= leaf index), u64 |
//! | 11 + c + e | 8 | receive time, i64 microseconds since the Unix epoch (UTC) |
//!
//! The event is everything between the cluster name and the last 16 bytes.
//! The leaf hash is `SHA-256(0x00 || leaf_data)` (RFC 6962). Binding the
//! sequence number makes a moved, dropped or duplicated record visible on its
//! own, not only through the tree. Putting the fixed fields last lets one
//! SHA-256 pass give both the leaf hash and the dedupe key (the hash of the
//! same prefix up to the end of the event).

use crate::merkle::{leaf_hash, Hash};
use kaudit_event::MicroTime;

/// The leaf_data layout version written by this crate.
pub const LEAF_VERSION: u8 = 1;
/// Bytes of leaf_data before the cluster name.
pub const LEAF_HEADER: usize = 3;
/// Bytes of leaf_data after the event (seq, receive time).
pub const LEAF_TRAILER: usize = 16;
/// Longest accepted cluster name.
pub const MAX_CLUSTER: usize = 253;
/// Longest accepted event.
pub const MAX_EVENT: usize = 16 << 20;

/// What a caller appends: one event with the metadata bound to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Cluster the event came from.
    pub cluster: String,
    /// When kaudit received it.
    pub received: MicroTime,
    /// The event's exact v1 JSON line (`Event::bytes()`).
    pub event: Vec<u8>,
}

/// Why a leaf_data blob is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// Layout problems.
    #[error("malformed record: {0}")]
    Malformed(&'static str),
}

impl Record {
    /// Appends the leaf_data for this record at sequence number `seq`.
    pub fn leaf_data(&self, seq: u64, out: &mut Vec<u8>) {
        write_leaf(&self.cluster, &self.event, self.received, seq, out);
    }

    /// Checks the bounds a record must respect before it is appended.
    pub fn validate(&self) -> Result<(), RecordError> {
        validate_parts(&self.cluster, &self.event)
    }

    /// The record borrowed.
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            cluster: &self.cluster,
            received: self.received,
            event: &self.event,
        }
    }
}

/// A record to append whose parts live elsewhere ([`Store::append_refs`](crate::Store::append_refs)).
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    /// Cluster the event came from.
    pub cluster: &'a str,
    /// When kaudit received it.
    pub received: MicroTime,
    /// The event's exact v1 JSON line.
    pub event: &'a [u8],
}

/// Checks a record's parts.
pub fn validate_parts(cluster: &str, event: &[u8]) -> Result<(), RecordError> {
    if cluster.len() > MAX_CLUSTER {
        return Err(RecordError::Malformed("cluster name longer than 253 bytes"));
    }
    if event.len() > MAX_EVENT {
        return Err(RecordError::Malformed("event larger than 16 MiB"));
    }
    if event.is_empty() {
        return Err(RecordError::Malformed("empty event"));
    }
    Ok(())
}

/// Appends leaf_data built from parts (the cluster must be at most 253 bytes).
pub fn write_leaf(cluster: &str, event: &[u8], received: MicroTime, seq: u64, out: &mut Vec<u8>) {
    let c = &cluster.as_bytes()[..cluster.len().min(MAX_CLUSTER)];
    out.push(LEAF_VERSION);
    out.extend_from_slice(&(c.len() as u16).to_be_bytes());
    out.extend_from_slice(c);
    out.extend_from_slice(event);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&received.micros().to_be_bytes());
}

/// Leaf hash and dedupe key of a leaf_data blob in one SHA-256 pass.
pub fn hash_leaf_and_key(leaf_data: &[u8]) -> (Hash, [u8; 16]) {
    use sha2::{Digest, Sha256};
    let split = leaf_data.len().saturating_sub(LEAF_TRAILER);
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(&leaf_data[..split]);
    let prefix = h.clone().finalize();
    h.update(&leaf_data[split..]);
    let mut key = [0u8; 16];
    key.copy_from_slice(&prefix[..16]);
    (h.finalize().into(), key)
}

/// [`hash_leaf_and_key`] for a record whose prefix (`0x00 || leaf_data` up
/// to the end of its event) a caller has already hashed into `prefix` (the
/// ingest path hashes it once for its dedupe window): only the trailer (the
/// last [`LEAF_TRAILER`] bytes, sequence number and receive time) is hashed
/// here. Same values as [`hash_leaf_and_key`] when `prefix` covers the same
/// bytes.
pub fn finish_leaf_and_key(prefix: &sha2::Sha256, trailer: &[u8]) -> (Hash, [u8; 16]) {
    use sha2::Digest;
    let mut h = prefix.clone();
    let mut key = [0u8; 16];
    key.copy_from_slice(&prefix.clone().finalize()[..16]);
    h.update(trailer);
    (h.finalize().into(), key)
}

/// A record read back, borrowing its leaf_data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafRef<'a> {
    /// The whole leaf_data.
    pub data: &'a [u8],
    /// Sequence number bound in the record.
    pub seq: u64,
    /// Receive time.
    pub received: MicroTime,
    /// Cluster name.
    pub cluster: &'a str,
    /// Event bytes.
    pub event: &'a [u8],
}

impl<'a> LeafRef<'a> {
    /// Parses leaf_data.
    pub fn parse(data: &'a [u8]) -> Result<Self, RecordError> {
        if data.len() < LEAF_HEADER + LEAF_TRAILER {
            return Err(RecordError::Malformed(
                "record shorter than its fixed fields",
            ));
        }
        if data[0] != LEAF_VERSION {
            return Err(RecordError::Malformed("unknown record layout version"));
        }
        let clen = u16::from_be_bytes([data[1], data[2]]) as usize;
        if data.len() < LEAF_HEADER + clen + LEAF_TRAILER {
            return Err(RecordError::Malformed("cluster name runs past the record"));
        }
        let cluster = std::str::from_utf8(&data[LEAF_HEADER..LEAF_HEADER + clen])
            .map_err(|_| RecordError::Malformed("cluster name is not UTF-8"))?;
        let t = data.len() - LEAF_TRAILER;
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&data[t..t + 8]);
        let mut time = [0u8; 8];
        time.copy_from_slice(&data[t + 8..]);
        Ok(LeafRef {
            data,
            seq: u64::from_be_bytes(seq),
            received: MicroTime(i64::from_be_bytes(time)),
            cluster,
            event: &data[LEAF_HEADER + clen..t],
        })
    }

    /// RFC 6962 leaf hash of this record.
    pub fn hash(&self) -> Hash {
        leaf_hash(self.data)
    }

    /// Owned copy.
    pub fn to_record(&self) -> Record {
        Record {
            cluster: self.cluster.to_string(),
            received: self.received,
            event: self.event.to_vec(),
        }
    }
}

/// Key for dropping exact duplicates: same cluster and same bytes (which
/// include auditID and stage): the first 16 bytes of SHA-256 over the
/// leaf-hash preimage up to the end of the event (`0x00 || 0x01 || len ||
/// cluster || event`), so computing it costs no second pass.
pub fn dedupe_key(cluster: &str, event: &[u8]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let c = &cluster.as_bytes()[..cluster.len().min(MAX_CLUSTER)];
    let mut h = Sha256::new();
    h.update([0u8, LEAF_VERSION]);
    h.update((c.len() as u16).to_be_bytes());
    h.update(c);
    h.update(event);
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

/// Iterates the leaf_data items of a decompressed bundle (`u32 LE length`, data).
pub fn iter_leaves(raw: &[u8]) -> LeafIter<'_> {
    LeafIter { raw, pos: 0 }
}

/// See [`iter_leaves`].
pub struct LeafIter<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for LeafIter<'a> {
    type Item = Result<LeafRef<'a>, RecordError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.raw.len() {
            return None;
        }
        let rest = &self.raw[self.pos..];
        if rest.len() < 4 {
            self.pos = self.raw.len();
            return Some(Err(RecordError::Malformed("truncated record length")));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() < 4 + len {
            self.pos = self.raw.len();
            return Some(Err(RecordError::Malformed("record runs past its bundle")));
        }
        self.pos += 4 + len;
        Some(LeafRef::parse(&rest[4..4 + len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_record_round_trips(cluster in "[a-z0-9-]{0,40}", event in proptest::collection::vec(proptest::num::u8::ANY, 1..300), seq in proptest::num::u64::ANY, t in proptest::num::i64::ANY) {
            let r = Record { cluster: cluster.clone(), received: MicroTime(t), event: event.clone() };
            let mut d = Vec::new();
            r.leaf_data(seq, &mut d);
            let l = LeafRef::parse(&d).unwrap();
            proptest::prop_assert_eq!(l.seq, seq);
            proptest::prop_assert_eq!(l.cluster, cluster.as_str());
            proptest::prop_assert_eq!(l.event, event.as_slice());
            proptest::prop_assert_eq!(l.received, MicroTime(t));
            let (h, k) = hash_leaf_and_key(&d);
            proptest::prop_assert_eq!(h, crate::merkle::leaf_hash(&d));
            proptest::prop_assert_eq!(k, dedupe_key(&cluster, &event));
        }
    }

    #[test]
    fn leaf_data_round_trips() {
        let r = Record {
            cluster: "prod-eu".into(),
            received: MicroTime(1_700_000_000_123_456),
            event: br#"{"kind":"Event"}"#.to_vec(),
        };
        let mut d = Vec::new();
        r.leaf_data(77, &mut d);
        let l = LeafRef::parse(&d).unwrap();
        assert_eq!(l.seq, 77);
        assert_eq!(l.cluster, "prod-eu");
        assert_eq!(l.event, r.event.as_slice());
        assert_eq!(l.received, r.received);
        assert!(LeafRef::parse(&d[..10]).is_err());
        let (h, k) = hash_leaf_and_key(&d);
        assert_eq!(h, l.hash());
        assert_eq!(k, dedupe_key("prod-eu", &r.event));
    }
}
