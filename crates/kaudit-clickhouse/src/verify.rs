//! `kaudit verify --clickhouse`: each node's Merkle tree recomputed from its
//! rows in ClickHouse and checked against that node's signed checkpoints.
//!
//! Rows are read per node in sequence order, every copy of a row (resends
//! included). Each row's leaf hash is recomputed from its cluster, receive
//! time, sequence number and exact event bytes, the same leaf the node's
//! store hashed (kaudit-store's `write_leaf` and `leaf_hash`), and the tree
//! is folded with kaudit-store's `CompactRange`. At every checkpoint size the
//! root must equal the signed root. What is wrong is named by `(node, seq)`:
//! a missing sequence number (deleted row), two different rows for one
//! sequence number (inserted row), and an edited row: when the recomputed
//! root differs but the tree of the shipped `leaf_hash` column matches the
//! signed root, those hashes are authentic and every row whose recomputed
//! hash differs from its shipped one was edited. (When both differ, the
//! range between the last good and the first bad checkpoint is named.)

use crate::client::Client;
use crate::rowbin::Reader;
use crate::schema::Tables;
use crate::{ChResult, ClickHouseError};
use kaudit_event::MicroTime;
use kaudit_store::merkle::{leaf_hash, CompactRange, Hash};
use kaudit_store::note::{Checkpoint, Verifier25519};
use std::collections::HashMap;

/// Most problems listed per node (the count is always complete).
pub const MAX_LISTED: usize = 1000;
/// Most distinct copies of one sequence number kept apart.
const MAX_COPIES: usize = 64;

/// One thing wrong with a node's rows.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// No row holds this sequence number (a deleted row).
    Missing {
        /// Sequence number.
        seq: u64,
    },
    /// Two different rows claim this sequence number (an inserted row).
    Conflict {
        /// Sequence number.
        seq: u64,
    },
    /// The row's bytes are not those the node signed (an edited row).
    Altered {
        /// Sequence number.
        seq: u64,
    },
    /// The tree up to a checkpoint does not match its signed root, and the
    /// rows at fault could not be told apart: somewhere in `from..size`.
    RootMismatch {
        /// First sequence number that may be at fault.
        from: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// A shipped checkpoint whose signature or body does not verify.
    BadCheckpoint {
        /// Its claimed size.
        size: u64,
        /// Why.
        why: String,
    },
}

/// What verification found for one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeReport {
    /// Node id.
    pub node_id: u16,
    /// Node name.
    pub node: String,
    /// Distinct sequence numbers seen.
    pub rows: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// The largest tree size proven (every row below it is authentic).
    pub verified_size: u64,
    /// Rows past the newest checkpoint (not provable yet).
    pub unverified_tail: u64,
    /// Problems found (at most [`MAX_LISTED`]).
    pub problems: Vec<Problem>,
    /// All problems found, listed or not.
    pub problem_count: u64,
    /// Whether the key came from the caller (else it was the one shipped
    /// with the checkpoints, which only proves internal consistency).
    pub trusted_key: bool,
}

impl NodeReport {
    /// Whether the node's rows verified.
    pub fn ok(&self) -> bool {
        self.problem_count == 0 && self.checkpoints > 0
    }

    fn problem(&mut self, p: Problem) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        }
    }
}

/// A node's name, its verified checkpoints (size, root) and its report.
type NodeCheckpoints = (String, Vec<(u64, Hash)>, NodeReport);

fn bad(m: String) -> ClickHouseError {
    ClickHouseError::Answer {
        what: "verify".into(),
        message: m,
    }
}

/// Verifies every node found in the checkpoints table (and every node with
/// rows). `trusted` holds verifier keys by node id; nodes without one are
/// checked against the key they shipped.
pub fn verify(
    client: &Client,
    tables: &Tables,
    trusted: &HashMap<u16, Verifier25519>,
) -> ChResult<Vec<NodeReport>> {
    let db = &tables.db;
    // Checkpoints, one per (node, size).
    let resp = client.query_reader(&format!(
        "SELECT node_id, node, size, note, verifier FROM {db}.{} ORDER BY node_id, size LIMIT 1 BY node_id, size FORMAT RowBinary",
        tables.checkpoints
    ))?;
    let mut r = Reader::new(resp);
    let mut cps: HashMap<u16, NodeCheckpoints> = HashMap::new();
    while !r.at_end().map_err(bad)? {
        let node_id = r.u16().map_err(bad)?;
        let node = r.string().map_err(bad)?;
        let size = r.u64().map_err(bad)?;
        let note = r.string().map_err(bad)?;
        let shipped_key = r.string().map_err(bad)?;
        let e = cps.entry(node_id).or_insert_with(|| {
            (
                node.clone(),
                Vec::new(),
                NodeReport {
                    node_id,
                    node: node.clone(),
                    trusted_key: trusted.contains_key(&node_id),
                    ..NodeReport::default()
                },
            )
        });
        let verifier = match trusted.get(&node_id) {
            Some(v) => Ok(v.clone()),
            None => Verifier25519::from_text(&shipped_key).map_err(|e| e.to_string()),
        };
        let checked = verifier.and_then(|v| {
            let body = v.verify_note(&note).map_err(|e| e.to_string())?;
            let c = Checkpoint::parse(body).map_err(|e| e.to_string())?;
            if c.size != size {
                return Err(format!("signed size {} but row says {size}", c.size));
            }
            Ok(c.root)
        });
        match checked {
            Ok(root) => e.1.push((size, root)),
            Err(why) => e.2.problem(Problem::BadCheckpoint { size, why }),
        }
    }
    // Nodes with rows but no checkpoint are reported too.
    let ids = client.execute(&format!(
        "SELECT DISTINCT node_id FROM {db}.{} FORMAT TabSeparated",
        tables.events
    ))?;
    for id in ids.split_whitespace().filter_map(|s| s.parse::<u16>().ok()) {
        cps.entry(id).or_insert_with(|| {
            (
                format!("node-{id}"),
                Vec::new(),
                NodeReport {
                    node_id: id,
                    node: format!("node-{id}"),
                    ..NodeReport::default()
                },
            )
        });
    }
    let mut out = Vec::new();
    let mut ids: Vec<u16> = cps.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let Some((_, checkpoints, report)) = cps.remove(&id) else {
            continue;
        };
        out.push(verify_node(client, tables, id, checkpoints, report)?);
    }
    Ok(out)
}

