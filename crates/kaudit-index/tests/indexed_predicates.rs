//! The body predicates and the truncated annotation the compliance templates
//! ask about are kept as index columns ([`EXTRA_COLUMNS`]): the index must
//! answer them exactly (bounds marked exact, and the sure rows equal to the
//! matcher's verdict over every stored event), so a report can count them
//! without reading bodies. And an index of the layout before them is rebuilt,
//! never read with the columns missing.

mod common;

use kaudit_event::{Event, MicroTime};
use kaudit_index::index::{extra_fields, Needs, DICT_COLUMNS, EXTRA_COLUMNS};
use kaudit_index::plan::bounds;
use kaudit_index::{EmbeddedBackend, Index, IndexMode, SearchBackend, StatsRequest};
use kaudit_query::Query;
use kaudit_store::{LogReader, Record, Store, StoreOptions};
use std::path::Path;
use std::sync::Arc;

/// Queries over every extra column, with several operators, and the
/// templates' own section queries.
fn queries() -> Vec<String> {
    let mut q = Vec::new();
    for (_, field) in EXTRA_COLUMNS {
        q.push(format!("{field}=*"));
        q.push(format!("{field}=true"));
        q.push(format!("{field}!=true"));
        q.push(format!("not {field}=*"));
    }
    q.extend(
        [
            ".requestObject.spec.volumes[*].hostPath.path=/",
            ".requestObject.spec.volumes[*].hostPath.path=~\"/var/.*\"",
            ".requestObject.roleRef.name=cluster-admin",
            "annotation.audit.k8s.io/truncated=true cluster=cluster-1",
            "resource=clusterrolebindings,rolebindings verb=create,update,patch .requestObject.roleRef.name=cluster-admin",
            "resource=pods verb=create,update,patch (.requestObject.spec.containers[*].securityContext.privileged=true or .requestObject.spec.initContainers[*].securityContext.privileged=true)",
            "resource=pods verb=create,update,patch .requestObject.spec.volumes[*].hostPath.path=*",
            "resource=pods (.requestObject.spec.hostNetwork=true or .requestObject.spec.hostPID=true or .requestObject.spec.hostIPC=true)",
        ]
        .map(String::from),
    );
    q
}

fn edge_event(id: usize, resource: &str, body: &str, annotations: &str) -> Vec<u8> {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"edge-{id}","stage":"ResponseComplete","requestURI":"/apis/x/{resource}","verb":"create","user":{{"username":"edge"}},"sourceIPs":["10.0.0.9"],"objectRef":{{"resource":"{resource}","namespace":"default","name":"e{id}","apiVersion":"v1"}},"responseStatus":{{"code":201}}{body},"requestReceivedTimestamp":"2026-11-02T00:00:00.000000Z","stageTimestamp":"2026-11-02T00:00:00.001000Z","annotations":{{{annotations}}}}}"#
    )
    .into_bytes()
}

/// Events the generator does not make: escaped keys (which the index must
/// not skip), values of other types, bodies that are no objects, `spec`
/// deeper down, a truncated event.
fn edge_events() -> Vec<Vec<u8>> {
    let bodies = [
        // `spec` spelled with an escape: still the key `spec`.
        r#","requestObject":{"sp\u0065c":{"containers":[{"securityContext":{"privileged":true}}]}}"#,
        r#","requestObject":{"spec":{"containers":[{"securityContext":{"privileged":"true"}},{"securityContext":{"privileged":false}}]}}"#,
        r#","requestObject":{"spec":{"initContainers":[{"securityContext":{"privileged":true}}],"hostNetwork":true,"hostPID":true,"hostIPC":1}}"#,
        r#","requestObject":{"spec":{"volumes":[{"hostPath":{"path":"/var/run/docker.sock"}},{"emptyDir":{}},{"hostPath":{"path":""}}]}}"#,
        r#","requestObject":{"spec":{"volumes":{"hostPath":{"path":"/"}}}}"#,
        r#","requestObject":{"metadata":{"labels":{"spec":"x"}},"roleRef":{"name":"cluster-admin","kind":"ClusterRole"}}"#,
        r#","requestObject":{"roleRef":{"name":["cluster-admin"]}}"#,
        r#","requestObject":{"metadata":{"name":"spec"}}"#,
        r#","requestObject":null"#,
        r#","requestObject":[{"spec":{"hostPID":true}}]"#,
        r#","requestObject":"spec""#,
        "",
    ];
    let mut out = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        out.push(edge_event(i, "pods", b, ""));
        out.push(edge_event(
            100 + i,
            "rolebindings",
            b,
            r#""audit.k8s.io/truncated":"true""#,
        ));
    }
    out.push(edge_event(
        200,
        "secrets",
        "",
        r#""audit.k8s.io/truncated":"false""#,
    ));
    out
}

