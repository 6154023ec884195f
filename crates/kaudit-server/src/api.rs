//! The query API (JSON, role reader): events with cursor pagination, one
//! request's stages with inclusion proofs, stats, histories, field values
//! for autocomplete, and the OpenAPI document that describes them (the
//! tests hold these handlers to it).

// Handlers return ready-made error responses (`Result<_, Response>`), built
// at most once per request, so their size does not matter.
#![allow(clippy::result_large_err)]

use crate::auth::Authenticator;
use crate::authz::{with_auth, Reader};
use crate::http::error;
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kaudit_event::MicroTime;
use kaudit_index::history::{object_history, user_sessions, HistoryRequest, Target, MAX_HISTORY};
use kaudit_index::search::{Cursor, SearchRequest};
use kaudit_index::stats::StatsRequest;
use kaudit_index::{IndexError, SearchBackend};
use kaudit_query::{parse_time_bound, Budget, Field, Query};
use kaudit_store::{base64_encode, LogReader, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;

/// The OpenAPI 3 document of these routes.
pub const OPENAPI_YAML: &str = include_str!("../../../openapi.yaml");
/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;
/// History entries per page when the request names no `limit`.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;
/// Largest page size.
pub const MAX_LIMIT: usize = 10_000;
/// Most stages returned for one auditID.
const MAX_STAGES: usize = 64;

/// Default time budget of one query (`query.timeout`).
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of queries answered at once (`query.max_concurrent`).
pub const DEFAULT_MAX_CONCURRENT: usize = 8;
/// How long a query waits for a free slot before it is turned away.
const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiContext {
    /// The store (proofs, checkpoints).
    pub store: Arc<Store>,
    /// The search backend over it: the embedded index today, any
    /// [`SearchBackend`] (ClickHouse) tomorrow; handlers ask only the trait.
    pub backend: Arc<dyn SearchBackend>,
    /// Credentials; reads need role reader.
    pub auth: Arc<Authenticator>,
    /// Time budget and concurrency of queries.
    pub limits: QueryLimits,
}

/// Bounds on the query API, so no reader can starve the server: each
/// query gets a time budget (checked by the index's loops; past it the
/// answer is 503 with the reason) and at most `max_concurrent` queries
/// run at once (beyond, 503 with `Retry-After`).
#[derive(Clone, Debug)]
pub struct QueryLimits {
    timeout: Duration,
    max_concurrent: usize,
    permits: Arc<tokio::sync::Semaphore>,
}

impl QueryLimits {
    /// A budget of `timeout` per query and `max_concurrent` (at least 1)
    /// queries at once.
    pub fn new(timeout: Duration, max_concurrent: usize) -> QueryLimits {
        let max_concurrent = max_concurrent.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        QueryLimits {
            timeout,
            max_concurrent,
            permits: Arc::new(tokio::sync::Semaphore::new(max_concurrent)),
        }
    }

    /// The time budget of one query.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How many queries run at once.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// Takes one query slot now, if one is free, for work that should count
    /// as a query (it is given back when the permit drops).
    pub fn try_reserve(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits::new(DEFAULT_QUERY_TIMEOUT, DEFAULT_MAX_CONCURRENT)
    }
}

/// The API routes, to merge into the server's router.
pub fn routes(ctx: ApiContext) -> Router {
    let router = Router::new()
        .route("/api/v1/events", get(events))
        .route("/api/v1/events/{audit_id}", get(event_stages))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/history", get(sessions))
        .route("/api/v1/history/{*object}", get(history))
        .route("/api/v1/fields/{field}/values", get(field_values))
        .route("/api/v1/openapi.yaml", get(openapi));
    let auth = ctx.auth.clone();
    with_auth(router.with_state(ctx), auth)
}

fn bad(m: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, m)
}