fn verify_node(
    client: &Client,
    tables: &Tables,
    node_id: u16,
    checkpoints: Vec<(u64, Hash)>,
    mut report: NodeReport,
) -> ChResult<NodeReport> {
    let resp = client.query_reader(&format!(
        "SELECT seq, received, cluster, raw, leaf_hash FROM {}.{} WHERE node_id = {node_id} ORDER BY seq FORMAT RowBinary",
        tables.db, tables.events
    ))?;
    let mut r = Reader::new(resp);
    let mut rows_tree = CompactRange::new();
    let mut shipped_tree = CompactRange::new();
    let mut next_cp = 0usize;
    let mut expected = 0u64;
    // Rows whose recomputed hash differs from the shipped one, since the
    // last verified checkpoint.
    let mut suspects: Vec<u64> = Vec::new();
    let mut last_good = 0u64;
    let mut broken = false;
    let mut leaf = Vec::new();
    let check = |size: u64,
                 root: &Hash,
                 rows: &CompactRange,
                 shipped: &CompactRange,
                 suspects: &mut Vec<u64>,
                 report: &mut NodeReport,
                 last_good: &mut u64| {
        report.checkpoints += 1;
        if rows.root() == *root {
            report.verified_size = size;
            *last_good = size;
            suspects.clear();
        } else if shipped.root() == *root && !suspects.is_empty() {
            for s in suspects.drain(..) {
                report.problem(Problem::Altered { seq: s });
            }
            *last_good = size;
        } else {
            report.problem(Problem::RootMismatch {
                from: *last_good,
                size,
            });
            *last_good = size;
            suspects.clear();
        }
    };
    // Every copy of one sequence number: (recomputed, shipped, copies).
    let mut group: Vec<(Hash, Hash, u32)> = Vec::new();
    let mut group_seq: Option<u64> = None;
    let mut flush = |seq: u64, group: &mut Vec<(Hash, Hash, u32)>, report: &mut NodeReport| {
        if group.len() > 1 {
            report.problem(Problem::Conflict { seq });
        }
        // The copy sent most often (a resend repeats the node's own row),
        // then the smallest hash, stands for the sequence number.
        group.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        let Some(&(h, shipped, _)) = group.first() else {
            return;
        };
        group.clear();
        report.rows += 1;
        if broken {
            return;
        }
        if seq != expected {
            // A gap: every missing number is named; the tree cannot be
            // folded past it.
            for s in expected..seq.min(expected + MAX_LISTED as u64) {
                report.problem(Problem::Missing { seq: s });
            }
            broken = true;
            return;
        }
        // Checkpoints at this size are checked before the row is added.
        while let Some((size, root)) = checkpoints.get(next_cp) {
            if *size != seq {
                break;
            }
            check(
                *size,
                root,
                &rows_tree,
                &shipped_tree,
                &mut suspects,
                report,
                &mut last_good,
            );
            next_cp += 1;
        }
        if h != shipped {
            suspects.push(seq);
        }
        rows_tree.push(h);
        shipped_tree.push(shipped);
        expected = seq + 1;
    };
    while !r.at_end().map_err(bad)? {
        let seq = r.u64().map_err(bad)?;
        let received = MicroTime(r.i64().map_err(bad)?);
        let cluster = r.string().map_err(bad)?;
        let raw = r.bytes().map_err(bad)?;
        let mut shipped = [0u8; 32];
        for b in shipped.iter_mut() {
            *b = r.u8().map_err(bad)?;
        }
        leaf.clear();
        kaudit_store::record::write_leaf(&cluster, &raw, received, seq, &mut leaf);
        let h = leaf_hash(&leaf);
        if group_seq != Some(seq) {
            if let Some(g) = group_seq {
                flush(g, &mut group, &mut report);
            }
            group_seq = Some(seq);
        }
        let n = group.len();
        match group.iter_mut().find(|c| c.0 == h && c.1 == shipped) {
            Some(c) => c.2 = c.2.saturating_add(1),
            None if n < MAX_COPIES => group.push((h, shipped, 1)),
            None => {}
        }
    }
    if let Some(g) = group_seq {
        flush(g, &mut group, &mut report);
    }
    if !broken {
        while let Some((size, root)) = checkpoints.get(next_cp) {
            if *size != expected {
                break;
            }
            check(
                *size,
                root,
                &rows_tree,
                &shipped_tree,
                &mut suspects,
                &mut report,
                &mut last_good,
            );
            next_cp += 1;
        }
    }
    // Checkpoints past the rows: rows missing at the end.
    if let Some((size, _)) = checkpoints.last() {
        if !broken && *size > expected {
            for s in expected..(*size).min(expected + MAX_LISTED as u64) {
                report.problem(Problem::Missing { seq: s });
            }
        }
        report.unverified_tail = report.rows.saturating_sub(*size);
    } else {
        report.unverified_tail = report.rows;
    }
    Ok(report)
}
