//! Google GKE: Cloud Logging `LogEntry`s whose `protoPayload` is a
//! `type.googleapis.com/google.cloud.audit.AuditLog` from `serviceName`
//! `k8s.io` (the `cloudaudit.googleapis.com/activity` and `data_access`
//! logs of a `k8s_cluster` resource).
//!
//! GKE does not log the apiserver's Event: it logs an AuditLog, so the
//! Event is rebuilt:
//! * `auditID` = `insertId` (as Elastic's integration and Falco's plugin do;
//!   `operation.id` when there is no insertId, else `gke-` + a SHA-256 of
//!   the entry; the envelope's `kaudit.auditIDFrom` says which);
//! * `verb` = the last part of `methodName` (`io.k8s.core.v1.pods.create`);
//! * `objectRef` from `resourceName` (`core/v1/namespaces/ns/pods/p/log`):
//!   `core` is the core group (no `apiGroup`), a path without `namespaces/x/`
//!   is cluster-scoped, and a Namespace object gets its own name as
//!   `namespace` as kube-apiserver writes it; the resource and subresource
//!   are taken from `methodName` when it names them (so `namespaces/x/finalize`
//!   is the finalize subresource, `namespaces/x/pods` the pods in x). A
//!   `resourceName` that is not `group/version/...` (`readyz`, `apis`) is a
//!   non-resource request without objectRef;
//! * `requestURI` is what kube-apiserver would have logged for that path
//!   (GKE does not record query parameters);
//! * `user.username` = `authenticationInfo.principalEmail`, `sourceIPs` =
//!   `requestMetadata.callerIp` (also Panther's `callerIP`), `userAgent` =
//!   `requestMetadata.callerSuppliedUserAgent`;
//! * `responseStatus.code` = the gRPC `status.code` as HTTP (0 -> 200, 7 ->
//!   403, 5 -> 404, ...), `status.message` as its message; the gRPC status
//!   itself stays in the envelope (Elastic keeps the gRPC code as is);
//!   without a status, an `authorizationInfo` entry with `granted: false`
//!   means 403;
//! * `annotations` = `labels` (authorization decision, admission webhooks,
//!   `command.gke.io/dryRun`, ...);
//! * `requestObject`/`responseObject` = `request`/`response`; level
//!   RequestResponse, Request or Metadata by which are present; stage
//!   ResponseComplete;
//! * `requestReceivedTimestamp` = `receiveTimestamp` and `stageTimestamp` =
//!   `timestamp` (Elastic's mapping), either one for both when only one is
//!   there.
//!
//! Everything else of the LogEntry (`logName`, `resource`, `operation`,
//! `severity`, `protoPayload.status`, `authorizationInfo`, ...) is kept in
//! `kaudit.io/envelope`, and the entry's exact text in `kaudit.io/original`
//! (so the Elasticsearch sink can make Elastic's own document of it,
//! whose `kubernetes.audit` is the LogEntry, gRPC status code 0 and
//! nanosecond timestamps included). Entries that are not Kubernetes API audit
//! (`container.googleapis.com` cluster management, any other service) are
//! refused as bad items with the reason.
//!
//! Pub/Sub push deliveries (`{"message":{"data": base64 LogEntry, ...},
//! "subscription"}`) are unwrapped first; their `messageId`, `publishTime`,
//! `attributes` and `subscription` join the envelope.

use super::{annotate, at, base64_decode, raw, str_of, ConvertError, Ctx, ManagedFormat, Unit};
use kaudit_event::{Event, EventDoc, Level, MicroTime, ObjectRef, ResponseStatus, Stage};
use serde_json::{Map, Value};

/// The protoPayload type of Cloud Audit Logs.
pub const AUDIT_LOG_TYPE: &str = "type.googleapis.com/google.cloud.audit.AuditLog";

pub(crate) fn unit(ctx: &mut Ctx<'_>, u: Unit<'_>) -> Result<(), ConvertError> {
    let Some(v) = u.value else {
        ctx.bad(&u.loc, "not JSON", u.raw.as_bytes());
        return Ok(());
    };
    value(ctx, &u.loc, u.raw, &v);
    Ok(())
}

