//! Timelines: every event on one object with diffs between consecutive
//! writes, and a user's activity grouped into sessions.

use crate::diff::{diff, Change};
use crate::search::{Cursor, Hit, SearchRequest};
use crate::{IndexError, IndexResult, SearchBackend};
use kaudit_event::Event;
use kaudit_query::Query;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Most events one history page returns.
pub const MAX_HISTORY: usize = 100_000;
/// A pause longer than this starts a new session (30 minutes).
pub const SESSION_GAP: i64 = 30 * 60 * 1_000_000;

/// The object a history is about: `RESOURCE[/NAMESPACE]/NAME`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    /// Resource (plural), e.g. `deployments`.
    pub resource: String,
    /// Namespace, None for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
}

impl Target {
    /// Parses `deployments/prod/web` or `clusterrolebindings/admin`.
    pub fn parse(s: &str) -> IndexResult<Target> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || {
            IndexError::Input(format!(
                "invalid object {s:?}: use RESOURCE/NAMESPACE/NAME (deployments/prod/web) or RESOURCE/NAME (clusterrolebindings/admin)"
            ))
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        match parts[..] {
            [r, ns, n] => Ok(Target {
                resource: r.to_string(),
                namespace: Some(ns.to_string()),
                name: n.to_string(),
            }),
            [r, n] => Ok(Target {
                resource: r.to_string(),
                namespace: None,
                name: n.to_string(),
            }),
            _ => Err(bad()),
        }
    }

    /// The query selecting every event on the object (subresources included).
    pub fn query(&self) -> IndexResult<Query> {
        Query::parse(&self.query_text()).map_err(|e| IndexError::Input(e.to_string()))
    }

    /// The object's writes that can carry a version or end the object:
    /// where the diff of a page's oldest write starts from.
    fn writes_query(&self) -> IndexResult<Query> {
        let text = format!(
            "{} stage=ResponseComplete verb=create,update,patch,delete",
            self.query_text()
        );
        Query::parse(&text).map_err(|e| IndexError::Input(e.to_string()))
    }

    fn query_text(&self) -> String {
        let q = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
        let mut text = format!("resource={} name={}", q(&self.resource), q(&self.name));
        // RESOURCE/NAME does not restrict the namespace: cluster-scoped
        // objects have none, and a namespace object's event names itself.
        if let Some(ns) = &self.namespace {
            text.push_str(&format!(" ns={}", q(ns)));
        }
        text
    }
}

/// One event in an object's history.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Entry {
    /// Sequence number in the store.
    pub seq: u64,
    /// Event time (microseconds).
    pub time: i64,
    /// Cluster.
    pub cluster: String,
    /// auditID.
    #[serde(rename = "auditID")]
    pub audit_id: String,
    /// Stage.
    pub stage: String,
    /// Verb.
    pub verb: String,
    /// Who.
    pub user: String,
    /// Subresource, if any.
    pub subresource: String,
    /// Response code.
    pub code: Option<i32>,
    /// Changes from the previous version of the object, for a write that
    /// carried the object (responseObject, else requestObject of a
    /// create/update) when an earlier version was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<Change>>,
    /// Whether this write carried the object's body (the first version).
    pub body: bool,
}

/// Which part of an object's history to return.
#[derive(Clone, Debug)]
pub struct HistoryRequest {
    /// Earliest event time, inclusive (microseconds).
    pub since: Option<i64>,
    /// Latest event time, exclusive (microseconds).
    pub until: Option<i64>,
    /// Continue with events older than this one (a previous page's `next`).
    pub before: Option<Cursor>,
    /// Most entries (capped at [`MAX_HISTORY`]).
    pub limit: usize,
}

impl Default for HistoryRequest {
    fn default() -> Self {
        HistoryRequest {
            since: None,
            until: None,
            before: None,
            limit: MAX_HISTORY,
        }
    }
}

/// A page of an object's history, newest first.
#[derive(Clone, Debug, Default)]
pub struct HistoryPage {
    /// Entries, newest first.
    pub entries: Vec<Entry>,
    /// Where the next (older) page starts, when there may be one.
    pub next: Option<Cursor>,
}

/// Most earlier writes read to find the version a page's oldest write is
/// diffed against; past that its diff is left out (`body` still says it
/// carried the object).
pub const MAX_SEED_WRITES: usize = 1024;
const SEED_BATCH_FIRST: usize = 8;

