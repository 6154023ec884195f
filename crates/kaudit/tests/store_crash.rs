//! Crash test: `kaudit import` is SIGKILLed at random points, again and
//! again; after each kill the store must reopen, verify, and hold every
//! acknowledged event exactly once (and no event twice).
//!
//! "Acknowledged" is honest here: import appends an input's line to
//! `--ack-log` only after that input's commit marker is fdatasynced.

use kaudit_event::{Event, EventDoc, Level, MicroTime, ObjectRef, Stage, UserInfo};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const FILES: u64 = 24;
const PER_FILE: u64 = 300;

fn event(i: u64) -> Vec<u8> {
    let doc = EventDoc {
        level: Level::Request,
        audit_id: format!("c0ffee00-0000-4000-8000-{i:012x}"),
        stage: Some(Stage::ResponseComplete),
        request_uri: format!(
            "/apis/apps/v1/namespaces/team-{}/deployments/web-{}",
            i % 9,
            i % 31
        ),
        verb: ["get", "patch", "update", "list"][(i % 4) as usize].into(),
        user: UserInfo {
            username: format!("user-{}@example.com", i % 23),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        },
        source_ips: vec![format!("192.168.{}.{}", i % 5, i % 200)],
        user_agent: "kubectl/v1.31.0 (linux/amd64) kubernetes/abc".into(),
        object_ref: Some(ObjectRef {
            resource: "deployments".into(),
            namespace: format!("team-{}", i % 9),
            name: format!("web-{}", i % 31),
            api_group: "apps".into(),
            api_version: "v1".into(),
            ..Default::default()
        }),
        request_received_timestamp: Some(MicroTime(1_767_000_000_000_000 + i as i64 * 997)),
        stage_timestamp: Some(MicroTime(1_767_000_000_000_000 + i as i64 * 997 + 1200)),
        ..Default::default()
    };
    Event::from_doc(doc).bytes().to_vec()
}

fn write_inputs(dir: &Path) -> Vec<(PathBuf, Vec<Vec<u8>>)> {
    (0..FILES)
        .map(|f| {
            let p = dir.join(format!("audit-{f:03}.log"));
            let evs: Vec<Vec<u8>> = (f * PER_FILE..(f + 1) * PER_FILE).map(event).collect();
            let mut file = std::fs::File::create(&p).unwrap();
            for e in &evs {
                file.write_all(e).unwrap();
                file.write_all(b"\n").unwrap();
            }
            (p, evs)
        })
        .collect()
}

fn kaudit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kaudit"))
}

/// Counts of each stored event, read through the library.
fn stored(data: &Path) -> HashMap<Vec<u8>, u32> {
    let opened = kaudit_store::Store::open(
        data,
        kaudit_store::StoreOptions {
            read_only: true,
            ..Default::default()
        },
    );
    let store = match opened {
        Ok(s) => s,
        // Killed before the first open finished creating the key: then
        // nothing else may exist yet either.
        Err(kaudit_store::StoreError::Key(_)) => {
            assert!(
                !data.join("segments").exists(),
                "a store with segments but no key after a crash"
            );
            return HashMap::new();
        }
        Err(e) => panic!("store reopens after a crash: {e}"),
    };
    let mut out: HashMap<Vec<u8>, u32> = HashMap::new();
    store
        .read(0..u64::MAX, &mut |_, l| {
            *out.entry(l.event.to_vec()).or_default() += 1;
            true
        })
        .unwrap();
    out
}

fn acked(ack: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string(ack)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split('\t').count() == 5)
        .map(|l| PathBuf::from(l.split('\t').next().unwrap()))
        .collect()
}

fn check(data: &Path, ack: &Path, inputs: &[(PathBuf, Vec<Vec<u8>>)], round: usize) -> usize {
    let out = kaudit()
        .arg("verify")
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "round {round}: verify failed after SIGKILL:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let counts = stored(data);
    for (ev, n) in &counts {
        assert_eq!(
            *n,
            1,
            "round {round}: event stored {n} times: {}",
            String::from_utf8_lossy(ev)
        );
    }
    let acked = acked(ack);
    for (p, evs) in inputs.iter().filter(|(p, _)| acked.contains(p)) {
        for e in evs {
            assert_eq!(
                counts.get(e),
                Some(&1),
                "round {round}: acknowledged event of {} missing",
                p.display()
            );
        }
    }
    counts.len()
}

#[test]
fn sigkill_during_import_loses_no_acknowledged_event() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let ack = tmp.path().join("ack.log");
    let inputs = write_inputs(tmp.path());
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut killed_mid_way = 0;
    for round in 0..10 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(30 + seed % 700);
        let mut child = kaudit()
            .arg("import")
            .arg("--data")
            .arg(&data)
            .arg("--cluster")
            .arg("crash")
            .arg("--no-progress")
            .arg("--ack-log")
            .arg(&ack)
            .args(inputs.iter().map(|(p, _)| p))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_mid_way += 1;
        }
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        let n = check(&data, &ack, &inputs, round);
        assert!(n as u64 <= FILES * PER_FILE);
    }
    assert!(
        killed_mid_way > 0,
        "no import was interrupted: the test proves nothing"
    );
    // A final clean run completes the set, exactly once each.
    let st = kaudit()
        .args(["import", "--no-progress", "--cluster", "crash", "--data"])
        .arg(&data)
        .arg("--ack-log")
        .arg(&ack)
        .args(inputs.iter().map(|(p, _)| p))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(check(&data, &ack, &inputs, 99) as u64, FILES * PER_FILE);
}
