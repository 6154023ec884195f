//! The Docker events source against a scripted daemon that keeps Docker's
//! semantics (`since` is inclusive, a buffer of past events, live events
//! after): across a kaudit restart (new process state: a fresh dedupe
//! window, the position from disk) and a daemon restart (the stream drops),
//! every event is stored exactly once, in order, and resumption asks for
//! `since=<last timeNano>`.

use kaudit_metrics::Metrics;
use kaudit_sources::dedupe::DedupeWindow;
use kaudit_sources::docker::DockerEventsConfig;
use kaudit_sources::quarantine::Quarantine;
use kaudit_sources::{
    EventLog, IngestRecord, Ingestor, Limits, LogError, SourceConfig, SourceContext,
};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct VecLog(Mutex<Vec<IngestRecord>>);

impl EventLog for VecLog {
    fn append(&self, records: Vec<IngestRecord>) -> Result<(), LogError> {
        self.0.lock().unwrap().extend(records);
        Ok(())
    }
}

#[derive(Default)]
struct Daemon {
    events: Mutex<Vec<(i64, String)>>,
    sinces: Mutex<Vec<String>>,
    /// Bumped to drop every open stream (a daemon restart).
    generation: AtomicUsize,
}

fn event(nano: i64, action: &str, id: &str) -> (i64, String) {
    (
        nano,
        format!(
            r#"{{"status":"{action}","id":"{id}","Type":"container","Action":"{action}","Actor":{{"ID":"{id}","Attributes":{{"name":"n-{id}"}}}},"scope":"local","time":{},"timeNano":{nano}}}"#,
            nano / 1_000_000_000
        ),
    )
}

fn serve(path: &Path, d: Arc<Daemon>) {
    let l = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let d = d.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut first = String::new();
                r.read_line(&mut first).unwrap();
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                        break;
                    }
                }
                let target = first.split(' ').nth(1).unwrap_or("").to_string();
                let since = target
                    .split_once("since=")
                    .map(|(_, s)| s.to_string())
                    .unwrap_or_default();
                d.sinces.lock().unwrap().push(since.clone());
                let since_nano = since.split_once('.').map_or(0, |(s, n)| {
                    s.parse::<i64>().unwrap() * 1_000_000_000 + n.parse::<i64>().unwrap()
                });
                let mut w = c;
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
                let gen = d.generation.load(Ordering::SeqCst);
                // Buffered events at or after `since` (only when asked), then live ones.
                let mut sent = if since.is_empty() {
                    d.events.lock().unwrap().len()
                } else {
                    0
                };
                loop {
                    if d.generation.load(Ordering::SeqCst) != gen {
                        return;
                    }
                    let evs = d.events.lock().unwrap().clone();
                    while sent < evs.len() {
                        let (nano, text) = &evs[sent];
                        sent += 1;
                        if *nano < since_nano {
                            continue;
                        }
                        let line = format!("{text}\n");
                        if w.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())
                            .is_err()
                        {
                            return;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
        }
    });
}

fn run_source(
    cfg: &SourceConfig,
    data: &Path,
    log: Arc<VecLog>,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let metrics = Arc::new(Metrics::default());
    let ctx = SourceContext::new(data, metrics.clone());
    let src = cfg.build(0, &ctx).unwrap();
    let ingest = Arc::new(Ingestor::new(
        log,
        Arc::new(Quarantine::open(data).unwrap()),
        DedupeWindow::new(Duration::from_secs(600), 10_000),
        metrics,
        Limits::default(),
        None,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    (stop, std::thread::spawn(move || src.run(ingest, s)))
}

fn wait_len(log: &VecLog, n: usize) {
    for _ in 0..500 {
        if log.0.lock().unwrap().len() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("wanted {n} records, have {}", log.0.lock().unwrap().len());
}

#[test]
fn restarts_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let daemon = Arc::new(Daemon::default());
    serve(&sock, daemon.clone());
    let cfg: SourceConfig = SourceConfig::Docker(DockerEventsConfig {
        host: format!("unix://{}", sock.display()),
        name: "build-01".into(),
    });
    let data = dir.path().join("data");
    let log = Arc::new(VecLog::default());

    // First run: three events, two in the same nanosecond.
    let (stop, h) = run_source(&cfg, &data, log.clone());
    std::thread::sleep(Duration::from_millis(300));
    {
        let mut e = daemon.events.lock().unwrap();
        e.push(event(1_700_000_000_000_000_100, "create", "a"));
        e.push(event(1_700_000_000_000_000_200, "start", "a"));
        e.push(event(1_700_000_000_000_000_200, "create", "b"));
    }
    wait_len(&log, 3);
    stop.store(true, Ordering::SeqCst);
    h.join().unwrap();

    // kaudit is down: the daemon goes on.
    daemon
        .events
        .lock()
        .unwrap()
        .push(event(1_700_000_000_000_000_300, "die", "a"));

    // Second run (fresh dedupe window): only the new event.
    let (stop, h) = run_source(&cfg, &data, log.clone());
    wait_len(&log, 4);
    // The daemon restarts: open streams drop, then a new event.
    daemon.generation.fetch_add(1, Ordering::SeqCst);
    daemon
        .events
        .lock()
        .unwrap()
        .push(event(1_700_000_000_000_000_400, "destroy", "a"));
    wait_len(&log, 5);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    h.join().unwrap();

    let recs = log.0.lock().unwrap();
    let got: Vec<(String, String)> = recs
        .iter()
        .map(|r| {
            (
                r.event.verb().to_string(),
                r.event.object_ref().unwrap().name.clone(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("create", "n-a"),
        ("start", "n-a"),
        ("create", "n-b"),
        ("die", "n-a"),
        ("destroy", "n-a"),
    ]
    .iter()
    .map(|(v, n)| (v.to_string(), n.to_string()))
    .collect();
    assert_eq!(got, want, "each event once, in order");
    assert!(recs.iter().all(|r| r.cluster == "build-01"));
    let sinces = daemon.sinces.lock().unwrap().clone();
    assert_eq!(sinces[0], "", "first start follows from now");
    assert!(
        sinces.contains(&"1700000000.000000200".to_string()),
        "{sinces:?}"
    );
    assert!(
        sinces.contains(&"1700000000.000000300".to_string()),
        "{sinces:?}"
    );
}
