//! `kaudit.yaml`: every option of `kaudit serve`, with `KAUDIT_...`
//! environment overrides.
//!
//! Overrides name a path with `__` between levels, upper case:
//! `KAUDIT_LISTEN=0.0.0.0:8080`, `KAUDIT_INGEST__MAX_BODY=128MiB`,
//! `KAUDIT_TLS__LISTEN=0.0.0.0:8443`. Values are parsed as YAML scalars, so
//! numbers and booleans keep their type. See `kaudit.example.yaml`.

use crate::auth::{ClientCertConfig, TokenConfig};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Data directory of the embedded store.
    pub data: PathBuf,
    /// Plain HTTP listener (loopback unless `allow_insecure_http`).
    pub listen: Option<SocketAddr>,
    /// Allow plain HTTP on a non-loopback address.
    pub allow_insecure_http: bool,
    /// The HTTPS listener.
    pub tls: Option<TlsConfig>,
    /// Credentials.
    pub auth: AuthConfig,
    /// Ingest limits and behaviour.
    pub ingest: IngestConfig,
    /// Connection and request-body bounds of the listeners.
    pub limits: LimitsConfig,
    /// Sources that pull events in (log files, ...), each a `kaudit-sources` component.
    pub sources: Vec<kaudit_sources::SourceConfig>,
    /// Store options.
    pub store: StoreConfig,
    /// Live detection.
    pub detect: kaudit_detect::DetectConfig,
    /// Forwarding sinks (SIEMs, webhooks, syslog, ...), each from its own cursor.
    pub sinks: Vec<kaudit_sinks::SinkConfig>,
    /// Logging.
    pub log: LogConfig,
    /// Limits of the query API.
    pub query: QueryConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data: PathBuf::from("./kaudit-data"),
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            allow_insecure_http: false,
            tls: None,
            auth: AuthConfig::default(),
            ingest: IngestConfig::default(),
            limits: LimitsConfig::default(),
            sources: Vec::new(),
            store: StoreConfig::default(),
            detect: Default::default(),
            sinks: Vec::new(),
            log: LogConfig::default(),
            query: QueryConfig::default(),
        }
    }
}

/// Limits of the query API (`/api/v1/events`, `stats`, histories, the
/// console), so no reader can starve the server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Time budget of one query; past it the answer is 503 with the reason.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Queries answered at once; more wait up to a second, then get 503
    /// with `Retry-After`.
    pub max_concurrent: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            timeout: crate::api::DEFAULT_QUERY_TIMEOUT,
            max_concurrent: crate::api::DEFAULT_MAX_CONCURRENT,
        }
    }
}

/// The HTTPS listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Certificate chain (PEM); without it a self-signed pair is made in the data dir.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Private key (PEM).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// CA bundle for client certificates (mTLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Host names and addresses for the self-signed certificate.
    #[serde(default = "default_names")]
    pub names: Vec<String>,
}

fn default_names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

/// Credentials; with none configured, plain HTTP on loopback accepts anyone.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Bearer tokens.
    pub tokens: Vec<TokenConfig>,
    /// Client certificates, matched by subject CN.
    pub client_certs: Vec<ClientCertConfig>,
}

