//! Syslog over TLS (RFC 5425) against an in-process rustls server that
//! parses the octet-counted frames: exact messages with the right CA, a clear
//! TLS error and nothing skipped with the wrong one. (Debian's rsyslog needs
//! an extra TLS driver package for this, so the TLS layer is checked here
//! and the syslog framing against the real rsyslogd over TCP.)

mod common;

use common::*;
use kaudit_sinks::config::{SinkKind, SyslogConfig, SyslogProtocol};
use kaudit_sinks::SinkConfig;
use std::io::Read;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct TlsSyslog {
    port: u16,
    received: Arc<Mutex<Vec<u8>>>,
}

fn cert(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, rcgen::CertifiedKey<rcgen::KeyPair>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let p = dir.join(format!("{name}.pem"));
    std::fs::write(&p, ck.cert.pem()).unwrap();
    (p, ck)
}

fn serve_tls(ck: &rcgen::CertifiedKey<rcgen::KeyPair>) -> TlsSyslog {
    let certs = vec![ck.cert.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let r2 = received.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(sock) = conn else { continue };
            let (cfg, r) = (cfg.clone(), r2.clone());
            std::thread::spawn(move || {
                let c = rustls::ServerConnection::new(cfg).unwrap();
                let mut s = rustls::StreamOwned::new(c, sock);
                let mut buf = [0u8; 65536];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    r.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    TlsSyslog { port, received }
}

/// Splits RFC 6587 octet-counted frames; panics on a malformed stream.
fn frames(mut b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let sp = b
            .iter()
            .position(|&c| c == b' ')
            .expect("length then space");
        let len: usize = std::str::from_utf8(&b[..sp])
            .unwrap()
            .parse()
            .expect("decimal length");
        let end = sp + 1 + len;
        if end > b.len() {
            break; // a frame still arriving
        }
        out.push(String::from_utf8(b[sp + 1..end].to_vec()).unwrap());
        b = &b[end..];
    }
    out
}

fn tls_sink(port: u16, ca: &std::path::Path) -> SinkConfig {
    let mut c = SinkConfig::new(
        "tls",
        SinkKind::Syslog(SyslogConfig {
            address: format!("127.0.0.1:{port}"),
            protocol: SyslogProtocol::Tls,
            ca_file: Some(ca.to_path_buf()),
            server_name: Some("localhost".into()),
            hostname: Some("testhost".into()),
            ..Default::default()
        }),
    );
    c.backoff_max = Duration::from_millis(300);
    c
}

#[test]
fn tls_with_the_right_ca_delivers_exact_frames() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ck) = cert(dir.path(), "server");
    let server = serve_tls(&ck);
    let store = open_store(dir.path());
    append(&store, "prod-eu", &[EVENT.into()]);
    append(&store, "c1", &generated(200, 81));
    let run = run_sink(tls_sink(server.port, &ca), dir.path(), store.clone());
    wait_until(20, "all sent", || run.stats.snapshot().cursor == 201);
    wait_until(20, "all received", || {
        frames(&server.received.lock().unwrap()).len() == 201
    });
    run.stop();
    std::thread::sleep(Duration::from_millis(300));
    let got = frames(&server.received.lock().unwrap());
    assert_eq!(got.len(), 201, "a healthy connection writes nothing twice");
    assert_eq!(
        got[0],
        format!(
            r#"<110>1 2026-01-05T09:00:00.123456Z testhost kaudit - audit [kaudit@32473 auditID="0b5c7a2e-1111-4c7e-9a7e-000000000001" stage="ResponseComplete" verb="get" user="alice" resource="secrets" namespace="prod" name="db" code="200" cluster="prod-eu"] {EVENT}"#
        )
    );
    for f in &got[1..] {
        assert!(
            f.starts_with("<110>1 ") && f.contains("cluster=\"c1\"] {\"kind\":\"Event\""),
            "{f}"
        );
    }
}

#[test]
fn tls_with_the_wrong_ca_fails_clearly_and_skips_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ck) = cert(dir.path(), "server");
    let (other_ca, _) = cert(dir.path(), "other");
    let server = serve_tls(&ck);
    let store = open_store(dir.path());
    append(&store, "c1", &generated(10, 82));
    let run = run_sink(tls_sink(server.port, &other_ca), dir.path(), store.clone());
    wait_until(20, "retries", || run.stats.snapshot().retries >= 2);
    let s = run.stats.snapshot();
    assert!(!s.up);
    assert_eq!(s.cursor, 0);
    let e = s.last_error.unwrap();
    assert!(
        e.contains("TLS handshake") && e.to_lowercase().contains("certificate"),
        "{e}"
    );
    assert!(
        server.received.lock().unwrap().len() < 2000,
        "no syslog data went over the failed handshake"
    );
    assert_eq!(run.stop(), 0);
}
