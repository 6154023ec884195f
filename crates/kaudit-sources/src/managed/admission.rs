//! Admission-webhook capture (the kube-audit-rest approach): for clusters
//! where even the provider's audit log is out of reach, a
//! ValidatingWebhookConfiguration that always allows sends every mutating
//! request's `admission.k8s.io/v1` AdmissionReview to kaudit, which turns
//! it into an audit Event at level RequestResponse:
//! `auditID` = `request.uid`, `verb` from `operation` (CREATE -> create,
//! UPDATE -> update, DELETE -> delete, CONNECT -> create; the operation is
//! kept in the envelope), `user` = `userInfo`, `objectRef` from
//! `resource`/`subResource`/`namespace`/`name`, `requestObject` = `object`,
//! stage ResponseComplete, annotation `kaudit.io/dry-run: "true"` for dry
//! runs, and `kaudit.io/admission-capture` saying what such events cannot
//! contain. `oldObject`, `kind`, `requestKind`, `requestResource`,
//! `options`, `operation` stay in `kaudit.io/envelope`.
//!
//! The time is the capture's `requestReceivedTimestamp` when it carries one
//! (newer kube-audit-rest writes it), else the time kaudit received it (for
//! the HTTP endpoint), else none (an old capture file).

use super::{annotate, raw, str_of, ConvertError, Ctx, ManagedFormat, Unit};
use kaudit_event::{Event, EventDoc, Level, MicroTime, ObjectRef, Stage, UserInfo};
use serde_json::Value;

/// Annotation marking an event rebuilt from an admission review.
pub const CAPTURE_ANNOTATION: &str = "kaudit.io/admission-capture";
/// What an admission capture cannot contain, as its annotation says.
pub const CAPTURE_LIMITS: &str = "rebuilt from an AdmissionReview: no reads (get/list/watch), no requests refused before admission (authentication, authorization) or by other webhooks, no response or status, no source IP or user agent";
/// Annotation marking a dry-run request.
pub const DRY_RUN_ANNOTATION: &str = "kaudit.io/dry-run";

pub(crate) fn unit(ctx: &mut Ctx<'_>, u: Unit<'_>) -> Result<(), ConvertError> {
    let Some(v) = u.value else {
        ctx.bad(&u.loc, "not JSON", u.raw.as_bytes());
        return Ok(());
    };
    match review_to_event(&v, ctx.now) {
        Ok(ev) => ctx.out.events.push(ev),
        Err(why) => ctx.bad(&u.loc, why, u.raw.as_bytes()),
    }
    Ok(())
}

