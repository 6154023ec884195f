//! Helpers shared by the store's integration tests: synthetic events and an
//! RFC 6962 implementation written from the RFC's recursive definitions,
//! separate from the store's own code.
#![allow(dead_code)]

use kaudit_event::{EventDoc, Level, MicroTime, ObjectRef, ResponseStatus, Stage, UserInfo};
use kaudit_store::{Record, Store, StoreOptions};
use sha2::{Digest, Sha256};
use std::path::Path;

/// A deterministic synthetic v1 event line, encoded as kube-apiserver does.
pub fn event(i: u64) -> Vec<u8> {
    let verbs = [
        "get", "list", "watch", "create", "update", "delete", "patch",
    ];
    let doc = EventDoc {
        level: Level::Metadata,
        audit_id: format!(
            "{:08x}-0000-4000-8000-{:012x}",
            i.wrapping_mul(2654435761) as u32,
            i
        ),
        stage: Some(Stage::ResponseComplete),
        request_uri: format!("/api/v1/namespaces/ns-{}/pods/pod-{}", i % 17, i % 101),
        verb: verbs[(i % 7) as usize].to_string(),
        user: UserInfo {
            username: format!("system:serviceaccount:kube-system:ctrl-{}", i % 13),
            groups: vec![
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ],
            ..Default::default()
        },
        source_ips: vec![format!("10.0.{}.{}", i % 7, i % 251)],
        user_agent: "kube-controller-manager/v1.31.0 (linux/amd64) kubernetes/abcdef0".into(),
        object_ref: Some(ObjectRef {
            resource: "pods".into(),
            namespace: format!("ns-{}", i % 17),
            name: format!("pod-{}", i % 101),
            api_version: "v1".into(),
            ..Default::default()
        }),
        response_status: Some(ResponseStatus::new(200, "", "", "")),
        request_received_timestamp: Some(MicroTime(1_767_366_245_000_000 + i as i64 * 1000)),
        stage_timestamp: Some(MicroTime(1_767_366_245_000_000 + i as i64 * 1000 + 731)),
        ..Default::default()
    };
    kaudit_event::Event::from_doc(doc).bytes().to_vec()
}

/// A record for event `i`.
pub fn record(i: u64) -> Record {
    Record {
        cluster: "test-cluster".into(),
        received: MicroTime(1_767_366_245_000_000 + i as i64 * 1000),
        event: event(i),
    }
}

/// Options with small bundles and segments, so tests cross every boundary.
pub fn small_opts() -> StoreOptions {
    StoreOptions {
        bundle_max_records: 50,
        segment_target_bytes: 16 << 10,
        checkpoint_interval: std::time::Duration::ZERO,
        ..StoreOptions::default()
    }
}

/// Fills a store with `n` records in batches of `batch`, then closes it.
pub fn fill(dir: &Path, n: u64, batch: u64, opts: StoreOptions) {
    let store = Store::open(dir, opts).unwrap();
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        store.append_batch((i..end).map(record).collect()).unwrap();
        store.maybe_checkpoint().unwrap();
        i = end;
    }
    store.close().unwrap();
}

pub type H = [u8; 32];

pub fn sha(parts: &[&[u8]]) -> H {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// RFC 6962 section 2.1: MTH over leaf data.
pub fn mth(leaves: &[Vec<u8>]) -> H {
    match leaves.len() {
        0 => sha(&[]),
        1 => sha(&[&[0u8], &leaves[0]]),
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            sha(&[&[1u8], &mth(&leaves[..k]), &mth(&leaves[k..])])
        }
    }
}

fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// Recomputes the root from a leaf hash and its audit path, following the
/// recursive structure of RFC 6962 PATH(m, D[n]).
fn incl_root(m: usize, n: usize, leaf: H, proof: &[H]) -> Option<H> {
    if n == 1 {
        return proof.is_empty().then_some(leaf);
    }
    let (last, rest) = proof.split_last()?;
    let k = split(n);
    if m < k {
        Some(sha(&[&[1u8], &incl_root(m, k, leaf, rest)?, last]))
    } else {
        Some(sha(&[&[1u8], last, &incl_root(m - k, n - k, leaf, rest)?]))
    }
}

/// Independent inclusion check.
pub fn check_inclusion(leaf_data: &[u8], m: usize, n: usize, proof: &[H], root: &H) -> bool {
    m < n && incl_root(m, n, sha(&[&[0u8], leaf_data]), proof).as_ref() == Some(root)
}

/// Follows RFC 6962 SUBPROOF(m, D[n], b): returns (hash of the old tree's
/// part, hash of the new tree's part) for this subtree.
fn cons(m: usize, n: usize, b: bool, proof: &[H], old_root: &H) -> Option<(H, H)> {
    if m == n {
        return if b {
            proof.is_empty().then_some((*old_root, *old_root))
        } else {
            (proof.len() == 1).then(|| (proof[0], proof[0]))
        };
    }
    let (last, rest) = proof.split_last()?;
    let k = split(n);
    if m <= k {
        let (o, nl) = cons(m, k, b, rest, old_root)?;
        Some((o, sha(&[&[1u8], &nl, last])))
    } else {
        let (o, nr) = cons(m - k, n - k, false, rest, old_root)?;
        Some((sha(&[&[1u8], last, &o]), sha(&[&[1u8], last, &nr])))
    }
}

/// Independent consistency check.
pub fn check_consistency(old: usize, new: usize, old_root: &H, new_root: &H, proof: &[H]) -> bool {
    if old == 0 || old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    matches!(cons(old, new, true, proof, old_root), Some((o, n)) if &o == old_root && &n == new_root)
}

/// Leaf data of every stored record, read back.
pub fn all_leaf_data(store: &Store) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    store
        .read(0..u64::MAX, &mut |_, l| {
            out.push(l.data.to_vec());
            true
        })
        .unwrap();
    out
}
