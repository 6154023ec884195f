//! User sessions and RBAC from usage, answered from the index columns, equal
//! a straightforward reference that reads and parses every event, over random
//! traffic: several users and clusters, requests with one to three stages
//! (some unfinished, some stored twice), denied ones, non-resource URLs,
//! values too long for the index's dictionaries, and records appended after
//! the index caught up (the unindexed tail).

use kaudit_event::{Event, MicroTime};
use kaudit_index::backend::open_for_query;
use kaudit_index::history::{user_sessions, SESSION_GAP};
use kaudit_index::index::{Needs, MAX_DICT_KEY};
use kaudit_index::rbac::{generate, observe, RbacRequest, Scope, Usage};
use kaudit_index::{event_time, EmbeddedBackend, Index, IndexMode, SearchBackend};
use kaudit_query::Query;
use kaudit_store::{LogReader, Record, Store, StoreOptions};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

const USERS: [&str; 3] = ["alice", "bob", "system:serviceaccount:ci:deployer"];
const CLUSTERS: [&str; 2] = ["c1", "c2"];
/// `pods/exec` spelled as a resource must merge with `pods` + `exec`.
const RESOURCES: [&str; 5] = ["pods", "namespaces", "deployments", "secrets", "pods/exec"];
const SUBRESOURCES: [&str; 3] = ["", "exec", "status"];
const NAMESPACES: [&str; 3] = ["", "prod", "dev"];
const GROUPS: [&str; 2] = ["", "apps"];
const VERBS: [&str; 5] = ["get", "list", "create", "delete", "watch"];
const CODES: [i32; 5] = [200, 201, 403, 401, 404];
const DECISIONS: [Option<&str>; 3] = [None, Some("allow"), Some("forbid")];
const IPS: [&[&str]; 4] = [&[], &["10.0.0.1"], &["10.0.0.2", "10.0.0.1"], &[""]];
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000_000;

/// A value no dictionary entry can hold (the index gives it id 0).
fn long(prefix: &str) -> String {
    format!("{prefix}{}", "x".repeat(MAX_DICT_KEY + 1))
}

fn pick_name(i: usize) -> String {
    match i {
        0 => String::new(),
        1 => "p1".into(),
        2 => "web".into(),
        _ => long("name-"),
    }
}

fn pick_uri(i: usize) -> String {
    match i {
        0 => "/version".into(),
        1 => "/healthz?verbose=1".into(),
        2 => "/apis".into(),
        3 => String::new(),
        _ => long("/long-"),
    }
}

fn pick_agent(i: usize) -> String {
    match i {
        0 => "kubectl/v1.30.0".into(),
        1 => String::new(),
        2 => "helm/3.14".into(),
        _ => long("agent-"),
    }
}

#[derive(Clone, Debug)]
struct Req {
    user: usize,
    cluster: usize,
    /// None: a non-resource request for `pick_uri(uri)`.
    resource: Option<(usize, usize, usize, usize, usize)>,
    uri: usize,
    verb: usize,
    /// Index into the stage patterns of `stages`.
    pattern: usize,
    code: usize,
    decision: usize,
    agent: usize,
    ips: usize,
    /// Request time: seconds after T0.
    second: i64,
    latency_ms: i64,
    /// Shifts the request's records in store order against time order.
    jitter_s: i64,
}

fn req() -> impl Strategy<Value = Req> {
    (
        (0..USERS.len(), 0..CLUSTERS.len()),
        prop::option::weighted(
            0.75,
            (
                0..RESOURCES.len(),
                0..SUBRESOURCES.len(),
                0..NAMESPACES.len(),
                prop_oneof![4 => 0..3usize, 1 => Just(3usize)],
                0..GROUPS.len(),
            ),
        ),
        prop_oneof![5 => 0..4usize, 1 => Just(4usize)],
        (
            0..VERBS.len(),
            0..7usize,
            0..CODES.len(),
            0..DECISIONS.len(),
        ),
        (prop_oneof![6 => 0..3usize, 1 => Just(3usize)], 0..IPS.len()),
        (0..4 * 3600i64, 0..5000i64, 0..120i64),
    )
        .prop_map(
            |(
                (user, cluster),
                resource,
                uri,
                (verb, pattern, code, decision),
                (agent, ips),
                (second, latency_ms, jitter_s),
            )| Req {
                user,
                cluster,
                resource,
                uri,
                verb,
                pattern,
                code,
                decision,
                agent,
                ips,
                second,
                latency_ms,
                jitter_s,
            },
        )
}

