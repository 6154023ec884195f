//! The API routes the web console needs beyond search: who the caller is,
//! the latest signed checkpoint and the verifier key, store verification on
//! demand (role admin) and its last result, ingest status, the query
//! language's field names, and least-privilege RBAC for a user.
//!
//! Verification reads every segment, so it runs on a blocking thread, one at
//! a time; its last result is kept in memory and in `<data>/verify/last.json`
//! so a restart still shows when the store was last checked and with what
//! outcome.

// Handlers return ready-made error responses, built at most once per request.
#![allow(clippy::result_large_err)]

use crate::api::ApiContext;
use crate::auth::Role;
use crate::authz::{with_auth, Admin, Reader};
use crate::http::error;
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kaudit_event::MicroTime;
use kaudit_index::rbac::{generate, RbacRequest};
use kaudit_query::Field;
use kaudit_store::verify::{verify, VerifyOptions};
use kaudit_store::{base64_encode, crypt::Cipher};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest user name accepted in a path.
const MAX_USER: usize = 1024;
/// How far back the ingest-rate samples reach.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Most problems kept in a verification result (the count is always exact).
const MAX_PROBLEMS: usize = 100;

/// What the console routes share.
#[derive(Clone)]
pub struct ConsoleContext {
    /// Store, search backend and credentials, as for the query API.
    pub api: ApiContext,
    /// Key file of encrypted segments (verification must decrypt them).
    pub encryption_key: Option<PathBuf>,
    /// `store.trusted_key`: the verifier key file verification trusts.
    pub trusted_key: Option<PathBuf>,
    /// `store.trusted_checkpoint_dir`: a witness's checkpoints of this log.
    pub trusted_checkpoint_dir: Option<PathBuf>,
}

/// The caveat a result carries when nothing outside the store was trusted.
pub const OWN_KEY_CAVEAT: &str = "checked against the store's own key: whoever can write the data dir could have rewritten the history and re-signed it; configure store.trusted_key and store.trusted_checkpoint_dir (a witness) to rule that out";

/// The outcome of one verification run, as served and kept on disk.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VerifyResult {
    /// True when no problem was found.
    pub ok: bool,
    /// When the run finished (RFC 3339).
    pub finished: String,
    /// Seconds the run took.
    pub seconds: f64,
    /// Records checked.
    pub records: u64,
    /// Tree size recomputed.
    pub tree_size: u64,
    /// Root recomputed (base64), if any record exists.
    pub root: Option<String>,
    /// Signed checkpoints whose signature and root were checked.
    pub checkpoints_checked: usize,
    /// Number of problems found.
    pub problem_count: usize,
    /// The first problems, each naming the record, segment and offset.
    pub problems: Vec<String>,
    /// Informational notes (pruned range, uncommitted tail).
    pub notes: Vec<String>,
    /// Who asked for it (credential name).
    pub by: String,
    /// The verifier key the checkpoints were checked with.
    #[serde(default)]
    pub key: Option<String>,
    /// Where that key came from: `trusted` (`store.trusted_key`) or `store`
    /// (the store's own key, which a data-dir writer can replace).
    #[serde(default = "store_key_source")]
    pub key_source: String,
    /// The trusted checkpoint the log was proven to extend (file, tree size).
    #[serde(default)]
    pub trusted_checkpoint: Option<String>,
    /// Set when neither a trusted key nor a trusted checkpoint was used:
    /// what `ok` does not rule out.
    #[serde(default)]
    pub caveat: Option<String>,
}

fn store_key_source() -> String {
    "store".into()
}

struct Shared {
    ctx: ConsoleContext,
    last: Mutex<Option<VerifyResult>>,
    running: AtomicBool,
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

type St = State<Arc<Shared>>;

fn last_path(ctx: &ConsoleContext) -> PathBuf {
    ctx.api.store.dir().join("verify").join("last.json")
}

fn load_last(ctx: &ConsoleContext) -> Option<VerifyResult> {
    let p = last_path(ctx);
    let bytes = std::fs::read(&p).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(path = %p.display(), error = %e, "ignoring unreadable last verification result");
            None
        }
    }
}

fn save_last(ctx: &ConsoleContext, r: &VerifyResult) -> std::io::Result<()> {
    let p = last_path(ctx);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = p.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &p)
}

