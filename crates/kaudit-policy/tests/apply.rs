//! Applying a policy to events: drops, level lowering, body stripping,
//! managedFields, redaction, and byte preservation.

use kaudit_event::{Event, Level, Stage};
use kaudit_policy::{
    load_policy, redact_value_hash, ApplyOptions, DropReason, Outcome, PolicyApplier,
    REDACTED_ANNOTATION,
};
use serde_json::{json, Value};
use sha2::Digest;

fn applier(rules: Value, redact: bool) -> PolicyApplier {
    let p = json!({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": rules});
    let loaded = load_policy(&serde_json::to_vec(&p).unwrap(), "test").unwrap();
    PolicyApplier::new(loaded.policy, ApplyOptions { redact })
}

/// A canonical v1 event line (kube-apiserver's key order, so bytes are kept).
fn event(resource: &str, sub: &str, verb: &str, req: Option<&str>, resp: Option<&str>) -> Event {
    let mut line = String::from(
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns/x?timeout=5s","verb":""#,
    );
    line.push_str(verb);
    line.push_str(r#"","user":{"username":"alice","groups":["dev"]},"objectRef":{"resource":""#);
    line.push_str(resource);
    line.push_str(r#"","namespace":"ns","name":"x","apiVersion":"v1""#);
    if !sub.is_empty() {
        line.push_str(&format!(r#","subresource":"{sub}""#));
    }
    line.push_str(r#"},"responseStatus":{"metadata":{},"code":200}"#);
    if let Some(r) = req {
        line.push_str(&format!(r#","requestObject":{r}"#));
    }
    if let Some(r) = resp {
        line.push_str(&format!(r#","responseObject":{r}"#));
    }
    line.push_str(r#","requestReceivedTimestamp":"2026-01-02T15:04:05.000000Z","stageTimestamp":"2026-01-02T15:04:05.010000Z"}"#);
    let e = Event::from_json(line.as_bytes()).unwrap();
    assert_eq!(e.bytes(), line.as_bytes(), "fixture must be canonical");
    e
}

fn keep(o: Outcome) -> Event {
    match o {
        Outcome::Keep(e) => e,
        Outcome::Drop(r) => panic!("dropped: {r}"),
    }
}

fn body(e: &Event, which: &str) -> Option<Value> {
    let d = e.doc();
    let raw = if which == "req" {
        &d.request_object
    } else {
        &d.response_object
    };
    raw.as_ref().map(|r| serde_json::from_str(r.get()).unwrap())
}

#[test]
fn drops_level_none_and_omitted_stages() {
    let a = applier(
        json!([
            {"level": "None", "resources": [{"resources": ["configmaps"]}]},
            {"level": "Metadata", "omitStages": ["ResponseComplete"], "verbs": ["get"]}
        ]),
        true,
    );
    let e = event("configmaps", "", "get", None, None);
    assert_eq!(
        a.apply(e),
        Outcome::Drop(DropReason::LevelNone { rule: Some(0) })
    );
    let e = event("pods", "", "get", None, None);
    assert_eq!(
        a.apply(e),
        Outcome::Drop(DropReason::OmittedStage {
            stage: Stage::ResponseComplete,
            rule: Some(1)
        })
    );
    let e = event("pods", "", "list", None, None);
    assert_eq!(
        a.apply(e),
        Outcome::Drop(DropReason::LevelNone { rule: None })
    );
}

#[test]
fn lowers_level_and_strips_bodies() {
    let a = applier(
        json!([
            {"level": "Metadata", "verbs": ["delete"]},
            {"level": "Request", "verbs": ["create"]},
            {"level": "RequestResponse"}
        ]),
        true,
    );
    let req = r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"x"}}"#;
    let resp = r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"x","uid":"u"}}"#;

    let md = keep(a.apply(event("pods", "", "delete", Some(req), Some(resp))));
    assert_eq!(md.level(), Level::Metadata);
    assert!(md.doc().request_object.is_none() && md.doc().response_object.is_none());
    // Everything else is as before: only level and bodies changed.
    let mut expect = event("pods", "", "delete", None, None).into_doc();
    expect.level = Level::Metadata;
    assert_eq!(md.doc(), &expect);
    assert_eq!(md.bytes(), Event::from_doc(expect).bytes());

    let rq = keep(a.apply(event("pods", "", "create", Some(req), Some(resp))));
    assert_eq!(rq.level(), Level::Request);
    assert_eq!(body(&rq, "req").unwrap()["kind"], "Pod");
    assert!(rq.doc().response_object.is_none());

    // At or below the policy's level nothing changes: exact bytes are kept.
    let same = event("pods", "", "get", Some(req), Some(resp));
    let before = same.bytes().to_vec();
    assert_eq!(keep(a.apply(same)).bytes(), &before[..]);
}

#[test]
fn never_raises_the_level() {
    let a = applier(json!([{"level": "RequestResponse"}]), true);
    let mut doc = event("pods", "", "get", None, None).into_doc();
    doc.level = Level::Metadata;
    let e = Event::from_doc(doc);
    let before = e.bytes().to_vec();
    let out = keep(a.apply(e));
    assert_eq!(out.level(), Level::Metadata);
    assert_eq!(out.bytes(), &before[..]);
}

#[test]
fn strips_managed_fields_in_objects_and_lists_only_when_asked() {
    let obj = r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"x","managedFields":[{"manager":"kubectl"}],"labels":{"a":"b"}},"spec":{"n":1.50}}"#;
    let list = r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[{"metadata":{"name":"a","managedFields":[{"m":1}]}},{"metadata":{"name":"b"}}]}"#;
    let a = applier(
        json!([{"level": "RequestResponse", "omitManagedFields": true}]),
        true,
    );
    let out = keep(a.apply(event("pods", "", "update", Some(obj), Some(list))));
    let req = out.doc().request_object.as_ref().unwrap().get().to_string();
    assert_eq!(
        req,
        r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"x","labels":{"a":"b"}},"spec":{"n":1.50}}"#,
        "key order and number spelling are kept"
    );
    let resp = out
        .doc()
        .response_object
        .as_ref()
        .unwrap()
        .get()
        .to_string();
    assert_eq!(
        resp,
        r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}]}"#
    );
    let b = applier(json!([{"level": "RequestResponse"}]), true);
    let e = event("pods", "", "update", Some(obj), Some(list));
    let before = e.bytes().to_vec();
    assert_eq!(keep(b.apply(e)).bytes(), &before[..]);
}

