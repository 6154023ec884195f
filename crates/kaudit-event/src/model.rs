//! The `audit.k8s.io/v1` Event: typed hot fields, lossless nested values,
//! and the kube-apiserver encoding.

use crate::json::{write_compact, write_str};
use crate::time::MicroTime;
use serde::de::DeserializeSeed;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// How much of a request the audit policy asked to record. Ordered, so a
/// policy can compare levels (`level >= Level::Request`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    /// Not logged at all.
    #[default]
    None,
    /// Metadata only: user, verb, resource, timestamps; no bodies.
    Metadata,
    /// Metadata and the request body.
    Request,
    /// Metadata, request and response bodies.
    RequestResponse,
}

impl Level {
    /// The wire name (`"RequestResponse"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
    /// All levels, lowest first.
    pub const ALL: [Level; 4] = [
        Level::None,
        Level::Metadata,
        Level::Request,
        Level::RequestResponse,
    ];
}

/// A level name kube-apiserver does not write (names are case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown level {0:?}: want None, Metadata, Request or RequestResponse")]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;
    fn from_str(s: &str) -> Result<Self, UnknownLevel> {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownLevel(s.to_string()))
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The point in a request's life an event was written at.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// As soon as the request arrives, before any handler runs.
    RequestReceived,
    /// After response headers are sent (long-running requests: watch, exec).
    ResponseStarted,
    /// After the response body is complete.
    ResponseComplete,
    /// When a panic occurred while handling the request.
    Panic,
}

impl Stage {
    /// The wire name (`"ResponseComplete"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }
    /// All stages in the order a request passes them.
    pub const ALL: [Stage; 4] = [
        Stage::RequestReceived,
        Stage::ResponseStarted,
        Stage::ResponseComplete,
        Stage::Panic,
    ];
}

/// A stage name kube-apiserver does not write (names are case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stage {0:?}: want RequestReceived, ResponseStarted, ResponseComplete or Panic")]
pub struct UnknownStage(pub String);

impl FromStr for Stage {
    type Err = UnknownStage;
    fn from_str(s: &str) -> Result<Self, UnknownStage> {
        Stage::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownStage(s.to_string()))
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `authentication.k8s.io/v1` UserInfo. Empty fields are omitted on output.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct UserInfo {
    /// The name that uniquely identifies the user; empty for failed authentication.
    #[serde(deserialize_with = "null_default")]
    pub username: String,
    /// A unique value that survives renames.
    #[serde(deserialize_with = "null_default")]
    pub uid: String,
    /// Groups the user belongs to.
    #[serde(deserialize_with = "null_default")]
    pub groups: Vec<String>,
    /// Extra attributes from the authenticator (kept sorted by key, as Go does).
    #[serde(deserialize_with = "null_default")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        let mut key = |out: &mut Vec<u8>, k: &[u8]| {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(k);
        };
        if !self.username.is_empty() {
            key(out, b"\"username\":");
            write_str(out, &self.username);
        }
        if !self.uid.is_empty() {
            key(out, b"\"uid\":");
            write_str(out, &self.uid);
        }
        if !self.groups.is_empty() {
            key(out, b"\"groups\":");
            write_str_array(out, &self.groups);
        }
        if !self.extra.is_empty() {
            key(out, b"\"extra\":");
            out.push(b'{');
            for (i, (k, v)) in self.extra.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                // Go's ExtraValue is a []string: nil encodes as null.
                write_str_array(out, v);
            }
            out.push(b'}');
        }
        out.push(b'}');
    }
}

/// The object a request was about (`objectRef`). Empty fields are omitted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectRef {
    /// Plural resource name (`pods`).
    pub resource: String,
    /// Namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Object name; empty for list/create-without-name.
    pub name: String,
    /// Object UID when known.
    pub uid: String,
    /// API group; empty for the core group.
    pub api_group: String,
    /// API version (`v1`).
    pub api_version: String,
    /// Resource version of the object.
    pub resource_version: String,
    /// Subresource (`status`, `exec`, `log`).
    pub subresource: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ObjectRefWire {
    #[serde(deserialize_with = "null_default")]
    resource: String,
    #[serde(deserialize_with = "null_default")]
    namespace: String,
    #[serde(deserialize_with = "null_default")]
    name: String,
    #[serde(deserialize_with = "null_default")]
    uid: String,
    #[serde(deserialize_with = "null_default")]
    api_group: Option<String>,
    #[serde(deserialize_with = "null_default")]
    api_version: String,
    #[serde(deserialize_with = "null_default")]
    resource_version: String,
    #[serde(deserialize_with = "null_default")]
    subresource: String,
}

