//! Worst append latency while the writer's duplicate filter seals and merges
//! its sorted key runs (#21 goal 4): appends `N` small records in batches of
//! `B` with a recent-key set of `R` keys, so runs are sealed every `R`
//! records and merged into ever larger runs, and prints the latency
//! distribution of `append_batch` (one fdatasync each, as an acked webhook
//! batch pays).
//!
//! `cargo run --release -p kaudit-store --example dedupe_stall -- N B R [DIR]`
//! (defaults 3000000 1000 100000; DIR defaults to a temporary directory).

use kaudit_event::MicroTime;
use kaudit_store::{Record, Store, StoreOptions};
use std::time::{Duration, Instant};

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = arg(1, 3_000_000);
    let batch = arg(2, 1000).max(1);
    let recent = arg(3, 100_000) as usize;
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = std::env::args()
        .nth(4)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let opts = StoreOptions {
        dedupe_recent_keys: recent,
        checkpoint_interval: Duration::from_secs(3600),
        ..StoreOptions::default()
    };
    let store = Store::open(&dir, opts).expect("open");
    let mut lat: Vec<Duration> = Vec::with_capacity((n / batch) as usize + 1);
    let mut worst = (Duration::ZERO, 0u64);
    let started = Instant::now();
    let mut i = 0u64;
    while i < n {
        let records: Vec<Record> = (i..(i + batch).min(n))
            .map(|j| Record {
                cluster: "c".into(),
                received: MicroTime(1_700_000_000_000_000 + j as i64),
                event: format!(
                    "{{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"auditID\":\"{j:016x}\",\"verb\":\"get\"}}"
                )
                .into_bytes(),
            })
            .collect();
        let t = Instant::now();
        let got = store.append_batch(records).expect("append");
        let d = t.elapsed();
        assert_eq!(got.duplicates, 0, "a new record was taken for a duplicate");
        if d > worst.0 {
            worst = (d, i);
        }
        lat.push(d);
        i += batch;
    }
    let total = started.elapsed();
    let stats = store.dedupe_stats().expect("stats");
    lat.sort_unstable();
    let q = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
    println!(
        "records={n} batch={batch} recent_keys={recent} appends={} total={:.1}s",
        lat.len(),
        total.as_secs_f64()
    );
    println!(
        "append latency p50={:?} p99={:?} p99.9={:?} max={:?} (at record {}) over_100ms={}",
        q(0.5),
        q(0.99),
        q(0.999),
        worst.0,
        worst.1,
        lat.iter()
            .filter(|d| **d > Duration::from_millis(100))
            .count()
    );
    println!("{stats:?}");
}