fn sha(s: &str) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(s.as_bytes())))
}

#[test]
fn redacts_secret_data_and_string_data() {
    let a = applier(json!([{"level": "RequestResponse"}]), true);
    let req = r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"x"},"data":{"password":"cGFzcw==","tls.crt":"Y2VydA=="},"stringData":{"token":"plain"},"type":"Opaque"}"#;
    let out = keep(a.apply(event("secrets", "", "create", Some(req), None)));
    let b = body(&out, "req").unwrap();
    assert_eq!(b["data"]["password"], sha("cGFzcw=="));
    assert_eq!(b["data"]["tls.crt"], sha("Y2VydA=="));
    assert_eq!(b["stringData"]["token"], sha("plain"));
    assert_eq!(b["type"], "Opaque");
    assert_eq!(redact_value_hash(b"plain"), sha("plain"));
    assert_eq!(
        out.annotation(REDACTED_ANNOTATION),
        Some(
            r#"requestObject.data.password,requestObject.data["tls.crt"],requestObject.stringData.token"#
        )
    );
    let text = String::from_utf8(out.bytes().to_vec()).unwrap();
    assert!(!text.contains("cGFzcw==") && !text.contains("plain"));
}

#[test]
fn redacts_secret_lists_tokens_and_patches() {
    let a = applier(json!([{"level": "RequestResponse"}]), true);
    let list = r#"{"kind":"SecretList","apiVersion":"v1","metadata":{},"items":[{"metadata":{"name":"a"},"data":{"k":"djE="}},{"metadata":{"name":"b"},"data":{"k":"djI="}}]}"#;
    let out = keep(a.apply(event("secrets", "", "list", None, Some(list))));
    let b = body(&out, "resp").unwrap();
    assert_eq!(b["items"][0]["data"]["k"], sha("djE="));
    assert_eq!(b["items"][1]["data"]["k"], sha("djI="));
    assert_eq!(
        out.annotation(REDACTED_ANNOTATION),
        Some("responseObject.items[0].data.k,responseObject.items[1].data.k")
    );

    // A generic List (kubectl apply -f) with a Secret among other kinds.
    let mixed = r#"{"kind":"List","apiVersion":"v1","items":[{"kind":"ConfigMap","data":{"k":"visible"}},{"kind":"Secret","data":{"k":"aGlkZGVu"}}]}"#;
    let out = keep(a.apply(event("configmaps", "", "create", Some(mixed), None)));
    let b = body(&out, "req").unwrap();
    assert_eq!(b["items"][0]["data"]["k"], "visible");
    assert_eq!(b["items"][1]["data"]["k"], sha("aGlkZGVu"));

    let tr = r#"{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","spec":{"audiences":["x"]},"status":{"token":"eyJhbGciOi","expirationTimestamp":"2026-01-02T16:04:05Z"}}"#;
    let out = keep(a.apply(event("serviceaccounts", "token", "create", None, Some(tr))));
    assert_eq!(
        body(&out, "resp").unwrap()["status"]["token"],
        sha("eyJhbGciOi")
    );
    assert_eq!(
        out.annotation(REDACTED_ANNOTATION),
        Some("responseObject.status.token")
    );

    let review = r#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"secret-token"}}"#;
    let out = keep(a.apply(event("tokenreviews", "", "create", Some(review), None)));
    assert_eq!(
        body(&out, "req").unwrap()["spec"]["token"],
        sha("secret-token")
    );

    let patch = r#"[{"op":"replace","path":"/data/password","value":"bmV3"},{"op":"add","path":"/metadata/labels/a","value":"b"}]"#;
    let out = keep(a.apply(event("secrets", "", "patch", Some(patch), None)));
    let b = body(&out, "req").unwrap();
    assert_eq!(b[0]["value"], sha("bmV3"));
    assert_eq!(b[1]["value"], "b");
    assert_eq!(
        out.annotation(REDACTED_ANNOTATION),
        Some("requestObject[0].value")
    );

    let merge = r#"{"data":{"password":"bmV3"}}"#;
    let out = keep(a.apply(event("secrets", "", "patch", Some(merge), None)));
    assert_eq!(body(&out, "req").unwrap()["data"]["password"], sha("bmV3"));
}