/// The HTTP answer for a search failure: 400 for caller input, 503 for a
/// spent time budget, 500 otherwise.
pub(crate) fn index_error(e: IndexError) -> Response {
    match e {
        e if e.is_input() => bad(e.to_string()),
        e @ IndexError::TimedOut(_) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// `since` and `until` as microseconds, or a 400 naming the bad one.
pub(crate) fn time_bounds(
    since: &Option<String>,
    until: &Option<String>,
) -> Result<(Option<i64>, Option<i64>), Response> {
    let now = MicroTime::now();
    let one = |s: &Option<String>, what: &str| {
        s.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_time_bound(s, now).map(|t| t.micros()))
            .transpose()
            .map_err(|e| bad(format!("{what}: {e}")))
    };
    Ok((one(since, "since")?, one(until, "until")?))
}

/// The `cursor` (empty = first page) and `limit` (within 1..=max) of a
/// paged request, or a 400 naming the bad one.
fn paging(
    cursor: &Option<String>,
    limit: Option<usize>,
    default: usize,
    max: usize,
) -> Result<(Option<Cursor>, usize), Response> {
    let cursor = cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(Cursor::parse)
        .transpose()
        .map_err(index_error)?;
    let limit = limit.unwrap_or(default);
    if limit == 0 || limit > max {
        return Err(bad(format!("limit must be between 1 and {max}")));
    }
    Ok((cursor, limit))
}

/// Compiles `q` with the request's time budget.
fn compile(q: &str, budget: Budget) -> Result<Query, Response> {
    Query::parse(q).map(|q| q.with_budget(budget)).map_err(|e| {
        let body = json!({
            "error": e.to_string(),
            "status": 400,
            "column": e.column,
            "hint": e.hint,
        });
        (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
    })
}

/// Runs a query handler on a blocking thread once one of the
/// `query.max_concurrent` slots is free (503 with `Retry-After` when none
/// frees up soon), handing it the query's time budget, which starts now.
/// The answer is 503 if it is not ready a little after the budget (the
/// index's loops stop at the budget themselves; this is the backstop).
pub(crate) async fn blocking<F>(limits: &QueryLimits, f: F) -> Response
where
    F: FnOnce(Budget) -> Result<Response, Response> + Send + 'static,
{
    let permit =
        match tokio::time::timeout(QUEUE_WAIT, limits.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => {
                let mut r = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "too many queries at once (query.max_concurrent = {}); retry shortly",
                        limits.max_concurrent
                    ),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(1u32));
                return r;
            }
        };
    let budget = Budget::from_now(limits.timeout);
    let task = tokio::task::spawn_blocking(move || {
        // The slot is held until the work really ends, even past the backstop.
        let _permit = permit;
        f(budget)
    });
    let grace = limits.timeout.saturating_add(Duration::from_secs(2));
    match tokio::time::timeout(grace, task).await {
        Ok(Ok(Ok(r))) | Ok(Ok(Err(r))) => r,
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("query task failed: {e}"),
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the query took longer than its time budget of {:?} (query.timeout): narrow the time range or the query",
                limits.timeout
            ),
        ),
    }
}

fn json_bytes(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    kaudit_event::json::write_str(out, s);
}

#[derive(Deserialize)]
struct EventsParams {
    q: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    reverse: Option<bool>,
}

