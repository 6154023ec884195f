//! RBAC from usage: Role/ClusterRole and binding YAML granting exactly what
//! a user was observed doing with allowed requests (audit2rbac's job, over
//! the store, for any period).
//!
//! Namespaced requests become one Role + RoleBinding per namespace;
//! cluster-scoped and all-namespace requests, and non-resource URLs, become
//! one ClusterRole + ClusterRoleBinding. Subresources are written as
//! `pods/exec`; with `resource_names`, a rule lists the object names when
//! every request of that verb named one.

use crate::scan::{counted_events, is_final_stage, IdMemo, Interner, ScanField, StageKey};
use crate::{IndexError, IndexResult, SearchBackend};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use kaudit_query::{Field, Query};
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
    /// Time the replay may take; None: unbounded (the CLI).
    pub budget: Option<kaudit_query::Budget>,
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
pub type Grants = BTreeMap<(String, String, String), Option<BTreeSet<String>>>;

/// (apiGroup, resourceNames) of a rule.
type RuleKey = (String, Option<BTreeSet<String>>);

/// What a user was allowed to do in one namespace ("" = cluster scope).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// Resource requests: the core group is "".
    pub grants: Grants,
    /// Non-resource URL -> verbs (cluster scope only).
    pub urls: BTreeMap<String, BTreeSet<String>>,
}

/// What a user was observed doing, before it is written as RBAC objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Namespace ("" = cluster scope) -> what was allowed there.
    pub scopes: BTreeMap<String, Scope>,
    /// Allowed requests.
    pub requests: u64,
    /// Denied requests.
    pub denied: u64,
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The fields usage is built from, in [`Observed`] order.
const RBAC_FIELDS: [ScanField; 10] = [
    ScanField::Key(Field::Verb),
    ScanField::Key(Field::Resource),
    ScanField::Key(Field::Subresource),
    ScanField::Key(Field::Namespace),
    ScanField::Key(Field::Name),
    ScanField::Key(Field::ApiGroup),
    ScanField::Key(Field::Code),
    ScanField::Key(Field::Stage),
    ScanField::Key(Field::Decision),
    ScanField::NonResourcePath,
];

/// (namespace, group, resource, subresource, verb) of a grant, interned.
type GrantKey = (u32, u32, u32, u32, u32);

/// One event whose authorization outcome is known, its strings interned.
struct Observed {
    key: StageKey,
    allowed: bool,
    verb: u32,
    /// Resource, or the path of a non-resource request when `group` is
    /// `None`.
    resource: u32,
    subresource: u32,
    group: Option<u32>,
    namespace: u32,
    name: u32,
}

