//! Docker -> `audit.k8s.io/v1` Event: how an Engine API call (proxy, plugin)
//! and a daemon event (`/events`) become the one event shape the rest of
//! kaudit speaks. The mapping is documented in the module docs of
//! [`crate::docker`] and in the README ("Auditing Docker").

use kaudit_event::{Event, EventDoc, Level, MicroTime, ObjectRef, ResponseStatus, Stage, UserInfo};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// `objectRef.apiGroup` of every Docker record.
pub const API_GROUP: &str = "docker.com";
/// Annotation naming where a record came from (`docker`): what the query
/// field `source` reads.
pub const SOURCE_ANNOTATION: &str = "kaudit.io/source";
/// Annotation naming the Docker host (the name given in the config).
pub const HOST_ANNOTATION: &str = "kaudit.io/host";
/// Annotation naming the way the record was taken: `proxy`, `events`, `authz`.
pub const MODE_ANNOTATION: &str = "docker.com/mode";
/// The user name of records the daemon itself reports (events).
pub const DAEMON_USER: &str = "system:dockerd";
/// Longest path segment kept as an object name (longer names are cut).
const MAX_NAME: usize = 512;

/// What a Docker Engine API call is about: the `objectRef` and `verb` of its
/// audit event.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ApiCall {
    /// `v1.41` when the path carried a version prefix, else empty.
    pub api_version: String,
    /// Plural resource (`containers`, `images`, `exec`, `system`, ...).
    pub resource: String,
    /// Object name or id (`web`, `127.0.0.1:5000/busybox:1`); empty for lists.
    pub name: String,
    /// Read-only sub-views (`logs`, `json`, `stats`) and attach/exec.
    pub subresource: String,
    /// Docker's action: `create`, `start`, `pull`, `exec`, `delete`, `list`, `get`, ...
    pub verb: String,
    /// Whether the response is long-running (streams, hijacked connections):
    /// it gets a ResponseStarted stage.
    pub long_running: bool,
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn query_true(query: &str, key: &str) -> bool {
    matches!(
        query_param(query, key).as_deref(),
        Some("1" | "true" | "True")
    )
}

/// Decodes `%XX` and `+` of a query value (invalid escapes stay as they are).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_NAME {
        return s.to_string();
    }
    let mut end = MAX_NAME;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Maps an Engine API request (method, path without query, query) onto the
