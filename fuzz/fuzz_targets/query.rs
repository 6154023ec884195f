//! Any text through the query parser and planner: no panic (and no stack
//! overflow) on any input; a parsed query prints and parses back to the
//! same tree; and the index's answer (planned bounds, confirmed by the
//! matcher) is exactly the events the reference matcher accepts.
#![no_main]

use kaudit_event::MicroTime;
use kaudit_index::{EmbeddedBackend, SearchBackend, SearchRequest, StatsRequest};
use kaudit_query::{parse, Budget, Field, Query};
use kaudit_store::{LogReader, Record, Store, StoreOptions};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A few events of different shapes, in a store with an index over them.
struct Fixture {
    backend: EmbeddedBackend,
    events: Vec<(u64, kaudit_event::Event, String)>,
    _dir: tempfile::TempDir,
}

const EVENTS: [(&str, &str, &str, &str, u16); 6] = [
    ("alice", "get", "pods", "prod", 200),
    ("bob", "delete", "secrets", "prod", 200),
    (
        "system:serviceaccount:ci:deployer",
        "create",
        "deployments",
        "ci",
        201,
    ),
    ("alice", "list", "configmaps", "kube-system", 403),
    ("carol", "patch", "deployments", "prod", 200),
    ("bob", "watch", "pods", "", 200),
];

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).expect("store"));
        let mut tx = store.transaction().expect("tx");
        for (i, (user, verb, resource, ns, code)) in EVENTS.iter().enumerate() {
            let event = format!(
                concat!(
                    r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","#,
                    r#""auditID":"id-{i}","stage":"ResponseComplete","requestURI":"/api/v1/{resource}","#,
                    r#""verb":"{verb}","user":{{"username":"{user}","groups":["g{i}","system:authenticated"]}},"#,
                    r#""sourceIPs":["10.0.{i}.1"],"userAgent":"kubectl/v1.31.0","#,
                    r#""objectRef":{{"resource":"{resource}","namespace":"{ns}","name":"n{i}"}},"#,
                    r#""responseStatus":{{"code":{code}}},"#,
                    r#""requestReceivedTimestamp":"2027-01-0{d}T08:00:00.000000Z","#,
                    r#""stageTimestamp":"2027-01-0{d}T08:00:00.001000Z"}}"#
                ),
                i = i,
                d = i + 1,
                user = user,
                verb = verb,
                resource = resource,
                ns = ns,
                code = code
            );
            tx.push(&Record {
                cluster: if i % 2 == 0 { "east" } else { "west" }.into(),
                received: MicroTime(1_800_000_000_000_000 + i as i64),
                event: event.into_bytes(),
            })
            .expect("push");
        }
        tx.commit().expect("commit");
        let backend = EmbeddedBackend::open(dir.path(), store.clone()).expect("backend");
        backend.catch_up().expect("catch up");
        let mut events = Vec::new();
        store
            .read(0..store.size(), &mut |seq, leaf| {
                let ev = kaudit_event::Event::from_json(leaf.event).expect("event");
                events.push((seq, ev, leaf.cluster.to_string()));
                true
            })
            .expect("read");
        Fixture {
            backend,
            events,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = parse(text) else {
        return;
    };
    // Printing and parsing back gives the same tree (the empty query
    // prints as `*`, which reads back as a word).
    let printed = expr.to_string();
    if let (Ok(again), false) = (parse(&printed), matches!(expr, kaudit_query::Expr::All)) {
        assert_eq!(again, expr, "{printed}");
    }
    let _ = kaudit_index::plan::needs(&expr);
    let Ok(query) = Query::compile(expr) else {
        return;
    };
    let query = query.with_budget(Budget::from_now(Duration::from_secs(5)));
    let f = fixture();
    let want: Vec<u64> = f
        .events
        .iter()
        .rev()
        .filter(|(_, ev, cluster)| query.matches(ev, cluster))
        .map(|(seq, _, _)| *seq)
        .collect();
    let page = match f.backend.search(&SearchRequest::new(query.clone(), 100)) {
        Ok(p) => p,
        Err(kaudit_index::IndexError::TimedOut(_)) => return,
        Err(e) => panic!("search failed: {e}"),
    };
    let mut got: Vec<u64> = page.hits.iter().map(|h| h.seq).collect();
    let mut sorted_want = want.clone();
    got.sort_unstable();
    sorted_want.sort_unstable();
    assert_eq!(got, sorted_want, "index and matcher disagree on {text:?}");
    let stats = StatsRequest {
        query,
        since: None,
        until: None,
        by: vec![Field::parse("verb").expect("field")],
        top: 0,
        every: Some(3_600_000_000),
        latency: true,
    };
    match f.backend.stats(&stats) {
        Ok(r) => assert_eq!(r.total, want.len() as u64, "stats total of {text:?}"),
        Err(kaudit_index::IndexError::TimedOut(_)) => {}
        Err(e) => panic!("stats failed: {e}"),
    }
});
