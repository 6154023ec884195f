//! The webhook sink configured the way kube-apiserver's
//! `--audit-webhook-config-file` is (a kubeconfig with the server, its CA as
//! `certificate-authority-data` and a bearer token), against an in-process
//! HTTPS server that reads the raw request.

mod common;

use base64::Engine as _;
use common::*;
use kaudit_sinks::config::{SinkKind, WebhookConfig};
use kaudit_sinks::SinkConfig;
use std::sync::{Arc, Mutex};

fn https_server(ck: &rcgen::CertifiedKey<rcgen::KeyPair>) -> (u16, Arc<Mutex<HttpsSeen>>) {
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap(),
    );
    serve_https(cfg, b"{}")
}

#[test]
fn webhook_from_a_kubeconfig_uses_its_ca_and_token_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (port, seen) = https_server(&ck);
    let kc = dir.path().join("webhook.kubeconfig");
    let ca_data = base64::engine::general_purpose::STANDARD.encode(ck.cert.pem());
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: siem\n  cluster:\n    server: https://localhost:{port}/k8s-audit\n    certificate-authority-data: {ca_data}\nusers:\n- name: kaudit\n  user:\n    token: kubeconfig-token-0123\ncontexts:\n- name: default\n  context:\n    cluster: siem\n    user: kaudit\ncurrent-context: default\n"
        ),
    )
    .unwrap();
    let store = open_store(dir.path());
    append(&store, "prod-eu", &[EVENT.into()]);
    let cfg = SinkConfig::new(
        "tls",
        SinkKind::Webhook(WebhookConfig {
            kubeconfig: Some(kc),
            ..Default::default()
        }),
    );
    let run = run_sink(cfg, dir.path(), store.clone());
    wait_until(20, "delivered", || run.stats.snapshot().cursor == 1);
    run.stop();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.requests.len(), 1);
    let (head, body) = &seen.requests[0];
    assert!(head.starts_with("POST /k8s-audit HTTP/1.1\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("\r\nauthorization: bearer kubeconfig-token-0123\r\n"),
        "{head}"
    );
    assert!(
        lower.contains("\r\ncontent-type: application/json\r\n"),
        "{head}"
    );
    assert_eq!(
        String::from_utf8_lossy(body),
        format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{EVENT_ITEM}]}}"#
        )
    );
}
