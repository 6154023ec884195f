//! Any bytes as a webhook body: the one-pass EventList decoding
//! (`parse_batch_limited`) must give exactly what the general two-pass path
//! (`parse_batch_reference`) gives — the same events, field for field, the
//! same item errors and the same whole-body error — at any item limit.
#![no_main]

use kaudit_event::{parse_batch_limited, parse_batch_reference};
use libfuzzer_sys::fuzz_target;

const PREFIX: &[u8] =
    br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":["#;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limit; the rest is the body, once as it is
    // and once inside the apiserver's framing, so the fast path is reached.
    let (max, body) = match data.split_first() {
        Some((m, rest)) => (usize::from(*m % 16), rest),
        None => (0, data),
    };
    let mut framed = PREFIX.to_vec();
    framed.extend_from_slice(body);
    framed.extend_from_slice(b"]}");
    for b in [body, &framed[..]] {
        for limit in [max, usize::MAX] {
            let fast = parse_batch_limited(b, limit);
            let slow = parse_batch_reference(b, limit);
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
            assert_eq!(fast, slow);
        }
    }
});
