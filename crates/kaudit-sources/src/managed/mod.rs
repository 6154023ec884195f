//! Audit logs of managed clusters (EKS, GKE, AKS) and admission-webhook
//! captures, converted to `audit.k8s.io/v1` Events.
//!
//! On EKS, GKE and AKS nobody can set kube-apiserver's audit flags: the
//! provider writes the audit log into its own logging service, each in its
//! own envelope. [`convert`] unwraps (or, for GKE and admission captures,
//! rebuilds) the events so every later stage (policy, store, index, rules,
//! sinks) sees the same v1 Event as from a self-managed apiserver.
//!
//! Every converted event carries two annotations:
//! * [`SOURCE_FORMAT_ANNOTATION`] (`kaudit.io/source-format`): `eks`, `gke`,
//!   `aks` or `admission`;
//! * [`ENVELOPE_ANNOTATION`] (`kaudit.io/envelope`): the envelope fields the
//!   conversion could not map onto the Event, as one compact JSON object
//!   (CloudWatch log stream and ids, the LogEntry's `resource`, `logName`,
//!   `operation`, gRPC `status`, the AKS record's `resourceId`, `pod`, ...,
//!   the AdmissionReview's `oldObject`, `kind`, `options`), so nothing the
//!   provider wrote is dropped. Absent when nothing was left over.
//!
//! GKE and AKS events also carry [`ORIGINAL_ANNOTATION`]
//! (`kaudit.io/original`): the provider's item (the LogEntry, the AKS
//! record) exactly as it came. Elastic's Kubernetes integration reads these
//! items as they are (a GKE document's `kubernetes.audit` *is* the LogEntry,
//! its `event.original` the item's text) and the Elasticsearch sink must make
//! the same documents, which the rebuilt Event alone cannot give byte for
//! byte. It roughly doubles such an event's size; a storage policy or a
//! sink's policy can drop it like any annotation.
//!
//! One bad item never costs its neighbours: it becomes a located
//! [`BadItem`] (JSON path or `line N`, reason, bytes) beside the good events.
//! Only an input that is not JSON at all, too large or holding too many
//! items is refused as a whole ([`ConvertError`]).

pub mod admission;
pub mod aks;
pub mod eks;
pub mod gke;

use crate::pipeline::BadItem;
use base64::Engine;
use kaudit_event::{Event, EventDoc, MicroTime};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::Read;

/// Annotation naming the format an event was converted from.
pub const SOURCE_FORMAT_ANNOTATION: &str = "kaudit.io/source-format";
/// Annotation holding, as compact JSON, the envelope fields not mapped onto the Event.
pub const ENVELOPE_ANNOTATION: &str = "kaudit.io/envelope";
/// Annotation holding a GKE LogEntry's or an AKS record's exact text, for
/// sinks that must reproduce what other tools make of the provider's item
/// (Elastic's documents).
pub const ORIGINAL_ANNOTATION: &str = "kaudit.io/original";

/// Which provider envelope an input is in.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ManagedFormat {
    /// Amazon EKS: CloudWatch Logs exports (`filter-log-events`,
    /// `get-log-events`), subscription-filter payloads, Firehose HTTP
    /// deliveries, S3 exports.
    Eks,
    /// Google GKE: Cloud Logging `LogEntry`s with an `AuditLog` payload
    /// (`gcloud logging read`, sink exports, Pub/Sub push deliveries).
    Gke,
    /// Azure AKS: diagnostic-settings / Event Hub `{"records":[...]}`.
    Aks,
    /// `admission.k8s.io/v1` AdmissionReviews captured by a validating webhook.
    Admission,
    /// Decide from the input's shape.
    Auto,
}

impl ManagedFormat {
    /// The name used on the command line and in the source-format annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            ManagedFormat::Eks => "eks",
            ManagedFormat::Gke => "gke",
            ManagedFormat::Aks => "aks",
            ManagedFormat::Admission => "admission",
            ManagedFormat::Auto => "auto",
        }
    }
}

