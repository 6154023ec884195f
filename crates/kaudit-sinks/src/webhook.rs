//! `type: webhook`: POSTs `audit.k8s.io/v1` EventList batches exactly as
//! kube-apiserver's webhook backend does, so anything that takes the
//! apiserver's webhook (Falco's k8saudit plugin, another kaudit) works
//! unchanged.
//!
//! Items are the stored event bytes without `kind` and `apiVersion` (as the
//! apiserver writes EventList items). A checkpoint is POSTed as its note
//! text with `Content-Type: text/plain` and `X-Kaudit-Checkpoint: <size>`.

use crate::http::{client, expect_success, read_file, transport, ClientTls};
use crate::{Checkpoint, Delivery, Destination, Outgoing, SinkError};
use base64::Engine as _;
use serde::Deserialize;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

/// `type: webhook`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Where to POST; not needed with `kubeconfig`.
    pub url: Option<String>,
    /// `Authorization: Bearer` token.
    pub bearer_token: Option<String>,
    /// File holding the bearer token (read at start).
    pub bearer_token_file: Option<PathBuf>,
    /// CA bundle (PEM) that signs the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM).
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM).
    pub client_key: Option<PathBuf>,
    /// A kubeconfig file as kube-apiserver's `--audit-webhook-config-file`
    /// takes: the current context's cluster (server, CA) and user (token,
    /// client certificate).
    pub kubeconfig: Option<PathBuf>,
}

/// Prefix of a stored v1 event line; EventList items are the same bytes
/// without it (an opening brace instead).
const V1_PREFIX: &[u8] = b"{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",";

/// Appends the EventList body for a batch to `out`.
pub fn encode_event_list(batch: &[Outgoing], out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"metadata\":{},\"items\":[",
    );
    for (i, o) in batch.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let b = o.event.bytes();
        match b.strip_prefix(V1_PREFIX) {
            Some(rest) => {
                out.push(b'{');
                out.extend_from_slice(rest);
            }
            None => o.event.doc().encode_into(out, false),
        }
    }
    out.extend_from_slice(b"]}");
}

/// The webhook destination.
pub struct Webhook {
    url: String,
    auth: Option<String>,
    client: reqwest::blocking::Client,
}

impl Webhook {
    /// Builds it from its config (reading the kubeconfig, token and TLS files).
    pub fn new(cfg: &WebhookConfig, timeout: Duration) -> Result<Webhook, SinkError> {
        let (mut url, mut token, mut tls) = (
            cfg.url.clone(),
            cfg.bearer_token.clone(),
            ClientTls::default(),
        );
        if let Some(kc) = &cfg.kubeconfig {
            let k = Kubeconfig::load(kc)?;
            url = url.or(Some(k.server));
            token = token.or(k.token);
            tls = k.tls;
        }
        if let Some(f) = &cfg.bearer_token_file {
            let t = read_file(f, "bearer token file")?;
            token = Some(String::from_utf8_lossy(&t).trim().to_string());
        }
        let files = ClientTls::from_files(
            cfg.ca_file.as_deref(),
            cfg.client_cert.as_deref(),
            cfg.client_key.as_deref(),
        )?;
        tls.ca_pem = files.ca_pem.or(tls.ca_pem);
        tls.cert_pem = files.cert_pem.or(tls.cert_pem);
        tls.key_pem = files.key_pem.or(tls.key_pem);
        let url = url.ok_or_else(|| SinkError::Config("webhook needs url or kubeconfig".into()))?;
        Ok(Webhook {
            url,
            auth: token.map(|t| format!("Bearer {t}")),
            client: client(&tls, timeout)?,
        })
    }

    fn post(
        &self,
        content_type: &str,
        body: Vec<u8>,
        extra: Option<(&str, String)>,
    ) -> Result<(), SinkError> {
        let mut req = self
            .client
            .post(&self.url)
            .header("Content-Type", content_type)
            .header("Accept", "application/json, */*")
            .body(body);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        let resp = req.send().map_err(|e| transport(&self.url, e))?;
        expect_success(&self.url, resp).map(|_| ())
    }
}

impl Destination for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn send(&mut self, batch: &[Outgoing]) -> Result<Delivery, SinkError> {
        // Sized up front: growing a batch-sized buffer by doubling would
        // copy it several times.
        let size: usize = batch.iter().map(|o| o.event.bytes().len() + 1).sum();
        let mut body = Vec::with_capacity(size + 128);
        encode_event_list(batch, &mut body);
        let res = self.post("application/json", body, None);
        res.map(|()| Delivery::all())
    }

    fn send_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), SinkError> {
        self.post(
            "text/plain; charset=utf-8",
            cp.note.clone().into_bytes(),
            Some(("X-Kaudit-Checkpoint", cp.size.to_string())),
        )
    }
}

