//! The Docker events source: follows the Engine API's `/events` stream
//! (every type: container, image, volume, network, daemon, plugin, and
//! node/service/secret/config on a swarm manager) and ingests each message
//! as an audit event ([`super::map::daemon_event`]).
//!
//! Position: the `timeNano` of the last ingested message plus the audit ids
//! ingested at that very nanosecond, saved (fsync + rename) only after the
//! ingest returned. A (re)connect asks `/events?since=<that time>`; the
//! daemon's `since` is inclusive, so the messages of the last nanosecond come
//! again and are skipped by id: no gap and no duplicate across kaudit and
//! dockerd restarts, as far as the daemon's own buffer reaches (dockerd keeps
//! its last 256 events in memory; a longer outage of kaudit than that loses
//! what the daemon itself forgot).

use super::map;
use crate::pipeline::{BadItem, Ingestor};
use crate::source::{Source, SourceContext};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest `/events` message accepted; a longer line is quarantined.
pub const MAX_MESSAGE: usize = 1 << 20;
/// Most audit ids remembered for the last nanosecond.
const MAX_SEEN: usize = 4096;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// `sources: [{docker: {host: unix:///var/run/docker.sock, name: build-01}}]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerEventsConfig {
    /// The daemon: `unix:///var/run/docker.sock` or `tcp://host:2375`.
    pub host: String,
    /// The Docker host's name: the `cluster` of its records.
    pub name: String,
}

/// Where the daemon listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DockerHost {
    /// A unix socket path.
    Unix(PathBuf),
    /// `host:port` over plain TCP.
    Tcp(String),
}

impl DockerHost {
    /// Parses `unix:///path` or `tcp://host:port`.
    pub fn parse(s: &str) -> Result<DockerHost, String> {
        if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() {
                return Err(format!("{s:?}: no socket path"));
            }
            return Ok(DockerHost::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("tcp://") {
            if a.is_empty() || !a.contains(':') {
                return Err(format!("{s:?}: want tcp://host:port"));
            }
            return Ok(DockerHost::Tcp(a.trim_end_matches('/').to_string()));
        }
        Err(format!(
            "{s:?}: want unix:///path/docker.sock or tcp://host:port (TLS is not supported yet)"
        ))
    }

    /// Opens a connection with a read timeout (so a stop is noticed).
    pub fn connect(&self, timeout: Duration) -> std::io::Result<Box<dyn Stream>> {
        Ok(match self {
            DockerHost::Unix(p) => {
                let s = std::os::unix::net::UnixStream::connect(p)?;
                s.set_read_timeout(Some(timeout))?;
                Box::new(s)
            }
            DockerHost::Tcp(a) => {
                let s = std::net::TcpStream::connect(a)?;
                s.set_read_timeout(Some(timeout))?;
                Box::new(s)
            }
        })
    }
}

/// A connection to the daemon.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

impl DockerEventsConfig {
    /// Problems serde cannot see, each prefixed with `at`.
    pub fn check(&self, at: &str) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = super::map::check_host_name(&self.name) {
            p.push(format!("{at}.name: {e}"));
        }
        if let Err(e) = DockerHost::parse(&self.host) {
            p.push(format!("{at}.host: {e}"));
        }
        p
    }
}

/// The durable position of an events source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsPosition {
    /// `timeNano` of the last ingested message (0: none yet).
    pub time_nano: i64,
    /// Audit ids already ingested at `time_nano`.
    pub seen: Vec<String>,
}

impl EventsPosition {
    /// Reads a saved position; a missing file is the start.
    pub fn load(path: &Path) -> std::io::Result<EventsPosition> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(EventsPosition::default()),
            Err(e) => Err(e),
        }
    }

    /// Saves durably: a temporary file, fsync, rename, fsync of the directory.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let body = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// The `since` argument resuming from here (`seconds.nanoseconds`).
    pub fn since(&self) -> Option<String> {
        (self.time_nano > 0).then(|| {
            format!(
                "{}.{:09}",
                self.time_nano.div_euclid(1_000_000_000),
                self.time_nano.rem_euclid(1_000_000_000)
            )
        })
    }

    /// Whether a message at `nano` with `id` is already ingested; if not,
    /// moves the position over it.
    pub fn admit(&mut self, nano: i64, id: &str) -> bool {
        if nano < self.time_nano {
            return false;
        }
        if nano == self.time_nano {
            if self.seen.iter().any(|s| s == id) {
                return false;
            }
            if self.seen.len() < MAX_SEEN {
                self.seen.push(id.to_string());
            }
            return true;
        }
        self.time_nano = nano;
        self.seen.clear();
        self.seen.push(id.to_string());
        true
    }
}

