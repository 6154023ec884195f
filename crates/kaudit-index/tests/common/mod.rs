//! Shared fixtures: a store filled with kaudit-gen traffic.
#![allow(dead_code)]

use kaudit_event::MicroTime;
use kaudit_store::{Record, Store, StoreOptions};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub incidents: Vec<kaudit_gen::Incident>,
}

/// `n` generated events over two clusters (incidents spread through them)
/// imported into a fresh store.
pub fn store_with(n: u64, seed: u64) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open store");
    let mut cfg = kaudit_gen::GenConfig::new(seed);
    cfg.events = Some(n);
    cfg.clusters = kaudit_gen::default_cluster_names(2);
    cfg.spread_incidents();
    let mut g = kaudit_gen::Generator::new(cfg).expect("generator");
    let names = g.cluster_names().to_vec();
    let mut tx = store.transaction().expect("tx");
    let mut line = Vec::new();
    let mut i = 0i64;
    while let Some(c) = g.next_into(&mut line) {
        let rec = Record {
            cluster: names[c].clone(),
            received: MicroTime(1_800_000_000_000_000 + i),
            event: line.clone(),
        };
        tx.push(&rec).expect("push");
        line.clear();
        i += 1;
    }
    tx.commit().expect("commit");
    let incidents = g.incidents().to_vec();
    Fixture {
        dir,
        store,
        incidents,
    }
}
