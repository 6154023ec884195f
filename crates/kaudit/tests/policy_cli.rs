//! `kaudit policy` end to end: the eight real policies, the Falco traces,
//! and the hand-checked simulate fixture.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kaudit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .args(args)
        .output()
        .expect("running kaudit")
}

fn conformance() -> PathBuf {
    let dir = std::env::var_os("KAUDIT_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
        });
    assert!(
        dir.join("k8s/policies").is_dir() && dir.join("falco/traces").is_dir(),
        "conformance data missing at {} (set KAUDIT_CONFORMANCE)",
        dir.display()
    );
    dir
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../kaudit-policy/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn policies() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(conformance().join("k8s/policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    v.sort();
    assert_eq!(v.len(), 8);
    v
}

fn traces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(conformance().join("falco/traces"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| !p.ends_with("fal_01_003.json"))
        .map(|p| p.display().to_string())
        .collect();
    v.sort();
    assert_eq!(v.len(), 46);
    v
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn lint_all_eight_policies() {
    let mut total = 0;
    for p in policies() {
        let out = kaudit(&["policy", "lint", "-o", "json", &p]);
        ok(&out);
        let rows = json_lines(&out);
        for r in &rows {
            assert_eq!(r["severity"], "warning", "{p}: {r}");
            assert!(r["check"].is_string() && r["message"].is_string());
        }
        total += rows.len();
        let strict = kaudit(&["policy", "lint", "--strict", "-o", "json", &p]);
        assert_eq!(
            strict.status.code(),
            Some(if rows.is_empty() { 0 } else { 2 }),
            "{p}"
        );
    }
    assert_eq!(total, 19, "findings across the eight policies");
}

#[test]
fn lint_reports_validation_errors_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.yaml");
    std::fs::write(
        &p,
        "apiVersion: audit.k8s.io/v1\nrules:\n- level: Metadata\n  nonResourceURLs: [logs]\n- {}\n",
    )
    .unwrap();
    let out = kaudit(&["policy", "lint", "-o", "json", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let rows = json_lines(&out);
    let msgs: Vec<&str> = rows
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        msgs,
        vec![
            "rules[0].nonResourceURLs[0]: Invalid value: \"logs\": non-resource URL rules must begin with a '/' character",
            "rules[1].level: Required value",
        ]
    );
    assert_eq!(rows[1]["rule"], 1);
}

#[test]
fn explain_events_as_json_lines() {
    let out = kaudit(&[
        "policy",
        "explain",
        "-o",
        "json",
        &fixture("simulate_policy.yaml"),
        &fixture("simulate_events.jsonl"),
    ]);
    ok(&out);
    let rows = json_lines(&out);
    let got: Vec<(String, Value, String, bool)> = rows
        .iter()
        .map(|r| {
            let mut keys: Vec<&String> = r.as_object().unwrap().keys().collect();
            keys.sort();
            assert_eq!(
                keys,
                [
                    "auditID",
                    "keep",
                    "level",
                    "omitManagedFields",
                    "omitStages",
                    "rule",
                    "stage"
                ]
            );
            assert_eq!(r["omitStages"], serde_json::json!(["RequestReceived"]));
            (
                r["auditID"].as_str().unwrap().to_string(),
                r["rule"].clone(),
                r["level"].as_str().unwrap().to_string(),
                r["keep"].as_bool().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, Value, String, bool)> = [
        ("e1", Value::from(0), "None", false),
        ("e2", Value::from(1), "Metadata", true),
        ("e3", Value::from(2), "Request", false),
        ("e3", Value::from(2), "Request", true),
        ("e4", Value::from(3), "RequestResponse", true),
        ("e5", Value::Null, "None", false),
        ("e6", Value::from(3), "RequestResponse", true),
    ]
    .into_iter()
    .map(|(a, b, c, d)| (a.to_string(), b, c.to_string(), d))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn explain_request_from_flags() {
    let gce = policies().into_iter().find(|p| p.contains("gce")).unwrap();
    let out = kaudit(&[
        "policy",
        "explain",
        "-o",
        "json",
        &gce,
        "--user",
        "system:kube-proxy",
        "--verb",
        "watch",
        "--resource",
        "endpoints",
    ]);
    ok(&out);
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["rule"], 0);
    assert_eq!(rows[0]["level"], "None");
    assert_eq!(rows[0]["keep"], false);
    let out = kaudit(&[
        "policy",
        "explain",
        "-o",
        "json",
        &gce,
        "--verb",
        "get",
        "--path",
        "/healthz/etcd",
    ]);
    ok(&out);
    assert_eq!(json_lines(&out)[0]["rule"], 8);
    let out = kaudit(&[
        "policy",
        "explain",
        "-o",
        "table",
        &gce,
        "--user",
        "alice",
        "--verb",
        "create",
        "--resource",
        "secrets",
        "--namespace",
        "default",
    ]);
    ok(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("rule 13: {\"level\":\"Metadata\""), "{text}");
    assert!(!kaudit(&["policy", "explain", &gce]).status.success());
}

#[test]
fn explain_and_simulate_falco_traces_with_every_policy() {
    let traces = traces();
    for p in policies() {
        let mut args = vec!["policy", "explain", "-o", "json", p.as_str()];
        args.extend(traces.iter().map(String::as_str));
        let out = kaudit(&args);
        ok(&out);
        assert_eq!(json_lines(&out).len(), 51, "{p}");

        let mut args = vec!["policy", "simulate", "-o", "json", p.as_str()];
        args.extend(traces.iter().map(String::as_str));
        let out = kaudit(&args);
        ok(&out);
        let v = &json_lines(&out)[0]["report"];
        let total = &v["total"];
        assert_eq!(total["events_in"], 51, "{p}");
        let per_rule: u64 = v["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["events_in"].as_u64().unwrap())
            .sum();
        assert_eq!(
            per_rule, 51,
            "{p}: every event is counted under exactly one rule"
        );
        assert!(total["bytes_kept"].as_u64() <= total["bytes_in"].as_u64());
    }
}

#[test]
fn non_event_trace_is_reported_with_location() {
    let p = policies().into_iter().next().unwrap();
    let bad = conformance().join("falco/traces/fal_01_003.json");
    let bad = bad.to_str().unwrap();
    let out = kaudit(&["policy", "explain", "-o", "json", &p, bad]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("fal_01_003.json:1:") && err.contains("not a Kubernetes audit event"),
        "{err}"
    );
    let out = kaudit(&["policy", "explain", "-o", "json", "--skip-invalid", &p, bad]);
    ok(&out);
    assert!(json_lines(&out).is_empty());
}

#[test]
fn simulate_figures_match_the_hand_checked_fixture() {
    let gce = policies().into_iter().find(|p| p.contains("gce")).unwrap();
    let out = kaudit(&[
        "policy",
        "simulate",
        "-o",
        "json",
        &fixture("simulate_policy.yaml"),
        &fixture("simulate_events.jsonl"),
        "--compare",
        &gce,
    ]);
    ok(&out);
    let v = &json_lines(&out)[0];
    let t = &v["report"]["total"];
    assert_eq!(
        (
            t["events_in"].as_u64(),
            t["events_kept"].as_u64(),
            t["bytes_in"].as_u64(),
            t["bytes_kept"].as_u64()
        ),
        (Some(7), Some(4), Some(3166), Some(1678))
    );
    assert_eq!(v["report"]["projected_bytes_per_day"], 1678.0 * 8640.0);
    assert_eq!(v["compare"]["report"]["total"]["events_in"], 7);
    let table = kaudit(&[
        "policy",
        "simulate",
        "-o",
        "table",
        &fixture("simulate_policy.yaml"),
        &fixture("simulate_events.jsonl"),
    ]);
    ok(&table);
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(
        text.contains("events: 7 in, 4 kept (57.1%), 3 dropped; bytes: 3166 in, 1678 kept (53.0%)"),
        "{text}"
    );
}

#[test]
fn apply_writes_the_kept_events() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("kept.jsonl");
    let out = kaudit(&[
        "policy",
        "apply",
        &fixture("simulate_policy.yaml"),
        &fixture("simulate_events.jsonl"),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    ok(&out);
    assert_eq!(
        std::fs::read_to_string(&out_path).unwrap(),
        std::fs::read_to_string(Path::new(&fixture("simulate_kept.jsonl"))).unwrap()
    );
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("kept 4 event(s), dropped 3"));
}

#[test]
fn commands_work_on_kaudit_gen_output() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("gen.jsonl");
    let events = events.to_str().unwrap();
    ok(&kaudit(&["gen", "-n", "2000", "--seed", "7", "-o", events]));
    for p in policies() {
        let out = kaudit(&["policy", "simulate", "-o", "json", &p, events]);
        ok(&out);
        let report = &json_lines(&out)[0]["report"];
        assert_eq!(report["total"]["events_in"], 2000, "{p}");
        let kept = report["total"]["events_kept"].as_u64().unwrap();
        let per_rule: u64 = report["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["events_kept"].as_u64().unwrap())
            .sum();
        assert_eq!(per_rule, kept, "{p}");

        let explained = kaudit(&["policy", "explain", "-o", "json", &p, events]);
        ok(&explained);
        let rows = json_lines(&explained);
        assert_eq!(rows.len(), 2000);
        let keep_count = rows.iter().filter(|r| r["keep"] == true).count() as u64;
        assert_eq!(keep_count, kept, "{p}: explain and simulate agree");

        let applied = dir.path().join("applied.jsonl");
        ok(&kaudit(&[
            "policy",
            "apply",
            &p,
            events,
            "-o",
            applied.to_str().unwrap(),
        ]));
        let text = std::fs::read_to_string(&applied).unwrap();
        assert_eq!(
            text.lines().count() as u64,
            kept,
            "{p}: apply and simulate agree"
        );
        let bytes: u64 = text.lines().map(|l| l.len() as u64 + 1).sum();
        assert_eq!(
            bytes,
            report["total"]["bytes_kept"].as_u64().unwrap(),
            "{p}"
        );
    }
    // omitManagedFields strips every managedFields the generator wrote.
    let strip = dir.path().join("strip.yaml");
    std::fs::write(
        &strip,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitManagedFields: true\nrules:\n- level: RequestResponse\n",
    )
    .unwrap();
    assert!(std::fs::read_to_string(events)
        .unwrap()
        .contains("\"managedFields\""));
    let out = kaudit(&["policy", "apply", strip.to_str().unwrap(), events]);
    ok(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2000);
    assert!(!text.contains("\"managedFields\""));
}