/// Ingest limits and behaviour.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Cluster name for events whose credential names none.
    pub default_cluster: String,
    /// Largest request body, also after gzip inflation.
    #[serde(deserialize_with = "de_size")]
    pub max_body: u64,
    /// Events larger than this are stored truncated.
    #[serde(deserialize_with = "de_size")]
    pub max_event: u64,
    /// Memory all in-flight bodies may hold (counted as bytes arrive, as
    /// they inflate and as they are decoded); beyond it, 429.
    #[serde(deserialize_with = "de_size")]
    pub max_inflight: u64,
    /// Most items one batch may hold; beyond it, 413 (found while decoding).
    pub max_batch_items: usize,
    /// Most bytes the quarantine file may hold; beyond it a batch with
    /// invalid items is refused with 507 (nothing of it stored).
    #[serde(deserialize_with = "de_size")]
    pub max_quarantine: u64,
    /// Most bytes of invalid items one batch may add to the quarantine;
    /// beyond it, 413 (nothing of the batch stored).
    #[serde(deserialize_with = "de_size")]
    pub max_quarantine_per_batch: u64,
    /// How long resends are recognised.
    #[serde(deserialize_with = "de_duration")]
    pub dedupe_window: Duration,
    /// Most keys the dedupe window holds.
    pub dedupe_max_keys: usize,
    /// Ingest-time audit policy (YAML or JSON).
    pub policy: Option<PathBuf>,
    /// Redact Secret data and tokens (on by default).
    pub redact: bool,
    /// Below this much free disk, ingest answers 503 and /readyz fails.
    #[serde(deserialize_with = "de_size")]
    pub min_free_disk: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            default_cluster: "default".into(),
            max_body: 64 << 20,
            max_event: 4 << 20,
            max_inflight: 512 << 20,
            max_batch_items: kaudit_sources::pipeline::DEFAULT_MAX_BATCH_ITEMS,
            max_quarantine: kaudit_sources::quarantine::DEFAULT_MAX_QUARANTINE,
            max_quarantine_per_batch: kaudit_sources::pipeline::DEFAULT_MAX_QUARANTINE_PER_BATCH,
            dedupe_window: Duration::from_secs(600),
            dedupe_max_keys: 2_000_000,
            policy: None,
            redact: true,
            min_free_disk: 1 << 30,
        }
    }
}

/// Connection and request-body bounds of the listeners, so one slow or
/// greedy client cannot block the others.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Time for the TLS handshake and for each request's headers.
    #[serde(deserialize_with = "de_duration")]
    pub header_read_timeout: Duration,
    /// A connection with nothing moving and no request in progress for this
    /// long is closed.
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
    /// Time a request body may take before `min_body_rate` applies.
    #[serde(deserialize_with = "de_duration")]
    pub body_timeout: Duration,
    /// Bytes per second a body must keep up after `body_timeout` (a body of
    /// N bytes has `body_timeout + N / min_body_rate`); slower gets 408.
    #[serde(deserialize_with = "de_size")]
    pub min_body_rate: u64,
    /// Open connections per listener; beyond it new ones get 503 and are closed.
    pub max_connections: usize,
    /// Open connections per peer IP address and listener.
    pub max_connections_per_ip: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let conn = crate::listener::ConnLimits::default();
        let http = crate::http::HttpLimits::default();
        LimitsConfig {
            header_read_timeout: conn.header_read_timeout,
            idle_timeout: conn.idle_timeout,
            body_timeout: http.body_timeout,
            min_body_rate: http.min_body_rate,
            max_connections: conn.max_connections,
            max_connections_per_ip: conn.max_connections_per_ip,
        }
    }
}

impl LimitsConfig {
    /// The listener bounds.
    pub fn conn(&self) -> crate::listener::ConnLimits {
        crate::listener::ConnLimits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
        }
    }
}

/// Store options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Checkpoint signing key; generated in the data dir when absent.
    pub signing_key: Option<PathBuf>,
    /// Also write every checkpoint to this file.
    pub publish_checkpoint: Option<PathBuf>,
    /// The checkpoint verifier key published earlier (`name+id+key`, a file
    /// outside the data dir): verification (`kaudit verify`, the console)
    /// checks every checkpoint against it instead of the store's own key.
    pub trusted_key: Option<PathBuf>,
    /// A folder outside the data dir, that the kaudit host cannot rewrite,
    /// where a witness keeps checkpoints of this log: verification proves
    /// the log still extends the newest one.
    pub trusted_checkpoint_dir: Option<PathBuf>,
    /// Least time between checkpoints while data arrives.
    #[serde(deserialize_with = "de_duration")]
    pub checkpoint_interval: Duration,
    /// Retention.
    pub retention: Option<RetentionConfig>,
    /// Encryption at rest.
    pub encryption: Option<EncryptionConfig>,
    /// Memory for the live feed: recently stored events kept parsed so the
    /// indexer, detection and sinks need not read them back (`0` turns it
    /// off; followers then read everything from disk).
    #[serde(deserialize_with = "de_size")]
    pub feed_memory: u64,
    /// Scale-out: ship every record to this ClickHouse and answer queries
    /// from it (all nodes); the local log stays the source of proofs.
    pub clickhouse: Option<kaudit_clickhouse::ClickHouseConfig>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            signing_key: None,
            publish_checkpoint: None,
            trusted_key: None,
            trusted_checkpoint_dir: None,
            checkpoint_interval: Duration::from_secs(1),
            retention: None,
            encryption: None,
            feed_memory: kaudit_store::feed::DEFAULT_FEED_BYTES as u64,
            clickhouse: None,
        }
    }
}

