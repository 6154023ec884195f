//! `type: elasticsearch` (and OpenSearch): the `_bulk` API with `create`
//! actions (what a data stream accepts; `index` actions are refused by data
//! streams), the document ID being `auditID-Stage-<hash of the event's bytes>`
//! ([`crate::dedupe_id`]) so a batch sent again after a lost answer
//! de-duplicates (a 409 on create means "already there") while distinct
//! events sharing an auditID are all stored.
//!
//! Documents are, field for field, what Elastic's Kubernetes integration
//! (`audit_logs` data stream, ingest pipeline `default.yml`) makes of the same
//! event (`ecs: elastic-integration`, the only mode so far): the event under
//! `kubernetes.audit` without `requestObject.metadata`/`responseObject.metadata`
//! and with `.` in annotation keys turned into `_`; `event.original` (the
//! exact bytes), `event.kind`, `event.action` (verb), `event.outcome` (only
//! from the authorization decision), `user.name`/`user.id`,
//! `user_agent.original`, `source.ip` and `client.ip` (the whole `sourceIPs`
//! array, only when every entry is an IP), `related.user` (uid, username) and
//! `related.ip`, `orchestrator.{type,api_version,namespace,resource.name,
//! resource.type}`; then every null, `""`, `{}` and `[]` removed, at any
//! depth, as Elastic's pipeline does. kaudit adds only fields Elastic does not
//! set from the event: `@timestamp`, `ecs.version`, `event.module`,
//! `event.dataset`, `data_stream.*` and `orchestrator.cluster.name`.
//!
//! Per-item results are honoured: 429 and 5xx items are sent again, other
//! 4xx items are dead-lettered with the reason Elasticsearch gave. A
//! checkpoint becomes a document with `_id` `checkpoint-<size>` and
//! `event.kind: state`, `kaudit.checkpoint.{size,time,note}`.

use crate::http::{client, expect_success, transport, ClientTls};
use crate::{Checkpoint, Delivery, Destination, Outgoing, SinkError};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::Duration;

/// The dataset of Elastic's Kubernetes audit integration: Kibana's audit
/// dashboards and Elastic's detection rules select on it
/// (`data_stream.dataset : "kubernetes.audit_logs"`).
pub const DATASET: &str = "kubernetes.audit_logs";

/// `type: elasticsearch` (also OpenSearch).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    /// Base URL (`https://es:9200`).
    pub url: String,
    /// Data stream or index; empty (the default) means the data stream
    /// Elastic's integration writes: `logs-kubernetes.audit_logs-<namespace>`.
    pub index: String,
    /// The data stream namespace (`default` when empty), as in Fleet's
    /// integration policies; used for the default `index` and
    /// `data_stream.namespace`.
    pub namespace: String,
    /// The document shape; `elastic-integration` (the default) is the only
    /// one: a config names it so a future shape is an explicit choice.
    pub ecs: EcsMode,
    /// Keep `event.original` (the exact event bytes) as Elastic's pipeline
    /// does (default true); false halves the document size but the
    /// documents then lack a field Elastic's own ones have.
    pub keep_original: Option<bool>,
    /// Basic auth user.
    pub username: Option<String>,
    /// Basic auth password.
    pub password: Option<String>,
    /// `Authorization: ApiKey` value (base64 id:key).
    pub api_key: Option<String>,
    /// CA bundle (PEM).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM).
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM).
    pub client_key: Option<PathBuf>,
}

/// The document shape a sink writes (`ecs:` in its config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EcsMode {
    /// Exactly what Elastic's Kubernetes integration (`audit_logs`) makes, so
    /// its dashboards and detection rules work unchanged. kaudit's earlier
    /// shape (one `source.ip` string, no `related.*`/`orchestrator.*`, empty
    /// values kept) is gone: it mapped into the same fields with the same
    /// types, so nothing needs it back.
    #[default]
    ElasticIntegration,
}