/// Converts one AdmissionReview; `now` is the time for a review that
/// carries none.
pub fn review_to_event(v: &Value, now: Option<MicroTime>) -> Result<Event, String> {
    if str_of(v, "kind") != "AdmissionReview" {
        return Err(format!(
            "kind is {:?}, want AdmissionReview (admission.k8s.io/v1)",
            str_of(v, "kind")
        ));
    }
    let api = str_of(v, "apiVersion");
    if !api.is_empty() && !api.starts_with("admission.k8s.io/") {
        return Err(format!("apiVersion is {api:?}, want admission.k8s.io/v1"));
    }
    let Some(r) = v.get("request").filter(|r| r.is_object()) else {
        return Err("an AdmissionReview without `request`".into());
    };
    let uid = str_of(r, "uid");
    if uid.is_empty() {
        return Err(".request.uid: missing".into());
    }
    let op = str_of(r, "operation");
    let verb = match op {
        "CREATE" | "CONNECT" => "create",
        "UPDATE" => "update",
        "DELETE" => "delete",
        other => {
            return Err(format!(
                ".request.operation: {other:?}, want CREATE, UPDATE, DELETE or CONNECT"
            ))
        }
    };
    let res = r.get("resource").cloned().unwrap_or(Value::Null);
    let (group, version, resource) = (
        str_of(&res, "group"),
        str_of(&res, "version"),
        str_of(&res, "resource"),
    );
    if resource.is_empty() {
        return Err(".request.resource.resource: missing".into());
    }
    let (namespace, sub) = (str_of(r, "namespace"), str_of(r, "subResource"));
    let mut name = str_of(r, "name").to_string();
    if name.is_empty() {
        if let Some(n) = r
            .get("object")
            .and_then(|o| o.get("metadata"))
            .map(|m| str_of(m, "name"))
        {
            name = n.to_string();
        }
    }
    let user: UserInfo = match r.get("userInfo") {
        Some(u) => {
            serde_json::from_value(u.clone()).map_err(|e| format!(".request.userInfo: {e}"))?
        }
        None => UserInfo::default(),
    };
    let time = v
        .get("requestReceivedTimestamp")
        .or_else(|| r.get("requestReceivedTimestamp"))
        .and_then(Value::as_str)
        .and_then(|s| MicroTime::parse(s).ok())
        .or(now);
    // A CREATE's URI names the collection (the name is in the body).
    let uri_name = if op == "CREATE" && sub.is_empty() {
        ""
    } else {
        &name
    };
    let mut doc = EventDoc {
        level: Level::RequestResponse,
        audit_id: uid.to_string(),
        stage: Some(Stage::ResponseComplete),
        request_uri: super::request_uri(group, version, namespace, resource, uri_name, sub),
        verb: verb.to_string(),
        user,
        object_ref: Some(ObjectRef {
            resource: resource.to_string(),
            namespace: if resource == "namespaces" && namespace.is_empty() {
                name.clone()
            } else {
                namespace.to_string()
            },
            name,
            api_group: group.to_string(),
            api_version: version.to_string(),
            subresource: sub.to_string(),
            ..ObjectRef::default()
        }),
        request_object: r.get("object").filter(|o| !o.is_null()).and_then(raw),
        request_received_timestamp: time,
        stage_timestamp: time,
        ..EventDoc::default()
    };
    doc.annotations
        .insert(CAPTURE_ANNOTATION.into(), CAPTURE_LIMITS.into());
    if r.get("dryRun").and_then(Value::as_bool) == Some(true) {
        doc.annotations
            .insert(DRY_RUN_ANNOTATION.into(), "true".into());
    }
    let mut env = super::without(
        r,
        &[
            "uid",
            "userInfo",
            "object",
            "resource",
            "subResource",
            "namespace",
            "name",
            "dryRun",
            "requestReceivedTimestamp",
        ],
    );
    env.retain(|_, v| !v.is_null());
    annotate(&mut doc, ManagedFormat::Admission, env);
    Ok(Event::from_doc(doc))
}

/// The AdmissionReview answer that always allows, for the request's uid.
pub fn allow_response(review: &Value) -> Value {
    let uid = review
        .get("request")
        .map(|r| str_of(r, "uid"))
        .unwrap_or("");
    let api = match str_of(review, "apiVersion") {
        "" => "admission.k8s.io/v1",
        a => a,
    };
    serde_json::json!({
        "apiVersion": api,
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true}
    })
}

/// A `ValidatingWebhookConfiguration` sending every mutating request to
/// kaudit's admission endpoint, failing open, never blocking; `ca_bundle`
/// is the base64 PEM of the CA that signed kaudit's certificate.
pub fn webhook_configuration(url: &str, ca_bundle: Option<&str>) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let ca = ca_bundle
        .map(|c| format!("\n      caBundle: {}", q(c)))
        .unwrap_or_default();
    let url = q(url);
    format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: kaudit-admission-capture
  labels:
    app.kubernetes.io/name: kaudit
webhooks:
  - name: capture.kaudit.io
    admissionReviewVersions: [\"v1\"]
    sideEffects: None
    # kaudit always allows; if it is unreachable, requests still go through.
    failurePolicy: Ignore
    timeoutSeconds: 5
    matchPolicy: Equivalent
    clientConfig:
      url: {url}{ca}
    rules:
      - apiGroups: [\"*\"]
        apiVersions: [\"*\"]
        operations: [\"CREATE\", \"UPDATE\", \"DELETE\", \"CONNECT\"]
        resources: [\"*/*\"]
        scope: \"*\"
"
    )
}
