//! The control plane's own traffic: leader election, kube-controller-manager's
//! controllers reconciling workloads, and the scheduler binding pods.

use super::req::{Body, Place, Req, Target, V::*};
use super::{req, Parts};
use crate::bodies::{self, PodSpec, Stored};
use crate::world::Cluster;
use kaudit_event::Level;
use rand::Rng;

/// The collections informers list and watch cluster-wide.
pub(super) const WATCHED: [Target; 9] = [
    Target::of("pods", ""),
    Target::of("nodes", ""),
    Target::of("services", ""),
    Target::of("replicasets", "apps"),
    Target::of("deployments", "apps"),
    Target::of("jobs", "batch"),
    Target::of("endpointslices", "discovery.k8s.io"),
    Target::of("clusterroles", "rbac.authorization.k8s.io"),
    Target::of("ingresses", "networking.k8s.io"),
];

/// Leader election of kube-scheduler and kube-controller-manager: renewals,
/// and reads by the standby.
const LEADER_LEASE: Target = Target::of("leases", "coordination.k8s.io")
    .ns(Lit("kube-system"))
    .name(Name);
const LEADER_RENEW: Req = Req::to("update", LEADER_LEASE.uid(Uid).rv())
    .query(&[Lit("?timeout=5s")])
    .ms(1.0, 15.0);
const LEADER_GET: Req = Req::to("get", LEADER_LEASE)
    .query(&[Lit("?timeout=5s")])
    .ms(1.0, 15.0);

/// Status and object writes of the workload controllers, by controller.
const UPDATES: [(&str, Req); 3] = [
    (
        "replicaset-controller",
        Req::to(
            "update",
            Target::of("replicasets", "apps")
                .ns(Ns)
                .name(ReplicaSet)
                .uid(Uid)
                .rv()
                .sub("status"),
        )
        .level(Level::Request)
        .body(Body::Request)
        .ms(3.0, 40.0),
    ),
    (
        "deployment-controller",
        Req::to(
            "update",
            Target::of("deployments", "apps")
                .ns(Ns)
                .name(App)
                .uid(Uid)
                .rv()
                .sub("status"),
        )
        .level(Level::Request)
        .body(Body::Request)
        .ms(3.0, 40.0),
    ),
    (
        "endpointslice-controller",
        Req::to(
            "update",
            Target::of("endpointslices", "discovery.k8s.io")
                .ns(Ns)
                .name(Name)
                .uid(Uid)
                .rv(),
        )
        .level(Level::Request)
        .body(Body::Request)
        .ms(3.0, 40.0),
    ),
];

/// A controller reading what it owns: the ReplicaSet, or its pods by label.
const READS: [Req; 2] = [
    Req::to(
        "get",
        Target::of("replicasets", "apps").ns(Ns).name(ReplicaSet),
    )
    .ms(1.0, 40.0),
    Req::to("list", Target::of("pods", "").ns(Ns))
        .query(&[Lit("?labelSelector=app.kubernetes.io%2Fname%3D"), App])
        .ms(1.0, 40.0),
];

const BIND: Req = Req::to(
    "create",
    Target::of("pods", "")
        .ns(Ns)
        .name(Pod)
        .uid(PodUid)
        .sub("binding"),
)
.code(201)
.level(Level::Request)
.body(Body::Request)
.ms(2.0, 20.0);

const POD_CREATE: Req = Req::to("create", Target::of("pods", "").ns(Ns))
    .code(201)
    .level(Level::RequestResponse)
    .body(Body::Both)
    .psa("restricted:latest")
    .ms(5.0, 60.0);

const POD_DELETE: Req = Req::to("delete", Target::of("pods", "").ns(Ns).name(Pod)).ms(3.0, 30.0);

pub(super) fn leader_lease(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let (name, uid, who) = if p.rng.gen_bool(0.4) {
        ("kube-scheduler", &c.scheduler_lease_uid, c.scheduler)
    } else {
        ("kube-controller-manager", &c.kcm_lease_uid, c.kcm)
    };
    let get = p.rng.gen_bool(0.3);
    let rv = c.resource_version + 1;
    let at = Place {
        name,
        uid,
        rv,
        ..Place::default()
    };
    let row = if get { &LEADER_GET } else { &LEADER_RENEW };
    p.send(row, &at, &c.actors[who], now);
    if !get {
        c.resource_version = rv;
    }
}

