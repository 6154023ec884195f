//! The auditing Docker proxy against a scripted daemon on a unix socket (no
//! root, no dockerd): requests reach the daemon byte for byte (keep-alive,
//! chunked uploads), a chunked stream reaches the client chunk by chunk
//! before the daemon has finished, an upgraded (101) connection is spliced
//! both ways, and each call is recorded at its stages with the caller.

use kaudit_event::Level;
use kaudit_event::{Event, Stage};
use kaudit_sources::docker::map::CallRecord;
use kaudit_sources::docker::proxy::{self, Recorder};
use kaudit_sources::docker::{DockerProxyConfig, Proxy};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Keep(Mutex<Vec<Event>>);

impl Recorder for Keep {
    fn record(&self, rec: CallRecord, level: Level) {
        self.0.lock().unwrap().push(rec.to_event(level));
    }
}

/// What the fake daemon received, per connection, raw.
type Seen = Arc<Mutex<Vec<u8>>>;

fn fake_daemon(path: &Path, seen: Seen, release: mpsc::Receiver<()>) {
    let l = UnixListener::bind(path).unwrap();
    let release = Arc::new(Mutex::new(release));
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let (seen, release) = (seen.clone(), release.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut w = c;
                loop {
                    let mut head = Vec::new();
                    loop {
                        let mut line = Vec::new();
                        if r.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        head.extend_from_slice(&line);
                        if line == b"\r\n" {
                            break;
                        }
                    }
                    let text = String::from_utf8_lossy(&head).to_string();
                    seen.lock().unwrap().extend_from_slice(&head);
                    let lower = text.to_ascii_lowercase();
                    if let Some(n) = lower
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|n| n.trim().parse::<usize>().ok())
                    {
                        let mut body = vec![0; n];
                        r.read_exact(&mut body).unwrap();
                        seen.lock().unwrap().extend_from_slice(&body);
                    } else if lower.contains("transfer-encoding: chunked") {
                        loop {
                            let mut line = String::new();
                            r.read_line(&mut line).unwrap();
                            seen.lock().unwrap().extend_from_slice(line.as_bytes());
                            let n = usize::from_str_radix(line.trim(), 16).unwrap();
                            let mut body = vec![0; n + 2];
                            r.read_exact(&mut body).unwrap();
                            seen.lock().unwrap().extend_from_slice(&body);
                            if n == 0 {
                                break;
                            }
                        }
                    }
                    let first = text.lines().next().unwrap_or("").to_string();
                    if first.starts_with("GET /v1.41/containers/json") {
                        w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n[{\"Id\":\"a\"}]").unwrap();
                    } else if first.starts_with("GET /v1.41/containers/web/logs") {
                        w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n").unwrap();
                        w.flush().unwrap();
                        // The rest only once the client has seen the first chunk.
                        let _ = release
                            .lock()
                            .unwrap()
                            .recv_timeout(Duration::from_secs(10));
                        w.write_all(b"7\r\nsecond\n\r\n0\r\n\r\n").unwrap();
                    } else if first.starts_with("POST /v1.41/containers/web/attach") {
                        w.write_all(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n").unwrap();
                        // Echo until the client half-closes, then say bye.
                        let mut buf = [0u8; 1024];
                        loop {
                            let n = r.read(&mut buf).unwrap_or(0);
                            if n == 0 {
                                break;
                            }
                            w.write_all(&buf[..n]).unwrap();
                        }
                        w.write_all(b"bye").unwrap();
                        return;
                    } else if first.starts_with("POST /build") {
                        w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 61\r\n\r\n{\"stream\":\"ok\"}\r\n{\"errorDetail\":{},\"error\":\"no space left\"}\r\n").unwrap();
                    } else {
                        w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 22\r\n\r\n{\"message\":\"no such\"}\n").unwrap();
                    }
                }
            });
        }
    });
}

fn start() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Seen,
    mpsc::Sender<()>,
    Arc<Keep>,
) {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("docker.sock");
    let seen: Seen = Arc::default();
    let (tx, rx) = mpsc::channel();
    fake_daemon(&upstream, seen.clone(), rx);
    let keep = Arc::new(Keep::default());
    let listen = dir.path().join("kaudit.sock");
    let cfg = DockerProxyConfig {
        listen: listen.clone(),
        upstream,
        name: "test-host".into(),
        level: None,
        max_body: None,
        socket_mode: None,
    };
    let p = Proxy::bind(&cfg, keep.clone()).unwrap();
    std::thread::spawn(move || p.serve(Arc::new(AtomicBool::new(false))));
    (dir, listen, seen, tx, keep)
}

fn read_response(r: &mut BufReader<UnixStream>, n: usize) -> Vec<u8> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).unwrap();
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            break;
        }
    }
    let mut body = vec![0; n];
    r.read_exact(&mut body).unwrap();
    head.extend_from_slice(&body);
    head
}

