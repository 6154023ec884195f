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

    /// [`Event::from_json`] of bytes the caller owns: when they are kept as
    /// they are (a v1 line), they become the event's bytes without a copy.
    /// On error the bytes come back with it (to quarantine or report them).
    pub fn from_json_vec(bytes: Vec<u8>) -> Result<Event, (EventError, Vec<u8>)> {
        let t = trim_json(&bytes);
        let start = t.as_ptr() as usize - bytes.as_ptr() as usize;
        let end = start + t.len();
        let decoded = match decode(t) {
            Ok(Decoded::Event {
                doc,
                version,
                kind_present,
            }) => Ok((doc, version, kind_present)),
            Ok(Decoded::List { .. }) => Err(EventError::NotAnEvent(
                "this is an EventList, not a single Event (use parse_batch)".into(),
            )),
            Err(e) => Err(e),
        };
        match decoded {
            Ok((doc, version, kind_present)) => {
                if Self::keeps(&bytes[start..end], version, kind_present) {
                    let mut bytes = bytes;
                    bytes.truncate(end);
                    bytes.drain(..start);
                    Ok(Event { bytes, doc: *doc })
                } else {
                    Ok(Event::from_doc(*doc))
                }
            }
            Err(e) => Err((e, bytes)),
        }
    }

    /// Whether `bytes` (trimmed) are kept byte for byte: a v1 event on one
    /// line that starts with `kind` and `apiVersion` as kube-apiserver writes.
    fn keeps(bytes: &[u8], version: Option<ApiVersion>, kind_present: bool) -> bool {
        kind_present
            && version == Some(ApiVersion::V1)
            && bytes.starts_with(V1_LINE_PREFIX)
            && memchr::memchr2(b'\n', b'\r', bytes).is_none()
    }

    fn assemble(
        bytes: &[u8],
        doc: EventDoc,
        version: Option<ApiVersion>,
        kind_present: bool,
    ) -> Event {
        let bytes = if Self::keeps(bytes, version, kind_present) {
            bytes.to_vec()
        } else {
            doc.encode()
        };
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
    parse_batch_with(body, max_items, true)
}

/// [`parse_batch_limited`] without the one-pass path for kube-apiserver's
/// EventLists: every body through the general path (list scanned into raw
/// items, then each item decoded). Only for tests and fuzzing, which check
/// that both paths give the same results for any body.
#[doc(hidden)]
pub fn parse_batch_reference(
    body: &[u8],
    max_items: usize,
) -> Result<Vec<Result<Event, ItemError>>, EventError> {
    parse_batch_with(body, max_items, false)
}

