//! Authorization-plugin mode: dockerd asks kaudit about every call it
//! receives, on any listener (`dockerd --authorization-plugin=kaudit`, the
//! plugin socket `/run/docker/plugins/kaudit.sock`). The protocol is
//! Docker's plugin API: `POST /Plugin.Activate` (answer `{"Implements":
//! ["authz"]}`), `POST /AuthZPlugin.AuthZReq` before the call and `POST
//! /AuthZPlugin.AuthZRes` after it (hijacked calls have no AuthZRes).
//!
//! Each AuthZReq becomes a RequestReceived record and each AuthZRes a
//! ResponseComplete record of the same audit id (matched by user, method and
//! URI, oldest first), with the user the daemon reports (`User`: the TLS
//! client certificate's CN; `docker:anonymous` on a plain socket). All is
//! allowed by default; with `deny_rules` (a Falco rules file evaluated over
//! the RequestReceived record, body included) a matching call is refused with
//! the rule's output as the message, and the denial is recorded
//! (`authorization.k8s.io/decision: forbid`, status 403).

use super::http::{self, Capture, Framing};
use super::map::{self, CallRecord};
use super::proxy::{ProxyError, Recorder};
use base64::Engine as _;
use kaudit_event::{Level, MicroTime, Stage, UserInfo};
use kaudit_rules::{Engine, EngineBuilder, EngineOptions, MatchMode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Largest plugin request accepted (the daemon sends bodies up to 1 MiB).
pub const MAX_PLUGIN_BODY: u64 = 4 << 20;
/// Calls awaiting their AuthZRes that are remembered.
const MAX_PENDING: usize = 65_536;

/// `sources: [{docker_authz: {listen, name, deny_rules}}]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzConfig {
    /// The plugin socket (`/run/docker/plugins/kaudit.sock`).
    pub listen: PathBuf,
    /// The Docker host's name: the `cluster` of its records.
    pub name: String,
    /// A Falco rules file; a call matching any rule is denied.
    #[serde(default)]
    pub deny_rules: Option<PathBuf>,
}

impl AuthzConfig {
    /// Problems serde cannot see, each prefixed with `at`.
    pub fn check(&self, at: &str) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = super::map::check_host_name(&self.name) {
            p.push(format!("{at}.name: {e}"));
        }
        if let Some(r) = &self.deny_rules {
            if !r.is_file() {
                p.push(format!("{at}.deny_rules: {} is not a file", r.display()));
            }
        }
        p
    }
}

/// The plugin's request body (Docker's `authorization.Request`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PluginRequest {
    #[serde(rename = "User")]
    user: String,
    #[serde(rename = "UserAuthNMethod")]
    authn: String,
    #[serde(rename = "RequestMethod")]
    method: String,
    // Docker's field is `RequestUri` (json tag); `RequestURI` is accepted too.
    #[serde(rename = "RequestUri", alias = "RequestURI")]
    uri: String,
    #[serde(rename = "RequestBody")]
    body: Option<String>,
    #[serde(rename = "RequestHeaders")]
    headers: Option<HashMap<String, String>>,
    #[serde(rename = "ResponseStatusCode")]
    status: Option<u16>,
    #[serde(rename = "ResponseBody")]
    response_body: Option<String>,
}

/// Calls awaiting their AuthZRes, by (user, method, URI), with their count.
type Pending = (
    HashMap<(String, String, String), VecDeque<(String, MicroTime)>>,
    usize,
);

struct Inner {
    host: String,
    rules: Option<Engine>,
    recorder: Arc<dyn Recorder>,
    pending: Mutex<Pending>,
}

/// A bound plugin socket.
pub struct AuthzPlugin {
    listener: UnixListener,
    listen: PathBuf,
    inner: Arc<Inner>,
}

fn decode_body(b: Option<&str>) -> Option<Value> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b?).ok()?;
    let mut v: Value = serde_json::from_slice(&bytes).ok()?;
    map::redact_body(&mut v);
    Some(v)
}

