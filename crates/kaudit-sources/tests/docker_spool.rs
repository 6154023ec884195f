//! The standalone proxy's spool: records survive a refused delivery and a
//! restart (reopen) until the server answered 200; after that they are not
//! sent again, and the spool file is emptied.

use kaudit_event::{Level, MicroTime, Stage};
use kaudit_sources::docker::map::CallRecord;
use kaudit_sources::docker::spool::{Spool, SpoolTarget};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

fn record(i: u32) -> kaudit_event::Event {
    CallRecord {
        audit_id: format!("00000000-0000-4000-8000-{i:012}"),
        host: "build-02".into(),
        mode: "proxy".into(),
        method: "GET".into(),
        uri: "/v1.41/containers/json".into(),
        received: Some(MicroTime(1_000_000 + i64::from(i))),
        stage: Some(Stage::ResponseComplete),
        status: Some(200),
        ..CallRecord::default()
    }
    .to_event(Level::Metadata)
}

/// A server answering 503 to the first `fail` requests, then 200; it keeps
/// every body it accepted.
fn server(fail: usize) -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for (n, c) in l.incoming().enumerate() {
            let Ok(c) = c else { continue };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut len = 0;
            let mut first = String::new();
            r.read_line(&mut first).unwrap();
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length: ") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let mut w = c;
            if n < fail {
                w.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                    .unwrap();
            } else {
                assert!(
                    first.starts_with("POST /api/v1/ingest/k8s?cluster=build-02 "),
                    "{first}"
                );
                g.lock().unwrap().push(String::from_utf8(body).unwrap());
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                    .unwrap();
            }
        }
    });
    (addr, got)
}

#[test]
fn records_stay_until_acknowledged_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, got) = server(1);
    let to = SpoolTarget::parse(&format!("http://{addr}"), "build-02", None).unwrap();
    let sp = Spool::open(dir.path()).unwrap();
    sp.append(&[record(1), record(2), record(3)]).unwrap();
    assert!(sp.send_once(&to).is_err(), "503 is not an acknowledgement");
    assert_eq!(sp.acked(), 0);
    // A restart before the acknowledgement: everything is still there.
    drop(sp);
    let sp = Spool::open(dir.path()).unwrap();
    assert!(sp.backlog() > 0);
    assert_eq!(sp.send_once(&to).unwrap(), 3);
    assert_eq!(sp.backlog(), 0);
    // Nothing is sent twice, and the file is emptied once all went.
    assert_eq!(sp.send_once(&to).unwrap(), 0);
    assert_eq!(
        std::fs::metadata(dir.path().join("spool.jsonl"))
            .unwrap()
            .len(),
        0
    );
    drop(sp);
    let sp = Spool::open(dir.path()).unwrap();
    assert_eq!(sp.send_once(&to).unwrap(), 0);
    sp.append(&[record(4)]).unwrap();
    assert_eq!(sp.send_once(&to).unwrap(), 1);
    let bodies = got.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    let first: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(first["kind"], "EventList");
    let ids: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["auditID"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "00000000-0000-4000-8000-000000000001",
            "00000000-0000-4000-8000-000000000002",
            "00000000-0000-4000-8000-000000000003"
        ]
    );
    assert!(bodies[1].contains("000000000004"));
    assert!(SpoolTarget::parse("https://x", "h", None).is_err());
}
