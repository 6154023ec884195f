//! kaudit's default ruleset: every rule fires on an event built for it and
//! stays quiet on a close look-alike; loader errors carry file:line.

use kaudit_event::Event;
use kaudit_rules::{Engine, EngineBuilder, EngineOptions, MatchMode};
use serde_json::{json, Value};

#[derive(Debug, Clone)]
struct Ev(Value);

fn ev(verb: &str, resource: &str, ns: &str) -> Ev {
    Ev(json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": "5e1c8a3e-0000-4000-8000-000000000001", "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/namespaces/{ns}/{resource}"), "verb": verb,
        "user": {"username": "mallory", "groups": ["devs", "system:authenticated"]},
        "sourceIPs": ["203.0.113.9"], "userAgent": "kubectl/v1.30.0",
        "objectRef": {"resource": resource, "namespace": ns, "name": "thing", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestReceivedTimestamp": "2026-01-02T15:04:05.000000Z",
        "stageTimestamp": "2026-01-02T15:04:05.100000Z",
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC"}
    }))
}

impl Ev {
    fn set(mut self, ptr: &str, val: Value) -> Self {
        let (parent, key) = ptr.rsplit_once('/').expect("pointer");
        let obj = if parent.is_empty() {
            &mut self.0
        } else {
            self.0.pointer_mut(parent).expect("parent exists")
        };
        obj.as_object_mut()
            .expect("object")
            .insert(key.to_string(), val);
        self
    }
    fn del(mut self, ptr: &str) -> Self {
        let (parent, key) = ptr.rsplit_once('/').expect("pointer");
        let obj = if parent.is_empty() {
            &mut self.0
        } else {
            self.0.pointer_mut(parent).expect("parent exists")
        };
        obj.as_object_mut().expect("object").remove(key);
        self
    }
}

fn pod(spec: Value) -> Ev {
    ev("create", "pods", "default").set(
        "/requestObject",
        json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}, "spec": spec}),
    )
}

/// The default rules with the ones that are off by default switched on
/// (each still needs its case below).
fn engine() -> Engine {
    let mut b = EngineBuilder::new(EngineOptions::default());
    b.add_default_rules().expect("default rules compile");
    b.add_source(
        "enable.yaml",
        "- rule: Exec into Pod\n  enabled: true\n- rule: Role With Write Permissions Created\n  enabled: true\n",
    )
    .expect("enabling rules");
    b.build().expect("rules build").0
}

fn fired(engine: &Engine, e: &Ev) -> Vec<String> {
    let event = Event::from_json(e.0.to_string().as_bytes()).expect("valid event");
    engine
        .evaluate(&event, MatchMode::All)
        .into_iter()
        .map(|a| a.rule)
        .collect()
}

fn nginx() -> Value {
    json!([{"name": "c", "image": "nginx:1.27"}])
}

