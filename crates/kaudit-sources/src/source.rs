//! The contract every pulling source meets, and the `sources:` section of
//! the config that builds them.
//!
//! A source is a component in Vector's sense: a config struct (one variant
//! of [`SourceConfig`]), a `build` that checks it and opens what it needs,
//! and a [`Source::run`] loop that reads, hands batches to the shared
//! [`Ingestor`] and, where the input has one, commits its durable position
//! only after the ingest returned (the events are fsync'd), so a crash
//! re-reads rather than loses. Pushing sources (the webhook) have no loop of
//! their own: their transport calls the [`Ingestor`] directly.

use crate::docker::{
    AuthzConfig, DockerEventsConfig, DockerEventsSource, DockerProxyConfig, DockerProxySource,
};
use crate::file::{FileSource, FileSourceConfig};
use crate::pipeline::Ingestor;
use kaudit_metrics::Metrics;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// One entry of `sources:`, keyed by its kind (`- file: {path, cluster}`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SourceConfig {
    /// A kube-apiserver audit log file, followed through rotation.
    File(FileSourceConfig),
    /// A Docker daemon's `/events` stream (`docker: {host, name}`).
    Docker(DockerEventsConfig),
    /// The auditing Docker socket proxy (`docker_proxy: {listen, upstream, name}`).
    DockerProxy(DockerProxyConfig),
    /// The Docker authorization plugin (`docker_authz: {listen, name, deny_rules}`).
    DockerAuthz(AuthzConfig),
}

/// What building a source needs from the process around it.
#[derive(Clone)]
pub struct SourceContext {
    /// Where durable positions are kept (`<data>/sources`).
    pub state_dir: PathBuf,
    /// The registry sources report lag and errors to.
    pub metrics: Arc<Metrics>,
}

impl SourceContext {
    /// The context for a server whose data directory is `data`.
    pub fn new(data: &Path, metrics: Arc<Metrics>) -> SourceContext {
        SourceContext {
            state_dir: state_dir(data),
            metrics,
        }
    }
}

/// Where sources keep their positions inside a data directory.
pub fn state_dir(data: &Path) -> PathBuf {
    data.join("sources")
}

/// A source that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The configuration is not usable (the message names the field).
    #[error("{0}")]
    Config(String),
    /// Its state directory cannot be made.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A running source: reads its input until `stop`, ingesting as it goes.
pub trait Source: Send + 'static {
    /// How it is named in logs, metrics and `received` counts
    /// (`file:/var/log/kube-audit.log`).
    fn name(&self) -> &str;
    /// Reads until `stop` turns true. Failures are logged and retried with
    /// backoff; nothing read is skipped, and the position moves only after
    /// `ingest` made the events durable.
    fn run(self: Box<Self>, ingest: Arc<Ingestor>, stop: Arc<AtomicBool>);
}

impl SourceConfig {
    /// Problems serde cannot see, each naming `sources[index]` and the field.
    pub fn check(&self, index: usize) -> Vec<String> {
        match self {
            SourceConfig::File(c) => c.check(&format!("sources[{index}].file")),
            SourceConfig::Docker(c) => c.check(&format!("sources[{index}].docker")),
            SourceConfig::DockerProxy(c) => c.check(&format!("sources[{index}].docker_proxy")),
            SourceConfig::DockerAuthz(c) => c.check(&format!("sources[{index}].docker_authz")),
        }
    }

    /// Builds the source; `index` is its place in `sources:` (part of its
    /// state file's name, so two entries never share a position).
    pub fn build(&self, index: usize, ctx: &SourceContext) -> Result<Box<dyn Source>, SourceError> {
        let problems = self.check(index);
        if !problems.is_empty() {
            return Err(SourceError::Config(problems.join("; ")));
        }
        std::fs::create_dir_all(&ctx.state_dir).map_err(|source| SourceError::Io {
            path: ctx.state_dir.clone(),
            source,
        })?;
        Ok(match self {
            SourceConfig::File(c) => Box::new(FileSource::new(c, index, ctx)),
            SourceConfig::Docker(c) => Box::new(DockerEventsSource::new(c, index, ctx)),
            SourceConfig::DockerProxy(c) => Box::new(DockerProxySource::new(c)),
            SourceConfig::DockerAuthz(c) => Box::new(crate::docker::AuthzSource::new(c)),
        })
    }
}
