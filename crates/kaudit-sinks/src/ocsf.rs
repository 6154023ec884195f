//! `type: ocsf`: OCSF API Activity (class 6003) records, appended as NDJSON
//! to a file rotated by size, and/or POSTed as a JSON array over HTTP.
//!
//! Mapping: `activity_id` create=1, read=2 (get, list, watch), update=3
//! (update, patch), delete=4 (delete, deletecollection), other=99; `time` in
//! milliseconds; `actor.user`, `api.operation` (the verb), `api.request.uid`
//! (auditID), `src_endpoint.ip`, `resources` (the objectRef),
//! `http_request` (URL path, user agent), `status`/`status_id`/`status_code`
//! from the response code; the kube-apiserver event itself under
//! `unmapped.k8s_audit`. A checkpoint is written as
//! `{"kaudit_checkpoint":{"size":..,"time":..,"note":..}}` (not an OCSF class).
//!
//! The file is flushed and fsynced before a batch counts as delivered; a
//! rotation renames `path` to `path.1` (older ones shift up to `max_files`).

use crate::http::{client, expect_success, transport, ClientTls};
use crate::{Checkpoint, Delivery, Destination, Outgoing, SinkError};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `type: ocsf`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OcsfConfig {
    /// NDJSON file (rotated by size); set this, `url`, or both.
    pub path: Option<PathBuf>,
    /// Rotate the file once it is this large.
    pub max_file_bytes: u64,
    /// Rotated files kept (`path.1` ... `path.N`).
    pub max_files: u32,
    /// HTTP endpoint that takes a JSON array of records.
    pub url: Option<String>,
    /// `Authorization: Bearer` token for `url`.
    pub bearer_token: Option<String>,
    /// CA bundle (PEM) for `url`.
    pub ca_file: Option<PathBuf>,
}

impl Default for OcsfConfig {
    fn default() -> Self {
        OcsfConfig {
            path: None,
            max_file_bytes: 100 << 20,
            max_files: 5,
            url: None,
            bearer_token: None,
            ca_file: None,
        }
    }
}

/// OCSF schema version the records follow.
pub const OCSF_VERSION: &str = "1.3.0";

/// `(activity_id, activity_name)` for a Kubernetes verb.
pub fn activity(verb: &str) -> (u8, &'static str) {
    match verb {
        "create" => (1, "Create"),
        "get" | "list" | "watch" => (2, "Read"),
        "update" | "patch" => (3, "Update"),
        "delete" | "deletecollection" => (4, "Delete"),
        _ => (99, "Other"),
    }
}

/// The OCSF API Activity record of one event.
pub fn record(o: &Outgoing) -> Result<Value, SinkError> {
    let ev = &o.event;
    let (activity_id, activity_name) = activity(ev.verb());
    let code = ev.response_code();
    let (status_id, status) = match code {
        Some(c) if c < 400 => (1, "Success"),
        Some(_) => (2, "Failure"),
        None => (0, "Unknown"),
    };
    let u = ev.user();
    let mut user = Map::new();
    user.insert("name".into(), json!(u.username));
    if !u.uid.is_empty() {
        user.insert("uid".into(), json!(u.uid));
    }
    if !u.groups.is_empty() {
        user.insert(
            "groups".into(),
            Value::Array(u.groups.iter().map(|g| json!({"name": g})).collect()),
        );
    }
    let mut rec = Map::new();
    rec.insert("class_uid".into(), json!(6003));
    rec.insert("class_name".into(), json!("API Activity"));
    rec.insert("category_uid".into(), json!(6));
    rec.insert("category_name".into(), json!("Application Activity"));
    rec.insert("activity_id".into(), json!(activity_id));
    rec.insert("activity_name".into(), json!(activity_name));
    rec.insert("type_uid".into(), json!(600300 + activity_id as u32));
    rec.insert("severity_id".into(), json!(1));
    rec.insert("time".into(), json!(o.time().micros().div_euclid(1000)));
    rec.insert("status_id".into(), json!(status_id));
    rec.insert("status".into(), json!(status));
    if let Some(c) = code {
        rec.insert("status_code".into(), json!(c.to_string()));
    }
    rec.insert(
        "metadata".into(),
        json!({
            "version": OCSF_VERSION,
            "uid": ev.audit_id(),
            "log_name": "kube-apiserver audit",
            "product": {"name": "kaudit", "vendor_name": "kaudit"},
        }),
    );
    rec.insert("actor".into(), json!({"user": Value::Object(user)}));
    rec.insert(
        "api".into(),
        json!({"operation": ev.verb(), "request": {"uid": ev.audit_id()}, "service": {"name": "kube-apiserver"}}),
    );
    rec.insert(
        "cloud".into(),
        json!({"provider": "Kubernetes", "region": o.cluster}),
    );
    // `src_endpoint` is required by API Activity and `ip` is typed `ip_t`:
    // an address that is not one goes to `name`, and an event without any
    // (a trimmed or converted one) says so rather than dropping the object.
    let src = match ev.source_ips().first() {
        Some(ip) if ip.parse::<std::net::IpAddr>().is_ok() => json!({"ip": ip}),
        Some(other) => json!({"name": other}),
        None => json!({"name": "unknown"}),
    };
    rec.insert("src_endpoint".into(), src);
    if let Some(r) = ev.object_ref() {
        let mut res = Map::new();
        res.insert("type".into(), json!(r.resource));
        if !r.name.is_empty() {
            res.insert("name".into(), json!(r.name));
        }
        if !r.namespace.is_empty() {
            res.insert("namespace".into(), json!(r.namespace));
        }
        if !r.uid.is_empty() {
            res.insert("uid".into(), json!(r.uid));
        }
        if !r.api_group.is_empty() {
            res.insert("group".into(), json!({"name": r.api_group}));
        }
        rec.insert("resources".into(), Value::Array(vec![Value::Object(res)]));
    }
    let path = ev.request_uri().split('?').next().unwrap_or("");
    rec.insert(
        "http_request".into(),
        json!({"url": {"path": path, "url_string": ev.request_uri()}, "user_agent": ev.user_agent()}),
    );
    let raw: Value = serde_json::from_slice(ev.bytes())
        .map_err(|e| SinkError::Config(format!("seq {}: event is not JSON: {e}", o.seq)))?;
    rec.insert(
        "unmapped".into(),
        json!({"cluster": o.cluster, "stage": ev.doc().stage.map_or("", |s| s.as_str()), "k8s_audit": raw}),
    );
    Ok(Value::Object(rec))
}

