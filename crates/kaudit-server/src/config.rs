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
            sources: Vec::new(),
            store: StoreConfig::default(),
            detect: Default::default(),
            sinks: Vec::new(),
            log: LogConfig::default(),
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
    /// Memory all in-flight bodies may hold; beyond it, 429.
    #[serde(deserialize_with = "de_size")]
    pub max_inflight: u64,
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
            dedupe_window: Duration::from_secs(600),
            dedupe_max_keys: 2_000_000,
            policy: None,
            redact: true,
            min_free_disk: 1 << 30,
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
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            signing_key: None,
            publish_checkpoint: None,
            checkpoint_interval: Duration::from_secs(1),
            retention: None,
            encryption: None,
            feed_memory: kaudit_store::feed::DEFAULT_FEED_BYTES as u64,
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

impl ServerConfig {
    /// Loads a file (None: defaults), then applies `KAUDIT_*` variables from `env`.
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
            if rest.is_empty() || rest == "CONFORMANCE" || rest.starts_with("BENCH") {
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
        if self.ingest.max_event > self.ingest.max_body {
            problems.push("ingest.max_event is larger than ingest.max_body".into());
        }
        problems
    }
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
