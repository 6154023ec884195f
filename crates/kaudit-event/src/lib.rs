//! The `audit.k8s.io` event model.
//!
//! kube-apiserver writes audit events as JSON; kaudit must keep them byte for
//! byte (they are what the Merkle tree signs) and still reason about their
//! fields quickly. An [`Event`] therefore holds two things: the exact bytes of
//! the event as a v1 JSON line, and an [`EventDoc`] decoded from them in one
//! pass, with the hot fields typed and the bodies left as raw JSON.
//!
//! * [`Event::from_json`] reads one event of any version (v1, v1beta1,
//!   v1alpha1); older versions are converted to v1.
//! * [`parse_batch`] reads what a webhook POSTs: an EventList, an Event, or a
//!   JSON array of either, item by item, so one bad item costs nothing else.
//! * [`reader::EventReader`] reads files and streams: JSON lines, `.gz`
//!   rotated files, pretty-printed documents, with file:line errors.
//! * [`EventDoc::encode`] writes exactly what kube-apiserver would.

#![warn(missing_docs)]

pub mod json;
mod model;
pub mod reader;
pub mod time;

pub use model::{
    ApiVersion, EventDoc, EventError, Level, ObjectRef, ResponseStatus, Stage, UnknownLevel,
    UnknownStage, UserInfo,
};
pub use time::MicroTime;

use model::{decode, Decoded};
use serde_json::value::RawValue;

/// Prefix of a v1 event line as kube-apiserver writes it; input that starts
/// like this is kept byte for byte.
const V1_LINE_PREFIX: &[u8] = b"{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",";

/// One audit event: its bytes as a v1 JSON line plus its decoded document.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    bytes: Vec<u8>,
    doc: EventDoc,
}

impl Event {
    /// Parses one event of any `audit.k8s.io` version.
    ///
    /// A v1 event already on one line with `kind` and `apiVersion` first keeps
    /// its exact bytes (lossless, unknown fields included). Anything else (an
    /// older version, an EventList item, a pretty-printed document) gets the
    /// bytes kube-apiserver would have written for it as a v1 line.
    pub fn from_json(bytes: &[u8]) -> Result<Event, EventError> {
        let bytes = trim_json(bytes);
        match decode(bytes)? {
            Decoded::Event {
                doc,
                version,
                kind_present,
            } => Ok(Self::assemble(bytes, *doc, version, kind_present)),
            Decoded::List { .. } => Err(EventError::NotAnEvent(
                "this is an EventList, not a single Event (use parse_batch)".into(),
            )),
        }
    }

    fn assemble(
        bytes: &[u8],
        doc: EventDoc,
        version: Option<ApiVersion>,
        kind_present: bool,
    ) -> Event {
        let keep = kind_present
            && version == Some(ApiVersion::V1)
            && bytes.starts_with(V1_LINE_PREFIX)
            && memchr::memchr2(b'\n', b'\r', bytes).is_none();
        let bytes = if keep { bytes.to_vec() } else { doc.encode() };
        Event { bytes, doc }
    }

    /// An EventList item: kube-apiserver writes items as the JSON line without
    /// `kind` and `apiVersion`, so a v1 item on one line that starts with
    /// `level` becomes the line by putting them back, byte for byte, without
    /// re-encoding; anything else is encoded.
    fn assemble_item(
        bytes: &[u8],
        doc: EventDoc,
        version: Option<ApiVersion>,
        kind_present: bool,
    ) -> Event {
        if !kind_present
            && version == Some(ApiVersion::V1)
            && bytes.starts_with(b"{\"level\":")
            && memchr::memchr2(b'\n', b'\r', bytes).is_none()
        {
            let mut line = Vec::with_capacity(V1_LINE_PREFIX.len() + bytes.len());
            line.extend_from_slice(V1_LINE_PREFIX);
            line.extend_from_slice(&bytes[1..]);
            return Event { bytes: line, doc };
        }
        Self::assemble(bytes, doc, version, kind_present)
    }

    /// Builds an event from a document, encoding it as kube-apiserver would.
    pub fn from_doc(doc: EventDoc) -> Event {
        Event {
            bytes: doc.encode(),
            doc,
        }
    }

    /// The event as a v1 JSON line (no trailing newline): what is stored,
    /// hashed into the Merkle tree, and printed by `query -o jsonl`.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The decoded document.
    pub fn doc(&self) -> &EventDoc {
        &self.doc
    }

    /// Gives up the document and keeps the bytes (to hand them to the store
    /// without a copy).
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Gives up the bytes and keeps the document (for edits and re-encoding).
    pub fn into_doc(self) -> EventDoc {
        self.doc
    }

