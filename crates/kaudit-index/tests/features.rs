//! Stats against brute-force counting, object history with diffs, user
//! sessions, RBAC from usage, and index persistence / recovery.

mod common;

use kaudit_event::{Event, MicroTime};
use kaudit_index::history::{object_history, user_sessions, HistoryRequest, Target};
use kaudit_index::rbac::{generate, RbacRequest};
use kaudit_index::stats::{stats, StatsRequest};
use kaudit_index::{EmbeddedBackend, Index, IndexMode};
use kaudit_query::{Field, LazyJson, Query};
use kaudit_store::{LogReader, Record, Store, StoreOptions};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

struct World {
    fx: common::Fixture,
    all: Vec<(i64, Event, String)>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let fx = common::store_with(4000, 9);
        let mut all = Vec::new();
        fx.store
            .read(0..fx.store.len(), &mut |_, l| {
                let ev = Event::from_json(l.event).expect("event");
                all.push((
                    kaudit_index::event_time(&ev, l.received),
                    ev,
                    l.cluster.to_string(),
                ));
                true
            })
            .expect("read");
        let mut ix = Index::open(fx.dir.path(), IndexMode::Write).expect("index");
        ix.catch_up(&fx.store, None, 3000).expect("catch up");
        ix.commit().expect("commit");
        World { fx, all }
    })
}

fn reader(q: &Query, by: &[Field]) -> Index {
    let w = world();
    let mut ix = Index::open(w.fx.dir.path(), IndexMode::Read).expect("open");
    let mut needs = kaudit_index::plan::needs(q.expr());
    needs.dict.extend(by.iter().filter_map(Index::dict_slot));
    needs.latency = true;
    ix.load(&needs).expect("load");
    ix
}

type Brute = HashMap<(Option<i64>, Vec<String>), (u64, Vec<u32>)>;

