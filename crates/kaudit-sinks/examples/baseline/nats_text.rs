//! The benchmark baseline only: kaudit's former NATS JetStream sink, a
//! small hand-written client of the NATS text protocol (no TLS, token and
//! user/password only), kept exactly as it was before the sink moved to
//! `async-nats`, so `forward_bench nats-old` measures the old client in the
//! same run as the new one. Not part of the library.
//!
//! It publishes each event with `Nats-Msg-Id: auditID-Stage`, pipelined
//! (every message written, then the acknowledgements read).
#![allow(dead_code)]

use kaudit_sinks::nats::NatsConfig;
use kaudit_sinks::{Checkpoint, Delivery, Destination, Outgoing, SinkError};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Largest message payload the client reads (bounds memory on a bad server).
const MAX_PAYLOAD: usize = 64 << 20;

/// `nats://host:port` (or `host:port`) to `host:port`.
pub fn parse_url(url: &str) -> Option<String> {
    let rest = url.strip_prefix("nats://").unwrap_or(url);
    let rest = rest.trim_end_matches('/');
    kaudit_sinks::syslog::split_host_port(rest).map(|_| rest.to_string())
}

/// A message to publish: its headers and payload.
pub type Outbound<'a> = (Vec<(&'a str, String)>, &'a [u8]);

/// One message read from the server.
#[derive(Debug)]
pub struct Message {
    /// Subject it arrived on.
    pub subject: String,
    /// Header block (`NATS/1.0 ...` lines), empty without headers.
    pub headers: String,
    /// Payload.
    pub payload: Vec<u8>,
}

/// A connection to a NATS server.
pub struct NatsClient {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    inbox: String,
    next_request: u64,
    timeout: Duration,
}

fn terr(e: impl std::fmt::Display) -> SinkError {
    SinkError::Transport(format!("nats: {e}"))
}

