//! The index answer equals filtering every stored event with the reference
//! matcher, for random queries over generated data, across pages, with part
//! of the store not yet indexed.

mod common;

use kaudit_event::Event;
use kaudit_index::search::{search, Cursor, SearchRequest};
use kaudit_index::{event_time, Index, IndexMode};
use kaudit_query::Query;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::OnceLock;

struct World {
    fx: common::Fixture,
    /// (field name, values seen in the data)
    vocab: Vec<(&'static str, Vec<String>)>,
    /// (time, seq, event, cluster) for every record.
    all: Vec<(i64, u64, Event, String)>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let fx = common::store_with(3000, 11);
        let mut all = Vec::new();
        fx.store
            .read(0..fx.store.len(), &mut |seq, leaf| {
                let ev = Event::from_json(leaf.event).expect("event");
                all.push((
                    event_time(&ev, leaf.received),
                    seq,
                    ev,
                    leaf.cluster.to_string(),
                ));
                true
            })
            .expect("read");
        let fields: [&'static str; 12] = [
            "user",
            "group",
            "verb",
            "resource",
            "subresource",
            "ns",
            "name",
            "code",
            "ip",
            "useragent",
            "stage",
            "decision",
        ];
        let mut vocab = Vec::new();
        for name in fields {
            let f = kaudit_query::Field::parse(name).expect("field");
            let mut seen = BTreeSet::new();
            for (_, _, ev, c) in &all {
                let mut json = kaudit_query::LazyJson::default();
                f.values(ev, c, &mut json, &mut |v| {
                    seen.insert(v.to_string());
                });
            }
            let mut v: Vec<String> = seen.into_iter().collect();
            v.truncate(40);
            vocab.push((name, v));
        }
        // Index the first 2/3 only: the rest is the unindexed tail.
        let mut ix = Index::open(fx.dir.path(), IndexMode::Write).expect("index");
        ix.catch_up(&fx.store, None, 2000).expect("catch up");
        ix.commit().expect("commit");
        World { fx, vocab, all }
    })
}

fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

fn leaf() -> impl Strategy<Value = String> {
    let w = world();
    let n = w.vocab.len();
    prop_oneof![
        6 => (0..n, any::<prop::sample::Index>(), any::<prop::sample::Index>(), 0..6usize, 0..3usize).prop_map(move |(f, a, b, op, k)| {
            let (name, vals) = &w.vocab[f];
            if vals.is_empty() {
                return format!("{name}=x");
            }
            let v1 = vals[a.index(vals.len())].clone();
            let v2 = vals[b.index(vals.len())].clone();
            match op {
                0 => format!("{name}={}", quote(&v1)),
                1 => format!("{name}!={}", quote(&v1)),
                2 => format!("{name}={},{}", quote(&v1), quote(&v2)),
                3 => {
                    let cut: String = v1.chars().take(k + 1).collect();
                    format!("{name}={}", quote(&format!("{cut}*")))
                }
                4 => format!("{name}=~{}", quote(&format!("{}.*", regex_escape(&v1.chars().take(k + 2).collect::<String>())))),
                _ => format!("{name}!~{}", quote(&format!(".*{}", regex_escape(&v2.chars().rev().take(k + 1).collect::<String>().chars().rev().collect::<String>())))),
            }
        }),
        1 => (0..4usize, 200..600i64).prop_map(|(o, c)| format!("code{}{c}", [">=", "<", ">", "<="][o])),
        1 => prop::sample::select(vec!["10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12", "10.1.0.0/16"]).prop_map(|c| format!("ip={c}")),
        1 => prop::sample::select(vec!["kubectl", "\"kubectl exec\"", "secrets", "system:anonymous", "privileged"]).prop_map(String::from),
        1 => prop::sample::select(vec![".objectRef.resource=pods", ".responseStatus.code=403", ".requestObject.spec.containers[*].securityContext.privileged=true", "annotation.authorization.k8s.io/decision=forbid", "auditid=x", "uri=\"/api/v1/*\""]).prop_map(String::from),
    ]
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == ' ' || c == '-' || c == ':' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

fn query() -> impl Strategy<Value = String> {
    leaf().prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) or ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} {b}")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

fn brute(w: &World, q: &Query, since: Option<i64>, until: Option<i64>, reverse: bool) -> Vec<u64> {
    let mut v: Vec<(i64, u64)> = w
        .all
        .iter()
        .filter(|(t, _, ev, c)| {
            since.is_none_or(|s| *t >= s) && until.is_none_or(|u| *t < u) && q.matches(ev, c)
        })
        .map(|(t, s, _, _)| (*t, *s))
        .collect();
    v.sort();
    if !reverse {
        v.reverse();
    }
    v.into_iter().map(|(_, s)| s).collect()
}

fn paged(
    w: &World,
    q: &Query,
    since: Option<i64>,
    until: Option<i64>,
    reverse: bool,
    limit: usize,
) -> Vec<u64> {
    let ix = {
        let mut ix = Index::open(w.fx.dir.path(), IndexMode::Read).expect("open read");
        ix.load(&kaudit_index::plan::needs(q.expr())).expect("load");
        ix
    };
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    for _ in 0..10_000 {
        let req = SearchRequest {
            query: q.clone(),
            since,
            until,
            limit,
            cursor,
            reverse,
        };
        let page = search(&ix, &w.fx.store, &req).expect("search");
        out.extend(page.hits.iter().map(|h| h.seq));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn index_answer_equals_brute_force(text in query(), limit in 40..400usize, reverse in any::<bool>(), window in any::<Option<(prop::sample::Index, prop::sample::Index)>>()) {
        let w = world();
        let q = match Query::parse(&text) {
            Ok(q) => q,
            Err(e) => panic!("generated query {text:?} does not parse: {e}"),
        };
        let (since, until) = match window {
            None => (None, None),
            Some((a, b)) => {
                let ta = w.all[a.index(w.all.len())].0;
                let tb = w.all[b.index(w.all.len())].0;
                (Some(ta.min(tb)), Some(ta.max(tb)))
            }
        };
        let expected = brute(w, &q, since, until, reverse);
        let got = paged(w, &q, since, until, reverse, limit);
        prop_assert_eq!(got, expected, "query {}", text);
    }
}

#[test]
fn index_is_used_and_tail_is_scanned() {
    let w = world();
    let q = Query::parse("verb=get").expect("query");
    let mut ix = Index::open(w.fx.dir.path(), IndexMode::Read).expect("open");
    ix.load(&kaudit_index::plan::needs(q.expr())).expect("load");
    assert_eq!(ix.rows(), 2000);
    let page = search(&ix, &w.fx.store, &SearchRequest::new(q.clone(), 100_000)).expect("search");
    assert_eq!(page.tail_scanned, 1000);
    // The index narrowed the candidates to exactly the gets among the indexed rows.
    let gets = w.all[..2000]
        .iter()
        .filter(|(_, _, ev, _)| ev.verb() == "get")
        .count();
    assert_eq!(page.candidates as usize, gets);
    assert_eq!(
        page.hits.len(),
        w.all
            .iter()
            .filter(|(_, _, ev, _)| ev.verb() == "get")
            .count()
    );
}
