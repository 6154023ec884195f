//! The trickle of failures in everyday traffic: failed authentication (401),
//! RBAC denials (403), a typo in `kubectl get` (404) and a lease update race
//! (409). Each writes its `responseStatus` into the scratch buffer first.

use super::req::{Auth, Place, Req, Stages, Target, V::*};
use super::Parts;
use crate::world::Cluster;
use crate::write::{failure_status, write_str};
use rand::Rng;

/// What clients with missing or bad credentials ask for (`"user":{}`,
/// 401, ResponseStarted only).
const UNAUTHENTICATED: [Req; 5] = [
    refused(Req::url(&[Lit("/")])),
    refused(Req::url(&[Lit("/version")])),
    refused(Req::to(
        "get",
        Target::of("secrets", "").ns(Lit("kube-system")),
    )),
    refused(Req::to("get", Target::of("pods", ""))),
    refused(Req::to(
        "get",
        Target::of("clusterrolebindings", "rbac.authorization.k8s.io"),
    )),
];

/// A request turned away before authorization ever ran.
const fn refused(row: Req) -> Req {
    row.failed()
        .auth(Auth::Absent)
        .stages(Stages::StartedOnly)
        .ms(0.05, 1.0)
}

/// Who is denied.
#[derive(Clone, Copy)]
enum Denied {
    /// A random namespace's `default` service account.
    DefaultSa,
    /// The person at this index of `Cluster::humans`.
    Human(usize),
}

/// RBAC denials: service accounts probing, people over-reaching.
const FORBIDDEN: [(Denied, Req); 4] = [
    (
        Denied::DefaultSa,
        forbid("list", Target::of("secrets", "").ns(Lit("kube-system"))),
    ),
    (
        Denied::Human(1),
        forbid(
            "delete",
            Target::of("pods", "")
                .ns(Lit("kube-system"))
                .name(Lit("coredns")),
        ),
    ),
    (
        Denied::Human(4),
        forbid(
            "create",
            Target::of("clusterrolebindings", "rbac.authorization.k8s.io"),
        )
        .query(&[Lit("?fieldManager=kubectl-create&fieldValidation=Strict")]),
    ),
    (Denied::DefaultSa, forbid("list", Target::of("nodes", ""))),
];

const fn forbid(verb: &'static str, target: Target) -> Req {
    Req::to(verb, target)
        .failed()
        .auth(Auth::Forbid)
        .ms(0.3, 3.0)
}

/// `kubectl get pod` with a ReplicaSet's name instead of a pod's.
const NOT_FOUND: Req = Req::to("get", Target::of("pods", "").ns(Ns).name(ReplicaSet))
    .failed()
    .stages(Stages::Received)
    .ms(0.5, 5.0);

/// kube-controller-manager renewing its lease from a stale revision.
const CONFLICT: Req = Req::to(
    "update",
    Target::of("leases", "coordination.k8s.io")
        .ns(Lit("kube-system"))
        .name(Lit("kube-controller-manager"))
        .uid(Uid)
        .rv(),
)
.query(&[Lit("?timeout=5s")])
.failed()
.ms(1.0, 10.0);

pub(super) fn unauthenticated(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let who = &c.actors[c.unauthenticated[p.rng.gen_range(0..c.unauthenticated.len())]];
    let row = &UNAUTHENTICATED[p.rng.gen_range(0..5i32) as usize];
    p.s.status.clear();
    p.s.status
        .extend_from_slice(b"{\"metadata\":{},\"message\":");
    let msg = if p.rng.gen_bool(0.5) {
        "Authentication failed, no credentials provided"
    } else {
        "Authentication failed, attempted: bearer"
    };
    write_str(&mut p.s.status, msg);
    p.s.status.extend_from_slice(b",\"code\":401}");
    p.send(row, &Place::default(), who, now);
}

/// Appends the apiserver's forbidden message for a request.
fn forbidden_message(
    out: &mut String,
    user: &str,
    verb: &str,
    resource: &str,
    group: &str,
    name: &str,
    ns: &str,
) {
    out.clear();
    out.push_str(resource);
    if !group.is_empty() {
        out.push('.');
        out.push_str(group);
    }
    if !name.is_empty() {
        out.push_str(" \"");
        out.push_str(name);
        out.push('"');
    }
    out.push_str(" is forbidden: User \"");
    out.push_str(user);
    out.push_str("\" cannot ");
    out.push_str(verb);
    out.push_str(" resource \"");
    out.push_str(resource);
    out.push_str("\" in API group \"");
    out.push_str(group);
    if ns.is_empty() {
        out.push_str("\" at the cluster scope");
    } else {
        out.push_str("\" in the namespace \"");
        out.push_str(ns);
        out.push('"');
    }
}

pub(super) fn forbidden(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let (denied, row) = &FORBIDDEN[p.rng.gen_range(0..4i32) as usize];
    let who = match *denied {
        Denied::DefaultSa => c.default_sa[p.rng.gen_range(0..c.default_sa.len())],
        Denied::Human(h) => c.humans[h],
    };
    let actor = &c.actors[who];
    let t = row.target.expect("forbidden rows name an object");
    // Their objects are fixed, so the default place fills them in.
    let obj = t.obj(&Place::default());
    forbidden_message(
        &mut p.s.msg,
        &actor.username,
        row.verb,
        t.resource,
        t.group,
        obj.name,
        obj.namespace,
    );
    p.s.status.clear();
    failure_status(
        &mut p.s.status,
        403,
        "Forbidden",
        &p.s.msg,
        Some((obj.name, t.group, t.resource)),
    );
    p.send(row, &Place::default(), actor, now);
}

pub(super) fn not_found_or_conflict(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let w = p.rng.gen_range(0..c.workloads.len());
    let wl = &c.workloads[w];
    p.s.status.clear();
    if p.rng.gen_bool(0.5) {
        let who = &c.actors[c.humans[p.rng.gen_range(0..c.humans.len())]];
        let name = &wl.replicaset;
        p.s.msg.clear();
        p.s.msg.push_str("pods \"");
        p.s.msg.push_str(name);
        p.s.msg.push_str("\" not found");
        failure_status(
            &mut p.s.status,
            404,
            "NotFound",
            &p.s.msg,
            Some((name, "", "pods")),
        );
        p.send(&NOT_FOUND, &Place::workload(c, wl), who, now);
    } else {
        failure_status(
            &mut p.s.status,
            409,
            "Conflict",
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"kube-controller-manager\": the object has been modified; please apply your changes to the latest version and try again",
            Some(("kube-controller-manager", "coordination.k8s.io", "leases")),
        );
        let at = Place {
            uid: &c.kcm_lease_uid,
            rv: c.resource_version.saturating_sub(50),
            ..Place::default()
        };
        p.send(&CONFLICT, &at, &c.actors[c.kcm], now);
    }
}
