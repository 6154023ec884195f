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
mod scan;
pub mod time;

pub use model::{
    ApiVersion, EventDoc, EventError, Level, ObjectRef, ResponseStatus, Stage, UnknownLevel,
    UnknownStage, UserInfo,
};
pub use time::MicroTime;

use model::{decode, decode_str, Decoded};

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
    parse_batch_limited(body, usize::MAX)
}

/// [`parse_batch`] with a bound on the number of items: a body holding more
/// than `max_items` is refused with [`EventError::TooManyItems`] as soon as
/// the reader meets item `max_items + 1`, before the rest is decoded.
///
/// An item holding invalid UTF-8 is an item error (kept with its bytes) like
/// any other bad item: the document is checked once as a whole, and only when
/// that fails are its item boundaries found byte by byte and each item checked
/// on its own.
pub fn parse_batch_limited(
    body: &[u8],
    max_items: usize,
) -> Result<Vec<Result<Event, ItemError>>, EventError> {
    let body = trim_json(body);
    let mut out = Vec::new();
    match std::str::from_utf8(body) {
        Ok(text) => parse_document(text, max_items, &mut out)?,
        Err(e) => {
            let whole = EventError::Json(format!(
                "invalid UTF-8 at byte {} of the document",
                e.valid_up_to()
            ));
            match scan::split(body, max_items) {
                Ok(split) => {
                    if !parse_split(body, &split, max_items, &mut out)? {
                        return Err(whole);
                    }
                }
                Err(scan::ScanError::TooMany) => {
                    return Err(EventError::TooManyItems { limit: max_items })
                }
                Err(scan::ScanError::Malformed) => return Err(whole),
            }
        }
    }
    Ok(out)
}

fn too_many(out: &[Result<Event, ItemError>], max_items: usize) -> Result<(), EventError> {
    if out.len() > max_items {
        return Err(EventError::TooManyItems { limit: max_items });
    }
    Ok(())
}

/// A whole valid-UTF-8 body.
fn parse_document(
    text: &str,
    max_items: usize,
    out: &mut Vec<Result<Event, ItemError>>,
) -> Result<(), EventError> {
    if text.starts_with('[') {
        let items = model::raw_array(text, max_items)?;
        for (i, item) in items.iter().enumerate() {
            push_element(out, &format!("[{i}]"), item.get(), max_items)?;
        }
        return Ok(());
    }
    match decode_str(text, max_items)? {
        Decoded::List { items, version } => {
            for (i, item) in items.iter().enumerate() {
                push_item(out, "", i, item.get(), version, max_items)?;
            }
        }
        Decoded::Event {
            doc,
            version,
            kind_present,
        } => out.push(Ok(Event::assemble(
            text.as_bytes(),
            *doc,
            version,
            kind_present,
        ))),
    }
    Ok(())
}

/// One element of a top-level array: an Event or an EventList.
fn push_element(
    out: &mut Vec<Result<Event, ItemError>>,
    path: &str,
    item: &str,
    max_items: usize,
) -> Result<(), EventError> {
    match decode_str(item, max_items.saturating_sub(out.len())) {
        Ok(Decoded::List { items, version }) => {
            out.reserve(items.len());
            for (i, it) in items.iter().enumerate() {
                push_item(out, path, i, it.get(), version, max_items)?;
            }
        }
        Ok(Decoded::Event {
            doc,
            version,
            kind_present,
        }) => out.push(Ok(Event::assemble(
            item.as_bytes(),
            *doc,
            version,
            kind_present,
        ))),
        Err(e @ EventError::TooManyItems { .. }) => return Err(e),
        Err(error) => {
            let index = out.len();
            out.push(Err(ItemError {
                index,
                path: path.to_string(),
                error,
                raw: item.as_bytes().to_vec(),
            }))
        }
    }
    too_many(out, max_items)
}

