//! The obvious evaluator: every rule, every field, strings compared one by
//! one, the combined `resource/subresource` string built per request. It is
//! the reference the compiled evaluator is property-tested and benchmarked
//! against.

use crate::eval::{AuditConfig, RequestAttributes};
use crate::model::{Policy, PolicyRule};
use kaudit_event::Level;

/// Evaluates `policy` for `a` rule by rule, as kube-apiserver's checker reads.
pub fn evaluate_naive(policy: &Policy, a: &RequestAttributes<'_>) -> AuditConfig {
    for (i, rule) in policy.rules.iter().enumerate() {
        if rule_matches(rule, a) {
            return AuditConfig {
                rule: Some(i),
                level: rule.level,
                omit_stages: rule.omit_stages.union(policy.omit_stages),
                omit_managed_fields: rule
                    .omit_managed_fields
                    .unwrap_or(policy.omit_managed_fields),
            };
        }
    }
    AuditConfig {
        rule: None,
        level: Level::None,
        omit_stages: policy.omit_stages,
        omit_managed_fields: policy.omit_managed_fields,
    }
}

fn has(list: &[String], s: &str) -> bool {
    list.iter().any(|x| x == s)
}

fn rule_matches(r: &PolicyRule, a: &RequestAttributes<'_>) -> bool {
    if !r.users.is_empty() && !a.user.is_some_and(|u| has(&r.users, u.name)) {
        return false;
    }
    if !r.user_groups.is_empty()
        && !a
            .user
            .is_some_and(|u| u.groups.iter().any(|g| has(&r.user_groups, g)))
    {
        return false;
    }
    if !r.verbs.is_empty() && !has(&r.verbs, a.verb) {
        return false;
    }
    if !r.namespaces.is_empty() || !r.resources.is_empty() {
        return rule_matches_resource(r, a);
    }
    if !r.non_resource_urls.is_empty() {
        if a.resource_request {
            return false;
        }
        return r.non_resource_urls.iter().any(|spec| {
            spec == "*"
                || spec == a.path
                || (spec.ends_with('*') && a.path.starts_with(spec.trim_end_matches('*')))
        });
    }
    true
}

fn rule_matches_resource(r: &PolicyRule, a: &RequestAttributes<'_>) -> bool {
    if !a.resource_request {
        return false;
    }
    if !r.namespaces.is_empty() && !has(&r.namespaces, a.namespace) {
        return false;
    }
    if r.resources.is_empty() {
        return true;
    }
    let combined = if a.subresource.is_empty() {
        a.resource.to_string()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    for gr in &r.resources {
        if gr.group != a.api_group && gr.group != "*" {
            continue;
        }
        if gr.resources.is_empty() {
            return true;
        }
        for res in &gr.resources {
            if gr.resource_names.is_empty() || has(&gr.resource_names, a.name) {
                if *res == combined || res == "*" {
                    return true;
                }
                if !a.subresource.is_empty() && res.starts_with("*/") && a.subresource == &res[2..]
                {
                    return true;
                }
                if res.ends_with("/*") && a.resource == &res[..res.len() - 2] {
                    return true;
                }
            }
        }
    }
    false
}
