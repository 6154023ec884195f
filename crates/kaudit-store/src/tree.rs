//! The persisted Merkle tree: one flat file of 32-byte hashes per tree level
//! from level 8 up (`tree/level-08.hash` holds the roots of each complete
//! group of 256 leaves, `level-09` of each 512, ...). Any complete aligned
//! subtree of 256 leaves or more is one read; below that the leaf hashes are
//! recomputed from the group's records (they are a pure function of the
//! stored bytes), which keeps the tree at ~0.25 bytes per record instead of
//! 32+. These files are derived data: they are synced before each checkpoint
//! and, on open, anything after the latest checkpoint is recomputed from the
//! segments.

use crate::merkle::{node_hash, root_of_leaves, Hash, NodeSource, TreeError};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Leaves per group: level-8 subtrees.
pub const GROUP_LEVEL: u32 = 8;
/// 256.
pub const GROUP: u64 = 1 << GROUP_LEVEL;

/// One persisted level.
struct Level {
    path: PathBuf,
    file: Option<File>,
    persisted: u64,
    mem: Vec<Hash>,
}

impl Level {
    fn len(&self) -> u64 {
        self.persisted + self.mem.len() as u64
    }
    fn get(&self, i: u64) -> Result<Hash, TreeError> {
        if i < self.persisted {
            let mut h = [0u8; 32];
            let f = self
                .file
                .as_ref()
                .ok_or_else(|| TreeError::Storage("tree level file missing".into()))?;
            f.read_exact_at(&mut h, i * 32)
                .map_err(|e| TreeError::Storage(format!("reading tree hashes: {e}")))?;
            Ok(h)
        } else {
            self.mem
                .get((i - self.persisted) as usize)
                .copied()
                .ok_or_else(|| TreeError::Storage(format!("tree level has no entry {i}")))
        }
    }
}

/// Supplies the leaf hashes of a whole group of 256 from stored records.
pub trait GroupLeaves {
    /// Leaf hashes of leaves `[group * 256, group * 256 + 256)`.
    fn group_leaves(&self, group: u64) -> Result<Vec<Hash>, TreeError>;
}

/// The tree's state: persisted levels, plus the leaves of the unfinished group.
pub struct Tree {
    dir: PathBuf,
    writable: bool,
    levels: Vec<Level>,
    size: u64,
    tail: Vec<Hash>,
    /// Leaf hashes kept for the group that straddles the pruned boundary: (first leaf, hashes).
    edge: Option<(u64, Vec<Hash>)>,
}

fn level_path(dir: &Path, level: u32) -> PathBuf {
    dir.join(format!("level-{level:02}.hash"))
}

impl Tree {
    /// Opens the level files, trusting at most `trusted` leaves' worth of
    /// entries (the rest is dropped and must be replayed). Returns the tree at
    /// the group-aligned size it could restore (<= trusted).
    pub fn open(dir: &Path, writable: bool, trusted: u64) -> std::io::Result<Tree> {
        if writable {
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(dir)?;
        }
        let mut levels = Vec::new();
        let mut covered = trusted / GROUP * GROUP;
        for level in GROUP_LEVEL..64 {
            let path = level_path(dir, level);
            let file = if writable {
                match OpenOptions::new().read(true).write(true).open(&path) {
                    Ok(f) => Some(f),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(e),
                }
            } else {
                File::open(&path).ok()
            };
            let len = match &file {
                Some(f) => f.metadata()?.len() / 32,
                None => 0,
            };
            levels.push((path, file, len));
        }
        // The restorable size is bounded by what the level-8 file holds.
        covered = covered.min(levels[0].2 * GROUP);
        // Every higher level must hold its entries for `covered`; if not, shrink.
        for (i, (_, _, len)) in levels.iter().enumerate() {
            let l = GROUP_LEVEL + i as u32;
            let need = covered >> l;
            if *len < need {
                // Restore only up to what this level supports; below the
                // group boundary the replay recomputes.
                covered = covered.min(len << l) / GROUP * GROUP;
            }
        }
        let mut out = Vec::new();
        for (i, (path, file, len)) in levels.into_iter().enumerate() {
            let l = GROUP_LEVEL + i as u32;
            let keep = covered >> l;
            if writable && len > keep {
                if let Some(f) = &file {
                    f.set_len(keep * 32)?;
                }
            }
            out.push(Level {
                path,
                file,
                persisted: keep.min(len),
                mem: Vec::new(),
            });
        }
        Ok(Tree {
            dir: dir.to_path_buf(),
            writable,
            levels: out,
            size: covered,
            tail: Vec::new(),
            edge: None,
        })
    }

