//! `GET /api/v1/alerts?since=&rule=&priority=&limit=`: kept alerts, newest
//! first (role reader), read from the alert log `kaudit-detect` writes.

use crate::auth::Authenticator;
use crate::authz::{with_auth, Reader};
use crate::http::error;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kaudit_detect::{AlertLog, AlertQuery};
use kaudit_event::MicroTime;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

/// Most alerts one request returns.
pub const MAX_ALERTS: usize = 10_000;

#[derive(Deserialize)]
struct AlertParams {
    since: Option<String>,
    rule: Option<String>,
    priority: Option<String>,
    limit: Option<usize>,
}

/// The alerts route over the alert log in the data directory `data`.
pub fn routes(data: &Path, auth: Arc<Authenticator>) -> Router {
    routes_sealed(data, None, auth)
}

/// [`routes`] over an alert log sealed with `cipher` (encryption at rest).
pub fn routes_sealed(
    data: &Path,
    cipher: Option<Arc<kaudit_store::crypt::Cipher>>,
    auth: Arc<Authenticator>,
) -> Router {
    let router = Router::new()
        .route("/api/v1/alerts", get(alerts))
        .with_state(Arc::new(AlertLog::new(data).sealed(cipher)));
    with_auth(router, auth)
}

async fn alerts(
    State(log): State<Arc<AlertLog>>,
    _caller: Reader,
    Query(p): Query<AlertParams>,
) -> Response {
    let since = match p
        .since
        .as_deref()
        .map(|s| kaudit_query::parse_time_bound(s, MicroTime::now()))
    {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("since: {e}")),
    };
    let q = AlertQuery {
        since,
        rule: p.rule,
        priority: p.priority,
        limit: p.limit.unwrap_or(100).min(MAX_ALERTS),
    };
    let items = match tokio::task::spawn_blocking(move || log.query(&q)).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    axum::Json(serde_json::json!({ "alerts": items })).into_response()
}