/// `GET /api/v1/events`: a page of matching events, newest first; each item
/// carries the exact stored event.
async fn events(
    State(ctx): State<ApiContext>,
    _caller: Reader,
    QueryParams(p): QueryParams<EventsParams>,
) -> Response {
    let limits = ctx.limits.clone();
    blocking(&limits, move |budget| {
        let query = compile(p.q.as_deref().unwrap_or(""), budget)?;
        let (since, until) = time_bounds(&p.since, &p.until)?;
        let (cursor, limit) = paging(&p.cursor, p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
        let req = SearchRequest {
            query,
            since,
            until,
            limit,
            cursor,
            reverse: p.reverse.unwrap_or(false),
        };
        let page = ctx.backend.search(&req).map_err(index_error)?;
        let mut out = Vec::with_capacity(page.hits.iter().map(|h| h.event.len() + 128).sum());
        out.extend_from_slice(b"{\"events\":[");
        for (i, h) in page.hits.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(format!("{{\"seq\":{},\"time\":", h.seq).as_bytes());
            push_str(&mut out, &MicroTime(h.time).to_string());
            out.extend_from_slice(b",\"cluster\":");
            push_str(&mut out, &h.cluster);
            out.extend_from_slice(b",\"event\":");
            out.extend_from_slice(&h.event);
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"next_cursor\":");
        match page.next {
            Some(c) => push_str(&mut out, &c.encode()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(format!(",\"count\":{}}}", page.hits.len()).as_bytes());
        Ok(json_bytes(out))
    })
    .await
}

/// The answer of `GET /api/v1/events/{auditID}`.
#[derive(Serialize)]
struct Stages<'a> {
    #[serde(rename = "auditID")]
    audit_id: &'a str,
    stages: Vec<Stage>,
}

/// One stored stage with its exact bytes and inclusion proof.
#[derive(Serialize)]
struct Stage {
    seq: u64,
    time: String,
    cluster: String,
    event: Box<RawValue>,
    proof: Proof,
}

/// An inclusion proof as the console checks it.
#[derive(Serialize)]
struct Proof {
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: String,
    leaf_data: String,
    hashes: Vec<String>,
    root: String,
    checkpoint: Option<String>,
}

/// `GET /api/v1/events/{auditID}`: every stored stage of one request, each
/// with its inclusion proof against the latest checkpoint covering it.
async fn event_stages(
    State(ctx): State<ApiContext>,
    _caller: Reader,
    Path(audit_id): Path<String>,
) -> Response {
    let limits = ctx.limits.clone();
    blocking(&limits, move |budget| {
        if audit_id.is_empty() || audit_id.len() > 256 {
            return Err(bad("auditID must be 1 to 256 characters"));
        }
        let mut q = Vec::new();
        push_str(&mut q, &audit_id);
        let query = compile(&format!("auditid={}", String::from_utf8_lossy(&q)), budget)?;
        let mut req = SearchRequest::new(query, MAX_STAGES);
        req.reverse = true;
        let page = ctx.backend.search(&req).map_err(index_error)?;
        if page.hits.is_empty() {
            return Err(error(
                StatusCode::NOT_FOUND,
                format!("no event with auditID {audit_id:?}"),
            ));
        }
        let checkpoint = ctx.store.latest_checkpoint();
        let store_size = ctx.store.size();
        let mut stages = Vec::new();
        for h in &page.hits {
            let (tree_size, note) = match &checkpoint {
                Some(cp) if cp.size > h.seq => (cp.size, Some(cp.note.clone())),
                _ => (store_size, None),
            };
            let mut leaf = None;
            ctx.store
                .read(h.seq..h.seq + 1, &mut |_, l| {
                    leaf = Some((l.hash(), l.data.to_vec()));
                    false
                })
                .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            let Some((leaf_hash, leaf_data)) = leaf else {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    format!("record {} is no longer stored", h.seq),
                ));
            };
            let proof = LogReader::inclusion_proof(ctx.store.as_ref(), h.seq, tree_size)
                .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            let root = LogReader::root(ctx.store.as_ref(), tree_size)
                .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            // The exact stored bytes, spliced in as they are: re-parsing
            // them into a `Value` would fail on deep (but valid) events.
            let event = String::from_utf8(h.event.clone())
                .ok()
                .and_then(|s| RawValue::from_string(s).ok())
                .ok_or_else(|| {
                    error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("record {} does not hold a JSON event", h.seq),
                    )
                })?;
            stages.push(Stage {
                seq: h.seq,
                time: MicroTime(h.time).to_string(),
                cluster: h.cluster.clone(),
                event,
                proof: Proof {
                    leaf_index: h.seq,
                    tree_size,
                    leaf_hash: base64_encode(&leaf_hash),
                    leaf_data: base64_encode(&leaf_data),
                    hashes: proof.iter().map(|p| base64_encode(p)).collect(),
                    root: base64_encode(&root),
                    checkpoint: note,
                },
            });
        }
        let body = serde_json::to_vec(&Stages {
            audit_id: &audit_id,
            stages,
        })
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(json_bytes(body))
    })
    .await
}

#[derive(Deserialize)]
struct StatsParams {
    q: Option<String>,
    since: Option<String>,
    until: Option<String>,
    by: Option<String>,
    top: Option<usize>,
    every: Option<String>,
    buckets: Option<usize>,
    latency: Option<bool>,
}

/// Most buckets `buckets=` asks for.
pub const MAX_AUTO_BUCKETS: usize = 1000;