/// A page of the events on `target`, newest first, each write carrying the
/// object diffed against the version before it (found in earlier pages if
/// need be). Paging keeps a busy object's history (tens of thousands of
/// events) as cheap to open as its newest events.
pub fn object_history(
    backend: &dyn SearchBackend,
    target: &Target,
    req: &HistoryRequest,
) -> IndexResult<HistoryPage> {
    let page = backend.search(&SearchRequest {
        since: req.since,
        until: req.until,
        cursor: req.before,
        ..SearchRequest::new(target.query()?, req.limit.clamp(1, MAX_HISTORY))
    })?;
    let mut parsed: Vec<(Hit, Event)> = Vec::with_capacity(page.hits.len());
    for hit in page.hits {
        if let Ok(ev) = Event::from_json(&hit.event) {
            parsed.push((hit, ev));
        }
    }
    // Clusters whose writes in this page need the version before the page.
    let mut need: BTreeSet<String> = parsed
        .iter()
        .filter(|(_, ev)| {
            matches!(write_kind(ev), Some(Write::Version)) && version_of(ev).is_some()
        })
        .map(|(h, _)| h.cluster.clone())
        .collect();
    let mut last: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    if let Some((oldest, _)) = parsed.last() {
        let mut cursor = Some(oldest.cursor());
        let mut read = 0;
        // Small batches first: the version sought is usually the latest
        // write before the page, and each fetched event costs a read.
        let mut batch = SEED_BATCH_FIRST;
        while !need.is_empty() && read < MAX_SEED_WRITES {
            let Some(c) = cursor else { break };
            let earlier = backend.search(&SearchRequest {
                since: None,
                until: None,
                cursor: Some(c),
                ..SearchRequest::new(target.writes_query()?, batch)
            })?;
            batch = (batch * 4).min(MAX_SEED_WRITES);
            read += earlier.hits.len();
            cursor = earlier.next;
            for hit in earlier.hits {
                if !need.contains(&hit.cluster) {
                    continue;
                }
                let Ok(ev) = Event::from_json(&hit.event) else {
                    continue;
                };
                match write_kind(&ev) {
                    Some(Write::Delete) => {
                        need.remove(&hit.cluster);
                    }
                    Some(Write::Version) => {
                        if let Some(body) = version_of(&ev) {
                            need.remove(&hit.cluster);
                            last.insert(hit.cluster, body);
                        }
                    }
                    None => {}
                }
            }
        }
    }
    let mut entries = Vec::with_capacity(parsed.len());
    for (hit, ev) in parsed.into_iter().rev() {
        let d = ev.doc();
        let mut entry = Entry {
            seq: hit.seq,
            time: hit.time,
            cluster: hit.cluster.clone(),
            audit_id: d.audit_id.clone(),
            stage: ev.stage().as_str().to_string(),
            verb: d.verb.clone(),
            user: d.user.username.clone(),
            subresource: d
                .object_ref
                .as_ref()
                .map(|o| o.subresource.clone())
                .unwrap_or_default(),
            code: ev.response_code(),
            changes: None,
            body: false,
        };
        match write_kind(&ev) {
            Some(Write::Delete) => {
                last.remove(&hit.cluster);
            }
            Some(Write::Version) => {
                if let Some(body) = version_of(&ev) {
                    entry.body = true;
                    if let Some(prev) = last.get(&hit.cluster) {
                        entry.changes = Some(diff(prev, &body));
                    }
                    last.insert(hit.cluster, body);
                }
            }
            None => {}
        }
        entries.push(entry);
    }
    entries.reverse();
    Ok(HistoryPage {
        entries,
        next: page.next,
    })
}

/// What a successful, completed request did to the object's versions.
enum Write {
    /// A delete of the object itself: no version after it.
    Delete,
    /// A create, update or patch of the object or its status: may carry
    /// the new version.
    Version,
}

fn write_kind(ev: &Event) -> Option<Write> {
    let d = ev.doc();
    let ok = ev.response_code().is_none_or(|c| c < 400);
    if !ok || ev.stage().as_str() != "ResponseComplete" {
        return None;
    }
    let sub = d.object_ref.as_ref().map_or("", |o| o.subresource.as_str());
    if d.verb == "delete" && sub.is_empty() {
        Some(Write::Delete)
    } else if matches!(d.verb.as_str(), "create" | "update" | "patch")
        && (sub.is_empty() || sub == "status")
    {
        Some(Write::Version)
    } else {
        None
    }
}