fn wait_records(keep: &Keep, n: usize) -> Vec<Event> {
    for _ in 0..200 {
        let v = keep.0.lock().unwrap().clone();
        if v.len() >= n {
            return v;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    keep.0.lock().unwrap().clone()
}

#[test]
fn keep_alive_requests_pass_byte_for_byte_and_are_recorded() {
    let (_d, listen, seen, _tx, keep) = start();
    let c = UnixStream::connect(&listen).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut w = c;
    let req1 = b"GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\nUser-Agent: Docker-Client/test\r\nX-Odd:  spaced  \r\n\r\n";
    w.write_all(req1).unwrap();
    let resp = read_response(&mut r, 12);
    assert!(resp.ends_with(b"[{\"Id\":\"a\"}]"));
    // A chunked upload on the same connection (build context).
    let req2 = b"POST /build?t=app:1 HTTP/1.1\r\nHost: docker\r\nContent-Type: application/x-tar\r\nX-Registry-Config: eyJzZWNyZXQiOiJzMyJ9\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    w.write_all(req2).unwrap();
    let resp = read_response(&mut r, 61);
    assert!(resp.ends_with(b"\"no space left\"}\r\n"));
    let mut want = req1.to_vec();
    want.extend_from_slice(req2);
    assert_eq!(
        *seen.lock().unwrap(),
        want,
        "the daemon saw exactly what the client sent"
    );
    let evs = wait_records(&keep, 4);
    assert_eq!(evs.len(), 4, "two stages per short call");
    let list = &evs[1];
    assert_eq!(list.stage(), Stage::ResponseComplete);
    assert_eq!(list.verb(), "list");
    assert_eq!(list.user_agent(), "Docker-Client/test");
    assert_eq!(list.response_code(), Some(200));
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    assert_eq!(list.user().uid, uid.to_string());
    assert!(!list.user().username.is_empty());
    let build = &evs[3];
    assert_eq!(build.verb(), "build");
    assert_eq!(build.object_ref().unwrap().name, "app:1");
    let text = String::from_utf8_lossy(build.bytes()).to_string();
    assert!(
        text.contains("\"status\":\"Failure\"") && text.contains("no space left"),
        "{text}"
    );
    assert!(
        !text.contains("eyJzZWNyZXQiOiJzMyJ9"),
        "registry credentials are never kept"
    );
}

#[test]
fn a_stream_is_forwarded_before_it_ends() {
    let (_d, listen, _seen, release, keep) = start();
    let c = UnixStream::connect(&listen).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut w = c;
    w.write_all(
        b"GET /v1.41/containers/web/logs?follow=1&stdout=1 HTTP/1.1\r\nHost: docker\r\n\r\n",
    )
    .unwrap();
    let head = read_response(&mut r, 0);
    assert!(head.starts_with(b"HTTP/1.1 200 OK"));
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "6\r\n");
    line.clear();
    r.read_line(&mut line).unwrap();
    assert_eq!(
        line, "first\n",
        "first chunk arrives while the daemon still holds the rest"
    );
    let started = wait_records(&keep, 2);
    assert_eq!(started[1].stage(), Stage::ResponseStarted);
    release.send(()).unwrap();
    let mut rest = Vec::new();
    let mut buf = [0u8; 64];
    while !rest.ends_with(b"0\r\n\r\n") {
        let n = r.read(&mut buf).unwrap();
        assert!(n > 0);
        rest.extend_from_slice(&buf[..n]);
    }
    assert_eq!(rest, b"\r\n7\r\nsecond\n\r\n0\r\n\r\n");
    let evs = wait_records(&keep, 3);
    assert_eq!(evs[2].stage(), Stage::ResponseComplete);
    assert_eq!(evs[2].object_ref().unwrap().subresource, "logs");
}

#[test]
fn an_upgraded_connection_is_spliced_both_ways() {
    let (_d, listen, _seen, _tx, keep) = start();
    let c = UnixStream::connect(&listen).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut w = c;
    w.write_all(b"POST /v1.41/containers/web/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n").unwrap();
    let head = read_response(&mut r, 0);
    assert!(head.starts_with(b"HTTP/1.1 101 UPGRADED"));
    for word in [&b"hello"[..], b"again"] {
        w.write_all(word).unwrap();
        let mut got = vec![0; word.len()];
        r.read_exact(&mut got).unwrap();
        assert_eq!(got, word);
    }
    w.shutdown(std::net::Shutdown::Write).unwrap();
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, b"bye");
    let evs = wait_records(&keep, 3);
    let stages: Vec<Stage> = evs.iter().map(|e| e.stage()).collect();
    assert_eq!(
        stages,
        [
            Stage::RequestReceived,
            Stage::ResponseStarted,
            Stage::ResponseComplete
        ]
    );
    assert_eq!(evs[2].verb(), "attach");
    let v: serde_json::Value = serde_json::from_slice(evs[2].bytes()).unwrap();
    assert!(v["docker"]["bytesIn"].as_u64().unwrap() > 10);
    proxy::wake(&listen);
}

#[test]
fn an_unreachable_daemon_gets_a_502_and_a_file_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let keep = Arc::new(Keep::default());
    let listen = dir.path().join("kaudit.sock");
    let cfg = DockerProxyConfig {
        listen: listen.clone(),
        upstream: dir.path().join("missing.sock"),
        name: "h".into(),
        level: None,
        max_body: None,
        socket_mode: Some("0600".into()),
    };
    let p = Proxy::bind(&cfg, keep).unwrap();
    std::thread::spawn(move || p.serve(Arc::new(AtomicBool::new(false))));
    let mut c = UnixStream::connect(&listen).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert!(resp.contains("unreachable"));
    // A regular file where the socket should go is refused, not deleted.
    let file = dir.path().join("important");
    std::fs::write(&file, b"keep me").unwrap();
    let bad = DockerProxyConfig {
        listen: file.clone(),
        ..cfg
    };
    assert!(Proxy::bind(&bad, Arc::new(Keep::default())).is_err());
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    // Config errors name the field.
    let odd = DockerProxyConfig {
        socket_mode: Some("rwx".into()),
        level: Some("Everything".into()),
        ..bad
    };
    let problems = odd.check("sources[0].docker_proxy").join("; ");
    assert!(
        problems.contains("sources[0].docker_proxy.socket_mode"),
        "{problems}"
    );
    assert!(
        problems.contains("sources[0].docker_proxy.level"),
        "{problems}"
    );
}
