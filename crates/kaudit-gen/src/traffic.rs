//! The everyday traffic of a cluster, one request at a time, weighted like a
//! real cluster's audit log: mostly kubelets and controllers, then probes,
//! operators, people and CI, and a trickle of failed and denied requests.

use crate::bodies::{self, PodSpec, Stored};
use crate::world::{uuid4, Actor, Cluster};
use crate::write::write_str;
use crate::write::{failure_status, push_u64, Authz, Line, ObjRef, Status};
use crate::{Sched, MAX_PENDING, NO_TAG};
use kaudit_event::{Level, Stage};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Reusable buffers, so that steady-state generation does not allocate.
pub(crate) struct Scratch {
    pub uri: Vec<u8>,
    pub body: Vec<u8>,
    pub resp: Vec<u8>,
    pub status: Vec<u8>,
    pub msg: String,
    /// Text for large ConfigMaps (dashboards, configs), already escaped as
    /// JSON string content, sliced per event at line boundaries.
    pub text: Vec<u8>,
    /// Offset in `text` where each line starts (plus the end).
    pub text_lines: Vec<usize>,
    pub discovery_reason: Vec<u8>,
}

impl Scratch {
    pub(crate) fn new(rng: &mut ChaCha8Rng) -> Scratch {
        let mut text = Vec::with_capacity(128 * 1024);
        let mut text_lines = vec![0];
        let metrics = [
            "http_requests_total",
            "http_request_duration_seconds_bucket",
            "container_memory_working_set_bytes",
            "kube_pod_container_status_restarts_total",
            "grpc_server_handled_total",
        ];
        let mut panel = 1;
        while text.len() < 110_000 {
            let m = metrics[rng.gen_range(0..metrics.len())];
            let q = rng.gen_range(50..100);
            let line = format!(
                "{{\"id\":{panel},\"type\":\"timeseries\",\"title\":\"{m} p{q}\",\"datasource\":{{\"type\":\"prometheus\",\"uid\":\"prometheus\"}},\"targets\":[{{\"expr\":\"histogram_quantile(0.{q}, sum(rate({m}{{namespace=~\\\"$namespace\\\",code!~\\\"2..\\\"}}[5m])) by (le, pod)) > 0 && on() vector(1)\",\"legendFormat\":\"{{{{pod}}}}\",\"refId\":\"A\"}}],\"gridPos\":{{\"h\":8,\"w\":12,\"x\":{},\"y\":{}}}}},\n",
                (panel % 2) * 12,
                panel * 8
            );
            // Escaping is per character, so escaped whole lines concatenate
            // to the escaping of the concatenated lines.
            let mut quoted = Vec::with_capacity(line.len() * 2);
            write_str(&mut quoted, &line);
            text.extend_from_slice(&quoted[1..quoted.len() - 1]);
            text_lines.push(text.len());
            panel += 1;
        }
        let mut discovery_reason = Vec::new();
        write_str(
            &mut discovery_reason,
            &crate::world::rbac_reason(
                "system:discovery",
                "system:discovery",
                crate::world::Subject::Group("system:authenticated"),
            ),
        );
        Scratch {
            uri: Vec::with_capacity(512),
            body: Vec::with_capacity(16 * 1024),
            resp: Vec::with_capacity(16 * 1024),
            status: Vec::with_capacity(512),
            msg: String::with_capacity(256),
            text,
            text_lines,
            discovery_reason,
        }
    }
}

impl Scratch {
    /// The range of `text` holding whole lines, about `len` bytes.
    pub(crate) fn text_range(&self, rng: &mut ChaCha8Rng, len: usize) -> std::ops::Range<usize> {
        let lines = self.text_lines.len() - 1;
        let first = rng.gen_range(0..lines);
        let start = self.text_lines[first];
        let mut end = first + 1;
        while end < lines && self.text_lines[end] - start < len {
            end += 1;
        }
        start..self.text_lines[end]
    }
}

/// What generation needs besides the cluster: randomness, the queue, buffers.
pub(crate) struct Parts<'a> {
    pub rng: &'a mut ChaCha8Rng,
    pub sched: &'a mut Sched,
    pub s: &'a mut Scratch,
    pub cluster_index: u16,
}

/// Which stages a request is recorded at.
#[derive(Clone, Copy)]
pub(crate) enum Shape {
    /// ResponseComplete only (the usual `omitStages: [RequestReceived]`).
    Complete,
    /// RequestReceived, then ResponseComplete.
    Received,
    /// ResponseStarted after the given micros, then ResponseComplete (watch, exec).
    Long(i64),
    /// ResponseStarted only (failed authentication).
    StartedOnly,
}

/// One simulated request.
pub(crate) struct Call<'a> {
    pub level: Level,
    pub id: [u8; 36],
    pub uri: &'a [u8],
    pub verb: &'a str,
    pub who: &'a Actor,
    pub obj: Option<ObjRef<'a>>,
    pub status: Status<'a>,
    pub req: Option<&'a [u8]>,
    pub resp: Option<&'a [u8]>,
    pub received: i64,
    pub latency: i64,
    pub authz: Authz<'a>,
    pub psa: Option<&'a str>,
    pub shape: Shape,
}

/// Writes the events of one request into the queue; the first one carries `tag`.
pub(crate) fn emit(sched: &mut Sched, cluster: u16, tag: u32, c: &Call<'_>) {
    let line = Line {
        level: c.level,
        stage: Stage::ResponseComplete,
        audit_id: &c.id,
        uri: c.uri,
        verb: c.verb,
        identity: &c.who.identity,
        object: c.obj.as_ref(),
        status: Some(c.status),
        request_object: if c.level >= Level::Request {
            c.req
        } else {
            None
        },
        response_object: if c.level >= Level::RequestResponse {
            c.resp
        } else {
            None
        },
        received: c.received,
        at: c.received + c.latency,
        authz: c.authz,
        pod_security: c.psa,
    };
    match c.shape {
        Shape::Complete => sched.push(cluster, tag, &line),
        Shape::StartedOnly => sched.push(
            cluster,
            tag,
            &Line {
                stage: Stage::ResponseStarted,
                ..line
            },
        ),
        Shape::Received => {
            sched.push(
                cluster,
                tag,
                &Line {
                    stage: Stage::RequestReceived,
                    status: None,
                    request_object: None,
                    response_object: None,
                    at: c.received,
                    authz: Authz::Absent,
                    pod_security: None,
                    ..line
                },
            );
            sched.push(cluster, NO_TAG, &line);
        }
        Shape::Long(started) => {
            let mut end = line.at.max(c.received + started);
            if sched.pending() > MAX_PENDING {
                end = end.min(c.received + started + 1_000_000);
            }
            sched.push(
                cluster,
                tag,
                &Line {
                    stage: Stage::ResponseStarted,
                    response_object: None,
                    at: c.received + started,
                    ..line
                },
            );
            sched.push(cluster, NO_TAG, &Line { at: end, ..line });
        }
    }
}

