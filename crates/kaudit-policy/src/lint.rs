//! Lint: what a reviewer would flag in an audit policy.
//!
//! Each check reasons about the rules statically (no traffic needed): which
//! rules can never be reached, which ones leak secrets into the log, which
//! ones cost the most volume for the least value.

use crate::model::{GroupResourcesDoc, Policy, PolicyRule};
use kaudit_event::{Level, Stage};
use serde::Serialize;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The policy would be refused by kube-apiserver.
    Error,
    /// The policy loads but probably does not do what was meant.
    Warning,
}

/// One lint finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// The rule the finding is about (`None`: the policy as a whole).
    pub rule: Option<usize>,
    /// Stable name of the check (`shadowed`, `sensitive-body`, ...).
    pub check: &'static str,
    /// What is wrong and why it matters.
    pub message: String,
}

/// Resources whose bodies hold credentials: (group, resource, subresource, label).
const SENSITIVE: [(&str, &str, &str, &str); 4] = [
    ("", "secrets", "", "secrets"),
    ("", "configmaps", "", "configmaps"),
    ("authentication.k8s.io", "tokenreviews", "", "tokenreviews"),
    ("", "serviceaccounts", "token", "serviceaccounts/token"),
];

/// Runs every check; findings come per rule in rule order, then policy-wide.
pub fn lint(policy: &Policy) -> Vec<Finding> {
    let mut out = Vec::new();
    let rules = &policy.rules;
    for (i, rule) in rules.iter().enumerate() {
        let warn = |check, message| Finding {
            severity: Severity::Warning,
            rule: Some(i),
            check,
            message,
        };
        for (field, values) in [
            ("verbs", &rule.verbs),
            ("users", &rule.users),
            ("userGroups", &rule.user_groups),
        ] {
            if values.iter().any(|v| v == "*") {
                out.push(warn(
                    "literal-star",
                    format!("{field} contains \"*\", which kube-apiserver compares literally: it matches nothing, not everything; leave {field} empty to match all"),
                ));
            }
        }
        if let Some(j) = (0..i).find(|&j| rule_covers(&rules[j], rule)) {
            out.push(warn(
                "shadowed",
                format!(
                    "unreachable: rule {j} comes first and matches every request this rule matches"
                ),
            ));
            continue;
        }
        if rule.level >= Level::Request {
            for (group, resource, sub, label) in SENSITIVE {
                let Some(probe) = sensitive_probe(rule, group, resource, sub) else {
                    continue;
                };
                if !(0..i).any(|j| rule_covers(&rules[j], &probe)) {
                    out.push(warn(
                        "sensitive-body",
                        format!("logs {label} at {}{}: their bodies carry credentials, which end up in the audit log; add a Metadata rule for them before this one", rule.level, verbs_note(&probe)),
                    ));
                }
            }
        }
        if rule.level == Level::RequestResponse && !rule_is_non_resource_only(rule) {
            let mut probe = rule.clone();
            probe.verbs = restrict_verbs(&rule.verbs, &["list", "watch"]);
            if !probe.verbs.is_empty() && !(0..i).any(|j| rule_covers(&rules[j], &probe)) {
                out.push(warn(
                    "list-watch-response",
                    format!("{} reach this rule at RequestResponse: list responses hold whole collections and dominate log volume; log them at Request or Metadata", probe.verbs.join("/")),
                ));
            }
        }
    }
    if !policy.omit_stages.contains(Stage::RequestReceived) {
        let logging: Vec<String> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.level != Level::None && !r.omit_stages.contains(Stage::RequestReceived)
            })
            .map(|(i, _)| i.to_string())
            .collect();
        if !logging.is_empty() {
            out.push(Finding {
                severity: Severity::Warning,
                rule: None,
                check: "request-received",
                message: format!("RequestReceived is not omitted (policy-wide or in rules {}): every request is logged twice, roughly doubling volume with little new information; add omitStages: [RequestReceived]", logging.join(", ")),
            });
        }
    }
    if !rules.iter().any(is_catch_all) {
        out.push(Finding {
            severity: Severity::Warning,
            rule: None,
            check: "no-catch-all",
            message: "no catch-all rule (one with only a level): requests no rule matches are not logged at all; end the policy with e.g. `- level: Metadata`".to_string(),
        });
    }
    out
}

fn is_catch_all(r: &PolicyRule) -> bool {
    r.users.is_empty()
        && r.user_groups.is_empty()
        && r.verbs.is_empty()
        && r.resources.is_empty()
        && r.namespaces.is_empty()
        && r.non_resource_urls.is_empty()
}