impl ObjectRef {
    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        for (k, v) in [
            ("resource", &self.resource),
            ("namespace", &self.namespace),
            ("name", &self.name),
            ("uid", &self.uid),
            ("apiGroup", &self.api_group),
            ("apiVersion", &self.api_version),
            ("resourceVersion", &self.resource_version),
            ("subresource", &self.subresource),
        ] {
            if v.is_empty() {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            write_str(out, k);
            out.push(b':');
            write_str(out, v);
        }
        out.push(b'}');
    }
}

/// `responseStatus` (a `metav1.Status`): the code is typed, the rest kept verbatim.
#[derive(Clone, Debug)]
pub struct ResponseStatus {
    /// HTTP status code, when present.
    pub code: Option<i32>,
    /// The whole status object as it arrived.
    pub raw: Box<RawValue>,
}

impl PartialEq for ResponseStatus {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code && self.raw.get() == other.raw.get()
    }
}

impl ResponseStatus {
    /// Builds the status kube-apiserver writes: `{"metadata":{},...,"code":N}`
    /// with `status`, `message` and `reason` only when non-empty (Go field order).
    pub fn new(code: i32, status: &str, message: &str, reason: &str) -> Self {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"{\"metadata\":{}");
        for (k, v) in [("status", status), ("message", message), ("reason", reason)] {
            if !v.is_empty() {
                out.push(b',');
                write_str(&mut out, k);
                out.push(b':');
                write_str(&mut out, v);
            }
        }
        if code != 0 {
            out.extend_from_slice(b",\"code\":");
            out.extend_from_slice(code.to_string().as_bytes());
        }
        out.push(b'}');
        let raw = String::from_utf8(out).unwrap_or_default();
        ResponseStatus {
            code: (code != 0).then_some(code),
            raw: RawValue::from_string(raw).unwrap_or_else(|_| empty_object()),
        }
    }
}

fn empty_object() -> Box<RawValue> {
    // "{}" is valid JSON; from_string only fails on invalid JSON.
    RawValue::from_string("{}".to_string()).expect("literal is valid JSON")
}

/// Which `audit.k8s.io` version a document was written in.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ApiVersion {
    /// `audit.k8s.io/v1`, what current clusters write.
    V1,
    /// `audit.k8s.io/v1beta1` (Kubernetes 1.8 to 1.21).
    V1beta1,
    /// `audit.k8s.io/v1alpha1` (Kubernetes 1.7).
    V1alpha1,
}

impl ApiVersion {
    /// Parses an `apiVersion` value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "audit.k8s.io/v1" => Some(ApiVersion::V1),
            "audit.k8s.io/v1beta1" => Some(ApiVersion::V1beta1),
            "audit.k8s.io/v1alpha1" => Some(ApiVersion::V1alpha1),
            _ => None,
        }
    }
}

/// A whole audit event as `audit.k8s.io/v1`, every field kept.
///
/// Scalars and the fields kaudit reasons about are typed; bodies and status
/// objects stay as the raw JSON they arrived as; unknown top-level fields are
/// kept in arrival order and written after the known ones.
#[derive(Clone, Debug, Default)]
pub struct EventDoc {
    /// Audit level the policy chose.
    pub level: Level,
    /// Unique per request; shared by all stages of that request.
    pub audit_id: String,
    /// Stage this event was written at.
    pub stage: Option<Stage>,
    /// Request URI as sent by the client.
    pub request_uri: String,
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, ...) or HTTP verb for non-resource URLs.
    pub verb: String,
    /// The authenticated user.
    pub user: UserInfo,
    /// The user impersonated, if any.
    pub impersonated_user: Option<UserInfo>,
    /// `authenticationMetadata`, kept verbatim.
    pub authentication_metadata: Option<Box<RawValue>>,
    /// Client addresses, the origin first.
    pub source_ips: Vec<String>,
    /// The client's User-Agent.
    pub user_agent: String,
    /// The object the request was about.
    pub object_ref: Option<ObjectRef>,
    /// The response status.
    pub response_status: Option<ResponseStatus>,
    /// Request body (levels Request and RequestResponse).
    pub request_object: Option<Box<RawValue>>,
    /// Response body (level RequestResponse).
    pub response_object: Option<Box<RawValue>>,
    /// When the request arrived; `None` encodes as `null` (Go's zero time).
    pub request_received_timestamp: Option<MicroTime>,
    /// When this stage was reached.
    pub stage_timestamp: Option<MicroTime>,
    /// Annotations (authorization decision and reason, admission, ...), sorted by key.
    pub annotations: BTreeMap<String, String>,
    /// Top-level fields kube-apiserver's v1 Event does not define, in arrival order.
    pub unknown: Vec<(String, Box<RawValue>)>,
}