/// The stages a request was recorded with: finished, unfinished (still
/// running or omitted by the policy), panicked, or stored twice.
fn stages(pattern: usize) -> &'static [&'static str] {
    match pattern {
        0 => &["RequestReceived", "ResponseComplete"],
        1 => &["RequestReceived"],
        2 => &["ResponseComplete"],
        3 => &["RequestReceived", "ResponseStarted", "ResponseComplete"],
        4 => &["RequestReceived", "Panic"],
        5 => &["ResponseComplete", "ResponseComplete"],
        _ => &["ResponseStarted"],
    }
}

fn stamp(us: i64) -> String {
    MicroTime(us).to_string()
}

/// The request's records: (store order key, record).
fn records(i: usize, r: &Req) -> Vec<(i64, Record)> {
    let received = T0 + r.second * 1_000_000;
    let done = received + r.latency_ms * 1000;
    let mut out = Vec::new();
    for (k, stage) in stages(r.pattern).iter().enumerate() {
        let at = match *stage {
            "RequestReceived" => received,
            "ResponseStarted" => (received + done) / 2,
            _ => done,
        };
        let mut ev = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            // A second copy of a stage differs in its level only (an exact
            // duplicate is dropped by the store).
            "level": if k > 0 && stages(r.pattern)[k - 1] == *stage { "Request" } else { "Metadata" },
            "auditID": format!("00000000-0000-0000-0000-{i:012}"),
            "stage": stage,
            "requestURI": pick_uri(r.uri),
            "verb": VERBS[r.verb],
            "user": {"username": USERS[r.user]},
            "sourceIPs": IPS[r.ips],
            "requestReceivedTimestamp": stamp(received),
            "stageTimestamp": stamp(at),
        });
        let agent = pick_agent(r.agent);
        if !agent.is_empty() {
            ev["userAgent"] = json!(agent);
        }
        if let Some((res, sub, ns, name, group)) = r.resource {
            let mut o = json!({"resource": RESOURCES[res], "apiVersion": "v1"});
            for (key, v) in [
                ("subresource", SUBRESOURCES[sub].to_string()),
                ("namespace", NAMESPACES[ns].to_string()),
                ("name", pick_name(name)),
                ("apiGroup", GROUPS[group].to_string()),
            ] {
                if !v.is_empty() {
                    o[key] = json!(v);
                }
            }
            ev["objectRef"] = o;
        }
        if *stage != "RequestReceived" {
            ev["responseStatus"] = json!({"metadata": {}, "code": CODES[r.code]});
            if let Some(d) = DECISIONS[r.decision] {
                ev["annotations"] = json!({"authorization.k8s.io/decision": d});
            }
        }
        let event = Event::from_json(ev.to_string().as_bytes()).expect("test event");
        out.push((
            at + r.jitter_s * 1_000_000 + k as i64,
            Record {
                cluster: CLUSTERS[r.cluster].into(),
                received: MicroTime(T0),
                event: event.bytes().to_vec(),
            },
        ));
    }
    out
}

/// A stored event, parsed.
struct Stored {
    seq: u64,
    time: i64,
    cluster: String,
    ev: Event,
}

fn is_final(ev: &Event) -> bool {
    matches!(ev.stage().as_str(), "ResponseComplete" | "Panic")
}

/// Which events count as a request, by full auditID: the first final stage
/// per distinct final time, else (no final stage among them) the first
/// event; events without an auditID count on their own.
fn counted(evs: &[&Stored]) -> Vec<bool> {
    let finished: HashSet<&str> = evs
        .iter()
        .filter(|s| is_final(&s.ev))
        .map(|s| s.ev.doc().audit_id.as_str())
        .collect();
    let (mut finals, mut open) = (HashSet::new(), HashSet::new());
    evs.iter()
        .map(|s| {
            let id = s.ev.doc().audit_id.as_str();
            if id.is_empty() {
                true
            } else if is_final(&s.ev) {
                finals.insert((id, s.time))
            } else {
                !finished.contains(id) && open.insert(id)
            }
        })
        .collect()
}

fn path(ev: &Event) -> &str {
    ev.doc().request_uri.split('?').next().unwrap_or("")
}

