//! One stored record and its `leaf_data`: the exact bytes the Merkle leaf hash covers.
//!
//! `leaf_data` layout (version 1, all integers big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | layout version, `0x01` |
//! | 1 | 8 | sequence number (= leaf index), u64 |
//! | 9 | 8 | receive time, i64 microseconds since the Unix epoch (UTC) |
//! | 17 | 2 | cluster name length `c`, u16 |
//! | 19 | c | cluster name, UTF-8 |
//! | 19 + c | rest | the event's stored bytes: its v1 JSON line exactly as `kaudit query -o jsonl` prints it, no newline |
//!
//! The leaf hash is `SHA-256(0x00 || leaf_data)` (RFC 6962). Binding the
//! sequence number makes a moved, dropped or duplicated record visible on its
//! own, not only through the tree.

use crate::merkle::{leaf_hash, Hash};
use kaudit_event::MicroTime;

/// The leaf_data layout version written by this crate.
pub const LEAF_VERSION: u8 = 1;
/// Fixed part of leaf_data before the cluster name.
pub const LEAF_HEADER: usize = 19;
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
    /// Builds the leaf_data for this record at sequence number `seq`.
    pub fn leaf_data(&self, seq: u64, out: &mut Vec<u8>) {
        out.push(LEAF_VERSION);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&self.received.micros().to_be_bytes());
        let c = &self.cluster.as_bytes()[..self.cluster.len().min(MAX_CLUSTER)];
        out.extend_from_slice(&(c.len() as u16).to_be_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(&self.event);
    }

    /// Checks the bounds a record must respect before it is appended.
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.cluster.len() > MAX_CLUSTER {
            return Err(RecordError::Malformed("cluster name longer than 253 bytes"));
        }
        if self.event.len() > MAX_EVENT {
            return Err(RecordError::Malformed("event larger than 16 MiB"));
        }
        if self.event.is_empty() {
            return Err(RecordError::Malformed("empty event"));
        }
        Ok(())
    }
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
        if data.len() < LEAF_HEADER {
            return Err(RecordError::Malformed("record shorter than its header"));
        }
        if data[0] != LEAF_VERSION {
            return Err(RecordError::Malformed("unknown record layout version"));
        }
        let seq = u64::from_be_bytes(
            data[1..9]
                .try_into()
                .map_err(|_| RecordError::Malformed("seq"))?,
        );
        let received = i64::from_be_bytes(
            data[9..17]
                .try_into()
                .map_err(|_| RecordError::Malformed("time"))?,
        );
        let clen = u16::from_be_bytes([data[17], data[18]]) as usize;
        if data.len() < LEAF_HEADER + clen {
            return Err(RecordError::Malformed("cluster name runs past the record"));
        }
        let cluster = std::str::from_utf8(&data[LEAF_HEADER..LEAF_HEADER + clen])
            .map_err(|_| RecordError::Malformed("cluster name is not UTF-8"))?;
        Ok(LeafRef {
            data,
            seq,
            received: MicroTime(received),
            cluster,
            event: &data[LEAF_HEADER + clen..],
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
/// include auditID and stage). 16 bytes of SHA-256 keep collisions out of reach.
pub fn dedupe_key(cluster: &str, event: &[u8]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update((cluster.len() as u32).to_be_bytes());
    h.update(cluster.as_bytes());
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
        assert_eq!(&d[d.len() - r.event.len()..], r.event.as_slice());
        assert!(LeafRef::parse(&d[..10]).is_err());
    }
}
