//! Request and response objects as clients send them and the apiserver
//! returns them, compact, keys in Go struct order.

// Object builders take the object's fields as plain arguments: a struct per
// object kind would only move the same list elsewhere.
#![allow(clippy::too_many_arguments)]

use crate::write::{TimeFmt, J};

/// What a pod being created looks like.
pub(crate) struct PodSpec<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub app: &'a str,
    pub template_hash: &'a str,
    pub owner: Option<(&'a str, &'a str)>,
    pub image: &'a str,
    pub port: u16,
    pub service_account: &'a str,
    pub token_volume: &'a str,
    pub privileged: bool,
    pub host_root: bool,
    pub sidecar: bool,
}

/// Server-filled fields of a response object.
pub(crate) struct Stored<'a> {
    pub uid: &'a str,
    pub resource_version: u64,
    pub created: i64,
    pub manager: &'a str,
}

fn metadata_server(j: &mut J<'_>, tf: &mut TimeFmt, s: &Stored<'_>) {
    j.ks("uid", s.uid);
    j.k("resourceVersion");
    let mut rv = Vec::with_capacity(12);
    crate::write::push_u64(&mut rv, s.resource_version);
    j.sb(&rv);
    j.k("creationTimestamp").t(tf, s.created);
}

fn managed_fields(
    j: &mut J<'_>,
    tf: &mut TimeFmt,
    s: &Stored<'_>,
    api_version: &str,
    fields: &str,
) {
    j.ka("managedFields").o();
    j.ks("manager", s.manager)
        .ks("operation", "Update")
        .ks("apiVersion", api_version);
    j.k("time").t(tf, s.created);
    j.ks("fieldsType", "FieldsV1");
    j.k("fieldsV1").raw(fields.as_bytes());
    j.c().e();
}

const POD_FIELDS: &str = r#"{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app.kubernetes.io/name":{},"f:pod-template-hash":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"owner\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:env":{".":{},"k:{\"name\":\"LOG_LEVEL\"}":{".":{},"f:name":{},"f:value":{}}},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:name":{},"f:protocol":{}}},"f:resources":{".":{},"f:limits":{".":{},"f:memory":{}},"f:requests":{".":{},"f:cpu":{},"f:memory":{}}},"f:securityContext":{".":{},"f:allowPrivilegeEscalation":{},"f:readOnlyRootFilesystem":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{".":{},"f:runAsNonRoot":{}},"f:serviceAccount":{},"f:serviceAccountName":{},"f:terminationGracePeriodSeconds":{}}}"#;

fn container(
    j: &mut J<'_>,
    name: &str,
    image: &str,
    port: u16,
    token: &str,
    privileged: bool,
    host_root: bool,
) {
    j.o().ks("name", name).ks("image", image);
    j.ka("ports")
        .o()
        .ks("name", "http")
        .kn("containerPort", i64::from(port))
        .ks("protocol", "TCP")
        .c()
        .e();
    j.ka("env")
        .o()
        .ks("name", "LOG_LEVEL")
        .ks("value", "info")
        .c()
        .o()
        .ks("name", "OTEL_EXPORTER_OTLP_ENDPOINT")
        .ks("value", "http://otel-collector.monitoring.svc:4317")
        .c()
        .e();
    j.ko("resources")
        .ko("limits")
        .ks("memory", "512Mi")
        .c()
        .ko("requests")
        .ks("cpu", "100m")
        .ks("memory", "256Mi")
        .c()
        .c();
    j.ka("volumeMounts");
    if host_root {
        j.o().ks("name", "host").ks("mountPath", "/host").c();
    }
    j.o()
        .ks("name", token)
        .kb("readOnly", true)
        .ks("mountPath", "/var/run/secrets/kubernetes.io/serviceaccount")
        .c()
        .e();
    j.ks("terminationMessagePath", "/dev/termination-log")
        .ks("terminationMessagePolicy", "File")
        .ks("imagePullPolicy", "IfNotPresent");
    j.ko("securityContext");
    if privileged {
        j.kb("privileged", true);
    } else {
        j.ko("capabilities").ka("drop").s("ALL").e().c();
        j.kb("runAsNonRoot", true)
            .kb("readOnlyRootFilesystem", true)
            .kb("allowPrivilegeEscalation", false);
    }
    j.c();
    j.c();
}