fn value(ctx: &mut Ctx<'_>, loc: &str, raw_text: &str, v: &Value) {
    if let Some(entries) = v.get("entries").and_then(Value::as_array) {
        // A Logging API `entries.list` answer: `{"entries": [...], "nextPageToken"}`.
        for (i, e) in entries.iter().enumerate() {
            value(ctx, &at(loc, &format!("entries[{i}]")), &e.to_string(), e);
        }
        return;
    }
    if v.get("protoPayload").is_none() && v.get(BIGQUERY_PAYLOAD).is_some() {
        return match from_bigquery_row(v) {
            Ok(entry) => entry_to_event(ctx, loc, raw_text, &entry, Map::new()),
            Err(why) => ctx.bad(loc, why, raw_text.as_bytes()),
        };
    }
    if let Some(msg) = v.get("message").filter(|_| v.get("protoPayload").is_none()) {
        // A Pub/Sub push delivery.
        let Some(data) = msg.get("data").and_then(Value::as_str) else {
            ctx.bad(
                &at(loc, "message.data"),
                "a Pub/Sub push message without `data`",
                raw_text.as_bytes(),
            );
            return;
        };
        let path = at(loc, "message.data");
        let bytes = match base64_decode(data) {
            Ok(b) => b,
            Err(e) => return ctx.bad(&path, e, data.as_bytes()),
        };
        let entry: Value = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(e) => {
                return ctx.bad(
                    &path,
                    format!("the decoded message is not a JSON LogEntry: {e}"),
                    &bytes,
                )
            }
        };
        let mut env = Map::new();
        let mut pubsub = super::without(msg, &["data"]);
        if let Some(s) = v.get("subscription") {
            pubsub.insert("subscription".into(), s.clone());
        }
        env.insert("pubsub".into(), Value::Object(pubsub));
        return entry_to_event(
            ctx,
            &format!("{path} (decoded)"),
            &String::from_utf8_lossy(&bytes),
            &entry,
            env,
        );
    }
    entry_to_event(ctx, loc, raw_text, v, Map::new());
}

/// The column a log sink to BigQuery (or a `bq` JSON export of that table)
/// holds the audit payload in.
pub const BIGQUERY_PAYLOAD: &str = "protopayload_auditlog";

/// A row of a Cloud Logging sink's BigQuery table as the `LogEntry` it was
/// made from: the payload column back under `protoPayload` with its
/// `@type`, the JSON-string columns (`requestJson`, `responseJson`,
/// `metadataJson`) parsed back into `request`, `response` and `metadata`,
/// and BigQuery's `2026-01-02 15:04:05.123456 UTC` timestamps in RFC 3339.
pub fn from_bigquery_row(row: &Value) -> Result<Value, String> {
    let Some(Value::Object(row)) = Some(row) else {
        return Err("a BigQuery export row is not a JSON object".into());
    };
    let mut entry = row.clone();
    let Some(Value::Object(mut payload)) = entry.remove(BIGQUERY_PAYLOAD) else {
        return Err(format!("`{BIGQUERY_PAYLOAD}` is not an object"));
    };
    for (column, field) in [
        ("requestJson", "request"),
        ("responseJson", "response"),
        ("metadataJson", "metadata"),
    ] {
        match payload.remove(column) {
            Some(Value::String(text)) if !text.is_empty() => {
                let parsed: Value = serde_json::from_str(&text)
                    .map_err(|e| format!("{BIGQUERY_PAYLOAD}.{column} is not JSON: {e}"))?;
                payload.insert(field.into(), parsed);
            }
            Some(Value::Null) | Some(Value::String(_)) | None => {}
            Some(other) => {
                payload.insert(field.into(), other);
            }
        }
    }
    payload.insert("@type".into(), Value::String(AUDIT_LOG_TYPE.into()));
    entry.insert("protoPayload".into(), Value::Object(payload));
    for key in ["timestamp", "receiveTimestamp"] {
        if let Some(Value::String(t)) = entry.get_mut(key) {
            if let Some(fixed) = bigquery_time(t) {
                *t = fixed;
            }
        }
    }
    Ok(Value::Object(entry))
}

/// `2026-01-02 15:04:05.123456 UTC` as `2026-01-02T15:04:05.123456Z`;
/// None when `t` is not in BigQuery's form (it is then kept as it is).
fn bigquery_time(t: &str) -> Option<String> {
    let rest = t.strip_suffix(" UTC")?;
    let (date, time) = rest.split_once(' ')?;
    (date.len() == 10 && time.len() >= 8).then(|| format!("{date}T{time}Z"))
}

