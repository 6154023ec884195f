//! Live detection: every stored event is evaluated by the loaded Falco/Sigma
//! rules; alerts are kept durably and sent to outputs.
//!
//! The detector follows the store by sequence number (like an indexer), so
//! detection never slows ingest and never misses an event: its cursor is
//! saved only after the alerts of the events before it are durable, and a
//! restart resumes from there. Every alert is kept in
//! `<data>/alerts/alerts.jsonl` with the sequence number of its event, which
//! the Merkle tree covers, so an alert can always be proven against the log.
//! Throttling applies to notifications only: one per rule and key (by default
//! the user) per window, the next one carrying the count of those held back.

use crate::metrics::Metrics;
use kaudit_event::MicroTime;
use kaudit_rules::{Alert, Engine, EngineBuilder, EngineOptions, MatchMode};
use kaudit_store::{LiveFeed, Store};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
    #[serde(deserialize_with = "crate::config::de_duration")]
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
    Webhook {
        /// Where to POST.
        url: String,
        /// `falco` (Falco's JSON, what falcosidekick takes) or `slack` (`{"text": ...}`).
        #[serde(default = "falco_format")]
        format: String,
    },
}

fn falco_format() -> String {
    "falco".into()
}

/// An alert as kept in the alerts file and served by `GET /api/v1/alerts`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StoredAlert {
    /// Sequence number (leaf index) of the event that fired it.
    pub seq: u64,
    /// Cluster of the event.
    pub cluster: String,
    /// auditID of the event.
    pub audit_id: String,
    /// Rule name.
    pub rule: String,
    /// Priority (Falco's names).
    pub priority: String,
    /// Event time, RFC 3339.
    pub time: String,
    /// The rendered output.
    pub output: String,
    /// Output fields (`null` for fields the event lacks).
    pub output_fields: serde_json::Map<String, serde_json::Value>,
    /// Rule tags.
    pub tags: Vec<String>,
}

impl StoredAlert {
    fn new(seq: u64, cluster: &str, a: &Alert) -> StoredAlert {
        StoredAlert {
            seq,
            cluster: cluster.to_string(),
            audit_id: a.audit_id.clone(),
            rule: a.rule.clone(),
            priority: a.priority.as_str().to_string(),
            time: a.time.to_string(),
            output: a.output.clone(),
            output_fields: a
                .output_fields
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_ref().map_or(serde_json::Value::Null, |s| {
                            serde_json::Value::String(s.clone())
                        }),
                    )
                })
                .collect(),
            tags: a.tags.clone(),
        }
    }
}

/// Errors of the detector.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The rules did not load.
    #[error("rules: {0}")]
    Rules(String),
    /// Reading or writing the alerts area failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> DetectError {
    DetectError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Builds the engine from the config (built-in rules when none are named).
pub fn build_engine(cfg: &DetectConfig) -> Result<Engine, DetectError> {
    let mut b = EngineBuilder::new(EngineOptions::default());
    if cfg.rules.is_empty() {
        b.add_default_rules()
            .map_err(|e| DetectError::Rules(e.to_string()))?;
    }
    for p in &cfg.rules {
        b.add_file(p)
            .map_err(|e| DetectError::Rules(e.to_string()))?;
    }
    let (engine, _report) = b.build().map_err(|e| DetectError::Rules(e.to_string()))?;
    Ok(engine)
}

/// The alerts area: `alerts.jsonl` and the detector's cursor.
pub struct AlertLog {
    dir: PathBuf,
}

impl AlertLog {
    /// `<data>/alerts`.
    pub fn new(data: &Path) -> AlertLog {
        AlertLog {
            dir: data.join("alerts"),
        }
    }

    fn alerts_path(&self) -> PathBuf {
        self.dir.join("alerts.jsonl")
    }

    fn cursor_path(&self) -> PathBuf {
        self.dir.join("cursor")
    }

