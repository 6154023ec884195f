//! Throughput of the compiled engine with Falco's full k8s_audit_rules.yaml
//! (48 rules) over `kaudit gen` traffic, against a naive interpreter over
//! serde_json::Value in the same run. Prints events/s and the ratio, then
//! runs the criterion benchmarks.
//!
//!   cargo bench -p kaudit-rules --bench engine

// `criterion_group!` defines a public function it does not document.
#![allow(missing_docs)]

#[path = "naive/mod.rs"]
mod naive;

use criterion::{black_box, criterion_group, Criterion, Throughput};
use kaudit_event::Event;
use kaudit_gen::{GenConfig, Generator};
use kaudit_rules::{Engine, EngineBuilder, EngineOptions, MatchMode};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

const EVENTS: u64 = 50_000;

fn rules_file() -> PathBuf {
    let dir = match std::env::var_os("KAUDIT_CONFORMANCE") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
    };
    let f = dir.join("falco/k8s_audit_rules.yaml");
    assert!(
        f.is_file(),
        "conformance data not found: {} (set KAUDIT_CONFORMANCE)",
        f.display()
    );
    f
}

struct Setup {
    engine: Engine,
    lines: Vec<Vec<u8>>,
    events: Vec<Event>,
    values: Vec<Value>,
}

fn setup() -> Setup {
    let mut b = EngineBuilder::new(EngineOptions::default());
    b.add_file(&rules_file()).expect("rules load");
    let (engine, _) = b.build().expect("rules compile");
    let mut config = GenConfig::new(7);
    config.events = Some(EVENTS);
    config.spread_incidents();
    let mut g = Generator::new(config).expect("generator");
    let mut lines = Vec::new();
    let mut line = Vec::new();
    while g.next_into(&mut line).is_some() {
        lines.push(std::mem::take(&mut line));
    }
    let events: Vec<Event> = lines
        .iter()
        .map(|l| Event::from_json(l).expect("event"))
        .collect();
    let values: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_slice(l).expect("json"))
        .collect();
    Setup {
        engine,
        lines,
        events,
        values,
    }
}

fn engine_pass(s: &Setup) -> usize {
    let mut hits = Vec::new();
    let mut n = 0;
    for e in &s.events {
        hits.clear();
        s.engine.matching_rules(e, MatchMode::First, &mut hits);
        n += hits.len();
    }
    n
}

fn naive_pass(s: &Setup, rules: &[(&str, &kaudit_rules::Ast)]) -> usize {
    s.values
        .iter()
        .filter(|v| naive::first_match(rules, v).is_some())
        .count()
}

/// CPU time consumed by this thread, in seconds: on a shared machine it
/// measures events per second of one core, whatever else is running.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Best of five passes: (events per wall second, events per CPU second).
fn rate(n: usize, f: impl Fn() -> usize) -> (f64, f64) {
    let _ = f();
    let (mut wall, mut cpu) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let t = Instant::now();
        let c = thread_cpu_secs();
        black_box(f());
        cpu = cpu.min(thread_cpu_secs() - c);
        wall = wall.min(t.elapsed().as_secs_f64());
    }
    (n as f64 / wall, n as f64 / cpu)
}

fn report(s: &Setup) {
    let rules = s.engine.falco_conditions();
    // The two must agree before their speed means anything.
    let mut hits = Vec::new();
    for (e, v) in s.events.iter().zip(&s.values) {
        hits.clear();
        s.engine.matching_rules(e, MatchMode::First, &mut hits);
        assert_eq!(
            hits.first().copied(),
            naive::first_match(&rules, v),
            "engine and naive disagree on {}",
            e.audit_id()
        );
    }
    let n = s.events.len();
    let eng = rate(n, || engine_pass(s));
    let nai = rate(n, || naive_pass(s, &rules));
    let eng_parse = rate(n, || {
        let mut hits = Vec::new();
        let mut c = 0;
        for l in &s.lines {
            let e = Event::from_json(l).expect("event");
            hits.clear();
            s.engine.matching_rules(&e, MatchMode::First, &mut hits);
            c += hits.len();
        }
        c
    });
    let nai_parse = rate(n, || {
        s.lines
            .iter()
            .filter(|l| {
                let v: Value = serde_json::from_slice(l).expect("json");
                naive::first_match(&rules, &v).is_some()
            })
            .count()
    });
    println!(
        "k8s_audit_rules.yaml: {} rules, {} distinct fields; {} kaudit gen events",
        s.engine.rule_count(),
        s.engine.field_count(),
        n
    );
    for (what, e, nv) in [
        ("evaluate only ", eng, nai),
        ("parse+evaluate", eng_parse, nai_parse),
    ] {
        println!(
            "{what}: engine {:>8.0} ev/s ({:>8.0} per CPU-s) | naive {:>8.0} ev/s ({:>8.0} per CPU-s) | ratio {:.1}x",
            e.0,
            e.1,
            nv.0,
            nv.1,
            e.1 / nv.1
        );
    }
}

fn benches(c: &mut Criterion) {
    let s = setup();
    report(&s);
    let rules = s.engine.falco_conditions();
    let mut g = c.benchmark_group("k8s_audit_rules");
    g.throughput(Throughput::Elements(s.events.len() as u64));
    g.sample_size(10);
    g.bench_function("engine", |b| b.iter(|| engine_pass(&s)));
    g.bench_function("naive_serde_json_value", |b| {
        b.iter(|| naive_pass(&s, &rules))
    });
    g.finish();
}

criterion_group!(group, benches);

fn main() {
    // KAUDIT_PROFILE_ENGINE=SECS: only run the compiled engine for that long (for perf).
    if let Some(secs) = std::env::var("KAUDIT_PROFILE_ENGINE")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        let s = setup();
        let c = thread_cpu_secs();
        let t = Instant::now();
        let mut passes = 0u64;
        while t.elapsed().as_secs() < secs {
            black_box(engine_pass(&s));
            passes += 1;
        }
        let n = (passes * s.events.len() as u64) as f64;
        println!(
            "engine only: {:.0} ev/s, {:.0} per CPU-s",
            n / t.elapsed().as_secs_f64(),
            n / (thread_cpu_secs() - c)
        );
        return;
    }
    group();
    Criterion::default().configure_from_args().final_summary();
}