/// A Pod; with `stored`, the object as the apiserver returns it after create.
pub(crate) fn pod(
    out: &mut Vec<u8>,
    tf: &mut TimeFmt,
    p: &PodSpec<'_>,
    stored: Option<&Stored<'_>>,
) {
    let mut j = J::new(out);
    j.o().ks("kind", "Pod").ks("apiVersion", "v1");
    j.ko("metadata");
    if p.owner.is_some() {
        j.ks("generateName", &p.name[..p.name.len().saturating_sub(5)]);
    }
    if p.owner.is_none() || stored.is_some() {
        j.ks("name", p.name);
    }
    j.ks("namespace", p.namespace);
    if let Some(s) = stored {
        metadata_server(&mut j, tf, s);
    }
    j.ko("labels").ks("app.kubernetes.io/name", p.app);
    if !p.template_hash.is_empty() {
        j.ks("pod-template-hash", p.template_hash);
    }
    j.c();
    if let Some((rs, uid)) = p.owner {
        j.ka("ownerReferences")
            .o()
            .ks("apiVersion", "apps/v1")
            .ks("kind", "ReplicaSet")
            .ks("name", rs)
            .ks("uid", uid)
            .kb("controller", true)
            .kb("blockOwnerDeletion", true)
            .c()
            .e();
    }
    if let Some(s) = stored {
        managed_fields(&mut j, tf, s, "v1", POD_FIELDS);
    }
    j.c();
    j.ko("spec").ka("volumes");
    if p.host_root {
        j.o()
            .ks("name", "host")
            .ko("hostPath")
            .ks("path", "/")
            .ks("type", "")
            .c()
            .c();
    }
    j.o()
        .ks("name", p.token_volume)
        .ko("projected")
        .ka("sources");
    j.o()
        .ko("serviceAccountToken")
        .kn("expirationSeconds", 3607)
        .ks("path", "token")
        .c()
        .c();
    j.o()
        .ko("configMap")
        .ks("name", "kube-root-ca.crt")
        .ka("items")
        .o()
        .ks("key", "ca.crt")
        .ks("path", "ca.crt")
        .c()
        .e()
        .c()
        .c();
    j.o()
        .ko("downwardAPI")
        .ka("items")
        .o()
        .ks("path", "namespace")
        .ko("fieldRef")
        .ks("apiVersion", "v1")
        .ks("fieldPath", "metadata.namespace")
        .c()
        .c()
        .e()
        .c()
        .c();
    j.e().kn("defaultMode", 420).c().c();
    j.e();
    j.ka("containers");
    container(
        &mut j,
        "app",
        p.image,
        p.port,
        p.token_volume,
        p.privileged,
        p.host_root,
    );
    if p.sidecar {
        container(
            &mut j,
            "envoy",
            "docker.io/envoyproxy/envoy:v1.31.2",
            15001,
            p.token_volume,
            false,
            false,
        );
    }
    j.e();
    j.ks("restartPolicy", "Always")
        .kn("terminationGracePeriodSeconds", 30)
        .ks("dnsPolicy", "ClusterFirst")
        .ks("serviceAccountName", p.service_account)
        .ks("serviceAccount", p.service_account);
    if p.host_root {
        j.kb("hostPID", true);
    }
    j.ko("securityContext");
    if !p.privileged {
        j.kb("runAsNonRoot", true);
    }
    j.c();
    j.ks("schedulerName", "default-scheduler");
    j.ka("tolerations")
        .o()
        .ks("key", "node.kubernetes.io/not-ready")
        .ks("operator", "Exists")
        .ks("effect", "NoExecute")
        .kn("tolerationSeconds", 300)
        .c()
        .o()
        .ks("key", "node.kubernetes.io/unreachable")
        .ks("operator", "Exists")
        .ks("effect", "NoExecute")
        .kn("tolerationSeconds", 300)
        .c()
        .e();
    j.kn("priority", 0)
        .kb("enableServiceLinks", true)
        .ks("preemptionPolicy", "PreemptLowerPriority");
    j.c();
    if stored.is_some() {
        j.ko("status")
            .ks("phase", "Pending")
            .ks("qosClass", "Burstable")
            .c();
    }
    j.c();
}

