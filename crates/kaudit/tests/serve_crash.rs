//! kill -9 during a load run: after a restart every batch that got a 200 is
//! in the store exactly once, and `kaudit verify` passes.

use kaudit_event::{
    encode_event_list, EventDoc, Level, MicroTime, ObjectRef, ResponseStatus, Stage, UserInfo,
};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn kaudit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kaudit"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(data: &std::path::Path, port: u16) -> Child {
    let mut child = kaudit()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data")
        .arg(data)
        .env("KAUDIT_INGEST__MIN_FREE_DISK", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reqwest::blocking::get(format!("http://127.0.0.1:{port}/readyz"))
            .is_ok_and(|r| r.status().is_success())
        {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("kaudit serve did not become ready");
}

fn doc(id: String) -> EventDoc {
    EventDoc {
        level: Level::Metadata,
        audit_id: id,
        stage: Some(Stage::ResponseComplete),
        request_uri: "/api/v1/namespaces/default/configmaps".into(),
        verb: "list".into(),
        user: UserInfo {
            username: "system:serviceaccount:kube-system:loader".into(),
            ..Default::default()
        },
        source_ips: vec!["10.0.0.7".into()],
        object_ref: Some(ObjectRef {
            resource: "configmaps".into(),
            namespace: "default".into(),
            api_version: "v1".into(),
            ..Default::default()
        }),
        response_status: Some(ResponseStatus::new(200, "", "", "")),
        request_received_timestamp: Some(MicroTime(1_767_000_000_000_000)),
        stage_timestamp: Some(MicroTime(1_767_000_000_000_500)),
        ..Default::default()
    }
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_batch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let counter = Arc::new(AtomicU64::new(0));
    for round in 0..3u64 {
        let port = free_port();
        let mut child = start(&data, port);
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        for _ in 0..4 {
            let (stop, acked, counter) = (stop.clone(), acked.clone(), counter.clone());
            senders.push(std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let base = counter.fetch_add(100, Ordering::Relaxed);
                    let ids: Vec<String> =
                        (base..base + 100).map(|i| format!("crash-{i}")).collect();
                    let docs: Vec<EventDoc> = ids.iter().cloned().map(doc).collect();
                    let r = client
                        .post(format!("http://127.0.0.1:{port}/api/v1/ingest/k8s"))
                        .header("Content-Type", "application/json")
                        .body(encode_event_list(docs.iter()))
                        .send();
                    match r {
                        Ok(r) if r.status().is_success() => acked.lock().unwrap().extend(ids),
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(700 + round * 400));
        // SIGKILL: no shutdown path runs.
        // SAFETY: kill(2) on our own child's pid touches no memory of ours.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            s.join().unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 1000,
        "the load run acknowledged only {} events",
        acked.len()
    );
    // Reopening recovers the tail; then every acknowledged event is there once.
    let out = kaudit()
        .arg("verify")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify failed after kill -9:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let store = kaudit_store::Store::open(
        &data,
        kaudit_store::StoreOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let mut counts: HashMap<String, u32> = HashMap::new();
    store
        .read(0..store.len(), &mut |_, leaf| {
            let ev = kaudit_event::Event::from_json(leaf.event).unwrap();
            *counts.entry(ev.audit_id().to_string()).or_default() += 1;
            true
        })
        .unwrap();
    for id in &acked {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "acknowledged event {id} missing or duplicated"
        );
    }
    assert!(
        counts.values().all(|&c| c == 1),
        "an event was stored twice"
    );
}
