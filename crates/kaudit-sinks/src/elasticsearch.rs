//! `type: elasticsearch` (and OpenSearch): the `_bulk` API with `create`
//! actions, the document ID being `auditID-Stage` so a batch sent again after
//! a lost answer de-duplicates (a 409 on create means "already there").
//!
//! Documents follow Elastic's kubernetes `audit_logs` integration: the raw
//! event under `kubernetes.audit.*` with dots in annotation keys turned into
//! underscores, plus the ECS fields `@timestamp`, `event.action` (verb),
//! `event.outcome` (authorization decision), `user.name`, `source.ip`,
//! `user_agent.original` and `orchestrator.cluster.name`.
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

/// `type: elasticsearch` (also OpenSearch).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    /// Base URL (`https://es:9200`).
    pub url: String,
    /// Data stream or index (`logs-kubernetes.audit_logs-default`).
    pub index: String,
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

/// ECS version the documents follow.
pub const ECS_VERSION: &str = "8.11.0";

/// `event.outcome` from the authorization decision annotation.
pub fn outcome(decision: Option<&str>) -> &'static str {
    match decision {
        Some("allow") => "success",
        Some("forbid") => "failure",
        _ => "unknown",
    }
}

/// The ECS document of one event.
pub fn ecs_document(o: &Outgoing) -> Result<Value, SinkError> {
    let mut raw: Map<String, Value> = serde_json::from_slice(o.event.bytes()).map_err(|e| {
        SinkError::Config(format!("seq {}: event is not a JSON object: {e}", o.seq))
    })?;
    if let Some(Value::Object(ann)) = raw.get_mut("annotations") {
        let renamed: Map<String, Value> = std::mem::take(ann)
            .into_iter()
            .map(|(k, v)| (k.replace('.', "_"), v))
            .collect();
        *ann = renamed;
    }
    let ev = &o.event;
    let mut doc = Map::new();
    doc.insert("@timestamp".into(), json!(o.time().to_string()));
    doc.insert("ecs".into(), json!({"version": ECS_VERSION}));
    doc.insert(
        "event".into(),
        json!({
            "kind": "event",
            "category": ["web"],
            "module": "kubernetes",
            "dataset": "kubernetes.audit_logs",
            "action": ev.verb(),
            "outcome": outcome(ev.annotation("authorization.k8s.io/decision")),
        }),
    );
    if !ev.user().username.is_empty() {
        doc.insert("user".into(), json!({"name": ev.user().username}));
    }
    if let Some(ip) = ev
        .source_ips()
        .first()
        .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
    {
        doc.insert("source".into(), json!({"ip": ip}));
    }
    if !ev.user_agent().is_empty() {
        doc.insert("user_agent".into(), json!({"original": ev.user_agent()}));
    }
    doc.insert(
        "orchestrator".into(),
        json!({"type": "kubernetes", "cluster": {"name": o.cluster}}),
    );
    doc.insert("kubernetes".into(), json!({"audit": Value::Object(raw)}));
    Ok(Value::Object(doc))
}

/// Appends the `_bulk` body (NDJSON, `create` actions) for a batch.
pub fn encode_bulk(index: &str, batch: &[Outgoing], out: &mut Vec<u8>) -> Result<(), SinkError> {
    for o in batch {
        let action = json!({"create": {"_index": index, "_id": o.dedupe_id()}});
        serde_json::to_writer(&mut *out, &action).map_err(|e| SinkError::Config(e.to_string()))?;
        out.push(b'\n');
        serde_json::to_writer(&mut *out, &ecs_document(o)?)
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
            index: cfg.index.clone(),
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
        encode_bulk(&self.index, batch, &mut body)?;
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

    #[test]
    fn outcome_follows_the_decision() {
        assert_eq!(outcome(Some("allow")), "success");
        assert_eq!(outcome(Some("forbid")), "failure");
        assert_eq!(outcome(None), "unknown");
    }
}
