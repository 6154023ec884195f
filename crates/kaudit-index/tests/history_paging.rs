//! Object history pages: walking a history page by page (newest first)
//! gives the same entries and the same diffs as reading it whole, whatever
//! the page size, across deletes, failed writes, bodiless writes and two
//! clusters holding an object of the same name; and a page's oldest write
//! is diffed against a version found in earlier pages.

use kaudit_event::{Event, MicroTime};
use kaudit_index::history::{object_history, Entry, HistoryRequest, Target};
use kaudit_index::EmbeddedBackend;
use kaudit_store::{Record, Store, StoreOptions};
use proptest::prelude::*;
use std::sync::Arc;

/// One request on the object: (verb, code, carries a body, cluster, replicas).
#[derive(Clone, Debug)]
struct Op {
    verb: &'static str,
    code: u16,
    body: bool,
    cluster: usize,
    replicas: u32,
}

fn op() -> impl Strategy<Value = Op> {
    (
        prop::sample::select(vec!["create", "update", "patch", "get", "delete", "list"]),
        prop::sample::select(vec![200u16, 200, 200, 201, 404, 409]),
        prop::bool::weighted(0.7),
        0usize..2,
        0u32..5,
    )
        .prop_map(|(verb, code, body, cluster, replicas)| Op {
            verb,
            code,
            body,
            cluster,
            replicas,
        })
}

fn event_json(i: usize, o: &Op) -> String {
    let t = MicroTime(1_767_225_600_000_000 + i as i64 * 1_000_000).to_string();
    let body = if o.body {
        format!(
            r#","responseObject":{{"kind":"Deployment","apiVersion":"apps/v1","metadata":{{"name":"web"}},"spec":{{"replicas":{}}}}}"#,
            o.replicas
        )
    } else {
        String::new()
    };
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"id-{i}","stage":"ResponseComplete","requestURI":"/x","verb":"{}","user":{{"username":"u"}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"deployments","namespace":"prod","name":"web","apiGroup":"apps","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":{}}}{body},"requestReceivedTimestamp":"{t}","stageTimestamp":"{t}"}}"#,
        o.verb, o.code
    )
}

/// A store holding `ops` (plus unrelated events between them), indexed up
/// to `indexed` records; the rest is the unindexed tail.
fn backend(ops: &[Op], indexed: usize) -> (tempfile::TempDir, EmbeddedBackend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("store");
    let push = |store: &Store, from: usize, to: usize| {
        let mut tx = store.transaction().expect("tx");
        for (i, o) in ops.iter().enumerate().take(to).skip(from) {
            let ev = Event::from_json(event_json(i, o).as_bytes()).expect("test event");
            tx.push(&Record {
                cluster: format!("c{}", o.cluster),
                received: MicroTime(1_000 + i as i64),
                event: ev.bytes().to_vec(),
            })
            .expect("push");
        }
        tx.commit().expect("commit");
    };
    push(&store, 0, indexed);
    let store = Arc::new(store);
    let b = EmbeddedBackend::open(dir.path(), store.clone()).expect("backend");
    b.catch_up().expect("catch up");
    push(&store, indexed, ops.len());
    (dir, b)
}

/// What an entry says, for comparing two readings.
fn view(e: &Entry) -> (u64, String, bool, Option<String>) {
    (
        e.seq,
        e.cluster.clone(),
        e.body,
        e.changes
            .as_ref()
            .map(|c| serde_json::to_string(c).expect("changes")),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn pages_equal_the_whole_history(
        ops in prop::collection::vec(op(), 1..60),
        page in 1usize..9,
        indexed_share in 0usize..=4,
    ) {
        let indexed = ops.len() * indexed_share / 4;
        let (_dir, b) = backend(&ops, indexed);
        let target = Target::parse("deployments/prod/web").expect("target");
        let whole = object_history(&b, &target, &HistoryRequest::default()).expect("whole");
        prop_assert_eq!(whole.entries.len(), ops.len());
        prop_assert!(whole.next.is_none());
        let mut paged = Vec::new();
        let mut before = None;
        loop {
            let req = HistoryRequest { before, limit: page, ..HistoryRequest::default() };
            let p = object_history(&b, &target, &req).expect("page");
            prop_assert!(p.entries.len() <= page);
            paged.extend(p.entries);
            match p.next {
                Some(c) => before = Some(c),
                None => break,
            }
        }
        let a: Vec<_> = whole.entries.iter().map(view).collect();
        let z: Vec<_> = paged.iter().map(view).collect();
        prop_assert_eq!(a, z);
    }
}

#[test]
fn a_pages_oldest_write_is_diffed_against_an_earlier_page() {
    let w = |verb: &'static str, replicas: u32| Op {
        verb,
        code: 200,
        body: true,
        cluster: 0,
        replicas,
    };
    let get = Op {
        verb: "get",
        body: false,
        ..w("get", 0)
    };
    // create(1), 40 gets, patch(3), get: the newest page of two holds the
    // patch, whose previous version is 41 events older (past what a page
    // reads ahead, so the earlier writes are searched for).
    let mut ops = vec![w("create", 1)];
    ops.extend(std::iter::repeat_n(get.clone(), 40));
    ops.push(w("patch", 3));
    ops.push(get);
    let (_dir, b) = backend(&ops, ops.len());
    let target = Target::parse("deployments/prod/web").expect("target");
    let req = HistoryRequest {
        limit: 2,
        ..HistoryRequest::default()
    };
    let p = object_history(&b, &target, &req).expect("page");
    assert_eq!(p.entries.len(), 2);
    assert!(p.next.is_some());
    let patch = &p.entries[1];
    assert_eq!(patch.verb, "patch");
    let changes = patch.changes.as_ref().expect("diff against the create");
    assert_eq!(
        serde_json::to_value(changes).expect("json"),
        serde_json::json!([{"op": "changed", "path": ".spec.replicas", "from": 1, "to": 3}])
    );
}
