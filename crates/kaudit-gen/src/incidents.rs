//! Injected attacks and misconfigurations, with their ground truth.
//!
//! Each incident is a handful of requests mixed into ordinary traffic; the
//! [`Incident`] record lists their auditIDs and key facts so that search and
//! detection can be scored against what really happened.

use crate::bodies::{self, PodSpec, Stored};
use crate::traffic::{emit, latency_ms, Call, Parts, Shape};
use crate::world::{random_suffix, uuid4, Cluster};
use crate::write::{Authz, ObjRef, Status};
use kaudit_event::{Level, MicroTime};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The kinds of incident the generator injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// An interactive shell exec'd into a running pod.
    ExecIntoPod,
    /// A pod created with `securityContext.privileged: true`.
    PrivilegedPod,
    /// A pod mounting the node's root filesystem (`hostPath: /`).
    HostPathRootMount,
    /// A ClusterRoleBinding granting `cluster-admin`.
    ClusterAdminBinding,
    /// A service account listing and reading secrets across namespaces.
    SecretEnumeration,
    /// An unauthenticated (`system:anonymous`) request that RBAC allowed.
    AnonymousAllowed,
    /// Deletion of Kubernetes events (covering tracks).
    EventsDeleted,
    /// An admission webhook configuration changed to fail open.
    WebhookConfigChanged,
}

impl IncidentKind {
    /// Every kind, in injection order.
    pub const ALL: [IncidentKind; 8] = [
        IncidentKind::ExecIntoPod,
        IncidentKind::PrivilegedPod,
        IncidentKind::HostPathRootMount,
        IncidentKind::ClusterAdminBinding,
        IncidentKind::SecretEnumeration,
        IncidentKind::AnonymousAllowed,
        IncidentKind::EventsDeleted,
        IncidentKind::WebhookConfigChanged,
    ];

    /// The name used in the incidents file (`exec_into_pod`).
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::ExecIntoPod => "exec_into_pod",
            IncidentKind::PrivilegedPod => "privileged_pod",
            IncidentKind::HostPathRootMount => "host_path_root_mount",
            IncidentKind::ClusterAdminBinding => "cluster_admin_binding",
            IncidentKind::SecretEnumeration => "secret_enumeration",
            IncidentKind::AnonymousAllowed => "anonymous_allowed",
            IncidentKind::EventsDeleted => "events_deleted",
            IncidentKind::WebhookConfigChanged => "webhook_config_changed",
        }
    }
}

/// Ground truth of one injected incident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// What happened.
    pub kind: IncidentKind,
    /// The cluster it happened in.
    pub cluster: String,
    /// auditIDs of every request that is part of it, in request order.
    #[serde(rename = "auditIDs")]
    pub audit_ids: Vec<String>,
    /// One sentence for people reading the file.
    pub description: String,
    /// Who did it (the authenticated username).
    pub user: String,
    /// Namespace of the target, empty when cluster-scoped.
    pub namespace: String,
    /// Name of the target object, empty for collection requests.
    pub name: String,
    /// The verb of the defining request.
    pub verb: String,
    /// The resource of the defining request (empty for non-resource URLs).
    pub resource: String,
    /// When the first request was received.
    pub time: String,
}

struct Builder {
    ids: Vec<String>,
    requests: u32,
}

impl Builder {
    fn id(&mut self, rng: &mut rand_chacha::ChaCha8Rng) -> [u8; 36] {
        let id = uuid4(rng);
        self.ids.push(String::from_utf8_lossy(&id).into_owned());
        self.requests += 1;
        id
    }
}

// One argument per event field, so call sites read like the event.
#[allow(clippy::too_many_arguments)]
fn call<'a>(
    id: [u8; 36],
    level: Level,
    uri: &'a [u8],
    verb: &'a str,
    who: &'a crate::world::Actor,
    obj: Option<ObjRef<'a>>,
    code: u16,
    received: i64,
    latency: i64,
    shape: Shape,
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
        authz: Authz::Allow(&who.reason),
        psa: None,
        shape,
    }
}

fn set_uri(out: &mut Vec<u8>, parts: &[&str]) {
    out.clear();
    for p in parts {
        out.extend_from_slice(p.as_bytes());
    }
}

