//! Redaction of secrets in request and response bodies.
//!
//! Secret `data`/`stringData` values and TokenRequest/TokenReview tokens are
//! replaced by `"sha256:<hex>"` of the value: two events carrying the same
//! secret still compare equal, the secret itself is gone. The hash is of the
//! value's text as it appears in the body (for `data`, the base64 text).

use crate::rawjson::{array_to_raw, parse_array, raw_string, RawObject};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// Annotation a redacted event carries: the JSON paths that were redacted,
/// comma-separated (`requestObject.data.password,responseObject.status.token`).
pub const REDACTED_ANNOTATION: &str = "kaudit.io/redacted";

/// Most list items inspected in one body (bounds work on hostile input).
const MAX_ITEMS: usize = 100_000;

/// `"sha256:<hex>"` of `value`: the replacement for a redacted value.
pub fn redact_value_hash(value: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(value);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

fn is_redacted(s: &str) -> bool {
    s.len() == 71
        && s.starts_with("sha256:")
        && s.as_bytes()[7..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// What the event's objectRef says the body is about.
#[derive(Clone, Copy)]
pub(crate) struct BodyContext<'a> {
    pub resource: &'a str,
    pub subresource: &'a str,
}

impl BodyContext<'_> {
    fn is_secrets(&self) -> bool {
        self.resource == "secrets" && self.subresource.is_empty()
    }
    fn is_token_request(&self) -> bool {
        self.resource == "serviceaccounts" && self.subresource == "token"
    }
    fn is_token_review(&self) -> bool {
        self.resource == "tokenreviews"
    }
}

/// Cheap test, before any parsing, of whether a body could hold something to
/// redact: the objectRef names a sensitive resource, or the bytes mention a
/// sensitive kind.
pub(crate) fn could_need_redaction(ctx: BodyContext<'_>, raw: &RawValue) -> bool {
    if ctx.is_secrets() || ctx.is_token_request() || ctx.is_token_review() {
        return true;
    }
    let b = raw.get().as_bytes();
    memchr::memmem::find(b, b"\"Secret").is_some()
        || memchr::memmem::find(b, b"\"TokenRe").is_some()
}

/// Redacts one body; returns the new body when something changed and adds
/// the redacted paths (prefixed with `prefix`, e.g. `requestObject`).
pub(crate) fn redact_body(
    ctx: BodyContext<'_>,
    raw: &RawValue,
    prefix: &str,
    paths: &mut Vec<String>,
) -> Option<Box<RawValue>> {
    if let Some(mut obj) = RawObject::parse(raw) {
        return redact_object(ctx, &mut obj, prefix, paths, 0).then(|| obj.to_raw());
    }
    if ctx.is_secrets() {
        return redact_json_patch(raw, prefix, paths);
    }
    None
}

fn redact_object(
    ctx: BodyContext<'_>,
    obj: &mut RawObject,
    prefix: &str,
    paths: &mut Vec<String>,
    depth: u8,
) -> bool {
    let kind = obj.get_str("kind").unwrap_or_default();
    let mut changed = false;
    let untyped = kind.is_empty();
    if kind == "Secret" || (untyped && ctx.is_secrets() && obj.get("items").is_none()) {
        for field in ["data", "stringData"] {
            changed |= redact_map_values(obj, field, &format!("{prefix}.{field}"), paths);
        }
    } else if kind == "TokenRequest" || (untyped && ctx.is_token_request()) {
        changed |= redact_nested_string(obj, "status", "token", prefix, paths);
    } else if kind == "TokenReview" || (untyped && ctx.is_token_review()) {
        changed |= redact_nested_string(obj, "spec", "token", prefix, paths);
    } else if depth == 0 && (kind.ends_with("List") || untyped) {
        let items_are_secrets = kind == "SecretList" || ctx.is_secrets();
        changed |= redact_list_items(ctx, obj, items_are_secrets, prefix, paths);
    }
    changed
}

fn redact_list_items(
    ctx: BodyContext<'_>,
    obj: &mut RawObject,
    items_are_secrets: bool,
    prefix: &str,
    paths: &mut Vec<String>,
) -> bool {
    let Some(mut items) = obj.get("items").and_then(parse_array) else {
        return false;
    };
    let mut changed = false;
    for (i, item) in items.iter_mut().enumerate().take(MAX_ITEMS) {
        let Some(mut item_obj) = RawObject::parse(item) else {
            continue;
        };
        let item_prefix = format!("{prefix}.items[{i}]");
        let item_changed = if items_are_secrets {
            let mut c = false;
            for field in ["data", "stringData"] {
                c |= redact_map_values(
                    &mut item_obj,
                    field,
                    &format!("{item_prefix}.{field}"),
                    paths,
                );
            }
            c
        } else {
            redact_object(ctx, &mut item_obj, &item_prefix, paths, 1)
        };
        if item_changed {
            *item = item_obj.to_raw();
            changed = true;
        }
    }
    if changed {
        obj.set("items", array_to_raw(&items));
    }
    changed
}

/// Replaces every value of the map under `field` by its hash.
fn redact_map_values(
    obj: &mut RawObject,
    field: &str,
    path: &str,
    paths: &mut Vec<String>,
) -> bool {
    let Some(mut map) = obj.get(field).and_then(RawObject::parse) else {
        return false;
    };
    let mut changed = false;
    for (k, v) in map.0.iter_mut().take(MAX_ITEMS) {
        if let Some(new) = redact_scalar(v) {
            *v = new;
            paths.push(format!("{path}{}", key_path(k)));
            changed = true;
        }
    }
    if changed {
        obj.set(field, map.to_raw());
    }
    changed
}

/// The hash replacement for one value; `None` for null or already redacted.
fn redact_scalar(v: &RawValue) -> Option<Box<RawValue>> {
    let text = v.get();
    if text == "null" {
        return None;
    }
    if text.starts_with('"') {
        let s: String = serde_json::from_str(text).ok()?;
        if is_redacted(&s) {
            return None;
        }
        return Some(raw_string(&redact_value_hash(s.as_bytes())));
    }
    Some(raw_string(&redact_value_hash(text.as_bytes())))
}

fn redact_nested_string(
    obj: &mut RawObject,
    outer: &str,
    inner: &str,
    prefix: &str,
    paths: &mut Vec<String>,
) -> bool {
    let Some(mut o) = obj.get(outer).and_then(RawObject::parse) else {
        return false;
    };
    let Some(new) = o.get(inner).and_then(redact_scalar) else {
        return false;
    };
    o.set(inner, new);
    obj.set(outer, o.to_raw());
    paths.push(format!("{prefix}.{outer}.{inner}"));
    true
}

/// A JSON patch (`[{"op","path","value"}]`) on a Secret: values written
/// under `/data` or `/stringData` are redacted.
fn redact_json_patch(
    raw: &RawValue,
    prefix: &str,
    paths: &mut Vec<String>,
) -> Option<Box<RawValue>> {
    let mut ops = parse_array(raw)?;
    let mut changed = false;
    for (i, op) in ops.iter_mut().enumerate().take(MAX_ITEMS) {
        let Some(mut o) = RawObject::parse(op) else {
            continue;
        };
        let target = o.get_str("path").unwrap_or_default();
        let sensitive = ["/data", "/stringData"]
            .iter()
            .any(|p| target == *p || target.starts_with(&format!("{p}/")));
        if !sensitive {
            continue;
        }
        let op_path = format!("{prefix}[{i}].value");
        let value_changed = if target.matches('/').count() == 1 {
            redact_map_values(&mut o, "value", &op_path, paths)
        } else if let Some(new) = o.get("value").and_then(redact_scalar) {
            o.set("value", new);
            paths.push(op_path);
            true
        } else {
            false
        };
        if value_changed {
            *op = o.to_raw();
            changed = true;
        }
    }
    changed.then(|| array_to_raw(&ops))
}

/// `.key` for plain keys, `["key"]` for keys with dots or other characters.
fn key_path(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        format!(".{k}")
    } else {
        format!("[{}]", serde_json::to_string(k).unwrap_or_default())
    }
}