/// A Deployment as `kubectl apply --server-side` sends it, or as stored.
/// The request and response bodies of a client-side `kubectl apply` of a
/// workload's Deployment: the manifest as sent, then the object as stored
/// (uid, `resourceVersion` `rv`, created ten days before `now`, `manager`'s
/// managed fields).
#[allow(clippy::too_many_arguments)]
pub(crate) fn deployment_apply(
    body: &mut Vec<u8>,
    resp: &mut Vec<u8>,
    tf: &mut TimeFmt,
    namespace: &str,
    wl: &crate::world::Workload,
    rv: u64,
    now: i64,
    manager: &str,
) {
    body.clear();
    resp.clear();
    let replicas = wl.pods.len() as i64;
    deployment(
        body, tf, namespace, &wl.name, &wl.image, wl.port, replicas, None,
    );
    let stored = Stored {
        uid: &wl.uid,
        resource_version: rv,
        created: now - 864_000_000_000,
        manager,
    };
    deployment(
        resp,
        tf,
        namespace,
        &wl.name,
        &wl.image,
        wl.port,
        replicas,
        Some(&stored),
    );
}

pub(crate) fn deployment(
    out: &mut Vec<u8>,
    tf: &mut TimeFmt,
    namespace: &str,
    name: &str,
    image: &str,
    port: u16,
    replicas: i64,
    stored: Option<&Stored<'_>>,
) {
    let mut j = J::new(out);
    j.o().ks("apiVersion", "apps/v1").ks("kind", "Deployment");
    j.ko("metadata").ks("name", name).ks("namespace", namespace);
    if let Some(s) = stored {
        metadata_server(&mut j, tf, s);
        j.kn("generation", (s.resource_version % 97) as i64 + 1);
    }
    j.ko("labels")
        .ks("app.kubernetes.io/name", name)
        .ks("app.kubernetes.io/part-of", namespace)
        .c();
    j.ko("annotations")
        .ks("deployment.kubernetes.io/revision", "14")
        .c();
    if let Some(s) = stored {
        managed_fields(
            &mut j,
            tf,
            s,
            "apps/v1",
            r#"{"f:metadata":{"f:labels":{"f:app.kubernetes.io/name":{},"f:app.kubernetes.io/part-of":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:strategy":{"f:rollingUpdate":{"f:maxSurge":{},"f:maxUnavailable":{}},"f:type":{}},"f:template":{"f:metadata":{"f:labels":{"f:app.kubernetes.io/name":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:name":{}}},"f:resources":{"f:limits":{"f:memory":{}},"f:requests":{"f:cpu":{},"f:memory":{}}}}}}}}}"#,
        );
    }
    j.c();
    j.ko("spec").kn("replicas", replicas);
    j.ko("selector")
        .ko("matchLabels")
        .ks("app.kubernetes.io/name", name)
        .c()
        .c();
    j.ko("template")
        .ko("metadata")
        .ko("labels")
        .ks("app.kubernetes.io/name", name)
        .c()
        .c();
    j.ko("spec").ka("containers");
    j.o().ks("name", "app").ks("image", image);
    j.ka("ports")
        .o()
        .ks("name", "http")
        .kn("containerPort", i64::from(port))
        .ks("protocol", "TCP")
        .c()
        .e();
    j.ko("resources")
        .ko("limits")
        .ks("memory", "512Mi")
        .c()
        .ko("requests")
        .ks("cpu", "100m")
        .ks("memory", "256Mi")
        .c()
        .c();
    j.ko("readinessProbe")
        .ko("httpGet")
        .ks("path", "/readyz")
        .ks("port", "http")
        .c()
        .kn("periodSeconds", 10)
        .c();
    j.c().e().c().c();
    j.ko("strategy")
        .ks("type", "RollingUpdate")
        .ko("rollingUpdate")
        .ks("maxUnavailable", "25%")
        .ks("maxSurge", "25%")
        .c()
        .c();
    j.c();
    if stored.is_some() {
        j.ko("status")
            .kn("observedGeneration", 14)
            .kn("replicas", replicas)
            .kn("updatedReplicas", replicas)
            .kn("readyReplicas", replicas)
            .kn("availableReplicas", replicas)
            .c();
    }
    j.c();
}

/// A ConfigMap whose `data` holds `escaped_text` (already JSON-escaped) (a dashboard, a config file).
pub(crate) fn configmap(
    out: &mut Vec<u8>,
    tf: &mut TimeFmt,
    namespace: &str,
    name: &str,
    key: &str,
    escaped_text: &[u8],
    stored: Option<&Stored<'_>>,
) {
    let mut j = J::new(out);
    j.o().ks("kind", "ConfigMap").ks("apiVersion", "v1");
    j.ko("metadata").ks("name", name).ks("namespace", namespace);
    if let Some(s) = stored {
        metadata_server(&mut j, tf, s);
    }
    j.ko("labels")
        .ks("app.kubernetes.io/managed-by", "argocd")
        .c();
    j.c();
    j.ko("data").k(key).escaped(escaped_text).c();
    j.c();
}