fn append(store: &Store, events: &[Vec<u8>]) {
    let mut tx = store.transaction().expect("tx");
    for (i, e) in events.iter().enumerate() {
        tx.push(&Record {
            cluster: "cluster-1".into(),
            received: MicroTime(1_900_000_000_000_000 + i as i64),
            event: e.clone(),
        })
        .expect("push");
    }
    tx.commit().expect("commit");
}

/// Every stored event with its cluster, parsed once.
fn stored(store: &Store) -> Vec<(Event, String)> {
    let mut out = Vec::new();
    store
        .read(0..store.size(), &mut |_, leaf| {
            let ev = Event::from_json(leaf.event).expect("stored events parse");
            out.push((ev, leaf.cluster.to_string()));
            true
        })
        .expect("read");
    out
}

/// Rows (seq - base) whose event the matcher accepts, over the whole store.
fn matcher_rows(events: &[(Event, String)], base: u64, q: &Query) -> Vec<usize> {
    (0..events.len())
        .filter(|&i| q.matches(&events[i].0, &events[i].1))
        .map(|i| i - base as usize)
        .collect()
}

fn all_columns(dir: &Path) -> Index {
    let mut ix = Index::open(dir, IndexMode::Read).expect("index");
    ix.load(&Needs {
        dict: (0..DICT_COLUMNS).collect(),
        hash: vec![0],
        latency: false,
    })
    .expect("load");
    ix
}

#[test]
fn extra_column_texts_parse_and_are_request_body_paths_or_annotations() {
    for ((stem, text), field) in EXTRA_COLUMNS.iter().zip(extra_fields()) {
        let field = field.as_ref().unwrap_or_else(|| panic!("{text} parses"));
        assert_eq!(&field.name(), text, "{stem}: canonical text");
        assert!(
            Index::dict_slot(field).is_some(),
            "{stem}: the planner finds the column"
        );
        if let Some(path) = text.strip_prefix(".requestObject.") {
            let key = path.split(['.', '[']).next().unwrap_or("");
            assert!(
                kaudit_index::index::REQUEST_OBJECT_KEYS.contains(&format!("\"{key}\"").as_str()),
                "{stem}: the body pre-check must look for {key:?}"
            );
        } else {
            assert!(text.starts_with("annotation."), "{stem}: {text}");
        }
    }
}