impl EventDoc {
    /// Appends the kube-apiserver encoding, without a trailing newline.
    /// `type_meta` writes `kind` and `apiVersion` (a JSON line or a single
    /// Event); EventList items carry neither.
    pub fn encode_into(&self, out: &mut Vec<u8>, type_meta: bool) {
        out.push(b'{');
        if type_meta {
            out.extend_from_slice(b"\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",");
        }
        out.extend_from_slice(b"\"level\":\"");
        out.extend_from_slice(self.level.as_str().as_bytes());
        out.extend_from_slice(b"\",\"auditID\":");
        write_str(out, &self.audit_id);
        out.extend_from_slice(b",\"stage\":");
        write_str(out, self.stage.map(Stage::as_str).unwrap_or(""));
        out.extend_from_slice(b",\"requestURI\":");
        write_str(out, &self.request_uri);
        out.extend_from_slice(b",\"verb\":");
        write_str(out, &self.verb);
        out.extend_from_slice(b",\"user\":");
        self.user.write(out);
        if let Some(u) = &self.impersonated_user {
            out.extend_from_slice(b",\"impersonatedUser\":");
            u.write(out);
        }
        if let Some(m) = &self.authentication_metadata {
            out.extend_from_slice(b",\"authenticationMetadata\":");
            write_compact(out, m.get().as_bytes());
        }
        if !self.source_ips.is_empty() {
            out.extend_from_slice(b",\"sourceIPs\":");
            write_str_array(out, &self.source_ips);
        }
        if !self.user_agent.is_empty() {
            out.extend_from_slice(b",\"userAgent\":");
            write_str(out, &self.user_agent);
        }
        if let Some(o) = &self.object_ref {
            out.extend_from_slice(b",\"objectRef\":");
            o.write(out);
        }
        if let Some(s) = &self.response_status {
            out.extend_from_slice(b",\"responseStatus\":");
            write_compact(out, s.raw.get().as_bytes());
        }
        if let Some(o) = &self.request_object {
            out.extend_from_slice(b",\"requestObject\":");
            write_compact(out, o.get().as_bytes());
        }
        if let Some(o) = &self.response_object {
            out.extend_from_slice(b",\"responseObject\":");
            write_compact(out, o.get().as_bytes());
        }
        out.extend_from_slice(b",\"requestReceivedTimestamp\":");
        write_time(out, self.request_received_timestamp);
        out.extend_from_slice(b",\"stageTimestamp\":");
        write_time(out, self.stage_timestamp);
        if !self.annotations.is_empty() {
            out.extend_from_slice(b",\"annotations\":{");
            for (i, (k, v)) in self.annotations.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_str(out, v);
            }
            out.push(b'}');
        }
        for (k, v) in &self.unknown {
            out.push(b',');
            write_str(out, k);
            out.push(b':');
            write_compact(out, v.get().as_bytes());
        }
        out.push(b'}');
    }

    /// The JSON-line encoding (with `kind` and `apiVersion`), no newline.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        self.encode_into(&mut out, true);
        out
    }

    /// The HTTP status code of the response, when there was one.
    pub fn response_code(&self) -> Option<i32> {
        self.response_status.as_ref().and_then(|s| s.code)
    }
}

impl PartialEq for EventDoc {
    /// Two documents are equal when kube-apiserver would encode them identically.
    fn eq(&self, other: &Self) -> bool {
        self.encode() == other.encode()
    }
}

