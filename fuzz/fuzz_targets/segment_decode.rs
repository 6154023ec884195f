//! Any bytes as a segment file: the header, every frame as open and verify
//! walk them (with and without checksums), each bundle's payload
//! (decompression bounded; framed payloads' `KBF1` frame tables included:
//! `open_payload` parses and bounds them) and the records in it. No panic, no unbounded
//! allocation, and the walk always moves forward.
#![no_main]

use kaudit_store::record::iter_leaves;
use kaudit_store::segment::{
    open_payload, parse_frame_in, parse_segment_name, Frame, SegmentHeader, BUNDLE_HEADER,
    COMMIT_FRAME, SEGMENT_HEADER,
};
use libfuzzer_sys::fuzz_target;

/// Largest decompressed bundle the target opens (the store allows 64 MiB;
/// fuzzing stays fast below this).
const MAX_RAW: u32 = 1 << 20;

fn walk_leaves(raw: &[u8]) {
    for leaf in iter_leaves(raw).take(100_000) {
        match leaf {
            Ok(l) => {
                let _ = l.hash();
            }
            Err(_) => break,
        }
    }
}

fn walk(data: &[u8], check_crc: bool) {
    let mut off: u64 = if SegmentHeader::decode(data).is_ok() {
        SEGMENT_HEADER as u64
    } else {
        0
    };
    while (off as usize) < data.len() {
        let before = off;
        match parse_frame_in(data, off, check_crc) {
            Ok(Frame::Bundle { header, .. }) => {
                let start = off as usize + BUNDLE_HEADER;
                let Some(end) = start.checked_add(header.stored_len as usize) else {
                    break;
                };
                if let Some(payload) = data.get(start..end) {
                    if header.raw_len <= MAX_RAW {
                        if let Ok(raw) = open_payload(&header, payload, None) {
                            assert_eq!(raw.len(), header.raw_len as usize);
                            walk_leaves(&raw);
                        }
                    }
                }
                off = end as u64;
            }
            Ok(Frame::Commit { .. }) => off += COMMIT_FRAME as u64,
            Err(_) => break,
        }
        assert!(off > before, "the frame walk must move forward");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = SegmentHeader::decode(data) {
        // What decodes re-encodes to the same header.
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
    }
    if let Ok(name) = std::str::from_utf8(data) {
        let _ = parse_segment_name(name);
    }
    walk(data, true);
    walk(data, false);
    walk_leaves(data);
});
