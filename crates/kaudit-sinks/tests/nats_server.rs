//! The NATS sink against a real nats-server with JetStream (Debian package
//! `nats-server`), started by the test on 127.0.0.1.

mod common;

use common::*;
use kaudit_sinks::config::{NatsConfig, SinkKind};
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

/// nats-server with JetStream and `extra` (a `tls {}` or `authorization {}`
/// block) in its config file, on 127.0.0.1:`port`.
fn start_nats_with(dir: &Path, port: u16, extra: &str) -> Daemon {
    let bin = require("nats-server", "nats-server");
    let conf = dir.join("nats-server.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: {:?} }}\n{extra}\n",
            dir.join("jetstream").display().to_string()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("-c")
        .arg(&conf)
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
    stream_messages_with(
        async_nats::ConnectOptions::new(),
        &format!("nats://127.0.0.1:{port}"),
    )
}

/// Every message in stream AUDIT, read with a separate client connected
/// with `opts` (so the check does not trust the sink's own client code).
fn stream_messages_with(opts: async_nats::ConnectOptions, url: &str) -> Vec<(String, Vec<u8>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = opts.connect(url).await.expect("reader connects");
        let js = async_nats::jetstream::new(c);
        let mut stream = js.get_stream("AUDIT").await.expect("stream AUDIT");
        let state = stream.info().await.unwrap().state.clone();
        let mut out = Vec::new();
        for seq in state.first_sequence..state.first_sequence + state.messages {
            let m = stream.get_raw_message(seq).await.unwrap();
            let id = m
                .headers
                .get("Nats-Msg-Id")
                .expect("Nats-Msg-Id header")
                .to_string();
            out.push((id, m.payload.to_vec()));
        }
        out
    })
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
            (event_id(), EVENT.as_bytes().to_vec())
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

/// A CA, a server certificate for 127.0.0.1/localhost and a client
/// certificate, all written as PEM files into `dir`.
fn pki(dir: &Path) -> PkiFiles {
    TestPki::new().write_to(dir)
}

/// Runs a sink with `nc` on one stored event until it either delivers it
/// (`Ok(())`) or reports an error (`Err(last_error)`), then stops it.
fn deliver_one(nc: NatsConfig) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    append(&store, "prod-eu", &[EVENT.into()]);
    let mut cfg = SinkConfig::new("js", SinkKind::Nats(nc));
    cfg.timeout = Duration::from_secs(5);
    let run = run_sink(cfg, dir.path(), store);
    let mut outcome = None;
    wait_until(30, "delivered or an error", || {
        let s = run.stats.snapshot();
        if s.cursor == 1 {
            outcome = Some(Ok(()));
        } else if let Some(e) = s.last_error {
            outcome = Some(Err(e));
        }
        outcome.is_some()
    });
    let cursor = run.stop();
    let outcome = outcome.unwrap();
    assert_eq!(
        cursor == 1,
        outcome.is_ok(),
        "cursor {cursor} vs {outcome:?}"
    );
    outcome
}

#[test]
fn tls_server_takes_events_with_its_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path());
    let port = free_port();
    let _nats = start_nats_with(
        dir.path(),
        port,
        &format!(
            "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true, timeout: 5 }}",
            p.server_cert.display().to_string(),
            p.server_key.display().to_string(),
            p.ca.display().to_string()
        ),
    );
    let tls_cfg = NatsConfig {
        url: format!("tls://127.0.0.1:{port}"),
        ca_file: Some(p.ca.clone()),
        client_cert: Some(p.client_cert.clone()),
        client_key: Some(p.client_key.clone()),
        ..nats_cfg(port)
    };

    // Without the CA the server's certificate cannot be trusted: a clear
    // TLS error, nothing acknowledged.
    let err = deliver_one(NatsConfig {
        ca_file: None,
        ..tls_cfg.clone()
    })
    .expect_err("an untrusted server certificate is refused");
    assert!(err.contains("TLS") && err.contains("ca_file"), "{err}");

    // verify: true and no client certificate: the server refuses.
    let err = deliver_one(NatsConfig {
        client_cert: None,
        client_key: None,
        ..tls_cfg.clone()
    })
    .expect_err("no client certificate is refused");
    assert!(err.contains("TLS") && err.contains("client_cert"), "{err}");

    // `tls: true` with a nats:// URL is TLS too.
    deliver_one(NatsConfig {
        url: format!("nats://127.0.0.1:{port}"),
        tls: true,
        ..tls_cfg.clone()
    })
    .expect("delivered over mutual TLS");

    // The stream holds the event once (two deliveries of one event, one ID).
    let reader = async_nats::ConnectOptions::new()
        .add_root_certificates(p.ca.clone())
        .add_client_certificate(p.client_cert.clone(), p.client_key.clone())
        .require_tls(true);
    let msgs = stream_messages_with(reader, &format!("tls://127.0.0.1:{port}"));
    assert_eq!(msgs, vec![(event_id(), EVENT.as_bytes().to_vec())]);
}