fn parse_batch_with(
    body: &[u8],
    max_items: usize,
    fast: bool,
) -> Result<Vec<Result<Event, ItemError>>, EventError> {
    let body = trim_json(body);
    let mut out = Vec::new();
    match std::str::from_utf8(body) {
        Ok(text) => {
            if !(fast && fast_list(text, max_items, &mut out)) {
                parse_document(text, max_items, &mut out)?
            }
        }
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

/// How kube-apiserver's webhook backend starts every EventList it sends.
const V1_LIST_PREFIX: &str =
    "{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"metadata\":{},\"items\":[";

/// The webhook's common case in one pass: an EventList exactly as
/// kube-apiserver writes it (`kind`, `apiVersion`, empty `metadata`, then
/// `items` and nothing after) whose every item is a valid event. Each item
/// is decoded where it stands and its span taken from the decoder's offset,
/// instead of first scanning the list into raw items and then decoding each
/// one again. Returns `false`, with `out` as it was, for anything else
/// (another shape, a bad item, more than `max_items` items): the caller then
/// takes the general path, which gives every error and quarantine its usual
/// form. So the worst case costs one extra partial pass, bounded by the
/// body's size and `max_items + 1` items.
fn fast_list(text: &str, max_items: usize, out: &mut Vec<Result<Event, ItemError>>) -> bool {
    if !text.starts_with(V1_LIST_PREFIX) {
        return false;
    }
    let start = out.len();
    // Room for the usual item size (over a kilobyte) up front, so the list
    // does not grow through many fresh allocations one push at a time.
    out.reserve((text.len() / 1024 + 1).min(max_items));
    let b = text.as_bytes();
    let ok = (|| {
        let mut pos = skip_ws(b, V1_LIST_PREFIX.len());
        if b.get(pos) == Some(&b']') {
            pos += 1;
        } else {
            loop {
                if out.len() - start >= max_items {
                    return false;
                }
                let Some(item_text) = text.get(pos..) else {
                    return false;
                };
                let mut stream =
                    serde_json::Deserializer::from_str(item_text).into_iter::<model::ItemWire>();
                let Some(Ok(wire)) = stream.next() else {
                    return false;
                };
                let end = pos + stream.byte_offset();
                let Some(item) = text.get(pos..end) else {
                    return false;
                };
                match wire.finish() {
                    Ok(Decoded::Event {
                        doc,
                        version,
                        kind_present,
                    }) => out.push(Ok(Event::assemble_item(
                        item.as_bytes(),
                        *doc,
                        version.or(Some(ApiVersion::V1)),
                        kind_present,
                    ))),
                    _ => return false,
                }
                pos = skip_ws(b, end);
                match b.get(pos) {
                    Some(b',') => pos = skip_ws(b, pos + 1),
                    Some(b']') => {
                        pos += 1;
                        break;
                    }
                    _ => return false,
                }
            }
        }
        pos = skip_ws(b, pos);
        b.get(pos) == Some(&b'}') && skip_ws(b, pos + 1) == b.len()
    })();
    if !ok {
        out.truncate(start);
    }
    ok
}

/// The first position at or after `pos` that is not JSON whitespace.
fn skip_ws(b: &[u8], mut pos: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(pos) {
        pos += 1;
    }
    pos
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

#[cfg(test)]
mod tests {
    use super::*;

    const ITEM: &str = r#"{"level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"u"},"requestReceivedTimestamp":"2026-01-01T00:00:00.000000Z","stageTimestamp":"2026-01-01T00:00:00.000001Z"}"#;

    fn list(items: &str) -> String {
        format!("{V1_LIST_PREFIX}{items}]}}")
    }

    fn fast(body: &str, max: usize) -> Option<Vec<Result<Event, ItemError>>> {
        let mut out = Vec::new();
        fast_list(body, max, &mut out).then_some(out)
    }

    #[test]
    fn fast_path_takes_apiserver_lists_and_keeps_item_spans() {
        let body = list(&format!("{ITEM}, \n{ITEM}"));
        let got = fast(&body, 10).expect("an apiserver EventList takes the fast path");
        assert_eq!(got.len(), 2);
        let want = format!(
            "{{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",{}",
            &ITEM[1..]
        );
        for ev in &got {
            assert_eq!(ev.as_ref().map(|e| e.bytes()), Ok(want.as_bytes()));
        }
        assert_eq!(Some(got), parse_batch_reference(body.as_bytes(), 10).ok());
        assert_eq!(fast(&list(""), 10).map(|v| v.len()), Some(0));
        assert_eq!(
            fast(&format!("{} ", list(&format!(" {ITEM} "))), 10).map(|v| v.len()),
            Some(1)
        );
    }

    #[test]
    fn fast_path_declines_what_the_general_path_must_report() {
        for body in [
            // a bad item, not JSON, a trailing comma, a nested list
            list(&format!(r#"{ITEM},{{"nope":1}}"#)),
            list(&format!("{ITEM},{{")),
            list(&format!("{ITEM},")),
            list(r#"{"kind":"EventList","items":[]}"#),
            // more keys after the items, another shape, trailing bytes
            format!(r#"{V1_LIST_PREFIX}{ITEM}],"x":1}}"#),
            format!("[{ITEM}]"),
            format!("{}x", list(ITEM)),
        ] {
            let mut out = vec![Err(ItemError {
                index: 0,
                path: String::new(),
                error: EventError::Json(String::new()),
                raw: Vec::new(),
            })];
            assert!(!fast_list(&body, 10, &mut out), "{body}");
            assert_eq!(out.len(), 1, "declining leaves the output as it was");
        }
        // One item past the limit: declined, and the general path refuses it.
        let body = list(&format!("{ITEM},{ITEM},{ITEM}"));
        assert!(fast(&body, 2).is_none());
        assert_eq!(fast(&body, 3).map(|v| v.len()), Some(3));
        assert!(matches!(
            parse_batch_limited(body.as_bytes(), 2),
            Err(EventError::TooManyItems { limit: 2 })
        ));
        // A bad item still costs nothing else, through either path.
        let body = list(&format!(r#"{ITEM},{{"nope":1}},{ITEM}"#));
        let got = parse_batch_limited(body.as_bytes(), 10).expect("a batch");
        assert_eq!(
            got,
            parse_batch_reference(body.as_bytes(), 10).expect("a batch")
        );
        assert!(got[0].is_ok() && got[1].is_err() && got[2].is_ok());
    }

    #[test]
    fn from_json_vec_equals_from_json() {
        let line = format!(
            "{{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",{}",
            &ITEM[1..]
        );
        for input in [
            line.clone(),
            format!("  {line}\r\n"),
            ITEM.to_string(),
            "{\"nope\":1}".to_string(),
            "not json".to_string(),
            list(ITEM),
        ] {
            let want = Event::from_json(input.as_bytes());
            let got = Event::from_json_vec(input.clone().into_bytes());
            match (want, got) {
                (Ok(w), Ok(g)) => assert_eq!(w, g),
                (Err(w), Err((g, raw))) => {
                    assert_eq!(w, g);
                    assert_eq!(raw, input.as_bytes(), "the bytes come back whole");
                }
                (w, g) => panic!("{input}: {w:?} vs {g:?}"),
            }
        }
    }
}
