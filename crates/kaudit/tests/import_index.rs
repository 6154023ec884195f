//! `kaudit import` leaves a searchable store: the index it writes while
//! importing (streamed from stdin too) is the one `kaudit reindex` builds;
//! `--no-index` writes none; and an import SIGKILLed mid-input leaves an
//! index that covers exactly the inputs whose commit was acknowledged.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kaudit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kaudit"))
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "kaudit failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn gen(n: u64, seed: u64) -> Vec<u8> {
    let out = kaudit()
        .args([
            "gen",
            "--events",
            &n.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .output()
        .expect("kaudit gen");
    ok(&out);
    out.stdout
}

/// Every file of the index but its lock.
fn index_files(data: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let dir = data.join("search");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    for e in entries {
        let p = e.expect("entry").path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name != "LOCK" && !name.ends_with(".tmp") {
            out.insert(name, std::fs::read(&p).expect("read"));
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// The index `kaudit reindex` builds over a copy of the store.
fn reindexed(data: &Path) -> BTreeMap<String, Vec<u8>> {
    let copy = tempfile::tempdir().expect("tempdir");
    copy_dir(data, copy.path());
    let out = kaudit()
        .args(["reindex", "--data"])
        .arg(copy.path())
        .output()
        .expect("reindex");
    ok(&out);
    index_files(copy.path())
}

fn rows(files: &BTreeMap<String, Vec<u8>>) -> u64 {
    let meta: serde_json::Value =
        serde_json::from_slice(files.get("meta.json").expect("meta.json")).expect("meta");
    meta["rows"].as_u64().expect("rows")
}

#[test]
fn import_from_stdin_indexes_as_reindex_would() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let events = gen(4000, 3);
    let mut child = kaudit()
        .args(["import", "--no-progress", "--data"])
        .arg(&data)
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("import");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&events)
        .expect("feed stdin");
    let out = child.wait_with_output().expect("wait");
    ok(&out);
    let files = index_files(&data);
    assert_eq!(rows(&files), 4000, "import did not index every event");
    assert_eq!(
        files,
        reindexed(&data),
        "import's index differs from reindex's"
    );
    // The store answers from the index at once.
    let q = kaudit()
        .args(["query", "--data"])
        .arg(&data)
        .args(["verb=delete", "-o", "jsonl", "--limit", "100000"])
        .output()
        .expect("query");
    ok(&q);
    let needle: &[u8] = b"\"verb\":\"delete\"";
    let want = events
        .split(|&b| b == b'\n')
        .filter(|l| l.windows(needle.len()).any(|w| w == needle))
        .count();
    assert!(want > 0);
    assert_eq!(
        q.stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        want
    );
}

#[test]
fn no_index_writes_no_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, input) = (dir.path().join("data"), dir.path().join("in.jsonl"));
    std::fs::write(&input, gen(500, 4)).expect("write input");
    let out = kaudit()
        .args(["import", "--no-progress", "--no-index", "--data"])
        .arg(&data)
        .arg(&input)
        .output()
        .expect("import");
    ok(&out);
    assert!(!data.join("search").join("meta.json").exists());
}

#[test]
fn an_import_killed_mid_input_leaves_the_index_of_the_acknowledged_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, first, ack) = (
        dir.path().join("data"),
        dir.path().join("first.jsonl"),
        dir.path().join("ack.log"),
    );
    std::fs::write(&first, gen(3000, 5)).expect("write input");
    let second = gen(20_000, 6);
    let mut child = kaudit()
        .args(["import", "--no-progress", "--ack-log"])
        .arg(&ack)
        .arg("--data")
        .arg(&data)
        .arg(&first)
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("import");
    let start = Instant::now();
    while !std::fs::read_to_string(&ack).is_ok_and(|s| s.lines().count() == 1) {
        assert!(start.elapsed() < Duration::from_secs(60), "no ack");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&second[..second.len() / 2]).expect("feed");
    stdin.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    drop(stdin);
    let files = index_files(&data);
    assert_eq!(
        rows(&files),
        3000,
        "the index is not where the log was acknowledged"
    );
    // The killed input's records are gone from the log; the index equals
    // reindex's over what survived.
    assert_eq!(files, reindexed(&data));
}