fn rule_is_non_resource_only(r: &PolicyRule) -> bool {
    !r.is_resource_only() && !r.non_resource_urls.is_empty()
}

/// Every value `inner` allows is allowed by `outer` (empty = anything).
fn list_covers(outer: &[String], inner: &[String]) -> bool {
    outer.is_empty() || (!inner.is_empty() && inner.iter().all(|x| outer.contains(x)))
}

/// Whether every request rule `b` matches is also matched by rule `a`.
fn rule_covers(a: &PolicyRule, b: &PolicyRule) -> bool {
    if !(list_covers(&a.users, &b.users)
        && list_covers(&a.user_groups, &b.user_groups)
        && list_covers(&a.verbs, &b.verbs))
    {
        return false;
    }
    if a.is_resource_only() {
        b.is_resource_only()
            && list_covers(&a.namespaces, &b.namespaces)
            && (a.resources.is_empty()
                || (!b.resources.is_empty()
                    && b.resources
                        .iter()
                        .all(|bg| a.resources.iter().any(|ag| group_covers(ag, bg)))))
    } else if !a.non_resource_urls.is_empty() {
        rule_is_non_resource_only(b)
            && b.non_resource_urls
                .iter()
                .all(|u| a.non_resource_urls.iter().any(|p| url_covers(p, u)))
    } else {
        true
    }
}

fn group_covers(a: &GroupResourcesDoc, b: &GroupResourcesDoc) -> bool {
    (a.group == "*" || a.group == b.group)
        && list_covers(&a.resource_names, &b.resource_names)
        && (a.resources.is_empty()
            || (!b.resources.is_empty()
                && b.resources
                    .iter()
                    .all(|r| a.resources.iter().any(|p| pattern_covers(p, r)))))
}

/// Every (resource, subresource) pattern `r` matches is matched by `p`.
fn pattern_covers(p: &str, r: &str) -> bool {
    if p == "*" || p == r {
        return true;
    }
    if let Some(res) = p.strip_suffix("/*") {
        return r == res
            || r.strip_prefix(res)
                .is_some_and(|rest| rest.starts_with('/'));
    }
    if let Some(sub) = p.strip_prefix("*/") {
        return r
            .split_once('/')
            .is_some_and(|(_, rsub)| rsub == sub && rsub != "*");
    }
    false
}

fn url_covers(p: &str, u: &str) -> bool {
    p == "*" || p == u || (p.ends_with('*') && u != "*" && u.starts_with(p.trim_end_matches('*')))
}

/// Whether some request for the resource can reach this rule's resource test.
fn rule_can_match_resource(r: &PolicyRule, group: &str, resource: &str, sub: &str) -> bool {
    if rule_is_non_resource_only(r) {
        return false;
    }
    r.resources.is_empty()
        || r.resources.iter().any(|gr| {
            (gr.group == "*" || gr.group == group)
                && (gr.resources.is_empty()
                    || gr
                        .resources
                        .iter()
                        .any(|p| crate::eval::resource_pattern_matches(p, resource, sub)))
        })
}

/// Verbs whose request body carries the credential, per sensitive resource
/// (at Request level; RequestResponse also logs responses, so every verb).
fn request_body_verbs(resource: &str, sub: &str) -> &'static [&'static str] {
    match (resource, sub) {
        ("secrets", "") | ("configmaps", "") => &["create", "update", "patch"],
        ("tokenreviews", "") => &["create"],
        _ => &[],
    }
}

/// `rule_verbs` (empty = any) restricted to `wanted`.
fn restrict_verbs(rule_verbs: &[String], wanted: &[&str]) -> Vec<String> {
    wanted
        .iter()
        .filter(|w| rule_verbs.is_empty() || rule_verbs.iter().any(|v| v == *w))
        .map(|w| w.to_string())
        .collect()
}

fn verbs_note(probe: &PolicyRule) -> String {
    if probe.verbs.is_empty() {
        String::new()
    } else {
        format!(" (verbs {})", probe.verbs.join(", "))
    }
}

