//! Kubelets: lease renewals, node and pod status, the objects their pods
//! mount, and watches on them.

use super::req::{Body, Place, Req, Target, V::*};
use super::{req, Parts};
use crate::world::Cluster;
use crate::write::J;
use kaudit_event::Level;
use rand::Rng;

const LEASE: Req = Req::to(
    "update",
    Target::of("leases", "coordination.k8s.io")
        .ns(Lit("kube-node-lease"))
        .name(Node)
        .uid(Uid)
        .rv(),
)
.query(&[Lit("?timeout=10s")])
.ms(1.5, 18.0);

const NODE_STATUS: Req = Req::to("patch", Target::of("nodes", "").name(Node).sub("status"))
    .query(&[Lit("?timeout=10s")])
    .level(Level::Request)
    .body(Body::Request)
    .ms(3.0, 30.0);

const POD_STATUS: Req = Req::to(
    "patch",
    Target::of("pods", "").ns(Ns).name(Pod).sub("status"),
)
.level(Level::Request)
.body(Body::Request)
.ms(3.0, 25.0);

/// What a kubelet reads for a pod it runs.
const GETS: [Req; 3] = [
    Req::to("get", Target::of("pods", "").ns(Ns).name(Pod)).ms(0.8, 10.0),
    Req::to(
        "get",
        Target::of("configmaps", "")
            .ns(Ns)
            .name(Lit("kube-root-ca.crt")),
    )
    .ms(0.8, 10.0),
    Req::to(
        "get",
        Target::of("serviceaccounts", "")
            .ns(Ns)
            .name(Lit("default")),
    )
    .ms(0.8, 10.0),
];

/// What a kubelet watches for a pod it runs: one object, by field selector.
const WATCHES: [Req; 2] = [
    Req::informer(Target::of("configmaps", "").ns(Ns))
        .query(&[Lit("fieldSelector=metadata.name%3Dkube-root-ca.crt")]),
    Req::informer(Target::of("secrets", "").ns(Ns))
        .query(&[Lit("fieldSelector=metadata.name%3Dregistry-credentials")]),
];

pub(super) fn lease(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let n = p.rng.gen_range(0..c.nodes.len());
    let rv = c.next_rv(p.rng);
    let node = &c.nodes[n];
    let at = Place {
        node: &node.name,
        uid: &node.lease_uid,
        rv,
        ..Place::default()
    };
    p.send(&LEASE, &at, &c.actors[node.kubelet], now);
}

pub(super) fn node_status(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let n = p.rng.gen_range(0..c.nodes.len());
    let node = &c.nodes[n];
    {
        // The kubelet's heartbeat: a strategic-merge patch of the conditions,
        // now and then with the node's image list.
        let tf = &mut p.sched.tf;
        p.s.body.clear();
        let mut j = J::new(&mut p.s.body);
        j.o().ko("status");
        j.ka("$setElementOrder/addresses");
        for t in ["InternalIP", "InternalDNS", "Hostname"] {
            j.o().ks("type", t).c();
        }
        j.e();
        let conditions = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"];
        j.ka("$setElementOrder/conditions");
        for t in conditions {
            j.o().ks("type", t).c();
        }
        j.e();
        j.ka("conditions");
        for t in conditions {
            j.o().k("lastHeartbeatTime").t(tf, now).ks("type", t).c();
        }
        j.e();
        if p.rng.gen_bool(0.12) {
            j.ka("images");
            let count = p.rng.gen_range(15..45);
            for k in 0..count {
                let wl = &c.workloads[(k * 7 + n) % c.workloads.len()];
                j.o().ka("names");
                j.s(&wl.image);
                j.e()
                    .kn("sizeBytes", 20_000_000 + (k as i64) * 3_137_771)
                    .c();
            }
            j.e();
        }
        j.c().c();
    }
    let at = Place {
        node: &node.name,
        ..Place::default()
    };
    p.send(&NODE_STATUS, &at, &c.actors[node.kubelet], now);
}

pub(super) fn pod_status(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let w = p.rng.gen_range(0..c.workloads.len());
    let wl = &c.workloads[w];
    let i = p.rng.gen_range(0..wl.pods.len());
    let at = Place::pod(c, wl, i);
    {
        let tf = &mut p.sched.tf;
        let out = &mut p.s.body;
        out.clear();
        let mut j = J::new(out);
        j.o().ko("metadata").ks("uid", &wl.pod_uids[i]).c();
        j.ko("status");
        j.ka("$setElementOrder/conditions");
        for t in [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ] {
            j.o().ks("type", t).c();
        }
        j.e();
        let ready = p.rng.gen_bool(0.8);
        j.ka("conditions");
        for t in ["Ready", "ContainersReady"] {
            j.o().k("lastTransitionTime").t(tf, now - 1_000_000);
            if !ready {
                j.ks("message", "containers with unready status: [app]")
                    .ks("reason", "ContainersNotReady");
            }
            j.ks("status", if ready { "True" } else { "False" })
                .ks("type", t)
                .c();
        }
        j.e();
        j.ka("containerStatuses").o();
        j.ks("containerID", "containerd://");
        j.ks("image", &wl.image)
            .ks("imageID", "registry.example.com@sha256:4f0c3e2ab9e1d4b67e4f3a4c1a6b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c")
            .ko("lastState")
            .ko("terminated")
            .ks("containerID", "containerd://")
            .kn("exitCode", 137)
            .k("finishedAt")
            .t(tf, now - 60_000_000)
            .ks("reason", "OOMKilled")
            .k("startedAt")
            .t(tf, now - 3_600_000_000)
            .c()
            .c()
            .ks("name", "app")
            .kb("ready", ready)
            .kn("restartCount", i64::from(p.rng.gen_range(0..4u8)))
            .kb("started", true)
            .ko("state")
            .ko("running")
            .k("startedAt")
            .t(tf, now - 50_000_000)
            .c()
            .c();
        j.ka("volumeMounts")
            .o()
            .ks("mountPath", "/var/run/secrets/kubernetes.io/serviceaccount")
            .ks("name", "kube-api-access")
            .kb("readOnly", true)
            .ks("recursiveReadOnly", "Disabled")
            .c()
            .e();
        j.c().e();
        j.c().c();
    }
    let kubelet = c.nodes[wl.pod_nodes[i]].kubelet;
    p.send(&POD_STATUS, &at, &c.actors[kubelet], now);
}

pub(super) fn get(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let w = p.rng.gen_range(0..c.workloads.len());
    let wl = &c.workloads[w];
    let i = p.rng.gen_range(0..wl.pods.len());
    let row = &GETS[p.rng.gen_range(0..3i32) as usize];
    let kubelet = c.nodes[wl.pod_nodes[i]].kubelet;
    p.send(row, &Place::pod(c, wl, i), &c.actors[kubelet], now);
}

pub(super) fn watch(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let w = p.rng.gen_range(0..c.workloads.len());
    let wl = &c.workloads[w];
    let i = p.rng.gen_range(0..wl.pods.len());
    let row = &WATCHES[usize::from(!p.rng.gen_bool(0.5))];
    let secs = req::watch_timeout(p.rng);
    let at = Place {
        rv: c.rv(),
        ..Place::pod(c, wl, i)
    };
    let kubelet = c.nodes[wl.pod_nodes[i]].kubelet;
    p.watch(row, &at, &c.actors[kubelet], now, secs);
}