impl std::str::FromStr for ManagedFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "eks" => ManagedFormat::Eks,
            "gke" => ManagedFormat::Gke,
            "aks" => ManagedFormat::Aks,
            "admission" => ManagedFormat::Admission,
            "auto" => ManagedFormat::Auto,
            other => {
                return Err(format!(
                    "unknown format {other:?}: want eks, gke, aks, admission or auto"
                ))
            }
        })
    }
}

impl std::fmt::Display for ManagedFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bounds of one conversion.
#[derive(Clone, Copy, Debug)]
pub struct ConvertLimits {
    /// Most items (events, bad items and skipped records together) one input may yield.
    pub max_items: usize,
    /// Most bytes any gzip stream of the input (the file, a Firehose
    /// record, a subscription payload) may inflate to, in total.
    pub max_inflated: usize,
}

impl Default for ConvertLimits {
    fn default() -> Self {
        ConvertLimits {
            max_items: 1_000_000,
            max_inflated: 1 << 30,
        }
    }
}

/// What one input converted to.
#[derive(Debug, Default)]
pub struct Converted {
    /// The format the input was read as (never `Auto`; `None` for an empty input).
    pub format: Option<ManagedFormat>,
    /// The events, in input order.
    pub events: Vec<Event>,
    /// Items that are not convertible, located, with their bytes.
    pub bad: Vec<BadItem>,
    /// Records skipped on purpose, counted by why (an AKS category other
    /// than kube-audit, a CloudWatch CONTROL_MESSAGE).
    pub skipped: BTreeMap<String, usize>,
}

impl Converted {
    fn items(&self) -> usize {
        self.events.len() + self.bad.len() + self.skipped.values().sum::<usize>()
    }
}

/// Why a whole input could not be converted (nothing of it is used).
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The input is neither a JSON document nor JSON lines.
    #[error("{0}")]
    NotJson(String),
    /// Auto-detection found no known envelope.
    #[error("{0}")]
    Unrecognised(String),
    /// More items than allowed.
    #[error("the input holds more than {limit} items")]
    TooManyItems {
        /// The bound.
        limit: usize,
    },
    /// A gzip stream inflates beyond the bound.
    #[error("gzip data inflates beyond the limit of {limit} bytes")]
    TooLarge {
        /// The bound.
        limit: usize,
    },
    /// A gzip stream is corrupt.
    #[error("invalid gzip data: {0}")]
    BadGzip(String),
}

/// One top-level value of an input: a JSON value (its exact text) or a
/// text line that is not JSON, with where it was.
pub(crate) struct Unit<'a> {
    /// `$`, `[i]` or `line N`.
    pub loc: String,
    /// The value's exact text.
    pub raw: &'a str,
    /// Parsed value (`None` when the text is not JSON).
    pub value: Option<Value>,
    /// A `<timestamp> ` prefix an S3 export put before the JSON.
    pub prefix: Option<&'a str>,
}

/// Working state of one conversion.
pub(crate) struct Ctx<'l> {
    pub out: Converted,
    pub limits: &'l ConvertLimits,
    pub inflated: usize,
    pub now: Option<MicroTime>,
}

impl Ctx<'_> {
    pub fn check(&self) -> Result<(), ConvertError> {
        if self.out.items() > self.limits.max_items {
            return Err(ConvertError::TooManyItems {
                limit: self.limits.max_items,
            });
        }
        Ok(())
    }

    pub fn bad(&mut self, path: &str, reason: impl Into<String>, raw: &[u8]) {
        let index = self.out.items();
        self.out.bad.push(BadItem {
            index,
            path: Some(path.to_string()),
            reason: reason.into(),
            raw: raw.to_vec(),
        });
    }

    pub fn skip(&mut self, why: String) {
        *self.out.skipped.entry(why).or_default() += 1;
    }

    /// Inflates gzip data within the conversion's total budget.
    pub fn gunzip(&mut self, gz: &[u8]) -> Result<Vec<u8>, ConvertError> {
        let budget = self.limits.max_inflated.saturating_sub(self.inflated);
        let out = gunzip_limited(gz, budget).map_err(|e| match e {
            ConvertError::TooLarge { .. } => ConvertError::TooLarge {
                limit: self.limits.max_inflated,
            },
            e => e,
        })?;
        self.inflated += out.len();
        Ok(out)
    }
}

