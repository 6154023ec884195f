//! Live detection: Falco `k8s_audit` and Sigma rules (compiled by
//! `kaudit-rules`) over every stored event, as a follower of the store.
//!
//! * [`Detector`]: follows the store from its own durable position and
//!   evaluates each event, so detection never slows ingest and never misses
//!   an event;
//! * [`AlertLog`]: every alert kept in `<data>/alerts/alerts.jsonl` with the
//!   sequence number of its event, fsync'd before the position moves;
//! * [`Throttle`]: holds back repeated notifications per rule and key.
//!
//! Notifications (stdout, a file, falcosidekick or Slack webhooks) are not
//! sent from here: each configured output is a follower of the alert log in
//! `kaudit-sinks`, with the sinks' retries, TLS and dead letters.

mod alert;
mod config;
mod detector;
mod throttle;

pub use alert::{AlertLog, AlertQuery, StoredAlert};
pub use config::{AlertFormat, AlertWebhookConfig, DetectConfig, OutputConfig};
pub use detector::{Detector, ALERTS_RAISED};
pub use throttle::Throttle;

use kaudit_rules::{Engine, EngineBuilder, EngineOptions, LoadError};
use std::path::PathBuf;

/// Errors of detection.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The rules did not load.
    #[error("rules: {0}")]
    Rules(#[from] LoadError),
    /// Reading or writing the alerts area failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Builds the engine from the config (built-in rules when none are named).
pub fn build_engine(cfg: &DetectConfig) -> Result<Engine, DetectError> {
    let mut b = EngineBuilder::new(EngineOptions::default());
    if cfg.rules.is_empty() {
        b.add_default_rules()?;
    }
    for p in &cfg.rules {
        b.add_file(p)?;
    }
    let (engine, _report) = b.build()?;
    Ok(engine)
}