/// One item of an EventList.
fn push_item(
    out: &mut Vec<Result<Event, ItemError>>,
    prefix: &str,
    i: usize,
    item: &str,
    list_version: Option<ApiVersion>,
    max_items: usize,
) -> Result<(), EventError> {
    let bytes = item.as_bytes();
    let index = out.len();
    // An item is one event: a list inside it is refused, so it may hold no items.
    let res = match decode_str(item, 0) {
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
        Err(EventError::TooManyItems { .. }) => Err(EventError::NotAnEvent(
            "holds \"items\": an EventList item must be one Event".into(),
        )),
        Err(e) => Err(e),
    };
    out.push(res.map_err(|error| ItemError {
        index,
        path: format!("{prefix}.items[{i}]"),
        error,
        raw: bytes.to_vec(),
    }));
    too_many(out, max_items)
}

/// An item whose bytes are not UTF-8: quarantined with its bytes.
fn push_not_utf8(out: &mut Vec<Result<Event, ItemError>>, path: String, raw: &[u8]) {
    let at = std::str::from_utf8(raw)
        .err()
        .map_or(0, |e| e.valid_up_to());
    let index = out.len();
    out.push(Err(ItemError {
        index,
        path,
        error: EventError::Json(format!("invalid UTF-8 at byte {at} of the item")),
        raw: raw.to_vec(),
    }));
}

/// A body that is not UTF-8 as a whole, split at its item boundaries;
/// `Ok(false)` when it is not a batch after all.
fn parse_split(
    body: &[u8],
    split: &scan::Split,
    max_items: usize,
    out: &mut Vec<Result<Event, ItemError>>,
) -> Result<bool, EventError> {
    let elements = match split {
        scan::Split::List { .. } => return list_split(body, split, "", max_items, out),
        scan::Split::Array(elements) => elements,
    };
    for (i, e) in elements.iter().enumerate() {
        let raw = &body[e.clone()];
        let path = format!("[{i}]");
        match std::str::from_utf8(raw) {
            Ok(text) => push_element(out, &path, text, max_items)?,
            Err(_) => {
                let listed = match scan::split(raw, max_items.saturating_sub(out.len())) {
                    Ok(inner @ scan::Split::List { .. }) => {
                        list_split(raw, &inner, &path, max_items, out)?
                    }
                    Err(scan::ScanError::TooMany) => {
                        return Err(EventError::TooManyItems { limit: max_items })
                    }
                    _ => false,
                };
                if !listed {
                    push_not_utf8(out, path, raw);
                }
            }
        }
        too_many(out, max_items)?;
    }
    Ok(true)
}

/// An EventList whose items may hold invalid UTF-8: the list without its
/// items must be valid; each item is then decoded (or kept as bad) alone.
/// `Ok(false)` when the object is not such a list.
fn list_split(
    obj: &[u8],
    split: &scan::Split,
    prefix: &str,
    max_items: usize,
    out: &mut Vec<Result<Event, ItemError>>,
) -> Result<bool, EventError> {
    let scan::Split::List { items, elements } = split else {
        return Ok(false);
    };
    let mut rest = Vec::with_capacity(obj.len() - (items.end - items.start) + 2);
    rest.extend_from_slice(&obj[..items.start]);
    rest.extend_from_slice(b"[]");
    rest.extend_from_slice(&obj[items.end..]);
    let Ok(rest) = std::str::from_utf8(&rest) else {
        return Ok(false);
    };
    let version = match decode_str(rest, 0) {
        Ok(Decoded::List { version, .. }) => version,
        _ => return Ok(false),
    };
    if out.len().saturating_add(elements.len()) > max_items {
        return Err(EventError::TooManyItems { limit: max_items });
    }
    out.reserve(elements.len());
    for (i, e) in elements.iter().enumerate() {
        let raw = &obj[e.clone()];
        match std::str::from_utf8(raw) {
            Ok(text) => push_item(out, prefix, i, text, version, max_items)?,
            Err(_) => push_not_utf8(out, format!("{prefix}.items[{i}]"), raw),
        }
    }
    Ok(true)
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
