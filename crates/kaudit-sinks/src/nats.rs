//! `type: nats`: publishes each event to a NATS JetStream subject with the
//! `Nats-Msg-Id` header set to `auditID-Stage-<hash of the bytes>` ([`crate::dedupe_id`]), and waits for JetStream's
//! publish acknowledgement of every message before the batch counts as
//! delivered. JetStream drops a message whose ID it saw within the stream's
//! duplicate window (2 minutes by default), so a batch sent again after a
//! lost acknowledgement is stored once.
//!
//! Built on the official `async-nats` client (TLS and mutual TLS, token,
//! user/password, NKey and `.creds` JWT authentication, several servers for
//! failover). Sinks are synchronous, so the destination holds a small
//! current-thread tokio runtime and blocks on it: the client's connection
//! task runs while a batch or a checkpoint is being delivered. A batch is
//! pipelined: every message is published, then the acknowledgements are
//! awaited, within the sink's `timeout` for each of the two phases. A
//! checkpoint is a message on the same subject with
//! `Nats-Msg-Id: checkpoint-<size>`, a `Kaudit-Checkpoint: <size>` header
//! and the note as payload.

use crate::{Checkpoint, Delivery, Destination, Outgoing, SinkError};
use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use async_nats::{ConnectErrorKind, ConnectOptions, ServerAddr};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `type: nats`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// `nats://host:port` (or `tls://host:port`, or `host:port`); used when
    /// `urls` is empty.
    pub url: String,
    /// Several servers of one cluster, tried in turn (failover); replaces
    /// `url` when set.
    pub urls: Vec<String>,
    /// Subject to publish to.
    pub subject: String,
    /// JetStream stream; created (on `subject`) when missing.
    pub stream: Option<String>,
    /// Require TLS (also implied by `tls://` URLs and by any TLS file).
    pub tls: bool,
    /// CA certificates (PEM) to trust for the server, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `client_key`.
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS; needs `client_cert`.
    pub client_key: Option<PathBuf>,
    /// A `.creds` file (user JWT and NKey seed) for decentralized auth.
    pub creds_file: Option<PathBuf>,
    /// An NKey user seed (`SU...`).
    pub nkey: Option<String>,
    /// A file holding an NKey user seed (instead of `nkey`).
    pub nkey_file: Option<PathBuf>,
    /// Auth token.
    pub token: Option<String>,
    /// User name.
    pub user: Option<String>,
    /// Password (with `user`).
    pub password: Option<String>,
}

/// The default server, `nats://127.0.0.1:4222`.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: DEFAULT_URL.into(),
            urls: Vec::new(),
            subject: String::new(),
            stream: None,
            tls: false,
            ca_file: None,
            client_cert: None,
            client_key: None,
            creds_file: None,
            nkey: None,
            nkey_file: None,
            token: None,
            user: None,
            password: None,
        }
    }
}

/// Most servers in `urls`.
pub const MAX_URLS: usize = 64;

/// `nats://host:port`, `tls://host:port` or `host:port` to
/// `nats://host:port` / `tls://host:port`; `None` when it is none of these
/// (credentials belong in `user`/`password`, not in the URL).
pub fn parse_url(url: &str) -> Option<String> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("nats://") {
        ("nats", r)
    } else if let Some(r) = url.strip_prefix("tls://") {
        ("tls", r)
    } else {
        ("nats", url)
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains(['@', '/', '?', '#', ' ']) {
        return None;
    }
    crate::syslog::split_host_port(rest).map(|_| format!("{scheme}://{rest}"))
}

impl NatsConfig {
    /// The servers to connect to: `urls`, else `url`.
    pub fn servers(&self) -> Vec<&str> {
        if self.urls.is_empty() {
            vec![self.url.as_str()]
        } else {
            self.urls.iter().map(String::as_str).collect()
        }
    }

