//! The 16 SigmaHQ Kubernetes audit rules: each loads, and each is either
//! runnable (tested with events that must and must not match) or reported
//! as unmatchable by construction with the reason.

mod common;

use common::conformance_dir;
use kaudit_event::Event;
use kaudit_rules::{Engine, EngineBuilder, EngineOptions, MatchMode};
use serde_json::{json, Value};
use std::collections::BTreeMap;

struct Ev {
    v: Value,
}

fn ev(verb: &str, resource: &str) -> Ev {
    Ev {
        v: json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request",
            "auditID": "00000000-0000-0000-0000-000000000001", "stage": "ResponseComplete",
            "requestURI": format!("/api/v1/{resource}"), "verb": verb,
            "user": {"username": "alice", "groups": ["system:authenticated"]},
            "sourceIPs": ["10.0.0.1"], "userAgent": "kubectl/v1.30.0",
            "objectRef": {"resource": resource, "namespace": "default", "name": "x", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": "2026-01-02T15:04:05.000000Z",
            "stageTimestamp": "2026-01-02T15:04:05.100000Z",
            "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
        }),
    }
}

impl Ev {
    fn set(mut self, ptr: &str, val: Value) -> Self {
        let (parent, key) = ptr.rsplit_once('/').expect("pointer");
        let obj = if parent.is_empty() {
            &mut self.v
        } else {
            self.v.pointer_mut(parent).expect("parent exists")
        };
        obj.as_object_mut()
            .expect("object")
            .insert(key.to_string(), val);
        self
    }
    fn event(&self) -> Event {
        Event::from_json(self.v.to_string().as_bytes()).expect("valid event")
    }
}

fn load_all() -> (Engine, Vec<(String, String)>, usize) {
    let dir = conformance_dir().join("sigma");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("sigma dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    let mut b = EngineBuilder::new(EngineOptions::default());
    for f in &files {
        b.add_file(f).unwrap_or_else(|e| panic!("{e}"));
    }
    let (engine, report) = b.build().expect("build");
    (engine, report.unmatchable, files.len())
}

fn hits(engine: &Engine, e: &Ev) -> Vec<String> {
    engine
        .evaluate(&e.event(), MatchMode::All)
        .into_iter()
        .map(|a| a.rule)
        .collect()
}

#[test]
fn all_sixteen_load_and_unmatchable_ones_say_why() {
    let (engine, unmatchable, n) = load_all();
    assert_eq!(n, 16, "the conformance data has 16 Sigma rules");
    assert_eq!(engine.rule_count(), 16);
    let um: BTreeMap<_, _> = unmatchable.into_iter().collect();
    let names: Vec<&str> = um.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        vec![
            "Container With A hostPath Mount Created",
            "Kubernetes Potential Enumeration Activity",
            "Potential Sidecar Injection Into Running Deployment",
            "Privileged Container Deployed",
            "RBAC Permission Enumeration Attempt",
        ]
    );
    for (title, why) in &um {
        assert!(
            why.contains("is not part of an audit.k8s.io/v1 Event") || why.contains("integer"),
            "{title}: {why}"
        );
    }
    // The named ones: top-level hostPath / capabilities / apiGroup, and code 'ALLOW'.
    let joined = um.values().cloned().collect::<Vec<_>>().join("\n");
    for f in [
        "\"hostPath\"",
        "\"capabilities\"",
        "\"apiGroup\"",
        "responseStatus.code",
    ] {
        assert!(joined.contains(f), "{f} should be reported: {joined}");
    }
    assert_eq!(engine.rule_count() - um.len(), 11, "11 runnable rules");
}

