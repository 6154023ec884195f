//! Behaviour of the generator as other crates and `kaudit gen` see it.

use kaudit_event::{Event, Level, MicroTime, Stage};
use kaudit_gen::{GenConfig, GenError, Generator, Incident, IncidentKind};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

fn config(seed: u64, events: u64, clusters: usize) -> GenConfig {
    let mut c = GenConfig::new(seed);
    c.events = Some(events);
    c.clusters = kaudit_gen::default_cluster_names(clusters);
    c.spread_incidents();
    c
}

fn run(c: GenConfig) -> (Vec<kaudit_gen::GeneratedEvent>, Vec<Incident>, Vec<String>) {
    let mut g = Generator::new(c).unwrap();
    let mut out = Vec::new();
    for e in g.by_ref() {
        out.push(e);
    }
    let names = g.cluster_names().to_vec();
    (out, g.incidents().to_vec(), names)
}

fn json(e: &kaudit_gen::GeneratedEvent) -> Value {
    serde_json::from_slice(&e.bytes).unwrap()
}

fn conformance_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("KAUDIT_CONFORMANCE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
        });
    assert!(
        dir.join("k8s/examples/v1_real_events.jsonl").is_file(),
        "conformance data not found at {} (expected k8s/examples/v1_real_events.jsonl); \
         check out the shared conformance data next to the workspace or set KAUDIT_CONFORMANCE",
        dir.display()
    );
    dir
}

#[test]
fn same_seed_same_bytes_and_different_seed_different_bytes() {
    let a: Vec<_> = run(config(42, 3000, 2)).0;
    let b: Vec<_> = run(config(42, 3000, 2)).0;
    let c: Vec<_> = run(config(43, 3000, 2)).0;
    assert_eq!(a.len(), 3000);
    assert_eq!(a, b);
    assert_ne!(
        a.iter().map(|e| &e.bytes).collect::<Vec<_>>(),
        c.iter().map(|e| &e.bytes).collect::<Vec<_>>()
    );
    // The fast path writes the same bytes as the iterator.
    let mut g = Generator::new(config(42, 3000, 2)).unwrap();
    let mut buf = Vec::new();
    for e in &a {
        buf.clear();
        assert_eq!(g.next_into(&mut buf), Some(e.cluster));
        assert_eq!(buf, e.bytes);
    }
    assert_eq!(g.next_into(&mut buf), None);
}

#[test]
fn every_event_round_trips_byte_identically() {
    let (events, _, _) = run(config(7, 20_000, 3));
    for e in &events {
        let ev = e
            .event()
            .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&e.bytes)));
        assert_eq!(
            ev.doc().encode(),
            e.bytes,
            "re-encoding differs for {}",
            String::from_utf8_lossy(&e.bytes)
        );
        assert_eq!(Event::from_doc(ev.doc().clone()).bytes(), &e.bytes[..]);
    }
}

