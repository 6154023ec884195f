//! Growable columns whose committed part is a read-only mapping of their
//! file, so a served index costs page cache (which the kernel evicts under
//! pressure) instead of anonymous memory proportional to the store.
//!
//! A [`Rows`] is one contiguous run of virtual memory: the whole pages of
//! the file's validated prefix are mapped shared and read-only, and the
//! rows after them (the rest of the last page, and the rows not committed
//! yet) live in anonymous pages right behind. Every scan loop keeps
//! reading one `&[T]`. The space is reserved up front (address space only,
//! `MAP_NORESERVE`); running out of it reserves a larger run, maps the file
//! again there and copies only the anonymous rows.
//!
//! memmap2 maps a file at an address of the kernel's choosing, which
//! cannot be placed in front of the anonymous tail; this module therefore
//! calls `mmap` itself, in the few places marked `unsafe` below.
//!
//! Safety against `SIGBUS`: only bytes the caller validated to exist in the
//! file are mapped, and the index never shrinks a column file in place (see
//! `index::append_at`): a damaged index is dropped by unlinking its files
//! and a rewritten column is renamed over the old one, so a mapping (of
//! this process or of a reader in another) always keeps its pages.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::ptr::NonNull;

/// The plain little-endian integers a column file holds: every bit pattern
/// is a valid value, so file bytes can be read as them directly.
pub trait Plain: Copy + Default + Send + Sync + 'static + private::Sealed {}
impl Plain for u8 {}
impl Plain for u16 {}
impl Plain for u32 {}
impl Plain for i64 {}

mod private {
    /// Keeps [`super::Plain`] to the integer types above.
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
    impl Sealed for i64 {}
}

fn page() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf reads a constant; no memory is touched.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
    })
}

/// Rows reserved at least, so a column growing from empty does not
/// re-reserve on every few pushes.
const MIN_CAP_BYTES: usize = 1 << 20;

/// A column of `T`: the committed prefix mapped from its file, the rest in
/// anonymous memory right behind it. Dereferences to `&[T]`.
pub struct Rows<T: Plain> {
    /// Start of the reservation (page aligned); dangling when `cap == 0`.
    ptr: NonNull<T>,
    /// Rows the reservation holds.
    cap: usize,
    /// Rows held.
    len: usize,
    /// Bytes at the start that are mapped from `file` (whole pages).
    mapped: usize,
    /// The file mapped at the start (kept to map it again on growth).
    file: Option<File>,
}

// SAFETY: a Rows owns its memory exclusively, like a Vec: shared references
// only read it, mutation needs `&mut`.
unsafe impl<T: Plain> Send for Rows<T> {}
// SAFETY: as above; `&Rows` hands out only `&[T]`.
unsafe impl<T: Plain> Sync for Rows<T> {}

impl<T: Plain> Default for Rows<T> {
    fn default() -> Self {
        Rows::new()
    }
}

impl<T: Plain> std::fmt::Debug for Rows<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows")
            .field("len", &self.len)
            .field("mapped_bytes", &self.mapped)
            .finish()
    }
}

impl<T: Plain> Clone for Rows<T> {
    /// A copy in anonymous memory (nothing mapped).
    fn clone(&self) -> Self {
        let mut r = Rows::new();
        r.extend_from_slice(self);
        r
    }
}

