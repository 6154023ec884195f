//! The web console: static files from `ui/` at the repository root, compiled
//! into the binary so `kaudit serve` needs nothing beside it (no internet,
//! no npm at build time).
//!
//! `/` is the single page; `/ui/...` are its scripts, styles and icon. Every
//! answer (404s too) carries a strict Content-Security-Policy (no inline
//! code, nothing from elsewhere, no framing) and the other security headers;
//! files are revalidated with a strong ETag so an upgraded binary is picked
//! up at once while unchanged files cost a 304.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The policy every console page runs under.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $ct:expr) => {
        Asset {
            path: $path,
            content_type: $ct,
            body: include_bytes!(concat!("../../../ui/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("util.js", JS),
    asset!("charts.js", JS),
    asset!("sha256.js", JS),
    asset!("pages/search.js", JS),
    asset!("pages/event.js", JS),
    asset!("pages/object.js", JS),
    asset!("pages/user.js", JS),
    asset!("pages/alerts.js", JS),
    asset!("pages/dashboard.js", JS),
    asset!("pages/integrity.js", JS),
];

fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.body)[..12])))
            .collect()
    })
}

/// The console routes: `/` and `/ui/{*path}`.
pub fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|h: HeaderMap| async move { serve("index.html", &h) }),
        )
        .route(
            "/ui/{*path}",
            get(|Path(p): Path<String>, h: HeaderMap| async move { serve(&p, &h) }),
        )
}

/// Adds the security headers every console answer carries.
pub fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return secure(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("no console file {path:?}\n"),
            )
                .into_response(),
        );
    };
    let asset = &ASSETS[i];
    let tag = &etags()[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let common = [
        (header::ETAG, tag.as_str()),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    if fresh {
        return secure((StatusCode::NOT_MODIFIED, common).into_response());
    }
    secure(
        (
            common,
            [(header::CONTENT_TYPE, asset.content_type)],
            asset.body,
        )
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(uri: &str, etag: Option<&str>) -> Response {
        let mut req = Request::get(uri);
        if let Some(t) = etag {
            req = req.header(header::IF_NONE_MATCH, t);
        }
        routes()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("response")
    }

    fn header_of(r: &Response, name: header::HeaderName) -> &str {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[tokio::test]
    async fn every_asset_is_served_with_its_type_and_security_headers() {
        for a in ASSETS {
            let r = get(&format!("/ui/{}", a.path), None).await;
            assert_eq!(r.status(), StatusCode::OK, "{}", a.path);
            assert_eq!(header_of(&r, header::CONTENT_TYPE), a.content_type);
            assert_eq!(
                header_of(&r, header::CONTENT_SECURITY_POLICY),
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(header_of(&r, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            assert_eq!(header_of(&r, header::X_FRAME_OPTIONS), "DENY");
            let body = r.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(&body[..], a.body);
        }
        let root = get("/", None).await;
        assert_eq!(
            header_of(&root, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
    }

    #[tokio::test]
    async fn etag_revalidation_and_unknown_files() {
        let r = get("/ui/app.js", None).await;
        let tag = header_of(&r, header::ETAG).to_string();
        assert!(tag.starts_with('"') && tag.len() > 10, "{tag}");
        let again = get("/ui/app.js", Some(&tag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let other = get("/ui/app.js", Some("\"stale\"")).await;
        assert_eq!(other.status(), StatusCode::OK);
        let missing = get("/ui/../Cargo.toml", None).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            header_of(&missing, header::CONTENT_SECURITY_POLICY),
            CONTENT_SECURITY_POLICY
        );
    }

    /// The CSP forbids inline code: the page must not contain any.
    #[test]
    fn index_has_no_inline_script_or_style() {
        let html = std::str::from_utf8(ASSETS[0].body).expect("utf-8");
        assert!(!html.contains("<style"), "inline <style>");
        assert!(!html.contains("style=\""), "inline style attribute");
        let lower = html.to_ascii_lowercase();
        for (i, _) in lower.match_indices(" on") {
            let rest = &lower[i + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            assert!(
                name_len == 0 || !rest[name_len..].starts_with('='),
                "inline event handler at byte {i}"
            );
        }
        for tag in html.split("<script").skip(1) {
            let open = tag.split('>').next().unwrap_or("");
            assert!(open.contains("src="), "inline <script>: {open}");
        }
    }
}
