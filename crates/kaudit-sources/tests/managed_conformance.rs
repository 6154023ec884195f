//! Managed-cluster sources over the other projects' material in
//! `../shared/conformance/external/` (missing data fails, never skips), and
//! the EKS transports built here byte for byte (no real EKS envelope is
//! published).

use base64::Engine;
use kaudit_event::{Event, EventDoc, MicroTime};
use kaudit_sources::managed::{
    self, convert, eks, gke, ConvertLimits, Converted, ManagedFormat, ENVELOPE_ANNOTATION,
    SOURCE_FORMAT_ANNOTATION,
};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;

fn external() -> PathBuf {
    let dir = std::env::var_os("KAUDIT_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
        })
        .join("external");
    assert!(
        dir.join("INDEX.md").is_file(),
        "conformance data missing: expected {} (set KAUDIT_CONFORMANCE)",
        dir.display()
    );
    dir
}

fn read(rel: &str) -> Vec<u8> {
    let p = external().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn run(input: &[u8], f: ManagedFormat) -> Converted {
    convert(input, f, None, &ConvertLimits::default()).unwrap()
}

/// The event without kaudit's own annotations (what the provider carried).
fn stripped(ev: &Event) -> EventDoc {
    let mut d = ev.doc().clone();
    d.annotations.remove(SOURCE_FORMAT_ANNOTATION);
    d.annotations.remove(ENVELOPE_ANNOTATION);
    d.annotations.remove(managed::ORIGINAL_ANNOTATION);
    d
}

fn envelope(ev: &Event) -> Value {
    serde_json::from_str(ev.annotation(ENVELOPE_ANNOTATION).expect("envelope kept")).unwrap()
}

#[test]
fn aks_event_hub_message_unwraps_to_exactly_the_22_given_events() {
    let out = run(
        &read("sysdig-aks-audit-log/event.json"),
        ManagedFormat::Auto,
    );
    assert_eq!(out.format, Some(ManagedFormat::Aks));
    assert!(out.bad.is_empty(), "{:?}", out.bad);
    let want = String::from_utf8(read(
        "sysdig-aks-audit-log/event.inner_events.derived.jsonl",
    ))
    .unwrap();
    let want: Vec<EventDoc> = want
        .lines()
        .map(|l| Event::from_json(l.as_bytes()).unwrap().into_doc())
        .collect();
    assert_eq!(want.len(), 22);
    assert_eq!(out.events.len(), 22);
    for (i, (got, want)) in out.events.iter().zip(&want).enumerate() {
        assert_eq!(&stripped(got), want, "record {i}");
        assert_eq!(got.annotation(SOURCE_FORMAT_ANNOTATION), Some("aks"));
        let env = envelope(got);
        assert_eq!(env["category"], "kube-audit");
        assert!(env["resourceId"]
            .as_str()
            .unwrap()
            .contains("MANAGEDCLUSTERS/KUBETEST"));
        assert!(env["properties"]["pod"].is_string(), "pod kept");
        assert!(
            env["properties"].get("log").is_none(),
            "log moved, not copied"
        );
    }
    // The single record, pretty-printed behind a UTF-8 BOM.
    let one = run(
        &read("sysdig-aks-audit-log/sample_EventHubs_event.json"),
        ManagedFormat::Auto,
    );
    assert_eq!(
        (one.format, one.events.len(), one.bad.len()),
        (Some(ManagedFormat::Aks), 1, 0)
    );
    assert_eq!(
        one.events[0].audit_id(),
        "4e2a4193-cb3d-4ff7-bf37-32c392fbc23b"
    );
    // A native event behind a BOM is not an envelope.
    let native = read("sysdig-aks-audit-log/sample_KubeAuditLog_event.json");
    assert_eq!(managed::sniff(&native), None);
}

#[test]
fn aks_other_categories_are_counted_and_klog_text_is_a_located_bad_item() {
    let body = json!({"records": [
        {"category": "kube-apiserver", "properties": {"log": "I0101 started\n"}},
        {"category": "kube-audit", "properties": {"log": "I0101 not json\n"}},
        {"category": "cluster-autoscaler", "properties": {"log": "x"}},
        {"category": "kube-audit-admin", "properties": {"log": "\u{feff}{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"level\":\"Metadata\",\"auditID\":\"a\",\"stage\":\"ResponseComplete\",\"requestURI\":\"/api\",\"verb\":\"get\",\"user\":{\"username\":\"u\"}}\n\n"}}
    ]});
    let out = run(body.to_string().as_bytes(), ManagedFormat::Aks);
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.skipped.values().sum::<usize>(), 2);
    assert_eq!(
        out.skipped.get("aks: category \"kube-apiserver\""),
        Some(&1)
    );
    assert_eq!(out.bad.len(), 1);
    assert_eq!(
        out.bad[0].path.as_deref(),
        Some("$.records[1].properties.log")
    );
    assert_eq!(out.bad[0].raw, b"I0101 not json\n");
}