/// Why an entry is not a Kubernetes API audit entry, if it is not.
pub fn refusal(entry: &Value) -> Option<String> {
    let Some(p) = entry.get("protoPayload") else {
        return Some("not a Cloud Logging LogEntry with a protoPayload".into());
    };
    let ty = str_of(p, "@type");
    if !ty.is_empty() && ty != AUDIT_LOG_TYPE {
        return Some(format!(
            "protoPayload @type is {ty:?}, want {AUDIT_LOG_TYPE}"
        ));
    }
    let service = str_of(p, "serviceName");
    // Some exports (and KHI's test table) leave serviceName out; the
    // methodName still says it is the Kubernetes API.
    let k8s_method = str_of(p, "methodName").starts_with("io.k8s.");
    if service != "k8s.io" && !(service.is_empty() && k8s_method) {
        let method = str_of(p, "methodName");
        let what = if service == "container.googleapis.com" {
            "a GKE cluster-management API entry (container.googleapis.com), not a Kubernetes API audit event"
        } else {
            "not a Kubernetes API audit event"
        };
        return Some(format!(
            "{what}: serviceName {service:?}, methodName {method:?}; kaudit imports serviceName \"k8s.io\" entries only"
        ));
    }
    None
}

/// The parts of `resourceName` + `methodName`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// API group ("" for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource.
    pub resource: String,
    /// Namespace ("" when cluster-scoped; the name for a Namespace object).
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// Subresource.
    pub subresource: String,
    /// Verb.
    pub verb: String,
}

fn is_version(s: &str) -> bool {
    let mut b = s.bytes();
    b.next() == Some(b'v') && b.next().is_some_and(|c| c.is_ascii_digit())
}

/// Splits a GKE `resourceName` and `methodName` into objectRef parts and
/// verb; `None` for a non-resource request (`readyz`, `/apis`).
pub fn parse_resource(resource_name: &str, method: &str) -> Option<Parsed> {
    let verb = method.rsplit('.').next().unwrap_or("").to_string();
    let parts: Vec<&str> = resource_name.trim_matches('/').split('/').collect();
    if parts.len() < 3 || !is_version(parts[1]) || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let group = if parts[0] == "core" { "" } else { parts[0] };
    let version = parts[1];
    let rest = &parts[2..];
    // What methodName says after the version: resource, [subresource], verb.
    let m: Vec<&str> = method.split('.').collect();
    let after = m
        .iter()
        .position(|p| *p == version)
        .map(|i| &m[i + 1..m.len().saturating_sub(1)])
        .unwrap_or(&[]);
    let (m_resource, m_sub) = match after {
        [r] => (Some(*r), None),
        [r, s] => (Some(*r), Some(*s)),
        _ => (None, None),
    };
    let mut p = Parsed {
        group: group.to_string(),
        version: version.to_string(),
        verb,
        ..Parsed::default()
    };
    let scoped = rest.len() >= 3 && rest[0] == "namespaces" && m_resource != Some("namespaces");
    let tail: &[&str] = if scoped {
        p.namespace = rest[1].to_string();
        &rest[2..]
    } else {
        rest
    };
    p.resource = tail[0].to_string();
    p.name = tail.get(1).map(|s| s.to_string()).unwrap_or_default();
    p.subresource = tail.get(2..).map(|s| s.join("/")).unwrap_or_default();
    if let Some(r) = m_resource {
        if r != p.resource {
            // Trust methodName for the resource when the path is ambiguous.
            p.resource = r.to_string();
        }
    }
    if let Some(s) = m_sub {
        p.subresource = s.to_string();
    }
    if p.resource == "namespaces" && !p.name.is_empty() {
        // kube-apiserver writes a Namespace object's name as its namespace too.
        p.namespace = p.name.clone();
    }
    Some(p)
}

/// gRPC status code -> HTTP status, as Google's API gateways map them.
pub fn grpc_to_http(code: i64) -> i32 {
    match code {
        0 => 200,
        1 => 499,
        2 => 500,
        3 => 400,
        4 => 504,
        5 => 404,
        6 => 409,
        7 => 403,
        8 => 429,
        9 => 400,
        10 => 409,
        11 => 400,
        12 => 501,
        13 => 500,
        14 => 503,
        15 => 500,
        16 => 401,
        _ => 500,
    }
}

