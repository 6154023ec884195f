//! Retention while serving: the configured limits (`store.retention`) are
//! applied on a schedule ([`spawn_retention`]), and an admin may ask for a
//! prune now with `POST /api/v1/prune` ([`routes`]); `kaudit prune` does so
//! through [`request_prune`] when a running server holds the store. Both
//! prune as `kaudit prune` does: whole old segments, never one overlapping
//! a legal hold, with a signed prune record.

use crate::auth::Authenticator;
use crate::authz::{with_auth, Admin};
use crate::http::error;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use kaudit_metrics::{Counter, Metrics};
use kaudit_store::retention::{PruneOutcome, Retention};
use kaudit_store::Store;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Segments deleted by retention, by what triggered it.
pub static SEGMENTS_PRUNED: Counter<1> = Counter {
    name: "kaudit_retention_pruned_segments_total",
    help: "Segments deleted by retention while serving (trigger: schedule or api).",
    labels: ["trigger"],
};

/// Retention runs that failed, by what triggered it.
pub static PRUNE_FAILURES: Counter<1> = Counter {
    name: "kaudit_retention_failures_total",
    help: "Retention runs that failed while serving (trigger: schedule or api).",
    labels: ["trigger"],
};

/// The body of `POST /api/v1/prune` (every field optional: by default the
/// configured `store.retention` limits, for real).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    /// Delete segments whose newest record is older than this (`400d`).
    #[serde(default)]
    pub max_age: Option<String>,
    /// Delete the oldest segments while the data exceeds this (`500GiB`).
    #[serde(default)]
    pub max_size: Option<String>,
    /// Report what would go, delete nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// One segment a prune deleted (or would delete).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedSegment {
    /// Its file.
    pub segment: String,
    /// First record in it.
    pub first_seq: u64,
    /// One past its last record.
    pub end_seq: u64,
    /// Its size.
    pub bytes: u64,
}

/// The answer of `POST /api/v1/prune`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReply {
    /// Segments deleted (or, with `dry_run`, that would be).
    pub removed: Vec<PrunedSegment>,
    /// Records below this are pruned.
    pub before: u64,
    /// Why pruning stopped where it did (a legal hold, the active segment).
    pub stopped: Option<String>,
    /// Whether nothing was deleted on purpose.
    pub dry_run: bool,
}

impl PruneReply {
    fn from_outcome(o: PruneOutcome, dry_run: bool) -> Self {
        PruneReply {
            removed: o
                .removed
                .into_iter()
                .map(|(p, first_seq, end_seq, bytes)| PrunedSegment {
                    segment: p.display().to_string(),
                    first_seq,
                    end_seq,
                    bytes,
                })
                .collect(),
            before: o.before,
            stopped: o.stopped,
            dry_run,
        }
    }
}

/// Why a prune request was refused.
#[derive(Debug, thiserror::Error)]
pub enum PruneRequestError {
    /// A limit did not parse.
    #[error("{field}: {source}")]
    Limit {
        /// `max_age` or `max_size`.
        field: &'static str,
        /// What is wrong with it.
        source: kaudit_units::UnitError,
    },
    /// No limit given and none configured.
    #[error("no retention policy: set store.retention.max_age / max_size in the server's config or pass max_age / max_size")]
    NoPolicy,
}

impl PruneRequest {
    /// The limits to apply: the request's, over the configured ones.
    pub fn policy(&self, configured: Option<&Retention>) -> Result<Retention, PruneRequestError> {
        let mut r = configured.cloned().unwrap_or_default();
        if let Some(s) = &self.max_age {
            r.max_age_secs = Some(kaudit_store::retention::parse_duration(s).map_err(
                |source| PruneRequestError::Limit {
                    field: "max_age",
                    source,
                },
            )?);
        }
        if let Some(s) = &self.max_size {
            r.max_size = Some(kaudit_store::retention::parse_size(s).map_err(|source| {
                PruneRequestError::Limit {
                    field: "max_size",
                    source,
                }
            })?);
        }
        if r.max_age_secs.is_none() && r.max_size.is_none() {
            return Err(PruneRequestError::NoPolicy);
        }
        Ok(r)
    }
}

#[derive(Clone)]
struct PruneContext {
    store: Arc<Store>,
    configured: Option<Retention>,
    metrics: Arc<Metrics>,
}

/// `POST /api/v1/prune` (role admin) over `store`, with the configured
/// limits as defaults.
pub fn routes(
    store: Arc<Store>,
    configured: Option<Retention>,
    metrics: Arc<Metrics>,
    auth: Arc<Authenticator>,
) -> Router {
    let router = Router::new()
        .route("/api/v1/prune", post(prune))
        .with_state(PruneContext {
            store,
            configured,
            metrics,
        });
    with_auth(router, auth)
}