/// Retention limits; whole segments beyond them are pruned.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Keep at most this long (`400d`).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_age: Option<Duration>,
    /// Keep at most this much (`500GiB`).
    #[serde(default, deserialize_with = "de_opt_size")]
    pub max_size: Option<u64>,
    /// How often `serve` applies the limits (default `1h`).
    #[serde(
        default = "default_retention_interval",
        deserialize_with = "de_duration"
    )]
    pub interval: Duration,
}

fn default_retention_interval() -> Duration {
    Duration::from_secs(3600)
}

impl RetentionConfig {
    /// The limits, as the store applies them.
    pub fn policy(&self) -> kaudit_store::retention::Retention {
        kaudit_store::retention::Retention {
            max_age_secs: self.max_age.map(|d| d.as_secs()),
            max_size: self.max_size,
        }
    }
}

/// Encryption at rest.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// File holding the 32-byte key (hex).
    pub key_file: PathBuf,
}

/// Logging.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter (`info`, `kaudit_server=debug`).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// A configuration that cannot be used, with where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The YAML is malformed or has wrong fields.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file (or `environment`).
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// A `KAUDIT_*` variable that is not a config override.
enum NotConfig {
    /// This exact name (after `KAUDIT_`).
    Is(&'static str),
    /// Names starting with this.
    Prefix(&'static str),
}

impl NotConfig {
    fn matches(&self, rest: &str) -> bool {
        match self {
            NotConfig::Is(n) => rest == *n,
            NotConfig::Prefix(p) => rest.starts_with(p),
        }
    }
}

/// `KAUDIT_*` variables other commands and the test scripts read: a shell
/// that exported `KAUDIT_TOKEN` for `kaudit prune` must still be able to
/// run `kaudit serve`.
const NOT_CONFIG: [NotConfig; 9] = [
    NotConfig::Is("CONFIG"),
    NotConfig::Is("TOKEN"),
    NotConfig::Is("SERVER"),
    NotConfig::Is("CLUSTER"),
    NotConfig::Is("ENCRYPTION_KEY"),
    NotConfig::Is("CONFORMANCE"),
    NotConfig::Is("SKIP_ROOT_TESTS"),
    NotConfig::Prefix("BENCH"),
    NotConfig::Prefix("FUZZ_"),
];

impl ServerConfig {
    /// Loads a file (None: defaults), then applies `KAUDIT_*` variables from
    /// `env` (except the other commands' own, [`NOT_CONFIG`]).
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ServerConfig, ConfigError> {
        let (mut value, name) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                let v: serde_json::Value = if text.trim().is_empty() {
                    serde_json::Value::Object(Default::default())
                } else {
                    serde_saphyr::from_str(&text).map_err(|e| ConfigError::Invalid {
                        path: p.display().to_string(),
                        reason: e.to_string(),
                    })?
                };
                (v, p.display().to_string())
            }
            None => (
                serde_json::Value::Object(Default::default()),
                "defaults".to_string(),
            ),
        };
        let mut applied = Vec::new();
        for (k, v) in env {
            let Some(rest) = k.strip_prefix("KAUDIT_") else {
                continue;
            };
            if rest.is_empty() || NOT_CONFIG.iter().any(|n| n.matches(rest)) {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            let scalar: serde_json::Value =
                serde_saphyr::from_str(&v).unwrap_or(serde_json::Value::String(v.clone()));
            set_path(&mut value, &path, scalar);
            applied.push(k);
        }
        drop_nulls(&mut value);
        serde_json::from_value(value).map_err(|e| ConfigError::Invalid {
            path: if applied.is_empty() {
                name
            } else {
                format!("{name} (with environment {})", applied.join(", "))
            },
            reason: e.to_string(),
        })
    }

    /// Checks what serde cannot: listener safety, TLS files, source paths.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(ch) = &self.store.clickhouse {
            if let Err(e) = ch.validate() {
                problems.push(e.to_string());
            }
        }
        if let Some(l) = self.listen {
            if !l.ip().is_loopback() && !self.allow_insecure_http {
                problems.push(format!(
                    "listen: {l} is not a loopback address; plain HTTP there needs allow_insecure_http: true (use tls.listen instead)"
                ));
            }
        }
        if let Some(r) = &self.store.retention {
            if r.interval.is_zero() {
                problems.push("store.retention.interval: must be more than 0".into());
            }
            if r.max_age.is_none() && r.max_size.is_none() {
                problems.push(
                    "store.retention: set max_age and/or max_size (or remove retention)".into(),
                );
            }
        }
        // Authentication fails closed: off loopback, a listener needs credentials.
        let has_credentials = !self.auth.tokens.is_empty() || !self.auth.client_certs.is_empty();
        if !has_credentials {
            let what_to_add = "add auth.tokens (name, token_file, cluster, role) or, with tls.client_ca, auth.client_certs (common_name, cluster, role); or listen on 127.0.0.1";
            if let Some(l) = self.listen.filter(|l| !l.ip().is_loopback()) {
                problems.push(format!(
                    "listen: {l} is not a loopback address and no credentials are configured (anyone could ingest and administer): {what_to_add}"
                ));
            }
            if let Some(t) = self.tls.as_ref().filter(|t| !t.listen.ip().is_loopback()) {
                problems.push(format!(
                    "tls.listen: {} is not a loopback address and no credentials are configured (anyone could ingest and administer): {what_to_add}",
                    t.listen
                ));
            }
        }
        if let Some(ca) = self.tls.as_ref().and_then(|t| t.client_ca.as_ref()) {
            if self.auth.client_certs.is_empty() {
                problems.push(format!(
                    "tls.client_ca: {} is set but auth.client_certs is empty: add an auth.client_certs entry (common_name, cluster, role) for every accepted client certificate, or remove client_ca",
                    ca.display()
                ));
            }
        }
        if self.listen.is_none() && self.tls.is_none() && self.sources.is_empty() {
            problems
                .push("neither listen nor tls.listen is set: nothing would accept events".into());
        }
        if let Some(t) = &self.tls {
            if t.cert.is_some() != t.key.is_some() {
                problems.push(
                    "tls: set both cert and key, or neither (a self-signed pair is then made)"
                        .into(),
                );
            }
            for p in [&t.cert, &t.key, &t.client_ca].into_iter().flatten() {
                if !p.is_file() {
                    problems.push(format!("tls: {} does not exist", p.display()));
                }
            }
        }
        let mut sink_names = std::collections::HashSet::new();
        for s in &self.sinks {
            if !sink_names.insert(s.name.as_str()) {
                problems.push(format!("sinks: the name {:?} is used twice", s.name));
            }
            problems.extend(s.check());
        }
        for (i, s) in self.sources.iter().enumerate() {
            problems.extend(s.check(i));
        }
        if let Some(p) = &self.ingest.policy {
            if !p.is_file() {
                problems.push(format!("ingest.policy: {} does not exist", p.display()));
            }
        }
        problems.extend(self.check_trust());
        if self.ingest.max_event > self.ingest.max_body {
            problems.push("ingest.max_event is larger than ingest.max_body".into());
        }
        if self.ingest.max_batch_items == 0 {
            problems.push("ingest.max_batch_items must be at least 1".into());
        }
        if let Err(m) = crate::http::valid_cluster_name(&self.ingest.default_cluster) {
            problems.push(format!("ingest.default_cluster: {m}"));
        }
        let l = &self.limits;
        for (name, d) in [
            ("header_read_timeout", l.header_read_timeout),
            ("idle_timeout", l.idle_timeout),
            ("body_timeout", l.body_timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("limits.{name} must be more than 0"));
            }
        }
        if l.min_body_rate == 0 || l.max_connections == 0 || l.max_connections_per_ip == 0 {
            problems.push(
                "limits.min_body_rate, max_connections and max_connections_per_ip must be at least 1"
                    .into(),
            );
        }
        if self.query.timeout.is_zero() {
            problems.push("query.timeout must be longer than 0s".into());
        }
        if self.query.max_concurrent == 0 {
            problems.push("query.max_concurrent must be at least 1".into());
        }
        problems
    }
}

