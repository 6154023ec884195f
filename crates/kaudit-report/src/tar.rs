//! The few bytes of POSIX ustar a bundle needs: regular files with short
//! names, written and read back with every size bounded. (A bundle is only
//! ever made by kaudit, so nothing else of tar is accepted.)

use crate::ReportError;

const BLOCK: usize = 512;
/// Most entries a bundle may hold.
pub const MAX_ENTRIES: usize = 200_000;
/// Largest bundle (uncompressed) accepted.
pub const MAX_TOTAL: u64 = 2 << 30;

/// Appends one file to a tar stream.
pub fn append(out: &mut Vec<u8>, name: &str, data: &[u8]) -> Result<(), ReportError> {
    if name.is_empty() || name.len() > 99 || !name.is_ascii() {
        return Err(ReportError::Bundle(format!(
            "entry name {name:?} is not a short ASCII name"
        )));
    }
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; BLOCK], at: usize, len: usize, v: u64| {
        let s = format!("{v:0w$o}", w = len - 1);
        h[at..at + len - 1].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, 0o644);
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, data.len() as u64);
    octal(&mut h, 136, 12, 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
    out.resize(out.len() + pad, 0);
    Ok(())
}

/// Ends a tar stream.
pub fn finish(out: &mut Vec<u8>) {
    out.resize(out.len() + 2 * BLOCK, 0);
}

fn parse_octal(field: &[u8], what: &str, at: usize) -> Result<u64, ReportError> {
    let s: Vec<u8> = field
        .iter()
        .copied()
        .take_while(|&b| b != 0 && b != b' ')
        .skip_while(|&b| b == b' ')
        .collect();
    let s = std::str::from_utf8(&s).unwrap_or("?");
    u64::from_str_radix(if s.is_empty() { "0" } else { s }, 8).map_err(|_| {
        ReportError::Bundle(format!(
            "tar header at byte {at}: {what} {s:?} is not octal"
        ))
    })
}

/// Reads every (name, bytes) of a tar stream, in order; refuses anything but
/// regular files, duplicate names, bad checksums and truncation.
pub fn read(data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ReportError> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut at = 0usize;
    loop {
        let Some(h) = data.get(at..at + BLOCK) else {
            return Err(ReportError::Bundle(format!(
                "tar stream ends at byte {} without its end marker",
                data.len()
            )));
        };
        if h.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        if out.len() >= MAX_ENTRIES {
            return Err(ReportError::Bundle(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        let want = parse_octal(&h[148..156], "checksum", at)?;
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        if sum != want {
            return Err(ReportError::Bundle(format!(
                "tar header at byte {at}: bad checksum"
            )));
        }
        let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = std::str::from_utf8(&h[..name_end])
            .map_err(|_| {
                ReportError::Bundle(format!("tar header at byte {at}: name is not UTF-8"))
            })?
            .to_string();
        if h[156] != b'0' && h[156] != 0 {
            return Err(ReportError::Bundle(format!("{name}: not a regular file")));
        }
        if name.is_empty()
            || name.starts_with('/')
            || name.split('/').any(|p| p == ".." || p.is_empty())
        {
            return Err(ReportError::Bundle(format!(
                "entry name {name:?} is not a plain relative path"
            )));
        }
        let size = parse_octal(&h[124..136], "size", at)?;
        if size > MAX_TOTAL {
            return Err(ReportError::Bundle(format!(
                "{name}: larger than {MAX_TOTAL} bytes"
            )));
        }
        let size = size as usize;
        let body = at + BLOCK;
        let Some(bytes) = data.get(body..body.saturating_add(size)) else {
            return Err(ReportError::Bundle(format!("{name}: truncated")));
        };
        if !seen.insert(name.clone()) {
            return Err(ReportError::Bundle(format!("{name}: appears twice")));
        }
        out.push((name, bytes.to_vec()));
        at = body + size.div_ceil(BLOCK) * BLOCK;
    }
}