impl NatsClient {
    /// Connects, authenticates and subscribes to a private inbox.
    pub fn connect(cfg: &NatsConfig, timeout: Duration) -> Result<NatsClient, SinkError> {
        let addr = parse_url(&cfg.url).ok_or_else(|| {
            SinkError::Config(format!("nats url {:?} must be nats://host:port", cfg.url))
        })?;
        let mut last = String::from("no address");
        let mut sock = None;
        for a in addr
            .to_socket_addrs()
            .map_err(|e| terr(format!("{addr}: {e}")))?
        {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let sock = sock.ok_or_else(|| terr(format!("{addr}: {last}")))?;
        sock.set_read_timeout(Some(timeout)).map_err(terr)?;
        sock.set_write_timeout(Some(timeout)).map_err(terr)?;
        let _ = sock.set_nodelay(true);
        let mut reader = BufReader::new(sock.try_clone().map_err(terr)?);
        let mut line = String::new();
        reader.read_line(&mut line).map_err(terr)?;
        if !line.starts_with("INFO ") {
            return Err(terr(format!(
                "{addr}: not a NATS server (got {:?})",
                line.trim_end()
            )));
        }
        let info: Value = serde_json::from_str(line[5..].trim()).map_err(terr)?;
        if info.get("headers").and_then(Value::as_bool) == Some(false) {
            return Err(SinkError::Config(format!(
                "nats {addr}: the server does not support headers (needed for Nats-Msg-Id)"
            )));
        }
        let mut connect = json!({
            "verbose": false, "pedantic": false, "headers": true, "no_responders": true,
            "lang": "rust-kaudit", "version": env!("CARGO_PKG_VERSION"), "protocol": 1,
        });
        if let Some(t) = &cfg.token {
            connect["auth_token"] = json!(t);
        }
        if let Some(u) = &cfg.user {
            connect["user"] = json!(u);
            connect["pass"] = json!(cfg.password.clone().unwrap_or_default());
        }
        let inbox = {
            use rand::RngCore;
            format!("_INBOX.kaudit.{:016x}", rand::thread_rng().next_u64())
        };
        let mut c = NatsClient {
            writer: sock,
            reader,
            inbox,
            next_request: 0,
            timeout,
        };
        let hello = format!("CONNECT {connect}\r\nPING\r\n");
        c.writer.write_all(hello.as_bytes()).map_err(terr)?;
        let deadline = Instant::now() + timeout;
        loop {
            line.clear();
            c.read_line(&mut line, deadline)?;
            let l = line.trim_end();
            if l == "PONG" {
                break;
            } else if let Some(e) = l.strip_prefix("-ERR") {
                return Err(SinkError::Rejected(format!("nats {addr}: {}", e.trim())));
            }
        }
        let sub = format!("SUB {}.* 1\r\n", c.inbox);
        c.writer.write_all(sub.as_bytes()).map_err(terr)?;
        Ok(c)
    }

    fn read_line(&mut self, line: &mut String, deadline: Instant) -> Result<(), SinkError> {
        loop {
            match self.reader.read_line(line) {
                Ok(0) => return Err(terr("the server closed the connection")),
                Ok(_) => return Ok(()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) && Instant::now() < deadline => {}
                Err(e) => return Err(terr(e)),
            }
        }
    }

    /// Reads the next message, answering PINGs; `Err` on timeout or `-ERR`.
    pub fn next_message(&mut self, deadline: Instant) -> Result<Message, SinkError> {
        let mut line = String::new();
        loop {
            line.clear();
            self.read_line(&mut line, deadline)?;
            let l = line.trim_end();
            let mut parts = l.split(' ');
            match parts.next() {
                Some("PING") => self.writer.write_all(b"PONG\r\n").map_err(terr)?,
                Some("PONG") | Some("+OK") | Some("INFO") | Some("") => {}
                Some("-ERR") => {
                    return Err(SinkError::Rejected(format!("nats: {}", l[4..].trim())))
                }
                Some(op @ ("MSG" | "HMSG")) => {
                    let args: Vec<&str> = parts.collect();
                    let subject = args.first().copied().unwrap_or_default().to_string();
                    let nums: Vec<usize> =
                        args.iter().rev().map_while(|a| a.parse().ok()).collect();
                    let (hdr, total) = match (op, nums.as_slice()) {
                        ("MSG", [t, ..]) => (0, *t),
                        ("HMSG", [t, h, ..]) => (*h, *t),
                        _ => return Err(terr(format!("malformed {op} line {l:?}"))),
                    };
                    if total > MAX_PAYLOAD || hdr > total {
                        return Err(terr(format!("message of {total} bytes is too large")));
                    }
                    let mut buf = vec![0u8; total + 2];
                    self.reader.read_exact(&mut buf).map_err(terr)?;
                    buf.truncate(total);
                    let payload = buf.split_off(hdr);
                    return Ok(Message {
                        subject,
                        headers: String::from_utf8_lossy(&buf).into_owned(),
                        payload,
                    });
                }
                Some(other) => return Err(terr(format!("unexpected protocol line {other:?}"))),
                None => {}
            }
        }
    }

    /// Sends a request and waits for its reply (JetStream API calls).
    pub fn request(&mut self, subject: &str, payload: &[u8]) -> Result<Value, SinkError> {
        self.next_request += 1;
        let reply = format!("{}.r{}", self.inbox, self.next_request);
        let mut out = format!("PUB {subject} {reply} {}\r\n", payload.len()).into_bytes();
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        self.writer.write_all(&out).map_err(terr)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let m = self.next_message(deadline)?;
            if m.subject == reply {
                if m.headers.contains(" 503") {
                    return Err(SinkError::Rejected(format!(
                        "nats: no responders for {subject} (is JetStream on?)"
                    )));
                }
                return serde_json::from_slice(&m.payload)
                    .map_err(|e| terr(format!("reply to {subject} is not JSON: {e}")));
            }
        }
    }