    /// Drops the leaves at and beyond `size` after a failed write: the level
    /// files are reopened at the group-aligned size below `size` (plus the
    /// kept edge hashes of a pruned store); the caller pushes the leaves from
    /// [`Tree::size`] up to `size` again.
    pub fn rollback(&mut self, size: u64) -> std::io::Result<()> {
        let edge = self.edge.take();
        let mut t = Tree::open(&self.dir, self.writable, size.min(self.size))?;
        if let Some((first, hashes)) = &edge {
            for (i, h) in hashes.iter().enumerate() {
                let idx = first + i as u64;
                if idx >= t.size && idx < size {
                    t.push(*h)?;
                }
            }
        }
        t.edge = edge;
        *self = t;
        Ok(())
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Sets the kept leaf hashes of the group straddling the pruned boundary.
    pub fn set_edge(&mut self, first: u64, hashes: Vec<Hash>) {
        self.edge = Some((first, hashes));
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) -> std::io::Result<()> {
        self.tail.push(leaf);
        self.size += 1;
        if self.tail.len() as u64 == GROUP {
            let g = root_of_leaves(&self.tail);
            self.tail.clear();
            self.push_node(0, g)?;
        }
        Ok(())
    }

    fn push_node(&mut self, i: usize, h: Hash) -> std::io::Result<()> {
        let Some(level) = self.levels.get_mut(i) else {
            return Ok(());
        };
        if self.writable {
            if level.file.is_none() {
                level.file = Some(
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .mode(0o600)
                        .truncate(false)
                        .open(&level.path)?,
                );
            }
            if let Some(f) = &level.file {
                f.write_all_at(&h, level.persisted * 32)?;
                level.persisted += 1;
            }
        } else {
            level.mem.push(h);
        }
        let n = level.len();
        if n % 2 == 0 {
            let left = level
                .get(n - 2)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.push_node(i + 1, node_hash(&left, &h))?;
        }
        Ok(())
    }

    /// Makes the level files durable (before a checkpoint names this size).
    pub fn sync(&self) -> std::io::Result<()> {
        for l in &self.levels {
            if let Some(f) = &l.file {
                if l.persisted > 0 {
                    f.sync_data()?;
                }
            }
        }
        Ok(())
    }

    /// Bytes of the level files.
    pub fn disk_bytes(&self) -> u64 {
        self.levels.iter().map(|l| l.persisted * 32).sum()
    }

    /// The directory of the level files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Binds the tree to a leaf source for hashing and proofs.
    pub fn view<'a>(&'a self, data: &'a dyn GroupLeaves) -> TreeView<'a> {
        TreeView { tree: self, data }
    }

    /// The stored hash of complete node `(level, index)` for `level >= 8`.
    pub fn stored_node(&self, level: u32, index: u64) -> Result<Hash, TreeError> {
        let l = self
            .levels
            .get((level - GROUP_LEVEL) as usize)
            .ok_or_else(|| TreeError::Storage("level too high".into()))?;
        l.get(index)
    }

    /// Entries at a stored level (for verification).
    pub fn stored_len(&self, level: u32) -> u64 {
        self.levels
            .get((level - GROUP_LEVEL) as usize)
            .map_or(0, Level::len)
    }
}

/// A tree bound to its records: a full [`NodeSource`].
pub struct TreeView<'a> {
    tree: &'a Tree,
    data: &'a dyn GroupLeaves,
}

impl NodeSource for TreeView<'_> {
    fn node(&self, level: u32, index: u64) -> Result<Hash, TreeError> {
        let lo = index << level;
        let hi = lo + (1u64 << level);
        if hi > self.tree.size {
            return Err(TreeError::OutOfRange {
                lo,
                hi,
                size: self.tree.size,
            });
        }
        if level >= GROUP_LEVEL {
            return self.tree.stored_node(level, index);
        }
        let group = lo / GROUP;
        let off = (lo % GROUP) as usize;
        let width = 1usize << level;
        if group == self.tree.size / GROUP {
            return Ok(root_of_leaves(&self.tree.tail[off..off + width]));
        }
        if let Some((first, hashes)) = &self.tree.edge {
            if lo >= *first && hi <= first + hashes.len() as u64 {
                let s = (lo - first) as usize;
                return Ok(root_of_leaves(&hashes[s..s + width]));
            }
        }
        let leaves = self.data.group_leaves(group)?;
        leaves
            .get(off..off + width)
            .map(root_of_leaves)
            .ok_or_else(|| TreeError::Storage(format!("group {group} has too few leaves")))
    }
}
