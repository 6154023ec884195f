//! The CLI over ClickHouse, against a real clickhouse-server (Debian's
//! 18.16, which the test command installs; missing is a failure):
//! `kaudit verify --clickhouse` passes on untouched rows and names
//! (node, seq) after an edit, a delete and an inserted row; `kaudit detect
//! --config` with `store.clickhouse` runs a retro-hunt over every node's
//! rows, with the same alerts as over each node's own store; `kaudit query
//! --clickhouse` answers for every node and `--follow` prints each node's
//! new events once, whatever order the nodes ship in.

#[path = "../../kaudit-clickhouse/tests/common/mod.rs"]
mod common;

use kaudit_clickhouse::schema::{encode_row, Tables};
use kaudit_clickhouse::{Client, Shipper};
use kaudit_event::MicroTime;
use kaudit_store::{LogReader, Record, Store, StoreOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kaudit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .args(args)
        .stdin(Stdio::null())
        .env_remove("KAUDIT_CONFIG")
        .env_remove("KAUDIT_DATA")
        .output()
        .expect("run kaudit")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Waits for ALTER mutations (asynchronous on 18.16), at most 60 s.
fn wait_mutations(c: &Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = c
            .execute("SELECT count() FROM system.mutations WHERE is_done = 0")
            .expect("mutations");
        if n.trim() == "0" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "mutations still running after 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `kaudit verify --clickhouse` with both nodes' trusted keys.
fn verify(url: &str, k1: &str, k2: &str) -> (bool, String) {
    let out = kaudit(&[
        "verify",
        "--clickhouse",
        url,
        "--node-key",
        &format!("1={k1}"),
        "--node-key",
        &format!("2={k2}"),
    ]);
    (out.status.success(), text(&out.stdout) + &text(&out.stderr))
}

#[test]
fn verify_clickhouse_exit_status_names_node_and_seq() {
    let _dog = common::Watchdog::arm(Duration::from_secs(170), "verify --clickhouse test");
    let ch = common::ClickHouse::start();
    let (d1, d2) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let s1 = common::store_of(d1.path(), "alpha", 300, 71);
    s1.checkpoint().expect("checkpoint");
    let s2 = common::store_of(d2.path(), "beta", 200, 72);
    s2.checkpoint().expect("checkpoint");
    common::ship_all(
        &mut Shipper::new(ch.config(1), d1.path()).expect("shipper"),
        &s1,
    );
    common::ship_all(
        &mut Shipper::new(ch.config(2), d2.path()).expect("shipper"),
        &s2,
    );
    let (k1, k2) = (s1.verifier().text(), s2.verifier().text());
    let url = ch.url();

    let (ok, out) = verify(&url, &k1, &k2);
    assert!(ok, "untouched rows must verify: {out}");
    assert!(out.contains("OK: node 1 (node-1): 300 rows"), "{out}");
    assert!(out.contains("OK: node 2 (node-2): 200 rows"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");

    // The same from a serve config naming the tables.
    let cfg = d1.path().join("kaudit.yaml");
    std::fs::write(&cfg, format!("store:\n  clickhouse:\n    url: {url}\n")).expect("config");
    let out = kaudit(&["verify", "--clickhouse", &cfg.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        text(&out.stdout) + &text(&out.stderr)
    );

    // A wrong key for node 2 fails it.
    let (ok, out) = verify(&url, &k1, &k1);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL: node 2 (node-2): {\"kind\":\"bad_checkpoint\""),
        "{out}"
    );

    let client = Client::connect(&ch.config(0)).expect("client");
    let tables = Tables::new(&ch.config(0));
    let events = format!("{}.{}", tables.db, tables.events);

    // Edited: node 1's row 5.
    client
        .execute(&format!(
            "ALTER TABLE {events} UPDATE raw = replaceOne(raw, '\"verb\":\"', '\"verb\":\"x') WHERE node_id = 1 AND seq = 5"
        ))
        .expect("update");
    wait_mutations(&client);
    let (ok, out) = verify(&url, &k1, &k2);
    assert!(!ok, "an edited row must fail: {out}");
    assert!(
        out.contains("FAIL: node 1 (node-1): {\"kind\":\"altered\",\"seq\":5}"),
        "{out}"
    );
    assert!(out.contains("OK: node 2"), "{out}");

    // Deleted: node 2's row 7.
    client
        .execute(&format!(
            "ALTER TABLE {events} DELETE WHERE node_id = 2 AND seq = 7"
        ))
        .expect("delete");
    wait_mutations(&client);
    let (ok, out) = verify(&url, &k1, &k2);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL: node 2 (node-2): {\"kind\":\"missing\",\"seq\":7}"),
        "{out}"
    );

    // Inserted: a second, different row 9 of node 1.
    let mut body = Vec::new();
    let mut leaf = Vec::new();
    LogReader::read(&s1, 9..10, &mut |seq, l| {
        let mut ev = l.event.to_vec();
        ev.push(b' ');
        encode_row(
            &mut body, 1, "node-1", seq, l.cluster, l.received, &ev, None, &mut leaf,
        );
        true
    })
    .expect("read");
    client
        .insert(
            &format!(
                "INSERT INTO {events} ({}) FORMAT RowBinary",
                Tables::insert_columns()
            ),
            body,
        )
        .expect("insert");
    let (ok, out) = verify(&url, &k1, &k2);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL: node 1 (node-1): {\"kind\":\"conflict\",\"seq\":9}"),
        "{out}"
    );
    assert!(
        out.contains("FAIL: node 1 (node-1): {\"kind\":\"altered\",\"seq\":5}"),
        "{out}"
    );
}

/// The conformance Falco directory (missing is a failure, not a skip).
fn falco_conformance() -> PathBuf {
    let dir = match std::env::var_os("KAUDIT_CONFORMANCE") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
    }
    .join("falco");
    assert!(
        dir.join("k8s_audit_rules.yaml").is_file(),
        "conformance data not found at {} (set KAUDIT_CONFORMANCE)",
        dir.display()
    );
    dir
}

/// Every audit event line of the conformance Falco traces.
fn trace_events(falco: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(falco.join("traces"))
        .expect("traces")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read(&f).expect("trace");
        for line in text.split(|b| *b == b'\n') {
            if kaudit_event::Event::from_json(line).is_ok() {
                out.push(line.to_vec());
            }
        }
    }
    out
}

