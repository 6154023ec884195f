//! The simulated clusters: nodes, namespaces, workloads and the identities
//! that talk to the apiserver. Built once per cluster from the seed; events
//! then only pick from it, so generation does no string formatting of names.

use crate::write::write_str;
use crate::write::J;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Kubernetes release the simulated control plane and clients run.
pub(crate) const K8S_VERSION: &str = "v1.31.0";
/// Short git commit of that release, as it appears in user agents.
pub(crate) const K8S_COMMIT: &str = "9edcffc";

/// The alphabet Kubernetes uses for generated name suffixes (no vowels).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub(crate) fn random_suffix(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| NAME_ALPHABET[rng.gen_range(0..NAME_ALPHABET.len())] as char)
        .collect()
}

/// A UUIDv4 in its canonical 36-character form.
pub(crate) fn uuid4(rng: &mut ChaCha8Rng) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut raw: [u8; 16] = rng.gen();
    raw[6] = (raw[6] & 0x0f) | 0x40;
    raw[8] = (raw[8] & 0x3f) | 0x80;
    let mut out = [0u8; 36];
    let mut o = 0;
    for (i, b) in raw.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[o] = b'-';
            o += 1;
        }
        out[o] = HEX[(b >> 4) as usize];
        out[o + 1] = HEX[(b & 0xf) as usize];
        o += 2;
    }
    out
}

pub(crate) fn uuid_string(rng: &mut ChaCha8Rng) -> String {
    String::from_utf8_lossy(&uuid4(rng)).into_owned()
}

/// Someone who sends requests: the user as authenticated, where they come
/// from, their client, and the reason RBAC gives when it allows them.
pub(crate) struct Actor {
    /// The username (empty for failed authentication).
    pub username: String,
    /// Pre-encoded `"user":{..},"sourceIPs":[..],"userAgent":".."`.
    pub identity: Vec<u8>,
    /// Pre-encoded JSON string for `authorization.k8s.io/reason`.
    pub reason: Vec<u8>,
    /// The identity carries an `impersonatedUser`.
    pub impersonated: bool,
}

/// How an identity is described in an RBAC reason.
pub(crate) enum Subject<'a> {
    User(&'a str),
    Group(&'a str),
    ServiceAccount { name: &'a str, namespace: &'a str },
}

/// The reason RBAC writes when a ClusterRoleBinding allows a request.
pub(crate) fn rbac_reason(binding: &str, role: &str, subject: Subject<'_>) -> String {
    let subject = match subject {
        Subject::User(u) => format!("User {u:?}"),
        Subject::Group(g) => format!("Group {g:?}"),
        Subject::ServiceAccount { name, namespace } => {
            format!("ServiceAccount \"{name}/{namespace}\"")
        }
    };
    format!("RBAC: allowed by ClusterRoleBinding {binding:?} of ClusterRole {role:?} to {subject}")
}

impl Actor {
    /// Builds an actor; `extra` must be sorted by key (Go writes maps sorted).
    pub(crate) fn new(
        username: &str,
        uid: &str,
        groups: &[&str],
        extra: &[(&str, String)],
        ips: &[&str],
        user_agent: &str,
        reason: &str,
    ) -> Actor {
        Actor::build(username, uid, groups, extra, None, ips, user_agent, reason)
    }

    /// Someone acting as another user (`kubectl --as=USER --as-group=GROUP`):
    /// the event's `user` stays the real caller and `impersonatedUser` says
    /// who the request ran as; `reason` is RBAC's answer for the impersonated
    /// user, since authorization runs after impersonation.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn impersonating(
        username: &str,
        groups: &[&str],
        as_user: &str,
        as_groups: &[&str],
        ips: &[&str],
        user_agent: &str,
        reason: &str,
    ) -> Actor {
        let mut actor = Actor::build(
            username,
            "",
            groups,
            &[],
            Some((as_user, as_groups)),
            ips,
            user_agent,
            reason,
        );
        actor.impersonated = true;
        actor
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        username: &str,
        uid: &str,
        groups: &[&str],
        extra: &[(&str, String)],
        impersonated: Option<(&str, &[&str])>,
        ips: &[&str],
        user_agent: &str,
        reason: &str,
    ) -> Actor {
        let mut identity = Vec::with_capacity(512);
        identity.extend_from_slice(b"\"user\":");
        {
            let mut j = J::new(&mut identity);
            j.o();
            if !username.is_empty() {
                j.ks("username", username);
            }
            if !uid.is_empty() {
                j.ks("uid", uid);
            }
            if !groups.is_empty() {
                j.ka("groups");
                for g in groups {
                    j.s(g);
                }
                j.e();
            }
            if !extra.is_empty() {
                j.ko("extra");
                for (k, v) in extra {
                    j.ka(k).s(v).e();
                }
                j.c();
            }
            j.c();
            if let Some((as_user, as_groups)) = impersonated {
                j.ko("impersonatedUser").ks("username", as_user);
                if !as_groups.is_empty() {
                    j.ka("groups");
                    for g in as_groups {
                        j.s(g);
                    }
                    j.e();
                }
                j.c();
            }
            if !ips.is_empty() {
                j.ka("sourceIPs");
                for ip in ips {
                    j.s(ip);
                }
                j.e();
            }
            if !user_agent.is_empty() {
                j.ks("userAgent", user_agent);
            }
        }
        let mut r = Vec::with_capacity(reason.len() + 8);
        write_str(&mut r, reason);
        Actor {
            username: username.to_string(),
            identity,
            reason: r,
            impersonated: false,
        }
    }
}

