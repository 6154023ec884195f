//! Alert notifications are sinks: a failing receiver is retried until it
//! takes the alert, a refusal for good is dead-lettered, each output keeps
//! its own position across restarts, and alerts a restarted detector wrote
//! again are notified once.

mod common;

use common::*;
use kaudit_detect::{
    AlertFormat, AlertLog, AlertWebhookConfig, DetectConfig, OutputConfig, StoredAlert,
};
use kaudit_sinks::AlertNotifier;
use kaudit_store::{run_follower, FollowOptions, Followed, Follower, FollowerStatus};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn alert(seq: u64, rule: &str, user: &str) -> StoredAlert {
    let mut fields = serde_json::Map::new();
    fields.insert("ka.user.name".into(), user.into());
    StoredAlert {
        seq,
        cluster: "prod".into(),
        audit_id: format!("id-{seq}"),
        rule: rule.into(),
        priority: "Warning".into(),
        time: format!("2026-01-01T00:{:02}:00.000000Z", seq % 60),
        received: None,
        output: format!("{rule} by {user}"),
        output_fields: fields,
        tags: vec![],
    }
}

fn config(outputs: Vec<OutputConfig>) -> DetectConfig {
    DetectConfig {
        throttle: Duration::ZERO,
        outputs,
        ..DetectConfig::default()
    }
}

/// Steps the notifier until it has handled every alert line.
fn drain(n: &mut AlertNotifier, store: &kaudit_store::Store) {
    let stop = AtomicBool::new(false);
    let log = Followed {
        store,
        feed: None,
        stop: &stop,
    };
    for _ in 0..100 {
        match n.step(&log) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => panic!("step failed: {e}"),
        }
    }
    panic!("notifier did not catch up");
}

#[test]
fn failing_receiver_is_retried_and_refusals_are_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("store"));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    // Two 503s, then 200s; the alert of rule "Bad" is refused with 400.
    let http = FakeHttp::start(Arc::new(move |r: &Req| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        if String::from_utf8_lossy(&r.body).contains("\"rule\":\"Bad\"") {
            (400, b"no".to_vec())
        } else if n < 2 {
            (503, b"busy".to_vec())
        } else {
            (200, b"ok".to_vec())
        }
    }));
    let log = AlertLog::new(dir.path());
    log.append(&[
        alert(1, "Good", "alice"),
        alert(2, "Bad", "bob"),
        alert(3, "Good", "carol"),
    ])
    .unwrap();
    let cfg = config(vec![OutputConfig::Webhook(AlertWebhookConfig::new(
        http.url(),
        AlertFormat::Falco,
    ))]);
    let mut n = AlertNotifier::open(0, cfg.outputs[0].clone(), &cfg, dir.path()).unwrap();
    drain(&mut n, &store);
    let took: Vec<String> = http
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    // 2 failures + alice + bob's refusal + carol.
    assert_eq!(took.len(), 5, "{took:?}");
    let delivered: Vec<serde_json::Value> = took
        .iter()
        .skip(2)
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(delivered[0]["output"], "Good by alice");
    assert_eq!(delivered[0]["source"], "k8s_audit");
    assert_eq!(delivered[2]["output"], "Good by carol");
    let dead = std::fs::read_to_string(dir.path().join("alerts/notify-0-webhook.dead")).unwrap();
    assert_eq!(dead.lines().count(), 1);
    assert!(
        dead.contains("HTTP 400") && dead.contains("\"rule\":\"Bad\""),
        "{dead}"
    );
    assert_eq!(n.position(), 3);

    // Reopened: nothing is sent again; a replayed alert (same seq and rule)
    // is skipped, a new one is sent.
    let mut again = AlertNotifier::open(0, cfg.outputs[0].clone(), &cfg, dir.path()).unwrap();
    log.append(&[alert(3, "Good", "carol"), alert(4, "Good", "dave")])
        .unwrap();
    drain(&mut again, &store);
    let after = http.requests();
    assert_eq!(after.len(), 6);
    assert!(String::from_utf8_lossy(&after[5].body).contains("Good by dave"));
    assert_eq!(again.position(), 5);
}