impl ServerConfig {
    /// `store.trusted_key` and `store.trusted_checkpoint_dir`: readable, and
    /// outside the data dir (whoever writes the data dir must not be able to
    /// change what the store is checked against).
    fn check_trust(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let inside_data = |p: &Path| {
            let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            abs(p).starts_with(abs(&self.data)) || p.starts_with(&self.data)
        };
        if let Some(k) = &self.store.trusted_key {
            if inside_data(k) {
                problems.push(format!(
                    "store.trusted_key: {} is inside the data dir {}; keep the trusted key where the kaudit host cannot rewrite it",
                    k.display(),
                    self.data.display()
                ));
            }
            if let Err(e) = load_trusted_key(k) {
                problems.push(format!("store.trusted_key: {e}"));
            }
        }
        if let Some(d) = &self.store.trusted_checkpoint_dir {
            if inside_data(d) {
                problems.push(format!(
                    "store.trusted_checkpoint_dir: {} is inside the data dir {}; use a folder the kaudit host cannot rewrite (a witness's mount)",
                    d.display(),
                    self.data.display()
                ));
            }
            if !d.is_dir() {
                problems.push(format!(
                    "store.trusted_checkpoint_dir: {} is not a folder",
                    d.display()
                ));
            }
        }
        problems
    }
}

