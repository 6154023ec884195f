//! `type: syslog`: RFC 5424 messages over TCP with octet-counting framing
//! (RFC 6587), over TLS (RFC 5425), or over UDP (RFC 5426).
//!
//! Each event is one message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - audit
//! [kaudit@32473 auditID=".." stage=".." verb=".." user=".." resource=".."
//! namespace=".." name=".." code=".." cluster=".."] <event JSON>`; empty
//! parameters are left out. A checkpoint is a message with MSGID
//! `checkpoint`, `[kaudit@32473 checkpointSize=".."]` and the note as MSG.
//!
//! Syslog over TCP has no acknowledgement: a batch counts as delivered once
//! written. To still lose nothing when a server goes away, the connection is
//! checked before every batch and, once it turned out closed or a write
//! failed, the last 16 MiB written (more than the socket buffers of both
//! ends hold unread) are written again on the next connection (at least
//! once, duplicates possible). A server that crashes with messages read but
//! not yet written out can still lose them: syslog has no acknowledgement
//! to wait for. UDP gives no guarantee at all; a message too
//! large for a datagram is dead-lettered rather than cut.

use crate::http::read_file;
use crate::{Checkpoint, Delivery, Destination, Outgoing, SinkError};
use kaudit_event::MicroTime;
use serde::Deserialize;
use std::collections::VecDeque;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Syslog transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogProtocol {
    /// TCP with octet-counting framing (RFC 6587).
    #[default]
    Tcp,
    /// TLS (RFC 5425), octet-counting framing.
    Tls,
    /// UDP (RFC 5426), one message per datagram; no delivery guarantee.
    Udp,
}

/// `type: syslog`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    /// `host:port`.
    pub address: String,
    /// `tcp`, `tls` or `udp`.
    pub protocol: SyslogProtocol,
    /// CA bundle (PEM) for `tls`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for `tls`.
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM) for `tls`.
    pub client_key: Option<PathBuf>,
    /// Name the server's certificate must carry (default: the address's host).
    pub server_name: Option<String>,
    /// HOSTNAME field (default: this machine's host name).
    pub hostname: Option<String>,
    /// APP-NAME field.
    pub app_name: String,
    /// Facility number (default 13, "log audit").
    pub facility: u8,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            address: String::new(),
            protocol: SyslogProtocol::Tcp,
            ca_file: None,
            client_cert: None,
            client_key: None,
            server_name: None,
            hostname: None,
            app_name: "kaudit".into(),
            facility: 13,
        }
    }
}

/// Our private enterprise number in SD-IDs (kaudit@32473; 32473 is the
/// number RFC 5612 reserves for documentation and examples).
pub const SD_ID: &str = "kaudit@32473";
/// Largest message sent over UDP (IPv4 datagram payload limit, with room).
pub const MAX_UDP_MESSAGE: usize = 65_000;
/// Most bytes of recent batches kept for writing again after a lost
/// connection: more than can sit unread in the socket buffers of both ends
/// (Linux lets each grow to a few MiB).
const REPLAY_BYTES: usize = 16 << 20;

/// `host:port` split; `[v6]:port` accepted.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    let port: u16 = p.parse().ok()?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    if h.is_empty() || port == 0 {
        return None;
    }
    Some((h.to_string(), port))
}

