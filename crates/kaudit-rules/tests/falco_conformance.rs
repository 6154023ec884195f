//! Falco's own k8s audit regression cases (../shared/conformance/falco/expected.json):
//! every case loads its rule files in order, runs its trace with first-match
//! semantics and must raise exactly the expected alerts per rule.

mod common;

use common::{conformance_dir, count, engine, read_trace};
use kaudit_rules::{EngineBuilder, EngineOptions, MatchMode, Priority};
use serde_json::Value;
use std::collections::BTreeMap;

#[test]
fn all_upstream_cases_pass() {
    let dir = conformance_dir().join("falco");
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("read expected.json");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("expected.json is JSON");
    assert!(!cases.is_empty(), "expected.json has no cases");
    let mut ran = 0;
    let mut failures = Vec::new();
    for case in &cases {
        let id = case["id"].as_str().expect("case id");
        let mode = match case["rule_matching"].as_str() {
            Some("all") => MatchMode::All,
            _ => MatchMode::First,
        };
        let files: Vec<_> = case["rules_files"]
            .as_array()
            .expect("rules_files")
            .iter()
            .map(|f| dir.join(f.as_str().expect("rules file path")))
            .collect();
        let engine = engine(&files);
        let (events, not_events) = read_trace(&dir.join(case["trace"].as_str().expect("trace")));
        if let Some(s) = case["stderr_contains"].as_str() {
            assert!(
                s.contains("data not recognized as a k8s audit event"),
                "{id}: unexpected stderr expectation {s:?}"
            );
            assert!(not_events > 0, "{id}: the trace should hold a non-event");
        }
        let got = count(&engine, &events, mode);
        let want: BTreeMap<String, u64> = case["expected"]
            .as_object()
            .expect("expected")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().expect("count")))
            .collect();
        if got != want {
            failures.push(format!("{id}: want {want:?}, got {got:?}"));
        }
        if case["expect_zero_alerts_total"].as_bool() == Some(true) && !got.is_empty() {
            failures.push(format!("{id}: expected no alert at all, got {got:?}"));
        }
        // Priorities of the alerts raised.
        let want_prios: Vec<Priority> = case["expected_priorities_nonzero"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        p.as_str()
                            .expect("priority")
                            .parse()
                            .expect("known priority")
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut got_prios: Vec<Priority> = events
            .iter()
            .flat_map(|e| engine.evaluate(e, mode))
            .map(|a| a.priority)
            .collect();
        got_prios.dedup();
        if !want_prios.is_empty() && got_prios != want_prios {
            failures.push(format!(
                "{id}: priorities want {want_prios:?}, got {got_prios:?}"
            ));
        }
        ran += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(ran, cases.len(), "every case must run");
    assert_eq!(ran, 66, "expected.json should hold Falco's 66 cases");
}

#[test]
fn the_current_upstream_ruleset_loads_and_compiles_all_rules() {
    let dir = conformance_dir().join("falco");
    let e = engine(&[dir.join("k8s_audit_rules.yaml")]);
    assert_eq!(e.rule_count(), 48, "k8s_audit_rules.yaml has 48 rules");
    // Fields are shared across rules: far fewer slots than comparisons.
    assert!(e.field_count() < 60, "{} slots", e.field_count());
}

#[test]
fn legacy_syscall_rules_load_and_are_skipped() {
    let dir = conformance_dir().join("falco/traces/rules");
    let mut b = EngineBuilder::new(EngineOptions::default());
    b.add_file(&dir.join("legacy_falco_rules_v1.0.1.yaml"))
        .expect("legacy rules load");
    let (e, report) = b.build().expect("build");
    assert_eq!(e.rule_count(), 0);
    assert!(
        report.warnings.iter().any(|w| w.contains("syscall")),
        "{:?}",
        report.warnings
    );
}

