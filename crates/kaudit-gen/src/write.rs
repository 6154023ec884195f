//! Byte-level writers: audit event lines in kube-apiserver's field order,
//! compact JSON bodies, and timestamps.
//!
//! The generator writes bytes directly instead of building an
//! [`kaudit_event::EventDoc`] per event, because that is what makes 500k
//! events/s possible. Every string goes through [`kaudit_event::json::write_str`]
//! and fields follow `EventDoc::encode_into`'s order, so the bytes equal what
//! `EventDoc::encode` writes for the same document; the round-trip tests
//! check exactly that.

use kaudit_event::{Level, Stage};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// True when some byte of `x` is zero (the classic SWAR test).
#[inline(always)]
fn has_zero(x: u64) -> bool {
    x.wrapping_sub(LO) & !x & HI != 0
}

/// True when any byte of the word is one Go's encoder escapes, or non-ASCII.
#[inline(always)]
fn word_needs_escape(x: u64) -> bool {
    // Bytes below 0x20: subtracting 0x20 borrows into the high bit.
    let ctl = x.wrapping_sub(0x20 * LO) & !x & HI != 0;
    ctl | (x & HI != 0)
        | has_zero(x ^ (u64::from(b'"') * LO))
        | has_zero(x ^ (u64::from(b'\\') * LO))
        | has_zero(x ^ (u64::from(b'<') * LO))
        | has_zero(x ^ (u64::from(b'>') * LO))
        | has_zero(x ^ (u64::from(b'&') * LO))
}

/// True when `s` holds nothing that Go's encoder would escape (and no
/// non-ASCII, which could hold U+2028/U+2029).
#[cfg(test)]
pub(crate) fn is_plain(s: &[u8]) -> bool {
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        if word_needs_escape(u64::from_le_bytes(w)) {
            return false;
        }
    }
    chunks
        .remainder()
        .iter()
        .all(|&b| (0x20..0x80).contains(&b) && !matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&'))
}

/// Appends `s` as a JSON string exactly as [`kaudit_event::json::write_str`]
/// does (Go's encoder with HTML escaping), skipping plain runs eight bytes
/// at a time; the property tests hold the two byte-identical.
#[inline]
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        while i + 8 <= b.len() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            if word_needs_escape(u64::from_le_bytes(w)) {
                break;
            }
            i += 8;
        }
        let Some(&c) = b.get(i) else { break };
        if c < 0x80 {
            let esc: Option<&[u8]> = match c {
                b'"' => Some(b"\\\""),
                b'\\' => Some(b"\\\\"),
                b'\n' => Some(b"\\n"),
                b'\r' => Some(b"\\r"),
                b'\t' => Some(b"\\t"),
                0x08 => Some(b"\\b"),
                0x0c => Some(b"\\f"),
                _ => None,
            };
            if let Some(e) = esc {
                out.extend_from_slice(&b[start..i]);
                out.extend_from_slice(e);
                start = i + 1;
            } else if c < 0x20 || matches!(c, b'<' | b'>' | b'&') {
                out.extend_from_slice(&b[start..i]);
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(c >> 4)],
                    HEX[usize::from(c & 0xf)],
                ]);
                start = i + 1;
            }
            i += 1;
        } else if c == 0xE2 && i + 2 < b.len() && b[i + 1] == 0x80 && (b[i + 2] & 0xFE) == 0xA8 {
            out.extend_from_slice(&b[start..i]);
            out.extend_from_slice(if b[i + 2] == 0xA8 {
                b"\\u2028"
            } else {
                b"\\u2029"
            });
            i += 3;
            start = i;
        } else {
            i += 1;
        }
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

