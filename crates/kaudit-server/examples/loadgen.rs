//! A load generator shaped like kube-apiserver's webhook backend: POSTs
//! `audit.k8s.io/v1` EventList batches (400 events by default) from a JSON
//! lines file, from N concurrent senders, optionally paced to a target rate,
//! and reports events/s and acknowledgement latency percentiles.
//!
//! `cargo run --release -p kaudit-server --example loadgen -- URL FILE [--senders 8] [--batch 400] [--rate EPS] [--seconds S]`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: loadgen URL FILE [--senders 8] [--batch 400] [--rate EPS] [--seconds S]");
        std::process::exit(2);
    }
    let (url, file) = (args[1].clone(), args[2].clone());
    let senders: usize = arg(&args, "--senders", 8);
    let batch: usize = arg(&args, "--batch", 400);
    let rate: f64 = arg(&args, "--rate", 0.0);
    let seconds: f64 = arg(&args, "--seconds", 0.0);
    let text = std::fs::read(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    // Pre-build the bodies: what the apiserver sends (items without kind/apiVersion).
    let bodies: Vec<Vec<u8>> = lines
        .chunks(batch)
        .map(|chunk| {
            let docs: Vec<kaudit_event::EventDoc> = chunk
                .iter()
                .filter_map(|l| kaudit_event::Event::from_json(l).ok().map(|e| e.into_doc()))
                .collect();
            kaudit_event::encode_event_list(docs.iter())
        })
        .collect();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let per_batch_interval = if rate > 0.0 {
        Some(Duration::from_secs_f64(batch as f64 / rate))
    } else {
        None
    };
    let threads: Vec<_> = (0..senders)
        .map(|_| {
            let (bodies, next, latencies, errors, url) = (
                bodies.clone(),
                next.clone(),
                latencies.clone(),
                errors.clone(),
                url.clone(),
            );
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .expect("client");
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let body = if seconds > 0.0 {
                        if start.elapsed().as_secs_f64() > seconds {
                            break;
                        }
                        &bodies[i % bodies.len()]
                    } else if i < bodies.len() {
                        &bodies[i]
                    } else {
                        break;
                    };
                    if let Some(iv) = per_batch_interval {
                        let due = start + iv * i as u32;
                        if let Some(w) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(w);
                        }
                    }
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .body(body.clone())
                        .send();
                    match r {
                        Ok(r) if r.status().is_success() => mine.push(t.elapsed()),
                        Ok(r) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            if r.status().as_u16() == 429 || r.status().as_u16() == 503 {
                                std::thread::sleep(Duration::from_millis(100));
                            }
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(mine);
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let wall = start.elapsed().as_secs_f64();
    let mut lat = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    lat.sort();
    let ok = lat.len();
    let pct = |p: f64| {
        lat.get(((ok as f64 * p) as usize).min(ok.saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "loadgen: {} batches of {batch} acknowledged ({} events) in {wall:.2}s = {:.0} events/s with {senders} senders; ack latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} errors",
        ok,
        ok * batch,
        (ok * batch) as f64 / wall,
        pct(0.5),
        pct(0.99),
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        errors.load(Ordering::Relaxed)
    );
}