pub(super) fn update(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let w = p.rng.gen_range(0..c.workloads.len());
    let rv = c.next_rv(p.rng);
    let wl = &c.workloads[w];
    let mut at = Place {
        uid: &wl.uid,
        rv,
        ..Place::workload(c, wl)
    };
    let created = now - 86_400_000_000 * i64::from(p.rng.gen_range(1..30u8));
    let stored = Stored {
        uid: &wl.uid,
        resource_version: rv,
        created,
        manager: "kube-controller-manager",
    };
    let tf = &mut p.sched.tf;
    let body = &mut p.s.body;
    body.clear();
    let k = p.rng.gen_range(0..3i32) as usize;
    let replicas = wl.pods.len() as i64;
    match k {
        0 => bodies::replicaset_status(
            body,
            tf,
            at.ns,
            &wl.replicaset,
            &wl.name,
            &wl.image,
            replicas,
            &stored,
        ),
        1 => bodies::deployment(
            body,
            tf,
            at.ns,
            &wl.name,
            &wl.image,
            wl.port,
            replicas,
            Some(&stored),
        ),
        _ => {
            let node_names: Vec<&str> = wl
                .pod_nodes
                .iter()
                .map(|&n| c.nodes[n].name.as_str())
                .collect();
            // The slice is named after the Service with a random suffix.
            at.name = &wl.replicaset[..wl.replicaset.len().saturating_sub(5)];
            bodies::endpoint_slice(
                body,
                tf,
                at.ns,
                &wl.name,
                at.name,
                &wl.pods,
                &node_names,
                wl.port,
                &stored,
            );
        }
    }
    let (controller, row) = &UPDATES[k];
    let actor = c
        .controllers
        .iter()
        .find(|(_, n)| n == controller)
        .map_or(c.kcm, |(a, _)| *a);
    p.send(row, &at, &c.actors[actor], now);
}

pub(super) fn read(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let (actor, _) = c.controllers[p.rng.gen_range(0..c.controllers.len())];
    let w = p.rng.gen_range(0..c.workloads.len());
    let row = &READS[usize::from(!p.rng.gen_bool(0.5))];
    p.send(
        row,
        &Place::workload(c, &c.workloads[w]),
        &c.actors[actor],
        now,
    );
}

/// An informer of kube-controller-manager (as itself or as one of its
/// controllers) re-establishing its watch.
pub(super) fn watch(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let row = Req::informer(WATCHED[p.rng.gen_range(0..WATCHED.len())]);
    let secs = req::watch_timeout(p.rng);
    let who = if p.rng.gen_bool(0.5) {
        c.kcm
    } else {
        c.controllers[p.rng.gen_range(0..c.controllers.len())].0
    };
    let at = Place {
        rv: c.rv(),
        ..Place::default()
    };
    p.watch(&row, &at, &c.actors[who], now, secs);
}

pub(super) fn scheduler_bind(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let w = p.rng.gen_range(0..c.workloads.len());
    let wl = &c.workloads[w];
    let i = p.rng.gen_range(0..wl.pods.len());
    let at = Place::pod(c, wl, i);
    p.s.body.clear();
    {
        let mut j = crate::write::J::new(&mut p.s.body);
        j.o().ks("kind", "Binding").ks("apiVersion", "v1");
        j.ko("metadata")
            .ks("name", at.pod)
            .ks("namespace", at.ns)
            .ks("uid", at.pod_uid)
            .c();
        j.ko("target").ks("kind", "Node").ks("name", at.node).c();
        j.c();
    }
    p.send(&BIND, &at, &c.actors[c.scheduler], now);
}

/// The ReplicaSet controller creating a pod (the restricted Pod Security
/// level is enforced on application namespaces).
pub(super) fn pod_create(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let w = p.rng.gen_range(0..c.workloads.len());
    let rv = c.next_rv(p.rng);
    let wl = &c.workloads[w];
    let i = p.rng.gen_range(0..wl.pods.len());
    let at = Place::pod(c, wl, i);
    let token = format!("kube-api-access-{}", crate::world::random_suffix(p.rng, 5));
    let spec = PodSpec {
        namespace: at.ns,
        name: at.pod,
        app: &wl.name,
        template_hash: &wl.replicaset[wl.replicaset.len().saturating_sub(10)..],
        owner: Some((&wl.replicaset, &wl.uid)),
        image: &wl.image,
        port: wl.port,
        service_account: "default",
        token_volume: &token,
        privileged: false,
        host_root: false,
        sidecar: p.rng.gen_bool(0.3),
    };
    let stored = Stored {
        uid: at.pod_uid,
        resource_version: rv,
        created: now,
        manager: "kube-controller-manager",
    };
    p.s.body.clear();
    p.s.resp.clear();
    bodies::pod(&mut p.s.body, &mut p.sched.tf, &spec, None);
    bodies::pod(&mut p.s.resp, &mut p.sched.tf, &spec, Some(&stored));
    let replicaset_controller = c.controllers[0].0;
    p.send(&POD_CREATE, &at, &c.actors[replicaset_controller], now);
}

/// The ReplicaSet controller scaling down, or the garbage collector.
pub(super) fn pod_delete(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let w = p.rng.gen_range(0..c.workloads.len());
    let wl = &c.workloads[w];
    let i = p.rng.gen_range(0..wl.pods.len());
    let actor = if p.rng.gen_bool(0.5) {
        c.controllers[0].0
    } else {
        c.controllers[7].0
    };
    p.send(&POD_DELETE, &Place::pod(c, wl, i), &c.actors[actor], now);
}
