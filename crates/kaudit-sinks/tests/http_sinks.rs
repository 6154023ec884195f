//! Webhook, Elasticsearch, Splunk HEC and OCSF sinks against in-process HTTP
//! servers that check bodies and headers byte for byte, plus the runner's
//! guarantees: outages, restarts, filters, policies, dead letters.

mod common;

use common::*;
use kaudit_sinks::config::{
    ElasticsearchConfig, OcsfConfig, SinkKind, SplunkConfig, WebhookConfig,
};
use kaudit_sinks::SinkConfig;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn webhook(url: &str) -> SinkKind {
    SinkKind::Webhook(WebhookConfig {
        url: Some(url.to_string()),
        bearer_token: Some("t0k3n".into()),
        ..Default::default()
    })
}

fn ok_handler() -> Handler {
    Arc::new(|_| (200, b"{}".to_vec()))
}

/// Every dedupe ID in the EventList bodies received, with how often.
fn webhook_ids(reqs: &[Req]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in reqs {
        if r.header("content-type") != Some("application/json") {
            continue;
        }
        for item in kaudit_event::parse_batch(&r.body).expect("an EventList") {
            let ev = item.expect("every item parses");
            let id = format!("{}-{}", ev.audit_id(), ev.doc().stage.unwrap().as_str());
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    seen
}

#[test]
fn webhook_posts_the_event_list_kube_apiserver_sends_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    append(&store, "prod-eu", &[EVENT.as_bytes().to_vec()]);
    let cp = store.checkpoint().unwrap().expect("a checkpoint");
    let fake = FakeHttp::start(ok_handler());
    let mut cfg = SinkConfig::new("siem", webhook(&format!("{}/k8s-audit", fake.url())));
    cfg.checkpoints = true;
    let run = run_sink(cfg, dir.path(), store.clone());
    wait_until(20, "event and checkpoint", || fake.requests().len() >= 2);
    let reqs = fake.requests();
    let cp_req = &reqs[0];
    assert_eq!(cp_req.path, "/k8s-audit");
    assert_eq!(
        cp_req.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(cp_req.header("x-kaudit-checkpoint"), Some("1"));
    assert_eq!(cp_req.body, cp.note.as_bytes());
    let ev_req = &reqs[1];
    assert_eq!(ev_req.method, "POST");
    assert_eq!(ev_req.header("content-type"), Some("application/json"));
    assert_eq!(ev_req.header("authorization"), Some("Bearer t0k3n"));
    let expected = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{EVENT_ITEM}]}}"#
    );
    assert_eq!(String::from_utf8_lossy(&ev_req.body), expected);
    // The same bytes kaudit-event's kube-apiserver encoder writes for it.
    let doc = kaudit_event::Event::from_json(EVENT.as_bytes())
        .unwrap()
        .into_doc();
    assert_eq!(ev_req.body, kaudit_event::encode_event_list([&doc]));
    assert_eq!(run.stop(), 1);
    let st = kaudit_sinks::SinkDir::new(dir.path()).load("siem").unwrap();
    assert_eq!((st.next, st.sent, st.checkpoint_size), (1, 1, 1));
}

/// A fake Elasticsearch `_bulk`: keeps documents by `_id` (409 on repeats),
/// refuses documents whose user is `mallory` with a mapping error and
/// throttles each `_id` in `throttle_once` the first time it is seen.
struct FakeEs {
    docs: Mutex<HashMap<String, serde_json::Value>>,
    creates: Mutex<HashMap<String, usize>>,
    throttle_once: Mutex<HashSet<String>>,
}

