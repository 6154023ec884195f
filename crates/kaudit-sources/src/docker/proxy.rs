//! The auditing Docker socket proxy: clients talk to kaudit's unix socket,
//! every request is forwarded to the daemon's socket byte for byte
//! (including hijacked and upgraded streams: attach, exec start, `logs -f`,
//! `events`, build context uploads) and recorded with who called
//! (`SO_PEERCRED` uid/gid/pid, the user name, the process's executable and
//! command line), at the stages kube-apiserver uses: RequestReceived,
//! ResponseStarted (long-running calls and hijacked streams) and
//! ResponseComplete.
//!
//! One thread per client connection; each read is written on at once, so
//! streams are never held back. Records go to a [`Recorder`]: the in-process
//! source hands them to the ingest pipeline (where the server's policy
//! transform sets the final level), the standalone `kaudit docker-proxy`
//! spools them on disk until `kaudit serve` acknowledged them
//! ([`super::spool`]).

use super::http::{self, Capture, Framing, Head};
use super::map::{self, CallRecord, Peer};
use super::peer;
use kaudit_event::{Event, Level, MicroTime, Stage, UserInfo};
use serde::Deserialize;
use serde_json::Value;
use std::io::{BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Default of [`DockerProxyConfig::max_body`]: bodies kept in a record.
pub const DEFAULT_MAX_BODY: usize = 64 << 10;
/// Most client connections served at once (more wait in the backlog).
pub const MAX_CONNECTIONS: usize = 1024;

/// `sources: [{docker_proxy: {listen, upstream, name}}]`: the auditing proxy
/// run inside `kaudit serve`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerProxyConfig {
    /// The socket kaudit listens on (`/run/kaudit/docker.sock`); clients
    /// point `DOCKER_HOST=unix://...` at it.
    pub listen: PathBuf,
    /// The daemon's socket (`/var/run/docker.sock`).
    pub upstream: PathBuf,
    /// The Docker host's name: the `cluster` of its records (`build-01`).
    pub name: String,
    /// Level records are made at before the server's policy decides:
    /// `Metadata`, `Request` or `RequestResponse` (default).
    #[serde(default)]
    pub level: Option<String>,
    /// Largest request or response body kept in a record, in bytes (default 64 KiB).
    #[serde(default)]
    pub max_body: Option<usize>,
    /// Permission bits of the listening socket, octal text (default `"0660"`).
    #[serde(default)]
    pub socket_mode: Option<String>,
}

impl DockerProxyConfig {
    /// Problems serde cannot see, each prefixed with `at`.
    pub fn check(&self, at: &str) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = super::map::check_host_name(&self.name) {
            p.push(format!("{at}.name: {e}"));
        }
        if self.listen == self.upstream {
            p.push(format!("{at}.listen and {at}.upstream are the same socket"));
        }
        if self.listen.as_os_str().is_empty() {
            p.push(format!("{at}.listen is empty"));
        }
        if let Err(e) = self.level() {
            p.push(format!("{at}.level: {e}"));
        }
        if let Err(e) = self.mode() {
            p.push(format!("{at}.socket_mode: {e}"));
        }
        p
    }

    /// The level records are made at.
    pub fn level(&self) -> Result<Level, String> {
        match self.level.as_deref() {
            None => Ok(Level::RequestResponse),
            Some(s) => match s.parse::<Level>() {
                Ok(Level::None) | Err(_) => {
                    Err(format!("{s:?} is not Metadata, Request or RequestResponse"))
                }
                Ok(l) => Ok(l),
            },
        }
    }

    /// The socket's permission bits.
    pub fn mode(&self) -> Result<u32, String> {
        match self.socket_mode.as_deref() {
            None => Ok(0o660),
            Some(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| format!("{s:?} is not an octal mode like \"0660\"")),
        }
    }
}

