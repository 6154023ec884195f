//! Item boundaries of a batch found byte by byte, for a body that is not
//! valid UTF-8 as a whole: serde_json checks UTF-8 before it can tell where
//! an item ends, so one item with a stray byte would cost the whole batch.
//! This scanner only finds where the items are (strings, escapes and nesting
//! of brackets); every item is then decoded, or refused with its bytes, on
//! its own. It recurses into nothing (an explicit stack), so no depth of
//! input can exhaust the stack.

use std::ops::Range;

/// How a body splits into items.
pub(crate) enum Split {
    /// A JSON array: the byte ranges of its elements.
    Array(Vec<Range<usize>>),
    /// An object with an `items` array (an EventList, if the rest of it says so).
    List {
        /// The range of the `items` value (the whole array, brackets included).
        items: Range<usize>,
        /// The byte ranges of its elements.
        elements: Vec<Range<usize>>,
    },
}

/// Why a body does not split.
#[derive(Debug, PartialEq)]
pub(crate) enum ScanError {
    /// Not an array or an object with an `items` array, or malformed.
    Malformed,
    /// More elements than the limit (the scan stopped there).
    TooMany,
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// End (exclusive) of the string starting at `i` (a `"`).
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// End (exclusive) of the JSON value starting at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut closers = Vec::new();
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' => closers.push(b'}'),
                    b'[' => closers.push(b']'),
                    c @ (b'}' | b']') => {
                        if closers.pop() != Some(c) {
                            return None;
                        }
                        if closers.is_empty() {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// The elements of the array starting at `i` (a `[`), and the array's end.
fn array(b: &[u8], i: usize, limit: usize) -> Result<(Vec<Range<usize>>, usize), ScanError> {
    let mut out = Vec::new();
    let mut j = skip_ws(b, i + 1);
    if b.get(j) == Some(&b']') {
        return Ok((out, j + 1));
    }
    loop {
        let end = value_end(b, j).ok_or(ScanError::Malformed)?;
        if out.len() == limit {
            return Err(ScanError::TooMany);
        }
        out.push(j..end);
        j = skip_ws(b, end);
        match b.get(j) {
            Some(b',') => j = skip_ws(b, j + 1),
            Some(b']') => return Ok((out, j + 1)),
            _ => return Err(ScanError::Malformed),
        }
    }
}

/// Splits a trimmed body (or item) into its items, reading at most `limit`
/// of them.
pub(crate) fn split(b: &[u8], limit: usize) -> Result<Split, ScanError> {
    match b.first() {
        Some(b'[') => {
            let (elements, end) = array(b, 0, limit)?;
            if skip_ws(b, end) != b.len() {
                return Err(ScanError::Malformed);
            }
            Ok(Split::Array(elements))
        }
        Some(b'{') => {
            let mut found = None;
            let mut j = skip_ws(b, 1);
            if b.get(j) != Some(&b'}') {
                loop {
                    if b.get(j) != Some(&b'"') {
                        return Err(ScanError::Malformed);
                    }
                    let key_end = string_end(b, j).ok_or(ScanError::Malformed)?;
                    let key = &b[j..key_end];
                    j = skip_ws(b, key_end);
                    if b.get(j) != Some(&b':') {
                        return Err(ScanError::Malformed);
                    }
                    j = skip_ws(b, j + 1);
                    let end = if key == b"\"items\"" && b.get(j) == Some(&b'[') {
                        if found.is_some() {
                            return Err(ScanError::Malformed);
                        }
                        let (elements, end) = array(b, j, limit)?;
                        found = Some((j..end, elements));
                        end
                    } else {
                        value_end(b, j).ok_or(ScanError::Malformed)?
                    };
                    j = skip_ws(b, end);
                    match b.get(j) {
                        Some(b',') => j = skip_ws(b, j + 1),
                        Some(b'}') => break,
                        _ => return Err(ScanError::Malformed),
                    }
                }
            }
            if skip_ws(b, j + 1) != b.len() {
                return Err(ScanError::Malformed);
            }
            let (items, elements) = found.ok_or(ScanError::Malformed)?;
            Ok(Split::List { items, elements })
        }
        _ => Err(ScanError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_items_around_invalid_utf8() {
        let body = b"{\"kind\":\"EventList\",\"items\":[{\"a\":\"x\xff\"}, {\"b\":[1,{\"c\":\"]\\\"\"}]} ],\"z\":1}";
        let Ok(Split::List { items, elements }) = split(body, 10) else {
            panic!("not split");
        };
        assert_eq!(&body[items.start..items.start + 1], b"[");
        assert_eq!(&body[elements[0].clone()], b"{\"a\":\"x\xff\"}");
        assert_eq!(&body[elements[1].clone()], b"{\"b\":[1,{\"c\":\"]\\\"\"}]}");
        let arr = b"[ {\"x\":\"\xfe\"} , 12 ]";
        let Ok(Split::Array(e)) = split(arr, 10) else {
            panic!("not split");
        };
        assert_eq!(e.len(), 2);
        assert_eq!(&arr[e[1].clone()], b"12");
        assert_eq!(split(arr, 1).err(), Some(ScanError::TooMany));
        for bad in [
            &b"{\"items\":[{]}"[..],
            b"[1,",
            b"{\"a\":1}",
            b"\xff",
            b"[1] x",
            b"{\"items\":[1]",
        ] {
            assert!(
                split(bad, 10).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
