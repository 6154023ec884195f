//! Accepting connections with bounds, so one client cannot hold the server:
//! a cap on open connections per listener and per peer address, a time limit
//! on the TLS handshake and on reading a request's headers (hyper's
//! `header_read_timeout`), and an idle timeout that closes a connection on
//! which nothing moved for a while with no request being handled. Request
//! bodies are bounded by the ingest handler (a minimum rate, in-flight
//! memory reserved as bytes arrive).

use crate::auth::PeerIdentity;
use axum::body::Body;
use axum::Router;
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{watch, Semaphore};

/// Bounds of the listeners (`limits:` in `kaudit.yaml`).
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Time a client has for the TLS handshake and for each request's headers.
    pub header_read_timeout: Duration,
    /// A connection with no bytes moving and no request in progress for this
    /// long is closed.
    pub idle_timeout: Duration,
    /// Open connections per listener; beyond it new ones are refused.
    pub max_connections: usize,
    /// Open connections per peer IP address and listener.
    pub max_connections_per_ip: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_connections_per_ip: 256,
        }
    }
}

/// The scheme of the listener a request came in on (`http` or `https`), a
/// request extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheme(pub &'static str);

/// Activity of one connection: when bytes last moved, requests in progress.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    requests: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// An I/O stream that records when bytes move.
struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts a request in progress for as long as it lives.
struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// One peer's share of the per-address connection cap, released on drop.
struct PeerSlot {
    table: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PeerSlot {
    fn take(table: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Self> {
        let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
        let n = t.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = t.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

/// Answers a connection over the cap with a 503 (plain HTTP; a TLS
/// connection is just closed) without reading its request.
fn refuse(tcp: tokio::net::TcpStream, plain: bool, why: String) {
    tracing::warn!("{why}");
    if !plain {
        return;
    }
    tokio::spawn(async move {
        let body = serde_json::json!({"error": why, "status": 503}).to_string();
        let resp = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut tcp = tcp;
        let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(resp.as_bytes())).await;
    });
}

/// Serves `app` on `listener` (TLS when `tls` is given) until `shutdown`
/// turns true, then stops accepting, asks open connections to finish, and
/// waits for them (bounded).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: ConnLimits,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let scheme = Scheme(if acceptor.is_some() { "https" } else { "http" });
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let peers = Arc::new(Mutex::new(HashMap::new()));
    let tracker = Arc::new(());
    let mut stop = shutdown.clone();
    loop {
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            refuse(
                tcp,
                acceptor.is_none(),
                format!(
                    "{scheme}: {} connections are open, the limit (limits.max_connections); refusing {addr}",
                    limits.max_connections,
                    scheme = scheme.0
                ),
            );
            continue;
        };
        let Some(peer_slot) = PeerSlot::take(&peers, addr.ip(), limits.max_connections_per_ip)
        else {
            refuse(
                tcp,
                acceptor.is_none(),
                format!(
                    "{}: {} has {} connections open, the per-address limit (limits.max_connections_per_ip)",
                    scheme.0,
                    addr.ip(),
                    limits.max_connections_per_ip
                ),
            );
            continue;
        };
        let (acceptor, app, guard, shutdown) = (
            acceptor.clone(),
            app.clone(),
            tracker.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let _held = (guard, slot, peer_slot);
            match acceptor {
                None => serve_connection(tcp, None, scheme, app, limits, shutdown).await,
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(
                        limits.header_read_timeout,
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
                    serve_connection(tls, Some(peer), scheme, app, limits, shutdown).await
                }
            }
        });
    }
    // Wait for in-flight connections to finish (bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while Arc::strong_count(&tracker) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Resolves once `rx` is true (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn serve_connection<I>(
    io: I,
    peer: Option<PeerIdentity>,
    scheme: Scheme,
    app: Router,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use tower::ServiceExt;
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
        requests: AtomicUsize::new(0),
    });
    let io = Watched {
        inner: io,
        activity: activity.clone(),
    };
    let act = activity.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut req = req.map(Body::new);
        if let Some(p) = &peer {
            req.extensions_mut().insert(p.clone());
        }
        req.extensions_mut().insert(scheme);
        act.requests.fetch_add(1, Ordering::Relaxed);
        let in_progress = InProgress(act.clone());
        let fut = app.clone().oneshot(req);
        async move {
            let r = fut.await;
            drop(in_progress);
            r
        }
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let tick = limits.idle_timeout.min(Duration::from_secs(1));
    let mut stopping = *shutdown.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep(tick) => {
                if activity.requests.load(Ordering::Relaxed) == 0
                    && activity.idle_for() >= limits.idle_timeout
                {
                    tracing::debug!("closing an idle connection");
                    return;
                }
            }
            _ = stopped(&mut shutdown), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