#[test]
fn indexed_predicates_equal_the_matcher_over_every_event() {
    let fx = common::store_with(12_000, 7);
    append(&fx.store, &edge_events());
    let dir = fx.dir.path().to_path_buf();
    drop(fx.store);
    let store = Arc::new(Store::open(&dir, StoreOptions::default()).expect("store"));
    let backend = EmbeddedBackend::open(&dir, store.clone()).expect("backend");
    backend.catch_up().expect("catch up");
    drop(backend);
    let ix = all_columns(&dir);
    assert_eq!(ix.next_seq(), store.size());
    let backend = EmbeddedBackend::open(&dir, store.clone()).expect("backend");
    let events = stored(&store);
    let mut nonempty = 0;
    for text in queries() {
        let q = Query::parse(&text).expect(&text);
        let b = bounds(&ix, q.expr()).expect("bounds");
        assert!(b.exact, "{text}: decided by the index alone");
        let mut lower = Vec::new();
        b.lower.for_each(|r| lower.push(r));
        let want = matcher_rows(&events, ix.base(), &q);
        assert_eq!(lower, want, "{text}: index rows differ from the matcher's");
        nonempty += usize::from(!want.is_empty());
        // The counting path uses the columns alone and agrees.
        let stats = backend
            .stats(&StatsRequest {
                query: q.clone(),
                since: None,
                until: None,
                by: Vec::new(),
                top: 0,
                every: None,
                latency: false,
            })
            .expect("stats");
        assert!(stats.from_index, "{text}: counted from the index");
        assert_eq!(stats.total, want.len() as u64, "{text}: count");
    }
    // Every column has hits and misses in this data, so equality above
    // is not the trivial one of two empty sets.
    assert!(nonempty >= queries().len() / 2, "{nonempty} queries hit");
    for (_, field) in EXTRA_COLUMNS {
        let q = Query::parse(&format!("{field}=*")).expect("query");
        let n = matcher_rows(&events, ix.base(), &q).len();
        assert!(n > 0 && (n as u64) < store.size(), "{field}: {n} hits");
    }
}

#[test]
fn an_index_of_the_previous_layout_is_rebuilt_with_the_new_columns() {
    let fx = common::store_with(3_000, 11);
    append(&fx.store, &edge_events());
    let dir = fx.dir.path().to_path_buf();
    drop(fx.store);
    let store = Arc::new(Store::open(&dir, StoreOptions::default()).expect("store"));
    let backend = EmbeddedBackend::open(&dir, store.clone()).expect("backend");
    backend.catch_up().expect("catch up");
    drop(backend);
    // Make it a version-2 index: its meta says so and the new columns are
    // not there (as an index written before them).
    let search = dir.join(kaudit_index::INDEX_DIR);
    let meta_path = search.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).expect("meta")).expect("json");
    assert_eq!(meta["version"], kaudit_index::index::VERSION);
    meta["version"] = 2.into();
    let n = meta["widths"].as_array().expect("widths").len() - EXTRA_COLUMNS.len();
    meta["widths"].as_array_mut().expect("widths").truncate(n);
    meta["dict_counts"]
        .as_array_mut()
        .expect("counts")
        .truncate(n);
    std::fs::write(&meta_path, serde_json::to_vec(&meta).expect("encode")).expect("write meta");
    for (stem, _) in EXTRA_COLUMNS {
        for ext in ["col", "dict"] {
            let _ = std::fs::remove_file(search.join(format!("{stem}.{ext}")));
        }
    }
    // Not read as it is...
    assert!(Index::open(&dir, IndexMode::Read).is_err());
    // ...but rebuilt in full by the next writer.
    let backend = EmbeddedBackend::open(&dir, store.clone()).expect("backend");
    assert_eq!(backend.progress().expect("progress").0, 0, "dropped");
    let added = backend.catch_up().expect("catch up");
    assert_eq!(added, store.size());
    drop(backend);
    let ix = all_columns(&dir);
    assert_eq!(ix.next_seq(), store.size());
    for (stem, _) in EXTRA_COLUMNS {
        assert!(search.join(format!("{stem}.col")).is_file(), "{stem}.col");
    }
    let q = Query::parse(
        "resource=pods verb=create .requestObject.spec.containers[*].securityContext.privileged=true",
    )
    .expect("query");
    let b = bounds(&ix, q.expr()).expect("bounds");
    assert!(b.exact);
    let mut lower = Vec::new();
    b.lower.for_each(|r| lower.push(r));
    let events = stored(&store);
    let want = matcher_rows(&events, ix.base(), &q);
    assert!(!want.is_empty());
    assert_eq!(lower, want);
}
