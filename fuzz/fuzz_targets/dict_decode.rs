//! Any bytes as a dictionary file (`<data>/dict/<id>.kdict`): the header,
//! bounds, checksum, sealed body and content address are checked, never
//! trusted. No panic, no allocation beyond the file's bound; what decodes
//! re-encodes to a file that decodes to the same dictionary. Also any text
//! as a dictionary file name, and any bytes as a framed payload naming a
//! dictionary (`KBF2`) opened without it, which must fail cleanly.
#![no_main]

use kaudit_store::crypt::Cipher;
use kaudit_store::dict::{decode_file, encode_file, parse_file_name, MAX_DICT_FILE};
use kaudit_store::segment::{open_payload, BundleHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() > 2 * MAX_DICT_FILE {
        return;
    }
    let cipher = Cipher::new(&[7u8; 32]);
    for c in [None, Some(&cipher)] {
        if let Ok(f) = decode_file(data, c) {
            let again = encode_file(&f.dict, f.trained_at, c).expect("encode");
            let g = decode_file(&again, c).expect("what decoded re-encodes");
            assert_eq!(g.dict, f.dict);
            assert_eq!(g.id, f.id);
        }
    }
    if let Ok(name) = std::str::from_utf8(data) {
        let _ = parse_file_name(name);
    }
    let mut payload = b"KBF2".to_vec();
    payload.extend_from_slice(data);
    let h = BundleHeader {
        first_seq: 0,
        count: 1 + (data.len() as u32 & 0xff),
        raw_len: (data.len() as u32).min(1 << 20),
        stored_len: payload.len() as u32,
        min_time: 0,
        max_time: 0,
        flags: 0,
    };
    assert!(open_payload(&h, &payload, None).is_err());
});