/// Appends the decimal form of `v` without going through `fmt`.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends the decimal form of a signed integer.
pub(crate) fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (the well-known era-based civil-date algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Formats `metav1.MicroTime` / `metav1.Time` values, caching the
/// `YYYY-MM-DDTHH:MM:SS` part because consecutive events share the second.
pub(crate) struct TimeFmt {
    cached_sec: i64,
    prefix: [u8; 19],
}

impl TimeFmt {
    pub(crate) fn new() -> Self {
        TimeFmt {
            cached_sec: i64::MIN,
            prefix: [0; 19],
        }
    }

    fn prefix(&mut self, sec: i64) -> &[u8; 19] {
        if sec != self.cached_sec {
            let days = sec.div_euclid(86_400);
            let rem = sec.rem_euclid(86_400);
            let (y, m, d) = civil_from_days(days);
            let y = y.clamp(0, 9999) as u32;
            let (hh, mm, ss) = (
                (rem / 3600) as u32,
                (rem / 60 % 60) as u32,
                (rem % 60) as u32,
            );
            let p = &mut self.prefix;
            let two = |v: u32| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
            p[0..4].copy_from_slice(&[
                b'0' + (y / 1000) as u8,
                b'0' + (y / 100 % 10) as u8,
                b'0' + (y / 10 % 10) as u8,
                b'0' + (y % 10) as u8,
            ]);
            p[4] = b'-';
            p[5..7].copy_from_slice(&two(m));
            p[7] = b'-';
            p[8..10].copy_from_slice(&two(d));
            p[10] = b'T';
            p[11..13].copy_from_slice(&two(hh));
            p[13] = b':';
            p[14..16].copy_from_slice(&two(mm));
            p[16] = b':';
            p[17..19].copy_from_slice(&two(ss));
            self.cached_sec = sec;
        }
        &self.prefix
    }

    /// Appends `"2026-01-05T09:00:00.123456Z"` (quoted, six fractional digits).
    pub(crate) fn micro(&mut self, out: &mut Vec<u8>, micros: i64) {
        let sec = micros.div_euclid(1_000_000);
        let frac = micros.rem_euclid(1_000_000) as u32;
        out.push(b'"');
        out.extend_from_slice(self.prefix(sec));
        out.push(b'.');
        let mut digits = [0u8; 6];
        let mut f = frac;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (f % 10) as u8;
            f /= 10;
        }
        out.extend_from_slice(&digits);
        out.extend_from_slice(b"Z\"");
    }

    /// Appends `"2026-01-05T09:00:00Z"` (quoted, `metav1.Time`: whole seconds).
    pub(crate) fn secs(&mut self, out: &mut Vec<u8>, micros: i64) {
        let sec = micros.div_euclid(1_000_000);
        out.push(b'"');
        out.extend_from_slice(self.prefix(sec));
        out.extend_from_slice(b"Z\"");
    }
}

/// A minimal compact-JSON builder for request and response bodies. Keys are
/// literals written as-is (the callers only pass plain ASCII names); values
/// are escaped like Go.
pub(crate) struct J<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    comma: bool,
}

impl<'a> J<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        J { out, comma: false }
    }
    #[inline]
    fn pre(&mut self) {
        if self.comma {
            self.out.push(b',');
        }
    }
    /// Starts an object (as a value or array element).
    pub(crate) fn o(&mut self) -> &mut Self {
        self.pre();
        self.out.push(b'{');
        self.comma = false;
        self
    }
    /// Ends an object.
    pub(crate) fn c(&mut self) -> &mut Self {
        self.out.push(b'}');
        self.comma = true;
        self
    }
    /// Starts an array.
    pub(crate) fn a(&mut self) -> &mut Self {
        self.pre();
        self.out.push(b'[');
        self.comma = false;
        self
    }
    /// Ends an array.
    pub(crate) fn e(&mut self) -> &mut Self {
        self.out.push(b']');
        self.comma = true;
        self
    }
    /// Writes a key; the next call writes its value.
    pub(crate) fn k(&mut self, key: &str) -> &mut Self {
        self.pre();
        self.out.reserve(key.len() + 3);
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.push(b'"');
        self.out.push(b':');
        self.comma = false;
        self
    }
    /// A string value.
    pub(crate) fn s(&mut self, v: &str) -> &mut Self {
        self.pre();
        write_str(self.out, v);
        self.comma = true;
        self
    }
    /// A string value given as bytes that are known to be UTF-8.
    pub(crate) fn sb(&mut self, v: &[u8]) -> &mut Self {
        self.s(std::str::from_utf8(v).unwrap_or(""))
    }
    /// An integer value.
    pub(crate) fn n(&mut self, v: i64) -> &mut Self {
        self.pre();
        push_i64(self.out, v);
        self.comma = true;
        self
    }
    /// A boolean value.
    pub(crate) fn b(&mut self, v: bool) -> &mut Self {
        self.pre();
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        self.comma = true;
        self
    }
    /// A string value given already escaped (its content, without quotes).
    pub(crate) fn escaped(&mut self, v: &[u8]) -> &mut Self {
        self.pre();
        self.out.reserve(v.len() + 2);
        self.out.push(b'"');
        self.out.extend_from_slice(v);
        self.out.push(b'"');
        self.comma = true;
        self
    }
    /// Already-encoded compact JSON.
    pub(crate) fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.pre();
        self.out.extend_from_slice(v);
        self.comma = true;
        self
    }
    /// `"key":"value"`.
    pub(crate) fn ks(&mut self, k: &str, v: &str) -> &mut Self {
        self.k(k).s(v)
    }
    /// `"key":N`.
    pub(crate) fn kn(&mut self, k: &str, v: i64) -> &mut Self {
        self.k(k).n(v)
    }
    /// `"key":true|false`.
    pub(crate) fn kb(&mut self, k: &str, v: bool) -> &mut Self {
        self.k(k).b(v)
    }
    /// `"key":{`.
    pub(crate) fn ko(&mut self, k: &str) -> &mut Self {
        self.k(k).o()
    }
    /// `"key":[`.
    pub(crate) fn ka(&mut self, k: &str) -> &mut Self {
        self.k(k).a()
    }
    /// A `metav1.Time` value.
    pub(crate) fn t(&mut self, tf: &mut TimeFmt, micros: i64) -> &mut Self {
        self.pre();
        tf.secs(self.out, micros);
        self.comma = true;
        self
    }
}

