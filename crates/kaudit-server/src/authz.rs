//! Authorization at the HTTP edge: one extractor every handler states its
//! required role with (`_: Authorized<ReaderRole>`), instead of a check
//! written out in each handler.
//!
//! The [`Authenticator`] travels in the request's extensions: every route
//! group adds it with [`with_auth`], and a request that reaches a handler
//! without one is refused (500), never let through. Extracting answers 401
//! (with `WWW-Authenticate: Bearer`) or 403 itself, with the JSON error body
//! every kaudit error has.

use crate::auth::{Authenticator, Denied, PeerIdentity, Principal, Role};
use crate::http::error;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::{Extension, Router};
use std::marker::PhantomData;
use std::sync::Arc;

/// The role a handler requires, as a type.
pub trait RequiredRole: Send + Sync + 'static {
    /// The role.
    const ROLE: Role;
}

/// Sends events (the webhook).
pub struct IngestRole;
/// Reads events, stats, alerts and proofs.
pub struct ReaderRole;
/// Changes the server's state (verification runs).
pub struct AdminRole;

impl RequiredRole for IngestRole {
    const ROLE: Role = Role::Ingest;
}
impl RequiredRole for ReaderRole {
    const ROLE: Role = Role::Reader;
}
impl RequiredRole for AdminRole {
    const ROLE: Role = Role::Admin;
}

/// A caller authenticated for at least role `R`; see the [module docs](self).
pub struct Authorized<R: RequiredRole> {
    /// Who the caller is and what it may do.
    pub principal: Principal,
    role: PhantomData<R>,
}

/// A caller that may read.
pub type Reader = Authorized<ReaderRole>;
/// A caller that may administer.
pub type Admin = Authorized<AdminRole>;
/// A caller that may send events.
pub type Ingester = Authorized<IngestRole>;

impl<S: Send + Sync, R: RequiredRole> FromRequestParts<S> for Authorized<R> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        let Some(auth) = parts.extensions.get::<Arc<Authenticator>>().cloned() else {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "route has no authenticator; refusing",
            ));
        };
        let peer = parts.extensions.get::<PeerIdentity>().cloned();
        authorize(&auth, &parts.headers, peer.as_ref(), R::ROLE).map(|principal| Authorized {
            principal,
            role: PhantomData,
        })
    }
}

/// Makes `auth` available to the extractor on every route of `router`.
pub fn with_auth<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    auth: Arc<Authenticator>,
) -> Router<S> {
    router.layer(Extension(auth))
}

/// Authenticates a request for `role`, or gives the 401/403 answer to send.
// The error is the response itself, built only for refused requests.
#[allow(clippy::result_large_err)]
pub fn authorize(
    auth: &Authenticator,
    headers: &HeaderMap,
    peer: Option<&PeerIdentity>,
    role: Role,
) -> Result<Principal, Response> {
    let authz = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.authenticate(authz, peer, role) {
        Ok(p) => Ok(p),
        Err(Denied::Unauthenticated(m)) => {
            let mut r = error(StatusCode::UNAUTHORIZED, m);
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(r)
        }
        Err(Denied::Forbidden(m)) => Err(error(StatusCode::FORBIDDEN, m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TokenConfig;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn admin_only(caller: Admin) -> String {
        caller.principal.name
    }

    fn tokens() -> Arc<Authenticator> {
        let t: Vec<TokenConfig> = serde_json::from_value(serde_json::json!([
            {"name": "ops", "token": "admin-token-0123456789", "role": "admin"},
            {"name": "viewer", "token": "read-token-0123456789", "role": "reader"}
        ]))
        .unwrap();
        Arc::new(Authenticator::new(&t, &[], "default").unwrap())
    }

    async fn status(app: Router, token: Option<&str>) -> u16 {
        let mut req = Request::get("/x");
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        resp.status().as_u16()
    }

    #[tokio::test]
    async fn roles_are_enforced_and_a_route_without_authenticator_refuses() {
        let app = with_auth(Router::new().route("/x", get(admin_only)), tokens());
        assert_eq!(status(app.clone(), None).await, 401);
        assert_eq!(status(app.clone(), Some("wrong")).await, 401);
        assert_eq!(
            status(app.clone(), Some("read-token-0123456789")).await,
            403
        );
        assert_eq!(status(app, Some("admin-token-0123456789")).await, 200);
        // Forgetting `with_auth` fails closed, it never serves anonymously.
        let bare = Router::new().route("/x", get(admin_only));
        assert_eq!(status(bare, Some("admin-token-0123456789")).await, 500);
    }
}