/// An incremental decoder of a chunked body, tolerant of reads that end
/// anywhere (read timeouts).
#[derive(Default)]
pub struct Dechunker {
    raw: Vec<u8>,
    /// Whether the terminating chunk was seen.
    pub done: bool,
}

impl Dechunker {
    /// Adds raw bytes; returns the data of every complete chunk so far.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        if self.done {
            // Trailers after the last chunk carry no data.
            return Ok(Vec::new());
        }
        self.raw.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let Some(nl) = memchr::memmem::find(&self.raw[at..], b"\r\n") else {
                if self.raw.len() - at > 4096 {
                    return Err("chunk size line longer than 4096 bytes".into());
                }
                break;
            };
            let line =
                std::str::from_utf8(&self.raw[at..at + nl]).map_err(|_| "chunk size not UTF-8")?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            if size > MAX_MESSAGE * 4 {
                return Err(format!("chunk of {size} bytes is too large"));
            }
            if size == 0 {
                self.done = true;
                at = self.raw.len();
                break;
            }
            let start = at + nl + 2;
            if self.raw.len() < start + size + 2 {
                break;
            }
            out.extend_from_slice(&self.raw[start..start + size]);
            at = start + size + 2;
        }
        self.raw.drain(..at);
        Ok(out)
    }
}

/// The events source.
pub struct DockerEventsSource {
    failures: std::sync::Mutex<FailureWindow>,
    name: String,
    host: String,
    state: PathBuf,
    cfg: DockerEventsConfig,
}

impl DockerEventsSource {
    /// The source for entry `index` of `sources:`; its position is kept in
    /// `<state_dir>/<index>-docker-<name>.json`.
    pub fn new(cfg: &DockerEventsConfig, index: usize, ctx: &SourceContext) -> DockerEventsSource {
        let safe: String = cfg
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        DockerEventsSource {
            failures: std::sync::Mutex::new(FailureWindow::default()),
            name: format!("docker:{}", cfg.name),
            host: cfg.host.clone(),
            state: ctx.state_dir.join(format!("{index}-docker-{safe}.json")),
            cfg: cfg.clone(),
        }
    }

    /// Follows one connection until it ends, `stop`, or an ingest failure.
    fn follow(
        &self,
        host: &DockerHost,
        pos: &mut EventsPosition,
        ingest: &Ingestor,
        stop: &AtomicBool,
    ) -> Result<(), String> {
        let mut s = host
            .connect(Duration::from_millis(300))
            .map_err(|e| format!("connect {}: {e}", self.host))?;
        let target = match pos.since() {
            Some(since) => format!("/events?since={since}"),
            None => "/events".to_string(),
        };
        let req = format!("GET {target} HTTP/1.1\r\nHost: docker\r\nUser-Agent: kaudit\r\n\r\n");
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut dechunk = Dechunker::default();
        let mut lines: Vec<u8> = Vec::new();
        let mut chunked = true;
        let mut got_head = false;
        while !stop.load(Ordering::Relaxed) {
            let n = match s.read(&mut buf) {
                Ok(0) => return Err("the daemon closed the events stream".into()),
                Ok(n) => n,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::Interrupted =>
                {
                    continue
                }
                Err(e) => return Err(e.to_string()),
            };
            let mut data = &buf[..n];
            if !got_head {
                head.extend_from_slice(data);
                let Some(end) = memchr::memmem::find(&head, b"\r\n\r\n") else {
                    if head.len() > 64 << 10 {
                        return Err("response head too large".into());
                    }
                    continue;
                };
                let text = String::from_utf8_lossy(&head[..end]).to_string();
                let status = text.split(' ').nth(1).unwrap_or("");
                if status != "200" {
                    return Err(format!(
                        "GET {target}: {}",
                        text.lines().next().unwrap_or("")
                    ));
                }
                chunked = text
                    .to_ascii_lowercase()
                    .contains("transfer-encoding: chunked");
                got_head = true;
                let rest = head.split_off(end + 4);
                lines.clear();
                let decoded = if chunked { dechunk.feed(&rest)? } else { rest };
                lines.extend_from_slice(&decoded);
                data = &[];
            }
            if !data.is_empty() {
                let decoded = if chunked {
                    dechunk.feed(data)?
                } else {
                    data.to_vec()
                };
                lines.extend_from_slice(&decoded);
            }
            self.ingest_lines(&mut lines, pos, ingest)?;
            if dechunk.done {
                return Err("the events stream ended".into());
            }
        }
        Ok(())
    }