fn write_time(out: &mut Vec<u8>, t: Option<MicroTime>) {
    match t {
        Some(t) => {
            out.push(b'"');
            t.write(out);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn write_str_array(out: &mut Vec<u8>, items: &[String]) {
    out.push(b'[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, s);
    }
    out.push(b']');
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// What one JSON object turned out to be; an EventList's items borrow the
/// text it was decoded from (no copy of a batch's bytes before its items are
/// decoded).
pub(crate) enum Decoded<'a> {
    /// An Event (possibly of an older version, already converted to v1).
    Event {
        doc: Box<EventDoc>,
        version: Option<ApiVersion>,
        kind_present: bool,
    },
    /// An EventList: its items, still raw.
    List {
        items: Vec<&'a RawValue>,
        /// The list's `apiVersion`, which its items (carrying none) share.
        version: Option<ApiVersion>,
    },
}

/// Field names an event may carry, resolved once per key.
#[derive(Clone, Copy)]
enum Field {
    Kind,
    ApiVersion,
    Level,
    AuditId,
    Stage,
    RequestUri,
    Verb,
    User,
    ImpersonatedUser,
    AuthenticationMetadata,
    SourceIps,
    UserAgent,
    ObjectRef,
    ResponseStatus,
    RequestObject,
    ResponseObject,
    RequestReceivedTimestamp,
    StageTimestamp,
    Annotations,
    Items,
    Metadata,
    Timestamp,
}

fn field_of(s: &str) -> Option<Field> {
    Some(match s {
        "kind" => Field::Kind,
        "apiVersion" => Field::ApiVersion,
        "level" => Field::Level,
        "auditID" => Field::AuditId,
        "stage" => Field::Stage,
        "requestURI" => Field::RequestUri,
        "verb" => Field::Verb,
        "user" => Field::User,
        "impersonatedUser" => Field::ImpersonatedUser,
        "authenticationMetadata" => Field::AuthenticationMetadata,
        "sourceIPs" => Field::SourceIps,
        "userAgent" => Field::UserAgent,
        "objectRef" => Field::ObjectRef,
        "responseStatus" => Field::ResponseStatus,
        "requestObject" => Field::RequestObject,
        "responseObject" => Field::ResponseObject,
        "requestReceivedTimestamp" => Field::RequestReceivedTimestamp,
        "stageTimestamp" => Field::StageTimestamp,
        "annotations" => Field::Annotations,
        "items" => Field::Items,
        "metadata" => Field::Metadata,
        "timestamp" => Field::Timestamp,
        _ => return None,
    })
}

enum Key {
    Known(Field),
    Unknown(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(field_of(s)
                    .map(Key::Known)
                    .unwrap_or_else(|| Key::Unknown(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A string value that is only looked at (kind, versions, level, stage,
/// timestamps): borrowed from the input when it holds no escapes, so reading
/// it allocates nothing; owned otherwise.
enum Str<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Str::Borrowed(s) => s,
            Str::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Str<'de>, E> {
                Ok(Str::Borrowed(s))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Str<'de>, E> {
                Ok(Str::Owned(s.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Str<'de>, E> {
                Ok(Str::Owned(s))
            }
        }
        d.deserialize_str(V)
    }
}

/// A `kind` value: a string (borrowed when it can be), or any other JSON
/// value as its compact text, for the error that names it.
struct Kind<'de>(Result<Str<'de>, String>);

impl<'de> Deserialize<'de> for Kind<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
        use serde_json::Value;
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Kind<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Kind<'de>, E> {
                Ok(Kind(Ok(Str::Borrowed(s))))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Kind<'de>, E> {
                Ok(Kind(Ok(Str::Owned(s.to_string()))))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Kind<'de>, E> {
                Ok(Kind(Ok(Str::Owned(s))))
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Kind<'de>, E> {
                Ok(Kind(Err(Value::Bool(b).to_string())))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Kind<'de>, E> {
                Ok(Kind(Err(Value::from(n).to_string())))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Kind<'de>, E> {
                Ok(Kind(Err(Value::from(n).to_string())))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Kind<'de>, E> {
                Ok(Kind(Err(Value::from(n).to_string())))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Kind<'de>, E> {
                Ok(Kind(Err(Value::Null.to_string())))
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Kind<'de>, E> {
                self.visit_unit()
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Kind<'de>, A::Error> {
                let v = Value::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(Kind(Err(v.to_string())))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Kind<'de>, A::Error> {
                let v = Value::deserialize(MapAccessDeserializer::new(map))?;
                Ok(Kind(Err(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// The raw top-level value of an object before it is known to be an Event
/// or an EventList; built in one pass over the map.
#[derive(Default)]
struct Wire<'de> {
    kind: Option<Result<Str<'de>, String>>,
    api_version: Option<Str<'de>>,
    doc: EventDoc,
    stage: Option<Str<'de>>,
    level: Option<Str<'de>>,
    object_ref: Option<ObjectRefWire>,
    timestamp: Option<Str<'de>>,
    request_received: Option<Option<Str<'de>>>,
    stage_ts: Option<Option<Str<'de>>>,
    items: Option<Vec<&'de RawValue>>,
}

#[derive(Deserialize)]
struct StatusCode {
    #[serde(default)]
    code: Option<serde_json::Value>,
}

/// Deserializes a [`Wire`], refusing an `items` list longer than `max_items`
/// while it is read (so a huge list costs no more than the limit).
struct WireSeed<'a> {
    max_items: usize,
    exceeded: &'a Cell<bool>,
}

/// An `items` list of raw values, at most `max_items` long.
struct ItemsSeed<'a> {
    max_items: usize,
    exceeded: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = Option<Vec<&'de RawValue>>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V<'a>(ItemsSeed<'a>);
        impl<'de> serde::de::Visitor<'de> for V<'_> {
            type Value = Option<Vec<&'de RawValue>>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of items")
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                d.deserialize_seq(self)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<&'de RawValue>()? {
                    if items.len() == self.0.max_items {
                        self.0.exceeded.set(true);
                        return Err(serde::de::Error::custom(format_args!(
                            "more than {} items",
                            self.0.max_items
                        )));
                    }
                    items.push(item);
                }
                Ok(Some(items))
            }
        }
        d.deserialize_option(V(self))
    }
}

/// A JSON array of raw values, at most `max_items` long (a webhook body
/// that is an array of Events or EventLists).
pub(crate) fn raw_array(text: &str, max_items: usize) -> Result<Vec<&RawValue>, EventError> {
    let exceeded = Cell::new(false);
    let seed = ItemsSeed {
        max_items,
        exceeded: &exceeded,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let r = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match r {
        Ok(v) => Ok(v.unwrap_or_default()),
        Err(_) if exceeded.get() => Err(EventError::TooManyItems { limit: max_items }),
        Err(e) => Err(EventError::Json(e.to_string())),
    }
}

impl<'de> DeserializeSeed<'de> for WireSeed<'_> {
    type Value = Wire<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Wire<'de>, D::Error> {
        struct V<'a> {
            max_items: usize,
            exceeded: &'a Cell<bool>,
        }
        impl<'de> serde::de::Visitor<'de> for V<'_> {
            type Value = Wire<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object (an audit Event or EventList)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Wire<'de>, A::Error> {
                use serde::de::Error;
                let mut w = Wire::default();
                macro_rules! val {
                    ($name:expr) => {
                        map.next_value()
                            .map_err(|e| A::Error::custom(format_args!(".{}: {}", $name, e)))?
                    };
                }
                while let Some(key) = map.next_key::<Key>()? {
                    let f = match key {
                        Key::Known(f) => f,
                        Key::Unknown(name) => {
                            let v: Box<RawValue> = val!(name);
                            w.doc.unknown.push((name, v));
                            continue;
                        }
                    };
                    match f {
                        Field::Kind => {
                            let v: Kind<'de> = val!("kind");
                            w.kind = Some(v.0);
                        }
                        Field::ApiVersion => {
                            let v: Option<Str<'de>> = val!("apiVersion");
                            w.api_version = v;
                        }
                        Field::Level => w.level = val!("level"),
                        Field::AuditId => {
                            let v: Option<String> = val!("auditID");
                            w.doc.audit_id = v.unwrap_or_default();
                        }
                        Field::Stage => w.stage = val!("stage"),
                        Field::RequestUri => {
                            let v: Option<String> = val!("requestURI");
                            w.doc.request_uri = v.unwrap_or_default();
                        }
                        Field::Verb => {
                            let v: Option<String> = val!("verb");
                            w.doc.verb = v.unwrap_or_default();
                        }
                        Field::User => {
                            let v: Option<UserInfo> = val!("user");
                            w.doc.user = v.unwrap_or_default();
                        }
                        Field::ImpersonatedUser => {
                            w.doc.impersonated_user = val!("impersonatedUser")
                        }
                        Field::AuthenticationMetadata => {
                            w.doc.authentication_metadata = non_null(val!("authenticationMetadata"))
                        }
                        Field::SourceIps => {
                            let v: Option<Vec<String>> = val!("sourceIPs");
                            w.doc.source_ips = v.unwrap_or_default();
                        }
                        Field::UserAgent => {
                            let v: Option<String> = val!("userAgent");
                            w.doc.user_agent = v.unwrap_or_default();
                        }
                        Field::ObjectRef => w.object_ref = val!("objectRef"),
                        Field::ResponseStatus => {
                            let raw: Option<Box<RawValue>> = non_null(val!("responseStatus"));
                            if let Some(raw) = raw {
                                let code: StatusCode =
                                    serde_json::from_str(raw.get()).map_err(|e| {
                                        A::Error::custom(format_args!(".responseStatus: {e}"))
                                    })?;
                                let code = match code.code {
                                    None | Some(serde_json::Value::Null) => None,
                                    Some(serde_json::Value::Number(n)) => Some(
                                        n.as_i64()
                                            .and_then(|c| i32::try_from(c).ok())
                                            .ok_or_else(|| {
                                                A::Error::custom(format_args!(
                                                    ".responseStatus.code: {n} is not a 32-bit integer"
                                                ))
                                            })?,
                                    ),
                                    Some(other) => {
                                        return Err(A::Error::custom(format_args!(
                                            ".responseStatus.code: want an integer, got {other}"
                                        )))
                                    }
                                };
                                w.doc.response_status = Some(ResponseStatus { code, raw });
                            }
                        }
                        Field::RequestObject => {
                            w.doc.request_object = non_null(val!("requestObject"))
                        }
                        Field::ResponseObject => {
                            w.doc.response_object = non_null(val!("responseObject"))
                        }
                        Field::RequestReceivedTimestamp => {
                            w.request_received = Some(val!("requestReceivedTimestamp"))
                        }
                        Field::StageTimestamp => w.stage_ts = Some(val!("stageTimestamp")),
                        Field::Annotations => {
                            let v: Option<BTreeMap<String, String>> = val!("annotations");
                            w.doc.annotations = v.unwrap_or_default();
                        }
                        Field::Items => {
                            w.items = map
                                .next_value_seed(ItemsSeed {
                                    max_items: self.max_items,
                                    exceeded: self.exceeded,
                                })
                                .map_err(|e| A::Error::custom(format_args!(".items: {e}")))?
                        }
                        Field::Metadata => {
                            // v1beta1/v1alpha1 ObjectMeta: dropped by the conversion to v1.
                            let v: Box<RawValue> = val!("metadata");
                            w.doc.unknown.push(("metadata".to_string(), v));
                        }
                        Field::Timestamp => {
                            let v: Option<Str<'de>> = val!("timestamp");
                            w.timestamp = v;
                        }
                    }
                }
                Ok(w)
            }
        }
        d.deserialize_map(V {
            max_items: self.max_items,
            exceeded: self.exceeded,
        })
    }
}

