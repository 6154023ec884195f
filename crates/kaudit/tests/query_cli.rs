//! `kaudit query`, `stats`, `history`, `rbac` and `reindex` end to end on a
//! generated, imported store.

use std::path::Path;
use std::process::{Command, Output};

fn kaudit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .args(args)
        .output()
        .expect("run kaudit")
}

fn ok(args: &[&str]) -> String {
    let out = kaudit(args);
    assert!(
        out.status.success(),
        "kaudit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn setup(dir: &Path) -> (String, String) {
    let events = dir.join("ev.jsonl");
    let data = dir.join("data");
    ok(&[
        "gen",
        "--events",
        "3000",
        "--seed",
        "8",
        "-o",
        events.to_str().expect("path"),
    ]);
    ok(&[
        "import",
        "--data",
        data.to_str().expect("path"),
        events.to_str().expect("path"),
    ]);
    (
        events.to_str().expect("path").to_string(),
        data.to_str().expect("path").to_string(),
    )
}

#[test]
fn query_prints_exact_stored_bytes_newest_first_and_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, data) = setup(dir.path());
    let raw = std::fs::read_to_string(&events).expect("events");
    // Brute force over the input: every delete, as stored (the input is canonical v1).
    let mut want: Vec<(String, String)> = raw
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["verb"] == "delete").then(|| {
                (
                    v["stageTimestamp"].as_str().unwrap_or("").to_string(),
                    l.to_string(),
                )
            })
        })
        .collect();
    want.sort_by(|a, b| b.0.cmp(&a.0));
    // Piped stdout: jsonl by default.
    let out = ok(&["query", "--data", &data, "verb=delete", "--limit", "100000"]);
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), want.len());
    let mut got_sorted: Vec<&str> = got.clone();
    got_sorted.sort_unstable();
    let mut want_lines: Vec<&str> = want.iter().map(|w| w.1.as_str()).collect();
    want_lines.sort_unstable();
    assert_eq!(got_sorted, want_lines, "exact stored bytes");
    let times: Vec<String> = got
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["stageTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    // Pages through --cursor cover the same rows.
    let first = kaudit(&["query", "--data", &data, "verb=delete", "--limit", "7"]);
    let err = String::from_utf8_lossy(&first.stderr).to_string();
    let cursor = err
        .split("--cursor ")
        .nth(1)
        .expect("cursor hint")
        .trim()
        .to_string();
    let second = ok(&[
        "query",
        "--data",
        &data,
        "verb=delete",
        "--limit",
        "7",
        "--cursor",
        &cursor,
    ]);
    assert_eq!(second.lines().collect::<Vec<_>>(), got[7..14].to_vec());
    // Reverse is oldest first; csv has a header and one row per event.
    let rev = ok(&[
        "query",
        "--data",
        &data,
        "verb=delete",
        "--limit",
        "100000",
        "--reverse",
    ]);
    assert_eq!(rev.lines().rev().collect::<Vec<_>>(), got);
    let csv = ok(&[
        "query",
        "--data",
        &data,
        "verb=delete",
        "--limit",
        "5",
        "-o",
        "csv",
    ]);
    assert!(
        csv.starts_with("TIME,USER,VERB,OBJECT,CODE,IP,STAGE,CLUSTER,USERAGENT,AUDITID\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 6);
}

#[test]
fn bad_queries_point_at_the_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, data) = setup(dir.path());
    let out = kaudit(&["query", "--data", &data, "verb=get usr=alice"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown field \"usr\" at column 10; did you mean \"user\"?"),
        "{err}"
    );
    assert!(
        err.contains("\n           ^"),
        "caret under column 10: {err}"
    );
}

#[test]
fn stats_history_rbac_and_reindex() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, data) = setup(dir.path());
    let raw = std::fs::read_to_string(&events).expect("events");
    let mut per_verb: std::collections::HashMap<String, u64> = Default::default();
    for l in raw.lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("json");
        *per_verb
            .entry(v["verb"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    let out = ok(&[
        "stats", "--data", &data, "--by", "verb", "--top", "0", "-o", "json",
    ]);
    let r: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(r["total"], 3000);
    for row in r["rows"].as_array().expect("rows") {
        let verb = row["key"][0].as_str().expect("verb");
        assert_eq!(row["count"].as_u64(), per_verb.get(verb).copied(), "{verb}");
    }
    let hist = ok(&["stats", "--data", &data, "--every", "1m", "--latency"]);
    assert!(
        hist.contains("P99") && hist.contains("3000 matching events"),
        "{hist}"
    );
    // History of an object that was written.
    let v: serde_json::Value = raw
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|v| {
            v["verb"] == "patch"
                && v["objectRef"]["namespace"].is_string()
                && v["objectRef"]["name"].is_string()
        })
        .expect("a patch");
    let o = &v["objectRef"];
    let target = format!(
        "{}/{}/{}",
        o["resource"].as_str().expect("r"),
        o["namespace"].as_str().expect("ns"),
        o["name"].as_str().expect("n")
    );
    let h = ok(&["history", "--data", &data, &target, "-o", "json"]);
    let entries: serde_json::Value = serde_json::from_str(&h).expect("json");
    assert!(
        entries
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["auditID"] == v["auditID"]),
        "{target}"
    );
    let user = v["user"]["username"].as_str().expect("user");
    let s = ok(&["history", "--data", &data, "--user", user]);
    assert!(s.starts_with("session 1: "), "{s}");
    let yaml = ok(&["rbac", "--data", &data, "--user", user]);
    assert!(
        yaml.contains("kind: ") && yaml.contains("Binding"),
        "{yaml}"
    );
    // Reindex rebuilds from the store; answers stay the same.
    let before = ok(&["query", "--data", &data, "verb=patch", "--limit", "50"]);
    let out = kaudit(&["reindex", "--data", &data]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("indexed 3000 records"));
    assert_eq!(
        ok(&["query", "--data", &data, "verb=patch", "--limit", "50"]),
        before
    );
}

#[test]
fn query_streams_every_page_up_to_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, data) = setup(dir.path());
    // The whole answer in one page.
    let all = ok(&["query", "--data", &data, "verb=get", "--limit", "0"]);
    let all: Vec<&str> = all.lines().collect();
    assert!(all.len() > 40, "enough events to page: {}", all.len());
    // Small pages: every event once, in the same order, no cursor hint.
    for page in ["7", "40"] {
        let out = kaudit(&[
            "query",
            "--data",
            &data,
            "verb=get",
            "--limit",
            "0",
            "--page-size",
            page,
        ]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(text.lines().collect::<Vec<_>>(), all, "page size {page}");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("--cursor"),
            "everything came out"
        );
    }
    // A limit past one page: exactly that many, then a cursor to continue.
    let out = kaudit(&[
        "query",
        "--data",
        &data,
        "verb=get",
        "--limit",
        "25",
        "--page-size",
        "7",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(text.lines().collect::<Vec<_>>(), all[..25].to_vec());
    assert!(String::from_utf8_lossy(&out.stderr).contains("more results: --cursor"));
    // One JSON array across pages.
    let json = ok(&[
        "query",
        "--data",
        &data,
        "verb=get",
        "--limit",
        "0",
        "--page-size",
        "7",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("one array");
    assert_eq!(v.as_array().map(Vec::len), Some(all.len()));
}