/// Inflates gzip data, refusing more than `max` bytes of output.
pub fn gunzip_limited(gz: &[u8], max: usize) -> Result<Vec<u8>, ConvertError> {
    let mut out = Vec::new();
    let mut dec = flate2::read::MultiGzDecoder::new(gz).take(max as u64 + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| ConvertError::BadGzip(e.to_string()))?;
    if out.len() > max {
        return Err(ConvertError::TooLarge { limit: max });
    }
    Ok(out)
}

/// Whether bytes start like a gzip stream.
pub fn is_gzip(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
}

/// Strips a UTF-8 byte-order mark and surrounding whitespace.
pub(crate) fn trim_text(s: &str) -> &str {
    s.trim_start_matches('\u{feff}').trim()
}

/// Decodes standard base64 (padding optional), as CloudWatch, Firehose and
/// Pub/Sub write it.
pub(crate) fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
        .map_err(|e| format!("invalid base64: {e}"))
}

/// Converts one input (a file's bytes, a request body) from `format`.
///
/// The input may be gzip-compressed, start with a UTF-8 BOM, and be one
/// JSON document, a JSON array, or JSON lines (for EKS S3 exports, lines of
/// `<timestamp> <json>`). `now` is the time given to events whose envelope
/// carries none (admission captures received live); `None` leaves them
/// without one.
pub fn convert(
    input: &[u8],
    format: ManagedFormat,
    now: Option<MicroTime>,
    limits: &ConvertLimits,
) -> Result<Converted, ConvertError> {
    let mut ctx = Ctx {
        out: Converted::default(),
        limits,
        inflated: 0,
        now,
    };
    let inflated;
    let input = if is_gzip(input) {
        inflated = ctx.gunzip(input)?;
        &inflated[..]
    } else {
        input
    };
    let text = std::str::from_utf8(input).map_err(|e| {
        ConvertError::NotJson(format!(
            "invalid UTF-8 at byte {} of the input",
            e.valid_up_to()
        ))
    })?;
    let text = trim_text(text);
    let units = split_units(text, limits.max_items)?;
    let format = match format {
        ManagedFormat::Auto => match units.iter().find_map(detect_unit) {
            Some(f) => f,
            None if units.is_empty() => return Ok(ctx.out),
            None => {
                return Err(ConvertError::Unrecognised(format!(
                    "{}: no EKS, GKE, AKS or admission envelope recognised (expected CloudWatch `events`/`logEvents`, Firehose `records[].data`, a LogEntry with `protoPayload`, `records[].category`, or an AdmissionReview); for native audit events use the default format",
                    units[0].loc
                )))
            }
        },
        f => f,
    };
    ctx.out.format = Some(format);
    for unit in units {
        match format {
            ManagedFormat::Eks => eks::unit(&mut ctx, unit)?,
            ManagedFormat::Gke => gke::unit(&mut ctx, unit)?,
            ManagedFormat::Aks => aks::unit(&mut ctx, unit)?,
            ManagedFormat::Admission | ManagedFormat::Auto => admission::unit(&mut ctx, unit)?,
        }
        ctx.check()?;
    }
    Ok(ctx.out)
}

