//! Bundles: where each one lives ([`BundleMeta`]), building one from
//! records, and reading one back.

use super::files::{io_err, undecodable};
use super::{Shared, StoreOptions};
use crate::crypt::Cipher;
use crate::merkle::Hash;
use crate::segment;
use crate::{StoreError, StoreResult};

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

/// The header a bundle was written with, rebuilt from its metadata.
fn header_of<'a>(
    shared: &'a Shared,
    b: &BundleMeta,
) -> StoreResult<(&'a super::SegmentInfo, segment::BundleHeader)> {
    let seg = shared
        .segments
        .get(b.segment)
        .ok_or_else(|| StoreError::Corrupt("bundle names a missing segment".into()))?;
    let stored_len = b
        .stored_len
        .checked_sub(segment::BUNDLE_HEADER as u32)
        .ok_or_else(|| StoreError::Corrupt("bundle shorter than its header".into()))?;
    Ok((
        seg,
        segment::BundleHeader {
            first_seq: b.first_seq,
            count: b.count,
            raw_len: b.raw_len,
            stored_len,
            min_time: b.min_time,
            max_time: b.max_time,
            flags: u32::from(seg.key_id.is_some()),
        },
    ))
}

/// Reads and opens only the parts of one bundle holding records that
/// `want(first, records)` (indexes within the bundle) asks for: (index of the
/// part's first record, its raw records) per part. A framed bundle costs one
/// small frame per part; an old single-frame bundle comes back whole.
pub(super) fn read_bundle_part(
    shared: &Shared,
    b: &BundleMeta,
    cipher: Option<&Cipher>,
    want: &mut dyn FnMut(u32, u32) -> bool,
) -> StoreResult<Vec<(u32, Vec<u8>)>> {
    let (seg, h) = header_of(shared, b)?;
    if let (Some(kid), Some(c)) = (&seg.key_id, cipher) {
        c.check_id(kid)?;
    }
    segment::read_records(&seg.file, b.offset, &h, cipher, &shared.dicts, want).map_err(|e| match e
    {
        segment::PartError::Io(e) => io_err(seg.path.display())(e),
        segment::PartError::Payload(e) => {
            undecodable(format_args!("{}:{}", seg.path.display(), b.offset), e)
        }
    })
}

/// Reads and opens one bundle's records.
pub(super) fn read_bundle(
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
    segment::open_payload_with(&h, &payload, cipher, &shared.dicts)
        .map_err(|e| undecodable(format_args!("{}:{}", seg.path.display(), b.offset), e))
}

/// Records accumulating into one bundle.
#[derive(Default)]
pub(super) struct BundleBuilder {
    pub(super) raw: Vec<u8>,
    pub(super) count: u32,
    pub(super) first_seq: u64,
    pub(super) min_time: i64,
    pub(super) max_time: i64,
}

impl BundleBuilder {
    /// Adds a record; returns its dedupe key (computed in the same hash pass).
    pub(super) fn add_parts(
        &mut self,
        cluster: &str,
        event: &[u8],
        received: kaudit_event::MicroTime,
        seq: u64,
        leaves: &mut Vec<Hash>,
    ) -> [u8; 16] {
        self.add_parts_prefixed(cluster, event, received, seq, leaves, None)
    }

    /// [`Self::add_parts`] finishing the leaf hash from `prefix`, the hash
    /// state a caller computed over this very record's prefix
    /// ([`crate::record::finish_leaf_and_key`]); `None` hashes it all here.
    pub(super) fn add_parts_prefixed(
        &mut self,
        cluster: &str,
        event: &[u8],
        received: kaudit_event::MicroTime,
        seq: u64,
        leaves: &mut Vec<Hash>,
        prefix: Option<&sha2::Sha256>,
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
        let leaf_data = &self.raw[len_at + 4..];
        let (leaf, key) = match prefix {
            Some(p) => {
                let trailer = &leaf_data[leaf_data.len() - crate::record::LEAF_TRAILER..];
                let r = crate::record::finish_leaf_and_key(p, trailer);
                debug_assert_eq!(
                    r,
                    crate::record::hash_leaf_and_key(leaf_data),
                    "a leaf prefix hash that does not cover its record"
                );
                r
            }
            None => crate::record::hash_leaf_and_key(leaf_data),
        };
        leaves.push(leaf);
        self.count += 1;
        self.min_time = self.min_time.min(t);
        self.max_time = self.max_time.max(t);
        key
    }
    /// Takes back the last record (a duplicate): state saved before adding it.
    pub(super) fn undo(&mut self, mark: (usize, u32, i64, i64)) {
        self.raw.truncate(mark.0);
        self.count = mark.1;
        self.min_time = mark.2;
        self.max_time = mark.3;
    }

    pub(super) fn full(&self, o: &StoreOptions) -> bool {
        self.count as usize >= o.bundle_max_records || self.raw.len() >= o.bundle_max_bytes
    }
    pub(super) fn clear(&mut self) {
        self.raw.clear();
        self.count = 0;
    }
}