    /// Publishes messages with headers (`(headers, payload)`), each with its
    /// own reply subject, then collects one answer per message: the answers
    /// (JetStream acks, or `Err` per message) in input order.
    pub fn publish_all(
        &mut self,
        subject: &str,
        msgs: &[Outbound<'_>],
    ) -> Result<Vec<Result<Value, String>>, SinkError> {
        let base = self.next_request + 1;
        self.next_request += msgs.len() as u64;
        let mut out = Vec::with_capacity(msgs.iter().map(|m| m.1.len() + 128).sum());
        for (i, (headers, payload)) in msgs.iter().enumerate() {
            let mut h = String::from("NATS/1.0\r\n");
            for (k, v) in headers {
                h.push_str(k);
                h.push_str(": ");
                h.push_str(v);
                h.push_str("\r\n");
            }
            h.push_str("\r\n");
            out.extend_from_slice(
                format!(
                    "HPUB {subject} {}.r{} {} {}\r\n",
                    self.inbox,
                    base + i as u64,
                    h.len(),
                    h.len() + payload.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&out).map_err(terr)?;
        let mut answers: HashMap<usize, Result<Value, String>> = HashMap::new();
        let deadline = Instant::now() + self.timeout;
        let prefix = format!("{}.r", self.inbox);
        while answers.len() < msgs.len() {
            let m = self.next_message(deadline)?;
            let Some(n) = m
                .subject
                .strip_prefix(&prefix)
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if n < base || n >= base + msgs.len() as u64 {
                continue;
            }
            let r = if m.headers.contains(" 503") {
                Err("no responders (is there a JetStream stream on this subject?)".to_string())
            } else {
                serde_json::from_slice::<Value>(&m.payload)
                    .map_err(|e| format!("ack is not JSON: {e}"))
            };
            answers.insert((n - base) as usize, r);
        }
        Ok((0..msgs.len())
            .map(|i| {
                answers
                    .remove(&i)
                    .unwrap_or_else(|| Err("no answer".into()))
            })
            .collect())
    }
}

/// The NATS JetStream destination.
pub struct Nats {
    cfg: NatsConfig,
    timeout: Duration,
    client: Option<NatsClient>,
}

impl Nats {
    /// Builds it from its config (connects lazily).
    pub fn new(cfg: &NatsConfig, timeout: Duration) -> Result<Nats, SinkError> {
        parse_url(&cfg.url).ok_or_else(|| {
            SinkError::Config(format!("nats url {:?} must be nats://host:port", cfg.url))
        })?;
        Ok(Nats {
            cfg: cfg.clone(),
            timeout,
            client: None,
        })
    }

    fn client(&mut self) -> Result<&mut NatsClient, SinkError> {
        if self.client.is_none() {
            let mut c = NatsClient::connect(&self.cfg, self.timeout)?;
            if let Some(stream) = &self.cfg.stream {
                ensure_stream(&mut c, stream, &self.cfg.subject)?;
            }
            self.client = Some(c);
        }
        self.client.as_mut().ok_or_else(|| terr("not connected"))
    }

    fn publish(&mut self, msgs: &[Outbound<'_>]) -> Result<Delivery, SinkError> {
        let subject = self.cfg.subject.clone();
        let res = self.client()?.publish_all(&subject, msgs);
        let answers = match res {
            Ok(a) => a,
            Err(e) => {
                self.client = None;
                return Err(e);
            }
        };
        let mut d = Delivery::default();
        let mut first_err = None;
        for (i, a) in answers.into_iter().enumerate() {
            match a {
                Ok(v) if v.get("error").is_none() && v.get("seq").is_some() => {}
                Ok(v) => {
                    first_err.get_or_insert_with(|| {
                        v.get("error")
                            .map_or_else(|| v.to_string(), Value::to_string)
                    });
                    d.retry.push(i);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                    d.retry.push(i);
                }
            }
        }
        if d.retry.len() == msgs.len() {
            return Err(SinkError::Rejected(format!(
                "nats: JetStream did not take the batch: {}",
                first_err.unwrap_or_default()
            )));
        }
        Ok(d)
    }
}

/// Creates `stream` on `subject` unless it exists.
pub fn ensure_stream(c: &mut NatsClient, stream: &str, subject: &str) -> Result<(), SinkError> {
    let info = c.request(&format!("$JS.API.STREAM.INFO.{stream}"), b"")?;
    match info.pointer("/error/code").and_then(Value::as_u64) {
        None => Ok(()),
        Some(404) => {
            let cfg = json!({"name": stream, "subjects": [subject], "storage": "file", "duplicate_window": 120_000_000_000u64});
            let r = c.request(
                &format!("$JS.API.STREAM.CREATE.{stream}"),
                cfg.to_string().as_bytes(),
            )?;
            match r.get("error") {
                None => Ok(()),
                Some(e) => Err(SinkError::Rejected(format!(
                    "nats: creating stream {stream}: {e}"
                ))),
            }
        }
        Some(_) => Err(SinkError::Rejected(format!(
            "nats: stream {stream}: {}",
            info["error"]
        ))),
    }
}

impl Destination for Nats {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn send(&mut self, batch: &[Outgoing]) -> Result<Delivery, SinkError> {
        let msgs: Vec<Outbound<'_>> = batch
            .iter()
            .map(|o| (vec![("Nats-Msg-Id", o.dedupe_id())], o.event.bytes()))
            .collect();
        self.publish(&msgs)
    }

    fn send_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), SinkError> {
        let msgs = [(
            vec![
                ("Nats-Msg-Id", format!("checkpoint-{}", cp.size)),
                ("Kaudit-Checkpoint", cp.size.to_string()),
            ],
            cp.note.as_bytes(),
        )];
        let d = self.publish(&msgs)?;
        if d.retry.is_empty() {
            Ok(())
        } else {
            Err(SinkError::Rejected(
                "nats: checkpoint not acknowledged".into(),
            ))
        }
    }
}
