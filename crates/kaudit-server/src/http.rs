//! The HTTP surface: kube-apiserver's webhook (`POST /api/v1/ingest/k8s`,
//! and Falco's `POST /k8s-audit`), `/healthz`, `/readyz`, `/metrics`.
//!
//! Every answer that is not a 200 carries a JSON body `{"error": ..., "status": N}`
//! saying what and where. Bodies are bounded before they are read and while
//! they are inflated; parsing and the durable append run on blocking threads
//! so a slow or hostile client never stalls the others.

use crate::auth::Authenticator;
use crate::authz::{with_auth, Ingester};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use kaudit_metrics::Metrics;
use kaudit_sources::{IngestError, Ingestor};
use serde::Deserialize;
use serde_json::json;
use std::io::Read;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Limits of the HTTP ingest.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Largest accepted body, after gzip inflation too.
    pub max_body: usize,
    /// Memory all in-flight bodies may hold together, counted as bytes
    /// arrive, as they inflate and as they are decoded; beyond it, 429.
    pub max_inflight_bytes: usize,
    /// Time a body may take before the minimum rate applies.
    pub body_timeout: std::time::Duration,
    /// Bytes per second a body must keep up after `body_timeout`: a body of
    /// N bytes must arrive within `body_timeout + N / min_body_rate`.
    pub min_body_rate: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body: 64 << 20,
            max_inflight_bytes: 512 << 20,
            body_timeout: std::time::Duration::from_secs(30),
            min_body_rate: 64 << 10,
        }
    }
}

/// Memory decoding costs per item beyond its bytes (the decoded document,
/// its result slot), reserved up front for the most items a body can hold.
const ITEM_OVERHEAD: usize = 512;

/// In-flight memory held by one request, in KiB permits, grown as its body
/// arrives, inflates and is decoded. One request may hold the whole budget
/// (a body larger than it still passes when nothing else is in flight).
struct Reservation {
    sem: Arc<Semaphore>,
    cap: u32,
    held: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Reservation {
    fn new(sem: Arc<Semaphore>, cap: u32) -> Self {
        Reservation {
            sem,
            cap,
            held: None,
        }
    }

    /// Holds enough for `bytes` in total; `false` when the budget is spent.
    fn cover(&mut self, bytes: usize) -> bool {
        let want = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.cap);
        let have = self.held.as_ref().map_or(0, |p| p.num_permits() as u32);
        if want <= have {
            return true;
        }
        match self.sem.clone().try_acquire_many_owned(want - have) {
            Ok(p) => {
                match &mut self.held {
                    Some(h) => h.merge(p),
                    None => self.held = Some(p),
                }
                true
            }
            Err(_) => false,
        }
    }
}

/// Whether the server can take writes now; `Err` says why not (for /readyz and 503s).
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The ingest pipeline.
    pub ingestor: Arc<Ingestor>,
    /// Credentials.
    pub auth: Arc<Authenticator>,
    /// Limits.
    pub limits: HttpLimits,
    /// Readiness (store open and writable, disk not full).
    pub ready: ReadyCheck,
    /// What `/metrics` renders.
    pub metrics: Arc<Metrics>,
    inflight: Arc<Semaphore>,
    inflight_permits: u32,
    max_batch_items: usize,
}

impl AppState {
    /// Builds the state.
    pub fn new(
        ingestor: Arc<Ingestor>,
        auth: Arc<Authenticator>,
        limits: HttpLimits,
        ready: ReadyCheck,
    ) -> Self {
        let permits = (limits.max_inflight_bytes / 1024).clamp(1, u32::MAX as usize);
        AppState {
            metrics: ingestor.metrics().clone(),
            max_batch_items: ingestor.limits().max_batch_items,
            ingestor,
            auth,
            limits,
            ready,
            inflight: Arc::new(Semaphore::new(permits)),
            inflight_permits: permits as u32,
        }
    }
}

/// The router with every route; `extra` routes (query API, UI) are merged by the caller.
pub fn router(state: AppState) -> Router {
    let auth = state.auth.clone();
    let router = Router::new()
        .route("/api/v1/ingest/k8s", post(ingest))
        .route("/api/v1/ingest/gke-pubsub", post(crate::push::gke_pubsub))
        .route("/api/v1/ingest/firehose", post(crate::push::firehose))
        .route("/api/v1/admission", post(crate::push::admission))
        .route(
            "/api/v1/admission/{token}",
            post(crate::push::admission_with_token),
        )
        .route("/k8s-audit", post(ingest))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    with_auth(router, auth)
}

