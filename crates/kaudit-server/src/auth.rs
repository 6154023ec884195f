//! Who is sending: bearer tokens and TLS client certificates, each mapped to
//! a cluster name, the clusters it may name with `?cluster=`, a role, and
//! whether its batches are strict (all or nothing).

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// What a credential may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Send audit events (kube-apiserver, Falco-style senders).
    #[default]
    Ingest,
    /// Read events, alerts and checkpoints.
    Reader,
    /// Everything, including running verification.
    Admin,
}

/// A bearer-token credential from the config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for logs and metrics.
    pub name: String,
    /// The token itself (prefer `token_file`).
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding the token (trailing white space ignored).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The cluster its events belong to.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Other clusters it may name with `?cluster=` (`*` for any).
    #[serde(default)]
    pub clusters: Vec<String>,
    /// What it may do.
    #[serde(default)]
    pub role: Role,
    /// Answer 400 for a whole batch with any invalid item, instead of quarantining.
    #[serde(default)]
    pub strict: bool,
}

/// A client-certificate credential: matched by the certificate's subject CN.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertConfig {
    /// The subject common name of the client certificate.
    pub common_name: String,
    /// The cluster its events belong to.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Other clusters it may name with `?cluster=` (`*` for any).
    #[serde(default)]
    pub clusters: Vec<String>,
    /// What it may do.
    #[serde(default)]
    pub role: Role,
    /// Strict batches.
    #[serde(default)]
    pub strict: bool,
}

/// An authenticated sender.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// Credential name (token name or certificate CN).
    pub name: String,
    /// Default cluster.
    pub cluster: String,
    /// Clusters it may name.
    pub clusters: Vec<String>,
    /// Role.
    pub role: Role,
    /// Strict batches.
    pub strict: bool,
}