/// Replays `req.user`'s requests: what was allowed where.
///
/// Read from the index columns (no event is parsed unless the index cannot
/// answer it). A request is allowed per its `authorization.k8s.io/decision`
/// annotation, else when its response code is not 401/403; events with
/// neither (RequestReceived) are skipped. Each request counts once, at its
/// final stage (ResponseComplete or Panic) or, when no final stage matched,
/// at its first event with an outcome; requests are recognised by the
/// auditID's 32-bit hash, so the only deviation from grouping by the full
/// auditID is a hash collision between an unfinished request and another
/// request of the user (the unfinished one is then not counted). The index
/// reports the core API group as `core`, which no other group can be called
/// (API groups of custom resources contain a dot), so it becomes "" here.
pub fn observe(backend: &dyn SearchBackend, req: &RbacRequest) -> IndexResult<Usage> {
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
    let q = crate::history::budgeted(Query::parse(&text).map_err(IndexError::Query)?, req.budget);
    let mut names = Interner::default();
    let empty = names.id("");
    let mut memo = IdMemo::default();
    let mut evs: Vec<Observed> = Vec::new();
    backend.scan_fields(&q, req.since, req.until, &RBAC_FIELDS, &mut |row| {
        let one = |i: usize| row.values.get(i).and_then(|v| v.first()).copied();
        let allowed = match (one(8), one(6)) {
            (Some(decision), _) => decision == "allow",
            (None, Some(code)) => !matches!(code, "401" | "403"),
            // No decision and no response yet (RequestReceived): wait for
            // the request's later stages.
            (None, None) => return true,
        };
        let id = |i: usize| row.ids.get(i).copied().unwrap_or(0);
        let mut intern = |i: usize| memo.get(i, id(i), || names.id(one(i).unwrap_or("")));
        let resource = one(1).unwrap_or("");
        let (resource, subresource, group, namespace, name) = if resource.is_empty() {
            (intern(9), 0, None, 0, 0)
        } else {
            let group = match one(5).unwrap_or("") {
                "core" => empty,
                _ => intern(5),
            };
            // A namespace object is cluster-scoped even though its
            // objectRef names itself as the namespace.
            let ns = if resource == "namespaces" {
                empty
            } else {
                intern(3)
            };
            (intern(1), intern(2), Some(group), ns, intern(4))
        };
        evs.push(Observed {
            key: StageKey {
                audit_hash: row.audit_hash,
                time: row.time,
                is_final: one(7).is_some_and(is_final_stage),
            },
            allowed,
            verb: intern(0),
            resource,
            subresource,
            group,
            namespace,
            name,
        });
        true
    })?;
    let keys: Vec<StageKey> = evs.iter().map(|e| e.key).collect();
    let mut usage = Usage::default();
    // Summed on interned numbers first; strings are made once per grant.
    let mut grants: HashMap<GrantKey, Option<HashSet<u32>>> = HashMap::new();
    let mut urls: HashMap<u32, HashSet<u32>> = HashMap::new();
    for (e, counted) in evs.iter().zip(counted_events(&keys)) {
        if !counted {
            continue;
        }
        if !e.allowed {
            usage.denied += 1;
            continue;
        }
        usage.requests += 1;
        match e.group {
            Some(group) => {
                let slot = grants
                    .entry((e.namespace, group, e.resource, e.subresource, e.verb))
                    .or_insert_with(|| Some(HashSet::new()));
                match slot {
                    Some(set) if e.name != empty => {
                        set.insert(e.name);
                    }
                    _ => *slot = None,
                }
            }
            None if e.resource != empty => {
                urls.entry(e.resource).or_default().insert(e.verb);
            }
            None => {}
        }
    }
    let text = |id: u32| names.name(id).to_string();
    for ((ns, group, res, sub, verb), set) in grants {
        let resource = match names.name(sub) {
            "" => text(res),
            sub => format!("{}/{sub}", names.name(res)),
        };
        let names: Option<BTreeSet<String>> = set.map(|s| s.into_iter().map(text).collect());
        // Merged, not replaced: `pods` + `exec` and a resource spelled
        // `pods/exec` are one grant, as they are in the YAML.
        let slot = usage
            .scopes
            .entry(text(ns))
            .or_default()
            .grants
            .entry((text(group), resource, text(verb)))
            .or_insert_with(|| Some(BTreeSet::new()));
        match (slot.as_mut(), names) {
            (Some(have), Some(more)) => have.extend(more),
            _ => *slot = None,
        }
    }
    for (path, verbs) in urls {
        usage
            .scopes
            .entry(String::new())
            .or_default()
            .urls
            .entry(text(path))
            .or_default()
            .extend(verbs.into_iter().map(text));
    }
    Ok(usage)
}

/// Builds the roles and bindings for `req.user` (see [`observe`]).
pub fn generate(backend: &dyn SearchBackend, req: &RbacRequest) -> IndexResult<RbacReport> {
    let usage = observe(backend, req)?;
    let name = format!("kaudit:{}", req.user);
    let mut docs = Vec::new();
    for (ns, scope) in &usage.scopes {
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
    Ok(RbacReport {
        yaml: docs.join("---\n"),
        requests: usage.requests,
        denied: usage.denied,
    })
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