impl FakeEs {
    fn handler(self: &Arc<Self>) -> Handler {
        let me = self.clone();
        Arc::new(move |r: &Req| {
            assert_eq!(r.path, "/_bulk");
            assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
            assert_eq!(r.header("authorization"), Some("ApiKey aWQ6a2V5"));
            let text = std::str::from_utf8(&r.body).unwrap();
            assert!(text.ends_with('\n'), "bulk bodies end with a newline");
            let lines: Vec<&str> = text.trim_end_matches('\n').split('\n').collect();
            assert_eq!(lines.len() % 2, 0, "action/document pairs");
            let mut items = Vec::new();
            for pair in lines.chunks(2) {
                let action: serde_json::Value = serde_json::from_str(pair[0]).unwrap();
                let doc: serde_json::Value = serde_json::from_str(pair[1]).unwrap();
                // A data stream takes only `create` (an `index` action is
                // refused with "only write ops with an op_type of create are
                // allowed in data streams").
                let keys: Vec<&String> = action.as_object().unwrap().keys().collect();
                assert_eq!(keys, ["create"], "data streams need create actions");
                assert_eq!(
                    action["create"]["_index"], "logs-kubernetes.audit_logs-default",
                    "the data stream Elastic's integration writes"
                );
                assert!(
                    doc["@timestamp"].is_string(),
                    "data streams need @timestamp"
                );
                let id = action["create"]["_id"].as_str().unwrap().to_string();
                *me.creates.lock().unwrap().entry(id.clone()).or_insert(0) += 1;
                let status = if me.throttle_once.lock().unwrap().remove(&id) {
                    429
                } else if doc["user"]["name"] == "mallory" {
                    400
                } else if me.docs.lock().unwrap().contains_key(&id) {
                    409
                } else {
                    me.docs.lock().unwrap().insert(id.clone(), doc);
                    201
                };
                let mut item = serde_json::json!({"_index": "logs", "_id": id, "status": status});
                if status == 400 {
                    item["error"] = serde_json::json!({"type": "mapper_parsing_exception", "reason": "failed to parse field [user.name]"});
                }
                items.push(serde_json::json!({ "create": item }));
            }
            (
                200,
                serde_json::json!({"took": 1, "errors": true, "items": items})
                    .to_string()
                    .into_bytes(),
            )
        })
    }
}

fn es_kind(url: &str) -> SinkKind {
    SinkKind::Elasticsearch(ElasticsearchConfig {
        url: url.into(),
        // No index: the default is Elastic's data stream.
        api_key: Some("aWQ6a2V5".into()),
        ..Default::default()
    })
}

#[test]
fn elasticsearch_bulk_is_ecs_and_item_errors_retry_or_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mallory = EVENT
        .replace("\"alice\"", "\"mallory\"")
        .replace("000000000001", "000000000002");
    let throttled = EVENT.replace("000000000001", "000000000003");
    let throttled_id = common::dedupe_id(throttled.as_bytes());
    append(
        &store,
        "prod-eu",
        &[
            EVENT.into(),
            mallory.clone().into_bytes(),
            throttled.into_bytes(),
        ],
    );
    let es = Arc::new(FakeEs {
        docs: Mutex::default(),
        creates: Mutex::default(),
        throttle_once: Mutex::new(HashSet::from([throttled_id])),
    });
    let fake = FakeHttp::start(es.handler());
    let run = run_sink(
        SinkConfig::new("es", es_kind(&fake.url())),
        dir.path(),
        store.clone(),
    );
    wait_until(20, "all three answered", || {
        run.stats.snapshot().cursor == 3
    });
    let reqs = fake.requests();
    let first = String::from_utf8(reqs[0].body.clone()).unwrap();
    let first_pair: Vec<&str> = first.split('\n').take(2).collect();
    assert_eq!(
        first_pair[0],
        format!(
            r#"{{"create":{{"_index":"logs-kubernetes.audit_logs-default","_id":"{}"}}}}"#,
            event_id()
        )
    );
    // Elastic's pipeline: annotation keys de-dotted, `responseStatus.metadata: {}`
    // dropped as empty; the rest of the event as it came.
    let audit = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"0b5c7a2e-1111-4c7e-9a7e-000000000001","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets/db","verb":"get","user":{"username":"alice","groups":["dev","system:authenticated"]},"sourceIPs":["10.0.0.7"],"userAgent":"kubectl/v1.31.0","objectRef":{"resource":"secrets","namespace":"prod","name":"db","apiVersion":"v1"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-01-05T09:00:00.100000Z","stageTimestamp":"2026-01-05T09:00:00.123456Z","annotations":{"authorization_k8s_io/decision":"allow","authorization_k8s_io/reason":"RBAC: allowed by RoleBinding \"dev/prod\""}}"#;
    let original = serde_json::to_string(EVENT).unwrap();
    assert_eq!(
        first_pair[1],
        format!(
            r#"{{"@timestamp":"2026-01-05T09:00:00.123456Z","ecs":{{"version":"8.11.0"}},"data_stream":{{"type":"logs","dataset":"kubernetes.audit_logs","namespace":"default"}},"event":{{"original":{original},"kind":"event","module":"kubernetes","dataset":"kubernetes.audit_logs","action":"get","outcome":"success"}},"user":{{"name":"alice"}},"user_agent":{{"original":"kubectl/v1.31.0"}},"source":{{"ip":["10.0.0.7"]}},"client":{{"ip":["10.0.0.7"]}},"orchestrator":{{"type":"kubernetes","api_version":"audit.k8s.io/v1","cluster":{{"name":"prod-eu"}},"namespace":"prod","resource":{{"name":"db","type":"secrets"}}}},"related":{{"user":["alice"],"ip":["10.0.0.7"]}},"kubernetes":{{"audit":{audit}}}}}"#
        )
    );
    // The throttled item was sent again alone; the refused one was not.
    assert_eq!(
        reqs.len(),
        2,
        "one bulk, then one retry of the throttled item"
    );
    assert_eq!(reqs[1].body.iter().filter(|&&b| b == b'\n').count(), 2);
    assert_eq!(es.docs.lock().unwrap().len(), 2);
    let s = run.stats.snapshot();
    assert_eq!((s.sent, s.failed), (2, 1));
    assert!(s.retries >= 1);
    run.stop();
    let dead = std::fs::read_to_string(dir.path().join("sinks/es.dead")).unwrap();
    let letter: serde_json::Value = serde_json::from_str(dead.trim()).unwrap();
    assert_eq!(letter["seq"], 1);
    assert_eq!(
        letter["reason"],
        "HTTP 400: mapper_parsing_exception: failed to parse field [user.name]"
    );
    assert_eq!(letter["event"], mallory);
}

