//! The runner's invariant, under any mix of destination behaviour (whole
//! batch failures, items to retry, items refused for good) and any batch
//! size: every stored event ends up either acknowledged by the destination
//! or in the dead-letter file with its reason (never both, never neither),
//! the counters say so, and the cursor reaches the end of the log.

mod common;

use common::*;
use kaudit_sinks::config::{SinkKind, WebhookConfig};
use kaudit_sinks::state::DeadLetter;
use kaudit_sinks::{Checkpoint, Delivery, Destination, Outgoing, Sink, SinkConfig, SinkError};
use kaudit_store::{Followed, Follower};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A destination whose answers are drawn from a seeded generator.
struct Scripted {
    rng: rand_chacha::ChaCha8Rng,
    fail_pct: u32,
    retry_pct: u32,
    reject_pct: u32,
    taken: Arc<Mutex<Vec<u64>>>,
    refused: Arc<Mutex<Vec<u64>>>,
}

impl Destination for Scripted {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn send(&mut self, batch: &[Outgoing]) -> Result<Delivery, SinkError> {
        assert!(!batch.is_empty(), "never an empty batch");
        if self.rng.gen_range(0..100) < self.fail_pct {
            return Err(SinkError::Transport("scripted failure".into()));
        }
        let mut d = Delivery::default();
        for (i, o) in batch.iter().enumerate() {
            let r = self.rng.gen_range(0..100);
            if r < self.retry_pct {
                d.retry.push(i);
            } else if r < self.retry_pct + self.reject_pct {
                d.rejected.push((i, format!("refused {}", o.seq)));
                self.refused.lock().unwrap().push(o.seq);
            } else {
                self.taken.lock().unwrap().push(o.seq);
            }
        }
        Ok(d)
    }

    fn send_checkpoint(&mut self, _: &Checkpoint) -> Result<(), SinkError> {
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_event_is_taken_or_dead_lettered_exactly_once(
        seed in any::<u64>(),
        events in 1u64..400,
        batch in 1usize..120,
        fail_pct in 0u32..40,
        retry_pct in 0u32..30,
        reject_pct in 0u32..20,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        append(&store, "c1", &generated(events, seed));
        let taken = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let dest = Scripted {
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            fail_pct,
            retry_pct,
            reject_pct,
            taken: taken.clone(),
            refused: refused.clone(),
        };
        let mut cfg = SinkConfig::new("p", SinkKind::Webhook(WebhookConfig { url: Some("http://unused/".into()), ..Default::default() }));
        cfg.batch_max_events = batch;
        cfg.batch_timeout = Duration::from_millis(1);
        cfg.backoff_start = Duration::from_millis(1);
        cfg.backoff_max = Duration::from_millis(2);
        let mut sink = Sink::with_destination(cfg, dir.path(), Box::new(dest)).unwrap();
        let stop = AtomicBool::new(false);
        let log = Followed { store: &store, feed: None, stop: &stop };
        while sink.cursor() < events {
            Follower::step(&mut sink, &log).unwrap();
        }
        let taken: Vec<u64> = taken.lock().unwrap().clone();
        let refused: Vec<u64> = refused.lock().unwrap().clone();
        let taken_set: HashSet<u64> = taken.iter().copied().collect();
        let refused_set: HashSet<u64> = refused.iter().copied().collect();
        prop_assert_eq!(taken.len(), taken_set.len(), "nothing taken twice");
        prop_assert_eq!(refused.len(), refused_set.len(), "nothing refused twice");
        prop_assert!(taken_set.is_disjoint(&refused_set));
        let all: HashSet<u64> = (0..events).collect();
        prop_assert_eq!(taken_set.union(&refused_set).copied().collect::<HashSet<u64>>(), all);
        let dead: Vec<DeadLetter> = std::fs::read_to_string(dir.path().join("sinks/p.dead"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        prop_assert_eq!(dead.iter().map(|d| d.seq).collect::<HashSet<u64>>(), refused_set.clone());
        for d in &dead {
            prop_assert_eq!(&d.reason, &format!("refused {}", d.seq));
            prop_assert_eq!(dedupe_id(d.event.as_bytes()).is_empty(), false);
        }
        let s = sink.stats().snapshot();
        prop_assert_eq!((s.sent, s.failed, s.cursor), (taken.len() as u64, refused.len() as u64, events));
        let saved = kaudit_sinks::SinkDir::new(dir.path()).load("p").unwrap();
        prop_assert_eq!((saved.next, saved.sent, saved.failed), (events, s.sent, s.failed));
    }
}