/// One EventList item decoded in the same pass that finds its end: an
/// object read as a [`Wire`] that may hold no `items` (an item is one Event).
/// The batch fast path reads items with it from a `StreamDeserializer`,
/// whose byte offset then gives the item's span without a second scan.
pub(crate) struct ItemWire<'de>(Wire<'de>);

impl<'de> Deserialize<'de> for ItemWire<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let exceeded = Cell::new(false);
        WireSeed {
            max_items: 0,
            exceeded: &exceeded,
        }
        .deserialize(d)
        .map(ItemWire)
    }
}

impl<'de> ItemWire<'de> {
    /// The checks and conversion [`decode_str`] applies after reading.
    pub(crate) fn finish(self) -> Result<Decoded<'de>, EventError> {
        self.0.finish()
    }
}

fn non_null(v: Option<Box<RawValue>>) -> Option<Box<RawValue>> {
    v.filter(|r| r.get() != "null")
}

/// Why a JSON value is not a usable audit event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not JSON, or JSON of the wrong shape; the message names the JSON path and column.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Valid JSON, but not a Kubernetes audit event.
    #[error("not a Kubernetes audit event: {0}")]
    NotAnEvent(String),
    /// A batch holds more items than the caller allows (found while reading,
    /// so the rest of it is never decoded).
    #[error("the batch holds more than {limit} items")]
    TooManyItems {
        /// The most items allowed.
        limit: usize,
    },
    /// An event whose field has a value kube-apiserver never writes.
    #[error("invalid audit event: {field}: {reason}")]
    Invalid {
        /// JSON path of the field (`.stage`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded<'_>, EventError> {
    // One UTF-8 check of the whole document (a fast pass over mostly ASCII)
    // instead of one per string, which `from_slice` would make.
    let text = std::str::from_utf8(bytes).map_err(|e| {
        EventError::Json(format!(
            "invalid UTF-8 at byte {} of the document",
            e.valid_up_to()
        ))
    })?;
    decode_str(text, usize::MAX)
}