/// A node and its kubelet.
pub(crate) struct Node {
    pub name: String,
    pub uid: String,
    pub lease_uid: String,
    pub kubelet: usize,
}

/// A Deployment with its current ReplicaSet and pods.
pub(crate) struct Workload {
    pub namespace: usize,
    pub name: String,
    pub uid: String,
    pub replicaset: String,
    pub image: String,
    pub port: u16,
    pub pods: Vec<String>,
    pub pod_uids: Vec<String>,
    pub pod_nodes: Vec<usize>,
}

/// One simulated cluster.
pub(crate) struct Cluster {
    pub name: String,
    pub namespaces: Vec<&'static str>,
    /// Index of the first application namespace in `namespaces`.
    pub first_app_ns: usize,
    pub nodes: Vec<Node>,
    pub workloads: Vec<Workload>,
    pub actors: Vec<Actor>,
    /// Controllers of kube-controller-manager (actor, controller name).
    pub controllers: Vec<(usize, &'static str)>,
    pub humans: Vec<usize>,
    /// People acting as someone else (`kubectl --as`), to check what that
    /// user sees.
    pub impersonators: Vec<usize>,
    /// The number of the next preview namespace (`preview-pr-N`) CI tears down.
    pub preview_pr: u32,
    pub ci: Vec<usize>,
    pub operators: Vec<usize>,
    pub unauthenticated: Vec<usize>,
    pub probe: usize,
    pub prometheus: usize,
    pub kcm: usize,
    pub scheduler: usize,
    pub apiserver: usize,
    pub kube_proxy: Vec<usize>,
    pub coredns: usize,
    pub default_sa: Vec<usize>,
    /// A workload service account with an over-broad secret-reading binding.
    pub compromised_sa: usize,
    /// An outside client that anonymous access is (wrongly) granted to.
    pub anonymous_external: usize,
    pub kcm_lease_uid: String,
    pub scheduler_lease_uid: String,
    /// The cluster's etcd revision, advanced by every write.
    pub resource_version: u64,
}

const APP_NAMESPACES: &[&str] = &[
    "payments",
    "checkout",
    "catalog",
    "web",
    "search",
    "identity",
    "notifications",
    "data-pipeline",
];
const SYSTEM_NAMESPACES: &[&str] = &[
    "kube-system",
    "default",
    "kube-public",
    "kube-node-lease",
    "monitoring",
    "ingress-nginx",
    "cert-manager",
    "argocd",
    "ci",
];
const APP_COMPONENTS: &[&str] = &[
    "api",
    "worker",
    "frontend",
    "gateway",
    "cache",
    "indexer",
    "consumer",
    "scheduler",
];

pub(crate) const CONTROLLERS: &[&str] = &[
    "replicaset-controller",
    "deployment-controller",
    "endpointslice-controller",
    "endpoint-controller",
    "job-controller",
    "namespace-controller",
    "node-controller",
    "generic-garbage-collector",
    "horizontal-pod-autoscaler",
    "statefulset-controller",
];

/// People with kubectl: (user, group, the ClusterRole the group is bound to).
pub(crate) const HUMANS: &[(&str, &str, &str)] = &[
    ("alice@example.com", "platform-team", "cluster-admin"),
    ("bob@example.com", "dev-team", "edit"),
    ("carol@example.com", "sre", "admin"),
    ("dave@example.com", "dev-team", "edit"),
    ("erin@example.com", "data-team", "view"),
];

fn sa_extra(
    rng: &mut ChaCha8Rng,
    node: Option<(&str, &str)>,
    pod: &str,
) -> Vec<(&'static str, String)> {
    let mut extra = vec![(
        "authentication.kubernetes.io/credential-id",
        format!("JTI={}", uuid_string(rng)),
    )];
    if let Some((node_name, node_uid)) = node {
        extra.push((
            "authentication.kubernetes.io/node-name",
            node_name.to_string(),
        ));
        extra.push((
            "authentication.kubernetes.io/node-uid",
            node_uid.to_string(),
        ));
        extra.push(("authentication.kubernetes.io/pod-name", pod.to_string()));
        extra.push(("authentication.kubernetes.io/pod-uid", uuid_string(rng)));
    }
    extra
}

impl Cluster {
    /// Builds cluster number `index` named `name` from `rng`.
    pub(crate) fn build(index: usize, name: &str, rng: &mut ChaCha8Rng) -> Cluster {
        let octet = 10 + (index % 200);
        let ua = |who: &str| format!("{who}/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}");
        let mut actors = Vec::new();
        let mut add = |a: Actor| {
            actors.push(a);
            actors.len() - 1
        };
        let control_plane_ip = format!("10.{octet}.0.10");

        let node_count = rng.gen_range(8..=24);
        let mut nodes = Vec::with_capacity(node_count);
        for _ in 0..node_count {
            let (a, b) = (rng.gen_range(16..64u8), rng.gen_range(2..250u8));
            let ip = format!("10.{octet}.{a}.{b}");
            let name = format!("ip-10-{octet}-{a}-{b}.ec2.internal");
            let user = format!("system:node:{name}");
            let kubelet = add(Actor::new(
                &user,
                "",
                &["system:nodes", "system:authenticated"],
                &[],
                &[&ip],
                &ua("kubelet"),
                "",
            ));
            nodes.push(Node {
                name,
                uid: uuid_string(rng),
                lease_uid: uuid_string(rng),
                kubelet,
            });
        }

        let mut namespaces: Vec<&'static str> = SYSTEM_NAMESPACES.to_vec();
        let first_app_ns = namespaces.len();
        namespaces.extend_from_slice(APP_NAMESPACES);

        let mut workloads = Vec::new();
        for (ns_i, ns) in namespaces.iter().enumerate().skip(first_app_ns) {
            let count = rng.gen_range(2..=4);
            let mut comps: Vec<&str> = APP_COMPONENTS.to_vec();
            for _ in 0..count {
                let comp = comps.swap_remove(rng.gen_range(0..comps.len()));
                let name = format!("{ns}-{comp}");
                let replicaset = format!("{name}-{}", random_suffix(rng, 10));
                let replicas = rng.gen_range(2..=5);
                let pods: Vec<String> = (0..replicas)
                    .map(|_| format!("{replicaset}-{}", random_suffix(rng, 5)))
                    .collect();
                let pod_uids = (0..replicas).map(|_| uuid_string(rng)).collect();
                let pod_nodes = (0..replicas)
                    .map(|_| rng.gen_range(0..node_count))
                    .collect();
                workloads.push(Workload {
                    namespace: ns_i,
                    image: format!(
                        "registry.example.com/{ns}/{comp}:1.{}.{}",
                        rng.gen_range(0..30),
                        rng.gen_range(0..10)
                    ),
                    port: [8080u16, 8443, 9090, 3000, 5000][rng.gen_range(0..5)],
                    name,
                    uid: uuid_string(rng),
                    replicaset,
                    pods,
                    pod_uids,
                    pod_nodes,
                });
            }
        }

        let kcm = add(Actor::new(
            "system:kube-controller-manager",
            "",
            &["system:authenticated"],
            &[],
            &[&control_plane_ip],
            &format!("{}/leader-election", ua("kube-controller-manager")),
            &rbac_reason(
                "system:kube-controller-manager",
                "system:kube-controller-manager",
                Subject::User("system:kube-controller-manager"),
            ),
        ));
        let scheduler = add(Actor::new(
            "system:kube-scheduler",
            "",
            &["system:authenticated"],
            &[],
            &[&control_plane_ip],
            &format!("{}/scheduler", ua("kube-scheduler")),
            &rbac_reason(
                "system:kube-scheduler",
                "system:kube-scheduler",
                Subject::User("system:kube-scheduler"),
            ),
        ));
        let apiserver = add(Actor::new(
            "system:apiserver",
            &uuid_string(rng),
            &["system:authenticated", "system:masters"],
            &[],
            &["::1"],
            &ua("kube-apiserver"),
            "",
        ));
        let mut controllers = Vec::new();
        for c in CONTROLLERS {
            let user = format!("system:serviceaccount:kube-system:{c}");
            let extra = sa_extra(rng, None, "");
            let idx = add(Actor::new(
                &user,
                &uuid_string(rng),
                &[
                    "system:serviceaccounts",
                    "system:serviceaccounts:kube-system",
                    "system:authenticated",
                ],
                &extra,
                &[&control_plane_ip],
                &format!(
                    "{}/system:serviceaccount:kube-system:{c}",
                    ua("kube-controller-manager")
                ),
                &rbac_reason(
                    &format!("system:controller:{c}"),
                    &format!("system:controller:{c}"),
                    Subject::ServiceAccount {
                        name: c,
                        namespace: "kube-system",
                    },
                ),
            ));
            controllers.push((idx, *c));
        }

        let pod_sa = |rng: &mut ChaCha8Rng,
                      ns: &str,
                      sa: &str,
                      pod: &str,
                      nodes: &[Node],
                      ua: &str,
                      reason: String|
         -> Actor {
            let node = &nodes[rng.gen_range(0..nodes.len())];
            let extra = sa_extra(rng, Some((&node.name, &node.uid)), pod);
            let ip = format!(
                "10.{}.{}.{}",
                100 + octet % 100,
                rng.gen_range(0..255),
                rng.gen_range(2..255)
            );
            Actor::new(
                &format!("system:serviceaccount:{ns}:{sa}"),
                &uuid_string(rng),
                &[
                    "system:serviceaccounts",
                    &format!("system:serviceaccounts:{ns}"),
                    "system:authenticated",
                ],
                &extra,
                &[&ip],
                ua,
                &reason,
            )
        };

        let mut kube_proxy = Vec::new();
        for n in nodes.iter().take(3) {
            let _ = n;
            let pod = format!("kube-proxy-{}", random_suffix(rng, 5));
            let a = pod_sa(
                rng,
                "kube-system",
                "kube-proxy",
                &pod,
                &nodes,
                &ua("kube-proxy"),
                rbac_reason(
                    "system:node-proxier",
                    "system:node-proxier",
                    Subject::ServiceAccount {
                        name: "kube-proxy",
                        namespace: "kube-system",
                    },
                ),
            );
            kube_proxy.push(add(a));
        }
        let pod = format!(
            "coredns-{}-{}",
            random_suffix(rng, 10),
            random_suffix(rng, 5)
        );
        let coredns = pod_sa(
            rng,
            "kube-system",
            "coredns",
            &pod,
            &nodes,
            "coredns/v0.0.0 (linux/amd64) kubernetes/$Format",
            rbac_reason(
                "system:coredns",
                "system:coredns",
                Subject::ServiceAccount {
                    name: "coredns",
                    namespace: "kube-system",
                },
            ),
        );
        let coredns = add(coredns);
        let prom = pod_sa(
            rng,
            "monitoring",
            "prometheus-k8s",
            "prometheus-k8s-0",
            &nodes,
            "Prometheus/2.53.1",
            rbac_reason(
                "prometheus-k8s",
                "prometheus-k8s",
                Subject::ServiceAccount {
                    name: "prometheus-k8s",
                    namespace: "monitoring",
                },
            ),
        );
        let prometheus = add(prom);
        let mut operators = Vec::new();
        for (ns, sa, agent, role) in [
            ("ingress-nginx", "ingress-nginx", "nginx-ingress-controller/v1.11.2 (linux/amd64) ingress-nginx/46e76e5916813cfca2a9b0bfdc34b69a0000f6b9", "ingress-nginx"),
            ("cert-manager", "cert-manager", "cert-manager-controller/v1.15.3 (linux/amd64) cert-manager/ab76d41", "cert-manager-controller-certificates"),
            ("monitoring", "kube-state-metrics", "kube-state-metrics/v2.13.0 (linux/amd64) kubernetes/$Format", "kube-state-metrics"),
        ] {
            let pod = format!("{sa}-{}-{}", random_suffix(rng, 10), random_suffix(rng, 5));
            let reason = rbac_reason(role, role, Subject::ServiceAccount { name: sa, namespace: ns });
            let a = pod_sa(rng, ns, sa, &pod, &nodes, agent, reason);
            operators.push(add(a));
        }
        let mut ci = Vec::new();
        {
            let pod = "argocd-application-controller-0".to_string();
            let reason = rbac_reason(
                "argocd-application-controller",
                "argocd-application-controller",
                Subject::ServiceAccount {
                    name: "argocd-application-controller",
                    namespace: "argocd",
                },
            );
            let a = pod_sa(
                rng,
                "argocd",
                "argocd-application-controller",
                &pod,
                &nodes,
                "argocd-application-controller/v0.0.0 (linux/amd64) kubernetes/$Format",
                reason,
            );
            ci.push(add(a));
            let pod = format!("runner-{}-project-4821-concurrent-0", random_suffix(rng, 8));
            let reason = rbac_reason(
                "ci-deployer",
                "edit",
                Subject::ServiceAccount {
                    name: "deployer",
                    namespace: "ci",
                },
            );
            let a = pod_sa(
                rng,
                "ci",
                "deployer",
                &pod,
                &nodes,
                "kubectl/v1.30.4 (linux/amd64) kubernetes/a51b3b7",
                reason,
            );
            ci.push(add(a));
            let pod = format!("runner-{}-project-977-concurrent-1", random_suffix(rng, 8));
            let a = pod_sa(
                rng,
                "ci",
                "helm-deployer",
                &pod,
                &nodes,
                "Helm/3.15.4",
                rbac_reason(
                    "ci-helm-deployer",
                    "edit",
                    Subject::ServiceAccount {
                        name: "helm-deployer",
                        namespace: "ci",
                    },
                ),
            );
            ci.push(add(a));
        }
        let mut default_sa = Vec::new();
        for ns in ["web", "data-pipeline", "default"] {
            let pod = format!("{ns}-debug-{}", random_suffix(rng, 5));
            let a = pod_sa(
                rng,
                ns,
                "default",
                &pod,
                &nodes,
                "python-requests/2.32.3",
                String::new(),
            );
            default_sa.push(add(a));
        }

        let mut humans = Vec::new();
        let mut human_ips = Vec::new();
        for (i, (user, group, role)) in HUMANS.iter().enumerate() {
            let ip = format!("203.0.113.{}", 20 + i * 7 + rng.gen_range(0..5));
            human_ips.push(ip.clone());
            let platform = if i % 2 == 0 {
                "darwin/arm64"
            } else {
                "linux/amd64"
            };
            let a = Actor::new(
                user,
                "",
                &[group, "system:authenticated"],
                &[],
                &[&ip],
                &format!("kubectl/{K8S_VERSION} ({platform}) kubernetes/{K8S_COMMIT}"),
                &rbac_reason(&format!("{group}-{role}"), role, Subject::Group(group)),
            );
            humans.push(add(a));
        }
        let cluster_admin = add(Actor::new(
            "kubernetes-admin",
            "",
            &["kubeadm:cluster-admins", "system:authenticated"],
            &[(
                "authentication.kubernetes.io/credential-id",
                format!(
                    "X509SHA256={}",
                    (0..4)
                        .map(|_| format!("{:016x}", rng.gen::<u64>()))
                        .collect::<String>()
                ),
            )],
            &[&format!("198.51.100.{}", rng.gen_range(2..250))],
            &format!("kubectl/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}"),
            &rbac_reason(
                "kubeadm:cluster-admins",
                "cluster-admin",
                Subject::Group("kubeadm:cluster-admins"),
            ),
        ));
        humans.push(cluster_admin);
        // alice (cluster-admin) checks what bob's team sees; carol (sre)
        // what the CI deployer may do.
        let mut impersonators = Vec::new();
        for (h, as_user, as_groups, reason) in [
            (
                0,
                "bob@example.com",
                &["dev-team", "system:authenticated"][..],
                rbac_reason("dev-team-edit", "edit", Subject::Group("dev-team")),
            ),
            (
                2,
                "system:serviceaccount:ci:deployer",
                // The apiserver adds a service account's groups itself.
                &[
                    "system:serviceaccounts",
                    "system:serviceaccounts:ci",
                    "system:authenticated",
                ][..],
                rbac_reason(
                    "ci-deployer",
                    "edit",
                    Subject::ServiceAccount {
                        name: "deployer",
                        namespace: "ci",
                    },
                ),
            ),
        ] {
            let (user, group, _) = HUMANS[h];
            let platform = if h % 2 == 0 {
                "darwin/arm64"
            } else {
                "linux/amd64"
            };
            impersonators.push(add(Actor::impersonating(
                user,
                &[group, "system:authenticated"],
                as_user,
                as_groups,
                &[&human_ips[h]],
                &format!("kubectl/{K8S_VERSION} ({platform}) kubernetes/{K8S_COMMIT}"),
                &reason,
            )));
        }

        let probe = add(Actor::new(
            "system:anonymous",
            "",
            &["system:unauthenticated"],
            &[],
            &[&control_plane_ip],
            "kube-probe/1.31",
            &rbac_reason(
                "system:public-info-viewer",
                "system:public-info-viewer",
                Subject::Group("system:unauthenticated"),
            ),
        ));
        let mut unauthenticated = Vec::new();
        for ua in [
            "curl/8.9.1",
            "python-requests/2.31.0",
            "Go-http-client/1.1",
            "Mozilla/5.0 zgrab/0.x",
        ] {
            let ip = format!("192.0.2.{}", rng.gen_range(2..250));
            unauthenticated.push(add(Actor::new("", "", &[], &[], &[&ip], ua, "")));
        }

        let compromised_sa = {
            let pod = format!(
                "web-frontend-{}-{}",
                random_suffix(rng, 10),
                random_suffix(rng, 5)
            );
            let a = pod_sa(
                rng,
                "web",
                "web-frontend",
                &pod,
                &nodes,
                "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819",
                rbac_reason(
                    "web-frontend-read",
                    "secret-reader",
                    Subject::ServiceAccount {
                        name: "web-frontend",
                        namespace: "web",
                    },
                ),
            );
            add(a)
        };
        let anonymous_external = add(Actor::new(
            "system:anonymous",
            "",
            &["system:unauthenticated"],
            &[],
            &[&format!("198.51.100.{}", rng.gen_range(2..250))],
            "curl/8.9.1",
            &rbac_reason("anonymous-debug", "view", Subject::User("system:anonymous")),
        ));

        Cluster {
            name: name.to_string(),
            namespaces,
            first_app_ns,
            nodes,
            workloads,
            actors,
            controllers,
            humans,
            impersonators,
            preview_pr: rng.gen_range(1200..4800),
            ci,
            operators,
            unauthenticated,
            probe,
            prometheus,
            kcm,
            scheduler,
            apiserver,
            kube_proxy,
            coredns,
            default_sa,
            compromised_sa,
            anonymous_external,
            kcm_lease_uid: uuid_string(rng),
            scheduler_lease_uid: uuid_string(rng),
            resource_version: 48_000_000 + rng.gen_range(0..2_000_000),
        }
    }

    /// Advances and returns the etcd revision for a write.
    pub(crate) fn next_rv(&mut self, rng: &mut ChaCha8Rng) -> u64 {
        self.resource_version += rng.gen_range(1..40);
        self.resource_version
    }

    /// The current etcd revision (for reads and watches).
    pub(crate) fn rv(&self) -> u64 {
        self.resource_version
    }
}
