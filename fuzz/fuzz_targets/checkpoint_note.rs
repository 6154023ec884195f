//! Any text as a checkpoint, a signed note and a key: no panic; a parsed
//! checkpoint body re-encodes to one that parses to the same values; any
//! note text signed with a key verifies to exactly that text, and a note
//! verifies only when it carries our key's signature line for its text.
#![no_main]

use kaudit_store::note::{checkpoint_body, Checkpoint, Signer25519, Verifier25519};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn signer() -> &'static Signer25519 {
    static S: OnceLock<Signer25519> = OnceLock::new();
    S.get_or_init(|| Signer25519::generate("fuzz.kaudit.example").expect("key"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cp) = Checkpoint::parse(text) {
        let body = checkpoint_body(&cp.origin, cp.size, &cp.root);
        let again = Checkpoint::parse(&body).expect("a body kaudit writes parses");
        assert_eq!((again.size, again.root), (cp.size, cp.root));
    }
    let _ = Verifier25519::from_text(text);
    let _ = Signer25519::from_private_text(text);
    let s = signer();
    let v = s.verifier();
    if let Ok(signed_text) = v.verify_note(text) {
        // The fuzzer cannot forge a signature: a note verifies only when it
        // carries the very line our key makes for its text.
        let ours = s.sign_note(signed_text);
        let line = ours.trim_end().rsplit('\n').next().unwrap_or_default();
        assert!(text.contains(line), "a note verified without our signature");
    }
    if text.ends_with('\n') && text.len() < 4096 {
        let note = s.sign_note(text);
        assert_eq!(v.verify_note(&note).expect("own note verifies"), text);
    }
});
