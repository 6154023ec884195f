//! Alert notifications as sinks: each of `detect.outputs` follows the alert
//! log (`<data>/alerts/alerts.jsonl`, written by `kaudit-detect`) from its
//! own durable position, with the same guarantees as event sinks: a failed
//! delivery is retried with jittered backoff until the receiver takes it,
//! a refusal for good (a 4xx other than 408 and 429) is dead-lettered to
//! `<data>/alerts/notify-<n>-<kind>.dead` with the reason, and the position
//! is saved only after delivery, so a notification is never dropped (after a
//! crash it may be sent twice).
//!
//! Throttling (`detect.throttle`) applies here, per output, in the alert
//! log's order, per cluster, by the time kaudit received each alert's event
//! (not the event's own time, which a sender can forge to silence later
//! alerts), so a replay of the log throttles as the live traffic did. Alerts a restarted detector appended again (same
//! sequence number and rule) are notified once.

use crate::http::{client, transport, ClientTls};
use crate::SinkError;
use kaudit_detect::{AlertFormat, AlertLog, DetectConfig, OutputConfig, StoredAlert, Throttle};
use kaudit_event::MicroTime;
use kaudit_store::follow::jittered;
use kaudit_store::{FollowError, Followed, Follower};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Most alerts handled in one step (between two position saves).
const STEP_ALERTS: usize = 500;
/// Most bytes of the alert log read in one step.
const STEP_BYTES: u64 = 4 << 20;
/// Retry waits of a failing delivery, first and longest.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(30));
/// How long a delivery keeps being retried after a stop was asked for.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where a notifier is in the alert log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct NotifyCursor {
    /// Byte offset of the next alert line.
    offset: u64,
    /// Alert lines handled so far.
    lines: u64,
    /// The highest event sequence number notified, and the rules notified
    /// for it: what recognises alerts a restarted detector wrote again.
    last_seq: Option<u64>,
    last_rules: BTreeSet<String>,
}

/// One notification output following the alert log. See the [module
/// docs](self).
pub struct AlertNotifier {
    name: String,
    output: OutputConfig,
    http: Option<reqwest::blocking::Client>,
    alerts: PathBuf,
    log: AlertLog,
    cursor_path: PathBuf,
    dead_path: PathBuf,
    cursor: NotifyCursor,
    throttle: Throttle,
    pending: u64,
    cipher: Option<std::sync::Arc<kaudit_store::crypt::Cipher>>,
}

/// Why one delivery did not go through.
enum Refused {
    /// Worth trying again (transport error, 408, 429, 5xx).
    Retry(String),
    /// Refused for good: dead-lettered.
    ForGood(String),
}

impl AlertNotifier {
    /// The notifiers for every output of `cfg`, each resuming from its saved
    /// position in the alert log under `data`.
    pub fn open_all(cfg: &DetectConfig, data: &Path) -> Result<Vec<AlertNotifier>, SinkError> {
        cfg.outputs
            .iter()
            .enumerate()
            .map(|(i, o)| AlertNotifier::open(i, o.clone(), cfg, data))
            .collect()
    }