/// Splits an input into its top-level values: one document, the elements
/// of a top-level array, or lines.
pub(crate) fn split_units(text: &str, max_items: usize) -> Result<Vec<Unit<'_>>, ConvertError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if text.starts_with('[') {
        if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(text) {
            if items.len() > max_items {
                return Err(ConvertError::TooManyItems { limit: max_items });
            }
            return Ok(items
                .into_iter()
                .enumerate()
                .map(|(i, r)| Unit {
                    loc: format!("[{i}]"),
                    raw: r.get(),
                    value: serde_json::from_str(r.get()).ok(),
                    prefix: None,
                })
                .collect());
        }
    } else if text.starts_with('{') {
        if let Ok(v) = serde_json::from_str::<Value>(text) {
            return Ok(vec![Unit {
                loc: "$".into(),
                raw: text,
                value: Some(v),
                prefix: None,
            }]);
        }
    }
    let mut units = Vec::new();
    let mut json_lines = 0usize;
    for (i, line) in text.lines().enumerate() {
        let line = trim_text(line);
        if line.is_empty() {
            continue;
        }
        if units.len() == max_items {
            return Err(ConvertError::TooManyItems { limit: max_items });
        }
        let loc = format!("line {}", i + 1);
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            json_lines += 1;
            units.push(Unit {
                loc,
                raw: line,
                value: Some(v),
                prefix: None,
            });
            continue;
        }
        // An S3 export line: `<timestamp> <json>`.
        if let Some((ts, rest)) = line.split_once(' ') {
            let rest = rest.trim_start();
            if !ts.starts_with('{') && rest.starts_with('{') {
                if let Ok(v) = serde_json::from_str::<Value>(rest) {
                    json_lines += 1;
                    units.push(Unit {
                        loc,
                        raw: rest,
                        value: Some(v),
                        prefix: Some(ts),
                    });
                    continue;
                }
            }
        }
        units.push(Unit {
            loc,
            raw: line,
            value: None,
            prefix: None,
        });
    }
    if json_lines == 0 && !units.is_empty() && !units.iter().any(|u| looks_base64(u.raw)) {
        let first = &units[0];
        let why = serde_json::from_str::<Value>(first.raw)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        return Err(ConvertError::NotJson(format!(
            "{}: neither a JSON document nor JSON lines ({why})",
            first.loc
        )));
    }
    Ok(units)
}

