//! The SQL kaudit writes works on Debian's clickhouse-server 18.16 and on
//! current ClickHouse (chdb, in-process, from PyPI) alike: the same DDL and
//! the same generated statements (searches with cursors, both steps of an
//! exact search, candidate reads, field values, stats and time spans
//! aggregated in SQL) over the same rows give byte-identical RowBinary
//! answers. Rows 100..400 are in the table twice, inside a recorded resent
//! range, so the aggregates' two-branch deduplication runs on both.
//!
//! chdb runs in a Python from `CHDB_PYTHON` (scripts/test.sh makes a
//! venv with `pip install chdb` at target/chdb-venv); missing is a failure.

mod common;

use base64::Engine;
use kaudit_clickhouse::resent::Resent;
use kaudit_clickhouse::schema::{encode_row, row_columns, Tables};
use kaudit_clickhouse::sql::quote;
use kaudit_clickhouse::ClickHouseBackend;
use kaudit_index::SearchRequest;
use kaudit_query::{Field, Query};
use kaudit_store::LogReader;
use std::path::PathBuf;

const SCRIPT: &str = r#"
import sys, json, base64
from chdb import session
req = json.load(open(sys.argv[1]))
s = session.Session(sys.argv[2])
for st in req["setup"]:
    s.query(st)
out = []
for q in req["queries"]:
    try:
        out.append({"ok": base64.b64encode(s.query(q, "RowBinary").bytes()).decode()})
    except Exception as e:
        out.append({"err": str(e)})
json.dump(out, open(sys.argv[3], "w"))
"#;

fn chdb_python() -> PathBuf {
    let p = std::env::var_os("CHDB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/chdb-venv/bin/python")
        });
    assert!(
        p.exists(),
        "{}: no Python with chdb; set CHDB_PYTHON or run scripts/test.sh (python3 -m venv target/chdb-venv && target/chdb-venv/bin/pip install chdb)",
        p.display()
    );
    p
}

/// The rows (sequence numbers) inserted twice.
const DUP_LO: u64 = 100;
const DUP_HI: u64 = 400;

