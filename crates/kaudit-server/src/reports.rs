//! Compliance reports from the console (role reader):
//! `GET /api/v1/reports/templates` lists the built-in templates and which
//! output formats this server can make; `POST /api/v1/reports` builds one
//! (`kaudit-report`) over a period as JSON (the preview), a self-checking
//! HTML page, a signed evidence bundle (`.tar.zst`) or a PDF (only when
//! headless Chromium is installed).
//!
//! Role reader, not admin: a report shows events and their proofs, which a
//! reader can already search and open one by one (`/api/v1/events`), and
//! auditors are exactly the people who should be given read access and no
//! more. Nothing a report does changes the store (it only signs a bundle's
//! manifest with the log's key, which says "this log holds these events",
//! the same statement its checkpoints make). Templates are built-in names
//! only: a caller never names a file on the server.
//!
//! A report runs like a query: in one of the `query.max_concurrent` slots,
//! under the `query.timeout` budget (503 past it), and without the full
//! store verification the CLI runs (that reads every record; the Integrity
//! page runs it, role admin).

// Handlers return ready-made error responses, built at most once per request.
#![allow(clippy::result_large_err)]

use crate::api::{blocking, index_error, ApiContext};
use crate::authz::{with_auth, Reader};
use crate::http::error;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kaudit_event::MicroTime;
use kaudit_report::{bundle, html, Inputs, ReportError, ReportRequest, Template};
use kaudit_store::crypt::Cipher;
use kaudit_store::note::Signer25519;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// Largest request body (the request is a few short fields).
const MAX_REQUEST_BYTES: usize = 16 << 10;
/// Most clusters one request names.
const MAX_CLUSTERS: usize = 64;

/// What the report routes share.
#[derive(Clone)]
pub struct ReportsContext {
    /// Store, search backend, credentials and query limits.
    pub api: ApiContext,
    /// The data directory (alert log, quarantine).
    pub data: PathBuf,
    /// The log's signing key, which signs a bundle's manifest (without it
    /// only the JSON preview can be made).
    pub signer: Option<Arc<Signer25519>>,
    /// The store's data key, when encryption at rest is on (the alert log
    /// and the quarantine are sealed with it).
    pub cipher: Option<Arc<Cipher>>,
    /// Headless Chromium for PDFs, when installed.
    pub chromium: Option<PathBuf>,
}

/// Output forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The report JSON (the console's preview).
    Json,
    /// The self-checking HTML page.
    Html,
    /// The signed evidence bundle.
    Bundle,
    /// The HTML printed to PDF by headless Chromium.
    Pdf,
}

/// `POST /api/v1/reports`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// A built-in template name.
    pub template: String,
    /// A month, `2026-11` (or `since`, `until`).
    #[serde(default)]
    pub period: Option<String>,
    /// Start (RFC 3339, a date, or a duration back from now).
    #[serde(default)]
    pub since: Option<String>,
    /// End, exclusive (default now).
    #[serde(default)]
    pub until: Option<String>,
    /// Only these clusters (empty: all).
    #[serde(default)]
    pub cluster: Vec<String>,
    /// Output form (default json).
    #[serde(default = "default_format")]
    pub format: Format,
    /// Rows per section, overriding the template.
    #[serde(default)]
    pub max_rows: Option<usize>,
}

fn default_format() -> Format {
    Format::Json
}

/// The report routes, to merge into the server's router.
pub fn routes(ctx: ReportsContext) -> Router {
    let auth = ctx.api.auth.clone();
    let router = Router::new()
        .route("/api/v1/reports/templates", get(templates))
        .route("/api/v1/reports", post(make))
        .with_state(ctx);
    with_auth(router, auth)
}