    /// The notifier for output number `index` of `cfg.outputs`.
    pub fn open(
        index: usize,
        output: OutputConfig,
        cfg: &DetectConfig,
        data: &Path,
    ) -> Result<AlertNotifier, SinkError> {
        let log = AlertLog::new(data);
        let stem = format!("notify-{index}-{}", output.kind());
        let http = match &output {
            OutputConfig::Webhook(w) => {
                let tls = ClientTls::from_files(
                    w.ca_file.as_deref(),
                    w.client_cert.as_deref(),
                    w.client_key.as_deref(),
                )?;
                Some(client(&tls, w.timeout)?)
            }
            _ => None,
        };
        let cursor_path = log.dir().join(format!("{stem}.cursor"));
        let cursor = match std::fs::read(&cursor_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                SinkError::Config(format!(
                    "{}: bad notifier position: {e}",
                    cursor_path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => NotifyCursor::default(),
            Err(e) => return Err(SinkError::Io(format!("{}: {e}", cursor_path.display()))),
        };
        Ok(AlertNotifier {
            name: format!("alerts:{stem}"),
            output,
            http,
            alerts: log.alerts_path(),
            dead_path: log.dir().join(format!("{stem}.dead")),
            log,
            cursor_path,
            cursor,
            throttle: Throttle::new(cfg.throttle, cfg.throttle_key.clone()),
            pending: 0,
            cipher: None,
        })
    }

    /// Opens sealed alert lines with `cipher` (the store's data key, when
    /// encryption at rest is on), and seals dead letters with it: they hold
    /// the alert's user and object names.
    pub fn sealed(mut self, cipher: Option<std::sync::Arc<kaudit_store::crypt::Cipher>>) -> Self {
        self.log = self.log.sealed(cipher.clone());
        self.cipher = cipher;
        self
    }

    fn save(&self) -> Result<(), SinkError> {
        let io = |e: std::io::Error| SinkError::Io(format!("{}: {e}", self.cursor_path.display()));
        if let Some(dir) = self.cursor_path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = self.cursor_path.with_extension("cursor.tmp");
        let body = serde_json::to_vec(&self.cursor).map_err(|e| SinkError::Io(e.to_string()))?;
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&body).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.cursor_path).map_err(io)
    }

    /// Complete lines of the alert log from the position, at most
    /// [`STEP_BYTES`], with how many more complete lines were seen.
    fn read_new(&self) -> Result<Vec<Vec<u8>>, SinkError> {
        let io = |e: std::io::Error| SinkError::Io(format!("{}: {e}", self.alerts.display()));
        let mut f = match File::open(&self.alerts) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        f.seek(SeekFrom::Start(self.cursor.offset)).map_err(io)?;
        let mut buf = Vec::new();
        f.take(STEP_BYTES).read_to_end(&mut buf).map_err(io)?;
        let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        buf.truncate(complete);
        Ok(buf
            .split_inclusive(|b| *b == b'\n')
            .map(<[u8]>::to_vec)
            .collect())
    }

    /// Whether the detector wrote this alert before (a replay after its crash).
    fn seen(&self, a: &StoredAlert) -> bool {
        match self.cursor.last_seq {
            Some(s) if a.seq < s => true,
            Some(s) if a.seq == s => self.cursor.last_rules.contains(&a.rule),
            _ => false,
        }
    }

    fn mark(&mut self, a: &StoredAlert) {
        if self.cursor.last_seq != Some(a.seq) {
            self.cursor.last_seq = Some(a.seq);
            self.cursor.last_rules.clear();
        }
        self.cursor.last_rules.insert(a.rule.clone());
    }

