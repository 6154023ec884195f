//! The webhook as kube-apiserver and misbehaving clients meet it: a real
//! server on 127.0.0.1 over the real store, one test per error path.

use kaudit_event::{
    encode_event_list, EventDoc, Level, MicroTime, ObjectRef, ResponseStatus, Stage, UserInfo,
};
use kaudit_server::config::{ServerConfig, TlsConfig};
use kaudit_server::serve::{run, RunOptions};
use kaudit_store::{Store, StoreOptions};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

struct Server {
    addrs: Vec<(String, SocketAddr)>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), kaudit_server::serve::ServeError>>>,
    data: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    fn start(mut cfg: ServerConfig, dir: Option<tempfile::TempDir>) -> Server {
        if cfg.listen.is_some() {
            cfg.listen = Some("127.0.0.1:0".parse().unwrap());
        }
        cfg.ingest.min_free_disk = 0;
        let data = cfg.data.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let opts = RunOptions {
            on_ready: Some(Arc::new(move |a: &[(String, SocketAddr)]| {
                let _ = tx.lock().unwrap().send(a.to_vec());
            })),
            ..Default::default()
        };
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || run(cfg, opts, s2));
        let addrs = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server did not start");
        Server {
            addrs,
            stop,
            thread: Some(thread),
            data,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        let (_, a) = self.addrs.iter().find(|(s, _)| s == "http").unwrap();
        format!("http://{a}{path}")
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
    }

    /// Every stored event as (cluster, bytes), read back from the store.
    fn stored(&mut self) -> Vec<(String, Vec<u8>)> {
        self.stop();
        read_store(&self.data)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_store(data: &Path) -> Vec<(String, Vec<u8>)> {
    let store = Store::open(
        data,
        StoreOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let mut out = Vec::new();
    store
        .read(0..store.len(), &mut |_, leaf| {
            out.push((leaf.cluster.to_string(), leaf.event.to_vec()));
            true
        })
        .unwrap();
    out
}

fn config() -> (ServerConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        data: dir.path().join("data"),
        ..Default::default()
    };
    (cfg, dir)
}

fn doc(id: &str) -> EventDoc {
    EventDoc {
        level: Level::Metadata,
        audit_id: id.into(),
        stage: Some(Stage::ResponseComplete),
        request_uri: "/api/v1/namespaces/default/pods/web".into(),
        verb: "get".into(),
        user: UserInfo {
            username: "alice".into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        },
        source_ips: vec!["10.0.0.1".into()],
        user_agent: "kubectl/v1.31.0".into(),
        object_ref: Some(ObjectRef {
            resource: "pods".into(),
            namespace: "default".into(),
            name: "web".into(),
            api_version: "v1".into(),
            ..Default::default()
        }),
        response_status: Some(ResponseStatus::new(200, "", "", "")),
        request_received_timestamp: Some(MicroTime(1_767_000_000_000_000)),
        stage_timestamp: Some(MicroTime(1_767_000_000_002_000)),
        ..Default::default()
    }
}

fn batch(prefix: &str, n: usize) -> Vec<u8> {
    let docs: Vec<EventDoc> = (0..n).map(|i| doc(&format!("{prefix}-{i}"))).collect();
    encode_event_list(docs.iter())
}

fn post(url: &str, body: Vec<u8>) -> (u16, Value) {
    let c = reqwest::blocking::Client::new();
    let r = c
        .post(url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

#[test]
fn batches_are_stored_once_even_when_resent() {
    let (cfg, dir) = config();
    let mut s = Server::start(cfg, Some(dir));
    let url = s.url("/api/v1/ingest/k8s");
    let (st, body) = post(&url, batch("a", 400));
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["accepted"], 400);
    assert_eq!(body["quarantined"].as_array().unwrap().len(), 0);
    // The apiserver resends the same batch after an error it saw.
    let (st, body) = post(&url, batch("a", 400));
    assert_eq!(st, 200);
    assert_eq!(body["accepted"], 400);
    assert_eq!(body["duplicates"], 400);
    // Falco's alias works the same.
    let (st, _) = post(&s.url("/k8s-audit"), batch("b", 3));
    assert_eq!(st, 200);
    let metrics = reqwest::blocking::get(s.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("kaudit_events_stored_total{cluster=\"default\"} 403"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kaudit_dedupe_hits_total{cluster=\"default\"} 400"),
        "{metrics}"
    );
    let stored = s.stored();
    assert_eq!(stored.len(), 403);
    assert_eq!(
        stored[0].1,
        doc("a-0").encode(),
        "stored bytes are the exact v1 line"
    );
    assert_eq!(stored[0].0, "default");
}

#[test]
fn bad_items_are_quarantined_and_the_good_ones_stored() {
    let (cfg, dir) = config();
    let mut s = Server::start(cfg, Some(dir));
    let good = String::from_utf8(doc("g-1").encode()).unwrap();
    let body = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{good},{{"kind":0}},{{"auditID":"x","stage":"Nope","level":"Metadata"}}]}}"#
    );
    let (st, resp) = post(&s.url("/api/v1/ingest/k8s"), body.into_bytes());
    assert_eq!(st, 200, "{resp}");
    assert_eq!(resp["accepted"], 1);
    let q = resp["quarantined"].as_array().unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q[0]["index"], 1);
    assert!(
        q[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not a Kubernetes audit event"),
        "{resp}"
    );
    assert_eq!(q[1]["index"], 2);
    assert!(
        q[1]["reason"].as_str().unwrap().contains(".stage"),
        "{resp}"
    );
    let data = s.data.clone();
    assert_eq!(s.stored().len(), 1);
    let quarantined = kaudit_sources::quarantine::Quarantine::open(&data)
        .unwrap()
        .list()
        .unwrap();
    assert_eq!(quarantined.len(), 2);
    assert_eq!(quarantined[0].bytes(), br#"{"kind":0}"#);
}

#[test]
fn strict_credentials_get_400_for_the_whole_batch() {
    let (mut cfg, dir) = config();
    cfg.auth.tokens = serde_json::from_str(
        r#"[{"name":"ci","token":"strict-token-0123456789","cluster":"ci","strict":true}]"#,
    )
    .unwrap();
    let mut s = Server::start(cfg, Some(dir));
    let body = format!(
        r#"[{},{{"kind":"Event"}}]"#,
        String::from_utf8(doc("s-1").encode()).unwrap()
    );
    let r = reqwest::blocking::Client::new()
        .post(s.url("/api/v1/ingest/k8s"))
        .bearer_auth("strict-token-0123456789")
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().unwrap();
    assert_eq!(v["invalid"][0]["index"], 1, "{v}");
    assert_eq!(s.stored().len(), 0, "strict mode stores nothing");
}

#[test]
fn malformed_bodies_and_protocol_errors_get_json_errors() {
    let (mut cfg, dir) = config();
    cfg.ingest.max_body = 64 << 10;
    cfg.ingest.max_event = 8 << 10;
    let mut s = Server::start(cfg, Some(dir));
    let url = s.url("/api/v1/ingest/k8s");
    let (st, v) = post(&url, b"this is not json".to_vec());
    assert_eq!(st, 400);
    assert!(v["error"].as_str().unwrap().contains("invalid JSON"), "{v}");
    assert_eq!(v["status"], 400);
    let (st, v) = post(&url, br#"{"kind":"Pod","apiVersion":"v1"}"#.to_vec());
    assert_eq!(st, 400);
    assert!(
        v["error"].as_str().unwrap().contains("kind is \"Pod\""),
        "{v}"
    );

    // Over the body limit, declared up front: 413 without reading the body.
    let (st, v) = post(&url, vec![b' '; 65 << 10]);
    assert_eq!(st, 413, "{v}");
    // A gzip body that inflates beyond the limit: 413.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 1 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 64 << 10);
    let r = reqwest::blocking::Client::new()
        .post(&url)
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(bomb)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // A good gzip body is accepted.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&batch("z", 5)).unwrap();
    let r = reqwest::blocking::Client::new()
        .post(&url)
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Wrong content type: 415.
    let r = reqwest::blocking::Client::new()
        .post(&url)
        .header("Content-Type", "text/plain")
        .body(batch("t", 1))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let v: Value = r.json().unwrap();
    assert!(v["error"].as_str().unwrap().contains("text/plain"));

    // An event over the per-event limit is stored truncated, never rejected.
    let mut big = doc("big-1");
    big.level = Level::RequestResponse;
    let filler = "x".repeat(20 << 10);
    big.request_object =
        serde_json::value::RawValue::from_string(format!(r#"{{"data":{{"k":"{filler}"}}}}"#)).ok();
    let (st, v) = post(&url, encode_event_list([&big]));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["truncated"], 1);
    let stored = s.stored();
    let last = String::from_utf8(stored.last().unwrap().1.clone()).unwrap();
    assert!(
        last.contains(r#""audit.k8s.io/truncated":"true""#),
        "{last}"
    );
    assert!(!last.contains("requestObject"));
}

#[test]
fn tokens_clusters_and_roles() {
    let (mut cfg, dir) = config();
    cfg.auth.tokens = serde_json::from_str(
        r#"[{"name":"prod","token":"prod-token-0123456789","cluster":"prod","clusters":["prod-eu"]},
            {"name":"ui","token":"read-token-0123456789","role":"reader"}]"#,
    )
    .unwrap();
    let mut s = Server::start(cfg, Some(dir));
    let send = |url: String, token: Option<&str>| {
        let mut r = reqwest::blocking::Client::new()
            .post(url)
            .header("Content-Type", "application/json")
            .body(batch("t", 2));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().unwrap();
        let st = r.status().as_u16();
        (st, r.json::<Value>().unwrap())
    };
    let base = s.url("/api/v1/ingest/k8s");
    let (st, v) = send(base.clone(), None);
    assert_eq!(st, 401, "{v}");
    let (st, _) = send(base.clone(), Some("wrong-token-0123456789"));
    assert_eq!(st, 401);
    let (st, v) = send(base.clone(), Some("read-token-0123456789"));
    assert_eq!(st, 403, "{v}");
    let (st, _) = send(base.clone(), Some("prod-token-0123456789"));
    assert_eq!(st, 200);
    let (st, _) = send(
        format!("{base}?cluster=prod-eu"),
        Some("prod-token-0123456789"),
    );
    assert_eq!(st, 200);
    let (st, v) = send(
        format!("{base}?cluster=staging"),
        Some("prod-token-0123456789"),
    );
    assert_eq!(st, 403);
    assert!(v["error"].as_str().unwrap().contains("staging"));
    let clusters: Vec<String> = s.stored().into_iter().map(|(c, _)| c).collect();
    assert_eq!(clusters, ["prod", "prod", "prod-eu", "prod-eu"]);
}

#[test]
fn a_slow_client_and_a_garbage_client_do_not_stall_others() {
    let (cfg, dir) = config();
    let mut s = Server::start(cfg, Some(dir));
    let (_, addr) = s.addrs[0];
    // A client that declares a body and trickles it.
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.write_all(b"POST /api/v1/ingest/k8s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"kind\":")
        .unwrap();
    // A client that sends garbage.
    let mut garbage = std::net::TcpStream::connect(addr).unwrap();
    garbage
        .write_all(&[0u8, 1, 2, 255, 13, 10, 13, 10])
        .unwrap();
    let mut sink = Vec::new();
    garbage
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = garbage.read_to_end(&mut sink);
    // Everyone else is served meanwhile.
    let t = std::time::Instant::now();
    for i in 0..5 {
        let (st, _) = post(&s.url("/api/v1/ingest/k8s"), batch(&format!("ok{i}"), 50));
        assert_eq!(st, 200);
    }
    assert!(t.elapsed() < Duration::from_secs(10));
    drop(slow);
    assert_eq!(s.stored().len(), 250);
}

#[test]
fn health_and_readiness() {
    let (cfg, dir) = config();
    let s = Server::start(cfg, Some(dir));
    let r = reqwest::blocking::get(s.url("/healthz")).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = reqwest::blocking::get(s.url("/readyz")).unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn falco_traces_and_a_generated_stream_replayed_as_an_apiserver_would_are_stored_exactly_once() {
    let conf = std::env::var_os("KAUDIT_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
        });
    let traces = conf.join("falco/traces");
    assert!(
        traces.is_dir(),
        "conformance data missing at {}",
        traces.display()
    );
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(&traces).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        for ev in kaudit_event::reader::EventReader::open(&p, Default::default())
            .unwrap()
            .flatten()
        {
            docs.push(ev);
        }
    }
    assert!(docs.len() >= 50);
    // And a generated stream, as a busy cluster's apiserver would send it.
    let mut gc = kaudit_gen::GenConfig::new(5);
    gc.events = Some(3000);
    docs.extend(
        kaudit_gen::Generator::new(gc)
            .unwrap()
            .map(|g| g.event().unwrap()),
    );
    let (cfg, dir) = config();
    let mut s = Server::start(cfg, Some(dir));
    let url = s.url("/api/v1/ingest/k8s");
    let mut expected = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for chunk in docs.chunks(50) {
        let body = encode_event_list(chunk.iter().map(|e| e.doc()));
        let (st, _) = post(&url, body.clone());
        assert_eq!(st, 200);
        // The connection "dropped" before the apiserver saw the answer: it resends.
        let (st, v) = post(&url, body);
        assert_eq!(st, 200);
        assert_eq!(v["duplicates"].as_u64().unwrap() as usize, chunk.len());
        for e in chunk {
            // Some traces repeat an event byte for byte: it is stored once
            // (events that only share an auditID and stage are all kept).
            if seen.insert(e.bytes().to_vec()) {
                expected.push(e.bytes().to_vec());
            }
        }
    }
    let stored: Vec<Vec<u8>> = s.stored().into_iter().map(|(_, b)| b).collect();
    assert_eq!(stored.len(), expected.len());
    assert_eq!(stored, expected);
}

#[test]
fn tls_with_client_certificates_and_tokens() {
    // A CA, a server certificate and a client certificate, made here.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kaudit test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params.clone(), &ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut cp = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    cp.distinguished_name
        .push(rcgen::DnType::CommonName, "apiserver-eu");
    let client_cert = cp.signed_by(&client_key, &issuer).unwrap();
    // Signed by the same CA, but no auth.client_certs entry names it.
    let stranger_key = rcgen::KeyPair::generate().unwrap();
    let mut sp = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    sp.distinguished_name
        .push(rcgen::DnType::CommonName, "someone-else");
    let stranger_cert = sp.signed_by(&stranger_key, &issuer).unwrap();

    let (mut cfg, dir) = config();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    std::fs::write(pki.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(pki.join("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(pki.join("server-key.pem"), server_key.serialize_pem()).unwrap();
    cfg.tls = Some(TlsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: Some(pki.join("server.pem")),
        key: Some(pki.join("server-key.pem")),
        client_ca: Some(pki.join("ca.pem")),
        names: vec![],
    });
    cfg.listen = None;
    cfg.auth.client_certs =
        serde_json::from_str(r#"[{"common_name":"apiserver-eu","cluster":"eu"}]"#).unwrap();
    cfg.auth.tokens =
        serde_json::from_str(r#"[{"name":"us","token":"us-token-0123456789","cluster":"us"}]"#)
            .unwrap();
    let mut s = Server::start(cfg, Some(dir));
    let (_, addr) = s.addrs.iter().find(|(k, _)| k == "https").unwrap().clone();
    let url = format!("https://localhost:{}/api/v1/ingest/k8s", addr.port());
    let ca_cert = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
    let identity_pem = format!("{}{}", client_cert.pem(), client_key.serialize_pem());
    let with_cert = reqwest::blocking::Client::builder()
        .add_root_certificate(ca_cert.clone())
        .identity(reqwest::Identity::from_pem(identity_pem.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let r = with_cert
        .post(&url)
        .header("Content-Type", "application/json")
        .body(batch("m", 3))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text());
    let plain = reqwest::blocking::Client::builder()
        .add_root_certificate(ca_cert.clone())
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let r = plain
        .post(&url)
        .header("Content-Type", "application/json")
        .body(batch("n", 2))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().unwrap();
    assert_eq!(body["status"], 401, "{body}");
    // A certificate the CA signed but no client_certs entry names: known, not allowed.
    let stranger_pem = format!("{}{}", stranger_cert.pem(), stranger_key.serialize_pem());
    let stranger = reqwest::blocking::Client::builder()
        .add_root_certificate(ca_cert.clone())
        .identity(reqwest::Identity::from_pem(stranger_pem.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .build()
        .unwrap();
    for path in ["/api/v1/ingest/k8s", "/api/v1/verify"] {
        let u = format!("https://localhost:{}{path}", addr.port());
        let r = stranger
            .post(&u)
            .header("Content-Type", "application/json")
            .body(batch("s", 1))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{path}");
        let body: Value = r.json().unwrap();
        assert_eq!(body["status"], 403, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("someone-else"),
            "{body}"
        );
    }
    let r = plain
        .post(&url)
        .bearer_auth("us-token-0123456789")
        .header("Content-Type", "application/json")
        .body(batch("n", 2))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // A client that does not trust our CA cannot talk to us at all.
    let untrusting = reqwest::blocking::Client::builder()
        .resolve("localhost", addr)
        .build()
        .unwrap();
    assert!(untrusting.post(&url).body(batch("x", 1)).send().is_err());
    let clusters: Vec<String> = s.stored().into_iter().map(|(c, _)| c).collect();
    assert_eq!(clusters, ["eu", "eu", "eu", "us", "us"]);
}

#[test]
fn file_sources_are_followed_through_rotation() {
    let (mut cfg, dir) = config();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let active = logs.join("audit.log");
    let write = |path: &Path, ids: std::ops::Range<usize>| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for i in ids {
            f.write_all(&doc(&format!("file-{i}")).encode()).unwrap();
            f.write_all(b"\n").unwrap();
        }
    };
    write(&active, 0..100);
    cfg.sources = vec![kaudit_sources::SourceConfig::File(
        kaudit_sources::file::FileSourceConfig {
            path: active.clone(),
            cluster: "filec".into(),
        },
    )];
    let mut s = Server::start(cfg, Some(dir));
    let wait_for = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let m = reqwest::blocking::get(s.url("/metrics"))
                .unwrap()
                .text()
                .unwrap();
            if m.contains(&format!(
                "kaudit_events_stored_total{{cluster=\"filec\"}} {n}\n"
            )) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never reached {n}:\n{m}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(100);
    // lumberjack: rename the active file, start a new one.
    write(&active, 100..120);
    std::fs::rename(&active, logs.join("audit-2026-01-02T15-04-05.000.log")).unwrap();
    write(&active, 120..150);
    wait_for(150);
    let stored = s.stored();
    let ids: Vec<String> = stored
        .iter()
        .map(|(_, b)| {
            kaudit_event::Event::from_json(b)
                .unwrap()
                .audit_id()
                .to_string()
        })
        .collect();
    let want: Vec<String> = (0..150).map(|i| format!("file-{i}")).collect();
    assert_eq!(ids, want);
}

#[test]
fn overload_gets_429_and_a_full_disk_503_never_a_silent_loss() {
    // A tiny in-flight budget: concurrent batches beyond it are refused with Retry-After.
    let (mut cfg, dir) = config();
    cfg.ingest.max_inflight = 64 << 10;
    let mut s = Server::start(cfg, Some(dir));
    let url = s.url("/api/v1/ingest/k8s");
    let stored_ok = Arc::new(std::sync::Mutex::new(0usize));
    let saw_429 = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (url, stored_ok, saw_429) = (url.clone(), stored_ok.clone(), saw_429.clone());
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::new();
                for i in 0..10 {
                    let r = c
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .body(batch(&format!("o{t}-{i}"), 200))
                        .send()
                        .unwrap();
                    match r.status().as_u16() {
                        200 => *stored_ok.lock().unwrap() += 200,
                        429 => {
                            assert!(r.headers().get("retry-after").is_some());
                            saw_429.store(true, Ordering::Relaxed);
                        }
                        other => panic!("unexpected {other}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        saw_429.load(Ordering::Relaxed),
        "8 concurrent senders over a 64 KiB budget must see 429"
    );
    let acked = *stored_ok.lock().unwrap();
    assert_eq!(
        s.stored().len(),
        acked,
        "exactly the acknowledged batches are stored"
    );

    // A disk below the free-space minimum: 503 with Retry-After, and not ready.
    let (mut cfg, dir) = config();
    let mut s = Server::start(cfg.clone(), Some(dir));
    s.stop();
    cfg.data = s.data.clone();
    let mut s = {
        let mut c = cfg;
        c.listen = Some("127.0.0.1:0".parse().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        c.ingest.min_free_disk = u64::MAX;
        let data = c.data.clone();
        let s2 = stop.clone();
        let opts = RunOptions {
            on_ready: Some(Arc::new(move |a: &[(String, SocketAddr)]| {
                let _ = tx.lock().unwrap().send(a.to_vec());
            })),
            ..Default::default()
        };
        let thread = std::thread::spawn(move || run(c, opts, s2));
        let addrs = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        Server {
            addrs,
            stop,
            thread: Some(thread),
            data,
            _dir: None,
        }
    };
    let (st, v) = post(&s.url("/api/v1/ingest/k8s"), batch("full", 3));
    assert_eq!(st, 503, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("disk nearly full"),
        "{v}"
    );
    let r = reqwest::blocking::get(s.url("/readyz")).unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(s.stored().len(), 0);
}

#[test]
fn live_detection_alerts_on_every_injected_incident() {
    let (mut cfg, dir) = config();
    let out = dir.path().join("alerts-out.jsonl");
    let (falco_url, falco_bodies) = capture_server();
    let (slack_url, slack_bodies) = capture_server();
    cfg.detect.outputs = vec![
        kaudit_detect::OutputConfig::File { path: out.clone() },
        kaudit_detect::OutputConfig::Webhook(kaudit_detect::AlertWebhookConfig::new(
            falco_url,
            kaudit_detect::AlertFormat::Falco,
        )),
        kaudit_detect::OutputConfig::Webhook(kaudit_detect::AlertWebhookConfig::new(
            slack_url,
            kaudit_detect::AlertFormat::Slack,
        )),
    ];
    let mut gc = kaudit_gen::GenConfig::new(11);
    gc.events = Some(6000);
    gc.clusters = kaudit_gen::default_cluster_names(2);
    gc.spread_incidents();
    let mut generator = kaudit_gen::Generator::new(gc).unwrap();
    let names = generator.cluster_names().to_vec();
    let mut by_cluster: Vec<Vec<kaudit_event::Event>> = vec![Vec::new(); names.len()];
    for g in generator.by_ref() {
        by_cluster[g.cluster].push(g.event().unwrap());
    }
    let incidents = generator.incidents().to_vec();
    assert!(incidents.len() >= 8);
    let s = Server::start(cfg, Some(dir));
    for (i, evs) in by_cluster.iter().enumerate() {
        for chunk in evs.chunks(400) {
            let (st, _) = post(
                &s.url(&format!("/api/v1/ingest/k8s?cluster={}", names[i])),
                encode_event_list(chunk.iter().map(|e| e.doc())),
            );
            assert_eq!(st, 200);
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = reqwest::blocking::get(s.url("/api/v1/alerts?limit=10000"))
            .unwrap()
            .json()
            .unwrap();
        let alerted: std::collections::HashSet<String> = v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["audit_id"].as_str().unwrap().to_string())
            .collect();
        let missing: Vec<_> = incidents
            .iter()
            .filter(|inc| !inc.audit_ids.iter().any(|id| alerted.contains(id)))
            .map(|inc| inc.kind.as_str())
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "incidents without an alert: {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Notifications went to the file output in Falco's JSON shape, and to both webhooks;
    // wait for the detector to finish notifying (counts equal and stable).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = (usize::MAX, 0, 0);
    loop {
        let n = std::fs::read_to_string(&out)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        let now = (
            n,
            falco_bodies.lock().unwrap().len(),
            slack_bodies.lock().unwrap().len(),
        );
        if now.0 > 0 && now.0 == now.1 && now.1 == now.2 && now == last {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "notifications did not settle: {now:?}"
        );
        last = now;
        std::thread::sleep(Duration::from_millis(500));
    }
    let text = std::fs::read_to_string(&out).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for k in [
        "time",
        "rule",
        "priority",
        "output",
        "output_fields",
        "source",
        "tags",
        "hostname",
    ] {
        assert!(first.get(k).is_some(), "missing {k} in {first}");
    }
    assert!(first["output_fields"]["ka.auditid"].is_string());
    assert!(first["output_fields"]["kaudit.cluster"].is_string());
    // The same notifications reached both webhooks, in their formats.
    let falco = falco_bodies.lock().unwrap().clone();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(falco.len(), lines.len(), "one POST per notification");
    let posted: Value = serde_json::from_str(&falco[0]).unwrap();
    assert_eq!(posted["rule"], first["rule"]);
    let slack = slack_bodies.lock().unwrap().clone();
    assert_eq!(slack.len(), lines.len());
    let msg: Value = serde_json::from_str(&slack[0]).unwrap();
    assert!(
        msg["text"]
            .as_str()
            .unwrap()
            .contains(first["rule"].as_str().unwrap()),
        "{msg}"
    );
    // Detection (and the indexer) took the events parsed from the live feed
    // rather than reading them back from disk.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = reqwest::blocking::get(s.url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        let from_memory = m
            .lines()
            .find_map(|l| l.strip_prefix("kaudit_feed_records_total{from=\"memory\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if from_memory >= 6000.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{m}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Reader role is enforced like the rest of the API when auth is on: covered by auth tests.
}

/// A minimal HTTP/1.1 server on 127.0.0.1 that answers 200 to every POST and
/// keeps the bodies, for checking what kaudit sends.
fn capture_server() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let b2 = bodies.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let bodies = b2.clone();
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0u8; len];
                    reader.read_exact(&mut body).unwrap();
                    bodies
                        .lock()
                        .unwrap()
                        .push(String::from_utf8(body).unwrap());
                    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .unwrap();
                }
            });
        }
    });
    (url, bodies)
}

fn raw_request(addr: SocketAddr, req: &[u8]) -> String {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(req).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_small_gzip_body_of_millions_of_items_is_refused_early_and_quarantines_nothing() {
    let (cfg, dir) = config();
    let s = Server::start(cfg, Some(dir));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[")
        .unwrap();
    for _ in 0..2_000_000 - 1 {
        gz.write_all(b"{},").unwrap();
    }
    gz.write_all(b"{}]}").unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let t = std::time::Instant::now();
    let r = reqwest::blocking::Client::new()
        .post(s.url("/api/v1/ingest/k8s"))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(bomb)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    assert_eq!(status, 413, "{text}");
    assert!(
        text.contains("10000") && text.contains("max_batch_items"),
        "{text}"
    );
    assert!(text.len() < 1000, "a short answer");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let q = kaudit_sources::quarantine::Quarantine::open(&s.data).unwrap();
    assert_eq!(q.count(), 0, "nothing quarantined");
    // Within the cap, every bad item is kept, and the answer lists the first
    // 100 reasons with the count of all.
    let mut body =
        b"{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[".to_vec();
    body.extend(std::iter::repeat_n(&b"{},"[..], 999).flatten());
    body.extend_from_slice(&doc("ok-1").encode());
    body.extend_from_slice(b"]}");
    let (st, v) = post(&s.url("/api/v1/ingest/k8s"), body);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["accepted"], 1);
    assert_eq!(v["quarantined_count"], 999);
    assert_eq!(v["quarantined"].as_array().unwrap().len(), 100);
    assert_eq!(q.count(), 0, "(a fresh handle counts at open)");
    let q = kaudit_sources::quarantine::Quarantine::open(&s.data).unwrap();
    assert_eq!(q.count(), 999);
}

#[test]
fn a_full_quarantine_refuses_batches_with_bad_items_with_507() {
    let (mut cfg, dir) = config();
    cfg.ingest.max_quarantine = 4 << 10;
    let mut s = Server::start(cfg, Some(dir));
    let url = s.url("/api/v1/ingest/k8s");
    let bad = |id: &str| {
        format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{},{{"pad":"{}"}}]}}"#,
            String::from_utf8(doc(id).encode()).unwrap(),
            "x".repeat(1500)
        )
        .into_bytes()
    };
    assert_eq!(post(&url, bad("q1")).0, 200);
    assert_eq!(post(&url, bad("q2")).0, 200);
    let r = reqwest::blocking::Client::new()
        .post(&url)
        .header("Content-Type", "application/json")
        .body(bad("q3"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 507);
    assert!(r.headers().get("retry-after").is_some());
    let v: Value = r.json().unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("ingest.max_quarantine"),
        "{v}"
    );
    // A clean batch is still taken.
    assert_eq!(post(&url, batch("clean", 2)).0, 200);
    let ids: Vec<String> = s
        .stored()
        .into_iter()
        .map(|(_, b)| String::from_utf8(b).unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        4,
        "q1, q2 and the clean pair; q3 was not half-stored"
    );
    assert!(!ids.iter().any(|e| e.contains("\"q3\"")));
}

#[test]
fn an_item_with_invalid_utf8_is_quarantined_and_the_rest_stored() {
    let (cfg, dir) = config();
    let mut s = Server::start(cfg, Some(dir));
    let bad: &[u8] = b"{\"auditID\":\"u\xff\xfe\",\"stage\":\"ResponseComplete\"}";
    let mut body =
        b"{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[".to_vec();
    body.extend_from_slice(&doc("u-1").encode());
    body.push(b',');
    body.extend_from_slice(bad);
    body.push(b',');
    body.extend_from_slice(&doc("u-2").encode());
    body.extend_from_slice(b"]}");
    let (st, v) = post(&s.url("/api/v1/ingest/k8s"), body);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["accepted"], 2);
    assert_eq!(v["quarantined"][0]["index"], 1);
    assert!(
        v["quarantined"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("UTF-8"),
        "{v}"
    );
    let data = s.data.clone();
    assert_eq!(s.stored().len(), 2);
    let q = kaudit_sources::quarantine::Quarantine::open(&data)
        .unwrap()
        .list()
        .unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].bytes(), bad, "kept byte for byte");
}

#[test]
fn cluster_names_are_validated_and_their_metric_labels_bounded() {
    let (cfg, dir) = config();
    let s = Server::start(cfg, Some(dir));
    let base = s.url("/api/v1/ingest/k8s");
    let long = "a".repeat(254);
    for bad in [long.as_str(), "a%20b", "-x", "x/y"] {
        let r = reqwest::blocking::Client::new()
            .post(format!("{base}?cluster={bad}"))
            .header("Content-Type", "application/json")
            .body(batch("c", 1))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{bad}");
        assert!(r.headers().get("retry-after").is_none());
        let v: Value = r.json().unwrap();
        assert!(v["error"].as_str().unwrap().contains("cluster"), "{v}");
    }
    let ok = "a".repeat(253);
    assert_eq!(
        post(&format!("{base}?cluster={ok}"), batch("c253", 1)).0,
        200
    );
    // Many distinct clusters: the metrics keep a bounded number of series.
    for i in 0..300 {
        let (st, v) = post(&format!("{base}?cluster=c{i}"), batch(&format!("m{i}"), 1));
        assert_eq!(st, 200, "{v}");
    }
    let metrics = reqwest::blocking::get(s.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("kaudit_events_stored_total{"))
        .count();
    assert!(series <= 257, "{series}");
    assert!(metrics.contains("kaudit_events_stored_total{cluster=\"_other\"}"));
}

#[test]
fn slow_senders_do_not_starve_legitimate_ones() {
    let (cfg, dir) = config();
    let mut s = Server::start(cfg, Some(dir));
    let (_, addr) = s.addrs[0];
    let stop = Arc::new(AtomicBool::new(false));
    // 8 connections declare 64 MiB bodies and send a byte every 2 s.
    let slow: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.write_all(b"POST /api/v1/ingest/k8s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 67108864\r\n\r\n{")
                    .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    let _ = c.write_all(b" ");
                    std::thread::sleep(Duration::from_millis(1800));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..20 {
        let (st, v) = post(
            &s.url("/api/v1/ingest/k8s"),
            batch(&format!("legit{i}"), 100),
        );
        assert_eq!(st, 200, "legitimate ingest {i}: {v}");
    }
    stop.store(true, Ordering::Relaxed);
    for t in slow {
        t.join().unwrap();
    }
    assert_eq!(s.stored().len(), 2000);
}

#[test]
fn slow_bodies_idle_connections_and_connection_floods_are_cut_off() {
    let (mut cfg, dir) = config();
    cfg.limits.body_timeout = Duration::from_secs(1);
    cfg.limits.min_body_rate = 1024;
    cfg.limits.header_read_timeout = Duration::from_secs(1);
    cfg.limits.idle_timeout = Duration::from_secs(1);
    cfg.limits.max_connections_per_ip = 4;
    let s = Server::start(cfg, Some(dir));
    let (_, addr) = s.addrs[0];
    // A body trickled a byte a second: 408 once the grace is over.
    let t = std::time::Instant::now();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"POST /api/v1/ingest/k8s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
        .unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    while t.elapsed() < Duration::from_secs(10) {
        let _ = c.write_all(b" ");
        let mut buf = [0u8; 4096];
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(400)),
        }
    }
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("min_body_rate"), "{got}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(c);
    // Headers that never finish, and a connection that says nothing: closed.
    let t = std::time::Instant::now();
    let r = raw_request(
        addr,
        b"POST /api/v1/ingest/k8s HTTP/1.1\r\nHost: 127.0.0.1\r\n",
    );
    assert!(!r.contains("200 OK"), "{r}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let t = std::time::Instant::now();
    let r = raw_request(addr, b"");
    assert!(r.is_empty() || r.contains("408"), "{r}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Past the per-address cap, new connections get 503 and are closed.
    std::thread::sleep(Duration::from_millis(300));
    let held: Vec<_> = (0..4)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = raw_request(addr, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.contains("max_connections_per_ip"), "{r}");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let r = raw_request(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[test]
fn a_browser_page_cannot_post_events_verify_or_rebind() {
    let (cfg, dir) = config();
    let mut s = Server::start(cfg, Some(dir));
    let (_, addr) = s.addrs[0];
    let c = reqwest::blocking::Client::new();
    let url = s.url("/api/v1/ingest/k8s");
    // A cross-site form post sends no JSON content type.
    let r = c.post(&url).body(batch("nct", 1)).send().unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let r = c
        .post(&url)
        .header("Content-Type", "text/plain")
        .body(batch("nct", 1))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    // A foreign Origin may not change state, on ingest or verify.
    for path in ["/api/v1/ingest/k8s", "/api/v1/verify"] {
        let r = c
            .post(s.url(path))
            .header("Content-Type", "application/json")
            .header("Origin", "https://evil.example")
            .body(batch("origin", 1))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{path}");
        let v: Value = r.json().unwrap();
        assert!(v["error"].as_str().unwrap().contains("Origin"), "{v}");
    }
    // The server's own pages may.
    let r = c
        .post(&url)
        .header("Content-Type", "application/json")
        .header("Origin", format!("http://{addr}"))
        .body(batch("same", 1))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // DNS rebinding: a foreign host name is refused in no-auth mode.
    let r = raw_request(
        addr,
        format!(
            "GET /api/v1/events HTTP/1.1\r\nHost: rebind.evil.example:{}\r\nConnection: close\r\n\r\n",
            addr.port()
        )
        .as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    let r = raw_request(
        addr,
        format!(
            "GET /healthz HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            addr.port()
        )
        .as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(s.stored().len(), 1);
}

/// Runs `serve` with `stop` already set: a config it accepts starts and stops
/// at once (`Ok`), one it refuses never binds anything.
fn refused(cfg: ServerConfig) -> String {
    let stop = Arc::new(AtomicBool::new(true));
    match run(cfg, RunOptions::default(), stop) {
        Err(kaudit_server::serve::ServeError::Config(m)) => m,
        other => panic!("serve started: {other:?}"),
    }
}

#[test]
fn serve_refuses_anonymous_listeners_off_loopback_and_a_client_ca_without_client_certs() {
    // TLS on every interface and nobody named: anyone would be admin.
    let (mut cfg, _dir) = config();
    cfg.listen = None;
    cfg.tls = Some(TlsConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        cert: None,
        key: None,
        client_ca: None,
        names: vec![],
    });
    let m = refused(cfg);
    assert!(
        m.contains("tls.listen") && m.contains("auth.tokens") && m.contains("auth.client_certs"),
        "{m}"
    );
    // Plain HTTP allowed off loopback, no auth.
    let (mut cfg, _dir) = config();
    cfg.listen = Some("0.0.0.0:0".parse().unwrap());
    cfg.allow_insecure_http = true;
    let m = refused(cfg);
    assert!(
        m.contains("listen: 0.0.0.0:0") && m.contains("auth.tokens"),
        "{m}"
    );
    // client_ca on loopback without client_certs: a certificate-less client was anonymous admin.
    let (mut cfg, dir) = config();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "unused").unwrap();
    cfg.listen = None;
    cfg.tls = Some(TlsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: None,
        key: None,
        client_ca: Some(ca),
        names: vec![],
    });
    let m = refused(cfg);
    assert!(
        m.contains("tls.client_ca") && m.contains("auth.client_certs"),
        "{m}"
    );
}

fn managed_server() -> Server {
    let (mut cfg, dir) = config();
    cfg.auth.tokens = serde_json::from_str(
        r#"[{"name":"cloud","token":"cloud-token-0123456789","cluster":"managed"},
            {"name":"ui","token":"read-token-0123456789","role":"reader"}]"#,
    )
    .unwrap();
    Server::start(cfg, Some(dir))
}

fn post_with(url: &str, headers: &[(&str, &str)], body: String) -> (u16, Value) {
    let mut r = reqwest::blocking::Client::new()
        .post(url)
        .header("Content-Type", "application/json");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.body(body).send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn audit_line(id: &str) -> String {
    String::from_utf8(doc(id).encode()).unwrap()
}

#[test]
fn firehose_deliveries_follow_firehose_contract_and_are_stored_once() {
    use base64::Engine;
    let mut s = managed_server();
    let url = s.url("/api/v1/ingest/firehose");
    let payload = serde_json::json!({
        "messageType": "DATA_MESSAGE", "logGroup": "/aws/eks/prod/cluster", "logStream": "kube-apiserver-audit-1",
        "logEvents": [{"id": "1", "timestamp": 1, "message": audit_line("fh-1")}, {"id": "2", "timestamp": 2, "message": audit_line("fh-2")}]
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(payload.to_string().as_bytes()).unwrap();
    let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    let body = serde_json::json!({"requestId": "req-1", "timestamp": 1714557600000u64, "records": [{"data": data}]}).to_string();
    let rid = [("X-Amz-Firehose-Request-Id", "req-1")];
    // No key, a wrong key, a reader's key: refused, in Firehose's reply shape.
    let (st, v) = post_with(&url, &rid, body.clone());
    assert_eq!(st, 401, "{v}");
    assert_eq!(v["requestId"], "req-1");
    assert!(
        v["errorMessage"].is_string() && v["timestamp"].is_u64(),
        "{v}"
    );
    let (st, _) = post_with(
        &url,
        &[rid[0], ("X-Amz-Firehose-Access-Key", "nope")],
        body.clone(),
    );
    assert_eq!(st, 401);
    let (st, _) = post_with(
        &url,
        &[
            rid[0],
            ("X-Amz-Firehose-Access-Key", "read-token-0123456789"),
        ],
        body.clone(),
    );
    assert_eq!(st, 403);
    let key = [
        rid[0],
        ("X-Amz-Firehose-Access-Key", "cloud-token-0123456789"),
    ];
    let (st, v) = post_with(&url, &key, body.clone());
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["requestId", "timestamp"]
    );
    assert_eq!(v["requestId"], "req-1");
    // Firehose retries a delivery it saw fail: nothing is stored twice.
    let (st, _) = post_with(&url, &key, body);
    assert_eq!(st, 200);
    let (st, v) = post_with(&url, &key, "not json".into());
    assert_eq!(st, 400);
    assert!(
        v["errorMessage"].as_str().unwrap().contains("neither"),
        "{v}"
    );
    let stored = s.stored();
    assert_eq!(stored.len(), 2);
    for (cluster, bytes) in &stored {
        assert_eq!(cluster, "managed");
        let ev = kaudit_event::Event::from_json(bytes).unwrap();
        assert_eq!(ev.annotation("kaudit.io/source-format"), Some("eks"));
    }
}

#[test]
fn gke_pubsub_push_is_authenticated_and_stored() {
    use base64::Engine;
    let mut s = managed_server();
    let entry = serde_json::json!({
        "insertId": "ins-1", "timestamp": "2024-01-01T01:00:00Z", "receiveTimestamp": "2024-01-01T01:00:01Z",
        "labels": {"authorization.k8s.io/decision": "allow"},
        "resource": {"type": "k8s_cluster", "labels": {"cluster_name": "gke-1"}},
        "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog", "serviceName": "k8s.io",
            "methodName": "io.k8s.core.v1.secrets.get", "resourceName": "core/v1/namespaces/prod/secrets/db",
            "authenticationInfo": {"principalEmail": "dev@example.com"}, "status": {"code": 7}}
    });
    let push = serde_json::json!({
        "message": {"data": base64::engine::general_purpose::STANDARD.encode(entry.to_string()), "messageId": "1"},
        "subscription": "projects/p/subscriptions/kaudit"
    })
    .to_string();
    let base = s.url("/api/v1/ingest/gke-pubsub");
    let (st, _) = post_with(&base, &[], push.clone());
    assert_eq!(st, 401);
    let (st, _) = post_with(
        &format!("{base}?token=read-token-0123456789"),
        &[],
        push.clone(),
    );
    assert_eq!(st, 403);
    let (st, v) = post_with(
        &format!("{base}?token=cloud-token-0123456789"),
        &[],
        push.clone(),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["accepted"], 1);
    // A bearer token works too; the resend is a duplicate.
    let (st, v) = post_with(
        &base,
        &[("Authorization", "Bearer cloud-token-0123456789")],
        push,
    );
    assert_eq!((st, v["duplicates"].as_u64()), (200, Some(1)));
    let stored = s.stored();
    assert_eq!(stored.len(), 1);
    let ev = kaudit_event::Event::from_json(&stored[0].1).unwrap();
    assert_eq!(
        (ev.verb(), ev.user().username.as_str(), ev.response_code()),
        ("get", "dev@example.com", Some(403))
    );
    assert_eq!(ev.object_ref().unwrap().name, "db");
}

#[test]
fn admission_reviews_are_allowed_after_they_are_stored() {
    let mut s = managed_server();
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "operation": "DELETE", "dryRun": true,
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "namespace": "prod", "name": "web", "userInfo": {"username": "alice"},
            "oldObject": {"kind": "Deployment", "metadata": {"name": "web"}}}
    })
    .to_string();
    let (st, _) = post_with(&s.url("/api/v1/admission"), &[], review.clone());
    assert_eq!(st, 401);
    let (st, _) = post_with(&s.url("/api/v1/admission/wrong-token"), &[], review.clone());
    assert_eq!(st, 401);
    let (st, v) = post_with(
        &s.url("/api/v1/admission/cloud-token-0123456789"),
        &[],
        review,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(v["response"]["allowed"], true);
    let stored = s.stored();
    assert_eq!(stored.len(), 1);
    let ev = kaudit_event::Event::from_json(&stored[0].1).unwrap();
    assert_eq!(
        (ev.verb(), ev.audit_id()),
        ("delete", "705ab4f5-6393-11e8-b7cc-42010a800002")
    );
    assert_eq!(
        ev.request_uri(),
        "/apis/apps/v1/namespaces/prod/deployments/web"
    );
    assert_eq!(ev.annotation("kaudit.io/dry-run"), Some("true"));
    assert!(
        ev.request_received_timestamp().is_some(),
        "received time given"
    );
}