/// resource, name, verb and subresource of its audit event. Unknown paths
/// still map (resource = first segment, verb = lower-case method), so nothing
/// goes unrecorded.
pub fn classify(method: &str, path: &str, query: &str) -> ApiCall {
    let mut call = ApiCall::default();
    let mut rest = path.trim_start_matches('/');
    if let Some((first, tail)) = rest.split_once('/') {
        if first.starts_with('v') && first[1..].chars().all(|c| c.is_ascii_digit() || c == '.') {
            call.api_version = first.to_string();
            rest = tail;
        }
    } else if rest.starts_with('v')
        && rest.len() > 1
        && rest[1..].chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        call.api_version = rest.to_string();
        rest = "";
    }
    let m = method.to_ascii_uppercase();
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let method_verb = |m: &str| match m {
        "GET" | "HEAD" => "get",
        "POST" => "create",
        "PUT" => "update",
        "DELETE" => "delete",
        _ => "unknown",
    };
    let set = |c: &mut ApiCall, res: &str, name: &str, sub: &str, verb: &str| {
        c.resource = res.to_string();
        c.name = cut(name);
        c.subresource = sub.to_string();
        c.verb = verb.to_string();
    };
    match segs.as_slice() {
        [] => set(&mut call, "system", "", "", method_verb(&m)),
        ["_ping"] => set(&mut call, "system", "ping", "", "get"),
        ["version"] => set(&mut call, "system", "version", "", "get"),
        ["info"] => set(&mut call, "system", "info", "", "get"),
        ["system", "df"] => set(&mut call, "system", "df", "", "get"),
        ["events"] | ["system", "events"] => {
            set(&mut call, "events", "", "", "watch");
            call.long_running = true;
        }
        ["auth"] => set(&mut call, "auth", "", "", "login"),
        ["session"] => {
            set(&mut call, "session", "", "", "connect");
            call.long_running = true;
        }
        ["build"] => {
            let tag = query_param(query, "t").unwrap_or_default();
            set(&mut call, "images", &tag, "", "build");
        }
        ["build", "prune"] => set(&mut call, "images", "", "build", "prune"),
        ["commit"] => {
            let repo = query_param(query, "repo").unwrap_or_default();
            let tag = query_param(query, "tag").unwrap_or_default();
            let name = if tag.is_empty() {
                repo
            } else {
                format!("{repo}:{tag}")
            };
            set(&mut call, "images", &name, "", "commit");
        }
        ["containers", "json"] => set(&mut call, "containers", "", "", "list"),
        ["containers", "create"] => {
            let name = query_param(query, "name").unwrap_or_default();
            set(&mut call, "containers", &name, "", "create");
        }
        ["containers", "prune"] => set(&mut call, "containers", "", "", "prune"),
        ["containers", id] => set(&mut call, "containers", id, "", method_verb(&m)),
        ["containers", id, action, ..] => {
            let (sub, verb, long) = match (*action, m.as_str()) {
                ("exec", _) => ("exec", "exec", false),
                ("attach", _) => ("attach", "attach", true),
                ("logs", _) => ("logs", "get", query_true(query, "follow")),
                ("stats", _) => (
                    "stats",
                    "get",
                    !matches!(query_param(query, "stream").as_deref(), Some("0" | "false")),
                ),
                ("wait", _) => ("wait", "wait", true),
                ("json" | "top" | "changes" | "export", _) => (*action, "get", false),
                ("archive", "GET" | "HEAD") => ("archive", "get", false),
                ("archive", "PUT") => ("archive", "copy", false),
                (a, _) => ("", a, false),
            };
            set(&mut call, "containers", id, sub, verb);
            call.long_running = long;
        }
        ["exec", id, "start"] => {
            set(&mut call, "exec", id, "", "start");
            call.long_running = true;
        }
        ["exec", id, "json"] => set(&mut call, "exec", id, "", "get"),
        ["exec", id, action, ..] => set(&mut call, "exec", id, "", action),
        ["images", "json"] => set(&mut call, "images", "", "", "list"),
        ["images", "create"] => match query_param(query, "fromImage") {
            Some(img) => {
                let tag = query_param(query, "tag").unwrap_or_default();
                let name = if tag.is_empty() || img.contains('@') {
                    img
                } else {
                    format!("{img}:{tag}")
                };
                set(&mut call, "images", &name, "", "pull");
            }
            None => {
                let repo = query_param(query, "repo").unwrap_or_default();
                set(&mut call, "images", &repo, "", "import");
            }
        },
        ["images", "search"] => set(&mut call, "images", "", "", "search"),
        ["images", "load"] => set(&mut call, "images", "", "", "load"),
        ["images", "get"] => set(&mut call, "images", "", "", "save"),
        ["images", "prune"] => set(&mut call, "images", "", "", "prune"),
        ["images", ..] => {
            // Image names hold slashes: /images/127.0.0.1:5000/busybox/push.
            let inner = &segs[1..];
            let last = inner.last().copied().unwrap_or("");
            let action = match (last, m.as_str()) {
                ("json", "GET") => Some(("json", "get")),
                ("history", "GET") => Some(("history", "get")),
                ("get", "GET") => Some(("", "save")),
                ("push", "POST") => Some(("", "push")),
                ("tag", "POST") => Some(("", "tag")),
                _ => None,
            };
            match action {
                Some((sub, verb)) if inner.len() > 1 => {
                    let mut name = inner[..inner.len() - 1].join("/");
                    if verb == "push" {
                        if let Some(tag) = query_param(query, "tag").filter(|t| !t.is_empty()) {
                            name = format!("{name}:{tag}");
                        }
                    }
                    set(&mut call, "images", &name, sub, verb);
                }
                _ => set(&mut call, "images", &inner.join("/"), "", method_verb(&m)),
            }
        }
        ["distribution", .., "json"] => {
            let name = segs[1..segs.len() - 1].join("/");
            set(&mut call, "images", &name, "distribution", "get");
        }
        ["plugins", "pull"] => {
            let remote = query_param(query, "remote").unwrap_or_default();
            set(&mut call, "plugins", &remote, "", "pull");
        }
        ["plugins", "privileges"] => set(&mut call, "plugins", "", "privileges", "get"),
        ["plugins", "create"] => {
            let name = query_param(query, "name").unwrap_or_default();
            set(&mut call, "plugins", &name, "", "create");
        }
        [res @ ("plugins" | "volumes" | "networks" | "services" | "nodes" | "secrets"
        | "configs" | "tasks" | "swarm"), tail @ ..] => {
            let res = *res;
            match (tail, m.as_str()) {
                ([], "GET") | (["json"], "GET") => set(&mut call, res, "", "", "list"),
                (["create"], _) => {
                    let name = query_param(query, "name").unwrap_or_default();
                    set(&mut call, res, &name, "", "create");
                }
                (["prune"], _) => set(&mut call, res, "", "", "prune"),
                ([] | ["init" | "join" | "leave" | "update" | "unlock" | "unlockkey"], _)
                    if res == "swarm" =>
                {
                    let verb = tail.first().copied().unwrap_or(method_verb(&m));
                    set(&mut call, res, "", "", verb)
                }
                ([id], _) | ([id, "json"], "GET") => set(&mut call, res, id, "", method_verb(&m)),
                ([id, "logs"], _) => {
                    set(&mut call, res, id, "logs", "get");
                    call.long_running = query_true(query, "follow");
                }
                ([id, action, ..], _) => set(&mut call, res, id, "", action),
                _ => set(&mut call, res, "", "", method_verb(&m)),
            }
        }
        [first, tail @ ..] => {
            let name = tail.join("/");
            set(&mut call, first, &name, "", method_verb(&m));
        }
    }
    call
}