#[test]
fn same_ddl_and_queries_same_answers_on_18_16_and_current_clickhouse() {
    let python = chdb_python();
    let ch = common::ClickHouse::start();
    let dir = tempfile::tempdir().expect("tmp");
    let store = common::store_of(dir.path(), "alpha", 1_500, 31);
    let cfg = ch.config(3);
    let backend = ClickHouseBackend::open(&cfg).expect("open on 18.16");
    let tables = Tables::new(&cfg);
    // The same rows into both.
    let mut body = Vec::new();
    let mut dup = Vec::new();
    let mut leaf = Vec::new();
    LogReader::read(&store, 0..store.len(), &mut |seq, l| {
        let ev = kaudit_event::Event::from_json(l.event).ok();
        if (DUP_LO..DUP_HI).contains(&seq) {
            encode_row(
                &mut dup,
                3,
                "node-3",
                seq,
                l.cluster,
                l.received,
                l.event,
                ev.as_ref(),
                &mut leaf,
            );
        }
        encode_row(
            &mut body,
            3,
            "node-3",
            seq,
            l.cluster,
            l.received,
            l.event,
            ev.as_ref(),
            &mut leaf,
        );
        true
    })
    .expect("read");
    let insert = format!(
        "INSERT INTO {}.{} ({}) FORMAT RowBinary",
        tables.db,
        tables.events,
        Tables::insert_columns()
    );
    backend
        .client()
        .insert(&insert, body.clone())
        .expect("insert 18.16");
    backend
        .client()
        .insert(&insert, dup.clone())
        .expect("insert duplicates 18.16");
    let record = format!(
        "INSERT INTO {}.{} (node_id, lo, hi, recorded) VALUES (3, {DUP_LO}, {DUP_HI}, 0)",
        tables.db, tables.resent
    );
    backend
        .client()
        .execute(&record)
        .expect("record range 18.16");
    let resent = backend.resent().expect("resent");
    assert_eq!(resent, Resent::from_ranges([(3, DUP_LO, DUP_HI)]));
    assert_eq!(backend.count().expect("count"), 1_500, "duplicates counted");
    let rows_file = dir.path().join("rows.bin");
    std::fs::write(&rows_file, &body).expect("rows");
    let dup_file = dir.path().join("dup.bin");
    std::fs::write(&dup_file, &dup).expect("dup rows");
    let structure: Vec<String> = row_columns()
        .iter()
        .map(|(n, t)| format!("{n} {t}"))
        .collect();
    let mut setup: Vec<String> = tables
        .create_statements()
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    setup.push(format!(
        "INSERT INTO {}.{} ({}) SELECT * FROM file({}, 'RowBinary', {})",
        tables.db,
        tables.events,
        Tables::insert_columns(),
        quote(&rows_file.display().to_string()),
        quote(&structure.join(", "))
    ));
    setup.push(format!(
        "INSERT INTO {}.{} ({}) SELECT * FROM file({}, 'RowBinary', {})",
        tables.db,
        tables.events,
        Tables::insert_columns(),
        quote(&dup_file.display().to_string()),
        quote(&structure.join(", "))
    ));
    setup.push(record.clone());

    // The statements kaudit generates.
    let mut queries = Vec::new();
    for q in [
        "",
        "verb=get,list resource=pods",
        "user=system:* not verb=watch",
        "group=system:authenticated ip=10.0.0.0/8",
        "code>=400 or useragent=kubectl*",
        "\"kube-system\" not namespace=default",
        "namespace!=kube-system name<m stage=ResponseComplete",
        "user=~'x.*' apigroup=core",
    ] {
        let query = Query::parse(q).expect(q);
        let mut req = SearchRequest::new(query.clone(), 50);
        queries.push(backend.search_statement(&req, None, 50));
        queries.push(backend.search_statement(&req, Some((1_800_000_000_000_000, 99)), 50));
        req.reverse = true;
        req.since = Some(0);
        req.until = Some(i64::MAX);
        queries.push(backend.search_statement(&req, Some((0, 5)), 20));
        queries.push(backend.candidates_statement(&query, None, None, 0..u64::MAX >> 1));
        queries.push(backend.search_keys_statement(&req, 20));
        req.reverse = false;
        req.since = None;
        req.until = None;
        queries.push(backend.search_keys_statement(&req, 50));
        if let Some(s) = backend.time_span_statement(&query, None, Some(i64::MAX)) {
            queries.push(s);
        }
        for (by, every, latency, top) in [
            (vec![Field::User], None, false, 10),
            (vec![Field::Group, Field::Code], None, true, 0),
            (vec![Field::Resource], Some(60_000_000), true, 5),
            (vec![], Some(3_600_000_000), false, 0),
        ] {
            let req = kaudit_index::StatsRequest {
                query: query.clone(),
                since: None,
                until: None,
                by,
                top,
                every,
                latency,
            };
            if let Some(st) = backend.stats_statements(&req, &resent) {
                queries.push(st.total);
                queries.push(st.groups);
            }
        }
    }
    // The second step of a search: the bytes of rows named by their keys
    // (read here from 18.16's answer to a first step).
    let first = backend
        .client()
        .query_bytes(&backend.search_keys_statement(
            &SearchRequest::new(Query::parse("verb=get").expect("q"), 30),
            30,
        ))
        .expect("keys");
    let keys: Vec<(i64, u64)> = first
        .chunks_exact(16)
        .map(|c| {
            let g = u64::from_le_bytes(c[..8].try_into().expect("8"));
            let t = i64::from_le_bytes(c[8..].try_into().expect("8"));
            (t, g)
        })
        .collect();
    assert!(keys.len() == 30, "first step found {} rows", keys.len());
    queries.push(backend.rows_statement(&keys));
    for (f, p) in [
        (Field::User, ""),
        (Field::Group, "system:"),
        (Field::Code, "2"),
        (Field::Stage, ""),
    ] {
        queries.push(
            backend
                .field_values_statement(&f, p, 20, &resent)
                .expect("statement"),
        );
    }
    let req_file = dir.path().join("req.json");
    let out_file = dir.path().join("out.json");
    std::fs::write(
        &req_file,
        serde_json::to_vec(&serde_json::json!({"setup": setup, "queries": queries})).expect("json"),
    )
    .expect("req");
    let script = dir.path().join("run.py");
    std::fs::write(&script, SCRIPT).expect("script");
    let st = std::process::Command::new(&python)
        .arg(&script)
        .arg(&req_file)
        .arg(dir.path().join("chdb"))
        .arg(&out_file)
        .status()
        .expect("run chdb");
    assert!(st.success(), "chdb run failed: {st}");
    let answers: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&out_file).expect("out")).expect("answers");
    assert_eq!(answers.len(), queries.len());
    let mut nonempty = 0;
    for (q, a) in queries.iter().zip(&answers) {
        let new = match a.get("ok").and_then(|v| v.as_str()) {
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .expect("b64"),
            None => panic!("current ClickHouse refused {q}: {a}"),
        };
        let old = backend
            .client()
            .query_bytes(q)
            .unwrap_or_else(|e| panic!("18.16 refused {q}: {e}"));
        if !old.is_empty() {
            nonempty += 1;
        }
        assert!(
            old == new,
            "answers differ ({} vs {} bytes) for {q}",
            old.len(),
            new.len()
        );
    }
    assert!(
        nonempty >= queries.len() / 2,
        "too few statements selected rows: {nonempty}"
    );
}
