//! Evaluation exactly as kube-apiserver's policy checker, precompiled.
//!
//! kube-apiserver tries the rules in order and returns the first match. The
//! compiled form answers the cheap questions (user, verb, namespace, request
//! kind) for all rules at once with per-value bitsets, so only rules that
//! survive those filters are checked in full, still in order, which keeps
//! first-match semantics intact.

use crate::model::{Policy, PolicyRule};
use kaudit_event::{Event, Level, Stage};
use serde::Serialize;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A set of stages (a bitmask): omitStages in any order, duplicates merged.
#[derive(Copy, Clone, Default, PartialEq, Eq, Hash)]
pub struct StageSet(u8);

impl StageSet {
    /// No stage.
    pub const EMPTY: StageSet = StageSet(0);

    fn bit(stage: Stage) -> u8 {
        match stage {
            Stage::RequestReceived => 1,
            Stage::ResponseStarted => 2,
            Stage::ResponseComplete => 4,
            Stage::Panic => 8,
        }
    }
    /// Whether `stage` is in the set.
    pub fn contains(self, stage: Stage) -> bool {
        self.0 & Self::bit(stage) != 0
    }
    /// Adds a stage.
    pub fn insert(&mut self, stage: Stage) {
        self.0 |= Self::bit(stage);
    }
    /// Both sets together (kube-apiserver's `unionStages`).
    pub fn union(self, other: StageSet) -> StageSet {
        StageSet(self.0 | other.0)
    }
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
    /// The stages, in the order a request passes them.
    pub fn iter(self) -> impl Iterator<Item = Stage> {
        Stage::ALL.into_iter().filter(move |s| self.contains(*s))
    }
    /// The stage names, in canonical order.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Stage::as_str).collect()
    }
}

impl FromIterator<Stage> for StageSet {
    fn from_iter<I: IntoIterator<Item = Stage>>(iter: I) -> Self {
        let mut s = StageSet::EMPTY;
        for stage in iter {
            s.insert(stage);
        }
        s
    }
}

impl std::fmt::Debug for StageSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Serialize for StageSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

/// Serializes a level by its wire name.
pub(crate) fn serialize_level<S: serde::Serializer>(l: &Level, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(l.as_str())
}

/// The authenticated user as the checker sees it.
#[derive(Copy, Clone, Debug)]
pub struct UserAttrs<'a> {
    /// User name.
    pub name: &'a str,
    /// Group names.
    pub groups: &'a [String],
}

/// What kube-apiserver's authorizer attributes tell the policy checker.
#[derive(Copy, Clone, Debug)]
pub struct RequestAttributes<'a> {
    /// `None` when there is no user at all (failed authentication): rules
    /// with `users` or `userGroups` then never match.
    pub user: Option<UserAttrs<'a>>,
    /// The verb (`get`, `list`, `create`, ...).
    pub verb: &'a str,
    /// Whether this is a resource request (else only `path` matters).
    pub resource_request: bool,
    /// Namespace ("" for cluster-scoped).
    pub namespace: &'a str,
    /// API group ("" for core).
    pub api_group: &'a str,
    /// Resource (`pods`).
    pub resource: &'a str,
    /// Subresource (`log`), "" when none.
    pub subresource: &'a str,
    /// Object name, "" for lists and creates without a name.
    pub name: &'a str,
    /// URL path without the query.
    pub path: &'a str,
}

impl<'a> RequestAttributes<'a> {
    /// Attributes of the request an event records: the authenticated user
    /// (the policy sees who authenticated, not whom they impersonate; an
    /// event with neither user name nor groups had no user), a resource
    /// request exactly when the event has an objectRef, and the requestURI
    /// without its query as the path.
    pub fn from_event(event: &'a Event) -> RequestAttributes<'a> {
        let doc = event.doc();
        let user =
            (!doc.user.username.is_empty() || !doc.user.groups.is_empty()).then_some(UserAttrs {
                name: &doc.user.username,
                groups: &doc.user.groups,
            });
        let uri = doc.request_uri.as_str();
        let path = uri.split_once('?').map_or(uri, |(p, _)| p);
        match &doc.object_ref {
            Some(o) => RequestAttributes {
                user,
                verb: &doc.verb,
                resource_request: true,
                namespace: &o.namespace,
                api_group: &o.api_group,
                resource: &o.resource,
                subresource: &o.subresource,
                name: &o.name,
                path,
            },
            None => RequestAttributes {
                user,
                verb: &doc.verb,
                resource_request: false,
                namespace: "",
                api_group: "",
                resource: "",
                subresource: "",
                name: "",
                path,
            },
        }
    }
}

/// What the policy decided for a request (kube-apiserver's
/// `RequestAuditConfig`), plus which rule decided it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditConfig {
    /// Index of the first matching rule; `None` when no rule matched.
    pub rule: Option<usize>,
    /// Level to log at (None when no rule matched).
    #[serde(serialize_with = "crate::eval::serialize_level")]
    pub level: Level,
    /// Stages not to log: the rule's unioned with the policy's.
    pub omit_stages: StageSet,
    /// Whether to strip metadata.managedFields from logged objects.
    pub omit_managed_fields: bool,
}