#[test]
fn splunk_hec_concatenates_events_and_waits_for_the_indexer_ack() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    append(
        &store,
        "prod-eu",
        &[
            EVENT.into(),
            EVENT.replace("000000000001", "000000000002").into_bytes(),
        ],
    );
    let polls = Arc::new(Mutex::new(0usize));
    let polls2 = polls.clone();
    let fake = FakeHttp::start(Arc::new(move |r: &Req| {
        assert_eq!(
            r.header("authorization"),
            Some("Splunk 00000000-aaaa-bbbb-cccc-000000000000")
        );
        assert_eq!(
            r.header("x-splunk-request-channel"),
            Some("11111111-2222-4333-8444-555555555555")
        );
        match r.path.as_str() {
            "/services/collector/event" => {
                (200, br#"{"text":"Success","code":0,"ackId":7}"#.to_vec())
            }
            "/services/collector/ack" => {
                assert_eq!(r.body, br#"{"acks":[7]}"#);
                let mut p = polls2.lock().unwrap();
                *p += 1;
                // Not indexed on the first poll, indexed on the second.
                let done = *p >= 2;
                (200, format!(r#"{{"acks":{{"7":{done}}}}}"#).into_bytes())
            }
            p => panic!("unexpected path {p}"),
        }
    }));
    let cfg = SinkConfig::new(
        "splunk",
        SinkKind::SplunkHec(SplunkConfig {
            url: fake.url(),
            token: "00000000-aaaa-bbbb-cccc-000000000000".into(),
            index: Some("k8s".into()),
            ack: true,
            channel: Some("11111111-2222-4333-8444-555555555555".into()),
            ..Default::default()
        }),
    );
    let run = run_sink(cfg, dir.path(), store.clone());
    wait_until(20, "the batch acknowledged", || {
        run.stats.snapshot().cursor == 2
    });
    let reqs = fake.requests();
    assert_eq!(reqs[0].path, "/services/collector/event");
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
    let head = r#"{"time":1767603600.123456,"source":"kaudit","sourcetype":"kube:apiserver-audit","index":"k8s","event":"#;
    let expected = format!(
        "{head}{EVENT}}}{head}{}}}",
        EVENT.replace("000000000001", "000000000002")
    );
    assert_eq!(String::from_utf8_lossy(&reqs[0].body), expected);
    assert_eq!(
        *polls.lock().unwrap(),
        2,
        "the cursor moved only after the ack"
    );
    assert_eq!(run.stop(), 2);
}

#[test]
fn ocsf_writes_api_activity_records_to_rotated_files_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    append(&store, "prod-eu", &[EVENT.into()]);
    append(&store, "prod-eu", &generated(300, 5));
    let fake = FakeHttp::start(ok_handler());
    let out = dir.path().join("ocsf/audit.ndjson");
    let mut cfg = SinkConfig::new(
        "ocsf",
        SinkKind::Ocsf(OcsfConfig {
            path: Some(out.clone()),
            max_file_bytes: 64 << 10,
            max_files: 100,
            url: Some(format!("{}/ocsf", fake.url())),
            ..Default::default()
        }),
    );
    cfg.batch_max_events = 50;
    let run = run_sink(cfg, dir.path(), store.clone());
    wait_until(30, "all records", || run.stats.snapshot().cursor == 301);
    run.stop();
    let first: serde_json::Value = serde_json::from_slice(&fake.requests()[0].body).unwrap();
    let r = &first[0];
    assert_eq!(r["class_uid"], 6003);
    assert_eq!(r["activity_id"], 2);
    assert_eq!(r["type_uid"], 600302);
    assert_eq!(r["time"], 1_767_603_600_123i64);
    assert_eq!(r["status_id"], 1);
    assert_eq!(r["status_code"], "200");
    assert_eq!(r["actor"]["user"]["name"], "alice");
    assert_eq!(r["api"]["operation"], "get");
    assert_eq!(
        r["api"]["request"]["uid"],
        "0b5c7a2e-1111-4c7e-9a7e-000000000001"
    );
    assert_eq!(r["src_endpoint"]["ip"], "10.0.0.7");
    assert_eq!(
        r["resources"][0],
        serde_json::json!({"type": "secrets", "name": "db", "namespace": "prod"})
    );
    assert_eq!(
        r["http_request"]["url"]["path"],
        "/api/v1/namespaces/prod/secrets/db"
    );
    assert_eq!(
        r["unmapped"]["k8s_audit"]["auditID"],
        "0b5c7a2e-1111-4c7e-9a7e-000000000001"
    );
    // Every record is in exactly one of the rotated files, in order.
    let mut files = vec![out.clone()];
    for i in 1..100 {
        let p = std::path::PathBuf::from(format!("{}.{i}", out.display()));
        if p.exists() {
            files.push(p);
        }
    }
    assert!(files.len() > 2, "rotation happened: {files:?}");
    let mut total = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.len() as u64 <= 64 << 10 || text.lines().count() <= 50);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["class_uid"], 6003);
            total += 1;
        }
    }
    assert_eq!(total, 301);
    let http_total: usize = fake
        .requests()
        .iter()
        .map(|r| {
            serde_json::from_slice::<Vec<serde_json::Value>>(&r.body)
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(http_total, 301);
}

/// Destination down mid-stream, events still arriving: the sink backs off,
/// reports it, and once the destination is back every event arrives.
fn outage(kind: fn(&str) -> SinkKind, es: Option<Arc<FakeEs>>) -> (HashSet<String>, usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let first = generated(3000, 11);
    let second = generated(1000, 12);
    append(&store, "c1", &first);
    let handler = match &es {
        Some(es) => es.handler(),
        None => ok_handler(),
    };
    let mut fake = FakeHttp::start(handler);
    let mut cfg = SinkConfig::new("out", kind(&fake.url()));
    cfg.batch_max_events = 100;
    cfg.backoff_max = Duration::from_millis(400);
    cfg.timeout = Duration::from_secs(2);
    let run = run_sink(cfg, dir.path(), store.clone());
    wait_until(30, "some batches through", || {
        run.stats.snapshot().sent >= 500
    });
    fake.down();
    append(&store, "c1", &second);
    wait_until(30, "the outage noticed", || {
        let s = run.stats.snapshot();
        !s.up && s.retries >= 2 && s.last_error.is_some()
    });
    let stuck = run.stats.snapshot();
    assert!(stuck.lag_events > 0 && stuck.lag_seconds > 0.0, "{stuck:?}");
    fake.up();
    wait_until(60, "catching up", || run.stats.snapshot().cursor == 4000);
    let s = run.stats.snapshot();
    assert!(s.up && s.lag_events == 0 && s.last_error.is_none(), "{s:?}");
    assert_eq!(s.sent, 4000);
    run.stop();
    let all = first.iter().chain(&second);
    let (got, deliveries, want): (HashSet<String>, usize, HashSet<String>) = match &es {
        Some(es) => {
            let docs = es.docs.lock().unwrap();
            (
                docs.keys().cloned().collect(),
                es.creates.lock().unwrap().values().sum(),
                all.map(|l| dedupe_id(l)).collect(),
            )
        }
        None => {
            let ids = webhook_ids(&fake.requests());
            let n = ids.values().sum();
            (
                ids.into_keys().collect(),
                n,
                all.map(|l| event_key(l)).collect(),
            )
        }
    };
    assert_eq!(got, want, "every event arrived");
    (got, deliveries, want.len())
}

#[test]
fn webhook_outage_loses_nothing() {
    let (_, deliveries, unique) = outage(webhook, None);
    assert!(deliveries >= unique, "at least once");
}

#[test]
fn elasticsearch_outage_loses_nothing_and_stores_each_event_once() {
    let es = Arc::new(FakeEs {
        docs: Mutex::default(),
        creates: Mutex::default(),
        throttle_once: Mutex::default(),
    });
    let (got, _, unique) = outage(es_kind, Some(es.clone()));
    assert_eq!(got.len(), unique);
    assert_eq!(
        es.docs.lock().unwrap().len(),
        unique,
        "no duplicate documents"
    );
}

#[test]
fn splunk_outage_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let events = generated(2000, 21);
    append(&store, "c1", &events[..1000]);
    let mut fake = FakeHttp::start(Arc::new(|_| {
        (200, br#"{"text":"Success","code":0}"#.to_vec())
    }));
    let mut cfg = SinkConfig::new(
        "splunk",
        SinkKind::SplunkHec(SplunkConfig {
            url: fake.url(),
            token: "tok".into(),
            ..Default::default()
        }),
    );
    cfg.batch_max_events = 100;
    cfg.backoff_max = Duration::from_millis(400);
    let run = run_sink(cfg, dir.path(), store.clone());
    wait_until(30, "first half", || run.stats.snapshot().sent >= 300);
    fake.down();
    append(&store, "c1", &events[1000..]);
    wait_until(30, "the outage noticed", || {
        run.stats.snapshot().retries >= 2
    });
    fake.up();
    wait_until(60, "catching up", || run.stats.snapshot().cursor == 2000);
    run.stop();
    let mut seen = HashSet::new();
    for r in fake.requests() {
        // Concatenated objects: read them one after another.
        for v in serde_json::Deserializer::from_slice(&r.body).into_iter::<serde_json::Value>() {
            let v = v.expect("each HEC object parses");
            assert_eq!(v["sourcetype"], "kube:apiserver-audit");
            seen.insert(format!(
                "{}-{}",
                v["event"]["auditID"].as_str().unwrap(),
                v["event"]["stage"].as_str().unwrap()
            ));
        }
    }
    let want: HashSet<String> = events.iter().map(|l| event_key(l)).collect();
    assert_eq!(seen, want);
}

#[test]
fn a_restarted_sink_resumes_from_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let events = generated(1500, 31);
    append(&store, "c1", &events[..1000]);
    let fake = FakeHttp::start(ok_handler());
    let url = fake.url();
    let run = run_sink(
        SinkConfig::new("r", webhook(&url)),
        dir.path(),
        store.clone(),
    );
    wait_until(30, "first 1000", || run.stats.snapshot().cursor == 1000);
    assert_eq!(run.stop(), 1000);
    let saved = kaudit_sinks::SinkDir::new(dir.path()).load("r").unwrap();
    assert_eq!((saved.next, saved.sent), (1000, 1000));
    append(&store, "c1", &events[1000..]);
    // A new process: a new sink instance over the same data directory.
    let run = run_sink(
        SinkConfig::new("r", webhook(&url)),
        dir.path(),
        store.clone(),
    );
    wait_until(30, "the rest", || run.stats.snapshot().cursor == 1500);
    assert_eq!(
        run.stats.snapshot().sent,
        1500,
        "counters survive the restart"
    );
    run.stop();
    let ids = webhook_ids(&fake.requests());
    assert_eq!(ids.len(), 1500);
    assert!(
        ids.values().all(|&n| n == 1),
        "a clean restart sends nothing twice"
    );
}

