//! What a browser may not do to a kaudit it can reach: a page on another
//! site may not change state here (a `POST`/`PUT`/`PATCH`/`DELETE` whose
//! `Origin` is not this server is refused), and without credentials
//! (loopback, no auth) a request must name this server in `Host`, so a DNS
//! name rebound to 127.0.0.1 by an attacker's page is refused. Applied to
//! every route by [`crate::serve::build_router`].

use crate::http::error;
use crate::listener::Scheme;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// The names a request may carry in `Host` when no credentials are
/// configured, and whether to check at all.
#[derive(Clone, Debug, Default)]
pub struct BrowserGuard {
    /// Check `Host` (no-auth mode).
    pub check_host: bool,
    /// Host names of this server besides IP literals and `localhost`
    /// (`tls.names`), lower case.
    pub names: Vec<String>,
}

impl BrowserGuard {
    /// Whether `host` (a `Host` header value, port included) names this
    /// server: an IP literal (a rebinding needs a DNS name), `localhost` or
    /// a name under it, or one of the configured names.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim();
        let name = if let Some(rest) = host.strip_prefix('[') {
            return rest
                .split_once(']')
                .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
        } else {
            match host.rsplit_once(':') {
                Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => host,
            }
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name.parse::<std::net::Ipv4Addr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.names.contains(&name)
    }
}

/// The middleware; see the [module docs](self).
pub async fn browser_guard(
    State(guard): State<Arc<BrowserGuard>>,
    req: Request,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    if guard.check_host {
        if let Some(h) = &host {
            if !guard.host_allowed(h) {
                return error(
                    StatusCode::FORBIDDEN,
                    format!(
                        "Host {h:?} is not a name of this server: without credentials kaudit only answers requests for localhost, an IP address or a tls.names entry (DNS rebinding protection)"
                    ),
                );
            }
        }
    }
    let safe = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if !safe {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("?");
            let scheme = req.extensions().get::<Scheme>().map_or("http", |s| s.0);
            let own = host.as_deref().map(|h| format!("{scheme}://{h}"));
            if own
                .as_deref()
                .is_none_or(|o| !o.eq_ignore_ascii_case(origin))
            {
                return error(
                    StatusCode::FORBIDDEN,
                    format!(
                        "cross-origin {} refused: Origin {origin:?} is not this server ({})",
                        req.method(),
                        own.as_deref().unwrap_or("no Host")
                    ),
                );
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt;

    fn app(check_host: bool) -> Router {
        let guard = Arc::new(BrowserGuard {
            check_host,
            names: vec!["kaudit.example.org".into()],
        });
        Router::new()
            .route("/x", post(|| async { "ok" }).get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(guard, browser_guard))
    }

    async fn status(app: Router, method: &str, headers: &[(&str, &str)]) -> u16 {
        let mut req = axum::http::Request::builder().method(method).uri("/x");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        resp.status().as_u16()
    }

    #[tokio::test]
    async fn foreign_origins_and_rebound_hosts_are_refused() {
        let a = app(true);
        let h = ("Host", "127.0.0.1:8080");
        assert_eq!(status(a.clone(), "POST", &[h]).await, 200);
        assert_eq!(
            status(a.clone(), "POST", &[h, ("Origin", "http://127.0.0.1:8080")]).await,
            200
        );
        for o in [
            "https://evil.example",
            "null",
            "http://127.0.0.1:9999",
            "https://127.0.0.1:8080",
        ] {
            assert_eq!(
                status(a.clone(), "POST", &[h, ("Origin", o)]).await,
                403,
                "{o}"
            );
            assert_eq!(
                status(a.clone(), "DELETE", &[h, ("Origin", o)]).await,
                403,
                "{o}"
            );
        }
        // Reading cross-origin is the browser's business (no CORS headers are sent).
        assert_eq!(
            status(a.clone(), "GET", &[h, ("Origin", "https://evil.example")]).await,
            200
        );
        // DNS rebinding: a foreign name for 127.0.0.1.
        assert_eq!(
            status(a.clone(), "GET", &[("Host", "rebind.evil.example:8080")]).await,
            403
        );
        assert_eq!(
            status(
                a.clone(),
                "POST",
                &[
                    ("Host", "rebind.evil.example"),
                    ("Origin", "http://rebind.evil.example")
                ]
            )
            .await,
            403
        );
        for ok in [
            "localhost:8080",
            "[::1]:8080",
            "10.1.2.3",
            "KAUDIT.example.org:8443",
            "app.localhost",
        ] {
            assert_eq!(status(a.clone(), "GET", &[("Host", ok)]).await, 200, "{ok}");
        }
        // With credentials configured, Host is not checked (Origin still is).
        let b = app(false);
        assert_eq!(
            status(b.clone(), "GET", &[("Host", "kaudit.internal:8443")]).await,
            200
        );
        assert_eq!(
            status(
                b,
                "POST",
                &[
                    ("Host", "kaudit.internal"),
                    ("Origin", "http://evil.example")
                ]
            )
            .await,
            403
        );
    }
}