impl ElasticsearchConfig {
    /// The data stream namespace in use.
    pub fn namespace(&self) -> &str {
        if self.namespace.is_empty() {
            "default"
        } else {
            &self.namespace
        }
    }

    /// The index or data stream documents go to.
    pub fn target(&self) -> String {
        if self.index.is_empty() {
            format!("logs-{DATASET}-{}", self.namespace())
        } else {
            self.index.clone()
        }
    }

    /// The `data_stream.*` fields the documents carry: taken from the target
    /// when it is named `<type>-<dataset>-<namespace>` (a data stream checks
    /// them against its name), else `logs`, [`DATASET`] and the namespace.
    pub fn data_stream(&self) -> DataStream {
        let target = self.target();
        let mut parts = target.splitn(2, '-');
        if let (Some(ty @ ("logs" | "metrics" | "traces" | "synthetics")), Some(rest)) =
            (parts.next(), parts.next())
        {
            if let Some((dataset, ns)) = rest.rsplit_once('-') {
                if !dataset.is_empty() && !ns.is_empty() {
                    return DataStream {
                        kind: ty.to_string(),
                        dataset: dataset.to_string(),
                        namespace: ns.to_string(),
                    };
                }
            }
        }
        DataStream {
            kind: "logs".into(),
            dataset: DATASET.into(),
            namespace: self.namespace().to_string(),
        }
    }
}

/// Where a document goes, as its `data_stream.*` fields say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataStream {
    /// `data_stream.type` (`logs`).
    pub kind: String,
    /// `data_stream.dataset` (`kubernetes.audit_logs`).
    pub dataset: String,
    /// `data_stream.namespace` (`default`).
    pub namespace: String,
}

impl Default for DataStream {
    fn default() -> Self {
        DataStream {
            kind: "logs".into(),
            dataset: DATASET.into(),
            namespace: "default".into(),
        }
    }
}

/// What goes into every document besides the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocOptions {
    /// The `data_stream.*` fields.
    pub data_stream: DataStream,
    /// Whether `event.original` is kept.
    pub keep_original: bool,
}

impl Default for DocOptions {
    fn default() -> Self {
        DocOptions {
            data_stream: DataStream::default(),
            keep_original: true,
        }
    }
}

/// ECS version the documents follow.
pub const ECS_VERSION: &str = "8.11.0";

/// `event.outcome` from the authorization decision annotation, as Elastic's
/// pipeline: `allow` is a success, `forbid` a failure, anything else (or no
/// decision) leaves the outcome unset.
pub fn outcome(decision: Option<&str>) -> Option<&'static str> {
    match decision {
        Some("allow") => Some("success"),
        Some("forbid") => Some("failure"),
        _ => None,
    }
}

/// A string field of `m`, when it is a non-empty string.
fn text<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Sets `m[key] = v` on the object at `path` under `m`, creating objects.
fn put(m: &mut Map<String, Value>, path: &[&str], v: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = m;
    for p in parents {
        let entry = cur
            .entry((*p).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else {
            return;
        };
        cur = next;
    }
    cur.insert((*last).to_string(), v);
}

/// Whether Elastic's pipeline drops a value: null, `""`, `{}` or `[]`.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Removes null, `""`, `{}` and `[]` at every depth, children first (so an
/// object left empty by its children goes too), as Elastic's pipeline does.
/// Recursion is bounded by the event reader's depth limit.
pub fn prune_empty(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (_, c) in m.iter_mut() {
                prune_empty(c);
            }
            m.retain(|_, c| !is_empty(c));
        }
        Value::Array(a) => {
            for c in a.iter_mut() {
                prune_empty(c);
            }
            a.retain(|c| !is_empty(c));
        }
        _ => {}
    }
}

/// Appends `v` to `list` unless it is there already.
fn push_unique(list: &mut Vec<Value>, v: Value) {
    if !list.contains(&v) {
        list.push(v);
    }
}

