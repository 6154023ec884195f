//! Store benchmark on `kaudit-gen` traffic, each figure next to a baseline
//! measured in the same run:
//!
//! * durable import (parse, hash, compress, write, fdatasync) vs zstd -3 of
//!   the same bytes alone, and vs a naive append that fsyncs every event;
//! * on-disk size (data + tree + checkpoints) vs the raw JSON lines and zstd -3;
//! * verify throughput vs plain SHA-256 over the same event bytes.
//!
//! Run: `cargo bench -p kaudit-store --bench store` (env BENCH_EVENTS, default 300000).

use kaudit_store::verify::{verify, VerifyOptions};
use kaudit_store::{Store, StoreOptions};
use std::io::Write;
use std::time::Instant;

fn main() {
    let n: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let mut cfg = kaudit_gen::GenConfig::new(7);
    cfg.events = Some(n);
    let mut g = kaudit_gen::Generator::new(cfg).expect("generator");
    let mut raw = Vec::new();
    let mut line = Vec::new();
    while g.next_into(&mut line).is_some() {
        raw.extend_from_slice(&line);
        raw.push(b'\n');
        line.clear();
    }
    let raw_len = raw.len() as f64;
    println!(
        "input: {n} kaudit-gen events, {:.1} MB of JSON lines ({:.0} B/event)",
        raw_len / 1e6,
        raw_len / n as f64
    );

    // Baseline: zstd -3 of the same bytes in 1 MiB blocks (compression alone).
    let t = Instant::now();
    let mut zsize = 0usize;
    let mut c = zstd::bulk::Compressor::new(3).expect("zstd");
    for block in raw.chunks(1 << 20) {
        zsize += c.compress(block).expect("compress").len();
    }
    let zstd_secs = t.elapsed().as_secs_f64();
    let whole = zstd::bulk::compress(&raw, 3).expect("zstd").len();

    // Profile of the pieces, one core each.
    let lines: Vec<&[u8]> = raw
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let per = |secs: f64| secs * 1e6 / n as f64;
    let t = Instant::now();
    for l in &lines {
        std::hint::black_box(kaudit_event::Event::from_json(l).expect("event"));
    }
    let parse = per(t.elapsed().as_secs_f64());
    let t = Instant::now();
    for l in &lines {
        std::hint::black_box(kaudit_store::merkle::leaf_hash(l));
    }
    let hash = per(t.elapsed().as_secs_f64());
    let t = Instant::now();
    let mut c1 = zstd::bulk::Compressor::new(1).expect("zstd");
    for block in raw.chunks(1 << 20) {
        std::hint::black_box(c1.compress(block).expect("compress"));
    }
    let z1 = per(t.elapsed().as_secs_f64());
    println!(
        "profile (µs/event, one core): parse {parse:.2}, leaf hash (+dedupe key, same pass) {hash:.2}, zstd -1 (store default) {z1:.2}, zstd -3 {:.2}",
        per(zstd_secs)
    );

    // The store: durable import through one transaction.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let t = Instant::now();
    let mut tx = store.transaction().expect("tx");
    let received = kaudit_event::MicroTime::now();
    for l in raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let ev = kaudit_event::Event::from_json(l).expect("event");
        tx.push_parts("prod-eu-west-1", ev.bytes(), received)
            .expect("push");
    }
    tx.commit().expect("commit");
    store.checkpoint().expect("checkpoint");
    let import_secs = t.elapsed().as_secs_f64();
    drop(store);
    println!(
        "import (parse+hash+compress+fsync, 1 thread): {:.0} events/s, {:.1} MB/s; zstd -3 alone: {:.1} MB/s; store/zstd time ratio {:.2}",
        n as f64 / import_secs,
        raw_len / import_secs / 1e6,
        raw_len / zstd_secs / 1e6,
        import_secs / zstd_secs
    );

    // Naive durable append: one fdatasync per event (sampled).
    let sample = 2000usize;
    let f = dir.path().join("naive.log");
    let mut file = std::fs::File::create(&f).expect("naive");
    let t = Instant::now();
    for l in raw.split(|&b| b == b'\n').take(sample) {
        file.write_all(l).expect("write");
        file.write_all(b"\n").expect("write");
        file.sync_data().expect("sync");
    }
    let naive_rate = sample as f64 / t.elapsed().as_secs_f64();
    println!(
        "naive append with fdatasync per event: {naive_rate:.0} events/s; store is {:.0}x faster",
        (n as f64 / import_secs) / naive_rate
    );

    // Size.
    let size_of = |p: std::path::PathBuf| -> u64 {
        std::fs::read_dir(&p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    };
    let data = size_of(dir.path().join("segments"));
    let tree = size_of(dir.path().join("tree"));
    let cps = std::fs::metadata(dir.path().join("checkpoints.jsonl"))
        .map(|m| m.len())
        .unwrap_or(0);
    let total = (data + tree + cps) as f64;
    println!(
        "on disk: data {data} + tree {tree} + checkpoints {cps} = {:.2}% of raw ({:.1}x); zstd -3 1MiB blocks {:.2}%, zstd -3 whole {:.2}%",
        100.0 * total / raw_len,
        raw_len / total,
        100.0 * zsize as f64 / raw_len,
        100.0 * whole as f64 / raw_len
    );

    // Verify vs plain SHA-256 over the same bytes.
    let t = Instant::now();
    let h = kaudit_store::merkle::sha256(&[&raw]);
    let sha_secs = t.elapsed().as_secs_f64();
    std::hint::black_box(h);
    let rep = verify(dir.path(), &VerifyOptions::default()).expect("verify");
    assert!(rep.ok(), "{:?}", rep.problems);
    println!(
        "verify: {:.2} GB/s of event bytes, {:.0} events/s ({} threads); one-thread SHA-256 over the raw bytes: {:.2} GB/s; ratio {:.2}",
        rep.bytes_per_sec() / 1e9,
        rep.records_per_sec(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        raw_len / sha_secs / 1e9,
        rep.bytes_per_sec() / (raw_len / sha_secs)
    );
}
