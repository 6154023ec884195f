//! `detect:` in the config file: which rules run and where alerts are sent.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `detect:` in the config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Evaluate rules on ingest.
    pub enabled: bool,
    /// Falco or Sigma rules files; empty means kaudit's built-in ruleset.
    pub rules: Vec<PathBuf>,
    /// Every matching rule alerts, instead of Falco's first match.
    pub all_matches: bool,
    /// Notification window per rule and key (`10m`; `0s` disables throttling).
    #[serde(deserialize_with = "kaudit_units::de_duration")]
    pub throttle: Duration,
    /// Output fields that form the throttle key (default: the user).
    pub throttle_key: Vec<String>,
    /// Where notifications go.
    pub outputs: Vec<OutputConfig>,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            enabled: true,
            rules: Vec::new(),
            all_matches: false,
            throttle: Duration::from_secs(600),
            throttle_key: vec!["ka.user.name".into()],
            outputs: Vec::new(),
        }
    }
}

/// One notification output.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum OutputConfig {
    /// Falco JSON lines on standard output.
    Stdout,
    /// Falco JSON lines appended to a file.
    File {
        /// The file.
        path: PathBuf,
    },
    /// An HTTP POST per alert.
    Webhook(AlertWebhookConfig),
}

/// `outputs: [{webhook: {...}}]`: where and how alerts are POSTed. Delivery
/// is retried with backoff until the receiver takes it; a refusal for good
/// (a 4xx other than 408 and 429) is dead-lettered beside the alerts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertWebhookConfig {
    /// Where to POST.
    pub url: String,
    /// `falco` (Falco's JSON, what falcosidekick takes) or `slack` (`{"text": ...}`).
    #[serde(default)]
    pub format: AlertFormat,
    /// CA bundle (PEM) that signs the receiver's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for receivers behind mutual TLS.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Per-request timeout.
    #[serde(
        default = "default_timeout",
        deserialize_with = "kaudit_units::de_duration"
    )]
    pub timeout: Duration,
}

impl AlertWebhookConfig {
    /// A webhook to `url` in `format` with default settings.
    pub fn new(url: impl Into<String>, format: AlertFormat) -> AlertWebhookConfig {
        AlertWebhookConfig {
            url: url.into(),
            format,
            ca_file: None,
            client_cert: None,
            client_key: None,
            timeout: default_timeout(),
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The body shape of an alert notification.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AlertFormat {
    /// Falco's JSON output, what falcosidekick and most Falco tooling take.
    #[default]
    Falco,
    /// Slack's incoming-webhook `{"text": ...}`.
    Slack,
}

impl OutputConfig {
    /// A short name for logs and the output's state files: `stdout`, `file`,
    /// `webhook`.
    pub fn kind(&self) -> &'static str {
        match self {
            OutputConfig::Stdout => "stdout",
            OutputConfig::File { .. } => "file",
            OutputConfig::Webhook(_) => "webhook",
        }
    }
}