/// The ECS document of one event (see the module documentation for the
/// mapping, field by field).
pub fn ecs_document(o: &Outgoing, opts: &DocOptions) -> Result<Value, SinkError> {
    let mut audit: Map<String, Value> = serde_json::from_slice(o.event.bytes()).map_err(|e| {
        SinkError::Config(format!("seq {}: event is not a JSON object: {e}", o.seq))
    })?;
    let converted = Converted::of(&mut audit);
    if let Some(entry) = converted.gke_entry() {
        audit = gke_audit(entry, audit);
    }
    for body in ["requestObject", "responseObject"] {
        if let Some(Value::Object(b)) = audit.get_mut(body) {
            b.remove("metadata");
        }
    }
    let mut doc = Map::new();
    let timestamp = converted.aks_time().unwrap_or_else(|| o.time().to_string());
    doc.insert("@timestamp".into(), json!(timestamp));
    doc.insert("ecs".into(), json!({"version": ECS_VERSION}));
    doc.insert(
        "data_stream".into(),
        json!({
            "type": opts.data_stream.kind,
            "dataset": opts.data_stream.dataset,
            "namespace": opts.data_stream.namespace,
        }),
    );
    let mut event = Map::new();
    if opts.keep_original {
        let original = match &converted.original {
            Some(text) => json!(text),
            None => json!(String::from_utf8_lossy(o.event.bytes())),
        };
        event.insert("original".into(), original);
    }
    event.insert("kind".into(), json!("event"));
    event.insert("module".into(), json!("kubernetes"));
    event.insert("dataset".into(), json!(DATASET));
    if let Some(verb) = text(&audit, "verb") {
        event.insert("action".into(), json!(verb));
    }
    if let Some(Value::Object(ann)) = audit.get_mut("annotations") {
        let decision = ann
            .get("authorization.k8s.io/decision")
            .and_then(Value::as_str);
        if let Some(out) = outcome(decision) {
            event.insert("outcome".into(), json!(out));
        }
        let renamed: Map<String, Value> = std::mem::take(ann)
            .into_iter()
            .map(|(k, v)| (k.replace('.', "_"), v))
            .collect();
        *ann = renamed;
    }
    doc.insert("event".into(), Value::Object(event));

    let user = audit.get("user").and_then(Value::as_object);
    let username = user.and_then(|u| text(u, "username"));
    let uid = user.and_then(|u| text(u, "uid"));
    if let Some(name) = username {
        put(&mut doc, &["user", "name"], json!(name));
    }
    if let Some(id) = uid {
        put(&mut doc, &["user", "id"], json!(id));
    }
    if let Some(ua) = text(&audit, "userAgent") {
        put(&mut doc, &["user_agent", "original"], json!(ua));
    }
    // Elastic's `convert` to `ip` fails as a whole (and is ignored) when one
    // entry is not an IP address: then neither source.ip nor client.ip.
    let ips: Option<Vec<Value>> = audit
        .get("sourceIPs")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .map(|v| {
                    v.as_str()
                        .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
                        .map(|s| json!(s))
                })
                .collect()
        });
    let mut related_ip = Vec::new();
    if let Some(ips) = ips {
        for ip in &ips {
            push_unique(&mut related_ip, ip.clone());
        }
        put(&mut doc, &["source", "ip"], Value::Array(ips.clone()));
        put(&mut doc, &["client", "ip"], Value::Array(ips));
    }

    let mut orch = Map::new();
    orch.insert("type".into(), json!("kubernetes"));
    if let Some(v) = text(&audit, "apiVersion") {
        orch.insert("api_version".into(), json!(v));
    }
    if !o.cluster.is_empty() {
        orch.insert("cluster".into(), json!({"name": o.cluster}));
    }
    let mut res = Map::new();
    if let Some(obj) = audit.get("objectRef").and_then(Value::as_object) {
        if let Some(ns) = text(obj, "namespace") {
            orch.insert("namespace".into(), json!(ns));
        }
        if let Some(name) = text(obj, "name") {
            res.insert("name".into(), json!(name));
        }
        if let Some(ty) = text(obj, "resource") {
            res.insert("type".into(), json!(ty));
        }
    }
    // A GKE LogEntry's own fields win, in the pipeline's order:
    // `protoPayload.resourceName`, the monitored resource's type
    // (`k8s_cluster`) and its cluster name and project.
    if let Some(name) = audit
        .get("protoPayload")
        .and_then(Value::as_object)
        .and_then(|p| text(p, "resourceName"))
    {
        res.insert("name".into(), json!(name));
    }
    if let Some(r) = audit.get("resource").and_then(Value::as_object) {
        if let Some(ty) = text(r, "type") {
            res.insert("type".into(), json!(ty));
        }
        if let Some(labels) = r.get("labels").and_then(Value::as_object) {
            let mut cluster = Map::new();
            if let Some(name) = text(labels, "cluster_name") {
                cluster.insert("name".into(), json!(name));
            }
            if let Some(id) = text(labels, "project_id") {
                cluster.insert("id".into(), json!(id));
            }
            if !cluster.is_empty() {
                orch.insert("cluster".into(), Value::Object(cluster));
            }
        }
    }
    if !res.is_empty() {
        orch.insert("resource".into(), Value::Object(res));
    }
    doc.insert("orchestrator".into(), Value::Object(orch));

    let mut related_user = Vec::new();
    for u in [uid, username].into_iter().flatten() {
        push_unique(&mut related_user, json!(u));
    }
    if !related_user.is_empty() {
        put(&mut doc, &["related", "user"], Value::Array(related_user));
    }
    if !related_ip.is_empty() {
        put(&mut doc, &["related", "ip"], Value::Array(related_ip));
    }
    if let Some(meta) = converted.aks_metadata() {
        audit.insert("aks_metadata".into(), Value::Object(meta));
    }
    doc.insert(
        "kubernetes".into(),
        json!({ "audit": Value::Object(audit) }),
    );
    let mut doc = Value::Object(doc);
    prune_empty(&mut doc);
    Ok(doc)
}