fn push_sd_param(out: &mut Vec<u8>, name: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    for c in value.bytes() {
        if matches!(c, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
}

/// Header fields fixed for a sink.
pub struct Header {
    /// PRI value (facility * 8 + severity 6, informational).
    pub pri: u8,
    /// HOSTNAME (printable ASCII, or `-`).
    pub hostname: String,
    /// APP-NAME.
    pub app_name: String,
}

impl Header {
    /// From the config (host name from the system when unset).
    pub fn new(cfg: &SyslogConfig) -> Header {
        let host = cfg.hostname.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        });
        let host: String = host
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(255)
            .collect();
        Header {
            pri: cfg.facility.min(23) * 8 + 6,
            hostname: if host.is_empty() { "-".into() } else { host },
            app_name: cfg.app_name.clone(),
        }
    }

    fn write(&self, t: MicroTime, msgid: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("<{}>1 ", self.pri).as_bytes());
        t.write(out);
        out.push(b' ');
        out.extend_from_slice(self.hostname.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.app_name.as_bytes());
        out.extend_from_slice(b" - ");
        out.extend_from_slice(msgid.as_bytes());
        out.push(b' ');
    }

    /// Appends the RFC 5424 message (no framing) for one event.
    pub fn message(&self, o: &Outgoing, out: &mut Vec<u8>) {
        let ev = &o.event;
        self.write(o.time(), "audit", out);
        out.push(b'[');
        out.extend_from_slice(SD_ID.as_bytes());
        push_sd_param(out, "auditID", ev.audit_id());
        push_sd_param(out, "stage", ev.doc().stage.map_or("", |s| s.as_str()));
        push_sd_param(out, "verb", ev.verb());
        push_sd_param(out, "user", &ev.user().username);
        if let Some(r) = ev.object_ref() {
            let mut res = String::new();
            if !r.api_group.is_empty() {
                res.push_str(&r.api_group);
                res.push('/');
            }
            res.push_str(&r.resource);
            if !r.subresource.is_empty() {
                res.push('/');
                res.push_str(&r.subresource);
            }
            push_sd_param(out, "resource", &res);
            push_sd_param(out, "namespace", &r.namespace);
            push_sd_param(out, "name", &r.name);
        }
        if let Some(c) = ev.response_code() {
            push_sd_param(out, "code", &c.to_string());
        }
        push_sd_param(out, "cluster", &o.cluster);
        out.extend_from_slice(b"] ");
        out.extend_from_slice(ev.bytes());
    }

    /// Appends the message for a checkpoint.
    pub fn checkpoint_message(&self, cp: &Checkpoint, out: &mut Vec<u8>) {
        let t = MicroTime::parse(&cp.time).unwrap_or_else(|_| MicroTime::now());
        self.write(t, "checkpoint", out);
        out.push(b'[');
        out.extend_from_slice(SD_ID.as_bytes());
        push_sd_param(out, "checkpointSize", &cp.size.to_string());
        out.extend_from_slice(b"] ");
        out.extend_from_slice(cp.note.as_bytes());
    }
}

/// Appends `LEN SP MSG` (RFC 6587 octet counting).
pub fn frame(msg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg);
}

enum Conn {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Tcp(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    /// Whether the server still holds the connection. A syslog server never
    /// writes application data, so on plain TCP anything readable (or
    /// end-of-file) means it is gone; over TLS, records the server may send
    /// (TLS 1.3 session tickets) are processed and only a close or an error
    /// counts.
    fn alive(&mut self) -> bool {
        if self.tcp().set_nonblocking(true).is_err() {
            return false;
        }
        let alive = match self {
            Conn::Tcp(s) => {
                let mut b = [0u8; 1];
                matches!(s.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
            Conn::Tls(s) => loop {
                match s.conn.read_tls(&mut s.sock) {
                    Ok(0) => break false,
                    Ok(_) => match s.conn.process_new_packets() {
                        Ok(st) if st.peer_has_closed() => break false,
                        Ok(_) => {}
                        Err(_) => break false,
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                    Err(_) => break false,
                }
            },
        };
        alive && self.tcp().set_nonblocking(false).is_ok()
    }

    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => {
                s.write_all(b)?;
                s.flush()
            }
            Conn::Tls(s) => {
                s.write_all(b)?;
                s.flush()
            }
        }
    }
}

/// The syslog destination.
pub struct Syslog {
    cfg: SyslogConfig,
    header: Header,
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<Conn>,
    udp: Option<UdpSocket>,
    /// Framed batches written lately, newest last (bounded by [`REPLAY_BYTES`]).
    recent: VecDeque<Vec<u8>>,
    /// Their total size.
    recent_bytes: usize,
    /// A connection was lost since: write `recent` again on the next one.
    replay_due: bool,
}

fn tls_config(cfg: &SyslogConfig) -> Result<Arc<rustls::ClientConfig>, SinkError> {
    let ca = cfg
        .ca_file
        .as_deref()
        .ok_or_else(|| SinkError::Config("syslog over tls needs ca_file".into()))?;
    let pem = read_file(ca, "CA file")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        let c = c.map_err(|e| SinkError::Config(format!("CA file {}: {e}", ca.display())))?;
        roots
            .add(c)
            .map_err(|e| SinkError::Config(format!("CA file {}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(SinkError::Config(format!(
            "CA file {} holds no certificate",
            ca.display()
        )));
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SinkError::Config(e.to_string()))?
    .with_root_certificates(roots);
    let c = match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert), Some(key)) => {
            let cp = read_file(cert, "client certificate")?;
            let kp = read_file(key, "client key")?;
            let certs = rustls_pemfile::certs(&mut cp.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SinkError::Config(format!("client certificate: {e}")))?;
            let key = rustls_pemfile::private_key(&mut kp.as_slice())
                .map_err(|e| SinkError::Config(format!("client key: {e}")))?
                .ok_or_else(|| SinkError::Config("client key file holds no key".into()))?;
            b.with_client_auth_cert(certs, key)
                .map_err(|e| SinkError::Config(format!("client certificate: {e}")))?
        }
        _ => b.with_no_client_auth(),
    };
    Ok(Arc::new(c))
}

