//! The Splunk HEC sink behind mutual TLS: an in-process HTTPS fake that
//! requires a client certificate signed by its CA and checks the HEC request
//! to the byte. With `client_cert`/`client_key` the events arrive; without
//! them the handshake is refused, the sink says so and retries, and nothing
//! is skipped.

mod common;

use common::*;
use kaudit_sinks::config::{SinkKind, SplunkConfig};
use kaudit_sinks::SinkConfig;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A HEC endpoint that requires a client certificate signed by the CA.
fn mtls_hec(p: &TestPki) -> (u16, Arc<Mutex<HttpsSeen>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut p.ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let certs: Vec<_> = rustls_pemfile::certs(&mut p.server.0.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = rustls_pemfile::private_key(&mut p.server.1.as_bytes())
        .unwrap()
        .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    serve_https(Arc::new(cfg), br#"{"text":"Success","code":0}"#)
}

fn sink(dir: &Path, port: u16, p: &TestPki, with_client_cert: bool) -> SinkConfig {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &p.ca).unwrap();
    let (cert, key) = (dir.join("client.pem"), dir.join("client-key.pem"));
    std::fs::write(&cert, &p.client.0).unwrap();
    std::fs::write(&key, &p.client.1).unwrap();
    let mut cfg = SinkConfig::new(
        "splunk",
        SinkKind::SplunkHec(SplunkConfig {
            url: format!("https://localhost:{port}"),
            token: "00000000-aaaa-bbbb-cccc-000000000000".into(),
            ca_file: Some(ca),
            client_cert: with_client_cert.then_some(cert),
            client_key: with_client_cert.then_some(key),
            ..Default::default()
        }),
    );
    cfg.backoff_start = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(100);
    cfg.batch_timeout = Duration::from_millis(10);
    cfg
}

#[test]
fn hec_behind_mutual_tls_takes_events_only_with_the_client_certificate() {
    let p = TestPki::new();
    let (port, seen) = mtls_hec(&p);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("store"));
    let events = generated(3, 5);
    append(&store, "prod", &events);

    // Without a client certificate: refused at the handshake, retried, nothing skipped.
    let no_cert = dir.path().join("no-cert");
    std::fs::create_dir_all(&no_cert).unwrap();
    let run = run_sink(sink(&no_cert, port, &p, false), &no_cert, store.clone());
    wait_until(20, "the refusal seen", || {
        let st = run.stats.snapshot();
        st.retries >= 2 && !st.up
    });
    let st = run.stats.snapshot();
    assert_eq!(st.cursor, 0, "nothing counts as sent: {st:?}");
    assert!(st.last_error.is_some(), "{st:?}");
    run.stop();
    let refused = seen.lock().unwrap();
    assert!(refused.requests.is_empty(), "no request got through");
    assert!(
        refused.refused_handshakes >= 1,
        "the server refused the handshake"
    );
    drop(refused);

    // With it: every event arrives, in HEC's concatenated form, authorized.
    let with_cert = dir.path().join("with-cert");
    std::fs::create_dir_all(&with_cert).unwrap();
    let run = run_sink(sink(&with_cert, port, &p, true), &with_cert, store.clone());
    wait_until(20, "all events acknowledged", || {
        run.stats.snapshot().cursor == 3
    });
    run.stop();
    let got = seen.lock().unwrap().requests.clone();
    assert_eq!(got.len(), 1, "one batch");
    let (head, body) = &got[0];
    assert!(
        head.starts_with("POST /services/collector/event HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("authorization: splunk 00000000-aaaa-bbbb-cccc-000000000000\r\n"),
        "{head}"
    );
    let text = String::from_utf8(body.clone()).unwrap();
    let mut rest = text.as_str();
    for e in &events {
        let line = std::str::from_utf8(e).unwrap();
        let at = rest.find(line).expect("each stored event byte for byte");
        assert!(rest[..at].contains("\"sourcetype\":\"kube:apiserver-audit\""));
        rest = &rest[at + line.len()..];
    }
}

#[test]
fn half_a_client_identity_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SinkConfig::new(
        "splunk",
        SinkKind::SplunkHec(SplunkConfig {
            url: "https://localhost:1".into(),
            token: "t".into(),
            client_cert: Some(dir.path().join("c.pem")),
            ..Default::default()
        }),
    );
    let err = kaudit_sinks::Sink::new(cfg, dir.path())
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("client_cert and client_key"),
        "{err}"
    );
}
