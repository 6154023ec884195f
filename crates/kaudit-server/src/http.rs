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
    /// Memory all in-flight bodies may hold together; beyond it, 429.
    pub max_inflight_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body: 64 << 20,
            max_inflight_bytes: 512 << 20,
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

async fn ingest(
    State(st): State<AppState>,
    caller: Ingester,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let principal = caller.principal;
    let cluster = match principal.cluster_for(params.cluster.as_deref()) {
        Ok(c) => c,
        Err(m) => return error(StatusCode::FORBIDDEN, m),
    };
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type {ct:?} is not supported: send application/json"),
            );
        }
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
    // Reserve memory for the body before reading it: overload gets 429, not OOM.
    let want_kib = declared.map_or(64, |n| (n as usize).div_ceil(1024)).max(1);
    // A body larger than the whole budget may still pass when nothing else is in flight.
    let want = u32::try_from(want_kib)
        .unwrap_or(u32::MAX)
        .min(st.inflight_permits);
    let Ok(_permit) = st.inflight.clone().try_acquire_many_owned(want) else {
        // Read and discard the body (no memory held) so the client gets the
        // 429 instead of a connection reset mid-upload.
        drain(body, max).await;
        return with_retry_after(
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "kaudit is at its in-flight memory limit; retry shortly",
            ),
            1,
        );
    };
    let raw = match read_limited(body, max).await {
        Ok(b) => b,
        Err(ReadBodyError::TooLarge) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body exceeds the limit of {max} bytes"),
            )
        }
        Err(ReadBodyError::Io(m)) => {
            return error(StatusCode::BAD_REQUEST, format!("reading the body: {m}"))
        }
    };
    let ingestor = st.ingestor.clone();
    let strict = principal.strict;
    let ready = st.ready.clone();
    let result = tokio::task::spawn_blocking(move || {
        let inflated;
        let body: &[u8] = if gzip {
            inflated = inflate_limited(&raw, max)?;
            &inflated
        } else {
            &raw
        };
        if let Err(why) = ready() {
            return Err(BlockingError::Unavailable(why));
        }
        ingestor
            .ingest_batch(body, &cluster, strict, "webhook")
            .map_err(BlockingError::Ingest)
    })
    .await;
    match result {
        Ok(Ok(outcome)) => (StatusCode::OK, axum::Json(outcome)).into_response(),
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
        Ok(Err(BlockingError::Ingest(IngestError::Strict(items)))) => {
            let body = json!({
                "error": format!("{} invalid item(s); strict mode stores nothing from this batch", items.len()),
                "status": 400,
                "invalid": items,
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
    TooLarge,
    BadGzip(String),
    Unavailable(String),
    Ingest(IngestError),
}

enum ReadBodyError {
    TooLarge,
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

async fn read_limited(body: Body, max: usize) -> Result<Bytes, ReadBodyError> {
    let limited = http_body_util::Limited::new(body, max);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ReadBodyError::TooLarge)
            } else {
                Err(ReadBodyError::Io(e.to_string()))
            }
        }
    }
}

fn inflate_limited(gz: &[u8], max: usize) -> Result<Vec<u8>, BlockingError> {
    let mut out = Vec::with_capacity(gz.len().saturating_mul(4).min(max));
    let mut dec = flate2::read::MultiGzDecoder::new(gz).take(max as u64 + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| BlockingError::BadGzip(e.to_string()))?;
    if out.len() > max {
        return Err(BlockingError::TooLarge);
    }
    Ok(out)
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

/// Serves plain HTTP on a bound listener until `shutdown` resolves.
pub async fn serve_plain(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves HTTPS: each connection's verified client certificate becomes a
/// [`PeerIdentity`] extension on its requests. Stops accepting when
/// `shutdown` resolves and lets open connections finish.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use tower::ServiceExt;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut shutdown = shutdown;
    let tracker = tokio_util_tracker();
    loop {
        let (tcp, _addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let guard = tracker.clone();
        tokio::spawn(async move {
            let _guard = guard;
            // Bound the handshake so a silent client cannot hold a task forever.
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let peer = crate::tls::peer_identity(tls.get_ref().1.peer_certificates());
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut req = req.map(Body::new);
                    req.extensions_mut().insert(peer.clone());
                    app.clone().oneshot(req)
                });
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
    // Wait for in-flight connections to finish (bounded).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while Arc::strong_count(&tracker) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

fn tokio_util_tracker() -> Arc<()> {
    Arc::new(())
}
