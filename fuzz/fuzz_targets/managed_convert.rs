//! Any bytes through every managed-cluster converter (EKS, GKE, AKS,
//! admission, auto-detection), the first byte choosing which: no panic,
//! bounded work, and every event produced re-parses from its stored bytes.
#![no_main]

use kaudit_event::Event;
use kaudit_sources::managed::{convert, sniff, ConvertLimits, ManagedFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    let format = match which % 5 {
        0 => ManagedFormat::Eks,
        1 => ManagedFormat::Gke,
        2 => ManagedFormat::Aks,
        3 => ManagedFormat::Admission,
        _ => ManagedFormat::Auto,
    };
    let _ = sniff(input);
    let limits = ConvertLimits {
        max_items: 1000,
        max_inflated: 1 << 20,
    };
    if let Ok(out) = convert(input, format, None, &limits) {
        assert!(out.events.len() + out.bad.len() <= limits.max_items + 1);
        for ev in out.events {
            let again = Event::from_json(ev.bytes()).expect("converted bytes must re-parse");
            assert_eq!(again.doc().encode(), ev.doc().encode());
        }
    }
});