    /// Ingests every complete line of `lines`, then saves the position.
    fn ingest_lines(
        &self,
        lines: &mut Vec<u8>,
        pos: &mut EventsPosition,
        ingest: &Ingestor,
    ) -> Result<(), String> {
        let mut events = Vec::new();
        let mut bad = Vec::new();
        let mut next = pos.clone();
        let mut consumed = 0;
        while let Some(nl) = memchr::memchr(b'\n', &lines[consumed..]) {
            let line = &lines[consumed..consumed + nl];
            consumed += nl + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match map::daemon_event(line, &self.cfg.name) {
                Ok(ev) => {
                    let nano = serde_json::from_slice::<serde_json::Value>(line)
                        .ok()
                        .and_then(|v| map::event_time_nano(&v))
                        .unwrap_or(0);
                    if next.admit(nano, ev.audit_id()) {
                        events.push(self.count_failures(ev, nano));
                    }
                }
                Err(e) => bad.push(BadItem {
                    index: bad.len(),
                    path: Some(format!("{}/events", self.host)),
                    reason: e.to_string(),
                    raw: line.to_vec(),
                }),
            }
        }
        if consumed == 0 && lines.len() > MAX_MESSAGE {
            bad.push(BadItem {
                index: 0,
                path: Some(format!("{}/events", self.host)),
                reason: format!("message longer than {MAX_MESSAGE} bytes"),
                raw: lines[..MAX_MESSAGE.min(lines.len())].to_vec(),
            });
            lines.clear();
        }
        lines.drain(..consumed);
        if events.is_empty() && bad.is_empty() {
            return Ok(());
        }
        ingest
            .ingest_events(events, bad, &self.cfg.name, &self.name)
            .map_err(|e| format!("ingest: {e}"))?;
        *pos = next;
        pos.save(&self.state)
            .map_err(|e| format!("{}: {e}", self.state.display()))
    }
}

/// How long non-zero exits of a container are remembered.
pub const FAILURE_WINDOW_NANOS: i64 = 600 * 1_000_000_000;
/// Containers whose exits are tracked at once.
const MAX_TRACKED: usize = 4096;

/// Recent non-zero exits per container (for restart-loop rules).
#[derive(Default)]
pub struct FailureWindow {
    by_container: std::collections::HashMap<String, std::collections::VecDeque<i64>>,
}

impl FailureWindow {
    /// Records a non-zero exit of `id` at `nano`; returns how many it had
    /// within [`FAILURE_WINDOW_NANOS`], this one included.
    pub fn failed(&mut self, id: &str, nano: i64) -> usize {
        if self.by_container.len() >= MAX_TRACKED && !self.by_container.contains_key(id) {
            self.by_container
                .retain(|_, q| q.back().is_some_and(|t| nano - t < FAILURE_WINDOW_NANOS));
            if self.by_container.len() >= MAX_TRACKED {
                self.by_container.clear();
            }
        }
        let q = self.by_container.entry(id.to_string()).or_default();
        q.push_back(nano);
        while q.front().is_some_and(|t| nano - t >= FAILURE_WINDOW_NANOS) || q.len() > 1000 {
            q.pop_front();
        }
        q.len()
    }
}

