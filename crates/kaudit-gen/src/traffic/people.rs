//! People running kubectl: discovery, reads, logs, applies, creates,
//! deletes, exec and port-forward. The audit policy records RequestReceived
//! for them, so every row but the streams says [`Stages::Received`].

use super::req::{self, Auth, Body, Place, Req, Stages, Target, V::*};
use super::Parts;
use crate::bodies::{self, Stored};
use crate::world::{random_suffix, uuid4, Cluster};
use crate::write::TimeFmt;
use kaudit_event::Level;
use rand::Rng;

/// Discovery before a command (people 70%, CI the rest); allowed by
/// `system:discovery` whatever the caller's own bindings.
const DISCOVERY: [Req; 5] = [
    Req::url(&[Lit("/version?timeout=32s")])
        .auth(Auth::Discovery)
        .ms(0.5, 5.0),
    Req::url(&[Lit("/api?timeout=32s")])
        .auth(Auth::Discovery)
        .ms(0.5, 5.0),
    Req::url(&[Lit("/apis?timeout=32s")])
        .auth(Auth::Discovery)
        .ms(0.5, 5.0),
    Req::url(&[Lit("/openapi/v2?timeout=32s")])
        .auth(Auth::Discovery)
        .ms(10.0, 300.0),
    Req::url(&[Lit("/openapi/v3?timeout=32s")])
        .auth(Auth::Discovery)
        .ms(10.0, 300.0),
];

const POD: Target = Target::of("pods", "").ns(Ns).name(Pod);

const LIST_PODS: Req = Req::to("list", Target::of("pods", "").ns(Ns))
    .query(&[Lit("?limit=500")])
    .stages(Stages::Received)
    .ms(3.0, 80.0);
const GET_POD: Req = Req::to("get", POD).stages(Stages::Received).ms(1.0, 10.0);
const LOGS: Req = Req::to("get", POD.sub("log"))
    .query(&[Lit("?container=app&tailLines=100")])
    .stages(Stages::Received)
    .ms(10.0, 400.0);
const LOGS_FOLLOW: Req = LOGS
    .query(&[Lit("?container=app&follow=true&tailLines=100")])
    .ms(5_000.0, 900_000.0);
const LIST_NODES: Req = Req::to("list", Target::of("nodes", ""))
    .query(&[Lit("?limit=500")])
    .stages(Stages::Received)
    .ms(5.0, 60.0);
/// `kubectl apply` (client-side): a strategic-merge patch of the Deployment.
const APPLY: Req = Req::to("patch", Target::of("deployments", "apps").ns(Ns).name(App))
    .query(&[Lit(
        "?fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
    )])
    .level(Level::RequestResponse)
    .body(Body::Both)
    .stages(Stages::Received)
    .ms(5.0, 60.0);
const DELETE_POD: Req = Req::to("delete", POD)
    .stages(Stages::Received)
    .ms(5.0, 50.0);
/// A routine, non-interactive exec (not an incident).
const EXEC: Req = Req::to("create", POD.sub("exec"))
    .query(&[
        Lit("?command="),
        Arg,
        Lit("&container=app&stderr=true&stdout=true"),
    ])
    .code(101)
    .stages(Stages::Stream(20.0, 80.0))
    .ms(80.0, 2_000.0);
const EXEC_COMMANDS: [&str; 4] = [
    "env",
    "date",
    "ps&command=aux",
    "cat&command=%2Fetc%2Fresolv.conf",
];
const PORT_FORWARD: Req = Req::to("create", POD.sub("portforward"))
    .code(101)
    .stages(Stages::Stream(20.0, 80.0))
    .ms(30_000.0, 1_800_000.0);
/// `kubectl describe pod`'s events.
const EVENTS: Req = Req::to("list", Target::of("events", "").ns(Ns))
    .query(&[
        Lit("?fieldSelector=involvedObject.name%3D"),
        Pod,
        Lit("%2CinvolvedObject.namespace%3D"),
        Ns,
        Lit("%2CinvolvedObject.uid%3D"),
        PodUid,
    ])
    .stages(Stages::Received)
    .ms(2.0, 30.0);

/// `kubectl create` of a small object, by kind (Secrets are logged at
/// Metadata level only, as policies do to keep their data out).
const CREATE: Target = Target::of("", "").ns(Ns).name(Name);
const CREATES: [Req; 4] = [
    create(
        Target {
            resource: "configmaps",
            ..CREATE
        },
        Level::RequestResponse,
    ),
    create(
        Target {
            resource: "secrets",
            ..CREATE
        },
        Level::Metadata,
    ),
    create(
        Target {
            resource: "roles",
            group: "rbac.authorization.k8s.io",
            ..CREATE
        },
        Level::RequestResponse,
    ),
    create(
        Target {
            resource: "rolebindings",
            group: "rbac.authorization.k8s.io",
            ..CREATE
        },
        Level::RequestResponse,
    ),
];

