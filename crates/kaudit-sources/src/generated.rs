//! Generated traffic as a source: realistic kube-apiserver events from
//! `kaudit-gen`, timestamped now and paced to a rate, for `kaudit serve
//! --demo` (a console with something in it, detections firing) and for
//! soak tests. It goes through the same ingest pipeline as real traffic.

use crate::pipeline::Ingestor;
use crate::source::Source;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Live generated events at `rate` per second, over two clusters, with an
/// incident about every 30 seconds.
pub struct GeneratedSource {
    rate: u32,
}

impl GeneratedSource {
    /// A source of `rate` events per second (at least 1).
    pub fn new(rate: u32) -> GeneratedSource {
        GeneratedSource { rate: rate.max(1) }
    }
}

impl Source for GeneratedSource {
    fn name(&self) -> &str {
        "demo"
    }

    fn run(self: Box<Self>, ingest: Arc<Ingestor>, stop: Arc<AtomicBool>) {
        let rate = self.rate;
        let mut cfg = kaudit_gen::GenConfig::new(u64::from(rate) ^ 0x6b61_7564_6974);
        cfg.clusters = kaudit_gen::default_cluster_names(2);
        cfg.start = kaudit_event::MicroTime::now();
        cfg.rate = f64::from(rate);
        cfg.incident_every = u64::from(rate) * 30;
        let names: Vec<String> = cfg.clusters.clone();
        let mut gen = match kaudit_gen::Generator::new(cfg) {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "demo generator failed to start");
                return;
            }
        };
        let tick = Duration::from_millis(250);
        let per_tick = (rate as usize / 4).max(1);
        let started = Instant::now();
        let mut sent = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let mut by_cluster: Vec<Vec<kaudit_event::Event>> = vec![Vec::new(); names.len()];
            for _ in 0..per_tick {
                let Some(g) = gen.next() else { return };
                if let Ok(ev) = g.event() {
                    by_cluster[g.cluster].push(ev);
                }
            }
            for (i, evs) in by_cluster.into_iter().enumerate() {
                if evs.is_empty() {
                    continue;
                }
                sent += evs.len();
                if let Err(e) = ingest.ingest_events(evs, Vec::new(), &names[i], "demo") {
                    tracing::warn!(error = %e, "demo ingest failed");
                }
            }
            // Pace to the wall clock so the generated timestamps stay near now.
            let due = started + Duration::from_secs_f64(sent as f64 / f64::from(rate));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait.min(tick * 4));
            }
        }
    }
}
