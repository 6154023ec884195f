//! The Elasticsearch sink against Elastic's own material in
//! `../shared/conformance/external/`:
//!
//! * `elastic-integrations-k8s-audit/`: for every input of Elastic's pipeline
//!   tests that is a native audit Event, kaudit's document holds every field
//!   of Elastic's expected document with the same value and JSON type, and
//!   adds only the fields listed in [`KAUDIT_ADDS`];
//! * `elastic-detection-rules-k8s/rules_index.json`: every field any of
//!   Elastic's Kubernetes rules reads is in kaudit's document, with the
//!   value and type the rule expects, whenever the event holds the data.
//!
//! The data must be there: a missing file fails the test.

use kaudit_event::{Event, MicroTime};
use kaudit_sinks::elasticsearch::{ecs_document, DocOptions};
use kaudit_sinks::Outgoing;
use kaudit_sources::managed::{self, ConvertLimits, ManagedFormat};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

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

fn read(rel: &str) -> String {
    std::fs::read_to_string(external(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

fn outgoing(ev: Event, cluster: &str) -> Outgoing {
    Outgoing {
        seq: 0,
        cluster: cluster.into(),
        received: MicroTime(1_767_603_600_000_000),
        event: ev,
    }
}

/// Fields kaudit adds that Elastic's pipeline does not set from the event
/// (in Elastic they come from the agent, the data stream or the shipper's
/// read time), as `a.b.c` leaf paths or `a.b` prefixes.
const KAUDIT_ADDS: &[&str] = &[
    "@timestamp",
    "ecs.version",
    "event.module",
    "event.dataset",
    "data_stream.type",
    "data_stream.dataset",
    "data_stream.namespace",
    "orchestrator.cluster.name",
];

/// Keys of Elastic's expected documents that the pipeline-test harness adds,
/// not the pipeline from the event: left out of the comparison.
const HARNESS_ADDS: &[&str] = &[
    // `tags: [preserve_original_event]` comes from the test's
    // `test-audit.log-config.yml` (`fields:`), not from the pipeline.
    "tags",
];

/// Every leaf path (`a.b.c`) of a document, arrays being leaves (ES values).
fn leaves(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(c, &p, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// Compares kaudit's document of `ev` with Elastic's `expected` document:
/// every expected leaf present with an equal value (serde_json equality, so
/// a string never equals a number and an array never a string), and nothing
/// extra but [`KAUDIT_ADDS`]. Returns how many fields were compared.
///
/// This is the function the managed-cluster converters plug into: a GKE
/// LogEntry or an AKS record converted to an `Event` is checked the same way.
fn check_against_elastic(ev: Event, expected: &Value, what: &str) -> usize {
    check_against_elastic_adding(ev, expected, what, &[])
}

/// [`check_against_elastic`], allowing kaudit to add the fields (leaf
/// paths or prefixes ending in `.`) of `adds` beside [`KAUDIT_ADDS`].
fn check_against_elastic_adding(ev: Event, expected: &Value, what: &str, adds: &[&str]) -> usize {
    let doc = ecs_document(&outgoing(ev, "test-cluster"), &DocOptions::default())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut want = BTreeMap::new();
    leaves(expected, "", &mut want);
    want.retain(|k, _| {
        !HARNESS_ADDS
            .iter()
            .any(|h| k == h || k.starts_with(&format!("{h}.")))
    });
    let mut got = BTreeMap::new();
    leaves(&doc, "", &mut got);
    for (k, v) in &want {
        match got.get(k) {
            Some(g) => assert_eq!(g, v, "{what}: field {k} differs from Elastic's"),
            None => panic!("{what}: field {k} (Elastic: {v}) is missing from kaudit's document"),
        }
    }
    let extra: Vec<&String> = got
        .keys()
        .filter(|k| {
            !want.contains_key(*k)
                && !KAUDIT_ADDS.contains(&k.as_str())
                && !adds
                    .iter()
                    .any(|a| k.as_str() == *a || (a.ends_with('.') && k.starts_with(a)))
        })
        .collect();
    assert!(
        extra.is_empty(),
        "{what}: kaudit adds fields Elastic does not have: {extra:?}"
    );
    want.len()
}

#[test]
fn native_events_make_exactly_elastics_documents() {
    let dir = "elastic-integrations-k8s-audit/tests/set_a_core_gke";
    let input = read(&format!("{dir}/test-audit.log"));
    let expected: Value =
        serde_json::from_str(&read(&format!("{dir}/test-audit.log-expected.json")))
            .expect("expected documents are JSON");
    let expected = expected["expected"]
        .as_array()
        .expect("an `expected` array");
    let lines: Vec<&str> = input.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), expected.len(), "input line i -> expected[i]");
    let (mut native, mut compared, mut gke) = (0, 0, 0);
    for (i, (line, want)) in lines.iter().zip(expected).enumerate() {
        let what = format!("set A line {}", i + 1);
        match Event::from_json(line.as_bytes()) {
            Ok(ev) => {
                // kaudit keeps a v1 line byte for byte, so event.original is
                // the line itself, as in Elastic's document.
                assert_eq!(ev.bytes(), line.as_bytes(), "line {i} kept byte for byte");
                compared += check_against_elastic(ev, want, &what);
                native += 1;
            }
            Err(_) => {
                // The GKE LogEntry (line 4), through the GKE converter as
                // `kaudit import --format gke` and the Pub/Sub endpoint read it.
                let ev = convert_one(line.as_bytes(), ManagedFormat::Gke);
                compared += check_against_elastic_adding(ev, want, &what, GKE_ADDS);
                gke += 1;
            }
        }
    }
    assert_eq!(native, 3, "set A holds 3 native v1 events");
    assert_eq!(gke, 1, "set A holds 1 GKE LogEntry");
    // 4 documents of 36, 38, 38 and 31 leaf fields, `tags` left out.
    assert_eq!(compared, 36 + 38 + 38 + 31);
}

/// What kaudit adds to Elastic's document of a GKE LogEntry: Elastic's
/// pipeline puts the LogEntry under `kubernetes.audit` as is and sets no
/// `user.name`, `event.action`, `source.ip` or `user_agent.original` for
/// it, so Elastic's own detection rules (which read those and
/// `kubernetes.audit.verb`/`objectRef`/`user`) never match a GKE document.
/// kaudit keeps every field Elastic sets, with Elastic's value (gRPC code
/// 0, not kaudit's HTTP 200; Google's nanosecond timestamps), and adds
/// the Event it rebuilt wherever Elastic's document has nothing, so the
/// same rules and dashboards work on GKE documents too.
const GKE_ADDS: &[&str] = &[
    "kubernetes.audit.kind",
    "kubernetes.audit.apiVersion",
    "kubernetes.audit.level",
    "kubernetes.audit.stage",
    "kubernetes.audit.requestURI",
    "kubernetes.audit.verb",
    "kubernetes.audit.user.",
    "kubernetes.audit.sourceIPs",
    "kubernetes.audit.userAgent",
    "kubernetes.audit.annotations.kaudit_io/source-format",
    "event.action",
    "user.name",
    "user_agent.original",
    "source.ip",
    "client.ip",
    "related.",
    "orchestrator.api_version",
];

/// The one event a provider item converts to.
fn convert_one(bytes: &[u8], format: ManagedFormat) -> Event {
    let mut out = managed::convert(bytes, format, None, &ConvertLimits::default())
        .unwrap_or_else(|e| panic!("{format}: {e}"));
    assert!(out.bad.is_empty(), "{format}: {:?}", out.bad);
    assert_eq!(out.events.len(), 1, "{format}: one event");
    out.events.remove(0)
}

#[test]
fn gke_document_keeps_elastics_values_where_kaudit_maps_differently() {
    let line = read("elastic-integrations-k8s-audit/tests/set_a_core_gke/test-audit.log");
    let line = line
        .lines()
        .find(|l| l.contains("\"protoPayload\""))
        .expect("set A has a GKE line");
    let ev = convert_one(line.as_bytes(), ManagedFormat::Gke);
    // The converted Event says what kube-apiserver would have: HTTP 200.
    assert_eq!(
        ev.doc().response_status.as_ref().and_then(|s| s.code),
        Some(200)
    );
    let doc = ecs_document(&outgoing(ev, "other"), &DocOptions::default()).unwrap();
    let audit = &doc["kubernetes"]["audit"];
    assert_eq!(audit["responseStatus"]["code"], 0, "Elastic keeps gRPC 0");
    assert_eq!(
        audit["requestReceivedTimestamp"],
        "2025-07-13T08:38:41.005864307Z"
    );
    assert_eq!(doc["event"]["original"], line);
    // The cluster is the LogEntry's, as in Elastic, not the sink's label.
    assert_eq!(doc["orchestrator"]["cluster"]["name"], "test-cluster");
    // What Elastic leaves out and its rules read, added.
    assert_eq!(doc["user"]["name"], "system:gke-master-healthcheck");
    assert_eq!(doc["event"]["action"], "get");
    assert_eq!(doc["source"]["ip"], serde_json::json!(["67.43.156.1"]));
    assert!(audit["annotations"].get("kaudit_io/envelope").is_none());
    assert!(audit["annotations"].get("kaudit_io/original").is_none());
}

#[test]
fn aks_record_makes_exactly_elastics_document() {
    let dir = "elastic-integrations-k8s-audit/tests/set_b_aks";
    let input = read(&format!("{dir}/test-kube-audit.log"));
    let expected: Value =
        serde_json::from_str(&read(&format!("{dir}/test-kube-audit.log-expected.json")))
            .expect("expected documents are JSON");
    let expected = expected["expected"]
        .as_array()
        .expect("an `expected` array");
    let lines: Vec<&str> = input.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!((lines.len(), expected.len()), (1, 1), "set B: one record");
    let ev = convert_one(lines[0].as_bytes(), ManagedFormat::Aks);
    let compared = check_against_elastic_adding(
        ev,
        &expected[0],
        "set B AKS record",
        // The source-format annotation: kaudit's own, and a way to select
        // AKS documents in Kibana.
        &["kubernetes.audit.annotations.kaudit_io/source-format"],
    );
    // Elastic's document: 46 leaf fields, every one compared (`@timestamp`
    // among them: the record's `time` at millisecond precision).
    assert_eq!(compared, 46);
}

#[test]
fn every_ecs_mapping_rule_of_the_pipeline_holds_on_edge_cases() {
    // Things set A does not exercise: a 403 forbid, several IPs with a
    // duplicate, an IP that is not one, empty strings, request/response
    // object metadata, no uid.
    let line = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns1/pods","verb":"create","user":{"username":"bob","groups":[]},"sourceIPs":["10.0.0.1","10.0.0.1","::1"],"userAgent":"","objectRef":{"resource":"pods","namespace":"ns1","apiGroup":"","apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Failure","code":403},"requestObject":{"kind":"Pod","metadata":{"name":"x","labels":{"a":"b"}},"spec":{"hostPID":true}},"responseObject":{"kind":"Status","metadata":{}},"requestReceivedTimestamp":"2026-01-05T09:00:00.100000Z","stageTimestamp":"2026-01-05T09:00:00.123456Z","annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":"","pod-security.kubernetes.io/enforce-policy":"restricted:latest"}}"#;
    let doc = ecs_document(
        &outgoing(Event::from_json(line.as_bytes()).unwrap(), ""),
        &DocOptions::default(),
    )
    .unwrap();
    assert_eq!(doc["event"]["outcome"], "failure");
    assert_eq!(doc["event"]["action"], "create");
    assert_eq!(
        doc["source"]["ip"],
        serde_json::json!(["10.0.0.1", "10.0.0.1", "::1"])
    );
    assert_eq!(doc["client"]["ip"], doc["source"]["ip"]);
    assert_eq!(doc["related"]["ip"], serde_json::json!(["10.0.0.1", "::1"]));
    assert_eq!(doc["related"]["user"], serde_json::json!(["bob"]));
    assert!(doc["user"].get("id").is_none(), "no uid, no user.id");
    assert!(doc.get("user_agent").is_none(), "empty userAgent dropped");
    let audit = &doc["kubernetes"]["audit"];
    assert!(audit["requestObject"].get("metadata").is_none());
    assert_eq!(audit["requestObject"]["spec"]["hostPID"], true);
    assert_eq!(
        audit["responseObject"],
        serde_json::json!({"kind": "Status"})
    );
    assert!(audit["user"].get("groups").is_none(), "[] dropped");
    assert!(audit["objectRef"].get("apiGroup").is_none(), "\"\" dropped");
    assert_eq!(
        audit["annotations"],
        serde_json::json!({"authorization_k8s_io/decision": "forbid", "pod-security_kubernetes_io/enforce-policy": "restricted:latest"})
    );
    assert!(
        doc["orchestrator"].get("cluster").is_none(),
        "no cluster name, none sent"
    );
    assert!(doc["orchestrator"]["resource"].get("name").is_none());
    assert_eq!(doc["orchestrator"]["resource"]["type"], "pods");

    // One entry that is not an IP: Elastic's convert fails as a whole.
    let bad_ip = line.replace(r#""::1"]"#, r#""not-an-ip"]"#);
    let doc = ecs_document(
        &outgoing(Event::from_json(bad_ip.as_bytes()).unwrap(), ""),
        &DocOptions::default(),
    )
    .unwrap();
    assert!(doc.get("source").is_none() && doc.get("client").is_none());
    assert!(doc["related"].get("ip").is_none());
    assert_eq!(
        doc["kubernetes"]["audit"]["sourceIPs"],
        serde_json::json!(["10.0.0.1", "10.0.0.1", "not-an-ip"])
    );
    // An unknown decision leaves the outcome unset, as Elastic does.
    let unknown = line.replace(r#"decision":"forbid""#, r#"decision":"maybe""#);
    let doc = ecs_document(
        &outgoing(Event::from_json(unknown.as_bytes()).unwrap(), ""),
        &DocOptions::default(),
    )
    .unwrap();
    assert!(doc["event"].get("outcome").is_none());
}

/// Values at an Elasticsearch field path: dots in object keys are path
/// separators (ES reads `{"a.b": 1}` and `{"a": {"b": 1}}` alike) and arrays
/// are transparent. Returns the leaf values (array items flattened).
fn es_values<'a>(v: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => {
            for it in items {
                es_values(it, path, out);
            }
        }
        Value::Object(m) if !path.is_empty() => {
            for (k, c) in m {
                if path == k {
                    es_values(c, "", out);
                } else if let Some(rest) = path
                    .strip_prefix(k.as_str())
                    .and_then(|r| r.strip_prefix('.'))
                {
                    es_values(c, rest, out);
                }
            }
        }
        _ if path.is_empty() => out.push(v),
        _ => {}
    }
}

/// Whether a value is data (Elastic drops the others).
fn is_data(v: &Value) -> bool {
    !matches!(v, Value::Null)
        && v.as_str() != Some("")
        && v.as_object().is_none_or(|m| !m.is_empty())
}

/// Field names the index's extractor cut short, and the name the rule's
/// query really uses (`rules_index.json` stops at the `-` of `pod-name`;
/// the query in the same entry reads `...authentication.kubernetes.io/pod-name`).
const FIELD_NAME_FIXES: &[(&str, &str)] = &[(
    "kubernetes.audit.user.extra.authentication.kubernetes.io/pod",
    "kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name",
)];

/// The event data behind an ECS field Elastic's pipeline fills, and the
/// check of the value's type: `None` means the field is always there.
fn ecs_source(field: &str) -> Option<Option<&'static str>> {
    Some(match field {
        "user.name" => Some("user.username"),
        "user_agent.original" => Some("userAgent"),
        "event.action" => Some("verb"),
        "source.ip" => Some("sourceIPs"),
        "event.original" | "event.dataset" | "data_stream.dataset" | "data_stream.namespace" => {
            None
        }
        _ => return None,
    })
}

/// The corpus: events that hold, between them, the data every rule reads.
fn corpus() -> Vec<(String, Event)> {
    let mut out = Vec::new();
    let set_a = read("elastic-integrations-k8s-audit/tests/set_a_core_gke/test-audit.log");
    for (i, l) in set_a.lines().enumerate() {
        if let Ok(ev) = Event::from_json(l.as_bytes()) {
            out.push((format!("elastic set A line {}", i + 1), ev));
        }
    }
    let aks = read("sysdig-aks-audit-log/event.inner_events.derived.jsonl");
    for (i, l) in aks
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let ev =
            Event::from_json(l.as_bytes()).unwrap_or_else(|e| panic!("sysdig line {}: {e}", i + 1));
        out.push((format!("sysdig AKS event {}", i + 1), ev));
    }
    let mut cfg = kaudit_gen::GenConfig::new(19);
    cfg.events = Some(3000);
    cfg.incident_every = 50;
    for (i, g) in kaudit_gen::Generator::new(cfg)
        .expect("generator")
        .enumerate()
    {
        out.push((
            format!("generated event {i}"),
            g.event().expect("generated events parse"),
        ));
    }
    // Hand-written events for what the generated traffic and the samples
    // lack (a privileged pod with capabilities and a hostPath, a pod's
    // service account token, a NodePort service, role rules in the response).
    let line = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"p1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"create","user":{"username":"system:serviceaccount:ci:runner","uid":"u1","groups":["system:serviceaccounts"],"extra":{"authentication.kubernetes.io/pod-name":["runner-7d9"],"authentication.kubernetes.io/pod-uid":["9f"]}},"impersonatedUser":{"username":"system:admin","groups":["system:masters"]},"sourceIPs":["10.1.2.3"],"userAgent":"curl/8.5.0","objectRef":{"resource":"pods","namespace":"default","name":"p","apiVersion":"v1","subresource":"ephemeralcontainers"},"responseStatus":{"metadata":{},"code":201,"message":"created"},"requestObject":{"kind":"Pod","apiVersion":"v1","spec":{"serviceAccountName":"default","hostIPC":true,"hostPID":true,"hostNetwork":true,"type":"NodePort","containers":[{"name":"c","image":"alpine:3","securityContext":{"privileged":true,"capabilities":{"add":["SYS_ADMIN"]}}}],"volumes":[{"name":"h","hostPath":{"path":"/etc"}}]},"rules":[{"verbs":["*"],"resources":["*"]}],"roleRef":{"kind":"ClusterRole","name":"cluster-admin"}},"responseObject":{"kind":"Role","rules":[{"verbs":["*"],"resources":["*"]}]},"requestReceivedTimestamp":"2026-01-05T09:00:00.100000Z","stageTimestamp":"2026-01-05T09:00:00.123456Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}"#;
    out.push((
        "privileged pod".to_string(),
        Event::from_json(line.as_bytes()).expect("privileged pod"),
    ));
    out
}