    fn send_once(&self, a: &StoredAlert, held_back: u64) -> Result<(), Refused> {
        let line = falco_json(a, held_back);
        match &self.output {
            OutputConfig::Stdout => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}")
                    .and_then(|_| out.flush())
                    .map_err(|e| Refused::Retry(format!("stdout: {e}")))
            }
            OutputConfig::File { path } => OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| {
                    f.write_all(format!("{line}\n").as_bytes())?;
                    f.sync_data()
                })
                .map_err(|e| Refused::Retry(format!("{}: {e}", path.display()))),
            OutputConfig::Webhook(w) => {
                let body = match w.format {
                    AlertFormat::Falco => line,
                    AlertFormat::Slack => slack_json(a, held_back),
                };
                let Some(http) = &self.http else {
                    return Err(Refused::ForGood("no HTTP client".into()));
                };
                let resp = http
                    .post(&w.url)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .map_err(|e| Refused::Retry(transport(&w.url, e).to_string()))?;
                let status = resp.status();
                if status.is_success() {
                    return Ok(());
                }
                let text = resp.text().unwrap_or_default();
                let msg = format!(
                    "{}: HTTP {status}: {}",
                    w.url,
                    text.chars().take(200).collect::<String>()
                );
                if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
                    Err(Refused::ForGood(msg))
                } else {
                    Err(Refused::Retry(msg))
                }
            }
        }
    }

    fn dead_letter(&self, a: &StoredAlert, reason: &str) -> Result<(), SinkError> {
        let io = |e: std::io::Error| SinkError::Io(format!("{}: {e}", self.dead_path.display()));
        let mut line = serde_json::json!({"reason": reason, "alert": a}).to_string();
        if let Some(c) = &self.cipher {
            line = c
                .seal_line(line.as_bytes(), crate::state::DEAD_LETTER_PURPOSE)
                .map_err(|e| SinkError::Io(format!("{}: {e}", self.dead_path.display())))?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.dead_path)
            .map_err(io)?;
        f.write_all(format!("{line}\n").as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)
    }

    /// Delivers one notification, retrying until it goes through, is
    /// refused for good (then dead-lettered), or a stop outlasts the grace.
    fn deliver(
        &self,
        a: &StoredAlert,
        held_back: u64,
        log: &Followed<'_>,
    ) -> Result<(), FollowError> {
        let mut backoff = BACKOFF.0;
        let mut stop_seen: Option<Instant> = None;
        loop {
            match self.send_once(a, held_back) {
                Ok(()) => return Ok(()),
                Err(Refused::ForGood(reason)) => {
                    tracing::warn!(output = %self.name, rule = %a.rule, %reason, "notification refused; dead-lettered");
                    return self.dead_letter(a, &reason).map_err(FollowError::failed);
                }
                Err(Refused::Retry(reason)) => {
                    tracing::warn!(output = %self.name, rule = %a.rule, %reason, retry_in = ?backoff, "notification failed; will retry");
                }
            }
            if log.stopping() && stop_seen.get_or_insert_with(Instant::now).elapsed() >= STOP_GRACE
            {
                return Err(FollowError::Stopped);
            }
            std::thread::sleep(jittered(backoff));
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }
}

impl Follower for AlertNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn position(&self) -> u64 {
        self.cursor.lines
    }

    fn backlog(&self, _log_len: u64) -> u64 {
        self.pending
    }

    fn step(&mut self, log: &Followed<'_>) -> Result<u64, FollowError> {
        let lines = self.read_new().map_err(FollowError::failed)?;
        self.pending = lines.len() as u64;
        let mut done = 0u64;
        let mut result = Ok(());
        for raw in lines.iter().take(STEP_ALERTS) {
            let line = raw.strip_suffix(b"\n").unwrap_or(raw);
            match self.log.decode_line(line) {
                Ok(a) if !self.seen(&a) => {
                    let t = a.throttle_time().unwrap_or_else(MicroTime::now);
                    if let Some(held) = self.throttle.admit(&a, t) {
                        if let Err(e) = self.deliver(&a, held, log) {
                            result = Err(e);
                            break;
                        }
                    }
                    self.mark(&a);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(output = %self.name, line = self.cursor.lines + 1, error = %e, "skipping an unreadable alert line");
                }
            }
            self.cursor.offset += raw.len() as u64;
            self.cursor.lines += 1;
            done += 1;
        }
        self.pending -= done;
        if done > 0 {
            self.save().map_err(FollowError::failed)?;
        }
        result.map(|()| done)
    }
}

/// An alert in Falco's JSON output shape (what falcosidekick takes), with
/// `kaudit_suppressed` when throttling held similar ones back.
pub fn falco_json(a: &StoredAlert, held_back: u64) -> String {
    let mut falco = serde_json::json!({
        "time": a.time,
        "rule": a.rule,
        "priority": a.priority,
        "output": a.output,
        "output_fields": a.output_fields,
        "source": "k8s_audit",
        "tags": a.tags,
        "hostname": "kaudit",
    });
    if held_back > 0 {
        falco["kaudit_suppressed"] = serde_json::json!(held_back);
    }
    falco.to_string()
}

/// An alert as a Slack incoming-webhook message.
pub fn slack_json(a: &StoredAlert, held_back: u64) -> String {
    let extra = if held_back > 0 {
        format!(" (+{held_back} similar held back)")
    } else {
        String::new()
    };
    serde_json::json!({"text": format!("[{}] {}: {}{extra}", a.priority, a.rule, a.output)})
        .to_string()
}
