//! Any bytes through every event entry point: no panic, and every event that
//! parses re-encodes to bytes that parse back to the same event.
#![no_main]

use kaudit_event::reader::{EventReader, ReaderOptions};
use kaudit_event::{parse_batch, Event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = ReaderOptions {
        max_line: 64 << 10,
        max_document: 1 << 20,
    };
    if let Ok(reader) = EventReader::new(std::io::Cursor::new(data.to_vec()), "fuzz", opts) {
        for ev in reader.flatten() {
            let again = Event::from_json(ev.bytes()).expect("stored bytes must re-parse");
            assert_eq!(again.doc().encode(), ev.doc().encode());
        }
    }
    if let Ok(items) = parse_batch(data) {
        for ev in items.into_iter().flatten() {
            let again = Event::from_json(ev.bytes()).expect("stored bytes must re-parse");
            assert_eq!(again.bytes(), ev.bytes());
        }
    }
});
