//! The verbs and shapes a cluster shows rarely but does show: proxying
//! through the apiserver, authorization checks (SubjectAccessReviews from
//! kubelets and kube-rbac-proxy, `kubectl auth can-i`), impersonation
//! (`kubectl --as`), and the namespace controller's sweep after a namespace
//! is deleted, the only everyday source of `deletecollection`.
//!
//! `escalate`, `bind` and `impersonate` are RBAC verbs, not request verbs:
//! they show in audit logs as what an access review asks about, and
//! impersonation as `impersonatedUser` on ordinary requests.

use super::req::{Auth, Body, Place, Req, Stages, Target, V::*};
use super::Parts;
use crate::world::{Cluster, HUMANS};
use crate::write::J;
use kaudit_event::Level;
use rand::Rng;

/// Prometheus's classic `kubernetes-nodes-cadvisor` job: scraping each
/// kubelet through the apiserver's node proxy.
const NODE_PROXY: Req = Req::to("get", Target::of("nodes", "").name(Node).sub("proxy"))
    .path(&[Lit("/api/v1/nodes/"), Node, Lit("/proxy/metrics/cadvisor")])
    .ms(20.0, 400.0);
/// Someone behind `kubectl proxy` looking at Grafana through its Service.
const SERVICE_PROXY: Req = Req::to(
    "get",
    Target::of("services", "")
        .ns(Lit("monitoring"))
        .name(Lit("http:grafana:3000"))
        .sub("proxy"),
)
.path(&[Lit(
    "/api/v1/namespaces/monitoring/services/http:grafana:3000/proxy/api/health",
)])
.stages(Stages::Received)
.ms(5.0, 200.0);
/// Someone reading a pod's metrics endpoint through the pod proxy.
const POD_PROXY: Req = Req::to("get", Target::of("pods", "").ns(Ns).name(Pod).sub("proxy"))
    .path(&[
        Lit("/api/v1/namespaces/"),
        Ns,
        Lit("/pods/"),
        Pod,
        Lit("/proxy/metrics"),
    ])
    .stages(Stages::Received)
    .ms(5.0, 200.0);
/// An old script on the pre-1.10 `/api/v1/proxy/...` path: the apiserver
/// still names the verb `proxy` (and authorizes it) but serves nothing there.
const LEGACY_PROXY: Req = Req::to("proxy", Target::of("nodes", "").name(Node))
    .path(&[Lit("/api/v1/proxy/nodes/"), Node, Lit("/metrics")])
    .code(404)
    .stages(Stages::Received)
    .ms(0.3, 3.0);

/// A SubjectAccessReview: a kubelet or kube-rbac-proxy asking whether the
/// caller it serves may do something.
const SAR: Req = Req::to(
    "create",
    Target::of("subjectaccessreviews", "authorization.k8s.io"),
)
.code(201)
.level(Level::RequestResponse)
.body(Body::Both)
.ms(0.5, 6.0);
/// A SelfSubjectAccessReview (`kubectl auth can-i`); every authenticated
/// user may send one.
const SSAR: Req = Req::to(
    "create",
    Target::of("selfsubjectaccessreviews", "authorization.k8s.io"),
)
.code(201)
.level(Level::RequestResponse)
.body(Body::Both)
.auth(Auth::BasicUser)
.stages(Stages::Received)
.ms(0.5, 6.0);

/// What people ask `kubectl auth can-i`: (verb, group, resource, namespaced).
const CAN_I: [(&str, &str, &str, bool); 8] = [
    ("get", "", "pods", true),
    ("create", "apps", "deployments", true),
    ("delete", "", "secrets", true),
    ("list", "", "secrets", true),
    ("escalate", "rbac.authorization.k8s.io", "roles", true),
    ("bind", "rbac.authorization.k8s.io", "clusterroles", false),
    ("impersonate", "", "serviceaccounts", true),
    ("impersonate", "", "users", false),
];

/// What an impersonating person looks at.
const IMPERSONATED: [Req; 2] = [
    Req::to("list", Target::of("pods", "").ns(Ns))
        .query(&[Lit("?limit=500")])
        .stages(Stages::Received)
        .ms(3.0, 80.0),
    Req::to("get", Target::of("deployments", "apps").ns(Ns).name(App))
        .stages(Stages::Received)
        .ms(1.0, 10.0),
];

