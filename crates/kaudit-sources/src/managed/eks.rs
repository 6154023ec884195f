//! Amazon EKS: the control plane's `kube-apiserver-audit-*` log streams in
//! CloudWatch Logs, each log event's `message` one `audit.k8s.io/v1` Event.
//!
//! Accepted shapes (one per input, or one per line, or in a JSON array):
//! * `aws logs filter-log-events` / `get-log-events` output:
//!   `{"events":[{"logStreamName","timestamp","message",...}], ...}`;
//! * a CloudWatch subscription-filter payload, decoded
//!   (`{"messageType":"DATA_MESSAGE","logEvents":[...]}`), or as it arrives
//!   (base64 of its gzip, one per line); `CONTROL_MESSAGE`s are skipped and
//!   counted;
//! * a Kinesis Firehose HTTP-endpoint delivery
//!   (`{"requestId","timestamp","records":[{"data": base64}]}`), each
//!   record's data a (gzip) subscription payload;
//! * an S3 export object (`.gz`), lines of `<timestamp> <json>` or plain
//!   JSON lines, each an Event.
//!
//! The envelope kept in `kaudit.io/envelope`: the CloudWatch log event's
//! `id`/`eventId`, `timestamp`, `ingestionTime`, `logStreamName`, the
//! subscription's `logGroup`, `logStream`, `owner`, `subscriptionFilters`,
//! the Firehose `requestId`, and an S3 line's timestamp prefix
//! (`exportTimestamp`). EKS' IAM identity is in the Event itself
//! (`user.extra.arn`, `accessKeyId`, `sessionName`, ...).

use super::{
    at, base64_decode, embedded_event, is_gzip, looks_base64, without, ConvertError, Ctx,
    ManagedFormat, Unit,
};
use serde_json::{Map, Value};

/// The reply a Firehose HTTP endpoint must send: the request's id and the
/// time in milliseconds, plus `errorMessage` when it failed.
pub fn firehose_reply(request_id: &str, now_ms: i64, error: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert("requestId".into(), Value::String(request_id.to_string()));
    m.insert("timestamp".into(), Value::from(now_ms));
    if let Some(e) = error {
        m.insert("errorMessage".into(), Value::String(e.to_string()));
    }
    Value::Object(m)
}

/// The `requestId` of a Firehose delivery body, if it has one (for the reply
/// even when the body is otherwise unusable).
pub fn firehose_request_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "requestId")]
        request_id: Option<String>,
    }
    serde_json::from_slice::<Head>(body).ok()?.request_id
}

pub(crate) fn unit(ctx: &mut Ctx<'_>, u: Unit<'_>) -> Result<(), ConvertError> {
    let Some(v) = u.value else {
        if looks_base64(u.raw) {
            return payload_text(ctx, &u.loc, u.raw, Map::new());
        }
        ctx.bad(
            &u.loc,
            "not JSON, nor a base64 gzip subscription payload",
            u.raw.as_bytes(),
        );
        return Ok(());
    };
    if let Some(ts) = u.prefix {
        let mut env = Map::new();
        env.insert("exportTimestamp".into(), Value::String(ts.to_string()));
        return event_value(ctx, &u.loc, u.raw, env);
    }
    value(ctx, &u.loc, u.raw, &v, Map::new())
}

fn value(
    ctx: &mut Ctx<'_>,
    loc: &str,
    raw: &str,
    v: &Value,
    env: Map<String, Value>,
) -> Result<(), ConvertError> {
    let Some(o) = v.as_object() else {
        ctx.bad(loc, "not a JSON object", raw.as_bytes());
        return Ok(());
    };
    if let Some(Value::Array(records)) = o.get("records") {
        let mut env = env;
        if let Some(id) = o.get("requestId") {
            env.insert("firehoseRequestId".into(), id.clone());
        }
        for (i, r) in records.iter().enumerate() {
            let path = at(loc, &format!("records[{i}].data"));
            match r.get("data").and_then(Value::as_str) {
                Some(data) => payload_text(ctx, &path, data, env.clone())?,
                None => ctx.bad(
                    &path,
                    "a Firehose record without a string `data`",
                    r.to_string().as_bytes(),
                ),
            }
            ctx.check()?;
        }
        return Ok(());
    }
    if o.contains_key("logEvents") || o.contains_key("messageType") {
        return subscription(ctx, loc, raw, v, env);
    }
    if let Some(Value::Array(events)) = o.get("events") {
        for (i, e) in events.iter().enumerate() {
            let path = at(loc, &format!("events[{i}].message"));
            log_event(ctx, &path, e, env.clone());
            ctx.check()?;
        }
        return Ok(());
    }
    if o.contains_key("auditID") || o.get("kind").and_then(Value::as_str) == Some("Event") {
        return event_value(ctx, loc, raw, env);
    }
    ctx.bad(
        loc,
        "not an EKS audit log shape: expected CloudWatch `events[].message`, a subscription payload (`logEvents`), a Firehose delivery (`records[].data`) or an audit Event",
        raw.as_bytes(),
    );
    Ok(())
}