/// What kaudit takes from a kubeconfig (`--audit-webhook-config-file`).
struct Kubeconfig {
    server: String,
    token: Option<String>,
    tls: ClientTls,
}

#[derive(Deserialize)]
struct KcFile {
    #[serde(default)]
    clusters: Vec<KcNamed<KcCluster>>,
    #[serde(default)]
    users: Vec<KcNamedUser>,
    #[serde(default)]
    contexts: Vec<KcNamed<KcContext>>,
    #[serde(rename = "current-context", default)]
    current_context: String,
}

#[derive(Deserialize)]
struct KcNamed<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context")]
    inner: T,
}

#[derive(Deserialize)]
struct KcNamedUser {
    name: String,
    user: KcUser,
}

#[derive(Deserialize)]
struct KcCluster {
    server: String,
    #[serde(rename = "certificate-authority")]
    ca: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    ca_data: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KcUser {
    token: Option<String>,
    #[serde(rename = "client-certificate")]
    cert: Option<String>,
    #[serde(rename = "client-certificate-data")]
    cert_data: Option<String>,
    #[serde(rename = "client-key")]
    key: Option<String>,
    #[serde(rename = "client-key-data")]
    key_data: Option<String>,
}

#[derive(Deserialize)]
struct KcContext {
    cluster: String,
    #[serde(default)]
    user: String,
}

impl Kubeconfig {
    fn load(path: &Path) -> Result<Kubeconfig, SinkError> {
        let at = |e: String| SinkError::Config(format!("kubeconfig {}: {e}", path.display()));
        let text = read_file(path, "kubeconfig")?;
        let text = String::from_utf8(text).map_err(|e| at(e.to_string()))?;
        let f: KcFile = serde_saphyr::from_str(&text).map_err(|e| at(e.to_string()))?;
        let ctx = if f.current_context.is_empty() {
            f.contexts.first()
        } else {
            f.contexts.iter().find(|c| c.name == f.current_context)
        };
        // The apiserver's webhook config often has a single cluster and user
        // and no context; take the first ones then.
        let (cname, uname) = match ctx {
            Some(c) => (Some(c.inner.cluster.as_str()), Some(c.inner.user.as_str())),
            None => (None, None),
        };
        let cluster = match cname {
            Some(n) => f.clusters.iter().find(|c| c.name == n),
            None => f.clusters.first(),
        }
        .ok_or_else(|| at("no cluster for the current context".into()))?;
        let user = match uname {
            Some(n) => f.users.iter().find(|u| u.name == n).map(|u| &u.user),
            None => f.users.first().map(|u| &u.user),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let data = |inline: &Option<String>,
                    file: &Option<String>,
                    what: &str|
         -> Result<Option<Vec<u8>>, SinkError> {
            if let Some(d) = inline {
                return base64::engine::general_purpose::STANDARD
                    .decode(d.trim())
                    .map(Some)
                    .map_err(|e| at(format!("{what}-data is not base64: {e}")));
            }
            match file {
                Some(p) => read_file(&dir.join(p), what).map(Some),
                None => Ok(None),
            }
        };
        let mut tls = ClientTls {
            ca_pem: data(
                &cluster.inner.ca_data,
                &cluster.inner.ca,
                "certificate-authority",
            )?,
            ..Default::default()
        };
        let mut token = None;
        if let Some(u) = user {
            tls.cert_pem = data(&u.cert_data, &u.cert, "client-certificate")?;
            tls.key_pem = data(&u.key_data, &u.key, "client-key")?;
            token = u.token.clone();
        }
        Ok(Kubeconfig {
            server: cluster.inner.server.clone(),
            token,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_gives_server_token_and_inline_ca() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("kc.yaml");
        std::fs::write(
            &p,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: siem\n  cluster:\n    server: https://siem:8443/k8s-audit\n    certificate-authority-data: aGVsbG8=\nusers:\n- name: api\n  user:\n    token: s3cret\ncontexts:\n- name: default\n  context:\n    cluster: siem\n    user: api\ncurrent-context: default\n",
        )
        .unwrap();
        let k = Kubeconfig::load(&p).unwrap();
        assert_eq!(k.server, "https://siem:8443/k8s-audit");
        assert_eq!(k.token.as_deref(), Some("s3cret"));
        assert_eq!(k.tls.ca_pem.as_deref(), Some(&b"hello"[..]));
        std::fs::write(&p, "clusters: []\n").unwrap();
        let e = Kubeconfig::load(&p).err().unwrap().to_string();
        assert!(e.contains("no cluster"), "{e}");
    }
}
