//! The eight real policies in ../shared/conformance/k8s/policies load and
//! lint with the findings a reviewer would make; lint checks on fixtures.

use kaudit_policy::{lint, load_policy, load_policy_file, Severity};
use std::path::PathBuf;

fn policies_dir() -> PathBuf {
    let dir = std::env::var_os("KAUDIT_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
        })
        .join("k8s/policies");
    assert!(
        dir.is_dir(),
        "conformance data missing: expected the policies in {} (set KAUDIT_CONFORMANCE)",
        dir.display()
    );
    dir
}

/// (file, rule count, expected findings as (rule, check)).
#[allow(clippy::type_complexity)]
const EXPECTED: [(&str, usize, &[(Option<usize>, &str)]); 8] = [
    (
        "aks-engine-audit-policy.yaml",
        8,
        &[
            (Some(0), "list-watch-response"),
            (Some(4), "sensitive-body"),
            (Some(5), "sensitive-body"),
            (Some(6), "sensitive-body"),
        ],
    ),
    (
        "eks-anywhere-audit-policy.yaml",
        17,
        &[(Some(0), "sensitive-body"), (None, "request-received")],
    ),
    (
        "eks-best-practices-aws-auth-rule.yaml",
        1,
        &[(Some(0), "sensitive-body"), (None, "no-catch-all")],
    ),
    (
        "falco-k8saudit-plugin-audit-policy.yaml",
        11,
        &[
            (Some(0), "list-watch-response"),
            (Some(1), "list-watch-response"),
            (Some(6), "sensitive-body"),
            (Some(7), "sensitive-body"),
            (Some(7), "list-watch-response"),
        ],
    ),
    ("gce-configure-helper-audit-policy.yaml", 17, &[]),
    (
        "k8s-docs-audit-policy.yaml",
        9,
        &[
            (Some(0), "list-watch-response"),
            (Some(5), "sensitive-body"),
        ],
    ),
    (
        "k8s-docs-minimal-metadata.yaml",
        1,
        &[(None, "request-received")],
    ),
    (
        "openshift-writerequestbodies-composed.yaml",
        6,
        &[
            (Some(4), "sensitive-body"),
            (Some(4), "sensitive-body"),
            (Some(4), "sensitive-body"),
        ],
    ),
];

#[test]
fn all_eight_policies_load_and_lint() {
    let dir = policies_dir();
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let expected: Vec<&str> = EXPECTED.iter().map(|e| e.0).collect();
    assert_eq!(on_disk, expected, "every policy file must be covered");
    for (file, n_rules, want) in EXPECTED {
        let loaded = load_policy_file(&dir.join(file)).unwrap_or_else(|e| panic!("{e}"));
        assert!(loaded.warnings.is_empty(), "{file}: {:?}", loaded.warnings);
        assert_eq!(loaded.policy.rules.len(), n_rules, "{file}");
        let findings = lint(&loaded.policy);
        let got: Vec<(Option<usize>, &str)> = findings.iter().map(|f| (f.rule, f.check)).collect();
        assert_eq!(got, want, "{file}: {findings:#?}");
        assert!(findings.iter().all(|f| f.severity == Severity::Warning));
    }
}

#[test]
fn sensitive_findings_name_the_resource_and_verbs() {
    let loaded =
        load_policy_file(&policies_dir().join("openshift-writerequestbodies-composed.yaml"))
            .unwrap();
    let msgs: Vec<String> = lint(&loaded.policy)
        .into_iter()
        .map(|f| f.message)
        .collect();
    assert!(msgs[0].starts_with("logs configmaps at RequestResponse (verbs update, patch, create, delete, deletecollection)"), "{msgs:?}");
    assert!(msgs[1].starts_with("logs tokenreviews"));
    assert!(msgs[2].starts_with("logs serviceaccounts/token"));
}

fn lint_yaml(yaml: &str) -> Vec<(Option<usize>, &'static str, String)> {
    let p = load_policy(yaml.as_bytes(), "fixture.yaml").unwrap();
    lint(&p.policy)
        .into_iter()
        .map(|f| (f.rule, f.check, f.message))
        .collect()
}