/// A line that is a base64 gzip stream (a saved subscription payload).
pub(crate) fn looks_base64(s: &str) -> bool {
    s.starts_with("H4sI")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

fn detect_unit(u: &Unit<'_>) -> Option<ManagedFormat> {
    if u.prefix.is_some() {
        return Some(ManagedFormat::Eks);
    }
    match &u.value {
        Some(v) => detect_value(v),
        None if looks_base64(u.raw) => Some(ManagedFormat::Eks),
        None => None,
    }
}

/// The provider envelope a JSON value is in, by its keys; `None` for a
/// native audit event (or anything else).
pub fn detect_value(v: &Value) -> Option<ManagedFormat> {
    let o = match v {
        Value::Array(a) => return a.first().and_then(detect_value),
        Value::Object(o) => o,
        _ => return None,
    };
    if o.get("kind").and_then(Value::as_str) == Some("AdmissionReview") {
        return Some(ManagedFormat::Admission);
    }
    if o.contains_key("protoPayload") || o.contains_key(gke::BIGQUERY_PAYLOAD) {
        return Some(ManagedFormat::Gke);
    }
    if let Some(Value::Array(entries)) = o.get("entries") {
        if entries
            .first()
            .is_some_and(|e| detect_value(e) == Some(ManagedFormat::Gke))
        {
            return Some(ManagedFormat::Gke);
        }
    }
    if o.contains_key("subscription") && o.get("message").is_some_and(|m| m.get("data").is_some()) {
        return Some(ManagedFormat::Gke);
    }
    if let Some(Value::Array(records)) = o.get("records") {
        let first = records.first();
        if first.is_some_and(|r| r.get("category").is_some() || r.get("properties").is_some()) {
            return Some(ManagedFormat::Aks);
        }
        if o.contains_key("requestId") || first.is_some_and(|r| r.get("data").is_some()) {
            return Some(ManagedFormat::Eks);
        }
    }
    if o.contains_key("category") && o.contains_key("properties") {
        return Some(ManagedFormat::Aks);
    }
    if o.contains_key("logEvents") || o.contains_key("messageType") {
        return Some(ManagedFormat::Eks);
    }
    if let Some(Value::Array(events)) = o.get("events") {
        if events.first().is_none_or(|e| e.get("message").is_some()) {
            return Some(ManagedFormat::Eks);
        }
    }
    None
}

/// Guesses the format from the start of an input (already inflated), for
/// `kaudit import` without `--format`: `None` means native audit events
/// (read as today), `Some` an envelope to convert.
pub fn sniff(head: &[u8]) -> Option<ManagedFormat> {
    let text = String::from_utf8_lossy(head);
    let text = trim_text(&text);
    let first = text.lines().next().map(trim_text).unwrap_or("");
    if let Ok(v) = serde_json::from_str::<Value>(first) {
        return detect_value(&v);
    }
    if looks_base64(first) {
        return Some(ManagedFormat::Eks);
    }
    if let Some((ts, rest)) = first.split_once(' ') {
        if !ts.starts_with('{')
            && rest.trim_start().starts_with("{\"")
            && MicroTime::parse(ts).is_ok()
        {
            return Some(ManagedFormat::Eks);
        }
    }
    // A pretty-printed document or array: look at the keys near the start.
    let compact: String = text
        .chars()
        .take(64 << 10)
        .filter(|c| !c.is_whitespace())
        .collect();
    let find = |k: &str| compact.find(k);
    let native = [
        find("\"kind\":\"Event\""),
        find("\"kind\":\"EventList\""),
        find("\"auditID\""),
    ]
    .into_iter()
    .flatten()
    .min();
    let markers = [
        (
            find("\"kind\":\"AdmissionReview\""),
            ManagedFormat::Admission,
        ),
        (find("\"protoPayload\""), ManagedFormat::Gke),
        (find("\"protopayload_auditlog\""), ManagedFormat::Gke),
        (find("\"subscription\""), ManagedFormat::Gke),
        (find("\"category\""), ManagedFormat::Aks),
        (find("\"logEvents\""), ManagedFormat::Eks),
        (find("\"logStreamName\""), ManagedFormat::Eks),
        (find("\"requestId\""), ManagedFormat::Eks),
    ];
    let (at, f) = markers
        .into_iter()
        .filter_map(|(at, f)| at.map(|a| (a, f)))
        .min_by_key(|(a, _)| *a)?;
    match native {
        Some(n) if n < at => None,
        _ => Some(f),
    }
}

/// Adds the source-format and envelope annotations to an event.
pub(crate) fn annotate(doc: &mut EventDoc, format: ManagedFormat, envelope: Map<String, Value>) {
    doc.annotations
        .insert(SOURCE_FORMAT_ANNOTATION.into(), format.as_str().into());
    if !envelope.is_empty() {
        doc.annotations.insert(
            ENVELOPE_ANNOTATION.into(),
            Value::Object(envelope).to_string(),
        );
    }
}

/// Parses an embedded audit event (a CloudWatch `message`, an AKS
/// `properties.log`) and annotates it.
pub(crate) fn embedded_event(
    text: &str,
    format: ManagedFormat,
    envelope: Map<String, Value>,
    original: Option<&str>,
) -> Result<Event, String> {
    let ev = Event::from_json(trim_text(text).as_bytes()).map_err(|e| e.to_string())?;
    let mut doc = ev.into_doc();
    annotate(&mut doc, format, envelope);
    if let Some(o) = original {
        doc.annotations
            .insert(ORIGINAL_ANNOTATION.into(), o.to_string());
    }
    Ok(Event::from_doc(doc))
}

/// A JSON value as a raw value (for request/response bodies).
pub(crate) fn raw(v: &Value) -> Option<Box<RawValue>> {
    serde_json::value::to_raw_value(v).ok()
}

/// A string field of an object, or "".
pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Removes the keys a conversion mapped, leaving the envelope to keep.
pub(crate) fn without(v: &Value, keys: &[&str]) -> Map<String, Value> {
    let mut m = v.as_object().cloned().unwrap_or_default();
    for k in keys {
        m.shift_remove(*k);
    }
    m
}

/// The path to a JSON array member.
pub(crate) fn at(loc: &str, path: &str) -> String {
    if loc == "$" {
        format!("$.{path}")
    } else {
        format!("{loc}: .{path}")
    }
}

/// The URI kube-apiserver would have logged for a resource request.
pub(crate) fn request_uri(
    group: &str,
    version: &str,
    namespace: &str,
    resource: &str,
    name: &str,
    subresource: &str,
) -> String {
    let mut uri = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    if !namespace.is_empty() && resource != "namespaces" {
        uri.push_str("/namespaces/");
        uri.push_str(namespace);
    }
    for part in [resource, name, subresource] {
        if !part.is_empty() {
            uri.push('/');
            uri.push_str(part);
        }
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_by_shape() {
        let cases: [(&str, Option<ManagedFormat>); 9] = [
            (r#"{"protoPayload":{}}"#, Some(ManagedFormat::Gke)),
            (
                r#"{"message":{"data":"e30="},"subscription":"s"}"#,
                Some(ManagedFormat::Gke),
            ),
            (
                r#"{"records":[{"category":"kube-audit","properties":{}}]}"#,
                Some(ManagedFormat::Aks),
            ),
            (
                r#"{"requestId":"r","timestamp":1,"records":[{"data":"e30="}]}"#,
                Some(ManagedFormat::Eks),
            ),
            (
                r#"{"messageType":"DATA_MESSAGE","logEvents":[]}"#,
                Some(ManagedFormat::Eks),
            ),
            (r#"{"events":[{"message":"{}"}]}"#, Some(ManagedFormat::Eks)),
            (
                r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#,
                Some(ManagedFormat::Admission),
            ),
            (
                r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"x"}"#,
                None,
            ),
            (r#"{"kind":"EventList","items":[]}"#, None),
        ];
        for (json, want) in cases {
            let v: Value = serde_json::from_str(json).unwrap();
            assert_eq!(detect_value(&v), want, "{json}");
            assert_eq!(sniff(json.as_bytes()), want, "sniff {json}");
        }
        let pretty = b"\xef\xbb\xbf{\n  \"records\": [\n {\n \"category\": \"kube-audit\",";
        assert_eq!(sniff(pretty), Some(ManagedFormat::Aks));
        let native = b"{\n  \"kind\": \"Event\",\n  \"requestObject\": {\"protoPayload\": 1";
        assert_eq!(sniff(native), None);
        assert_eq!(
            sniff(b"2024-01-01T00:00:00.000Z {\"kind\":\"Event\"}"),
            Some(ManagedFormat::Eks)
        );
    }

    #[test]
    fn not_json_and_unrecognised_inputs_are_refused_with_where() {
        let l = ConvertLimits::default();
        let e = convert(b"hello world\n", ManagedFormat::Auto, None, &l).unwrap_err();
        assert!(e.to_string().starts_with("line 1: neither"), "{e}");
        let e = convert(br#"{"a":1}"#, ManagedFormat::Auto, None, &l).unwrap_err();
        assert!(matches!(e, ConvertError::Unrecognised(_)), "{e}");
        assert!(convert(b"", ManagedFormat::Auto, None, &l)
            .unwrap()
            .events
            .is_empty());
        let e = convert(b"\x1f\x8bnot gzip", ManagedFormat::Eks, None, &l).unwrap_err();
        assert!(matches!(e, ConvertError::BadGzip(_)), "{e}");
    }

    #[test]
    fn inflation_and_item_counts_are_bounded() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&vec![b' '; 1 << 20]).unwrap();
        let gz = gz.finish().unwrap();
        let l = ConvertLimits {
            max_items: 2,
            max_inflated: 1000,
        };
        assert!(matches!(
            convert(&gz, ManagedFormat::Eks, None, &l),
            Err(ConvertError::TooLarge { limit: 1000 })
        ));
        let lines = "{\"kind\":\"AdmissionReview\"}\n".repeat(3);
        assert!(matches!(
            convert(lines.as_bytes(), ManagedFormat::Admission, None, &l),
            Err(ConvertError::TooManyItems { limit: 2 })
        ));
    }

    #[test]
    fn request_uris_as_kube_apiserver_writes_them() {
        assert_eq!(
            request_uri("", "v1", "default", "pods", "p", "log"),
            "/api/v1/namespaces/default/pods/p/log"
        );
        assert_eq!(
            request_uri("apps", "v1", "", "deployments", "", ""),
            "/apis/apps/v1/deployments"
        );
        assert_eq!(
            request_uri("", "v1", "ns", "namespaces", "ns", ""),
            "/api/v1/namespaces/ns"
        );
    }
}

/// One input of `kaudit import`, opened according to `--format`.
pub enum ImportInput {
    /// Native audit events, read as before (streamed).
    Native(kaudit_event::reader::EventReader),
    /// A provider envelope, converted.
    Converted {
        /// The converted events as a reader of v1 lines.
        reader: kaudit_event::reader::EventReader,
        /// The format read.
        format: Option<ManagedFormat>,
        /// Items not convertible (located).
        bad: Vec<BadItem>,
        /// Records skipped on purpose, by why.
        skipped: BTreeMap<String, usize>,
    },
}

/// Why an import input could not be opened or converted.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Reading failed.
    #[error("{name}: {error}")]
    Io {
        /// The input.
        name: String,
        /// The error.
        #[source]
        error: std::io::Error,
    },
    /// The input as a whole is not convertible.
    #[error("{name}: {error}")]
    Convert {
        /// The input.
        name: String,
        /// The error.
        #[source]
        error: ConvertError,
    },
}

/// Bytes looked at to guess an input's format.
const SNIFF_BYTES: usize = 64 << 10;

/// Opens an import input (`-` for stdin). With `format` `None` or `Auto`,
/// native audit events are read as today (streamed) and a provider
/// envelope, recognised by [`sniff`], is converted; with another format,
/// the input is converted as that format. A converted input is read whole, within
/// `limits`.
pub fn open_for_import(
    path: &std::path::Path,
    format: Option<ManagedFormat>,
    limits: &ConvertLimits,
) -> Result<ImportInput, OpenError> {
    use kaudit_event::reader::{EventReader, ReaderOptions};
    let name = if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    let io = |error: std::io::Error| OpenError::Io {
        name: name.clone(),
        error,
    };
    let mut input: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(io)?)
    };
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut input)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    let format = match format {
        // `auto` decides by shape, and native audit events are a shape too
        // (`--format auto` over a mix of files reads each as what it is).
        Some(f) if f != ManagedFormat::Auto => f,
        _ => {
            let plain = if is_gzip(&head) {
                let mut out = Vec::new();
                let mut dec = flate2::read::MultiGzDecoder::new(&head[..]).take(SNIFF_BYTES as u64);
                // A prefix of a gzip stream ends early; what inflated is enough.
                let _ = dec.read_to_end(&mut out);
                out
            } else {
                head.clone()
            };
            match sniff(&plain) {
                Some(f) => f,
                None => {
                    let whole = std::io::Cursor::new(head).chain(input);
                    return EventReader::new(whole, &name, ReaderOptions::default())
                        .map(ImportInput::Native)
                        .map_err(io);
                }
            }
        }
    };
    let mut all = head;
    input
        .take(limits.max_inflated as u64 + 1 - all.len().min(limits.max_inflated) as u64)
        .read_to_end(&mut all)
        .map_err(io)?;
    if all.len() > limits.max_inflated {
        return Err(OpenError::Convert {
            name,
            error: ConvertError::TooLarge {
                limit: limits.max_inflated,
            },
        });
    }
    let out = convert(&all, format, None, limits).map_err(|error| OpenError::Convert {
        name: name.clone(),
        error,
    })?;
    let mut lines = Vec::new();
    for ev in &out.events {
        lines.extend_from_slice(ev.bytes());
        lines.push(b'\n');
    }
    let reader = EventReader::new(std::io::Cursor::new(lines), &name, ReaderOptions::default())
        .map_err(io)?;
    Ok(ImportInput::Converted {
        reader,
        format: out.format,
        bad: out.bad,
        skipped: out.skipped,
    })
}