/// An audit Event written directly (S3 export lines).
fn event_value(
    ctx: &mut Ctx<'_>,
    loc: &str,
    raw: &str,
    env: Map<String, Value>,
) -> Result<(), ConvertError> {
    match embedded_event(raw, ManagedFormat::Eks, env, None) {
        Ok(ev) => ctx.out.events.push(ev),
        Err(e) => ctx.bad(loc, e, raw.as_bytes()),
    }
    Ok(())
}

/// A base64 (gzip) subscription payload, as CloudWatch and Firehose send it.
fn payload_text(
    ctx: &mut Ctx<'_>,
    loc: &str,
    data: &str,
    env: Map<String, Value>,
) -> Result<(), ConvertError> {
    let bytes = match base64_decode(data) {
        Ok(b) => b,
        Err(e) => {
            ctx.bad(loc, e, data.as_bytes());
            return Ok(());
        }
    };
    let json = if is_gzip(&bytes) {
        match ctx.gunzip(&bytes) {
            Ok(j) => j,
            Err(e @ ConvertError::TooLarge { .. }) => return Err(e),
            Err(e) => {
                ctx.bad(loc, e.to_string(), data.as_bytes());
                return Ok(());
            }
        }
    } else {
        bytes
    };
    let text = String::from_utf8_lossy(&json);
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => subscription(ctx, &format!("{loc} (decoded)"), &text, &v, env),
        Err(e) => {
            ctx.bad(loc, format!("the decoded payload is not JSON: {e}"), &json);
            Ok(())
        }
    }
}

/// `{"messageType","owner","logGroup","logStream","subscriptionFilters","logEvents":[...]}`.
fn subscription(
    ctx: &mut Ctx<'_>,
    loc: &str,
    raw: &str,
    v: &Value,
    env: Map<String, Value>,
) -> Result<(), ConvertError> {
    match v.get("messageType").and_then(Value::as_str) {
        None | Some("DATA_MESSAGE") => {}
        Some("CONTROL_MESSAGE") => {
            ctx.skip("eks: CloudWatch CONTROL_MESSAGE".into());
            return Ok(());
        }
        Some(other) => {
            ctx.bad(
                loc,
                format!("messageType {other:?}: want DATA_MESSAGE or CONTROL_MESSAGE"),
                raw.as_bytes(),
            );
            return Ok(());
        }
    }
    let Some(Value::Array(events)) = v.get("logEvents") else {
        ctx.bad(
            loc,
            "a subscription payload without `logEvents`",
            raw.as_bytes(),
        );
        return Ok(());
    };
    let mut env = env;
    env.extend(without(v, &["logEvents", "messageType"]));
    for (i, e) in events.iter().enumerate() {
        let path = if loc.ends_with("(decoded)") {
            format!("{loc} .logEvents[{i}].message")
        } else {
            at(loc, &format!("logEvents[{i}].message"))
        };
        log_event(ctx, &path, e, env.clone());
        ctx.check()?;
    }
    Ok(())
}

/// One CloudWatch log event: its `message` is the audit Event.
fn log_event(ctx: &mut Ctx<'_>, path: &str, e: &Value, env: Map<String, Value>) {
    let Some(message) = e.get("message").and_then(Value::as_str) else {
        ctx.bad(
            path,
            "a CloudWatch log event without a string `message`",
            e.to_string().as_bytes(),
        );
        return;
    };
    let mut env = env;
    env.extend(without(e, &["message"]));
    match embedded_event(message, ManagedFormat::Eks, env, None) {
        Ok(ev) => ctx.out.events.push(ev),
        Err(err) => ctx.bad(path, err, message.as_bytes()),
    }
}