/// The console routes, to merge into the server's router.
pub fn routes(ctx: ConsoleContext) -> Router {
    let last = load_last(&ctx);
    let shared = Arc::new(Shared {
        ctx,
        last: Mutex::new(last),
        running: AtomicBool::new(false),
        samples: Mutex::new(VecDeque::new()),
    });
    let auth = shared.ctx.api.auth.clone();
    let router = Router::new()
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/fields", get(fields))
        .route("/api/v1/status", get(status))
        .route("/api/v1/checkpoint", get(checkpoint))
        .route("/api/v1/checkpoint/public-key", get(public_key))
        .route("/api/v1/verify", get(last_verify).post(run_verify))
        .route("/api/v1/users/{user}/rbac", get(user_rbac))
        .with_state(shared);
    with_auth(router, auth)
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Ingest => "ingest",
        Role::Reader => "reader",
        Role::Admin => "admin",
    }
}

/// `GET /api/v1/whoami`: the caller's role, so the console can hide what it may not do.
async fn whoami(State(st): St, caller: Reader) -> Response {
    let p = caller.principal;
    axum::Json(json!({
        "name": p.name,
        "role": role_name(p.role),
        "cluster": p.cluster,
        "auth": st.ctx.api.auth.enabled(),
    }))
    .into_response()
}

/// `GET /api/v1/fields`: the query language's field names (autocomplete).
async fn fields(_caller: Reader) -> Response {
    let names: Vec<serde_json::Value> = Field::all_names()
        .into_iter()
        .map(|n| {
            let numeric = Field::parse(n).is_some_and(|f| f.is_numeric());
            json!({"name": n, "numeric": numeric})
        })
        .collect();
    axum::Json(json!({ "fields": names })).into_response()
}

/// Appends a (now, tree size) sample and answers events/s over the window.
fn ingest_rate(st: &Shared, size: u64) -> f64 {
    let now = Instant::now();
    let Ok(mut s) = st.samples.lock() else {
        return 0.0;
    };
    s.push_back((now, size));
    while s.len() > 2 && now.duration_since(s[0].0) > RATE_WINDOW {
        s.pop_front();
    }
    // Bounded even if polled very often: thin out the oldest half.
    if s.len() > 1024 {
        let keep: VecDeque<_> = s.iter().step_by(2).copied().collect();
        *s = keep;
    }
    let (t0, n0) = s[0];
    let dt = now.duration_since(t0).as_secs_f64();
    if dt < 0.5 {
        return 0.0;
    }
    size.saturating_sub(n0) as f64 / dt
}

/// `GET /api/v1/status`: tree size, ingest rate, checkpoint age, search-index lag.
async fn status(State(st): St, _caller: Reader) -> Response {
    let size = st.ctx.api.store.len();
    let rate = ingest_rate(&st, size);
    let cp = st.ctx.api.store.latest_checkpoint();
    let age = cp
        .as_ref()
        .and_then(|c| MicroTime::parse(&c.time).ok())
        .map(|t| (MicroTime::now().micros() - t.micros()) as f64 / 1e6);
    let verify_running = st.running.load(Ordering::Relaxed);
    axum::Json(json!({
        "tree_size": size,
        "ingest_events_per_sec": rate,
        "checkpoint_size": cp.as_ref().map(|c| c.size),
        "checkpoint_age_seconds": age,
        "verify_running": verify_running,
        "time": MicroTime::now().to_string(),
    }))
    .into_response()
}

/// The size and root lines of a checkpoint note (origin, size, base64 root, ...).
fn note_fields(note: &str) -> (Option<String>, Option<String>) {
    let mut lines = note.lines();
    let origin = lines.next().map(str::to_string);
    let _size = lines.next();
    let root = lines.next().map(str::to_string);
    (origin, root)
}

/// `GET /api/v1/checkpoint`: the latest signed checkpoint, note text and parsed fields.
async fn checkpoint(State(st): St, _caller: Reader) -> Response {
    let Some(cp) = st.ctx.api.store.latest_checkpoint() else {
        return error(
            StatusCode::NOT_FOUND,
            "the store has no signed checkpoint yet (nothing stored)",
        );
    };
    let (origin, root) = note_fields(&cp.note);
    let verifier = st.ctx.api.store.verifier();
    axum::Json(json!({
        "size": cp.size,
        "time": cp.time,
        "root": root,
        "origin": origin,
        "note": cp.note,
        "key_name": verifier.name(),
        "key_id": format!("{:08x}", verifier.key_id()),
    }))
    .into_response()
}

/// `GET /api/v1/checkpoint/public-key`: the verifier key, as a file to download.
async fn public_key(State(st): St, _caller: Reader) -> Response {
    let text = format!("{}\n", st.ctx.api.store.verifier().text());
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"checkpoint.pub\"",
            ),
        ],
        text,
    )
        .into_response()
}