/// Reads a verifier key file (`name+hexkeyid+base64`, as `kaudit keygen`
/// writes the `.pub`), naming the file in the error.
pub fn load_trusted_key(path: &Path) -> Result<kaudit_store::note::Verifier25519, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > 4096 {
        return Err(format!(
            "{}: {} bytes is too large for a verifier key",
            path.display(),
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    kaudit_store::note::Verifier25519::from_text(text.trim())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `key:` with nothing after it is YAML null: treat it as not set.
fn drop_nulls(v: &mut serde_json::Value) {
    if let serde_json::Value::Object(m) = v {
        m.retain(|_, c| !c.is_null());
        m.values_mut().for_each(drop_nulls);
    }
}

fn set_path(v: &mut serde_json::Value, path: &[String], leaf: serde_json::Value) {
    let Some((first, rest)) = path.split_first() else {
        *v = leaf;
        return;
    };
    if !v.is_object() {
        *v = serde_json::Value::Object(Default::default());
    }
    if let serde_json::Value::Object(m) = v {
        let child = m.entry(first.clone()).or_insert(serde_json::Value::Null);
        set_path(child, rest, leaf);
    }
}

use kaudit_units::{de_duration, de_opt_duration, de_opt_size, de_size};
pub use kaudit_units::{parse_duration, parse_size};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_with_env_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kaudit.yaml");
        std::fs::write(
            &p,
            "data: /var/lib/kaudit\ningest:\n  max_body: 32MiB\n  dedupe_window: 5m\nauth:\n  tokens:\n    - name: prod\n      token: 0123456789abcdef0123\n      cluster: prod\n",
        )
        .unwrap();
        let env = vec![
            ("KAUDIT_LISTEN".to_string(), "127.0.0.1:9999".to_string()),
            ("KAUDIT_INGEST__MAX_EVENT".to_string(), "1MiB".to_string()),
            ("KAUDIT_INGEST__REDACT".to_string(), "false".to_string()),
            ("OTHER".to_string(), "x".to_string()),
            // Other commands' variables, exported in the same shell, are
            // not config overrides.
            ("KAUDIT_TOKEN".to_string(), "t".to_string()),
            ("KAUDIT_SERVER".to_string(), "http://x".to_string()),
            ("KAUDIT_ENCRYPTION_KEY".to_string(), "/k".to_string()),
            ("KAUDIT_SKIP_ROOT_TESTS".to_string(), "1".to_string()),
            ("KAUDIT_FUZZ_SECONDS".to_string(), "30".to_string()),
        ];
        let c = ServerConfig::load(Some(&p), env).unwrap();
        assert_eq!(c.data, PathBuf::from("/var/lib/kaudit"));
        assert_eq!(c.listen.unwrap().port(), 9999);
        assert_eq!(c.ingest.max_body, 32 << 20);
        assert_eq!(c.ingest.max_event, 1 << 20);
        assert!(!c.ingest.redact);
        assert_eq!(c.ingest.dedupe_window, Duration::from_secs(300));
        assert_eq!(c.auth.tokens[0].cluster.as_deref(), Some("prod"));
        assert!(c.check().is_empty(), "{:?}", c.check());
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.yaml");
        std::fs::write(&p, "lisen: 1.2.3.4:80\n").unwrap();
        let e = ServerConfig::load(Some(&p), Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.yaml") && e.contains("lisen"), "{e}");
        let e = ServerConfig::load(
            None,
            vec![("KAUDIT_INGEST__MAX_BODY".into(), "lots".into())],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("KAUDIT_INGEST__MAX_BODY") && e.contains("invalid size"),
            "{e}"
        );
        let c = ServerConfig::load(None, vec![("KAUDIT_LISTEN".into(), "0.0.0.0:8080".into())])
            .unwrap();
        assert!(c.check()[0].contains("allow_insecure_http"));
    }

    #[test]
    fn listeners_off_loopback_need_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not read by check").unwrap();
        let load = |yaml: &str| {
            let p = dir.path().join("k.yaml");
            std::fs::write(&p, yaml).unwrap();
            ServerConfig::load(Some(&p), Vec::new()).unwrap().check()
        };
        // TLS on every interface, nobody named: refused, saying what to add.
        let p = load("tls:\n  listen: 0.0.0.0:8443\n").join("\n");
        assert!(
            p.contains("tls.listen: 0.0.0.0:8443") && p.contains("auth.tokens"),
            "{p}"
        );
        // Plain HTTP allowed off loopback, still nobody named: refused.
        let p = load("listen: 0.0.0.0:8080\nallow_insecure_http: true\n").join("\n");
        assert!(
            p.contains("listen: 0.0.0.0:8080") && p.contains("no credentials"),
            "{p}"
        );
        // A client CA with no client_certs would make every certificate-less client anonymous.
        let p = load(&format!(
            "listen: null\ntls:\n  listen: 127.0.0.1:8443\n  client_ca: {}\n",
            ca.display()
        ))
        .join("\n");
        assert!(
            p.contains("tls.client_ca") && p.contains("auth.client_certs is empty"),
            "{p}"
        );
        // With credentials, the same listeners are fine; loopback without them too.
        let creds = "auth:\n  tokens:\n    - name: a\n      token: 0123456789abcdef0123\n";
        assert!(load(&format!("tls:\n  listen: 0.0.0.0:8443\n{creds}")).is_empty());
        assert!(load(&format!(
            "listen: 0.0.0.0:8080\nallow_insecure_http: true\n{creds}"
        ))
        .is_empty());
        assert!(load("tls:\n  listen: 127.0.0.1:8443\n").is_empty());
        let certs = "auth:\n  client_certs:\n    - common_name: apiserver\n";
        assert!(load(&format!(
            "tls:\n  listen: 0.0.0.0:8443\n  client_ca: {}\n{certs}",
            ca.display()
        ))
        .is_empty());
    }

    #[test]
    fn the_example_config_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kaudit.example.yaml");
        let c = ServerConfig::load(Some(&p), Vec::new()).unwrap();
        assert_eq!(c.tls.as_ref().unwrap().listen.port(), 8443);
        assert_eq!(c.auth.tokens[0].clusters, ["prod-eu"]);
        assert_eq!(c.ingest.max_inflight, 512 << 20);
        assert!(c.check().is_empty(), "{:?}", c.check());
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("500GB").unwrap(), 500_000_000_000);
        assert_eq!(
            parse_duration("400d").unwrap(),
            Duration::from_secs(400 * 86_400)
        );
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_size("12 parsecs").is_err());
    }
}
