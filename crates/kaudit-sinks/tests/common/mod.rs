//! Shared test helpers: stores filled with events, sinks on threads, and an
//! in-process HTTP server that records every request and can be stopped
//! (abruptly, like a crash) and started again on the same port.
#![allow(dead_code)]

use kaudit_event::MicroTime;
use kaudit_sinks::{Sink, SinkConfig, SinkStats};
use kaudit_store::{Record, Store, StoreOptions};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A v1 event line exactly as kube-apiserver writes it.
pub const EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"0b5c7a2e-1111-4c7e-9a7e-000000000001","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets/db","verb":"get","user":{"username":"alice","groups":["dev","system:authenticated"]},"sourceIPs":["10.0.0.7"],"userAgent":"kubectl/v1.31.0","objectRef":{"resource":"secrets","namespace":"prod","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-01-05T09:00:00.100000Z","stageTimestamp":"2026-01-05T09:00:00.123456Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"dev/prod\""}}"#;

/// EVENT as an EventList item (no kind/apiVersion).
pub const EVENT_ITEM: &str = r#"{"level":"Metadata","auditID":"0b5c7a2e-1111-4c7e-9a7e-000000000001","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets/db","verb":"get","user":{"username":"alice","groups":["dev","system:authenticated"]},"sourceIPs":["10.0.0.7"],"userAgent":"kubectl/v1.31.0","objectRef":{"resource":"secrets","namespace":"prod","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-01-05T09:00:00.100000Z","stageTimestamp":"2026-01-05T09:00:00.123456Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"dev/prod\""}}"#;

/// The dedupe ID of EVENT (`auditID-Stage-<hash of its bytes>`).
pub fn event_id() -> String {
    dedupe_id(EVENT.as_bytes())
}

pub fn open_store(dir: &Path) -> Arc<Store> {
    Arc::new(Store::open(&dir.join("store"), StoreOptions::default()).expect("store opens"))
}

pub fn append(store: &Store, cluster: &str, events: &[Vec<u8>]) {
    let recs = events
        .iter()
        .map(|e| Record {
            cluster: cluster.to_string(),
            received: MicroTime::now(),
            event: e.clone(),
        })
        .collect();
    store.append_batch(recs).expect("append");
}

/// `n` generated events (seeded), as v1 lines.
pub fn generated(n: u64, seed: u64) -> Vec<Vec<u8>> {
    let mut cfg = kaudit_gen::GenConfig::new(seed);
    cfg.events = Some(n);
    kaudit_gen::Generator::new(cfg)
        .expect("generator")
        .map(|g| g.bytes)
        .collect()
}

/// `auditID-Stage` of a v1 line: which event it is, for sinks that send
/// an event's data in their own shape (webhook, Splunk, a policy applied).
pub fn event_key(line: &[u8]) -> String {
    let ev = kaudit_event::Event::from_json(line).expect("event parses");
    format!(
        "{}-{}",
        ev.audit_id(),
        ev.doc().stage.map_or("Unknown", |s| s.as_str())
    )
}

/// The de-duplication ID of a v1 line (`auditID-Stage-<hash>`), as the
/// Elasticsearch and NATS sinks send it.
pub fn dedupe_id(line: &[u8]) -> String {
    let ev = kaudit_event::Event::from_json(line).expect("event parses");
    kaudit_sinks::dedupe_id(&ev)
}

/// A sink running on its own thread.
pub struct Running {
    pub stop: Arc<AtomicBool>,
    pub stats: Arc<SinkStats>,
    pub thread: Option<std::thread::JoinHandle<u64>>,
}

impl Running {
    /// Asks the sink to stop and returns its cursor.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("sink thread")
    }
}

pub fn run_sink(cfg: SinkConfig, data: &Path, store: Arc<Store>) -> Running {
    let mut sink = Sink::new(cfg, data).expect("sink opens");
    let stats = sink.stats();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::spawn(move || {
        sink.run(&store, &stop2);
        sink.cursor()
    });
    Running {
        stop,
        stats,
        thread: Some(thread),
    }
}

/// Polls `f` until it is true; panics with `what` after `secs`.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request as the fake server saw it.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .get(&k.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What the fake answers: status, content type, body.
pub type Handler = Arc<dyn Fn(&Req) -> (u16, Vec<u8>) + Send + Sync>;

/// An HTTP server on 127.0.0.1 that records requests.
pub struct FakeHttp {
    pub addr: SocketAddr,
    pub reqs: Arc<Mutex<Vec<Req>>>,
    handler: Handler,
    kill: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeHttp {
    pub fn start(handler: Handler) -> FakeHttp {
        let mut f = FakeHttp {
            addr: "127.0.0.1:0".parse().unwrap(),
            reqs: Arc::new(Mutex::new(Vec::new())),
            handler,
            kill: None,
            thread: None,
        };
        f.up();
        f
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts serving (again, on the same port once it had one).
    pub fn up(&mut self) {
        assert!(self.thread.is_none(), "already up");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
        let (addr, reqs, handler) = (self.addr, self.reqs.clone(), self.handler.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            rt.spawn(async move {
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                sock.set_reuseaddr(true).unwrap();
                let mut tries = 0;
                while let Err(e) = sock.bind(addr) {
                    tries += 1;
                    assert!(tries < 100, "rebinding {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let l = sock.listen(128).unwrap();
                ready_tx.send(l.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
                    let (reqs, handler) = (reqs.clone(), handler.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = axum::body::to_bytes(body, 512 << 20)
                            .await
                            .unwrap()
                            .to_vec();
                        let r = Req {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_string(),
                            query: parts.uri.query().unwrap_or("").to_string(),
                            headers: parts
                                .headers
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                                })
                                .collect(),
                            body,
                        };
                        let (status, out) = handler(&r);
                        reqs.lock().unwrap().push(r);
                        axum::response::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(axum::body::Body::from(out))
                            .unwrap()
                    }
                });
                tokio::select! {
                    _ = axum::serve(l, app) => {}
                    _ = stop_rx => {}
                }
            });
            let _ = kill_rx.recv();
            let _ = stop_tx.send(());
            // Dropping the runtime cuts every open connection: a crash, not a
            // graceful shutdown.
            rt.shutdown_background();
        });
        self.addr = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("fake server up");
        self.kill = Some(kill_tx);
        self.thread = Some(thread);
    }

