//! Generation throughput: the byte-writing fast path against a baseline that
//! builds and encodes a `kaudit_event::EventDoc` per event (what a naive
//! generator on the event model would do). Prints events/s and the ratio.

// `criterion_group!` defines a public function it does not document.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, Criterion, Throughput};
use kaudit_event::{Event, EventDoc};
use kaudit_gen::{GenConfig, Generator};
use std::time::Instant;

const EVENTS: u64 = 200_000;

fn config() -> GenConfig {
    let mut c = GenConfig::new(1);
    c.events = Some(EVENTS);
    c.spread_incidents();
    c
}

fn fast_path() -> u64 {
    let mut g = Generator::new(config()).unwrap();
    let mut buf = Vec::with_capacity(1 << 20);
    let mut bytes = 0u64;
    while g.next_into(&mut buf).is_some() {
        buf.push(b'\n');
        if buf.len() > 1 << 20 {
            bytes += buf.len() as u64;
            buf.clear();
        }
    }
    bytes + buf.len() as u64
}

fn docs() -> Vec<EventDoc> {
    Generator::new(config())
        .unwrap()
        .map(|e| e.event().unwrap().into_doc())
        .collect()
}

/// Baseline: build each document (a clone allocates its strings and maps,
/// as constructing it would) and encode it with `EventDoc::encode`.
fn doc_path(docs: &[EventDoc]) -> u64 {
    let mut bytes = 0u64;
    for d in docs {
        bytes += Event::from_doc(d.clone()).bytes().len() as u64 + 1;
    }
    bytes
}

fn bench(c: &mut Criterion) {
    let docs = docs();
    let mut group = c.benchmark_group("gen");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("next_into (fast path)", |b| {
        b.iter(|| black_box(fast_path()))
    });
    group.bench_function("EventDoc build+encode (baseline)", |b| {
        b.iter(|| black_box(doc_path(&docs)))
    });
    group.finish();
}

fn summary() {
    let docs = docs();
    let best = |f: &dyn Fn() -> u64| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                black_box(f());
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let fast = best(&|| fast_path());
    let naive = best(&|| doc_path(&docs));
    let bytes = fast_path();
    println!(
        "gen summary: fast path {:.0} events/s ({:.0} MB/s), EventDoc build+encode baseline {:.0} events/s, ratio {:.2}x",
        EVENTS as f64 / fast,
        bytes as f64 / fast / 1e6,
        EVENTS as f64 / naive,
        naive / fast
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    summary();
    Criterion::default().configure_from_args().final_summary();
}
