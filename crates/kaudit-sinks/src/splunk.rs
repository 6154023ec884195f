//! `type: splunk_hec`: Splunk's HTTP Event Collector,
//! `POST /services/collector/event` with `Authorization: Splunk <token>` and
//! the events of a batch as concatenated JSON objects
//! (`{"time":..,"host":..,"source":..,"sourcetype":"kube:apiserver-audit","index":..,"event":<the event>}`),
//! `time` being the stage timestamp in seconds with microseconds.
//!
//! The sourcetype follows Splunk's own Kubernetes collectors (Splunk Connect
//! for Kubernetes' `kube-audit` log and the Splunk OpenTelemetry Collector
//! for Kubernetes' documented audit-log setup both use
//! `kube:apiserver-audit`), and the event is the audit Event's JSON as
//! kube-apiserver wrote it, so Splunk's JSON field extraction gives the same
//! field names (`verb`, `user.username`, `objectRef.resource`, ...) as for an
//! audit log those collectors read from the file.
//!
//! With `ack: true` every request carries `X-Splunk-Request-Channel` and the
//! batch only counts as delivered once `/services/collector/ack` says the
//! indexers have it; an ack that does not come within `ack_timeout` sends the
//! batch again (Splunk does not de-duplicate: at least once). A checkpoint is
//! one event with sourcetype `kaudit:checkpoint` and
//! `{"size":..,"time":..,"note":..}` as its event.

use crate::http::{client, expect_success, transport, ClientTls};
use crate::{Checkpoint, Delivery, Destination, Outgoing, SinkError};
use kaudit_event::MicroTime;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `type: splunk_hec`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplunkConfig {
    /// Base URL (`https://splunk:8088`).
    pub url: String,
    /// HEC token.
    pub token: String,
    /// Target index (the token's default when unset).
    pub index: Option<String>,
    /// `source` field.
    pub source: String,
    /// `sourcetype` field.
    pub sourcetype: String,
    /// `host` field (unset: the token's default).
    pub host: Option<String>,
    /// Wait for indexer acknowledgement before a batch counts as delivered.
    pub ack: bool,
    /// Channel for acknowledgements (a GUID; generated when unset).
    pub channel: Option<String>,
    /// How long to wait for an acknowledgement before sending again.
    #[serde(deserialize_with = "kaudit_units::de_duration")]
    pub ack_timeout: Duration,
    /// CA bundle (PEM).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for a HEC endpoint behind mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM) of `client_cert`.
    pub client_key: Option<PathBuf>,
}

impl Default for SplunkConfig {
    fn default() -> Self {
        SplunkConfig {
            url: String::new(),
            token: String::new(),
            index: None,
            source: "kaudit".into(),
            sourcetype: "kube:apiserver-audit".into(),
            host: None,
            ack: false,
            channel: None,
            ack_timeout: Duration::from_secs(60),
            ca_file: None,
            client_cert: None,
            client_key: None,
        }
    }
}

/// Appends `"time":<seconds.micros>` style value for a time.
fn epoch_seconds(t: MicroTime) -> String {
    let us = t.micros();
    let (s, frac) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    format!("{s}.{frac:06}")
}

/// The HEC envelope fields every event carries (after `time`).
pub struct Envelope<'a> {
    /// `host`, if set.
    pub host: Option<&'a str>,
    /// `source`.
    pub source: &'a str,
    /// `sourcetype`.
    pub sourcetype: &'a str,
    /// `index`, if set.
    pub index: Option<&'a str>,
}

impl Envelope<'_> {
    fn write_head(&self, time: MicroTime, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":");
        out.extend_from_slice(epoch_seconds(time).as_bytes());
        if let Some(h) = self.host {
            out.extend_from_slice(b",\"host\":");
            kaudit_event::json::write_str(out, h);
        }
        out.extend_from_slice(b",\"source\":");
        kaudit_event::json::write_str(out, self.source);
        out.extend_from_slice(b",\"sourcetype\":");
        kaudit_event::json::write_str(out, self.sourcetype);
        if let Some(i) = self.index {
            out.extend_from_slice(b",\"index\":");
            kaudit_event::json::write_str(out, i);
        }
        out.extend_from_slice(b",\"event\":");
    }

    /// Appends the HEC body for a batch: one JSON object per event, no separator.
    pub fn encode(&self, batch: &[Outgoing], out: &mut Vec<u8>) {
        for o in batch {
            self.write_head(o.time(), out);
            out.extend_from_slice(o.event.bytes());
            out.push(b'}');
        }
    }
}

