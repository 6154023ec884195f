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
