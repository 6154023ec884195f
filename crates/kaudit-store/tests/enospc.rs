//! A full disk: appends fail (nothing acknowledged is lost), the store says
//! it cannot write, and once space returns it recovers by itself, without a
//! reopen. Needs root to mount a small tmpfs (CI runs as root).

use kaudit_event::MicroTime;
use kaudit_store::verify::{verify, VerifyOptions};
use kaudit_store::{Record, Store, StoreOptions};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "common/full_disk.rs"]
mod full_disk;
use full_disk::{noise, Tmpfs};

/// An event padded with 2 KiB of hex noise, so compression cannot shrink it away.
fn big_record(i: u64) -> Record {
    let pad = noise(i, 2048);
    let ev = format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-{i}","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"get","user":{{"username":"u{i}"}},"annotations":{{"pad":"{pad}"}}}}"#
    );
    Record {
        cluster: "c".into(),
        received: MicroTime(1_767_366_245_000_000 + i as i64),
        event: ev.into_bytes(),
    }
}

fn opts() -> StoreOptions {
    StoreOptions {
        bundle_max_records: 20,
        segment_target_bytes: 1 << 20,
        checkpoint_interval: Duration::ZERO,
        ..StoreOptions::default()
    }
}

fn stored_ids(store: &Store) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    store
        .read(0..u64::MAX, &mut |_, leaf| {
            let s = std::str::from_utf8(leaf.event).unwrap();
            let at = s.find("\"auditID\":\"id-").unwrap() + 14;
            let end = at + s[at..].find('"').unwrap();
            out.insert(s[at..end].parse::<u64>().unwrap());
            true
        })
        .unwrap();
    out
}

fn wait_writable(store: &Store, within: Duration) -> Result<(), String> {
    let t = Instant::now();
    loop {
        match store.writable() {
            Ok(()) => return Ok(()),
            Err(e) if t.elapsed() > within => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn fill_until_full(store: &Store, ballast: &Path) -> (BTreeSet<u64>, Vec<Vec<u64>>) {
    std::fs::write(ballast, vec![7u8; 4 << 20]).unwrap();
    let mut acked = BTreeSet::new();
    let mut failed: Vec<Vec<u64>> = Vec::new();
    let mut i = 0u64;
    while failed.len() < 3 {
        assert!(i < 100_000, "the 16 MiB file system never filled");
        let ids: Vec<u64> = (i..i + 10).collect();
        i += 10;
        match store.append_batch(ids.iter().map(|&n| big_record(n)).collect()) {
            Ok(a) => {
                assert_eq!(a.duplicates, 0);
                acked.extend(ids);
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("No space left") || msg.contains("unusable"),
                    "{msg}"
                );
                failed.push(ids);
            }
        }
        let _ = store.maybe_checkpoint();
    }
    (acked, failed)
}

#[test]
fn a_full_disk_fails_appends_and_the_writer_recovers_once_space_returns() {
    let Some(fs) = Tmpfs::mount("16m") else {
        return;
    };
    let data = fs.dir.join("data");
    let ballast = fs.dir.join("ballast");
    let store = Store::open(&data, opts()).unwrap();
    let (acked, failed) = fill_until_full(&store, &ballast);
    assert!(!acked.is_empty());

    // While the disk is full, the store says it cannot write.
    assert!(store.writable().is_err());
    std::thread::sleep(Duration::from_millis(700));
    let e = store.writable().unwrap_err();
    assert!(e.contains("cannot write"), "{e}");
    assert!(store.append_batch(vec![big_record(900_000)]).is_err());

    // Nothing acknowledged is lost.
    let have = stored_ids(&store);
    assert!(acked.is_subset(&have), "acknowledged records were lost");

    // Free space: the writer comes back without a reopen.
    std::fs::remove_file(&ballast).unwrap();
    wait_writable(&store, Duration::from_secs(10)).expect("writable again");
    // A batch refused earlier is stored now, not mistaken for a duplicate.
    let resend = &failed[0];
    let a = store
        .append_batch(resend.iter().map(|&n| big_record(n)).collect())
        .unwrap();
    assert_eq!(a.duplicates, 0, "a refused batch was remembered as stored");
    let more = store
        .append_batch((500_000..500_010).map(big_record).collect())
        .unwrap();
    assert_eq!(more.seqs.end - more.seqs.start, 10);
    let n = store.len();
    let have = stored_ids(&store);
    assert!(acked.is_subset(&have));
    assert!(resend.iter().all(|x| have.contains(x)));
    assert_eq!(have.len() as u64, n, "every record stored exactly once");
    store.close().unwrap();

    // The tail on disk is consistent: a reopen cuts nothing it should not,
    // and verify passes.
    let store = Store::open(&data, opts()).unwrap();
    assert_eq!(store.len(), n);
    drop(store);
    let rep = verify(&data, &VerifyOptions::default()).unwrap();
    assert!(rep.ok(), "{:?}", rep.problems);
}
