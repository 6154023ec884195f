//! Frame size and dictionary, measured on `kaudit-gen` traffic (#21 goal 3):
//! for each setting, the segments' bytes per event, append time, and the
//! latency of a needle (one record by sequence number) and of an object
//! history (200 scattered records), warm, median of many reads. Each setting
//! is measured in the same run, so ratios between them hold on a loaded
//! machine. Also the time to train a dictionary on the default sample.
//! With a dictionary, the bench waits for it once past the training sample
//! (the time waited is left out of the append time), so sizes and latencies are
//! those of a large store's steady state.
//!
//! Run: `cargo bench -p kaudit-store --bench frames` (env BENCH_EVENTS,
//! default 200000).

use kaudit_event::MicroTime;
use kaudit_store::{RecordRef, Store, StoreOptions};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let n: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let mut cfg = kaudit_gen::GenConfig::new(1);
    cfg.events = Some(n);
    let mut g = kaudit_gen::Generator::new(cfg).expect("generator");
    let mut events: Vec<Vec<u8>> = Vec::with_capacity(n as usize);
    let mut line = Vec::new();
    while g.next_into(&mut line).is_some() {
        events.push(std::mem::take(&mut line));
    }
    let raw: usize = events.iter().map(Vec::len).sum();
    let per_event = raw / events.len().max(1);
    println!(
        "input: {} kaudit-gen events (seed 1), {:.0} B/event of JSON",
        events.len(),
        raw as f64 / events.len() as f64
    );

    // Training time on the default sample size.
    let mut sample = Vec::new();
    for e in &events {
        if sample.len() >= kaudit_store::dict::SAMPLE_BYTES {
            break;
        }
        sample.extend_from_slice(&(e.len() as u32).to_le_bytes());
        sample.extend_from_slice(e);
    }
    let t = Instant::now();
    let d = kaudit_store::dict::train(&sample).expect("train");
    println!(
        "train: {} KiB dictionary from {:.1} MiB of samples in {:.0} ms",
        d.len() >> 10,
        sample.len() as f64 / 1048576.0,
        t.elapsed().as_secs_f64() * 1e3
    );

    let settings: [(&str, usize, bool); 6] = [
        ("64 KiB, no dictionary", 64 << 10, false),
        ("16 KiB + dictionary", 16 << 10, true),
        ("32 KiB + dictionary", 32 << 10, true),
        ("64 KiB + dictionary", 64 << 10, true),
        ("16 KiB, no dictionary", 16 << 10, false),
        ("32 KiB, no dictionary", 32 << 10, false),
    ];
    // Scattered records: a needle each, and 200-record "object histories".
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let needles: Vec<u64> = (0..2000).map(|_| rnd()).collect();
    let histories: Vec<Vec<u64>> = (0..40)
        .map(|_| {
            let mut v: Vec<u64> = (0..200).map(|_| rnd()).collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    println!(
        "setting | segment B/event | append s (training wait left out) | needle µs (median) | history of 200 ms (median)"
    );
    for (name, frame, dict) in settings {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = StoreOptions {
            bundle_frame_bytes: frame,
            dictionary_sample_bytes: if dict {
                kaudit_store::dict::SAMPLE_BYTES
            } else {
                0
            },
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), opts).expect("open");
        let t = Instant::now();
        let mut settled = false;
        let mut waited = 0f64;
        for (c, chunk) in events.chunks(1000).enumerate() {
            // Past the training sample, wait for the dictionary once, so the
            // figures are the steady state of a large store (appends do not
            // wait for it; a store written for a few seconds has its first
            // megabytes without one).
            if dict
                && !settled
                && c * 1000 * per_event > kaudit_store::dict::SAMPLE_BYTES + (2 << 20)
            {
                let w = Instant::now();
                store.settle_dictionary().expect("dictionary");
                waited = w.elapsed().as_secs_f64();
                settled = true;
            }
            let refs: Vec<RecordRef<'_>> = chunk
                .iter()
                .enumerate()
                .map(|(i, e)| RecordRef {
                    cluster: "bench",
                    event: e,
                    received: MicroTime(1_767_366_245_000_000 + (c * 1000 + i) as i64),
                })
                .collect();
            store.append_refs(&refs).expect("append");
        }
        let append = t.elapsed().as_secs_f64() - waited;
        store.settle_dictionary().expect("dictionary");
        let seg: u64 = std::fs::read_dir(dir.path().join("segments"))
            .expect("segments")
            .map(|e| e.expect("entry").metadata().expect("meta").len())
            .sum();
        let mut nd = Vec::new();
        for s in &needles {
            let t = Instant::now();
            store.read_seqs(&[*s], &mut |_, _| true).expect("read");
            nd.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let mut hs = Vec::new();
        for h in &histories {
            let t = Instant::now();
            store.read_seqs(h, &mut |_, _| true).expect("read");
            hs.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "{name} | {:.1} | {append:.1} | {:.1} | {:.2}",
            seg as f64 / n as f64,
            median(nd),
            median(hs)
        );
        store.close().expect("close");
    }
}