#[test]
fn elastic_aks_case_matches_the_expected_document() {
    let input = read("elastic-integrations-k8s-audit/tests/set_b_aks/test-kube-audit.log");
    let out = run(&input, ManagedFormat::Auto);
    assert_eq!(
        (out.format, out.events.len()),
        (Some(ManagedFormat::Aks), 1)
    );
    let expected: Value = serde_json::from_slice(&read(
        "elastic-integrations-k8s-audit/tests/set_b_aks/test-kube-audit.log-expected.json",
    ))
    .unwrap();
    let mut want = expected["expected"][0]["kubernetes"]["audit"].clone();
    let meta = want
        .as_object_mut()
        .unwrap()
        .remove("aks_metadata")
        .unwrap();
    let ev = &out.events[0];
    let got = elastic_shape(serde_json::to_value(stripped_json(ev)).unwrap());
    assert_eq!(got, want);
    // What Elastic moves to aks_metadata is in the envelope.
    let env = envelope(ev);
    assert_eq!(env["category"], meta["category"]);
    assert_eq!(env["time"], meta["time"]);
    assert_eq!(env["resourceId"], meta["resource_id"]);
    assert_eq!(env["operationName"], meta["operation_name"]);
    assert_eq!(env["properties"]["containerID"], meta["container_id"]);
    assert_eq!(env["properties"]["pod"], meta["pod"]);
    // The newer object-form `properties.log` (input_only, line 5).
    let input = read("elastic-integrations-k8s-audit/tests/input_only/test-audit.log");
    let line5 = String::from_utf8(input)
        .unwrap()
        .lines()
        .nth(4)
        .unwrap()
        .to_string();
    let out = run(line5.as_bytes(), ManagedFormat::Auto);
    assert_eq!(out.events.len(), 1);
    let ev = &out.events[0];
    assert_eq!(
        (ev.verb(), ev.user().username.as_str()),
        ("update", "aksService")
    );
    assert_eq!(ev.object_ref().unwrap().name, "elastic-agent-cluster-test");
    assert_eq!(envelope(ev)["category"], "kube-audit-admin");
}

/// The event as JSON without kaudit's annotations.
fn stripped_json(ev: &Event) -> Value {
    serde_json::from_slice(&Event::from_doc(stripped(ev)).into_bytes()).unwrap()
}

/// What Elastic's pipeline does to an Event's fields: annotation keys
/// de-dotted, empty values dropped, timestamps compared at microseconds.
fn elastic_shape(v: Value) -> Value {
    fn prune(v: Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            Value::Object(o) => {
                let o: serde_json::Map<String, Value> = o
                    .into_iter()
                    .filter_map(|(k, v)| prune(v).map(|v| (k, v)))
                    .collect();
                (!o.is_empty()).then_some(Value::Object(o))
            }
            Value::Array(a) if a.is_empty() => None,
            other => Some(other),
        }
    }
    let mut v = prune(v).unwrap_or(Value::Null);
    if let Some(Value::Object(a)) = v.get_mut("annotations") {
        let keys: Vec<String> = a.keys().cloned().collect();
        for k in keys {
            let val = a.shift_remove(&k).unwrap();
            a.insert(k.replace('.', "_"), val);
        }
    }
    v
}

