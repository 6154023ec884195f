//! The forwarding benchmark driver: sends every event of a store to a
//! webhook URL and prints the rate, either through a real sink (`kaudit`:
//! filter/policy path, EventList from the stored bytes, cursor fsync'd per
//! batch) or through a naive forwarder (`naive`: every event parsed into a
//! `serde_json::Value`, `kind`/`apiVersion` removed, the list re-serialized;
//! no cursor at all), the baseline.
//!
//! NATS JetStream (`URL` is `nats://host:port` of a server with JetStream):
//! `nats` runs the real NATS sink (on `async-nats`), `nats-old` the same sink
//! runner with the former hand-written text-protocol client
//! (`baseline/nats_text.rs`), the baseline; each publishes to its own stream
//! (`BENCH_NATS`, `BENCH_NATS_OLD`), created by the sink, and the run fails
//! unless the stream then holds every event.
//!
//! `forward_bench STORE_DIR URL kaudit|naive|nats|nats-old [BATCH]`

#[path = "baseline/nats_text.rs"]
mod nats_text;

use kaudit_sinks::config::{NatsConfig, SinkKind, WebhookConfig};
use kaudit_sinks::{Sink, SinkConfig};
use kaudit_store::{Followed, Follower, Store, StoreOptions};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

// The allocator the kaudit binary uses, so the sink runs as in `kaudit serve`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: forward_bench STORE_DIR URL kaudit|naive|nats|nats-old [BATCH]".into());
    }
    let (dir, url, mode) = (&args[1], &args[2], args[3].as_str());
    let batch: usize = args
        .get(4)
        .map_or(Ok(500), |b| b.parse())
        .map_err(|e| format!("BATCH: {e}"))?;
    let store = Store::open(
        std::path::Path::new(dir),
        StoreOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let n = store.len();
    let start = Instant::now();
    match mode {
        "kaudit" => {
            let state = tempfile::tempdir().map_err(|e| e.to_string())?;
            let mut cfg = SinkConfig::new(
                "bench",
                SinkKind::Webhook(WebhookConfig {
                    url: Some(url.clone()),
                    ..Default::default()
                }),
            );
            cfg.batch_max_events = batch;
            let mut sink = Sink::new(cfg, state.path()).map_err(|e| e.to_string())?;
            let stop = AtomicBool::new(false);
            while sink.cursor() < n {
                let log = Followed {
                    store: &store,
                    feed: None,
                    stop: &stop,
                };
                Follower::step(&mut sink, &log).map_err(|e| e.to_string())?;
            }
            let s = sink.stats().snapshot();
            if s.sent != n || s.retries != 0 {
                return Err(format!("unexpected: {s:?}"));
            }
        }
        "nats" | "nats-old" => {
            let state = tempfile::tempdir().map_err(|e| e.to_string())?;
            let stream = if mode == "nats" {
                "BENCH_NATS"
            } else {
                "BENCH_NATS_OLD"
            };
            let nc = NatsConfig {
                url: url.clone(),
                subject: format!("kaudit.bench.{}", stream.to_lowercase()),
                stream: Some(stream.into()),
                ..Default::default()
            };
            let mut cfg = SinkConfig::new("bench", SinkKind::Nats(nc.clone()));
            cfg.batch_max_events = batch;
            let mut sink = if mode == "nats" {
                Sink::new(cfg, state.path())
            } else {
                let dest = nats_text::Nats::new(&nc, cfg.timeout).map_err(|e| e.to_string())?;
                Sink::with_destination(cfg, state.path(), Box::new(dest))
            }
            .map_err(|e| e.to_string())?;
            let stop = AtomicBool::new(false);
            while sink.cursor() < n {
                let log = Followed {
                    store: &store,
                    feed: None,
                    stop: &stop,
                };
                Follower::step(&mut sink, &log).map_err(|e| e.to_string())?;
            }
            let secs = start.elapsed().as_secs_f64();
            let s = sink.stats().snapshot();
            if s.sent != n || s.retries != 0 {
                return Err(format!("unexpected: {s:?}"));
            }
            let stored = stream_len(url, stream)?;
            if stored != n {
                return Err(format!(
                    "stream {stream} holds {stored} messages, expected {n}"
                ));
            }
            print_rate(mode, n, secs);
            return Ok(());
        }
        "naive" => {
            let client = reqwest::blocking::Client::new();
            let mut next = 0;
            while next < n {
                let end = (next + batch as u64).min(n);
                let mut items = Vec::with_capacity(batch);
                store
                    .read(next..end, &mut |_, leaf| {
                        let mut v: serde_json::Value =
                            serde_json::from_slice(leaf.event).expect("stored events are JSON");
                        if let Some(m) = v.as_object_mut() {
                            m.remove("kind");
                            m.remove("apiVersion");
                        }
                        items.push(v);
                        true
                    })
                    .map_err(|e| e.to_string())?;
                let body = serde_json::to_vec(&serde_json::json!({
                    "kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items,
                }))
                .map_err(|e| e.to_string())?;
                let r = client
                    .post(url)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .map_err(|e| e.to_string())?;
                if !r.status().is_success() {
                    return Err(format!("HTTP {}", r.status()));
                }
                next = end;
            }
        }
        m => return Err(format!("unknown mode {m:?}")),
    }
    print_rate(mode, n, start.elapsed().as_secs_f64());
    Ok(())
}

fn print_rate(mode: &str, n: u64, secs: f64) {
    println!(
        "{{\"mode\":\"{mode}\",\"events\":{n},\"seconds\":{secs:.3},\"events_per_s\":{:.0}}}",
        n as f64 / secs
    );
}

/// Messages in a JetStream stream, asked with a separate client.
fn stream_len(url: &str, stream: &str) -> Result<u64, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let c = async_nats::connect(url).await.map_err(|e| e.to_string())?;
        let js = async_nats::jetstream::new(c);
        let mut s = js.get_stream(stream).await.map_err(|e| e.to_string())?;
        Ok(s.info().await.map_err(|e| e.to_string())?.state.messages)
    })
}