/// The `objectRef` of an event (empty fields are omitted, as Go does).
#[derive(Clone, Copy, Default)]
pub(crate) struct ObjRef<'a> {
    pub resource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub resource_version: u64,
    pub subresource: &'a str,
}

/// What the `responseStatus` field holds.
#[derive(Clone, Copy)]
pub(crate) enum Status<'a> {
    /// `{"metadata":{},"code":N}`.
    Code(u16),
    /// A pre-encoded failure status object.
    Raw(&'a [u8]),
}

/// The authorization annotations an allowed or denied request carries.
#[derive(Clone, Copy)]
pub(crate) enum Authz<'a> {
    /// `decision: allow` with the reason, pre-encoded as a JSON string.
    Allow(&'a [u8]),
    /// `decision: forbid`, empty reason (what RBAC denials look like).
    Forbid,
    /// No authorization happened (failed authentication).
    Absent,
}

/// One audit event line, fields borrowed from the request being simulated.
pub(crate) struct Line<'a> {
    pub level: Level,
    pub stage: Stage,
    pub audit_id: &'a [u8; 36],
    pub uri: &'a [u8],
    pub verb: &'a str,
    /// Pre-encoded `"user":{..},"sourceIPs":[..],"userAgent":".."`.
    pub identity: &'a [u8],
    pub object: Option<&'a ObjRef<'a>>,
    pub status: Option<Status<'a>>,
    pub request_object: Option<&'a [u8]>,
    pub response_object: Option<&'a [u8]>,
    pub received: i64,
    pub at: i64,
    pub authz: Authz<'a>,
    pub pod_security: Option<&'a str>,
}

fn obj_field(out: &mut Vec<u8>, first: &mut bool, key: &[u8], v: &str) {
    if v.is_empty() {
        return;
    }
    if !*first {
        out.push(b',');
    }
    *first = false;
    out.extend_from_slice(key);
    write_str(out, v);
}

/// Appends one event as a JSON line (no newline), in `EventDoc::encode` order.
pub(crate) fn write_line(out: &mut Vec<u8>, tf: &mut TimeFmt, l: &Line<'_>) {
    out.extend_from_slice(b"{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"level\":\"");
    out.extend_from_slice(l.level.as_str().as_bytes());
    out.extend_from_slice(b"\",\"auditID\":\"");
    out.extend_from_slice(l.audit_id);
    out.extend_from_slice(b"\",\"stage\":\"");
    out.extend_from_slice(l.stage.as_str().as_bytes());
    out.extend_from_slice(b"\",\"requestURI\":");
    write_str(out, std::str::from_utf8(l.uri).unwrap_or("/"));
    out.extend_from_slice(b",\"verb\":");
    write_str(out, l.verb);
    out.push(b',');
    out.extend_from_slice(l.identity);
    if let Some(o) = l.object {
        out.extend_from_slice(b",\"objectRef\":{");
        let mut first = true;
        for (k, v) in [
            (&b"\"resource\":"[..], o.resource),
            (b"\"namespace\":", o.namespace),
            (b"\"name\":", o.name),
            (b"\"uid\":", o.uid),
            (b"\"apiGroup\":", o.group),
            (b"\"apiVersion\":", o.version),
        ] {
            obj_field(out, &mut first, k, v);
        }
        if o.resource_version != 0 {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(b"\"resourceVersion\":\"");
            push_u64(out, o.resource_version);
            out.push(b'"');
        }
        obj_field(out, &mut first, b"\"subresource\":", o.subresource);
        out.push(b'}');
    }
    match l.status {
        None => {}
        Some(Status::Code(c)) => {
            out.extend_from_slice(b",\"responseStatus\":{\"metadata\":{},\"code\":");
            push_u64(out, u64::from(c));
            out.push(b'}');
        }
        Some(Status::Raw(r)) => {
            out.extend_from_slice(b",\"responseStatus\":");
            out.extend_from_slice(r);
        }
    }
    if let Some(b) = l.request_object {
        out.extend_from_slice(b",\"requestObject\":");
        out.extend_from_slice(b);
    }
    if let Some(b) = l.response_object {
        out.extend_from_slice(b",\"responseObject\":");
        out.extend_from_slice(b);
    }
    out.extend_from_slice(b",\"requestReceivedTimestamp\":");
    tf.micro(out, l.received);
    out.extend_from_slice(b",\"stageTimestamp\":");
    tf.micro(out, l.at);
    let has_authz = !matches!(l.authz, Authz::Absent);
    if has_authz || l.pod_security.is_some() {
        out.extend_from_slice(b",\"annotations\":{");
        match l.authz {
            Authz::Allow(reason) => {
                out.extend_from_slice(
                    b"\"authorization.k8s.io/decision\":\"allow\",\"authorization.k8s.io/reason\":",
                );
                out.extend_from_slice(reason);
            }
            Authz::Forbid => out.extend_from_slice(
                b"\"authorization.k8s.io/decision\":\"forbid\",\"authorization.k8s.io/reason\":\"\"",
            ),
            Authz::Absent => {}
        }
        if let Some(p) = l.pod_security {
            if has_authz {
                out.push(b',');
            }
            out.extend_from_slice(b"\"pod-security.kubernetes.io/enforce-policy\":");
            write_str(out, p);
        }
        out.push(b'}');
    }
    out.push(b'}');
}