#[test]
fn elastic_gke_case_maps_as_elastic_does() {
    let input = String::from_utf8(read(
        "elastic-integrations-k8s-audit/tests/set_a_core_gke/test-audit.log",
    ))
    .unwrap();
    let lines: Vec<&str> = input.lines().collect();
    assert_eq!(lines.len(), 4);
    for l in &lines[..3] {
        assert_eq!(
            managed::sniff(l.as_bytes()),
            None,
            "native events stay native"
        );
    }
    let out = run(lines[3].as_bytes(), ManagedFormat::Auto);
    assert_eq!(
        (out.format, out.events.len()),
        (Some(ManagedFormat::Gke), 1)
    );
    let ev = &out.events[0];
    let expected: Value = serde_json::from_slice(&read(
        "elastic-integrations-k8s-audit/tests/set_a_core_gke/test-audit.log-expected.json",
    ))
    .unwrap();
    let want = &expected["expected"][3]["kubernetes"]["audit"];
    assert_eq!(ev.audit_id(), want["auditID"]);
    let t = |k: &str| MicroTime::parse(want[k].as_str().unwrap()).unwrap();
    assert_eq!(
        ev.request_received_timestamp(),
        Some(t("requestReceivedTimestamp"))
    );
    assert_eq!(ev.stage_timestamp(), Some(t("stageTimestamp")));
    let got = elastic_shape(stripped_json(ev));
    assert_eq!(got["annotations"], want["annotations"]);
    // Elastic keeps the gRPC code (0); kaudit gives the HTTP code and keeps
    // the gRPC status in the envelope.
    assert_eq!(want["responseStatus"]["code"], 0);
    assert_eq!(ev.response_code(), Some(200));
    let env = envelope(ev);
    assert_eq!(env["protoPayload"]["status"]["code"], 0);
    assert_eq!(env["resource"], want["resource"]);
    assert_eq!(env["logName"], want["logName"]);
    assert_eq!(env["operation"], want["operation"]);
    // What Elastic leaves unmapped, kaudit maps.
    assert_eq!(ev.user().username, "system:gke-master-healthcheck");
    assert_eq!(ev.source_ips(), ["67.43.156.1"]);
    assert_eq!(ev.user_agent(), "gke-master-healthcheck");
    assert_eq!((ev.verb(), ev.request_uri()), ("get", "/readyz"));
    assert!(
        ev.object_ref().is_none(),
        "readyz is a non-resource request"
    );
}

#[test]
fn khi_resource_name_vectors_all_pass() {
    let v: Value =
        serde_json::from_slice(&read("khi-gke-k8s-audit/gke_resource_name_vectors.json")).unwrap();
    let cases = v["parse_cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for c in cases {
        let w = &c["want"];
        let p = gke::parse_resource(
            c["resourceName"].as_str().unwrap(),
            c["methodName"].as_str().unwrap(),
        )
        .unwrap_or_else(|| panic!("{c}"));
        let (g, ver) = w["apiVersion"].as_str().unwrap().split_once('/').unwrap();
        assert_eq!(if p.group.is_empty() { "core" } else { &p.group }, g, "{c}");
        assert_eq!(p.version, ver);
        assert_eq!(p.resource, w["pluralKind"].as_str().unwrap(), "{c}");
        assert_eq!(p.name, w["name"].as_str().unwrap(), "{c}");
        assert_eq!(p.subresource, w["subresource"].as_str().unwrap(), "{c}");
        assert_eq!(p.verb, w["verb"].as_str().unwrap(), "{c}");
        // KHI's "cluster-scope" is no namespace, except that kaudit follows
        // kube-apiserver for a Namespace object (its name as namespace).
        let ns = match w["namespace"].as_str().unwrap() {
            "cluster-scope" if p.resource == "namespaces" => p.name.as_str(),
            "cluster-scope" => "",
            ns => ns,
        };
        assert_eq!(p.namespace, ns, "{c}");
    }
    let sets = v["field_set_cases"].as_array().unwrap();
    assert_eq!(sets.len(), 3);
    for c in sets {
        let out = run(c["input"].to_string().as_bytes(), ManagedFormat::Gke);
        assert_eq!(
            (out.events.len(), out.bad.len()),
            (1, 0),
            "{c}: {:?}",
            out.bad
        );
        let ev = &out.events[0];
        let w = &c["want"];
        let o = ev.object_ref().unwrap();
        assert_eq!(o.namespace, w["namespace"].as_str().unwrap());
        assert_eq!(o.resource, w["pluralKind"].as_str().unwrap());
        assert_eq!(o.name, w["resourceName"].as_str().unwrap());
        assert_eq!(ev.verb(), w["verb"].as_str().unwrap());
        if let Some(p) = w["principal"].as_str() {
            assert_eq!(ev.user().username, p);
            assert_eq!(ev.audit_id(), w["operationId"].as_str().unwrap());
            assert_eq!(ev.response_code(), Some(200), "gRPC 0 is HTTP 200");
        }
        if w["isDryRun"] == true {
            assert_eq!(ev.annotation("command.gke.io/dryRun"), Some("All"));
        }
        if let Some(hooks) = w["mutatingWebhookResults"].as_array() {
            let n = ev
                .doc()
                .annotations
                .keys()
                .filter(|k| k.contains("webhook.admission.k8s.io/"))
                .count();
            assert_eq!(
                n,
                hooks.len() + 1,
                "3 results + 1 patch label kept as annotations"
            );
        }
    }
}

