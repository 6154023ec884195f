//! The store's trained zstd dictionary through the CLI: an encrypted import
//! large enough to train one (more than 8 MiB of events), `kaudit stat`
//! counts it, `kaudit verify` passes with the key and after a prune, and
//! fails naming the dictionary file once it is altered.

use std::path::Path;
use std::process::Command;

fn kaudit(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .args(args)
        .env("KAUDIT_DATA", data)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_encrypted_import_trains_a_sealed_dictionary_that_verify_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let events = tmp.path().join("events.jsonl");
    let key = tmp.path().join("key");
    std::fs::write(&key, "5a".repeat(32)).unwrap();
    let k = key.to_str().unwrap();
    let (ok, _, err) = kaudit(
        &data,
        &[
            "gen",
            "--events",
            "15000",
            "--seed",
            "3",
            "-o",
            events.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let size = std::fs::metadata(&events).unwrap().len();
    assert!(size > 10 << 20, "{size} bytes: too few to train");
    let (ok, _, err) = kaudit(
        &data,
        &[
            "import",
            "--no-progress",
            "--encryption-key",
            k,
            events.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let dicts: Vec<_> = std::fs::read_dir(data.join("dict"))
        .expect("a dictionary folder")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dicts.len(), 1, "{dicts:?}");
    let (ok, out, err) = kaudit(&data, &["stat", "--encryption-key", k]);
    assert!(ok, "{err}");
    let dict_len = std::fs::metadata(&dicts[0]).unwrap().len();
    assert!(
        out.contains(&format!("+ {dict_len} bytes of zstd dictionaries")),
        "{out}"
    );
    let (ok, out, err) = kaudit(&data, &["verify", "--encryption-key", k]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("OK: 15000 records"), "{out}");
    // Retention leaves the dictionary the kept bundles need.
    let (ok, _, err) = kaudit(&data, &["prune", "--max-age", "0s", "--encryption-key", k]);
    assert!(ok, "{err}");
    assert!(dicts[0].exists());
    let (ok, out, err) = kaudit(&data, &["verify", "--encryption-key", k]);
    assert!(ok, "{out}{err}");
    // An altered dictionary fails verify, naming the file.
    let mut bytes = std::fs::read(&dicts[0]).unwrap();
    let n = bytes.len() - 1;
    bytes[n] ^= 0x40;
    std::fs::write(&dicts[0], bytes).unwrap();
    let (ok, out, err) = kaudit(&data, &["verify", "--encryption-key", k]);
    assert!(!ok, "verify passed an altered dictionary: {out}");
    let name = dicts[0].file_name().unwrap().to_str().unwrap();
    assert!(
        format!("{out}{err}").contains(name),
        "the file is not named: {out}{err}"
    );
}