fn check_stream(events: &[kaudit_gen::GeneratedEvent], start: MicroTime) -> Result<(), String> {
    let mut last = i64::MIN;
    for e in events {
        let ev = Event::from_json(&e.bytes).map_err(|err| err.to_string())?;
        if ev.doc().encode() != e.bytes {
            return Err(format!(
                "not byte-identical: {}",
                String::from_utf8_lossy(&e.bytes)
            ));
        }
        let at = ev.stage_timestamp().ok_or("no stageTimestamp")?.micros();
        let rx = ev
            .request_received_timestamp()
            .ok_or("no requestReceivedTimestamp")?
            .micros();
        if at < last {
            return Err(format!("time went back at {}", ev.audit_id()));
        }
        if at < rx || rx < start.micros() {
            return Err(format!("bad timestamps at {}", ev.audit_id()));
        }
        last = at;
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    #[test]
    fn random_configs_round_trip_and_keep_time_order(
        seed in proptest::num::u64::ANY,
        clusters in 1usize..5,
        rate in 1.0f64..20_000.0,
    ) {
        let mut c = config(seed, 600, clusters);
        c.rate = rate;
        let start = c.start;
        let (events, _, _) = run(c);
        proptest::prop_assert_eq!(events.len(), 600);
        if let Err(e) = check_stream(&events, start) {
            proptest::prop_assert!(false, "{}", e);
        }
    }
}

#[test]
fn incidents_file_matches_the_stream() {
    let (events, incidents, names) = run(config(11, 30_000, 2));
    let by_id: HashMap<String, Vec<(usize, Value)>> = {
        let mut m: HashMap<String, Vec<(usize, Value)>> = HashMap::new();
        for e in &events {
            let v = json(e);
            m.entry(v["auditID"].as_str().unwrap().to_string())
                .or_default()
                .push((e.cluster, v));
        }
        m
    };
    let kinds: BTreeSet<&str> = incidents.iter().map(|i| i.kind.as_str()).collect();
    for k in IncidentKind::ALL {
        assert!(
            kinds.contains(k.as_str()),
            "no {} incident in {kinds:?}",
            k.as_str()
        );
    }
    for inc in &incidents {
        assert!(!inc.audit_ids.is_empty());
        for id in &inc.audit_ids {
            let evs = by_id
                .get(id)
                .unwrap_or_else(|| panic!("{:?} auditID {id} not in the stream", inc.kind));
            for (cluster, v) in evs {
                assert_eq!(names[*cluster], inc.cluster, "{:?}", inc.kind);
                assert_eq!(v["user"]["username"], inc.user.as_str(), "{:?}", inc.kind);
                let o = &v["objectRef"];
                if !inc.resource.is_empty() {
                    assert_eq!(o["resource"], inc.resource.as_str(), "{:?}", inc.kind);
                }
                check_shape(inc, v);
            }
        }
        // The defining request carries the incident's verb and target.
        let (_, first) = by_id[&inc.audit_ids[0]].last().unwrap();
        assert_eq!(first["verb"], inc.verb.as_str());
        let o = &first["objectRef"];
        assert_eq!(
            o["namespace"].as_str().unwrap_or(""),
            inc.namespace,
            "{:?}",
            inc.kind
        );
        if !inc.name.is_empty() {
            assert_eq!(o["name"], inc.name.as_str(), "{:?}", inc.kind);
        }
    }
}

/// Asserts that an event of an incident has the shape its kind describes.
fn check_shape(inc: &Incident, v: &Value) {
    let stage = v["stage"].as_str().unwrap();
    let complete = stage == "ResponseComplete";
    let containers = |v: &Value| {
        v["requestObject"]["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    match inc.kind {
        IncidentKind::ExecIntoPod => {
            assert_eq!(v["objectRef"]["subresource"], "exec");
            assert!(v["requestURI"]
                .as_str()
                .unwrap()
                .contains("command=%2Fbin%2Fsh"));
            if stage != "RequestReceived" {
                assert_eq!(v["responseStatus"]["code"], 101);
            }
        }
        IncidentKind::PrivilegedPod if complete => {
            assert!(containers(v)
                .iter()
                .any(|c| c["securityContext"]["privileged"] == Value::Bool(true)));
            assert_eq!(
                v["annotations"]["pod-security.kubernetes.io/enforce-policy"],
                "privileged:latest"
            );
            assert_eq!(v["responseStatus"]["code"], 201);
        }
        IncidentKind::HostPathRootMount if complete => {
            let vols = v["requestObject"]["spec"]["volumes"].as_array().unwrap();
            assert!(vols.iter().any(|x| x["hostPath"]["path"] == "/"));
        }
        IncidentKind::ClusterAdminBinding if complete => {
            assert_eq!(v["requestObject"]["roleRef"]["name"], "cluster-admin");
            assert_eq!(v["requestObject"]["kind"], "ClusterRoleBinding");
            assert_eq!(v["objectRef"]["apiGroup"], "rbac.authorization.k8s.io");
        }
        IncidentKind::SecretEnumeration => {
            assert!(matches!(v["verb"].as_str(), Some("list" | "get")));
            assert!(inc.audit_ids.len() >= 4);
            assert_eq!(v["annotations"]["authorization.k8s.io/decision"], "allow");
        }
        IncidentKind::AnonymousAllowed => {
            assert_eq!(v["user"]["username"], "system:anonymous");
            assert_eq!(v["annotations"]["authorization.k8s.io/decision"], "allow");
            let uri = v["requestURI"].as_str().unwrap();
            assert!(!matches!(uri, "/healthz" | "/livez" | "/readyz"));
        }
        IncidentKind::EventsDeleted => {
            assert_eq!(v["verb"], "delete");
            assert_eq!(v["objectRef"]["resource"], "events");
        }
        IncidentKind::WebhookConfigChanged if complete => {
            assert_eq!(v["objectRef"]["apiGroup"], "admissionregistration.k8s.io");
            assert_eq!(v["requestObject"]["webhooks"][0]["failurePolicy"], "Ignore");
            assert_eq!(
                v["responseObject"]["webhooks"][0]["failurePolicy"],
                "Ignore"
            );
        }
        _ => {}
    }
}

#[test]
fn sizes_look_like_a_real_cluster() {
    let (events, _, _) = run(config(5, 30_000, 1));
    let mut sizes: Vec<usize> = events.iter().map(|e| e.bytes.len()).collect();
    sizes.sort_unstable();
    let median = sizes[sizes.len() / 2];
    assert!(
        (800..=1800).contains(&median),
        "median event size {median} bytes"
    );
    let big = sizes.iter().filter(|&&s| s > 10 * 1024).count();
    assert!(big >= 10, "only {big} events over 10 KB");
    assert!(
        *sizes.last().unwrap() <= 64 * 1024,
        "largest event {} bytes",
        sizes.last().unwrap()
    );
}

#[test]
fn the_mix_contains_every_category() {
    let (events, _, _) = run(config(3, 30_000, 1));
    let mut stages_by_id: HashMap<String, Vec<String>> = HashMap::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut hit = |k: &'static str| *seen.entry(k).or_default() += 1;
    let mut levels = BTreeSet::new();
    for e in &events {
        let s = std::str::from_utf8(&e.bytes).unwrap();
        let v = json(e);
        let stage = v["stage"].as_str().unwrap().to_string();
        stages_by_id
            .entry(v["auditID"].as_str().unwrap().into())
            .or_default()
            .push(stage.clone());
        levels.insert(v["level"].as_str().unwrap().to_string());
        let code = v["responseStatus"]["code"].as_i64();
        if code == Some(401) && s.contains("\"user\":{}") && stage == "ResponseStarted" {
            hit("401 user {}");
        }
        if code == Some(403)
            && v["annotations"]["authorization.k8s.io/decision"] == "forbid"
            && v["responseStatus"]["reason"] == "Forbidden"
        {
            hit("403 forbid");
        }
        if v["verb"] == "watch" && stage == "ResponseStarted" {
            hit("watch started");
        }
        let uri = v["requestURI"].as_str().unwrap();
        let path = uri.split('?').next().unwrap();
        for nr in [
            "/healthz",
            "/readyz",
            "/livez",
            "/metrics",
            "/version",
            "/openapi/v2",
        ] {
            if path == nr && v.get("objectRef").is_none() {
                hit(nr);
            }
        }
        let sub = v["objectRef"]["subresource"].as_str().unwrap_or("");
        match (v["verb"].as_str().unwrap(), sub) {
            ("create", "exec") => hit("exec"),
            ("create", "portforward") => hit("port-forward"),
            ("get", "log") => hit("logs"),
            ("patch", _) if v["user"]["username"].as_str().unwrap().contains('@') => {
                hit("kubectl apply")
            }
            ("delete", _) => hit("delete"),
            _ => {}
        }
        if v["annotations"]["pod-security.kubernetes.io/enforce-policy"].is_string()
            && v["requestObject"]["spec"]["containers"][0]["securityContext"].is_object()
        {
            hit("pod create with securityContext");
        }
        if v["userAgent"]
            .as_str()
            .unwrap_or("")
            .starts_with("kubelet/v1.31.0")
        {
            hit("kubelet");
        }
        if v["user"]["username"]
            .as_str()
            .unwrap_or("")
            .starts_with("system:serviceaccount:ci:")
        {
            hit("ci");
        }
        if let Some(kind) = v["requestObject"]["kind"].as_str() {
            if matches!(
                kind,
                "Deployment" | "ConfigMap" | "Role" | "RoleBinding" | "Pod"
            ) {
                hit("request objects");
            }
        }
    }
    let pairs = stages_by_id
        .values()
        .filter(|s| s.as_slice() == ["RequestReceived", "ResponseComplete"])
        .count();
    assert!(
        pairs > 50,
        "only {pairs} RequestReceived+ResponseComplete pairs"
    );
    for k in [
        "401 user {}",
        "403 forbid",
        "watch started",
        "/healthz",
        "/readyz",
        "/livez",
        "/metrics",
        "/version",
        "/openapi/v2",
        "exec",
        "port-forward",
        "logs",
        "kubectl apply",
        "delete",
        "pod create with securityContext",
        "kubelet",
        "ci",
        "request objects",
    ] {
        assert!(
            seen.get(k).copied().unwrap_or(0) > 0,
            "no {k} in the mix: {seen:?}"
        );
    }
    for l in ["Metadata", "Request", "RequestResponse"] {
        assert!(levels.contains(l), "no {l} events");
    }
    let metadata = events
        .iter()
        .filter(|e| e.event().unwrap().level() == Level::Metadata)
        .count();
    assert!(
        metadata * 2 > events.len(),
        "Metadata should dominate: {metadata}"
    );
    // Stages of one request never repeat and come in order.
    for (id, stages) in &stages_by_id {
        let parsed: Vec<Stage> = stages.iter().map(|s| s.parse().unwrap()).collect();
        assert!(parsed.windows(2).all(|w| w[0] < w[1]), "{id}: {stages:?}");
    }
}

#[test]
fn audit_ids_are_uuid_v4() {
    let (events, _, _) = run(config(9, 2000, 1));
    for e in &events {
        let v = json(e);
        let id = v["auditID"].as_str().unwrap().as_bytes();
        assert_eq!(id.len(), 36);
        for (i, b) in id.iter().enumerate() {
            match i {
                8 | 13 | 18 | 23 => assert_eq!(*b, b'-'),
                14 => assert_eq!(*b, b'4'),
                19 => assert!(matches!(b, b'8' | b'9' | b'a' | b'b')),
                _ => assert!(b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            }
        }
    }
}

#[test]
fn rate_and_start_drive_the_timestamps() {
    for rate in [50.0, 2000.0] {
        let mut c = config(1, 20_000, 1);
        c.rate = rate;
        c.start = MicroTime::parse("2030-06-01T00:00:00Z").unwrap();
        let start = c.start;
        let (events, _, _) = run(c);
        let first = events[0].event().unwrap().stage_timestamp().unwrap();
        let last = events
            .last()
            .unwrap()
            .event()
            .unwrap()
            .stage_timestamp()
            .unwrap();
        assert!(first >= start);
        let secs = (last.micros() - start.micros()) as f64 / 1e6;
        let want = 20_000.0 / rate;
        assert!(
            (secs - want).abs() < want * 0.2,
            "rate {rate}: 20000 events took {secs}s of simulated time, want about {want}s"
        );
    }
}

#[test]
fn clusters_are_interleaved_and_distinct() {
    let (events, incidents, names) = run(config(2, 12_000, 3));
    assert_eq!(
        names,
        ["prod-eu-west-1", "prod-us-east-1", "staging-eu-west-1"]
    );
    let mut counts = [0usize; 3];
    let mut switches = 0;
    for w in events.windows(2) {
        if w[0].cluster != w[1].cluster {
            switches += 1;
        }
    }
    for e in &events {
        counts[e.cluster] += 1;
        let v = json(e);
        // Each cluster's kubelets live in their own 10.<10+i>.0.0/16.
        if v["user"]["username"]
            .as_str()
            .unwrap_or("")
            .starts_with("system:node:")
        {
            let ip = v["sourceIPs"][0].as_str().unwrap();
            assert!(
                ip.starts_with(&format!("10.{}.", 10 + e.cluster)),
                "{ip} in cluster {}",
                e.cluster
            );
        }
    }
    assert!(counts.iter().all(|&c| c > 3000), "{counts:?}");
    assert!(
        switches > 5000,
        "streams are not interleaved: {switches} switches"
    );
    assert!(incidents.iter().any(|i| i.cluster != names[0]));
}

#[test]
fn endless_stream_keeps_injecting_incidents() {
    let mut c = GenConfig::new(4);
    c.incident_every = 1000;
    let mut g = Generator::new(c).unwrap();
    let mut buf = Vec::new();
    for _ in 0..20_000 {
        buf.clear();
        assert!(g.next_into(&mut buf).is_some());
    }
    assert_eq!(g.emitted(), 20_000);
    assert!(
        g.incidents().len() >= 15,
        "{} incidents",
        g.incidents().len()
    );
}

#[test]
fn no_incidents_when_disabled() {
    let markers = |events: &[kaudit_gen::GeneratedEvent]| {
        events
            .iter()
            .filter(|e| {
                let s = std::str::from_utf8(&e.bytes).unwrap();
                s.contains("command=%2Fbin%2Fsh")
                    || s.contains("\"privileged\":true")
                    || s.contains("system:serviceaccount:web:web-frontend")
                    || s.contains("\"name\":\"cluster-admin\"")
            })
            .count()
    };
    let (with, incidents, _) = run(config(4, 5000, 1));
    assert!(!incidents.is_empty());
    assert!(markers(&with) > 0);
    let mut c = config(4, 5000, 1);
    c.incident_every = 0;
    let (without, incidents, _) = run(c);
    assert!(incidents.is_empty());
    assert_eq!(markers(&without), 0);
}

#[test]
fn bad_configs_are_rejected_with_a_reason() {
    let mut c = GenConfig::new(1);
    c.clusters.clear();
    assert!(matches!(Generator::new(c), Err(GenError::ClusterCount(0))));
    for bad in ["", "a/b", "../x", ".hidden", &"x".repeat(64)] {
        let mut c = GenConfig::new(1);
        c.clusters = vec![bad.to_string()];
        assert!(
            matches!(Generator::new(c), Err(GenError::ClusterName(_))),
            "{bad:?}"
        );
    }
    let mut c = GenConfig::new(1);
    c.clusters = vec!["a".into(), "a".into()];
    assert!(matches!(Generator::new(c), Err(GenError::ClusterName(_))));
    for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
        let mut c = GenConfig::new(1);
        c.rate = rate;
        let err = Generator::new(c).err().expect("rate accepted");
        assert!(err.to_string().contains("rate"), "{err}");
    }
    let mut c = GenConfig::new(1);
    c.start = MicroTime::parse("1960-01-01T00:00:00Z").unwrap();
    assert!(matches!(Generator::new(c), Err(GenError::Start(_))));
}

#[test]
fn incidents_serialize_with_the_documented_keys() {
    let (_, incidents, _) = run(config(8, 5000, 1));
    let v = serde_json::to_value(&incidents).unwrap();
    let first = &v[0];
    for k in [
        "kind",
        "cluster",
        "auditIDs",
        "description",
        "user",
        "namespace",
        "name",
        "verb",
        "resource",
        "time",
    ] {
        assert!(first.get(k).is_some(), "incident has no {k}: {first}");
    }
    let back: Vec<Incident> = serde_json::from_value(v).unwrap();
    assert_eq!(back, incidents);
}

/// Real kube-apiserver lines fix the order of top-level keys; generated
/// lines must never put two keys in an order a real line contradicts, and
/// the failed-authentication event must have the real shape.
#[test]
fn field_order_and_401_shape_agree_with_real_events() {
    let dir = conformance_dir();
    let text = std::fs::read_to_string(dir.join("k8s/examples/v1_real_events.jsonl")).unwrap();
    let mut before: BTreeSet<(String, String)> = BTreeSet::new();
    let mut real_401 = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        let keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                before.insert((a.clone(), b.clone()));
            }
        }
        if v["responseStatus"]["code"] == 401 {
            real_401 = Some(v);
        }
    }
    assert!(
        before.len() > 50,
        "too few real events to learn the key order from"
    );
    let real_401 = real_401.expect("the conformance examples include a 401 event");
    let (events, _, _) = run(config(12, 10_000, 1));
    let mut saw_401 = false;
    for e in &events {
        let v = json(e);
        let keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert!(
                    !before.contains(&(b.clone(), a.clone())),
                    "{a} before {b} contradicts real events"
                );
            }
        }
        if v["responseStatus"]["code"] == 401 {
            saw_401 = true;
            assert_eq!(v["user"], real_401["user"]);
            assert_eq!(v["stage"], real_401["stage"]);
            let real_keys: Vec<&String> = real_401["responseStatus"]
                .as_object()
                .unwrap()
                .keys()
                .collect();
            let ours: Vec<&String> = v["responseStatus"].as_object().unwrap().keys().collect();
            assert_eq!(ours, real_keys);
        }
    }
    assert!(saw_401);
}