fn reference_sessions(all: &[Stored], user: &str, since: Option<i64>, until: Option<i64>) -> Value {
    let mut evs: Vec<&Stored> = all
        .iter()
        .filter(|s| s.ev.doc().user.username == user)
        .filter(|s| since.is_none_or(|t| s.time >= t) && until.is_none_or(|t| s.time < t))
        .collect();
    evs.sort_by_key(|s| (s.time, s.seq));
    let mut groups: Vec<Vec<&Stored>> = Vec::new();
    for s in evs {
        match groups.last_mut() {
            Some(g) if g.last().is_some_and(|l| s.time - l.time <= SESSION_GAP) => g.push(s),
            _ => groups.push(vec![s]),
        }
    }
    let sessions: Vec<Value> = groups
        .iter()
        .map(|g| {
            let (mut requests, mut denied) = (0u64, 0u64);
            let mut verbs: BTreeMap<String, u64> = BTreeMap::new();
            let mut resources: BTreeMap<String, u64> = BTreeMap::new();
            let (mut namespaces, mut clusters, mut ips, mut agents) = (
                BTreeSet::new(),
                BTreeSet::new(),
                BTreeSet::new(),
                BTreeSet::new(),
            );
            for (s, c) in g.iter().zip(counted(g)) {
                let d = s.ev.doc();
                clusters.insert(s.cluster.clone());
                ips.extend(d.source_ips.iter().cloned());
                if !d.user_agent.is_empty() {
                    agents.insert(d.user_agent.clone());
                }
                if !c {
                    continue;
                }
                requests += 1;
                *verbs.entry(d.verb.clone()).or_default() += 1;
                let res = match &d.object_ref {
                    Some(o) if !o.resource.is_empty() => {
                        if !o.namespace.is_empty() {
                            namespaces.insert(o.namespace.clone());
                        }
                        if o.subresource.is_empty() {
                            o.resource.clone()
                        } else {
                            format!("{}/{}", o.resource, o.subresource)
                        }
                    }
                    _ => path(&s.ev).to_string(),
                };
                *resources.entry(res).or_default() += 1;
                if matches!(s.ev.response_code(), Some(401 | 403))
                    || s.ev.annotation("authorization.k8s.io/decision") == Some("forbid")
                {
                    denied += 1;
                }
            }
            json!({
                "start": g.first().map_or(0, |s| s.time),
                "end": g.last().map_or(0, |s| s.time),
                "requests": requests,
                "denied": denied,
                "verbs": verbs,
                "resources": resources,
                "namespaces": namespaces,
                "clusters": clusters,
                "ips": ips,
                "user_agents": agents,
            })
        })
        .collect();
    Value::Array(sessions)
}

fn reference_usage(all: &[Stored], req: &RbacRequest) -> Usage {
    let filter = (!req.filter.is_empty()).then(|| Query::parse(&req.filter).expect("filter"));
    let mut evs = Vec::new();
    let mut outcome = Vec::new();
    for s in all {
        let in_range =
            req.since.is_none_or(|t| s.time >= t) && req.until.is_none_or(|t| s.time < t);
        if s.ev.doc().user.username != req.user
            || !in_range
            || filter
                .as_ref()
                .is_some_and(|f| !f.matches(&s.ev, &s.cluster))
        {
            continue;
        }
        let allowed = match (
            s.ev.annotation("authorization.k8s.io/decision"),
            s.ev.response_code(),
        ) {
            (Some(v), _) => v == "allow",
            (None, Some(code)) => !matches!(code, 401 | 403),
            (None, None) => continue,
        };
        evs.push(s);
        outcome.push(allowed);
    }
    let mut usage = Usage::default();
    for ((s, allowed), c) in evs.iter().zip(outcome).zip(counted(&evs)) {
        if !c {
            continue;
        }
        if !allowed {
            usage.denied += 1;
            continue;
        }
        usage.requests += 1;
        let d = s.ev.doc();
        match &d.object_ref {
            Some(o) if !o.resource.is_empty() => {
                let res = if o.subresource.is_empty() {
                    o.resource.clone()
                } else {
                    format!("{}/{}", o.resource, o.subresource)
                };
                let ns = if o.resource == "namespaces" {
                    String::new()
                } else {
                    o.namespace.clone()
                };
                let slot = usage
                    .scopes
                    .entry(ns)
                    .or_insert_with(Scope::default)
                    .grants
                    .entry((o.api_group.clone(), res, d.verb.clone()))
                    .or_insert_with(|| Some(BTreeSet::new()));
                match slot {
                    Some(names) if !o.name.is_empty() => {
                        names.insert(o.name.clone());
                    }
                    _ => *slot = None,
                }
            }
            _ => {
                if !path(&s.ev).is_empty() {
                    usage
                        .scopes
                        .entry(String::new())
                        .or_default()
                        .urls
                        .entry(path(&s.ev).to_string())
                        .or_default()
                        .insert(d.verb.clone());
                }
            }
        }
    }
    usage
}

