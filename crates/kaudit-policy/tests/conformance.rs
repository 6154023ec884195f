//! Every section of ../shared/conformance/k8s/policy_vectors.json, with
//! counts asserted so no vector is silently skipped.

use kaudit_event::{Event, Level, Stage};
use kaudit_policy::{
    evaluate_naive, load_policy, policy_from_value, validate_doc, ApplyOptions, CompiledPolicy,
    Outcome, Policy, PolicyApplier, RequestAttributes, StageSet, UserAttrs,
};
use serde_json::{json, Value};
use std::path::PathBuf;

fn conformance_dir() -> PathBuf {
    let dir = std::env::var_os("KAUDIT_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
        });
    assert!(
        dir.join("k8s/policy_vectors.json").is_file(),
        "conformance data missing: expected {}/k8s/policy_vectors.json (set KAUDIT_CONFORMANCE to its directory)",
        dir.display()
    );
    dir
}

fn vectors() -> Value {
    let path = conformance_dir().join("k8s/policy_vectors.json");
    let bytes = std::fs::read(&path).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Owned request attributes decoded from a vector's `request`.
struct Req {
    user: Option<String>,
    groups: Vec<String>,
    verb: String,
    resource_request: bool,
    namespace: String,
    api_group: String,
    resource: String,
    subresource: String,
    name: String,
    path: String,
}

impl Req {
    fn from(v: &Value) -> Req {
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        Req {
            user: v["user"].as_str().map(str::to_string),
            groups: v["groups"]
                .as_array()
                .map(|a| a.iter().map(|g| g.as_str().unwrap().to_string()).collect())
                .unwrap_or_default(),
            verb: s("verb"),
            resource_request: v["resourceRequest"].as_bool().unwrap(),
            namespace: s("namespace"),
            api_group: s("apiGroup"),
            resource: s("resource"),
            subresource: s("subresource"),
            name: s("name"),
            path: s("path"),
        }
    }
    fn attrs(&self) -> RequestAttributes<'_> {
        RequestAttributes {
            user: self.user.as_deref().map(|name| UserAttrs {
                name,
                groups: &self.groups,
            }),
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

fn stages(v: &Value) -> StageSet {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap().parse::<Stage>().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

fn load_json_policy(v: &Value) -> Policy {
    load_policy(&serde_json::to_vec(v).unwrap(), "vector")
        .unwrap_or_else(|e| panic!("vector policy does not load: {e}\n{v}"))
        .policy
}

/// Checks one evaluation vector with both evaluators.
fn check_case(desc: &str, policy: &Policy, req: &Value, expect: &Value, rule: &Value) {
    let compiled = CompiledPolicy::new(policy.clone());
    let r = Req::from(req);
    let got = compiled.evaluate(&r.attrs());
    let naive = evaluate_naive(policy, &r.attrs());
    assert_eq!(got, naive, "{desc}: compiled and naive evaluators disagree");
    let want_level: Level = expect["level"].as_str().unwrap().parse().unwrap();
    assert_eq!(got.level, want_level, "{desc}: level");
    assert_eq!(
        got.omit_stages,
        stages(&expect["omitStages"]),
        "{desc}: omitStages"
    );
    assert_eq!(
        got.omit_managed_fields,
        expect["omitManagedFields"].as_bool().unwrap(),
        "{desc}: omitManagedFields"
    );
    assert_eq!(
        got.rule,
        rule.as_u64().map(|i| i as usize),
        "{desc}: matched rule"
    );
}

#[test]
fn checker_cases() {
    let v = vectors();
    let cases = v["cases"].as_array().unwrap();
    let mut n = 0;
    for c in cases {
        let name = c["policy"].as_str().unwrap();
        let policy = load_json_policy(&v["policies"][name]);
        let desc = format!("{} / {} / {}", c["origin"], name, c["request_name"]);
        check_case(
            &desc,
            &policy,
            &c["request"],
            &c["expect"],
            &c["derived_matched_rule_index"],
        );
        n += 1;
    }
    assert_eq!(n, 108, "every checker case must run");
}

#[test]
fn derived_edge_cases() {
    let v = vectors();
    let cases = v["derived_edge_cases"]["cases"].as_array().unwrap();
    for c in cases {
        let desc = c["desc"].as_str().unwrap();
        // One vector is a rule validation rejects; evaluate it as the checker would.
        let policy = match load_policy(&serde_json::to_vec(&c["policy"]).unwrap(), "vector") {
            Ok(p) => p.policy,
            Err(_) => unvalidated_policy(&c["policy"]),
        };
        check_case(
            desc,
            &policy,
            &c["request"],
            &c["expect"],
            &c["derived_matched_rule_index"],
        );
    }
    assert_eq!(cases.len(), 27, "every derived edge case must run");
}

/// Types a policy without validating it (only for the vector that checks
/// evaluation of a rule kube-apiserver's validation would refuse).
fn unvalidated_policy(v: &Value) -> Policy {
    let mut warnings = Vec::new();
    let mut doc = policy_from_value(v, "vector", &mut warnings).unwrap();
    assert!(
        !validate_doc(&doc).is_empty(),
        "only invalid policies get here"
    );
    let urls: Vec<Vec<String>> = doc
        .rules
        .iter_mut()
        .map(|r| std::mem::take(&mut r.non_resource_urls))
        .collect();
    let mut p = Policy::from_doc(&doc).unwrap();
    for (r, u) in p.rules.iter_mut().zip(urls) {
        r.non_resource_urls = u;
    }
    p
}

#[test]
fn union_stages() {
    let v = vectors();
    let cases = v["union_stages_cases"]["cases"].as_array().unwrap();
    for c in cases {
        let got = stages(&c["a"]).union(stages(&c["b"]));
        assert_eq!(got, stages(&c["union"]), "{c}");
        let names: Vec<&str> = c["union"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(got.names(), names, "canonical order: {c}");
    }
    assert_eq!(cases.len(), 7);
}

#[test]
fn validation() {
    let v = vectors();
    let valid = v["validation"]["valid"].as_array().unwrap();
    for c in valid {
        let mut w = Vec::new();
        let doc = policy_from_value(&c["policy"], "vector", &mut w).unwrap();
        assert!(w.is_empty(), "{}: {w:?}", c["name"]);
        assert_eq!(validate_doc(&doc), vec![], "{}", c["name"]);
    }
    let invalid = v["validation"]["invalid"].as_array().unwrap();
    for c in invalid {
        let mut w = Vec::new();
        let doc = policy_from_value(&c["policy"], "vector", &mut w).unwrap();
        let got: Vec<String> = validate_doc(&doc).iter().map(ToString::to_string).collect();
        let want: Vec<String> = c["derived_errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "{}", c["name"]);
    }
    assert_eq!((valid.len(), invalid.len()), (8, 14));
}

#[test]
fn loader() {
    let v = vectors();
    let cases = v["loader"]["cases"].as_array().unwrap();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let input = c["input_yaml"].as_str().unwrap();
        let res = load_policy(input.as_bytes(), "policy.yaml");
        let expect = &c["expect"];
        if !expect["ok"].as_bool().unwrap() {
            let err = res.err().unwrap_or_else(|| panic!("{name}: must fail"));
            if let Some(want) = expect["error_contains"].as_str() {
                assert!(err.to_string().contains(want), "{name}: {err}");
            }
            continue;
        }
        let loaded = res.unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(rules) = expect.get("rules") {
            let mut w = Vec::new();
            let doc = policy_from_value(&json!({ "rules": rules }), "expect", &mut w).unwrap();
            assert_eq!(loaded.policy, Policy::from_doc(&doc).unwrap(), "{name}");
        }
        if name == "TestParsePolicyWithUnknownField" {
            assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
            assert!(
                loaded.warnings[0].starts_with("rules[0].resources[0].verbs: unknown field"),
                "{:?}",
                loaded.warnings
            );
            // The misplaced verbs are dropped: the rule matches every verb on leases.
            let compiled = CompiledPolicy::new(loaded.policy.clone());
            let groups = vec![];
            for verb in ["delete", "create", "get"] {
                let a = RequestAttributes {
                    user: Some(UserAttrs {
                        name: "u",
                        groups: &groups,
                    }),
                    verb,
                    resource_request: true,
                    namespace: "kube-system",
                    api_group: "coordination.k8s.io",
                    resource: "leases",
                    subresource: "",
                    name: "x",
                    path: "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x",
                };
                assert_eq!(compiled.evaluate(&a).rule, Some(0));
            }
        } else {
            assert!(loaded.warnings.is_empty(), "{name}: {:?}", loaded.warnings);
        }
    }
    assert_eq!(cases.len(), 6);
}

/// The stages kube-apiserver's audit filter writes for a handler when
/// nothing is omitted: RequestReceived; ResponseStarted for long-running
/// requests once headers are out (a handler that panics before writing
/// sends none); then Panic or ResponseComplete.
fn emitted_stages(c: &Value) -> Vec<(Stage, Option<i64>)> {
    let handler = c["handler"].as_str().unwrap();
    let code = if handler.contains("WriteHeader(403)") {
        403
    } else {
        200
    };
    let mut out = vec![(Stage::RequestReceived, None)];
    if c["longRunning"].as_bool().unwrap() && handler != "panic" {
        out.push((Stage::ResponseStarted, Some(code)));
    }
    if handler.contains("panic") {
        out.push((Stage::Panic, Some(500)));
    } else {
        out.push((Stage::ResponseComplete, Some(code)));
    }
    out
}

fn stage_event(
    uri: &str,
    verb: &str,
    user: &str,
    stage: Stage,
    code: Option<i64>,
    resource: bool,
) -> Event {
    let mut e = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": "11111111-2222-3333-4444-555555555555", "stage": stage.as_str(),
        "requestURI": uri, "verb": verb, "user": {"username": user},
        "requestReceivedTimestamp": "2026-01-02T15:04:05.000000Z",
        "stageTimestamp": "2026-01-02T15:04:05.100000Z"
    });
    if resource {
        e["objectRef"] =
            json!({"resource": "pods", "namespace": "default", "name": "foo", "apiVersion": "v1"});
    }
    if user.is_empty() {
        e["user"] = json!({});
    }
    if let Some(code) = code {
        e["responseStatus"] = json!({"metadata": {}, "code": code});
    }
    Event::from_json(&serde_json::to_vec(&e).unwrap()).unwrap()
}

fn applier_for(omit: &Value) -> PolicyApplier {
    let policy = load_json_policy(&json!({
        "apiVersion": "audit.k8s.io/v1",
        "rules": [{"level": "RequestResponse", "omitStages": omit}]
    }));
    PolicyApplier::new(policy, ApplyOptions::default())
}

fn kept(applier: &PolicyApplier, events: Vec<Event>) -> Vec<(Stage, Option<i64>)> {
    events
        .into_iter()
        .filter_map(|e| {
            let before = e.bytes().to_vec();
            match applier.apply(e) {
                Outcome::Keep(k) => {
                    assert_eq!(k.bytes(), &before[..], "unchanged events keep their bytes");
                    Some((k.stage(), k.response_code().map(i64::from)))
                }
                Outcome::Drop(_) => None,
            }
        })
        .collect()
}

fn expected_stages(c: &Value) -> Vec<(Stage, Option<i64>)> {
    c["expect"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["stage"].as_str().unwrap().parse().unwrap(),
                x["code"].as_i64(),
            )
        })
        .collect()
}

#[test]
fn stage_vectors() {
    let v = vectors();
    let cases = v["stage_vectors"]["cases"].as_array().unwrap();
    for c in cases {
        let applier = applier_for(&c["omitStages"]);
        let events = emitted_stages(c)
            .into_iter()
            .map(|(s, code)| {
                stage_event(
                    c["uri"].as_str().unwrap(),
                    c["verb"].as_str().unwrap(),
                    "admin",
                    s,
                    code,
                    true,
                )
            })
            .collect();
        assert_eq!(kept(&applier, events), expected_stages(c), "{}", c["desc"]);
    }
    assert_eq!(cases.len(), 18);

    let authn = v["failed_authn_vectors"]["cases"].as_array().unwrap();
    for c in authn {
        let applier = applier_for(&c["omitStages"]);
        // The failed-authentication filter writes one ResponseStarted event, with no user.
        let e = stage_event(
            c["uri"].as_str().unwrap(),
            "list",
            "",
            Stage::ResponseStarted,
            Some(401),
            false,
        );
        assert_eq!(kept(&applier, vec![e]), expected_stages(c), "{}", c["desc"]);
    }
    assert_eq!(authn.len(), 4);
}
