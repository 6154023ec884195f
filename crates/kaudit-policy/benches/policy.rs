//! Policy evaluation and application speed, each against a baseline in the
//! same run:
//!
//! * `eval/compiled` vs `eval/naive`: the GCE policy
//!   (policies/gce-configure-helper-audit-policy.yaml) on a mix of typical
//!   requests; target < 200 ns per event.
//! * `apply/metadata` vs `eval/from_event`: applying the policy and redaction
//!   to Metadata-level events (`PolicyApplier::check`, which decides keep /
//!   replace / drop without copying the event), against evaluating them
//!   only; target: the difference < 1 µs per event.
//! * `apply/secret_redaction`: a RequestResponse Secret event, for scale.
//!
//! Run: `cargo bench -p kaudit-policy --bench policy`. The ratios are printed
//! at the end from a separate timing loop over the same inputs.

use criterion::{black_box, BatchSize, Criterion};
use kaudit_event::Event;
use kaudit_policy::{
    evaluate_naive, load_policy_file, ApplyOptions, CompiledPolicy, Policy, PolicyApplier,
    RequestAttributes, UserAttrs,
};
use std::path::PathBuf;
use std::time::Instant;

fn gce_policy() -> Policy {
    let dir = std::env::var_os("KAUDIT_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
        });
    let path = dir.join("k8s/policies/gce-configure-helper-audit-policy.yaml");
    load_policy_file(&path)
        .unwrap_or_else(|e| panic!("conformance data missing or bad ({e}); set KAUDIT_CONFORMANCE"))
        .policy
}

/// (user, groups, verb, namespace, group, resource, subresource, name, path)
type Req = (
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

const NODE: &[&str] = &["system:nodes", "system:authenticated"];
const SA: &[&str] = &[
    "system:serviceaccounts",
    "system:serviceaccounts:kube-system",
    "system:authenticated",
];
const HUMAN: &[&str] = &["developers", "system:authenticated"];

/// A mix shaped like real apiserver traffic: node and controller chatter,
/// health checks, reads, some writes, a few sensitive resources and CRDs.
const MIX: [Req; 16] = [
    (
        "system:kube-proxy",
        &["system:authenticated"],
        "watch",
        "",
        "",
        "endpoints",
        "",
        "",
        "/api/v1/endpoints",
    ),
    (
        "system:node:n1",
        NODE,
        "get",
        "",
        "",
        "nodes",
        "",
        "n1",
        "/api/v1/nodes/n1",
    ),
    (
        "system:node:n1",
        NODE,
        "patch",
        "",
        "",
        "nodes",
        "status",
        "n1",
        "/api/v1/nodes/n1/status",
    ),
    (
        "system:node:n1",
        NODE,
        "patch",
        "default",
        "",
        "pods",
        "status",
        "p",
        "/api/v1/namespaces/default/pods/p/status",
    ),
    (
        "system:kube-controller-manager",
        &["system:authenticated"],
        "get",
        "kube-system",
        "",
        "endpoints",
        "",
        "kcm",
        "/api/v1/namespaces/kube-system/endpoints/kcm",
    ),
    (
        "system:kube-scheduler",
        &["system:authenticated"],
        "update",
        "kube-system",
        "coordination.k8s.io",
        "leases",
        "",
        "kube-scheduler",
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler",
    ),
    (
        "system:anonymous",
        &["system:unauthenticated"],
        "get",
        "",
        "",
        "",
        "",
        "",
        "/healthz",
    ),
    (
        "system:serviceaccount:kube-system:deployment-controller",
        SA,
        "list",
        "",
        "apps",
        "deployments",
        "",
        "",
        "/apis/apps/v1/deployments",
    ),
    (
        "system:serviceaccount:kube-system:replicaset-controller",
        SA,
        "create",
        "default",
        "",
        "pods",
        "",
        "",
        "/api/v1/namespaces/default/pods",
    ),
    (
        "alice@example.com",
        HUMAN,
        "get",
        "default",
        "",
        "secrets",
        "",
        "db",
        "/api/v1/namespaces/default/secrets/db",
    ),
    (
        "alice@example.com",
        HUMAN,
        "create",
        "default",
        "",
        "pods",
        "exec",
        "p",
        "/api/v1/namespaces/default/pods/p/exec",
    ),
    (
        "alice@example.com",
        HUMAN,
        "list",
        "default",
        "",
        "configmaps",
        "",
        "",
        "/api/v1/namespaces/default/configmaps",
    ),
    (
        "system:apiserver",
        &["system:masters"],
        "create",
        "",
        "authentication.k8s.io",
        "tokenreviews",
        "",
        "",
        "/apis/authentication.k8s.io/v1/tokenreviews",
    ),
    (
        "bob",
        HUMAN,
        "delete",
        "team",
        "rbac.authorization.k8s.io",
        "rolebindings",
        "",
        "rb",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings/rb",
    ),
    (
        "bob",
        HUMAN,
        "get",
        "team",
        "example.com",
        "widgets",
        "",
        "w",
        "/apis/example.com/v1/namespaces/team/widgets/w",
    ),
    (
        "system:serviceaccount:monitoring:prometheus",
        SA,
        "get",
        "",
        "",
        "",
        "",
        "",
        "/metrics",
    ),
];

struct OwnedReq {
    user: String,
    groups: Vec<String>,
    r: Req,
}

fn owned() -> Vec<OwnedReq> {
    MIX.iter()
        .map(|r| OwnedReq {
            user: r.0.to_string(),
            groups: r.1.iter().map(|g| g.to_string()).collect(),
            r: *r,
        })
        .collect()
}

fn attrs(o: &OwnedReq) -> RequestAttributes<'_> {
    RequestAttributes {
        user: Some(UserAttrs {
            name: &o.user,
            groups: &o.groups,
        }),
        verb: o.r.2,
        resource_request: !o.r.5.is_empty(),
        namespace: o.r.3,
        api_group: o.r.4,
        resource: o.r.5,
        subresource: o.r.6,
        name: o.r.7,
        path: o.r.8,
    }
}