/// Where the proxy's records go. `record` may block (backpressure) but
/// must not lose what it was given. Records arrive as [`CallRecord`]s and
/// are encoded as events by the receiving side ([`Recorded::event`]), off
/// the request's path.
pub trait Recorder: Send + Sync + 'static {
    /// Takes one record, to be made at `level`.
    fn record(&self, rec: CallRecord, level: Level);
}

/// A record on its way to delivery: the call at one stage and its level.
pub struct Recorded(pub CallRecord, pub Level);

impl Recorded {
    /// The audit event.
    pub fn event(&self) -> Event {
        self.0.to_event(self.1)
    }
}

/// A recorder over a channel (the receiving side batches and delivers).
pub struct ChannelRecorder(pub std::sync::mpsc::SyncSender<Recorded>);

impl Recorder for ChannelRecorder {
    fn record(&self, rec: CallRecord, level: Level) {
        if self.0.send(Recorded(rec, level)).is_err() {
            tracing::error!("docker proxy: record delivery has stopped; record lost");
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Binding or preparing the listening socket failed.
    #[error("{path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
}

struct Shared {
    upstream: PathBuf,
    host: String,
    level: Level,
    max_body: usize,
    recorder: Arc<dyn Recorder>,
    active: AtomicUsize,
    containers: std::sync::Mutex<Names>,
}

/// Container ids and names learnt from create and inspect answers.
#[derive(Default)]
struct Names {
    by_id: std::collections::HashMap<String, String>,
}

/// Most containers whose id and name are remembered.
const MAX_NAMES: usize = 16_384;

impl Names {
    fn learn(&mut self, id: &str, name: &str) {
        if id.is_empty() || name.is_empty() {
            return;
        }
        if self.by_id.len() >= MAX_NAMES && !self.by_id.contains_key(id) {
            self.by_id.clear();
        }
        self.by_id.insert(id.to_string(), name.to_string());
    }

    /// (name, id) of what a path names: a full or abbreviated id, or a name.
    fn resolve(&self, what: &str) -> Option<(String, String)> {
        if what.len() >= 12 && what.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Some((id, name)) = self.by_id.iter().find(|(id, _)| id.starts_with(what)) {
                return Some((name.clone(), id.clone()));
            }
        }
        self.by_id
            .iter()
            .find(|(_, n)| n.as_str() == what)
            .map(|(id, n)| (n.clone(), id.clone()))
    }
}

/// A bound proxy, ready to serve.
pub struct Proxy {
    listener: UnixListener,
    listen: PathBuf,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Binds `cfg.listen` (a stale socket file there is replaced; any other
    /// file is an error) with `cfg.socket_mode`.
    pub fn bind(cfg: &DockerProxyConfig, recorder: Arc<dyn Recorder>) -> Result<Proxy, ProxyError> {
        let problems = cfg.check("docker_proxy");
        if !problems.is_empty() {
            return Err(ProxyError::Config(problems.join("; ")));
        }
        let io = |source| ProxyError::Io {
            path: cfg.listen.clone(),
            source,
        };
        let listener = bind_socket(&cfg.listen)?;
        let mode = cfg.mode().map_err(ProxyError::Config)?;
        std::fs::set_permissions(&cfg.listen, std::fs::Permissions::from_mode(mode)).map_err(io)?;
        Ok(Proxy {
            listener,
            listen: cfg.listen.clone(),
            shared: Arc::new(Shared {
                upstream: cfg.upstream.clone(),
                host: cfg.name.clone(),
                level: cfg.level().map_err(ProxyError::Config)?,
                max_body: cfg.max_body.unwrap_or(DEFAULT_MAX_BODY),
                recorder,
                active: AtomicUsize::new(0),
                containers: std::sync::Mutex::new(Names::default()),
            }),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.listen
    }

    /// Serves until `stop` turns true (checked whenever a connection
    /// arrives; [`wake`] makes one). Each connection gets its own thread.
    pub fn serve(self, stop: Arc<AtomicBool>) {
        for conn in self.listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let client = match conn {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "docker proxy: accept failed");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    continue;
                }
            };
            while self.shared.active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let shared = self.shared.clone();
            shared.active.fetch_add(1, Ordering::Relaxed);
            let spawned = std::thread::Builder::new()
                .name("docker-proxy-conn".into())
                .spawn(move || {
                    if let Err(e) = serve_conn(client, &shared) {
                        tracing::debug!(error = %e, "docker proxy: connection ended");
                    }
                    shared.active.fetch_sub(1, Ordering::Relaxed);
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "docker proxy: cannot start a thread");
                self.shared.active.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let _ = std::fs::remove_file(&self.listen);
    }
}

/// Binds a unix socket at `path`, creating its directory. A stale socket
/// there is replaced; anything else (a file, a directory, a symlink) is an
/// error, never removed: the path may be a user's data.
pub fn bind_socket(path: &Path) -> Result<UnixListener, ProxyError> {
    let io = |source| ProxyError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Ok(md) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !md.file_type().is_socket() {
            return Err(ProxyError::Config(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
    }
    UnixListener::bind(path).map_err(io)
}

/// Makes a blocked [`Proxy::serve`] look at its stop flag.
pub fn wake(listen: &Path) {
    let _ = UnixStream::connect(listen);
}

fn is_json(ct: Option<&str>) -> bool {
    ct.is_some_and(|c| c.to_ascii_lowercase().contains("json"))
}

fn parse_body(cap: &Capture) -> Option<Value> {
    if cap.overflow || cap.bytes.is_empty() {
        return None;
    }
    let mut v = serde_json::from_slice::<Value>(&cap.bytes).ok()?;
    map::redact_body(&mut v);
    Some(v)
}

/// A JSON-lines progress stream's first `error` (pull, push, build: the
/// daemon answers 200 and reports failure inside the stream).
fn stream_error(cap: &Capture) -> Option<String> {
    if cap.overflow {
        return None;
    }
    let mut it = serde_json::Deserializer::from_slice(&cap.bytes).into_iter::<Value>();
    for v in it.by_ref().take(100_000) {
        let Ok(v) = v else { return None };
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            return Some(e.to_string());
        }
    }
    None
}

fn serve_conn(client: UnixStream, shared: &Shared) -> std::io::Result<()> {
    let p = match peer::peer_cred(&client) {
        Ok((uid, gid, pid)) => peer::describe(uid, gid, pid),
        Err(e) => {
            tracing::warn!(error = %e, "docker proxy: no peer credentials; refusing");
            return Err(e);
        }
    };
    let upstream = match UnixStream::connect(&shared.upstream) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, upstream = %shared.upstream.display(), "docker proxy: daemon unreachable");
            // Read the request first: closing on unread bytes resets the
            // connection before the client sees the answer.
            let _ = client.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            if let Ok(r) = client.try_clone() {
                let _ = http::read_head(&mut BufReader::new(r));
            }
            let mut c = client;
            let msg =
                format!("{{\"message\":\"kaudit proxy: the Docker daemon is unreachable: {e}\"}}");
            let _ = c.write_all(
                format!(
                    "HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{msg}",
                    msg.len()
                )
                .as_bytes(),
            );
            return Err(e);
        }
    };
    let mut cr = BufReader::with_capacity(64 << 10, client.try_clone()?);
    let mut ur = BufReader::with_capacity(64 << 10, upstream.try_clone()?);
    let mut cw = client;
    let mut uw = upstream;
    loop {
        let req = match http::read_head(&mut cr) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(()),
            Err(e) => {
                let _ = cw.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 28\r\n\r\nkaudit proxy: bad request.\r\n",
                );
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    e.to_string(),
                ));
            }
        };
        if !call(&req, &p, shared, &mut cr, &mut cw, &mut ur, &mut uw)? {
            return Ok(());
        }
    }
}

