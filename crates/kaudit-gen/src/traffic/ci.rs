//! CI and GitOps (Argo CD, pipelines running kubectl): server-side applies
//! with full objects, large ConfigMaps, and `kubectl rollout status`. Their
//! policy records RequestReceived for half of the requests ([`Stages::Coin`]).

use super::req::{self, Body, Place, Req, Stages, Target, V::*};
use super::Parts;
use crate::bodies::{self, Stored};
use crate::world::{uuid4, Cluster};
use kaudit_event::Level;
use rand::Rng;

const DEPLOYMENT: Target = Target::of("deployments", "apps").ns(Ns).name(App);

const GET: Req = Req::to("get", DEPLOYMENT)
    .stages(Stages::Coin)
    .ms(1.0, 10.0);
/// A forced server-side apply of the Deployment, by the pipeline's field manager.
const APPLY: Req = Req::to("patch", DEPLOYMENT)
    .query(&[Lit("?fieldManager="), Arg, Lit("&force=true")])
    .level(Level::RequestResponse)
    .body(Body::Both)
    .stages(Stages::Coin)
    .ms(5.0, 80.0);
/// Dashboards and configs shipped as ConfigMaps: the 10-60 KB tail.
const DASHBOARDS: Req = Req::to("patch", Target::of("configmaps", "").ns(Ns).name(Name))
    .query(&[Lit("?fieldManager=argocd-controller&force=true")])
    .level(Level::RequestResponse)
    .body(Body::Both)
    .stages(Stages::Coin)
    .ms(5.0, 120.0);
/// `kubectl rollout status`: a watch on the Deployment until it is rolled out.
const ROLLOUT_STATUS: Req = Req::informer(Target::of("deployments", "apps").ns(Ns))
    .query(&[Lit("fieldSelector=metadata.name%3D"), App])
    .stages(Stages::WatchFor(5_000.0, 120_000.0));

#[derive(Clone, Copy)]
enum Deploy {
    Get,
    Apply,
    Dashboards,
    RolloutStatus,
}

/// What CI does, by share of 100.
const DEPLOY: &[(u32, Deploy)] = &[
    (35, Deploy::Get),
    (30, Deploy::Apply),
    (20, Deploy::Dashboards),
    (15, Deploy::RolloutStatus),
];

pub(super) fn deploy(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let k = p.rng.gen_range(0..c.ci.len());
    let w = p.rng.gen_range(0..c.workloads.len());
    let rv = c.next_rv(p.rng);
    let who = &c.actors[c.ci[k]];
    let wl = &c.workloads[w];
    let mut at = Place {
        rv,
        ..Place::workload(c, wl)
    };
    let id = uuid4(p.rng);
    let tf = &mut p.sched.tf;
    let roll = p.rng.gen_range(0..100i32) as u32;
    match req::by_weight(DEPLOY, roll) {
        Deploy::Get => p.send_as(&GET, &at, who, id, now),
        Deploy::Apply => {
            // The first CI actor is Argo CD; the others are pipelines.
            at.arg = if k == 0 {
                "argocd-controller"
            } else {
                "kubectl"
            };
            let s = &mut p.s;
            bodies::deployment_apply(&mut s.body, &mut s.resp, tf, at.ns, wl, rv, now, at.arg);
            p.send_as(&APPLY, &at, who, id, now);
        }
        Deploy::Dashboards => {
            let len = if p.rng.gen_bool(0.25) {
                p.rng.gen_range(5_000..26_000)
            } else {
                p.rng.gen_range(300..3_000)
            };
            let range = p.s.text_range(p.rng, len);
            let text = &p.s.text[range];
            // Named in the scratch string, taken out while the request borrows it.
            let mut name = std::mem::take(&mut p.s.msg);
            name.clear();
            name.push_str(&wl.name);
            name.push_str("-dashboards");
            p.s.body.clear();
            p.s.resp.clear();
            bodies::configmap(
                &mut p.s.body,
                tf,
                at.ns,
                &name,
                "dashboard.json",
                text,
                None,
            );
            let stored = Stored {
                uid: &wl.pod_uids[0],
                resource_version: rv,
                created: now - 864_000_000_000,
                manager: "argocd-controller",
            };
            bodies::configmap(
                &mut p.s.resp,
                tf,
                at.ns,
                &name,
                "dashboard.json",
                text,
                Some(&stored),
            );
            at.name = &name;
            p.send_as(&DASHBOARDS, &at, who, id, now);
            p.s.msg = name;
        }
        Deploy::RolloutStatus => p.send_as(&ROLLOUT_STATUS, &at, who, id, now),
    }
}
