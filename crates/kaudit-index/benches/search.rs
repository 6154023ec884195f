//! Search benchmark on kaudit-gen traffic, each figure next to a baseline
//! measured in the same run over the same JSON lines:
//!
//! * import into the store, then indexing (events/s), index bytes/event;
//! * needle queries (user+verb, auditID, object name), p50/p99 over repeated
//!   runs, vs `jq` and `rg` (ripgrep) scanning the raw JSON lines once;
//! * `stats --by user --top 10` and a 1-minute histogram over everything,
//!   vs ClickHouse (chdb, in-process) loaded with the same events, when the
//!   Python module `chdb` is installed (`pip install chdb`).
//!
//! Run: `BENCH_EVENTS=1000000 cargo bench -p kaudit-index --bench search`
//! (or bench/search.sh). BENCH_DIR keeps the data between runs.

use kaudit_event::{Event, MicroTime};
use kaudit_index::search::SearchRequest;
use kaudit_index::stats::StatsRequest;
use kaudit_index::{EmbeddedBackend, SearchBackend};
use kaudit_query::{Field, Query};
use kaudit_store::{LogReader, Record, Store, StoreOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn time_runs(runs: usize, mut f: impl FnMut() -> usize) -> (f64, f64, usize) {
    let mut ms = Vec::new();
    let mut n = 0;
    for _ in 0..runs {
        let t = Instant::now();
        n = f();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (pct(ms.clone(), 0.5), pct(ms, 0.99), n)
}

fn external(cmd: &mut Command) -> Option<(f64, usize)> {
    let t = Instant::now();
    let out = cmd.output().ok()?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() && out.status.code() != Some(1) {
        return None;
    }
    Some((
        secs * 1e3,
        out.stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
    ))
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn main() {
    let n: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let keep = std::env::var_os("BENCH_DIR").map(PathBuf::from);
    let tmp = tempfile::tempdir().expect("tempdir");
    let root: PathBuf = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&root).expect("bench dir");
    let raw_path = root.join(format!("events-{n}.jsonl"));
    let data = root.join(format!("store-{n}"));
    let fresh = !data.join("segments").is_dir();
    if fresh {
        let mut cfg = kaudit_gen::GenConfig::new(7);
        cfg.events = Some(n);
        cfg.spread_incidents();
        let mut g = kaudit_gen::Generator::new(cfg).expect("generator");
        let names = g.cluster_names().to_vec();
        let mut raw = std::io::BufWriter::new(std::fs::File::create(&raw_path).expect("raw file"));
        let store = Store::open(&data, StoreOptions::default()).expect("store");
        let t = Instant::now();
        let mut tx = store.transaction().expect("tx");
        let mut line = Vec::new();
        let mut i = 0i64;
        while let Some(c) = g.next_into(&mut line) {
            raw.write_all(&line).expect("write");
            raw.write_all(b"\n").expect("write");
            let ev = Event::from_json(&line).expect("event");
            tx.push(&Record {
                cluster: names[c].clone(),
                received: MicroTime(1_800_000_000_000_000 + i),
                event: ev.bytes().to_vec(),
            })
            .expect("push");
            line.clear();
            i += 1;
            if i % 200_000 == 0 {
                tx.commit().expect("commit");
                tx = store.transaction().expect("tx");
            }
        }
        tx.commit().expect("commit");
        store.checkpoint().expect("checkpoint");
        let secs = t.elapsed().as_secs_f64();
        raw.flush().expect("flush");
        println!(
            "store import (generation included): {n} events in {secs:.1}s = {:.0} events/s",
            n as f64 / secs
        );
    }
    let raw_bytes = std::fs::metadata(&raw_path).map(|m| m.len()).unwrap_or(0);
    println!(
        "input: {n} kaudit-gen events, {:.1} MB of JSON lines ({:.0} B/event)",
        raw_bytes as f64 / 1e6,
        raw_bytes as f64 / n as f64
    );
    let t = Instant::now();
    let store = Arc::new(Store::open(&data, StoreOptions::default()).expect("store"));
    println!("store open: {:.2}s", t.elapsed().as_secs_f64());
    let reader: Arc<dyn LogReader + Send + Sync> = store.clone();
    let backend = EmbeddedBackend::open(&data, reader).expect("backend");
    let before = backend.progress().expect("progress").0;
    let t = Instant::now();
    let added = backend.catch_up().expect("index");
    let secs = t.elapsed().as_secs_f64();
    if added > 0 {
        println!(
            "indexing: {added} events in {secs:.1}s = {:.0} events/s (from {before})",
            added as f64 / secs
        );
    }
    let ix_bytes: u64 = std::fs::read_dir(data.join("search"))
        .expect("index dir")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum();
    println!(
        "index: {:.1} MB = {:.1} B/event (target <= 40)",
        ix_bytes as f64 / 1e6,
        ix_bytes as f64 / n as f64
    );

    // Needles taken from the data: a user+verb pair, an auditID, an object name.
    let mut mid = None;
    store
        .read(n / 2..n / 2 + 5000, &mut |_, l| {
            let ev = Event::from_json(l.event).expect("event");
            let d = ev.doc();
            if d.verb == "delete"
                && d.object_ref.as_ref().is_some_and(|o| !o.name.is_empty())
                && d.user.username.ends_with("@example.com")
            {
                mid = Some((
                    d.user.username.clone(),
                    d.audit_id.clone(),
                    d.object_ref
                        .as_ref()
                        .map(|o| o.name.clone())
                        .unwrap_or_default(),
                ));
                return false;
            }
            true
        })
        .expect("read");
    let (user, audit_id, name) = mid.expect("a delete by a human in the middle of the data");
    let needles = [
        (
            "user+verb",
            format!("user=\"{user}\" verb=delete"),
            format!("select(.user.username==\"{user}\" and .verb==\"delete\")"),
            format!(
                "\"verb\":\"delete\",\"user\":\\{{\"username\":\"{}\"",
                regex_escape(&user)
            ),
        ),
        (
            "auditID",
            format!("auditid=\"{audit_id}\""),
            format!("select(.auditID==\"{audit_id}\")"),
            format!("\"auditID\":\"{audit_id}\""),
        ),
        (
            "object name",
            format!("name=\"{name}\""),
            format!("select(.objectRef.name==\"{name}\")"),
            format!("\"name\":\"{}\"", regex_escape(&name)),
        ),
    ];
    // BENCH_BASELINES: "0" none, "rg" ripgrep only (jq takes minutes at 10M), else both.
    let baselines = std::env::var("BENCH_BASELINES").unwrap_or_default();
    let jq = baselines != "0" && baselines != "rg" && have("jq");
    let rg = baselines != "0" && have("rg");
    println!("\nneedle queries (limit 100, newest first, every hit confirmed against the stored event; 30 runs):");
    for (label, q, jq_filter, rg_pat) in &needles {
        let query = Query::parse(q).expect("query");
        let (p50, p99, hits) = time_runs(30, || {
            backend
                .search(&SearchRequest::new(query.clone(), 100))
                .expect("search")
                .hits
                .len()
        });
        let mut line =
            format!("  {label:<12} kaudit p50 {p50:.2} ms  p99 {p99:.2} ms  ({hits} hits)");
        if jq {
            if let Some((ms, c)) =
                external(Command::new("jq").args(["-c", jq_filter]).arg(&raw_path))
            {
                line.push_str(&format!(" | jq {ms:.0} ms ({c} lines) = {:.0}x", ms / p50));
            }
        }
        if rg {
            if let Some((ms, c)) = external(Command::new("rg").args(["-c", rg_pat]).arg(&raw_path))
            {
                let _ = c;
                line.push_str(&format!(" | rg {ms:.0} ms = {:.1}x", ms / p50));
            }
        }
        println!("{line}");
    }
    if !jq || !rg {
        println!("  (baselines need: apt-get install jq ripgrep)");
    }
    let all = Query::parse("").expect("q");
    let top = StatsRequest {
        query: all.clone(),
        since: None,
        until: None,
        by: vec![Field::User],
        top: 10,
        every: None,
        latency: false,
    };
    let (p50, p99, _) = time_runs(10, || backend.stats(&top).expect("stats").rows.len());
    println!("\nstats --by user --top 10 over all {n}: p50 {p50:.1} ms  p99 {p99:.1} ms");
    let hist = StatsRequest {
        every: Some(60_000_000),
        by: Vec::new(),
        top: 0,
        ..top.clone()
    };
    let (h50, h99, buckets) = time_runs(10, || backend.stats(&hist).expect("stats").rows.len());
    println!(
        "1-minute histogram over all {n}: p50 {h50:.1} ms  p99 {h99:.1} ms ({buckets} buckets)"
    );
    let lat = StatsRequest {
        by: vec![Field::Verb],
        latency: true,
        top: 10,
        ..top.clone()
    };
    let (l50, _, _) = time_runs(5, || backend.stats(&lat).expect("stats").rows.len());
    println!("stats --by verb --latency (p50/p90/p99 per verb): p50 {l50:.1} ms");
    let chdb_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/chdb_search.py");
    let has_chdb = Command::new("python3")
        .args(["-c", "import chdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_chdb {
        println!("\nClickHouse (chdb, same events, typed columns + raw JSON ZSTD(3), MergeTree ordered by time, query cache off):");
        let out = Command::new("python3")
            .arg(&chdb_script)
            .arg(&raw_path)
            .arg(root.join(format!("chdb-{n}")))
            .args([&user, &audit_id, &name])
            .arg(format!("{p50}"))
            .arg(format!("{h50}"))
            .output()
            .expect("python3");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    } else {
        println!("\n(ClickHouse comparison skipped: pip install chdb)");
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '@' || c == ':' || c == '_' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}