/// The part of `rule` that would log credentials of the given resource: the
/// rule narrowed to that resource and to the verbs whose logged bodies hold
/// them. `None` when the rule cannot log them at all.
fn sensitive_probe(
    rule: &PolicyRule,
    group: &str,
    resource: &str,
    sub: &str,
) -> Option<PolicyRule> {
    if !rule_can_match_resource(rule, group, resource, sub) {
        return None;
    }
    let mut probe = rule.clone();
    if rule.level < Level::RequestResponse {
        probe.verbs = restrict_verbs(&rule.verbs, request_body_verbs(resource, sub));
        if probe.verbs.is_empty() {
            return None;
        }
    }
    let names: Vec<String> = rule
        .resources
        .iter()
        .filter(|gr| gr.group == "*" || gr.group == group)
        .flat_map(|gr| gr.resource_names.iter().cloned())
        .collect();
    let all_names = rule.resources.is_empty()
        || rule
            .resources
            .iter()
            .any(|gr| (gr.group == "*" || gr.group == group) && gr.resource_names.is_empty());
    probe.resources = vec![GroupResourcesDoc {
        group: group.to_string(),
        resources: vec![if sub.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{sub}")
        }],
        resource_names: if all_names { Vec::new() } else { names },
    }];
    Some(probe)
}

/// CIS Kubernetes Benchmark audit items (3.2.1, 3.2.2) checked on a policy:
/// it has rules, it logs access to Secrets, ConfigMaps and TokenReviews, and
/// at Metadata only (their bodies hold credentials), and it covers exec,
/// attach and port-forward. Each failing item is a warning named `cis-…`.
pub fn lint_cis(policy: &Policy) -> Vec<Finding> {
    let mut out = Vec::new();
    let warn = |check, message: String| Finding {
        severity: Severity::Warning,
        rule: None,
        check,
        message,
    };
    if policy.rules.is_empty() {
        out.push(warn(
            "cis-3.2.1",
            "the policy has no rules, so nothing is audited (CIS 3.2.1: ensure a minimal audit policy is created)".into(),
        ));
        return out;
    }
    let compiled = crate::eval::CompiledPolicy::new(policy.clone());
    let groups = vec!["system:authenticated".to_string()];
    let probe =
        |verb: &'static str, group: &'static str, resource: &'static str, sub: &'static str| {
            let a = crate::eval::RequestAttributes {
                user: Some(crate::eval::UserAttrs {
                    name: "cis-probe-user",
                    groups: &groups,
                }),
                verb,
                resource_request: true,
                namespace: "default",
                api_group: group,
                resource,
                subresource: sub,
                name: "",
                path: "",
            };
            compiled.evaluate(&a)
        };
    for (group, resource, label) in [
        ("", "secrets", "Secrets"),
        ("", "configmaps", "ConfigMaps"),
        ("authentication.k8s.io", "tokenreviews", "TokenReviews"),
    ] {
        for verb in [
            "get", "list", "watch", "create", "update", "patch", "delete",
        ] {
            if resource == "tokenreviews" && verb != "create" {
                continue;
            }
            let c = probe(verb, group, resource, "");
            if c.level < Level::Metadata {
                out.push(warn(
                    "cis-3.2.2",
                    format!("{verb} on {label} is not audited (level {:?}); CIS 3.2.2 wants access to {label} logged at Metadata", c.level),
                ));
                break;
            }
            if c.level > Level::Metadata {
                out.push(warn(
                    "cis-3.2.2",
                    format!("{verb} on {label} is logged at {:?} (rule {}), which writes their bodies (credentials) into the log; CIS 3.2.2 wants Metadata", c.level, c.rule.map_or("-".into(), |r| r.to_string())),
                ));
                break;
            }
        }
    }
    for sub in ["exec", "attach", "portforward"] {
        let c = probe("create", "", "pods", sub);
        if c.level < Level::Metadata {
            out.push(warn(
                "cis-3.2.2",
                format!("pods/{sub} is not audited; CIS 3.2.2 wants exec, attach and port-forward logged"),
            ));
        }
    }
    out
}

/// Most bytes of a kube-apiserver command line or manifest read.
pub const MAX_APISERVER_TEXT: usize = 1 << 20;

