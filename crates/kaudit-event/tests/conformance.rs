//! Real audit events published by third parties and Falco's trace files:
//! every one parses, v1 lines re-encode byte for byte, older versions convert.

use kaudit_event::reader::{EventReader, ReadError, ReaderOptions};
use kaudit_event::{Event, EventError, Level, Stage};
use std::path::PathBuf;

fn conformance() -> PathBuf {
    let dir = std::env::var_os("KAUDIT_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
        });
    assert!(
        dir.join("README.md").is_file(),
        "conformance data missing: expected {} (set KAUDIT_CONFORMANCE)",
        dir.display()
    );
    dir
}

#[test]
fn real_v1_events_reencode_byte_identically() {
    let path = conformance().join("k8s/examples/v1_real_events.jsonl");
    let text = std::fs::read_to_string(&path).expect("read v1 examples");
    let mut n = 0;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let ev = Event::from_json(line.as_bytes())
            .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1));
        assert_eq!(ev.bytes(), line.as_bytes(), "kept bytes, line {}", i + 1);
        let re = ev.doc().encode();
        assert_eq!(
            String::from_utf8_lossy(&re),
            line,
            "re-encoding differs at line {}",
            i + 1
        );
        n += 1;
    }
    assert!(n >= 8, "expected at least 8 real events, found {n}");
}