fn verify_json(st: &Shared) -> serde_json::Value {
    let last = st.last.lock().ok().and_then(|l| l.clone());
    json!({
        "running": st.running.load(Ordering::Relaxed),
        "last": last,
    })
}

/// `GET /api/v1/verify`: the last verification result (null before the first run).
async fn last_verify(State(st): St, _caller: Reader) -> Response {
    axum::Json(verify_json(&st)).into_response()
}

/// `POST /api/v1/verify` (role admin): verifies the whole store now and answers the result.
async fn run_verify(State(st): St, caller: Admin) -> Response {
    let principal = caller.principal;
    if st.running.swap(true, Ordering::SeqCst) {
        return error(StatusCode::CONFLICT, "a verification is already running");
    }
    let st2 = st.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let ctx = &st2.ctx;
        let key = ctx
            .trusted_key
            .as_deref()
            .map(crate::config::load_trusted_key)
            .transpose()
            .map_err(|e| format!("store.trusted_key: {e}"))?;
        let mut opts = VerifyOptions {
            key,
            own_key: Some(ctx.api.store.verifier().clone()),
            trusted_checkpoint_dir: ctx.trusted_checkpoint_dir.clone(),
            threads: 0,
            ..VerifyOptions::default()
        };
        if let Some(k) = &ctx.encryption_key {
            opts.cipher = Some(Cipher::load(k).map_err(|e| e.to_string())?);
        }
        let rep = verify(ctx.api.store.dir(), &opts).map_err(|e| e.to_string())?;
        Ok::<_, String>(VerifyResult {
            ok: rep.ok(),
            finished: MicroTime::now().to_string(),
            seconds: rep.elapsed.as_secs_f64(),
            records: rep.records,
            tree_size: rep.size,
            root: rep.root.map(|r| base64_encode(&r)),
            checkpoints_checked: rep.checkpoints_checked,
            problem_count: rep.problems.len(),
            problems: rep
                .problems
                .iter()
                .take(MAX_PROBLEMS)
                .map(|p| p.to_string())
                .collect(),
            notes: rep.notes,
            by: principal.name,
            key: rep.key,
            key_source: if rep.key_trusted { "trusted" } else { "store" }.into(),
            caveat: (!rep.key_trusted && rep.trusted_checkpoint.is_none())
                .then(|| OWN_KEY_CAVEAT.to_string()),
            trusted_checkpoint: rep.trusted_checkpoint,
        })
    })
    .await;
    st.running.store(false, Ordering::SeqCst);
    let result = match joined {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("verification could not run: {e}"),
            )
        }
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("verification task failed: {e}"),
            )
        }
    };
    if !result.ok {
        tracing::error!(problems = result.problem_count, "store verification FAILED");
    }
    if let Err(e) = save_last(&st.ctx, &result) {
        tracing::warn!(error = %e, "cannot keep the verification result on disk");
    }
    if let Ok(mut l) = st.last.lock() {
        *l = Some(result);
    }
    axum::Json(verify_json(&st)).into_response()
}

#[derive(Deserialize)]
struct RbacParams {
    since: Option<String>,
    until: Option<String>,
    filter: Option<String>,
    resource_names: Option<bool>,
}

/// `GET /api/v1/users/{user}/rbac`: Roles and bindings granting exactly what
/// the user was seen doing (allowed requests only).
async fn user_rbac(
    State(st): St,
    _caller: Reader,
    Path(user): Path<String>,
    QueryParams(p): QueryParams<RbacParams>,
) -> Response {
    if user.is_empty() || user.len() > MAX_USER {
        return error(
            StatusCode::BAD_REQUEST,
            format!("user must be 1 to {MAX_USER} bytes"),
        );
    }
    let api = st.ctx.api.clone();
    crate::api::blocking(&api.limits, move |budget| {
        let (since, until) = crate::api::time_bounds(&p.since, &p.until)?;
        let req = RbacRequest {
            user: user.clone(),
            filter: p.filter.unwrap_or_default(),
            since,
            until,
            resource_names: p.resource_names.unwrap_or(false),
            budget: Some(budget),
        };
        let rep = generate(api.backend.as_ref(), &req).map_err(crate::api::index_error)?;
        Ok(axum::Json(json!({
            "user": user,
            "yaml": rep.yaml,
            "requests": rep.requests,
            "denied": rep.denied,
        }))
        .into_response())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_fields_reads_origin_and_root() {
        let note = "kaudit/abc\n42\nq6u7+==\n\n— kaudit/abc AAAA\n";
        let (origin, root) = note_fields(note);
        assert_eq!(origin.as_deref(), Some("kaudit/abc"));
        assert_eq!(root.as_deref(), Some("q6u7+=="));
    }
}