    /// Whether the connection must use TLS.
    pub fn wants_tls(&self) -> bool {
        self.tls
            || self.ca_file.is_some()
            || self.client_cert.is_some()
            || self.client_key.is_some()
            || self.servers().iter().any(|u| u.starts_with("tls://"))
    }

    /// What is wrong with this config (empty when nothing), each problem
    /// naming the setting.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.urls.len() > MAX_URLS {
            p.push(format!("at most {MAX_URLS} urls"));
        }
        if !self.urls.is_empty() && self.url != DEFAULT_URL && !self.urls.contains(&self.url) {
            p.push("both url and urls are set; list every server in urls".into());
        }
        for u in self.servers() {
            if parse_url(u).is_none() {
                p.push(format!(
                    "url {u:?} must be nats://host:port or tls://host:port"
                ));
            }
        }
        if self.subject.is_empty() || self.subject.contains([' ', '\t', '\r', '\n', '*', '>']) {
            p.push(format!(
                "subject {:?} must be a plain NATS subject",
                self.subject
            ));
        }
        if let Some(s) = &self.stream {
            if s.is_empty() || s.contains([' ', '\t', '\r', '\n', '*', '>', '.', '/', '\\']) {
                p.push(format!(
                    "stream {s:?} must be a plain JetStream stream name"
                ));
            }
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            p.push("set both client_cert and client_key".into());
        }
        if self.password.is_some() && self.user.is_none() {
            p.push("password needs user".into());
        }
        if self.nkey.is_some() && self.nkey_file.is_some() {
            p.push("set nkey or nkey_file, not both".into());
        }
        if let Some(seed) = &self.nkey {
            // Never echo the seed: it is a secret.
            if !seed.trim().starts_with("SU") {
                p.push("nkey must be an NKey user seed (starting with SU)".into());
            }
        }
        let methods: Vec<&str> = [
            (self.token.is_some(), "token"),
            (self.user.is_some(), "user/password"),
            (self.creds_file.is_some(), "creds_file"),
            (self.nkey.is_some() || self.nkey_file.is_some(), "nkey"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if methods.len() > 1 {
            p.push(format!(
                "choose one way to authenticate, not {}",
                methods.join(" and ")
            ));
        }
        p
    }

    /// The files this config names (checked to exist by the sink config).
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        [
            &self.ca_file,
            &self.client_cert,
            &self.client_key,
            &self.creds_file,
            &self.nkey_file,
        ]
        .into_iter()
        .flatten()
    }
}

/// Added to TLS failures: what to check.
const TLS_HINT: &str = " (TLS: is ca_file the CA that signed the server's certificate, and does the server want a client_cert and client_key?)";

fn terr(e: impl std::fmt::Display) -> SinkError {
    SinkError::Transport(format!("nats: {e}"))
}

/// A connection and its JetStream context.
struct Conn {
    /// Kept so the connection lives as long as the context.
    _client: async_nats::Client,
    js: jetstream::Context,
}

/// The NATS JetStream destination.
pub struct Nats {
    cfg: NatsConfig,
    servers: Vec<ServerAddr>,
    timeout: Duration,
    /// `Some` until dropped (see `Drop`).
    rt: Option<tokio::runtime::Runtime>,
    conn: Option<Conn>,
}