#[test]
fn each_output_has_its_own_position_and_format() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("store"));
    let slack = FakeHttp::start(Arc::new(|_: &Req| (200, b"ok".to_vec())));
    let file = dir.path().join("out.jsonl");
    let cfg = config(vec![
        OutputConfig::File { path: file.clone() },
        OutputConfig::Webhook(AlertWebhookConfig::new(slack.url(), AlertFormat::Slack)),
    ]);
    AlertLog::new(dir.path())
        .append(&[alert(7, "R", "eve"), alert(8, "R", "eve")])
        .unwrap();
    let notifiers = AlertNotifier::open_all(&cfg, dir.path()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = notifiers
        .into_iter()
        .map(|mut n| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let log = Followed {
                    store: &store,
                    feed: None,
                    stop: &stop,
                };
                let status = FollowerStatus::new(n.name());
                run_follower(&mut n, &log, &FollowOptions::default(), &status);
                status.snapshot()
            })
        })
        .collect();
    wait_until(20, "both outputs notified", || {
        slack.requests().len() == 2
            && std::fs::read_to_string(&file).map_or(0, |t| t.lines().count()) == 2
    });
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        let st = h.join().unwrap();
        assert_eq!((st.position, st.backlog, st.up), (2, 0, true), "{st:?}");
    }
    let msg: serde_json::Value = serde_json::from_slice(&slack.requests()[0].body).unwrap();
    assert_eq!(msg["text"], "[Warning] R: R by eve");
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["rule"], "R");
}

#[test]
fn throttling_holds_back_and_counts_per_output() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("store"));
    let file = dir.path().join("out.jsonl");
    let mut cfg = config(vec![OutputConfig::File { path: file.clone() }]);
    cfg.throttle = Duration::from_secs(600);
    // Same rule and user within ten minutes: one sent, then the next after
    // the window carries the count held back.
    AlertLog::new(dir.path())
        .append(&[
            alert(1, "R", "u"),
            alert(2, "R", "u"),
            alert(3, "R", "u"),
            alert(59, "R", "u"),
        ])
        .unwrap();
    let mut n = AlertNotifier::open(0, cfg.outputs[0].clone(), &cfg, dir.path()).unwrap();
    drain(&mut n, &store);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["kaudit_suppressed"], 2);
}

#[test]
fn a_forged_event_time_from_another_cluster_does_not_silence_prod() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("store"));
    let file = dir.path().join("out.jsonl");
    let mut cfg = config(vec![OutputConfig::File { path: file.clone() }]);
    cfg.throttle = Duration::from_secs(600);
    // One "Events Deleted" dated 2099 from a lab cluster, then two real ones of
    // the same user on prod, received an hour apart.
    let mut forged = alert(1, "Events Deleted", "alice");
    forged.cluster = "lab".into();
    forged.time = "2099-12-31T00:00:00.000000Z".into();
    forged.received = Some("2026-01-01T00:00:00.000000Z".into());
    let mut real = alert(2, "Events Deleted", "alice");
    real.received = Some("2026-01-01T00:01:00.000000Z".into());
    let mut again = alert(3, "Events Deleted", "alice");
    again.received = Some("2026-01-01T01:01:00.000000Z".into());
    // Its forged time does not count against prod's later alerts on the same cluster either.
    let mut forged_prod = alert(4, "Events Deleted", "alice");
    forged_prod.time = "2099-12-31T00:00:00.000000Z".into();
    forged_prod.received = Some("2026-01-01T02:01:00.000000Z".into());
    let mut after = alert(5, "Events Deleted", "alice");
    after.received = Some("2026-01-01T03:01:00.000000Z".into());
    AlertLog::new(dir.path())
        .append(&[forged, real, again, forged_prod, after])
        .unwrap();
    let mut n = AlertNotifier::open(0, cfg.outputs[0].clone(), &cfg, dir.path()).unwrap();
    drain(&mut n, &store);
    let sent: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let times: Vec<&str> = sent.iter().map(|l| l["time"].as_str().unwrap()).collect();
    assert_eq!(
        times,
        [
            "2099-12-31T00:00:00.000000Z",
            "2026-01-01T00:02:00.000000Z",
            "2026-01-01T00:03:00.000000Z",
            "2099-12-31T00:00:00.000000Z",
            "2026-01-01T00:05:00.000000Z",
        ],
        "every alert notified: {sent:?}"
    );
    assert!(sent.iter().all(|l| l.get("kaudit_suppressed").is_none()));
}
