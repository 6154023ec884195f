//! Detection parity with Panther's Kubernetes rules
//! (`../shared/conformance/external/panther-analysis-k8s/tests.jsonl`).
//!
//! For every test case that needs no Panther enrichment (247 of 287), the
//! built-in rule standing for the case's Panther rule (see [`PARITY`]) must
//! fire iff the case's `expected_result` is true, or the case is out of scope
//! for a reason written in [`OUT_OF_SCOPE`]. Cases go through
//! [`to_events`]: native events are completed and read as they are; AKS
//! Event Hub records and GKE Cloud Logging LogEntries go through
//! `kaudit-sources`' managed-cluster converters, as `kaudit import
//! --format` and the push endpoints read them.

use kaudit_event::Event;
use kaudit_rules::{EngineOptions, MatchMode};
use kaudit_sources::managed::{self, ConvertLimits, ManagedFormat};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Panther rule -> the built-in rule that catches the same thing.
const PARITY: &[(&str, &str)] = &[
    ("Amazon.EKS.AnonymousAPIAccess", "Anonymous API Request"),
    ("Kubernetes.API.AnonymousAccess", "Anonymous API Request"),
    (
        "Amazon.EKS.Audit.Multiple403",
        "Forbidden API Request from Public IP",
    ),
    (
        "Kubernetes.API.Multiple403.PublicIP",
        "Forbidden API Request from Public IP",
    ),
    (
        "Kubernetes.AdmissionController.Created",
        "Admission Webhook Configuration Created",
    ),
    (
        "Kubernetes.ClientCertificate.Created",
        "Client Certificate Requested",
    ),
    (
        "Kubernetes.ClusterRoleBinding.Privileged",
        "Privileged ClusterRoleBinding Created",
    ),
    (
        "Kubernetes.CronJob.CreatedOrModified",
        "CronJob Created or Modified",
    ),
    ("Kubernetes.DaemonSet.Created", "DaemonSet Created"),
    ("Kubernetes.Ingress.NoTLS", "Ingress Without TLS Created"),
    ("Kubernetes.Kubectl.CP.Operation", "kubectl cp from Pod"),
    (
        "Kubernetes.Pod.Dangerous.Capabilities",
        "Pod With Dangerous Capabilities Created",
    ),
    ("Kubernetes.Pod.Exec", "Exec into Pod"),
    ("Kubernetes.Pod.Host.IPC", "Pod Sharing Host IPC Created"),
    (
        "Kubernetes.Pod.Host.Network",
        "Pod Sharing Host Network Created",
    ),
    ("Kubernetes.Pod.Host.PID", "Pod Sharing Host PID Created"),
    (
        "Kubernetes.Pod.HostPath.Volume",
        "Pod With HostPath Volume Created",
    ),
    (
        "Kubernetes.Pod.Privileged.Created",
        "Privileged or Root Pod Created",
    ),
    (
        "Kubernetes.Pod.StealServiceAccountToken",
        "Service Account Token Read via Exec",
    ),
    (
        "Kubernetes.Pod.SystemNamespace",
        "Pod Created in System Namespace",
    ),
    (
        "Kubernetes.Role.NodeProxyPermissions",
        "Role Granting Node Proxy Created",
    ),
    ("Kubernetes.Role.PodExec", "Role Granting Pod Exec Created"),
    ("Kubernetes.Role.Wildcard", "Wildcard Role Created"),
    (
        "Kubernetes.Role.WritePermissions",
        "Role With Write Permissions Created",
    ),
    ("Kubernetes.Secret.AccessDenied", "Secret Access Denied"),
    (
        "Kubernetes.Secrets.DumpAllNamespaces",
        "Secrets Listed Across All Namespaces",
    ),
    (
        "Kubernetes.Service.NodePort.Deployed",
        "NodePort Service Deployed",
    ),
    (
        "Kubernetes.ServiceAccount.TokenCreated",
        "Service Account Token Requested",
    ),
    ("Kubernetes.SystemRole.Modified", "System Role Modified"),
    // GKE-only rules: the same built-in rules once a LogEntry is an Event.
    (
        "GCP.GKE.Kubernetes.Cron.Job.Created.Or.Modified",
        "CronJob Created or Modified",
    ),
    (
        "GCP.K8S.Pod.Create.Or.Modify.Host.Path.Volume.Mount",
        "Sensitive Host Path Mounted",
    ),
    (
        "GCP.K8S.Privileged.Pod.Created",
        "Privileged or Root Pod Created",
    ),
    (
        "GCP.K8S.Service.Type.NodePort.Deployed",
        "NodePort Service Deployed",
    ),
    ("GCP.K8s.ExecIntoPod", "Exec into Pod"),
    ("GCP.K8s.New.Daemonset.Deployed", "DaemonSet Created"),
    (
        "GCP.K8s.Pod.Attached.To.Node.Host.Network",
        "Pod Sharing Host Network Created",
    ),
    (
        "GCP.K8s.Pod.Using.Host.PID.Namespace",
        "Pod Sharing Host PID Created",
    ),
];