/// The peer of a proxied call, from `SO_PEERCRED` and `/proc`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// User id of the calling process.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Process id (0 when unknown).
    pub pid: i32,
    /// User name from the passwd database, else the uid as text.
    pub user: String,
    /// Names of the groups of `user` (primary first), when known.
    pub groups: Vec<String>,
    /// `/proc/<pid>/exe`, when readable.
    pub exe: String,
    /// `/proc/<pid>/cmdline`, arguments joined by spaces (bounded).
    pub cmdline: String,
}

/// One recorded Engine API call: what the proxy or the plugin saw.
#[derive(Clone, Debug, Default)]
pub struct CallRecord {
    /// Request id shared by every stage of the call (a UUID).
    pub audit_id: String,
    /// The host name given in the config (`build-01`).
    pub host: String,
    /// `proxy` or `authz`.
    pub mode: String,
    /// Who called.
    pub user: UserInfo,
    /// Peer process details (proxy mode).
    pub peer: Option<Peer>,
    /// HTTP method.
    pub method: String,
    /// Request target as sent (path and query).
    pub uri: String,
    /// The client's User-Agent.
    pub user_agent: String,
    /// Client addresses (`127.0.0.1` for a unix socket, as kube-apiserver does for local callers).
    pub source_ips: Vec<String>,
    /// When the request arrived.
    pub received: Option<MicroTime>,
    /// When this stage was reached.
    pub at: Option<MicroTime>,
    /// The stage.
    pub stage: Option<Stage>,
    /// Response status code, once known.
    pub status: Option<u16>,
    /// Docker's error message (`{"message": ...}`), when the response said one.
    pub error: String,
    /// Request body (JSON, already redacted), at level Request and above.
    pub request_body: Option<Value>,
    /// Response body (JSON), at level RequestResponse.
    pub response_body: Option<Value>,
    /// Authorization decision (`allow`/`forbid`) and reason, when one was made.
    pub decision: Option<(String, String)>,
    /// Bytes forwarded client -> daemon and daemon -> client (stage ResponseComplete).
    pub bytes: Option<(u64, u64)>,
    /// Extra Docker fields kept under the top-level `docker` object.
    pub extra: Map<String, Value>,
    /// The object's name and id when the caller named it by id (or by
    /// name) and the other is known (`objectRef.name` and `objectRef.uid`),
    /// so a container's history reads the same whichever the client used.
    pub object: Option<(String, String)>,
}

