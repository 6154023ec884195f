//! `kaudit import` applies the ingest policy and redacts secrets by default.

use std::path::Path;
use std::process::Command;

fn kaudit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kaudit"))
}

const SECRET_CREATE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"5ec7e7-0001","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets","verb":"create","user":{"username":"alice","groups":["system:authenticated"]},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl/v1.31.0","objectRef":{"resource":"secrets","namespace":"prod","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"prod"},"data":{"password":"c2VjcmV0LXZhbHVl"}},"requestReceivedTimestamp":"2026-01-02T03:04:05.000000Z","stageTimestamp":"2026-01-02T03:04:05.002000Z"}"#;
const POD_GET: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"90d-0002","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/pods/web","verb":"get","user":{"username":"bob"},"objectRef":{"resource":"pods","namespace":"prod","name":"web","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-01-02T03:04:06.000000Z","stageTimestamp":"2026-01-02T03:04:06.001000Z"}"#;

fn import(dir: &Path, name: &str, extra: &[&str]) -> Vec<String> {
    let input = dir.join("in.jsonl");
    std::fs::write(&input, format!("{SECRET_CREATE}\n{POD_GET}\n")).unwrap();
    let data = dir.join(name);
    let out = kaudit()
        .args(["import", "--no-progress", "--data"])
        .arg(&data)
        .args(extra)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = kaudit_store::Store::open(
        &data,
        kaudit_store::StoreOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let mut lines = Vec::new();
    store
        .read(0..store.len(), &mut |_, leaf| {
            lines.push(String::from_utf8(leaf.event.to_vec()).unwrap());
            true
        })
        .unwrap();
    lines
}

#[test]
fn secrets_are_redacted_by_default_and_kept_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let lines = import(dir.path(), "redacted", &[]);
    assert_eq!(lines.len(), 2);
    assert!(!lines[0].contains("c2VjcmV0LXZhbHVl"), "{}", lines[0]);
    assert!(lines[0].contains("\"password\":\"sha256:"), "{}", lines[0]);
    assert!(lines[0].contains("kaudit.io/redacted"), "{}", lines[0]);
    assert_eq!(
        lines[1], POD_GET,
        "events without secrets keep their exact bytes"
    );
    let lines = import(dir.path(), "raw", &["--no-redact"]);
    assert_eq!(lines[0], SECRET_CREATE);
}

#[test]
fn an_ingest_policy_drops_and_strips() {
    let dir = tempfile::tempdir().unwrap();
    let metadata_only = dir.path().join("metadata.yaml");
    std::fs::write(
        &metadata_only,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n",
    )
    .unwrap();
    let lines = import(
        dir.path(),
        "meta",
        &["--policy", metadata_only.to_str().unwrap()],
    );
    assert_eq!(lines.len(), 2);
    assert!(!lines[0].contains("requestObject"), "{}", lines[0]);
    assert!(lines[0].contains("\"level\":\"Metadata\""), "{}", lines[0]);
    let no_secrets = dir.path().join("nosecrets.yaml");
    std::fs::write(
        &no_secrets,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  resources:\n  - group: \"\"\n    resources: [secrets]\n- level: Metadata\n",
    )
    .unwrap();
    let lines = import(
        dir.path(),
        "nosecret",
        &["--policy", no_secrets.to_str().unwrap()],
    );
    assert_eq!(lines, [POD_GET]);
}
