//! Timelines: every event on one object with diffs between consecutive
//! writes, and a user's activity grouped into sessions.

use crate::diff::{diff, Change};
use crate::search::{Cursor, Hit, SearchRequest};
use crate::{IndexError, IndexResult, SearchBackend};
use kaudit_event::Event;
use kaudit_query::{Budget, Query};
use std::collections::{BTreeMap, BTreeSet};

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
        Query::parse(&self.query_text()).map_err(IndexError::Query)
    }

    /// The object's writes that can carry a version or end the object:
    /// where the diff of a page's oldest write starts from.
    fn writes_query(&self) -> IndexResult<Query> {
        let text = format!(
            "{} stage=ResponseComplete verb=create,update,patch,delete",
            self.query_text()
        );
        Query::parse(&text).map_err(IndexError::Query)
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
    /// Time the whole request may take (every search it makes shares it);
    /// None: unbounded (the CLI).
    pub budget: Option<Budget>,
}

impl Default for HistoryRequest {
    fn default() -> Self {
        HistoryRequest {
            since: None,
            until: None,
            before: None,
            limit: MAX_HISTORY,
            budget: None,
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
/// `q` limited to `budget`, when there is one.
pub(crate) fn budgeted(q: Query, budget: Option<Budget>) -> Query {
    match budget {
        Some(b) => q.with_budget(b),
        None => q,
    }
}

/// Events read past a page for the diff of its oldest write.
const LOOKAHEAD: usize = 32;

/// A page of the events on `target`, newest first, each write carrying the
/// object diffed against the version before it (found in earlier pages if
/// need be). Paging keeps a busy object's history (tens of thousands of
/// events) as cheap to open as its newest events.
pub fn object_history(
    backend: &dyn SearchBackend,
    target: &Target,
    req: &HistoryRequest,
) -> IndexResult<HistoryPage> {
    let limit = req.limit.clamp(1, MAX_HISTORY);
    // A few events past the page come along: the version the page's oldest
    // write is diffed against is usually among them, which saves a second
    // search.
    let mut hits = backend
        .search(&SearchRequest {
            since: req.since,
            until: req.until,
            cursor: req.before,
            ..SearchRequest::new(budgeted(target.query()?, req.budget), limit + LOOKAHEAD)
        })?
        .hits;
    let lookahead = hits.split_off(hits.len().min(limit));
    let next = (!lookahead.is_empty())
        .then(|| hits.last().map(Hit::cursor))
        .flatten();
    // Each event with what it did to the object: deleted it, or left this
    // version (a write without the object's body leaves none).
    let mut parsed: Vec<(Hit, Event, Option<Write>, Option<serde_json::Value>)> =
        Vec::with_capacity(hits.len());
    for hit in hits {
        if let Ok(ev) = Event::from_json(&hit.event) {
            let kind = write_kind(&ev);
            let version = match kind {
                Some(Write::Version) => version_of(&ev),
                _ => None,
            };
            parsed.push((hit, ev, kind, version));
        }
    }
    // Clusters whose writes in this page need the version before the page.
    let mut need: BTreeSet<String> = parsed
        .iter()
        .filter(|(_, _, _, version)| version.is_some())
        .map(|(h, ..)| h.cluster.clone())
        .collect();
    let mut last: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    // Writes before the page, newest first: end the search for a cluster's
    // previous version (found, or the object was deleted before).
    let mut settle = |hit: Hit, need: &mut BTreeSet<String>| {
        if !need.contains(&hit.cluster) {
            return;
        }
        let Ok(ev) = Event::from_json(&hit.event) else {
            return;
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
    };
    let mut oldest_seen = parsed.last().map(|(h, ..)| h.cursor());
    for hit in lookahead {
        if need.is_empty() {
            break;
        }
        oldest_seen = Some(hit.cursor());
        settle(hit, &mut need);
    }
    if let Some(oldest) = oldest_seen {
        let mut cursor = Some(oldest);
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
                ..SearchRequest::new(budgeted(target.writes_query()?, req.budget), batch)
            })?;
            batch = (batch * 4).min(MAX_SEED_WRITES);
            read += earlier.hits.len();
            cursor = earlier.next;
            for hit in earlier.hits {
                settle(hit, &mut need);
            }
        }
    }
    let mut entries = Vec::with_capacity(parsed.len());
    for (hit, ev, kind, version) in parsed.into_iter().rev() {
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
        if matches!(kind, Some(Write::Delete)) {
            last.remove(&hit.cluster);
        } else if let Some(body) = version {
            entry.body = true;
            if let Some(prev) = last.get(&hit.cluster) {
                entry.changes = Some(diff(prev, &body));
            }
            last.insert(hit.cluster, body);
        }
        entries.push(entry);
    }
    entries.reverse();
    Ok(HistoryPage { entries, next })
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
    /// Distinct requests (auditIDs), see [`user_sessions`].
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
}

use crate::scan::{counted_events, is_final_stage, IdMemo, Interner, ScanField, StageKey};
use kaudit_query::Field;

/// The fields sessions read, in [`SessionEvent`] order.
const SESSION_FIELDS: [ScanField; 11] = [
    ScanField::Key(Field::Verb),
    ScanField::Key(Field::Resource),
    ScanField::Key(Field::Subresource),
    ScanField::Key(Field::Namespace),
    ScanField::Key(Field::Code),
    ScanField::Key(Field::Ip),
    ScanField::Key(Field::UserAgent),
    ScanField::Key(Field::Stage),
    ScanField::Key(Field::Cluster),
    ScanField::Key(Field::Decision),
    ScanField::NonResourcePath,
];

/// No string (an [`Interner`] number no string gets).
const NONE: u32 = u32::MAX;

/// One of the user's events, its strings interned.
struct SessionEvent {
    key: StageKey,
    seq: u64,
    denied: bool,
    verb: u32,
    /// Resource, or [`NONE`] for a non-resource request.
    resource: u32,
    /// Subresource of a resource request, the path of a non-resource one.
    sub_or_path: u32,
    namespace: u32,
    cluster: u32,
    user_agent: u32,
    /// Index into [`IpLists::lists`].
    ip_list: u32,
}

/// The distinct source IP lists met, their addresses interned.
#[derive(Default)]
struct IpLists {
    /// (start, end) in `values` per list.
    lists: Vec<(u32, u32)>,
    values: Vec<u32>,
}

/// A user's activity grouped into sessions, oldest first.
///
/// Read from the index columns (no event is parsed unless the index cannot
/// answer it). Each request counts once per session, with the verb,
/// resource, namespace and denial of its final stage (ResponseComplete or
/// Panic), or of its first event when no final stage is in the session
/// (still running, or the audit policy omits it). Requests are recognised
/// by the auditID's 32-bit hash: the only deviation from grouping by the
/// full auditID is a hash collision between an unfinished request and
/// another request of the same user in the same session (the unfinished
/// one is then not counted). Clusters, IPs and user agents come from every
/// event.
pub fn user_sessions(
    backend: &dyn SearchBackend,
    user: &str,
    since: Option<i64>,
    until: Option<i64>,
    budget: Option<Budget>,
) -> IndexResult<Vec<Session>> {
    let q = Query::parse(&format!(
        "user=\"{}\"",
        user.replace('\\', "\\\\").replace('"', "\\\"")
    ))
    .map_err(IndexError::Query)?;
    let q = budgeted(q, budget);
    let mut names = Interner::default();
    let mut memo = IdMemo::default();
    let mut ips = IpLists::default();
    let mut evs: Vec<SessionEvent> = Vec::new();
    backend.scan_fields(&q, since, until, &SESSION_FIELDS, &mut |row| {
        let one = |i: usize| {
            row.values
                .get(i)
                .and_then(|v| v.first())
                .copied()
                .unwrap_or("")
        };
        let id = |i: usize| row.ids.get(i).copied().unwrap_or(0);
        let mut intern = |i: usize| memo.get(i, id(i), || names.id(one(i)));
        let (resource, sub_or_path, namespace) = if one(1).is_empty() {
            (NONE, intern(10), NONE)
        } else {
            let ns = if one(3).is_empty() { NONE } else { intern(3) };
            (intern(1), intern(2), ns)
        };
        let user_agent = if one(6).is_empty() { NONE } else { intern(6) };
        let verb = intern(0);
        let cluster = intern(8);
        let ip_list = memo.get(5, id(5), || {
            let at = ips.values.len() as u32;
            for ip in row.values.get(5).copied().unwrap_or(&[]) {
                ips.values.push(names.id(ip));
            }
            ips.lists.push((at, ips.values.len() as u32));
            ips.lists.len() as u32 - 1
        });
        evs.push(SessionEvent {
            key: StageKey {
                audit_hash: row.audit_hash,
                time: row.time,
                is_final: is_final_stage(one(7)),
            },
            seq: row.seq,
            denied: matches!(one(4), "401" | "403") || one(9) == "forbid",
            verb,
            resource,
            sub_or_path,
            namespace,
            cluster,
            user_agent,
            ip_list,
        });
        evs.len() < MAX_HISTORY * 10
    })?;
    evs.sort_by_key(|e| (e.key.time, e.seq));
    let mut out = Vec::new();
    let mut from = 0;
    while from < evs.len() {
        let mut to = from + 1;
        while to < evs.len() && evs[to].key.time.saturating_sub(evs[to - 1].key.time) <= SESSION_GAP
        {
            to += 1;
        }
        out.push(session(&evs[from..to], &names, &ips));
        from = to;
    }
    Ok(out)
}

/// Sums one session's events (oldest first).
fn session(evs: &[SessionEvent], names: &Interner, ips: &IpLists) -> Session {
    use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
    let keys: Vec<StageKey> = evs.iter().map(|e| e.key).collect();
    let counted = counted_events(&keys);
    let mut s = Session {
        start: evs.first().map_or(0, |e| e.key.time),
        end: evs.last().map_or(0, |e| e.key.time),
        ..Session::default()
    };
    let (mut verbs, mut resources) = (HashMap::new(), HashMap::new());
    let (mut namespaces, mut clusters, mut addrs, mut agents) = (
        HashSet::new(),
        HashSet::new(),
        HashSet::new(),
        HashSet::new(),
    );
    // A busy user's events mostly repeat the previous one's cluster, source
    // IPs and user agent: those sets are only touched on a change.
    let mut prev: Option<(u32, u32, u32)> = None;
    for (e, counted) in evs.iter().zip(counted) {
        let here = (e.cluster, e.ip_list, e.user_agent);
        if prev != Some(here) {
            prev = Some(here);
            clusters.insert(e.cluster);
            if let Some(&(from, to)) = ips.lists.get(e.ip_list as usize) {
                addrs.extend(ips.values.get(from as usize..to as usize).unwrap_or(&[]));
            }
            agents.insert(e.user_agent);
        }
        if !counted {
            continue;
        }
        s.requests += 1;
        s.denied += u64::from(e.denied);
        *verbs.entry(e.verb).or_insert(0u64) += 1;
        *resources.entry((e.resource, e.sub_or_path)).or_insert(0u64) += 1;
        namespaces.insert(e.namespace);
    }
    let set = |ids: HashSet<u32>| -> BTreeSet<String> {
        ids.into_iter()
            .filter(|&id| id != NONE)
            .map(|id| names.name(id).to_string())
            .collect()
    };
    s.verbs = verbs
        .into_iter()
        .map(|(v, n)| (names.name(v).to_string(), n))
        .collect();
    s.resources = resources
        .into_iter()
        .map(|((r, sub_or_path), n)| {
            let key = match (r, names.name(sub_or_path)) {
                (NONE, path) => path.to_string(),
                (r, "") => names.name(r).to_string(),
                (r, sub) => format!("{}/{sub}", names.name(r)),
            };
            (key, n)
        })
        .fold(BTreeMap::new(), |mut m, (k, n)| {
            *m.entry(k).or_insert(0) += n;
            m
        });
    s.namespaces = set(namespaces);
    s.clusters = set(clusters);
    s.ips = set(addrs);
    s.user_agents = set(agents);
    s
}
