//! Any bytes as a dedupe run's filter side file (the first 8 bytes pick the
//! run's key count) and as a run file name: what a writable open reads from
//! `index/keyseq-*` before trusting it. No panic, no allocation beyond what
//! the input's own size allows, and a well-formed file re-checks the same.
#![no_main]

use kaudit_store::check_key_filter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let n = data
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let rest = data.get(8..).unwrap_or(&[]);
    let name = String::from_utf8_lossy(rest);
    let (fits, _) = check_key_filter(rest, n, &name);
    // The key count in the file must be the run's: any other count refuses it.
    if fits {
        assert!(!check_key_filter(rest, n.wrapping_add(1), "").0);
    }
    let _ = check_key_filter(rest, n & 0xffff, &name);
});