/// The object as it was after a write: the response body if it is the
/// object, else the request body of a create or update (a patch body is a
/// patch, not the object).
fn version_of(ev: &Event) -> Option<serde_json::Value> {
    let d = ev.doc();
    let parse = |raw: &serde_json::value::RawValue| -> Option<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
        (v.get("metadata").is_some() && v.get("kind").and_then(|k| k.as_str()) != Some("Status"))
            .then_some(v)
    };
    d.response_object.as_deref().and_then(parse).or_else(|| {
        (d.verb != "patch")
            .then_some(())
            .and(d.request_object.as_deref().and_then(parse))
    })
}

/// A run of a user's requests without a pause longer than [`SESSION_GAP`].
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Session {
    /// First event time (microseconds).
    pub start: i64,
    /// Last event time.
    pub end: i64,
    /// Distinct requests (auditIDs).
    pub requests: u64,
    /// Requests answered 401/403 or denied by authorization.
    pub denied: u64,
    /// Requests per verb.
    pub verbs: BTreeMap<String, u64>,
    /// Requests per resource (`pods`, `pods/exec`, or the URI path).
    pub resources: BTreeMap<String, u64>,
    /// Namespaces touched.
    pub namespaces: BTreeSet<String>,
    /// Clusters.
    pub clusters: BTreeSet<String>,
    /// Source IPs.
    pub ips: BTreeSet<String>,
    /// User agents.
    pub user_agents: BTreeSet<String>,
    #[serde(skip)]
    seen: HashSet<String>,
}

/// A user's activity grouped into sessions, oldest first.
pub fn user_sessions(
    backend: &dyn SearchBackend,
    user: &str,
    since: Option<i64>,
    until: Option<i64>,
) -> IndexResult<Vec<Session>> {
    let q = Query::parse(&format!(
        "user=\"{}\"",
        user.replace('\\', "\\\\").replace('"', "\\\"")
    ))
    .map_err(|e| IndexError::Input(e.to_string()))?;
    let mut evs: Vec<(i64, u64, String, Vec<u8>)> = Vec::new();
    backend.for_each_match(&q, since, until, &mut |seq, t, ev, cluster| {
        evs.push((t, seq, cluster.to_string(), ev.bytes().to_vec()));
        evs.len() < MAX_HISTORY * 10
    })?;
    evs.sort_by_key(|e| (e.0, e.1));
    let mut out: Vec<Session> = Vec::new();
    for (t, _, cluster, bytes) in evs {
        let Ok(ev) = Event::from_json(&bytes) else {
            continue;
        };
        if out.last().is_none_or(|s| t - s.end > SESSION_GAP) {
            out.push(Session {
                start: t,
                end: t,
                ..Session::default()
            });
        }
        let Some(s) = out.last_mut() else { continue };
        s.end = t;
        let d = ev.doc();
        s.clusters.insert(cluster);
        s.ips.extend(d.source_ips.iter().cloned());
        if !d.user_agent.is_empty() {
            s.user_agents.insert(d.user_agent.clone());
        }
        if !s.seen.insert(d.audit_id.clone()) {
            continue;
        }
        s.requests += 1;
        *s.verbs.entry(d.verb.clone()).or_default() += 1;
        let res = match &d.object_ref {
            Some(o) if !o.resource.is_empty() => {
                if !o.namespace.is_empty() {
                    s.namespaces.insert(o.namespace.clone());
                }
                if o.subresource.is_empty() {
                    o.resource.clone()
                } else {
                    format!("{}/{}", o.resource, o.subresource)
                }
            }
            _ => d.request_uri.split('?').next().unwrap_or("").to_string(),
        };
        *s.resources.entry(res).or_default() += 1;
        if matches!(ev.response_code(), Some(401 | 403))
            || ev.annotation("authorization.k8s.io/decision") == Some("forbid")
        {
            s.denied += 1;
        }
    }
    for s in &mut out {
        s.seen = HashSet::new();
    }
    Ok(out)
}
