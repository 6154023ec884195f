//! `kaudit detect` and `kaudit rules test|check` end to end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn conformance() -> PathBuf {
    let dir = match std::env::var_os("KAUDIT_CONFORMANCE") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
    };
    assert!(
        dir.join("falco/expected.json").is_file(),
        "conformance data not found at {} (set KAUDIT_CONFORMANCE)",
        dir.display()
    );
    dir
}

fn kaudit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kaudit")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn detect_text_json_and_non_events() {
    let c = conformance().join("falco");
    let rules = s(&c.join("k8s_audit_rules.yaml"));
    let privileged = s(&c.join("traces/create_nginx_pod_privileged.json"));
    let bad = s(&c.join("traces/fal_01_003.json"));
    let out = kaudit(&["detect", "--rules", &rules, &privileged, &bad]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains(": Warning Pod started with privileged container (user="),
        "{stdout}"
    );
    assert!(
        stderr.contains("fal_01_003.json:1: data not recognized as a k8s audit event"),
        "{stderr}"
    );

    let out = kaudit(&[
        "detect",
        "-o",
        "json",
        "--cluster",
        "prod-eu",
        "--rules",
        &rules,
        &privileged,
    ]);
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON alert");
    for k in [
        "time",
        "rule",
        "priority",
        "output",
        "output_fields",
        "source",
        "tags",
        "hostname",
    ] {
        assert!(v.get(k).is_some(), "missing {k} in {v}");
    }
    assert_eq!(v["rule"], "Create Privileged Pod");
    assert_eq!(v["priority"], "Warning");
    assert_eq!(v["output_fields"]["kaudit.cluster"], "prod-eu");
    assert!(v["output_fields"]["ka.auditid"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
}

#[test]
fn all_matches_and_default_rules() {
    let c = conformance().join("falco");
    let rules = s(&c.join("traces/rules/k8s_audit_rules_k8saudit-0.6.0.yaml"));
    let ns = s(&c.join("traces/some-user_creates_namespace_foo.json"));
    let first = kaudit(&["detect", "--rules", &rules, &ns]);
    let all = kaudit(&["detect", "--all-matches", "--rules", &rules, &ns]);
    assert_eq!(String::from_utf8_lossy(&first.stdout).lines().count(), 1);
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count(), 3);
    // No --rules: the built-in ruleset (exec is caught).
    let exec = s(&c.join("traces/exec_pod.json"));
    let out = kaudit(&["detect", &exec]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Interactive access to a pod"));
}

#[test]
fn rule_file_errors_exit_non_zero_with_file_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "- list: ok\n  items: [a]\n- rule: r\n  condition: ka.nope = 1\n  output: o\n  priority: INFO\n  source: k8s_audit\n",
    )
    .expect("write");
    let c = conformance().join("falco/traces/exec_pod.json");
    let out = kaudit(&["detect", "--rules", &s(&bad), &s(&c)]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml:3: rule r: unknown field ka.nope"),
        "{stderr}"
    );
    let out = kaudit(&[
        "detect",
        "--data",
        "/nonexistent/kaudit-store",
        "--since",
        "30d",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/kaudit-store"));
    let out = kaudit(&["detect", "--data", "/tmp", "--since", "30 parsecs"]);
    assert!(!out.status.success());
}

#[test]
fn rules_test_for_ci() {
    let c = conformance().join("falco");
    let rules = s(&c.join("k8s_audit_rules.yaml"));
    let trace = s(&c.join("traces/create_configmap_sensitive_values.json"));
    let ok = kaudit(&[
        "rules",
        "test",
        &rules,
        &trace,
        "--expect",
        "Create/Modify Configmap With Private Credentials=6",
        "--exact",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let fail = kaudit(&[
        "rules",
        "test",
        &rules,
        &trace,
        "--expect",
        "Create/Modify Configmap With Private Credentials=1",
    ]);
    assert_eq!(fail.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&fail.stdout).contains("FAIL"));
    let unknown = kaudit(&[
        "rules",
        "test",
        &rules,
        &trace,
        "--expect",
        "No Such Rule=1",
    ]);
    assert_eq!(unknown.status.code(), Some(2));
    let check = kaudit(&[
        "rules",
        "check",
        &s(&conformance().join("sigma/kubernetes_audit_hostpath_mount.yml")),
    ]);
    assert!(check.status.success());
    assert!(String::from_utf8_lossy(&check.stdout).contains("never matches"));
}

#[test]
fn retroactive_detection_over_the_store() {
    let c = conformance().join("falco/traces");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_s = s(&data);
    let imported = kaudit(&[
        "import",
        "--data",
        &data_s,
        "--cluster",
        "prod-eu",
        "--no-progress",
        &s(&c.join("exec_pod.json")),
        &s(&c.join("create_nginx_pod_privileged.json")),
    ]);
    assert!(
        imported.status.success(),
        "import: {}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let out = kaudit(&["detect", "--data", &data_s, "--since", "30d", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json alert"))
        .collect();
    let rules: Vec<&str> = lines.iter().filter_map(|v| v["rule"].as_str()).collect();
    assert!(
        rules.contains(&"Interactive Exec or Attach into Pod"),
        "{rules:?}"
    );
    assert!(rules.contains(&"Privileged Container Created"), "{rules:?}");
    assert!(lines
        .iter()
        .all(|v| v["output_fields"]["kaudit.cluster"] == "prod-eu"));
    // A window that excludes the (just imported) events.
    let none = kaudit(&["detect", "--data", &data_s, "--since", "0s"]);
    assert!(none.status.success());
    assert!(String::from_utf8_lossy(&none.stdout).trim().is_empty());
}