/// More cases from the same traces and rules: all-matches mode and outputs.
#[test]
fn all_matches_and_rendered_outputs() {
    let dir = conformance_dir().join("falco");
    let rules = [
        dir.join("traces/rules/legacy_falco_rules_v1.0.1.yaml"),
        dir.join("traces/rules/k8s_audit_rules_k8saudit-0.6.0.yaml"),
    ];
    let e = engine(&rules);
    let (ns_events, _) = read_trace(&dir.join("traces/some-user_creates_namespace_foo.json"));
    let first = count(&e, &ns_events, MatchMode::First);
    let all = count(&e, &ns_events, MatchMode::All);
    assert_eq!(
        first.into_iter().collect::<Vec<_>>(),
        vec![("Disallowed K8s User".to_string(), 1)]
    );
    for r in [
        "Disallowed K8s User",
        "Create Disallowed Namespace",
        "K8s Namespace Created",
    ] {
        assert_eq!(all.get(r), Some(&1), "{r} in {all:?}");
    }
    let (events, _) = read_trace(&dir.join("traces/create_nginx_pod_privileged.json"));
    let alerts = e.evaluate(&events[0], MatchMode::First);
    let a = &alerts[0];
    assert!(
        a.output
            .starts_with("Pod started with privileged container (user=system:serviceaccount:"),
        "{}",
        a.output
    );
    assert!(a.output.contains("images=(nginx"), "{}", a.output);
    let fields: BTreeMap<_, _> = a.output_fields.iter().cloned().collect();
    assert_eq!(fields["ka.auditid"].as_deref(), Some(events[0].audit_id()));
    assert_eq!(fields["kaudit.cluster"], None);

    // Missing fields render as <NA>: exec's command param and ka.resp.name.
    let (exec, _) = read_trace(&dir.join("traces/exec_pod.json"));
    let alerts = e.evaluate(&exec[0], MatchMode::First);
    assert_eq!(alerts[0].rule, "Attach/Exec Pod");
    let (ns, _) = read_trace(&dir.join("traces/create_deployment.json"));
    let alerts = e.evaluate(&ns[0], MatchMode::All);
    assert!(alerts.iter().any(|a| a.rule == "K8s Deployment Created"));

    // The json pointer rule: exists / not exists on escaped pointers.
    let ptr = engine(&[dir.join("traces/rules/single_rule_with_json_pointer.yaml")]);
    let (pod, _) = read_trace(&dir.join("traces/create_nginx_pod_unprivileged.json"));
    assert_eq!(
        ptr.evaluate(&pod[0], MatchMode::First)[0].output,
        "JSON Pointer Test Alert"
    );
}

/// The rules_testing_repo overrides behave like the files they port.
#[test]
fn rules_testing_repo_overrides() {
    let dir = conformance_dir().join("falco/traces");
    let base = dir.join("rules/k8s_audit_rules_k8saudit-0.6.0.yaml");
    let repo = dir.join("rules_testing_repo");
    let (pod, _) = read_trace(&dir.join("create_nginx_pod_unprivileged.json"));
    let e = engine(&[
        base.clone(),
        repo.join("K8SAuditAllowOnlyApacheContainer.yaml"),
    ]);
    assert_eq!(
        count(&e, &pod, MatchMode::First).get("Create Disallowed Pod"),
        Some(&1)
    );
    let e = engine(&[base, repo.join("K8SAuditAllowNginxContainer.yaml")]);
    assert!(count(&e, &pod, MatchMode::First).is_empty());
    let (priv_pod, _) = read_trace(&dir.join("create_nginx_pod_privileged.json"));
    let current = dir.join("../k8s_audit_rules.yaml");
    let e = engine(std::slice::from_ref(&current));
    assert_eq!(
        count(&e, &priv_pod, MatchMode::First).get("Create Privileged Pod"),
        Some(&1)
    );
    let e = engine(&[current, repo.join("K8SAuditTrustNginxContainer.yaml")]);
    assert!(count(&e, &priv_pod, MatchMode::First).is_empty());
}
