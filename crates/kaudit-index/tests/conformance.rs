//! Real audit events from the shared conformance data (kube docs examples,
//! Falco's k8s audit traces, mostly v1beta1): for every key field and every
//! value seen, the index answers `=` and `!=` exactly as the matcher does.

use kaudit_event::{Event, MicroTime};
use kaudit_index::search::{search, SearchRequest};
use kaudit_index::{Index, IndexMode};
use kaudit_query::{Field, LazyJson, Query};
use kaudit_store::{Record, Store, StoreOptions};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn conformance_dir() -> PathBuf {
    let dir = std::env::var_os("KAUDIT_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/conformance"
            ))
        });
    if !dir.join("k8s").is_dir() || !dir.join("falco").is_dir() {
        panic!(
            "conformance data missing at {} (expected k8s/ and falco/ there; set KAUDIT_CONFORMANCE to its path)",
            dir.display()
        );
    }
    dir
}

fn real_events() -> Vec<Event> {
    let dir = conformance_dir();
    let mut files = vec![dir.join("k8s/examples/v1_real_events.jsonl")];
    let traces = dir.join("falco/traces");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&traces)
        .expect("falco traces")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    files.extend(names);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read(&f).expect("read");
        for line in text.split(|&b| b == b'\n') {
            if let Ok(ev) = Event::from_json(line) {
                out.push(ev);
            }
        }
    }
    out
}

#[test]
fn index_agrees_with_the_matcher_on_real_events() {
    let events = real_events();
    assert!(
        events.len() > 50,
        "only {} real events parsed",
        events.len()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("store");
    let mut tx = store.transaction().expect("tx");
    let clusters = ["a", "b", "c"];
    for (i, ev) in events.iter().enumerate() {
        tx.push(&Record {
            cluster: clusters[i % 3].into(),
            received: MicroTime(1_700_000_000_000_000 + i as i64),
            event: ev.bytes().to_vec(),
        })
        .expect("push");
    }
    tx.commit().expect("commit");
    let stored: Vec<(u64, Event, String)> = {
        let mut v = Vec::new();
        store
            .read(0..store.len(), &mut |seq, l| {
                v.push((
                    seq,
                    Event::from_json(l.event).expect("event"),
                    l.cluster.to_string(),
                ));
                true
            })
            .expect("read");
        v
    };
    let mut ix = Index::open(dir.path(), IndexMode::Write).expect("index");
    ix.catch_up(&store, None, u64::MAX).expect("catch up");
    ix.commit().expect("commit");
    let names = [
        "user",
        "group",
        "impersonated",
        "verb",
        "resource",
        "subresource",
        "ns",
        "name",
        "apigroup",
        "apiversion",
        "code",
        "ip",
        "useragent",
        "stage",
        "level",
        "auditid",
        "uid",
        "uri",
        "cluster",
        "decision",
        "reason",
    ];
    let mut checked = 0;
    for name in names {
        let field = Field::parse(name).expect("field");
        let mut values = BTreeSet::new();
        for (_, ev, c) in &stored {
            field.values(ev, c, &mut LazyJson::default(), &mut |v| {
                values.insert(v.to_string());
            });
        }
        for v in values.iter().take(25) {
            let quoted = serde_json::to_string(v).expect("quote");
            for text in [format!("{name}={quoted}"), format!("{name}!={quoted}")] {
                let q = Query::parse(&text).expect("query");
                let mut want: Vec<u64> = stored
                    .iter()
                    .filter(|(_, ev, c)| q.matches(ev, c))
                    .map(|(s, _, _)| *s)
                    .collect();
                want.sort_unstable();
                let page = search(&ix, &store, &SearchRequest::new(q, 100_000)).expect("search");
                let mut got: Vec<u64> = page.hits.iter().map(|h| h.seq).collect();
                got.sort_unstable();
                assert_eq!(got, want, "{text}");
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "only {checked} queries checked");
}
