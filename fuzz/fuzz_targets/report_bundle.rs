//! Any bytes as an evidence bundle (zstd tar) and as a plain tar stream:
//! no panic, and nothing verifies without a signature by our key (the
//! fuzzer cannot forge one); a tar stream kaudit writes reads back the same.
#![no_main]

use kaudit_report::{bundle, tar};
use kaudit_store::note::Signer25519;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn signer() -> &'static Signer25519 {
    static S: OnceLock<Signer25519> = OnceLock::new();
    S.get_or_init(|| Signer25519::generate("fuzz.kaudit.example").expect("key"))
}

fuzz_target!(|data: &[u8]| {
    let key = signer().verifier();
    assert!(
        bundle::verify(data, Some(&key)).is_err(),
        "a bundle the fuzzer made verified against our key"
    );
    if let Ok(entries) = tar::read(data) {
        let mut again = Vec::new();
        for (name, bytes) in &entries {
            if tar::append(&mut again, name, bytes).is_err() {
                return;
            }
        }
        tar::finish(&mut again);
        assert_eq!(tar::read(&again).expect("own tar reads"), entries);
    }
});