/// How the reason of a case that is no Kubernetes API audit entry starts
/// (the test checks the GKE converter refuses such a case for that reason).
macro_rules! not_k8s {
    () => {
        "Not a Kubernetes audit entry: "
    };
}
const NOT_K8S: &str = not_k8s!();

/// Panther's test entries for two GKE rules are Deployment Manager API
/// calls, which its rules match by `authorizationInfo[].permission` alone.
const DEPLOYMENT_MANAGER: &str = concat!(
    not_k8s!(),
    "the entry is a Deployment Manager API call (serviceName \
     deploymentmanager.googleapis.com, methodName v2.deploymentmanager.deployments.insert) whose \
     authorizationInfo merely names a Kubernetes permission. It records no request to a \
     cluster's API server; the GKE converter refuses it as the issue asks (only serviceName \
     k8s.io is Kubernetes audit), so no Kubernetes rule can see it. The same CronJob or \
     DaemonSet reaching a cluster is a k8s.io entry, which the built-in rules catch (see the \
     rules' other GKE cases)."
);

/// Cases out of scope, by (rule, test index or every index), and why.
const OUT_OF_SCOPE: &[(&str, Option<u64>, &str)] = &[
    (
        "GCP.GKE.Kubernetes.Cron.Job.Created.Or.Modified",
        Some(0),
        DEPLOYMENT_MANAGER,
    ),
    (
        "GCP.GKE.Kubernetes.Cron.Job.Created.Or.Modified",
        Some(1),
        DEPLOYMENT_MANAGER,
    ),
    (
        "GCP.GKE.Kubernetes.Cron.Job.Created.Or.Modified",
        Some(2),
        DEPLOYMENT_MANAGER,
    ),
    (
        "GCP.K8s.New.Daemonset.Deployed",
        Some(0),
        DEPLOYMENT_MANAGER,
    ),
    (
        "GCP.K8s.New.Daemonset.Deployed",
        Some(1),
        DEPLOYMENT_MANAGER,
    ),
    (
        "Kubernetes.BulkSecretAccess",
        None,
        "Panther ships it disabled: it matches every get/list/watch of a secret by a \
     non-system identity and only means something over its production threshold (15 in a \
     window). kaudit's `Secret Read by Unexpected Identity` covers allowed reads per event; \
     a per-event rule firing on every secret read would drown the alerts.",
    ),
];

fn tests_jsonl() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/external/panther-analysis-k8s/tests.jsonl");
    std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "conformance data missing: {} ({e}); the shared conformance checkout must be next to the repo",
            p.display()
        )
    })
}

