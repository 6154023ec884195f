//! ClickHouse's `RowBinary` format, both ways: little-endian fixed-width
//! numbers, strings as a LEB128 length and their bytes, arrays as a LEB128
//! count and their items. Exact bytes with no escaping, so the stored event
//! comes back byte for byte.

use std::io::Read;

/// Appends an unsigned LEB128 number.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Appends a string.
pub fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Appends an array of strings.
pub fn put_strs<S: AsRef<[u8]>>(out: &mut Vec<u8>, v: &[S]) {
    put_varint(out, v.len() as u64);
    for s in v {
        put_str(out, s.as_ref());
    }
}

/// Longest string accepted from the server (the store's longest event, and
/// some room).
pub const MAX_STRING: u64 = 32 << 20;
/// Most array items accepted from the server.
pub const MAX_ITEMS: u64 = 1 << 20;

/// Reads `RowBinary` values from a stream; `Ok(None)` from [`Reader::at_end`]
/// only between rows.
pub struct Reader<R: Read> {
    r: std::io::BufReader<R>,
    broken: bool,
}

/// Why an answer could not be read.
pub type ReadError = String;

impl<R: Read> Reader<R> {
    /// Reads from `r`.
    pub fn new(r: R) -> Self {
        Reader {
            r: std::io::BufReader::with_capacity(1 << 16, r),
            broken: false,
        }
    }

    /// Whether reading failed in the stream itself (the connection broke or
    /// ended inside a row), not because of what it held: the caller may
    /// read the rest again elsewhere.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Whether the stream ended (checked before a row).
    pub fn at_end(&mut self) -> Result<bool, ReadError> {
        use std::io::BufRead;
        match self.r.fill_buf() {
            Ok(b) => Ok(b.is_empty()),
            Err(e) => {
                self.broken = true;
                Err(e.to_string())
            }
        }
    }

    fn exact<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let mut b = [0u8; N];
        if let Err(e) = self.r.read_exact(&mut b) {
            self.broken = true;
            return Err(format!("truncated row: {e}"));
        }
        Ok(b)
    }

    /// A LEB128 number.
    pub fn varint(&mut self) -> Result<u64, ReadError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let [b] = self.exact::<1>()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("length longer than 64 bits".into())
    }

    /// A `UInt8`.
    pub fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.exact::<1>()?[0])
    }
    /// A `UInt16`.
    pub fn u16(&mut self) -> Result<u16, ReadError> {
        Ok(u16::from_le_bytes(self.exact()?))
    }
    /// A `UInt32`.
    pub fn u32(&mut self) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes(self.exact()?))
    }
    /// A `UInt64`.
    pub fn u64(&mut self) -> Result<u64, ReadError> {
        Ok(u64::from_le_bytes(self.exact()?))
    }
    /// An `Int32`.
    pub fn i32(&mut self) -> Result<i32, ReadError> {
        Ok(i32::from_le_bytes(self.exact()?))
    }
    /// An `Int64`.
    pub fn i64(&mut self) -> Result<i64, ReadError> {
        Ok(i64::from_le_bytes(self.exact()?))
    }

    /// A `String` as bytes.
    pub fn bytes(&mut self) -> Result<Vec<u8>, ReadError> {
        let n = self.varint()?;
        if n > MAX_STRING {
            return Err(format!("string of {n} bytes exceeds {MAX_STRING}"));
        }
        let mut b = vec![0u8; n as usize];
        if let Err(e) = self.r.read_exact(&mut b) {
            self.broken = true;
            return Err(format!("truncated string: {e}"));
        }
        Ok(b)
    }

    /// A `String` that must be UTF-8.
    pub fn string(&mut self) -> Result<String, ReadError> {
        String::from_utf8(self.bytes()?).map_err(|_| "string is not UTF-8".to_string())
    }

    /// An `Array(String)`.
    pub fn strings(&mut self) -> Result<Vec<String>, ReadError> {
        let n = self.varint()?;
        if n > MAX_ITEMS {
            return Err(format!("array of {n} items exceeds {MAX_ITEMS}"));
        }
        (0..n).map(|_| self.string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let mut b = Vec::new();
        put_varint(&mut b, 300);
        put_str(&mut b, b"h\0\xffi");
        put_strs(&mut b, &["a", "", "c"]);
        b.extend_from_slice(&(-5i64).to_le_bytes());
        let mut r = Reader::new(&b[..]);
        assert_eq!(r.varint().unwrap(), 300);
        assert_eq!(r.bytes().unwrap(), b"h\0\xffi");
        assert_eq!(r.strings().unwrap(), vec!["a", "", "c"]);
        assert_eq!(r.i64().unwrap(), -5);
        assert!(r.at_end().unwrap());
    }

    #[test]
    fn hostile_lengths_are_refused() {
        let mut b = Vec::new();
        put_varint(&mut b, MAX_STRING + 1);
        assert!(Reader::new(&b[..]).bytes().is_err());
        let b = [0xffu8; 11];
        assert!(Reader::new(&b[..]).varint().is_err());
        let mut b = Vec::new();
        put_varint(&mut b, 10);
        b.extend_from_slice(b"abc");
        let mut r = Reader::new(&b[..]);
        assert!(r.bytes().is_err());
        assert!(r.broken(), "a stream ending inside a row is broken");
        let mut b = Vec::new();
        put_varint(&mut b, MAX_STRING + 1);
        let mut r = Reader::new(&b[..]);
        assert!(r.bytes().is_err());
        assert!(!r.broken(), "a bad length is the data's fault");
    }
}
