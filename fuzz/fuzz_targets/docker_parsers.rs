//! Hostile bytes through every Docker parser kaudit runs on input it does
//! not control: the proxy's HTTP head reader and body framing (both
//! directions), the events stream's chunk decoder and message mapping, and
//! the Engine API path classifier. No panic, no unbounded growth; a parsed
//! head forwards exactly the bytes it was read from.
#![no_main]

use kaudit_sources::docker::{events::Dechunker, http, map};
use libfuzzer_sys::fuzz_target;
use std::io::BufReader;

fuzz_target!(|data: &[u8]| {
    // Head + body as the proxy reads them, with small reads.
    let mut r = BufReader::with_capacity(7, data);
    if let Ok(Some(head)) = http::read_head(&mut r) {
        assert!(data.starts_with(&head.raw));
        let mut out = Vec::new();
        let mut cap = http::Capture::new(1024);
        let _ = match head.framing() {
            Ok(http::Framing::Length(n)) => http::copy_length(&mut r, &mut out, n.min(1 << 20), &mut cap),
            Ok(http::Framing::Chunked) => http::copy_chunked(&mut r, &mut out, &mut cap),
            _ => http::copy_to_end(&mut r, &mut out, &mut cap),
        };
        assert!(cap.bytes.len() <= 1024);
        let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
        let _ = map::classify(&head.method, path, query);
    }
    // The events stream: chunks split anywhere, then each line mapped.
    let mut d = Dechunker::default();
    let split = data.len() / 2;
    let mut decoded = d.feed(&data[..split]).unwrap_or_default();
    decoded.extend(d.feed(&data[split..]).unwrap_or_default());
    for line in decoded.split(|b| *b == b'\n').take(64) {
        if let Ok(ev) = map::daemon_event(line, "fuzz") {
            assert!(kaudit_event::Event::from_json(ev.bytes()).is_ok());
        }
    }
    if let Ok(ev) = map::daemon_event(data, "fuzz") {
        assert!(kaudit_event::Event::from_json(ev.bytes()).is_ok());
    }
    let _ = map::percent_decode(&String::from_utf8_lossy(data));
});