impl AuthzPlugin {
    /// Loads the deny rules and binds the socket.
    pub fn bind(cfg: &AuthzConfig, recorder: Arc<dyn Recorder>) -> Result<AuthzPlugin, ProxyError> {
        let problems = cfg.check("docker_authz");
        if !problems.is_empty() {
            return Err(ProxyError::Config(problems.join("; ")));
        }
        let rules = match &cfg.deny_rules {
            None => None,
            Some(p) => {
                let mut b = EngineBuilder::new(EngineOptions {
                    cluster: Some(cfg.name.clone()),
                    ..EngineOptions::default()
                });
                b.add_file(p)
                    .map_err(|e| ProxyError::Config(e.to_string()))?;
                Some(b.build().map_err(|e| ProxyError::Config(e.to_string()))?.0)
            }
        };
        let listener = crate::docker::proxy::bind_socket(&cfg.listen)?;
        Ok(AuthzPlugin {
            listener,
            listen: cfg.listen.clone(),
            inner: Arc::new(Inner {
                host: cfg.name.clone(),
                rules,
                recorder,
                pending: Mutex::new((HashMap::new(), 0)),
            }),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.listen
    }

    /// Serves until `stop` (checked when a connection arrives; see
    /// [`super::proxy::wake`]).
    pub fn serve(self, stop: Arc<AtomicBool>) {
        for conn in self.listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let Ok(c) = conn else { continue };
            let inner = self.inner.clone();
            let _ = std::thread::Builder::new()
                .name("docker-authz".into())
                .spawn(move || {
                    if let Err(e) = serve_conn(c, &inner) {
                        tracing::debug!(error = %e, "docker authz: connection ended");
                    }
                });
        }
        let _ = std::fs::remove_file(&self.listen);
    }
}

fn respond(w: &mut UnixStream, status: u16, body: &Value) -> std::io::Result<()> {
    let b = body.to_string();
    let reason = if status == 200 { "OK" } else { "Bad Request" };
    write!(
        w,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    )?;
    w.flush()
}

fn serve_conn(c: UnixStream, inner: &Inner) -> std::io::Result<()> {
    let mut r = BufReader::new(c.try_clone()?);
    let mut w = c;
    loop {
        let head = match http::read_head(&mut r) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(()),
            Err(e) => {
                let _ = respond(&mut w, 400, &json!({"Err": e.to_string()}));
                return Ok(());
            }
        };
        let mut cap = Capture::new(MAX_PLUGIN_BODY as usize);
        match head.framing() {
            Ok(Framing::Length(n)) if n <= MAX_PLUGIN_BODY => {
                http::copy_length(&mut r, &mut std::io::sink(), n, &mut cap)?;
            }
            Ok(Framing::Chunked) => {
                http::copy_chunked(&mut r, &mut std::io::sink(), &mut cap)?;
            }
            Ok(Framing::None) => {}
            _ => {
                respond(&mut w, 400, &json!({"Err": "request too large"}))?;
                return Ok(());
            }
        }
        let answer = handle(&head.target, &cap, inner);
        respond(&mut w, 200, &answer)?;
    }
}