/// Pre-encodes a failure `metav1.Status` the way the apiserver's response
/// writer records it in the audit event (`details` in Go field order).
pub(crate) fn failure_status(
    out: &mut Vec<u8>,
    code: u16,
    reason: &str,
    message: &str,
    details: Option<(&str, &str, &str)>,
) {
    out.extend_from_slice(b"{\"metadata\":{},\"status\":\"Failure\",\"message\":");
    write_str(out, message);
    out.extend_from_slice(b",\"reason\":");
    write_str(out, reason);
    if let Some((name, group, kind)) = details {
        out.push(b',');
        let mut j = J::new(out);
        j.k("details").o();
        if !name.is_empty() {
            j.ks("name", name);
        }
        if !group.is_empty() {
            j.ks("group", group);
        }
        if !kind.is_empty() {
            j.ks("kind", kind);
        }
        j.c();
    }
    out.extend_from_slice(b",\"code\":");
    push_u64(out, u64::from(code));
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaudit_event::MicroTime;

    #[test]
    fn timestamps_match_microtime() {
        let mut tf = TimeFmt::new();
        for m in [
            0i64,
            1_767_603_600_123_456,
            951_782_400_000_001, // 2000-02-29
            4_102_444_799_999_999,
            1_709_164_800_000_000, // 2024-02-29
        ] {
            let mut out = Vec::new();
            tf.micro(&mut out, m);
            let want = format!("\"{}\"", MicroTime(m));
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_write_str_equals_kaudit_event(s in "(.|[<>&\"\\\\\u{2028}\u{7f}])*") {
            let mut a = Vec::new();
            let mut b = Vec::new();
            write_str(&mut a, &s);
            kaudit_event::json::write_str(&mut b, &s);
            proptest::prop_assert_eq!(a, b);
        }

        #[test]
        fn fast_write_str_equals_kaudit_event_on_ascii(s in "[ -~\t\n]{0,64}") {
            let mut a = Vec::new();
            let mut b = Vec::new();
            write_str(&mut a, &s);
            kaudit_event::json::write_str(&mut b, &s);
            proptest::prop_assert_eq!(a, b);
        }

        #[test]
        fn plain_detection_is_exact(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let want = bytes.iter().all(|&b| (0x20..0x80).contains(&b) && !matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&'));
            proptest::prop_assert_eq!(is_plain(&bytes), want);
        }

        #[test]
        fn timestamp_format_agrees_with_kaudit_event(m in 0i64..253_402_300_799_000_000) {
            let mut tf = TimeFmt::new();
            let mut out = Vec::new();
            tf.micro(&mut out, m);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), format!("\"{}\"", MicroTime(m)));
        }

        #[test]
        fn integers_format_like_std(v in proptest::num::i64::ANY) {
            let mut out = Vec::new();
            push_i64(&mut out, v);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
    }

    #[test]
    fn failure_status_matches_response_status_new_without_details() {
        let mut out = Vec::new();
        failure_status(&mut out, 403, "Forbidden", "no <way>", None);
        let want = kaudit_event::ResponseStatus::new(403, "Failure", "no <way>", "Forbidden");
        assert_eq!(std::str::from_utf8(&out).unwrap(), want.raw.get());
    }
}