    /// The next sequence number to evaluate.
    pub fn cursor(&self) -> Result<u64, DetectError> {
        let p = self.cursor_path();
        match std::fs::read_to_string(&p) {
            Ok(s) => s
                .trim()
                .parse()
                .map_err(|e| io_err(&p, format!("bad cursor: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    fn save_cursor(&self, next: u64) -> Result<(), DetectError> {
        let p = self.cursor_path();
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        let tmp = self.dir.join("cursor.tmp");
        let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(next.to_string().as_bytes())
            .map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| io_err(&p, e))
    }

    /// Appends alerts durably. Alerts of events past a crash's cursor may be
    /// appended again on restart; readers drop repeats by (seq, rule).
    fn append(&self, alerts: &[StoredAlert]) -> Result<(), DetectError> {
        if alerts.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        let p = self.alerts_path();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| io_err(&p, e))?;
        let mut buf = Vec::new();
        for a in alerts {
            serde_json::to_writer(&mut buf, a).map_err(|e| io_err(&p, e))?;
            buf.push(b'\n');
        }
        f.write_all(&buf).map_err(|e| io_err(&p, e))?;
        f.sync_data().map_err(|e| io_err(&p, e))
    }

    /// Every kept alert, oldest first, each (seq, rule) once.
    pub fn list(&self) -> Result<Vec<StoredAlert>, DetectError> {
        let p = self.alerts_path();
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&p, e)),
        };
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| io_err(&p, e))?;
            if line.trim().is_empty() {
                continue;
            }
            // A torn last line after a crash is skipped, not fatal.
            let Ok(a) = serde_json::from_str::<StoredAlert>(&line) else {
                tracing::warn!(file = %p.display(), line = i + 1, "skipping an unreadable alert line");
                continue;
            };
            if seen.insert((a.seq, a.rule.clone())) {
                out.push(a);
            }
        }
        Ok(out)
    }
}

/// Holds back repeated notifications per (rule, key) within a window.
pub struct Throttle {
    window: Duration,
    key_fields: Vec<String>,
    last: HashMap<(String, String), (i64, u64)>,
}

impl Throttle {
    /// A throttle with the given window and key fields.
    pub fn new(window: Duration, key_fields: Vec<String>) -> Throttle {
        Throttle {
            window,
            key_fields,
            last: HashMap::new(),
        }
    }

    /// `Some(suppressed_before)` when the alert should be sent (with how many
    /// were held back since the last one sent), `None` when it is held back.
    /// Time is the event's, so replays throttle as live traffic would.
    pub fn admit(&mut self, a: &StoredAlert, now: MicroTime) -> Option<u64> {
        if self.window.is_zero() {
            return Some(0);
        }
        let key: Vec<&str> = self
            .key_fields
            .iter()
            .map(|k| {
                a.output_fields
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("<NA>")
            })
            .collect();
        let k = (a.rule.clone(), key.join("\u{1f}"));
        let window = self.window.as_micros() as i64;
        match self.last.get_mut(&k) {
            Some((sent_at, held)) if now.micros() - *sent_at < window => {
                *held += 1;
                None
            }
            Some((sent_at, held)) => {
                let n = *held;
                *sent_at = now.micros();
                *held = 0;
                Some(n)
            }
            None => {
                if self.last.len() > 100_000 {
                    // Bound memory: forget keys whose window has passed.
                    self.last.retain(|_, (t, _)| now.micros() - *t < window);
                }
                self.last.insert(k, (now.micros(), 0));
                Some(0)
            }
        }
    }
}

