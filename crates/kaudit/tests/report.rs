//! `kaudit report` and `kaudit report verify` as processes: a generated
//! month with incidents, its bundle verified offline, a tampered bundle
//! refused with the file named, and -o pdf without Chromium explained.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

fn kaudit(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run kaudit")
}

fn ok(dir: &Path, args: &[&str]) -> Output {
    let o = kaudit(dir, args);
    assert!(
        o.status.success(),
        "kaudit {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

#[test]
fn generated_month_report_bundle_verifies_and_tampering_is_named() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    ok(
        d,
        &[
            "gen",
            "-n",
            "3000",
            "--clusters",
            "2",
            "-o",
            "ev.jsonl",
            "--incidents",
            "inc.json",
        ],
    );
    ok(d, &["import", "--data", "data", "ev.jsonl"]);
    let json = ok(
        d,
        &[
            "report",
            "--data",
            "data",
            "--period",
            "2026-01",
            "--no-verify",
            "--max-rows",
            "5000",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("report JSON");
    let incidents: Vec<kaudit_gen::Incident> =
        serde_json::from_slice(&std::fs::read(d.join("inc.json")).expect("incidents"))
            .expect("parse");
    let section = |id: &str| -> BTreeSet<String> {
        report["sections"]
            .as_array()
            .expect("sections")
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("section {id}"))["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["auditID"].as_str().expect("auditID").to_string())
            .collect()
    };
    let ids = |k: kaudit_gen::IncidentKind| -> BTreeSet<String> {
        incidents
            .iter()
            .filter(|i| i.kind == k)
            .flat_map(|i| i.audit_ids.clone())
            .collect()
    };
    assert_eq!(
        section("cluster_admin"),
        ids(kaudit_gen::IncidentKind::ClusterAdminBinding)
    );
    assert_eq!(
        section("webhooks"),
        ids(kaudit_gen::IncidentKind::WebhookConfigChanged)
    );

    ok(
        d,
        &[
            "report",
            "--data",
            "data",
            "--period",
            "2026-01",
            "-o",
            "bundle",
            "--out",
            "e.tar.zst",
        ],
    );
    let v = ok(
        d,
        &[
            "report",
            "verify",
            "e.tar.zst",
            "--key",
            "data/checkpoint.pub",
        ],
    );
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("OK:"));

    // Flip one byte of the compressed bundle: refused, and said why.
    let mut b = std::fs::read(d.join("e.tar.zst")).expect("bundle");
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(d.join("bad.tar.zst"), &b).expect("write");
    let bad = kaudit(
        d,
        &[
            "report",
            "verify",
            "bad.tar.zst",
            "--key",
            "data/checkpoint.pub",
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("FAILED"));

    // Another key: the manifest is named.
    let kg = ok(d, &["keygen", "-o", "other.key"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&kg.stdout),
        String::from_utf8_lossy(&kg.stderr)
    );
    let other_key = text
        .lines()
        .rfind(|l| l.contains('+'))
        .expect("verifier key")
        .trim()
        .to_string();
    let other = kaudit(d, &["report", "verify", "e.tar.zst", "--key", &other_key]);
    assert_eq!(
        other.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&other.stdout)
    );
    assert!(String::from_utf8_lossy(&other.stderr).contains("MANIFEST"));

    let pdf = kaudit(
        d,
        &[
            "report",
            "--data",
            "data",
            "--period",
            "2026-01",
            "--no-verify",
            "-o",
            "pdf",
            "--chromium",
            "/nonexistent/chromium",
        ],
    );
    assert!(!pdf.status.success());
    assert!(String::from_utf8_lossy(&pdf.stderr).contains("install"));
}

/// A report whose consistency proof would reach into a pruned range: the
/// library falls back to the anchor alone and `report verify` prints why.
#[test]
fn report_verify_prints_the_pruned_consistency_note() {
    use kaudit_event::MicroTime;
    use kaudit_store::{Record, Store, StoreOptions};
    use std::sync::Arc;
    let t = tempfile::tempdir().expect("tempdir");
    let data = t.path().join("data");
    let opts = || StoreOptions {
        segment_target_bytes: 64 << 10,
        bundle_max_records: 256,
        ..StoreOptions::default()
    };
    let store = Store::open(&data, opts()).expect("store");
    let mut cfg = kaudit_gen::GenConfig::new(3);
    cfg.events = Some(6_000);
    let mut g = kaudit_gen::Generator::new(cfg).expect("gen");
    let mut line = Vec::new();
    let mut batch = Vec::new();
    let mut n = 0i64;
    while g.next_into(&mut line).is_some() {
        batch.push(Record {
            cluster: "c1".into(),
            received: MicroTime(1_767_603_600_000_000 + n),
            event: std::mem::take(&mut line),
        });
        n += 1;
        if batch.len() == 3_000 {
            store
                .append_batch(std::mem::take(&mut batch))
                .expect("append");
            store.checkpoint().expect("checkpoint");
        }
    }
    let retention = kaudit_store::retention::Retention {
        max_age_secs: None,
        max_size: Some(1),
    };
    store
        .prune(&retention, &[], MicroTime::now(), false)
        .expect("prune");
    let store = Arc::new(store);
    let backend = kaudit_index::EmbeddedBackend::open(&data, store.clone()).expect("index");
    backend.catch_up().expect("catch up");
    let since = MicroTime::parse("2026-01-01T00:00:00Z")
        .expect("t")
        .micros();
    let until = MicroTime::now().micros() + 86_400_000_000;
    let mut req = kaudit_report::ReportRequest::new(
        kaudit_report::Template::builtin("soc2").expect("template"),
        since,
        until,
        MicroTime::now(),
    );
    req.verify_store = false;
    let inputs = kaudit_report::Inputs {
        store: &store,
        backend: &backend,
        alerts: None,
        quarantined: Vec::new(),
    };
    let ev = kaudit_report::build(&req, &inputs).expect("report");
    assert_eq!(ev.report.proof_notes.len(), 1, "the fallback is noted");
    // Rows whose audit path crosses the pruned range are counted, not
    // listed, and said so (this data has some: the build failed before).
    assert!(
        ev.report.sections.iter().any(|s| s
            .notes
            .iter()
            .any(|n| n.contains("needs hashes of a pruned range"))),
        "{:?}",
        ev.report
            .sections
            .iter()
            .map(|s| &s.notes)
            .collect::<Vec<_>>()
    );
    let signer = kaudit_store::load_signer(&data, &StoreOptions::default(), false)
        .expect("key")
        .expect("signing key");
    std::fs::write(
        t.path().join("b.tar.zst"),
        kaudit_report::bundle::write(&ev, &signer).expect("bundle"),
    )
    .expect("write");
    let key = signer.verifier().text();
    let out = ok(t.path(), &["report", "verify", "b.tar.zst", "--key", &key]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("OK: "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("NOTE: no consistency proof") && l.contains("pruned")),
        "{text}"
    );
}
