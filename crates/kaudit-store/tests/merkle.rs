//! The store's Merkle tree and proofs against an independent RFC 6962
//! implementation (tests/common), over random sizes.

mod common;
use common::*;
use kaudit_store::Store;
use proptest::prelude::*;

#[test]
fn root_matches_independent_mth_across_group_boundaries() {
    for n in [1u64, 2, 3, 255, 256, 257, 511, 512, 513, 700] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), small_opts()).unwrap();
        store.append_batch((0..n).map(record).collect()).unwrap();
        let leaves = all_leaf_data(&store);
        assert_eq!(leaves.len() as u64, n);
        for size in [1, n / 2, n - 1, n] {
            if size == 0 {
                continue;
            }
            assert_eq!(
                store.root_at(size).unwrap(),
                mth(&leaves[..size as usize]),
                "n={n} size={size}"
            );
        }
    }
}

#[test]
fn empty_tree_root_is_sha256_of_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_opts()).unwrap();
    assert_eq!(store.root_at(0).unwrap(), mth(&[]));
}

#[test]
fn proofs_survive_reopen_and_use_persisted_levels() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1300, 97, small_opts());
    let store = Store::open(dir.path(), small_opts()).unwrap();
    let leaves = all_leaf_data(&store);
    let root = store.root_at(1300).unwrap();
    assert_eq!(root, mth(&leaves));
    for m in [0usize, 255, 256, 777, 1299] {
        let p = store.inclusion_proof(m as u64, 1300).unwrap();
        assert!(check_inclusion(&leaves[m], m, 1300, &p, &root));
        // A proof for one leaf does not prove another.
        assert!(!check_inclusion(
            &leaves[(m + 1) % 1300],
            m,
            1300,
            &p,
            &root
        ));
    }
    let old_root = store.root_at(513).unwrap();
    let p = store.consistency_proof(513, 1300).unwrap();
    assert!(check_consistency(513, 1300, &old_root, &root, &p));
    let mut bad = p.clone();
    bad[0][0] ^= 1;
    assert!(!check_consistency(513, 1300, &old_root, &root, &bad));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn inclusion_and_consistency_verify_independently(
        n in 1u64..700,
        picks in proptest::collection::vec((0.0f64..1.0, 0.0f64..1.0), 4),
        batch in 1u64..300,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), small_opts()).unwrap();
        let mut i = 0;
        while i < n {
            let end = (i + batch).min(n);
            store.append_batch((i..end).map(record).collect()).unwrap();
            i = end;
        }
        let leaves = all_leaf_data(&store);
        for (a, b) in picks {
            let size = 1 + ((n - 1) as f64 * a) as u64;
            let m = ((size - 1) as f64 * b) as u64;
            let root = store.root_at(size).unwrap();
            prop_assert_eq!(root, mth(&leaves[..size as usize]));
            let p = store.inclusion_proof(m, size).unwrap();
            prop_assert!(check_inclusion(&leaves[m as usize], m as usize, size as usize, &p, &root));
            // The store's own verifier agrees.
            prop_assert!(kaudit_store::merkle::verify_inclusion(
                &kaudit_store::merkle::leaf_hash(&leaves[m as usize]), m, size, &p, &root));
            let old = 1 + m.min(size - 1);
            let old_root = store.root_at(old).unwrap();
            let c = store.consistency_proof(old, size).unwrap();
            prop_assert!(check_consistency(old as usize, size as usize, &old_root, &root, &c));
            prop_assert!(kaudit_store::merkle::verify_consistency(old, size, &old_root, &root, &c));
        }
    }
}