/// Proxy requests: nodes/proxy from monitoring, services/proxy and
/// pods/proxy from people, and now and then the legacy `proxy` verb.
pub(super) fn proxy(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let roll = p.rng.gen_range(0..20u32);
    let n = p.rng.gen_range(0..c.nodes.len());
    let w = p.rng.gen_range(0..c.workloads.len());
    let wl = &c.workloads[w];
    let i = p.rng.gen_range(0..wl.pods.len());
    let h = c.humans[p.rng.gen_range(0..c.humans.len())];
    let at = Place {
        node: &c.nodes[n].name,
        ..Place::pod(c, wl, i)
    };
    match roll {
        0..=11 => p.send(&NODE_PROXY, &at, &c.actors[c.prometheus], now),
        12..=15 => p.send(&SERVICE_PROXY, &at, &c.actors[h], now),
        16..=18 => p.send(&POD_PROXY, &at, &c.actors[h], now),
        // The cluster admin's kubeconfig in an old cron job.
        _ => {
            let admin = c.humans[c.humans.len() - 1];
            p.send(&LEGACY_PROXY, &at, &c.actors[admin], now);
        }
    }
}

/// What an access review asks about.
#[derive(Clone, Copy)]
enum Attrs<'a> {
    Resource {
        namespace: &'a str,
        verb: &'a str,
        group: &'a str,
        version: &'a str,
        resource: &'a str,
        subresource: &'a str,
        name: &'a str,
    },
    NonResource {
        path: &'a str,
        verb: &'a str,
    },
}

/// Writes an access review as sent (`answer: None`, Go's zero status) or
/// as stored with the answer (allowed, reason); `subject` is the user a
/// SubjectAccessReview asks about (a self review has none).
fn review(
    out: &mut Vec<u8>,
    kind: &str,
    attrs: Attrs<'_>,
    subject: Option<(&str, &[&str])>,
    answer: Option<(bool, &[u8])>,
) {
    out.clear();
    let mut j = J::new(out);
    j.o()
        .ks("kind", kind)
        .ks("apiVersion", "authorization.k8s.io/v1");
    j.ko("metadata").k("creationTimestamp").raw(b"null").c();
    j.ko("spec");
    match attrs {
        Attrs::Resource {
            namespace,
            verb,
            group,
            version,
            resource,
            subresource,
            name,
        } => {
            j.ko("resourceAttributes");
            for (k, v) in [
                ("namespace", namespace),
                ("verb", verb),
                ("group", group),
                ("version", version),
                ("resource", resource),
                ("subresource", subresource),
                ("name", name),
            ] {
                if !v.is_empty() {
                    j.ks(k, v);
                }
            }
            j.c();
        }
        Attrs::NonResource { path, verb } => {
            j.ko("nonResourceAttributes")
                .ks("path", path)
                .ks("verb", verb)
                .c();
        }
    }
    if let Some((user, groups)) = subject {
        j.ks("user", user).ka("groups");
        for g in groups {
            j.s(g);
        }
        j.e();
    }
    j.c();
    j.ko("status");
    match answer {
        None => {
            j.kb("allowed", false);
        }
        Some((allowed, reason)) => {
            j.kb("allowed", allowed);
            if reason.len() > 2 {
                j.k("reason").raw(reason);
            }
        }
    }
    j.c().c();
}