/// Decodes one JSON object already known to be UTF-8; an EventList with more
/// than `max_items` items is refused while it is read.
pub(crate) fn decode_str(text: &str, max_items: usize) -> Result<Decoded<'_>, EventError> {
    let exceeded = Cell::new(false);
    let seed = WireSeed {
        max_items,
        exceeded: &exceeded,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let wire = seed
        .deserialize(&mut de)
        .and_then(|w| de.end().map(|()| w))
        .map_err(|e| {
            if exceeded.get() {
                EventError::TooManyItems { limit: max_items }
            } else if e.classify() == serde_json::error::Category::Data
                && e.line() == 1
                && e.column() <= 1
            {
                EventError::NotAnEvent(format!("the document is not a JSON object ({e})"))
            } else {
                EventError::Json(e.to_string())
            }
        })?;
    wire.finish()
}

impl<'de> Wire<'de> {
    fn finish(mut self) -> Result<Decoded<'de>, EventError> {
        let kind_present = self.kind.is_some();
        match self.kind.take() {
            Some(Ok(k)) if &*k == "EventList" => {
                if let Some(v) = self.api_version.as_deref() {
                    if ApiVersion::parse(v).is_none() {
                        return Err(EventError::NotAnEvent(format!(
                            "apiVersion is {v:?}, want audit.k8s.io/v1 (or v1beta1, v1alpha1)"
                        )));
                    }
                }
                let items = self.items.take().unwrap_or_default();
                let version = self.api_version.as_deref().and_then(ApiVersion::parse);
                return Ok(Decoded::List { items, version });
            }
            Some(Ok(k)) if &*k == "Event" => {}
            Some(Ok(k)) => {
                let k: &str = &k;
                return Err(EventError::NotAnEvent(format!(
                    "kind is {k:?}, want \"Event\" or \"EventList\""
                )));
            }
            Some(Err(v)) => {
                return Err(EventError::NotAnEvent(format!(
                    "kind is {v}, want \"Event\" or \"EventList\""
                )))
            }
            None => {}
        }
        let version = match self.api_version.as_deref() {
            None => None,
            Some(v) => Some(ApiVersion::parse(v).ok_or_else(|| {
                EventError::NotAnEvent(format!(
                    "apiVersion is {v:?}, want audit.k8s.io/v1 (or v1beta1, v1alpha1)"
                ))
            })?),
        };
        if self.items.is_some() {
            // An `items` key outside an EventList is not something the apiserver writes.
            return Err(EventError::NotAnEvent(
                "has \"items\" but kind is not \"EventList\"".into(),
            ));
        }
        let doc = &mut self.doc;
        if doc.audit_id.is_empty() {
            return Err(EventError::NotAnEvent("no auditID".into()));
        }
        let stage = self
            .stage
            .as_deref()
            .ok_or_else(|| EventError::NotAnEvent("no stage".into()))?;
        doc.stage = Some(
            stage
                .parse()
                .map_err(|e: UnknownStage| EventError::Invalid {
                    field: ".stage",
                    reason: e.to_string(),
                })?,
        );
        let level = self
            .level
            .as_deref()
            .ok_or_else(|| EventError::NotAnEvent("no level".into()))?;
        doc.level = level
            .parse()
            .map_err(|e: UnknownLevel| EventError::Invalid {
                field: ".level",
                reason: e.to_string(),
            })?;
        let legacy = matches!(version, Some(ApiVersion::V1beta1 | ApiVersion::V1alpha1));
        if legacy {
            // Conversion to v1 drops ObjectMeta and the second-precision timestamp.
            doc.unknown.retain(|(k, _)| k != "metadata");
        } else if let Some(ts) = &self.timestamp {
            // v1 has no `timestamp`: keep it as an unknown field, losslessly.
            let mut raw = Vec::new();
            write_str(&mut raw, ts);
            if let Ok(raw) = RawValue::from_string(String::from_utf8_lossy(&raw).into_owned()) {
                doc.unknown.push(("timestamp".into(), raw));
            }
        }
        let parse_ts = |field: &'static str,
                        v: Option<Option<Str<'de>>>|
         -> Result<Option<MicroTime>, EventError> {
            match v.flatten() {
                None => Ok(None),
                Some(s) => MicroTime::parse(&s)
                    .map(Some)
                    .map_err(|e| EventError::Invalid {
                        field,
                        reason: e.to_string(),
                    }),
            }
        };
        doc.request_received_timestamp =
            parse_ts(".requestReceivedTimestamp", self.request_received)?;
        doc.stage_timestamp = parse_ts(".stageTimestamp", self.stage_ts)?;
        // Events from before Kubernetes 1.10 only carry `timestamp` (and, in
        // the v1 shape some 1.8/1.9 clusters wrote, `metadata.creationTimestamp`);
        // use it for both so that every event has a time. A v1 event keeps
        // both fields as they arrived (its bytes are not rewritten).
        if !legacy && doc.request_received_timestamp.is_none() && doc.stage_timestamp.is_none() {
            let created = doc
                .unknown
                .iter()
                .find(|(k, _)| k == "metadata")
                .and_then(|(_, v)| creation_timestamp(v));
            let (field, ts) = match (self.timestamp.as_deref(), created.as_deref()) {
                (Some(ts), _) => (".timestamp", Some(ts)),
                (None, Some(c)) => (".metadata.creationTimestamp", Some(c)),
                (None, None) => ("", None),
            };
            if let Some(ts) = ts {
                let t = MicroTime::parse(ts).map_err(|e| EventError::Invalid {
                    field,
                    reason: e.to_string(),
                })?;
                doc.request_received_timestamp = Some(t);
                doc.stage_timestamp = Some(t);
            }
        }
        if legacy {
            // Events from before Kubernetes 1.10 only carry `timestamp`; use it
            // for both so that every converted event has a time.
            if let Some(ts) = self.timestamp.as_deref() {
                let t = MicroTime::parse(ts).map_err(|e| EventError::Invalid {
                    field: ".timestamp",
                    reason: e.to_string(),
                })?;
                doc.request_received_timestamp.get_or_insert(t);
                doc.stage_timestamp.get_or_insert(t);
            }
        }
        if let Some(o) = self.object_ref {
            let (api_group, api_version) = match (o.api_group, version) {
                (None, Some(ApiVersion::V1alpha1)) => split_group_version(&o.api_version)?,
                (g, _) => (g.unwrap_or_default(), o.api_version),
            };
            doc.object_ref = Some(ObjectRef {
                resource: o.resource,
                namespace: o.namespace,
                name: o.name,
                uid: o.uid,
                api_group,
                api_version,
                resource_version: o.resource_version,
                subresource: o.subresource,
            });
        }
        Ok(Decoded::Event {
            doc: Box::new(self.doc),
            version,
            kind_present,
        })
    }
}

/// `metadata.creationTimestamp` of a pre-1.10 event's ObjectMeta, if any.
fn creation_timestamp(meta: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "creationTimestamp")]
        creation_timestamp: Option<String>,
    }
    serde_json::from_str::<Meta>(meta.get())
        .ok()
        .and_then(|m| m.creation_timestamp)
}

/// v1alpha1 put `group/version` into objectRef.apiVersion; v1 splits it
/// (as `schema.ParseGroupVersion`: `v1` and `/v1` are the core group).
fn split_group_version(gv: &str) -> Result<(String, String), EventError> {
    match gv.split_once('/') {
        None => Ok((String::new(), gv.to_string())),
        Some((g, v)) if !v.contains('/') => Ok((g.to_string(), v.to_string())),
        Some(_) => Err(EventError::Invalid {
            field: ".objectRef.apiVersion",
            reason: format!("unexpected GroupVersion string: {gv:?}"),
        }),
    }
}
