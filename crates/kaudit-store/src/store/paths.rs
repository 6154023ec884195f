//! Paths inside a data directory.

use std::path::{Path, PathBuf};

/// Segment files.
pub fn segments(d: &Path) -> PathBuf {
    d.join("segments")
}
/// Trained zstd dictionaries ([`crate::dict`]).
pub fn dicts(d: &Path) -> PathBuf {
    d.join("dict")
}
/// Tree level files.
pub fn tree(d: &Path) -> PathBuf {
    d.join("tree")
}
/// Dedupe keys, 16 bytes per record from record `base` (the first kept one).
pub fn dedupe(d: &Path, base: u64) -> PathBuf {
    d.join("index").join(format!("dedupe-{base:020}.keys"))
}
/// Kept checkpoints, one JSON object per line.
pub fn checkpoints(d: &Path) -> PathBuf {
    d.join("checkpoints.jsonl")
}
/// Default signing key.
pub fn signing_key(d: &Path) -> PathBuf {
    d.join("checkpoint.key")
}
/// Public verifier key, for readers and auditors.
pub fn verifier_key(d: &Path) -> PathBuf {
    d.join("checkpoint.pub")
}
/// Signed record of the pruned prefix.
pub fn pruned(d: &Path) -> PathBuf {
    d.join("pruned.json")
}
/// Leaf hashes of the group straddling the pruned boundary.
pub fn pruned_edge(d: &Path) -> PathBuf {
    d.join("tree").join("pruned-edge.hash")
}
/// Legal holds.
pub fn holds(d: &Path) -> PathBuf {
    d.join("holds.json")
}
/// Writer lock.
pub fn lock(d: &Path) -> PathBuf {
    d.join("LOCK")
}
/// Files a writable open found damaged and moved aside instead of cutting.
pub fn damaged(d: &Path) -> PathBuf {
    d.join("damaged")
}