#[test]
fn shadowed_rules_are_found() {
    let f = lint_yaml(
        r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: [system:kube-proxy]
- level: Metadata
  users: [system:kube-proxy]
  verbs: [watch]
- level: Metadata
  resources:
  - group: ""
    resources: ["pods/*"]
- level: Request
  resources:
  - group: ""
    resources: [pods, pods/log]
- level: Request
  resources:
  - group: ""
    resources: [pods/log, services]
- level: None
  nonResourceURLs: ["/healthz*"]
- level: Metadata
  nonResourceURLs: ["/healthz/ready"]
- level: Metadata
- level: Request
  verbs: [get]
"#,
    );
    let shadowed: Vec<(Option<usize>, String)> = f
        .iter()
        .filter(|x| x.1 == "shadowed")
        .map(|x| (x.0, x.2.clone()))
        .collect();
    let rules: Vec<Option<usize>> = shadowed.iter().map(|x| x.0).collect();
    // Rule 4 is NOT shadowed: services is not covered by pods/*.
    assert_eq!(rules, vec![Some(1), Some(3), Some(6), Some(8)], "{f:?}");
    assert!(shadowed[0].1.contains("rule 0 comes first"));
    assert!(shadowed[1].1.contains("rule 2 comes first"));
    assert!(shadowed[3].1.contains("rule 7 comes first"));
    assert!(!f.iter().any(|x| x.1 == "no-catch-all"));
}

#[test]
fn literal_star_and_missing_catch_all() {
    let f = lint_yaml(
        r#"apiVersion: audit.k8s.io/v1
rules:
- level: Metadata
  verbs: ["*"]
- level: Metadata
  users: ["*"]
  omitStages: [RequestReceived]
"#,
    );
    let checks: Vec<(Option<usize>, &str)> = f.iter().map(|x| (x.0, x.1)).collect();
    assert_eq!(
        checks,
        vec![
            (Some(0), "literal-star"),
            (Some(1), "literal-star"),
            (None, "request-received"),
            (None, "no-catch-all"),
        ]
    );
    assert!(f[2].2.contains("rules 0"), "{}", f[2].2);
}

#[test]
fn validation_errors_carry_field_paths() {
    let err = load_policy(
        br#"apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
- level: Metadata
- level: Request
  resources:
  - group: ""
    resources: ["pods", "pods/"]
- level: Loud
"#,
        "p.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("rules[2].resources[0].resources[1]: Invalid value: \"pods/\": "),
        "{err}"
    );
    assert!(
        err.contains("rules[3].level: Unsupported value: \"Loud\""),
        "{err}"
    );
}

#[test]
fn loader_refuses_bad_headers_and_types() {
    for (input, want) in [
        (
            "apiVersion: audit.k8s.io/v1beta1\nrules: [{level: None}]\n",
            "change it to audit.k8s.io/v1",
        ),
        (
            "apiVersion: audit.k8s.io/v1\nkind: Pod\nrules: [{level: None}]\n",
            "kind is \"Pod\", want Policy",
        ),
        (
            "apiVersion: audit.k8s.io/v1\nrules: [{level: None, users: alice}]\n",
            "rules[0].users: expected a list of strings",
        ),
        (
            "apiVersion: audit.k8s.io/v1\nrules: [{level: None, verbs: [1]}]\n",
            "rules[0].verbs[0]: expected a string",
        ),
        (
            "apiVersion: audit.k8s.io/v1\nrules: [{level: None}\n",
            "failed decoding policy: YAML",
        ),
        ("- a\n- b\n", "not a Policy object"),
        ("# only a comment\n", "the file is empty"),
    ] {
        let err = load_policy(input.as_bytes(), "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{input:?}: {err}");
    }
    let big = vec![b' '; kaudit_policy::MAX_POLICY_BYTES + 1];
    assert!(load_policy(&big, "big")
        .unwrap_err()
        .to_string()
        .contains("more than the limit"));
}

#[test]
fn json_and_yaml_flow_documents_load() {
    let json = load_policy(
        br#"{"apiVersion":"audit.k8s.io/v1","rules":[{"level":"Metadata","verbs":["get"]}]}"#,
        "p.json",
    )
    .unwrap();
    let flow = load_policy(
        b"{apiVersion: audit.k8s.io/v1, rules: [{level: Metadata, verbs: [get]}]}",
        "p.yaml",
    )
    .unwrap();
    assert_eq!(json.policy, flow.policy);
    assert_eq!(json.policy.rules[0].verbs, vec!["get".to_string()]);
    let err = load_policy(
        br#"{"apiVersion": "audit.k8s.io/v1", "rules": [}"#,
        "p.json",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("p.json: failed decoding policy: JSON: "),
        "{err}"
    );
}

#[test]
fn unknown_fields_are_warned_with_paths() {
    let p = load_policy(
        b"apiVersion: audit.k8s.io/v1\nkind: Policy\nmetadata: {name: x}\nextra: 1\nrules:\n- level: None\n  verb: [get]\n",
        "p.yaml",
    )
    .unwrap();
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    assert!(p.warnings[0].starts_with("extra: unknown field"));
    assert!(p.warnings[1].starts_with("rules[0].verb: unknown field"));
}