impl Syslog {
    /// Builds it from its config (connects lazily).
    pub fn new(cfg: &SyslogConfig, timeout: Duration) -> Result<Syslog, SinkError> {
        split_host_port(&cfg.address).ok_or_else(|| {
            SinkError::Config(format!("address {:?} must be host:port", cfg.address))
        })?;
        let tls = match cfg.protocol {
            SyslogProtocol::Tls => Some(tls_config(cfg)?),
            _ => None,
        };
        Ok(Syslog {
            header: Header::new(cfg),
            cfg: cfg.clone(),
            timeout,
            tls,
            conn: None,
            udp: None,
            recent: VecDeque::new(),
            recent_bytes: 0,
            replay_due: false,
        })
    }

    fn connect(&self) -> Result<Conn, SinkError> {
        let at = |e: String| SinkError::Transport(format!("syslog {}: {e}", self.cfg.address));
        let addrs: Vec<_> = self
            .cfg
            .address
            .to_socket_addrs()
            .map_err(|e| at(e.to_string()))?
            .collect();
        let mut last = String::from("no address");
        let mut sock = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.timeout) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let sock = sock.ok_or_else(|| at(last))?;
        let _ = sock.set_write_timeout(Some(self.timeout));
        let _ = sock.set_read_timeout(Some(self.timeout));
        let _ = sock.set_nodelay(true);
        match &self.tls {
            None => Ok(Conn::Tcp(sock)),
            Some(cfg) => {
                let name = self.cfg.server_name.clone().unwrap_or_else(|| {
                    split_host_port(&self.cfg.address)
                        .map(|(h, _)| h)
                        .unwrap_or_default()
                });
                let sn = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| at(format!("server name {name:?}: {e}")))?;
                let conn = rustls::ClientConnection::new(cfg.clone(), sn)
                    .map_err(|e| at(e.to_string()))?;
                let mut s = rustls::StreamOwned::new(conn, sock);
                // Finish the handshake now so a certificate mismatch is
                // reported as such, not as a failed write later.
                while s.conn.is_handshaking() {
                    s.conn
                        .complete_io(&mut s.sock)
                        .map_err(|e| at(format!("TLS handshake: {e}")))?;
                }
                Ok(Conn::Tls(Box::new(s)))
            }
        }
    }

    fn write_stream(&mut self, payload: Vec<u8>) -> Result<(), SinkError> {
        let alive = self.conn.as_mut().is_some_and(Conn::alive);
        if !alive {
            if self.conn.take().is_some() {
                self.replay_due = true;
            }
            let mut c = self.connect()?;
            if self.replay_due && !self.recent.is_empty() {
                tracing::warn!(address = %self.cfg.address, batches = self.recent.len(), "syslog connection was lost; writing the last batches again");
                for b in &self.recent {
                    c.write_all(b).map_err(|e| {
                        SinkError::Transport(format!("syslog {}: {e}", self.cfg.address))
                    })?;
                }
            }
            self.replay_due = false;
            self.conn = Some(c);
        }
        let Some(c) = self.conn.as_mut() else {
            return Err(SinkError::Transport("not connected".into()));
        };
        if let Err(e) = c.write_all(&payload) {
            self.conn = None;
            self.replay_due = true;
            return Err(SinkError::Transport(format!(
                "syslog {}: {e}",
                self.cfg.address
            )));
        }
        self.recent_bytes += payload.len();
        self.recent.push_back(payload);
        while self.recent.len() > 1 && self.recent_bytes > REPLAY_BYTES {
            if let Some(b) = self.recent.pop_front() {
                self.recent_bytes -= b.len();
            }
        }
        Ok(())
    }

    fn send_udp(&mut self, msgs: &[Vec<u8>]) -> Result<(), SinkError> {
        if self.udp.is_none() {
            let at = |e: std::io::Error| {
                SinkError::Transport(format!("syslog {}: {e}", self.cfg.address))
            };
            let target = self
                .cfg
                .address
                .to_socket_addrs()
                .map_err(at)?
                .next()
                .ok_or_else(|| {
                    SinkError::Transport(format!("syslog {}: no address", self.cfg.address))
                })?;
            let bind = if target.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let s = UdpSocket::bind(bind).map_err(at)?;
            s.connect(target).map_err(at)?;
            self.udp = Some(s);
        }
        let Some(s) = &self.udp else {
            return Err(SinkError::Transport("not connected".into()));
        };
        for m in msgs {
            if let Err(e) = s.send(m) {
                self.udp = None;
                return Err(SinkError::Transport(format!(
                    "syslog {}: {e}",
                    self.cfg.address
                )));
            }
        }
        Ok(())
    }
}