/// A JSON error response.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"error": message.into(), "status": status.as_u16()});
    (status, axum::Json(body)).into_response()
}

fn with_retry_after(mut r: Response, secs: u32) -> Response {
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

#[derive(Deserialize)]
struct IngestParams {
    cluster: Option<String>,
}

/// Whether a `?cluster=` value is a usable cluster name: 1 to 253 bytes of
/// letters, digits, `-`, `.` and `_`, starting and ending with a letter or
/// digit (a DNS-1123 subdomain, leniently).
pub fn valid_cluster_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 253 {
        return Err(format!(
            "cluster name is {} bytes; it must be 1 to 253",
            b.len()
        ));
    }
    let ok = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if !ok {
        return Err(format!(
            "cluster name {name:?} is not valid: use letters, digits, '-', '.' and '_', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

fn busy() -> Response {
    with_retry_after(
        error(
            StatusCode::TOO_MANY_REQUESTS,
            "kaudit is at its in-flight memory limit (ingest.max_inflight); retry shortly",
        ),
        1,
    )
}

async fn ingest(
    State(st): State<AppState>,
    caller: Ingester,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    receive(
        st,
        caller.principal,
        params.cluster,
        headers,
        body,
        Push::Webhook,
    )
    .await
}

/// What kind of body a push route takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// kube-apiserver's webhook backend (EventList).
    Webhook,
    /// A provider envelope (GKE Pub/Sub push, Firehose delivery, AdmissionReview).
    Managed(kaudit_sources::managed::ManagedFormat),
}

impl Push {
    fn source(self) -> &'static str {
        match self {
            Push::Webhook => "webhook",
            Push::Managed(f) => match f {
                kaudit_sources::managed::ManagedFormat::Eks => "firehose",
                kaudit_sources::managed::ManagedFormat::Gke => "gke-pubsub",
                kaudit_sources::managed::ManagedFormat::Aks => "aks",
                kaudit_sources::managed::ManagedFormat::Admission => "admission",
                kaudit_sources::managed::ManagedFormat::Auto => "managed",
            },
        }
    }
}

/// The ingest every push route shares: cluster, content type, body bounds
/// (size, rate, in-flight memory, gzip), decoding on a blocking thread, the
/// ingest pipeline (quarantine, policy, dedupe, durable append), and the
/// outcome or the error as JSON. `Ok` bodies are the [`IngestOutcome`]
/// (`kaudit_sources::IngestOutcome`); callers with their own reply contract
/// (Firehose, admission) rewrite it.
pub async fn receive(
    st: AppState,
    principal: crate::auth::Principal,
    cluster_param: Option<String>,
    headers: HeaderMap,
    body: Body,
    kind: Push,
) -> Response {
    let params = IngestParams {
        cluster: cluster_param,
    };
    if let Some(c) = params.cluster.as_deref() {
        if let Err(m) = valid_cluster_name(c) {
            return error(StatusCode::BAD_REQUEST, format!("?cluster=: {m}"));
        }
    }
    let cluster = match principal.cluster_for(params.cluster.as_deref()) {
        Ok(c) => c,
        Err(m) => return error(StatusCode::FORBIDDEN, m),
    };
    // A JSON content type is required: a browser cannot send it cross-site
    // without a preflight, so a page cannot post events here.
    let ct = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?"));
    let mime = ct.map(|ct| ct.split(';').next().unwrap_or("").trim());
    if !mime.is_some_and(|m| m.eq_ignore_ascii_case("application/json")) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            match ct {
                Some(ct) => format!("Content-Type {ct:?} is not supported: send application/json (gzip as Content-Encoding)"),
                None => "Content-Type is missing: send application/json (gzip as Content-Encoding)".to_string(),
            },
        );
    }
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => false,
        Some(e) if e == "identity" || e.is_empty() => false,
        Some(e) if e == "gzip" => true,
        Some(e) => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding {e:?} is not supported: use gzip or none"),
            )
        }
    };
    let max = st.limits.max_body;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body of {} bytes exceeds the limit of {max} bytes",
                declared.unwrap_or(0)
            ),
        );
    }
    // In-flight memory is reserved as bytes arrive, so a client that
    // declares a large body and sends it slowly holds only what it sent.
    let mut res = Reservation::new(st.inflight.clone(), st.inflight_permits);
    let raw = match read_body(body, max, &st.limits, &mut res).await {
        Ok(b) => b,
        Err(ReadBodyError::Busy(body)) => {
            // Read and discard the rest (no memory held) so the client gets
            // the 429 instead of a connection reset mid-upload.
            drop(res);
            drain(body, max).await;
            return busy();
        }
        Err(ReadBodyError::TooLarge) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body exceeds the limit of {max} bytes"),
            )
        }
        Err(ReadBodyError::Slow { got, secs }) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "body too slow: {got} bytes in {secs} s (limits.body_timeout, then at least limits.min_body_rate = {} bytes/s)",
                    st.limits.min_body_rate
                ),
            )
        }
        Err(ReadBodyError::Io(m)) => {
            return error(StatusCode::BAD_REQUEST, format!("reading the body: {m}"))
        }
    };
    let ingestor = st.ingestor.clone();
    let strict = principal.strict;
    let ready = st.ready.clone();
    let max_items = st.max_batch_items;
    let result = tokio::task::spawn_blocking(move || {
        let mut res = res;
        let body = if gzip {
            inflate_limited(&raw, max, &mut res)?
        } else {
            raw
        };
        // What decoding will hold: a copy of each event's bytes and its
        // document, for at most the items the body can hold.
        let items = max_items.min(body.len() / 2 + 1);
        let decoded = body
            .len()
            .saturating_mul(2)
            .saturating_add(items.saturating_mul(ITEM_OVERHEAD));
        if !res.cover(body.len().saturating_add(decoded)) {
            return Err(BlockingError::Busy);
        }
        if let Err(why) = ready() {
            return Err(BlockingError::Unavailable(why));
        }
        let out = match kind {
            Push::Webhook => ingestor
                .ingest_batch(&body, &cluster, strict, "webhook")
                .map_err(BlockingError::Ingest),
            Push::Managed(format) => {
                let limits = kaudit_sources::managed::ConvertLimits {
                    max_items,
                    max_inflated: max,
                };
                match kaudit_sources::managed::convert(
                    &body,
                    format,
                    Some(kaudit_event::MicroTime::now()),
                    &limits,
                ) {
                    Err(e) => Err(BlockingError::Ingest(IngestError::BadBody(e.to_string()))),
                    Ok(c) if strict && !c.bad.is_empty() => {
                        Err(BlockingError::Ingest(IngestError::Strict {
                            items: c
                                .bad
                                .iter()
                                .take(kaudit_sources::pipeline::MAX_REPORTED_ITEMS)
                                .map(kaudit_sources::BadItem::reported)
                                .collect(),
                            count: c.bad.len(),
                        }))
                    }
                    Ok(c) => ingestor
                        .ingest_events(c.events, c.bad, &cluster, kind.source())
                        .map_err(BlockingError::Ingest),
                }
            }
        };
        drop(res);
        out
    })
    .await;
    match result {
        Ok(Ok(outcome)) => (StatusCode::OK, axum::Json(outcome)).into_response(),
        Ok(Err(BlockingError::Busy)) => busy(),
        Ok(Err(BlockingError::TooLarge)) => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("gzip body inflates beyond the limit of {max} bytes"),
        ),
        Ok(Err(BlockingError::BadGzip(m))) => {
            error(StatusCode::BAD_REQUEST, format!("invalid gzip body: {m}"))
        }
        Ok(Err(BlockingError::Unavailable(m))) => {
            with_retry_after(error(StatusCode::SERVICE_UNAVAILABLE, m), 5)
        }
        Ok(Err(BlockingError::Ingest(IngestError::BadBody(m)))) => {
            error(StatusCode::BAD_REQUEST, format!("body: {m}"))
        }
        Ok(Err(BlockingError::Ingest(e @ IngestError::TooManyItems { .. })))
        | Ok(Err(BlockingError::Ingest(e @ IngestError::QuarantineTooLarge { .. }))) => {
            error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        Ok(Err(BlockingError::Ingest(IngestError::QuarantineFull(m)))) => {
            with_retry_after(error(StatusCode::INSUFFICIENT_STORAGE, m), 60)
        }
        Ok(Err(BlockingError::Ingest(IngestError::Strict { items, count }))) => {
            let body = json!({
                "error": format!("{count} invalid item(s); strict mode stores nothing from this batch"),
                "status": 400,
                "invalid": items,
                "invalid_count": count,
            });
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        }
        Ok(Err(BlockingError::Ingest(IngestError::Unavailable(m)))) => {
            with_retry_after(error(StatusCode::SERVICE_UNAVAILABLE, m), 5)
        }
        Err(join) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("ingest task failed: {join}"),
        ),
    }
}

