//! Every incident `kaudit gen --incidents` injects is found by the example
//! query README.md gives for its kind.

mod common;

use kaudit_index::search::{search, SearchRequest};
use kaudit_index::{Index, IndexMode};
use kaudit_query::Query;
use std::collections::{BTreeMap, HashSet};

fn readme_queries() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let text = std::fs::read_to_string(path).expect("README.md");
    let mut out = BTreeMap::new();
    let mut kind: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            kind = rest.split_once(':').map(|(k, _)| k.trim().to_string());
        } else if let (Some(k), Some(q)) = (&kind, line.strip_prefix("kaudit query '")) {
            let q = q.rsplit_once('\'').map(|(q, _)| q).expect("closing quote");
            out.insert(k.clone(), q.to_string());
            kind = None;
        }
    }
    out
}

#[test]
fn every_incident_kind_has_a_readme_query_that_finds_it() {
    let queries = readme_queries();
    let fx = common::store_with(40_000, 21);
    let mut ix = Index::open(fx.dir.path(), IndexMode::Write).expect("index");
    ix.catch_up(&fx.store, None, u64::MAX).expect("catch up");
    ix.commit().expect("commit");
    assert!(
        fx.incidents.len() >= 8,
        "generator injected {} incidents",
        fx.incidents.len()
    );
    let kinds: HashSet<String> = fx
        .incidents
        .iter()
        .map(|i| {
            serde_json::to_value(i.kind)
                .expect("kind")
                .as_str()
                .expect("str")
                .to_string()
        })
        .collect();
    assert_eq!(kinds.len(), 8, "all kinds injected: {kinds:?}");
    for inc in &fx.incidents {
        let kind = serde_json::to_value(inc.kind)
            .expect("kind")
            .as_str()
            .expect("str")
            .to_string();
        let text = queries
            .get(&kind)
            .unwrap_or_else(|| panic!("README.md has no example query for incident kind {kind}"));
        let q = Query::parse(text).unwrap_or_else(|e| panic!("README query {text:?}: {e}"));
        let page = search(&ix, &fx.store, &SearchRequest::new(q, 100_000)).expect("search");
        let found: HashSet<String> = page
            .hits
            .iter()
            .map(|h| {
                kaudit_event::Event::from_json(&h.event)
                    .expect("event")
                    .audit_id()
                    .to_string()
            })
            .collect();
        for id in &inc.audit_ids {
            assert!(
                found.contains(id),
                "README query for {kind} ({text}) misses auditID {id} of {}",
                inc.description
            );
        }
    }
}
