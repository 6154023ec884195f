//! Invariants: the compiled evaluator agrees with the naive one on any
//! policy and request; applying is idempotent; redaction leaves no secret.

use kaudit_event::Event;
use kaudit_policy::{
    evaluate_naive, load_policy, ApplyOptions, CompiledPolicy, Outcome, PolicyApplier,
    RequestAttributes, UserAttrs,
};
use proptest::prelude::*;
use serde_json::{json, Value};

fn pick(vals: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(vals).prop_map(str::to_string)
}

fn sub_list(vals: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(pick(vals), 0..3)
}

const USERS: &[&str] = &["alice", "bob", "system:kube-proxy", "*"];
const GROUPS: &[&str] = &["dev", "ops", "system:nodes", "system:authenticated"];
const VERBS: &[&str] = &["get", "list", "watch", "create", "update", "*"];
const NAMESPACES: &[&str] = &["", "default", "kube-system"];
const API_GROUPS: &[&str] = &["", "apps", "rbac.authorization.k8s.io"];
const RESOURCES: &[&str] = &[
    "pods",
    "pods/log",
    "pods/*",
    "*/status",
    "*",
    "deployments",
    "secrets",
    "deployments/status",
];
const NAMES: &[&str] = &["a", "b"];
const URLS: &[&str] = &["/healthz*", "/healthz", "/metrics", "*", "/api*", "/logs/x"];
const LEVELS: &[&str] = &["None", "Metadata", "Request", "RequestResponse"];
const STAGES: &[&str] = &[
    "RequestReceived",
    "ResponseStarted",
    "ResponseComplete",
    "Panic",
];

fn group_resources() -> impl Strategy<Value = Value> {
    (
        prop_oneof![pick(API_GROUPS), Just("*".to_string())],
        sub_list(RESOURCES),
        sub_list(NAMES),
    )
        .prop_map(|(g, r, n)| {
            let n = if r.is_empty() { vec![] } else { n };
            json!({"group": g, "resources": r, "resourceNames": n})
        })
}

fn rule() -> impl Strategy<Value = Value> {
    (
        pick(LEVELS),
        sub_list(USERS),
        sub_list(GROUPS),
        sub_list(VERBS),
        proptest::collection::vec(group_resources(), 0..3),
        sub_list(NAMESPACES),
        sub_list(URLS),
        sub_list(STAGES),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(level, users, groups, verbs, res, ns, urls, stages, omf)| {
            let urls = if res.is_empty() && ns.is_empty() { urls } else { vec![] };
            let mut r = json!({"level": level, "users": users, "userGroups": groups, "verbs": verbs,
                "resources": res, "namespaces": ns, "nonResourceURLs": urls, "omitStages": stages});
            if let Some(b) = omf {
                r["omitManagedFields"] = json!(b);
            }
            r
        })
}

fn policy() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec(rule(), 1..12),
        sub_list(STAGES),
        any::<bool>(),
    )
        .prop_map(|(rules, stages, omf)| {
            json!({"apiVersion": "audit.k8s.io/v1", "rules": rules, "omitStages": stages, "omitManagedFields": omf})
        })
}

#[derive(Debug, Clone)]
struct Req {
    user: Option<(String, Vec<String>)>,
    verb: String,
    resource_request: bool,
    namespace: String,
    api_group: String,
    resource: String,
    subresource: String,
    name: String,
    path: String,
}

fn request() -> impl Strategy<Value = Req> {
    (
        proptest::option::of((
            pick(&["alice", "bob", "system:kube-proxy", "carol"]),
            sub_list(GROUPS),
        )),
        pick(&["get", "list", "watch", "create", "update", "delete"]),
        any::<bool>(),
        pick(NAMESPACES),
        pick(API_GROUPS),
        pick(&["pods", "deployments", "secrets", "nodes"]),
        pick(&["", "log", "status", "exec"]),
        pick(&["", "a", "b"]),
        pick(&[
            "/healthz",
            "/healthzfoo",
            "/metrics",
            "/api",
            "/apis/apps",
            "/logs/x",
            "/version",
        ]),
    )
        .prop_map(|(user, verb, rr, ns, g, r, s, n, p)| Req {
            user,
            verb,
            resource_request: rr,
            namespace: ns,
            api_group: g,
            resource: r,
            subresource: s,
            name: n,
            path: p,
        })
}

impl Req {
    fn attrs(&self) -> RequestAttributes<'_> {
        RequestAttributes {
            user: self
                .user
                .as_ref()
                .map(|(n, g)| UserAttrs { name: n, groups: g }),
            verb: &self.verb,
            resource_request: self.resource_request,
            namespace: &self.namespace,
            api_group: &self.api_group,
            resource: &self.resource,
            subresource: &self.subresource,
            name: &self.name,
            path: &self.path,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn compiled_agrees_with_naive(p in policy(), reqs in proptest::collection::vec(request(), 1..16)) {
        let policy = load_policy(&serde_json::to_vec(&p).unwrap(), "prop").unwrap().policy;
        let compiled = CompiledPolicy::new(policy.clone());
        for r in &reqs {
            prop_assert_eq!(compiled.evaluate(&r.attrs()), evaluate_naive(&policy, &r.attrs()), "{:?}", r);
        }
    }

    #[test]
    fn apply_is_idempotent_and_redacts(
        p in policy(),
        value in "[a-zA-Z0-9+/]{8,24}",
        list in any::<bool>(),
        verb in pick(&["get", "list", "create", "update"]),
    ) {
        let policy = load_policy(&serde_json::to_vec(&p).unwrap(), "prop").unwrap().policy;
        let applier = PolicyApplier::new(policy, ApplyOptions::default());
        let secret = json!({"kind": "Secret", "apiVersion": "v1",
            "metadata": {"name": "a", "managedFields": [{"manager": "m"}]}, "data": {"k": value}});
        let resp = if list { json!({"kind": "SecretList", "items": [secret.clone()]}) } else { secret.clone() };
        let ev = json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "auditID": "x", "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/default/secrets",
            "verb": verb, "user": {"username": "alice", "groups": ["dev"]},
            "objectRef": {"resource": "secrets", "namespace": "default", "apiVersion": "v1"},
            "requestObject": secret, "responseObject": resp,
            "requestReceivedTimestamp": "2026-01-02T15:04:05.000000Z",
            "stageTimestamp": "2026-01-02T15:04:05.000000Z"});
        let e = Event::from_json(&serde_json::to_vec(&ev).unwrap()).unwrap();
        if let Outcome::Keep(once) = applier.apply(e) {
            let text = String::from_utf8(once.bytes().to_vec()).unwrap();
            prop_assert!(!text.contains(value.as_str()), "secret value survived: {}", text);
            match applier.apply(once.clone()) {
                Outcome::Keep(twice) => prop_assert_eq!(twice.bytes(), once.bytes()),
                Outcome::Drop(r) => prop_assert!(false, "kept once, dropped twice: {}", r),
            }
        }
    }
}