fn brute(q: &Query, by: &[Field], every: Option<i64>) -> (u64, Brute) {
    let w = world();
    let mut out: Brute = HashMap::new();
    let mut total = 0;
    for (t, ev, c) in &w.all {
        if !q.matches(ev, c) {
            continue;
        }
        total += 1;
        let mut combos = vec![Vec::new()];
        for f in by {
            let mut vals = Vec::new();
            f.values(ev, c, &mut LazyJson::default(), &mut |v| {
                vals.push(v.to_string())
            });
            if vals.is_empty() {
                vals.push(String::new());
            }
            combos = combos
                .into_iter()
                .flat_map(|k: Vec<String>| {
                    vals.iter().map(move |v| {
                        let mut k = k.clone();
                        k.push(v.clone());
                        k
                    })
                })
                .collect();
        }
        let lat = {
            let d = ev.doc();
            match (d.stage_timestamp, d.request_received_timestamp) {
                (Some(s), Some(r)) => u32::try_from(s.micros() - r.micros()).ok(),
                _ => None,
            }
        };
        for k in combos {
            let e = out
                .entry((every.map(|e| t.div_euclid(e) * e), k))
                .or_default();
            e.0 += 1;
            e.1.extend(lat);
        }
    }
    (total, out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn stats_equal_brute_force_counts(
        qi in 0..5usize,
        by in prop::sample::subsequence(vec!["user", "verb", "group", "code", "ns", "uri"], 0..3),
        every in prop::option::of(prop::sample::select(vec![60_000_000i64, 300_000_000])),
        bounded in any::<bool>(),
    ) {
        let text = ["", "verb=get,list", "not resource=pods", "code>=400 or user=\"system:*\"", "\"kubectl\""][qi];
        let q = Query::parse(text).expect("query");
        let by: Vec<Field> = by.iter().map(|n| Field::parse(n).expect("field")).collect();
        let ix = reader(&q, &by);
        // Bounds around every event: the same answer (a bounded histogram by
        // one field is counted in a flat array instead of a map).
        let (since, until) = if bounded {
            let ts = world().all.iter().map(|(t, _, _)| *t);
            (ts.clone().min(), ts.max().map(|t| t + 1))
        } else {
            (None, None)
        };
        let req = StatsRequest { query: q.clone(), since, until, by: by.clone(), top: 0, every, latency: true };
        let report = stats(&ix, &world().fx.store, &req).expect("stats");
        let (total, want) = brute(&q, &by, every);
        prop_assert_eq!(report.total, total);
        prop_assert_eq!(report.rows.len(), want.len());
        for row in &report.rows {
            let (count, lats) = want.get(&(row.bucket, row.key.clone())).expect("group exists in brute force");
            prop_assert_eq!(row.count, *count, "{:?}", row.key);
            let mut lats = lats.clone();
            lats.sort_unstable();
            match row.latency {
                None => prop_assert!(lats.is_empty()),
                Some(l) => {
                    prop_assert_eq!(l.samples as usize, lats.len());
                    let n = lats.len();
                    let at = |p: f64| lats[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
                    prop_assert_eq!((l.p50, l.p90, l.p99), (at(0.5), at(0.9), at(0.99)));
                }
            }
        }
    }
}

#[test]
fn stats_top_n_ranks_by_count() {
    let q = Query::parse("").expect("q");
    let by = vec![Field::User];
    let ix = reader(&q, &by);
    let req = StatsRequest {
        query: q.clone(),
        since: None,
        until: None,
        by: by.clone(),
        top: 3,
        every: None,
        latency: false,
    };
    let r = stats(&ix, &world().fx.store, &req).expect("stats");
    assert!(
        r.from_index,
        "exact query over key fields counts from the index"
    );
    assert_eq!(r.rows.len(), 3);
    let (_, want) = brute(&q, &by, None);
    let mut counts: Vec<u64> = want.values().map(|v| v.0).collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(
        r.rows.iter().map(|x| x.count).collect::<Vec<_>>(),
        counts[..3].to_vec()
    );
}

fn backend_over(store_dir: &std::path::Path, store: Store) -> EmbeddedBackend {
    let store: Arc<dyn LogReader + Send + Sync> = Arc::new(store);
    let b = EmbeddedBackend::open(store_dir, store).expect("backend");
    b.catch_up().expect("catch up");
    b
}

fn write_events(lines: &[String]) -> (tempfile::TempDir, EmbeddedBackend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("store");
    let mut tx = store.transaction().expect("tx");
    for (i, l) in lines.iter().enumerate() {
        let ev = Event::from_json(l.as_bytes()).expect("test event");
        tx.push(&Record {
            cluster: "c1".into(),
            received: MicroTime(1_000 + i as i64),
            event: ev.bytes().to_vec(),
        })
        .expect("push");
    }
    tx.commit().expect("commit");
    let b = backend_over(dir.path(), store);
    (dir, b)
}

fn ev(id: &str, stage: &str, verb: &str, user: &str, t: &str, obj: &str, extra: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"{id}","stage":"{stage}","requestURI":"/x","verb":"{verb}","user":{{"username":"{user}"}},"sourceIPs":["10.0.0.1"],{obj}"requestReceivedTimestamp":"{t}","stageTimestamp":"{t}"{extra}}}"#
    )
}