/// A Secret (data base64, as sent on the wire).
pub(crate) fn secret(
    out: &mut Vec<u8>,
    tf: &mut TimeFmt,
    namespace: &str,
    name: &str,
    b64: &str,
    stored: Option<&Stored<'_>>,
) {
    let mut j = J::new(out);
    j.o().ks("kind", "Secret").ks("apiVersion", "v1");
    j.ko("metadata").ks("name", name).ks("namespace", namespace);
    if let Some(s) = stored {
        metadata_server(&mut j, tf, s);
    }
    j.c();
    j.ko("data").ks("password", b64).ks("username", "YXBw").c();
    j.ks("type", "Opaque");
    j.c();
}

/// A Role granting typical developer rights.
pub(crate) fn role(
    out: &mut Vec<u8>,
    tf: &mut TimeFmt,
    namespace: &str,
    name: &str,
    stored: Option<&Stored<'_>>,
) {
    let mut j = J::new(out);
    j.o()
        .ks("kind", "Role")
        .ks("apiVersion", "rbac.authorization.k8s.io/v1");
    j.ko("metadata").ks("name", name).ks("namespace", namespace);
    if let Some(s) = stored {
        metadata_server(&mut j, tf, s);
    }
    j.c();
    j.ka("rules");
    for (groups, resources, verbs) in [
        (
            &[""][..],
            &["pods", "pods/log", "services", "configmaps"][..],
            &["get", "list", "watch"][..],
        ),
        (
            &["apps"][..],
            &["deployments", "replicasets"][..],
            &["get", "list", "watch", "patch"][..],
        ),
    ] {
        j.o().ka("verbs");
        for v in verbs {
            j.s(v);
        }
        j.e().ka("apiGroups");
        for g in groups {
            j.s(g);
        }
        j.e().ka("resources");
        for r in resources {
            j.s(r);
        }
        j.e().c();
    }
    j.e().c();
}

/// A RoleBinding or ClusterRoleBinding (`namespace` empty) to one subject.
pub(crate) fn binding(
    out: &mut Vec<u8>,
    tf: &mut TimeFmt,
    namespace: &str,
    name: &str,
    role_kind: &str,
    role: &str,
    subject_kind: &str,
    subject: &str,
    stored: Option<&Stored<'_>>,
) {
    let mut j = J::new(out);
    let kind = if namespace.is_empty() {
        "ClusterRoleBinding"
    } else {
        "RoleBinding"
    };
    j.o()
        .ks("kind", kind)
        .ks("apiVersion", "rbac.authorization.k8s.io/v1");
    j.ko("metadata").ks("name", name);
    if !namespace.is_empty() {
        j.ks("namespace", namespace);
    }
    if let Some(s) = stored {
        metadata_server(&mut j, tf, s);
    }
    j.c();
    j.ka("subjects").o().ks("kind", subject_kind);
    if subject_kind == "User" {
        j.ks("apiGroup", "rbac.authorization.k8s.io");
    }
    j.ks("name", subject).c().e();
    j.ko("roleRef")
        .ks("apiGroup", "rbac.authorization.k8s.io")
        .ks("kind", role_kind)
        .ks("name", role)
        .c();
    j.c();
}

/// A ValidatingWebhookConfiguration; `fail_open` is the tampering signal.
pub(crate) fn webhook_config(
    out: &mut Vec<u8>,
    tf: &mut TimeFmt,
    name: &str,
    fail_open: bool,
    stored: Option<&Stored<'_>>,
) {
    let mut j = J::new(out);
    j.o()
        .ks("kind", "ValidatingWebhookConfiguration")
        .ks("apiVersion", "admissionregistration.k8s.io/v1");
    j.ko("metadata").ks("name", name);
    if let Some(s) = stored {
        metadata_server(&mut j, tf, s);
    }
    j.c();
    j.ka("webhooks").o().ks("name", "validation.gatekeeper.sh");
    j.ko("clientConfig")
        .ko("service")
        .ks("namespace", "gatekeeper-system")
        .ks("name", "gatekeeper-webhook-service")
        .ks("path", "/v1/admit")
        .kn("port", 443)
        .c()
        .c();
    j.ka("rules")
        .o()
        .ka("operations")
        .s("CREATE")
        .s("UPDATE")
        .e()
        .ka("apiGroups")
        .s("*")
        .e()
        .ka("apiVersions")
        .s("*")
        .e()
        .ka("resources")
        .s("*")
        .e()
        .ks("scope", "*")
        .c()
        .e();
    j.ks("failurePolicy", if fail_open { "Ignore" } else { "Fail" })
        .ks("matchPolicy", "Exact");
    j.ko("namespaceSelector")
        .ka("matchExpressions")
        .o()
        .ks("key", "admission.gatekeeper.sh/ignore")
        .ks("operator", "DoesNotExist")
        .c()
        .e()
        .c();
    j.ks("sideEffects", "None")
        .kn("timeoutSeconds", if fail_open { 1 } else { 3 })
        .ka("admissionReviewVersions")
        .s("v1")
        .s("v1beta1")
        .e();
    j.c().e().c();
}

