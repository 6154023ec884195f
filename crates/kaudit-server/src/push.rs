//! Routes where a provider pushes audit logs, through the same ingest as
//! kube-apiserver's webhook ([`crate::http::receive`]: Ingester role, body
//! bounds, in-flight memory, the pipeline, acknowledgement after fsync):
//!
//! * `POST /api/v1/ingest/gke-pubsub`: a Pub/Sub push subscription on the
//!   topic a Cloud Logging sink of GKE's audit logs writes to;
//! * `POST /api/v1/ingest/firehose`: a Kinesis Data Firehose HTTP-endpoint
//!   destination fed by a CloudWatch Logs subscription filter of EKS'
//!   audit log streams; the reply follows Firehose's contract
//!   (`{"requestId","timestamp"}`, plus `errorMessage` on failure);
//! * `POST /api/v1/admission[/{token}]`: a ValidatingWebhookConfiguration
//!   (`kaudit webhook-config`); answers an AdmissionReview with
//!   `allowed: true` and the request's uid once the event is stored.
//!
//! Credentials: a bearer token or client certificate as everywhere, or,
//! since these senders cannot send an `Authorization` header, an ingest
//! token in `X-Amz-Firehose-Access-Key` (Firehose's access key), in
//! `?token=` (a Pub/Sub push URL), or as the last path segment of the
//! admission URL (webhook URLs may not carry a query). Each is checked
//! exactly like a bearer token.

use crate::auth::{Authenticator, PeerIdentity, Principal, Role};
use crate::authz::authorize;
use crate::http::{error, receive, AppState, Push};
use axum::body::Body;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kaudit_sources::managed::{admission, eks, ManagedFormat};
use serde::Deserialize;
use std::sync::Arc;

/// Firehose's header carrying the configured access key.
pub const FIREHOSE_ACCESS_KEY: &str = "x-amz-firehose-access-key";
/// Firehose's header carrying the delivery's request id.
pub const FIREHOSE_REQUEST_ID: &str = "x-amz-firehose-request-id";

/// A caller allowed to ingest through a push route; see the module docs for
/// where its credential may be.
pub struct PushIngester {
    /// Who the caller is.
    pub principal: Principal,
}

#[derive(Deserialize, Default)]
struct PushQuery {
    token: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for PushIngester {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        let Some(auth) = parts.extensions.get::<Arc<Authenticator>>().cloned() else {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "route has no authenticator; refusing",
            ));
        };
        let peer = parts.extensions.get::<PeerIdentity>().cloned();
        let mut headers = parts.headers.clone();
        if !headers.contains_key(header::AUTHORIZATION) {
            let alt = headers
                .get(FIREHOSE_ACCESS_KEY)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| {
                    Query::<PushQuery>::try_from_uri(&parts.uri)
                        .ok()
                        .and_then(|q| q.0.token)
                })
                .or_else(|| {
                    parts
                        .uri
                        .path()
                        .strip_prefix("/api/v1/admission/")
                        .filter(|t| !t.is_empty() && !t.contains('/'))
                        .map(str::to_string)
                });
            if let Some(t) = alt {
                let v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                    error(
                        StatusCode::UNAUTHORIZED,
                        "the token holds invalid characters",
                    )
                })?;
                headers.insert(header::AUTHORIZATION, v);
            }
        }
        authorize(&auth, &headers, peer.as_ref(), Role::Ingest)
            .map(|principal| PushIngester { principal })
    }
}

/// `?cluster=` of a push route.
#[derive(Deserialize)]
pub struct ClusterParam {
    cluster: Option<String>,
}

/// `POST /api/v1/ingest/gke-pubsub`: one Pub/Sub push delivery (a LogEntry in
/// `message.data`). 200 acknowledges it; a non-2xx makes Pub/Sub redeliver.
pub async fn gke_pubsub(
    caller: PushIngester,
    State(st): State<AppState>,
    Query(q): Query<ClusterParam>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    receive(
        st,
        caller.principal,
        q.cluster,
        headers,
        body,
        Push::Managed(ManagedFormat::Gke),
    )
    .await
}

/// `POST /api/v1/ingest/firehose`: one Firehose HTTP-endpoint delivery.
/// Every answer, refusals included, is in Firehose's reply shape.
pub async fn firehose(
    caller: Result<PushIngester, Response>,
    State(st): State<AppState>,
    Query(q): Query<ClusterParam>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = headers
        .get(FIREHOSE_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let r = match caller {
        Ok(caller) => {
            receive(
                st,
                caller.principal,
                q.cluster,
                headers,
                body,
                Push::Managed(ManagedFormat::Eks),
            )
            .await
        }
        Err(refused) => refused,
    };
    firehose_reply(&request_id, r).await
}

/// Rewrites an answer into Firehose's `{"requestId","timestamp"[,"errorMessage"]}`
/// (refusals also keep kaudit's `error` and `status`).
async fn firehose_reply(request_id: &str, r: Response) -> Response {
    let status = r.status();
    let now_ms = kaudit_event::MicroTime::now().micros() / 1000;
    let message = if status.is_success() {
        None
    } else {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Some(v["error"].as_str().unwrap_or("refused").to_string())
    };
    let mut reply = eks::firehose_reply(request_id, now_ms, message.as_deref());
    if let Some(m) = &message {
        reply["error"] = serde_json::Value::String(m.clone());
        reply["status"] = serde_json::Value::from(status.as_u16());
    }
    (status, axum::Json(reply)).into_response()
}

/// `POST /api/v1/admission`: one AdmissionReview, credentials in the headers.
pub async fn admission(
    caller: PushIngester,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    review(caller, st, headers, body).await
}

/// `POST /api/v1/admission/{token}`: the same, the token in the path.
pub async fn admission_with_token(
    caller: PushIngester,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    review(caller, st, headers, body).await
}

async fn review(caller: PushIngester, st: AppState, headers: HeaderMap, body: Body) -> Response {
    let max = st.limits.max_body;
    let bytes = match axum::body::to_bytes(body, max).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body exceeds the limit of {max} bytes"),
            )
        }
    };
    let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let r = receive(
        st,
        caller.principal,
        None,
        headers,
        Body::from(bytes),
        Push::Managed(ManagedFormat::Admission),
    )
    .await;
    if !r.status().is_success() {
        return r;
    }
    (
        StatusCode::OK,
        axum::Json(admission::allow_response(&parsed)),
    )
        .into_response()
}