impl Principal {
    /// The cluster for a request, honouring `?cluster=` only where allowed.
    pub fn cluster_for(&self, requested: Option<&str>) -> Result<String, String> {
        match requested {
            None => Ok(self.cluster.clone()),
            Some(c) if c == self.cluster => Ok(c.to_string()),
            Some(c) if self.clusters.iter().any(|a| a == "*" || a == c) => Ok(c.to_string()),
            Some(c) => Err(format!(
                "credential {:?} may not send for cluster {c:?} (allowed: {})",
                self.name,
                std::iter::once(self.cluster.as_str())
                    .chain(self.clusters.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// The identity a TLS handshake established (verified client certificate).
#[derive(Clone, Debug, Default)]
pub struct PeerIdentity {
    /// Subject CN of the verified client certificate, if one was presented.
    pub common_name: Option<String>,
}

/// Errors loading credentials.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A token file could not be read.
    #[error("auth.tokens[{index}] ({name}): {reason}")]
    Token {
        /// Position in the config.
        index: usize,
        /// Its name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// The credential table.
pub struct Authenticator {
    tokens: Vec<([u8; 32], Principal)>,
    certs: Vec<(String, Principal)>,
    default_cluster: String,
}

/// Why a request is refused.
#[derive(Debug, PartialEq)]
pub enum Denied {
    /// No or unknown credential (401).
    Unauthenticated(String),
    /// Known credential without the right (403).
    Forbidden(String),
}

impl Authenticator {
    /// Builds the table; `default_cluster` names events when no auth is configured.
    pub fn new(
        tokens: &[TokenConfig],
        certs: &[ClientCertConfig],
        default_cluster: &str,
    ) -> Result<Self, AuthError> {
        let mut out = Vec::new();
        for (index, t) in tokens.iter().enumerate() {
            let err = |reason: String| AuthError::Token {
                index,
                name: t.name.clone(),
                reason,
            };
            let secret = match (&t.token, &t.token_file) {
                (Some(s), None) => s.clone(),
                (None, Some(p)) => std::fs::read_to_string(p)
                    .map_err(|e| err(format!("{}: {e}", p.display())))?
                    .trim_end()
                    .to_string(),
                _ => return Err(err("set exactly one of token and token_file".into())),
            };
            if secret.len() < 16 {
                return Err(err("token is shorter than 16 characters".into()));
            }
            out.push((
                Sha256::digest(secret.as_bytes()).into(),
                Principal {
                    name: t.name.clone(),
                    cluster: t
                        .cluster
                        .clone()
                        .unwrap_or_else(|| default_cluster.to_string()),
                    clusters: t.clusters.clone(),
                    role: t.role,
                    strict: t.strict,
                },
            ));
        }
        let certs = certs
            .iter()
            .map(|c| {
                (
                    c.common_name.clone(),
                    Principal {
                        name: c.common_name.clone(),
                        cluster: c
                            .cluster
                            .clone()
                            .unwrap_or_else(|| default_cluster.to_string()),
                        clusters: c.clusters.clone(),
                        role: c.role,
                        strict: c.strict,
                    },
                )
            })
            .collect();
        Ok(Authenticator {
            tokens: out,
            certs,
            default_cluster: default_cluster.to_string(),
        })
    }

    /// Whether any credential is configured (then every request needs one).
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || !self.certs.is_empty()
    }

    /// Authenticates a request from its `Authorization` header and TLS peer.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        peer: Option<&PeerIdentity>,
        need: Role,
    ) -> Result<Principal, Denied> {
        if !self.enabled() {
            return Ok(Principal {
                name: "anonymous".into(),
                cluster: self.default_cluster.clone(),
                clusters: vec!["*".into()],
                role: Role::Admin,
                strict: false,
            });
        }
        let principal = if let Some(h) = authorization {
            let token = h
                .strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
                .ok_or_else(|| {
                    Denied::Unauthenticated("Authorization must be \"Bearer <token>\"".into())
                })?
                .trim();
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            // Comparing digests keeps the comparison independent of the secret's bytes.
            self.tokens
                .iter()
                .find(|(d, _)| *d == digest)
                .map(|(_, p)| p.clone())
                .ok_or_else(|| Denied::Unauthenticated("unknown bearer token".into()))?
        } else if let Some(cn) = peer.and_then(|p| p.common_name.as_deref()) {
            self.certs
                .iter()
                .find(|(c, _)| c == cn)
                .map(|(_, p)| p.clone())
                .ok_or_else(|| {
                    // The CA vouched for who it is; it simply has no rights here.
                    Denied::Forbidden(format!(
                        "client certificate CN {cn:?} is not in auth.client_certs"
                    ))
                })?
        } else {
            return Err(Denied::Unauthenticated(
                "credentials required: a bearer token or a client certificate".into(),
            ));
        };
        let allowed = match need {
            Role::Ingest => matches!(principal.role, Role::Ingest | Role::Admin),
            Role::Reader => matches!(principal.role, Role::Reader | Role::Admin),
            Role::Admin => principal.role == Role::Admin,
        };
        if !allowed {
            return Err(Denied::Forbidden(format!(
                "credential {:?} has role {:?}, this needs {:?}",
                principal.name, principal.role, need
            )));
        }
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, secret: &str, role: Role) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            token: Some(secret.into()),
            token_file: None,
            cluster: Some(format!("{name}-cluster")),
            clusters: vec!["shared".into()],
            role,
            strict: false,
        }
    }

    #[test]
    fn tokens_roles_and_clusters() {
        let a = Authenticator::new(
            &[
                token("prod", "0123456789abcdef-prod", Role::Ingest),
                token("ui", "0123456789abcdef-read", Role::Reader),
            ],
            &[ClientCertConfig {
                common_name: "apiserver-eu".into(),
                cluster: Some("eu".into()),
                clusters: vec![],
                role: Role::Ingest,
                strict: true,
            }],
            "default",
        )
        .unwrap();
        let p = a
            .authenticate(Some("Bearer 0123456789abcdef-prod"), None, Role::Ingest)
            .unwrap();
        assert_eq!(p.cluster, "prod-cluster");
        assert_eq!(p.cluster_for(Some("shared")).unwrap(), "shared");
        assert!(p
            .cluster_for(Some("other"))
            .unwrap_err()
            .contains("may not send"));
        assert!(matches!(
            a.authenticate(Some("Bearer nope"), None, Role::Ingest),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            a.authenticate(Some("Bearer 0123456789abcdef-read"), None, Role::Ingest),
            Err(Denied::Forbidden(_))
        ));
        assert!(matches!(
            a.authenticate(None, None, Role::Ingest),
            Err(Denied::Unauthenticated(_))
        ));
        let peer = PeerIdentity {
            common_name: Some("apiserver-eu".into()),
        };
        let p = a.authenticate(None, Some(&peer), Role::Ingest).unwrap();
        assert!(p.strict && p.cluster == "eu");
        let stranger = PeerIdentity {
            common_name: Some("someone".into()),
        };
        assert!(matches!(
            a.authenticate(None, Some(&stranger), Role::Ingest),
            Err(Denied::Forbidden(m)) if m.contains("someone")
        ));
        assert!(Authenticator::new(&[token("short", "abc", Role::Ingest)], &[], "d").is_err());
    }
}
