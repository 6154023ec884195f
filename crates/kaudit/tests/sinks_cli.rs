//! `kaudit sinks status` reads sink cursors and the store offline.

use kaudit_event::MicroTime;
use kaudit_sinks::{CursorState, SinkDir};
use kaudit_store::{Record, Store, StoreOptions};
use std::process::Command;

fn kaudit(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .args(args)
        .env_remove("KAUDIT_DATA")
        .output()
        .expect("kaudit runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn status_reports_cursor_lag_and_counters_per_sink() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    {
        let store = Store::open(data, StoreOptions::default()).unwrap();
        let mut cfg = kaudit_gen::GenConfig::new(9);
        cfg.events = Some(250);
        let received = MicroTime(MicroTime::now().micros() - 3_600_000_000);
        let recs = kaudit_gen::Generator::new(cfg)
            .unwrap()
            .map(|g| Record {
                cluster: "c1".into(),
                received,
                event: g.bytes,
            })
            .collect();
        store.append_batch(recs).unwrap();
        store.close().unwrap();
    }
    let sd = SinkDir::new(data);
    sd.save(
        "siem",
        &CursorState {
            kind: "elasticsearch".into(),
            next: 200,
            sent: 190,
            failed: 3,
            retries: 7,
            last_error: Some("http://es:9200/_bulk: HTTP 503".into()),
            ..Default::default()
        },
    )
    .unwrap();
    sd.save(
        "archive",
        &CursorState {
            kind: "ocsf".into(),
            next: 250,
            sent: 250,
            ..Default::default()
        },
    )
    .unwrap();
    let d = data.to_str().unwrap();
    let (ok, out, err) = kaudit(&["sinks", "status", "--data", d, "-o", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sinks = v["sinks"].as_array().unwrap();
    assert_eq!(sinks.len(), 2);
    assert_eq!(sinks[0]["name"], "archive");
    assert_eq!(sinks[0]["lag_events"], 0);
    assert_eq!(sinks[0]["lag_seconds"], 0.0);
    assert_eq!(sinks[0]["up"], true);
    let s = &sinks[1];
    assert_eq!(s["name"], "siem");
    assert_eq!(s["type"], "elasticsearch");
    assert_eq!(s["cursor"], 200);
    assert_eq!(s["lag_events"], 50);
    let lag = s["lag_seconds"].as_f64().unwrap();
    assert!(
        (3599.0..3700.0).contains(&lag),
        "the oldest unsent event is an hour old: {lag}"
    );
    assert_eq!(
        (
            s["sent"].as_u64(),
            s["failed"].as_u64(),
            s["retries"].as_u64()
        ),
        (Some(190), Some(3), Some(7))
    );
    assert_eq!(s["up"], false);
    assert_eq!(s["last_error"], "http://es:9200/_bulk: HTTP 503");
    let (ok, out, _) = kaudit(&["sinks", "status", "--data", d]);
    assert!(ok);
    let row = out
        .lines()
        .find(|l| l.starts_with("siem"))
        .expect("a row per sink");
    for col in ["elasticsearch", "200", "50", "190", "no", "HTTP 503"] {
        assert!(row.contains(col), "{col} in {row}");
    }
}

#[test]
fn status_of_a_missing_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let (ok, _, err) = kaudit(&["sinks", "status", "--data", missing.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("nope"), "{err}");
}