    /// Unique per request, shared by all its stages.
    pub fn audit_id(&self) -> &str {
        &self.doc.audit_id
    }
    /// Stage this event was written at.
    pub fn stage(&self) -> Stage {
        self.doc.stage.unwrap_or(Stage::ResponseComplete)
    }
    /// Level the audit policy chose.
    pub fn level(&self) -> Level {
        self.doc.level
    }
    /// The verb (`get`, `create`, ...).
    pub fn verb(&self) -> &str {
        &self.doc.verb
    }
    /// The request URI.
    pub fn request_uri(&self) -> &str {
        &self.doc.request_uri
    }
    /// The authenticated user.
    pub fn user(&self) -> &UserInfo {
        &self.doc.user
    }
    /// The impersonated user, if any.
    pub fn impersonated_user(&self) -> Option<&UserInfo> {
        self.doc.impersonated_user.as_ref()
    }
    /// Client addresses.
    pub fn source_ips(&self) -> &[String] {
        &self.doc.source_ips
    }
    /// The client's User-Agent, empty when absent.
    pub fn user_agent(&self) -> &str {
        &self.doc.user_agent
    }
    /// The object the request was about.
    pub fn object_ref(&self) -> Option<&ObjectRef> {
        self.doc.object_ref.as_ref()
    }
    /// The HTTP status code of the response.
    pub fn response_code(&self) -> Option<i32> {
        self.doc.response_code()
    }
    /// When the request arrived.
    pub fn request_received_timestamp(&self) -> Option<MicroTime> {
        self.doc.request_received_timestamp
    }
    /// When this stage was reached.
    pub fn stage_timestamp(&self) -> Option<MicroTime> {
        self.doc.stage_timestamp
    }
    /// An annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.doc.annotations.get(key).map(String::as_str)
    }
}

/// One item of a batch that is not a valid audit event, kept verbatim so it
/// can be quarantined with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemError {
    /// Position in the batch: the item's index in document order.
    pub index: usize,
    /// JSON path of the item (`.items[3]`, `[1].items[0]`).
    pub path: String,
    /// What is wrong with it.
    pub error: EventError,
    /// The item's bytes exactly as they arrived.
    pub raw: Vec<u8>,
}

impl std::fmt::Display for ItemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.error)
    }
}

/// Parses a webhook-style body: an EventList, an Event, or a JSON array of
/// either. The outer error means the body as a whole is unusable (not JSON,
/// not such a container); item errors are returned in place so the valid
/// events of a batch are never lost because of a bad neighbour.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Result<Event, ItemError>>, EventError> {
    let body = trim_json(body);
    let mut out = Vec::new();
    if body.first() == Some(&b'[') {
        let items: Vec<Box<RawValue>> =
            serde_json::from_slice(body).map_err(|e| EventError::Json(e.to_string()))?;
        for (i, item) in items.iter().enumerate() {
            let path = format!("[{i}]");
            match decode(item.get().as_bytes()) {
                Ok(Decoded::List { items, version }) => {
                    push_items(&mut out, &path, &items, version)
                }
                Ok(Decoded::Event {
                    doc,
                    version,
                    kind_present,
                }) => out.push(Ok(Event::assemble(
                    item.get().as_bytes(),
                    *doc,
                    version,
                    kind_present,
                ))),
                Err(error) => {
                    let index = out.len();
                    out.push(Err(ItemError {
                        index,
                        path,
                        error,
                        raw: item.get().as_bytes().to_vec(),
                    }))
                }
            }
        }
        return Ok(out);
    }
    match decode(body)? {
        Decoded::List { items, version } => push_items(&mut out, "", &items, version),
        Decoded::Event {
            doc,
            version,
            kind_present,
        } => out.push(Ok(Event::assemble(body, *doc, version, kind_present))),
    }
    Ok(out)
}

fn push_items(
    out: &mut Vec<Result<Event, ItemError>>,
    prefix: &str,
    items: &[Box<RawValue>],
    list_version: Option<ApiVersion>,
) {
    // Results are large (a decoded event each): growing the vector item by
    // item would copy a batch's worth many times over.
    out.reserve(items.len());
    for (i, item) in items.iter().enumerate() {
        let bytes = item.get().as_bytes();
        let index = out.len();
        let res = match decode(bytes) {
            Ok(Decoded::Event {
                doc,
                version,
                kind_present,
            }) => Ok(Event::assemble_item(
                bytes,
                *doc,
                version.or(list_version),
                kind_present,
            )),
            Ok(Decoded::List { .. }) => Err(EventError::NotAnEvent(
                "an EventList nested inside an EventList".into(),
            )),
            Err(e) => Err(e),
        };
        out.push(res.map_err(|error| ItemError {
            index,
            path: format!("{prefix}.items[{i}]"),
            error,
            raw: bytes.to_vec(),
        }));
    }
}

fn trim_json(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// Encodes events as an `audit.k8s.io/v1` EventList exactly as kube-apiserver's
/// webhook backend sends it (items without `kind`/`apiVersion`).
pub fn encode_event_list<'a>(events: impl IntoIterator<Item = &'a EventDoc>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(
        b"{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"metadata\":{},\"items\":[",
    );
    for (i, doc) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        doc.encode_into(&mut out, false);
    }
    out.extend_from_slice(b"]}");
    out
}