/// Delegated authorization: a kubelet asking whether Prometheus may scrape
/// its metrics, or kube-rbac-proxy in front of kube-state-metrics asking
/// the same about `/metrics`.
pub(super) fn access_review(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let prometheus = &c.actors[c.prometheus];
    const PROMETHEUS_GROUPS: [&str; 3] = [
        "system:serviceaccounts",
        "system:serviceaccounts:monitoring",
        "system:authenticated",
    ];
    let subject = Some((prometheus.username.as_str(), &PROMETHEUS_GROUPS[..]));
    let (who, attrs) = if p.rng.gen_bool(0.6) {
        let node = &c.nodes[p.rng.gen_range(0..c.nodes.len())];
        let attrs = Attrs::Resource {
            namespace: "",
            verb: "get",
            group: "",
            version: "v1",
            resource: "nodes",
            subresource: "metrics",
            name: &node.name,
        };
        (node.kubelet, attrs)
    } else {
        let attrs = Attrs::NonResource {
            path: "/metrics",
            verb: "get",
        };
        // kube-state-metrics, the third operator.
        (c.operators[c.operators.len() - 1], attrs)
    };
    review(&mut p.s.body, "SubjectAccessReview", attrs, subject, None);
    review(
        &mut p.s.resp,
        "SubjectAccessReview",
        attrs,
        subject,
        Some((true, &prometheus.reason)),
    );
    p.send(&SAR, &Place::default(), &c.actors[who], now);
}

/// Whether a person's ClusterRole answers yes to `verb` on `resource`
/// (`edit` may impersonate service accounts; only `cluster-admin` may
/// escalate, bind or impersonate users; `view` reads no secrets).
fn role_allows(role: &str, verb: &str, resource: &str) -> bool {
    match role {
        "cluster-admin" => true,
        "admin" | "edit" => match verb {
            "escalate" | "bind" => false,
            "impersonate" => resource == "serviceaccounts",
            _ => true,
        },
        _ => matches!(verb, "get" | "list") && resource != "secrets",
    }
}

/// `kubectl auth can-i`: a SelfSubjectAccessReview, some of them about the
/// RBAC verbs `escalate`, `bind` and `impersonate`.
pub(super) fn can_i(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let k = p.rng.gen_range(0..c.humans.len());
    let w = p.rng.gen_range(0..c.workloads.len());
    let (verb, group, resource, namespaced) = CAN_I[p.rng.gen_range(0..CAN_I.len())];
    let role = HUMANS.get(k).map_or("cluster-admin", |h| h.2);
    let who = &c.actors[c.humans[k]];
    let at = Place::workload(c, &c.workloads[w]);
    let attrs = Attrs::Resource {
        namespace: if namespaced { at.ns } else { "" },
        verb,
        group,
        version: "",
        resource,
        subresource: "",
        name: "",
    };
    let allowed = role_allows(role, verb, resource);
    review(&mut p.s.body, "SelfSubjectAccessReview", attrs, None, None);
    let reason: &[u8] = if allowed { &who.reason } else { b"" };
    review(
        &mut p.s.resp,
        "SelfSubjectAccessReview",
        attrs,
        None,
        Some((allowed, reason)),
    );
    p.send(&SSAR, &Place::default(), who, now);
}

/// `kubectl --as=...`: a person checking what someone else sees.
pub(super) fn impersonated(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let who = c.impersonators[p.rng.gen_range(0..c.impersonators.len())];
    let w = p.rng.gen_range(0..c.workloads.len());
    let row = &IMPERSONATED[p.rng.gen_range(0..IMPERSONATED.len())];
    p.send(
        row,
        &Place::workload(c, &c.workloads[w]),
        &c.actors[who],
        now,
    );
}

/// The objects in a namespace: `objectRef` of the namespace itself (the
/// apiserver records a namespace's name as its namespace too).
const NAMESPACE: Target = Target::of("namespaces", "").ns(Ns).name(Ns);
const NAMESPACE_PATH: &[super::req::V] = &[Lit("/api/v1/namespaces/"), Ns];

/// Argo CD pruning a pull request's preview environment.
const DELETE_NAMESPACE: Req = Req::to("delete", NAMESPACE)
    .path(NAMESPACE_PATH)
    .ms(5.0, 40.0);
const GET_NAMESPACE: Req = Req::to("get", NAMESPACE).path(NAMESPACE_PATH).ms(0.5, 5.0);
/// The controller recording its progress in the namespace's conditions.
const NAMESPACE_STATUS: Req = Req::to("update", NAMESPACE.uid(Uid).rv().sub("status"))
    .path(&[Lit("/api/v1/namespaces/"), Ns, Lit("/status")])
    .ms(2.0, 15.0);