/// Bucket widths an automatic histogram picks from (seconds), so bucket
/// edges fall on round times: the same steps as the console's charts.
const NICE_BUCKETS: [(i64, &str); 14] = [
    (1, "1s"),
    (5, "5s"),
    (10, "10s"),
    (30, "30s"),
    (60, "1m"),
    (300, "5m"),
    (600, "10m"),
    (1800, "30m"),
    (3600, "1h"),
    (3 * 3600, "3h"),
    (6 * 3600, "6h"),
    (12 * 3600, "12h"),
    (86_400, "1d"),
    (7 * 86_400, "7d"),
];

/// The smallest round width giving at most `n` buckets over `span` µs.
fn nice_bucket(span: i64, n: usize) -> (i64, &'static str) {
    let n = i64::try_from(n.max(1)).unwrap_or(i64::MAX);
    NICE_BUCKETS
        .iter()
        .map(|&(s, name)| (s * 1_000_000, name))
        .find(|&(us, _)| us.saturating_mul(n) >= span)
        .unwrap_or((7 * 86_400 * 1_000_000, "7d"))
}

/// `GET /api/v1/stats`.
async fn stats(
    State(ctx): State<ApiContext>,
    _caller: Reader,
    QueryParams(p): QueryParams<StatsParams>,
) -> Response {
    let limits = ctx.limits.clone();
    blocking(&limits, move |budget| {
        let query = compile(p.q.as_deref().unwrap_or(""), budget)?;
        let (since, until) = time_bounds(&p.since, &p.until)?;
        let mut by = Vec::new();
        for name in
            p.by.as_deref()
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.trim().is_empty())
        {
            let f = Field::parse(name.trim()).ok_or_else(|| {
                bad(format!(
                    "unknown field {name:?}{}",
                    Field::suggest(name.trim())
                        .map(|s| format!("; did you mean {s:?}?"))
                        .unwrap_or_default()
                ))
            })?;
            by.push(f);
        }
        let every = match p.every.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => {
                let t =
                    parse_time_bound(s, MicroTime(0)).map_err(|e| bad(format!("every: {e}")))?;
                if t.micros() >= 0 {
                    return Err(bad("every must be a positive duration such as 1m or 5m"));
                }
                Some(-t.micros())
            }
            None => None,
        };
        // `buckets=N` without `every`: a histogram of about N round buckets
        // over the matches' own time span (what a chart of "all time"
        // needs, in one request).
        let mut auto = None;
        let (mut since, mut until, mut every) = (since, until, every);
        if let (Some(n), None) = (p.buckets, every) {
            if n == 0 || n > MAX_AUTO_BUCKETS {
                return Err(bad(format!(
                    "buckets must be between 1 and {MAX_AUTO_BUCKETS}"
                )));
            }
            let span = match (since, until) {
                (Some(s), Some(u)) => Some((s, u.saturating_sub(1))),
                _ => ctx
                    .backend
                    .time_span(&query, since, until)
                    .map_err(index_error)?
                    .map(|(a, z)| {
                        (
                            since.unwrap_or(a),
                            until.map_or(z, |u| u.saturating_sub(1)),
                        )
                    }),
            };
            if let Some((first, last)) = span {
                let (width, name) = nice_bucket(last.saturating_sub(first).max(1), n);
                // The round edges around the span, when they are representable.
                let from = first.div_euclid(width).checked_mul(width);
                let to = last
                    .div_euclid(width)
                    .checked_add(1)
                    .and_then(|k| k.checked_mul(width));
                let (Some(from), Some(to)) = (from, to) else {
                    return Err(bad(format!(
                        "since/until: the time range {first}..{last} µs is too close to the limits of representable time for round buckets"
                    )));
                };
                since = Some(since.map_or(from, |s| s.max(from)));
                until = Some(until.map_or(to, |u| u.min(to)));
                every = Some(width);
                auto = Some((from, to, width, name));
            }
        }
        let req = StatsRequest {
            query,
            since,
            until,
            by,
            top: p.top.unwrap_or(10),
            every,
            latency: p.latency.unwrap_or(false),
        };
        let report = ctx.backend.stats(&req).map_err(index_error)?;
        if let Some((from, to, width, name)) = auto {
            let mut v =
                serde_json::to_value(&report).map_err(|e| bad(format!("stats report: {e}")))?;
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "histogram".into(),
                    json!({
                        "every": name,
                        "every_us": width,
                        "since": MicroTime(from).to_string(),
                        "until": MicroTime(to).to_string(),
                        "since_us": from,
                        "until_us": to,
                    }),
                );
            }
            return Ok(axum::Json(v).into_response());
        }
        Ok(axum::Json(report).into_response())
    })
    .await
}