#[test]
fn filter_and_policy_send_less_and_the_cursor_moves_past_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let events = generated(2000, 41);
    append(&store, "c1", &events);
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: None\n  resources:\n  - group: \"\"\n    resources: [\"configmaps\"]\n- level: Metadata\n",
    )
    .unwrap();
    let fake = FakeHttp::start(ok_handler());
    let mut cfg = SinkConfig::new("less", webhook(&fake.url()));
    cfg.filter = Some("not verb=get,list,watch".into());
    cfg.policy = Some(policy);
    let run = run_sink(cfg, dir.path(), store.clone());
    wait_until(30, "all examined", || run.stats.snapshot().cursor == 2000);
    let sent = run.stats.snapshot().sent;
    run.stop();
    let q = kaudit_query::Query::parse("not verb=get,list,watch").unwrap();
    let mut want = HashSet::new();
    for l in &events {
        let ev = kaudit_event::Event::from_json(l).unwrap();
        let configmap = ev
            .object_ref()
            .is_some_and(|r| r.resource == "configmaps" && r.api_group.is_empty());
        let received_stage = ev.doc().stage.map(|s| s.as_str()) == Some("RequestReceived");
        if q.matches(&ev, "c1") && !configmap && !received_stage {
            want.insert(event_key(l));
        }
    }
    assert!(!want.is_empty() && want.len() < 2000);
    let mut got = HashSet::new();
    for r in fake.requests() {
        for item in kaudit_event::parse_batch(&r.body).unwrap() {
            let ev = item.unwrap();
            assert!(
                ev.doc().request_object.is_none() && ev.doc().response_object.is_none(),
                "Metadata level strips bodies"
            );
            assert!(!["get", "list", "watch"].contains(&ev.verb()));
            got.insert(format!(
                "{}-{}",
                ev.audit_id(),
                ev.doc().stage.unwrap().as_str()
            ));
        }
    }
    assert_eq!(got, want);
    assert_eq!(sent as usize, want.len());
}