/// The controller removing the `kubernetes` finalizer, after which the
/// apiserver removes the namespace.
const FINALIZE_NAMESPACE: Req = Req::to("update", NAMESPACE.uid(Uid).rv().sub("finalize"))
    .path(&[Lit("/api/v1/namespaces/"), Ns, Lit("/finalize")])
    .ms(2.0, 20.0);

/// Every namespaced resource type that supports `deletecollection`, as the
/// namespace controller finds them by discovery (the cluster's CRDs included).
pub(crate) const NAMESPACED_RESOURCES: [(&str, &str); 27] = [
    ("configmaps", ""),
    ("endpoints", ""),
    ("events", ""),
    ("limitranges", ""),
    ("persistentvolumeclaims", ""),
    ("pods", ""),
    ("podtemplates", ""),
    ("replicationcontrollers", ""),
    ("resourcequotas", ""),
    ("secrets", ""),
    ("serviceaccounts", ""),
    ("services", ""),
    ("controllerrevisions", "apps"),
    ("daemonsets", "apps"),
    ("deployments", "apps"),
    ("replicasets", "apps"),
    ("statefulsets", "apps"),
    ("cronjobs", "batch"),
    ("jobs", "batch"),
    ("leases", "coordination.k8s.io"),
    ("endpointslices", "discovery.k8s.io"),
    ("events", "events.k8s.io"),
    ("ingresses", "networking.k8s.io"),
    ("networkpolicies", "networking.k8s.io"),
    ("poddisruptionbudgets", "policy"),
    ("rolebindings", "rbac.authorization.k8s.io"),
    ("roles", "rbac.authorization.k8s.io"),
];

/// A namespace deleted, and the namespace controller emptying it: one
/// `deletecollection` (then a `list` to see what is left) per resource
/// type, its status, and once the pods' grace period is over, the
/// finalizer removed.
pub(crate) fn namespace_deletion(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let mut name = std::mem::take(&mut p.s.msg);
    name.clear();
    name.push_str("preview-pr-");
    name.push_str(&c.preview_pr.to_string());
    c.preview_pr += 1 + p.rng.gen_range(0..6u32);
    let rv = c.next_rv(p.rng);
    let finalize_rv = c.next_rv(p.rng);
    let uid = crate::world::uuid_string(p.rng);
    let argocd = c.ci[0];
    let controller = c
        .controllers
        .iter()
        .find(|(_, n)| *n == "namespace-controller")
        .map_or(c.kcm, |(a, _)| *a);
    let at = Place {
        ns: &name,
        uid: &uid,
        rv,
        ..Place::default()
    };
    let who = &c.actors[controller];
    let mut t = p.send_then(&DELETE_NAMESPACE, &at, &c.actors[argocd], now);
    // The controller's queue picks the namespace up within milliseconds.
    t += p.rng.gen_range(1_000..20_000);
    t = p.send_then(&GET_NAMESPACE, &at, who, t);
    for (resource, group) in NAMESPACED_RESOURCES {
        let target = Target::of(resource, group).ns(Ns);
        let ms = if resource == "pods" {
            (10.0, 200.0)
        } else {
            (2.0, 40.0)
        };
        let delete = Req::to("deletecollection", target).ms(ms.0, ms.1);
        t += p.rng.gen_range(100..800);
        t = p.send_then(&delete, &at, who, t) + 200;
        let list = Req::to("list", target).ms(1.0, 10.0);
        t += p.rng.gen_range(100..800);
        t = p.send_then(&list, &at, who, t);
    }
    t = p.send_then(&NAMESPACE_STATUS, &at, who, t + 500);
    // Pods terminate gracefully; the controller comes back when they are gone.
    t += p.rng.gen_range(5_000_000..30_000_000);
    t = p.send_then(&GET_NAMESPACE, &at, who, t);
    let pods = Req::to("list", Target::of("pods", "").ns(Ns)).ms(1.0, 10.0);
    t += p.rng.gen_range(100..800);
    t = p.send_then(&pods, &at, who, t);
    let finalize_at = Place {
        rv: finalize_rv,
        ..at
    };
    p.send_then(&FINALIZE_NAMESPACE, &finalize_at, who, t + 500);
    p.s.msg = name;
}
