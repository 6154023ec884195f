//! Timing of the latency part of `stats --by F --latency` when the kept
//! sorted runs do not apply (the 100M-row fallback of #21 goal 4): gathering
//! every sample per group then selecting, against counting per bucket and
//! gathering only the ranks' buckets, alternated in the same run over the
//! same columns; both answers are checked equal.
//!
//! Run: `BENCH_ROWS=20000000 cargo test --release -p kaudit-index --test latency_bench -- --ignored --nocapture`

use kaudit_index::latency::{percentiles, resolve, GroupLatency, SlotHist};
use std::time::Instant;

/// Groups (resource values), skewed: a few take most rows, as in audit logs.
const GROUPS: usize = 300;

fn columns(rows: usize) -> (Vec<u16>, Vec<u32>) {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut ids = Vec::with_capacity(rows);
    let mut lat = Vec::with_capacity(rows);
    for _ in 0..rows {
        let r = next();
        // Squared uniform: group 1 far more common than group 300.
        let u = (r & 0xFFFF) as f64 / 65536.0;
        ids.push(1 + (u * u * (GROUPS as f64 - 1.0)) as u16);
        // Log-uniform-ish latencies from 100 µs to ~100 ms, a few slow.
        let e = 7 + ((r >> 16) % 10) as u32;
        let l = (1u32 << e) + ((r >> 32) as u32 & ((1 << e) - 1));
        lat.push(if (r >> 60) == 0 {
            l.saturating_mul(50)
        } else {
            l
        });
    }
    (ids, lat)
}

fn gather_all(ids: &[u16], lat: &[u32]) -> Vec<Option<kaudit_index::stats::Latency>> {
    let mut samples: Vec<Vec<u32>> = vec![Vec::new(); GROUPS + 1];
    for (&id, &l) in ids.iter().zip(lat) {
        samples[id as usize].push(l);
    }
    samples.into_iter().map(percentiles).collect()
}

fn two_passes(ids: &[u16], lat: &[u32]) -> Vec<Option<kaudit_index::stats::Latency>> {
    let t = Instant::now();
    let mut hist = SlotHist::new(GROUPS + 1, lat.len()).expect("fits");
    for (&id, &l) in ids.iter().zip(lat) {
        hist.add(id as usize, l);
    }
    eprintln!("pass 1 {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let mut groups: Vec<GroupLatency> = (0..=GROUPS)
        .map(|s| GroupLatency {
            slots: vec![s as u32],
            ..GroupLatency::default()
        })
        .collect();
    resolve(&hist, groups.iter_mut(), |want| {
        let t = Instant::now();
        let _guard = Defer(t);
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); GROUPS + 1];
        for (&id, &l) in ids.iter().zip(lat) {
            if want.wants(id as usize, l) {
                out[id as usize].push(l);
            }
        }
        out
    });
    groups.into_iter().map(GroupLatency::percentiles).collect()
}

#[test]
#[ignore = "timing; run with --release --ignored"]
fn gather_vs_two_passes() {
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000_000);
    let (ids, lat) = columns(rows);
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        let a = gather_all(&ids, &lat);
        old.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let b = two_passes(&ids, &lat);
        new.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(a, b);
        assert!(a.iter().flatten().count() > GROUPS / 2);
    }
    old.sort_by(f64::total_cmp);
    new.sort_by(f64::total_cmp);
    println!(
        "{rows} rows, {GROUPS} groups: gather+select p50 {:.0} ms (runs {old:.0?}), two passes p50 {:.0} ms (runs {new:.0?}), ratio {:.2}",
        old[1],
        new[1],
        new[1] / old[1]
    );
}

struct Defer(Instant);
impl Drop for Defer {
    fn drop(&mut self) {
        eprintln!("pass 2 {:.0} ms", self.0.elapsed().as_secs_f64() * 1e3);
    }
}
