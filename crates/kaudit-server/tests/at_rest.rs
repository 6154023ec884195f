//! Encryption at rest covers more than segments: with `store.encryption`
//! on, a user name sent to the server is found in plain text neither in the
//! segments nor in the quarantine; files are 0600 and directories 0700.

use kaudit_server::config::{EncryptionConfig, ServerConfig};
use kaudit_server::serve::{run, RunOptions};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

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

#[test]
fn names_are_not_stored_in_plain_text_and_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = dir.path().join("data.key");
    std::fs::write(&key, kaudit_store::crypt::Cipher::generate_hex().unwrap()).unwrap();
    let mut cfg = ServerConfig {
        data: data.clone(),
        ..Default::default()
    };
    cfg.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.ingest.min_free_disk = 0;
    cfg.store.encryption = Some(EncryptionConfig { key_file: key });
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let opts = RunOptions {
        on_ready: Some(Arc::new(move |a: &[(String, SocketAddr)]| {
            let _ = tx.lock().unwrap().send(a.to_vec());
        })),
        ..Default::default()
    };
    let s2 = stop.clone();
    let thread = std::thread::spawn(move || run(cfg, opts, s2));
    let addrs = rx.recv_timeout(Duration::from_secs(30)).expect("started");
    let url = format!("http://{}/api/v1/ingest/k8s", addrs[0].1);
    // One good event and one bad item (no auditID): both carry the name.
    let body = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"8d3ab5f4-0000-4000-8000-000000000001","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets/s1","verb":"get","user":{{"username":"{NAME}"}},"objectRef":{{"resource":"secrets","namespace":"default","name":"s1"}},"requestReceivedTimestamp":"2026-01-02T15:04:05.000000Z","stageTimestamp":"2026-01-02T15:04:05.001000Z"}},{{"kind":"Event","level":"Metadata","user":{{"username":"{NAME}"}}}}]}}"#
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
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap().unwrap();

    let mut all = Vec::new();
    files(&data, &mut all);
    let quarantine = data.join("quarantine").join("quarantine.jsonl");
    assert!(all.contains(&quarantine), "{all:?}");
    for p in &all {
        // The search index keeps its dictionaries in plain text (documented);
        // everything else must not hold the name.
        if p.starts_with(data.join("search")) {
            continue;
        }
        let bytes = std::fs::read(p).unwrap();
        assert!(
            memchr::memmem::find(&bytes, NAME.as_bytes()).is_none(),
            "{} holds the user name in plain text",
            p.display()
        );
    }
    // Private modes on what the store and the quarantine create.
    for d in [
        data.clone(),
        data.join("segments"),
        data.join("tree"),
        data.join("index"),
        data.join("quarantine"),
    ] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    for p in &all {
        let under = |s: &str| p.starts_with(data.join(s));
        if under("segments") || under("quarantine") || under("index") || under("tree") {
            assert_eq!(mode(p), 0o600, "{}", p.display());
        }
    }
    assert_eq!(mode(&data.join("checkpoints.jsonl")), 0o600);
}
