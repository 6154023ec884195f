//! The standalone proxy's durable outbox: records are appended to
//! `<dir>/spool.jsonl` (fsync per batch) and sent to a running `kaudit
//! serve` (`POST /api/v1/ingest/k8s?cluster=<name>`, an EventList) by a
//! sender thread that moves its offset (`<dir>/spool.pos`, fsync + rename)
//! only after a 200. A crash re-sends at most the last batch; the server's
//! dedupe window (cluster, auditID, stage) drops the resend. Once all is
//! acknowledged the spool file is emptied.

use super::proxy::Recorded;
use kaudit_event::Event;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Most records sent in one request.
pub const MAX_SEND: usize = 500;
/// Most bytes sent in one request.
pub const MAX_SEND_BYTES: usize = 8 << 20;

/// Where and how the spool delivers.
#[derive(Clone, Debug)]
pub struct SpoolTarget {
    /// `host:port` of `kaudit serve` (plain HTTP).
    pub addr: String,
    /// Path prefix before `/api/v1/ingest/k8s` (usually empty).
    pub base: String,
    /// Bearer token with the ingest role, if the server asks for one.
    pub token: Option<String>,
    /// The cluster (Docker host name) the records are sent as.
    pub cluster: String,
}

impl SpoolTarget {
    /// From `http://host:port[/base]`.
    pub fn parse(url: &str, cluster: &str, token: Option<String>) -> Result<SpoolTarget, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("--server {url:?}: only http:// is supported by the docker proxy's sender")
        })?;
        let (addr, base) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if addr.is_empty() {
            return Err(format!("--server {url:?}: no host"));
        }
        let addr = if addr.contains(':') {
            addr.to_string()
        } else {
            format!("{addr}:80")
        };
        Ok(SpoolTarget {
            addr,
            base: base.to_string(),
            token,
            cluster: cluster.to_string(),
        })
    }
}

/// Why the spool could not open.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct SpoolError {
    /// The file.
    pub path: PathBuf,
    /// The cause.
    pub source: std::io::Error,
}

struct State {
    file: File,
    len: u64,
}

/// The spool: a writer side (records in) and a sender side (records out).
pub struct Spool {
    dir: PathBuf,
    state: Mutex<State>,
    wake: Condvar,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`.
    pub fn open(dir: &Path) -> Result<Arc<Spool>, SpoolError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SpoolError { path, source }
        };
        std::fs::create_dir_all(dir).map_err(err(dir))?;
        let p = dir.join("spool.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&p)
            .map_err(err(&p))?;
        let len = file.metadata().map_err(err(&p))?.len();
        Ok(Arc::new(Spool {
            dir: dir.to_path_buf(),
            state: Mutex::new(State { file, len }),
            wake: Condvar::new(),
        }))
    }

    fn pos_path(&self) -> PathBuf {
        self.dir.join("spool.pos")
    }

    /// The acknowledged offset.
    pub fn acked(&self) -> u64 {
        std::fs::read_to_string(self.pos_path())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn set_acked(&self, pos: u64) -> std::io::Result<()> {
        let tmp = self.dir.join("spool.pos.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(pos.to_string().as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.pos_path())?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Appends records durably (one JSON line each).
    pub fn append(&self, events: &[Event]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for ev in events {
            buf.extend_from_slice(ev.bytes());
            buf.push(b'\n');
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.file.write_all(&buf)?;
        st.file.sync_data()?;
        st.len += buf.len() as u64;
        self.wake.notify_all();
        Ok(())
    }

    /// Bytes not yet acknowledged.
    pub fn backlog(&self) -> u64 {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.len.saturating_sub(self.acked())
    }

    /// Takes records from the channel and appends them until every sender
    /// is gone (the proxy stopped).
    pub fn write_from(&self, rx: Receiver<Recorded>) {
        loop {
            let first = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(r) => r.event(),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            while batch.len() < 1000 {
                match rx.try_recv() {
                    Ok(r) => batch.push(r.event()),
                    Err(_) => break,
                }
            }
            let mut backoff = Duration::from_millis(100);
            while let Err(e) = self.append(&batch) {
                tracing::error!(error = %e, "docker proxy: cannot write the spool; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }

    /// One delivery attempt of what is pending: returns the records
    /// acknowledged (0 when nothing was pending).
    pub fn send_once(&self, to: &SpoolTarget) -> Result<usize, String> {
        let acked = self.acked();
        let (len, file) = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if acked >= st.len {
                if st.len > 0 {
                    // All delivered: start the file afresh.
                    // Offset first: a crash in between re-sends (the
                    // server's dedupe drops it) rather than skips.
                    self.set_acked(0).map_err(|e| e.to_string())?;
                    st.file.set_len(0).map_err(|e| e.to_string())?;
                    st.file.sync_all().map_err(|e| e.to_string())?;
                    st.len = 0;
                }
                return Ok(0);
            }
            (st.len, st.file.try_clone().map_err(|e| e.to_string())?)
        };
        let mut r = BufReader::new(file);
        r.seek(SeekFrom::Start(acked)).map_err(|e| e.to_string())?;
        let mut r = r.take(len - acked);
        let mut items: Vec<Vec<u8>> = Vec::new();
        let mut used = 0u64;
        let mut size = 0usize;
        let mut line = Vec::new();
        while items.len() < MAX_SEND && size < MAX_SEND_BYTES {
            line.clear();
            let n = r.read_until(b'\n', &mut line).map_err(|e| e.to_string())?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            used += n as u64;
            size += n;
            items.push(line[..n - 1].to_vec());
        }
        if items.is_empty() {
            return Ok(0);
        }
        let mut body = Vec::with_capacity(size + 64);
        body.extend_from_slice(b"{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"metadata\":{},\"items\":[");
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(it);
        }
        body.extend_from_slice(b"]}");
        post(to, &body)?;
        self.set_acked(acked + used).map_err(|e| e.to_string())?;
        Ok(items.len())
    }

    /// Sends until `stop` and the spool is empty (or `stop` twice as long as
    /// a retry), waiting for new records in between.
    pub fn send_loop(&self, to: &SpoolTarget, stop: &AtomicBool) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.send_once(to) {
                Ok(0) => {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = self.wake.wait_timeout(st, Duration::from_millis(200));
                }
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, "docker proxy: delivery to kaudit serve failed; retrying");
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

fn post(to: &SpoolTarget, body: &[u8]) -> Result<(), String> {
    let mut s = std::net::TcpStream::connect(&to.addr).map_err(|e| format!("{}: {e}", to.addr))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut head = format!(
        "POST {}/api/v1/ingest/k8s?cluster={} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: kaudit-docker-proxy\r\n",
        to.base,
        to.cluster,
        to.addr,
        body.len()
    );
    if let Some(t) = &to.token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.take(64 << 10)
        .read_to_end(&mut resp)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&resp);
    let status = text.split(' ').nth(1).unwrap_or("");
    if status == "200" {
        Ok(())
    } else {
        Err(format!(
            "kaudit serve answered {:?}",
            text.chars().take(300).collect::<String>()
        ))
    }
}
