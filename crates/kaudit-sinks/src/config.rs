//! Sink configuration: one entry of the server's `sinks:` list.
//!
//! The common settings (name, filter, policy, batching, backoff) and the
//! type's own settings sit side by side in one mapping, as in Vector's sinks;
//! unknown keys are errors naming the sink, so a typo never silently turns a
//! setting off.

use serde::{Deserialize, Deserializer};
use std::path::PathBuf;
use std::time::Duration;

/// Most events a batch may hold (bounds memory per sink).
pub const MAX_BATCH_EVENTS: usize = 100_000;
/// Most bytes a batch may hold.
pub const MAX_BATCH_BYTES: usize = 256 << 20;

/// One sink.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Unique name; names the cursor and dead-letter files and the metrics label.
    pub name: String,
    /// Query (kaudit's query language) an event must match to be sent.
    pub filter: Option<String>,
    /// An audit Policy applied before sending (levels, omitStages, drops).
    pub policy: Option<PathBuf>,
    /// Redact Secret data and tokens before sending.
    pub redact: bool,
    /// Also forward every new signed checkpoint.
    pub checkpoints: bool,
    /// Most events per batch.
    pub batch_max_events: usize,
    /// Most event bytes per batch.
    pub batch_max_bytes: usize,
    /// How long a partial batch waits for more events.
    pub batch_timeout: Duration,
    /// First wait after a failure (200 ms); it doubles on every further failure.
    pub backoff_start: Duration,
    /// Longest wait between retries.
    pub backoff_max: Duration,
    /// Timeout of one request or connection attempt.
    pub timeout: Duration,
    /// The type and its settings.
    pub kind: SinkKind,
}

/// The destination type and its settings.
#[derive(Clone, Debug)]
pub enum SinkKind {
    /// kube-apiserver's webhook format.
    Webhook(WebhookConfig),
    /// Elasticsearch or OpenSearch `_bulk`.
    Elasticsearch(ElasticsearchConfig),
    /// Splunk HTTP Event Collector.
    SplunkHec(SplunkConfig),
    /// RFC 5424 syslog.
    Syslog(SyslogConfig),
    /// OCSF API Activity records.
    Ocsf(OcsfConfig),
    /// NATS JetStream.
    Nats(NatsConfig),
}

impl SinkKind {
    /// The `type:` value.
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::Webhook(_) => "webhook",
            SinkKind::Elasticsearch(_) => "elasticsearch",
            SinkKind::SplunkHec(_) => "splunk_hec",
            SinkKind::Syslog(_) => "syslog",
            SinkKind::Ocsf(_) => "ocsf",
            SinkKind::Nats(_) => "nats",
        }
    }
}

pub use crate::elasticsearch::ElasticsearchConfig;
pub use crate::nats::NatsConfig;
pub use crate::ocsf::OcsfConfig;
pub use crate::splunk::SplunkConfig;
pub use crate::syslog::{SyslogConfig, SyslogProtocol};
pub use crate::webhook::WebhookConfig;

const COMMON_KEYS: &[&str] = &[
    "name",
    "type",
    "filter",
    "policy",
    "redact",
    "checkpoints",
    "batch_max_events",
    "batch_max_bytes",
    "batch_timeout",
    "backoff_start",
    "backoff_max",
    "timeout",
];

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        SinkConfig::from_map(map).map_err(serde::de::Error::custom)
    }
}