#[test]
fn runnable_rules_match_and_do_not_match() {
    let (engine, _, _) = load_all();
    let cases: Vec<(&str, Ev, Ev)> = vec![
        (
            "Kubernetes Events Deleted",
            ev("delete", "events"),
            ev("get", "events"),
        ),
        (
            "Deployment Deleted From Kubernetes Cluster",
            ev("delete", "deployments"),
            ev("delete", "pods"),
        ),
        (
            "Potential Remote Command Execution In Pod Container",
            ev("create", "pods").set("/objectRef/subresource", json!("exec")),
            ev("create", "pods").set("/objectRef/subresource", json!("log")),
        ),
        (
            "Creation Of Pod In System Namespace",
            ev("create", "pods").set("/objectRef/namespace", json!("kube-system")),
            ev("create", "pods"),
        ),
        (
            "Kubernetes Secrets Enumeration",
            ev("list", "secrets"),
            ev("list", "configmaps"),
        ),
        (
            "Kubernetes Secrets Modified or Deleted",
            ev("patch", "secrets"),
            ev("get", "secrets"),
        ),
        (
            "New Kubernetes Service Account Created",
            ev("create", "serviceaccounts"),
            ev("delete", "serviceaccounts"),
        ),
        (
            "Kubernetes Unauthorized or Unauthenticated Access",
            ev("get", "pods").set("/responseStatus/code", json!(403)),
            ev("get", "pods"),
        ),
        (
            "Kubernetes Rolebinding Modification",
            ev("create", "rolebindings")
                .set("/objectRef/apiGroup", json!("rbac.authorization.k8s.io")),
            ev("create", "rolebindings"),
        ),
        (
            "Kubernetes Admission Controller Modification",
            ev("update", "validatingwebhookconfigurations")
                .set("/objectRef/apiGroup", json!("admissionregistration.k8s.io")),
            ev("get", "validatingwebhookconfigurations")
                .set("/objectRef/apiGroup", json!("admissionregistration.k8s.io")),
        ),
        (
            "Kubernetes CronJob/Job Modification",
            ev("update", "cronjobs").set("/objectRef/apiGroup", json!("batch")),
            ev("get", "cronjobs").set("/objectRef/apiGroup", json!("batch")),
        ),
    ];
    let titles: Vec<&str> = engine.rule_names().collect();
    for (title, yes, no) in &cases {
        assert!(
            titles.contains(title),
            "no sigma rule titled {title:?}: {titles:?}"
        );
        assert!(
            hits(&engine, yes).iter().any(|h| h == title),
            "{title} should match"
        );
        assert!(
            !hits(&engine, no).iter().any(|h| h == title),
            "{title} should not match"
        );
    }
    // Unmatchable rules never fire, even on events built to look like their intent.
    let hostpath = ev("create", "pods").set("/hostPath", json!("/etc"));
    assert!(!hits(&engine, &hostpath)
        .iter()
        .any(|h| h.contains("hostPath")));
}

#[test]
fn modifiers_and_quantifiers() {
    let rule = r#"
title: Shell in exec
logsource: {product: kubernetes, service: audit}
detection:
  sel_uri:
    requestURI|contains|all: ['/exec', 'command=']
  sel_shell:
    requestURI|re: 'command=(sh|bash)(&|$)'
  sel_net:
    sourceIPs|cidr: 10.0.0.0/8
  filter:
    user.username|startswith: 'system:'
  condition: all of sel_* and not filter
level: high
"#;
    let mut b = EngineBuilder::new(EngineOptions::default());
    b.add_source("inline.yml", rule).expect("loads");
    let (engine, report) = b.build().expect("build");
    assert!(report.unmatchable.is_empty());
    let base = ev("create", "pods").set("/objectRef/subresource", json!("exec"));
    let yes = base.set(
        "/requestURI",
        json!("/api/v1/namespaces/default/pods/x/exec?command=sh&stdin=true"),
    );
    assert_eq!(hits(&engine, &yes), vec!["Shell in exec"]);
    let sys = Ev { v: yes.v.clone() }.set("/user", json!({"username": "system:admin"}));
    assert!(hits(&engine, &sys).is_empty());
    let far = Ev { v: yes.v.clone() }.set("/sourceIPs", json!(["192.168.1.1"]));
    assert!(hits(&engine, &far).is_empty());
    let ls = Ev { v: yes.v.clone() }.set(
        "/requestURI",
        json!("/api/v1/namespaces/default/pods/x/exec?command=ls"),
    );
    assert!(hits(&engine, &ls).is_empty());
    let alert = &engine.evaluate(&yes.event(), MatchMode::First)[0];
    assert_eq!(alert.priority, kaudit_rules::Priority::Error);
}