/// The answer to one plugin call (also what tests drive directly).
fn handle(target: &str, cap: &Capture, inner: &Inner) -> Value {
    match target {
        "/Plugin.Activate" => return json!({"Implements": ["authz"]}),
        "/AuthZPlugin.AuthZReq" | "/AuthZPlugin.AuthZRes" => {}
        other => return json!({"Err": format!("kaudit authz plugin: unknown call {other}")}),
    }
    if cap.overflow {
        return json!({"Allow": false, "Err": "request larger than the plugin accepts"});
    }
    let req: PluginRequest = match serde_json::from_slice(&cap.bytes) {
        Ok(r) => r,
        Err(e) => return json!({"Allow": false, "Err": format!("bad plugin request: {e}")}),
    };
    let now = MicroTime::now();
    let user = if req.user.is_empty() {
        "docker:anonymous".to_string()
    } else {
        req.user.clone()
    };
    let key = (user.clone(), req.method.clone(), req.uri.clone());
    let mut rec = CallRecord {
        host: inner.host.clone(),
        mode: "authz".into(),
        user: UserInfo {
            username: user,
            ..UserInfo::default()
        },
        method: req.method.clone(),
        uri: req.uri.clone(),
        user_agent: req
            .headers
            .as_ref()
            .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("User-Agent")))
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        request_body: decode_body(req.body.as_deref()),
        ..CallRecord::default()
    };
    if !req.authn.is_empty() {
        rec.extra
            .insert("authnMethod".into(), Value::from(req.authn.clone()));
    }
    if target == "/AuthZPlugin.AuthZReq" {
        rec.audit_id = map::new_audit_id();
        rec.received = Some(now);
        rec.at = Some(now);
        rec.stage = Some(Stage::RequestReceived);
        let probe = rec.to_event(Level::Request);
        let denied = inner
            .rules
            .as_ref()
            .and_then(|e| e.evaluate(&probe, MatchMode::First).into_iter().next());
        match denied {
            Some(alert) => {
                rec.decision = Some(("forbid".into(), format!("{}: {}", alert.rule, alert.output)));
                rec.stage = Some(Stage::ResponseComplete);
                rec.status = Some(403);
                rec.error = alert.output.clone();
                inner.recorder.record(rec, Level::Request);
                json!({"Allow": false, "Msg": format!("denied by kaudit rule {:?}: {}", alert.rule, alert.output)})
            }
            None => {
                rec.decision = Some(("allow".into(), String::new()));
                inner.recorder.record(rec.clone(), Level::Request);
                let mut p = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
                if p.1 < MAX_PENDING {
                    p.0.entry(key)
                        .or_default()
                        .push_back((rec.audit_id.clone(), now));
                    p.1 += 1;
                }
                json!({"Allow": true})
            }
        }
    } else {
        let found = {
            let mut p = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
            let got = p.0.get_mut(&key).and_then(VecDeque::pop_front);
            if got.is_some() {
                p.1 -= 1;
                if p.0.get(&key).is_some_and(VecDeque::is_empty) {
                    p.0.remove(&key);
                }
            }
            got
        };
        let (id, received) = found.unwrap_or_else(|| (map::new_audit_id(), now));
        rec.audit_id = id;
        rec.received = Some(received);
        rec.at = Some(now);
        rec.stage = Some(Stage::ResponseComplete);
        rec.status = req.status;
        rec.decision = Some(("allow".into(), String::new()));
        rec.response_body = decode_body(req.response_body.as_deref());
        if let (Some(s), Some(b)) = (req.status, &rec.response_body) {
            if s >= 400 {
                if let Some(m) = b.get("message").and_then(Value::as_str) {
                    rec.error = m.to_string();
                }
            }
        }
        inner.recorder.record(rec, Level::RequestResponse);
        json!({"Allow": true})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaudit_event::Event;

    #[derive(Default)]
    struct Keep(Mutex<Vec<Event>>);
    impl Recorder for Keep {
        fn record(&self, rec: CallRecord, level: Level) {
            self.0.lock().unwrap().push(rec.to_event(level));
        }
    }

    fn inner(rules: Option<&str>) -> (Inner, Arc<Keep>) {
        let keep = Arc::new(Keep::default());
        let rules = rules.map(|r| {
            let mut b = EngineBuilder::new(EngineOptions::default());
            b.add_source("deny.yaml", r).unwrap();
            b.build().unwrap().0
        });
        (
            Inner {
                host: "h".into(),
                rules,
                recorder: keep.clone(),
                pending: Mutex::new((HashMap::new(), 0)),
            },
            keep,
        )
    }

    fn cap(v: Value) -> Capture {
        let mut c = Capture::new(1 << 20);
        let b = v.to_string();
        http::copy_length(
            &mut b.as_bytes(),
            &mut std::io::sink(),
            b.len() as u64,
            &mut c,
        )
        .unwrap();
        c
    }

    #[test]
    fn allows_and_records_both_stages_with_one_id() {
        let (i, keep) = inner(None);
        assert_eq!(
            handle("/Plugin.Activate", &Capture::new(0), &i),
            json!({"Implements": ["authz"]})
        );
        let body = base64::engine::general_purpose::STANDARD
            .encode(br#"{"Image":"busybox","password":"x"}"#);
        let req = json!({"User": "alice", "RequestMethod": "POST", "RequestUri": "/v1.41/containers/create", "RequestBody": body});
        assert_eq!(
            handle("/AuthZPlugin.AuthZReq", &cap(req.clone()), &i)["Allow"],
            true
        );
        let mut res = req;
        res["ResponseStatusCode"] = json!(201);
        assert_eq!(
            handle("/AuthZPlugin.AuthZRes", &cap(res), &i)["Allow"],
            true
        );
        let evs = keep.0.lock().unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].audit_id(), evs[1].audit_id());
        assert_eq!(evs[0].user().username, "alice");
        assert_eq!(evs[1].response_code(), Some(201));
        assert_eq!(evs[0].verb(), "create");
        let text = String::from_utf8_lossy(evs[0].bytes()).to_string();
        assert!(
            text.contains("busybox") && !text.contains("\"x\""),
            "{text}"
        );
        assert!(handle("/Nope", &Capture::new(0), &i)["Err"]
            .as_str()
            .is_some());
        assert_eq!(
            handle("/AuthZPlugin.AuthZReq", &cap(json!("x")), &i)["Allow"],
            false
        );
    }

    #[test]
    fn deny_rules_refuse_and_record() {
        let rules = "- rule: No privileged\n  desc: d\n  condition: ka.verb = create and jevt.value[/requestObject/HostConfig/Privileged] = true\n  output: privileged by %ka.user.name\n  priority: ERROR\n  source: k8s_audit\n";
        let (i, keep) = inner(Some(rules));
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let req = json!({"User": "bob", "RequestMethod": "POST", "RequestUri": "/v1.41/containers/create",
            "RequestBody": b64(r#"{"Image":"x","HostConfig":{"Privileged":true}}"#)});
        let a = handle("/AuthZPlugin.AuthZReq", &cap(req), &i);
        assert_eq!(a["Allow"], false);
        assert!(a["Msg"].as_str().unwrap().contains("privileged by bob"));
        let ok = json!({"User": "bob", "RequestMethod": "POST", "RequestUri": "/v1.41/containers/create",
            "RequestBody": b64(r#"{"Image":"x","HostConfig":{"Privileged":false}}"#)});
        assert_eq!(handle("/AuthZPlugin.AuthZReq", &cap(ok), &i)["Allow"], true);
        let evs = keep.0.lock().unwrap();
        assert_eq!(
            evs[0].annotation("authorization.k8s.io/decision"),
            Some("forbid")
        );
        assert_eq!(evs[0].response_code(), Some(403));
        assert_eq!(
            evs[1].annotation("authorization.k8s.io/decision"),
            Some("allow")
        );
    }
}