impl SinkConfig {
    /// Reads one sink from its mapping; errors name the sink and the key.
    pub fn from_map(
        mut map: serde_json::Map<String, serde_json::Value>,
    ) -> Result<SinkConfig, String> {
        let name = match map.remove("name") {
            Some(serde_json::Value::String(s)) => s,
            Some(_) => return Err("sink name must be a string".into()),
            None => return Err("a sink needs a name".into()),
        };
        let at = |e: String| format!("sink {name:?}: {e}");
        let ty = match map.remove("type") {
            Some(serde_json::Value::String(s)) => s,
            _ => {
                return Err(at(
                    "needs a type (webhook, elasticsearch, splunk_hec, syslog, ocsf, nats)".into(),
                ))
            }
        };
        let mut common = serde_json::Map::new();
        for k in COMMON_KEYS {
            if let Some(v) = map.remove(*k) {
                common.insert((*k).to_string(), v);
            }
        }
        let c: Common = serde_json::from_value(serde_json::Value::Object(common))
            .map_err(|e| at(e.to_string()))?;
        let rest = serde_json::Value::Object(map);
        fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
            serde_json::from_value(v).map_err(|e| e.to_string())
        }
        let kind = match ty.as_str() {
            "webhook" => SinkKind::Webhook(typed(rest).map_err(at)?),
            "elasticsearch" | "opensearch" => SinkKind::Elasticsearch(typed(rest).map_err(at)?),
            "splunk_hec" => SinkKind::SplunkHec(typed(rest).map_err(at)?),
            "syslog" => SinkKind::Syslog(typed(rest).map_err(at)?),
            "ocsf" => SinkKind::Ocsf(typed(rest).map_err(at)?),
            "nats" => SinkKind::Nats(typed(rest).map_err(at)?),
            other => {
                return Err(at(format!(
                    "unknown type {other:?} (want webhook, elasticsearch, splunk_hec, syslog, ocsf, nats)"
                )))
            }
        };
        Ok(SinkConfig {
            name,
            filter: c.filter,
            policy: c.policy,
            redact: c.redact,
            checkpoints: c.checkpoints,
            batch_max_events: c.batch_max_events,
            batch_max_bytes: c.batch_max_bytes,
            batch_timeout: c.batch_timeout,
            backoff_start: c.backoff_start,
            backoff_max: c.backoff_max,
            timeout: c.timeout,
            kind,
        })
    }

    /// A sink with default common settings.
    pub fn new(name: &str, kind: SinkKind) -> SinkConfig {
        let c = Common::default();
        SinkConfig {
            name: name.into(),
            filter: None,
            policy: None,
            redact: false,
            checkpoints: false,
            batch_max_events: c.batch_max_events,
            batch_max_bytes: c.batch_max_bytes,
            batch_timeout: c.batch_timeout,
            backoff_start: c.backoff_start,
            backoff_max: c.backoff_max,
            timeout: c.timeout,
            kind,
        }
    }

    /// Problems that would stop this sink from working, each naming the sink.
    pub fn check(&self) -> Vec<String> {
        let mut p = Vec::new();
        let n = &self.name;
        if n.is_empty()
            || n.len() > 64
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            || n.starts_with('.')
        {
            p.push(format!(
                "sink {n:?}: the name must be 1-64 characters of A-Z a-z 0-9 - _ . (not starting with a dot)"
            ));
        }
        if self.batch_max_events == 0 || self.batch_max_events > MAX_BATCH_EVENTS {
            p.push(format!(
                "sink {n:?}: batch_max_events must be between 1 and {MAX_BATCH_EVENTS}"
            ));
        }
        if self.batch_max_bytes < 1024 || self.batch_max_bytes > MAX_BATCH_BYTES {
            p.push(format!(
                "sink {n:?}: batch_max_bytes must be between 1024 and {MAX_BATCH_BYTES}"
            ));
        }
        if self.backoff_start < Duration::from_millis(1) || self.backoff_start > self.backoff_max {
            p.push(format!(
                "sink {n:?}: backoff_start must be at least 1ms and at most backoff_max"
            ));
        }
        if self.timeout.is_zero() {
            p.push(format!("sink {n:?}: timeout must be above 0"));
        }
        if let Some(f) = &self.filter {
            if let Err(e) = kaudit_query::Query::parse(f) {
                p.push(format!("sink {n:?}: filter: {e}"));
            }
        }
        if let Some(pol) = &self.policy {
            if !pol.is_file() {
                p.push(format!(
                    "sink {n:?}: policy {} does not exist",
                    pol.display()
                ));
            }
        }
        let url_ok = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        let mut files: Vec<&PathBuf> = Vec::new();
        match &self.kind {
            SinkKind::Webhook(w) => {
                match (&w.url, &w.kubeconfig) {
                    (None, None) => p.push(format!("sink {n:?}: webhook needs url or kubeconfig")),
                    (Some(u), _) if !url_ok(u) => p.push(format!(
                        "sink {n:?}: url {u:?} must start with http:// or https://"
                    )),
                    _ => {}
                }
                files.extend(
                    [
                        &w.bearer_token_file,
                        &w.ca_file,
                        &w.client_cert,
                        &w.client_key,
                        &w.kubeconfig,
                    ]
                    .into_iter()
                    .flatten(),
                );
                if w.client_cert.is_some() != w.client_key.is_some() {
                    p.push(format!("sink {n:?}: set both client_cert and client_key"));
                }
            }
            SinkKind::Elasticsearch(e) => {
                if !url_ok(&e.url) {
                    p.push(format!(
                        "sink {n:?}: url {:?} must start with http:// or https://",
                        e.url
                    ));
                }
                let target = e.target();
                if target.len() > 255
                    || target.starts_with(['-', '_', '+'])
                    || target
                        .contains(['/', '\\', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'])
                {
                    p.push(format!(
                        "sink {n:?}: index {target:?} is not a valid index or data stream name"
                    ));
                }
                // Elasticsearch's data stream naming scheme: the namespace is
                // lowercase, at most 100 bytes, without `-` (it ends the name).
                let ns = e.namespace();
                if ns.len() > 100
                    || ns.chars().any(|c| {
                        c.is_uppercase()
                            || matches!(
                                c,
                                '-' | '/'
                                    | '\\'
                                    | '*'
                                    | '?'
                                    | '"'
                                    | '<'
                                    | '>'
                                    | '|'
                                    | ' '
                                    | ','
                                    | '#'
                                    | ':'
                            )
                    })
                {
                    p.push(format!(
                        "sink {n:?}: namespace {ns:?} is not a valid data stream namespace (lowercase, no '-', at most 100 bytes)"
                    ));
                }
                files.extend(
                    [&e.ca_file, &e.client_cert, &e.client_key]
                        .into_iter()
                        .flatten(),
                );
                if e.client_cert.is_some() != e.client_key.is_some() {
                    p.push(format!("sink {n:?}: set both client_cert and client_key"));
                }
            }
            SinkKind::SplunkHec(s) => {
                if !url_ok(&s.url) {
                    p.push(format!(
                        "sink {n:?}: url {:?} must start with http:// or https://",
                        s.url
                    ));
                }
                if s.token.is_empty() {
                    p.push(format!("sink {n:?}: splunk_hec needs a token"));
                }
                files.extend(s.ca_file.iter());
            }
            SinkKind::Syslog(s) => {
                if crate::syslog::split_host_port(&s.address).is_none() {
                    p.push(format!(
                        "sink {n:?}: address {:?} must be host:port",
                        s.address
                    ));
                }
                if s.facility > 23 {
                    p.push(format!("sink {n:?}: facility must be 0-23"));
                }
                if s.app_name.is_empty()
                    || s.app_name.len() > 48
                    || !s.app_name.bytes().all(|b| (33..=126).contains(&b))
                {
                    p.push(format!(
                        "sink {n:?}: app_name must be 1-48 printable ASCII characters"
                    ));
                }
                files.extend(
                    [&s.ca_file, &s.client_cert, &s.client_key]
                        .into_iter()
                        .flatten(),
                );
            }
            SinkKind::Ocsf(o) => {
                if o.path.is_none() && o.url.is_none() {
                    p.push(format!("sink {n:?}: ocsf needs path, url or both"));
                }
                if let Some(u) = &o.url {
                    if !url_ok(u) {
                        p.push(format!(
                            "sink {n:?}: url {u:?} must start with http:// or https://"
                        ));
                    }
                }
                if o.max_file_bytes < 4096 {
                    p.push(format!("sink {n:?}: max_file_bytes must be at least 4096"));
                }
                files.extend(o.ca_file.iter());
            }
            SinkKind::Nats(nc) => {
                p.extend(
                    nc.problems()
                        .into_iter()
                        .map(|m| format!("sink {n:?}: {m}")),
                );
                files.extend(nc.files());
            }
        }
        for f in files {
            if !f.is_file() {
                p.push(format!("sink {n:?}: {} does not exist", f.display()));
            }
        }
        p
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Common {
    filter: Option<String>,
    policy: Option<PathBuf>,
    redact: bool,
    checkpoints: bool,
    batch_max_events: usize,
    batch_max_bytes: usize,
    #[serde(deserialize_with = "de_duration")]
    batch_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    backoff_start: Duration,
    #[serde(deserialize_with = "de_duration")]
    backoff_max: Duration,
    #[serde(deserialize_with = "de_duration")]
    timeout: Duration,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            filter: None,
            policy: None,
            redact: false,
            checkpoints: false,
            batch_max_events: 500,
            batch_max_bytes: 4 << 20,
            batch_timeout: Duration::from_secs(1),
            backoff_start: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
        }
    }
}

use kaudit_units::de_duration;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Vec<SinkConfig>, String> {
        serde_saphyr::from_str::<Vec<SinkConfig>>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_common_and_type_settings_side_by_side() {
        let s = parse(
            "- name: siem\n  type: webhook\n  url: https://siem:8443/audit\n  filter: 'verb=delete'\n  batch_max_events: 100\n  batch_timeout: 250ms\n  backoff_max: 5s\n",
        )
        .unwrap();
        assert_eq!(s[0].name, "siem");
        assert_eq!(s[0].batch_max_events, 100);
        assert_eq!(s[0].batch_timeout, Duration::from_millis(250));
        assert_eq!(s[0].backoff_max, Duration::from_secs(5));
        assert_eq!(s[0].filter.as_deref(), Some("verb=delete"));
        match &s[0].kind {
            SinkKind::Webhook(w) => assert_eq!(w.url.as_deref(), Some("https://siem:8443/audit")),
            k => panic!("wrong kind {k:?}"),
        }
        assert!(s[0].check().is_empty(), "{:?}", s[0].check());
    }

    #[test]
    fn elasticsearch_defaults_to_elastics_data_stream_and_shape() {
        let s = parse("- name: es\n  type: elasticsearch\n  url: http://x:9200\n").unwrap();
        let SinkKind::Elasticsearch(e) = &s[0].kind else {
            panic!("wrong kind {:?}", s[0].kind)
        };
        assert_eq!(e.ecs, crate::elasticsearch::EcsMode::ElasticIntegration);
        assert_eq!(e.target(), "logs-kubernetes.audit_logs-default");
        assert!(s[0].check().is_empty(), "{:?}", s[0].check());
        let s = parse(
            "- name: es\n  type: elasticsearch\n  url: http://x:9200\n  namespace: prod\n  ecs: elastic-integration\n",
        )
        .unwrap();
        let SinkKind::Elasticsearch(e) = &s[0].kind else {
            panic!("wrong kind")
        };
        assert_eq!(e.target(), "logs-kubernetes.audit_logs-prod");
        let ds = e.data_stream();
        assert_eq!(
            (ds.kind.as_str(), ds.dataset.as_str(), ds.namespace.as_str()),
            ("logs", "kubernetes.audit_logs", "prod")
        );
        let bad =
            parse("- name: es\n  type: elasticsearch\n  url: http://x:9200\n  namespace: Prod-1\n")
                .unwrap();
        let problems = bad[0].check();
        assert!(
            problems.iter().any(|p| p.contains("namespace \"Prod-1\"")),
            "{problems:?}"
        );
        let e = parse("- name: es\n  type: elasticsearch\n  url: http://x:9200\n  ecs: legacy\n")
            .unwrap_err();
        assert!(e.contains("legacy"), "{e}");
    }

    #[test]
    fn unknown_keys_and_types_are_errors_naming_the_sink() {
        let e = parse(
            "- name: es\n  type: elasticsearch\n  url: http://x:9200\n  index: a\n  indx: b\n",
        )
        .unwrap_err();
        assert!(e.contains("sink \"es\"") && e.contains("indx"), "{e}");
        let e = parse("- name: q\n  type: kafka\n").unwrap_err();
        assert!(e.contains("unknown type \"kafka\""), "{e}");
        let e = parse("- type: webhook\n  url: http://x\n").unwrap_err();
        assert!(e.contains("needs a name"), "{e}");
    }

    #[test]
    fn check_reports_bad_values() {
        let s = parse("- name: 'a b'\n  type: syslog\n  address: nohost\n  filter: 'verb=('\n  batch_max_events: 0\n").unwrap();
        let p = s[0].check().join("\n");
        assert!(p.contains("the name must be"), "{p}");
        assert!(p.contains("host:port"), "{p}");
        assert!(p.contains("filter:"), "{p}");
        assert!(p.contains("batch_max_events"), "{p}");
    }

    #[test]
    fn nats_tls_and_auth_settings_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let s = parse(&format!(
            "- name: js\n  type: nats\n  urls: [tls://a:4222, 'nats://b:4222']\n  subject: kaudit.audit\n  stream: AUDIT\n  ca_file: {}\n  user: u\n  password: p\n",
            ca.display()
        ))
        .unwrap();
        match &s[0].kind {
            SinkKind::Nats(n) => {
                assert_eq!(n.urls, ["tls://a:4222", "nats://b:4222"]);
                assert!(n.wants_tls());
                assert_eq!(n.user.as_deref(), Some("u"));
            }
            k => panic!("wrong kind {k:?}"),
        }
        assert!(s[0].check().is_empty(), "{:?}", s[0].check());
        let e = parse("- name: js\n  type: nats\n  subject: a\n  tls_ca: x\n").unwrap_err();
        assert!(e.contains("sink \"js\"") && e.contains("tls_ca"), "{e}");
        let s = parse("- name: js\n  type: nats\n  subject: a\n  client_key: /nonexistent/k.pem\n  creds_file: /nonexistent/u.creds\n  token: t\n").unwrap();
        let p = s[0].check().join("\n");
        assert!(
            p.contains("sink \"js\": set both client_cert and client_key"),
            "{p}"
        );
        assert!(p.contains("/nonexistent/u.creds does not exist"), "{p}");
        assert!(
            p.contains("not creds_file and token") || p.contains("not token and creds_file"),
            "{p}"
        );
    }
}