/// A filter the index answers exactly, one it cannot (full text), or none.
const FILTERS: [&str; 4] = ["", "cluster=c1", "verb=get or verb=list", "prod"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn columnar_sessions_and_rbac_equal_reading_every_event(
        reqs in prop::collection::vec(req(), 1..60),
        indexed_share in 0..=4usize,
        since in prop::option::of(0..4 * 60i64),
        until in prop::option::of(0..5 * 60i64),
        filter in 0..FILTERS.len(),
        resource_names in any::<bool>(),
    ) {
        let since = since.map(|m| T0 + m * 60_000_000);
        let until = until.map(|m| T0 + m * 60_000_000);
        let mut recs: Vec<(i64, Record)> = reqs.iter().enumerate().flat_map(|(i, r)| records(i, r)).collect();
        recs.sort_by_key(|r| r.0);
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).expect("store"));
        let split = recs.len() * indexed_share / 4;
        let append = |part: &[(i64, Record)]| {
            if part.is_empty() {
                return;
            }
            let mut tx = store.transaction().expect("tx");
            for (_, r) in part {
                tx.push(r).expect("push");
            }
            tx.commit().expect("commit");
        };
        append(&recs[..split]);
        {
            let mut ix = Index::open(dir.path(), IndexMode::Write).expect("index");
            ix.catch_up(store.as_ref(), None, u64::MAX).expect("catch up");
            ix.commit().expect("commit");
        }
        // Appended after the index caught up: answered from the tail.
        append(&recs[split..]);
        let reader: Arc<dyn LogReader + Send + Sync> = store.clone();
        let writer = EmbeddedBackend::open(dir.path(), reader.clone()).expect("backend");
        prop_assert_eq!(writer.progress().expect("progress"), (split as u64, recs.len() as u64));

        let mut all = Vec::new();
        store.read(0..store.size(), &mut |seq, leaf| {
            let ev = Event::from_json(leaf.event).expect("stored event");
            all.push(Stored { seq, time: event_time(&ev, leaf.received), cluster: leaf.cluster.to_string(), ev });
            true
        }).expect("read");

        for user in USERS {
            // As the CLI opens it: only the user column loaded up front.
            let q = Query::parse(&format!("user={}", serde_json::to_string(user).expect("quote"))).expect("query");
            let ix = open_for_query(dir.path(), store.as_ref(), &q, &Needs::default()).expect("open for query");
            let cli = EmbeddedBackend::from_index(ix, reader.clone());
            let want = reference_sessions(&all, user, since, until);
            let req = RbacRequest {
                user: user.to_string(),
                filter: FILTERS[filter].to_string(),
                since,
                until,
                resource_names,
                budget: None,
            };
            let usage = reference_usage(&all, &req);
            for backend in [&writer as &dyn SearchBackend, &cli] {
                let got = serde_json::to_value(user_sessions(backend, user, since, until, None).expect("sessions")).expect("json");
                prop_assert_eq!(&got, &want, "sessions of {}", user);
                prop_assert_eq!(&observe(backend, &req).expect("observe"), &usage, "usage of {}", user);
                let report = generate(backend, &req).expect("rbac");
                prop_assert_eq!((report.requests, report.denied), (usage.requests, usage.denied));
                prop_assert_eq!(report.yaml.is_empty(), usage.scopes.values().all(|s| s.grants.is_empty() && s.urls.is_empty()));
            }
        }
    }
}