fn cases() -> Vec<(&'static str, Ev, Ev)> {
    vec![
        (
            "Interactive Exec or Attach into Pod",
            ev("create", "pods", "default")
                .set("/stage", json!("ResponseStarted"))
                .set("/objectRef/subresource", json!("exec"))
                .set("/requestURI", json!("/api/v1/namespaces/default/pods/thing/exec?command=%2Fbin%2Fsh&stdin=true&tty=true")),
            ev("create", "pods", "default")
                .set("/stage", json!("ResponseStarted"))
                .set("/objectRef/subresource", json!("exec"))
                .set("/requestURI", json!("/api/v1/namespaces/default/pods/thing/exec?command=date&stdout=true")),
        ),
        (
            "Port-forward by Workload or into System Namespace",
            ev("create", "pods", "kube-system")
                .set("/stage", json!("ResponseStarted"))
                .set("/objectRef/subresource", json!("portforward")),
            ev("create", "pods", "default")
                .set("/stage", json!("ResponseStarted"))
                .set("/objectRef/subresource", json!("portforward")),
        ),
        (
            "Privileged Container Created",
            pod(json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "busybox", "securityContext": {"privileged": true}}]})),
            pod(json!({"containers": [{"name": "b", "image": "busybox", "securityContext": {"privileged": false}}]})),
        ),
        (
            "Host Namespace Pod Created",
            pod(json!({"hostPID": true, "containers": nginx()})),
            pod(json!({"hostPID": false, "containers": nginx()})),
        ),
        (
            "Sensitive Host Path Mounted",
            pod(json!({"containers": nginx(), "volumes": [
                {"name": "cfg", "configMap": {"name": "c"}},
                {"name": "sock", "hostPath": {"path": "/var/run/docker.sock", "type": "Socket"}}]})),
            pod(json!({"containers": nginx(), "volumes": [{"name": "data", "hostPath": {"path": "/srv/data"}}]})),
        ),
        (
            "HostPath Volume Pod Created",
            pod(json!({"containers": nginx(), "volumes": [{"name": "data", "hostPath": {"path": "/srv/data"}}]})),
            pod(json!({"containers": nginx(), "volumes": [{"name": "cfg", "configMap": {"name": "hostPath"}}]})),
        ),
        (
            "Binding to cluster-admin",
            ev("create", "clusterrolebindings", "").set(
                "/requestObject",
                json!({"roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "User", "name": "mallory"}]}),
            ),
            ev("create", "clusterrolebindings", "").set(
                "/requestObject",
                json!({"roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "mallory"}]}),
            ),
        ),
        (
            "Role With Wildcard Permissions",
            ev("create", "clusterroles", "").set(
                "/requestObject",
                json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}]}),
            ),
            ev("create", "clusterroles", "").set(
                "/requestObject",
                json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
            ),
        ),
        (
            "Secret Read by Unexpected Identity",
            ev("list", "secrets", "prod"),
            ev("list", "secrets", "prod").set(
                "/annotations",
                json!({"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""}),
            ),
        ),
        (
            "Service Account Token Created",
            ev("create", "serviceaccounts", "prod").set("/objectRef/subresource", json!("token")),
            ev("create", "serviceaccounts", "prod"),
        ),
        (
            "Anonymous Request Allowed",
            ev("get", "pods", "default").set("/user", json!({"username": "system:anonymous", "groups": ["system:unauthenticated"]})),
            ev("get", "pods", "default")
                .set("/user", json!({"username": "system:anonymous", "groups": ["system:unauthenticated"]}))
                .set("/requestURI", json!("/healthz"))
                .del("/objectRef"),
        ),
        (
            "Kubernetes Events Deleted",
            ev("delete", "events", "prod"),
            ev("delete", "events", "prod").set("/user", json!({"username": "system:serviceaccount:kube-system:event-ttl"})),
        ),
        (
            "Admission Webhook Configuration Changed",
            ev("patch", "mutatingwebhookconfigurations", ""),
            ev("get", "mutatingwebhookconfigurations", ""),
        ),
        (
            "CronJob in System Namespace",
            ev("create", "cronjobs", "kube-system"),
            ev("create", "cronjobs", "prod"),
        ),
        (
            "NodePort Service Created",
            ev("create", "services", "prod").set("/requestObject", json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}})),
            ev("create", "services", "prod").set("/requestObject", json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}})),
        ),
        (
            "Namespace Created by Unusual User",
            ev("create", "namespaces", ""),
            ev("create", "namespaces", "").set("/user", json!({"username": "ops", "groups": ["system:masters"]})),
        ),
        // Parity with Panther's Kubernetes rules (the full per-case check is
        // crates/kaudit-detect/tests/panther_parity.rs).
        (
            "Anonymous API Request",
            ev("get", "pods", "default").set("/user", json!({"username": "system:anonymous"})),
            ev("get", "", "").set("/user", json!({"username": "system:anonymous"})).set("/requestURI", json!("/healthz")).set("/userAgent", json!("kube-probe/1.30")),
        ),
        (
            "Forbidden API Request from Public IP",
            // 203.0.113.0/24 (the default) is a documentation range, not public.
            ev("get", "secrets", "prod").set("/responseStatus", json!({"code": 403})).set("/sourceIPs", json!(["8.8.8.8"])),
            ev("get", "secrets", "prod").set("/responseStatus", json!({"code": 403})).set("/sourceIPs", json!(["10.1.2.3"])),
        ),
        (
            "Admission Webhook Configuration Created",
            ev("create", "validatingwebhookconfigurations", ""),
            ev("create", "validatingwebhookconfigurations", "").set("/user", json!({"username": "system:kube-controller-manager"})),
        ),
        (
            "Client Certificate Requested",
            ev("create", "certificatesigningrequests", "").set("/requestObject", json!({"spec": {"signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"]}})),
            ev("create", "certificatesigningrequests", "").set("/requestObject", json!({"spec": {"signerName": "kubernetes.io/kubelet-serving", "usages": ["server auth"]}})),
        ),
        (
            "Privileged ClusterRoleBinding Created",
            ev("create", "clusterrolebindings", "").set("/requestObject", json!({"roleRef": {"kind": "ClusterRole", "name": "admin"}})),
            ev("create", "clusterrolebindings", "").set("/requestObject", json!({"roleRef": {"kind": "ClusterRole", "name": "view"}})),
        ),
        (
            "CronJob Created or Modified",
            ev("patch", "cronjobs", "prod"),
            ev("patch", "cronjobs", "prod").set("/objectRef/subresource", json!("status")),
        ),
        (
            "DaemonSet Created",
            ev("create", "daemonsets", "prod"),
            ev("create", "daemonsets", "kube-system").set("/user", json!({"username": "system:serviceaccount:kube-system:daemon-set-controller"})),
        ),
        (
            "Ingress Without TLS Created",
            ev("create", "ingresses", "prod").set("/requestObject", json!({"spec": {"rules": [{"host": "a"}]}})),
            ev("create", "ingresses", "prod").set("/requestObject", json!({"spec": {"tls": [{"hosts": ["a"]}], "rules": [{"host": "a"}]}})),
        ),
        (
            "kubectl cp from Pod",
            ev("create", "pods", "prod").set("/objectRef/subresource", json!("exec")).set("/requestURI", json!("/api/v1/namespaces/prod/pods/thing/exec?command=tar&command=cf&command=-&command=%2Fdata&stdout=true")),
            ev("create", "pods", "prod").set("/objectRef/subresource", json!("exec")).set("/requestURI", json!("/api/v1/namespaces/prod/pods/thing/exec?command=tar&command=xf&command=-&stdin=true")),
        ),
        (
            "Pod With Dangerous Capabilities Created",
            pod(json!({"containers": [{"name": "c", "image": "nginx", "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}}}]})),
            pod(json!({"containers": [{"name": "c", "image": "nginx", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}}}]})),
        ),
        (
            "Exec into Pod",
            ev("create", "pods", "prod").set("/objectRef/subresource", json!("exec")),
            ev("create", "pods", "prod").set("/objectRef/subresource", json!("log")),
        ),
        (
            "Pod Sharing Host IPC Created",
            pod(json!({"hostIPC": true, "containers": nginx()})),
            pod(json!({"hostIPC": false, "containers": nginx()})),
        ),
        (
            "Pod Sharing Host Network Created",
            pod(json!({"hostNetwork": true, "containers": nginx()})),
            pod(json!({"hostNetwork": false, "containers": nginx()})),
        ),
        (
            "Pod Sharing Host PID Created",
            pod(json!({"hostPID": true, "containers": nginx()})),
            pod(json!({"hostPID": false, "containers": nginx()})),
        ),
        (
            "Pod With HostPath Volume Created",
            pod(json!({"containers": nginx(), "volumes": [{"name": "h", "hostPath": {"path": "/opt/x"}}]})),
            pod(json!({"containers": nginx(), "volumes": [{"name": "e", "emptyDir": {}}]})),
        ),
        (
            "Privileged or Root Pod Created",
            pod(json!({"containers": [{"name": "c", "image": "nginx", "securityContext": {"runAsUser": 0}}]})),
            pod(json!({"containers": [{"name": "c", "image": "nginx", "securityContext": {"runAsUser": 1000}}]})),
        ),
        (
            "Service Account Token Read via Exec",
            ev("create", "pods", "prod").set("/objectRef/subresource", json!("exec")).set("/requestURI", json!("/api/v1/namespaces/prod/pods/thing/exec?command=cat&command=%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken")),
            ev("create", "pods", "prod").set("/objectRef/subresource", json!("exec")).set("/requestURI", json!("/api/v1/namespaces/prod/pods/thing/exec?command=cat&command=%2Fetc%2Fhostname")),
        ),
        (
            "Pod Created in System Namespace",
            ev("create", "pods", "kube-system").set("/requestObject", json!({"kind": "Pod", "spec": {"containers": nginx()}})),
            ev("create", "pods", "prod").set("/requestObject", json!({"kind": "Pod", "spec": {"containers": nginx()}})),
        ),
        (
            "Role Granting Node Proxy Created",
            ev("create", "clusterroles", "").set("/requestObject", json!({"rules": [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}]})),
            ev("create", "clusterroles", "").set("/requestObject", json!({"rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]})),
        ),
        (
            "Role Granting Pod Exec Created",
            ev("create", "roles", "prod").set("/requestObject", json!({"rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]})),
            ev("create", "roles", "prod").set("/requestObject", json!({"rules": [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]})),
        ),
        (
            "Wildcard Role Created",
            ev("create", "roles", "prod").set("/requestObject", json!({"rules": [{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}]})),
            ev("create", "roles", "prod").set("/requestObject", json!({"rules": [{"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}]})),
        ),
        (
            "Role With Write Permissions Created",
            ev("create", "roles", "prod").set("/requestObject", json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]})),
            ev("create", "roles", "prod").set("/requestObject", json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})),
        ),
        (
            "Secret Access Denied",
            ev("get", "secrets", "prod").set("/responseStatus", json!({"code": 403})).set("/sourceIPs", json!(["10.1.2.3"])),
            ev("get", "secrets", "prod").set("/responseStatus", json!({"code": 200})),
        ),
        (
            "Secrets Listed Across All Namespaces",
            ev("list", "secrets", "").del("/objectRef/namespace").set("/requestURI", json!("/api/v1/secrets?limit=500")),
            ev("list", "secrets", "prod").set("/requestURI", json!("/api/v1/namespaces/prod/secrets")),
        ),
        (
            "NodePort Service Deployed",
            ev("create", "services", "prod").set("/requestObject", json!({"spec": {"type": "NodePort"}})),
            ev("create", "services", "prod").set("/requestObject", json!({"spec": {"type": "NodePort"}})).set("/responseStatus", json!({"code": 409})),
        ),
        (
            "Service Account Token Requested",
            ev("create", "serviceaccounts", "prod").set("/objectRef/subresource", json!("token")),
            ev("create", "serviceaccounts", "kube-system").set("/objectRef/subresource", json!("token")).set("/user", json!({"username": "system:kube-controller-manager"})),
        ),
        (
            "System Role Modified",
            ev("patch", "clusterroles", "").set("/objectRef/name", json!("system:node")),
            ev("patch", "clusterroles", "").set("/objectRef/name", json!("system:coredns")),
        ),
    ]
    .into_iter()
    .chain(docker_cases())
    .collect()
}

/// A Docker record as the proxy writes it (`kaudit_sources::docker`).
fn docker(verb: &str, resource: &str, name: &str, mode: &str) -> Ev {
    Ev(json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": "5e1c8a3e-0000-4000-8000-0000000000d0", "stage": "ResponseComplete",
        "requestURI": format!("/v1.41/{resource}/{name}"), "verb": verb,
        "user": {"username": "alice", "uid": "1001"},
        "sourceIPs": ["127.0.0.1"], "userAgent": "Docker-Client/20.10.24 (linux)",
        "objectRef": {"resource": resource, "name": name, "apiGroup": "docker.com", "apiVersion": "v1.41"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestReceivedTimestamp": "2026-01-02T15:04:05.000000Z",
        "stageTimestamp": "2026-01-02T15:04:05.001000Z",
        "annotations": {"kaudit.io/source": "docker", "kaudit.io/host": "build-01", "docker.com/mode": mode}
    }))
}

fn docker_create(host_config: Value) -> Ev {
    docker("create", "containers", "web", "proxy").set(
        "/requestObject",
        json!({"Image": "busybox", "Cmd": ["sh"], "HostConfig": host_config}),
    )
}

fn docker_cases() -> Vec<(&'static str, Ev, Ev)> {
    vec![
        (
            "Docker Privileged Container Created",
            docker_create(json!({"Privileged": true})),
            docker_create(json!({"Privileged": false})),
        ),
        (
            "Docker Host Namespace Container Created",
            docker_create(json!({"PidMode": "host"})),
            docker_create(json!({"PidMode": "", "NetworkMode": "none"})),
        ),
        (
            "Docker Sensitive Host Path Mounted",
            docker_create(json!({"Binds": ["/data:/data", "/var/run/docker.sock:/var/run/docker.sock"]})),
            docker_create(json!({"Binds": ["/srv/data:/data:ro", "/etcetera:/x"]})),
        ),
        (
            "Docker Container With Dangerous Capabilities",
            docker_create(json!({"CapAdd": ["CAP_SYS_ADMIN"]})),
            docker_create(json!({"CapAdd": ["NET_BIND_SERVICE"]})),
        ),
        (
            "Docker Exec Into Container",
            docker("exec", "containers", "web", "proxy").set("/requestObject", json!({"Cmd": ["sh"], "Tty": true})),
            docker("exec", "containers", "web", "proxy").set("/stage", json!("RequestReceived")),
        ),
        (
            "Docker Image From Unapproved Registry",
            docker("pull", "images", "evil.example.com/x:1", "proxy")
                .set("/annotations", json!({"kaudit.io/source": "docker", "docker.com/mode": "proxy", "docker.com/registry": "evil.example.com", "docker.com/image": "evil.example.com/x:1"})),
            docker("pull", "images", "127.0.0.1:5000/busybox:1", "proxy")
                .set("/annotations", json!({"kaudit.io/source": "docker", "docker.com/mode": "proxy", "docker.com/registry": "127.0.0.1:5000"})),
        ),
        (
            "Docker Container Restart Loop",
            docker("die", "containers", "web", "events")
                .set("/annotations", json!({"kaudit.io/source": "docker", "docker.com/mode": "events", "docker.com/exit-code": "1", "docker.com/recent-failures": "3"})),
            docker("die", "containers", "web", "events")
                .set("/annotations", json!({"kaudit.io/source": "docker", "docker.com/mode": "events", "docker.com/exit-code": "1", "docker.com/recent-failures": "2"})),
        ),
        (
            "Docker Plugin or Authorization Changed",
            docker("enable", "plugins", "authz-broker", "proxy"),
            docker("get", "plugins", "authz-broker", "proxy"),
        ),
    ]
}

#[test]
fn docker_rules_leave_kubernetes_alone_and_vice_versa() {
    let engine = engine();
    // A Kubernetes pod create with a privileged container is no Docker alert.
    let k8s = pod(
        json!({"containers": [{"name": "b", "image": "busybox", "securityContext": {"privileged": true}}]}),
    );
    assert!(!fired(&engine, &k8s).iter().any(|r| r.starts_with("Docker")));
    // Routine Docker calls are quiet.
    for e in [
        docker("list", "containers", "", "proxy"),
        docker("start", "containers", "web", "proxy"),
        docker_create(json!({"NetworkMode": "none"})),
        docker("die", "containers", "web", "events"),
    ] {
        assert!(
            fired(&engine, &e).is_empty(),
            "{:?} fired {:?}",
            e.0["verb"],
            fired(&engine, &e)
        );
    }
    // A failed privileged create raises nothing; a denied one neither.
    let failed = docker_create(json!({"Privileged": true}))
        .set("/responseStatus", json!({"metadata": {}, "code": 403}));
    assert!(fired(&engine, &failed).is_empty());
}

#[test]
fn each_rule_fires_on_its_event_and_not_on_the_look_alike() {
    let engine = engine();
    let cases = cases();
    let names: Vec<&str> = engine.rule_names().collect();
    assert_eq!(names.len(), cases.len(), "a case per rule: {names:?}");
    for (rule, yes, no) in &cases {
        assert!(names.contains(rule), "no rule {rule:?}");
        let y = fired(&engine, yes);
        assert!(y.iter().any(|r| r == rule), "{rule} should fire, got {y:?}");
        let n = fired(&engine, no);
        assert!(
            !n.iter().any(|r| r == rule),
            "{rule} should not fire, got {n:?}"
        );
    }
}

#[test]
fn routine_traffic_is_quiet() {
    let engine = engine();
    let quiet = [
        ev("get", "pods", "default"),
        ev("list", "configmaps", "prod"),
        ev("update", "leases", "kube-node-lease")
            .set("/user", json!({"username": "system:node:n1"})),
        ev("create", "deployments", "prod").set("/requestObject", json!({"spec": {"replicas": 2}})),
        pod(json!({"containers": nginx()})),
    ];
    for e in &quiet {
        assert!(
            fired(&engine, e).is_empty(),
            "{:?} fired {:?}",
            e.0["verb"],
            fired(&engine, e)
        );
    }
}

#[test]
fn alerts_carry_audit_id_and_cluster_and_render_na() {
    let (engine, _) = Engine::with_default_rules(EngineOptions {
        cluster: Some("prod-eu".into()),
        ..Default::default()
    })
    .expect("compile");
    let e = ev("list", "secrets", "prod").del("/responseStatus");
    let event = Event::from_json(e.0.to_string().as_bytes()).expect("event");
    let alerts = engine.evaluate(&event, MatchMode::First);
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert!(a.output.contains("resp=<NA>"), "{}", a.output);
    let json: Value = serde_json::from_str(&a.to_falco_json("host1")).expect("json");
    assert_eq!(json["rule"], "Secret Read by Unexpected Identity");
    assert_eq!(json["priority"], "Warning");
    assert_eq!(json["source"], "k8s_audit");
    assert_eq!(json["hostname"], "host1");
    assert_eq!(json["time"], "2026-01-02T15:04:05.100000000Z");
    assert_eq!(
        json["output_fields"]["ka.auditid"],
        "5e1c8a3e-0000-4000-8000-000000000001"
    );
    assert_eq!(json["output_fields"]["kaudit.cluster"], "prod-eu");
    assert_eq!(json["output_fields"]["ka.response.code"], Value::Null);
    assert!(json["tags"]
        .as_array()
        .is_some_and(|t| t.iter().any(|x| x == "kaudit")));
    assert!(
        a.to_text()
            .starts_with("2026-01-02T15:04:05.100000000+0000: Warning Secret accessed"),
        "{}",
        a.to_text()
    );
}

#[test]
fn loader_errors_name_file_line_and_reason() {
    let cases = [
        ("- rule: r\n  condition: ka.verb=get and (\n  output: o\n  priority: INFO\n  source: k8s_audit\n", 1, "does not parse"),
        ("- list: l\n  items: [a]\n\n- rule: r\n  condition: ka.nope=1\n  output: o\n  priority: INFO\n  source: k8s_audit\n", 4, "unknown field ka.nope"),
        ("- macro: m\n  condition: ka.verb=get\n- rule: r\n  condition: m and undefined_macro\n  output: o\n  priority: INFO\n  source: k8s_audit\n", 3, "undefined macro"),
        ("- rule: r\n  condition: ka.verb=get\n  output: o %ka.bogus\n  priority: INFO\n  source: k8s_audit\n", 1, "unknown field ka.bogus"),
        ("- rule: r\n  condition: ka.verb=get\n  output: o\n  priority: LOUD\n  source: k8s_audit\n", 1, "unknown priority"),
        ("- list: l\n  items: [a]\n  append: true\n", 1, "no list of that name"),
        ("- required_engine_version: 0.99.0\n", 1, "engine version"),
        ("- required_plugin_versions:\n  - name: k8saudit\n    version: 9.0.0\n", 1, "plugin k8saudit 9.0.0"),
        ("- macro: a\n  condition: b\n- macro: b\n  condition: a\n- rule: r\n  condition: a\n  output: o\n  priority: INFO\n  source: k8s_audit\n", 5, "refers to itself"),
        ("- rule: r\n  condition: ka.verb=get\n", 1, "no 'output'"),
        ("key: [unclosed\n", 1, "invalid YAML"),
    ];
    for (text, line, reason) in cases {
        let mut b = EngineBuilder::new(EngineOptions::default());
        let err = match b.add_source("custom.yaml", text) {
            Err(e) => e,
            Ok(_) => match b.build() {
                Err(e) => e,
                Ok(_) => panic!("{text:?} should fail"),
            },
        };
        assert_eq!(err.file, "custom.yaml");
        assert_eq!(err.line, Some(line), "{text:?}: {err}");
        assert!(err.reason.contains(reason), "{text:?}: {err}");
        assert!(
            err.to_string().starts_with(&format!("custom.yaml:{line}:")),
            "{err}"
        );
    }
}

#[test]
fn append_override_exceptions_and_enabled() {
    let base = "
- list: users
  items: [alice]
- macro: is_get
  condition: ka.verb=get
- rule: Reads
  desc: d
  condition: is_get and ka.user.name in (users)
  output: read by %ka.user.name
  priority: NOTICE
  source: k8s_audit
  exceptions:
    - name: ns
      fields: [ka.target.namespace, ka.target.resource]
      comps: [=, in]
      values:
        - [kube-system, [pods, secrets]]
- rule: Other
  desc: d
  condition: ka.verb=delete
  output: deleted
  priority: INFO
  source: k8s_audit
";
    let over = "
- list: users
  items: [bob]
  append: true
- rule: Reads
  condition: and ka.target.name != skip
  append: true
- rule: Reads
  exceptions:
    - name: ns
      values:
        - [prod, [configmaps]]
  override:
    exceptions: append
- rule: Other
  enabled: false
";
    let mut b = EngineBuilder::new(EngineOptions::default());
    b.add_source("base.yaml", base).expect("base");
    b.add_source("over.yaml", over).expect("over");
    let (engine, _) = b.build().expect("build");
    assert_eq!(engine.rule_names().collect::<Vec<_>>(), vec!["Reads"]);
    let fire = |user: &str, ns: &str, res: &str, name: &str| {
        let e = ev("get", res, ns)
            .set("/user", json!({"username": user}))
            .set("/objectRef/name", json!(name));
        !fired(&engine, &e).is_empty()
    };
    assert!(fire("alice", "default", "pods", "x"));
    assert!(fire("bob", "default", "pods", "x"), "appended list item");
    assert!(!fire("carol", "default", "pods", "x"));
    assert!(
        !fire("alice", "default", "pods", "skip"),
        "appended condition"
    );
    assert!(!fire("alice", "kube-system", "secrets", "x"), "exception");
    assert!(fire("alice", "kube-system", "configmaps", "x"));
    assert!(
        !fire("alice", "prod", "configmaps", "x"),
        "appended exception value"
    );
}

#[test]
fn missing_fields_only_not_flips() {
    let rules = "
- rule: NeUser
  desc: d
  condition: ka.impuser.name != someone
  output: ne
  priority: INFO
  source: k8s_audit
- rule: NotEqUser
  desc: d
  condition: not ka.impuser.name = someone
  output: not
  priority: INFO
  source: k8s_audit
";
    let mut b = EngineBuilder::new(EngineOptions::default());
    b.add_source("m.yaml", rules).expect("load");
    let (engine, _) = b.build().expect("build");
    let e = ev("get", "pods", "default");
    assert_eq!(fired(&engine, &e), vec!["NotEqUser"]);
    let imp = ev("get", "pods", "default").set("/impersonatedUser", json!({"username": "other"}));
    assert_eq!(fired(&engine, &imp), vec!["NeUser", "NotEqUser"]);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn arb_event() -> impl Strategy<Value = Ev> {
        (
            prop::sample::select(vec!["get", "list", "create", "update", "patch", "delete"]),
            prop::sample::select(vec!["pods", "secrets", "namespaces", "services", "events", "clusterrolebindings", "cronjobs"]),
            prop::sample::select(vec!["", "exec", "portforward", "token"]),
            prop::sample::select(vec!["default", "kube-system", "prod"]),
            prop::sample::select(vec!["mallory", "system:anonymous", "system:node:n1", "system:serviceaccount:prod:app"]),
            prop::sample::select(vec!["ResponseStarted", "ResponseComplete", "RequestReceived"]),
            any::<bool>(),
        )
            .prop_map(|(verb, res, sub, ns, user, stage, privileged)| {
                let mut e = ev(verb, res, ns)
                    .set("/user", json!({"username": user}))
                    .set("/stage", json!(stage))
                    .set(
                        "/requestObject",
                        json!({"spec": {"type": "NodePort", "containers": [{"name": "c", "image": "x", "securityContext": {"privileged": privileged}}]}, "roleRef": {"name": "cluster-admin"}}),
                    );
                if !sub.is_empty() {
                    e = e
                        .set("/objectRef/subresource", json!(sub))
                        .set("/requestURI", json!("/api/v1/namespaces/x/pods/y/exec?command=sh&tty=true"));
                }
                e
            })
    }

    proptest! {
        #[test]
        fn first_match_is_the_head_of_all_matches(e in arb_event()) {
            let engine = engine();
            let event = Event::from_json(e.0.to_string().as_bytes()).expect("event");
            let first = engine.evaluate(&event, MatchMode::First);
            let all = engine.evaluate(&event, MatchMode::All);
            prop_assert!(first.len() <= 1);
            prop_assert_eq!(first.first(), all.first());
            let again = engine.evaluate(&event, MatchMode::All);
            prop_assert_eq!(all, again);
        }
    }
}
