//! The fields a query can name, and how each is read from an event.
//!
//! One catalogue serves the parser (names, aliases, suggestions), the
//! brute-force matcher, `stats --by`, and any index backend, so a field means
//! the same thing everywhere.

use kaudit_event::Event;

/// A named field of an audit event (plus the record's cluster).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// `user.username`.
    User,
    /// `user.groups[*]`.
    Group,
    /// `impersonatedUser.username`.
    Impersonated,
    /// `verb`.
    Verb,
    /// `objectRef.resource`.
    Resource,
    /// `objectRef.subresource`.
    Subresource,
    /// `objectRef.namespace`.
    Namespace,
    /// `objectRef.name`.
    Name,
    /// `objectRef.apiGroup`.
    ApiGroup,
    /// `objectRef.apiVersion`.
    ApiVersion,
    /// `responseStatus.code`.
    Code,
    /// `sourceIPs[*]`.
    Ip,
    /// `userAgent`.
    UserAgent,
    /// `stage`.
    Stage,
    /// `level`.
    Level,
    /// `auditID`.
    AuditId,
    /// `objectRef.uid`.
    Uid,
    /// `requestURI`.
    Uri,
    /// The cluster the record was received from (not part of the event).
    Cluster,
    /// The `authorization.k8s.io/decision` annotation.
    Decision,
    /// The `authorization.k8s.io/reason` annotation.
    Reason,
    /// Any annotation, `annotation.KEY`.
    Annotation(String),
    /// A JSON path into the event, `.requestObject.spec.containers[*].image`.
    Path(JsonPath),
}

/// The annotation the `source` field reads: set by non-Kubernetes sources
/// (`kaudit.io/source: docker`).
pub const SOURCE_ANNOTATION: &str = "kaudit.io/source";

/// Names accepted for each field (the first is canonical).
const NAMES: &[(&str, Field)] = &[
    ("user", Field::User),
    ("username", Field::User),
    ("group", Field::Group),
    ("groups", Field::Group),
    ("impersonated", Field::Impersonated),
    ("verb", Field::Verb),
    ("resource", Field::Resource),
    ("subresource", Field::Subresource),
    ("ns", Field::Namespace),
    ("namespace", Field::Namespace),
    ("name", Field::Name),
    ("apigroup", Field::ApiGroup),
    ("apiversion", Field::ApiVersion),
    ("code", Field::Code),
    ("status", Field::Code),
    ("ip", Field::Ip),
    ("sourceip", Field::Ip),
    ("useragent", Field::UserAgent),
    ("ua", Field::UserAgent),
    ("stage", Field::Stage),
    ("level", Field::Level),
    ("auditid", Field::AuditId),
    ("id", Field::AuditId),
    ("uid", Field::Uid),
    ("uri", Field::Uri),
    ("cluster", Field::Cluster),
    ("decision", Field::Decision),
    ("reason", Field::Reason),
];

impl Field {
    /// Resolves a field name (case-insensitive), `annotation.KEY`, or a JSON path.
    pub fn parse(name: &str) -> Option<Field> {
        if let Some(path) = name.strip_prefix('.') {
            return JsonPath::parse(path).map(Field::Path);
        }
        if let Some(key) = name
            .strip_prefix("annotation.")
            .or_else(|| name.strip_prefix("annotations."))
        {
            return (!key.is_empty()).then(|| Field::Annotation(key.to_string()));
        }
        let lower = name.to_ascii_lowercase();
        if lower == "source" {
            // Where a record came from (`docker`), as the source annotation
            // says; Kubernetes events carry none.
            return Some(Field::Annotation(SOURCE_ANNOTATION.to_string()));
        }
        NAMES
            .iter()
            .find(|(n, _)| *n == lower)
            .map(|(_, f)| f.clone())
    }

    /// The canonical name, as accepted by [`Field::parse`].
    pub fn name(&self) -> String {
        match self {
            Field::Annotation(k) => format!("annotation.{k}"),
            Field::Path(p) => format!(".{}", p.text),
            f => NAMES
                .iter()
                .find(|(_, g)| g == f)
                .map(|(n, _)| n.to_string())
                .unwrap_or_default(),
        }
    }