/// The OCSF destination.
pub struct Ocsf {
    cfg: OcsfConfig,
    file: Option<(PathBuf, File, u64)>,
    http: Option<(String, reqwest::blocking::Client)>,
}

impl Ocsf {
    /// Builds it from its config.
    pub fn new(cfg: &OcsfConfig, timeout: Duration) -> Result<Ocsf, SinkError> {
        let http = match &cfg.url {
            Some(u) => Some((
                u.clone(),
                client(
                    &ClientTls::from_files(cfg.ca_file.as_deref(), None, None)?,
                    timeout,
                )?,
            )),
            None => None,
        };
        Ok(Ocsf {
            cfg: cfg.clone(),
            file: None,
            http,
        })
    }

    fn rotate(&self, path: &Path) -> std::io::Result<()> {
        let n = self.cfg.max_files.max(1);
        let name = |i: u32| {
            let mut s = path.as_os_str().to_owned();
            s.push(format!(".{i}"));
            PathBuf::from(s)
        };
        let _ = std::fs::remove_file(name(n));
        for i in (1..n).rev() {
            let from = name(i);
            if from.exists() {
                std::fs::rename(&from, name(i + 1))?;
            }
        }
        std::fs::rename(path, name(1))
    }

    fn append(&mut self, lines: &[u8]) -> Result<(), SinkError> {
        let Some(path) = self.cfg.path.clone() else {
            return Ok(());
        };
        let at = |e: std::io::Error| SinkError::Io(format!("{}: {e}", path.display()));
        if let Some((_, _, size)) = &self.file {
            if *size > 0 && size + lines.len() as u64 > self.cfg.max_file_bytes {
                self.file = None;
                self.rotate(&path).map_err(at)?;
            }
        }
        if self.file.is_none() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(at)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(at)?;
            let size = f.metadata().map_err(at)?.len();
            self.file = Some((path.clone(), f, size));
        }
        let Some((_, f, size)) = self.file.as_mut() else {
            return Err(SinkError::Io("file not open".into()));
        };
        let res = f.write_all(lines).and_then(|()| f.sync_data());
        if let Err(e) = res {
            self.file = None;
            return Err(at(e));
        }
        *size += lines.len() as u64;
        Ok(())
    }

    fn post(&self, body: Vec<u8>) -> Result<(), SinkError> {
        let Some((url, c)) = &self.http else {
            return Ok(());
        };
        let mut req = c
            .post(url)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(t) = &self.cfg.bearer_token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = req.send().map_err(|e| transport(url, e))?;
        expect_success(url, resp).map(|_| ())
    }

    fn deliver(&mut self, values: &[Value]) -> Result<(), SinkError> {
        let enc = |v: &Value, out: &mut Vec<u8>| {
            serde_json::to_writer(out, v).map_err(|e| SinkError::Config(e.to_string()))
        };
        // HTTP first: if it fails the file is not written either, so a retry
        // does not duplicate lines in the file.
        if self.http.is_some() {
            let mut body = Vec::with_capacity(values.len() * 2048);
            body.push(b'[');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                enc(v, &mut body)?;
            }
            body.push(b']');
            self.post(body)?;
        }
        if self.cfg.path.is_some() {
            let mut lines = Vec::with_capacity(values.len() * 2048);
            for v in values {
                enc(v, &mut lines)?;
                lines.push(b'\n');
            }
            self.append(&lines)?;
        }
        Ok(())
    }
}

impl Destination for Ocsf {
    fn kind(&self) -> &'static str {
        "ocsf"
    }

    fn send(&mut self, batch: &[Outgoing]) -> Result<Delivery, SinkError> {
        let values = batch.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        self.deliver(&values).map(|()| Delivery::all())
    }

    fn send_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), SinkError> {
        self.deliver(&[json!({"kaudit_checkpoint": cp})])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activities_follow_the_verb() {
        assert_eq!(activity("create").0, 1);
        for v in ["get", "list", "watch"] {
            assert_eq!(activity(v).0, 2, "{v}");
        }
        for v in ["update", "patch"] {
            assert_eq!(activity(v).0, 3, "{v}");
        }
        for v in ["delete", "deletecollection"] {
            assert_eq!(activity(v).0, 4, "{v}");
        }
        assert_eq!(activity("impersonate"), (99, "Other"));
    }
}