#[test]
fn every_verb_appears_at_a_plausible_rate() {
    // A small cluster (2 events/s): 200k events span 28 simulated hours,
    // enough for namespace deletions, which follow the clock (a few a day).
    let mut c = config(11, 200_000, 1);
    c.rate = 2.0;
    let (events, _, _) = run(c);
    assert_eq!(events.len(), 200_000);
    let n = events.len() as f64;
    let mut verbs: BTreeMap<String, usize> = BTreeMap::new();
    let mut proxied = 0usize;
    let mut reviews: BTreeMap<String, usize> = BTreeMap::new();
    let mut checked: BTreeSet<String> = BTreeSet::new();
    let mut impersonated = 0usize;
    // Namespace -> (when its delete completed, deletecollections seen,
    // finalized). Timestamps have a fixed width, so strings order like times.
    let mut deleted: BTreeMap<String, (String, usize, bool)> = BTreeMap::new();
    let mut first = None;
    let mut last = None;
    for e in &events {
        let v = json(e);
        let at = v["stageTimestamp"].as_str().unwrap().to_string();
        first.get_or_insert_with(|| at.clone());
        last = Some(at.clone());
        let verb = v["verb"].as_str().unwrap().to_string();
        *verbs.entry(verb.clone()).or_default() += 1;
        let resource = v["objectRef"]["resource"].as_str().unwrap_or("");
        let sub = v["objectRef"]["subresource"].as_str().unwrap_or("");
        let ns = v["objectRef"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if verb == "proxy" || sub == "proxy" {
            proxied += 1;
        }
        if v.get("impersonatedUser").is_some() {
            impersonated += 1;
            assert!(v["impersonatedUser"]["username"].is_string(), "{v}");
        }
        if resource.ends_with("accessreviews") && v["stage"] == "ResponseComplete" {
            assert_eq!(verb, "create", "{v}");
            assert_eq!(v["objectRef"]["apiGroup"], "authorization.k8s.io");
            *reviews.entry(resource.to_string()).or_default() += 1;
            let attrs = &v["requestObject"]["spec"]["resourceAttributes"];
            if let Some(checked_verb) = attrs["verb"].as_str() {
                checked.insert(checked_verb.to_string());
            }
            assert!(v["responseObject"]["status"]["allowed"].is_boolean(), "{v}");
        }
        if v["stage"] != "ResponseComplete" {
            continue;
        }
        if verb == "delete" && resource == "namespaces" {
            let name = v["objectRef"]["name"].as_str().unwrap().to_string();
            assert_eq!(
                ns, name,
                "a namespace's objectRef names it as its namespace"
            );
            let prev = deleted.insert(name, (at.clone(), 0, false));
            assert!(prev.is_none(), "a namespace deleted twice");
        }
        if verb == "deletecollection" {
            assert_eq!(
                v["user"]["username"],
                "system:serviceaccount:kube-system:namespace-controller"
            );
            let (deleted_at, sweeps, finalized) = deleted.get_mut(&ns).unwrap_or_else(|| {
                panic!("deletecollection in {ns} before the namespace was deleted: {v}")
            });
            assert!(
                !*finalized,
                "deletecollection after the finalizer went: {v}"
            );
            assert!(
                v["requestReceivedTimestamp"].as_str().unwrap() >= deleted_at.as_str(),
                "{v}"
            );
            *sweeps += 1;
        }
        if verb == "update" && resource == "namespaces" && sub == "finalize" {
            let (_, sweeps, finalized) = deleted
                .get_mut(&ns)
                .expect("finalize of a deleted namespace");
            assert!(*sweeps > 0 && !*finalized);
            *finalized = true;
        }
    }
    for want in [
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
        "proxy",
    ] {
        assert!(verbs.contains_key(want), "no {want} in {verbs:?}");
    }
    for want in ["escalate", "bind", "impersonate"] {
        assert!(
            checked.contains(want),
            "no access review of {want}: {checked:?}"
        );
    }
    for want in ["subjectaccessreviews", "selfsubjectaccessreviews"] {
        assert!(reviews.contains_key(want), "no {want}: {reviews:?}");
    }
    // Reads dominate, as in every real audit log.
    let reads = ["get", "list", "watch"]
        .iter()
        .map(|v| verbs[*v])
        .sum::<usize>();
    assert!(reads as f64 > 0.4 * n, "reads {reads} of {n}: {verbs:?}");
    let share = |k: usize| k as f64 / n;
    assert!(
        (0.0005..0.01).contains(&share(proxied)),
        "proxy requests {proxied} of {n}"
    );
    assert!(
        (0.0001..0.01).contains(&share(impersonated)),
        "impersonated {impersonated} of {n}"
    );
    let all_reviews: usize = reviews.values().sum();
    assert!(
        (0.001..0.02).contains(&share(all_reviews)),
        "access reviews {all_reviews} of {n}"
    );
    // Namespace deletions: a few per simulated day, each swept fully.
    let time = |s: Option<String>| MicroTime::parse(&s.unwrap()).unwrap().micros();
    let days = (time(last) - time(first)) as f64 / 86_400e6;
    eprintln!(
        "{days:.2} days: verbs {verbs:?}, proxy {proxied}, reviews {reviews:?} of {checked:?}, \
         impersonated {impersonated}, {} namespace deletions",
        deleted.len()
    );
    assert!(days > 1.0, "the stream spans {days} days");
    let per_day = deleted.len() as f64 / days;
    assert!(
        (1.0..=12.0).contains(&per_day),
        "{} namespace deletions in {days:.2} days",
        deleted.len()
    );
    let sweep = verbs["deletecollection"];
    assert!(share(sweep) < 0.005, "deletecollection {sweep} of {n}");
    for (ns, (_, sweeps, finalized)) in &deleted {
        // The last deletion may still be in progress when the stream ends.
        if *finalized {
            assert_eq!(*sweeps, 27, "{ns}: one deletecollection per resource type");
        }
    }
    assert!(
        deleted.values().filter(|d| d.2).count() >= 1,
        "no namespace deletion ran to its finalizer"
    );
}