async fn prune(
    State(ctx): State<PruneContext>,
    caller: Admin,
    body: axum::body::Bytes,
) -> Response {
    let req: PruneRequest = if body.iter().all(u8::is_ascii_whitespace) {
        PruneRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("prune request: {e}")),
        }
    };
    let policy = match req.policy(ctx.configured.as_ref()) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let dry_run = req.dry_run;
    let (store, metrics) = (ctx.store.clone(), ctx.metrics.clone());
    let who = caller.principal.name.clone();
    let res = tokio::task::spawn_blocking(move || store.apply_retention(&policy, dry_run)).await;
    match res {
        Ok(Ok(out)) => {
            if !dry_run {
                metrics.inc(&SEGMENTS_PRUNED, ["api"], out.removed.len() as u64);
            }
            tracing::info!(
                caller = %who,
                segments = out.removed.len(),
                before = out.before,
                dry_run,
                "prune requested through the API"
            );
            (
                StatusCode::OK,
                axum::Json(PruneReply::from_outcome(out, dry_run)),
            )
                .into_response()
        }
        Ok(Err(e)) => {
            metrics.inc(&PRUNE_FAILURES, ["api"], 1);
            error(StatusCode::INTERNAL_SERVER_ERROR, format!("prune: {e}"))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("prune: {e}")),
    }
}

/// Applies `policy` every `every` (first one `every` after the start, then
/// on schedule) until `stop`; each run is logged and counted.
pub fn spawn_retention(
    store: Arc<Store>,
    policy: Retention,
    every: Duration,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut next = Instant::now() + every;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now < next {
                std::thread::sleep((next - now).min(Duration::from_millis(200)));
                continue;
            }
            next = now + every;
            match store.apply_retention(&policy, false) {
                Ok(out) => {
                    metrics.inc(&SEGMENTS_PRUNED, ["schedule"], out.removed.len() as u64);
                    if !out.removed.is_empty() {
                        tracing::info!(
                            segments = out.removed.len(),
                            before = out.before,
                            "retention pruned old segments"
                        );
                    }
                }
                Err(e) => {
                    metrics.inc(&PRUNE_FAILURES, ["schedule"], 1);
                    tracing::error!(error = %e, "retention failed");
                }
            }
        }
    })
}

/// Why asking a server to prune failed.
#[derive(Debug, thiserror::Error)]
pub enum PruneClientError {
    /// The CA file could not be read or used.
    #[error("{path}: {reason}")]
    Ca {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The request did not get an answer.
    #[error("asking {url} to prune: {source}")]
    Request {
        /// The URL.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The server refused.
    #[error("{url} answered {status}: {body}")]
    Refused {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Its error body.
        body: String,
    },
}

/// Most bytes of a server's answer [`request_prune`] reads.
pub const MAX_PRUNE_REPLY: usize = 4 << 20;

/// Asks the server at `base` (e.g. `https://127.0.0.1:8443`) to prune, as
/// `token`'s holder (role admin), trusting `ca` for HTTPS when given.
pub fn request_prune(
    base: &str,
    token: Option<&str>,
    ca: Option<&std::path::Path>,
    req: &PruneRequest,
) -> Result<PruneReply, PruneClientError> {
    let url = format!("{}/api/v1/prune", base.trim_end_matches('/'));
    let mut b = reqwest::blocking::Client::builder().timeout(Duration::from_secs(600));
    if let Some(p) = ca {
        let pem = std::fs::read(p).map_err(|e| PruneClientError::Ca {
            path: p.to_path_buf(),
            reason: e.to_string(),
        })?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| PruneClientError::Ca {
            path: p.to_path_buf(),
            reason: e.to_string(),
        })?;
        b = b.add_root_certificate(cert);
    }
    let client = b.build().map_err(|source| PruneClientError::Request {
        url: url.clone(),
        source,
    })?;
    let mut r = client.post(&url).json(req);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().map_err(|source| PruneClientError::Request {
        url: url.clone(),
        source,
    })?;
    let status = resp.status();
    let body = resp.bytes().map_err(|source| PruneClientError::Request {
        url: url.clone(),
        source,
    })?;
    let body = &body[..body.len().min(MAX_PRUNE_REPLY)];
    if !status.is_success() {
        return Err(PruneClientError::Refused {
            url,
            status: status.as_u16(),
            body: String::from_utf8_lossy(body).into_owned(),
        });
    }
    serde_json::from_slice(body).map_err(|e| PruneClientError::Refused {
        url,
        status: status.as_u16(),
        body: format!("unreadable answer: {e}"),
    })
}
