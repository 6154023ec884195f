//! The HTTP client the HTTP destinations share: rustls, an optional private
//! CA and client certificate, a timeout per request.

use crate::SinkError;
use std::path::Path;
use std::time::Duration;

/// TLS material for a client, from PEM files or inline PEM (kubeconfig data).
#[derive(Default)]
pub(crate) struct ClientTls {
    pub ca_pem: Option<Vec<u8>>,
    pub cert_pem: Option<Vec<u8>>,
    pub key_pem: Option<Vec<u8>>,
}

pub(crate) fn read_file(p: &Path, what: &str) -> Result<Vec<u8>, SinkError> {
    std::fs::read(p).map_err(|e| SinkError::Config(format!("{what} {}: {e}", p.display())))
}

impl ClientTls {
    pub fn from_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<ClientTls, SinkError> {
        Ok(ClientTls {
            ca_pem: ca.map(|p| read_file(p, "CA file")).transpose()?,
            cert_pem: cert
                .map(|p| read_file(p, "client certificate"))
                .transpose()?,
            key_pem: key.map(|p| read_file(p, "client key")).transpose()?,
        })
    }
}

pub(crate) fn client(
    tls: &ClientTls,
    timeout: Duration,
) -> Result<reqwest::blocking::Client, SinkError> {
    let mut b = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_max_idle_per_host(4)
        .tcp_nodelay(true);
    if let Some(ca) = &tls.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(ca)
            .map_err(|e| SinkError::Config(format!("CA bundle: {e}")))?;
        if certs.is_empty() {
            return Err(SinkError::Config("CA bundle holds no certificate".into()));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if let (Some(cert), Some(key)) = (&tls.cert_pem, &tls.key_pem) {
        let mut pem = cert.clone();
        pem.push(b'\n');
        pem.extend_from_slice(key);
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| SinkError::Config(format!("client certificate/key: {e}")))?;
        b = b.identity(id);
    }
    b.build()
        .map_err(|e| SinkError::Config(format!("HTTP client: {e}")))
}

/// A transport error with its causes (reqwest's top-level message alone
/// hides "connection refused" or the TLS reason).
pub(crate) fn transport(url: &str, e: reqwest::Error) -> SinkError {
    let mut msg = format!("{url}: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    SinkError::Transport(msg)
}

/// Reads a response: `Ok(body)` for 2xx, else a whole-batch error with the
/// status and the start of the body.
pub(crate) fn expect_success(
    url: &str,
    resp: reqwest::blocking::Response,
) -> Result<Vec<u8>, SinkError> {
    let status = resp.status();
    let body = resp.bytes().map_err(|e| transport(url, e))?.to_vec();
    if status.is_success() {
        Ok(body)
    } else {
        let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        Err(SinkError::Rejected(format!("{url}: HTTP {status}: {text}")))
    }
}
