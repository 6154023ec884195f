//! RFC 6962 / RFC 9162 Merkle tree hashing and proofs.
//!
//! Proof generation works over any [`NodeSource`]: something that can give the
//! hash of a *complete, aligned* subtree `(level, index)` (the hash of leaves
//! `[index << level, (index + 1) << level)`). The store answers those from its
//! persisted hash levels, so a root or a proof costs O(log n) lookups.

use sha2::{Digest, Sha256};

/// A SHA-256 node or leaf hash.
pub type Hash = [u8; 32];

/// Leaf hash: `SHA-256(0x00 || leaf_data)`.
pub fn leaf_hash(leaf_data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf_data);
    h.finalize().into()
}

/// Interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Hash of the empty tree: `SHA-256()`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// MTH over a slice of leaf hashes (used for small in-memory ranges).
pub fn root_of_leaves(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = largest_power_of_two_below(n as u64) as usize;
            node_hash(&root_of_leaves(&leaves[..k]), &root_of_leaves(&leaves[k..]))
        }
    }
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
pub fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Why a node hash could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The requested range is beyond the tree.
    #[error("tree range [{lo}, {hi}) is beyond the tree size {size}")]
    OutOfRange {
        /// Range start.
        lo: u64,
        /// Range end (exclusive).
        hi: u64,
        /// Current size.
        size: u64,
    },
    /// The leaves under a node were pruned and the node itself was not kept.
    #[error("hashes for leaves [{lo}, {hi}) are no longer available (pruned)")]
    Pruned {
        /// Range start.
        lo: u64,
        /// Range end (exclusive).
        hi: u64,
    },
    /// Reading persisted hashes or data failed.
    #[error("{0}")]
    Storage(String),
    /// Bad arguments for a proof.
    #[error("{0}")]
    BadRequest(String),
}

/// Gives complete, aligned subtree hashes.
pub trait NodeSource {
    /// Hash of leaves `[index << level, (index + 1) << level)`.
    fn node(&self, level: u32, index: u64) -> Result<Hash, TreeError>;
}

/// MTH(D\[lo:hi\]) built from complete subtrees.
pub fn subtree_root(src: &dyn NodeSource, lo: u64, hi: u64) -> Result<Hash, TreeError> {
    let n = hi - lo;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        return src.node(n.trailing_zeros(), lo >> n.trailing_zeros());
    }
    let k = largest_power_of_two_below(n);
    let left = subtree_root(src, lo, lo + k)?;
    let right = subtree_root(src, lo + k, hi)?;
    Ok(node_hash(&left, &right))
}

/// Root of the tree of the first `size` leaves.
pub fn root(src: &dyn NodeSource, size: u64) -> Result<Hash, TreeError> {
    subtree_root(src, 0, size)
}

/// RFC 6962 PATH(m, D\[0:size\]): the audit path of leaf `m`, leaf side first.
pub fn inclusion_proof(src: &dyn NodeSource, m: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
    if m >= size {
        return Err(TreeError::BadRequest(format!(
            "leaf index {m} is not below tree size {size}"
        )));
    }
    let mut out = Vec::new();
    path(src, m, 0, size, &mut out)?;
    Ok(out)
}

fn path(
    src: &dyn NodeSource,
    m: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Hash>,
) -> Result<(), TreeError> {
    let n = hi - lo;
    if n <= 1 {
        return Ok(());
    }
    let k = largest_power_of_two_below(n);
    if m - lo < k {
        path(src, m, lo, lo + k, out)?;
        out.push(subtree_root(src, lo + k, hi)?);
    } else {
        path(src, m, lo + k, hi, out)?;
        out.push(subtree_root(src, lo, lo + k)?);
    }
    Ok(())
}

/// RFC 6962 PROOF(old, D\[0:new\]): the consistency proof between two sizes.
pub fn consistency_proof(src: &dyn NodeSource, old: u64, new: u64) -> Result<Vec<Hash>, TreeError> {
    if old > new {
        return Err(TreeError::BadRequest(format!(
            "old size {old} is larger than new size {new}"
        )));
    }
    let mut out = Vec::new();
    if old == 0 || old == new {
        return Ok(out);
    }
    subproof(src, old, 0, new, true, &mut out)?;
    Ok(out)
}

fn subproof(
    src: &dyn NodeSource,
    m: u64,
    lo: u64,
    hi: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), TreeError> {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push(subtree_root(src, lo, hi)?);
        }
        return Ok(());
    }
    let k = largest_power_of_two_below(n);
    if m <= k {
        subproof(src, m, lo, lo + k, complete, out)?;
        out.push(subtree_root(src, lo + k, hi)?);
    } else {
        subproof(src, m - k, lo + k, hi, false, out)?;
        out.push(subtree_root(src, lo, lo + k)?);
    }
    Ok(())
}

/// The right edge of a tree under construction: the roots of its complete
/// subtrees, largest first. Appending a leaf and computing the root cost
/// O(log n), which is how verify rebuilds the tree in one pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// (level, hash) of each complete subtree, left to right.
    nodes: Vec<(u32, Hash)>,
}

impl CompactRange {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The compact range of the first `size` leaves, read from a node source
    /// (so verification can resume after a pruned prefix).
    pub fn at(src: &dyn NodeSource, size: u64) -> Result<Self, TreeError> {
        let mut nodes = Vec::new();
        let mut lo = 0u64;
        for level in (0..64u32).rev() {
            if size & (1u64 << level) != 0 {
                nodes.push((level, src.node(level, lo >> level)?));
                lo += 1u64 << level;
            }
        }
        Ok(CompactRange { size, nodes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash; calls `on_complete(level, index, hash)` for each
    /// complete subtree of level >= 1 that the append finished.
    pub fn push_with(&mut self, leaf: Hash, mut on_complete: impl FnMut(u32, u64, &Hash)) {
        let mut level = 0u32;
        let mut hash = leaf;
        let mut index = self.size;
        while let Some(&(l, left)) = self.nodes.last() {
            if l != level {
                break;
            }
            self.nodes.pop();
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            on_complete(level, index, &hash);
        }
        self.nodes.push((level, hash));
        self.size += 1;
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.push_with(leaf, |_, _, _| {});
    }

    /// MTH of all leaves so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return empty_root();
        };
        for (_, h) in iter {
            acc = node_hash(h, &acc);
        }
        acc
    }
}

/// Checks an inclusion proof (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && &r == root
}

/// Checks a consistency proof (RFC 9162 section 2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old_size.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let (mut f_n, mut s_n) = (old_size - 1, new_size - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f_r, mut s_r) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    &f_r == old_root && &s_r == new_root && s_n == 0
}

/// A [`NodeSource`] over leaf hashes held in memory (tests, small trees).
pub struct MemoryLeaves<'a>(pub &'a [Hash]);

impl NodeSource for MemoryLeaves<'_> {
    fn node(&self, level: u32, index: u64) -> Result<Hash, TreeError> {
        let lo = index << level;
        let hi = lo + (1u64 << level);
        if hi > self.0.len() as u64 {
            return Err(TreeError::OutOfRange {
                lo,
                hi,
                size: self.0.len() as u64,
            });
        }
        Ok(root_of_leaves(&self.0[lo as usize..hi as usize]))
    }
}

/// Plain SHA-256 over the concatenation of `parts`: the only primitive an
/// outside verifier of kaudit's proofs needs.
pub fn sha256(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}