#[test]
fn khi_gke_entries_convert_and_cluster_api_entries_are_refused() {
    let text = read("khi-gke-k8s-audit/gke_k8s_audit.derived.jsonl");
    let out = run(&text, ManagedFormat::Auto);
    assert_eq!(
        (out.format, out.events.len(), out.bad.len()),
        (Some(ManagedFormat::Gke), 3, 0)
    );
    let e = &out.events[0];
    assert_eq!(e.audit_id(), "85371f7c-2383-4041-96e8-dad63d2d1990");
    assert_eq!(e.verb(), "create");
    assert_eq!(
        e.user().username,
        "system:serviceaccount:kube-system:replicaset-controller"
    );
    assert_eq!(e.source_ips(), ["172.16.0.3"]);
    assert!(e
        .user_agent()
        .starts_with("kube-controller-manager/v1.28.14"));
    let o = e.object_ref().unwrap();
    assert_eq!(
        (
            o.api_group.as_str(),
            o.api_version.as_str(),
            o.resource.as_str()
        ),
        ("", "v1", "pods")
    );
    assert_eq!(
        (o.namespace.as_str(), o.name.as_str()),
        (
            "1-2-deployment-update",
            "nginx-deployment-surge-8655b4b8c5-xf5f4"
        )
    );
    assert_eq!(
        e.request_uri(),
        "/api/v1/namespaces/1-2-deployment-update/pods"
    );
    assert_eq!(e.level(), kaudit_event::Level::RequestResponse);
    assert!(e.doc().request_object.is_some() && e.doc().response_object.is_some());
    assert_eq!(e.annotation("authorization.k8s.io/decision"), Some("allow"));
    assert_eq!(
        e.annotation("pod-security.kubernetes.io/enforce-policy"),
        Some("privileged:latest")
    );
    for s in &out.events[1..] {
        let o = s.object_ref().unwrap();
        assert_eq!(
            (o.resource.as_str(), o.subresource.as_str(), s.verb()),
            ("pods", "status", "patch")
        );
        assert_eq!(s.request_uri(), "/api/v1/namespaces/1-2-deployment-update/pods/nginx-deployment-surge-8655b4b8c5-xf5f4/status");
    }
    // The manifests KHI expects are the objects these entries carried.
    for i in 1..=3 {
        let m = String::from_utf8(read(&format!(
            "khi-gke-k8s-audit/gke_k8s_audit/container_recorder_test_1_{i}_manifest.yaml"
        )))
        .unwrap();
        assert!(
            m.contains("nginx-deployment-surge-8655b4b8c5-xf5f4"),
            "manifest {i}"
        );
    }
    let neg = read("khi-gke-k8s-audit/gke_cluster_api_audit.derived.jsonl");
    let out = run(&neg, ManagedFormat::Gke);
    assert_eq!((out.events.len(), out.bad.len()), (0, 9));
    for (i, b) in out.bad.iter().enumerate() {
        assert_eq!(b.path.as_deref(), Some(format!("line {}", i + 1).as_str()));
        assert!(
            b.reason.contains("container.googleapis.com")
                && b.reason.contains("cluster-management"),
            "{}",
            b.reason
        );
    }
    // The native event KHI ships is not a GKE entry.
    assert_eq!(
        managed::sniff(&read("khi-gke-k8s-audit/oss_event.derived.jsonl")),
        None
    );
}

