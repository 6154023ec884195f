//! RBAC from usage: Role/ClusterRole and binding YAML granting exactly what
//! a user was observed doing with allowed requests (audit2rbac's job, over
//! the store, for any period).
//!
//! Namespaced requests become one Role + RoleBinding per namespace;
//! cluster-scoped and all-namespace requests, and non-resource URLs, become
//! one ClusterRole + ClusterRoleBinding. Subresources are written as
//! `pods/exec`; with `resource_names`, a rule lists the object names when
//! every request of that verb named one.

use crate::{IndexError, IndexResult, SearchBackend};
use kaudit_query::Query;
use std::collections::{BTreeMap, BTreeSet};

/// What to generate.
#[derive(Clone, Debug)]
pub struct RbacRequest {
    /// The username whose requests are replayed.
    pub user: String,
    /// Extra filter (e.g. `cluster=prod-eu-west-1`), empty for none.
    pub filter: String,
    /// Earliest event time (microseconds).
    pub since: Option<i64>,
    /// Latest event time, exclusive.
    pub until: Option<i64>,
    /// Restrict rules to the object names seen.
    pub resource_names: bool,
}

/// The generated objects.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RbacReport {
    /// Multi-document YAML.
    pub yaml: String,
    /// Allowed requests that were replayed.
    pub requests: u64,
    /// Denied requests left out.
    pub denied: u64,
}

/// (apiGroup, resource incl. subresource, verb) -> names, None = any name.
type Grants = BTreeMap<(String, String, String), Option<BTreeSet<String>>>;

/// (apiGroup, resourceNames) of a rule.
type RuleKey = (String, Option<BTreeSet<String>>);

#[derive(Default)]
struct Scope {
    grants: Grants,
    urls: BTreeMap<String, BTreeSet<String>>,
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Builds the roles and bindings for `req.user`.
pub fn generate(backend: &dyn SearchBackend, req: &RbacRequest) -> IndexResult<RbacReport> {
    if req.user.is_empty() {
        return Err(IndexError::Input("--user is required".into()));
    }
    let text = format!(
        "user={} {}",
        quote(&req.user),
        if req.filter.trim().is_empty() {
            String::new()
        } else {
            format!("({})", req.filter)
        }
    );
    let q = Query::parse(&text).map_err(|e| IndexError::Input(e.to_string()))?;
    let mut scopes: BTreeMap<String, Scope> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut report = RbacReport::default();
    backend.for_each_match(&q, req.since, req.until, &mut |_, _, ev, _| {
        let d = ev.doc();
        let decision = ev.annotation("authorization.k8s.io/decision");
        let allowed = match (decision, ev.response_code()) {
            (Some(v), _) => v == "allow",
            (None, Some(code)) => !matches!(code, 401 | 403),
            // No decision and no response yet (RequestReceived): wait for
            // the request's later stages.
            (None, None) => return true,
        };
        if !seen.insert(d.audit_id.clone()) && !d.audit_id.is_empty() {
            return true;
        }
        if !allowed {
            report.denied += 1;
            return true;
        }
        report.requests += 1;
        match &d.object_ref {
            Some(o) if !o.resource.is_empty() => {
                let res = if o.subresource.is_empty() {
                    o.resource.clone()
                } else {
                    format!("{}/{}", o.resource, o.subresource)
                };
                // A namespace object is cluster-scoped even though its
                // objectRef names itself as the namespace.
                let ns = if o.resource == "namespaces" {
                    String::new()
                } else {
                    o.namespace.clone()
                };
                let scope = scopes.entry(ns).or_default();
                let slot = scope
                    .grants
                    .entry((o.api_group.clone(), res, d.verb.clone()))
                    .or_insert_with(|| Some(BTreeSet::new()));
                match (slot.as_mut(), o.name.is_empty()) {
                    (Some(names), false) => {
                        names.insert(o.name.clone());
                    }
                    _ => *slot = None,
                }
            }
            _ => {
                let path = d.request_uri.split('?').next().unwrap_or("").to_string();
                if !path.is_empty() {
                    scopes
                        .entry(String::new())
                        .or_default()
                        .urls
                        .entry(path)
                        .or_default()
                        .insert(d.verb.clone());
                }
            }
        }
        true
    })?;
    let name = format!("kaudit:{}", req.user);
    let mut docs = Vec::new();
    for (ns, scope) in &scopes {
        let rules = rules(scope, req.resource_names);
        if rules.is_empty() {
            continue;
        }
        let (role_kind, binding_kind) = if ns.is_empty() {
            ("ClusterRole", "ClusterRoleBinding")
        } else {
            ("Role", "RoleBinding")
        };
        let ns_line = if ns.is_empty() {
            String::new()
        } else {
            format!("  namespace: {}\n", quote(ns))
        };
        docs.push(format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: {role_kind}\nmetadata:\n  name: {}\n{ns_line}rules:\n{rules}",
            quote(&name)
        ));
        docs.push(format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: {binding_kind}\nmetadata:\n  name: {}\n{ns_line}roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: {role_kind}\n  name: {}\nsubjects:\n{}",
            quote(&name),
            quote(&name),
            subject(&req.user)
        ));
    }
    report.yaml = docs.join("---\n");
    Ok(report)
}

fn subject(user: &str) -> String {
    let parts: Vec<&str> = user.splitn(4, ':').collect();
    if let ["system", "serviceaccount", ns, name] = parts[..] {
        format!(
            "- kind: ServiceAccount\n  name: {}\n  namespace: {}\n",
            quote(name),
            quote(ns)
        )
    } else {
        format!(
            "- kind: User\n  apiGroup: rbac.authorization.k8s.io\n  name: {}\n",
            quote(user)
        )
    }
}

fn list(items: &BTreeSet<String>) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|s| quote(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn rules(scope: &Scope, resource_names: bool) -> String {
    // (apiGroup, names) -> resource -> verbs; then resources with equal verbs merge.
    let mut by: BTreeMap<RuleKey, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for ((group, res, verb), names) in &scope.grants {
        let names = if resource_names { names.clone() } else { None };
        by.entry((group.clone(), names))
            .or_default()
            .entry(res.clone())
            .or_default()
            .insert(verb.clone());
    }
    let mut out = String::new();
    for ((group, names), resources) in by {
        let mut merged: BTreeMap<BTreeSet<String>, BTreeSet<String>> = BTreeMap::new();
        for (res, verbs) in resources {
            merged.entry(verbs).or_default().insert(res);
        }
        for (verbs, res) in merged {
            out.push_str(&format!(
                "- apiGroups: [{}]\n  resources: {}\n",
                quote(&group),
                list(&res)
            ));
            if let Some(n) = &names {
                out.push_str(&format!("  resourceNames: {}\n", list(n)));
            }
            out.push_str(&format!("  verbs: {}\n", list(&verbs)));
        }
    }
    let mut by_verbs: BTreeMap<&BTreeSet<String>, BTreeSet<String>> = BTreeMap::new();
    for (url, verbs) in &scope.urls {
        by_verbs.entry(verbs).or_default().insert(url.clone());
    }
    for (verbs, urls) in by_verbs {
        out.push_str(&format!(
            "- nonResourceURLs: {}\n  verbs: {}\n",
            list(&urls),
            list(verbs)
        ));
    }
    out
}