/// Whether the entry's `authorizationInfo` records a permission not granted.
fn denied(payload: &Value) -> bool {
    payload
        .get("authorizationInfo")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|x| x.get("granted") == Some(&Value::Bool(false)))
        })
}

fn time_of(v: &Value, key: &str) -> Option<MicroTime> {
    v.get(key)
        .and_then(Value::as_str)
        .and_then(|s| MicroTime::parse(s).ok())
}

fn entry_to_event(
    ctx: &mut Ctx<'_>,
    loc: &str,
    raw_text: &str,
    e: &Value,
    mut env: Map<String, Value>,
) {
    if let Some(why) = refusal(e) {
        return ctx.bad(loc, why, raw_text.as_bytes());
    }
    let p = &e["protoPayload"];
    let mut audit_id_from = None;
    let audit_id = match str_of(e, "insertId") {
        "" => match e.get("operation").map(|o| str_of(o, "id")).unwrap_or("") {
            "" => {
                // Neither: a stable id from the entry's bytes, so a resend
                // still gets the same one.
                use sha2::Digest;
                audit_id_from = Some("sha256 of the entry");
                let h = sha2::Sha256::digest(raw_text.as_bytes());
                format!("gke-{}", hex::encode(&h[..16]))
            }
            id => {
                audit_id_from = Some("operation.id");
                id.to_string()
            }
        },
        id => id.to_string(),
    };
    let resource_name = str_of(p, "resourceName");
    let method = str_of(p, "methodName");
    if method.is_empty() {
        return ctx.bad(
            &at(loc, "protoPayload.methodName"),
            "missing: the verb cannot be known",
            raw_text.as_bytes(),
        );
    }
    let mut doc = EventDoc {
        audit_id,
        stage: Some(Stage::ResponseComplete),
        ..EventDoc::default()
    };
    match parse_resource(resource_name, method) {
        Some(r) => {
            // A create names the collection; the name is in the body.
            let uri_name = if r.verb == "create" && r.subresource.is_empty() {
                ""
            } else {
                &r.name
            };
            doc.request_uri = super::request_uri(
                &r.group,
                &r.version,
                &r.namespace,
                &r.resource,
                uri_name,
                &r.subresource,
            );
            doc.verb = r.verb;
            doc.object_ref = Some(ObjectRef {
                resource: r.resource,
                namespace: r.namespace,
                name: r.name,
                api_group: r.group,
                api_version: r.version,
                subresource: r.subresource,
                ..ObjectRef::default()
            });
        }
        None => {
            doc.request_uri = format!("/{}", resource_name.trim_start_matches('/'));
            doc.verb = method.rsplit('.').next().unwrap_or("").to_string();
        }
    }
    let auth = p.get("authenticationInfo");
    doc.user.username = auth
        .map(|a| str_of(a, "principalEmail"))
        .unwrap_or("")
        .to_string();
    let meta = p.get("requestMetadata");
    // Google writes `callerIp`; Panther's schema (and so the events
    // exported from Panther) spells it `callerIP`. Reading both is
    // unambiguous: a LogEntry never has both, and either is the caller.
    let ip = meta
        .map(|m| match str_of(m, "callerIp") {
            "" => str_of(m, "callerIP"),
            ip => ip,
        })
        .unwrap_or("");
    if !ip.is_empty() {
        doc.source_ips = vec![ip.to_string()];
    }
    doc.user_agent = meta
        .map(|m| str_of(m, "callerSuppliedUserAgent"))
        .unwrap_or("")
        .to_string();
    if let Some(status) = p.get("status") {
        let code = status.get("code").and_then(Value::as_i64).unwrap_or(0);
        let http = grpc_to_http(code);
        let message = str_of(status, "message");
        let st = if http < 400 { "" } else { "Failure" };
        doc.response_status = Some(ResponseStatus::new(http, st, message, ""));
    }
    if doc.response_status.is_none() && denied(p) {
        // No status, but the authorization record says a check was not
        // granted: kube-apiserver refused the request with 403 (GKE writes
        // gRPC 7 then; entries cut down by other tools, Panther's among
        // them, keep only the authorizationInfo). Unambiguous, so read.
        doc.response_status = Some(ResponseStatus::new(
            403,
            "Failure",
            "authorizationInfo: permission not granted",
            "Forbidden",
        ));
    }
    doc.request_object = p.get("request").and_then(raw);
    doc.response_object = p.get("response").and_then(raw);
    doc.level = if doc.response_object.is_some() {
        Level::RequestResponse
    } else if doc.request_object.is_some() {
        Level::Request
    } else {
        Level::Metadata
    };
    let received = time_of(e, "receiveTimestamp");
    let stamped = time_of(e, "timestamp");
    doc.request_received_timestamp = received.or(stamped);
    doc.stage_timestamp = stamped.or(received);
    if let Some(Value::Object(labels)) = e.get("labels") {
        for (k, v) in labels {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            doc.annotations.insert(k.clone(), v);
        }
    }
    // The envelope: the entry without what was mapped.
    let mut rest = super::without(
        e,
        &[
            "insertId",
            "labels",
            "timestamp",
            "receiveTimestamp",
            "protoPayload",
        ],
    );
    let mut payload = super::without(
        p,
        &[
            "@type",
            "serviceName",
            "methodName",
            "resourceName",
            "request",
            "response",
        ],
    );
    if let Some(Value::Object(a)) = payload.get_mut("authenticationInfo") {
        a.shift_remove("principalEmail");
    }
    if let Some(Value::Object(m)) = payload.get_mut("requestMetadata") {
        for k in ["callerIp", "callerIP", "callerSuppliedUserAgent"] {
            m.shift_remove(k);
        }
    }
    payload.retain(|_, v| !matches!(v, Value::Object(o) if o.is_empty()));
    if !payload.is_empty() {
        rest.insert("protoPayload".into(), Value::Object(payload));
    }
    if let Some(from) = audit_id_from {
        rest.insert("kaudit.auditIDFrom".into(), Value::String(from.into()));
    }
    env.extend(rest);
    annotate(&mut doc, ManagedFormat::Gke, env);
    doc.annotations
        .insert(super::ORIGINAL_ANNOTATION.into(), raw_text.to_string());
    ctx.out.events.push(Event::from_doc(doc));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_http() {
        assert_eq!(grpc_to_http(0), 200);
        assert_eq!(grpc_to_http(7), 403);
        assert_eq!(grpc_to_http(5), 404);
        assert_eq!(grpc_to_http(16), 401);
        assert_eq!(grpc_to_http(99), 500);
    }

    #[test]
    fn resource_names_split_like_kube_apiserver() {
        let p = parse_resource(
            "core/v1/namespaces/ns/pods/p/log",
            "io.k8s.core.v1.pods.log.get",
        )
        .unwrap();
        assert_eq!(
            (
                p.group.as_str(),
                p.namespace.as_str(),
                p.resource.as_str(),
                p.name.as_str(),
                p.subresource.as_str(),
                p.verb.as_str()
            ),
            ("", "ns", "pods", "p", "log", "get")
        );
        // Pods listed in a namespace (no name).
        let p = parse_resource("core/v1/namespaces/ns/pods", "io.k8s.core.v1.pods.list").unwrap();
        assert_eq!(
            (p.namespace.as_str(), p.resource.as_str(), p.name.as_str()),
            ("ns", "pods", "")
        );
        // The finalize subresource of a Namespace.
        let p = parse_resource(
            "core/v1/namespaces/ns/finalize",
            "io.k8s.core.v1.namespaces.finalize.update",
        )
        .unwrap();
        assert_eq!(
            (
                p.namespace.as_str(),
                p.resource.as_str(),
                p.name.as_str(),
                p.subresource.as_str()
            ),
            ("ns", "namespaces", "ns", "finalize")
        );
        // A group with dots, cluster-scoped.
        let p = parse_resource(
            "rbac.authorization.k8s.io/v1/clusterrolebindings/admin",
            "io.k8s.authorization.rbac.v1.clusterrolebindings.create",
        )
        .unwrap();
        assert_eq!(
            (
                p.group.as_str(),
                p.namespace.as_str(),
                p.resource.as_str(),
                p.name.as_str()
            ),
            (
                "rbac.authorization.k8s.io",
                "",
                "clusterrolebindings",
                "admin"
            )
        );
        assert!(parse_resource("readyz", "io.k8s.get").is_none());
        assert!(parse_resource("apis", "io.k8s.get").is_none());
    }
}