/// An entry as a Cloud Logging sink writes it to BigQuery: the payload
/// under `protopayload_auditlog`, bodies as JSON strings, BigQuery times.
fn bigquery_row(entry: &Value) -> Value {
    let mut row = entry.as_object().unwrap().clone();
    let mut payload = row
        .remove("protoPayload")
        .unwrap()
        .as_object()
        .unwrap()
        .clone();
    payload.remove("@type");
    for (field, column) in [("request", "requestJson"), ("response", "responseJson")] {
        if let Some(body) = payload.remove(field) {
            payload.insert(column.into(), Value::String(body.to_string()));
        }
    }
    row.insert("protopayload_auditlog".into(), Value::Object(payload));
    for key in ["timestamp", "receiveTimestamp"] {
        if let Some(Value::String(t)) = row.get_mut(key) {
            *t = t.replacen('T', " ", 1).trim_end_matches('Z').to_string() + " UTC";
        }
    }
    Value::Object(row)
}

#[test]
fn gke_bigquery_export_rows_and_logging_api_pages_convert_like_the_entries() {
    let lines = String::from_utf8(read("khi-gke-k8s-audit/gke_k8s_audit.derived.jsonl")).unwrap();
    let entries: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want = run(lines.as_bytes(), ManagedFormat::Gke);
    assert_eq!(want.events.len(), 3);
    let rows: Vec<String> = entries
        .iter()
        .map(|e| bigquery_row(e).to_string())
        .collect();
    let bq = rows.join("\n");
    assert_eq!(managed::sniff(bq.as_bytes()), Some(ManagedFormat::Gke));
    let got = run(bq.as_bytes(), ManagedFormat::Auto);
    assert!(got.bad.is_empty(), "{:?}", got.bad);
    assert_eq!(got.events.len(), 3);
    for (g, w) in got.events.iter().zip(&want.events) {
        let (g, w) = (stripped(g), stripped(w));
        assert_eq!(g.audit_id, w.audit_id);
        assert_eq!(g.verb, w.verb);
        assert_eq!(g.user.username, w.user.username);
        assert_eq!(g.request_received_timestamp, w.request_received_timestamp);
        assert_eq!(g.stage_timestamp, w.stage_timestamp);
        assert_eq!(g.object_ref, w.object_ref);
        assert_eq!(g.request_object.is_some(), w.request_object.is_some());
        assert_eq!(g.response_object.is_some(), w.response_object.is_some());
    }
    // A body column that is not JSON is a located bad item, not a crash.
    let mut broken = bigquery_row(&entries[0]);
    broken["protopayload_auditlog"]["requestJson"] = json!("{not json");
    let out = run(broken.to_string().as_bytes(), ManagedFormat::Gke);
    assert_eq!(out.events.len(), 0);
    assert!(out.bad[0].reason.contains("requestJson"), "{:?}", out.bad);
    // The Logging API's `entries.list` page.
    let page = json!({"entries": entries, "nextPageToken": "t"});
    let out = run(page.to_string().as_bytes(), ManagedFormat::Auto);
    assert_eq!(
        (out.format, out.events.len()),
        (Some(ManagedFormat::Gke), 3)
    );
}

#[test]
fn gke_array_and_pubsub_push_deliveries() {
    let lines = String::from_utf8(read("khi-gke-k8s-audit/gke_k8s_audit.derived.jsonl")).unwrap();
    let entries: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // `gcloud logging read --format=json` prints an array.
    let array = serde_json::to_vec_pretty(&entries).unwrap();
    assert_eq!(managed::sniff(&array), Some(ManagedFormat::Gke));
    assert_eq!(run(&array, ManagedFormat::Auto).events.len(), 3);
    let push = json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(lines.lines().next().unwrap()),
            "messageId": "m1", "publishTime": "2024-01-01T01:00:01Z", "attributes": {"logging.googleapis.com/timestamp": "x"}
        },
        "subscription": "projects/p/subscriptions/kaudit"
    });
    let out = run(push.to_string().as_bytes(), ManagedFormat::Auto);
    assert_eq!(
        (out.format, out.events.len()),
        (Some(ManagedFormat::Gke), 1)
    );
    let env = envelope(&out.events[0]);
    assert_eq!(env["pubsub"]["messageId"], "m1");
    assert_eq!(
        env["pubsub"]["subscription"],
        "projects/p/subscriptions/kaudit"
    );
    let bad = json!({"message": {"data": "!!notbase64"}, "subscription": "s"});
    let out = run(bad.to_string().as_bytes(), ManagedFormat::Gke);
    assert_eq!(out.bad[0].path.as_deref(), Some("$.message.data"));
}