async fn templates(State(ctx): State<ReportsContext>, _caller: Reader) -> Response {
    let mut list = Vec::new();
    for (name, _) in kaudit_report::template::BUILTIN {
        match Template::builtin(name) {
            Ok(t) => list.push(serde_json::json!({
                "name": t.name,
                "title": t.title,
                "description": t.description,
                "sections": t.sections.iter().map(|s| serde_json::json!({"id": s.id, "title": s.title, "kind": s.kind})).collect::<Vec<_>>(),
            })),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
    let mut formats = vec!["json"];
    if ctx.signer.is_some() {
        formats.extend(["html", "bundle"]);
        if ctx.chromium.is_some() {
            formats.push("pdf");
        }
    }
    let pdf_note = if ctx.chromium.is_some() {
        None
    } else {
        Some("PDF needs headless Chromium on the server (Debian: apt-get install chromium); download the HTML and print it from a browser instead")
    };
    axum::Json(serde_json::json!({
        "templates": list,
        "formats": formats,
        "signing": ctx.signer.is_some(),
        "pdf": ctx.chromium.is_some(),
        "pdf_note": pdf_note,
    }))
    .into_response()
}

fn bad(m: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, m)
}

/// The period of a request, `[since, until)` in µs, or a 400.
fn period(p: &ReportParams, now: MicroTime) -> Result<(i64, i64), Response> {
    let bound = |s: &str, what: &str| {
        kaudit_query::parse_time_bound(s, now)
            .map(|t| t.micros())
            .map_err(|e| bad(format!("{what} {s:?}: {e}")))
    };
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
    match (nonempty(&p.period), nonempty(&p.since)) {
        (Some(_), Some(_)) => Err(bad("give period or since/until, not both")),
        (Some(m), None) => kaudit_report::parse_month(&m).map_err(|e| bad(e.to_string())),
        (None, Some(s)) => {
            let since = bound(&s, "since")?;
            let until = match nonempty(&p.until) {
                Some(u) => bound(&u, "until")?,
                None => now.micros(),
            };
            Ok((since, until))
        }
        (None, None) => Err(bad(
            "say which period: period (2026-11) or since (and until)",
        )),
    }
}

fn report_error(e: ReportError) -> Response {
    match e {
        ReportError::Index(e) => index_error(e),
        e @ ReportError::TimedOut(_) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        e @ (ReportError::Input(_) | ReportError::Template(_)) => bad(e.to_string()),
        e => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn attachment(bytes: Vec<u8>, content_type: &'static str, name: &str) -> Response {
    let mut r = (StatusCode::OK, bytes).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn make(
    State(ctx): State<ReportsContext>,
    caller: Reader,
    body: axum::body::Bytes,
) -> Response {
    if body.len() > MAX_REQUEST_BYTES {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a report request is at most {MAX_REQUEST_BYTES} bytes"),
        );
    }
    let p: ReportParams = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad(format!("report request: {e}")),
    };
    let template = match Template::builtin(&p.template) {
        Ok(t) => t,
        Err(e) => return bad(e.to_string()),
    };
    if p.cluster.len() > MAX_CLUSTERS {
        return bad(format!("at most {MAX_CLUSTERS} clusters"));
    }
    let now = MicroTime::now();
    let (since, until) = match period(&p, now) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if p.format != Format::Json && ctx.signer.is_none() {
        return error(
            StatusCode::CONFLICT,
            "this server has no signing key for the log (store.signing_key), so it can sign no bundle: only the JSON preview can be made",
        );
    }
    if p.format == Format::Pdf && ctx.chromium.is_none() {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "PDF needs headless Chromium on the server (Debian: apt-get install chromium); download the HTML and print it from a browser instead",
        );
    }
    let who = caller.principal.name.clone();
    let limits = ctx.api.limits.clone();
    blocking(&limits, move |budget| {
        let store = ctx.api.store.clone();
        let alerts = kaudit_detect::AlertLog::new(&ctx.data).sealed(ctx.cipher.clone());
        let have_alerts = alerts.alerts_path().exists();
        let quarantined = crate::serve::open_quarantine(&ctx.data, ctx.cipher.as_ref())
            .ok()
            .and_then(|q| q.list().ok())
            .map(|l| {
                l.into_iter()
                    .filter_map(|e| Some((e.cluster, MicroTime::parse(&e.time).ok()?.micros())))
                    .collect()
            })
            .unwrap_or_default();
        let req = ReportRequest {
            clusters: p.cluster.clone(),
            max_rows: p.max_rows,
            verify_store: false,
            budget: Some(budget),
            ..ReportRequest::new(template, since, until, now)
        };
        let inputs = Inputs {
            store: &store,
            backend: ctx.api.backend.as_ref(),
            alerts: have_alerts.then_some(&alerts),
            quarantined,
        };
        let ev = kaudit_report::build(&req, &inputs).map_err(report_error)?;
        tracing::info!(
            caller = %who,
            template = %ev.report.template,
            since = %ev.report.since,
            until = %ev.report.until,
            format = ?p.format,
            anchor = ev.report.anchor.size,
            "report made through the API"
        );
        let stem = format!(
            "kaudit-{}-{}",
            ev.report.template,
            ev.report.since.get(..10).unwrap_or("report")
        );
        let signer = || {
            ctx.signer
                .clone()
                .ok_or_else(|| error(StatusCode::CONFLICT, "no signing key"))
        };
        match p.format {
            Format::Json => Ok(axum::Json(&ev.report).into_response()),
            Format::Bundle => {
                let b = bundle::write(&ev, &*signer()?).map_err(report_error)?;
                Ok(attachment(
                    b,
                    "application/zstd",
                    &format!("{stem}.tar.zst"),
                ))
            }
            Format::Html | Format::Pdf => {
                let s = signer()?;
                let mut files = bundle::files(&ev, &s.verifier()).map_err(report_error)?;
                bundle::sign(&mut files, &s);
                let page = html::render(&ev.report, &files);
                if p.format == Format::Html {
                    return Ok(attachment(
                        page.into_bytes(),
                        "text/html; charset=utf-8",
                        &format!("{stem}.html"),
                    ));
                }
                let chromium = ctx
                    .chromium
                    .clone()
                    .ok_or_else(|| error(StatusCode::NOT_IMPLEMENTED, "no Chromium"))?;
                let pdf = kaudit_report::pdf::print(&chromium, &page).map_err(report_error)?;
                Ok(attachment(pdf, "application/pdf", &format!("{stem}.pdf")))
            }
        }
    })
    .await
}
