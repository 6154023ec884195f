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
    asset!("pages/reports.js", JS),
];

/// The files as served: `index.html` names every asset under
/// `/ui/<version>/`, where the version is a hash of all of them, so those
/// URLs can be cached for good (an upgrade changes the version) while
/// `index.html` itself is always revalidated.
struct Served {
    version: String,
    bodies: Vec<Vec<u8>>,
    tags: Vec<String>,
}

fn served() -> &'static Served {
    static SERVED: OnceLock<Served> = OnceLock::new();
    SERVED.get_or_init(|| {
        let mut all = Sha256::new();
        for a in ASSETS {
            all.update(a.path.as_bytes());
            all.update(a.body);
        }
        let version = hex::encode(&all.finalize()[..6]);
        let bodies: Vec<Vec<u8>> = ASSETS
            .iter()
            .map(|a| {
                if a.path == "index.html" {
                    String::from_utf8_lossy(a.body)
                        .replace("\"/ui/", &format!("\"/ui/{version}/"))
                        .into_bytes()
                } else {
                    a.body.to_vec()
                }
            })
            .collect();
        let tags = bodies
            .iter()
            .map(|b| format!("\"{}\"", hex::encode(&Sha256::digest(b)[..12])))
            .collect();
        Served {
            version,
            bodies,
            tags,
        }
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
            get(|Path(p): Path<String>, h: HeaderMap| async move {
                let v = &served().version;
                match p.strip_prefix(v.as_str()).and_then(|r| r.strip_prefix('/')) {
                    Some(rest) => serve_cached(rest, &h, true),
                    None => serve(&p, &h),
                }
            }),
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
    serve_cached(path, headers, false)
}

/// Serves one file; `immutable` for versioned URLs, else revalidated by ETag.
fn serve_cached(path: &str, headers: &HeaderMap, immutable: bool) -> Response {
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
    let tag = &served().tags[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let common = [(header::ETAG, tag.as_str()), (header::CACHE_CONTROL, cache)];
    if fresh {
        return secure((StatusCode::NOT_MODIFIED, common).into_response());
    }
    secure(
        (
            common,
            [(header::CONTENT_TYPE, asset.content_type)],
            served().bodies[i].clone(),
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
            if a.path != "index.html" {
                assert_eq!(&body[..], a.body);
            }
            // The versioned URL of the same file may be cached for good.
            let v = get(&format!("/ui/{}/{}", served().version, a.path), None).await;
            assert_eq!(v.status(), StatusCode::OK, "{}", a.path);
            assert_eq!(
                header_of(&v, header::CACHE_CONTROL),
                "public, max-age=31536000, immutable"
            );
        }
        let root = get("/", None).await;
        assert_eq!(header_of(&root, header::CACHE_CONTROL), "no-cache");
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

    /// The page names its files by versioned URL, and every module is preloaded.
    #[test]
    fn index_refers_to_versioned_assets() {
        let html = std::str::from_utf8(&served().bodies[0]).expect("utf-8");
        let v = &served().version;
        assert!(html.contains(&format!("\"/ui/{v}/app.js\"")), "{html}");
        assert!(!html.contains("\"/ui/app.js\""));
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            assert!(
                html.contains(&format!("/ui/{v}/{}\"", a.path)),
                "{} is not preloaded",
                a.path
            );
        }
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