impl DockerEventsSource {
    /// Adds [`map::RECENT_FAILURES_ANNOTATION`] to a container's non-zero `die`.
    fn count_failures(&self, ev: kaudit_event::Event, nano: i64) -> kaudit_event::Event {
        let failed = ev.verb() == "die"
            && ev.object_ref().is_some_and(|o| o.resource == "containers")
            && ev
                .annotation("docker.com/exit-code")
                .is_some_and(|c| c != "0");
        if !failed {
            return ev;
        }
        let id = ev
            .object_ref()
            .map(|o| {
                if o.uid.is_empty() {
                    o.name.clone()
                } else {
                    o.uid.clone()
                }
            })
            .unwrap_or_default();
        let n = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failed(&id, nano);
        let mut doc = ev.into_doc();
        doc.annotations
            .insert(map::RECENT_FAILURES_ANNOTATION.into(), n.to_string());
        kaudit_event::Event::from_doc(doc)
    }
}

impl Source for DockerEventsSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(self: Box<Self>, ingest: Arc<Ingestor>, stop: Arc<AtomicBool>) {
        let host = match DockerHost::parse(&self.host) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(source = %self.name, error = %e, "docker events source cannot start");
                return;
            }
        };
        let mut backoff = FIRST_BACKOFF;
        while !stop.load(Ordering::Relaxed) {
            // Reload each time: an ingest failure must resume from what is durable.
            let mut pos = match EventsPosition::load(&self.state) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(source = %self.name, error = %e, "cannot read the events position; not following");
                    std::thread::sleep(MAX_BACKOFF);
                    continue;
                }
            };
            let started = std::time::Instant::now();
            match self.follow(&host, &mut pos, &ingest, &stop) {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(source = %self.name, error = %e, "docker events: reconnecting");
                }
            }
            if started.elapsed() > Duration::from_secs(10) {
                backoff = FIRST_BACKOFF;
            }
            let until = std::time::Instant::now() + backoff;
            while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunker_handles_any_split() {
        let raw = b"5\r\nhello\r\n3;x\r\n ab\r\n0\r\n\r\n";
        for split in 0..raw.len() {
            let mut d = Dechunker::default();
            let mut out = d.feed(&raw[..split]).unwrap();
            out.extend(d.feed(&raw[split..]).unwrap());
            assert_eq!(out, b"hello ab", "split at {split}");
            assert!(d.done);
        }
        assert!(Dechunker::default().feed(b"zz\r\n").is_err());
    }

    #[test]
    fn position_admits_each_message_once() {
        let mut p = EventsPosition::default();
        assert!(p.admit(10, "a"));
        assert!(p.admit(10, "b"));
        assert!(!p.admit(10, "a"));
        assert!(!p.admit(9, "z"));
        assert!(p.admit(11, "c"));
        assert_eq!(p.seen, vec!["c"]);
        assert_eq!(
            EventsPosition {
                time_nano: 1_700_000_000_000_000_005,
                seen: vec![]
            }
            .since()
            .as_deref(),
            Some("1700000000.000000005")
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        assert_eq!(EventsPosition::load(&f).unwrap(), EventsPosition::default());
        p.save(&f).unwrap();
        assert_eq!(EventsPosition::load(&f).unwrap(), p);
        std::fs::write(&f, b"garbage").unwrap();
        assert!(EventsPosition::load(&f).is_err());
    }

    #[test]
    fn failure_window_counts_recent_exits() {
        let mut w = FailureWindow::default();
        assert_eq!(w.failed("a", 0), 1);
        assert_eq!(w.failed("a", 1_000), 2);
        assert_eq!(w.failed("b", 1_000), 1);
        assert_eq!(w.failed("a", FAILURE_WINDOW_NANOS + 500), 2);
    }

    #[test]
    fn hosts_parse() {
        assert_eq!(
            DockerHost::parse("unix:///var/run/docker.sock").unwrap(),
            DockerHost::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            DockerHost::parse("tcp://10.0.0.1:2375").unwrap(),
            DockerHost::Tcp("10.0.0.1:2375".into())
        );
        for bad in [
            "unix://",
            "tcp://",
            "tcp://nohost",
            "https://x",
            "/var/run/docker.sock",
        ] {
            assert!(DockerHost::parse(bad).is_err(), "{bad}");
        }
    }
}
