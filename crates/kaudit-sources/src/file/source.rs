//! The file source as a component: its config, and the loop that drives a
//! [`FileTailer`] into the ingest pipeline and commits its position once the
//! events are durable.

use super::{FileTailer, TailConfig};
use crate::pipeline::{BadItem, Ingestor};
use crate::source::{Source, SourceContext};
use kaudit_metrics::{Gauge, Metrics};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Bytes of a followed file not yet read.
pub static SOURCE_LAG_BYTES: Gauge<1> = Gauge {
    name: "kaudit_source_lag_bytes",
    help: "Bytes of a followed file not yet read.",
    labels: ["source"],
};

/// `sources: [{file: {path, cluster}}]`: a kube-apiserver audit log file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Path of the active log file (`--audit-log-path`).
    pub path: PathBuf,
    /// Cluster name for its events.
    pub cluster: String,
}

impl FileSourceConfig {
    /// Problems serde cannot see, each prefixed with `at` (the field's path).
    pub fn check(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.cluster.is_empty() {
            problems.push(format!("{at}.cluster is empty"));
        }
        if let Some(dir) = self.path.parent() {
            if !dir.as_os_str().is_empty() && !dir.is_dir() {
                problems.push(format!(
                    "{at}.path: directory {} does not exist",
                    dir.display()
                ));
            }
        }
        problems
    }
}

/// A followed log file: polls its [`FileTailer`], ingests, then commits.
pub struct FileSource {
    name: String,
    tail: TailConfig,
    metrics: Arc<Metrics>,
}

impl FileSource {
    /// The source for entry `index` of `sources:`; its position is kept in
    /// `<state_dir>/<index>-<sanitized path>.state`.
    pub fn new(cfg: &FileSourceConfig, index: usize, ctx: &SourceContext) -> FileSource {
        let state = ctx
            .state_dir
            .join(format!("{index}-{}.state", sanitize(&cfg.path)));
        FileSource {
            name: format!("file:{}", cfg.path.display()),
            tail: TailConfig::new(cfg.path.clone(), cfg.cluster.clone(), state),
            metrics: ctx.metrics.clone(),
        }
    }

    /// With another tailer configuration (tests: smaller batches, faster polls).
    pub fn with_tail_config(mut self, tail: TailConfig) -> FileSource {
        self.tail = tail;
        self
    }
}

fn sanitize(p: &Path) -> String {
    p.to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// First wait after a failure; doubled on each further one, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Source for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(self: Box<Self>, ingest: Arc<Ingestor>, stop: Arc<AtomicBool>) {
        let cfg = self.tail.clone();
        let path = cfg.path.display().to_string();
        let mut backoff = FIRST_BACKOFF;
        let mut tailer: Option<FileTailer> = None;
        let pause = |backoff: &mut Duration| {
            std::thread::sleep(*backoff);
            *backoff = (*backoff * 2).min(MAX_BACKOFF);
        };
        while !stop.load(Ordering::Relaxed) {
            let t = match &mut tailer {
                Some(t) => t,
                None => match FileTailer::open(cfg.clone()) {
                    Ok(t) => tailer.insert(t),
                    Err(e) => {
                        tracing::warn!(source = %path, error = %e, "cannot open file source; retrying");
                        pause(&mut backoff);
                        continue;
                    }
                },
            };
            match t.poll() {
                Ok(Some(batch)) => {
                    let bad: Vec<BadItem> = batch
                        .bad_lines
                        .iter()
                        .enumerate()
                        .map(|(i, b)| BadItem {
                            index: i,
                            path: Some(b.location.to_string()),
                            reason: b.error.to_string(),
                            raw: b.raw.clone(),
                        })
                        .collect();
                    match ingest.ingest_events(batch.events, bad, &cfg.cluster, &self.name) {
                        Ok(_) => {
                            if let Err(e) = t.commit(&batch.position) {
                                tracing::error!(source = %path, error = %e, "cannot persist file position");
                            }
                            backoff = FIRST_BACKOFF;
                        }
                        Err(e) => {
                            // Not committed: the next poll after reopening reads these lines again.
                            tracing::warn!(source = %path, error = %e, "ingest failed; retrying");
                            tailer = None;
                            pause(&mut backoff);
                            continue;
                        }
                    }
                    self.metrics
                        .set(&SOURCE_LAG_BYTES, [&path], t.lag_bytes() as f64);
                }
                Ok(None) => {
                    self.metrics
                        .set(&SOURCE_LAG_BYTES, [&path], t.lag_bytes() as f64);
                    std::thread::sleep(cfg.poll_interval);
                }
                Err(e) => {
                    tracing::warn!(source = %path, error = %e, "tail error; retrying");
                    tailer = None;
                    pause(&mut backoff);
                }
            }
        }
    }
}
