//! Forwarding inside `kaudit serve`: a kaudit server with a webhook sink
//! forwards to a second kaudit server (the apiserver's webhook format, so it
//! takes it unchanged), and reports the sink in `GET /api/v1/sinks` and in
//! the metrics.

mod support;

use kaudit_server::config::ServerConfig;
use kaudit_store::{Store, StoreOptions};
use std::path::Path;
use std::time::{Duration, Instant};
use support::Server;

/// A server started from `yaml` (written to `dir`), on 127.0.0.1.
fn start(yaml: &str, dir: &Path) -> Server {
    let conf = dir.join("kaudit.yaml");
    std::fs::write(&conf, yaml).unwrap();
    let mut cfg = ServerConfig::load(Some(&conf), Vec::new()).expect("config loads");
    assert!(cfg.check().is_empty(), "{:?}", cfg.check());
    cfg.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.ingest.min_free_disk = 0;
    Server::start(cfg)
}

fn stored(data: &Path) -> Vec<Vec<u8>> {
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
            out.push(leaf.event.to_vec());
            true
        })
        .unwrap();
    out
}

#[test]
fn a_kaudit_sink_forwards_to_another_kaudit_and_reports_status() {
    let downstream_dir = tempfile::tempdir().unwrap();
    let mut downstream = start(
        &format!(
            "data: {}\ndetect:\n  enabled: false\n",
            downstream_dir.path().join("data").display()
        ),
        downstream_dir.path(),
    );
    let upstream_dir = tempfile::tempdir().unwrap();
    let up_data = upstream_dir.path().join("data");
    let mut upstream = start(
        &format!(
            "data: {}\ndetect:\n  enabled: false\nsinks:\n- name: downstream\n  type: webhook\n  url: {}/api/v1/ingest/k8s\n  filter: 'not verb=watch'\n  batch_timeout: 100ms\n",
            up_data.display(),
            downstream.url("")
        ),
        upstream_dir.path(),
    );
    let mut cfg = kaudit_gen::GenConfig::new(3);
    cfg.events = Some(400);
    let events: Vec<Vec<u8>> = kaudit_gen::Generator::new(cfg)
        .unwrap()
        .map(|g| g.bytes)
        .collect();
    let mut body =
        b"{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[".to_vec();
    body.extend(events.join(&b","[..]));
    body.extend_from_slice(b"]}");
    let client = reqwest::blocking::Client::new();
    let r = client
        .post(format!("{}/api/v1/ingest/k8s", upstream.url("")))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text());
    let expected_count = events
        .iter()
        .filter(|e| kaudit_event::Event::from_json(e).unwrap().verb() != "watch")
        .count();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let v: serde_json::Value = client
            .get(format!("{}/api/v1/sinks", upstream.url("")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let s = v["sinks"][0].clone();
        if s["cursor"] == 400 {
            break s;
        }
        assert!(Instant::now() < deadline, "sink did not catch up: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["name"], "downstream");
    assert_eq!(status["type"], "webhook");
    assert_eq!(status["sent"], expected_count as u64);
    assert_eq!(status["failed"], 0);
    assert_eq!(status["up"], true);
    assert_eq!(status["lag_events"], 0);
    assert!(status["last_error"].is_null());
    std::thread::sleep(Duration::from_millis(1200));
    let metrics = client
        .get(format!("{}/metrics", upstream.url("")))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "kaudit_sink_sent_total{{sink=\"downstream\"}} {expected_count}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("kaudit_sink_up{sink=\"downstream\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kaudit_sink_lag_events{sink=\"downstream\"} 0"),
        "{metrics}"
    );
    upstream.stop();
    downstream.stop();
    // The downstream kaudit stored exactly the forwarded events, byte for byte.
    let want: Vec<Vec<u8>> = stored(&up_data)
        .into_iter()
        .filter(|e| kaudit_event::Event::from_json(e).unwrap().verb() != "watch")
        .collect();
    let got = stored(&downstream_dir.path().join("data"));
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "downstream holds the same bytes in the same order"
    );
}

#[test]
fn bad_sink_configs_are_refused_naming_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("kaudit.yaml");
    std::fs::write(
        &conf,
        "sinks:\n- name: a\n  type: webhook\n  url: http://x/\n- name: a\n  type: splunk_hec\n  url: ftp://x\n",
    )
    .unwrap();
    let cfg = ServerConfig::load(Some(&conf), Vec::new()).unwrap();
    let p = cfg.check().join("\n");
    assert!(p.contains("the name \"a\" is used twice"), "{p}");
    assert!(
        p.contains("sink \"a\": url \"ftp://x\" must start with http://"),
        "{p}"
    );
    assert!(p.contains("splunk_hec needs a token"), "{p}");
    std::fs::write(
        &conf,
        "sinks:\n- name: a\n  type: webhook\n  urll: http://x/\n",
    )
    .unwrap();
    let e = ServerConfig::load(Some(&conf), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("sink \"a\"") && e.contains("urll"), "{e}");
}

#[test]
fn sink_status_needs_a_reader_credential() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(
        &format!(
            "data: {}\ndetect:\n  enabled: false\nauth:\n  tokens:\n  - name: api\n    token: ingest-token-0123456789\n    cluster: c1\n    role: ingest\n  - name: ui\n    token: reader-token-0123456789\n    role: reader\nsinks:\n- name: nowhere\n  type: webhook\n  url: http://127.0.0.1:9/\n",
            dir.path().join("data").display()
        ),
        dir.path(),
    );
    let client = reqwest::blocking::Client::new();
    let url = format!("{}/api/v1/sinks", s.url(""));
    assert_eq!(client.get(&url).send().unwrap().status(), 401);
    let r = client
        .get(&url)
        .bearer_auth("ingest-token-0123456789")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .get(&url)
        .bearer_auth("reader-token-0123456789")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    let keys: Vec<&str> = v["sinks"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "name",
            "type",
            "cursor",
            "lag_events",
            "lag_seconds",
            "sent",
            "failed",
            "retries",
            "up",
            "last_error"
        ]
    );
    s.stop();
}