/// What a managed-cluster converter left on an event for this sink: the
/// source format, the provider's item as it came, and the envelope
/// (`kaudit-sources`' `kaudit.io/*` annotations). The envelope and the
/// original are taken off the event's annotations: in the document they
/// are `event.original`, `kubernetes.audit.aks_metadata` or (GKE) the
/// whole of `kubernetes.audit`, as in Elastic's documents.
struct Converted {
    format: Option<String>,
    original: Option<String>,
    envelope: Option<Map<String, Value>>,
}

impl Converted {
    fn of(audit: &mut Map<String, Value>) -> Converted {
        use kaudit_sources::managed::{
            ENVELOPE_ANNOTATION, ORIGINAL_ANNOTATION, SOURCE_FORMAT_ANNOTATION,
        };
        let Some(Value::Object(ann)) = audit.get_mut("annotations") else {
            return Converted {
                format: None,
                original: None,
                envelope: None,
            };
        };
        let format = ann
            .get(SOURCE_FORMAT_ANNOTATION)
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut take = |k: &str| match ann.shift_remove(k) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let original = take(ORIGINAL_ANNOTATION);
        let envelope = take(ENVELOPE_ANNOTATION).and_then(|e| serde_json::from_str(&e).ok());
        Converted {
            format,
            original,
            envelope,
        }
    }

    /// The LogEntry of a converted GKE event.
    fn gke_entry(&self) -> Option<Map<String, Value>> {
        if self.format.as_deref() != Some("gke") {
            return None;
        }
        serde_json::from_str(self.original.as_deref()?).ok()
    }

    /// `@timestamp` of an AKS record as Elastic sets it: the record's
    /// `time`, at millisecond precision.
    fn aks_time(&self) -> Option<String> {
        if self.format.as_deref() != Some("aks") {
            return None;
        }
        let time = self.envelope.as_ref()?.get("time")?.as_str()?;
        let t = kaudit_event::MicroTime::parse(time).ok()?.to_string();
        // `2025-10-07T16:19:19.647880Z` -> `2025-10-07T16:19:19.647Z`.
        let dot = t.find('.')?;
        Some(format!("{}Z", t.get(..dot + 4)?))
    }

