//! Encryption at rest covers more than segments: with `store.encryption`
//! on, a user name sent to the server is found in plain text nowhere in the
//! data directory: not in the segments, the quarantine, the search index's
//! dictionaries, the alerts, an alert notifier's dead letters or a sink's
//! dead letters; every file is 0600 and every directory 0700.

mod support;

use kaudit_server::config::{EncryptionConfig, ServerConfig};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::Server;

const NAME: &str = "zed-very-secret-user";

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A destination that refuses everything for good: HTTP 400 to alert
/// webhooks, and an Elasticsearch `_bulk` answer refusing each item, so both
/// the alert notifier and the sink dead-letter what they were given.
fn refusing_server() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(c) = conn else { continue };
            std::thread::spawn(move || refuse(c));
        }
    });
    addr
}

fn refuse(c: std::net::TcpStream) {
    use std::io::{BufRead, Read, Write};
    let mut r = std::io::BufReader::new(c.try_clone().unwrap());
    let mut w = c;
    loop {
        let mut start = String::new();
        if r.read_line(&mut start).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let (status, reply) = if start.contains("_bulk") {
            let items = body
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count()
                / 2;
            let item = r#"{"create":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"refused"}}}"#;
            let list = vec![item; items].join(",");
            (
                "200 OK",
                format!(r#"{{"took":1,"errors":true,"items":[{list}]}}"#),
            )
        } else {
            ("400 Bad Request", "refused".to_string())
        };
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            reply.len()
        );
        if w.write_all(head.as_bytes()).is_err() || w.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn names_are_not_stored_in_plain_text_and_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = dir.path().join("data.key");
    std::fs::write(&key, kaudit_store::crypt::Cipher::generate_hex().unwrap()).unwrap();
    let refuse = refusing_server();
    let yaml = format!(
        "detect:\n  enabled: true\n  outputs:\n  - webhook:\n      url: http://{refuse}/alerts\n\
         sinks:\n- name: siem\n  type: elasticsearch\n  url: http://{refuse}\n  index: kaudit-audit\n  backoff_start: 10ms\n"
    );
    let cfg_path = dir.path().join("kaudit.yaml");
    std::fs::write(&cfg_path, yaml).unwrap();
    let mut cfg = ServerConfig::load(Some(&cfg_path), Vec::new()).unwrap();
    cfg.data = data.clone();
    cfg.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.ingest.min_free_disk = 0;
    cfg.store.encryption = Some(EncryptionConfig { key_file: key });
    let mut server = Server::start(cfg);
    let url = server.url("/api/v1/ingest/k8s");
    // One good event (a secret read, which raises an alert) and one bad item
    // (no auditID): both carry the name.
    let body = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"8d3ab5f4-0000-4000-8000-000000000001","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets/s1","verb":"get","user":{{"username":"{NAME}"}},"objectRef":{{"resource":"secrets","namespace":"default","name":"s1"}},"responseStatus":{{"code":200}},"annotations":{{"authorization.k8s.io/decision":"allow"}},"requestReceivedTimestamp":"2026-01-02T15:04:05.000000Z","stageTimestamp":"2026-01-02T15:04:05.001000Z"}},{{"kind":"Event","level":"Metadata","user":{{"username":"{NAME}"}}}}]}}"#
    );
    let r = reqwest::blocking::Client::new()
        .post(&url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .unwrap();
    let status = r.status();
    let text = r.text().unwrap();
    assert!(status.is_success(), "{status} {text}");
    assert!(
        text.contains("quarantin"),
        "the bad item is quarantined: {text}"
    );
    let alerts_dead = data.join("alerts").join("notify-0-webhook.dead");
    let sink_dead = data.join("sinks").join("siem.dead");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(alerts_dead.exists() && sink_dead.exists() && data.join("search/meta.json").exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "no dead letters / index after 30 s: alerts dead {}, sink dead {}, index {}; files: {:?}",
            alerts_dead.exists(),
            sink_dead.exists(),
            data.join("search/meta.json").exists(),
            {
                let mut v = Vec::new();
                files(&data, &mut v);
                v
            }
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1200));
    server.stop();

    let mut all = Vec::new();
    files(&data, &mut all);
    for must in [
        data.join("quarantine").join("quarantine.jsonl"),
        data.join("alerts").join("alerts.jsonl"),
        data.join("search").join("user.dict"),
        alerts_dead.clone(),
        sink_dead.clone(),
    ] {
        assert!(all.contains(&must), "{} missing: {all:?}", must.display());
    }
    for p in &all {
        let bytes = std::fs::read(p).unwrap();
        assert!(
            memchr::memmem::find(&bytes, NAME.as_bytes()).is_none(),
            "{} holds the user name in plain text",
            p.display()
        );
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    let mut dirs = vec![data.clone()];
    while let Some(d) = dirs.pop() {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            }
        }
    }

    // The sealed index still answers with the key (the name is found from
    // the dictionaries), and refuses without it.
    let store = Arc::new(
        kaudit_store::Store::open(
            &data,
            kaudit_store::StoreOptions {
                read_only: true,
                encryption_key: Some(dir.path().join("data.key")),
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let backend = kaudit_index::EmbeddedBackend::open(&data, store).unwrap();
    let users =
        kaudit_index::SearchBackend::field_values(&backend, &kaudit_query::Field::User, "", 10)
            .unwrap();
    assert_eq!(users, vec![(NAME.to_string(), 1)]);
    let ix = kaudit_index::index::Index::open(&data, kaudit_index::index::IndexMode::Read);
    assert!(
        matches!(ix, Err(kaudit_index::IndexError::KeyNeeded(_))),
        "a sealed index opened without the key: {ix:?}"
    );
}