const fn create(target: Target, level: Level) -> Req {
    Req::to("create", target)
        .query(&[Lit("?fieldManager=kubectl-create&fieldValidation=Strict")])
        .code(201)
        .level(level)
        .body(Body::Both)
        .stages(Stages::Received)
        .ms(4.0, 40.0)
}

/// A kubectl command: a plain row, or one that needs a draw or bodies first.
#[derive(Clone, Copy)]
enum Kubectl {
    Row(&'static Req),
    Logs,
    Apply,
    Create,
    Exec,
}

/// What people do, by share of 100.
const KUBECTL: &[(u32, Kubectl)] = &[
    (30, Kubectl::Row(&LIST_PODS)),
    (15, Kubectl::Row(&GET_POD)),
    (10, Kubectl::Logs),
    (5, Kubectl::Row(&LIST_NODES)),
    (12, Kubectl::Apply),
    (6, Kubectl::Create),
    (6, Kubectl::Row(&DELETE_POD)),
    (6, Kubectl::Exec),
    (5, Kubectl::Row(&PORT_FORWARD)),
    (5, Kubectl::Row(&EVENTS)),
];

pub(super) fn discovery(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let row = &DISCOVERY[p.rng.gen_range(0..DISCOVERY.len())];
    let who = if p.rng.gen_bool(0.7) {
        c.humans[p.rng.gen_range(0..c.humans.len())]
    } else {
        c.ci[p.rng.gen_range(0..c.ci.len())]
    };
    p.send(row, &Place::default(), &c.actors[who], now);
}

/// Everyday kubectl use by people.
pub(super) fn kubectl(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let h = c.humans[p.rng.gen_range(0..c.humans.len())];
    let w = p.rng.gen_range(0..c.workloads.len());
    let rv = c.next_rv(p.rng);
    let wl = &c.workloads[w];
    let i = p.rng.gen_range(0..wl.pods.len());
    let mut at = Place {
        rv,
        ..Place::pod(c, wl, i)
    };
    let who = &c.actors[h];
    let id = uuid4(p.rng);
    let roll = p.rng.gen_range(0..100i32) as u32;
    let tf = &mut p.sched.tf;
    match *req::by_weight(KUBECTL, roll) {
        Kubectl::Row(row) => p.send_as(row, &at, who, id, now),
        Kubectl::Logs => {
            let row = if p.rng.gen_bool(0.3) {
                &LOGS_FOLLOW
            } else {
                &LOGS
            };
            p.send_as(row, &at, who, id, now);
        }
        Kubectl::Apply => {
            let s = &mut p.s;
            bodies::deployment_apply(
                &mut s.body,
                &mut s.resp,
                tf,
                at.ns,
                wl,
                rv,
                now,
                "kubectl-client-side-apply",
            );
            p.send_as(&APPLY, &at, who, id, now);
        }
        Kubectl::Create => {
            // The name is built in the scratch string, taken out while the
            // request borrows it and the other buffers are written.
            let mut name = std::mem::take(&mut p.s.msg);
            name.clear();
            name.push_str(&wl.name);
            name.push_str("-config-");
            name.push_str(&random_suffix(p.rng, 5));
            let k = p.rng.gen_range(0..4i32) as usize;
            let text = if k == 0 {
                let len = p.rng.gen_range(200..2_000);
                p.s.text_range(p.rng, len)
            } else {
                0..0
            };
            let text = &p.s.text[text];
            let stored = Stored {
                uid: "",
                resource_version: rv,
                created: now,
                manager: "kubectl-create",
            };
            created(&mut p.s.body, tf, k, at.ns, &name, text, None);
            created(&mut p.s.resp, tf, k, at.ns, &name, text, Some(&stored));
            at.name = &name;
            p.send_as(&CREATES[k], &at, who, id, now);
            p.s.msg = name;
        }
        Kubectl::Exec => {
            at.arg = EXEC_COMMANDS[p.rng.gen_range(0..EXEC_COMMANDS.len())];
            p.send_as(&EXEC, &at, who, id, now);
        }
    }
}

/// The body of [`CREATES`]`[k]` named `name`: as sent, or as stored.
fn created(
    out: &mut Vec<u8>,
    tf: &mut TimeFmt,
    k: usize,
    ns: &str,
    name: &str,
    text: &[u8],
    stored: Option<&Stored<'_>>,
) {
    out.clear();
    match k {
        0 => bodies::configmap(out, tf, ns, name, "settings.json", text, stored),
        1 => bodies::secret(out, tf, ns, name, "czNjcjN0LXBhc3N3MHJk", stored),
        2 => bodies::role(out, tf, ns, name, stored),
        _ => bodies::binding(
            out,
            tf,
            ns,
            name,
            "Role",
            "developer",
            "Group",
            "dev-team",
            stored,
        ),
    }
}