/// An index written by an older layout is dropped and rebuilt, not misread:
/// by the server's backend and by the CLI's one-query open.
#[test]
fn an_index_of_the_previous_layout_version_is_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).expect("store"));
    let r = Req {
        user: 0,
        cluster: 0,
        resource: None,
        uri: 0,
        verb: 0,
        pattern: 0,
        code: 0,
        decision: 1,
        agent: 0,
        ips: 1,
        second: 10,
        latency_ms: 3,
        jitter_s: 0,
    };
    let mut tx = store.transaction().expect("tx");
    for (_, rec) in records(1, &r) {
        tx.push(&rec).expect("push");
    }
    tx.commit().expect("commit");
    {
        let mut ix = Index::open(dir.path(), IndexMode::Write).expect("index");
        ix.catch_up(store.as_ref(), None, u64::MAX)
            .expect("catch up");
        ix.commit().expect("commit");
    }
    // Turn it into a version-1 index (18 columns, no non-resource paths).
    let meta_path = dir.path().join("search/meta.json");
    let mut meta: Value =
        serde_json::from_slice(&std::fs::read(&meta_path).expect("meta")).expect("json");
    meta["version"] = json!(1);
    for k in ["widths", "dict_counts"] {
        meta[k].as_array_mut().expect("array").pop();
    }
    std::fs::write(&meta_path, meta.to_string()).expect("write meta");
    std::fs::remove_file(dir.path().join("search/nonresource_path.col")).expect("rm col");
    assert!(matches!(
        Index::open(dir.path(), IndexMode::Read),
        Err(kaudit_index::IndexError::Corrupt(..))
    ));

    let q = Query::parse("user=alice").expect("query");
    let ix = open_for_query(dir.path(), store.as_ref(), &q, &Needs::default()).expect("cli open");
    assert_eq!(ix.next_seq(), 2, "the CLI rebuilt the index");
    let reader: Arc<dyn LogReader + Send + Sync> = store.clone();
    let cli = EmbeddedBackend::from_index(ix, reader.clone());
    let want = RbacRequest {
        user: "alice".into(),
        filter: String::new(),
        since: None,
        until: None,
        resource_names: false,
        budget: None,
    };
    let usage = observe(&cli, &want).expect("observe");
    assert_eq!(usage.requests, 1);
    assert_eq!(
        usage.scopes[""].urls.keys().collect::<Vec<_>>(),
        ["/version"]
    );

    std::fs::write(&meta_path, meta.to_string()).expect("write meta again");
    let server = EmbeddedBackend::open(dir.path(), reader).expect("server backend");
    assert_eq!(server.progress().expect("progress"), (0, 2), "dropped");
    server.catch_up().expect("rebuild");
    assert_eq!(observe(&server, &want).expect("observe"), usage);
    let s = user_sessions(&server, "alice", None, None, None).expect("sessions");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].requests, 1);
    assert_eq!(s[0].resources.get("/version"), Some(&1));
}

/// A resource spelled `pods/exec` and `pods` with subresource `exec` are one
/// grant: their object names are merged, not one replacing the other.
#[test]
fn a_subresource_grant_merges_both_spellings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).expect("store"));
    let req = |resource, second| Req {
        user: 0,
        cluster: 0,
        resource: Some(resource),
        uri: 0,
        verb: 0,
        pattern: 2,
        code: 0,
        decision: 1,
        agent: 0,
        ips: 1,
        second,
        latency_ms: 3,
        jitter_s: 0,
    };
    let mut tx = store.transaction().expect("tx");
    for (i, r) in [req((4, 0, 1, 1, 0), 1), req((0, 1, 1, 2, 0), 2)]
        .iter()
        .enumerate()
    {
        for (_, rec) in records(i, r) {
            tx.push(&rec).expect("push");
        }
    }
    tx.commit().expect("commit");
    let reader: Arc<dyn LogReader + Send + Sync> = store.clone();
    let backend = EmbeddedBackend::open(dir.path(), reader).expect("backend");
    backend.catch_up().expect("index");
    let usage = observe(
        &backend,
        &RbacRequest {
            user: "alice".into(),
            filter: String::new(),
            since: None,
            until: None,
            resource_names: true,
            budget: None,
        },
    )
    .expect("observe");
    let key = (String::new(), "pods/exec".to_string(), "get".to_string());
    let names: BTreeSet<String> = ["p1", "web"].map(String::from).into();
    assert_eq!(usage.scopes["prod"].grants.get(&key), Some(&Some(names)));
    assert_eq!(usage.requests, 2);
}