/// One request/response exchange. Returns whether the connection goes on.
fn call(
    req: &Head,
    p: &Peer,
    shared: &Shared,
    cr: &mut BufReader<UnixStream>,
    cw: &mut UnixStream,
    ur: &mut BufReader<UnixStream>,
    uw: &mut UnixStream,
) -> std::io::Result<bool> {
    let received = MicroTime::now();
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let class = map::classify(&req.method, path, query);
    let mut rec = CallRecord {
        audit_id: map::new_audit_id(),
        host: shared.host.clone(),
        mode: "proxy".into(),
        user: UserInfo {
            username: p.user.clone(),
            uid: p.uid.to_string(),
            groups: p.groups.clone(),
            ..UserInfo::default()
        },
        peer: Some(p.clone()),
        method: req.method.clone(),
        uri: req.target.clone(),
        user_agent: req.header("User-Agent").unwrap_or("").to_string(),
        source_ips: vec!["127.0.0.1".into()],
        received: Some(received),
        stage: Some(Stage::RequestReceived),
        ..CallRecord::default()
    };
    if class.resource == "containers" && !class.name.is_empty() {
        rec.object = shared
            .containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .resolve(&class.name);
    }
    // The request: head as read, then its body as it comes.
    uw.write_all(&req.raw)?;
    let keep_req = if is_json(req.header("Content-Type")) && shared.level >= Level::Request {
        shared.max_body
    } else {
        0
    };
    let mut req_cap = Capture::new(keep_req);
    let mut up_bytes = req.raw.len() as u64;
    let req_framing = req
        .framing()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    match req_framing {
        Framing::Length(n) => up_bytes += http::copy_length(cr, uw, n, &mut req_cap)?,
        Framing::Chunked => up_bytes += http::copy_chunked(cr, uw, &mut req_cap)?,
        Framing::None => {}
    }
    uw.flush()?;
    rec.request_body = parse_body(&req_cap);
    shared.recorder.record(rec.clone(), shared.level);

    // The response head.
    let resp = match http::read_head(ur) {
        Ok(Some(h)) => h,
        Ok(None) | Err(_) => {
            rec.stage = Some(Stage::ResponseComplete);
            rec.at = Some(MicroTime::now());
            rec.status = Some(502);
            rec.error = "the daemon closed the connection without answering".into();
            shared.recorder.record(rec, shared.level);
            let _ = cw.write_all(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return Ok(false);
        }
    };
    cw.write_all(&resp.raw)?;
    cw.flush()?;
    rec.status = Some(resp.status);
    let mut down_bytes = resp.raw.len() as u64;
    let ct = resp.header("Content-Type").map(str::to_ascii_lowercase);
    let framing = resp.framing().unwrap_or(Framing::None);
    let raw_stream = ct.as_deref().is_some_and(|c| {
        c.contains("vnd.docker.raw-stream") || c.contains("vnd.docker.multiplexed-stream")
    });
    let hijacked = resp.status == 101 || (raw_stream && framing == Framing::None);
    if hijacked || class.long_running {
        rec.stage = Some(Stage::ResponseStarted);
        rec.at = Some(MicroTime::now());
        shared.recorder.record(rec.clone(), shared.level);
    }
    let keep_resp = if is_json(ct.as_deref()) {
        shared.max_body
    } else {
        0
    };
    let mut resp_cap = Capture::new(keep_resp);
    let no_body = req.method.eq_ignore_ascii_case("HEAD")
        || resp.status == 204
        || resp.status == 304
        || (100..200).contains(&resp.status) && resp.status != 101;
    let mut go_on = !req.has_token("Connection", "close") && !resp.has_token("Connection", "close");
    let result = if hijacked {
        go_on = false;
        splice(cr, cw, ur, uw).map(|(u, d)| {
            up_bytes += u;
            down_bytes += d;
        })
    } else if no_body {
        Ok(())
    } else {
        match framing {
            Framing::Length(n) => {
                http::copy_length(ur, cw, n, &mut resp_cap).map(|n| down_bytes += n)
            }
            Framing::Chunked => http::copy_chunked(ur, cw, &mut resp_cap).map(|n| down_bytes += n),
            Framing::None => {
                go_on = false;
                http::copy_to_end(ur, cw, &mut resp_cap).map(|n| down_bytes += n)
            }
        }
    };
    rec.stage = Some(Stage::ResponseComplete);
    rec.at = Some(MicroTime::now());
    rec.bytes = Some((up_bytes, down_bytes));
    let body = parse_body(&resp_cap);
    if resp.status >= 400 {
        if let Some(m) = body
            .as_ref()
            .and_then(|b| b.get("message"))
            .and_then(Value::as_str)
        {
            rec.error = m.to_string();
        }
    } else if let Some(e) = stream_error(&resp_cap) {
        rec.error = e;
        rec.extra.insert("streamError".into(), Value::Bool(true));
    }
    if let Err(e) = &result {
        rec.extra
            .insert("transportError".into(), Value::from(e.to_string()));
        go_on = false;
    }
    if class.resource == "containers" && (200..300).contains(&resp.status) {
        // Learn id <-> name from create (`{"Id"}` + ?name=) and inspect (`{"Id","Name"}`).
        let id = body
            .as_ref()
            .and_then(|b| b.get("Id"))
            .and_then(Value::as_str);
        let name = match (class.verb.as_str(), class.subresource.as_str()) {
            ("create", "") => Some(class.name.clone()),
            ("get", "json") => body
                .as_ref()
                .and_then(|b| b.get("Name"))
                .and_then(Value::as_str)
                .map(|n| n.trim_start_matches('/').to_string()),
            _ => None,
        };
        if let (Some(id), Some(name)) = (id, name) {
            let mut names = shared.containers.lock().unwrap_or_else(|p| p.into_inner());
            names.learn(id, &name);
            rec.object = names.resolve(id);
        }
    }
    rec.response_body = body;
    shared.recorder.record(rec, shared.level);
    result.map(|_| go_on)
}

/// Copies both ways until both sides are done: what the client sends (after
/// what is already buffered) to the daemon on its own thread, the daemon's
/// output to the client here. Half-closes are passed on.
fn splice(
    cr: &mut BufReader<UnixStream>,
    cw: &mut UnixStream,
    ur: &mut BufReader<UnixStream>,
    uw: &mut UnixStream,
) -> std::io::Result<(u64, u64)> {
    use std::io::BufRead;
    let pending = cr.buffer().to_vec();
    let n = pending.len();
    cr.consume(n);
    let mut to_daemon = uw.try_clone()?;
    let mut from_client = cr.get_ref().try_clone()?;
    let up = std::thread::Builder::new()
        .name("docker-proxy-stdin".into())
        .spawn(move || -> u64 {
            let mut total = 0u64;
            if to_daemon.write_all(&pending).is_ok() {
                total += pending.len() as u64;
                let mut buf = vec![0u8; 32 << 10];
                loop {
                    match std::io::Read::read(&mut from_client, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => {
                            if to_daemon.write_all(&buf[..k]).is_err() {
                                break;
                            }
                            total += k as u64;
                        }
                    }
                }
            }
            let _ = to_daemon.shutdown(std::net::Shutdown::Write);
            total
        })?;
    let mut ignore = Capture::new(0);
    let down = http::copy_to_end(ur, cw, &mut ignore);
    let _ = cw.shutdown(std::net::Shutdown::Write);
    // The daemon is done: stop reading the client (wakes the stdin thread).
    let _ = cr.get_ref().shutdown(std::net::Shutdown::Read);
    let _ = uw.shutdown(std::net::Shutdown::Both);
    let up = up.join().unwrap_or(0);
    Ok((up, down?))
}
