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