/// A multiply-rotate hasher: policy strings are short and trusted, so a
/// DoS-resistant hash would only cost time on every event.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
        self.0 = h;
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<V> = HashMap<Box<str>, V, BuildHasherDefault<FastHasher>>;

/// For one attribute, which rules accept a given value: rules that do not
/// constrain it at all, plus per value the rules that list it.
struct BitIndex {
    unconstrained: Vec<u64>,
    by_value: FastMap<Vec<u64>>,
}

impl BitIndex {
    fn build<'r>(
        words: usize,
        rules: &'r [PolicyRule],
        values: impl Fn(&'r PolicyRule) -> &'r [String],
    ) -> BitIndex {
        let mut idx = BitIndex {
            unconstrained: vec![0; words],
            by_value: FastMap::default(),
        };
        for (i, rule) in rules.iter().enumerate() {
            let vals = values(rule);
            if vals.is_empty() {
                idx.unconstrained[i / 64] |= 1 << (i % 64);
            }
            for v in vals {
                let bits = idx
                    .by_value
                    .entry(v.as_str().into())
                    .or_insert_with(|| vec![0; words]);
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        idx
    }

    /// Index of the API groups a rule's `resources` name: rules without
    /// `resources`, or with a `*` group, accept every group.
    fn build_api_groups(words: usize, rules: &[PolicyRule]) -> BitIndex {
        let mut idx = BitIndex {
            unconstrained: vec![0; words],
            by_value: FastMap::default(),
        };
        for (i, rule) in rules.iter().enumerate() {
            let bit = 1u64 << (i % 64);
            if rule.resources.is_empty() || rule.resources.iter().any(|gr| gr.group == "*") {
                idx.unconstrained[i / 64] |= bit;
                continue;
            }
            for gr in &rule.resources {
                let bits = idx
                    .by_value
                    .entry(gr.group.as_str().into())
                    .or_insert_with(|| vec![0; words]);
                bits[i / 64] |= bit;
            }
        }
        idx
    }

    fn lookup(&self, value: &str) -> Option<&[u64]> {
        self.by_value.get(value).map(Vec::as_slice)
    }
}

enum UrlPattern {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
}

struct CompiledGroup {
    /// `None` for group "*".
    group: Option<Box<str>>,
    resources: Vec<Box<str>>,
    names: Vec<Box<str>>,
}

struct CompiledRule {
    groups: Vec<Box<str>>,
    resources: Vec<CompiledGroup>,
    urls: Vec<UrlPattern>,
}

/// A policy compiled for fast evaluation. Evaluation never allocates.
pub struct CompiledPolicy {
    policy: Policy,
    words: usize,
    rules: Vec<CompiledRule>,
    configs: Vec<AuditConfig>,
    unmatched: AuditConfig,
    users: BitIndex,
    verbs: BitIndex,
    namespaces: BitIndex,
    api_groups: BitIndex,
    /// Rules that can match a resource request (all but nonResourceURLs-only rules).
    resource_ok: Vec<u64>,
    /// Rules that can match a non-resource request (no namespaces or resources).
    non_resource_ok: Vec<u64>,
}

impl CompiledPolicy {
    /// Compiles a validated policy.
    pub fn new(policy: Policy) -> CompiledPolicy {
        let n = policy.rules.len();
        let words = n.div_ceil(64).max(1);
        let mut resource_ok = vec![0u64; words];
        let mut non_resource_ok = vec![0u64; words];
        let mut rules = Vec::with_capacity(n);
        let mut configs = Vec::with_capacity(n);
        for (i, r) in policy.rules.iter().enumerate() {
            let bit = 1u64 << (i % 64);
            if r.is_resource_only() || r.non_resource_urls.is_empty() {
                resource_ok[i / 64] |= bit;
            }
            if !r.is_resource_only() {
                non_resource_ok[i / 64] |= bit;
            }
            rules.push(CompiledRule {
                groups: r.user_groups.iter().map(|g| g.as_str().into()).collect(),
                resources: r
                    .resources
                    .iter()
                    .map(|gr| CompiledGroup {
                        group: (gr.group != "*").then(|| gr.group.as_str().into()),
                        resources: gr.resources.iter().map(|s| s.as_str().into()).collect(),
                        names: gr
                            .resource_names
                            .iter()
                            .map(|s| s.as_str().into())
                            .collect(),
                    })
                    .collect(),
                urls: r
                    .non_resource_urls
                    .iter()
                    .map(|u| {
                        if u == "*" {
                            UrlPattern::Any
                        } else if u.ends_with('*') {
                            UrlPattern::Prefix(u.trim_end_matches('*').into())
                        } else {
                            UrlPattern::Exact(u.as_str().into())
                        }
                    })
                    .collect(),
            });
            configs.push(AuditConfig {
                rule: Some(i),
                level: r.level,
                omit_stages: r.omit_stages.union(policy.omit_stages),
                omit_managed_fields: r.omit_managed_fields.unwrap_or(policy.omit_managed_fields),
            });
        }
        CompiledPolicy {
            users: BitIndex::build(words, &policy.rules, |r| &r.users),
            verbs: BitIndex::build(words, &policy.rules, |r| &r.verbs),
            namespaces: BitIndex::build(words, &policy.rules, |r| &r.namespaces),
            api_groups: BitIndex::build_api_groups(words, &policy.rules),
            unmatched: AuditConfig {
                rule: None,
                level: Level::None,
                omit_stages: policy.omit_stages,
                omit_managed_fields: policy.omit_managed_fields,
            },
            policy,
            words,
            rules,
            configs,
            resource_ok,
            non_resource_ok,
        }
    }

    /// The policy this was compiled from.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The first matching rule's decision, or level None with the policy's
    /// omitStages when no rule matches.
    pub fn evaluate(&self, a: &RequestAttributes<'_>) -> AuditConfig {
        let user_bits = a.user.and_then(|u| self.users.lookup(u.name));
        let verb_bits = self.verbs.lookup(a.verb);
        let (ns_bits, group_bits) = if a.resource_request {
            (
                self.namespaces.lookup(a.namespace),
                self.api_groups.lookup(a.api_group),
            )
        } else {
            (None, None)
        };
        for w in 0..self.words {
            let mut m = self.users.unconstrained[w] | user_bits.map_or(0, |b| b[w]);
            m &= self.verbs.unconstrained[w] | verb_bits.map_or(0, |b| b[w]);
            if a.resource_request {
                m &= self.resource_ok[w];
                m &= self.namespaces.unconstrained[w] | ns_bits.map_or(0, |b| b[w]);
                m &= self.api_groups.unconstrained[w] | group_bits.map_or(0, |b| b[w]);
            } else {
                m &= self.non_resource_ok[w];
            }
            while m != 0 {
                let i = w * 64 + m.trailing_zeros() as usize;
                if self.rest_matches(i, a) {
                    return self.configs[i];
                }
                m &= m - 1;
            }
        }
        self.unmatched
    }

    /// The checks the bitsets do not cover: groups, resources, URLs.
    fn rest_matches(&self, i: usize, a: &RequestAttributes<'_>) -> bool {
        let rule = &self.rules[i];
        if !rule.groups.is_empty() {
            let Some(user) = a.user else { return false };
            if !user
                .groups
                .iter()
                .any(|g| rule.groups.iter().any(|rg| **rg == **g))
            {
                return false;
            }
        }
        if a.resource_request {
            rule.resources.is_empty() || resources_match(&rule.resources, a)
        } else {
            rule.urls.is_empty()
                || rule.urls.iter().any(|u| match u {
                    UrlPattern::Any => true,
                    UrlPattern::Exact(s) => **s == *a.path,
                    UrlPattern::Prefix(p) => a.path.starts_with(&**p),
                })
        }
    }
}

/// `pattern == resource + "/" + subresource` (or `== resource` without a
/// subresource), without building the combined string.
pub(crate) fn equals_combined(pattern: &str, resource: &str, subresource: &str) -> bool {
    if subresource.is_empty() {
        return pattern == resource;
    }
    pattern.len() == resource.len() + 1 + subresource.len()
        && pattern.starts_with(resource)
        && pattern.as_bytes()[resource.len()] == b'/'
        && pattern.ends_with(subresource)
}

/// kube-apiserver's resource matching for one request, over compiled groups.
fn resources_match(groups: &[CompiledGroup], a: &RequestAttributes<'_>) -> bool {
    for gr in groups {
        if let Some(g) = &gr.group {
            if **g != *a.api_group {
                continue;
            }
        }
        if gr.resources.is_empty() {
            return true;
        }
        if !gr.names.is_empty() && !gr.names.iter().any(|n| **n == *a.name) {
            continue;
        }
        for res in &gr.resources {
            if resource_pattern_matches(res, a.resource, a.subresource) {
                return true;
            }
        }
    }
    false
}

/// One resource pattern against a request's resource and subresource:
/// exact `resource[/subresource]`, `*`, `*/subresource`, `resource/*`
/// (which, like kube-apiserver's, also matches the bare resource).
pub(crate) fn resource_pattern_matches(res: &str, resource: &str, subresource: &str) -> bool {
    if res == "*" || equals_combined(res, resource, subresource) {
        return true;
    }
    if !subresource.is_empty() && res.strip_prefix("*/") == Some(subresource) {
        return true;
    }
    res.strip_suffix("/*") == Some(resource)
}