#[test]
fn every_field_elastics_kubernetes_rules_read_is_there() {
    let index: Value = serde_json::from_str(&read("elastic-detection-rules-k8s/rules_index.json"))
        .expect("rules_index.json is JSON");
    let rules = index["rules"].as_array().expect("a rules array");
    assert_eq!(rules.len(), 45, "Elastic's 45 Kubernetes rules");
    let mut fields = BTreeSet::new();
    let mut reading = 0;
    for r in rules {
        let indexes: Vec<&str> = r["index"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let query = r["query"].as_str().unwrap_or("");
        // KQL/EQL/new_terms rules name the index; ES|QL rules have none and
        // say `FROM logs-kubernetes.audit_logs-*` in the query.
        if !indexes
            .iter()
            .any(|i| i.starts_with("logs-kubernetes.audit_logs"))
            && !query.contains("logs-kubernetes.audit_logs-")
        {
            continue;
        }
        reading += 1;
        for f in r["fields_referenced"]
            .as_array()
            .expect("fields_referenced")
        {
            let f = f.as_str().expect("a field name");
            let f = FIELD_NAME_FIXES
                .iter()
                .find(|(short, _)| *short == f)
                .map_or(f, |(_, full)| full);
            fields.insert(f.to_string());
        }
    }
    assert_eq!(reading, 45, "every rule reads logs-kubernetes.audit_logs-*");
    assert_eq!(fields.len(), 40, "distinct fields the rules read");

    let opts = DocOptions::default();
    let mut exercised: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, ev) in corpus() {
        let mut raw: Value = serde_json::from_slice(ev.bytes()).unwrap();
        // Elastic de-dots annotation keys: the data behind
        // `annotations.authorization_k8s_io/decision` is the raw
        // `authorization.k8s.io/decision`.
        if let Some(Value::Object(ann)) = raw.get_mut("annotations") {
            let renamed: Map<String, Value> = std::mem::take(ann)
                .into_iter()
                .map(|(k, v)| (k.replace('.', "_"), v))
                .collect();
            *ann = renamed;
        }
        let doc = ecs_document(&outgoing(ev, "c1"), &opts).unwrap();
        for f in &fields {
            let mut got = Vec::new();
            es_values(&doc, f, &mut got);
            let got: Vec<&Value> = got.into_iter().filter(|v| is_data(v)).collect();
            if let Some(path) = f.strip_prefix("kubernetes.audit.") {
                let mut want = Vec::new();
                es_values(&raw, path, &mut want);
                let want: Vec<&Value> = want.into_iter().filter(|v| is_data(v)).collect();
                if want.is_empty() {
                    continue;
                }
                assert_eq!(
                    got, want,
                    "{name}: {f} must carry the event's value and type"
                );
                *exercised.entry(f).or_default() += 1;
            } else if let Some(src) = ecs_source(f) {
                let mut want = Vec::new();
                if let Some(src) = src {
                    es_values(&raw, src, &mut want);
                    want.retain(|v| is_data(v));
                    if want.is_empty() {
                        continue;
                    }
                }
                assert!(
                    !got.is_empty(),
                    "{name}: {f} missing though the event has the data"
                );
                assert!(
                    got.iter().all(|v| v.is_string()),
                    "{name}: {f} must be keyword/ip strings: {got:?}"
                );
                if src.is_some() {
                    assert_eq!(got, want, "{name}: {f} must equal the event's data");
                }
                if f == "source.ip" {
                    assert!(
                        doc["source"]["ip"].is_array(),
                        "{name}: source.ip is an array"
                    );
                }
                if f == "data_stream.dataset" || f == "event.dataset" {
                    assert_eq!(got, [&Value::from("kubernetes.audit_logs")]);
                }
                *exercised.entry(f).or_default() += 1;
            } else {
                panic!("a rule reads {f}, which this test does not know where to find");
            }
        }
    }
    let missing: Vec<&String> = fields
        .iter()
        .filter(|f| !exercised.contains_key(f.as_str()))
        .collect();
    assert!(missing.is_empty(), "no corpus event exercised {missing:?}");
    assert_eq!(exercised.len(), 40);
}