/// A latency in microseconds between `lo` and `hi` milliseconds, skewed low
/// (most requests are fast, a few are slow).
pub(crate) fn latency_ms(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> i64 {
    let u: f64 = rng.gen();
    ((lo + (hi - lo) * u * u * u) * 1000.0) as i64
}

/// Appends Go's `time.Duration` string of whole seconds (`7m42s`, `45s`).
fn push_go_duration(out: &mut Vec<u8>, secs: u64) {
    if secs >= 60 {
        push_u64(out, secs / 60);
        out.push(b'm');
    }
    push_u64(out, secs % 60);
    out.push(b's');
}

/// Appends the query of an informer's watch request; returns its timeout in seconds.
pub(crate) fn push_watch_query(
    rng: &mut ChaCha8Rng,
    out: &mut Vec<u8>,
    selector: &str,
    rv: u64,
) -> u64 {
    let secs = rng.gen_range(300..600);
    out.extend_from_slice(b"?allowWatchBookmarks=true");
    if !selector.is_empty() {
        out.push(b'&');
        out.extend_from_slice(selector.as_bytes());
    }
    out.extend_from_slice(b"&resourceVersion=");
    push_u64(out, rv);
    out.extend_from_slice(b"&timeout=");
    push_go_duration(out, secs);
    out.extend_from_slice(b"&timeoutSeconds=");
    push_u64(out, secs);
    out.extend_from_slice(b"&watch=true");
    secs
}

fn cat(out: &mut Vec<u8>, parts: &[&str]) {
    out.clear();
    for p in parts {
        out.extend_from_slice(p.as_bytes());
    }
}

#[derive(Clone, Copy)]
enum Kind {
    KubeletLease,
    KubeletNodeStatus,
    KubeletPodStatus,
    KubeletGet,
    KubeletWatch,
    LeaderLease,
    ControllerUpdate,
    ControllerRead,
    ControllerWatch,
    SchedulerBind,
    PodCreate,
    PodDelete,
    Operator,
    ProxyWatch,
    ApiserverSelf,
    Probe,
    Metrics,
    Discovery,
    Human,
    Ci,
    Unauthenticated,
    Forbidden,
    NotFoundOrConflict,
}

const MIX: &[(u32, Kind)] = &[
    (150, Kind::KubeletLease),
    (70, Kind::KubeletNodeStatus),
    (90, Kind::KubeletPodStatus),
    (35, Kind::KubeletGet),
    (22, Kind::KubeletWatch),
    (70, Kind::LeaderLease),
    (100, Kind::ControllerUpdate),
    (40, Kind::ControllerRead),
    (14, Kind::ControllerWatch),
    (15, Kind::SchedulerBind),
    (16, Kind::PodCreate),
    (10, Kind::PodDelete),
    (55, Kind::Operator),
    (10, Kind::ProxyWatch),
    (20, Kind::ApiserverSelf),
    (60, Kind::Probe),
    (18, Kind::Metrics),
    (15, Kind::Discovery),
    (45, Kind::Human),
    (25, Kind::Ci),
    (8, Kind::Unauthenticated),
    (14, Kind::Forbidden),
    (8, Kind::NotFoundOrConflict),
];

fn pick(rng: &mut ChaCha8Rng) -> Kind {
    let total: u32 = MIX.iter().map(|(w, _)| w).sum();
    let mut x = rng.gen_range(0..total);
    for (w, k) in MIX {
        if x < *w {
            return *k;
        }
        x -= w;
    }
    Kind::KubeletLease
}

fn allow(a: &Actor) -> Authz<'_> {
    Authz::Allow(&a.reason)
}

/// Simulates one ordinary request received at `now`.
pub(crate) fn request(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    match pick(p.rng) {
        Kind::KubeletLease => kubelet_lease(p, c, now),
        Kind::KubeletNodeStatus => kubelet_node_status(p, c, now),
        Kind::KubeletPodStatus => kubelet_pod_status(p, c, now),
        Kind::KubeletGet => kubelet_get(p, c, now),
        Kind::KubeletWatch => kubelet_watch(p, c, now),
        Kind::LeaderLease => leader_lease(p, c, now),
        Kind::ControllerUpdate => controller_update(p, c, now),
        Kind::ControllerRead => controller_read(p, c, now),
        Kind::ControllerWatch => controller_watch(p, c, now),
        Kind::SchedulerBind => scheduler_bind(p, c, now),
        Kind::PodCreate => pod_create(p, c, now),
        Kind::PodDelete => pod_delete(p, c, now),
        Kind::Operator => operator(p, c, now),
        Kind::ProxyWatch => proxy_watch(p, c, now),
        Kind::ApiserverSelf => apiserver_self(p, c, now),
        Kind::Probe => probe(p, c, now),
        Kind::Metrics => metrics(p, c, now),
        Kind::Discovery => discovery(p, c, now),
        Kind::Human => human(p, c, now),
        Kind::Ci => ci(p, c, now),
        Kind::Unauthenticated => unauthenticated(p, c, now),
        Kind::Forbidden => forbidden(p, c, now),
        Kind::NotFoundOrConflict => not_found_or_conflict(p, c, now),
    }
}

// One argument per event field, so call sites read like the event.
#[allow(clippy::too_many_arguments)]
fn simple<'a>(
    id: [u8; 36],
    level: Level,
    uri: &'a [u8],
    verb: &'a str,
    who: &'a Actor,
    obj: Option<ObjRef<'a>>,
    code: u16,
    received: i64,
    latency: i64,
) -> Call<'a> {
    Call {
        level,
        id,
        uri,
        verb,
        who,
        obj,
        status: Status::Code(code),
        req: None,
        resp: None,
        received,
        latency,
        authz: allow(who),
        psa: None,
        shape: Shape::Complete,
    }
}