/// Injects one incident of `kind` starting at `now`; returns its record and
/// how many requests it is made of. Every request's first event carries `tag`.
pub(crate) fn inject(
    p: &mut Parts<'_>,
    c: &mut Cluster,
    kind: IncidentKind,
    now: i64,
    tag: u32,
) -> (Incident, u32) {
    let mut b = Builder {
        ids: Vec::new(),
        requests: 0,
    };
    let ci = p.cluster_index;
    let rv = c.next_rv(p.rng);
    let (user, namespace, name, verb, resource, description): (
        String,
        String,
        String,
        &str,
        &str,
        String,
    );
    match kind {
        IncidentKind::ExecIntoPod => {
            let wl = &c.workloads[p.rng.gen_range(0..c.workloads.len())];
            let ns = c.namespaces[wl.namespace];
            let pod = wl.pods[0].clone();
            let who = &c.actors[c.humans[1]];
            set_uri(
                &mut p.s.uri,
                &[
                    "/api/v1/namespaces/",
                    ns,
                    "/pods/",
                    &pod,
                    "/exec?command=%2Fbin%2Fsh&container=app&stdin=true&stdout=true&tty=true",
                ],
            );
            let obj = ObjRef {
                resource: "pods",
                namespace: ns,
                name: &pod,
                version: "v1",
                subresource: "exec",
                ..Default::default()
            };
            let started = latency_ms(p.rng, 20.0, 90.0);
            let session = latency_ms(p.rng, 20_000.0, 300_000.0);
            let c1 = call(
                b.id(p.rng),
                Level::Metadata,
                &p.s.uri,
                "create",
                who,
                Some(obj),
                101,
                now,
                session,
                Shape::Long(started),
            );
            emit(p.sched, ci, tag, &c1);
            user = who.username.clone();
            namespace = ns.to_string();
            name = pod.clone();
            verb = "create";
            resource = "pods";
            description =
                format!("{user} opened an interactive shell (/bin/sh, tty) in pod {ns}/{pod}");
        }
        IncidentKind::PrivilegedPod | IncidentKind::HostPathRootMount => {
            let privileged = kind == IncidentKind::PrivilegedPod;
            let (who_i, ns, base, image) = if privileged {
                (
                    c.ci[1],
                    "ci",
                    "build-dind",
                    "docker.io/library/docker:27.1-dind",
                )
            } else {
                (
                    c.humans[3],
                    "monitoring",
                    "node-debugger",
                    "docker.io/library/alpine:3.20",
                )
            };
            let pod = format!("{base}-{}", random_suffix(p.rng, 5));
            let token = format!("kube-api-access-{}", random_suffix(p.rng, 5));
            let spec = PodSpec {
                namespace: ns,
                name: &pod,
                app: base,
                template_hash: "",
                owner: None,
                image,
                port: 2375,
                service_account: "default",
                token_volume: &token,
                privileged,
                host_root: !privileged,
                sidecar: false,
            };
            let uid = crate::world::uuid_string(p.rng);
            let stored = Stored {
                uid: &uid,
                resource_version: rv,
                created: now,
                manager: "kubectl-run",
            };
            p.s.body.clear();
            p.s.resp.clear();
            bodies::pod(&mut p.s.body, &mut p.sched.tf, &spec, None);
            bodies::pod(&mut p.s.resp, &mut p.sched.tf, &spec, Some(&stored));
            set_uri(
                &mut p.s.uri,
                &["/api/v1/namespaces/", ns, "/pods?fieldManager=kubectl-run"],
            );
            let who = &c.actors[who_i];
            let obj = ObjRef {
                resource: "pods",
                namespace: ns,
                name: &pod,
                version: "v1",
                ..Default::default()
            };
            let lat = latency_ms(p.rng, 8.0, 60.0);
            let mut c1 = call(
                b.id(p.rng),
                Level::RequestResponse,
                &p.s.uri,
                "create",
                who,
                Some(obj),
                201,
                now,
                lat,
                Shape::Received,
            );
            c1.req = Some(&p.s.body);
            c1.resp = Some(&p.s.resp);
            c1.psa = Some("privileged:latest");
            emit(p.sched, ci, tag, &c1);
            user = who.username.clone();
            namespace = ns.to_string();
            name = pod.clone();
            verb = "create";
            resource = "pods";
            description = if privileged {
                format!(
                    "{user} created privileged pod {ns}/{pod} (securityContext.privileged=true)"
                )
            } else {
                format!("{user} created pod {ns}/{pod} mounting the node's root filesystem (hostPath /)")
            };
        }
        IncidentKind::ClusterAdminBinding => {
            let who = &c.actors[c.humans[2]];
            let crb = format!(
                "{}-admin-{}",
                who.username.split('@').next().unwrap_or("user"),
                random_suffix(p.rng, 4)
            );
            let uid = crate::world::uuid_string(p.rng);
            let stored = Stored {
                uid: &uid,
                resource_version: rv,
                created: now,
                manager: "kubectl-create",
            };
            p.s.body.clear();
            p.s.resp.clear();
            bodies::binding(
                &mut p.s.body,
                &mut p.sched.tf,
                "",
                &crb,
                "ClusterRole",
                "cluster-admin",
                "User",
                &who.username,
                None,
            );
            bodies::binding(
                &mut p.s.resp,
                &mut p.sched.tf,
                "",
                &crb,
                "ClusterRole",
                "cluster-admin",
                "User",
                &who.username,
                Some(&stored),
            );
            set_uri(&mut p.s.uri, &["/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?fieldManager=kubectl-create&fieldValidation=Strict"]);
            let obj = ObjRef {
                resource: "clusterrolebindings",
                name: &crb,
                group: "rbac.authorization.k8s.io",
                version: "v1",
                ..Default::default()
            };
            let lat = latency_ms(p.rng, 4.0, 30.0);
            let mut c1 = call(
                b.id(p.rng),
                Level::RequestResponse,
                &p.s.uri,
                "create",
                who,
                Some(obj),
                201,
                now,
                lat,
                Shape::Received,
            );
            c1.req = Some(&p.s.body);
            c1.resp = Some(&p.s.resp);
            emit(p.sched, ci, tag, &c1);
            user = who.username.clone();
            namespace = String::new();
            name = crb.clone();
            verb = "create";
            resource = "clusterrolebindings";
            description = format!(
                "{user} bound ClusterRole cluster-admin to themselves (ClusterRoleBinding {crb})"
            );
        }
        IncidentKind::SecretEnumeration => {
            let who = &c.actors[c.compromised_sa];
            let mut t = now;
            set_uri(&mut p.s.uri, &["/api/v1/secrets?limit=500"]);
            let obj = ObjRef {
                resource: "secrets",
                version: "v1",
                ..Default::default()
            };
            let lat = latency_ms(p.rng, 10.0, 80.0);
            emit(
                p.sched,
                ci,
                tag,
                &call(
                    b.id(p.rng),
                    Level::Metadata,
                    &p.s.uri,
                    "list",
                    who,
                    Some(obj),
                    200,
                    t,
                    lat,
                    Shape::Complete,
                ),
            );
            let n = p.rng.gen_range(3..=5);
            for k in 0..n {
                t += latency_ms(p.rng, 150.0, 2_000.0);
                let ns = c.namespaces
                    [c.first_app_ns + (k * 3 + 1) % (c.namespaces.len() - c.first_app_ns)];
                set_uri(
                    &mut p.s.uri,
                    &["/api/v1/namespaces/", ns, "/secrets?limit=500"],
                );
                let obj = ObjRef {
                    resource: "secrets",
                    namespace: ns,
                    version: "v1",
                    ..Default::default()
                };
                let lat = latency_ms(p.rng, 3.0, 30.0);
                emit(
                    p.sched,
                    ci,
                    tag,
                    &call(
                        b.id(p.rng),
                        Level::Metadata,
                        &p.s.uri,
                        "list",
                        who,
                        Some(obj),
                        200,
                        t,
                        lat,
                        Shape::Complete,
                    ),
                );
            }
            t += latency_ms(p.rng, 300.0, 3_000.0);
            set_uri(
                &mut p.s.uri,
                &["/api/v1/namespaces/kube-system/secrets/cloud-provider-credentials"],
            );
            let obj = ObjRef {
                resource: "secrets",
                namespace: "kube-system",
                name: "cloud-provider-credentials",
                version: "v1",
                ..Default::default()
            };
            let lat = latency_ms(p.rng, 1.0, 8.0);
            emit(
                p.sched,
                ci,
                tag,
                &call(
                    b.id(p.rng),
                    Level::Metadata,
                    &p.s.uri,
                    "get",
                    who,
                    Some(obj),
                    200,
                    t,
                    lat,
                    Shape::Complete,
                ),
            );
            user = who.username.clone();
            namespace = String::new();
            name = String::new();
            verb = "list";
            resource = "secrets";
            description = format!("{user} listed secrets cluster-wide and in {n} namespaces, then read kube-system/cloud-provider-credentials");
        }
        IncidentKind::AnonymousAllowed => {
            let who = &c.actors[c.anonymous_external];
            set_uri(
                &mut p.s.uri,
                &["/api/v1/namespaces/kube-system/configmaps?limit=500"],
            );
            let obj = ObjRef {
                resource: "configmaps",
                namespace: "kube-system",
                version: "v1",
                ..Default::default()
            };
            let lat = latency_ms(p.rng, 3.0, 30.0);
            emit(
                p.sched,
                ci,
                tag,
                &call(
                    b.id(p.rng),
                    Level::Metadata,
                    &p.s.uri,
                    "list",
                    who,
                    Some(obj),
                    200,
                    now,
                    lat,
                    Shape::Complete,
                ),
            );
            user = who.username.clone();
            namespace = "kube-system".into();
            name = String::new();
            verb = "list";
            resource = "configmaps";
            description = "an unauthenticated client listed configmaps in kube-system and RBAC allowed it (ClusterRoleBinding anonymous-debug)".into();
        }
        IncidentKind::EventsDeleted => {
            let who = &c.actors[c.humans[3]];
            let n = p.rng.gen_range(3..=6);
            let mut t = now;
            let mut first = String::new();
            for k in 0..n {
                let wl = &c.workloads[p.rng.gen_range(0..c.workloads.len())];
                let ev = format!("{}.{:016x}", wl.pods[0], p.rng.gen::<u64>() >> 4);
                if k == 0 {
                    first = ev.clone();
                }
                set_uri(
                    &mut p.s.uri,
                    &["/api/v1/namespaces/kube-system/events/", &ev],
                );
                let obj = ObjRef {
                    resource: "events",
                    namespace: "kube-system",
                    name: &ev,
                    version: "v1",
                    ..Default::default()
                };
                let lat = latency_ms(p.rng, 2.0, 20.0);
                emit(
                    p.sched,
                    ci,
                    tag,
                    &call(
                        b.id(p.rng),
                        Level::Metadata,
                        &p.s.uri,
                        "delete",
                        who,
                        Some(obj),
                        200,
                        t,
                        lat,
                        Shape::Received,
                    ),
                );
                t += latency_ms(p.rng, 100.0, 900.0);
            }
            user = who.username.clone();
            namespace = "kube-system".into();
            name = first;
            verb = "delete";
            resource = "events";
            description = format!("{user} deleted {n} events in kube-system");
        }
        IncidentKind::WebhookConfigChanged => {
            let who = &c.actors[c.humans[2]];
            let wh = "gatekeeper-validating-webhook-configuration";
            let uid = crate::world::uuid_string(p.rng);
            let stored = Stored {
                uid: &uid,
                resource_version: rv,
                created: now - 30 * 86_400_000_000,
                manager: "kubectl-edit",
            };
            p.s.body.clear();
            p.s.body.extend_from_slice(
                br#"{"webhooks":[{"failurePolicy":"Ignore","name":"validation.gatekeeper.sh","timeoutSeconds":1}]}"#,
            );
            p.s.resp.clear();
            bodies::webhook_config(&mut p.s.resp, &mut p.sched.tf, wh, true, Some(&stored));
            set_uri(
                &mut p.s.uri,
                &[
                    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/",
                    wh,
                    "?fieldManager=kubectl-edit&fieldValidation=Strict",
                ],
            );
            let obj = ObjRef {
                resource: "validatingwebhookconfigurations",
                name: wh,
                group: "admissionregistration.k8s.io",
                version: "v1",
                ..Default::default()
            };
            let lat = latency_ms(p.rng, 4.0, 30.0);
            let mut c1 = call(
                b.id(p.rng),
                Level::RequestResponse,
                &p.s.uri,
                "patch",
                who,
                Some(obj),
                200,
                now,
                lat,
                Shape::Received,
            );
            c1.req = Some(&p.s.body);
            c1.resp = Some(&p.s.resp);
            emit(p.sched, ci, tag, &c1);
            user = who.username.clone();
            namespace = String::new();
            name = wh.into();
            verb = "patch";
            resource = "validatingwebhookconfigurations";
            description = format!("{user} set failurePolicy=Ignore on ValidatingWebhookConfiguration {wh} (admission fails open)");
        }
    }
    let incident = Incident {
        kind,
        cluster: c.name.clone(),
        audit_ids: b.ids,
        description,
        user,
        namespace,
        name,
        verb: verb.to_string(),
        resource: resource.to_string(),
        time: MicroTime(now).to_string(),
    };
    (incident, b.requests)
}
