//! The NATS sink against a real nats-server with JetStream (Debian package
//! `nats-server`), started by the test on 127.0.0.1.

mod common;

use base64::Engine as _;
use common::*;
use kaudit_sinks::config::{NatsConfig, SinkKind};
use kaudit_sinks::nats::NatsClient;
use kaudit_sinks::SinkConfig;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

fn start_nats(dir: &Path, port: u16) -> Daemon {
    let bin = require("nats-server", "nats-server");
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("-js")
        .arg("-a")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .arg("-sd")
        .arg(dir.join("jetstream"))
        .stderr(std::fs::File::create(dir.join("nats-server.log")).unwrap());
    Daemon::spawn(cmd, "nats-server", port)
}

fn nats_cfg(port: u16) -> NatsConfig {
    NatsConfig {
        url: format!("nats://127.0.0.1:{port}"),
        subject: "kaudit.audit".into(),
        stream: Some("AUDIT".into()),
        ..Default::default()
    }
}

/// Every message in the stream: (Nats-Msg-Id, payload).
fn stream_messages(port: u16) -> Vec<(String, Vec<u8>)> {
    let mut c = NatsClient::connect(&nats_cfg(port), Duration::from_secs(5)).unwrap();
    let info = c.request("$JS.API.STREAM.INFO.AUDIT", b"").unwrap();
    let n = info["state"]["messages"].as_u64().unwrap();
    let first = info["state"]["first_seq"].as_u64().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    (first..first + n)
        .map(|seq| {
            let r = c
                .request(
                    "$JS.API.STREAM.MSG.GET.AUDIT",
                    format!("{{\"seq\":{seq}}}").as_bytes(),
                )
                .unwrap();
            let m = &r["message"];
            let hdrs = String::from_utf8(b64.decode(m["hdrs"].as_str().unwrap()).unwrap()).unwrap();
            let id = hdrs
                .lines()
                .find_map(|l| l.strip_prefix("Nats-Msg-Id: "))
                .expect("Nats-Msg-Id header")
                .to_string();
            (id, b64.decode(m["data"].as_str().unwrap_or("")).unwrap())
        })
        .collect()
}

#[test]
fn jetstream_gets_each_event_with_its_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _nats = start_nats(dir.path(), port);
    let store = open_store(dir.path());
    append(&store, "prod-eu", &[EVENT.into()]);
    let cp = store.checkpoint().unwrap().expect("a checkpoint");
    let mut cfg = SinkConfig::new("js", SinkKind::Nats(nats_cfg(port)));
    cfg.checkpoints = true;
    let run = run_sink(cfg, dir.path(), store.clone());
    wait_until(20, "acknowledged", || run.stats.snapshot().cursor == 1);
    run.stop();
    let msgs = stream_messages(port);
    assert_eq!(
        msgs,
        vec![
            ("checkpoint-1".to_string(), cp.note.into_bytes()),
            (EVENT_ID.to_string(), EVENT.as_bytes().to_vec())
        ]
    );
}

#[test]
fn nats_restarted_mid_stream_stores_every_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut nats = start_nats(dir.path(), port);
    let store = open_store(dir.path());
    let events = generated(3000, 71);
    append(&store, "c1", &events[..2000]);
    let mut cfg = SinkConfig::new("js", SinkKind::Nats(nats_cfg(port)));
    cfg.batch_max_events = 100;
    cfg.backoff_max = Duration::from_millis(500);
    cfg.timeout = Duration::from_secs(3);
    let run = run_sink(cfg, dir.path(), store.clone());
    wait_until(30, "some sent", || run.stats.snapshot().sent >= 500);
    nats.stop();
    append(&store, "c1", &events[2000..]);
    wait_until(30, "the outage noticed", || {
        let s = run.stats.snapshot();
        s.retries >= 2 && !s.up
    });
    nats = start_nats(dir.path(), port);
    wait_until(60, "all acknowledged", || {
        run.stats.snapshot().cursor == 3000
    });
    run.stop();
    let msgs = stream_messages(port);
    drop(nats);
    let want: HashSet<String> = events.iter().map(|l| dedupe_id(l)).collect();
    let ids: Vec<&String> = msgs.iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids.len(),
        want.len(),
        "exactly once: no duplicates, nothing missing"
    );
    assert_eq!(ids.into_iter().cloned().collect::<HashSet<_>>(), want);
    for (id, data) in &msgs {
        assert_eq!(&dedupe_id(data), id, "payload is the event with that ID");
    }
}
