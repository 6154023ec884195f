//! Parsing throughput: kaudit's one-pass typed decode against the obvious
//! baseline, `serde_json::from_slice::<Value>` (which builds the whole tree
//! and still has to be walked for every field).
//!
//! Input: the JSON lines in `$KAUDIT_BENCH_EVENTS` (bench/run.sh generates
//! them with `kaudit gen`), else the real events in the conformance examples.

// `criterion_group!` defines a public function it does not document.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kaudit_event::Event;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

fn corpus() -> Vec<Vec<u8>> {
    let path = std::env::var_os("KAUDIT_BENCH_EVENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/conformance/k8s/examples/v1_real_events.jsonl")
        });
    let text =
        std::fs::read(&path).unwrap_or_else(|e| panic!("bench input {}: {e}", path.display()));
    let lines: Vec<Vec<u8>> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .take(200_000)
        .map(<[u8]>::to_vec)
        .collect();
    assert!(!lines.is_empty(), "no events in {}", path.display());
    lines
}

fn value_baseline(line: &[u8]) -> usize {
    let v: serde_json::Value = serde_json::from_slice(line).expect("valid JSON");
    // Touch the same hot fields the typed decode gives for free.
    v["auditID"].as_str().map_or(0, str::len)
        + v["user"]["username"].as_str().map_or(0, str::len)
        + v["verb"].as_str().map_or(0, str::len)
        + v["objectRef"]["resource"].as_str().map_or(0, str::len)
        + v["responseStatus"]["code"].as_i64().unwrap_or(0) as usize
}

fn kaudit_parse(line: &[u8]) -> usize {
    let ev = Event::from_json(line).expect("valid event");
    ev.audit_id().len()
        + ev.user().username.len()
        + ev.verb().len()
        + ev.object_ref().map_or(0, |o| o.resource.len())
        + ev.response_code().unwrap_or(0) as usize
}

fn bench(c: &mut Criterion) {
    let lines = corpus();
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.sample_size(10);
    g.bench_function("kaudit Event::from_json", |b| {
        b.iter(|| {
            lines
                .iter()
                .map(|l| kaudit_parse(black_box(l)))
                .sum::<usize>()
        })
    });
    g.bench_function("serde_json::Value baseline", |b| {
        b.iter(|| {
            lines
                .iter()
                .map(|l| value_baseline(black_box(l)))
                .sum::<usize>()
        })
    });
    g.finish();

    // One direct side-by-side figure with the ratio, as BENCHMARKS.md records it.
    let rate = |f: &dyn Fn(&[u8]) -> usize| {
        let t = Instant::now();
        let mut n = 0usize;
        for _ in 0..3 {
            n += lines.iter().map(|l| f(l)).sum::<usize>();
        }
        black_box(n);
        (3 * lines.len()) as f64 / t.elapsed().as_secs_f64()
    };
    let ours = rate(&kaudit_parse);
    let base = rate(&value_baseline);
    println!(
        "parse: {} events, {:.0} B/event: kaudit {:.0} events/s ({:.0} MB/s), serde_json::Value {:.0} events/s, ratio {:.2}x",
        lines.len(),
        bytes as f64 / lines.len() as f64,
        ours,
        ours * bytes as f64 / lines.len() as f64 / 1e6,
        base,
        ours / base
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