#[test]
fn the_59_kube_audit_rest_captures_convert() {
    let out = run(
        &read("kube-audit-rest/kube-audit-rest.log"),
        ManagedFormat::Auto,
    );
    assert_eq!(out.format, Some(ManagedFormat::Admission));
    assert!(out.bad.is_empty(), "{:?}", out.bad);
    assert_eq!(out.events.len(), 59);
    let count = |f: &dyn Fn(&Event) -> bool| out.events.iter().filter(|e| f(e)).count();
    assert_eq!(count(&|e| e.verb() == "create"), 57);
    assert_eq!(count(&|e| e.verb() == "update"), 2);
    assert_eq!(
        count(&|e| e.object_ref().unwrap().resource == "selfsubjectaccessreviews"),
        44
    );
    assert_eq!(count(&|e| e.object_ref().unwrap().resource == "events"), 13);
    assert_eq!(
        count(&|e| e.user().username == "system:admin"),
        out.events
            .iter()
            .filter(|e| e.user().username == "system:admin")
            .count()
    );
    for e in &out.events {
        assert_eq!(e.level(), kaudit_event::Level::RequestResponse);
        assert!(e.doc().request_object.is_some());
        assert_eq!(e.annotation(SOURCE_FORMAT_ANNOTATION), Some("admission"));
        assert!(e
            .annotation("kaudit.io/admission-capture")
            .unwrap()
            .contains("no reads"));
        assert!(
            e.request_received_timestamp().is_none(),
            "this capture has no times"
        );
        let env = envelope(e);
        assert!(env["operation"].is_string());
        // Re-reading the stored bytes gives the same event.
        assert_eq!(Event::from_json(e.bytes()).unwrap().doc(), e.doc());
    }
    let upd: Vec<&Event> = out.events.iter().filter(|e| e.verb() == "update").collect();
    for e in upd {
        assert!(envelope(e)["oldObject"].is_object(), "oldObject kept");
        assert!(!e.object_ref().unwrap().name.is_empty());
    }
}

fn eks_event(id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets","verb":"list","user":{{"username":"kubernetes-admin","uid":"aws-iam-authenticator:111122223333:AROAEXAMPLE","groups":["system:masters","system:authenticated"],"extra":{{"accessKeyId":["ASIAEXAMPLE"],"arn":["arn:aws:sts::111122223333:assumed-role/Admin/alice"],"canonicalArn":["arn:aws:iam::111122223333:role/Admin"],"sessionName":["alice"]}}}},"sourceIPs":["203.0.113.7"],"userAgent":"kubectl/v1.29.0","objectRef":{{"resource":"secrets","namespace":"default","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"2024-05-01T10:00:00.000000Z","stageTimestamp":"2024-05-01T10:00:00.010000Z","annotations":{{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}}}"#
    )
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b).unwrap();
    gz.finish().unwrap()
}

fn subscription(ids: &[&str]) -> Value {
    json!({
        "messageType": "DATA_MESSAGE", "owner": "111122223333",
        "logGroup": "/aws/eks/prod/cluster", "logStream": "kube-apiserver-audit-abc",
        "subscriptionFilters": ["kaudit"],
        "logEvents": ids.iter().enumerate().map(|(i, id)| json!({"id": format!("e{i}"), "timestamp": 1714557600000u64, "message": eks_event(id)})).collect::<Vec<_>>()
    })
}

#[test]
fn eks_cloudwatch_export_and_user_extras_are_searchable() {
    let export = json!({"events": [
        {"logStreamName": "kube-apiserver-audit-abc", "timestamp": 1714557600000u64, "message": eks_event("a1"), "ingestionTime": 1714557601000u64, "eventId": "1"},
        {"logStreamName": "kube-apiserver-audit-abc", "timestamp": 1714557600001u64, "message": "not an event", "eventId": "2"}
    ], "searchedLogStreams": []});
    let out = run(export.to_string().as_bytes(), ManagedFormat::Auto);
    assert_eq!(
        (out.format, out.events.len(), out.bad.len()),
        (Some(ManagedFormat::Eks), 1, 1)
    );
    assert_eq!(out.bad[0].path.as_deref(), Some("$.events[1].message"));
    let ev = &out.events[0];
    assert_eq!(
        stripped(ev),
        Event::from_json(eks_event("a1").as_bytes())
            .unwrap()
            .into_doc()
    );
    let env = envelope(ev);
    assert_eq!(
        (env["logStreamName"].as_str(), env["eventId"].as_str()),
        (Some("kube-apiserver-audit-abc"), Some("1"))
    );
    for (q, want) in [
        (
            ".user.extra.arn[*]=\"arn:aws:sts::111122223333:assumed-role/Admin/alice\"",
            true,
        ),
        (".user.extra.accessKeyId[*]=ASIAEXAMPLE", true),
        (".user.extra.sessionName[*]=alice", true),
        (".user.extra.sessionName[*]=bob", false),
        ("annotation.kaudit.io/source-format=eks", true),
    ] {
        let query = kaudit_query::Query::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(query.matches(ev, "prod"), want, "{q}");
    }
}