/// A status update of a ReplicaSet, as the replicaset controller PUTs it.
pub(crate) fn replicaset_status(
    out: &mut Vec<u8>,
    tf: &mut TimeFmt,
    namespace: &str,
    name: &str,
    app: &str,
    image: &str,
    replicas: i64,
    stored: &Stored<'_>,
) {
    let mut j = J::new(out);
    j.o().ks("kind", "ReplicaSet").ks("apiVersion", "apps/v1");
    j.ko("metadata").ks("name", name).ks("namespace", namespace);
    metadata_server(&mut j, tf, stored);
    j.kn("generation", 3);
    j.ko("labels")
        .ks("app.kubernetes.io/name", app)
        .ks("pod-template-hash", &name[name.len().saturating_sub(10)..])
        .c();
    j.ko("annotations")
        .ks("deployment.kubernetes.io/desired-replicas", "3")
        .ks("deployment.kubernetes.io/max-replicas", "4")
        .ks("deployment.kubernetes.io/revision", "14")
        .c();
    j.c();
    j.ko("spec").kn("replicas", replicas);
    j.ko("selector")
        .ko("matchLabels")
        .ks("app.kubernetes.io/name", app)
        .c()
        .c();
    j.ko("template")
        .ko("metadata")
        .ko("labels")
        .ks("app.kubernetes.io/name", app)
        .c()
        .c();
    j.ko("spec")
        .ka("containers")
        .o()
        .ks("name", "app")
        .ks("image", image)
        .ko("resources")
        .c()
        .c()
        .e()
        .c()
        .c();
    j.c();
    j.ko("status")
        .kn("replicas", replicas)
        .kn("fullyLabeledReplicas", replicas)
        .kn("readyReplicas", replicas)
        .kn("availableReplicas", replicas)
        .kn("observedGeneration", 3)
        .c();
    j.c();
}

/// An EndpointSlice update from the endpointslice controller.
pub(crate) fn endpoint_slice(
    out: &mut Vec<u8>,
    tf: &mut TimeFmt,
    namespace: &str,
    service: &str,
    slice: &str,
    pods: &[String],
    nodes: &[&str],
    port: u16,
    stored: &Stored<'_>,
) {
    let mut j = J::new(out);
    j.o()
        .ks("kind", "EndpointSlice")
        .ks("apiVersion", "discovery.k8s.io/v1");
    j.ko("metadata")
        .ks("name", slice)
        .ks("generateName", &format!("{service}-"))
        .ks("namespace", namespace);
    metadata_server(&mut j, tf, stored);
    j.kn("generation", 7);
    j.ko("labels")
        .ks(
            "endpointslice.kubernetes.io/managed-by",
            "endpointslice-controller.k8s.io",
        )
        .ks("kubernetes.io/service-name", service)
        .c();
    j.c();
    j.ks("addressType", "IPv4");
    j.ka("endpoints");
    for (i, p) in pods.iter().enumerate() {
        let node = nodes.get(i).copied().unwrap_or("");
        let ip = format!(
            "10.244.{}.{}",
            (i * 37) % 250,
            (p.len() * 13 + i * 7) % 250 + 2
        );
        j.o()
            .ka("addresses")
            .s(&ip)
            .e()
            .ko("conditions")
            .kb("ready", true)
            .kb("serving", true)
            .kb("terminating", false)
            .c()
            .ko("targetRef")
            .ks("kind", "Pod")
            .ks("namespace", namespace)
            .ks("name", p)
            .c()
            .ks("nodeName", node)
            .c();
    }
    j.e();
    j.ka("ports")
        .o()
        .ks("name", "http")
        .ks("protocol", "TCP")
        .kn("port", i64::from(port))
        .c()
        .e();
    j.c();
}