    /// Stops serving: open connections are cut, new ones refused.
    pub fn down(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    pub fn requests(&self) -> Vec<Req> {
        self.reqs.lock().unwrap().clone()
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.down();
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free UDP port on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Finds a program the test needs; fails (never skips) with what to install.
pub fn require(program: &str, package: &str) -> std::path::PathBuf {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/bin",
        "/usr/local/sbin",
    ] {
        let p = Path::new(dir).join(program);
        if p.is_file() {
            return p;
        }
    }
    panic!("{program} is not installed: this test needs the Debian package `{package}` (apt-get install {package}; scripts/test.sh installs it)");
}

/// A server process started by a test; stopped (SIGTERM, then waited for)
/// when dropped.
pub struct Daemon {
    pub child: Option<std::process::Child>,
    pub what: String,
}

impl Daemon {
    pub fn spawn(mut cmd: std::process::Command, what: &str, port: u16) -> Daemon {
        let child = cmd
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let mut d = Daemon {
            child: Some(child),
            what: what.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{what} exited before listening: {status}");
            }
            assert!(Instant::now() < deadline, "{what} did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    /// SIGTERM (a clean stop, as a service manager does) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if c.try_wait().unwrap().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What an in-process HTTPS peer saw: (request head, body) of every request,
/// and how many connections failed their TLS handshake.
#[derive(Default)]
pub struct HttpsSeen {
    pub requests: Vec<(String, Vec<u8>)>,
    pub refused_handshakes: usize,
}

/// An HTTPS server on 127.0.0.1 with `cfg` (which may require client
/// certificates) that reads raw HTTP/1.1 requests (head, then
/// Content-Length bytes), records them, and answers each with 200 and
/// `reply` as a JSON body. Returns the port.
#[allow(dead_code)]
pub fn serve_https(
    cfg: Arc<rustls::ServerConfig>,
    reply: &'static [u8],
) -> (u16, Arc<Mutex<HttpsSeen>>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen: Arc<Mutex<HttpsSeen>> = Arc::default();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for sock in l.incoming().flatten() {
            let (cfg, seen) = (cfg.clone(), seen2.clone());
            std::thread::spawn(move || {
                let mut s =
                    rustls::StreamOwned::new(rustls::ServerConnection::new(cfg).unwrap(), sock);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                loop {
                    let head_end = loop {
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p + 4;
                        }
                        match s.read(&mut chunk) {
                            Ok(0) => return,
                            Err(_) => {
                                if s.conn.is_handshaking() {
                                    seen.lock().unwrap().refused_handshakes += 1;
                                }
                                return;
                            }
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = buf[head_end..head_end + len].to_vec();
                    buf.drain(..head_end + len);
                    seen.lock().unwrap().requests.push((head, body));
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        reply.len()
                    );
                    let _ = s.write_all(reply);
                    let _ = s.flush();
                }
            });
        }
    });
    (port, seen)
}

/// A test CA with a server certificate (localhost, 127.0.0.1) and a client
/// certificate (CN kaudit) it signed, as PEM.
#[allow(dead_code)]
pub struct TestPki {
    pub ca: String,
    pub server: (String, String),
    pub client: (String, String),
}

/// [`TestPki`] written to files: (ca, server cert, server key, client cert, client key).
#[allow(dead_code)]
pub struct PkiFiles {
    pub ca: std::path::PathBuf,
    pub server_cert: std::path::PathBuf,
    pub server_key: std::path::PathBuf,
    pub client_cert: std::path::PathBuf,
    pub client_key: std::path::PathBuf,
}

#[allow(dead_code)]
impl TestPki {
    /// Makes a fresh CA and the two certificates.
    pub fn new() -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kaudit test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap()
                .signed_by(&server_key, &issuer)
                .unwrap();
        let client_key = rcgen::KeyPair::generate().unwrap();
        let mut cp = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        cp.distinguished_name
            .push(rcgen::DnType::CommonName, "kaudit");
        let client = cp.signed_by(&client_key, &issuer).unwrap();
        TestPki {
            ca: ca.pem(),
            server: (server.pem(), server_key.serialize_pem()),
            client: (client.pem(), client_key.serialize_pem()),
        }
    }

    /// Writes every PEM into `dir`.
    pub fn write_to(&self, dir: &Path) -> PkiFiles {
        let write = |name: &str, pem: &str| {
            let p = dir.join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        PkiFiles {
            ca: write("ca.pem", &self.ca),
            server_cert: write("server.pem", &self.server.0),
            server_key: write("server-key.pem", &self.server.1),
            client_cert: write("client.pem", &self.client.0),
            client_key: write("client-key.pem", &self.client.1),
        }
    }
}