impl Destination for Syslog {
    fn kind(&self) -> &'static str {
        "syslog"
    }

    fn send(&mut self, batch: &[Outgoing]) -> Result<Delivery, SinkError> {
        let mut d = Delivery::default();
        if self.cfg.protocol == SyslogProtocol::Udp {
            let mut msgs = Vec::with_capacity(batch.len());
            for (i, o) in batch.iter().enumerate() {
                let mut m = Vec::with_capacity(o.event.bytes().len() + 256);
                self.header.message(o, &mut m);
                if m.len() > MAX_UDP_MESSAGE {
                    d.rejected.push((i, format!("{} bytes do not fit a UDP datagram ({MAX_UDP_MESSAGE} at most); use tcp or tls", m.len())));
                } else {
                    msgs.push(m);
                }
            }
            self.send_udp(&msgs)?;
            return Ok(d);
        }
        let mut payload = Vec::with_capacity(batch.len() * 2048);
        let mut m = Vec::new();
        for o in batch {
            m.clear();
            self.header.message(o, &mut m);
            frame(&m, &mut payload);
        }
        self.write_stream(payload)?;
        Ok(d)
    }

    fn send_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), SinkError> {
        let mut m = Vec::new();
        self.header.checkpoint_message(cp, &mut m);
        if self.cfg.protocol == SyslogProtocol::Udp {
            return self.send_udp(&[m]);
        }
        let mut payload = Vec::new();
        frame(&m, &mut payload);
        self.write_stream(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("a:514"), Some(("a".into(), 514)));
        assert_eq!(split_host_port("[::1]:6514"), Some(("::1".into(), 6514)));
        assert_eq!(split_host_port("a"), None);
        assert_eq!(split_host_port("a:0"), None);
        assert_eq!(split_host_port(":514"), None);
    }

    #[test]
    fn sd_values_escape_quote_backslash_bracket() {
        let mut out = Vec::new();
        push_sd_param(&mut out, "user", "a\"b\\c]d");
        assert_eq!(out, br#" user="a\"b\\c\]d""#);
        out.clear();
        push_sd_param(&mut out, "user", "");
        assert!(out.is_empty());
    }

    #[test]
    fn octet_counting_counts_bytes() {
        let mut out = Vec::new();
        frame("héllo".as_bytes(), &mut out);
        assert_eq!(out, "6 héllo".as_bytes());
    }
}