#[test]
fn real_v1_events_have_typed_fields() {
    let path = conformance().join("k8s/examples/v1_real_events.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    let first = Event::from_json(text.lines().next().unwrap().as_bytes()).unwrap();
    assert_eq!(first.audit_id(), "39d36d5d-cae5-4b0c-8ef2-8dc8013f49d1");
    assert_eq!(first.level(), Level::Request);
    assert_eq!(first.stage(), Stage::ResponseComplete);
    assert_eq!(first.verb(), "list");
    assert_eq!(first.user().username, "oidc:IZ00242");
    assert_eq!(
        first.user().groups,
        ["oidc:all-cadm", "system:authenticated"]
    );
    assert_eq!(first.object_ref().unwrap().resource, "pods");
    assert_eq!(first.object_ref().unwrap().namespace, "default");
    assert_eq!(first.response_code(), Some(200));
    assert_eq!(
        first.annotation("authorization.k8s.io/decision"),
        Some("allow")
    );
    let latency = first.stage_timestamp().unwrap().micros()
        - first.request_received_timestamp().unwrap().micros();
    assert_eq!(latency, 2628);
    let failed = Event::from_json(text.lines().nth(1).unwrap().as_bytes()).unwrap();
    assert_eq!(failed.user().username, "");
    assert_eq!(failed.response_code(), Some(401));
    assert!(failed.object_ref().is_none());
}

#[test]
fn older_versions_convert_to_v1() {
    let path = conformance().join("k8s/examples/v1beta1_v1alpha1_and_legacy_from_docs.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let (mut beta, mut alpha, mut legacy) = (0, 0, 0);
    for line in text.lines() {
        if line.starts_with('{') {
            let ev = Event::from_json(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
            let out = String::from_utf8(ev.bytes().to_vec()).unwrap();
            assert!(out.starts_with(r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"#));
            assert!(
                !out.contains("\"metadata\":{\"creationTimestamp\""),
                "{out}"
            );
            assert!(!out.contains("\"timestamp\""), "{out}");
            // Converted bytes are themselves canonical v1: they parse and re-encode identically.
            let again = Event::from_json(ev.bytes()).unwrap();
            assert_eq!(again.bytes(), ev.bytes());
            assert_eq!(again.doc().encode(), ev.bytes());
            if line.contains("v1alpha1") {
                alpha += 1;
                let o = ev.object_ref().unwrap();
                assert_eq!((o.api_group.as_str(), o.api_version.as_str()), ("", "v1"));
            } else {
                beta += 1;
                assert!(ev.stage_timestamp().is_some());
            }
        } else if line.contains(" AUDIT: ") {
            legacy += 1;
            let r = EventReader::new(
                std::io::Cursor::new(line.as_bytes().to_vec()),
                "legacy.log",
                ReaderOptions::default(),
            )
            .unwrap()
            .next()
            .unwrap();
            match r {
                Err(ReadError::LegacyFormat { location }) => {
                    assert_eq!(location.to_string(), "legacy.log:1");
                    let msg = ReadError::LegacyFormat { location }.to_string();
                    assert!(msg.contains("--audit-log-format=json"), "{msg}");
                }
                other => panic!("legacy line not recognised: {other:?}"),
            }
        }
    }
    assert!(
        beta >= 3 && alpha >= 2 && legacy >= 4,
        "{beta} {alpha} {legacy}"
    );
}

#[test]
fn every_falco_trace_parses_except_the_non_event() {
    let dir = conformance().join("falco/traces");
    let mut files = 0;
    let mut events = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        files += 1;
        let results: Vec<_> = EventReader::open(&path, ReaderOptions::default())
            .unwrap()
            .collect();
        if path.file_name().unwrap() == "fal_01_003.json" {
            assert_eq!(results.len(), 1);
            match &results[0] {
                Err(ReadError::Event {
                    location, error, ..
                }) => {
                    assert_eq!(location.line, 1);
                    assert!(location.source.ends_with("fal_01_003.json"));
                    assert!(matches!(error, EventError::NotAnEvent(_)), "{error}");
                    let msg = results[0].as_ref().unwrap_err().to_string();
                    assert!(
                        msg.contains("fal_01_003.json:1: not a Kubernetes audit event: kind is 0"),
                        "{msg}"
                    );
                }
                other => panic!("fal_01_003.json must be refused: {other:?}"),
            }
            continue;
        }
        for r in results {
            let ev = r.unwrap_or_else(|e| panic!("{e}"));
            // Converted to canonical v1, which re-parses to the same bytes.
            assert_eq!(Event::from_json(ev.bytes()).unwrap().bytes(), ev.bytes());
            events += 1;
        }
    }
    assert_eq!(files, 47, "expected the 47 Falco trace files");
    assert!(events >= 50, "{events}");
}

/// audit2rbac's demo log is the pre-1.10 shape (`audit.k8s.io/v1` with
/// `metadata.creationTimestamp` + `timestamp`, no requestReceivedTimestamp
/// or stageTimestamp): all 37 events read, each gets its time from
/// `timestamp`, and users, verbs and codes are those the demo documents.
#[test]
fn pre_1_10_shape_of_audit2rbac_demo() {
    let path = conformance().join("external/audit2rbac-demo/demo.log");
    let reader = EventReader::open(&path, ReaderOptions::default()).expect("open demo.log");
    let events: Vec<Event> = reader
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(events.len(), 37);
    let mut by_user = std::collections::BTreeMap::<String, usize>::new();
    let (mut forbidden, mut non_resource_gets) = (0, 0);
    for ev in &events {
        let t = ev
            .request_received_timestamp()
            .expect("time from `timestamp`");
        assert_eq!(Some(t), ev.stage_timestamp());
        assert!(t.to_string().starts_with("2017-09-11T"), "{t}");
        assert_eq!(ev.user().username, "system:admin");
        let who = ev
            .impersonated_user()
            .expect("impersonated")
            .username
            .clone();
        *by_user.entry(who).or_default() += 1;
        if ev.response_code() == Some(403) {
            forbidden += 1;
        }
        if ev.object_ref().is_none() && ev.verb() == "get" {
            non_resource_gets += 1;
        }
        // The bytes are kept as they arrived (timestamp and metadata included).
        assert!(ev.bytes().windows(12).any(|w| w == b"\"timestamp\":"));
        // Re-reading the stored bytes gives the same times.
        let again = Event::from_json(ev.bytes()).expect("stored bytes re-read");
        assert_eq!(again.request_received_timestamp(), Some(t));
    }
    let by_user: Vec<(&str, usize)> = by_user.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        by_user,
        [
            ("alice", 3),
            ("bob", 29),
            ("system:serviceaccount:ns1:sa1", 5)
        ]
    );
    assert_eq!(forbidden, 11);
    assert_eq!(non_resource_gets, 23);
    let alice_verbs: Vec<&str> = events
        .iter()
        .filter(|e| e.impersonated_user().is_some_and(|u| u.username == "alice"))
        .map(|e| e.verb())
        .collect();
    assert_eq!(alice_verbs, ["list", "list", "list"]);
}