/// The same mix as Metadata-level events (no bodies), as canonical v1 lines.
fn metadata_events() -> Vec<Event> {
    MIX.iter()
        .enumerate()
        .map(|(i, r)| {
            let mut v = serde_json::json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                "auditID": format!("00000000-0000-0000-0000-{i:012}"), "stage": "ResponseComplete",
                "requestURI": r.8, "verb": r.2,
                "user": {"username": r.0, "groups": r.1},
                "sourceIPs": ["10.0.0.1"], "userAgent": "kubectl/v1.31.0",
                "responseStatus": {"metadata": {}, "code": 200},
                "requestReceivedTimestamp": "2026-01-02T15:04:05.000000Z",
                "stageTimestamp": "2026-01-02T15:04:05.002000Z",
                "annotations": {"authorization.k8s.io/decision": "allow"}
            });
            if !r.5.is_empty() {
                v["objectRef"] = serde_json::json!({"resource": r.5, "namespace": r.3, "name": r.7,
                    "apiGroup": r.4, "apiVersion": "v1", "subresource": r.6});
            }
            Event::from_json(&serde_json::to_vec(&v).unwrap()).unwrap()
        })
        .collect()
}

fn secret_event() -> Event {
    let line = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"s1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets","verb":"create","user":{"username":"alice"},"objectRef":{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"password":"cGFzc3dvcmQ=","user":"YWRtaW4="}},"responseObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","uid":"u"},"data":{"password":"cGFzc3dvcmQ=","user":"YWRtaW4="}},"requestReceivedTimestamp":"2026-01-02T15:04:05.000000Z","stageTimestamp":"2026-01-02T15:04:05.002000Z"}"#;
    Event::from_json(line.as_bytes()).unwrap()
}

fn ns_per_event(n_events: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..1000 {
        f();
    }
    let rounds = 20_000;
    let start = Instant::now();
    for _ in 0..rounds {
        f();
    }
    start.elapsed().as_nanos() as f64 / (rounds * n_events) as f64
}

fn main() {
    let policy = gce_policy();
    let compiled = CompiledPolicy::new(policy.clone());
    let reqs = owned();
    let events = metadata_events();
    let applier = PolicyApplier::new(policy.clone(), ApplyOptions::default());
    let secret = secret_event();
    let rr_policy = {
        let mut p = policy.clone();
        for r in &mut p.rules {
            r.level = kaudit_event::Level::RequestResponse;
        }
        p
    };
    let rr_applier = PolicyApplier::new(rr_policy, ApplyOptions::default());

    // Both evaluators must agree on every input before their speed matters.
    for r in &reqs {
        assert_eq!(
            compiled.evaluate(&attrs(r)),
            evaluate_naive(&policy, &attrs(r))
        );
    }

    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("eval");
        g.throughput(criterion::Throughput::Elements(reqs.len() as u64));
        g.bench_function("compiled", |b| {
            b.iter(|| {
                for r in &reqs {
                    black_box(compiled.evaluate(black_box(&attrs(r))));
                }
            })
        });
        g.bench_function("naive", |b| {
            b.iter(|| {
                for r in &reqs {
                    black_box(evaluate_naive(&policy, black_box(&attrs(r))));
                }
            })
        });
        g.bench_function("from_event", |b| {
            b.iter(|| {
                for e in &events {
                    black_box(compiled.evaluate(&RequestAttributes::from_event(black_box(e))));
                }
            })
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("apply");
        g.throughput(criterion::Throughput::Elements(events.len() as u64));
        g.bench_function("metadata", |b| {
            b.iter(|| {
                for e in &events {
                    black_box(applier.check(black_box(e)));
                }
            })
        });
        g.finish();
        let mut g = c.benchmark_group("apply");
        g.bench_function("secret_redaction", |b| {
            b.iter_batched(
                || secret.clone(),
                |e| black_box(rr_applier.apply(e)),
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
    c.final_summary();

    let n = reqs.len();
    let t_compiled = ns_per_event(n, || {
        for r in &reqs {
            black_box(compiled.evaluate(black_box(&attrs(r))));
        }
    });
    let t_naive = ns_per_event(n, || {
        for r in &reqs {
            black_box(evaluate_naive(&policy, black_box(&attrs(r))));
        }
    });
    let t_eval_event = ns_per_event(n, || {
        for e in &events {
            black_box(compiled.evaluate(&RequestAttributes::from_event(black_box(e))));
        }
    });
    let t_apply = ns_per_event(n, || {
        for e in &events {
            black_box(applier.check(black_box(e)));
        }
    });
    let t_secret_clone = ns_per_event(1, || {
        black_box(secret.clone());
    });
    let t_secret = ns_per_event(1, || {
        black_box(rr_applier.apply(black_box(secret.clone())));
    }) - t_secret_clone;
    println!("RESULT eval GCE policy: compiled {t_compiled:.1} ns/event, naive {t_naive:.1} ns/event, naive/compiled = {:.2}x (target < 200 ns)", t_naive / t_compiled);
    println!("RESULT apply+redaction, Metadata events: {t_apply:.1} ns/event vs evaluate-only {t_eval_event:.1} ns/event: adds {:.1} ns (target < 1000 ns)", t_apply - t_eval_event);
    println!("RESULT apply+redaction, RequestResponse Secret create (2 bodies, 4 values): {t_secret:.0} ns/event");
}
