//! The report as JSON: what `report.json` in a bundle holds and what the
//! HTML embeds. Every field a row shows is recomputed by the verifier from
//! the cited event's exact bytes ([`Row::of_event`]), so the two cannot differ.

use kaudit_event::{Event, MicroTime};
use serde::{Deserialize, Serialize};

/// The report format version written here.
pub const REPORT_FORMAT: u32 = 1;

/// What a report proves and what it only claims, stated in every report so
/// that nobody reads more into it than is there.
pub const PROOF_STATEMENT: &[&str] = &[
    "Every listed row cites one stored event: the bundle holds the event's exact bytes and its RFC 6962 inclusion proof against the anchor checkpoint, which is signed with the log's Ed25519 key. A row that was altered, invented or taken from another log fails verification.",
    "Every row's shown fields (auditID, time, user, verb, object, code, cluster) are recomputed from the event bytes, and the event is checked to match the section's query with kaudit's reference matcher.",
    "The period's first checkpoint and the anchor checkpoint are tied by an RFC 6962 consistency proof: the log the rows are proven against is an append-only extension of the log as it stood at the start of the period, so nothing was removed or rewritten in between without breaking the proof.",
    "Counts (events per section, per user, per rule, per hour) are claims of the report's signer, not proofs: they are bound by the signed manifest (any change after signing is detected), and each is checked to be at least the number of rows listed (listed + omitted + unproven = count), but an outsider can only recompute them with access to the store (`kaudit report` over the same period and the same anchor tree size gives the same counts).",
    "Rows beyond a section's row limit are never dropped silently: the section says how many were omitted.",
];

/// A checkpoint the report refers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRef {
    /// Tree size it signs.
    pub size: u64,
    /// When the store signed it (RFC 3339).
    pub time: String,
    /// Its file in the bundle (`checkpoints/<size>.note`).
    pub file: String,
}

/// One listed event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// Sequence number (leaf index) in the log.
    pub seq: u64,
    /// The event's auditID.
    #[serde(rename = "auditID")]
    pub audit_id: String,
    /// Cluster it came from.
    pub cluster: String,
    /// Event time (stage timestamp), RFC 3339.
    pub time: String,
    /// Audit stage.
    pub stage: String,
    /// Authenticated user.
    pub user: String,
    /// Impersonated user, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub impersonated: String,
    /// Request verb.
    pub verb: String,
    /// Resource (and `/subresource`).
    pub resource: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// Response code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// Alerts section: the rule that fired on this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Alerts section: the rule's priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
}

impl Row {
    /// The row shown for an event: the one definition both the report and
    /// its verifier use, so a row is exactly what its event says.
    pub fn of_event(seq: u64, cluster: &str, received: MicroTime, ev: &Event) -> Row {
        let obj = ev.object_ref();
        let o = |f: fn(&kaudit_event::ObjectRef) -> &str| obj.map_or("", f).to_string();
        let mut resource = o(|o| &o.resource);
        let sub = o(|o| &o.subresource);
        if !sub.is_empty() {
            resource.push('/');
            resource.push_str(&sub);
        }
        Row {
            seq,
            audit_id: ev.audit_id().to_string(),
            cluster: cluster.to_string(),
            time: MicroTime(kaudit_index::event_time(ev, received)).to_string(),
            stage: ev.stage().as_str().to_string(),
            user: ev.user().username.clone(),
            impersonated: ev
                .impersonated_user()
                .map(|u| u.username.clone())
                .unwrap_or_default(),
            verb: ev.verb().to_string(),
            resource,
            namespace: o(|o| &o.namespace),
            name: o(|o| &o.name),
            code: ev.response_code(),
            rule: None,
            priority: None,
        }
    }
}

/// A count by key (denied requests per user, alerts per rule).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The user, rule, ...
    pub key: String,
    /// How many (a signed claim, see [`PROOF_STATEMENT`]).
    pub count: u64,
    /// First seen (RFC 3339), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    /// Last seen (RFC 3339), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
}

/// A run of hours without events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// First empty hour (RFC 3339).
    pub from: String,
    /// End of the last empty hour (RFC 3339).
    pub until: String,
    /// Hours without events.
    pub hours: u64,
}

/// Collection completeness of one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterHours {
    /// The cluster.
    pub cluster: String,
    /// Events stored in the period.
    pub events: u64,
    /// Events per hour, from the period's start.
    pub hours: Vec<u64>,
    /// Runs of empty hours at least `max_quiet_hours` long.
    pub gaps: Vec<Gap>,
    /// Events stored truncated (`audit.k8s.io/truncated`).
    pub truncated: u64,
    /// Items quarantined (not valid audit events) in the period.
    pub quarantined: u64,
}

/// One answered section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// Template section id.
    pub id: String,
    /// Heading.
    pub title: String,
    /// What answered it.
    pub kind: crate::template::SectionKind,
    /// The query (with the cluster filter applied), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Matching events (or alerts) in the period: a signed claim.
    pub count: u64,
    /// Rows beyond the row limit, counted but not listed.
    pub omitted: u64,
    /// Matches newer than the anchor checkpoint, counted but not listed
    /// (they cannot be proven yet), and matches whose inclusion proof
    /// would need hashes of a pruned range (a note says how many).
    pub unproven: u64,
    /// The listed rows, oldest first.
    pub rows: Vec<Row>,
    /// Counts by user (denied) or by rule (alerts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    /// Completeness per cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<ClusterHours>,
    /// Facts of retention and verification sections.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub facts: serde_json::Map<String, serde_json::Value>,
    /// Statements a reader must see (a pruned period, failed verification).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A whole report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_FORMAT`].
    pub format: u32,
    /// Template name.
    pub template: String,
    /// Title.
    pub title: String,
    /// What it is evidence for.
    pub description: String,
    /// Start of the period, inclusive (RFC 3339).
    pub since: String,
    /// End of the period, exclusive (RFC 3339).
    pub until: String,
    /// Clusters reported on (empty: all).
    pub clusters: Vec<String>,
    /// When the report was made.
    pub generated: String,
    /// The log's verifier key (`name+id+key`), also `checkpoint.pub`.
    pub verifier_key: String,
    /// The checkpoint every row is proven against.
    pub anchor: CheckpointRef,
    /// The period's first checkpoint, tied to the anchor by `consistency.json`.
    pub first: CheckpointRef,
    /// What the report proves and what it claims.
    pub proves: Vec<String>,
    /// Where this report proves less than [`PROOF_STATEMENT`] says (no
    /// consistency proof over a pruned range): shown at the top of the HTML
    /// and printed by `kaudit report verify`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proof_notes: Vec<String>,
    /// The sections.
    pub sections: Vec<Section>,
}