/// CIS 1.2.x checks of kube-apiserver's audit flags, given its command line
/// or its static-pod manifest: an audit backend (`--audit-log-path` or
/// `--audit-webhook-config-file`), `--audit-policy-file`, and for a log
/// file `--audit-log-maxage>=30`, `--audit-log-maxbackup>=10`,
/// `--audit-log-maxsize>=100`.
pub fn lint_apiserver_flags(text: &str) -> Vec<Finding> {
    let text = &text[..text.len().min(MAX_APISERVER_TEXT)];
    let mut flags: std::collections::BTreeMap<String, String> = Default::default();
    let tokens: Vec<&str> = text
        .split(|c: char| {
            c.is_whitespace() || c == '"' || c == '\'' || c == ',' || c == '[' || c == ']'
        })
        .filter(|t| !t.is_empty() && *t != "-")
        .collect();
    for (i, t) in tokens.iter().enumerate() {
        let Some(f) = t.strip_prefix("--audit-") else {
            continue;
        };
        match f.split_once('=') {
            Some((k, v)) => flags.insert(k.to_string(), v.to_string()),
            None => {
                let v = tokens
                    .get(i + 1)
                    .filter(|n| !n.starts_with("--"))
                    .unwrap_or(&"");
                flags.insert(f.to_string(), v.to_string())
            }
        };
    }
    let mut out = Vec::new();
    let warn = |check, message: String| Finding {
        severity: Severity::Warning,
        rule: None,
        check,
        message,
    };
    let log_path = flags.get("log-path").filter(|v| !v.is_empty());
    let webhook = flags.get("webhook-config-file").filter(|v| !v.is_empty());
    if log_path.is_none() && webhook.is_none() {
        out.push(warn("cis-1.2.16", "neither --audit-log-path nor --audit-webhook-config-file is set: kube-apiserver writes no audit log".into()));
    }
    if flags.get("policy-file").is_none_or(|v| v.is_empty()) {
        out.push(warn(
            "cis-3.2.1",
            "--audit-policy-file is not set: without a policy kube-apiserver audits nothing".into(),
        ));
    }
    if log_path.is_some_and(|p| p != "-") {
        for (flag, min, check) in [
            ("log-maxage", 30u64, "cis-1.2.17"),
            ("log-maxbackup", 10, "cis-1.2.18"),
            ("log-maxsize", 100, "cis-1.2.19"),
        ] {
            match flags.get(flag).map(|v| v.parse::<u64>()) {
                Some(Ok(n)) if n >= min => {}
                Some(Ok(n)) => out.push(warn(
                    check,
                    format!("--audit-{flag}={n}: want at least {min}"),
                )),
                Some(Err(_)) => out.push(warn(
                    check,
                    format!(
                        "--audit-{flag}={:?} is not a number",
                        flags.get(flag).map_or("", String::as_str)
                    ),
                )),
                None => out.push(warn(
                    check,
                    format!("--audit-{flag} is not set: want at least {min}"),
                )),
            }
        }
    }
    out
}

#[cfg(test)]
mod cis_tests {
    use super::*;

    fn policy(yaml: &str) -> Policy {
        crate::load_policy(yaml.as_bytes(), "test")
            .expect("policy")
            .policy
    }

    #[test]
    fn cis_flags_each_threshold() {
        let good = "kube-apiserver --audit-log-path=/var/log/a.log --audit-log-maxage=30 --audit-log-maxbackup 10 --audit-log-maxsize=100 --audit-policy-file=/etc/p.yaml";
        assert_eq!(lint_apiserver_flags(good), vec![]);
        let manifest = "spec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --audit-log-path=/var/log/a.log\n    - --audit-log-maxage=7\n    - --audit-log-maxsize=100\n    - --audit-policy-file=/etc/p.yaml\n";
        let f = lint_apiserver_flags(manifest);
        let checks: Vec<&str> = f.iter().map(|f| f.check).collect();
        assert_eq!(checks, vec!["cis-1.2.17", "cis-1.2.18"], "{f:?}");
        let none = lint_apiserver_flags("kube-apiserver --secure-port=6443");
        let checks: Vec<&str> = none.iter().map(|f| f.check).collect();
        assert_eq!(checks, vec!["cis-1.2.16", "cis-3.2.1"]);
        assert!(lint_apiserver_flags(
            "kube-apiserver --audit-webhook-config-file=/w.yaml --audit-policy-file=/p"
        )
        .is_empty());
    }

    #[test]
    fn cis_policy_items() {
        let good = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  resources:\n  - group: \"\"\n    resources: [secrets, configmaps]\n  - group: authentication.k8s.io\n    resources: [tokenreviews]\n- level: RequestResponse\n";
        assert_eq!(lint_cis(&policy(good)), vec![]);
        let bodies =
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n";
        let f = lint_cis(&policy(bodies));
        assert_eq!(
            f.len(),
            3,
            "secrets, configmaps, tokenreviews bodies: {f:?}"
        );
        assert!(f
            .iter()
            .all(|f| f.check == "cis-3.2.2" && f.message.contains("bodies")));
        let none = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  resources:\n  - group: \"\"\n    resources: [secrets]\n- level: Metadata\n";
        let f = lint_cis(&policy(none));
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("Secrets") && f[0].message.contains("not audited"));
        let mut empty = policy(good);
        empty.rules.clear();
        assert_eq!(lint_cis(&empty)[0].check, "cis-3.2.1");
    }
}
