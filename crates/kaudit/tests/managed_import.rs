//! `kaudit import --format` on other projects' managed-cluster material in
//! `../shared/conformance/external/` (the files must be there: a missing
//! one fails the test), and `kaudit webhook-config`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kaudit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .args(args)
        .output()
        .expect("running kaudit")
}

fn external(rel: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/external")
        .join(rel);
    assert!(
        p.exists(),
        "conformance data missing: {} (the shared conformance checkout must be next to the repo)",
        p.display()
    );
    p
}

/// The stored events of a data dir, in order.
fn stored(data: &Path) -> Vec<serde_json::Value> {
    let store = kaudit_store::Store::open(
        data,
        kaudit_store::StoreOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .expect("store opens");
    let mut out = Vec::new();
    store
        .read(0..store.len(), &mut |_, leaf| {
            out.push(serde_json::from_slice(leaf.event).expect("stored events are JSON"));
            true
        })
        .expect("store reads");
    out
}

/// Imports `inputs` into a fresh data dir with `--format auto`; the stored events.
fn import_auto(dir: &Path, name: &str, input: &Path) -> Vec<serde_json::Value> {
    let data = dir.join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .args([
            "import",
            "--no-progress",
            "--no-redact",
            "--format",
            "auto",
            "--data",
        ])
        .arg(&data)
        .arg(input)
        .output()
        .expect("running kaudit import");
    assert!(
        out.status.success(),
        "{}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stored(&data)
}

fn source_format(ev: &serde_json::Value) -> Option<&str> {
    ev["annotations"]["kaudit.io/source-format"].as_str()
}

#[test]
fn format_auto_reads_each_providers_file_as_what_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");

    // AKS: one Event Hub message of 22 kube-audit records -> the 22 events.
    let aks = import_auto(
        dir.path(),
        "aks",
        &external("sysdig-aks-audit-log/event.json"),
    );
    assert_eq!(aks.len(), 22, "AKS Event Hub message: 22 events stored");
    assert!(aks.iter().all(|e| source_format(e) == Some("aks")));
    let given = std::fs::read_to_string(external(
        "sysdig-aks-audit-log/event.inner_events.derived.jsonl",
    ))
    .expect("derived events");
    let ids: Vec<&str> = aks.iter().filter_map(|e| e["auditID"].as_str()).collect();
    let want: Vec<String> = given
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("derived line");
            v["auditID"].as_str().expect("auditID").to_string()
        })
        .collect();
    assert_eq!(ids, want, "the 22 given events, in order");

    // GKE: KHI's three Kubernetes API LogEntries.
    let gke = import_auto(
        dir.path(),
        "gke",
        &external("khi-gke-k8s-audit/gke_k8s_audit.derived.jsonl"),
    );
    assert_eq!(gke.len(), 3, "KHI GKE k8s.io entries");
    for ev in &gke {
        assert_eq!(source_format(ev), Some("gke"));
        assert!(ev["verb"].as_str().is_some_and(|v| !v.is_empty()), "{ev}");
        assert!(ev["annotations"]["kaudit.io/original"].is_string());
    }

    // Admission captures: kube-audit-rest's 59 AdmissionReviews.
    let adm = import_auto(
        dir.path(),
        "admission",
        &external("kube-audit-rest/kube-audit-rest.log"),
    );
    assert_eq!(adm.len(), 59, "kube-audit-rest captures");
    assert!(adm.iter().all(|e| source_format(e) == Some("admission")));
    assert!(adm.iter().all(|e| e["level"] == "RequestResponse"));

    // audit2rbac's demo: 37 native events of the pre-1.10 shape, read as
    // native (no envelope, no source-format annotation).
    let demo = import_auto(dir.path(), "demo", &external("audit2rbac-demo/demo.log"));
    assert_eq!(demo.len(), 37, "audit2rbac demo events");
    assert!(demo.iter().all(|e| source_format(e).is_none()));
    // Stored byte for byte; the event model reads the old `timestamp` as
    // the request's time.
    for e in &demo {
        let ev = kaudit_event::Event::from_json(e.to_string().as_bytes()).expect("reads back");
        assert!(ev.request_received_timestamp().is_some(), "{e}");
    }
}

#[test]
fn format_gke_on_a_cluster_api_entry_fails_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = external("khi-gke-k8s-audit/gke_cluster_api_audit.derived.jsonl");
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .args(["import", "--no-progress", "--format", "gke", "--data"])
        .arg(&data)
        .arg(&input)
        .output()
        .expect("running kaudit import");
    assert!(
        !out.status.success(),
        "importing cluster-API entries must fail"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&input.display().to_string()),
        "names the file: {err}"
    );
    assert!(err.contains("line 1"), "names the line: {err}");
    assert!(
        err.contains("cluster-management API") && err.contains("container.googleapis.com"),
        "says why: {err}"
    );
    assert!(err.contains("9 item(s)"), "counts them: {err}");
    // Nothing of the input was stored.
    if data.exists() {
        assert!(stored(&data).is_empty());
    }
}

#[test]
fn webhook_config_prints_a_validating_webhook_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    std::fs::write(&ca, pem).expect("write ca");
    let out = kaudit(&[
        "webhook-config",
        "--url",
        "https://kaudit.example:8443",
        "--token",
        "tok-1",
        "--ca-file",
        ca.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let v: serde_json::Value = serde_saphyr::from_str(&text).expect("the output is YAML");
    assert_eq!(v["apiVersion"], "admissionregistration.k8s.io/v1");
    assert_eq!(v["kind"], "ValidatingWebhookConfiguration");
    let hooks = v["webhooks"].as_array().expect("webhooks");
    assert_eq!(hooks.len(), 1);
    let h = &hooks[0];
    assert_eq!(
        h["clientConfig"]["url"],
        "https://kaudit.example:8443/api/v1/admission/tok-1"
    );
    use base64::Engine;
    let bundle = h["clientConfig"]["caBundle"].as_str().expect("caBundle");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(bundle)
        .expect("caBundle is base64");
    assert_eq!(decoded, pem.as_bytes());
    // Capture must never block the cluster.
    assert_eq!(h["failurePolicy"], "Ignore");
    assert_eq!(h["sideEffects"], "None");
    assert_eq!(h["admissionReviewVersions"], serde_json::json!(["v1"]));
    let ops = h["rules"][0]["operations"].as_array().expect("operations");
    for op in ["CREATE", "UPDATE", "DELETE", "CONNECT"] {
        assert!(ops.iter().any(|o| o == op), "{op} captured");
    }
    // Plain HTTP is refused: the apiserver calls webhooks over TLS only.
    let out = kaudit(&["webhook-config", "--url", "http://kaudit.example"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://"));
}