#[test]
fn an_unreachable_destination_holds_back_only_its_own_sink() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    append(&store, "c1", &generated(500, 51));
    // A port nothing listens on.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut bad = SinkConfig::new("bad", webhook(&format!("http://127.0.0.1:{dead_port}/")));
    bad.backoff_max = Duration::from_millis(300);
    let fake = FakeHttp::start(ok_handler());
    let bad_run = run_sink(bad, dir.path(), store.clone());
    let good_run = run_sink(
        SinkConfig::new("good", webhook(&fake.url())),
        dir.path(),
        store.clone(),
    );
    wait_until(30, "the good sink done", || {
        good_run.stats.snapshot().cursor == 500
    });
    wait_until(30, "the bad sink retrying", || {
        bad_run.stats.snapshot().retries >= 3
    });
    let s = bad_run.stats.snapshot();
    assert!(!s.up);
    assert_eq!(s.cursor, 0, "nothing skipped");
    assert_eq!(s.lag_events, 500);
    let err = s.last_error.unwrap();
    assert!(
        err.contains(&format!("127.0.0.1:{dead_port}")) && err.to_lowercase().contains("refused"),
        "{err}"
    );
    good_run.stop();
    // Stopping a sink whose batch cannot be delivered gives up after the
    // grace period and keeps its cursor where it was.
    assert_eq!(bad_run.stop(), 0);
    assert_eq!(
        kaudit_sinks::SinkDir::new(dir.path())
            .load("bad")
            .unwrap()
            .next,
        0
    );
}

#[test]
fn stopping_finishes_the_batch_in_flight_not_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let events = generated(3000, 91);
    append(&store, "c1", &events);
    // A slow destination: each batch takes 200 ms.
    let fake = FakeHttp::start(Arc::new(|_| {
        std::thread::sleep(Duration::from_millis(200));
        (200, b"{}".to_vec())
    }));
    let mut cfg = SinkConfig::new("slow", webhook(&fake.url()));
    cfg.batch_max_events = 100;
    let run = run_sink(cfg, dir.path(), store.clone());
    wait_until(30, "a first batch", || run.stats.snapshot().cursor >= 100);
    let cursor = run.stop();
    assert!(cursor < 3000, "stopped early, not after the whole backlog");
    assert_eq!(cursor % 100, 0, "whole batches only");
    let saved = kaudit_sinks::SinkDir::new(dir.path()).load("slow").unwrap();
    assert_eq!(saved.next, cursor);
    // Everything before the cursor was delivered, nothing after it.
    let ids = webhook_ids(&fake.requests());
    let want: HashSet<String> = events[..cursor as usize]
        .iter()
        .map(|l| event_key(l))
        .collect();
    assert_eq!(ids.keys().cloned().collect::<HashSet<_>>(), want);
}