#[test]
fn object_history_diffs_consecutive_writes() {
    let obj = r#""objectRef":{"resource":"deployments","namespace":"prod","name":"web","apiGroup":"apps","apiVersion":"v1"},"#;
    let body = |replicas: u32, image: &str| {
        format!(
            r#","responseStatus":{{"metadata":{{}},"code":200}},"responseObject":{{"kind":"Deployment","apiVersion":"apps/v1","metadata":{{"name":"web","resourceVersion":"{replicas}"}},"spec":{{"replicas":{replicas},"template":{{"spec":{{"containers":[{{"name":"app","image":"{image}"}}]}}}}}}}}"#
        )
    };
    let lines = vec![
        ev(
            "a1",
            "ResponseComplete",
            "create",
            "alice",
            "2026-01-01T00:00:00.000000Z",
            obj,
            &body(1, "web:1"),
        ),
        ev(
            "a2",
            "ResponseComplete",
            "get",
            "bob",
            "2026-01-01T00:01:00.000000Z",
            obj,
            r#","responseStatus":{"metadata":{},"code":200}"#,
        ),
        ev(
            "a3",
            "ResponseComplete",
            "patch",
            "alice",
            "2026-01-01T00:02:00.000000Z",
            obj,
            &body(3, "web:2"),
        ),
        ev(
            "other",
            "ResponseComplete",
            "patch",
            "alice",
            "2026-01-01T00:03:00.000000Z",
            r#""objectRef":{"resource":"deployments","namespace":"dev","name":"web","apiGroup":"apps","apiVersion":"v1"},"#,
            &body(9, "x"),
        ),
    ];
    let (_dir, b) = write_events(&lines);
    let mut h = object_history(
        &b,
        &Target::parse("deployments/prod/web").expect("target"),
        &HistoryRequest::default(),
    )
    .expect("history")
    .entries;
    h.reverse();
    assert_eq!(
        h.iter().map(|e| e.audit_id.as_str()).collect::<Vec<_>>(),
        ["a1", "a2", "a3"]
    );
    assert!(h[0].body && h[0].changes.is_none());
    assert!(h[1].changes.is_none());
    let changes = h[2].changes.as_ref().expect("diff on the second write");
    let paths: Vec<&str> = changes.iter().map(|c| c.path()).collect();
    assert_eq!(
        paths,
        [".spec.replicas", ".spec.template.spec.containers[0].image"]
    );
    assert!(Target::parse("deployments//web").is_err());
    assert!(Target::parse("web").is_err());
}

#[test]
fn user_sessions_split_on_a_30_minute_gap() {
    let obj = r#""objectRef":{"resource":"pods","namespace":"prod","name":"p","apiVersion":"v1"},"#;
    let ok = r#","responseStatus":{"metadata":{},"code":200}"#;
    let denied = r#","responseStatus":{"metadata":{},"code":403}"#;
    let lines = vec![
        ev(
            "s1",
            "RequestReceived",
            "get",
            "alice",
            "2026-01-01T00:00:00.000000Z",
            obj,
            "",
        ),
        ev(
            "s1",
            "ResponseComplete",
            "get",
            "alice",
            "2026-01-01T00:00:00.000000Z",
            obj,
            ok,
        ),
        ev(
            "s2",
            "ResponseComplete",
            "delete",
            "alice",
            "2026-01-01T00:29:00.000000Z",
            obj,
            denied,
        ),
        ev(
            "s3",
            "ResponseComplete",
            "list",
            "alice",
            "2026-01-01T01:00:01.000000Z",
            obj,
            ok,
        ),
        ev(
            "x",
            "ResponseComplete",
            "list",
            "bob",
            "2026-01-01T00:10:00.000000Z",
            obj,
            ok,
        ),
    ];
    let (_dir, b) = write_events(&lines);
    let s = user_sessions(&b, "alice", None, None, None).expect("sessions");
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].requests, s[0].denied), (2, 1));
    assert_eq!(s[0].verbs.get("get"), Some(&1));
    assert_eq!(s[1].requests, 1);
}