/// The Splunk HEC destination.
pub struct SplunkHec {
    cfg: SplunkConfig,
    url: String,
    ack_url: String,
    auth: String,
    channel: String,
    client: reqwest::blocking::Client,
}

fn random_channel() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl SplunkHec {
    /// Builds it from its config.
    pub fn new(cfg: &SplunkConfig, timeout: Duration) -> Result<SplunkHec, SinkError> {
        if cfg.client_cert.is_some() != cfg.client_key.is_some() {
            return Err(SinkError::Config(
                "splunk_hec: set both client_cert and client_key, or neither".into(),
            ));
        }
        let tls = ClientTls::from_files(
            cfg.ca_file.as_deref(),
            cfg.client_cert.as_deref(),
            cfg.client_key.as_deref(),
        )?;
        let base = cfg.url.trim_end_matches('/');
        Ok(SplunkHec {
            url: format!("{base}/services/collector/event"),
            ack_url: format!("{base}/services/collector/ack"),
            auth: format!("Splunk {}", cfg.token),
            channel: cfg.channel.clone().unwrap_or_else(random_channel),
            client: client(&tls, timeout)?,
            cfg: cfg.clone(),
        })
    }

    fn envelope<'a>(&'a self, sourcetype: &'a str) -> Envelope<'a> {
        Envelope {
            host: self.cfg.host.as_deref(),
            source: &self.cfg.source,
            sourcetype,
            index: self.cfg.index.as_deref(),
        }
    }

    fn post(&self, body: Vec<u8>) -> Result<(), SinkError> {
        let mut req = self
            .client
            .post(&self.url)
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/json")
            .body(body);
        if self.cfg.ack {
            req = req.header("X-Splunk-Request-Channel", &self.channel);
        }
        let resp = req.send().map_err(|e| transport(&self.url, e))?;
        let answer = expect_success(&self.url, resp)?;
        if !self.cfg.ack {
            return Ok(());
        }
        let v: serde_json::Value = serde_json::from_slice(&answer)
            .map_err(|e| SinkError::Rejected(format!("{}: answer is not JSON: {e}", self.url)))?;
        let id = v
            .get("ackId")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| {
                SinkError::Rejected(format!(
                    "{}: no ackId in the answer (is indexer acknowledgement on for the token?)",
                    self.url
                ))
            })?;
        self.wait_ack(id)
    }

    fn wait_ack(&self, id: u64) -> Result<(), SinkError> {
        let deadline = Instant::now() + self.cfg.ack_timeout;
        let body = format!("{{\"acks\":[{id}]}}");
        let mut pause = Duration::from_millis(50);
        loop {
            let resp = self
                .client
                .post(&self.ack_url)
                .header("Authorization", &self.auth)
                .header("X-Splunk-Request-Channel", &self.channel)
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .map_err(|e| transport(&self.ack_url, e))?;
            let answer = expect_success(&self.ack_url, resp)?;
            let v: serde_json::Value = serde_json::from_slice(&answer).map_err(|e| {
                SinkError::Rejected(format!("{}: answer is not JSON: {e}", self.ack_url))
            })?;
            if v.pointer(&format!("/acks/{id}"))
                .and_then(serde_json::Value::as_bool)
                == Some(true)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(SinkError::Rejected(format!(
                    "no indexer acknowledgement for ackId {id} within {:?}; sending again",
                    self.cfg.ack_timeout
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

impl Destination for SplunkHec {
    fn kind(&self) -> &'static str {
        "splunk_hec"
    }

    fn send(&mut self, batch: &[Outgoing]) -> Result<Delivery, SinkError> {
        let mut body = Vec::with_capacity(batch.len() * 2048);
        self.envelope(&self.cfg.sourcetype).encode(batch, &mut body);
        self.post(body).map(|()| Delivery::all())
    }

    fn send_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), SinkError> {
        let mut body = Vec::new();
        let t = MicroTime::parse(&cp.time).unwrap_or_else(|_| MicroTime::now());
        self.envelope("kaudit:checkpoint").write_head(t, &mut body);
        serde_json::to_writer(&mut body, cp).map_err(|e| SinkError::Config(e.to_string()))?;
        body.push(b'}');
        self.post(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_seconds_keeps_microseconds() {
        assert_eq!(
            epoch_seconds(MicroTime(1_700_000_000_123_456)),
            "1700000000.123456"
        );
        assert_eq!(epoch_seconds(MicroTime(5)), "0.000005");
    }

    #[test]
    fn channel_is_a_guid() {
        let c = random_channel();
        assert_eq!(c.len(), 36);
        assert_eq!(c.matches('-').count(), 4);
        assert_ne!(c, random_channel());
    }
}