enum BlockingError {
    Busy,
    TooLarge,
    BadGzip(String),
    Unavailable(String),
    Ingest(IngestError),
}

enum ReadBodyError {
    Busy(Body),
    TooLarge,
    Slow { got: usize, secs: u64 },
    Io(String),
}

async fn drain(body: Body, max: usize) {
    let mut body = body;
    let mut seen = 0usize;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen <= max {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(f))) => seen += f.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
}

/// Reads a body up to `max` bytes, reserving in-flight memory for each chunk
/// as it arrives and holding the sender to the minimum rate.
async fn read_body(
    body: Body,
    max: usize,
    limits: &HttpLimits,
    res: &mut Reservation,
) -> Result<Vec<u8>, ReadBodyError> {
    let start = tokio::time::Instant::now();
    let rate = limits.min_body_rate.max(1);
    let mut body = body;
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut got = 0usize;
    loop {
        let allowed = limits.body_timeout + std::time::Duration::from_secs(got as u64 / rate);
        let frame = match tokio::time::timeout_at(start + allowed, body.frame()).await {
            Err(_) => {
                return Err(ReadBodyError::Slow {
                    got,
                    secs: start.elapsed().as_secs(),
                })
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(ReadBodyError::Io(e.to_string())),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        got = got.saturating_add(data.len());
        if got > max {
            return Err(ReadBodyError::TooLarge);
        }
        if !res.cover(got) {
            return Err(ReadBodyError::Busy(body));
        }
        chunks.push(data);
    }
    if chunks.len() == 1 {
        return Ok(Vec::from(chunks.pop().unwrap_or_default()));
    }
    let mut out = Vec::with_capacity(got);
    for c in &chunks {
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// Inflates a gzip body up to `max` bytes, reserving in-flight memory for
/// every chunk before it is kept.
fn inflate_limited(gz: &[u8], max: usize, res: &mut Reservation) -> Result<Vec<u8>, BlockingError> {
    const CHUNK: usize = 256 << 10;
    let mut out = Vec::new();
    let mut dec = flate2::read::MultiGzDecoder::new(gz);
    loop {
        // The buffer grows by doubling: reserve what it may take.
        if !res.cover(gz.len() + 2 * (out.len() + CHUNK)) {
            return Err(BlockingError::Busy);
        }
        let start = out.len();
        out.resize(start + CHUNK, 0);
        let mut n = 0;
        while n < CHUNK {
            match dec.read(&mut out[start + n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(BlockingError::BadGzip(e.to_string())),
            }
        }
        out.truncate(start + n);
        if out.len() > max {
            return Err(BlockingError::TooLarge);
        }
        if n < CHUNK {
            return Ok(out);
        }
    }
}

async fn readyz(State(st): State<AppState>) -> Response {
    match (st.ready)() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
    }
}

/// `/metrics`: OpenMetrics for a scraper that asks for it (Prometheus does,
/// in its `Accept` header), the Prometheus text format otherwise.
async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let open = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    if open {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            st.metrics.render_openmetrics(),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            st.metrics.render(),
        )
            .into_response()
    }
}

/// Serves plain HTTP on a bound listener until `shutdown` turns true, with
/// the connection bounds of [`crate::listener`].
pub async fn serve_plain(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: crate::listener::ConnLimits,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    crate::listener::serve(listener, None, app, limits, shutdown).await
}

/// Serves HTTPS: each connection's verified client certificate becomes a
/// [`PeerIdentity`](crate::auth::PeerIdentity) extension on its requests.
/// Stops accepting when `shutdown` turns true and lets open connections
/// finish.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: crate::listener::ConnLimits,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    crate::listener::serve(listener, Some(tls), app, limits, shutdown).await
}
