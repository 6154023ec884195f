//! Forwarding inside `kaudit serve`: opening the configured sinks (from
//! `kaudit-sinks`) before the server listens, and `GET /api/v1/sinks`.
//! Sinks run as followers of the store (see `serve`); their counters become
//! `kaudit_sink_*` metrics in [`crate::metrics`].

use crate::auth::Authenticator;
use crate::authz::{with_auth, Reader};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kaudit_sinks::{Sink, SinkConfig, SinkError, SinkStats, SinkStatus};
use std::path::Path;
use std::sync::Arc;

/// A sink that cannot be opened, named.
#[derive(Debug, thiserror::Error)]
#[error("sink {name:?}: {source}")]
pub struct SinkOpenError {
    /// The sink's name.
    pub name: String,
    /// Why.
    #[source]
    pub source: SinkError,
}

/// Opens every configured sink (destinations built, cursors read) without
/// starting them, so a bad sink stops the server before it listens.
pub fn open(cfgs: &[SinkConfig], data: &Path) -> Result<Vec<Sink>, SinkOpenError> {
    cfgs.iter()
        .map(|c| {
            Sink::new(c.clone(), data).map_err(|source| SinkOpenError {
                name: c.name.clone(),
                source,
            })
        })
        .collect()
}

/// `GET /api/v1/sinks` (role reader): every sink's status, as
/// `{"sinks":[{"name","type","cursor","lag_events","lag_seconds","sent","failed","retries","up","last_error"}]}`.
pub fn routes(stats: Vec<Arc<SinkStats>>, auth: Arc<Authenticator>) -> Router {
    let router = Router::new()
        .route("/api/v1/sinks", get(status))
        .with_state(Arc::new(stats));
    with_auth(router, auth)
}

async fn status(State(stats): State<Arc<Vec<Arc<SinkStats>>>>, _caller: Reader) -> Response {
    let sinks: Vec<SinkStatus> = stats.iter().map(|s| s.snapshot()).collect();
    axum::Json(serde_json::json!({ "sinks": sinks })).into_response()
}