#[test]
fn eks_subscription_payloads_firehose_deliveries_and_s3_objects() {
    // A subscription payload as CloudWatch sends it: base64 of gzip, one per line,
    // and a CONTROL_MESSAGE that is skipped and counted.
    let data = base64::engine::general_purpose::STANDARD
        .encode(gzip(subscription(&["s1", "s2"]).to_string().as_bytes()));
    let control = base64::engine::general_purpose::STANDARD.encode(gzip(json!({"messageType": "CONTROL_MESSAGE", "logEvents": [{"id": "", "timestamp": 1, "message": "CWL CONTROL MESSAGE: Checking health of destination"}]}).to_string().as_bytes()));
    let lines = format!("{data}\n{control}\n");
    let out = run(lines.as_bytes(), ManagedFormat::Auto);
    assert_eq!(
        (out.format, out.events.len(), out.bad.len()),
        (Some(ManagedFormat::Eks), 2, 0)
    );
    assert_eq!(out.skipped.get("eks: CloudWatch CONTROL_MESSAGE"), Some(&1));
    let env = envelope(&out.events[1]);
    assert_eq!(
        (env["logGroup"].as_str(), env["id"].as_str()),
        (Some("/aws/eks/prod/cluster"), Some("e1"))
    );
    // The decoded payload.
    assert_eq!(
        run(
            subscription(&["d1"]).to_string().as_bytes(),
            ManagedFormat::Auto
        )
        .events
        .len(),
        1
    );
    // A Firehose HTTP-endpoint delivery: records[].data = the gzip payload.
    let delivery = json!({"requestId": "ed4acda5-034f-9f42-bba1-f29aea6d7d8f", "timestamp": 1714557600500u64,
        "records": [{"data": data}, {"data": "%%%"}, {"data": base64::engine::general_purpose::STANDARD.encode(subscription(&["f3"]).to_string())}]});
    let body = delivery.to_string();
    assert_eq!(
        eks::firehose_request_id(body.as_bytes()).as_deref(),
        Some("ed4acda5-034f-9f42-bba1-f29aea6d7d8f")
    );
    let out = run(body.as_bytes(), ManagedFormat::Auto);
    assert_eq!((out.events.len(), out.bad.len()), (3, 1), "{:?}", out.bad);
    assert_eq!(out.bad[0].path.as_deref(), Some("$.records[1].data"));
    assert!(out.bad[0].reason.contains("base64"));
    assert_eq!(
        envelope(&out.events[0])["firehoseRequestId"],
        "ed4acda5-034f-9f42-bba1-f29aea6d7d8f"
    );
    let reply = eks::firehose_reply("r", 5, None);
    assert_eq!(reply, json!({"requestId": "r", "timestamp": 5}));
    assert_eq!(
        eks::firehose_reply("r", 5, Some("no"))["errorMessage"],
        "no"
    );
    // An S3 export object: gzip of `<timestamp> <json>` lines (and plain JSON lines).
    let s3 = format!(
        "2024-05-01T10:00:00.000Z {}\n{}\n",
        eks_event("o1"),
        eks_event("o2")
    );
    let gz = gzip(s3.as_bytes());
    let out = run(&gz, ManagedFormat::Eks);
    assert_eq!(out.events.len(), 2);
    assert_eq!(
        envelope(&out.events[0])["exportTimestamp"],
        "2024-05-01T10:00:00.000Z"
    );
    assert!(
        out.events[1].annotation(ENVELOPE_ANNOTATION).is_none(),
        "nothing left over"
    );
    assert_eq!(managed::sniff(s3.as_bytes()), Some(ManagedFormat::Eks));
}