/// Annotation naming the registry of the image a call pulls, pushes or
/// creates a container from (`docker.io` for short names).
pub const REGISTRY_ANNOTATION: &str = "docker.com/registry";
/// Annotation of a daemon `die` event with a non-zero exit: how many such
/// exits the container had in the last ten minutes (the events source counts).
pub const RECENT_FAILURES_ANNOTATION: &str = "docker.com/recent-failures";

/// The registry of an image reference, as Docker resolves it: the first
/// path component when it holds a `.` or `:` or is `localhost`, else
/// `docker.io`.
pub fn registry_of(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// Whether a Docker host name is usable as a cluster name (it is sent as
/// `?cluster=` and shown beside clusters): 1 to 253 letters, digits, `-`,
/// `.` or `_`, starting and ending with a letter or digit.
pub fn check_host_name(name: &str) -> Result<(), String> {
    let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{name:?}: 1 to 253 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        || !ok_end(name.chars().next())
        || !ok_end(name.chars().last())
    {
        return Err(format!(
            "{name:?}: use letters, digits, '-', '.' and '_', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A UUID (v4 layout) from 16 random-enough bytes: a hash of `seed`.
pub fn uuid_from(seed: &[u8]) -> String {
    let h = Sha256::digest(seed);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// A fresh random audit id.
pub fn new_audit_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    // Random once per process (pid and start time as a fallback), then a
    // counter: unique without a system call per request.
    let seed = SEED.get_or_init(|| {
        let mut s = [0u8; 32];
        if !getrandom_fill(&mut s) {
            s[..4].copy_from_slice(&std::process::id().to_le_bytes());
            s[8..16].copy_from_slice(&MicroTime::now().micros().to_le_bytes());
        }
        s
    });
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 40];
    buf[..32].copy_from_slice(seed);
    buf[32..].copy_from_slice(&n.to_le_bytes());
    uuid_from(&buf)
}

fn getrandom_fill(buf: &mut [u8]) -> bool {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok()
}

fn raw(v: &Value) -> Option<Box<RawValue>> {
    RawValue::from_string(v.to_string()).ok()
}

fn base_annotations(host: &str, mode: &str) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(SOURCE_ANNOTATION.to_string(), "docker".to_string());
    a.insert(HOST_ANNOTATION.to_string(), host.to_string());
    a.insert(MODE_ANNOTATION.to_string(), mode.to_string());
    a
}

impl CallRecord {
    /// The audit event of this record at its stage and `level`. The level
    /// decides what is kept: bodies only at Request (request) and
    /// RequestResponse (both); the policy applied on ingest may lower it.
    pub fn to_event(&self, level: Level) -> Event {
        let (path, query) = self.uri.split_once('?').unwrap_or((&self.uri, ""));
        let call = classify(&self.method, path, query);
        let mut doc = EventDoc {
            level,
            audit_id: self.audit_id.clone(),
            stage: self.stage,
            request_uri: self.uri.clone(),
            verb: call.verb.clone(),
            user: self.user.clone(),
            source_ips: self.source_ips.clone(),
            user_agent: self.user_agent.clone(),
            object_ref: Some(ObjectRef {
                resource: call.resource.clone(),
                name: self
                    .object
                    .as_ref()
                    .map_or_else(|| call.name.clone(), |(n, _)| n.clone()),
                uid: self
                    .object
                    .as_ref()
                    .map(|(_, u)| u.clone())
                    .unwrap_or_default(),
                api_group: API_GROUP.to_string(),
                api_version: call.api_version.clone(),
                subresource: call.subresource.clone(),
                ..ObjectRef::default()
            }),
            request_received_timestamp: self.received,
            stage_timestamp: self.at.or(self.received),
            annotations: base_annotations(&self.host, &self.mode),
            ..EventDoc::default()
        };
        if let Some(code) = self.status {
            let code = i32::from(code);
            // A 200 progress stream (pull, push, build) can still report failure.
            let failed = code >= 400 || self.extra.contains_key("streamError");
            let status = if failed { "Failure" } else { "" };
            doc.response_status = Some(ResponseStatus::new(code, status, &self.error, ""));
        }
        // The registry an image comes from, for allow-list rules.
        let image = match (call.resource.as_str(), call.verb.as_str()) {
            ("images", "pull" | "push") => Some(call.name.clone()),
            ("containers", "create") => self
                .request_body
                .as_ref()
                .and_then(|b| b.get("Image"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        };
        if let Some(img) = image.filter(|i| !i.is_empty()) {
            doc.annotations
                .insert(REGISTRY_ANNOTATION.into(), registry_of(&img).to_string());
            doc.annotations.insert("docker.com/image".into(), cut(&img));
        }
        if let Some((decision, reason)) = &self.decision {
            doc.annotations.insert(
                "authorization.k8s.io/decision".to_string(),
                decision.clone(),
            );
            doc.annotations
                .insert("authorization.k8s.io/reason".to_string(), reason.clone());
        }
        if level >= Level::Request {
            doc.request_object = self.request_body.as_ref().and_then(raw);
        }
        if level >= Level::RequestResponse {
            doc.response_object = self.response_body.as_ref().and_then(raw);
        }
        let mut docker = Map::new();
        docker.insert("host".into(), Value::from(self.host.clone()));
        docker.insert("method".into(), Value::from(self.method.clone()));
        docker.insert("path".into(), Value::from(path));
        if !query.is_empty() {
            docker.insert("query".into(), Value::from(query));
        }
        if !call.api_version.is_empty() {
            docker.insert("apiVersion".into(), Value::from(call.api_version.clone()));
        }
        if let Some(p) = &self.peer {
            let mut pm = Map::new();
            pm.insert("uid".into(), Value::from(p.uid));
            pm.insert("gid".into(), Value::from(p.gid));
            pm.insert("pid".into(), Value::from(p.pid));
            if !p.exe.is_empty() {
                pm.insert("exe".into(), Value::from(p.exe.clone()));
            }
            if !p.cmdline.is_empty() {
                pm.insert("cmdline".into(), Value::from(p.cmdline.clone()));
            }
            docker.insert("peer".into(), Value::Object(pm));
        }
        if let Some(code) = self.status {
            docker.insert("status".into(), Value::from(code));
        }
        if let (Some(r), Some(a)) = (self.received, self.at) {
            docker.insert("latencyMicros".into(), Value::from(a.micros() - r.micros()));
        }
        if let Some((up, down)) = self.bytes {
            docker.insert("bytesIn".into(), Value::from(up));
            docker.insert("bytesOut".into(), Value::from(down));
        }
        for (k, v) in &self.extra {
            docker.insert(k.clone(), v.clone());
        }
        if let Some(r) = raw(&Value::Object(docker)) {
            doc.unknown.push(("docker".to_string(), r));
        }
        Event::from_doc(doc)
    }
}

/// Why a daemon event was not mapped.
#[derive(Debug, thiserror::Error)]
pub enum DockerEventError {
    /// Not a JSON object.
    #[error("not a Docker event (JSON object expected): {0}")]
    NotJson(String),
    /// A required field is missing or of the wrong type.
    #[error("Docker event without {0}")]
    Missing(&'static str),
}

/// A daemon event's position: its `timeNano`.
pub fn event_time_nano(v: &Value) -> Option<i64> {
    v.get("timeNano").and_then(Value::as_i64).or_else(|| {
        v.get("time")
            .and_then(Value::as_i64)
            .map(|s| s * 1_000_000_000)
    })
}

/// Plural resource of a Docker event `Type`.
pub fn resource_of_type(t: &str) -> String {
    match t {
        "container" => "containers".into(),
        "image" => "images".into(),
        "volume" => "volumes".into(),
        "network" => "networks".into(),
        "daemon" => "daemons".into(),
        "plugin" => "plugins".into(),
        "node" => "nodes".into(),
        "service" => "services".into(),
        "secret" => "secrets".into(),
        "config" => "configs".into(),
        "builder" => "builders".into(),
        other if other.ends_with('s') => other.into(),
        other => format!("{other}s"),
    }
}

/// Maps one `/events` message (its exact bytes) to an audit event. The
/// audit id is a hash of the host and the bytes, so a re-read event (resumed
/// with `since`) has the same id and the ingest's dedupe drops it.
pub fn daemon_event(bytes: &[u8], host: &str) -> Result<Event, DockerEventError> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| DockerEventError::NotJson(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or(DockerEventError::NotJson("not an object".into()))?;
    let typ = obj
        .get("Type")
        .and_then(Value::as_str)
        .ok_or(DockerEventError::Missing("Type"))?;
    let action_full = obj
        .get("Action")
        .or_else(|| obj.get("status"))
        .and_then(Value::as_str)
        .ok_or(DockerEventError::Missing("Action"))?;
    let nano = event_time_nano(&v).ok_or(DockerEventError::Missing("timeNano"))?;
    let actor = obj.get("Actor");
    let id = actor
        .and_then(|a| a.get("ID"))
        .and_then(Value::as_str)
        .or_else(|| obj.get("id").and_then(Value::as_str))
        .unwrap_or("");
    let attrs = actor
        .and_then(|a| a.get("Attributes"))
        .and_then(Value::as_object);
    let attr = |k: &str| attrs.and_then(|a| a.get(k)).and_then(Value::as_str);
    // `exec_start: sh -c ls`, `health_status: healthy`: the verb is the part
    // before the colon, the rest is kept as an annotation.
    let (action, detail) = match action_full.split_once(": ") {
        Some((a, d)) => (a, d),
        None => (action_full, ""),
    };
    let name = match typ {
        "container" | "volume" | "network" | "plugin" | "node" | "service" | "secret"
        | "config" => attr("name").unwrap_or(id),
        "image" => attr("name").unwrap_or(id),
        _ => attr("name").unwrap_or(id),
    };
    let mut seed = Vec::with_capacity(bytes.len() + host.len() + 1);
    seed.extend_from_slice(host.as_bytes());
    seed.push(0);
    seed.extend_from_slice(bytes);
    let at = MicroTime(nano.div_euclid(1000));
    let mut annotations = base_annotations(host, "events");
    if !detail.is_empty() {
        annotations.insert("docker.com/action-detail".into(), cut(detail));
    }
    if let Some(code) = attr("exitCode") {
        annotations.insert("docker.com/exit-code".into(), code.to_string());
    }
    if let Some(img) = attr("image") {
        annotations.insert("docker.com/image".into(), cut(img));
    }
    let mut doc = EventDoc {
        level: Level::Metadata,
        audit_id: uuid_from(&seed),
        stage: Some(Stage::ResponseComplete),
        request_uri: format!("/events#{typ}/{action}"),
        verb: action.to_string(),
        user: UserInfo {
            username: DAEMON_USER.to_string(),
            ..UserInfo::default()
        },
        object_ref: Some(ObjectRef {
            resource: resource_of_type(typ),
            name: cut(name),
            uid: if name != id { cut(id) } else { String::new() },
            api_group: API_GROUP.to_string(),
            ..ObjectRef::default()
        }),
        request_received_timestamp: Some(at),
        stage_timestamp: Some(at),
        annotations,
        ..EventDoc::default()
    };
    let mut docker = Map::new();
    docker.insert("host".into(), Value::from(host));
    docker.insert("event".into(), v);
    if let Some(r) = raw(&Value::Object(docker)) {
        doc.unknown.push(("docker".to_string(), r));
    }
    Ok(Event::from_doc(doc))
}

/// Redacts secrets from a request body before it is kept: the `/auth` body's
/// `password` and `identitytoken`, and any key naming a password, secret or
/// token anywhere in the document.
pub fn redact_body(v: &mut Value) {
    redact_depth(v, 0)
}

const REDACTED: &str = "<redacted>";

fn sensitive(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.contains("token")
        || k == "auth"
        || k == "x-registry-auth"
        || k == "x-registry-config"
}

fn redact_depth(v: &mut Value, depth: usize) {
    if depth > 64 {
        *v = Value::from(REDACTED);
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if sensitive(k) && !val.is_null() {
                    *val = Value::from(REDACTED);
                } else {
                    redact_depth(val, depth + 1);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| redact_depth(x, depth + 1)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(m: &str, uri: &str) -> (String, String, String, String) {
        let (p, q) = uri.split_once('?').unwrap_or((uri, ""));
        let a = classify(m, p, q);
        (a.resource, a.verb, a.name, a.subresource)
    }

    fn t(r: &str, v: &str, n: &str, s: &str) -> (String, String, String, String) {
        (r.into(), v.into(), n.into(), s.into())
    }

    #[test]
    fn classifies_the_seed_scenario() {
        assert_eq!(
            c(
                "POST",
                "/v1.41/images/create?fromImage=127.0.0.1%3A5000%2Fbusybox&tag=1"
            ),
            t("images", "pull", "127.0.0.1:5000/busybox:1", "")
        );
        assert_eq!(
            c("POST", "/v1.41/containers/create?name=web"),
            t("containers", "create", "web", "")
        );
        assert_eq!(
            c("POST", "/v1.41/containers/web/start"),
            t("containers", "start", "web", "")
        );
        assert_eq!(
            c("POST", "/v1.41/containers/web/exec"),
            t("containers", "exec", "web", "exec")
        );
        assert_eq!(
            c("POST", "/v1.41/exec/abc/start"),
            t("exec", "start", "abc", "")
        );
        assert_eq!(
            c("DELETE", "/v1.41/containers/web?force=1"),
            t("containers", "delete", "web", "")
        );
        assert_eq!(
            c("POST", "/v1.41/images/127.0.0.1:5000/busybox/push?tag=1"),
            t("images", "push", "127.0.0.1:5000/busybox:1", "")
        );
        assert_eq!(
            c("GET", "/v1.41/containers/json"),
            t("containers", "list", "", "")
        );
        assert_eq!(c("HEAD", "/_ping"), t("system", "get", "ping", ""));
        assert_eq!(
            c("POST", "/v1.41/volumes/create"),
            t("volumes", "create", "", "")
        );
        assert_eq!(
            c("DELETE", "/v1.41/volumes/data"),
            t("volumes", "delete", "data", "")
        );
        assert_eq!(
            c("POST", "/v1.41/networks/n1/connect"),
            t("networks", "connect", "n1", "")
        );
        assert_eq!(
            c("POST", "/v1.41/plugins/pull?remote=vieux/sshfs"),
            t("plugins", "pull", "vieux/sshfs", "")
        );
        assert_eq!(
            c("POST", "/v1.41/plugins/p/enable"),
            t("plugins", "enable", "p", "")
        );
        assert_eq!(
            c("GET", "/v1.41/images/busybox:1/json"),
            t("images", "get", "busybox:1", "json")
        );
        assert_eq!(
            c("DELETE", "/v1.41/images/a/b:1"),
            t("images", "delete", "a/b:1", "")
        );
        assert_eq!(
            c("GET", "/v1.41/containers/x/logs?follow=1"),
            t("containers", "get", "x", "logs")
        );
        assert!(classify("GET", "/v1.41/containers/x/logs", "follow=1").long_running);
        assert!(!classify("GET", "/v1.41/containers/x/logs", "").long_running);
        assert!(classify("GET", "/events", "").long_running);
        assert_eq!(
            c("PATCH", "/weird/thing"),
            t("weird", "unknown", "thing", "")
        );
        assert_eq!(classify("GET", "/v1.41/info", "").api_version, "v1.41");
    }

    #[test]
    fn classify_never_panics_on_odd_paths() {
        for p in [
            "",
            "/",
            "//",
            "/v",
            "/v1.41",
            "/images",
            "/images/",
            "/distribution/json",
            "/containers//start",
            "/exec",
            "/swarm",
            "/plugins/x/y/z",
            "/%ff%",
            "/é/ü",
        ] {
            for m in ["GET", "POST", "DELETE", "PUT", "HEAD", "X"] {
                let _ = classify(m, p, "a=%&b=%zz&=");
            }
        }
    }

    #[test]
    fn call_record_becomes_a_v1_event() {
        let rec = CallRecord {
            audit_id: uuid_from(b"x"),
            host: "build-01".into(),
            mode: "proxy".into(),
            user: UserInfo {
                username: "alice".into(),
                uid: "1001".into(),
                ..Default::default()
            },
            peer: Some(Peer {
                uid: 1001,
                gid: 1001,
                pid: 42,
                user: "alice".into(),
                ..Default::default()
            }),
            method: "POST".into(),
            uri: "/v1.41/containers/create?name=web".into(),
            user_agent: "Docker-Client/20.10".into(),
            source_ips: vec!["127.0.0.1".into()],
            received: Some(MicroTime(1_000_000)),
            at: Some(MicroTime(1_000_500)),
            stage: Some(Stage::ResponseComplete),
            status: Some(201),
            request_body: Some(serde_json::json!({"Image": "busybox"})),
            response_body: Some(serde_json::json!({"Id": "abc"})),
            ..Default::default()
        };
        let ev = rec.to_event(Level::Request);
        let doc = ev.doc();
        assert_eq!(doc.verb, "create");
        assert_eq!(doc.user.username, "alice");
        let o = doc.object_ref.as_ref().unwrap();
        assert_eq!(
            (o.api_group.as_str(), o.resource.as_str(), o.name.as_str()),
            ("docker.com", "containers", "web")
        );
        assert_eq!(ev.annotation(SOURCE_ANNOTATION), Some("docker"));
        assert_eq!(ev.annotation(HOST_ANNOTATION), Some("build-01"));
        assert!(doc.request_object.is_some());
        assert!(
            doc.response_object.is_none(),
            "response body only at RequestResponse"
        );
        assert_eq!(ev.response_code(), Some(201));
        // The bytes are a v1 event that parses back to the same fields.
        let back = Event::from_json(ev.bytes()).unwrap();
        assert_eq!(back.verb(), "create");
        let v: Value = serde_json::from_slice(ev.bytes()).unwrap();
        assert_eq!(v["docker"]["peer"]["pid"], 42);
        assert_eq!(v["docker"]["latencyMicros"], 500);
        let md = rec.to_event(Level::Metadata);
        assert!(md.doc().request_object.is_none());
    }

    #[test]
    fn daemon_events_map_and_ids_are_stable() {
        let raw = br#"{"status":"die","id":"c1","from":"busybox","Type":"container","Action":"die","Actor":{"ID":"c1","Attributes":{"exitCode":"3","image":"busybox","name":"web"}},"scope":"local","time":1700000000,"timeNano":1700000000123456789}"#;
        let a = daemon_event(raw, "build-01").unwrap();
        let b = daemon_event(raw, "build-01").unwrap();
        assert_eq!(a.audit_id(), b.audit_id());
        assert_ne!(a.audit_id(), daemon_event(raw, "other").unwrap().audit_id());
        assert_eq!(a.verb(), "die");
        let o = a.object_ref().unwrap();
        assert_eq!(
            (o.resource.as_str(), o.name.as_str(), o.uid.as_str()),
            ("containers", "web", "c1")
        );
        assert_eq!(a.annotation("docker.com/exit-code"), Some("3"));
        assert_eq!(a.stage_timestamp(), Some(MicroTime(1_700_000_000_123_456)));
        let exec = br#"{"Type":"container","Action":"exec_start: sh -c ls","Actor":{"ID":"c1","Attributes":{}},"timeNano":5}"#;
        let e = daemon_event(exec, "h").unwrap();
        assert_eq!(e.verb(), "exec_start");
        assert_eq!(e.annotation("docker.com/action-detail"), Some("sh -c ls"));
        assert!(daemon_event(b"[1]", "h").is_err());
        assert!(daemon_event(b"{\"Type\":\"container\"}", "h").is_err());
        assert!(daemon_event(b"not json", "h").is_err());
    }

    #[test]
    fn redaction_removes_passwords_anywhere() {
        let mut v = serde_json::json!({"username": "u", "password": "p", "serveraddress": "r",
            "nested": [{"IdentityToken": "t"}], "Env": ["A=1"]});
        redact_body(&mut v);
        let s = v.to_string();
        assert!(!s.contains("\"p\"") && !s.contains("\"t\""), "{s}");
        assert!(s.contains("\"u\"") && s.contains("A=1"));
    }

    #[test]
    fn host_names() {
        assert!(check_host_name("build-01").is_ok());
        assert!(check_host_name("a.b_c").is_ok());
        for bad in ["", "-a", "a-", "a b", "a/b", "a?x=1"] {
            assert!(check_host_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registries() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("library/busybox:1"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/busybox:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("ghcr.io/a/b"), "ghcr.io");
        assert_eq!(registry_of("localhost/x"), "localhost");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%41"), "A");
    }
}