impl Nats {
    /// Builds it from its config (connects lazily).
    pub fn new(cfg: &NatsConfig, timeout: Duration) -> Result<Nats, SinkError> {
        let problems = cfg.problems();
        if !problems.is_empty() {
            return Err(SinkError::Config(format!("nats: {}", problems.join("; "))));
        }
        let servers = cfg
            .servers()
            .into_iter()
            .map(|u| {
                let norm = parse_url(u).unwrap_or_default();
                norm.parse::<ServerAddr>()
                    .map_err(|e| SinkError::Config(format!("nats url {u:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SinkError::Io(format!("nats: starting the client runtime: {e}")))?;
        Ok(Nats {
            cfg: cfg.clone(),
            servers,
            timeout,
            rt: Some(rt),
            conn: None,
        })
    }

    fn servers_text(&self) -> String {
        self.cfg.servers().join(", ")
    }

    /// The connect options the config asks for (auth, TLS, timeouts).
    async fn options(cfg: &NatsConfig, timeout: Duration) -> Result<ConnectOptions, SinkError> {
        let mut o = ConnectOptions::new()
            .name("kaudit")
            .connection_timeout(timeout)
            .request_timeout(Some(timeout));
        if let Some(t) = &cfg.token {
            o = o.token(t.clone());
        }
        if let Some(u) = &cfg.user {
            o = o.user_and_password(u.clone(), cfg.password.clone().unwrap_or_default());
        }
        if let Some(f) = &cfg.creds_file {
            o = o
                .credentials_file(f)
                .await
                .map_err(|e| SinkError::Config(format!("nats creds_file {}: {e}", f.display())))?;
        }
        let seed = match (&cfg.nkey, &cfg.nkey_file) {
            (Some(s), _) => Some(s.trim().to_string()),
            (None, Some(f)) => {
                let s = std::fs::read_to_string(f).map_err(|e| {
                    SinkError::Config(format!("nats nkey_file {}: {e}", f.display()))
                })?;
                let s = s.trim().to_string();
                if !s.starts_with("SU") {
                    return Err(SinkError::Config(format!(
                        "nats nkey_file {}: not an NKey user seed (starting with SU)",
                        f.display()
                    )));
                }
                Some(s)
            }
            (None, None) => None,
        };
        if let Some(s) = seed {
            o = o.nkey(s);
        }
        if cfg.wants_tls() {
            o = o.require_tls(true);
        }
        if let Some(ca) = &cfg.ca_file {
            o = o.add_root_certificates(ca.clone());
        }
        if let (Some(c), Some(k)) = (&cfg.client_cert, &cfg.client_key) {
            o = o.add_client_certificate(c.clone(), k.clone());
        }
        Ok(o)
    }

    /// Connects (to the first server of `servers` that answers) and makes
    /// sure the stream exists.
    async fn connect(
        cfg: &NatsConfig,
        servers: &[ServerAddr],
        timeout: Duration,
        shown: &str,
    ) -> Result<Conn, SinkError> {
        let opts = Nats::options(cfg, timeout).await?;
        // Each server gets `timeout`; a little on top for the handshakes.
        let overall = timeout * (servers.len() as u32).max(1) + Duration::from_secs(1);
        let client = match tokio::time::timeout(overall, opts.connect(servers.to_vec())).await {
            Err(_) => {
                return Err(terr(format!(
                    "connecting to {shown}: no answer within {overall:?}"
                )))
            }
            Ok(Err(e)) => {
                let hint = match e.kind() {
                    ConnectErrorKind::AuthorizationViolation
                    | ConnectErrorKind::Authentication => {
                        return Err(SinkError::Rejected(format!(
                            "nats {shown}: the server refused the credentials ({e}); check token, user/password, creds_file or nkey"
                        )))
                    }
                    ConnectErrorKind::Tls => TLS_HINT,
                    // rustls' verdicts on certificates arrive as I/O errors.
                    _ if e.to_string().to_lowercase().contains("certificate") => TLS_HINT,
                    _ => "",
                };
                return Err(terr(format!("connecting to {shown}: {e}{hint}")));
            }
            Ok(Ok(c)) => c,
        };
        let js = jetstream::ContextBuilder::new()
            .timeout(timeout)
            // Every message of the biggest batch in flight at once: a batch
            // publishes all, then awaits the acks.
            .max_ack_inflight(crate::config::MAX_BATCH_EVENTS + 1)
            .build(client.clone());
        if let Some(stream) = &cfg.stream {
            let config = jetstream::stream::Config {
                name: stream.clone(),
                subjects: vec![cfg.subject.clone()],
                storage: jetstream::stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            };
            js.get_or_create_stream(config).await.map_err(|e| {
                SinkError::Rejected(format!(
                    "nats: stream {stream} on {shown}: {e} (is JetStream on?)"
                ))
            })?;
        }
        Ok(Conn {
            _client: client,
            js,
        })
    }

    /// Publishes `msgs` (pipelined) and collects JetStream's answers; drops
    /// the connection when the batch as a whole failed on the wire.
    fn publish(&mut self, msgs: Vec<PublishMessage>) -> Result<Delivery, SinkError> {
        let shown = self.servers_text();
        let Some(rt) = self.rt.as_ref() else {
            return Err(terr("the client runtime is gone"));
        };
        let (cfg, servers, timeout) = (&self.cfg, &self.servers, self.timeout);
        let conn = &mut self.conn;
        let res = rt.block_on(async {
            if conn.is_none() {
                *conn = Some(Nats::connect(cfg, servers, timeout, &shown).await?);
            }
            let Some(c) = conn.as_ref() else {
                return Err(terr("not connected"));
            };
            publish_all(&c.js, &cfg.subject, msgs, timeout).await
        });
        let answers = match res {
            Ok(a) => a,
            Err(e) => {
                if matches!(e, SinkError::Transport(_)) {
                    self.conn = None;
                }
                return Err(e);
            }
        };
        let n = answers.len();
        let mut d = Delivery::default();
        let mut first_err = None;
        let mut on_the_wire = true;
        for (i, a) in answers.into_iter().enumerate() {
            let Err(e) = a else { continue };
            match e.kind() {
                // Larger than the server takes: it never will, so the item is
                // dead-lettered rather than retried forever.
                PublishErrorKind::MaxPayloadExceeded => {
                    d.rejected.push((i, format!("nats: {e}")));
                }
                k => {
                    on_the_wire &=
                        matches!(k, PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe);
                    first_err.get_or_insert_with(|| e.to_string());
                    d.retry.push(i);
                }
            }
        }
        if n > 0 && d.retry.len() == n {
            let msg = format!(
                "nats: JetStream did not take the batch: {}",
                first_err.unwrap_or_default()
            );
            return Err(if on_the_wire {
                self.conn = None;
                SinkError::Transport(msg)
            } else {
                SinkError::Rejected(msg)
            });
        }
        Ok(d)
    }
}

/// Publishes every message, then awaits every acknowledgement: one answer
/// per message in input order. `Err` when a phase overran `timeout`.
async fn publish_all(
    js: &jetstream::Context,
    subject: &str,
    msgs: Vec<PublishMessage>,
    timeout: Duration,
) -> Result<Vec<Result<jetstream::publish::PublishAck, jetstream::context::PublishError>>, SinkError>
{
    let subject = async_nats::Subject::from(subject);
    let n = msgs.len();
    let sent = tokio::time::timeout(timeout, async {
        let mut pending = Vec::with_capacity(n);
        for m in msgs {
            pending.push(js.send_publish(subject.clone(), m).await);
        }
        pending
    })
    .await
    .map_err(|_| {
        terr(format!(
            "publishing {n} messages took longer than {timeout:?}"
        ))
    })?;
    tokio::time::timeout(timeout, async {
        let mut answers = Vec::with_capacity(n);
        for p in sent {
            answers.push(match p {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            });
        }
        answers
    })
    .await
    .map_err(|_| {
        terr(format!(
            "no JetStream acknowledgement of all {n} messages within {timeout:?}"
        ))
    })
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.conn = None;
        // Never blocks, so dropping is fine from any context.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Destination for Nats {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn send(&mut self, batch: &[Outgoing]) -> Result<Delivery, SinkError> {
        let msgs = batch
            .iter()
            .map(|o| {
                PublishMessage::build()
                    .payload(bytes::Bytes::copy_from_slice(o.event.bytes()))
                    .message_id(o.dedupe_id())
            })
            .collect();
        self.publish(msgs)
    }

    fn send_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), SinkError> {
        let msg = PublishMessage::build()
            .payload(bytes::Bytes::copy_from_slice(cp.note.as_bytes()))
            .message_id(format!("checkpoint-{}", cp.size))
            .header("Kaudit-Checkpoint", cp.size.to_string().as_str());
        let d = self.publish(vec![msg])?;
        if d.retry.is_empty() && d.rejected.is_empty() {
            Ok(())
        } else {
            Err(SinkError::Rejected(
                "nats: checkpoint not acknowledged".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("nats://127.0.0.1:4222").as_deref(),
            Some("nats://127.0.0.1:4222")
        );
        assert_eq!(
            parse_url("localhost:4222").as_deref(),
            Some("nats://localhost:4222")
        );
        assert_eq!(
            parse_url("tls://nats.example:4443/").as_deref(),
            Some("tls://nats.example:4443")
        );
        assert_eq!(parse_url("nats://nohost"), None);
        assert_eq!(parse_url("nats://u:p@host:4222"), None);
        assert_eq!(parse_url("ws://host:4222"), None);
    }

    fn cfg() -> NatsConfig {
        NatsConfig {
            subject: "a.b".into(),
            ..Default::default()
        }
    }

    #[test]
    fn tls_is_implied_by_a_tls_url_or_a_tls_file() {
        assert!(!cfg().wants_tls());
        let c = NatsConfig {
            urls: vec!["nats://a:4222".into(), "tls://b:4222".into()],
            ..cfg()
        };
        assert!(c.wants_tls());
        let c = NatsConfig {
            ca_file: Some("ca.pem".into()),
            ..cfg()
        };
        assert!(c.wants_tls());
        assert!(NatsConfig { tls: true, ..cfg() }.wants_tls());
    }

    #[test]
    fn urls_replace_url_and_bad_combinations_are_named() {
        let c = NatsConfig {
            urls: vec!["nats://a:4222".into(), "nats://b:4222".into()],
            ..cfg()
        };
        assert_eq!(c.servers(), vec!["nats://a:4222", "nats://b:4222"]);
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let has = |c: &NatsConfig, what: &str| {
            let p = c.problems();
            assert!(p.iter().any(|m| m.contains(what)), "{what:?} not in {p:?}");
        };
        has(
            &NatsConfig {
                url: "nats://c:4222".into(),
                ..c.clone()
            },
            "both url and urls",
        );
        has(
            &NatsConfig {
                client_cert: Some("c.pem".into()),
                ..cfg()
            },
            "set both client_cert and client_key",
        );
        has(
            &NatsConfig {
                password: Some("p".into()),
                ..cfg()
            },
            "password needs user",
        );
        has(
            &NatsConfig {
                token: Some("t".into()),
                user: Some("u".into()),
                ..cfg()
            },
            "choose one way to authenticate, not token and user/password",
        );
        has(
            &NatsConfig {
                nkey: Some("UABC".into()),
                ..cfg()
            },
            "NKey user seed",
        );
        has(
            &NatsConfig {
                nkey: Some("SUABC".into()),
                nkey_file: Some("k".into()),
                ..cfg()
            },
            "nkey or nkey_file",
        );
        has(
            &NatsConfig {
                urls: vec!["http://a:1".into()],
                ..cfg()
            },
            "must be nats://host:port",
        );
        let secret = NatsConfig {
            nkey: Some("SXSECRETSEED".into()),
            ..cfg()
        };
        assert!(!secret.problems().join(" ").contains("SECRET"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = serde_json::from_str::<NatsConfig>(r#"{"subject":"a","tls_ca":"x"}"#)
            .expect_err("unknown key");
        assert!(e.to_string().contains("tls_ca"), "{e}");
        let c: NatsConfig = serde_json::from_str(
            r#"{"subject":"a","urls":["tls://h:1"],"ca_file":"ca.pem","creds_file":"u.creds"}"#,
        )
        .unwrap();
        assert_eq!(c.urls, vec!["tls://h:1"]);
        assert!(c.wants_tls());
    }
}