#[test]
fn user_password_account_refuses_a_wrong_password_and_takes_the_right_one() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _nats = start_nats_with(
        dir.path(),
        port,
        r#"authorization { users = [ {user: "auditor", password: "s3cret-pass"} ] }"#,
    );
    let with = |pass: &str| NatsConfig {
        user: Some("auditor".into()),
        password: Some(pass.into()),
        ..nats_cfg(port)
    };
    let err = deliver_one(with("wrong")).expect_err("wrong password refused");
    assert!(
        err.contains("refused the credentials") && err.contains("user/password"),
        "{err}"
    );
    assert!(!err.contains("wrong"), "the password is not echoed: {err}");
    let err = deliver_one(nats_cfg(port)).expect_err("no credentials refused");
    assert!(err.contains("refused the credentials"), "{err}");
    deliver_one(with("s3cret-pass")).expect("delivered with the right password");
    let reader =
        async_nats::ConnectOptions::new().user_and_password("auditor".into(), "s3cret-pass".into());
    let msgs = stream_messages_with(reader, &format!("nats://127.0.0.1:{port}"));
    assert_eq!(msgs, vec![(event_id(), EVENT.as_bytes().to_vec())]);
}

#[test]
fn nkey_user_is_authenticated_by_its_seed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let user = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let _nats = start_nats_with(
        dir.path(),
        port,
        &format!(
            "authorization {{ users = [ {{nkey: {}}} ] }}",
            user.public_key()
        ),
    );
    let err = deliver_one(NatsConfig {
        nkey: Some(stranger.seed().unwrap()),
        ..nats_cfg(port)
    })
    .expect_err("an unknown NKey is refused");
    assert!(err.contains("refused the credentials"), "{err}");
    let seed_file = dir.path().join("user.nk");
    std::fs::write(&seed_file, format!("{}\n", user.seed().unwrap())).unwrap();
    deliver_one(NatsConfig {
        nkey_file: Some(seed_file),
        ..nats_cfg(port)
    })
    .expect("delivered with the NKey seed file");
    deliver_one(NatsConfig {
        nkey: Some(user.seed().unwrap()),
        ..nats_cfg(port)
    })
    .expect("delivered with the NKey seed");
    let reader = async_nats::ConnectOptions::with_nkey(user.seed().unwrap());
    let msgs = stream_messages_with(reader, &format!("nats://127.0.0.1:{port}"));
    assert_eq!(
        msgs,
        vec![(event_id(), EVENT.as_bytes().to_vec())],
        "the same event sent twice is stored once"
    );
}

#[test]
fn failover_to_the_second_url_when_the_first_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let dead = free_port();
    let _nats = start_nats(dir.path(), port);
    deliver_one(NatsConfig {
        urls: vec![
            format!("nats://127.0.0.1:{dead}"),
            format!("nats://127.0.0.1:{port}"),
        ],
        url: kaudit_sinks::nats::DEFAULT_URL.into(),
        ..nats_cfg(port)
    })
    .expect("delivered through the server that is up");
    assert_eq!(
        stream_messages(port),
        vec![(event_id(), EVENT.as_bytes().to_vec())]
    );
}

#[test]
fn an_idle_connection_closed_by_the_server_is_replaced_without_loss_or_duplicates() {
    // The client's connection task runs only while the sink delivers (its
    // runtime is driven by the sink's thread), so an idle sink does not
    // answer the server's PINGs: with a 1s ping interval and one ping
    // outstanding at most, the server drops it while idle.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _nats = start_nats_with(dir.path(), port, "ping_interval: \"1s\"\nping_max: 1");
    let store = open_store(dir.path());
    let events = generated(20, 5);
    append(&store, "c1", &events[..10]);
    let mut cfg = SinkConfig::new("js", SinkKind::Nats(nats_cfg(port)));
    cfg.timeout = Duration::from_secs(3);
    cfg.backoff_max = Duration::from_millis(500);
    let run = run_sink(cfg, dir.path(), store.clone());
    wait_until(20, "first half acknowledged", || {
        run.stats.snapshot().cursor == 10
    });
    std::thread::sleep(Duration::from_secs(4));
    append(&store, "c1", &events[10..]);
    wait_until(30, "second half acknowledged", || {
        run.stats.snapshot().cursor == 20
    });
    run.stop();
    let msgs = stream_messages(port);
    let want: Vec<String> = events.iter().map(|l| dedupe_id(l)).collect();
    let got: Vec<String> = msgs.into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, want, "every event once, in order");
}