fn notify(
    outputs: &[OutputConfig],
    a: &StoredAlert,
    held_back: u64,
    client: &reqwest::blocking::Client,
) {
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
    let line = falco.to_string();
    for o in outputs {
        let res: Result<(), String> = match o {
            OutputConfig::Stdout => {
                println!("{line}");
                Ok(())
            }
            OutputConfig::File { path } => OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()))
                .map_err(|e| format!("{}: {e}", path.display())),
            OutputConfig::Webhook { url, format } => {
                let body = if format == "slack" {
                    let extra = if held_back > 0 {
                        format!(" (+{held_back} similar held back)")
                    } else {
                        String::new()
                    };
                    serde_json::json!({"text": format!("[{}] {}: {}{extra}", a.priority, a.rule, a.output)}).to_string()
                } else {
                    line.clone()
                };
                client
                    .post(url)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .map_err(|e| e.to_string())
                    .and_then(|r| {
                        if r.status().is_success() {
                            Ok(())
                        } else {
                            Err(format!("{url}: HTTP {}", r.status()))
                        }
                    })
            }
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, rule = %a.rule, "alert output failed");
        }
    }
}

/// Follows the store (through the live feed while it keeps up) and
/// evaluates every new event until `stop`.
pub fn run_detector(
    store: Arc<Store>,
    feed: Arc<LiveFeed>,
    engine: Engine,
    cfg: DetectConfig,
    data: PathBuf,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) {
    metrics.describe(
        "kaudit_alerts_total",
        "counter",
        "Alerts raised by live detection, by rule and priority.",
    );
    metrics.describe(
        "kaudit_detect_lag_events",
        "gauge",
        "Stored events not yet evaluated by live detection.",
    );
    let log = AlertLog::new(&data);
    let mode = if cfg.all_matches {
        MatchMode::All
    } else {
        MatchMode::First
    };
    let mut throttle = Throttle::new(cfg.throttle, cfg.throttle_key.clone());
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|_| reqwest::blocking::Client::new());
    let mut next = match log.cursor() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "live detection disabled: cannot read its cursor");
            return;
        }
    };
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let end = store.len().min(next + 2000);
        if end <= next {
            if stopping {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let mut found = Vec::new();
        let res = feed.follow(store.as_ref(), next..end, &mut |seq, rec| {
            if let Some(ev) = rec.event {
                for a in engine.evaluate_in(ev, Some(rec.cluster), mode) {
                    found.push(StoredAlert::new(seq, rec.cluster, &a));
                }
            }
            true
        });
        if let Err(e) = res {
            tracing::warn!(error = %e, "live detection cannot read the store; retrying");
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        if let Err(e) = log.append(&found) {
            tracing::error!(error = %e, "cannot keep alerts; retrying");
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        for a in &found {
            metrics.inc(
                "kaudit_alerts_total",
                &[("rule", &a.rule), ("priority", &a.priority)],
                1.0,
            );
            let t = MicroTime::parse(&a.time).unwrap_or_else(|_| MicroTime::now());
            if let Some(held) = throttle.admit(a, t) {
                notify(&cfg.outputs, a, held, &client);
            }
        }
        next = end;
        if let Err(e) = log.save_cursor(next) {
            tracing::error!(error = %e, "cannot save the detection cursor");
        }
        metrics.set(
            "kaudit_detect_lag_events",
            &[],
            store.len().saturating_sub(next) as f64,
        );
    }
}

#[derive(Deserialize)]
struct AlertParams {
    since: Option<String>,
    rule: Option<String>,
    priority: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/alerts?since=&rule=&priority=&limit=`: kept alerts, newest
/// first (role reader).
pub fn routes(data: PathBuf, auth: Arc<crate::auth::Authenticator>) -> axum::Router {
    use axum::extract::Query;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let log = Arc::new(AlertLog::new(&data));
    axum::Router::new().route(
        "/api/v1/alerts",
        axum::routing::get(
            move |peer: crate::http::Peer, headers: HeaderMap, Query(p): Query<AlertParams>| {
                let (log, auth) = (log.clone(), auth.clone());
                async move {
                    let role = crate::auth::Role::Reader;
                    if let Err(r) = crate::http::authorize_peer(&auth, &headers, &peer, role) {
                        return r;
                    }
                    let since = match p
                        .since
                        .as_deref()
                        .map(|s| kaudit_query::parse_time_bound(s, MicroTime::now()))
                    {
                        None => None,
                        Some(Ok(t)) => Some(t),
                        Some(Err(e)) => {
                            return crate::http::error(
                                StatusCode::BAD_REQUEST,
                                format!("since: {e}"),
                            )
                        }
                    };
                    let limit = p.limit.unwrap_or(100).min(10_000);
                    let all = match tokio::task::spawn_blocking(move || log.list()).await {
                        Ok(Ok(a)) => a,
                        Ok(Err(e)) => {
                            return crate::http::error(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                e.to_string(),
                            )
                        }
                        Err(e) => {
                            return crate::http::error(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                e.to_string(),
                            )
                        }
                    };
                    let items: Vec<StoredAlert> = all
                        .into_iter()
                        .rev()
                        .filter(|a| p.rule.as_ref().is_none_or(|r| &a.rule == r))
                        .filter(|a| {
                            p.priority
                                .as_ref()
                                .is_none_or(|r| a.priority.eq_ignore_ascii_case(r))
                        })
                        .filter(|a| {
                            since.is_none_or(|s| {
                                MicroTime::parse(&a.time).map(|t| t >= s).unwrap_or(true)
                            })
                        })
                        .take(limit)
                        .collect();
                    axum::Json(serde_json::json!({ "alerts": items })).into_response()
                }
            },
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(rule: &str, user: &str, seq: u64) -> StoredAlert {
        let mut f = serde_json::Map::new();
        f.insert(
            "ka.user.name".into(),
            serde_json::Value::String(user.into()),
        );
        StoredAlert {
            seq,
            cluster: "c".into(),
            audit_id: format!("id{seq}"),
            rule: rule.into(),
            priority: "Warning".into(),
            time: "2026-01-01T00:00:00.000000Z".into(),
            output: "x".into(),
            output_fields: f,
            tags: vec![],
        }
    }

    #[test]
    fn throttle_holds_back_per_rule_and_user_and_counts() {
        let mut t = Throttle::new(Duration::from_secs(600), vec!["ka.user.name".into()]);
        let t0 = MicroTime(1_000_000_000_000);
        let min = |m: i64| MicroTime(t0.micros() + m * 60_000_000);
        assert_eq!(t.admit(&alert("R", "alice", 1), t0), Some(0));
        assert_eq!(t.admit(&alert("R", "alice", 2), min(1)), None);
        assert_eq!(t.admit(&alert("R", "alice", 3), min(2)), None);
        assert_eq!(
            t.admit(&alert("R", "bob", 4), min(2)),
            Some(0),
            "another user"
        );
        assert_eq!(
            t.admit(&alert("S", "alice", 5), min(2)),
            Some(0),
            "another rule"
        );
        assert_eq!(
            t.admit(&alert("R", "alice", 6), min(11)),
            Some(2),
            "window over: the count of held-back alerts"
        );
        let mut off = Throttle::new(Duration::ZERO, vec![]);
        assert_eq!(off.admit(&alert("R", "a", 1), t0), Some(0));
        assert_eq!(off.admit(&alert("R", "a", 2), t0), Some(0));
    }

    #[test]
    fn alert_log_keeps_alerts_and_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let log = AlertLog::new(dir.path());
        assert_eq!(log.cursor().unwrap(), 0);
        // The cursor can move before any alert exists (quiet traffic).
        log.save_cursor(1).unwrap();
        assert_eq!(log.cursor().unwrap(), 1);
        log.append(&[alert("R", "a", 1), alert("R", "a", 2)])
            .unwrap();
        // A replay after a crash appends the same alert again: listed once.
        log.append(&[alert("R", "a", 2)]).unwrap();
        log.save_cursor(3).unwrap();
        assert_eq!(log.cursor().unwrap(), 3);
        let all = log.list().unwrap();
        assert_eq!(all.iter().map(|a| a.seq).collect::<Vec<_>>(), [1, 2]);
    }
}