#[test]
fn redaction_can_be_turned_off_and_spares_lookalikes() {
    let req = r#"{"kind":"Secret","apiVersion":"v1","data":{"k":"djE="}}"#;
    let off = applier(json!([{"level": "RequestResponse"}]), false);
    let e = event("secrets", "", "create", Some(req), None);
    let before = e.bytes().to_vec();
    assert_eq!(keep(off.apply(e)).bytes(), &before[..]);

    // Mentions "Secret" but is a ConfigMap: parsed, nothing redacted, bytes kept.
    let on = applier(json!([{"level": "RequestResponse"}]), true);
    let cm = r#"{"kind":"ConfigMap","apiVersion":"v1","data":{"note":"\"SecretStore\""}}"#;
    let e = event("configmaps", "", "create", Some(cm), None);
    let before = e.bytes().to_vec();
    assert_eq!(keep(on.apply(e)).bytes(), &before[..]);
}

#[test]
fn metadata_events_keep_their_bytes_with_redaction_on() {
    let a = applier(json!([{"level": "Metadata"}]), true);
    let mut doc = event("secrets", "", "get", None, None).into_doc();
    doc.level = Level::Metadata;
    let e = Event::from_doc(doc);
    let before = e.bytes().to_vec();
    assert_eq!(keep(a.apply(e)).bytes(), &before[..]);
}

#[test]
fn check_decides_without_consuming() {
    use kaudit_policy::Verdict;
    let a = applier(
        json!([
            {"level": "None", "verbs": ["watch"]},
            {"level": "Metadata", "verbs": ["delete"]},
            {"level": "RequestResponse"}
        ]),
        true,
    );
    let req = r#"{"kind":"Pod","apiVersion":"v1"}"#;
    assert_eq!(
        a.check(&event("pods", "", "get", Some(req), None)),
        Verdict::KeepAsIs
    );
    assert_eq!(
        a.check(&event("pods", "", "watch", None, None)),
        Verdict::Drop(DropReason::LevelNone { rule: Some(0) })
    );
    match a.check(&event("pods", "", "delete", Some(req), None)) {
        Verdict::Replace(e) => {
            assert_eq!(e.level(), Level::Metadata);
            assert!(e.doc().request_object.is_none());
        }
        other => panic!("{other:?}"),
    }
}
