//! Cluster services talking to the apiserver: operators, kube-proxy and
//! CoreDNS, the apiserver's own loops, health probes and Prometheus.

use super::controllers::WATCHED;
use super::req::{Place, Req, Target, V::*};
use super::Parts;
use crate::world::Cluster;
use rand::Rng;

const NGINX_CONFIG: Req = Req::to(
    "get",
    Target::of("configmaps", "")
        .ns(Lit("ingress-nginx"))
        .name(Lit("ingress-nginx-controller")),
)
.ms(1.0, 8.0);

const NGINX_LEASE: Req = Req::to(
    "update",
    Target::of("leases", "coordination.k8s.io")
        .ns(Lit("ingress-nginx"))
        .name(Lit("ingress-nginx-leader"))
        .rv(),
)
.ms(1.5, 15.0);

const CERT_MANAGER_LEASE: Req = Req::to(
    "update",
    Target::of("leases", "coordination.k8s.io")
        .ns(Lit("kube-system"))
        .name(Lit("cert-manager-controller"))
        .rv(),
)
.ms(1.5, 15.0);

/// cert-manager checks each namespace's `<ns>-tls` Certificate; the
/// objectRef names it `tls`, as the generator always has.
const CERTIFICATE: Req = Req::to(
    "get",
    Target::of("certificates", "cert-manager.io")
        .ns(Ns)
        .name(Lit("tls")),
)
.path(&[
    Lit("/apis/cert-manager.io/v1/namespaces/"),
    Ns,
    Lit("/certificates/"),
    Ns,
    Lit("-tls"),
])
.ms(1.0, 8.0);

/// The first operators (ingress-nginx, cert-manager), by a roll of 0..3.
const OPERATORS: [[Req; 3]; 2] = [
    [NGINX_CONFIG, NGINX_LEASE, NGINX_LEASE],
    [CERT_MANAGER_LEASE, CERTIFICATE, CERTIFICATE],
];

/// What the other operators do: relist one of the first five [`WATCHED`] collections.
const RELIST: Req = Req::to("list", WATCHED[0])
    .query(&[Lit("?limit=500&resourceVersion=0")])
    .ms(4.0, 120.0);

/// kube-proxy's informer on the Services it proxies.
const PROXY_SLICES: Req = Req::informer(Target::of("endpointslices", "discovery.k8s.io")).query(&[
    Lit("labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name"),
]);

/// CoreDNS's informer on namespaces.
const COREDNS_NAMESPACES: Req = Req::informer(Target::of("namespaces", ""));

/// The apiserver's own loops: the `kubernetes` Service endpoints, API
/// Priority and Fairness, quota.
const APISERVER: [Req; 3] = [
    Req::to(
        "get",
        Target::of("endpoints", "")
            .ns(Lit("default"))
            .name(Lit("kubernetes")),
    )
    .ms(0.5, 5.0),
    Req::informer(Target::of(
        "prioritylevelconfigurations",
        "flowcontrol.apiserver.k8s.io",
    )),
    Req::to(
        "list",
        Target::of("resourcequotas", "").ns(Lit("kube-system")),
    )
    .ms(0.5, 6.0),
];

const PROBES: [Req; 3] = [
    Req::url(&[Lit("/healthz")]).ms(0.3, 6.0),
    Req::url(&[Lit("/livez")]).ms(0.3, 6.0),
    Req::url(&[Lit("/readyz")]).ms(0.3, 6.0),
];

const SCRAPE: Req = Req::url(&[Lit("/metrics")]).ms(20.0, 400.0);

pub(super) fn operator(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let o = p.rng.gen_range(0..c.operators.len());
    let who = &c.actors[c.operators[o]];
    let w = p.rng.gen_range(0..c.workloads.len());
    let at = Place {
        ns: c.namespaces[c.workloads[w].namespace],
        rv: c.rv(),
        ..Place::default()
    };
    let roll = p.rng.gen_range(0..3i32) as usize;
    let row = match OPERATORS.get(o) {
        Some(rows) => rows[roll],
        None => RELIST.on(WATCHED[p.rng.gen_range(0..5)]),
    };
    p.send(&row, &at, who, now);
}

pub(super) fn proxy_watch(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let (who, row) = if p.rng.gen_bool(0.6) {
        let who = c.kube_proxy[p.rng.gen_range(0..c.kube_proxy.len())];
        (who, &PROXY_SLICES)
    } else {
        (c.coredns, &COREDNS_NAMESPACES)
    };
    let at = Place {
        rv: c.rv(),
        ..Place::default()
    };
    p.send(row, &at, &c.actors[who], now);
}

pub(super) fn apiserver_self(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let row = &APISERVER[p.rng.gen_range(0..3i32) as usize];
    let at = Place {
        rv: c.rv(),
        ..Place::default()
    };
    p.send(row, &at, &c.actors[c.apiserver], now);
}

pub(super) fn probe(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    let row = &PROBES[p.rng.gen_range(0..PROBES.len())];
    p.send(row, &Place::default(), &c.actors[c.probe], now);
}

pub(super) fn metrics(p: &mut Parts<'_>, c: &mut Cluster, now: i64) {
    p.send(&SCRAPE, &Place::default(), &c.actors[c.prometheus], now);
}
