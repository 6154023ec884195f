//! JSON writing exactly as Go's `encoding/json` does it for kube-apiserver.
//!
//! kube-apiserver encodes audit events with the standard library encoder and
//! HTML escaping on, so `<`, `>` and `&` become `\u003c`, `\u003e`, `\u0026`,
//! U+2028/U+2029 are escaped, and embedded raw objects (`runtime.Unknown`) are
//! compacted. Every crate that writes event bytes goes through these helpers
//! so that what kaudit writes is byte-identical to what the apiserver writes.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string literal, escaped like Go's `encoding/json`
/// with HTML escaping on (Go >= 1.22 writes `\b` and `\f` in short form).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            if needs_escape_ascii(b) {
                out.extend_from_slice(&bytes[start..i]);
                push_ascii_escape(out, b);
                start = i + 1;
            }
            i += 1;
            continue;
        }
        // U+2028 and U+2029 are E2 80 A8 / E2 80 A9 in UTF-8.
        if b == 0xE2 && i + 2 < bytes.len() && bytes[i + 1] == 0x80 && (bytes[i + 2] & 0xFE) == 0xA8
        {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(if bytes[i + 2] == 0xA8 {
                b"\\u2028"
            } else {
                b"\\u2029"
            });
            i += 3;
            start = i;
            continue;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[inline]
fn needs_escape_ascii(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || b == b'<' || b == b'>' || b == b'&'
}

fn push_ascii_escape(out: &mut Vec<u8>, b: u8) {
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        _ => {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xF) as usize]);
        }
    }
}

/// Appends already-valid JSON text compacted the way Go compacts a
/// `json.RawMessage` with HTML escaping: insignificant white space removed,
/// `<` `>` `&` and U+2028/U+2029 inside strings escaped, everything else
/// (including existing escape sequences and number literals) kept verbatim.
pub fn write_compact(out: &mut Vec<u8>, json: &[u8]) {
    let mut in_string = false;
    let mut i = 0;
    let mut start = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            match b {
                b'\\' => {
                    i += 2;
                    continue;
                }
                b'"' => in_string = false,
                b'<' | b'>' | b'&' => {
                    out.extend_from_slice(&json[start..i]);
                    push_ascii_escape(out, b);
                    start = i + 1;
                }
                0xE2 if i + 2 < json.len()
                    && json[i + 1] == 0x80
                    && (json[i + 2] & 0xFE) == 0xA8 =>
                {
                    out.extend_from_slice(&json[start..i]);
                    out.extend_from_slice(if json[i + 2] == 0xA8 {
                        b"\\u2028"
                    } else {
                        b"\\u2029"
                    });
                    i += 3;
                    start = i;
                    continue;
                }
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b' ' | b'\t' | b'\n' | b'\r' => {
                    out.extend_from_slice(&json[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    out.extend_from_slice(&json[start.min(json.len())..]);
}

/// Appends a `serde_json::Value` the way Go would encode the same decoded
/// data: object keys in the order the value holds them, strings escaped by
/// [`write_str`], numbers as serde_json prints them.
pub fn write_value(out: &mut Vec<u8>, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, x);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_like_go() {
        assert_eq!(s("a<b>&c"), r#""a\u003cb\u003e\u0026c""#);
        assert_eq!(s("q\"\\"), r#""q\"\\""#);
        assert_eq!(
            s("\n\r\t\u{8}\u{c}\u{1}\u{1f}"),
            r#""\n\r\t\b\f\u0001\u001f""#
        );
        assert_eq!(
            s("x\u{2028}y\u{2029}é\u{7f}"),
            "\"x\\u2028y\\u2029é\u{7f}\""
        );
    }

    #[test]
    fn compacts_raw_json() {
        let mut out = Vec::new();
        write_compact(
            &mut out,
            b"{ \"a\" : [1, 2.50, \"x y<\\\"\" ],\n \"b\":{} }",
        );
        assert_eq!(out, br#"{"a":[1,2.50,"x y\u003c\""],"b":{}}"#);
    }

    proptest::proptest! {
        #[test]
        fn write_str_is_valid_json_and_round_trips(x in ".*") {
            let out = s(&x);
            let back: String = serde_json::from_str(&out).unwrap();
            proptest::prop_assert_eq!(back, x);
        }
    }
}