    /// Every canonical field name, for help texts and autocomplete.
    pub fn all_names() -> Vec<&'static str> {
        let mut seen = Vec::new();
        for (n, f) in NAMES {
            if !NAMES
                .iter()
                .any(|(m, g)| g == f && m != n && seen.contains(m))
            {
                seen.push(*n);
            }
        }
        seen
    }

    /// The closest known name to a misspelt one (edit distance <= 2).
    pub fn suggest(name: &str) -> Option<&'static str> {
        let lower = name.to_ascii_lowercase();
        NAMES
            .iter()
            .map(|(n, _)| (edit_distance(&lower, n), *n))
            .filter(|(d, _)| *d <= 2)
            .min_by_key(|(d, _)| *d)
            .map(|(_, n)| n)
            .or_else(|| (lower.starts_with("annot")).then_some("annotation.KEY"))
    }

    /// Whether values compare as numbers (`code>=400`).
    pub fn is_numeric(&self) -> bool {
        matches!(self, Field::Code)
    }

    /// Calls `f` with each value of this field in the event; nothing for a
    /// missing field. Multi-valued fields (groups, IPs, `[*]` paths) call it
    /// once per value.
    pub fn values(&self, ev: &Event, cluster: &str, json: &mut LazyJson, f: &mut dyn FnMut(&str)) {
        let doc = ev.doc();
        let nonempty = |s: &str, f: &mut dyn FnMut(&str)| {
            if !s.is_empty() {
                f(s)
            }
        };
        let obj = doc.object_ref.as_ref();
        match self {
            Field::User => nonempty(&doc.user.username, f),
            Field::Group => doc.user.groups.iter().for_each(|g| f(g)),
            Field::Impersonated => {
                if let Some(u) = &doc.impersonated_user {
                    nonempty(&u.username, f)
                }
            }
            Field::Verb => nonempty(&doc.verb, f),
            Field::Resource => nonempty(obj.map_or("", |o| &o.resource), f),
            Field::Subresource => nonempty(obj.map_or("", |o| &o.subresource), f),
            Field::Namespace => nonempty(obj.map_or("", |o| &o.namespace), f),
            Field::Name => nonempty(obj.map_or("", |o| &o.name), f),
            Field::ApiGroup => {
                // The core group is "" on the wire; let users say apigroup=core.
                if let Some(o) = obj {
                    if o.api_group.is_empty() && !o.resource.is_empty() {
                        f("core")
                    } else {
                        nonempty(&o.api_group, f)
                    }
                }
            }
            Field::ApiVersion => nonempty(obj.map_or("", |o| &o.api_version), f),
            Field::Code => {
                if let Some(c) = doc.response_code() {
                    f(&c.to_string())
                }
            }
            Field::Ip => doc.source_ips.iter().for_each(|ip| f(ip)),
            Field::UserAgent => nonempty(&doc.user_agent, f),
            Field::Stage => f(ev.stage().as_str()),
            Field::Level => f(doc.level.as_str()),
            Field::AuditId => nonempty(&doc.audit_id, f),
            Field::Uid => nonempty(obj.map_or("", |o| &o.uid), f),
            Field::Uri => nonempty(&doc.request_uri, f),
            Field::Cluster => nonempty(cluster, f),
            Field::Decision => {
                if let Some(v) = ev.annotation("authorization.k8s.io/decision") {
                    f(v)
                }
            }
            Field::Reason => {
                if let Some(v) = ev.annotation("authorization.k8s.io/reason") {
                    f(v)
                }
            }
            Field::Annotation(k) => {
                if let Some(v) = ev.annotation(k) {
                    f(v)
                }
            }
            Field::Path(p) => {
                if let Some(root) = json.get(ev) {
                    p.walk(root, 0, f);
                }
            }
        }
    }
}

/// The whole event as a JSON tree, parsed at most once per event and only
/// when a query reads a JSON path.
#[derive(Default)]
pub struct LazyJson {
    value: Option<Option<serde_json::Value>>,
}

impl LazyJson {
    /// The parsed event (None if its bytes are not JSON, which cannot happen
    /// for an `Event`, but is not worth a panic).
    pub fn get(&mut self, ev: &Event) -> Option<&serde_json::Value> {
        self.value
            .get_or_insert_with(|| serde_json::from_slice(ev.bytes()).ok())
            .as_ref()
    }
}

/// A path into the event's JSON: `.a.b[0].c[*].d`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Step {
    Key(String),
    Index(usize),
    All,
}

impl JsonPath {
    /// Parses the text after the leading dot; None when malformed.
    pub fn parse(text: &str) -> Option<JsonPath> {
        let mut steps = Vec::new();
        for part in text.split('.') {
            let (key, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if key.is_empty() && rest.is_empty() {
                return None;
            }
            if !key.is_empty() {
                steps.push(Step::Key(key.to_string()));
            }
            while let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']')?;
                let inner = &r[..end];
                steps.push(if inner == "*" {
                    Step::All
                } else {
                    Step::Index(inner.parse().ok()?)
                });
                rest = &r[end + 1..];
            }
            if !rest.is_empty() {
                return None;
            }
        }
        (!steps.is_empty()).then(|| JsonPath {
            text: text.to_string(),
            steps,
        })
    }

    /// Calls `f` with each value the path selects in `root`, rendered as
    /// [`Field::values`] renders them for an event whose JSON is `root`: lets
    /// the search index derive a path's values from a part of the event it
    /// parsed itself (wrapped under its key) without parsing the whole event.
    pub fn values_in(&self, root: &serde_json::Value, f: &mut dyn FnMut(&str)) {
        self.walk(root, 0, f)
    }

    fn walk(&self, v: &serde_json::Value, i: usize, f: &mut dyn FnMut(&str)) {
        use serde_json::Value;
        let Some(step) = self.steps.get(i) else {
            match v {
                Value::String(s) => f(s),
                Value::Bool(b) => f(if *b { "true" } else { "false" }),
                Value::Number(n) => f(&n.to_string()),
                Value::Null => {}
                // Objects and arrays compare as their compact JSON text.
                other => f(&other.to_string()),
            }
            return;
        };
        match (step, v) {
            (Step::Key(k), Value::Object(m)) => {
                if let Some(c) = m.get(k) {
                    self.walk(c, i + 1, f)
                }
            }
            (Step::Index(n), Value::Array(a)) => {
                if let Some(c) = a.get(*n) {
                    self.walk(c, i + 1, f)
                }
            }
            (Step::All, Value::Array(a)) => a.iter().for_each(|c| self.walk(c, i + 1, f)),
            _ => {}
        }
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