/// Panther's test events are trimmed to what its rules read: many lack
/// `kind`, `apiVersion`, `level`, `auditID`, `stage` and the timestamps, and
/// carry Panther's own `p_*` keys (and timestamps in Panther's
/// `2022-11-29 00:09:04.38` form). kube-apiserver never writes such events,
/// and kaudit's reader stays strict about them (a stored event must be one
/// kube-apiserver could have written), so this harness, and only it, fills
/// in what is missing: the case stands for a request that completed
/// (`stage: ResponseComplete`), logged at `RequestResponse` (its bodies are
/// there). `p_*` keys are dropped, never read.
fn complete_panther_event(log: &Map<String, Value>, case: usize) -> Map<String, Value> {
    let mut ev: Map<String, Value> = log
        .iter()
        .filter(|(k, _)| !k.starts_with("p_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let defaults = [
        ("kind", Value::from("Event")),
        ("apiVersion", Value::from("audit.k8s.io/v1")),
        ("level", Value::from("RequestResponse")),
        ("auditID", Value::from(format!("panther-case-{case}"))),
        ("stage", Value::from("ResponseComplete")),
    ];
    for (k, v) in defaults {
        ev.entry(k).or_insert(v);
    }
    for k in ["requestReceivedTimestamp", "stageTimestamp"] {
        let ok = ev
            .get(k)
            .and_then(Value::as_str)
            .is_some_and(|t| kaudit_event::MicroTime::parse(t).is_ok());
        if !ok {
            ev.insert(k.into(), Value::from("2022-11-29T00:09:04.380000Z"));
        }
    }
    ev
}

/// What a Panther test case turned into.
enum Case {
    /// The events kaudit reads from it.
    Events(Vec<Event>),
    /// The converter refused the entry: (path, reason) of each bad item.
    Refused(Vec<(String, String)>),
}

/// Runs an envelope through `kaudit-sources`' managed-cluster converter,
/// as `kaudit import --format` and the push endpoints do.
fn convert(bytes: &[u8], format: ManagedFormat, index: usize) -> Case {
    let out = managed::convert(bytes, format, None, &ConvertLimits::default())
        .unwrap_or_else(|e| panic!("case {index}: the {format} converter refused the input: {e}"));
    if out.events.is_empty() {
        return Case::Refused(
            out.bad
                .iter()
                .map(|b| (b.path.clone().unwrap_or_default(), b.reason.clone()))
                .collect(),
        );
    }
    assert!(
        out.bad.is_empty(),
        "case {index}: {} bad items beside the events",
        out.bad.len()
    );
    Case::Events(out.events)
}

/// Completes a trimmed GKE `LogEntry` the way `complete_panther_event`
/// completes a native event: Panther's GKE test entries are cut down to
/// what its rules read, and some lack `protoPayload.resourceName`, which
/// Cloud Logging always writes for a Kubernetes API call (it is where the
/// object's namespace and name are). Only those are filled in, from the
/// `methodName` (`io.k8s.core.v1.pods.create`: core group, v1, pods) and
/// the request body's `metadata`, the way GKE writes it for a create
/// (`core/v1/namespaces/<ns>/pods/<name>`). Panther's `callerIP`
/// spelling is left alone: the converter reads it (see `gke.rs`).
fn complete_gke_entry(log: &Map<String, Value>) -> Value {
    let mut entry: Map<String, Value> = log
        .iter()
        .filter(|(k, _)| !k.starts_with("p_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(Value::Object(p)) = entry.get_mut("protoPayload") {
        // Panther's anonymous-access entry names the caller in
        // `authenticationInfo.authoritySelector` only; GKE writes the
        // authenticated principal (`system:anonymous` too) in
        // `principalEmail`. The converter does not read authoritySelector as
        // a user: it is what the requestor asked for, not who it was.
        if let Some(Value::Object(a)) = p.get_mut("authenticationInfo") {
            if !a.contains_key("principalEmail") {
                if let Some(sel) = a.get("authoritySelector").cloned() {
                    a.insert("principalEmail".into(), sel);
                }
            }
        }
        // A failed call without `status` (trimmed): Google writes the gRPC
        // status of every failed call; when the response is a Status
        // saying Failure, complete it as gRPC 2 (UNKNOWN), the code that
        // tells nothing more than "failed".
        let failed = p
            .get("response")
            .and_then(|r| r.get("status"))
            .and_then(Value::as_str)
            == Some("Failure");
        if failed && !p.contains_key("status") {
            p.insert(
                "status".into(),
                serde_json::json!({"code": 2, "message": "Failure"}),
            );
        }
        let method = p
            .get("methodName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let parts: Vec<&str> = method.split('.').collect();
        if !p.contains_key("resourceName")
            && parts.len() == 6
            && parts[..3] == ["io", "k8s", "core"]
        {
            let meta = p.get("request").and_then(|r| r.get("metadata"));
            let field = |k: &str| {
                meta.and_then(|m| m.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let ns = field("namespace").unwrap_or_else(|| "default".into());
            let name = field("name").unwrap_or_default();
            let name = if name.is_empty() {
                String::new()
            } else {
                format!("/{name}")
            };
            p.insert(
                "resourceName".into(),
                Value::from(format!(
                    "core/{}/namespaces/{ns}/{}{name}",
                    parts[3], parts[4]
                )),
            );
        }
    }
    Value::Object(entry)
}

/// The events a test case stands for: native events completed here, AKS
/// records and GKE entries through the managed-cluster converters.
fn to_events(case: &Value, index: usize) -> Case {
    let log = case["log"]
        .as_object()
        .unwrap_or_else(|| panic!("case {index}: `log` is not an object"));
    match case["shape"].as_str().unwrap_or("") {
        "audit_k8s_io_event" => {
            let ev = complete_panther_event(log, index);
            let bytes = serde_json::to_vec(&ev).expect("a JSON map serialises");
            match Event::from_json(&bytes) {
                Ok(e) => Case::Events(vec![e]),
                Err(e) => panic!("case {index}: a native event kaudit cannot read: {e}"),
            }
        }
        "aks_diagnostic_wrapper_properties_log_json_string" => {
            // The record is Azure's, untouched but for Panther's `p_*`
            // keys; the event inside `properties.log` is trimmed like the
            // native ones and is completed the same way, then put back as
            // the JSON string Azure writes (with its trailing newline).
            let mut record: Map<String, Value> = log
                .iter()
                .filter(|(k, _)| !k.starts_with("p_"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let text = record["properties"]["log"]
                .as_str()
                .unwrap_or_else(|| panic!("case {index}: properties.log is not a string"));
            let inner: Map<String, Value> = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("case {index}: properties.log is not JSON: {e}"));
            let done = complete_panther_event(&inner, index);
            let text = format!("{}\n", Value::Object(done));
            record["properties"]["log"] = Value::String(text);
            let body = serde_json::json!({ "records": [record] });
            convert(body.to_string().as_bytes(), ManagedFormat::Aks, index)
        }
        "gke_cloud_logging_protoPayload" => {
            let entry = complete_gke_entry(log);
            convert(entry.to_string().as_bytes(), ManagedFormat::Gke, index)
        }
        other => panic!("case {index}: unknown shape {other:?}"),
    }
}

#[test]
fn built_in_rules_fire_iff_panthers_rules_do() {
    // The built-in rules, with the two that are off by default (routine
    // in most clusters) switched on the Falco way, as a user would.
    let mut b = kaudit_rules::EngineBuilder::new(EngineOptions::default());
    b.add_default_rules().expect("default rules");
    b.add_source(
        "enable.yaml",
        "- rule: Exec into Pod\n  enabled: true\n- rule: Role With Write Permissions Created\n  enabled: true\n",
    )
    .expect("enabling rules");
    let (engine, _) = b.build().expect("rules build");
    let names: Vec<&str> = engine.rule_names().collect();
    for (p, k) in PARITY {
        assert!(
            names.contains(k),
            "{p} maps to {k:?}, which is not a built-in rule"
        );
    }
    let text = tests_jsonl();
    let (mut checked, mut out_of_scope, mut enrichment) = (0, 0, 0);
    let mut checked_by_shape: BTreeMap<String, usize> = BTreeMap::new();
    let mut out_of_scope_by_shape: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut per_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let case: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        let shape = case["shape"].as_str().unwrap_or("");
        let k8s = matches!(
            shape,
            "audit_k8s_io_event"
                | "gke_cloud_logging_protoPayload"
                | "aks_diagnostic_wrapper_properties_log_json_string"
        );
        if !k8s {
            continue;
        }
        if case["has_p_enrichment"] == true || case["rule_uses_enrichment"] == true {
            enrichment += 1;
            continue;
        }
        let rule = case["rule_id"].as_str().expect("rule_id");
        let idx = case["test_index"].as_u64();
        if let Some((_, _, why)) = OUT_OF_SCOPE
            .iter()
            .find(|(r, t, _)| *r == rule && (t.is_none() || *t == idx))
        {
            // A case out of scope because it is no Kubernetes audit entry
            // must really be refused by the converter, with that reason.
            if why.starts_with(NOT_K8S) {
                match to_events(&case, i) {
                    Case::Refused(bad) => assert!(
                        bad.iter()
                            .any(|(_, r)| r.contains("not a Kubernetes API audit event")),
                        "case {i}: refused for another reason: {bad:?}"
                    ),
                    Case::Events(_) => panic!("case {i}: out of scope as not k8s, yet converted"),
                }
            }
            out_of_scope += 1;
            *out_of_scope_by_shape.entry(shape.to_string()).or_default() += 1;
            continue;
        }
        let events = match to_events(&case, i) {
            Case::Events(events) => events,
            Case::Refused(bad) => {
                failures.push(format!(
                    "{rule} #{}: the converter refused the case: {bad:?}",
                    idx.unwrap_or(0)
                ));
                continue;
            }
        };
        *checked_by_shape.entry(shape.to_string()).or_default() += 1;
        let kaudit_rule = PARITY
            .iter()
            .find(|(p, _)| *p == rule)
            .map(|(_, k)| *k)
            .unwrap_or_else(|| panic!("no built-in rule stands for {rule}"));
        let expected = case["expected_result"].as_bool().expect("expected_result");
        let fired = events.iter().any(|e| {
            engine
                .evaluate(e, MatchMode::All)
                .iter()
                .any(|a| a.rule == kaudit_rule)
        });
        if fired != expected {
            failures.push(format!(
                "{rule} #{} {:?}: expected {expected}, {kaudit_rule:?} fired={fired}",
                idx.unwrap_or(0),
                case["test_name"].as_str().unwrap_or("")
            ));
        }
        checked += 1;
        *per_rule.entry(kaudit_rule).or_default() += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "checked {checked_by_shape:?}, out of scope {out_of_scope_by_shape:?}, rules {}",
        per_rule.len()
    );
    assert_eq!(checked + out_of_scope, 247, "cases that need no enrichment");
    assert_eq!(enrichment, 32, "cases that need Panther's enrichment");
    assert_eq!(checked, 235, "cases checked");
    assert_eq!(
        checked_by_shape.get("audit_k8s_io_event"),
        Some(&160),
        "native (EKS-shaped) cases"
    );
    assert_eq!(
        checked_by_shape.get("aks_diagnostic_wrapper_properties_log_json_string"),
        Some(&29),
        "AKS Event Hub records, through the AKS converter"
    );
    assert_eq!(
        checked_by_shape.get("gke_cloud_logging_protoPayload"),
        Some(&46),
        "GKE LogEntries, through the GKE converter"
    );
    // Kubernetes.BulkSecretAccess's 7 native cases and the 5 Deployment
    // Manager entries.
    assert_eq!(out_of_scope, 12, "cases out of scope");
    assert_eq!(
        out_of_scope_by_shape.get("gke_cloud_logging_protoPayload"),
        Some(&5)
    );
    assert_eq!(per_rule.len(), 28, "built-in rules exercised");
}
