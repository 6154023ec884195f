//! `kaudit serve` on a full disk: ingest answers 503 and `/readyz` fails
//! while the store cannot write, nothing acknowledged is lost, and once
//! space returns ingest resumes by itself, without a restart. Needs root to
//! mount a small tmpfs (CI runs as root).

mod support;

#[path = "../../kaudit-store/tests/common/full_disk.rs"]
mod full_disk;

use full_disk::{noise, Tmpfs};
use kaudit_server::config::ServerConfig;
use kaudit_store::{Store, StoreOptions};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::Server;

/// A batch of `n` events from `first` on, each padded with 2 KiB of noise.
fn batch(first: u64, n: u64) -> String {
    let items: Vec<String> = (first..first + n)
        .map(|i| {
            format!(
                r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-{i}","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"get","user":{{"username":"u{i}"}},"annotations":{{"pad":"{}"}},"requestReceivedTimestamp":"2026-01-02T15:04:05.000000Z","stageTimestamp":"2026-01-02T15:04:05.001000Z"}}"#,
                noise(i, 2048)
            )
        })
        .collect();
    format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
        items.join(",")
    )
}

fn post(http: &reqwest::blocking::Client, url: &str, body: String) -> (u16, String) {
    let r = http
        .post(url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .expect("request");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn ready(http: &reqwest::blocking::Client, s: &Server) -> u16 {
    http.get(s.url("/readyz"))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Polls until `f` holds, for at most `within`.
fn wait(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn a_full_disk_gives_503s_loses_nothing_and_ingest_resumes_without_a_restart() {
    let Some(fs) = Tmpfs::mount("24m") else {
        return;
    };
    let data = fs.dir.join("data");
    let ballast = fs.dir.join("ballast");
    let mut cfg = ServerConfig {
        data: data.clone(),
        ..Default::default()
    };
    cfg.listen = Some("127.0.0.1:0".parse().unwrap());
    // The disk itself must fill up, not the free-space guard trip first.
    cfg.ingest.min_free_disk = 0;
    let mut server = Server::start(cfg);
    let http = reqwest::blocking::Client::new();
    let ingest = server.url("/api/v1/ingest/k8s");
    std::fs::write(&ballast, vec![7u8; 6 << 20]).unwrap();

    let mut acked = BTreeSet::new();
    let mut refusals = Vec::new();
    let mut next = 0u64;
    while refusals.len() < 3 {
        assert!(next < 200_000, "the 24 MiB file system never filled");
        let (status, body) = post(&http, &ingest, batch(next, 20));
        match status {
            200 => acked.extend(next..next + 20),
            503 => refusals.push(body),
            other => panic!("ingest on a full disk answered {other}: {body}"),
        }
        next += 20;
    }
    assert!(
        !acked.is_empty(),
        "nothing was stored before the disk filled"
    );
    for body in &refusals {
        let v: serde_json::Value = serde_json::from_str(body).expect("a JSON error body");
        let e = v["error"].as_str().unwrap_or_default();
        assert!(
            e.contains("No space left") || e.contains("cannot write") || e.contains("unusable"),
            "{body}"
        );
    }
    // While it cannot write, the server is not ready.
    assert!(
        wait(Duration::from_secs(10), || ready(&http, &server) == 503),
        "/readyz stayed ready on a full disk"
    );

    // Space returns: ingest resumes and /readyz recovers, same process.
    std::fs::remove_file(&ballast).unwrap();
    let resumed_at = next;
    assert!(
        wait(Duration::from_secs(30), || {
            let (status, _) = post(&http, &ingest, batch(resumed_at, 20));
            status == 200
        }),
        "ingest did not resume once space returned"
    );
    acked.extend(resumed_at..resumed_at + 20);
    assert!(
        wait(Duration::from_secs(10), || ready(&http, &server) == 200),
        "/readyz did not recover"
    );
    server.stop();

    // Every acknowledged event is stored, each once.
    let store = Store::open(
        &data,
        StoreOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let mut ids = Vec::new();
    store
        .read(0..store.len(), &mut |_, leaf| {
            let s = std::str::from_utf8(leaf.event).unwrap();
            let at = s.find("\"auditID\":\"id-").unwrap() + 14;
            let end = at + s[at..].find('"').unwrap();
            ids.push(s[at..end].parse::<u64>().unwrap());
            true
        })
        .unwrap();
    let have: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(have.len(), ids.len(), "an event was stored twice");
    let lost: Vec<_> = acked.difference(&have).take(5).collect();
    assert!(lost.is_empty(), "acknowledged events lost: {lost:?}");
}
