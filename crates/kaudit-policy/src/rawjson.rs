//! Lossless JSON objects for surgical edits of request/response bodies.
//!
//! Redaction and managedFields stripping change a few values deep inside
//! bodies that must otherwise stay exactly as the apiserver wrote them
//! (number spelling, key order). Objects are decoded one level at a time
//! into ordered `(key, raw value)` pairs; untouched values are written back
//! verbatim.

use kaudit_event::json::write_str;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

/// One JSON object level: keys in order, values still raw.
pub(crate) struct RawObject(pub Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawObject, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, v));
                }
                Ok(RawObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl RawObject {
    /// Decodes `raw` when it is an object; `None` for anything else.
    pub fn parse(raw: &RawValue) -> Option<RawObject> {
        if !raw.get().trim_start().starts_with('{') {
            return None;
        }
        serde_json::from_str(raw.get()).ok()
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// The string value of `key`, when it is a string.
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.get(key)
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
    }

    /// Replaces the value of `key` (no-op when absent).
    pub fn set(&mut self, key: &str, value: Box<RawValue>) {
        if let Some(slot) = self.0.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
        }
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|(k, _)| k != key);
        before != self.0.len()
    }

    /// Encodes the object. Values are copied verbatim: the event encoder
    /// compacts and escapes whole bodies as Go does when the event is written.
    pub fn to_raw(&self) -> Box<RawValue> {
        let mut out = Vec::with_capacity(256);
        out.push(b'{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(&mut out, k);
            out.push(b':');
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b'}');
        raw_from_bytes(out)
    }
}

/// Decodes a raw JSON array into its raw items; `None` when not an array.
pub(crate) fn parse_array(raw: &RawValue) -> Option<Vec<Box<RawValue>>> {
    if !raw.get().trim_start().starts_with('[') {
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

/// Encodes raw items as a JSON array (values verbatim, see [`RawObject::to_raw`]).
pub(crate) fn array_to_raw(items: &[Box<RawValue>]) -> Box<RawValue> {
    let mut out = Vec::with_capacity(256);
    out.push(b'[');
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(v.get().as_bytes());
    }
    out.push(b']');
    raw_from_bytes(out)
}

/// A JSON string literal as a raw value.
pub(crate) fn raw_string(s: &str) -> Box<RawValue> {
    let mut out = Vec::with_capacity(s.len() + 2);
    write_str(&mut out, s);
    raw_from_bytes(out)
}

fn raw_from_bytes(out: Vec<u8>) -> Box<RawValue> {
    // The writers above only produce valid JSON text from valid input; the
    // fallback (null) is never taken but avoids a panic path.
    String::from_utf8(out)
        .ok()
        .and_then(|text| RawValue::from_string(text).ok())
        .unwrap_or_default()
}