fn kubelet_lease(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let n = p.rng.gen_range(0..c.nodes.len());
    let rv = c.next_rv(p.rng);
    let node = &c.nodes[n];
    cat(
        &mut p.s.uri,
        &[
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/",
            &node.name,
            "?timeout=10s",
        ],
    );
    let obj = ObjRef {
        resource: "leases",
        namespace: "kube-node-lease",
        name: &node.name,
        uid: &node.lease_uid,
        group: "coordination.k8s.io",
        version: "v1",
        resource_version: rv,
        ..Default::default()
    };
    let who = &c.actors[node.kubelet];
    let lat = latency_ms(p.rng, 1.5, 18.0);
    let call = simple(
        uuid4(p.rng),
        Level::Metadata,
        &p.s.uri,
        "update",
        who,
        Some(obj),
        200,
        now,
        lat,
    );
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

fn kubelet_node_status(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let n = p.rng.gen_range(0..c.nodes.len());
    let node = &c.nodes[n];
    cat(
        &mut p.s.uri,
        &["/api/v1/nodes/", &node.name, "/status?timeout=10s"],
    );
    {
        // The kubelet's heartbeat: a strategic-merge patch of the conditions,
        // now and then with the node's image list.
        let tf = &mut p.sched.tf;
        p.s.body.clear();
        let mut j = crate::write::J::new(&mut p.s.body);
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
    let obj = ObjRef {
        resource: "nodes",
        name: &node.name,
        version: "v1",
        subresource: "status",
        ..Default::default()
    };
    let lat = latency_ms(p.rng, 3.0, 30.0);
    let mut call = simple(
        uuid4(p.rng),
        Level::Request,
        &p.s.uri,
        "patch",
        &c.actors[node.kubelet],
        Some(obj),
        200,
        now,
        lat,
    );
    call.req = Some(&p.s.body);
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

fn kubelet_pod_status(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let w = p.rng.gen_range(0..c.workloads.len());
    let wl = &c.workloads[w];
    let i = p.rng.gen_range(0..wl.pods.len());
    let ns = c.namespaces[wl.namespace];
    let pod = &wl.pods[i];
    let node = &c.nodes[wl.pod_nodes[i]];
    cat(
        &mut p.s.uri,
        &["/api/v1/namespaces/", ns, "/pods/", pod, "/status"],
    );
    {
        let tf = &mut p.sched.tf;
        let out = &mut p.s.body;
        out.clear();
        let mut j = crate::write::J::new(out);
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
    let obj = ObjRef {
        resource: "pods",
        namespace: ns,
        name: pod,
        version: "v1",
        subresource: "status",
        ..Default::default()
    };
    let lat = latency_ms(p.rng, 3.0, 25.0);
    let mut call = simple(
        uuid4(p.rng),
        Level::Request,
        &p.s.uri,
        "patch",
        &c.actors[node.kubelet],
        Some(obj),
        200,
        now,
        lat,
    );
    call.req = Some(&p.s.body);
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

fn kubelet_get(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let w = p.rng.gen_range(0..c.workloads.len());
    let wl = &c.workloads[w];
    let i = p.rng.gen_range(0..wl.pods.len());
    let ns = c.namespaces[wl.namespace];
    let node = &c.nodes[wl.pod_nodes[i]];
    let (resource, name) = match p.rng.gen_range(0..3) {
        0 => ("pods", wl.pods[i].as_str()),
        1 => ("configmaps", "kube-root-ca.crt"),
        _ => ("serviceaccounts", "default"),
    };
    cat(
        &mut p.s.uri,
        &["/api/v1/namespaces/", ns, "/", resource, "/", name],
    );
    let obj = ObjRef {
        resource,
        namespace: ns,
        name,
        version: "v1",
        ..Default::default()
    };
    let lat = latency_ms(p.rng, 0.8, 10.0);
    let call = simple(
        uuid4(p.rng),
        Level::Metadata,
        &p.s.uri,
        "get",
        &c.actors[node.kubelet],
        Some(obj),
        200,
        now,
        lat,
    );
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

fn watch_call<'a>(
    p_rng: &mut ChaCha8Rng,
    uri: &'a [u8],
    who: &'a Actor,
    obj: ObjRef<'a>,
    secs: u64,
    now: i64,
) -> Call<'a> {
    let started = latency_ms(p_rng, 0.3, 4.0);
    // Most watches run to their timeout; some end early (apiserver restarts, relists).
    let full = secs as i64 * 1_000_000;
    let dur = if p_rng.gen_bool(0.85) {
        full + p_rng.gen_range(0..2_000)
    } else {
        p_rng.gen_range(started..full)
    };
    Call {
        level: Level::Metadata,
        id: uuid4(p_rng),
        uri,
        verb: "watch",
        who,
        obj: Some(obj),
        status: Status::Code(200),
        req: None,
        resp: None,
        received: now,
        latency: dur,
        authz: allow(who),
        psa: None,
        shape: Shape::Long(started),
    }
}

fn kubelet_watch(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let w = p.rng.gen_range(0..c.workloads.len());
    let wl = &c.workloads[w];
    let i = p.rng.gen_range(0..wl.pods.len());
    let ns = c.namespaces[wl.namespace];
    let node = &c.nodes[wl.pod_nodes[i]];
    let rv = c.rv();
    let (resource, sel) = if p.rng.gen_bool(0.5) {
        (
            "configmaps",
            "fieldSelector=metadata.name%3Dkube-root-ca.crt",
        )
    } else {
        (
            "secrets",
            "fieldSelector=metadata.name%3Dregistry-credentials",
        )
    };
    cat(&mut p.s.uri, &["/api/v1/namespaces/", ns, "/", resource]);
    let secs = push_watch_query(p.rng, &mut p.s.uri, sel, rv);
    let obj = ObjRef {
        resource,
        namespace: ns,
        version: "v1",
        ..Default::default()
    };
    let call = watch_call(p.rng, &p.s.uri, &c.actors[node.kubelet], obj, secs, now);
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

fn leader_lease(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let scheduler = p.rng.gen_bool(0.4);
    let (name, uid, who) = if scheduler {
        ("kube-scheduler", &c.scheduler_lease_uid, c.scheduler)
    } else {
        ("kube-controller-manager", &c.kcm_lease_uid, c.kcm)
    };
    let get = p.rng.gen_bool(0.3);
    let rv = if get { 0 } else { c.resource_version + 1 };
    cat(
        &mut p.s.uri,
        &[
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/",
            name,
            "?timeout=5s",
        ],
    );
    let obj = ObjRef {
        resource: "leases",
        namespace: "kube-system",
        name,
        uid: if get { "" } else { uid },
        group: "coordination.k8s.io",
        version: "v1",
        resource_version: rv,
        ..Default::default()
    };
    let lat = latency_ms(p.rng, 1.0, 15.0);
    let verb = if get { "get" } else { "update" };
    let call = simple(
        uuid4(p.rng),
        Level::Metadata,
        &p.s.uri,
        verb,
        &c.actors[who],
        Some(obj),
        200,
        now,
        lat,
    );
    emit(p.sched, p.cluster_index, NO_TAG, &call);
    if !get {
        c.resource_version = rv;
    }
}

fn controller_update(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let w = p.rng.gen_range(0..c.workloads.len());
    let rv = c.next_rv(p.rng);
    let wl = &c.workloads[w];
    let ns = c.namespaces[wl.namespace];
    let created = now - 86_400_000_000 * i64::from(p.rng.gen_range(1..30u8));
    let stored = Stored {
        uid: &wl.uid,
        resource_version: rv,
        created,
        manager: "kube-controller-manager",
    };
    let tf = &mut p.sched.tf;
    p.s.body.clear();
    let (controller, resource, group, name, sub): (&str, &str, &str, &str, &str) =
        match p.rng.gen_range(0..3) {
            0 => {
                bodies::replicaset_status(
                    &mut p.s.body,
                    tf,
                    ns,
                    &wl.replicaset,
                    &wl.name,
                    &wl.image,
                    wl.pods.len() as i64,
                    &stored,
                );
                cat(
                    &mut p.s.uri,
                    &[
                        "/apis/apps/v1/namespaces/",
                        ns,
                        "/replicasets/",
                        &wl.replicaset,
                        "/status",
                    ],
                );
                (
                    "replicaset-controller",
                    "replicasets",
                    "apps",
                    &wl.replicaset,
                    "status",
                )
            }
            1 => {
                bodies::deployment(
                    &mut p.s.body,
                    tf,
                    ns,
                    &wl.name,
                    &wl.image,
                    wl.port,
                    wl.pods.len() as i64,
                    Some(&stored),
                );
                cat(
                    &mut p.s.uri,
                    &[
                        "/apis/apps/v1/namespaces/",
                        ns,
                        "/deployments/",
                        &wl.name,
                        "/status",
                    ],
                );
                (
                    "deployment-controller",
                    "deployments",
                    "apps",
                    &wl.name,
                    "status",
                )
            }
            _ => {
                let node_names: Vec<&str> = wl
                    .pod_nodes
                    .iter()
                    .map(|&n| c.nodes[n].name.as_str())
                    .collect();
                let slice = &wl.replicaset[..wl.replicaset.len().saturating_sub(5)];
                bodies::endpoint_slice(
                    &mut p.s.body,
                    tf,
                    ns,
                    &wl.name,
                    slice,
                    &wl.pods,
                    &node_names,
                    wl.port,
                    &stored,
                );
                cat(
                    &mut p.s.uri,
                    &[
                        "/apis/discovery.k8s.io/v1/namespaces/",
                        ns,
                        "/endpointslices/",
                        slice,
                    ],
                );
                (
                    "endpointslice-controller",
                    "endpointslices",
                    "discovery.k8s.io",
                    slice,
                    "",
                )
            }
        };
    let actor = c
        .controllers
        .iter()
        .find(|(_, n)| *n == controller)
        .map_or(c.kcm, |(a, _)| *a);
    let obj = ObjRef {
        resource,
        namespace: ns,
        name,
        uid: &wl.uid,
        group,
        version: "v1",
        resource_version: rv,
        subresource: sub,
    };
    let lat = latency_ms(p.rng, 3.0, 40.0);
    let mut call = simple(
        uuid4(p.rng),
        Level::Request,
        &p.s.uri,
        "update",
        &c.actors[actor],
        Some(obj),
        200,
        now,
        lat,
    );
    call.req = Some(&p.s.body);
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

fn controller_read(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let (actor, _) = c.controllers[p.rng.gen_range(0..c.controllers.len())];
    let w = p.rng.gen_range(0..c.workloads.len());
    let wl = &c.workloads[w];
    let ns = c.namespaces[wl.namespace];
    let (verb, obj) = if p.rng.gen_bool(0.5) {
        cat(
            &mut p.s.uri,
            &[
                "/apis/apps/v1/namespaces/",
                ns,
                "/replicasets/",
                &wl.replicaset,
            ],
        );
        (
            "get",
            ObjRef {
                resource: "replicasets",
                namespace: ns,
                name: &wl.replicaset,
                group: "apps",
                version: "v1",
                ..Default::default()
            },
        )
    } else {
        cat(
            &mut p.s.uri,
            &[
                "/api/v1/namespaces/",
                ns,
                "/pods?labelSelector=app.kubernetes.io%2Fname%3D",
                &wl.name,
            ],
        );
        (
            "list",
            ObjRef {
                resource: "pods",
                namespace: ns,
                version: "v1",
                ..Default::default()
            },
        )
    };
    let lat = latency_ms(p.rng, 1.0, 40.0);
    let call = simple(
        uuid4(p.rng),
        Level::Metadata,
        &p.s.uri,
        verb,
        &c.actors[actor],
        Some(obj),
        200,
        now,
        lat,
    );
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

const WATCHED: &[(&str, &str, &str)] = &[
    ("/api/v1/pods", "pods", ""),
    ("/api/v1/nodes", "nodes", ""),
    ("/api/v1/services", "services", ""),
    ("/apis/apps/v1/replicasets", "replicasets", "apps"),
    ("/apis/apps/v1/deployments", "deployments", "apps"),
    ("/apis/batch/v1/jobs", "jobs", "batch"),
    (
        "/apis/discovery.k8s.io/v1/endpointslices",
        "endpointslices",
        "discovery.k8s.io",
    ),
    (
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "clusterroles",
        "rbac.authorization.k8s.io",
    ),
    (
        "/apis/networking.k8s.io/v1/ingresses",
        "ingresses",
        "networking.k8s.io",
    ),
];

fn controller_watch(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let (path, resource, group) = WATCHED[p.rng.gen_range(0..WATCHED.len())];
    let rv = c.rv();
    cat(&mut p.s.uri, &[path]);
    let secs = push_watch_query(p.rng, &mut p.s.uri, "", rv);
    let who = if p.rng.gen_bool(0.5) {
        c.kcm
    } else {
        c.controllers[p.rng.gen_range(0..c.controllers.len())].0
    };
    let obj = ObjRef {
        resource,
        group,
        version: "v1",
        ..Default::default()
    };
    let call = watch_call(p.rng, &p.s.uri, &c.actors[who], obj, secs, now);
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

fn proxy_watch(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let rv = c.rv();
    let (who, obj) = if p.rng.gen_bool(0.6) {
        cat(&mut p.s.uri, &["/apis/discovery.k8s.io/v1/endpointslices"]);
        let who = c.kube_proxy[p.rng.gen_range(0..c.kube_proxy.len())];
        (
            who,
            ObjRef {
                resource: "endpointslices",
                group: "discovery.k8s.io",
                version: "v1",
                ..Default::default()
            },
        )
    } else {
        cat(&mut p.s.uri, &["/api/v1/namespaces"]);
        (
            c.coredns,
            ObjRef {
                resource: "namespaces",
                version: "v1",
                ..Default::default()
            },
        )
    };
    let sel = if obj.resource == "endpointslices" {
        "labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name"
    } else {
        ""
    };
    let secs = push_watch_query(p.rng, &mut p.s.uri, sel, rv);
    let call = watch_call(p.rng, &p.s.uri, &c.actors[who], obj, secs, now);
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

fn scheduler_bind(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let w = p.rng.gen_range(0..c.workloads.len());
    let wl = &c.workloads[w];
    let i = p.rng.gen_range(0..wl.pods.len());
    let ns = c.namespaces[wl.namespace];
    let node = &c.nodes[wl.pod_nodes[i]];
    cat(
        &mut p.s.uri,
        &["/api/v1/namespaces/", ns, "/pods/", &wl.pods[i], "/binding"],
    );
    p.s.body.clear();
    {
        let mut j = crate::write::J::new(&mut p.s.body);
        j.o().ks("kind", "Binding").ks("apiVersion", "v1");
        j.ko("metadata")
            .ks("name", &wl.pods[i])
            .ks("namespace", ns)
            .ks("uid", &wl.pod_uids[i])
            .c();
        j.ko("target").ks("kind", "Node").ks("name", &node.name).c();
        j.c();
    }
    let obj = ObjRef {
        resource: "pods",
        namespace: ns,
        name: &wl.pods[i],
        uid: &wl.pod_uids[i],
        version: "v1",
        subresource: "binding",
        ..Default::default()
    };
    let lat = latency_ms(p.rng, 2.0, 20.0);
    let mut call = simple(
        uuid4(p.rng),
        Level::Request,
        &p.s.uri,
        "create",
        &c.actors[c.scheduler],
        Some(obj),
        201,
        now,
        lat,
    );
    call.req = Some(&p.s.body);
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

fn pod_create(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let w = p.rng.gen_range(0..c.workloads.len());
    let rv = c.next_rv(p.rng);
    let wl = &c.workloads[w];
    let ns = c.namespaces[wl.namespace];
    let i = p.rng.gen_range(0..wl.pods.len());
    let token = format!("kube-api-access-{}", crate::world::random_suffix(p.rng, 5));
    let spec = PodSpec {
        namespace: ns,
        name: &wl.pods[i],
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
        uid: &wl.pod_uids[i],
        resource_version: rv,
        created: now,
        manager: "kube-controller-manager",
    };
    p.s.body.clear();
    p.s.resp.clear();
    bodies::pod(&mut p.s.body, &mut p.sched.tf, &spec, None);
    bodies::pod(&mut p.s.resp, &mut p.sched.tf, &spec, Some(&stored));
    cat(&mut p.s.uri, &["/api/v1/namespaces/", ns, "/pods"]);
    let actor = c.controllers[0].0;
    let obj = ObjRef {
        resource: "pods",
        namespace: ns,
        version: "v1",
        ..Default::default()
    };
    let lat = latency_ms(p.rng, 5.0, 60.0);
    let mut call = simple(
        uuid4(p.rng),
        Level::RequestResponse,
        &p.s.uri,
        "create",
        &c.actors[actor],
        Some(obj),
        201,
        now,
        lat,
    );
    call.req = Some(&p.s.body);
    call.resp = Some(&p.s.resp);
    call.psa = Some("restricted:latest");
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

fn pod_delete(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let w = p.rng.gen_range(0..c.workloads.len());
    let wl = &c.workloads[w];
    let i = p.rng.gen_range(0..wl.pods.len());
    let ns = c.namespaces[wl.namespace];
    cat(
        &mut p.s.uri,
        &["/api/v1/namespaces/", ns, "/pods/", &wl.pods[i]],
    );
    let actor = if p.rng.gen_bool(0.5) {
        c.controllers[0].0
    } else {
        c.controllers[7].0
    };
    let obj = ObjRef {
        resource: "pods",
        namespace: ns,
        name: &wl.pods[i],
        version: "v1",
        ..Default::default()
    };
    let lat = latency_ms(p.rng, 3.0, 30.0);
    let call = simple(
        uuid4(p.rng),
        Level::Metadata,
        &p.s.uri,
        "delete",
        &c.actors[actor],
        Some(obj),
        200,
        now,
        lat,
    );
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

fn operator(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let o = p.rng.gen_range(0..c.operators.len());
    let who = c.operators[o];
    let rv = c.rv();
    let w = p.rng.gen_range(0..c.workloads.len());
    let ns = c.namespaces[c.workloads[w].namespace];
    let (verb, obj, lat) = match (o, p.rng.gen_range(0..3)) {
        (0, 0) => {
            cat(
                &mut p.s.uri,
                &["/api/v1/namespaces/ingress-nginx/configmaps/ingress-nginx-controller"],
            );
            (
                "get",
                ObjRef {
                    resource: "configmaps",
                    namespace: "ingress-nginx",
                    name: "ingress-nginx-controller",
                    version: "v1",
                    ..Default::default()
                },
                latency_ms(p.rng, 1.0, 8.0),
            )
        }
        (0, _) => {
            cat(&mut p.s.uri, &["/apis/coordination.k8s.io/v1/namespaces/ingress-nginx/leases/ingress-nginx-leader"]);
            (
                "update",
                ObjRef {
                    resource: "leases",
                    namespace: "ingress-nginx",
                    name: "ingress-nginx-leader",
                    group: "coordination.k8s.io",
                    version: "v1",
                    resource_version: rv,
                    ..Default::default()
                },
                latency_ms(p.rng, 1.5, 15.0),
            )
        }
        (1, 0) => {
            cat(&mut p.s.uri, &["/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/cert-manager-controller"]);
            (
                "update",
                ObjRef {
                    resource: "leases",
                    namespace: "kube-system",
                    name: "cert-manager-controller",
                    group: "coordination.k8s.io",
                    version: "v1",
                    resource_version: rv,
                    ..Default::default()
                },
                latency_ms(p.rng, 1.5, 15.0),
            )
        }
        (1, _) => {
            cat(
                &mut p.s.uri,
                &[
                    "/apis/cert-manager.io/v1/namespaces/",
                    ns,
                    "/certificates/",
                    ns,
                    "-tls",
                ],
            );
            (
                "get",
                ObjRef {
                    resource: "certificates",
                    namespace: ns,
                    name: "tls",
                    group: "cert-manager.io",
                    version: "v1",
                    ..Default::default()
                },
                latency_ms(p.rng, 1.0, 8.0),
            )
        }
        _ => {
            let (path, resource, group) = WATCHED[p.rng.gen_range(0..5)];
            cat(&mut p.s.uri, &[path, "?limit=500&resourceVersion=0"]);
            (
                "list",
                ObjRef {
                    resource,
                    group,
                    version: "v1",
                    ..Default::default()
                },
                latency_ms(p.rng, 4.0, 120.0),
            )
        }
    };
    let call = simple(
        uuid4(p.rng),
        Level::Metadata,
        &p.s.uri,
        verb,
        &c.actors[who],
        Some(obj),
        200,
        now,
        lat,
    );
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

fn apiserver_self(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let who = &c.actors[c.apiserver];
    let rv = c.rv();
    match p.rng.gen_range(0..3) {
        0 => {
            cat(
                &mut p.s.uri,
                &["/api/v1/namespaces/default/endpoints/kubernetes"],
            );
            let obj = ObjRef {
                resource: "endpoints",
                namespace: "default",
                name: "kubernetes",
                version: "v1",
                ..Default::default()
            };
            let lat = latency_ms(p.rng, 0.5, 5.0);
            let call = simple(
                uuid4(p.rng),
                Level::Metadata,
                &p.s.uri,
                "get",
                who,
                Some(obj),
                200,
                now,
                lat,
            );
            emit(p.sched, p.cluster_index, NO_TAG, &call);
        }
        1 => {
            cat(
                &mut p.s.uri,
                &["/apis/flowcontrol.apiserver.k8s.io/v1/prioritylevelconfigurations"],
            );
            let secs = push_watch_query(p.rng, &mut p.s.uri, "", rv);
            let obj = ObjRef {
                resource: "prioritylevelconfigurations",
                group: "flowcontrol.apiserver.k8s.io",
                version: "v1",
                ..Default::default()
            };
            let call = watch_call(p.rng, &p.s.uri, who, obj, secs, now);
            emit(p.sched, p.cluster_index, NO_TAG, &call);
        }
        _ => {
            cat(
                &mut p.s.uri,
                &["/api/v1/namespaces/kube-system/resourcequotas"],
            );
            let obj = ObjRef {
                resource: "resourcequotas",
                namespace: "kube-system",
                version: "v1",
                ..Default::default()
            };
            let lat = latency_ms(p.rng, 0.5, 6.0);
            let call = simple(
                uuid4(p.rng),
                Level::Metadata,
                &p.s.uri,
                "list",
                who,
                Some(obj),
                200,
                now,
                lat,
            );
            emit(p.sched, p.cluster_index, NO_TAG, &call);
        }
    }
}

fn probe(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let path = ["/healthz", "/livez", "/readyz"][p.rng.gen_range(0..3)];
    cat(&mut p.s.uri, &[path]);
    let lat = latency_ms(p.rng, 0.3, 6.0);
    let call = simple(
        uuid4(p.rng),
        Level::Metadata,
        &p.s.uri,
        "get",
        &c.actors[c.probe],
        None,
        200,
        now,
        lat,
    );
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

fn metrics(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    cat(&mut p.s.uri, &["/metrics"]);
    let lat = latency_ms(p.rng, 20.0, 400.0);
    let call = simple(
        uuid4(p.rng),
        Level::Metadata,
        &p.s.uri,
        "get",
        &c.actors[c.prometheus],
        None,
        200,
        now,
        lat,
    );
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

fn discovery(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let path = [
        "/version?timeout=32s",
        "/api?timeout=32s",
        "/apis?timeout=32s",
        "/openapi/v2?timeout=32s",
        "/openapi/v3?timeout=32s",
    ][p.rng.gen_range(0..5)];
    cat(&mut p.s.uri, &[path]);
    let who = if p.rng.gen_bool(0.7) {
        c.humans[p.rng.gen_range(0..c.humans.len())]
    } else {
        c.ci[p.rng.gen_range(0..c.ci.len())]
    };
    let lat = if path.starts_with("/openapi") {
        latency_ms(p.rng, 10.0, 300.0)
    } else {
        latency_ms(p.rng, 0.5, 5.0)
    };
    let mut call = simple(
        uuid4(p.rng),
        Level::Metadata,
        &p.s.uri,
        "get",
        &c.actors[who],
        None,
        200,
        now,
        lat,
    );
    call.authz = Authz::Allow(&p.s.discovery_reason);
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

/// Everyday kubectl use by people (RequestReceived is recorded for them).
fn human(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let h = c.humans[p.rng.gen_range(0..c.humans.len())];
    let w = p.rng.gen_range(0..c.workloads.len());
    let rv = c.next_rv(p.rng);
    let wl = &c.workloads[w];
    let ns = c.namespaces[wl.namespace];
    let i = p.rng.gen_range(0..wl.pods.len());
    let pod = wl.pods[i].as_str();
    let who = &c.actors[h];
    let id = uuid4(p.rng);
    let roll = p.rng.gen_range(0..100);
    let pod_ref = |sub: &'static str| ObjRef {
        resource: "pods",
        namespace: ns,
        name: pod,
        version: "v1",
        subresource: sub,
        ..Default::default()
    };
    let tf = &mut p.sched.tf;
    let mut call = match roll {
        0..=29 => {
            cat(
                &mut p.s.uri,
                &["/api/v1/namespaces/", ns, "/pods?limit=500"],
            );
            let obj = ObjRef {
                resource: "pods",
                namespace: ns,
                version: "v1",
                ..Default::default()
            };
            simple(
                id,
                Level::Metadata,
                &p.s.uri,
                "list",
                who,
                Some(obj),
                200,
                now,
                latency_ms(p.rng, 3.0, 80.0),
            )
        }
        30..=44 => {
            cat(&mut p.s.uri, &["/api/v1/namespaces/", ns, "/pods/", pod]);
            simple(
                id,
                Level::Metadata,
                &p.s.uri,
                "get",
                who,
                Some(pod_ref("")),
                200,
                now,
                latency_ms(p.rng, 1.0, 10.0),
            )
        }
        45..=54 => {
            let follow = p.rng.gen_bool(0.3);
            cat(
                &mut p.s.uri,
                &[
                    "/api/v1/namespaces/",
                    ns,
                    "/pods/",
                    pod,
                    "/log?container=app",
                ],
            );
            if follow {
                p.s.uri.extend_from_slice(b"&follow=true");
            }
            p.s.uri.extend_from_slice(b"&tailLines=100");
            let lat = if follow {
                latency_ms(p.rng, 5_000.0, 900_000.0)
            } else {
                latency_ms(p.rng, 10.0, 400.0)
            };
            simple(
                id,
                Level::Metadata,
                &p.s.uri,
                "get",
                who,
                Some(pod_ref("log")),
                200,
                now,
                lat,
            )
        }
        55..=59 => {
            cat(&mut p.s.uri, &["/api/v1/nodes?limit=500"]);
            let obj = ObjRef {
                resource: "nodes",
                version: "v1",
                ..Default::default()
            };
            simple(
                id,
                Level::Metadata,
                &p.s.uri,
                "list",
                who,
                Some(obj),
                200,
                now,
                latency_ms(p.rng, 5.0, 60.0),
            )
        }
        60..=71 => {
            // kubectl apply (client-side): a strategic-merge patch of the Deployment.
            cat(
                &mut p.s.uri,
                &[
                    "/apis/apps/v1/namespaces/",
                    ns,
                    "/deployments/",
                    &wl.name,
                    "?fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
                ],
            );
            p.s.body.clear();
            p.s.resp.clear();
            bodies::deployment(
                &mut p.s.body,
                tf,
                ns,
                &wl.name,
                &wl.image,
                wl.port,
                wl.pods.len() as i64,
                None,
            );
            let stored = Stored {
                uid: &wl.uid,
                resource_version: rv,
                created: now - 864_000_000_000,
                manager: "kubectl-client-side-apply",
            };
            bodies::deployment(
                &mut p.s.resp,
                tf,
                ns,
                &wl.name,
                &wl.image,
                wl.port,
                wl.pods.len() as i64,
                Some(&stored),
            );
            let obj = ObjRef {
                resource: "deployments",
                namespace: ns,
                name: &wl.name,
                group: "apps",
                version: "v1",
                ..Default::default()
            };
            let mut call = simple(
                id,
                Level::RequestResponse,
                &p.s.uri,
                "patch",
                who,
                Some(obj),
                200,
                now,
                latency_ms(p.rng, 5.0, 60.0),
            );
            call.req = Some(&p.s.body);
            call.resp = Some(&p.s.resp);
            call
        }
        72..=77 => {
            let name_suffix = crate::world::random_suffix(p.rng, 5);
            p.s.msg.clear();
            p.s.msg.push_str(&wl.name);
            p.s.msg.push_str("-config-");
            p.s.msg.push_str(&name_suffix);
            let name = p.s.msg.as_str();
            p.s.body.clear();
            p.s.resp.clear();
            let (resource, group) = match p.rng.gen_range(0..4) {
                0 => {
                    let len = p.rng.gen_range(200..2_000);
                    let range = p.s.text_range(p.rng, len);
                    let text = &p.s.text[range];
                    bodies::configmap(&mut p.s.body, tf, ns, name, "settings.json", text, None);
                    let stored = Stored {
                        uid: "",
                        resource_version: rv,
                        created: now,
                        manager: "kubectl-create",
                    };
                    bodies::configmap(
                        &mut p.s.resp,
                        tf,
                        ns,
                        name,
                        "settings.json",
                        text,
                        Some(&stored),
                    );
                    ("configmaps", "")
                }
                1 => {
                    bodies::secret(&mut p.s.body, tf, ns, name, "czNjcjN0LXBhc3N3MHJk", None);
                    let stored = Stored {
                        uid: "",
                        resource_version: rv,
                        created: now,
                        manager: "kubectl-create",
                    };
                    bodies::secret(
                        &mut p.s.resp,
                        tf,
                        ns,
                        name,
                        "czNjcjN0LXBhc3N3MHJk",
                        Some(&stored),
                    );
                    ("secrets", "")
                }
                2 => {
                    bodies::role(&mut p.s.body, tf, ns, name, None);
                    let stored = Stored {
                        uid: "",
                        resource_version: rv,
                        created: now,
                        manager: "kubectl-create",
                    };
                    bodies::role(&mut p.s.resp, tf, ns, name, Some(&stored));
                    ("roles", "rbac.authorization.k8s.io")
                }
                _ => {
                    bodies::binding(
                        &mut p.s.body,
                        tf,
                        ns,
                        name,
                        "Role",
                        "developer",
                        "Group",
                        "dev-team",
                        None,
                    );
                    let stored = Stored {
                        uid: "",
                        resource_version: rv,
                        created: now,
                        manager: "kubectl-create",
                    };
                    bodies::binding(
                        &mut p.s.resp,
                        tf,
                        ns,
                        name,
                        "Role",
                        "developer",
                        "Group",
                        "dev-team",
                        Some(&stored),
                    );
                    ("rolebindings", "rbac.authorization.k8s.io")
                }
            };
            let prefix = if group.is_empty() {
                "/api/v1/namespaces/".to_string()
            } else {
                format!("/apis/{group}/v1/namespaces/")
            };
            cat(
                &mut p.s.uri,
                &[
                    &prefix,
                    ns,
                    "/",
                    resource,
                    "?fieldManager=kubectl-create&fieldValidation=Strict",
                ],
            );
            let obj = ObjRef {
                resource,
                namespace: ns,
                name,
                group,
                version: "v1",
                ..Default::default()
            };
            let level = if resource == "secrets" {
                Level::Metadata
            } else {
                Level::RequestResponse
            };
            let mut call = simple(
                id,
                level,
                &p.s.uri,
                "create",
                who,
                Some(obj),
                201,
                now,
                latency_ms(p.rng, 4.0, 40.0),
            );
            call.req = Some(&p.s.body);
            call.resp = Some(&p.s.resp);
            call
        }
        78..=83 => {
            cat(&mut p.s.uri, &["/api/v1/namespaces/", ns, "/pods/", pod]);
            simple(
                id,
                Level::Metadata,
                &p.s.uri,
                "delete",
                who,
                Some(pod_ref("")),
                200,
                now,
                latency_ms(p.rng, 5.0, 50.0),
            )
        }
        84..=89 => {
            // A routine, non-interactive exec (not an incident).
            let cmd = [
                "env",
                "date",
                "ps&command=aux",
                "cat&command=%2Fetc%2Fresolv.conf",
            ][p.rng.gen_range(0..4)];
            cat(
                &mut p.s.uri,
                &[
                    "/api/v1/namespaces/",
                    ns,
                    "/pods/",
                    pod,
                    "/exec?command=",
                    cmd,
                    "&container=app&stderr=true&stdout=true",
                ],
            );
            let mut call = simple(
                id,
                Level::Metadata,
                &p.s.uri,
                "create",
                who,
                Some(pod_ref("exec")),
                101,
                now,
                latency_ms(p.rng, 80.0, 2_000.0),
            );
            call.shape = Shape::Long(latency_ms(p.rng, 20.0, 80.0));
            call
        }
        90..=94 => {
            cat(
                &mut p.s.uri,
                &["/api/v1/namespaces/", ns, "/pods/", pod, "/portforward"],
            );
            let mut call = simple(
                id,
                Level::Metadata,
                &p.s.uri,
                "create",
                who,
                Some(pod_ref("portforward")),
                101,
                now,
                latency_ms(p.rng, 30_000.0, 1_800_000.0),
            );
            call.shape = Shape::Long(latency_ms(p.rng, 20.0, 80.0));
            call
        }
        _ => {
            cat(
                &mut p.s.uri,
                &[
                    "/api/v1/namespaces/",
                    ns,
                    "/events?fieldSelector=involvedObject.name%3D",
                    pod,
                    "%2CinvolvedObject.namespace%3D",
                    ns,
                    "%2CinvolvedObject.uid%3D",
                    &wl.pod_uids[i],
                ],
            );
            let obj = ObjRef {
                resource: "events",
                namespace: ns,
                version: "v1",
                ..Default::default()
            };
            simple(
                id,
                Level::Metadata,
                &p.s.uri,
                "list",
                who,
                Some(obj),
                200,
                now,
                latency_ms(p.rng, 2.0, 30.0),
            )
        }
    };
    if matches!(call.shape, Shape::Complete) {
        call.shape = Shape::Received;
    }
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

/// CI and GitOps deploying: applies with full objects, large ConfigMaps.
fn ci(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let k = p.rng.gen_range(0..c.ci.len());
    let w = p.rng.gen_range(0..c.workloads.len());
    let rv = c.next_rv(p.rng);
    let who = &c.actors[c.ci[k]];
    let wl = &c.workloads[w];
    let ns = c.namespaces[wl.namespace];
    let id = uuid4(p.rng);
    let tf = &mut p.sched.tf;
    let roll = p.rng.gen_range(0..100);
    let mut call = match roll {
        0..=34 => {
            cat(
                &mut p.s.uri,
                &["/apis/apps/v1/namespaces/", ns, "/deployments/", &wl.name],
            );
            let obj = ObjRef {
                resource: "deployments",
                namespace: ns,
                name: &wl.name,
                group: "apps",
                version: "v1",
                ..Default::default()
            };
            simple(
                id,
                Level::Metadata,
                &p.s.uri,
                "get",
                who,
                Some(obj),
                200,
                now,
                latency_ms(p.rng, 1.0, 10.0),
            )
        }
        35..=64 => {
            let manager = if k == 0 {
                "argocd-controller"
            } else {
                "kubectl"
            };
            cat(
                &mut p.s.uri,
                &[
                    "/apis/apps/v1/namespaces/",
                    ns,
                    "/deployments/",
                    &wl.name,
                    "?fieldManager=",
                    manager,
                    "&force=true",
                ],
            );
            p.s.body.clear();
            p.s.resp.clear();
            bodies::deployment(
                &mut p.s.body,
                tf,
                ns,
                &wl.name,
                &wl.image,
                wl.port,
                wl.pods.len() as i64,
                None,
            );
            let stored = Stored {
                uid: &wl.uid,
                resource_version: rv,
                created: now - 864_000_000_000,
                manager,
            };
            bodies::deployment(
                &mut p.s.resp,
                tf,
                ns,
                &wl.name,
                &wl.image,
                wl.port,
                wl.pods.len() as i64,
                Some(&stored),
            );
            let obj = ObjRef {
                resource: "deployments",
                namespace: ns,
                name: &wl.name,
                group: "apps",
                version: "v1",
                ..Default::default()
            };
            let mut call = simple(
                id,
                Level::RequestResponse,
                &p.s.uri,
                "patch",
                who,
                Some(obj),
                200,
                now,
                latency_ms(p.rng, 5.0, 80.0),
            );
            call.req = Some(&p.s.body);
            call.resp = Some(&p.s.resp);
            call
        }
        65..=84 => {
            // Dashboards and configs shipped as ConfigMaps: the 10-60 KB tail.
            let len = if p.rng.gen_bool(0.25) {
                p.rng.gen_range(5_000..26_000)
            } else {
                p.rng.gen_range(300..3_000)
            };
            let range = p.s.text_range(p.rng, len);
            let text = &p.s.text[range];
            p.s.msg.clear();
            p.s.msg.push_str(&wl.name);
            p.s.msg.push_str("-dashboards");
            let name = p.s.msg.as_str();
            cat(
                &mut p.s.uri,
                &[
                    "/api/v1/namespaces/",
                    ns,
                    "/configmaps/",
                    name,
                    "?fieldManager=argocd-controller&force=true",
                ],
            );
            p.s.body.clear();
            p.s.resp.clear();
            bodies::configmap(&mut p.s.body, tf, ns, name, "dashboard.json", text, None);
            let stored = Stored {
                uid: &wl.pod_uids[0],
                resource_version: rv,
                created: now - 864_000_000_000,
                manager: "argocd-controller",
            };
            bodies::configmap(
                &mut p.s.resp,
                tf,
                ns,
                name,
                "dashboard.json",
                text,
                Some(&stored),
            );
            let obj = ObjRef {
                resource: "configmaps",
                namespace: ns,
                name,
                version: "v1",
                ..Default::default()
            };
            let mut call = simple(
                id,
                Level::RequestResponse,
                &p.s.uri,
                "patch",
                who,
                Some(obj),
                200,
                now,
                latency_ms(p.rng, 5.0, 120.0),
            );
            call.req = Some(&p.s.body);
            call.resp = Some(&p.s.resp);
            call
        }
        _ => {
            // `kubectl rollout status`: a watch on the Deployment.
            let crv = c.rv();
            cat(
                &mut p.s.uri,
                &["/apis/apps/v1/namespaces/", ns, "/deployments"],
            );
            p.s.msg.clear();
            p.s.msg.push_str("fieldSelector=metadata.name%3D");
            p.s.msg.push_str(&wl.name);
            let secs = push_watch_query(p.rng, &mut p.s.uri, &p.s.msg, crv);
            let obj = ObjRef {
                resource: "deployments",
                namespace: ns,
                group: "apps",
                version: "v1",
                ..Default::default()
            };
            let mut call = watch_call(p.rng, &p.s.uri, who, obj, secs, now);
            call.latency = latency_ms(p.rng, 5_000.0, 120_000.0);
            call
        }
    };
    if matches!(call.shape, Shape::Complete) && p.rng.gen_bool(0.5) {
        call.shape = Shape::Received;
    }
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

/// Requests with missing or bad credentials: `"user":{}`, 401, ResponseStarted.
fn unauthenticated(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let who = &c.actors[c.unauthenticated[p.rng.gen_range(0..c.unauthenticated.len())]];
    let (path, obj) = match p.rng.gen_range(0..5) {
        0 => ("/", None),
        1 => ("/version", None),
        2 => (
            "/api/v1/namespaces/kube-system/secrets",
            Some(ObjRef {
                resource: "secrets",
                namespace: "kube-system",
                version: "v1",
                ..Default::default()
            }),
        ),
        3 => (
            "/api/v1/pods",
            Some(ObjRef {
                resource: "pods",
                version: "v1",
                ..Default::default()
            }),
        ),
        _ => (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Some(ObjRef {
                resource: "clusterrolebindings",
                group: "rbac.authorization.k8s.io",
                version: "v1",
                ..Default::default()
            }),
        ),
    };
    cat(&mut p.s.uri, &[path]);
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
    let lat = latency_ms(p.rng, 0.05, 1.0);
    let mut call = simple(
        uuid4(p.rng),
        Level::Metadata,
        &p.s.uri,
        "get",
        who,
        obj,
        401,
        now,
        lat,
    );
    call.status = Status::Raw(&p.s.status);
    call.authz = Authz::Absent;
    call.shape = Shape::StartedOnly;
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

/// Appends the apiserver's forbidden message for a request.
pub(crate) fn forbidden_message(
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

/// Denied requests: RBAC says no (403, decision forbid).
fn forbidden(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let (who, verb, resource, group, name, ns, path) = match p.rng.gen_range(0..4) {
        0 => (c.default_sa[p.rng.gen_range(0..c.default_sa.len())], "list", "secrets", "", "", "kube-system", "/api/v1/namespaces/kube-system/secrets"),
        1 => (c.humans[1], "delete", "pods", "", "coredns", "kube-system", "/api/v1/namespaces/kube-system/pods/coredns"),
        2 => (c.humans[4], "create", "clusterrolebindings", "rbac.authorization.k8s.io", "", "", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?fieldManager=kubectl-create&fieldValidation=Strict"),
        _ => (c.default_sa[p.rng.gen_range(0..c.default_sa.len())], "list", "nodes", "", "", "", "/api/v1/nodes"),
    };
    let actor = &c.actors[who];
    forbidden_message(
        &mut p.s.msg,
        &actor.username,
        verb,
        resource,
        group,
        name,
        ns,
    );
    p.s.status.clear();
    failure_status(
        &mut p.s.status,
        403,
        "Forbidden",
        &p.s.msg,
        Some((name, group, resource)),
    );
    cat(&mut p.s.uri, &[path]);
    let obj = ObjRef {
        resource,
        namespace: ns,
        name,
        group,
        version: "v1",
        ..Default::default()
    };
    let lat = latency_ms(p.rng, 0.3, 3.0);
    let mut call = simple(
        uuid4(p.rng),
        Level::Metadata,
        &p.s.uri,
        verb,
        actor,
        Some(obj),
        403,
        now,
        lat,
    );
    call.status = Status::Raw(&p.s.status);
    call.authz = Authz::Forbid;
    emit(p.sched, p.cluster_index, NO_TAG, &call);
}

/// Ordinary failures: a typo in `kubectl get`, a lease update race.
fn not_found_or_conflict(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let w = p.rng.gen_range(0..c.workloads.len());
    let wl = &c.workloads[w];
    let ns = c.namespaces[wl.namespace];
    p.s.status.clear();
    if p.rng.gen_bool(0.5) {
        let who = &c.actors[c.humans[p.rng.gen_range(0..c.humans.len())]];
        let name = &wl.replicaset;
        cat(&mut p.s.uri, &["/api/v1/namespaces/", ns, "/pods/", name]);
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
        let obj = ObjRef {
            resource: "pods",
            namespace: ns,
            name,
            version: "v1",
            ..Default::default()
        };
        let lat = latency_ms(p.rng, 0.5, 5.0);
        let mut call = simple(
            uuid4(p.rng),
            Level::Metadata,
            &p.s.uri,
            "get",
            who,
            Some(obj),
            404,
            now,
            lat,
        );
        call.status = Status::Raw(&p.s.status);
        call.shape = Shape::Received;
        emit(p.sched, p.cluster_index, NO_TAG, &call);
    } else {
        let who = &c.actors[c.kcm];
        cat(&mut p.s.uri, &["/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager?timeout=5s"]);
        failure_status(
            &mut p.s.status,
            409,
            "Conflict",
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"kube-controller-manager\": the object has been modified; please apply your changes to the latest version and try again",
            Some(("kube-controller-manager", "coordination.k8s.io", "leases")),
        );
        let obj = ObjRef {
            resource: "leases",
            namespace: "kube-system",
            name: "kube-controller-manager",
            uid: &c.kcm_lease_uid,
            group: "coordination.k8s.io",
            version: "v1",
            resource_version: c.resource_version.saturating_sub(50),
            ..Default::default()
        };
        let lat = latency_ms(p.rng, 1.0, 10.0);
        let mut call = simple(
            uuid4(p.rng),
            Level::Metadata,
            &p.s.uri,
            "update",
            who,
            Some(obj),
            409,
            now,
            lat,
        );
        call.status = Status::Raw(&p.s.status);
        emit(p.sched, p.cluster_index, NO_TAG, &call);
    }
}
