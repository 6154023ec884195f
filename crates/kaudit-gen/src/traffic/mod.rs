//! The everyday traffic of a cluster, one request at a time, weighted like a
//! real cluster's audit log: mostly kubelets and controllers, then probes,
//! operators, people and CI, and a trickle of failed and denied requests.
//!
//! Each actor's module holds its requests as [`req::Req`] table rows and
//! the little code that picks a row and the place it goes to; [`MIX`] says
//! how often each actor's turn comes.

mod ci;
mod controllers;
mod failures;
mod kubelet;
mod people;
mod rare;
mod req;
mod services;

use crate::world::{Actor, Cluster};
use crate::write::write_str;
use crate::write::{Authz, Line, ObjRef, Status};
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
    /// The reason RBAC gives for self subject access reviews.
    pub basic_user_reason: Vec<u8>,
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
        let mut basic_user_reason = Vec::new();
        write_str(
            &mut basic_user_reason,
            &crate::world::rbac_reason(
                "system:basic-user",
                "system:basic-user",
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
            basic_user_reason,
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

/// Simulates one kind of everyday request received at `now`.
type Kind = fn(&mut Parts<'_>, &mut Cluster, i64);

/// How often each kind of request comes, by weight. The order is part of
/// the output (a seed picks by position), so new kinds go at the end.
const MIX: &[(u32, Kind)] = &[
    (150, kubelet::lease),
    (70, kubelet::node_status),
    (90, kubelet::pod_status),
    (35, kubelet::get),
    (22, kubelet::watch),
    (70, controllers::leader_lease),
    (100, controllers::update),
    (40, controllers::read),
    (14, controllers::watch),
    (15, controllers::scheduler_bind),
    (16, controllers::pod_create),
    (10, controllers::pod_delete),
    (55, services::operator),
    (10, services::proxy_watch),
    (20, services::apiserver_self),
    (60, services::probe),
    (18, services::metrics),
    (15, people::discovery),
    (45, people::kubectl),
    (25, ci::deploy),
    (8, failures::unauthenticated),
    (14, failures::forbidden),
    (8, failures::not_found_or_conflict),
    // The rarer verbs and shapes: a fraction of a percent each.
    (3, rare::proxy),
    (5, rare::access_review),
    (1, rare::can_i),
    (2, rare::impersonated),
];

pub(crate) use rare::namespace_deletion;

/// Simulates one ordinary request received at `now`.
pub(crate) fn request(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let x = p.rng.gen_range(0..req::total(MIX));
    req::by_weight(MIX, x)(p, c, now);
}
