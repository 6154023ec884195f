//! The detector as a store follower: every stored event is evaluated by the
//! loaded rules; alerts are appended (fsync'd) to the [`AlertLog`] before the
//! detector's position moves, so a crash re-evaluates rather than misses.

use crate::{AlertLog, DetectConfig, DetectError, StoredAlert};
use kaudit_metrics::{Counter, Metrics};
use kaudit_rules::{Engine, MatchMode};
use kaudit_store::{FollowError, Followed, Follower};
use std::sync::Arc;

/// Alerts raised, by rule and priority.
pub static ALERTS_RAISED: Counter<2> = Counter {
    name: "kaudit_alerts_total",
    help: "Alerts raised by live detection, by rule and priority.",
    labels: ["rule", "priority"],
};

/// Most records evaluated per step (between two position saves).
const STEP_RECORDS: u64 = 2000;

/// Live detection over the store. See the [module docs](self).
pub struct Detector {
    engine: Engine,
    mode: MatchMode,
    log: AlertLog,
    next: u64,
    metrics: Arc<Metrics>,
}

impl Detector {
    /// A detector with `engine`, keeping alerts in `log` and resuming from
    /// the position saved there.
    pub fn new(
        engine: Engine,
        cfg: &DetectConfig,
        log: AlertLog,
        metrics: Arc<Metrics>,
    ) -> Result<Detector, DetectError> {
        let next = log.cursor()?;
        Ok(Detector {
            engine,
            mode: if cfg.all_matches {
                MatchMode::All
            } else {
                MatchMode::First
            },
            log,
            next,
            metrics,
        })
    }
}

impl Follower for Detector {
    fn name(&self) -> &str {
        "detect"
    }

    fn position(&self) -> u64 {
        self.next
    }

    fn step(&mut self, log: &Followed<'_>) -> Result<u64, FollowError> {
        let start = self.next;
        let end = log.len().min(start + STEP_RECORDS);
        if end <= start {
            return Ok(0);
        }
        let mut found = Vec::new();
        let (engine, mode) = (&self.engine, self.mode);
        log.read(start..end, &mut |seq, rec| {
            if let Some(ev) = rec.event {
                for a in engine.evaluate_in(ev, Some(rec.cluster), mode) {
                    found.push(StoredAlert::new(seq, rec.cluster, rec.received, &a));
                }
            }
            true
        })
        .map_err(FollowError::failed)?;
        self.log.append(&found).map_err(FollowError::failed)?;
        for a in &found {
            self.metrics.inc(&ALERTS_RAISED, [&a.rule, &a.priority], 1);
        }
        self.log.save_cursor(end).map_err(FollowError::failed)?;
        self.next = end;
        Ok(end - start)
    }
}