/// A store holding `events`, every other one received 20 days ago (the
/// rest now).
fn store_with_ages(dir: &Path, cluster: &str, events: &[Vec<u8>]) -> Store {
    let store = Store::open(dir, StoreOptions::default()).expect("store");
    let now = MicroTime::now().micros();
    let mut tx = store.transaction().expect("tx");
    for (i, ev) in events.iter().enumerate() {
        let base = if i % 2 == 0 {
            now - 20 * 86_400_000_000
        } else {
            now
        };
        tx.push(&Record {
            cluster: cluster.to_string(),
            received: MicroTime(base + i as i64),
            event: ev.clone(),
        })
        .expect("push");
    }
    tx.commit().expect("commit");
    store
}

/// Sorted JSON alert lines of `kaudit detect` with `args`.
fn alerts(rules: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["detect", "-o", "json", "--rules", rules];
    all.extend_from_slice(args);
    let out = kaudit(&all);
    assert!(
        out.status.success(),
        "kaudit {all:?}: {}",
        text(&out.stderr)
    );
    eprintln!("kaudit {all:?}: {}", text(&out.stderr).trim());
    let mut lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn detect_since_reads_every_node_from_clickhouse() {
    let _dog = common::Watchdog::arm(Duration::from_secs(170), "detect from ClickHouse test");
    let ch = common::ClickHouse::start();
    let (d1, d2) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let falco = falco_conformance();
    let events = trace_events(&falco);
    assert!(events.len() >= 40, "only {} trace events", events.len());
    let rules = falco.join("k8s_audit_rules.yaml").display().to_string();
    let s1 = store_with_ages(d1.path(), "alpha", &events[..events.len() / 2]);
    let s2 = store_with_ages(d2.path(), "beta", &events[events.len() / 2..]);
    common::ship_all(
        &mut Shipper::new(ch.config(1), d1.path()).expect("shipper"),
        &s1,
    );
    common::ship_all(
        &mut Shipper::new(ch.config(2), d2.path()).expect("shipper"),
        &s2,
    );
    drop((s1, s2));
    let (p1, p2) = (
        d1.path().display().to_string(),
        d2.path().display().to_string(),
    );

    // The reference: each node's own store, read locally.
    let mut want = alerts(&rules, &["--data", &p1, "--since", "7d"]);
    let w2 = alerts(&rules, &["--data", &p2, "--since", "7d"]);
    assert!(
        !want.is_empty() && !w2.is_empty(),
        "no alerts from one half of the traces: the test cannot tell nodes apart"
    );
    assert!(
        want.iter()
            .all(|l| l.contains("\"kaudit.cluster\":\"alpha\"")),
        "{want:?}"
    );
    assert!(
        w2.iter().all(|l| l.contains("\"kaudit.cluster\":\"beta\"")),
        "{w2:?}"
    );
    want.extend(w2);
    want.sort();

    let cfg = tempfile::tempdir().expect("tmp");
    let file = cfg.path().join("kaudit.yaml");
    std::fs::write(
        &file,
        format!(
            "data: {}\nstore:\n  clickhouse:\n    url: {}\n",
            cfg.path().join("unused").display(),
            ch.url()
        ),
    )
    .expect("config");
    let f = file.display().to_string();
    let got = alerts(&rules, &["--config", &f, "--since", "7d"]);
    assert_eq!(
        got.len(),
        want.len(),
        "alerts from ClickHouse vs both stores"
    );
    assert_eq!(got, want);

    // --since needs stored events to look back over.
    let out = kaudit(&["detect", "--since", "7d", "-"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--since needs --data DIR or --config FILE"),
        "{}",
        text(&out.stderr)
    );

    // Without --since: the old events too, still from both nodes.
    let older = alerts(&rules, &["--config", &f]);
    let mut all = alerts(&rules, &["--data", &p1]);
    all.extend(alerts(&rules, &["--data", &p2]));
    all.sort();
    assert!(older.len() > got.len(), "{} vs {}", older.len(), got.len());
    assert_eq!(older, all);
}

/// Event lines of records `range` of `store`.
fn lines_of(store: &Store, range: std::ops::Range<u64>) -> Vec<String> {
    let mut v = Vec::new();
    LogReader::read(store, range, &mut |_, leaf| {
        v.push(text(leaf.event));
        true
    })
    .expect("read");
    v
}

#[test]
fn query_follow_from_clickhouse_prints_every_nodes_new_events_once() {
    use std::io::BufRead;
    use std::sync::{Arc, Mutex};
    let _dog = common::Watchdog::arm(Duration::from_secs(170), "query --follow from ClickHouse");
    let ch = common::ClickHouse::start();
    let (d1, d2) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let s1 = common::store_of(d1.path(), "alpha", 200, 81);
    let s2 = common::store_of(d2.path(), "beta", 150, 82);
    let mut sh1 = Shipper::new(ch.config(1), d1.path()).expect("shipper");
    let mut sh2 = Shipper::new(ch.config(2), d2.path()).expect("shipper");
    common::ship_all(&mut sh1, &s1);
    common::ship_all(&mut sh2, &s2);
    let url = ch.url();

    // Without --follow: every node's events (no local store needed).
    let out = kaudit(&["query", "--clickhouse", &url, "--limit", "0", "-o", "jsonl"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut got: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    let mut want = lines_of(&s1, 0..200);
    want.extend(lines_of(&s2, 0..150));
    got.sort();
    want.sort();
    assert_eq!(got.len(), 350, "query --clickhouse: every node's events");
    assert!(got == want, "query --clickhouse printed other events");

    // --follow: the newest one, then what the nodes ship next.
    let mut child = Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .args([
            "query",
            "--clickhouse",
            &url,
            "--follow",
            "--limit",
            "1",
            "-o",
            "jsonl",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("KAUDIT_CONFIG")
        .env_remove("KAUDIT_DATA")
        .spawn()
        .expect("spawn kaudit query --follow");
    let printed = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let stdout = child.stdout.take().expect("stdout");
        let printed = printed.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                printed.lock().expect("lock").push(line);
            }
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains("following new events") => break,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                panic!("query --follow never started following: {e}");
            }
        }
    }
    // Node 2 ships its new events before node 1 does.
    common::append_generated(&s2, "beta", 120, 83, 10_000);
    common::ship_all(&mut sh2, &s2);
    common::append_generated(&s1, "alpha", 100, 84, 10_000);
    common::ship_all(&mut sh1, &s1);
    let mut want = lines_of(&s1, 200..300);
    want.extend(lines_of(&s2, 150..270));
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(60);
    while printed.lock().expect("lock").len() < 1 + want.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    // A little longer: nothing may come twice.
    std::thread::sleep(Duration::from_millis(1_500));
    let _ = child.kill();
    let _ = child.wait();
    let printed = printed.lock().expect("lock").clone();
    assert!(!printed.is_empty(), "no first page");
    let mut followed = printed[1..].to_vec();
    followed.sort();
    assert_eq!(
        followed.len(),
        want.len(),
        "followed events lost or repeated"
    );
    assert!(followed == want, "followed other events than were shipped");
}