    /// `kubernetes.audit.aks_metadata`: the AKS record without its `log`,
    /// `properties` flattened into it, keys in snake_case
    /// (`operationName` -> `operation_name`, `containerID` -> `container_id`).
    fn aks_metadata(&self) -> Option<Map<String, Value>> {
        if self.format.as_deref() != Some("aks") {
            return None;
        }
        let mut out = Map::new();
        for (k, v) in self.envelope.as_ref()? {
            match (k.as_str(), v) {
                ("properties", Value::Object(p)) => {
                    for (pk, pv) in p {
                        out.insert(snake_case(pk), pv.clone());
                    }
                }
                _ => {
                    out.insert(snake_case(k), v.clone());
                }
            }
        }
        Some(out)
    }
}

/// `operationName` -> `operation_name`, `containerID` -> `container_id`,
/// `resourceId` -> `resource_id`.
fn snake_case(k: &str) -> String {
    let chars: Vec<char> = k.chars().collect();
    let mut out = String::with_capacity(k.len() + 4);
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower = i > 0 && !chars[i - 1].is_ascii_uppercase();
            if i > 0 && prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(*c);
        }
    }
    out
}

/// `kubernetes.audit` of a GKE event, as Elastic's pipeline makes it of the
/// LogEntry (`insertId` -> `auditID`, `receiveTimestamp` ->
/// `requestReceivedTimestamp`, `timestamp` -> `stageTimestamp`,
/// `protoPayload.status.code` -> `responseStatus.code`, `labels` ->
/// `annotations`), then completed with the Event kaudit rebuilt from it
/// wherever the LogEntry has no such field: `verb`, `objectRef`, `user`,
/// `sourceIPs`, `userAgent`, ... Elastic's fields are never changed (the
/// gRPC code stays 0 where kaudit's Event says HTTP 200; the nanosecond
/// timestamps stay as Google wrote them); the added ones make the ECS
/// fields Elastic's rules read (`user.name`, `event.action`, `source.ip`,
/// `kubernetes.audit.verb`, `kubernetes.audit.objectRef.*`) present on GKE
/// documents too, where Elastic's own pipeline leaves them out.
fn gke_audit(mut entry: Map<String, Value>, event: Map<String, Value>) -> Map<String, Value> {
    for (from, to) in [
        ("insertId", "auditID"),
        ("receiveTimestamp", "requestReceivedTimestamp"),
        ("timestamp", "stageTimestamp"),
        ("labels", "annotations"),
    ] {
        if let Some(v) = entry.shift_remove(from) {
            entry.insert(to.into(), v);
        }
    }
    let code = entry
        .get_mut("protoPayload")
        .and_then(Value::as_object_mut)
        .and_then(|p| {
            let status = p.get_mut("status")?.as_object_mut()?;
            let code = status.shift_remove("code");
            if status.is_empty() {
                p.shift_remove("status");
            }
            code
        });
    if let Some(code) = code {
        put(&mut entry, &["responseStatus", "code"], code);
    }
    let mut merged = Value::Object(entry);
    fill_missing(&mut merged, Value::Object(event), 0);
    match merged {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Adds to `into` what `from` has and `into` lacks, object by object;
/// every leaf `into` has is kept. Depth-bounded like the event reader.
fn fill_missing(into: &mut Value, from: Value, depth: usize) {
    let (Value::Object(into), Value::Object(from)) = (into, from) else {
        return;
    };
    for (k, v) in from {
        match into.get_mut(&k) {
            None => {
                into.insert(k, v);
            }
            Some(existing) if depth < 64 => fill_missing(existing, v, depth + 1),
            Some(_) => {}
        }
    }
}

/// Appends the `_bulk` body (NDJSON, `create` actions) for a batch.
pub fn encode_bulk(
    index: &str,
    opts: &DocOptions,
    batch: &[Outgoing],
    out: &mut Vec<u8>,
) -> Result<(), SinkError> {
    for o in batch {
        let action = json!({"create": {"_index": index, "_id": o.dedupe_id()}});
        serde_json::to_writer(&mut *out, &action).map_err(|e| SinkError::Config(e.to_string()))?;
        out.push(b'\n');
        serde_json::to_writer(&mut *out, &ecs_document(o, opts)?)
            .map_err(|e| SinkError::Config(e.to_string()))?;
        out.push(b'\n');
    }
    Ok(())
}

/// Reads a `_bulk` answer into a [`Delivery`].
pub fn parse_bulk_response(body: &[u8], items: usize) -> Result<Delivery, SinkError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| SinkError::Rejected(format!("_bulk answer is not JSON: {e}")))?;
    let Some(list) = v.get("items").and_then(Value::as_array) else {
        return Err(SinkError::Rejected("_bulk answer has no items".into()));
    };
    if list.len() != items {
        return Err(SinkError::Rejected(format!(
            "_bulk answered {} items for {items} sent",
            list.len()
        )));
    }
    let mut d = Delivery::default();
    for (i, item) in list.iter().enumerate() {
        let r = item
            .as_object()
            .and_then(|m| m.values().next())
            .ok_or_else(|| SinkError::Rejected(format!("_bulk item {i} is malformed")))?;
        let status = r.get("status").and_then(Value::as_u64).unwrap_or(0);
        match status {
            200..=299 | 409 => {}
            429 | 500..=599 | 0 => d.retry.push(i),
            _ => {
                let err = r.get("error");
                let ty = err
                    .and_then(|e| e.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("error");
                let reason = err
                    .and_then(|e| e.get("reason"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                d.rejected
                    .push((i, format!("HTTP {status}: {ty}: {reason}")));
            }
        }
    }
    Ok(d)
}

/// The Elasticsearch destination.
pub struct Elasticsearch {
    url: String,
    index: String,
    opts: DocOptions,
    auth: Option<String>,
    client: reqwest::blocking::Client,
}

impl Elasticsearch {
    /// Builds it from its config.
    pub fn new(cfg: &ElasticsearchConfig, timeout: Duration) -> Result<Elasticsearch, SinkError> {
        let tls = ClientTls::from_files(
            cfg.ca_file.as_deref(),
            cfg.client_cert.as_deref(),
            cfg.client_key.as_deref(),
        )?;
        let auth = match (&cfg.api_key, &cfg.username) {
            (Some(k), _) => Some(format!("ApiKey {k}")),
            (None, Some(u)) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{u}:{}", cfg.password.as_deref().unwrap_or("")))
            )),
            _ => None,
        };
        Ok(Elasticsearch {
            url: format!("{}/_bulk", cfg.url.trim_end_matches('/')),
            index: cfg.target(),
            opts: DocOptions {
                data_stream: cfg.data_stream(),
                keep_original: cfg.keep_original.unwrap_or(true),
            },
            auth,
            client: client(&tls, timeout)?,
        })
    }

    fn bulk(&self, body: Vec<u8>) -> Result<Vec<u8>, SinkError> {
        let mut req = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/x-ndjson")
            .body(body);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().map_err(|e| transport(&self.url, e))?;
        expect_success(&self.url, resp)
    }
}

impl Destination for Elasticsearch {
    fn kind(&self) -> &'static str {
        "elasticsearch"
    }

    fn send(&mut self, batch: &[Outgoing]) -> Result<Delivery, SinkError> {
        let mut body = Vec::with_capacity(batch.len() * 2048);
        encode_bulk(&self.index, &self.opts, batch, &mut body)?;
        let answer = self.bulk(body)?;
        parse_bulk_response(&answer, batch.len())
    }

    fn send_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), SinkError> {
        let mut body = Vec::new();
        let action =
            json!({"create": {"_index": self.index, "_id": format!("checkpoint-{}", cp.size)}});
        let doc = json!({
            "@timestamp": cp.time,
            "event": {"kind": "state", "module": "kaudit", "dataset": "kaudit.checkpoint"},
            "kaudit": {"checkpoint": {"size": cp.size, "time": cp.time, "note": cp.note}},
        });
        for v in [action, doc] {
            serde_json::to_writer(&mut body, &v).map_err(|e| SinkError::Config(e.to_string()))?;
            body.push(b'\n');
        }
        let answer = self.bulk(body)?;
        let d = parse_bulk_response(&answer, 1)?;
        if let Some((_, r)) = d.rejected.first() {
            return Err(SinkError::Rejected(format!("checkpoint refused: {r}")));
        }
        if !d.retry.is_empty() {
            return Err(SinkError::Rejected(
                "checkpoint: Elasticsearch asked to retry".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_items_sort_into_taken_retry_and_refused() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"create":{"_index":"a","_id":"1","status":201}},
            {"create":{"_index":"a","_id":"2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"create":{"_index":"a","_id":"3","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"_index":"a","_id":"4","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [x]"}}},
            {"create":{"_index":"a","_id":"5","status":503}}]}"#;
        let d = parse_bulk_response(body, 5).unwrap();
        assert_eq!(d.retry, vec![2, 4]);
        assert_eq!(
            d.rejected,
            vec![(
                3,
                "HTTP 400: mapper_parsing_exception: failed to parse field [x]".to_string()
            )]
        );
        assert!(
            parse_bulk_response(body, 4).is_err(),
            "count mismatch must not pass"
        );
        assert!(parse_bulk_response(b"<html>", 1).is_err());
    }

    /// Three distinct events under one auditID and stage (as an aggregated
    /// API server, a client-set Audit-ID or Elastic's own test events make
    /// them) get three `_id`s, so none is taken for a resend of another and
    /// dropped on a 409; the same bytes sent again get the same `_id`.
    #[test]
    fn bulk_ids_tell_distinct_events_apart_and_keep_resends_idempotent() {
        let line = |verb: &str| {
            format!(
                r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"same","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"{verb}","user":{{"username":"u"}},"requestReceivedTimestamp":"2026-01-05T09:00:00.100000Z","stageTimestamp":"2026-01-05T09:00:00.123456Z"}}"#
            )
        };
        let out = |verb: &str| Outgoing {
            seq: 1,
            cluster: "c".into(),
            received: kaudit_event::MicroTime(0),
            event: kaudit_event::Event::from_json(line(verb).as_bytes()).unwrap(),
        };
        let batch = [out("get"), out("list"), out("watch")];
        let ids = |batch: &[Outgoing]| -> Vec<String> {
            let mut body = Vec::new();
            encode_bulk("idx", &DocOptions::default(), batch, &mut body).unwrap();
            body.split(|b| *b == b'\n')
                .step_by(2)
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let v: Value = serde_json::from_slice(l).unwrap();
                    v["create"]["_id"].as_str().unwrap().to_string()
                })
                .collect()
        };
        let first = ids(&batch);
        assert_eq!(first.len(), 3);
        let distinct: std::collections::BTreeSet<&String> = first.iter().collect();
        assert_eq!(distinct.len(), 3, "{first:?}");
        for id in &first {
            assert!(id.starts_with("same-ResponseComplete-"), "{id}");
            assert_eq!(id.len(), "same-ResponseComplete-".len() + 16, "{id}");
        }
        // A resend (another seq, another receive time, same bytes).
        let mut again = batch.clone();
        for o in &mut again {
            o.seq += 10;
            o.received = kaudit_event::MicroTime(5);
        }
        assert_eq!(ids(&again), first);
    }

    #[test]
    fn outcome_follows_the_decision() {
        assert_eq!(outcome(Some("allow")), Some("success"));
        assert_eq!(outcome(Some("forbid")), Some("failure"));
        assert_eq!(outcome(Some("")), None);
        assert_eq!(outcome(None), None);
    }
}