#[test]
fn rbac_grants_exactly_the_allowed_requests() {
    let allow = r#","responseStatus":{"metadata":{},"code":200},"annotations":{"authorization.k8s.io/decision":"allow"}"#;
    let forbid = r#","responseStatus":{"metadata":{},"code":403},"annotations":{"authorization.k8s.io/decision":"forbid"}"#;
    let user = "system:serviceaccount:ci:deployer";
    let pods =
        r#""objectRef":{"resource":"pods","namespace":"prod","name":"p1","apiVersion":"v1"},"#;
    let exec = r#""objectRef":{"resource":"pods","namespace":"prod","name":"p1","apiVersion":"v1","subresource":"exec"},"#;
    let deploy = r#""objectRef":{"resource":"deployments","namespace":"prod","name":"web","apiGroup":"apps","apiVersion":"v1"},"#;
    let nodes = r#""objectRef":{"resource":"nodes","apiVersion":"v1"},"#;
    let secrets = r#""objectRef":{"resource":"secrets","namespace":"prod","apiVersion":"v1"},"#;
    let t = "2026-01-01T00:00:00.000000Z";
    let lines = vec![
        ev("1", "ResponseComplete", "get", user, t, pods, allow),
        ev("2", "ResponseComplete", "create", user, t, exec, allow),
        ev("3", "ResponseComplete", "patch", user, t, deploy, allow),
        ev("4", "ResponseComplete", "list", user, t, nodes, allow),
        ev("5", "ResponseComplete", "list", user, t, secrets, forbid),
        ev("6", "ResponseComplete", "get", user, t, "", allow),
        ev(
            "7",
            "ResponseComplete",
            "delete",
            "someone-else",
            t,
            deploy,
            allow,
        ),
    ];
    let (_dir, b) = write_events(&lines);
    let r = generate(
        &b,
        &RbacRequest {
            user: user.into(),
            filter: String::new(),
            since: None,
            until: None,
            resource_names: false,
            budget: None,
        },
    )
    .expect("rbac");
    assert_eq!((r.requests, r.denied), (5, 1));
    let docs: Vec<serde_json::Value> = r
        .yaml
        .split("---\n")
        .map(|d| serde_json::to_value(serde_yaml_like(d)).expect("doc"))
        .collect();
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]
    );
    let cluster_rules = docs[0]["rules"].to_string();
    assert!(
        cluster_rules.contains(r#""resources":["nodes"]"#)
            && cluster_rules.contains(r#""verbs":["list"]"#),
        "{cluster_rules}"
    );
    assert!(
        cluster_rules.contains(r#""nonResourceURLs":["/x"]"#),
        "{cluster_rules}"
    );
    let ns_rules = docs[2]["rules"].to_string();
    assert_eq!(docs[2]["metadata"]["namespace"], "prod");
    assert!(
        ns_rules.contains(r#""resources":["pods"],"verbs":["get"]"#),
        "{ns_rules}"
    );
    assert!(
        ns_rules.contains(r#""resources":["pods/exec"],"verbs":["create"]"#),
        "{ns_rules}"
    );
    assert!(
        ns_rules.contains(r#""apiGroups":["apps"],"resources":["deployments"],"verbs":["patch"]"#),
        "{ns_rules}"
    );
    assert!(
        !ns_rules.contains("secrets") && !ns_rules.contains("delete"),
        "{ns_rules}"
    );
    assert_eq!(docs[3]["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(docs[3]["subjects"][0]["namespace"], "ci");
    let named = generate(
        &b,
        &RbacRequest {
            user: user.into(),
            filter: String::new(),
            since: None,
            until: None,
            resource_names: true,
            budget: None,
        },
    )
    .expect("rbac");
    assert!(
        named.yaml.contains("resourceNames: [\"p1\"]"),
        "{}",
        named.yaml
    );
}

/// Reads the small YAML subset `rbac` writes (maps, `- ` lists, flow lists of
/// JSON strings) into JSON, so the test checks structure rather than text.
fn serde_yaml_like(doc: &str) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    fn scalar(s: &str) -> Value {
        let s = s.trim();
        if s.starts_with('[') || s.starts_with('"') {
            serde_json::from_str(s).expect("flow value")
        } else {
            json!(s)
        }
    }
    fn block(lines: &[(usize, String)], i: &mut usize, indent: usize) -> Value {
        let is_list = lines.get(*i).is_some_and(|(_, l)| l.starts_with("- "));
        if is_list {
            let mut items = Vec::new();
            while let Some((ind, l)) = lines.get(*i) {
                if *ind != indent || !l.starts_with("- ") {
                    break;
                }
                let mut sub = vec![(indent + 2, l[2..].to_string())];
                *i += 1;
                while let Some((ind2, l2)) = lines.get(*i) {
                    if *ind2 <= indent {
                        break;
                    }
                    sub.push((*ind2, l2.clone()));
                    *i += 1;
                }
                let mut j = 0;
                items.push(block(&sub, &mut j, indent + 2));
            }
            return Value::Array(items);
        }
        let mut m = Map::new();
        while let Some((ind, l)) = lines.get(*i) {
            if *ind != indent {
                break;
            }
            let (k, v) = l.split_once(':').expect("key");
            *i += 1;
            if v.trim().is_empty() {
                let next = lines.get(*i).map(|x| x.0).unwrap_or(0);
                let child_indent = if next > indent { next } else { indent };
                m.insert(k.to_string(), block(lines, i, child_indent));
            } else {
                m.insert(k.to_string(), scalar(v));
            }
        }
        Value::Object(m)
    }
    let lines: Vec<(usize, String)> = doc
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| (l.len() - l.trim_start().len(), l.trim_start().to_string()))
        .collect();
    let mut i = 0;
    block(&lines, &mut i, 0)
}

#[test]
fn index_survives_torn_writes_and_rebuilds_when_ahead_of_the_store() {
    let fx = common::store_with(1500, 4);
    let dir = fx.dir.path();
    {
        let mut ix = Index::open(dir, IndexMode::Write).expect("index");
        ix.catch_up(&fx.store, None, 1000).expect("catch up");
        ix.commit().expect("commit");
        // A second process cannot write it meanwhile.
        assert!(matches!(
            Index::open(dir, IndexMode::Write),
            Err(kaudit_index::IndexError::Locked(_))
        ));
    }
    // Garbage past the committed rows (a crash mid-commit) is ignored.
    for f in ["verb.col", "time.i64", "user.dict"] {
        use std::io::Write;
        let mut h = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("search").join(f))
            .expect("open");
        h.write_all(&[0xAB; 37]).expect("write");
    }
    let q = Query::parse("verb=get").expect("q");
    let want: Vec<u64> = {
        let mut v = Vec::new();
        fx.store
            .read(0..fx.store.len(), &mut |s, l| {
                if q.matches(&Event::from_json(l.event).expect("ev"), l.cluster) {
                    v.push(s);
                }
                true
            })
            .expect("read");
        v
    };
    let got = |ix: &Index| {
        let mut v: Vec<u64> = kaudit_index::search::search(
            ix,
            &fx.store,
            &kaudit_index::SearchRequest::new(q.clone(), 100_000),
        )
        .expect("search")
        .hits
        .iter()
        .map(|h| h.seq)
        .collect();
        v.sort_unstable();
        v
    };
    let mut ix = Index::open(dir, IndexMode::Write).expect("reopen");
    assert_eq!(ix.rows(), 1000);
    assert_eq!(got(&ix), want);
    ix.catch_up(&fx.store, None, u64::MAX).expect("catch up");
    ix.commit().expect("commit");
    assert_eq!(ix.rows(), 1500);
    assert_eq!(got(&ix), want);
    drop(ix);
    // A missing column file is reported as damage, with the fix.
    std::fs::remove_file(dir.join("search/verb.col")).expect("rm");
    let mut r = Index::open(dir, IndexMode::Read).expect("open read");
    let err = r
        .load(&kaudit_index::plan::needs(q.expr()))
        .expect_err("damaged");
    assert!(err.to_string().contains("kaudit reindex"), "{err}");
    // The embedded backend rebuilds a damaged index by itself.
    let store = Store::open(
        dir,
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .expect("ro store");
    let b = EmbeddedBackend::open(dir, Arc::new(store)).expect("backend");
    b.catch_up().expect("rebuild");
    assert_eq!(b.progress().expect("progress").0, 1500);
}
