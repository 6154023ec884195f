//! The tree over the log and its RFC 6962 proofs. Persisted levels cover
//! whole groups; hashes inside a group are recomputed from the records.

use super::{Shared, Store};
use crate::merkle::{self, Hash, TreeError};
use crate::tree::{GroupLeaves, GROUP};
use crate::{StoreError, StoreResult};

impl Store {
    /// Runs `f` over the tree view once `size` is known to be durable.
    fn with_tree<T>(
        &self,
        size: u64,
        f: impl FnOnce(&dyn merkle::NodeSource) -> Result<T, merkle::TreeError>,
    ) -> StoreResult<T> {
        let shared = self.shared()?;
        if size > shared.durable {
            return Err(StoreError::Input(format!(
                "tree size {size} is beyond the log's {} records",
                shared.durable
            )));
        }
        let src = DataGroups {
            store: self,
            shared: &shared,
        };
        let view = shared.tree.view(&src);
        f(&view).map_err(StoreError::Tree)
    }

    /// Root of the tree at `size` (<= durable size).
    pub fn root_at(&self, size: u64) -> StoreResult<Hash> {
        self.with_tree(size, |view| merkle::root(view, size))
    }

    /// RFC 6962 inclusion proof of `seq` in the tree of `size`.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> StoreResult<Vec<Hash>> {
        self.with_tree(size, |view| merkle::inclusion_proof(view, seq, size))
    }

    /// RFC 6962 consistency proof between two sizes.
    pub fn consistency_proof(&self, old: u64, new: u64) -> StoreResult<Vec<Hash>> {
        self.with_tree(new, |view| merkle::consistency_proof(view, old, new))
    }

    /// Leaf hashes of a whole group, from the records (cached).
    fn group_leaves_from(&self, shared: &Shared, group: u64) -> Result<Vec<Hash>, TreeError> {
        if let Ok(c) = self.group_cache.lock() {
            if let Some((g, v)) = &*c {
                if *g == group {
                    return Ok(v.clone());
                }
            }
        }
        let lo = group * GROUP;
        if lo < shared.first_seq {
            return Err(TreeError::Pruned { lo, hi: lo + GROUP });
        }
        let mut out = Vec::with_capacity(GROUP as usize);
        Self::for_each_leaf(shared, self.cipher.as_ref(), lo..lo + GROUP, &mut |_, l| {
            out.push(l.hash());
            Ok(true)
        })
        .map_err(|e| TreeError::Storage(e.to_string()))?;
        if out.len() as u64 != GROUP {
            return Err(TreeError::Storage(format!("group {group} is incomplete")));
        }
        if let Ok(mut c) = self.group_cache.lock() {
            *c = Some((group, out.clone()));
        }
        Ok(out)
    }
}

/// Serves a group's leaf hashes from the records, for tree views.
pub(super) struct DataGroups<'a> {
    pub(super) store: &'a Store,
    pub(super) shared: &'a Shared,
}

impl GroupLeaves for DataGroups<'_> {
    fn group_leaves(&self, group: u64) -> Result<Vec<Hash>, TreeError> {
        self.store.group_leaves_from(self.shared, group)
    }
}