impl<T: Plain> std::ops::Deref for Rows<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` rows from `ptr` are initialised (mapped file bytes
        // or written anonymous rows); a dangling pointer with len 0 is a
        // valid empty slice.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Plain> Drop for Rows<T> {
    fn drop(&mut self) {
        if self.cap > 0 {
            // SAFETY: the reservation was made by `reserve_bytes` with this
            // size and nothing refers to it past `&mut self`.
            unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), Self::bytes_for(self.cap));
            }
        }
    }
}

/// Aborts like a failed Vec allocation: address space ran out.
fn out_of_memory(bytes: usize) -> ! {
    let layout = std::alloc::Layout::from_size_align(bytes.max(1), 1)
        .unwrap_or(std::alloc::Layout::new::<u8>());
    std::alloc::handle_alloc_error(layout)
}

impl<T: Plain> Rows<T> {
    const SIZE: usize = std::mem::size_of::<T>();

    /// An empty column (nothing reserved yet).
    pub fn new() -> Rows<T> {
        Rows {
            ptr: NonNull::dangling(),
            cap: 0,
            len: 0,
            mapped: 0,
            file: None,
        }
    }

    /// Bytes reserved for `cap` rows (whole pages).
    fn bytes_for(cap: usize) -> usize {
        let b = cap.saturating_mul(Self::SIZE);
        b.div_ceil(page()).saturating_mul(page())
    }

    /// Reserves anonymous, zeroed, lazily backed memory for `cap` rows.
    fn reserve_bytes(cap: usize) -> NonNull<T> {
        let bytes = Self::bytes_for(cap);
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            out_of_memory(bytes);
        }
        match NonNull::new(p.cast::<T>()) {
            Some(p) => p,
            None => out_of_memory(bytes),
        }
    }

    /// Maps bytes `from..to` (page aligned) of `file` over the same range
    /// of the reservation. The caller has validated that the file holds
    /// them. A failed `MAP_FIXED` may leave the range unmapped, so failure
    /// aborts like a failed allocation would rather than leave rows that
    /// fault when read (the realistic cause is running out of mappings,
    /// i.e. memory).
    fn map_file_range(&mut self, file: &File, from: usize, to: usize) {
        if to <= from {
            return;
        }
        debug_assert!(
            from.is_multiple_of(page())
                && to.is_multiple_of(page())
                && to <= Self::bytes_for(self.cap)
        );
        let Ok(offset) = libc::off_t::try_from(from) else {
            out_of_memory(to - from)
        };
        // SAFETY: the target range lies inside our own reservation (checked
        // by the callers: `to` <= the rows' bytes <= the reservation), and
        // its current contents equal the file's bytes there (the caller
        // wrote them from these rows, or is filling a fresh reservation),
        // so no slice handed out earlier changes value. MAP_FIXED replaces
        // only pages of this reservation.
        let p = unsafe {
            libc::mmap(
                self.ptr.as_ptr().cast::<u8>().add(from).cast(),
                to - from,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_FIXED,
                file.as_raw_fd(),
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            out_of_memory(to - from);
        }
    }

    /// The first `rows` rows of `file` (which the caller checked holds at
    /// least that many bytes), with room for `spare` more rows to be pushed
    /// without re-reserving.
    pub fn map(file: File, rows: usize, spare: usize) -> std::io::Result<Rows<T>> {
        let mut r = Rows::new();
        if rows == 0 && spare == 0 {
            return Ok(r);
        }
        r.cap = rows
            .saturating_add(spare)
            .max(MIN_CAP_BYTES / Self::SIZE)
            .max(1);
        r.ptr = Self::reserve_bytes(r.cap);
        r.len = rows;
        if cfg!(target_endian = "little") {
            let whole = (rows * Self::SIZE) / page() * page();
            r.map_file_range(&file, 0, whole);
            r.mapped = whole;
            r.read_tail(&file, whole)?;
            r.file = Some(file);
        } else {
            r.read_tail(&file, 0)?;
        }
        Ok(r)
    }

    /// Reads the file's bytes from `from` up to the rows' end into the
    /// anonymous part (the partial last page; or everything on a big-endian
    /// host, converting).
    fn read_tail(&mut self, file: &File, from: usize) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let end = self.len * Self::SIZE;
        if end <= from {
            return Ok(());
        }
        let mut buf = vec![0u8; end - from];
        file.read_exact_at(&mut buf, from as u64)?;
        let first = from / Self::SIZE;
        for (i, c) in buf.chunks_exact(Self::SIZE).enumerate() {
            let v = from_le::<T>(c);
            // SAFETY: row `first + i` < len <= cap lies in the anonymous,
            // writable part (at or past `mapped`).
            unsafe { self.ptr.as_ptr().add(first + i).write(v) };
        }
        Ok(())
    }

    /// Bytes of the rows held that live in the file mapping.
    pub fn mapped_bytes(&self) -> usize {
        self.mapped
    }

    /// Bytes of the rows held in anonymous memory.
    pub fn anon_bytes(&self) -> usize {
        (self.len * Self::SIZE).saturating_sub(self.mapped)
    }

    fn grow(&mut self, need: usize) {
        let cap = need
            .max(self.cap.saturating_mul(2))
            .max(MIN_CAP_BYTES / Self::SIZE);
        let ptr = Self::reserve_bytes(cap);
        let mut next = Rows {
            ptr,
            cap,
            len: self.len,
            mapped: 0,
            file: None,
        };
        let mut copy_from = 0;
        if let Some(file) = self.file.take() {
            next.map_file_range(&file, 0, self.mapped);
            next.mapped = self.mapped;
            copy_from = self.mapped;
            next.file = Some(file);
        }
        let end = self.len * Self::SIZE;
        if end > copy_from {
            // SAFETY: both ranges lie within their reservations (len <= both
            // caps) and the two reservations are distinct mappings.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.ptr.as_ptr().cast::<u8>().add(copy_from),
                    next.ptr.as_ptr().cast::<u8>().add(copy_from),
                    end - copy_from,
                );
            }
        }
        *self = next;
    }

    /// Appends one row.
    #[inline]
    pub fn push(&mut self, v: T) {
        if self.len == self.cap {
            self.grow(self.len + 1);
        }
        // SAFETY: len < cap, and rows at or past `mapped` are anonymous and
        // writable (`mapped` never passes the rows' bytes).
        unsafe { self.ptr.as_ptr().add(self.len).write(v) };
        self.len += 1;
    }

    /// Appends `rows`.
    pub fn extend_from_slice(&mut self, rows: &[T]) {
        rows.iter().for_each(|&v| self.push(v));
    }

    /// The last row, writable (None when empty or when it is committed,
    /// i.e. mapped read-only).
    pub fn last_mut(&mut self) -> Option<&mut T> {
        let i = self.len.checked_sub(1)?;
        if i * Self::SIZE < self.mapped {
            return None;
        }
        // SAFETY: row i < len is in the anonymous, writable part.
        Some(unsafe { &mut *self.ptr.as_ptr().add(i) })
    }

    /// Keeps the first `n` rows. Pages of the file mapping past them are
    /// replaced by anonymous copies first, so rows pushed later never land
    /// in a read-only (or shared) page.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.len {
            return;
        }
        let keep = (n * Self::SIZE) / page() * page();
        if keep < self.mapped {
            // The rows of the page holding row n, copied before that page is
            // replaced.
            let saved: Vec<u8> = {
                let all: &[T] = self;
                let bytes = n * Self::SIZE - keep;
                // SAFETY: the bytes keep..keep+bytes are rows < n, initialised.
                unsafe { std::slice::from_raw_parts(all.as_ptr().cast::<u8>().add(keep), bytes) }
                    .to_vec()
            };
            // SAFETY: replaces pages keep..mapped of our own reservation by
            // fresh anonymous ones; rows there past `saved` are dropped
            // (n is the new length), and `saved` is written back below.
            let p = unsafe {
                libc::mmap(
                    self.ptr.as_ptr().cast::<u8>().add(keep).cast(),
                    self.mapped - keep,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                out_of_memory(self.mapped - keep);
            }
            // SAFETY: the range is now anonymous and writable, within the
            // reservation.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    saved.as_ptr(),
                    self.ptr.as_ptr().cast::<u8>().add(keep),
                    saved.len(),
                );
            }
            self.mapped = keep;
        }
        self.len = n;
    }

    /// After the first `rows` rows were written to `file` (and synced):
    /// maps the whole pages of them from it, freeing their anonymous
    /// copies. `replaced` says that `file` is a new file (renamed over the
    /// old one) rather than the one mapped so far, so every page is mapped
    /// again. The caller guarantees the file holds exactly these rows'
    /// bytes there.
    pub fn remap(&mut self, file: File, rows: usize, replaced: bool) {
        if !cfg!(target_endian = "little") || self.cap == 0 {
            return;
        }
        let rows = rows.min(self.len);
        let whole = (rows * Self::SIZE) / page() * page();
        let from = if replaced || self.file.is_none() {
            0
        } else {
            self.mapped
        };
        if whole <= from {
            if replaced {
                // Nothing to map from the new file: the old mapping's pages
                // stay (same bytes), but forget the old file.
                self.file = Some(file);
            }
            return;
        }
        self.map_file_range(&file, from, whole);
        self.mapped = whole;
        self.file = Some(file);
    }
}

fn from_le<T: Plain>(c: &[u8]) -> T {
    let mut v = T::default();
    // SAFETY: T is a plain integer (Plain is sealed) of exactly c.len()
    // bytes, every bit pattern valid; the bytes are read little-endian.
    unsafe {
        let dst = std::slice::from_raw_parts_mut((&mut v as *mut T).cast::<u8>(), c.len());
        dst.copy_from_slice(c);
        if cfg!(target_endian = "big") {
            dst.reverse();
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(dir: &std::path::Path, vals: &[u32]) -> File {
        let path = dir.join("c.u32");
        let mut f = File::create(&path).expect("create");
        for v in vals {
            f.write_all(&v.to_le_bytes()).expect("write");
        }
        drop(f);
        File::open(&path).expect("open")
    }

    #[test]
    fn mapped_rows_read_the_file_and_grow_behind_it() {
        let dir = tempfile::tempdir().expect("dir");
        let vals: Vec<u32> = (0..5000u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        let mut r = Rows::<u32>::map(file_of(dir.path(), &vals), 3000, 0).expect("map");
        assert_eq!(&r[..], &vals[..3000]);
        assert_eq!(r.mapped_bytes(), 3000 * 4 / page() * page());
        assert!(r.mapped_bytes() > 0);
        // Past the reservation: re-reserves and keeps every row.
        let extra: Vec<u32> = (0..600_000u32).collect();
        r.extend_from_slice(&extra);
        assert_eq!(r.len(), 603_000);
        assert_eq!(&r[..3000], &vals[..3000]);
        assert_eq!(&r[3000..], &extra[..]);
        // Truncating into the mapped part keeps the rows and allows pushes.
        r.truncate(10);
        r.push(7);
        assert_eq!(&r[..10], &vals[..10]);
        assert_eq!(r[10], 7);
        assert_eq!(r.mapped_bytes(), 0);
    }

    #[test]
    fn remap_after_a_write_keeps_every_row() {
        let dir = tempfile::tempdir().expect("dir");
        let mut r = Rows::<u32>::new();
        let vals: Vec<u32> = (0..10_000u32).map(|i| i ^ 0x5a5a).collect();
        r.extend_from_slice(&vals);
        let f = file_of(dir.path(), &vals);
        r.remap(f, 10_000, false);
        assert!(r.mapped_bytes() >= 4096, "{}", r.mapped_bytes());
        assert_eq!(&r[..], &vals[..]);
        r.push(1);
        assert_eq!(r.anon_bytes(), 10_001 * 4 - r.mapped_bytes());
        assert_eq!(r[10_000], 1);
    }
}