#[derive(Deserialize)]
struct HistoryParams {
    since: Option<String>,
    until: Option<String>,
    user: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/v1/history/{resource}/{namespace}/{name}` or `.../{resource}/{name}`.
async fn history(
    State(ctx): State<ApiContext>,
    _caller: Reader,
    Path(object): Path<String>,
    QueryParams(p): QueryParams<HistoryParams>,
) -> Response {
    let limits = ctx.limits.clone();
    blocking(&limits, move |budget| {
        let (since, until) = time_bounds(&p.since, &p.until)?;
        let target = Target::parse(object.trim_start_matches('/')).map_err(index_error)?;
        let (before, limit) = paging(&p.cursor, p.limit, DEFAULT_HISTORY_LIMIT, MAX_HISTORY)?;
        let req = HistoryRequest {
            since,
            until,
            before,
            limit,
            budget: Some(budget),
        };
        let page = object_history(ctx.backend.as_ref(), &target, &req).map_err(index_error)?;
        let entries: Vec<serde_json::Value> = page
            .entries
            .into_iter()
            .map(|e| {
                let mut v = serde_json::to_value(&e).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("time".into(), json!(MicroTime(e.time).to_string()));
                }
                v
            })
            .collect();
        Ok(axum::Json(json!({
            "object": target,
            "entries": entries,
            "next_cursor": page.next.map(|c| c.encode()),
        }))
        .into_response())
    })
    .await
}

/// `GET /api/v1/history?user=U`: the user's sessions.
async fn sessions(
    State(ctx): State<ApiContext>,
    _caller: Reader,
    QueryParams(p): QueryParams<HistoryParams>,
) -> Response {
    let limits = ctx.limits.clone();
    blocking(&limits, move |budget| {
        let (since, until) = time_bounds(&p.since, &p.until)?;
        let Some(user) = p.user.filter(|u| !u.is_empty()) else {
            return Err(bad(
                "user is required (or ask /api/v1/history/RESOURCE/NAMESPACE/NAME)",
            ));
        };
        let sessions = user_sessions(ctx.backend.as_ref(), &user, since, until, Some(budget))
            .map_err(index_error)?;
        let sessions: Vec<serde_json::Value> = sessions
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("start".into(), json!(MicroTime(s.start).to_string()));
                    o.insert("end".into(), json!(MicroTime(s.end).to_string()));
                }
                v
            })
            .collect();
        Ok(axum::Json(json!({"user": user, "sessions": sessions})).into_response())
    })
    .await
}

#[derive(Deserialize)]
struct ValuesParams {
    prefix: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/fields/{field}/values?prefix=`: for autocomplete.
async fn field_values(
    State(ctx): State<ApiContext>,
    _caller: Reader,
    Path(field): Path<String>,
    QueryParams(p): QueryParams<ValuesParams>,
) -> Response {
    let limits = ctx.limits.clone();
    blocking(&limits, move |_budget| {
        let f = Field::parse(&field).ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!(
                    "unknown field {field:?}{}",
                    Field::suggest(&field)
                        .map(|s| format!("; did you mean {s:?}?"))
                        .unwrap_or_default()
                ),
            )
        })?;
        let values = ctx
            .backend
            .field_values(&f, p.prefix.as_deref().unwrap_or(""), p.limit.unwrap_or(50))
            .map_err(index_error)?;
        let values: Vec<serde_json::Value> = values
            .into_iter()
            .map(|(v, n)| json!({"value": v, "count": n}))
            .collect();
        Ok(axum::Json(json!({"field": f.name(), "values": values})).into_response())
    })
    .await
}

/// `GET /api/v1/openapi.yaml`.
async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML).into_response()
}
